#!/usr/bin/env python3
"""End-to-end tests of PGP-encrypted secrets (README, "PGP-encrypted secrets")
through the real ramkey-agent, the real ramkey-agent-client and the real
pam_ramkey.so, against the RAM emulator over HTTPS.

Throwaway OpenPGP keys are made with `gpg --batch` once per build tree
(tests/pgp/test_pgp.py's generate_keys: RSA with an encryption subkey,
ed25519 with a cv25519 encryption subkey, expired, revoked, sign-only).
`keybase:NAME` is served by a local Keybase-shaped HTTP server (test_pgp's
Keybase class); the agent's keybase_url points at it (allow_http = yes).
Every secret file is decrypted with `base64 -d | gpg --decrypt` in a
temporary GNUPGHOME and compared with the secret the emulator holds.

The agent always runs with TMPDIR set to a directory of the test's own,
which must be empty after every request (its per-request GnuPG homes are
gone), failed requests included.

Usage: test_pgp_e2e.py BEHAVIOUR      (one ctest test per behaviour)
"""

import base64
import contextlib
import fcntl
import importlib.util
import json
import os
import re
import select
import shutil
import stat
import subprocess
import sys
import tempfile
import time

from emulator import Emulator
from ramkey_fixture import (AGENT_BIN, BUILD_DIR, CLIENT_BIN, PAM_MODULE, SANITIZED,
                            SOURCE_DIR, Agent, Users, Workdir, wait_for)

SKIP = 77
KEY_CACHE = os.path.join(BUILD_DIR, "tests", "pgp_e2e", "keys")
PAM_DRIVER = os.path.join(BUILD_DIR, "tests", "pam", "pam_session_driver")
JSON_PGP_FIELDS = {"AccessKeyId", "EncryptedSecret", "KeyFingerprint",
                   "CreateDate", "Status"}

# Helpers shared with the PGP module's own tests (keys, Keybase server).
_spec = importlib.util.spec_from_file_location(
    "test_pgp", os.path.join(SOURCE_DIR, "tests", "pgp", "test_pgp.py"))
pgpt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pgpt)
Keybase = pgpt.Keybase
keybase_ok = pgpt.keybase_ok
EXPIRED_WHY = pgpt.EXPIRED_WHY
REVOKED_WHY = pgpt.REVOKED_WHY
SIGNONLY_WHY = pgpt.SIGNONLY_WHY
GARBAGE_WHY = pgpt.GARBAGE_WHY


def log(msg):
    print(msg, flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    log("ok: " + what)


def expect_eq(got, want, what):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, got, want))
    log("ok: %s (%r)" % (what, got))


# ------------------------------------------------------------------ keys --

def keys():
    """The key set, generated once per build tree under a lock:
    KEY_CACHE/NAME.{bin,asc}, keys.json, gnupghome/ (private keys)."""
    os.makedirs(os.path.dirname(KEY_CACHE), exist_ok=True)
    with open(KEY_CACHE + ".lock", "a") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(KEY_CACHE, "keys.json")):
            t0 = time.monotonic()
            pgpt.generate_keys(KEY_CACHE)
            log("generated throwaway keys with gpg --batch in %.1f s"
                % (time.monotonic() - t0))
    with open(os.path.join(KEY_CACHE, "keys.json")) as f:
        return json.load(f)


def key_path(name, ext):
    return os.path.join(KEY_CACHE, name + "." + ext)


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


