#!/usr/bin/env python3
"""Behaviour tests of the agent's PGP module (agent/pgp.c, agent/keybase.c).

The module runs inside pgp_driver (a C program on a real evloop); this
script makes throwaway OpenPGP keys with gpg (once per build tree), serves
Keybase-shaped lookup answers from a local HTTP(S) server, feeds the driver
commands and checks its answers: fingerprints, decryptable messages, refusal
reasons, that the loop never stalls, that every temporary GnuPG home is gone
and that no gpg-agent or dirmngr is left behind.

Usage: test_pgp.py BEHAVIOUR   (one ctest test per behaviour)
"""

import base64
import fcntl
import http.server
import importlib.util
import json
import os
import re
import select
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

BUILD = os.environ.get("RAMKEY_BUILD_DIR", ".")
SOURCE = os.environ.get("RAMKEY_SOURCE_DIR",
                        os.path.dirname(os.path.dirname(os.path.dirname(
                            os.path.abspath(__file__)))))
DRIVER = os.path.join(BUILD, "tests", "pgp", "pgp_driver")
KEY_CACHE = os.path.join(BUILD, "tests", "pgp", "keys")
SKIP = 77

RC_PGP_KEY = -19
RC_KEYBASE = -20
RC_KEYBASE_USER = -27
RC_CONFIG = -23

# An AccessKey secret look-alike, with characters that must survive.
SECRET = "Zx9+/Qw3=Er8TyUi0Op1aS2dF3gH4j"

EXPIRED_WHY = "the PGP key expired on 2020-01-02"
REVOKED_WHY = "the PGP key is revoked"
SIGNONLY_WHY = "the PGP key cannot encrypt (no encryption subkey)"
GARBAGE_WHY = "not an OpenPGP public key"


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok: " + what, flush=True)


# ------------------------------------------------------------------ keys --

def gpg(home, *args, data=None, check_rc=True):
    cmd = ["gpg", "--batch", "--homedir", home, "--pinentry-mode", "loopback",
           "--passphrase", ""] + list(args)
    r = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check_rc and r.returncode != 0:
        raise AssertionError("%s failed: %s" % (" ".join(cmd), r.stderr.decode(errors="replace")))
    return r


def kill_agents(home):
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def primary_fpr(home, uid):
    out = gpg(home, "--with-colons", "--list-keys", "=" + uid).stdout.decode()
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("pub:"):
            for nxt in lines[i + 1:]:
                if nxt.startswith("fpr:"):
                    return nxt.split(":")[9]
    raise AssertionError("no key for " + uid)


def generate_keys(cache):
    """Keys for the tests, in cache/: NAME.bin (binary public key),
    NAME.asc (armored), keys.json (name -> primary fingerprint, lower
    case) and gnupghome/ (the private keys, to decrypt)."""
    work = tempfile.mkdtemp(prefix="pgpkeys-")     # short: agent socket paths
    home = os.path.join(work, "h")
    os.mkdir(home, 0o700)
    past = "20200101T000000!"                     # frozen, three days' work
    try:
        fprs = {}

        def gen(name, uid, algo, usage, expire, faked=None, sub=None):
            extra = ["--faked-system-time", faked] if faked else []
            gpg(home, *extra, "--quick-gen-key", uid, algo, usage, expire)
            fpr = primary_fpr(home, uid)
            if sub is not None:
                salgo, susage, sexpire = sub
                gpg(home, *extra, "--quick-add-key", fpr, salgo, susage, sexpire)
            fprs[name] = fpr.lower()
            return fpr

        gen("rsa", "RSA Test <rsa@ramkey.test>", "rsa2048", "cert,sign", "never",
            sub=("rsa2048", "encr", "never"))
        gen("rsaprim", "RSA Primary <rsaprim@ramkey.test>", "rsa2048",
            "cert,sign,encr", "never")
        gen("ed", "Ed Test <ed@ramkey.test>", "ed25519", "cert,sign", "never",
            sub=("cv25519", "encr", "never"))
        gen("expired", "Expired <expired@ramkey.test>", "ed25519", "cert,sign", "1d",
            faked=past, sub=("cv25519", "encr", "1d"))
        gen("subexpired", "Subkey Expired <subexp@ramkey.test>", "ed25519", "cert,sign",
            "never", faked=past, sub=("cv25519", "encr", "1d"))
        rev = gen("revoked", "Revoked <revoked@ramkey.test>", "ed25519", "cert,sign",
                  "never", sub=("cv25519", "encr", "never"))
        gen("signonly", "Sign Only <signonly@ramkey.test>", "ed25519", "cert,sign", "never")
        # Revoke with the certificate gpg stored at generation time (its
        # armor header is ':'-escaped against accidental import).
        with open(os.path.join(home, "openpgp-revocs.d", rev + ".rev"), "rb") as f:
            cert = f.read().replace(b":-----BEGIN PGP PUBLIC KEY BLOCK",
                                    b"-----BEGIN PGP PUBLIC KEY BLOCK")
        gpg(home, "--import", data=cert)
        out = gpg(home, "--with-colons", "--list-keys", rev).stdout.decode()
        assert "\npub:r:" in out, "revocation not applied"

        for name, fpr in fprs.items():
            for ext, args in (("bin", []), ("asc", ["--armor"])):
                data = gpg(home, "--export", *args, fpr).stdout
                with open(os.path.join(work, name + "." + ext), "wb") as f:
                    f.write(data)
        both = gpg(home, "--export", "--armor", fprs["rsa"], fprs["ed"]).stdout
        with open(os.path.join(work, "multi.asc"), "wb") as f:
            f.write(both)
        sec = gpg(home, "--export-secret-keys", "--armor", fprs["ed"]).stdout
        check(b"PRIVATE KEY BLOCK" in sec, "secret key exported")
        with open(os.path.join(work, "secret.asc"), "wb") as f:
            f.write(sec)
        with open(os.path.join(work, "keys.json"), "w") as f:
            json.dump(fprs, f)
        kill_agents(home)
        shutil.copytree(home, os.path.join(work, "gnupghome"),
                        ignore=shutil.ignore_patterns("S.*", "*.lock", ".#*"))
        shutil.rmtree(home)
        tmp = cache + ".new"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(work, tmp)
        os.replace(tmp, cache)
    finally:
        kill_agents(home)
        shutil.rmtree(work, ignore_errors=True)


