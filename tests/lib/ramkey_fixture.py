"""Shared fixtures for ramkey's integration tests (Python 3 standard library).

    from emulator import Emulator
    from ramkey_fixture import Workdir, Users, Agent, key_works

    with Workdir() as wd, Emulator() as emu, Users("ag") as users:
        alice = users.add("alice")              # a real local account (root)
        agent = Agent(wd, emu, min_uid=1000)    # config keys as keyword args
        agent.start()
        r = agent.client("fetch", "--user", alice.name)
        ...
        agent.stop()

Binaries come from $RAMKEY_BUILD_DIR (set by ctest), sources from
$RAMKEY_SOURCE_DIR. Tests that need root call require_root(), which exits
with 77 (ctest: skipped) when not root.
"""

import grp
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SOURCE_DIR = os.environ.get(
    "RAMKEY_SOURCE_DIR",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD_DIR = os.environ.get("RAMKEY_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
AGENT_BIN = os.path.join(BUILD_DIR, "agent", "ramkey-agent")
CLIENT_BIN = os.path.join(BUILD_DIR, "client", "ramkey-agent-client")
PAM_MODULE = os.path.join(BUILD_DIR, "pam_module", "pam_ramkey.so")
SANITIZED = os.environ.get("RAMKEY_SANITIZED") == "1"


def require_root():
    if os.geteuid() != 0:
        print("SKIP: this test needs root (real accounts, setpriv, chown)")
        sys.exit(77)


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Poll predicate() until it is true; return its value or raise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


class Workdir:
    """A temporary directory traversable by dropped users (mode 0755)."""

    def __init__(self, prefix="ramkey-test-"):
        self.path = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.path, 0o755)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


class Users:
    """Real local accounts for a test, removed again at the end.

    Names are "<prefix><name>" so parallel tests never collide; keep
    prefixes short and unique per test file (Linux allows 32 characters).
    """

    def __init__(self, prefix):
        require_root()
        self.prefix = "rk" + prefix
        self.users = []
        self.groups = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    def add(self, name, uid=None, groups=(), shell="/bin/sh", system=False):
        full = self.prefix + name
        self._remove_user(full)
        cmd = ["useradd", "-m", "-U", "-s", shell, "-d", "/home/" + full]
        if uid is not None:
            cmd += ["-u", str(uid)]
        if system:
            cmd += ["-r"]
        if groups:
            cmd += ["-G", ",".join(groups)]
        cmd.append(full)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
        self.users.append(full)
        return pwd.getpwnam(full)

    def add_group(self, name):
        full = self.prefix + name
        subprocess.run(["groupdel", full], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        subprocess.run(["groupadd", full], check=True)
        self.groups.append(full)
        return grp.getgrnam(full)

    @staticmethod
    def _remove_user(name):
        subprocess.run(["pkill", "-KILL", "-u", name], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        subprocess.run(["userdel", "-r", "-f", name], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def cleanup(self):
        for u in self.users:
            self._remove_user(u)
        for g in self.groups:
            subprocess.run(["groupdel", g], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        self.users, self.groups = [], []


def cache_value(name):
    with open(os.path.join(BUILD_DIR, "CMakeCache.txt")) as f:
        for ln in f:
            if ln.startswith(name + ":"):
                return ln.split("=", 1)[1].strip()
    raise AssertionError("%s not in CMakeCache.txt" % name)


class ServiceAccount:
    """RAMKEY_USER's account (the one the unit runs the agent as): the
    machine's, or one made for the test and removed after it. Tests that
    use it share the ctest RESOURCE_LOCK ramkey_account."""

    def __init__(self, name):
        self.name = name
        self.created = False
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", name], check=True)
            self.created = True
        self.pw = pwd.getpwnam(name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.created:
            subprocess.run(["pkill", "-KILL", "-u", self.name], capture_output=True)
            subprocess.run(["userdel", self.name], capture_output=True)


def as_user_cmd(pw, argv):
    """argv run with pw's uid, gid and groups (setpriv), HOME set."""
    return ["setpriv", "--reuid", str(pw.pw_uid), "--regid", str(pw.pw_gid),
            "--init-groups", "--reset-env", "--"] + [
                "env", "HOME=" + pw.pw_dir, "USER=" + pw.pw_name,
                "LOGNAME=" + pw.pw_name, "PATH=/usr/bin:/bin"] + list(argv)


class Agent:
    """A real ramkey-agent against an emulator, on a private socket.

    credentials: (key_id, secret) for an access_key credentials file
    (default: the emulator's admin key); False for no file at all
    (credentials_file then names a path that does not exist); or a str,
    the file's whole text (e.g. a ram_role_arn profile)."""

    def __init__(self, wd, emu, credentials=None, **conf):
        self.wd = wd
        self.emu = emu
        self.dir = wd.join("agent")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.run_dir = os.path.join(self.dir, "run")
        os.makedirs(self.run_dir, exist_ok=True)
        os.chmod(self.run_dir, 0o755)
        self.socket = os.path.join(self.run_dir, "agent.sock")
        self.state_dir = os.path.join(self.dir, "state")
        self.log_path = os.path.join(self.dir, "agent.log")
        self.conf_path = os.path.join(self.dir, "agent.conf")
        self.cred_path = os.path.join(self.dir, "credentials")
        if credentials is False:
            self.cred_path = os.path.join(self.dir, "no-credentials")
        elif isinstance(credentials, str):
            with open(self.cred_path, "w") as f:
                f.write(credentials)
            os.chmod(self.cred_path, 0o600)
        else:
            key_id, secret = credentials or (emu.admin_key_id, emu.admin_secret)
            with open(self.cred_path, "w") as f:
                f.write("[default]\ntype = access_key\naccess_key_id = %s\n"
                        "access_key_secret = %s\n" % (key_id, secret))
            os.chmod(self.cred_path, 0o600)
        trusted = "0" if os.geteuid() == 0 else "0,%d" % os.geteuid()
        self.conf = {
            "socket": self.socket,
            "state_dir": self.state_dir,
            "endpoint": emu.endpoint,
            "ca_file": emu.ca_file,
            "credentials_file": self.cred_path,
            "trusted_uids": trusted,
            "min_uid": "1000",
        }
        self.conf.update({k: str(v) for k, v in conf.items()})
        self.proc = None
        self.write_config()

    def write_config(self, **overrides):
        self.conf.update({k: str(v) for k, v in overrides.items()})
        with open(self.conf_path, "w") as f:
            for k, v in self.conf.items():
                if v is not None:
                    f.write("%s = %s\n" % (k, v))

    def start(self, wait=True, args=(), env=None, listen_fd=None):
        """listen_fd: a listening socket to hand over as systemd does
        (fd 3, LISTEN_PID, LISTEN_FDS=1)."""
        assert self.proc is None or self.proc.poll() is not None
        log = open(self.log_path, "a")
        e = dict(os.environ)
        for name in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                     "ALIBABA_CLOUD_SECURITY_TOKEN",
                     "ALIBABA_CLOUD_SECURITY_TOKEN_EXPIRATION"):
            e.pop(name, None)
        if env:
            e.update(env)
        argv = [AGENT_BIN, "-f", "-c", self.conf_path] + list(args)
        pass_fds = ()
        if listen_fd is not None:
            # bash: redirections of fds above 9; exec keeps the pid.
            argv = ["/bin/bash", "-c", 'exec 3<&%d %d<&-; LISTEN_PID=$$ '
                    'LISTEN_FDS=1 exec "$@"' % (listen_fd, listen_fd),
                    "bash"] + argv
            pass_fds = (listen_fd,)
        self.proc = subprocess.Popen(
            argv, stdout=log, stderr=log, env=e, start_new_session=True,
            pass_fds=pass_fds)
        log.close()
        if wait:
            self.wait_ready()
        return self.proc

    def answers(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def wait_ready(self, timeout=15.0):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("ramkey-agent exited with %s:\n%s" %
                                     (self.proc.returncode, self.log()))
            return self.answers()
        wait_for(ready, timeout, what="ramkey-agent to listen")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def stop(self, timeout=15.0):
        """SIGTERM and wait; returns the exit status (0 = clean)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("ramkey-agent did not stop on SIGTERM")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, **kw):
        self.stop()
        return self.start(**kw)

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def client(self, *args, user=None, env=None, timeout=60, input=None,
               socket_path=None):
        """Run ramkey-agent-client; user: a pwd entry to run as."""
        e = {"PATH": "/usr/bin:/bin", "RAMKEY_SOCKET": socket_path or self.socket}
        if env:
            e.update(env)
        argv = [CLIENT_BIN] + list(args)
        if user is not None:
            envs = ["%s=%s" % kv for kv in e.items() if kv[0] != "PATH"]
            argv = as_user_cmd(user, envs + argv)
            # `env NAME=VALUE ... client`: as_user_cmd starts with env
        return subprocess.run(argv, capture_output=True, text=True,
                              timeout=timeout, input=input,
                              env=e if user is None else None)

    def status(self, user=None):
        args = ["status", "--json"] + (["--user", user] if user else [])
        r = self.client(*args)
        if r.returncode not in (0, 7):
            raise AssertionError("status failed: %s" % r.stderr)
        return json.loads(r.stdout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def raw_call(sock_path, obj, timeout=10.0, keep=None):
    """Send one protocol request (a dict) and return the reply (a dict).

    keep: a list; if given, the connected socket is appended to it and left
    open (the agent watches the process, not the socket, but tests may want
    to hold it)."""
    import struct
    body = json.dumps(obj).encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    s.sendall(struct.pack(">I", len(body)) + body)
    hdr = b""
    while len(hdr) < 4:
        chunk = s.recv(4 - len(hdr))
        if not chunk:
            raise ConnectionError("agent closed the connection")
        hdr += chunk
    (n,) = struct.unpack(">I", hdr)
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("agent closed the connection mid-reply")
        data += chunk
    if keep is not None:
        keep.append(s)
    else:
        s.close()
    return json.loads(data)


def open_session_raw(sock_path, user, **extra):
    """open_session as this (test) process, with a throwaway sealing key:
    the test process becomes the session's watched process."""
    import base64
    req = {"v": 1, "op": "open_session", "user": user,
           "seal_key": base64.b64encode(os.urandom(32)).decode()}
    req.update(extra)
    return raw_call(sock_path, req)


def close_session_raw(sock_path, token, user=None):
    req = {"v": 1, "op": "close_session", "session": token}
    if user:
        req["user"] = user
    return raw_call(sock_path, req)


def key_works(emu, key_id, secret, signature="v3"):
    """Does a request signed with this key get accepted by the emulator?"""
    status, body = emu.call("ListAccessKeys", {}, key_id=key_id,
                            secret=secret, signature=signature)
    return status == 200


def read_json_secret_file(path):
    with open(path) as f:
        doc = json.load(f)
    return doc["AccessKeyId"], doc.get("AccessKeySecret"), doc