class GnuPG:
    """A temporary GNUPGHOME holding the private keys (to decrypt)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pgpe2e-gh-")
        self.home = os.path.join(self.dir, "h")
        shutil.copytree(os.path.join(KEY_CACHE, "gnupghome"), self.home)
        os.chmod(self.home, 0o700)

    def env(self):
        e = {"PATH": "/usr/bin:/bin", "GNUPGHOME": self.home}
        return e

    def primary_fpr(self, key_file):
        """The primary key's fingerprint as `gpg --with-colons` shows it."""
        r = subprocess.run(["gpg", "--batch", "--with-colons", "--show-keys",
                            key_file], env=self.env(), capture_output=True,
                           text=True, check=True)
        lines = r.stdout.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("pub:"):
                for nxt in lines[i + 1:]:
                    if nxt.startswith("fpr:"):
                        return nxt.split(":")[9].lower()
        raise AssertionError("no primary key in %s" % key_file)

    def decrypt(self, b64):
        """`base64 -d | gpg --decrypt` of an EncryptedSecret."""
        r = subprocess.run(["sh", "-c", "base64 -d | gpg --batch --quiet "
                            "--pinentry-mode loopback --passphrase '' --decrypt"],
                           input=b64.encode(), env=self.env(), capture_output=True,
                           timeout=60)
        if r.returncode != 0:
            raise AssertionError("gpg --decrypt failed (%d): %s"
                                 % (r.returncode, r.stderr.decode(errors="replace")))
        return r.stdout.decode()

    def cleanup(self):
        subprocess.run(["gpgconf", "--homedir", self.home, "--kill", "all"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------ the set-up --

class VgAgent(Agent):
    """The real agent, optionally under a wrapper (valgrind)."""

    wrapper = ()

    def start(self, wait=True, args=(), env=None, ready_timeout=15.0):
        assert self.proc is None or self.proc.poll() is not None
        logf = open(self.log_path, "a")
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("ALIBABA_CLOUD_") or k.lower() in (
                    "http_proxy", "https_proxy", "all_proxy", "no_proxy"):
                del e[k]
        e.pop("GNUPGHOME", None)
        if env:
            e.update(env)
        self.proc = subprocess.Popen(
            list(self.wrapper) + [AGENT_BIN, "-f", "-c", self.conf_path] + list(args),
            stdout=logf, stderr=logf, env=e, start_new_session=True)
        logf.close()
        if wait:
            self.wait_ready(ready_timeout)
        return self.proc


class Ctx:
    """Emulator, Keybase server, agent (own TMPDIR), users, GNUPGHOME;
    close() stops and removes all of it."""

    def __init__(self, code, kb_users=None, **conf):
        self.stack = contextlib.ExitStack()
        try:
            self.fprs = keys()
            self.wd = Workdir(prefix="ramkey-pgpe2e-")
            self.stack.callback(self.wd.cleanup)
            self.users = Users(code)
            self.stack.callback(self.users.cleanup)
            self.gpg = GnuPG()
            self.stack.callback(self.gpg.cleanup)
            # Key files every test user can read (for --pgp-key @FILE).
            self.keydir = self.wd.join("keys")
            os.makedirs(self.keydir)
            os.chmod(self.keydir, 0o755)
            self.emu = Emulator(https=True, auto_users=True, shell_secrets=True)
            self.stack.callback(self.emu.stop)
            self.kb = Keybase(kb_users or {})
            self.kb_up = True
            self.stack.callback(self.close_keybase)
            self.tmpdir = self.wd.join("agent-tmp")
            os.makedirs(self.tmpdir)
            os.chmod(self.tmpdir, 0o700)
            conf.setdefault("mint_rate", "1000/h")
            conf.setdefault("keybase_url", self.kb.url)
            conf.setdefault("allow_http", "yes")
            self.agent = VgAgent(self.wd, self.emu, **conf)
            self.stack.callback(self._stop_agent)
            self.agent_status = None
        except BaseException:
            self.stack.close()
            raise

    def close(self):
        self.stack.close()

    def close_keybase(self):
        if self.kb_up:
            self.kb_up = False
            self.kb.close()

    def start_agent(self, ready_timeout=15.0):
        self.agent.start(env={"TMPDIR": self.tmpdir}, ready_timeout=ready_timeout)

    def _stop_agent(self):
        try:
            if self.agent_status is None and self.agent.proc is not None:
                self.agent_status = self.agent.stop(60)
        finally:
            self.agent.kill()
            log("---- agent log (exit status %s) ----\n%s---- end of agent log ----"
                % (self.agent_status, self.agent.log()))

    # -- helpers --

    def key_file(self, name, ext, content=None):
        """A copy of a key (or given content) other users can read."""
        p = os.path.join(self.keydir, "%s.%s" % (name, ext))
        with open(p, "wb") as f:
            f.write(content if content is not None else read(key_path(name, ext)))
        os.chmod(p, 0o644)
        return p

    def b64_key(self, name):
        return base64.b64encode(read(key_path(name, "bin"))).decode()

    def creates(self):
        return self.emu.counters()["calls"].get("CreateAccessKey", 0)

    def tmp_empty(self, what):
        left = os.listdir(self.tmpdir)
        check(left == [], "%s: the agent's TMPDIR is empty (%s)" % (what, left))
        procs = pgpt.daemons_for(self.tmpdir)
        check(procs == [], "%s: no gpg process left for it (%s)" % (what, procs))

    def fetch(self, pw, *args, as_user=False, timeout=60):
        argv = ["fetch"] + list(args)
        if as_user:
            r = self.agent.client(*argv, user=pw, timeout=timeout)
        else:
            r = self.agent.client(*(argv[:1] + ["--user", pw.pw_name] + argv[1:]),
                                  timeout=timeout)
        log("  fetch %s%s -> %d: %s%s" % (
            pw.pw_name, " (as the user)" if as_user else " (as root)", r.returncode,
            r.stdout.strip(), (" | " + r.stderr.strip()) if r.stderr.strip() else ""))
        return r

    def check_pgp_file(self, pw, path, fpr, what):
        """The secret_file of a PGP fetch: fields, owner, mode, no plaintext,
        decrypts to the emulator's secret, KeyFingerprint. Returns the key id."""
        st = os.lstat(path)
        check(stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and
              (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid),
              "%s: the file is a regular 0600 file of the user" % what)
        with open(path) as f:
            doc = json.load(f)
        expect_eq(set(doc), JSON_PGP_FIELDS, "%s: json fields" % what)
        kid = doc["AccessKeyId"]
        key = self.emu.key(kid)
        check(key is not None and key["Status"] == "Active",
              "%s: %s is an Active key at RAM" % (what, kid))
        check(kid in [k["AccessKeyId"] for k in self.emu.keys_of(pw.pw_name)],
              "%s: the key belongs to RAM user %s" % (what, pw.pw_name))
        secret = key["AccessKeySecret"]
        g = subprocess.run(["grep", "-F", "-q", "--", secret, path])
        check(g.returncode == 1, "%s: grep finds no plaintext secret in the file" % what)
        check(secret not in read(path, "r"), "%s: no plaintext secret in the file" % what)
        raw = base64.b64decode(doc["EncryptedSecret"], validate=True)
        check(raw[0] & 0x80 != 0, "%s: EncryptedSecret is a binary OpenPGP message" % what)
        expect_eq(self.gpg.decrypt(doc["EncryptedSecret"]), secret,
                  "%s: base64 -d | gpg --decrypt gives the emulator's secret" % what)
        expect_eq(doc["KeyFingerprint"], fpr,
                  "%s: KeyFingerprint is the primary key's (gpg --with-colons)" % what)
        return kid

    def status_fpr(self, pw, kid):
        st = self.agent.status(pw.pw_name)
        fprs = [l.get("key_fingerprint") for l in st["leases"]
                if l["user"] == pw.pw_name and
                l["access_key_id"][:4] == kid[:4] and l["access_key_id"][-4:] == kid[-4:]]
        check(len(fprs) == 1, "status --json lists the lease of %s" % pw.pw_name)
        return fprs[0]


def one_line(stderr):
    lines = [l for l in stderr.splitlines() if l.strip()]
    return lines[0] if len(lines) == 1 else None


# ------------------------------------------------------------------ tests --

def test_forms(ctx):
    """RSA and Curve25519 keys, each in the three input forms, fetched as
    root (--user) and as the user itself; decrypted and compared."""
    fp = ctx.gpg.primary_fpr
    cases = [("rsa", "rsa"), ("cv", "ed")]       # user suffix, key name
    ctx.start_agent()
    for suffix, key in cases:
        pw = ctx.users.add(suffix)
        asc = ctx.key_file(key, "asc")
        fpr = fp(asc)
        check(re.fullmatch(r"[0-9a-f]{40}", fpr) is not None, "%s: fingerprint %s" % (key, fpr))
        expect_eq(fp(ctx.key_file(key, "bin")), fpr, "%s: same fingerprint from the binary key"
                  % key)
        forms = [("base64", ctx.b64_key(key)), ("armored", "@" + asc),
                 ("keybase", "keybase:kb" + key)]
        kid0 = None
        for form, spec in forms:
            for as_user in (False, True):
                what = "%s %s %s" % (key, form, "as user" if as_user else "as root")
                path = os.path.join(pw.pw_dir, "%s-%s.json" % (form, "u" if as_user else "r"))
                before = ctx.creates()
                r = ctx.fetch(pw, "--pgp-key", spec, "--secret-file", path, as_user=as_user)
                expect_eq(r.returncode, 0, "%s: exit status (%s)" % (what, r.stderr.strip()))
                check("PGP-encrypted" in r.stdout and path in r.stdout,
                      "%s: the client says where it wrote, PGP-encrypted" % what)
                ctx.tmp_empty(what)
                kid = ctx.check_pgp_file(pw, path, fpr, what)
                if kid0 is None:
                    kid0 = kid
                    expect_eq(ctx.creates(), before + 1, "%s: one CreateAccessKey" % what)
                else:
                    expect_eq(kid, kid0, "%s: the lease's key again" % what)
                    expect_eq(ctx.creates(), before, "%s: no new CreateAccessKey" % what)
                expect_eq(ctx.status_fpr(pw, kid), fpr,
                          "%s: status --json key_fingerprint" % what)
        # The client's own status output as the user shows the fingerprint too.
        r = ctx.agent.client("status", "--json", user=pw)
        expect_eq(r.returncode, 0, "status --json as the user")
        doc = json.loads(r.stdout)
        expect_eq([l["key_fingerprint"] for l in doc["leases"]], [fpr],
                  "status --json (as %s) key_fingerprint" % pw.pw_name)
    names = {tuple(q["query"].get("usernames", ())) for q in ctx.kb.requests
             if q["path"] == "/_/api/1.0/user/lookup.json"}
    expect_eq(names, {("kbrsa",), ("kbed",)}, "the names the local Keybase server was asked for")


def test_formats_refused(ctx):
    """--format ini/env/cli with --pgp-key: exit 2, a message saying why,
    nothing minted, nothing written."""
    ctx.start_agent()
    pw = ctx.users.add("fmt")
    asc = ctx.key_file("ed", "asc")
    for fmt in ("ini", "env", "cli"):
        for spec in ("@" + asc, ctx.b64_key("ed"), "keybase:kbed"):
            for as_user in (False, True):
                what = "--format %s --pgp-key %s %s" % (fmt, spec[:12],
                                                         "as user" if as_user else "as root")
                path = os.path.join(pw.pw_dir, "f-" + fmt)
                r = ctx.fetch(pw, "--format", fmt, "--pgp-key", spec, "--secret-file", path,
                              as_user=as_user)
                expect_eq(r.returncode, 2, "%s: exit status" % what)
                line = one_line(r.stderr)
                check(line is not None and fmt in line and "json" in line and
                      "plaintext" in line, "%s: one line saying why (%r)" % (what, r.stderr))
                check(not os.path.lexists(path), "%s: no file written" % what)
    expect_eq(ctx.creates(), 0, "no CreateAccessKey")
    expect_eq(ctx.kb.requests, [], "no Keybase lookup")
    ctx.tmp_empty("after the refused formats")


def test_keybase(ctx):
    """keybase:alice works; keybase:nobody is exit 2 and the server down
    exit 5, both before any CreateAccessKey."""
    ctx.start_agent()
    alice = ctx.users.add("alice")
    bob = ctx.users.add("bob")
    fpr = ctx.gpg.primary_fpr(ctx.key_file("rsa", "asc"))
    path = os.path.join(alice.pw_dir, "k.json")
    r = ctx.fetch(alice, "--pgp-key", "keybase:alice", "--secret-file", path)
    expect_eq(r.returncode, 0, "keybase:alice: exit status")
    ctx.tmp_empty("keybase:alice")
    kid = ctx.check_pgp_file(alice, path, fpr, "keybase:alice")
    expect_eq(ctx.status_fpr(alice, kid), fpr, "keybase:alice: status key_fingerprint")
    q = ctx.kb.requests[-1]
    expect_eq((q["query"].get("usernames"), q["query"].get("fields")),
              (["alice"], ["public_keys"]), "the lookup query")

    before = ctx.creates()
    for as_user in (False, True):
        bpath = os.path.join(bob.pw_dir, "k.json")
        r = ctx.fetch(bob, "--pgp-key", "keybase:nobody", "--secret-file", bpath,
                      as_user=as_user)
        expect_eq(r.returncode, 2, "keybase:nobody: exit status")
        line = one_line(r.stderr)
        check(line is not None and "nobody" in line and "not found" in line,
              "keybase:nobody: one line saying so (%r)" % r.stderr)
        expect_eq(ctx.creates(), before, "keybase:nobody: no CreateAccessKey")
        check(not os.path.lexists(bpath), "keybase:nobody: no file")
        ctx.tmp_empty("keybase:nobody")
    check(any(q["query"].get("usernames") == ["nobody"] for q in ctx.kb.requests),
          "nobody was looked up")

    ctx.close_keybase()
    for who, as_user in ((bob, False), (bob, True), (alice, False)):
        p = os.path.join(who.pw_dir, "down.json")
        r = ctx.fetch(who, "--pgp-key", "keybase:alice", "--secret-file", p, as_user=as_user)
        expect_eq(r.returncode, 5, "Keybase down: exit status")
        line = one_line(r.stderr)
        check(line is not None and "Keybase" in line,
              "Keybase down: one line naming Keybase (%r)" % r.stderr)
        check(not os.path.lexists(p), "Keybase down: no file")
        ctx.tmp_empty("Keybase down")
    expect_eq(ctx.creates(), before, "Keybase down: no CreateAccessKey")
    expect_eq([k for k in ctx.emu.keys_of(bob.pw_name)], [], "bob has no key at RAM")


def test_refuse(ctx):
    """Expired, revoked, sign-only and garbage keys: exit 2, one distinct
    line each, no CreateAccessKey, no file, no GnuPG home left."""
    ctx.start_agent()
    pw = ctx.users.add("ref")
    cases = [
        ("expired", [("@file", "@" + ctx.key_file("expired", "asc")),
                     ("base64", ctx.b64_key("expired"))], EXPIRED_WHY),
        ("revoked", [("@file", "@" + ctx.key_file("revoked", "asc")),
                     ("base64", ctx.b64_key("revoked"))], REVOKED_WHY),
        ("sign-only", [("@file", "@" + ctx.key_file("signonly", "asc")),
                       ("base64", ctx.b64_key("signonly"))], SIGNONLY_WHY),
        ("garbage", [("@file", "@" + ctx.key_file("junk", "txt",
                                                  b"hello world, no key here\n")),
                     ("string", "bm90IGEga2V5IGF0IGFsbA==")], GARBAGE_WHY),
    ]
    lines = {}
    for name, forms, why in cases:
        for form, spec in forms:
            for as_user in (False, True):
                what = "%s (%s, %s)" % (name, form, "as user" if as_user else "as root")
                path = os.path.join(pw.pw_dir, "r.json")
                r = ctx.fetch(pw, "--pgp-key", spec, "--secret-file", path, as_user=as_user)
                expect_eq(r.returncode, 2, "%s: exit status" % what)
                line = one_line(r.stderr)
                check(line is not None and why in line,
                      "%s: one line with %r (%r)" % (what, why, r.stderr))
                lines.setdefault(name, set()).add(line)
                check(not os.path.lexists(path), "%s: no file" % what)
                ctx.tmp_empty(what)
    expect_eq(ctx.creates(), 0, "no CreateAccessKey for any of them")
    expect_eq(ctx.emu.keys_of(pw.pw_name), [], "no key at RAM")
    allmsgs = [m for s in lines.values() for m in s]
    check(all(len(s) == 1 for s in lines.values()) and len(set(allmsgs)) == 4,
          "four distinct messages: %s" % sorted(set(allmsgs)))


def test_empty_key(ctx):
    """An empty PGP key (--pgp-key '', or a key file holding only a
    newline) is invalid input: exit 2 with one line, nothing minted."""
    ctx.start_agent()
    pw = ctx.users.add("emp")
    nl = ctx.key_file("newline", "txt", b"\n")
    for what, spec in (("--pgp-key ''", ""), ("--pgp-key @FILE (only a newline)", "@" + nl)):
        for as_user in (False, True):
            w = "%s %s" % (what, "as user" if as_user else "as root")
            path = os.path.join(pw.pw_dir, "e.json")
            r = ctx.fetch(pw, "--pgp-key", spec, "--secret-file", path, as_user=as_user)
            expect_eq(r.returncode, 2, "%s: exit status (%s)" % (w, r.stderr.strip()))
            check(one_line(r.stderr) is not None, "%s: one line saying why" % w)
            check(not os.path.lexists(path), "%s: no file" % w)
            ctx.tmp_empty(w)
    expect_eq(ctx.creates(), 0, "no CreateAccessKey")


def test_nonblocking(ctx):
    """A PGP fetch waiting on a Keybase server that answers after 3 s does
    not hold up a plain fetch for another user (< 200 ms)."""
    ctx.start_agent()
    slow = ctx.users.add("slow")
    plain = ctx.users.add("plain")
    warm = ctx.users.add("warm")
    fpr = ctx.gpg.primary_fpr(ctx.key_file("rsa", "asc"))
    # Warm-up (the first mint sets up the agent's HTTPS connection).
    r = ctx.fetch(warm, "--secret-file", os.path.join(warm.pw_dir, "w.json"))
    expect_eq(r.returncode, 0, "warm-up fetch")
    t = time.monotonic()
    r = ctx.fetch(warm, "--secret-file", os.path.join(warm.pw_dir, "w.json"))
    log("  a plain fetch (lease exists) with nothing else going on: %.0f ms"
        % ((time.monotonic() - t) * 1000))

    spath = os.path.join(slow.pw_dir, "s.json")
    t0 = time.monotonic()
    pgp = subprocess.Popen(
        ["env", "RAMKEY_SOCKET=" + ctx.agent.socket, CLIENT_BIN, "fetch", "--user", slow.pw_name, "--pgp-key", "keybase:slow", "--secret-file", spath],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # A second PGP fetch on the slow server whose client gives up after
    # 1 s: its request is abandoned; nothing is minted for it later.
    gone = ctx.users.add("gone")
    gpath = os.path.join(gone.pw_dir, "g.json")
    quitter = subprocess.Popen(
        ["env", "RAMKEY_SOCKET=" + ctx.agent.socket, CLIENT_BIN, "--timeout", "1", "fetch",
         "--user", gone.pw_name, "--pgp-key", "keybase:slow", "--secret-file", gpath],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        check(pgp.poll() is None, "the PGP fetch is still waiting on Keybase")
        ppath = os.path.join(plain.pw_dir, "p.json")
        t1 = time.monotonic()
        r = ctx.fetch(plain, "--secret-file", ppath)
        took = time.monotonic() - t1
        expect_eq(r.returncode, 0, "the plain fetch (a mint) meanwhile: exit status")
        check(took < 0.2, "the plain fetch (a mint) took %.0f ms (< 200)" % (took * 1000))
        check(pgp.poll() is None, "the PGP fetch is still waiting after it")
        t2 = time.monotonic()
        r = ctx.fetch(plain, "--secret-file", ppath)
        took = time.monotonic() - t2
        expect_eq(r.returncode, 0, "a second plain fetch meanwhile: exit status")
        check(took < 0.2, "the second plain fetch took %.0f ms (< 200)" % (took * 1000))
        out, err = pgp.communicate(timeout=30)
        qout, qerr = quitter.communicate(timeout=30)
    finally:
        for p in (pgp, quitter):
            if p.poll() is None:
                p.kill()
                p.wait()
    total = time.monotonic() - t0
    expect_eq(pgp.returncode, 0, "the PGP fetch: exit status (%s)" % err.strip())
    check(2.8 <= total < 8, "the PGP fetch took the server's 3 s (%.2f s)" % total)
    ctx.tmp_empty("after the slow lookup")
    ctx.check_pgp_file(slow, spath, fpr, "keybase:slow")
    # The client said how long it waits (timeout_ms): the agent answers in
    # time, naming Keybase, rather than letting it time out blind.
    expect_eq(quitter.returncode, 5, "the client that gave up: exit status (%s)" % qerr.strip())
    check("could not be checked within" in qerr, "the reason names the lookup (%s)"
          % qerr.strip())
    time.sleep(0.5)
    expect_eq(ctx.emu.keys_of(gone.pw_name), [], "nothing minted for the abandoned request")
    check(not os.path.lexists(gpath), "no file for the abandoned request")
    ctx.tmp_empty("after the abandoned request")


# ------------------------------------------------------------------- PAM --

def _sanitizer_libs():
    if not SANITIZED:
        return []
    out = subprocess.run(["ldd", PAM_DRIVER], capture_output=True, text=True).stdout
    libs = []
    for name in ("libasan", "libubsan"):
        m = re.search(r"%s\S*\s+=>\s+(\S+)" % name, out)
        if m:
            libs.append(m.group(1))
    return libs


def _syslog_shim():
    """tests/pam's LD_PRELOAD shim that prints the module's syslog lines on
    stderr (the driver reads the service directory itself with -C, so no
    pam_wrapper, whose private directories race under parallel tests)."""
    path = os.path.join(BUILD_DIR, "tests", "pam", "libpam_test_syslog.so")
    return path if os.path.exists(path) else None


class PamDriver:
    """tests/pam/pam_session_driver with -C CONFDIR (pam_start_confdir); the
    syslog shim puts the module's pam_syslog lines on the driver's stderr,
    where they are checked."""

    def __init__(self, pctx, service, pw):
        self.errpath = pctx.ctx.wd.join("pam-%s-%d.err" % (service, len(pctx.drivers)))
        self.errf = open(self.errpath, "w")
        env = dict(os.environ)
        for k in [k for k in env if k.startswith("PAM_WRAPPER")]:
            del env[k]
        preload = _sanitizer_libs()
        if pctx.wrapper_lib:
            preload.append(pctx.wrapper_lib)
        if preload:
            env["LD_PRELOAD"] = ":".join(preload)
        argv = [PAM_DRIVER, "-r", "192.0.2.7", "-t", "ssh", "-C", pctx.confdir]
        argv += [service, pw.pw_name]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errf, env=env, text=True, bufsize=1)
        pctx.drivers.append(self)
        w = self._read("start")
        expect_eq(w[:3], ["start", "0", "PAM_SUCCESS"], "pam_start")

    def _read(self, what, timeout=30):
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            raise AssertionError("pam driver: no answer to %s; stderr:\n%s"
                                 % (what, self.stderr()))
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError("pam driver died (exit status %s) during %s; stderr:\n%s"
                                 % (self.proc.wait(), what, self.stderr()))
        return line.rstrip("\n").split(" ")

    def call(self, what):
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        w = self._read(what)
        expect_eq(w[0], what, "driver answer")
        log("  pam %s -> %s in %s ms" % (what, w[2], w[3]))
        return w[2], int(w[3])

    def quit(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            w = self._read("quit")
            expect_eq(w[:3], ["quit", "0", "PAM_SUCCESS"], "pam_end")
            self.proc.wait(30)
        expect_eq(self.proc.returncode, 0, "pam driver exit status")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.errf.close()

    def stderr(self):
        self.errf.flush()
        return read(self.errpath, "r")


class Pam:
    """Service files in a private directory; on an "alone" service (the
    module is the only session module) libpam passes the module's code
    through, except that PAM_IGNORE from every module becomes
    PAM_PERM_DENIED (libpam's PAM_MUST_FAIL_CODE); the "full" service adds
    `session optional pam_permit.so` as a deployment would."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.confdir = ctx.wd.join("pam.d")
        os.makedirs(self.confdir)
        os.chmod(self.confdir, 0o755)
        with open(os.path.join(self.confdir, "other"), "w") as f:
            for t in ("auth", "account", "password", "session"):
                f.write("%s required pam_deny.so\n" % t)
        self.drivers = []
        self.wrapper_lib = _syslog_shim()
        ctx.stack.callback(self._kill_all)

    def _kill_all(self):
        for d in self.drivers:
            d.kill()

    def service(self, name, args, alone):
        with open(os.path.join(self.confdir, name), "w") as f:
            f.write("session required %s socket=%s %s\n"
                    % (PAM_MODULE, self.ctx.agent.socket, args))
            if not alone:
                f.write("session optional pam_permit.so\n")
        return name

    def driver(self, service, pw):
        return PamDriver(self, service, pw)


def module_rc(alone_rc):
    return "PAM_IGNORE" if alone_rc == "PAM_PERM_DENIED" else alone_rc


def user_file(pw, path, content, mode=0o644):
    with open(path, "wb") as f:
        f.write(content)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, mode)
    return path


def test_pam(ctx):
    """pgp_key_file=: the session opens, the file holds EncryptedSecret
    that decrypts to the emulator's secret; close removes the file."""
    ctx.start_agent()
    pam = Pam(ctx)
    svc = pam.service("pgp", "pgp_key_file=%h/.ramkey-pgp timeout=5 debug", alone=True)
    for suffix, key, content in (("cv", "ed", None), ("rsa", "rsa", "b64")):
        pw = ctx.users.add(suffix)
        data = read(key_path(key, "asc")) if content is None else \
            (pgpt.wrapped_b64(key_path(key, "bin"))).encode()
        user_file(pw, os.path.join(pw.pw_dir, ".ramkey-pgp"), data)
        fpr = ctx.gpg.primary_fpr(key_path(key, "asc"))
        path = os.path.join(pw.pw_dir, ".alibabacloud", "ramkey.json")
        before = ctx.creates()
        d = pam.driver(svc, pw)
        rc, ms = d.call("open")
        what = "PAM %s key (%s)" % (key, "armored" if content is None else "base64 file")
        expect_eq(rc, "PAM_SUCCESS", "%s: open_session" % what)
        ctx.tmp_empty(what)
        expect_eq(ctx.creates(), before + 1, "%s: one CreateAccessKey" % what)
        kid = ctx.check_pgp_file(pw, path, fpr, what)
        expect_eq(ctx.status_fpr(pw, kid), fpr, "%s: status key_fingerprint" % what)
        err = d.stderr()
        if pam.wrapper_lib:
            check("PGP-encrypted" in err, "%s: the module logs a PGP-encrypted write" % what)
        check(ctx.emu.key(kid)["AccessKeySecret"] not in err,
              "%s: the secret is not in the module's log" % what)
        rc, _ = d.call("close")
        expect_eq(rc, "PAM_SUCCESS", "%s: close_session" % what)
        check(not os.path.lexists(path), "%s: the file is removed at the last close" % what)
        d.quit()
        wait_for(lambda: ctx.emu.key(kid) is None, 10, what="%s revoked at RAM" % kid)
        check(True, "%s: the key is revoked at RAM after the close" % what)
        ctx.tmp_empty(what + " closed")


PAM_TIMEOUT = 2


def test_pam_fifo(ctx):
    """A FIFO at the pgp_key_file path: the session returns within
    timeout + 0.5 s, PAM_SESSION_ERR (on_error=fail) or PAM_IGNORE
    (on_error=ignore), and nothing is minted."""
    ctx.start_agent()
    pam = Pam(ctx)
    pw = ctx.users.add("fifo")
    fifo = os.path.join(pw.pw_dir, ".ramkey-pgp")
    os.mkfifo(fifo, 0o644)
    os.chown(fifo, pw.pw_uid, pw.pw_gid)
    path = os.path.join(pw.pw_dir, ".alibabacloud", "ramkey.json")
    limit = PAM_TIMEOUT * 1000 + 500
    args = "pgp_key_file=%%h/.ramkey-pgp timeout=%d" % PAM_TIMEOUT
    writer = None
    try:
        for with_writer in (False, True):
            if with_writer:
                # Someone holds the FIFO open for writing and never writes:
                # a blocking read would hang.
                writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
            for on_error, want, want_full in (("fail", "PAM_SESSION_ERR", "PAM_SESSION_ERR"),
                                              ("ignore", "PAM_IGNORE", "PAM_SUCCESS")):
                for alone in (True, False):
                    what = "FIFO%s, on_error=%s, %s stack" % (
                        " with a writer" if with_writer else "", on_error,
                        "alone" if alone else "full")
                    svc = pam.service("fifo-%s-%d" % (on_error, alone),
                                      args + " on_error=" + on_error, alone)
                    d = pam.driver(svc, pw)
                    t0 = time.monotonic()
                    rc, ms = d.call("open")
                    wall = (time.monotonic() - t0) * 1000
                    expect_eq(module_rc(rc) if alone else rc, want if alone else want_full,
                              "%s: open_session" % what)
                    check(ms <= limit and wall <= limit,
                          "%s: returned in %d ms (<= %d)" % (what, ms, limit))
                    if pam.wrapper_lib:
                        check("not a regular file" in d.stderr(),
                              "%s: the module says why" % what)
                    d.call("close")
                    d.quit()
                    check(stat.S_ISFIFO(os.lstat(fifo).st_mode), "%s: the FIFO is untouched"
                          % what)
                    check(not os.path.lexists(path), "%s: no secret file" % what)
                    expect_eq(ctx.creates(), 0, "%s: no CreateAccessKey" % what)
                    ctx.tmp_empty(what)
    finally:
        if writer is not None:
            os.close(writer)
    expect_eq(ctx.emu.keys_of(pw.pw_name), [], "no key at RAM")
    expect_eq(ctx.agent.status(pw.pw_name)["leases"], [], "no lease")


def test_pam_signonly(ctx):
    """A sign-only key in pgp_key_file: refused, nothing minted."""
    ctx.start_agent()
    pam = Pam(ctx)
    pw = ctx.users.add("sign")
    user_file(pw, os.path.join(pw.pw_dir, ".ramkey-pgp"), read(key_path("signonly", "asc")))
    path = os.path.join(pw.pw_dir, ".alibabacloud", "ramkey.json")
    for on_error, want in (("fail", "PAM_SESSION_ERR"), ("ignore", "PAM_IGNORE")):
        svc = pam.service("sign-" + on_error, "pgp_key_file=%%h/.ramkey-pgp timeout=%d "
                          "on_error=%s" % (PAM_TIMEOUT, on_error), alone=True)
        d = pam.driver(svc, pw)
        rc, _ = d.call("open")
        expect_eq(module_rc(rc), want, "sign-only, on_error=%s: open_session" % on_error)
        if pam.wrapper_lib:
            check(SIGNONLY_WHY in d.stderr(), "the module logs the agent's reason (%r)"
                  % d.stderr()[-400:])
        d.call("close")
        d.quit()
        check(not os.path.lexists(path), "no secret file")
        expect_eq(ctx.creates(), 0, "no CreateAccessKey")
        ctx.tmp_empty("sign-only " + on_error)
    expect_eq(ctx.emu.keys_of(pw.pw_name), [], "no key at RAM")


# -------------------------------------------------------------- valgrind --

def test_valgrind(ctx):
    """The agent under valgrind: PGP fetches (valid, invalid, keybase,
    Keybase down) leak nothing; it exits 0 on SIGTERM."""
    ctx.start_agent(ready_timeout=120)
    T = 300
    alice = ctx.users.add("alice")
    bob = ctx.users.add("bob")
    fpr_rsa = ctx.gpg.primary_fpr(key_path("rsa", "asc"))
    fpr_ed = ctx.gpg.primary_fpr(key_path("ed", "asc"))
    path = os.path.join(alice.pw_dir, "k.json")

    def fetch(pw, spec, want, what, as_user=False):
        r = ctx.fetch(pw, "--timeout", str(T), "--pgp-key", spec, "--secret-file",
                      os.path.join(pw.pw_dir, "k.json"), as_user=as_user, timeout=T + 30)
        expect_eq(r.returncode, want, "%s: exit status (%s)" % (what, r.stderr.strip()))
        ctx.tmp_empty(what)

    fetch(alice, ctx.b64_key("ed"), 0, "valid base64 key")
    ctx.check_pgp_file(alice, path, fpr_ed, "valid base64 key")
    fetch(alice, "@" + ctx.key_file("rsa", "asc"), 0, "valid armored key", as_user=True)
    ctx.check_pgp_file(alice, path, fpr_rsa, "valid armored key")
    fetch(alice, "keybase:alice", 0, "keybase:alice")
    ctx.check_pgp_file(alice, path, fpr_rsa, "keybase:alice")
    for name in ("expired", "revoked", "signonly"):
        fetch(bob, "@" + ctx.key_file(name, "asc"), 2, name + " key")
    fetch(bob, "not a key", 2, "garbage")
    fetch(bob, "keybase:nobody", 2, "keybase:nobody")
    # a plain fetch, then the server down
    r = ctx.fetch(bob, "--timeout", str(T), "--secret-file", os.path.join(bob.pw_dir, "p.json"),
                  timeout=T + 30)
    expect_eq(r.returncode, 0, "plain fetch")
    ctx.close_keybase()
    fetch(alice, "keybase:alice", 5, "Keybase down")
    ctx.agent_status = ctx.agent.stop(300)
    vglog = read(ctx.wd.join("valgrind.log"), "r")
    log("---- valgrind log ----\n%s---- end of valgrind log ----" % vglog)
    lost = {kind: int(n.replace(",", "")) for kind, n in
            re.findall(r"(definitely|indirectly) lost: ([\d,]+) bytes", vglog)}
    check("All heap blocks were freed" in vglog or
          (set(lost) == {"definitely", "indirectly"} and not any(lost.values())),
          "valgrind: nothing definitely or indirectly lost (%s)" % lost)
    check("are definitely lost" not in vglog and "are indirectly lost" not in vglog,
          "valgrind: no loss record")
    expect_eq(ctx.agent_status, 0, "the agent under valgrind exits 0 on SIGTERM (no leak, "
              "no memory error)")
    ctx.tmp_empty("after the agent stopped")


# ------------------------------------------------------------------ main --

def run(code, fn, kb_users=None, wrapper=None, **conf):
    ctx = Ctx(code, kb_users=kb_users, **conf)
    if wrapper is not None:
        ctx.agent.wrapper = wrapper(ctx)
    try:
        fn(ctx)
    finally:
        ctx.close()


def kb_all():
    asc = lambda n: read(key_path(n, "asc"), "r")
    return {"kbrsa": asc("rsa"), "kbed": asc("ed"), "alice": asc("rsa"),
            "nobody": (200, b'{"status":{"code":0,"name":"OK"},"them":[null]}', 0),
            "slow": (200, keybase_ok(asc("rsa")), 3.0)}


def valgrind_wrapper(ctx):
    return ("valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect",
            "--show-leak-kinds=definite,indirect", "--error-exitcode=1",
            "--trace-children=no", "--child-silent-after-fork=yes", "--track-fds=no",
            "--vgdb=no",
            "--log-file=" + ctx.wd.join("valgrind.log"))


BEHAVIOURS = {
    "forms": ("pf", test_forms),
    "formats_refused": ("pm", test_formats_refused),
    "keybase": ("pk", test_keybase),
    "refuse": ("pr", test_refuse),
    "empty_key": ("pe", test_empty_key),
    "nonblocking": ("pn", test_nonblocking),
    "pam": ("pp", test_pam),
    "pam_fifo": ("pq", test_pam_fifo),
    "pam_signonly": ("ps", test_pam_signonly),
    "valgrind": ("pv", test_valgrind),
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in BEHAVIOURS:
        sys.exit("usage: %s {%s}" % (sys.argv[0], "|".join(BEHAVIOURS)))
    name = sys.argv[1]
    if os.geteuid() != 0:
        print("SKIP: needs root (real accounts, setpriv, chown)")
        sys.exit(SKIP)
    if not shutil.which("gpg") or not shutil.which("gpgconf"):
        sys.exit("gpg and gpgconf are needed (package gnupg)")
    if name == "valgrind":
        if SANITIZED:
            print("SKIP: sanitized build (ASan and valgrind do not mix)")
            sys.exit(SKIP)
        if not shutil.which("valgrind"):
            print("SKIP: valgrind not installed")
            sys.exit(SKIP)
    if name.startswith("pam") and not os.access(PAM_DRIVER, os.X_OK):
        sys.exit("pam_session_driver not built at %s" % PAM_DRIVER)
    code, fn = BEHAVIOURS[name]
    keys()
    run(code, fn, kb_users=kb_all(),
        wrapper=valgrind_wrapper if name == "valgrind" else None)
    print("PASS pgp_e2e.%s" % name)


if __name__ == "__main__":
    main()