def keys():
    """The key set (generated once per build tree, under a lock)."""
    os.makedirs(os.path.dirname(KEY_CACHE), exist_ok=True)
    with open(KEY_CACHE + ".lock", "a") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(KEY_CACHE, "keys.json")):
            t0 = time.monotonic()
            generate_keys(KEY_CACHE)
            print("generated test keys in %.1f s" % (time.monotonic() - t0), flush=True)
    with open(os.path.join(KEY_CACHE, "keys.json")) as f:
        return json.load(f)


def key_file(name, ext):
    return os.path.join(KEY_CACHE, name + "." + ext)


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


# --------------------------------------------------------- keybase server --

class Keybase:
    """A Keybase-shaped lookup server. users: name -> (status, body, delay)
    or name -> armored bundle (answered as Keybase does)."""

    def __init__(self, users, tls=None):
        self.users = users
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # one request per connection: a closed server is really gone
            protocol_version = "HTTP/1.0"

            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(u.query)
                outer.requests.append({"path": u.path, "query": q,
                                       "absolute": bool(u.scheme),
                                       "host": u.netloc, "ua": self.headers.get("User-Agent")})
                name = (q.get("usernames") or [""])[0]
                if (u.path != "/_/api/1.0/user/lookup.json" or
                        q.get("fields") != ["public_keys"]):
                    status, body, delay = 404, b"no such page", 0
                else:
                    status, body, delay = outer.answer(name)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        scheme = "https" if tls is not None else "http"
        self.url = "%s://127.0.0.1:%d" % (scheme, self.port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, name):
        v = self.users.get(name)
        if v is None:
            return 404, json.dumps({"status": {"code": 205, "name": "NOT_FOUND",
                                               "desc": "Not found"}}).encode(), 0
        if isinstance(v, tuple):
            return v
        return 200, keybase_ok(v), 0

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def keybase_ok(bundle):
    return json.dumps({
        "status": {"code": 0, "name": "OK"},
        "them": [{"id": "0123456789abcdef0123456789abcd19",
                  "basics": {"username": "someone"},
                  "public_keys": {"primary": {"kid": "0120abcdef", "key_type": 1,
                                              "bundle": bundle}}}]}).encode()


def tls_context():
    """A throwaway CA and server certificate (the RAM emulator's helper)."""
    spec = importlib.util.spec_from_file_location(
        "ramemu", os.path.join(SOURCE, "tests", "emulator", "ramemu.py"))
    ramemu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ramemu)
    tls_dir = os.path.join(BUILD, "tests", "pgp", "tls")
    ca, cert, key = ramemu.ensure_tls(tls_dir)
    return ca, ramemu.make_tls_context(cert, key)


# ----------------------------------------------------------------- driver --

