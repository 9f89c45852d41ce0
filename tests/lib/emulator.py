"""Test fixture: run the RAM emulator (tests/emulator/ramemu.py) as a child
process and talk to it.

    from emulator import Emulator
    with Emulator(https=True, auto_users=True) as emu:
        status, body = emu.call("CreateAccessKey", {"UserName": "alice"})
        assert status == 200
        assert emu.keys_of("alice")[0]["Status"] == "Active"

Standard library only. The admin client (state(), counters(), set_faults(),
...) uses the unsigned /_emu/ endpoints, which are not API calls: they never
change the API counters or the request log. What the emulator serves and
every admin endpoint: tests/emulator/README.md.

STS and the instance metadata service:

    with Emulator(imds=True) as emu:
        emu.create_role("alice-role", trusted=["account"])
        st, body = emu.assume_role("alice-role", "alice@host")
        creds = body["Credentials"]
        st, who = emu.caller_identity(creds["AccessKeyId"], creds["AccessKeySecret"],
                                      creds["SecurityToken"])
        doc = emu.imds_credentials()          # token, role name, credential
"""

import atexit
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import ramsign

__all__ = ["Emulator", "EmulatorError", "RAMEMU"]

RAMEMU = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "..", "emulator", "ramemu.py"))

_live = set()


@atexit.register
def _stop_all():
    for emu in list(_live):
        emu.stop()


class EmulatorError(Exception):
    """An admin call failed, or the emulator did not start. `.status` and
    `.body` carry the HTTP status and decoded body when there was one."""

    def __init__(self, message, status=None, body=None):
        super().__init__(message)
        self.status = status
        self.body = body