class Driver:
    """One pgp_driver process with its own TMPDIR (where the module's
    GnuPG homes go). cmd() sends a line and returns the driver's direct
    answer; callbacks are collected by wait()."""

    def __init__(self, workdir, wrapper=(), log=None):
        self.tmpdir = os.path.join(workdir, "tmp")
        os.makedirs(self.tmpdir, exist_ok=True)
        env = dict(os.environ)
        env["TMPDIR"] = self.tmpdir
        for k in list(env):
            if k.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
                del env[k]
        env.pop("GNUPGHOME", None)
        self.stderr_path = os.path.join(workdir, "driver.err")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(list(wrapper) + [DRIVER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err,
                                     env=env, text=True, bufsize=1)
        self.events = []      # callbacks not yet claimed
        self.all = []         # every line
        self.buf = ""
        ev = self._next(60)
        assert ev["ev"] == "ready", ev

    def _next(self, timeout):
        deadline = time.monotonic() + timeout
        while "\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if not r:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536).decode()
            if not chunk:
                raise AssertionError("driver exited (%s): %s"
                                     % (self.proc.wait(), self.stderr()))
            self.buf += chunk
        line, self.buf = self.buf.split("\n", 1)
        print("< " + line[:300], flush=True)
        ev = json.loads(line)
        self.all.append(ev)
        if not ev.get("on_loop", True):
            raise AssertionError("a callback ran off the loop thread: %s" % line)
        if ev.get("inside", False):
            raise AssertionError("a callback ran inside pgp_key_prepare/pgp_encrypt: %s" % line)
        return ev

    def cmd(self, line, timeout=60):
        print("> " + line[:200], flush=True)
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        while True:
            ev = self._next(timeout)
            if ev is None:
                raise AssertionError("driver: no answer to %r" % line)
            if ev["ev"] in ("key", "enc", "freed_in_callback"):
                self.events.append(ev)
                continue
            return ev

    def wait(self, ev_id, timeout=60, kind=None):
        """The callback of job ev_id."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if ev.get("id") == ev_id and ev["ev"] in ("key", "enc") and \
                        (kind is None or ev["ev"] == kind):
                    self.events.remove(ev)
                    return ev
            left = deadline - time.monotonic()
            ev = self._next(max(left, 0)) if left > 0 else None
            if ev is None:
                raise AssertionError("no callback for job %s within %s s" % (ev_id, timeout))
            self.events.append(ev)

    def quiet(self, seconds):
        """Collect for `seconds`; return the callbacks that came."""
        deadline = time.monotonic() + seconds
        got = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ev = self._next(left)
            if ev is None:
                break
            self.events.append(ev)
            got.append(ev)
        return got

    def start(self, line):
        ev = self.cmd(line)
        check(ev["ev"] == "started" and ev["rc"] == 0, "started: " + line.split(" ")[0])
        return ev

    def prepare(self, job, path, timeout=60):
        self.start("prepare %d %s" % (job, path))
        return self.wait(job, timeout)

    def prepare_str(self, job, spec, timeout=60):
        self.start("prepare_str %d %s" % (job, spec))
        return self.wait(job, timeout)

    def encrypt(self, job, key, secret=SECRET, timeout=60):
        self.start("encrypt %d %d %s" % (job, key, secret))
        return self.wait(job, timeout, kind="enc")

    def new(self, url="-", allow_http=True, ca="-", proxy="-"):
        return self.cmd("new %s %d %s %s" % (url or "-", 1 if allow_http else 0,
                                             ca or "-", proxy or "-"))["rc"]

    def stderr(self):
        try:
            self._err.flush()
            return read(self.stderr_path, "r")
        except OSError:
            return ""

    def close(self, timeout=120):
        try:
            ev = self.cmd("quit", timeout)
            check(ev["ev"] == "bye", "driver quits")
        except (AssertionError, BrokenPipeError):
            pass
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._err.close()
        err = read(self.stderr_path, "r")
        if err:
            print("driver stderr:\n" + err, flush=True)
        return rc


# ----------------------------------------------------------------- checks --

def daemons_for(path):
    """gpg-agent, dirmngr, keyboxd (or anything) still running with path
    in its command line."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            argv = read("/proc/%s/cmdline" % pid).split(b"\0")
        except OSError:
            continue
        text = b" ".join(argv).decode(errors="replace")
        if path in text:
            found.append("%s: %s" % (pid, text))
    return found


def gpg_daemons_anywhere():
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            comm = read("/proc/%s/comm" % pid).decode().strip()
            argv = read("/proc/%s/cmdline" % pid).replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if comm in ("gpg-agent", "dirmngr", "keyboxd") and "ramkey-gpg-" in argv:
            out.append("%s: %s" % (pid, argv))
    return out


def check_clean(d, what, settle=2.0):
    """No GnuPG home left in the driver's TMPDIR, no process left."""
    deadline = time.monotonic() + settle
    while True:
        left = os.listdir(d.tmpdir)
        procs = daemons_for(d.tmpdir)
        if (not left and not procs) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    check(left == [], "%s: no temporary GnuPG home left (%s)" % (what, left))
    check(procs == [], "%s: no gpg-agent/dirmngr/gpg left (%s)" % (what, procs))


def decrypt(gh, b64):
    data = base64.b64decode(b64, validate=True)
    check(base64.b64encode(data).decode() == b64, "standard base64 with padding")
    check(data[0] & 0x80 != 0, "binary OpenPGP message, not armored")
    r = gpg(gh, "--decrypt", data=data)
    pk = gpg(gh, "--list-packets", data=data, check_rc=False).stdout.decode(errors="replace")
    check(":signature packet:" not in pk and ":onepass_sig packet:" not in pk,
          "message is not signed")
    check(":pubkey enc packet:" in pk, "message is public-key encrypted")
    return r.stdout


class Workdir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="pgpt-")
        self.gh = os.path.join(self.path, "gh")
        shutil.copytree(os.path.join(KEY_CACHE, "gnupghome"), self.gh)
        os.chmod(self.gh, 0o700)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        kill_agents(self.gh)
        shutil.rmtree(self.path, ignore_errors=True)


def wrapped_b64(path, width=64):
    s = base64.b64encode(read(path)).decode()
    return "\n".join(s[i:i + width] for i in range(0, len(s), width)) + "\n"


def write(wd, name, text):
    p = os.path.join(wd.path, name)
    with open(p, "w") as f:
        f.write(text)
    return p


# ------------------------------------------------------------------ tests --

VALID = ("rsa", "ed", "rsaprim")


def test_forms():
    """Every valid key in all three forms: prepared, primary fingerprint."""
    fprs = keys()
    with Workdir() as wd:
        kb = Keybase({n: read(key_file(n, "asc"), "r") for n in VALID})
        d = Driver(wd.path)
        try:
            check(d.new(kb.url) == 0, "worker created")
            job = 0
            for n in VALID:
                forms = {
                    "base64 (wrapped)": write(wd, n + ".b64", wrapped_b64(key_file(n, "bin"))),
                    "base64 (one line)": write(wd, n + ".b64l",
                                               base64.b64encode(read(key_file(n, "bin"))).decode()),
                    "armored": key_file(n, "asc"),
                }
                for form, path in forms.items():
                    job += 1
                    ev = d.prepare(job, path)
                    check(ev["rc"] == 0 and ev["key"], "%s %s: prepared" % (n, form))
                    check(ev["fpr"] == fprs[n], "%s %s: fingerprint %s" % (n, form, ev["fpr"]))
                    check_clean(d, "%s %s" % (n, form))
                job += 1
                ev = d.prepare_str(job, "keybase:" + n)
                check(ev["rc"] == 0 and ev["fpr"] == fprs[n], "%s keybase: prepared" % n)
                check_clean(d, "%s keybase" % n)
            req = kb.requests[-1]
            check(req["query"].get("usernames") == ["rsaprim"] and
                  req["query"].get("fields") == ["public_keys"], "lookup query as Terraform's")
            check((req["ua"] or "").startswith("ramkey/"), "User-Agent ramkey/")
            # surrounding whitespace is fine
            job += 1
            ev = d.prepare_str(job, "  keybase:rsa  ")
            check(ev["rc"] == 0, "keybase: with spaces around")
        finally:
            rc = d.close()
            kb.close()
        check(rc == 0, "driver exit status")
        check_clean(d, "end")


def test_encrypt():
    """Encrypt a known secret to each key; gpg decrypts exactly it."""
    fprs = keys()
    with Workdir() as wd:
        kb = Keybase({"ed": read(key_file("ed", "asc"), "r")})
        d = Driver(wd.path)
        try:
            check(d.new(kb.url) == 0, "worker created")
            for i, n in enumerate(VALID):
                k = 10 + i
                ev = d.prepare(k, key_file(n, "asc"))
                check(ev["rc"] == 0, "%s prepared" % n)
                ev = d.encrypt(20 + i, k)
                check(ev["rc"] == 0 and ev["why"] is None, "%s: encrypted" % n)
                check_clean(d, "%s encrypt" % n)
                check(decrypt(wd.gh, ev["b64"]) == SECRET.encode(),
                      "%s: gpg decrypts exactly the secret" % n)
            # a key prepared from keybase and from base64 encrypts too
            ev = d.prepare_str(30, "keybase:ed")
            check(ev["rc"] == 0 and ev["fpr"] == fprs["ed"], "keybase key prepared")
            ev = d.encrypt(31, 30, "x")
            check(ev["rc"] == 0 and decrypt(wd.gh, ev["b64"]) == b"x", "one-byte secret")
            ev = d.prepare(32, write(wd, "rsa.b64", wrapped_b64(key_file("rsa", "bin"))))
            check(ev["rc"] == 0, "base64 key prepared")
            # the same key object serves several encryptions
            for j in range(3):
                ev = d.encrypt(33 + j, 32)
                check(ev["rc"] == 0 and decrypt(wd.gh, ev["b64"]) == SECRET.encode(),
                      "base64 key: encryption %d" % j)
            # a freed key is no longer needed by a job already started
            d.start("encrypt 40 32 %s" % SECRET)
            d.cmd("freekey 32")
            ev = d.wait(40)
            check(ev["rc"] == 0 and decrypt(wd.gh, ev["b64"]) == SECRET.encode(),
                  "key freed while its job runs")
            # many jobs at once: all complete, in any order
            for j in range(8):
                d.start("encrypt %d %d %s" % (50 + j, 10 + j % 3, SECRET + str(j)))
            for j in range(8):
                ev = d.wait(50 + j)
                check(ev["rc"] == 0 and decrypt(wd.gh, ev["b64"]) == (SECRET + str(j)).encode(),
                      "concurrent job %d" % j)
        finally:
            rc = d.close()
            kb.close()
        check(rc == 0, "driver exit status")
        check_clean(d, "end")
        err = read(d.stderr_path, "r")
        check(SECRET not in err, "secret never on the driver's stderr")


def test_refuse():
    """Unusable keys are refused with RAMKEY_ERR_PGP_KEY and a distinct why."""
    keys()
    with Workdir() as wd:
        kb = Keybase({"revoked": read(key_file("revoked", "asc"), "r"),
                      "junk": (200, keybase_ok("this is no key"), 0)})
        d = Driver(wd.path)
        whys = {}
        try:
            check(d.new(kb.url) == 0, "worker created")
            cases = [
                ("expired", key_file("expired", "asc"), EXPIRED_WHY),
                ("expired (base64)", write(wd, "e.b64", wrapped_b64(key_file("expired", "bin"))),
                 EXPIRED_WHY),
                ("revoked", key_file("revoked", "asc"), REVOKED_WHY),
                ("revoked (base64)", write(wd, "r.b64", wrapped_b64(key_file("revoked", "bin"))),
                 REVOKED_WHY),
                ("sign-only", key_file("signonly", "asc"), SIGNONLY_WHY),
                ("sign-only (base64)", write(wd, "s.b64", wrapped_b64(key_file("signonly", "bin"))),
                 SIGNONLY_WHY),
                ("garbage", write(wd, "g1", "hello world, no key here"), GARBAGE_WHY),
                ("base64 garbage", write(wd, "g2", base64.b64encode(b"\x99" * 200).decode()),
                 GARBAGE_WHY),
                ("bad base64", write(wd, "g3", "AAAA*BBB"), GARBAGE_WHY),
                ("empty", write(wd, "g4", "   \n"), GARBAGE_WHY),
                ("armor, bad body", write(wd, "g5", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n"
                                                    "AAAA\n-----END PGP PUBLIC KEY BLOCK-----\n"),
                 GARBAGE_WHY),
                ("encryption subkey expired", key_file("subexpired", "asc"),
                 "the PGP key cannot encrypt (its encryption subkeys are expired or revoked)"),
                ("two keys", key_file("multi", "asc"),
                 "the key block holds 2 keys; give exactly one"),
                ("secret key", key_file("secret", "asc"),
                 "the key block holds a secret key; give the public key only"),
                ("too large", write(wd, "big", "A" * (256 * 1024 + 4)),
                 "the PGP key is larger than 256 KiB"),
            ]
            for i, (what, path, want) in enumerate(cases):
                ev = d.prepare(i, path)
                check(ev["rc"] == RC_PGP_KEY, "%s: refused as pgp_key (%s)" % (what, ev["rc"]))
                check(ev["why"] == want, "%s: why %r" % (what, ev["why"]))
                check(not ev["key"], "%s: no key" % what)
                check_clean(d, what)
                whys[what] = ev["why"]
            four = {whys["expired"], whys["revoked"], whys["sign-only"], whys["garbage"]}
            check(len(four) == 4, "expired, revoked, sign-only, garbage: four distinct reasons")
            ev = d.prepare_str(50, "keybase:revoked")
            check(ev["rc"] == RC_PGP_KEY and ev["why"] == REVOKED_WHY, "revoked key from Keybase")
            ev = d.prepare_str(51, "keybase:junk")
            check(ev["rc"] == RC_PGP_KEY and ev["why"] == GARBAGE_WHY, "no key in the bundle")
            for j, bad in enumerate(("keybase:", "keybase:a-b", "keybase:a&x=1", "keybase:" + "a" * 65,
                                     "keybase:al ice")):
                ev = d.prepare_str(60 + j, bad)
                check(ev["rc"] == RC_PGP_KEY and "invalid Keybase user name" in ev["why"],
                      "%r refused before any lookup" % bad)
            check(not any("a-b" in str(r["query"]) for r in kb.requests), "no lookup for bad names")
        finally:
            rc = d.close()
            kb.close()
        check(rc == 0, "driver exit status")
        check_clean(d, "end")