class Emulator:
    """Start the emulator at construction; stop it with stop() or at the end
    of a `with` block (and, as a last resort, at interpreter exit).

    https:  `endpoint` is the HTTPS listener (else the plain HTTP one); the
            admin client uses the same. Both listeners always run.
    auto_users, latency_ms, shell_secrets, seed: as the command-line options.
    imds:   serve the instance metadata service: True (127.0.0.1, a free
            port) or "HOST:PORT" (e.g. "100.100.100.200:80" inside a network
            namespace); its base URL is then `imds_endpoint`.
    imds_role: the instance role's name (default: the emulator's).
    account_id: the account's id (default: the emulator's, 1234567890123456).
    workdir: where the TLS material, ready file and emulator output go
            (default: a temporary directory, removed by stop()).
    extra_args: more command-line arguments for ramemu.py.
    """

    def __init__(self, https=True, auto_users=True, latency_ms=0, shell_secrets=False,
                 seed=None, workdir=None, extra_args=(), start_timeout=30.0, imds=None,
                 imds_role=None, account_id=None):
        self.https = https
        self.proc = None
        self._own_workdir = workdir is None
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="ramemu-")
            os.chmod(workdir, 0o755)     # ca.pem readable by an agent running as another user
        self.workdir = workdir
        os.makedirs(self.workdir, exist_ok=True)
        self.tls_dir = os.path.join(self.workdir, "tls")
        self.ready_file = os.path.join(self.workdir, "ramemu.ready")
        self.output_file = os.path.join(self.workdir, "ramemu.out")
        args = [sys.executable, RAMEMU, "--host", "127.0.0.1", "--https-port", "0",
                "--http-port", "0", "--tls-dir", self.tls_dir, "--ready-file", self.ready_file,
                "--exit-with-parent"]
        if auto_users:
            args.append("--auto-users")
        if latency_ms:
            args += ["--latency-ms", str(latency_ms)]
        if shell_secrets:
            args.append("--shell-secrets")
        if seed is not None:
            args += ["--seed", str(seed)]
        if imds:
            args += ["--imds-listen", "127.0.0.1:0" if imds is True else str(imds)]
        if imds_role is not None:
            args += ["--imds-role", imds_role]
        if account_id is not None:
            args += ["--account-id", str(account_id)]
        args += [str(a) for a in extra_args]
        try:
            os.unlink(self.ready_file)
        except FileNotFoundError:
            pass
        # The output holds the admin secret (the ready line): owner only.
        self._out = os.fdopen(os.open(self.output_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND
                                      | os.O_CLOEXEC, 0o600), "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, close_fds=True)
        _live.add(self)
        try:
            info = self._wait_ready(start_timeout)
        except BaseException:
            self.stop()
            raise
        self.pid = info["pid"]
        self.https_port = info["https_port"]
        self.http_port = info["http_port"]
        self.ca_file = info["ca_file"]
        self.admin_key_id = info["admin_key_id"]
        self.admin_secret = info["admin_secret"]
        self.https_endpoint = "https://127.0.0.1:%d" % self.https_port
        self.http_endpoint = "http://127.0.0.1:%d" % self.http_port
        self.endpoint = self.https_endpoint if https else self.http_endpoint
        self._ssl = ssl.create_default_context(cafile=self.ca_file)
        self.imds_host = info.get("imds_host")
        self.imds_port = info.get("imds_port")
        self.imds_endpoint = None
        if self.imds_port is not None:
            h = self.imds_host
            if h in ("0.0.0.0", "::"):
                h = "127.0.0.1" if h == "0.0.0.0" else "::1"
            self.imds_endpoint = "http://%s:%d" % ("[%s]" % h if ":" in h else h, self.imds_port)
        try:
            self.account_id = self.sts_settings()["account_id"]
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EmulatorError("ramemu exited with status %s:\n%s"
                                    % (self.proc.returncode, self.output()))
            try:
                with open(self.ready_file) as f:
                    return json.load(f)
            except (FileNotFoundError, ValueError):
                time.sleep(0.02)
        raise EmulatorError("ramemu not ready after %.0f s:\n%s" % (timeout, self.output()))

    # -- lifecycle --------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self):
        """Stop the emulator (SIGTERM, then SIGKILL after 5 s); idempotent."""
        _live.discard(self)
        p, self.proc = self.proc, None
        if p is not None:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            self.returncode = p.returncode
        if getattr(self, "_out", None) is not None:
            self._out.close()
            self._out = None
        if self._own_workdir and self.workdir and os.path.isdir(self.workdir):
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def output(self):
        """What the emulator wrote on stdout/stderr so far."""
        try:
            with open(self.output_file, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    # -- admin client -----------------------------------------------------
    def admin(self, method, path, obj=None, timeout=30):
        """Call an /_emu/ endpoint; returns the decoded JSON, raises
        EmulatorError on a non-2xx answer."""
        data = None if obj is None else json.dumps(obj).encode()
        req = urllib.request.Request(self.endpoint + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        ctx = self._ssl if self.endpoint.startswith("https:") else None
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
                return json.loads(r.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            raw = e.read().decode("utf-8", "replace")
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
            raise EmulatorError("%s %s -> %d %s" % (method, path, e.code, raw), e.code, body)

    def health(self):
        return self.admin("GET", "/_emu/health")

    def state(self):
        return self.admin("GET", "/_emu/state")

    def counters(self):
        return self.admin("GET", "/_emu/counters")

    def reset_counters(self):
        return self.admin("POST", "/_emu/reset_counters", {})

    def log(self, since=None, last=None, **filters):
        """Request log entries (oldest first). since: unix time; last: the
        last N (after filtering). filters: exact values of entry fields:
        action, api ("ram"/"sts"), principal (the signer's ARN),
        principal_kind ("account", "ram_user", "role_session"), role (the
        signing session's role), role_session, target_role (AssumeRole's
        role), user, result, key_id, access_key_id."""
        q = []
        if since is not None:
            q.append("since=%r" % float(since))
        if last is not None:
            q.append("last=%d" % int(last))
        for k, v in sorted(filters.items()):
            q.append("%s=%s" % (k, urllib.parse.quote(str(v), safe="")))
        return self.admin("GET", "/_emu/log" + ("?" + "&".join(q) if q else ""))

    def faults(self):
        return self.admin("GET", "/_emu/faults")

    def set_faults(self, **faults):
        """Any subset of latency_ms, latency_by_action, error_rate,
        throttle_every, reset_rate, shell_secrets, down_for, down_mode,
        fail_all, clock_skew, seed, clear, action_faults. Returns the
        resulting faults."""
        return self.admin("POST", "/_emu/faults", faults)

    def set_action_faults(self, scope, for_seconds=None, **spec):
        """Faults for one action ("AssumeRole", "CreateAccessKey", ...) or a
        whole API ("sts", "ram"), on top of the global ones: any of
        latency_ms, error_rate, throttle_every, reset_rate, down_for,
        down_mode, fail_all; for_seconds: they lapse after that long. No
        spec removes the scope's faults. E.g. AssumeRole throttled for 10 s:
        set_action_faults("AssumeRole", 10, throttle_every=1); STS down for
        30 s: set_action_faults("sts", down_for=30)."""
        if for_seconds is not None:
            spec["for"] = for_seconds
        return self.admin("POST", "/_emu/faults", {"action_faults": {scope: spec or None}})

    def clear_action_faults(self):
        return self.admin("POST", "/_emu/faults", {"action_faults": None})

    def clear_faults(self):
        return self.admin("POST", "/_emu/faults", {"clear": True})

    def create_user(self, name):
        return self.admin("POST", "/_emu/users", {"name": name})

    def create_key(self, user, status="Active", create_date=None, age=None):
        """Create a key directly (created_by "direct", same two-key limit).
        create_date ("YYYY-MM-DDThh:mm:ssZ" or unix time) or age (seconds
        before now) backdate its CreateDate."""
        req = {"user": user, "status": status}
        if create_date is not None:
            if not isinstance(create_date, str):
                create_date = ramsign.utc_timestamp(create_date)
            req["create_date"] = create_date
        if age is not None:
            req["age"] = age
        return self.admin("POST", "/_emu/keys", req)

    def delete_key(self, user, key_id):
        return self.admin("POST", "/_emu/keys/delete", {"user": user, "key_id": key_id})

    def set_key_status(self, user, key_id, status):
        return self.admin("POST", "/_emu/keys/status",
                          {"user": user, "key_id": key_id, "status": status})

    # -- groups (for a sweep) ----------------------------------------------
    def create_group(self, name, comments=""):
        return self.admin("POST", "/_emu/groups", {"name": name, "comments": comments})

    def add_user_to_group(self, group, user):
        return self.admin("POST", "/_emu/groups/members", {"group": group, "user": user})

    def groups(self):
        """{name: {"GroupId","GroupName","Comments","CreateDate","members"}}"""
        return self.admin("GET", "/_emu/groups")

    # -- roles, permissions, STS --------------------------------------------
    def role_arn(self, name):
        return "acs:ram::%s:role/%s" % (self.account_id, name)

    def principal_arn(self, principal):
        """ARN of "account", "user/NAME" or "role/NAME/SESSION", as the
        request log and GetCallerIdentity show it."""
        if principal == "account":
            return "acs:ram::%s:root" % self.account_id
        kind, _, rest = principal.partition("/")
        if kind == "user":
            return "acs:ram::%s:user/%s" % (self.account_id, rest)
        if kind == "role":
            return "acs:ram::%s:assumed-role/%s" % (self.account_id, rest)
        raise ValueError(principal)

    def create_role(self, name, trusted=None, max_session_duration=None, external_id=None,
                    sts_lifetime=None, allow=None, policy=None):
        """Create a role, or change an existing one's fields given here.
        trusted: principals allowed to assume it ("account" = every
        principal of the account, "user/NAME", "role/NAME" or ARNs; default
        on creation ["account"]). max_session_duration: 3600..43200.
        external_id: the ExternalId its trust policy requires. sts_lifetime:
        seconds its credentials live whatever DurationSeconds asks. allow /
        policy: its permissions (see set_permissions). Returns the role
        {"RoleName","RoleId","Arn","MaxSessionDuration","CreateDate",
        "trusted","external_id","sts_lifetime","created"}."""
        req = {"name": name}
        for k, v in (("trusted", trusted), ("max_session_duration", max_session_duration),
                     ("external_id", external_id), ("sts_lifetime", sts_lifetime),
                     ("allow", allow), ("policy", policy)):
            if v is not None:
                req[k] = v
        return self.admin("POST", "/_emu/roles", req)

    def update_role(self, name, **fields):
        """Change any of trusted, max_session_duration, external_id,
        sts_lifetime, allow, policy (None resets external_id and
        sts_lifetime, and allow/policy to the default)."""
        fields["name"] = name
        return self.admin("POST", "/_emu/roles", fields)

    def roles(self):
        return self.admin("GET", "/_emu/roles")

    def set_permissions(self, principal, allow=None, policy=None):
        """Restrict a principal ("account", "user/NAME", "role/NAME") to
        `allow`: a list of actions ("ram:CreateAccessKey", "sts:AssumeRole",
        "ram:*", bare names) or {"action", "resource", "effect"} objects,
        e.g. {"action": "sts:AssumeRole", "resource": emu.role_arn("agent")};
        or to a RAM `policy` document. Neither: back to the default. Returns
        every principal's permissions."""
        req = {"principal": principal}
        if allow is not None:
            req["allow"] = allow
        if policy is not None:
            req["policy"] = policy
        return self.admin("POST", "/_emu/permissions", req)

    def clear_permissions(self, principal):
        return self.admin("POST", "/_emu/permissions", {"principal": principal})

    def permissions(self):
        return self.admin("GET", "/_emu/permissions")

    def sts_settings(self):
        """{"account_id", "lifetime"}"""
        return self.admin("GET", "/_emu/sts")

    def set_sts_lifetime(self, seconds, role=None):
        """Every new STS credential (of `role` only, when given) expires
        `seconds` after it is handed out; None: DurationSeconds again."""
        if role is not None:
            return self.admin("POST", "/_emu/roles", {"name": role, "sts_lifetime": seconds})
        return self.admin("POST", "/_emu/sts", {"lifetime": seconds})

    def sessions(self, role=None):
        """Temporary credentials handed out (with secrets and tokens)."""
        q = "?role=" + urllib.parse.quote(role, safe="") if role else ""
        return self.admin("GET", "/_emu/sessions" + q)

    def assume_role(self, role, session_name="ramkey-test", duration=None, policy=None,
                    external_id=None, key_id=None, secret=None, security_token=None,
                    signature="v1", method="POST", role_arn=None, **kw):
        """AssumeRole as the admin key (or key_id/secret[/security_token]);
        role is a name (role_arn overrides). -> (http_status, body)."""
        params = {"RoleArn": role_arn or self.role_arn(role), "RoleSessionName": session_name}
        if duration is not None:
            params["DurationSeconds"] = str(duration)
        if policy is not None:
            params["Policy"] = policy if isinstance(policy, str) else json.dumps(policy)
        if external_id is not None:
            params["ExternalId"] = external_id
        return self.call("AssumeRole", params, key_id, secret, signature, method,
                         security_token=security_token, **kw)

    def caller_identity(self, key_id=None, secret=None, security_token=None, signature="v3",
                        **kw):
        """GetCallerIdentity signed with this credential (default: the
        admin key). -> (http_status, body)."""
        return self.call("GetCallerIdentity", {}, key_id, secret, signature,
                         security_token=security_token, **kw)

    # -- instance metadata service ------------------------------------------
    def imds_settings(self):
        """{"role","require_token","rotate_every","lifetime","instance_id",
        "latency_ms","enabled","host","port","stopped","listening","current"}"""
        return self.admin("GET", "/_emu/imds")

    def set_imds(self, **settings):
        """Any of role (None: no role attached), require_token,
        rotate_every, lifetime, instance_id, latency_ms."""
        return self.admin("POST", "/_emu/imds", settings)

    def imds_stop(self, mode="refuse"):
        """Stop answering: "refuse" (connections refused), "close" (closed
        without an answer) or "hang" (held without an answer until started
        again). State is kept."""
        return self.admin("POST", "/_emu/imds/stop", {"mode": mode})

    def imds_start(self):
        return self.admin("POST", "/_emu/imds/start", {})

    def imds_rotate(self):
        """Replace the instance role's credential now."""
        return self.admin("POST", "/_emu/imds/rotate", {})

    def imds_counters(self):
        """{"requests","with_token","without_token","token_invalid",
        "token_expired","token_puts","credential_fetches","dropped",
        "connections_accepted","by_path","by_status","times",
        "credential_times","log":[{"t","method","path","token","status",
        "credential","dropped"}]}"""
        return self.admin("GET", "/_emu/imds/counters")

    def imds_reset_counters(self):
        return self.admin("POST", "/_emu/imds/reset_counters", {})

    def imds_request(self, method, path, token=None, ttl=None, timeout=10):
        """One request to the metadata service -> (status, text, headers)."""
        if self.imds_endpoint is None:
            raise EmulatorError("the metadata service is not enabled (Emulator(imds=...))")
        headers = {}
        if token is not None:
            headers["X-aliyun-ecs-metadata-token"] = token
        if ttl is not None:
            headers["X-aliyun-ecs-metadata-token-ttl-seconds"] = str(ttl)
        h = self.imds_host if self.imds_host not in ("0.0.0.0", "::") else "127.0.0.1"
        conn = http.client.HTTPConnection(h, self.imds_port, timeout=timeout)
        try:
            conn.request(method, path, headers=headers)
            r = conn.getresponse()
            return r.status, r.read().decode("utf-8", "replace"), dict(r.getheaders())
        finally:
            conn.close()

    def imds_token(self, ttl=21600):
        st, text, _ = self.imds_request("PUT", "/latest/api/token", ttl=ttl)
        if st != 200:
            raise EmulatorError("PUT /latest/api/token -> %d %s" % (st, text), st, text)
        return text

    def imds_credentials(self, token=True):
        """Fetch the instance role's credential like an SDK does (token,
        role name, credential) -> the decoded document. token: True (get
        one), a token string, or None (token-less)."""
        if token is True:
            token = self.imds_token()
        base = "/latest/meta-data/ram/security-credentials/"
        st, role, _ = self.imds_request("GET", base, token)
        if st != 200:
            raise EmulatorError("GET %s -> %d %s" % (base, st, role), st, role)
        st, text, _ = self.imds_request("GET", base + role, token)
        if st != 200:
            raise EmulatorError("GET %s%s -> %d %s" % (base, role, st, text), st, text)
        return json.loads(text)

    def keys_of(self, user):
        """The user's live keys (dicts with AccessKeyId, AccessKeySecret,
        Status, CreateDate, created_by); [] for an unknown user."""
        u = self.state()["users"].get(user)
        return list(u["keys"]) if u else []

    def key(self, key_id):
        """The live key with this id (its dict plus "UserName"), or None."""
        for name, u in self.state()["users"].items():
            for k in u["keys"]:
                if k["AccessKeyId"] == key_id:
                    k = dict(k)
                    k["UserName"] = name
                    return k
        return None

    def wait_until(self, predicate, timeout=10.0, interval=0.05):
        """Poll predicate() until it returns a true value (returned) or the
        timeout passes (AssertionError)."""
        deadline = time.monotonic() + timeout
        while True:
            v = predicate()
            if v:
                return v
            if time.monotonic() >= deadline:
                raise AssertionError("condition not met within %.1f s" % timeout)
            time.sleep(interval)

    # -- signed API calls -------------------------------------------------
    def connection(self, use_http=False, timeout=30):
        """A new http.client connection to the HTTPS (or plain) listener."""
        if use_http or not self.https:
            return http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        return http.client.HTTPSConnection("127.0.0.1", self.https_port, timeout=timeout,
                                           context=self._ssl)

    def prepare(self, action, params=None, key_id=None, secret=None, signature="v1",
                method="GET", nonce=None, timestamp=None, params_in=None, use_http=False,
                security_token=None, version=None):
        """A ramsign.PreparedRequest for this emulator (admin key by default)."""
        port = self.http_port if (use_http or not self.https) else self.https_port
        return ramsign.build_request(
            "127.0.0.1:%d" % port, action, params or {},
            key_id if key_id is not None else self.admin_key_id,
            secret if secret is not None else self.admin_secret,
            signature=signature, method=method, nonce=nonce, timestamp=timestamp,
            params_in=params_in, version=version, security_token=security_token)

    def call(self, action, params=None, key_id=None, secret=None, signature="v1",
             method="GET", nonce=None, timestamp=None, params_in=None, use_http=False,
             conn=None, timeout=30, security_token=None, version=None, with_headers=False):
        """Send a correctly signed API request; returns (http_status, body_dict)
        (with_headers: (http_status, body_dict, headers dict)).

        key_id/secret default to the admin key; security_token: the token of
        a temporary credential. signature "v1" or "v3"; method "GET" or
        "POST"; params go in the query for GET and in a form body for POST
        unless params_in="query"/"body". version: default STS's for
        AssumeRole and GetCallerIdentity, RAM's otherwise. nonce and
        timestamp (yyyy-MM-ddTHH:mm:ssZ) default to fresh values. conn: an
        open http.client connection to reuse (keep-alive); otherwise a new
        one is opened and closed. A connection reset raises (ConnectionError
        or http.client.RemoteDisconnected).
        """
        req = self.prepare(action, params, key_id, secret, signature, method, nonce,
                           timestamp, params_in, use_http, security_token, version)
        own = conn is None
        if own:
            conn = self.connection(use_http, timeout)
        try:
            conn.request(req.method, req.target, body=req.body or None, headers=req.headers)
            r = conn.getresponse()
            raw = r.read()
        finally:
            if own:
                conn.close()
        try:
            body = json.loads(raw.decode("utf-8"))
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        if with_headers:
            return r.status, body, dict(r.getheaders())
        return r.status, body