def test_keybase():
    """Keybase answers: unknown user, down, HTTP errors, garbage, TLS,
    http:// policy, proxy, reconfiguration."""
    fprs = keys()
    rsa = read(key_file("rsa", "asc"), "r")
    users = {
        "alice": rsa,
        "nobody": (200, b'{"status":{"code":0,"name":"OK"},"them":[null]}', 0),
        "empty": (200, b'{"status":{"code":0,"name":"OK"},"them":[]}', 0),
        "nokey": (200, b'{"status":{"code":0,"name":"OK"},"them":[{"id":"x","basics":{}}]}', 0),
        "err500": (500, b"internal error", 0),
        "garbage": (200, b"<html>hello</html>", 0),
        "inputerr": (200, b'{"status":{"code":100,"name":"INPUT_ERROR"}}', 0),
        "big": (200, b'{"status":{"code":0,"name":"OK"},"pad":"' + b"x" * (300 * 1024) + b'"}', 0),
    }
    with Workdir() as wd:
        kb = Keybase(users)
        d = Driver(wd.path)
        try:
            check(d.new(kb.url) == 0, "worker created")
            expect = [
                ("nobody", RC_KEYBASE_USER, "Keybase user nobody not found"),
                ("empty", RC_KEYBASE_USER, "Keybase user empty not found"),
                ("ghost", RC_KEYBASE_USER, "Keybase user ghost not found"),   # NOT_FOUND, 404
                ("nokey", RC_KEYBASE_USER, "Keybase user nokey has no PGP key"),
                ("err500", RC_KEYBASE, "Keybase answered HTTP 500"),
                ("garbage", RC_KEYBASE, "Keybase answered something that is not a lookup reply"),
                ("inputerr", RC_KEYBASE, "Keybase refused the lookup (INPUT_ERROR)"),
                ("big", RC_KEYBASE, "Keybase answered more than 256 KiB"),
            ]
            for i, (name, rc, why) in enumerate(expect):
                ev = d.prepare_str(i, "keybase:" + name)
                check(ev["rc"] == rc and ev["why"] == why, "keybase:%s -> %s %r" % (name, rc, ev["why"]))
                check_clean(d, "keybase:" + name)
            ev = d.prepare_str(20, "keybase:alice")
            check(ev["rc"] == 0 and ev["fpr"] == fprs["rsa"], "keybase:alice")
            # server down
            port = kb.port
            kb.close()
            ev = d.prepare_str(21, "keybase:alice")
            check(ev["rc"] == RC_KEYBASE and ev["why"].startswith("Keybase unreachable: "),
                  "server down -> keybase error (%r)" % ev["why"])
            # http:// needs allow_http; the url must be plain
            check(d.new("http://127.0.0.1:%d" % port, allow_http=False) == RC_CONFIG,
                  "http:// refused without allow_http")
            check(d.new("https://127.0.0.1:1/?x=1") == RC_CONFIG, "query in url refused")
            check(d.new("ftp://127.0.0.1/") == RC_CONFIG, "ftp:// refused")
            check(d.new("-", ca=os.path.join(wd.path, "missing.pem")) == RC_CONFIG,
                  "unreadable ca_file refused")
            # HTTPS: verified against ca_file; never without it
            ca, ctx = tls_context()
            kbs = Keybase({"alice": rsa}, tls=ctx)
            try:
                check(d.new(kbs.url, allow_http=False, ca=ca) == 0, "https worker with ca_file")
                ev = d.prepare_str(30, "keybase:alice")
                check(ev["rc"] == 0 and ev["fpr"] == fprs["rsa"], "https lookup verified by ca_file")
                check(d.new(kbs.url + "/", allow_http=False) == 0, "https worker without ca_file")
                ev = d.prepare_str(31, "keybase:alice")
                check(ev["rc"] == RC_KEYBASE and "Keybase unreachable" in ev["why"],
                      "unknown CA refused (%r)" % ev["why"])
                # reconfigure: the next lookups use the new settings
                check(d.cmd("reconf %s 0 %s -" % (kbs.url, ca))["rc"] == 0, "reconfigured")
                ev = d.prepare_str(32, "keybase:alice")
                check(ev["rc"] == 0, "lookup after reconfiguration")
                check(d.cmd("reconf http://127.0.0.1:1 0 - -")["rc"] == RC_CONFIG,
                      "reconfigure refuses http:// without allow_http")
                ev = d.prepare_str(33, "keybase:alice")
                check(ev["rc"] == 0, "a refused reconfiguration keeps the old settings")
            finally:
                kbs.close()
            # the proxy setting is honoured: the lookup for an unresolvable
            # host goes to the proxy, which answers it itself
            proxy = Keybase({"alice": rsa})
            try:
                check(d.new("http://keybase.invalid", proxy="http://127.0.0.1:%d" % proxy.port) == 0,
                      "worker with a proxy")
                ev = d.prepare_str(40, "keybase:alice")
                check(ev["rc"] == 0, "lookup through the proxy")
                check(proxy.requests[-1]["absolute"] and
                      proxy.requests[-1]["host"] == "keybase.invalid", "the proxy got the request")
            finally:
                proxy.close()
            # a base URL with a path prefix and trailing slash
            kbp = Keybase({"alice": rsa})
            try:
                check(d.new(kbp.url + "/") == 0, "url with a trailing slash")
                ev = d.prepare_str(41, "keybase:alice")
                check(ev["rc"] == 0 and kbp.requests[-1]["path"] == "/_/api/1.0/user/lookup.json",
                      "no double slash in the lookup path")
            finally:
                kbp.close()
        finally:
            rc = d.close()
        check(rc == 0, "driver exit status")
        check_clean(d, "end")


def test_cleanup():
    """No GnuPG home and no gpg-agent/dirmngr after any job; gpg-agent,
    dirmngr and keyboxd are never even started (strace)."""
    keys()
    with Workdir() as wd:
        trace = os.path.join(wd.path, "strace.out")
        wrapper = ()
        if os.environ.get("RAMKEY_SANITIZED") == "1":
            print("note: sanitized build (LeakSanitizer does not run under strace); "
                  "checking leftovers only", flush=True)
        elif shutil.which("strace"):
            wrapper = ("strace", "-f", "-qq", "-e", "trace=execve,rt_sigprocmask",
                       "-o", trace)
        else:
            print("note: strace not installed; checking leftovers only", flush=True)
        d = Driver(wd.path, wrapper=wrapper)
        try:
            check(d.new() == 0, "worker created")
            ev = d.prepare(1, key_file("ed", "asc"))
            check(ev["rc"] == 0, "prepared")
            check_clean(d, "after prepare")
            ev = d.encrypt(2, 1)
            check(ev["rc"] == 0 and decrypt(wd.gh, ev["b64"]) == SECRET.encode(), "encrypted")
            check_clean(d, "after encrypt")
            for i, n in enumerate(("expired", "revoked", "signonly", "multi", "secret")):
                ev = d.prepare(10 + i, key_file(n, "asc"))
                check(ev["rc"] == RC_PGP_KEY, "%s refused" % n)
                check_clean(d, "after %s" % n)
            ev = d.prepare(20, write(wd, "junk", "junk"))
            check_clean(d, "after garbage")
        finally:
            rc = d.close()
        check(rc == 0, "driver exit status")
        check_clean(d, "end")
        check(gpg_daemons_anywhere() == [], "no daemon with a ramkey GnuPG home anywhere")
        if wrapper:
            progs = [os.path.basename(m.group(1)) for m in
                     re.finditer(r'execve\("([^"]*)"', read(trace, "r"))]
            check("gpg" in progs, "gpg did run (%d programs run)" % len(progs))
            bad = [p for p in progs if p in ("gpg-agent", "dirmngr", "keyboxd")]
            check(bad == [], "gpg-agent, dirmngr, keyboxd never started (%s)" % bad)
            print("programs run: %s" % sorted(set(progs)), flush=True)
            # gpg starts with an empty signal mask, although the worker
            # thread that spawns it blocks every signal
            emptied, unmasked = set(), []
            for line in read(trace, "r").splitlines():
                pid = line.split(" ", 1)[0]
                if "rt_sigprocmask(SIG_SETMASK, [], " in line:
                    emptied.add(pid)
                m = re.search(r'execve\("([^"]*)"', line)
                # the worker's runs (the engine check runs on the loop)
                if m and os.path.basename(m.group(1)) == "gpg" and "--homedir" in line:
                    unmasked.append(pid in emptied)
            check(unmasked and all(unmasked),
                  "every gpg starts with no signal blocked (%d runs)" % len(unmasked))


def test_cancel():
    """Cancelled jobs never call back, in every state; freeing the worker
    drops pending jobs; freeing it from a callback works."""
    keys()
    rsa = read(key_file("rsa", "asc"), "r")
    with Workdir() as wd:
        kb = Keybase({"slow": (200, keybase_ok(rsa), 2.0), "alice": rsa})
        d = Driver(wd.path)
        try:
            check(d.new(kb.url) == 0, "worker created")
            asc = key_file("rsa", "asc")
            # during the Keybase lookup
            d.start("prepare_str 1 keybase:slow")
            time.sleep(0.3)
            d.cmd("cancel 1")
            # queued or running (several at once, some cancelled at once)
            for j in range(2, 8):
                d.start("prepare %d %s" % (j, asc))
            for j in (2, 4, 6):
                d.cmd("cancel %d" % j)
            d.start("prepare_cancel 8 %s" % asc)
            # finished but not yet delivered: the loop is blocked meanwhile
            d.start("prepare_block_cancel 9 %s 1500" % asc)
            for j in (3, 5, 7):
                check(d.wait(j)["rc"] == 0, "job %d not cancelled completes" % j)
            got = d.quiet(2.5)       # past the slow server's answer
            stray = [e for e in d.events if e.get("id") in (1, 2, 4, 6, 8, 9)]
            check(stray == [], "no callback for a cancelled job (%s)" % stray)
            check(got == [], "nothing else arrives")
            check_clean(d, "after cancellations")
            # encrypt: cancelled right away
            ev = d.prepare(10, asc)
            check(ev["rc"] == 0, "key prepared")
            d.start("encrypt 11 10 %s" % SECRET)
            d.cmd("cancel 11")
            check(d.quiet(1.0) == [], "cancelled encryption never calls back")
            # free the worker with jobs everywhere: no callbacks, no leftovers
            d.start("prepare_str 12 keybase:slow")
            for j in range(13, 17):
                d.start("prepare %d %s" % (j, asc))
            d.start("encrypt 17 10 %s" % SECRET)
            ev = d.cmd("free")
            check(ev["ev"] == "freed", "worker freed with jobs pending")
            check(d.quiet(1.0) == [], "no callback after pgp_worker_free")
            check_clean(d, "after free")
            # a new worker works; freeing it from inside a callback too
            check(d.new(kb.url) == 0, "new worker")
            d.start("prepare 20 %s" % asc)
            d.start("prepare_free 21 %s" % asc)
            d.start("prepare 22 %s" % asc)
            ev = d.wait(20)
            check(ev["rc"] == 0, "job before the freeing one completes")
            ev = d.wait(21)
            check(ev["rc"] == 0, "the freeing job calls back")
            d.quiet(1.0)
            check(any(e["ev"] == "freed_in_callback" for e in d.events), "freed in its callback")
            check(not any(e.get("id") == 22 and e["ev"] == "key" for e in d.events),
                  "the job after it never calls back")
            check_clean(d, "after free in callback")
            check(d.new(kb.url) == 0, "and a new worker again")
            ev = d.prepare_str(23, "keybase:alice")
            check(ev["rc"] == 0, "works")
        finally:
            rc = d.close()
            kb.close()
        check(rc == 0, "driver exit status")
        check_clean(d, "end")


def rw_memory_hits(pid, needle):
    """Where needle is in the process's writable memory."""
    hits = []
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            f = line.split()
            if "w" not in f[1] or "r" not in f[1]:
                continue
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            i = data.find(needle)
            while i >= 0:
                hits.append("%s +%d" % (line.strip(), i))
                i = data.find(needle, i + 1)
    return hits


def test_secret_wiped():
    """After an encryption no copy of the secret is left in the process
    (GPGME's buffers and the job's copy are wiped). Best effort: freed
    memory that was not wiped may also have been reused since."""
    if os.environ.get("RAMKEY_SANITIZED") == "1":
        print("skipped: sanitized build (ASan keeps freed memory in quarantine "
              "and maps terabytes of shadow)")
        sys.exit(SKIP)
    keys()
    secret = "W1p3dS3cr3t" + base64.b32encode(os.urandom(10)).decode()
    with Workdir() as wd:
        d = Driver(wd.path)
        try:
            check(d.new() == 0, "worker created")
            check(d.prepare(1, key_file("ed", "asc"))["rc"] == 0, "prepared")
            for i in range(3):
                ev = d.encrypt(2 + i, 1, secret)
                check(ev["rc"] == 0 and decrypt(wd.gh, ev["b64"]) == secret.encode(),
                      "encryption %d" % i)
            try:
                hits = rw_memory_hits(d.proc.pid, secret.encode())
            except PermissionError:
                print("skipped: cannot read the driver's memory here")
                d.close()
                sys.exit(SKIP)
            check(hits == [], "no copy of the secret in memory (%s)" % hits[:3])
        finally:
            rc = d.close()
        check(rc == 0, "driver exit status")
        check_clean(d, "end")


def test_nonblocking():
    """A Keybase server that answers after 3 s does not stall the loop:
    the 50 ms ticker keeps running and other jobs complete meanwhile."""
    fprs = keys()
    rsa = read(key_file("rsa", "asc"), "r")
    with Workdir() as wd:
        kb = Keybase({"slow": (200, keybase_ok(rsa), 3.0)})
        d = Driver(wd.path)
        try:
            check(d.new(kb.url) == 0, "worker created")
            d.cmd("ticks_reset")
            t0 = time.monotonic()
            d.start("prepare_str 1 keybase:slow")
            ev = d.prepare(2, key_file("ed", "asc"))
            check(ev["rc"] == 0, "a local key is prepared meanwhile")
            ev = d.encrypt(3, 2)
            check(ev["rc"] == 0, "and encrypted to meanwhile")
            check(time.monotonic() - t0 < 2.5, "both before Keybase answers")
            ev = d.wait(1, 30)
            took = time.monotonic() - t0
            check(ev["rc"] == 0 and ev["fpr"] == fprs["rsa"], "slow lookup succeeds")
            check(2.8 <= took < 6, "it took the server's 3 s (%.2f s)" % took)
            t = d.cmd("ticks")
            check(t["n"] >= 40, "ticker fired %d times in %.1f s" % (t["n"], took))
            check(t["max_gap"] < 500, "longest loop stall %d ms" % t["max_gap"])
        finally:
            rc = d.close()
            kb.close()
        check(rc == 0, "driver exit status")
        check_clean(d, "end")


def test_keybase_timeout():
    """A Keybase server that never answers fails after 10 s."""
    keys()
    rsa = read(key_file("rsa", "asc"), "r")
    with Workdir() as wd:
        kb = Keybase({"stuck": (200, keybase_ok(rsa), 15.0)})
        d = Driver(wd.path)
        try:
            check(d.new(kb.url) == 0, "worker created")
            d.cmd("ticks_reset")
            t0 = time.monotonic()
            d.start("prepare_str 1 keybase:stuck")
            ev = d.wait(1, 30)
            took = time.monotonic() - t0
            check(ev["rc"] == RC_KEYBASE and ev["why"] == "Keybase did not answer within 10 seconds",
                  "timeout -> keybase error (%r)" % ev["why"])
            check(9.5 <= took < 12, "after 10 s (%.2f s)" % took)
            t = d.cmd("ticks")
            check(t["max_gap"] < 500, "loop never stalled (%d ms)" % t["max_gap"])
        finally:
            rc = d.close()
            kb.close()
        check(rc == 0, "driver exit status")
        check_clean(d, "end")


def test_valgrind():
    """The GPGME and Keybase paths under valgrind: no error, no leak."""
    if os.environ.get("RAMKEY_SANITIZED") == "1":
        print("skipped: sanitized build (ASan and valgrind do not mix)")
        sys.exit(SKIP)
    if not shutil.which("valgrind"):
        print("skipped: valgrind not installed")
        sys.exit(SKIP)
    keys()
    rsa = read(key_file("rsa", "asc"), "r")
    with Workdir() as wd:
        log = os.path.join(wd.path, "valgrind.log")
        vg = ["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect",
              "--show-leak-kinds=definite,indirect", "--error-exitcode=1",
              "--track-fds=no", "--child-silent-after-fork=yes", "--quiet",
              "--log-file=" + log]
        kb = Keybase({"alice": rsa, "nobody": (200, b'{"status":{"name":"OK"},"them":[null]}', 0),
                      "slow": (200, keybase_ok(rsa), 2.0)})
        d = Driver(wd.path, wrapper=vg)
        try:
            check(d.new(kb.url) == 0, "worker created")
            T = 300
            ev = d.prepare(1, key_file("ed", "asc"), T)
            check(ev["rc"] == 0, "prepared")
            ev = d.encrypt(2, 1, timeout=T)
            check(ev["rc"] == 0 and decrypt(wd.gh, ev["b64"]) == SECRET.encode(), "encrypted")
            ev = d.prepare(3, write(wd, "r.b64", wrapped_b64(key_file("rsa", "bin"))), T)
            check(ev["rc"] == 0, "base64 prepared")
            ev = d.encrypt(4, 3, timeout=T)
            check(ev["rc"] == 0, "encrypted")
            ev = d.prepare_str(5, "keybase:alice", T)
            check(ev["rc"] == 0, "keybase prepared")
            ev = d.prepare_str(6, "keybase:nobody", T)
            check(ev["rc"] == RC_KEYBASE_USER, "keybase user missing")
            for i, n in enumerate(("expired", "revoked", "signonly", "multi", "secret")):
                ev = d.prepare(10 + i, key_file(n, "asc"), T)
                check(ev["rc"] == RC_PGP_KEY, "%s refused" % n)
            ev = d.prepare(20, write(wd, "junk", "junk"), T)
            check(ev["rc"] == RC_PGP_KEY, "garbage refused")
            # cancellations and a free with everything pending
            d.start("prepare_str 21 keybase:slow")
            d.cmd("cancel 21")
            d.start("prepare 22 %s" % key_file("rsa", "asc"))
            d.start("encrypt 23 1 %s" % SECRET)
            d.cmd("cancel 23")
            d.wait(22, T)
            d.start("prepare_str 24 keybase:slow")
            d.start("prepare 25 %s" % key_file("rsa", "asc"))
            d.start("encrypt 26 1 %s" % SECRET)
            d.cmd("free")
            check(d.new(kb.url) == 0, "new worker")
            d.start("prepare_free 27 %s" % key_file("ed", "asc"))
            d.start("prepare 28 %s" % key_file("ed", "asc"))
            d.wait(27, T)
            check(d.new(kb.url) == 0, "new worker")
            kb.close()
            ev = d.prepare_str(29, "keybase:alice", T)
            check(ev["rc"] == RC_KEYBASE, "server down")
        finally:
            rc = d.close(600)
        report = read(log, "r")
        print(report, flush=True)
        check(rc == 0, "valgrind reports no error and no leak")
        check_clean(d, "end")


TESTS = {
    "forms": test_forms,
    "encrypt": test_encrypt,
    "refuse": test_refuse,
    "keybase": test_keybase,
    "cleanup": test_cleanup,
    "cancel": test_cancel,
    "secret_wiped": test_secret_wiped,
    "nonblocking": test_nonblocking,
    "keybase_timeout": test_keybase_timeout,
    "valgrind": test_valgrind,
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in TESTS:
        sys.exit("usage: %s {%s}" % (sys.argv[0], "|".join(TESTS)))
    if not os.access(DRIVER, os.X_OK):
        sys.exit("pgp_driver not found at %s (set RAMKEY_BUILD_DIR)" % DRIVER)
    if not shutil.which("gpg") or not shutil.which("gpgconf"):
        sys.exit("gpg and gpgconf are needed (package gnupg)")
    TESTS[sys.argv[1]]()
    print("PASS pgp.%s" % sys.argv[1])


if __name__ == "__main__":
    main()
