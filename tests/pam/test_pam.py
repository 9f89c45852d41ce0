#!/usr/bin/env python3
"""The PAM session module (pam_ramkey.so) driven through libpam (the
session driver, and pamtester under pam_wrapper), against a real
ramkey-agent and the RAM emulator over HTTPS, or against small fake agents
for the failure paths.

Usage: test_pam.py CASE      (one ctest test per case: pam.CASE)

Who runs what:
- As root (CI): the PAM side (pam_session_driver, pamtester) runs as root,
  as in sshd's monitor; each case makes real test users (Users) with their
  own uids, so the module really drops its file-system identity.
- As a non-root user: the case runs for the invoking account. nss_wrapper
  gives it a home inside the test directory (and lists root and a system
  account for the exclusion cases); the agent trusts the invoking uid
  (trusted_uids), and the fake agents run as the invoking uid too.
- pam.as_user (root only) runs every case that makes sense without root
  again as a fresh test user, through setpriv, so both modes run in CI.

PAM stacks: service files in a per-test directory naming the module by
absolute path. pam_session_driver (one process holding one PAM handle,
driven over stdin) reads them with pam_start_confdir() and gets the
module's pam_syslog() lines on stderr from a syslog shim
(libpam_test_syslog.so); pamtester reads them under pam_wrapper. (Why the
driver does not use pam_wrapper: tests/pam/CMakeLists.txt.) In a sanitizer
build the sanitizer runtimes are preloaded first, so pamtester, which is
not sanitized, can load the sanitized module and ASan/UBSan/LSan check it.

Return codes. The driver reports what libpam returned. Cases that assert
the module's own return codes use an "alone" service, where
pam_ramkey is the only session module: libpam then passes its code
through, except that a stack whose every module returned PAM_IGNORE fails
with PAM_PERM_DENIED (PAM_MUST_FAIL_CODE, libpam/pam_dispatch.c). So on
the alone stack PAM_PERM_DENIED means "the module returned PAM_IGNORE"
(the module itself never returns PAM_PERM_DENIED). The "full" service
adds `session optional pam_permit.so`, the stack a deployment uses, to show
whether a login would go through.
"""

import base64
import configparser
import contextlib
import grp
import json
import os
import pwd
import re
import select
import socket
import stat
import struct
import subprocess
import sys
import threading
import time

from emulator import Emulator
from ramkey_fixture import (BUILD_DIR, PAM_MODULE, SANITIZED, Agent, Users,
                            Workdir, as_user_cmd, key_works,
                            read_json_secret_file, wait_for)

ROOT = os.geteuid() == 0
SKIP = 77
DRIVER = os.path.join(BUILD_DIR, "tests", "pam", "pam_session_driver")
SYSLOG_SHIM = os.path.join(BUILD_DIR, "tests", "pam", "libpam_test_syslog.so")
SLOW_TIMEOUT = 2          # timeout= for the slow-agent cases
SLACK_MS = 500            # they must return within timeout + 0.5 s
# An interpreter other users can run (sys.executable may live under /root).
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
REVOKE_WAIT = 5.0         # a revoked key leaves the emulator within this
RHOST, TTY = "192.0.2.10", "ssh"


def log(msg):
    print(msg, flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def expect_eq(got, want, what):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, got, want))


def module_rc(stack_rc):
    """The module's return code from what the alone stack returned
    (Driver.result applies this to answers on alone services)."""
    return "PAM_IGNORE" if stack_rc == "PAM_PERM_DENIED" else stack_rc


def _wrapper_libs():
    """Full paths of pam_wrapper and nss_wrapper (pkg-config), and in a
    sanitizer build the sanitizer runtimes the driver links (from ldd).
    Those go first in LD_PRELOAD: ASan insists on being the first library
    loaded, and pamtester, not built with the sanitizers, needs them to
    load the sanitized module at all. With them preloaded, ASan, UBSan and
    LeakSanitizer check the module inside pamtester too (checked with a
    planted overflow and a planted leak)."""
    libs = {"pam": "libpam_wrapper.so", "nss": "libnss_wrapper.so"}
    for mod, key in (("pam_wrapper", "pam"), ("nss_wrapper", "nss")):
        try:
            out = subprocess.run(["pkg-config", "--libs", mod], capture_output=True,
                                 text=True, check=True).stdout.split()
            if out and out[0].startswith("/"):
                libs[key] = out[0]
        except (OSError, subprocess.CalledProcessError):
            pass
    san = []
    if SANITIZED:
        out = subprocess.run(["ldd", DRIVER], capture_output=True, text=True).stdout
        for name in ("libasan", "libubsan"):
            m = re.search(r"%s\S*\s+=>\s+(\S+)" % name, out)
            if m:
                san.append(m.group(1))
    libs["sanitizers"] = san
    return libs


LIBS = _wrapper_libs()


class Account:
    """The local account a case logs in: name, uid, gid, home (the pwd
    fields as_user_cmd and the agent client need)."""

    def __init__(self, name, uid, gid, home):
        self.pw_name, self.pw_uid, self.pw_gid, self.pw_dir = name, uid, gid, home


def snapshot(path):
    """What an attack must not change: inode, mtime, mode, owner and content
    (file), target (symlink) or, recursively, entries (directory)."""
    st = os.lstat(path)
    snap = {"ino": st.st_ino, "mtime": st.st_mtime_ns, "mode": st.st_mode,
            "uid": st.st_uid, "gid": st.st_gid}
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            snap["content"] = f.read()
    elif stat.S_ISLNK(st.st_mode):
        snap["target"] = os.readlink(path)
    elif stat.S_ISDIR(st.st_mode):
        snap["entries"] = {n: snapshot(os.path.join(path, n))
                           for n in sorted(os.listdir(path))}
    return snap


def expect_unchanged(before, path, what):
    after = snapshot(path)
    if before != after:
        raise AssertionError("%s changed: before %r, after %r" % (what, before, after))


def owned_by(acct, top):
    """Paths under top (top included) owned by acct, with their inodes."""
    found = {}
    for root, dirs, files in os.walk(top):
        for n in [""] + dirs + files:
            p = os.path.join(root, n) if n else root
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if st.st_uid == acct.pw_uid:
                found[p] = st.st_ino
    if os.path.islink(top) and os.lstat(top).st_uid == acct.pw_uid:
        found[top] = os.lstat(top).st_ino
    return found


def leftovers(directory):
    """Temporary files the writer may have left behind."""
    try:
        return [n for n in os.listdir(directory) if n.endswith(".tmp")]
    except FileNotFoundError:
        return []


class Driver:
    """One pam_session_driver process holding one PAM handle."""

    def __init__(self, ctx, service, user, env=(), rhost=RHOST, tty=TTY):
        self.ctx = ctx
        self.service = service
        self.alone = service in ctx.alone_services
        self.errpath = ctx.wd.join("driver-%d.err" % len(ctx.drivers))
        argv = [DRIVER]
        if rhost:
            argv += ["-r", rhost]
        if tty:
            argv += ["-t", tty]
        for e in env:
            argv += ["-E", e]
        argv += ["-C", ctx.svc, service, user]
        self.errf = open(self.errpath, "w")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errf, env=ctx.pam_env(wrapper=False),
                                     text=True, bufsize=1)
        ctx.drivers.append(self)
        words = self._read("start")
        expect_eq(words[2], "PAM_SUCCESS", "pam_start for %s/%s" % (service, user))

    def _read(self, what, timeout=30):
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            raise AssertionError("driver: no answer to %s within %s s; stderr:\n%s"
                                 % (what, timeout, self.stderr()))
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError("driver died (%s) during %s; stderr:\n%s"
                                 % (self.proc.wait(), what, self.stderr()))
        return line.rstrip("\n").split(" ", 3)

    def cmd(self, line, timeout=30):
        self.send(line)
        return self._read(line, timeout)

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def result(self, what, timeout=30):
        """The answer to an open or close sent earlier: (rc, ms). On an
        alone service the module's own code (see the top of this file)."""
        w = self._read(what, timeout)
        expect_eq(w[0], what, "driver answer")
        rc = module_rc(w[2]) if self.alone else w[2]
        note = " (alone stack: %s)" % w[2] if rc != w[2] else ""
        log("  %-5s -> %s%s in %s ms  [%s]" % (what, rc, note, w[3], self.service))
        return rc, int(w[3])

    def open(self):
        self.send("open")
        return self.result("open")

    def close(self):
        self.send("close")
        return self.result("close")

    def env(self):
        w = self.cmd("env")
        return json.loads(line_rest(w))

    def quit(self):
        """pam_end and exit; the exit status must be 0 (in a sanitizer
        build, LeakSanitizer runs at exit and fails it on a leak)."""
        if self.proc.poll() is None:
            w = self.cmd("quit")
            expect_eq(w[:3], ["quit", "0", "PAM_SUCCESS"], "pam_end")
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.returncode != 0:
            raise AssertionError("driver exited with %s; stderr:\n%s"
                                 % (self.proc.returncode, self.stderr()))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.errf.close()

    def stderr(self):
        self.errf.flush()
        with open(self.errpath, errors="replace") as f:
            return f.read()


def line_rest(words):
    return " ".join(words[1:])


class Ctx:
    """Everything one case starts; close() stops and removes all of it."""

    def __init__(self, code):
        self.stack = contextlib.ExitStack()
        self.wd = Workdir(prefix="ramkey-pam-")
        self.stack.callback(self.wd.cleanup)
        self.users = None
        if ROOT:
            self.users = Users(code)
            self.stack.callback(self.users.cleanup)
        self.emu = None
        self.agent = None
        self.drivers = []
        self.stack.callback(self._stop_drivers)
        self.svc = self.wd.join("svc")
        os.makedirs(self.svc)
        os.chmod(self.svc, 0o755)
        with open(os.path.join(self.svc, "other"), "w") as f:
            for t in ("auth", "account", "password", "session"):
                f.write("%s required pam_deny.so\n" % t)
        self.alone_services = set()
        self.tag = "t" + os.urandom(3).hex()     # unique service names (pamtester)
        self.accounts = {}
        self.min_uid = 1000 if ROOT else min(1000, os.getuid())
        self.nss_passwd = self.wd.join("passwd")
        self.nss_group = self.wd.join("group")
        self._write_nss()

    def close(self):
        self.stack.close()

    def _stop_drivers(self):
        for d in self.drivers:
            d.kill()

    # ---- accounts ----

    def _write_nss(self):
        """nss_wrapper files for the non-root mode: the invoking account
        with a home in the test directory, root, and a system account."""
        if ROOT:
            return
        with open(self.nss_passwd, "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\n")
            for a in self.accounts.values():
                f.write("%s:x:%d:%d:test:%s:/bin/sh\n" % (a.pw_name, a.pw_uid, a.pw_gid,
                                                        a.pw_dir))
        with open(self.nss_group, "w") as f:
            f.write("root:x:0:\n")
            gids = {}
            for a in self.accounts.values():
                gids.setdefault(a.pw_gid, a.pw_name)
            for gid, name in gids.items():
                try:
                    gname = grp.getgrgid(gid).gr_name
                except KeyError:
                    gname = name
                if gid != 0:
                    f.write("%s:x:%d:\n" % (gname, gid))

    def user(self, name="alice"):
        """A login account: a real test user as root; the invoking account
        (home under the test directory) otherwise."""
        if ROOT:
            pw = self.users.add(name)
            acct = Account(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)
        else:
            me = pwd.getpwuid(os.getuid())
            if me.pw_name in self.accounts:
                return self.accounts[me.pw_name]
            home = self.wd.join("home", me.pw_name)
            os.makedirs(home, exist_ok=True)
            os.chmod(self.wd.join("home"), 0o755)
            os.chmod(home, 0o700)
            acct = Account(me.pw_name, me.pw_uid, me.pw_gid, home)
        self.accounts[acct.pw_name] = acct
        self._write_nss()
        return acct

    def system_user(self):
        """An account below min_uid that is not root, known to the agent
        (real passwd) and to the module."""
        if ROOT:
            pw = self.users.add("sys", system=True)
            check(0 < pw.pw_uid < self.min_uid, "system user uid %d" % pw.pw_uid)
            acct = Account(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)
        else:
            cands = [p for p in pwd.getpwall() if 0 < p.pw_uid < self.min_uid]
            check(cands, "no system account below uid %d on this host" % self.min_uid)
            p = cands[0]
            acct = Account(p.pw_name, p.pw_uid, p.pw_gid, self.wd.join("home", p.pw_name))
        self.accounts[acct.pw_name] = acct
        self._write_nss()
        return acct

    def runtime_dir(self, acct, name=None):
        """A per-user XDG_RUNTIME_DIR (0700, owned by the user)."""
        d = self.wd.join("run", name or acct.pw_name)
        os.makedirs(d, exist_ok=True)
        os.chmod(self.wd.join("run"), 0o755)
        self.chown(d, acct)
        os.chmod(d, 0o700)
        return d

    def chown(self, path, acct):
        if ROOT:
            os.chown(path, acct.pw_uid, acct.pw_gid, follow_symlinks=False)

    def mkdir_as(self, path, acct, mode=0o700):
        os.makedirs(path, exist_ok=True)
        self.chown(path, acct)
        os.chmod(path, mode)
        return path

    # ---- emulator and agent ----

    def start_agent(self, **conf):
        self.emu = Emulator(https=True)
        self.stack.callback(self.emu.stop)
        conf.setdefault("min_uid", self.min_uid)
        conf.setdefault("mint_rate", "1000/h")
        self.agent = Agent(self.wd, self.emu, **conf)
        self.stack.callback(self._stop_agent)
        self.agent.start()
        return self.agent

    def _stop_agent(self):
        status = None
        try:
            status = self.agent.stop()
        finally:
            self.agent.kill()
            log("---- agent log (exit status %s) ----\n%s---- end of agent log ----"
                % (status, self.agent.log()))

    def creates(self):
        return self.emu.counters()["calls"].get("CreateAccessKey", 0)

    def active_keys(self, acct):
        return [k for k in self.emu.keys_of(acct.pw_name) if k["Status"] == "Active"]

    def wait_revoked(self, key_id, what="the key"):
        wait_for(lambda: self.emu.key(key_id) is None, REVOKE_WAIT,
                 what="%s %s to be deleted at RAM" % (what, key_id))

    def wait_no_active(self, acct):
        wait_for(lambda: not self.active_keys(acct), REVOKE_WAIT,
                 what="no Active key left for %s" % acct.pw_name)

    # ---- PAM ----

    def service(self, name, args, socket_path=None, alone=False):
        """A service file naming the module by absolute path. The default
        socket is the agent's; pass socket_path for fake or absent agents."""
        if socket_path is None:
            socket_path = self.agent.socket if self.agent else self.wd.join("none", "sock")
        name = "%s-%s" % (self.tag, name)
        line = "session required %s socket=%s %s" % (PAM_MODULE, socket_path, args)
        with open(os.path.join(self.svc, name), "w") as f:
            f.write(line.rstrip() + "\n")
            if not alone:
                f.write("session optional pam_permit.so\n")
        if alone:
            self.alone_services.add(name)
        return name

    def services(self, name, args, socket_path=None):
        """(alone, full) service names for the same module line."""
        return (self.service(name + "-alone", args, socket_path, alone=True),
                self.service(name, args, socket_path))

    def pam_env(self, wrapper):
        """The environment of a PAM process. wrapper: pamtester under
        pam_wrapper (PAM_WRAPPER_SERVICE_DIR); otherwise the driver, which
        reads the service directory itself (pam_start_confdir) and gets
        the module's syslog lines on stderr from the syslog shim."""
        env = dict(os.environ)
        for k in [k for k in env if k.startswith(("PAM_WRAPPER", "NSS_WRAPPER"))]:
            del env[k]
        preload = list(LIBS["sanitizers"])
        if not ROOT:
            preload.append(LIBS["nss"])
            env["NSS_WRAPPER_PASSWD"] = self.nss_passwd
            env["NSS_WRAPPER_GROUP"] = self.nss_group
        if wrapper:
            preload.append(LIBS["pam"])
            env["PAM_WRAPPER"] = "1"
            env["PAM_WRAPPER_SERVICE_DIR"] = self.svc
            env["PAM_WRAPPER_DEBUGLEVEL"] = "2"     # syslog lines on stderr
        else:
            preload.append(SYSLOG_SHIM)
        env["LD_PRELOAD"] = ":".join(preload)
        return env

    def driver(self, service, acct, env=(), **kw):
        return Driver(self, service, acct.pw_name if isinstance(acct, Account) else acct,
                      env, **kw)

    def one_open(self, service, acct, env=(), close=True):
        """Open (and close) one session in a fresh driver: (open rc, ms,
        close rc or None, stderr)."""
        d = self.driver(service, acct, env)
        rc, ms = d.open()
        crc = d.close()[0] if close else None
        d.quit()
        return rc, ms, crc, d.stderr()

    def pamtester(self, service, acct, env=(), ops=("open_session", "close_session")):
        """pamtester under pam_wrapper; returns (exit status, output).
        pam_wrapper 1.1.4 races with other processes starting at the same
        moment for its /tmp/pam.X directory (see CMakeLists.txt); a run
        that lost that race (its own log says so, or pam_start never
        succeeded, before any module ran) is repeated. Service names carry
        a per-test tag, so a shared directory never serves another test's
        stack under our name."""
        argv = ["pamtester", "-v", "-I", "rhost=" + RHOST, "-I", "tty=" + TTY]
        for e in env:
            argv += ["-E", e]
        argv += [service, acct.pw_name if isinstance(acct, Account) else acct] + list(ops)
        for attempt in range(5):
            r = subprocess.run(argv, env=self.pam_env(wrapper=True), capture_output=True,
                               text=True, timeout=60)
            out = r.stdout + r.stderr
            lost = ("Failed to create pam_wrapper config dir" in out or
                    "Failed to copy config files" in out or
                    "performing operation - %s" % ops[0] not in out)
            if not lost:
                break
            log("  pamtester: pam_wrapper did not start (attempt %d), again:\n%s"
                % (attempt + 1, out))
        log("  pamtester %s -> %d" % (" ".join(ops), r.returncode))
        return r.returncode, out


def xdg(d):
    return "XDG_RUNTIME_DIR=" + d


def check_secret_file(ctx, path, acct):
    """The file is a regular 0600 file of the user, its key is Active at
    RAM and signs a request the emulator accepts. Returns the key id."""
    st = os.lstat(path)
    check(stat.S_ISREG(st.st_mode), "%s is not a regular file" % path)
    expect_eq(stat.S_IMODE(st.st_mode), 0o600, "mode of %s" % path)
    expect_eq((st.st_uid, st.st_gid), (acct.pw_uid, acct.pw_gid), "owner of %s" % path)
    expect_eq(st.st_nlink, 1, "link count of %s" % path)
    key_id, secret, doc = read_json_secret_file(path)
    expect_eq(set(doc), {"AccessKeyId", "AccessKeySecret", "CreateDate", "Status"},
              "fields of %s" % path)
    key = ctx.emu.key(key_id)
    check(key is not None, "key %s of %s is unknown to RAM" % (key_id, path))
    expect_eq(key["Status"], "Active", "RAM status of %s" % key_id)
    expect_eq(doc["Status"], "Active", "Status in %s" % path)
    expect_eq(key["AccessKeySecret"], secret, "secret in %s" % path)
    check(key_works(ctx.emu, key_id, secret), "the key in %s does not sign" % path)
    check(key_id in [k["AccessKeyId"] for k in ctx.emu.keys_of(acct.pw_name)],
          "key %s is not a key of RAM user %s" % (key_id, acct.pw_name))
    return key_id, secret


def sessions_of(ctx, acct):
    st = ctx.agent.status(acct.pw_name)
    return sum(l["sessions"] for l in st["leases"] if l["user"] == acct.pw_name)


# ---------------------------------------------------------------- cases

def case_lifecycle(ctx):
    """Open: the file is 0600, the user's, its key Active and working;
    close: the file is gone and the key deleted at RAM. In the runtime dir
    and, without XDG_RUNTIME_DIR, in the home directory."""
    ctx.start_agent()
    alice = ctx.user("alice")
    run = ctx.runtime_dir(alice)
    alone, full = ctx.services("rk", "timeout=5 debug")
    path = os.path.join(run, "ramkey", "credentials.json")

    log("runtime dir: open, check, close")
    d = ctx.driver(alone, alice, [xdg(run)])
    expect_eq(d.open()[0], "PAM_SUCCESS", "open_session")
    dst = os.lstat(os.path.dirname(path))
    expect_eq((stat.S_IMODE(dst.st_mode), dst.st_uid), (0o700, alice.pw_uid),
              "mode and owner of the created ramkey directory")
    key_id, secret = check_secret_file(ctx, path, alice)
    expect_eq(ctx.creates(), 1, "CreateAccessKey calls")
    expect_eq(sessions_of(ctx, alice), 1, "sessions the agent counts")
    expect_eq(leftovers(os.path.dirname(path)), [], "temporary files")
    check(re.search(r"key LTAI\*{4}\w{4} for %s written to %s" % (alice.pw_name, re.escape(path)),
                    d.stderr()), "the open is logged with a masked key id")
    check(secret not in d.stderr(), "the secret appears in the module's log")
    check(re.search(r"event=attach user=%s .*rhost=%s tty=%s" % (alice.pw_name, RHOST, TTY),
                    ctx.agent.log()), "the agent's audit line lacks the PAM rhost and tty")
    expect_eq(d.close()[0], "PAM_SUCCESS", "close_session")
    check(not os.path.lexists(path), "%s still exists after the last close" % path)
    ctx.wait_revoked(key_id)
    check(not key_works(ctx.emu, key_id, secret), "a revoked key still signs")
    expect_eq(d.close()[0], "PAM_IGNORE", "a second close_session")
    d.quit()
    check(secret not in ctx.agent.log(), "the secret appears in the agent's log")

    log("home directory (no XDG_RUNTIME_DIR)")
    hpath = os.path.join(alice.pw_dir, ".alibabacloud", "ramkey.json")
    d = ctx.driver(alone, alice)
    expect_eq(d.open()[0], "PAM_SUCCESS", "open_session without XDG_RUNTIME_DIR")
    dst = os.lstat(os.path.dirname(hpath))
    expect_eq((stat.S_IMODE(dst.st_mode), dst.st_uid), (0o700, alice.pw_uid),
              "mode and owner of the created ~/.alibabacloud")
    key_id, _ = check_secret_file(ctx, hpath, alice)
    expect_eq(d.close()[0], "PAM_SUCCESS", "close_session")
    check(not os.path.lexists(hpath), "%s still exists after close" % hpath)
    ctx.wait_revoked(key_id)
    d.quit()

    log("pamtester: open_session close_session on the full stack")
    before = ctx.creates()
    rc, out = ctx.pamtester(full, alice, [xdg(run)])
    expect_eq(rc, 0, "pamtester open_session close_session (output: %s)" % out)
    expect_eq(ctx.creates(), before + 1, "CreateAccessKey calls after pamtester")
    check(not os.path.lexists(path), "pamtester left %s" % path)
    ctx.wait_no_active(alice)


def _key_from_file(path, fmt):
    """(AccessKeyId, secret) as a consumer of that format reads them."""
    if fmt == "json":
        key_id, secret, _ = read_json_secret_file(path)
    elif fmt == "ini":
        cp = configparser.ConfigParser()
        cp.read(path)
        expect_eq(cp["default"]["type"], "access_key", "type in the ini file")
        key_id = cp["default"]["access_key_id"]
        secret = cp["default"]["access_key_secret"]
    elif fmt == "env":
        out = subprocess.run(["sh", "-c", '. "$1"; printf "%s\\n%s\\n" '
                              '"$ALIBABA_CLOUD_ACCESS_KEY_ID" "$ALIBABA_CLOUD_ACCESS_KEY_SECRET"',
                              "sh", path], capture_output=True, text=True, check=True).stdout
        key_id, secret = out.split("\n")[:2]
    else:                                   # cli: the aliyun CLI's config.json
        with open(path) as f:
            doc = json.load(f)
        expect_eq(doc["current"], "default", "current profile")
        prof = doc["profiles"][0]
        expect_eq((prof["name"], prof["mode"]), ("default", "AK"), "cli profile")
        key_id, secret = prof["access_key_id"], prof["access_key_secret"]
    return key_id, secret


def case_export_env(ctx):
    """format= and export_env: every format is written 0600 and readable by
    its consumer with a working key; export_env puts RAMKEY_SECRET_FILE in
    the PAM environment for every format and ALIBABA_CLOUD_CREDENTIALS_FILE
    for ini only; without export_env neither is set."""
    ctx.start_agent()
    alice = ctx.user("alice")
    run = ctx.runtime_dir(alice)
    cases = [("json", "export_env", "credentials.json"),
             ("ini", "format=ini export_env secret_file=%r/ramkey/credentials", "credentials"),
             ("env", "format=env export_env secret_file=%r/ramkey/env.sh", "env.sh"),
             ("cli", "format=cli export_env secret_file=%h/.aliyun/config.json", None),
             ("json", "", "credentials.json")]
    for i, (fmt, args, name) in enumerate(cases):
        svc = ctx.service("f%d" % i, args, alone=True)
        path = (os.path.join(run, "ramkey", name) if name else
                os.path.join(alice.pw_dir, ".aliyun", "config.json"))
        log("format=%s %s" % (fmt, "(export_env)" if "export_env" in args else ""))
        d = ctx.driver(svc, alice, [xdg(run)])
        expect_eq(d.open()[0], "PAM_SUCCESS", "open_session (%s)" % args)
        env = d.env()
        expect_eq(env.get("XDG_RUNTIME_DIR"), run, "XDG_RUNTIME_DIR kept")
        if "export_env" in args:
            expect_eq(env.get("RAMKEY_SECRET_FILE"), path, "RAMKEY_SECRET_FILE")
        else:
            check("RAMKEY_SECRET_FILE" not in env, "RAMKEY_SECRET_FILE set without export_env")
        if fmt == "ini":
            expect_eq(env.get("ALIBABA_CLOUD_CREDENTIALS_FILE"), path,
                      "ALIBABA_CLOUD_CREDENTIALS_FILE")
        else:
            check("ALIBABA_CLOUD_CREDENTIALS_FILE" not in env,
                  "ALIBABA_CLOUD_CREDENTIALS_FILE set for format=%s" % fmt)
        st = os.lstat(path)
        expect_eq((stat.S_IMODE(st.st_mode), st.st_uid), (0o600, alice.pw_uid),
                  "mode and owner of the %s file" % fmt)
        key_id, secret = _key_from_file(path, fmt)
        check(key_works(ctx.emu, key_id, secret), "the %s file's key does not sign" % fmt)
        expect_eq(d.close()[0], "PAM_SUCCESS", "close_session")
        check(not os.path.lexists(path), "%s left after close" % path)
        ctx.wait_revoked(key_id)
        d.quit()


def case_close_without_open(ctx):
    """close_session with nothing opened: PAM_IGNORE, agent up or down,
    and after a failed open; the full stack still succeeds."""
    ctx.start_agent()
    alice = ctx.user("alice")
    run = ctx.runtime_dir(alice)
    alone, full = ctx.services("rk", "")
    down_alone, down_full = ctx.services("down", "", socket_path=ctx.wd.join("none", "sock"))
    for svc in (alone, down_alone):
        d = ctx.driver(svc, alice, [xdg(run)])
        expect_eq(d.close()[0], "PAM_IGNORE", "close without open (%s)" % svc)
        d.quit()
    for svc in (full, down_full):
        d = ctx.driver(svc, alice, [xdg(run)])
        expect_eq(d.close()[0], "PAM_SUCCESS", "full stack close without open (%s)" % svc)
        d.quit()
    log("close after a failed open")
    d = ctx.driver(down_alone, alice, [xdg(run)])
    expect_eq(d.open()[0], "PAM_SESSION_ERR", "open with the agent down")
    expect_eq(d.close()[0], "PAM_IGNORE", "close after a failed open")
    d.quit()
    expect_eq(ctx.creates(), 0, "CreateAccessKey calls")


def case_two_sessions(ctx):
    """Two sessions of one user (two processes) share one key and one file;
    with a client fetch between the closes, the file stays until the last
    close, in either order, and goes then, with the key."""
    ctx.start_agent()
    bob = ctx.user("bob")
    run = ctx.runtime_dir(bob)
    alone = ctx.service("rk", "", alone=True)
    path = os.path.join(run, "ramkey", "credentials.json")

    for order in ((0, 1), (1, 0)):
        log("close order %s" % (order,))
        creates = ctx.creates()
        ds = [ctx.driver(alone, bob, [xdg(run)], tty="pts/%d" % i) for i in range(2)]
        expect_eq(ds[0].open()[0], "PAM_SUCCESS", "first open")
        key_id, secret = check_secret_file(ctx, path, bob)
        expect_eq(ds[1].open()[0], "PAM_SUCCESS", "second open")
        key2, _ = check_secret_file(ctx, path, bob)
        expect_eq(key2, key_id, "key of the second session")
        expect_eq(ctx.creates(), creates + 1, "CreateAccessKey calls for two opens")
        expect_eq(len(ctx.active_keys(bob)), 1, "Active keys of %s" % bob.pw_name)
        expect_eq(sessions_of(ctx, bob), 2, "sessions the agent counts")

        first, last = ds[order[0]], ds[order[1]]
        expect_eq(first.close()[0], "PAM_SUCCESS", "first close")
        key3, _ = check_secret_file(ctx, path, bob)
        expect_eq(key3, key_id, "key after the first close")
        expect_eq(sessions_of(ctx, bob), 1, "sessions after the first close")

        r = ctx.agent.client("fetch", user=bob if ROOT else None)
        log("  fetch (as %s): %d %s%s" % (bob.pw_name, r.returncode, r.stdout, r.stderr))
        expect_eq(r.returncode, 0, "ramkey-agent-client fetch exit status")
        check(path in r.stdout, "fetch wrote elsewhere than the session's file: %s" % r.stdout)
        check(secret not in r.stdout + r.stderr, "fetch printed the secret")
        key4, _ = check_secret_file(ctx, path, bob)
        expect_eq(key4, key_id, "key after fetch")
        expect_eq(ctx.creates(), creates + 1, "CreateAccessKey calls after fetch")

        expect_eq(last.close()[0], "PAM_SUCCESS", "last close")
        check(not os.path.lexists(path), "%s left after the last close" % path)
        ctx.wait_revoked(key_id)
        for d in ds:
            d.quit()
        st = ctx.agent.status(bob.pw_name)
        expect_eq([l for l in st["leases"] if l["status"] == "Active"], [],
                  "live leases after the last close")

    log("two opens at once, while RAM takes 300 ms to mint: one key")
    ctx.emu.set_faults(latency_by_action={"CreateAccessKey": 300})
    creates = ctx.creates()
    ds = [ctx.driver(alone, bob, [xdg(run)], tty="pts/%d" % i) for i in range(2)]
    for d in ds:
        d.send("open")
    for d in ds:
        expect_eq(d.result("open")[0], "PAM_SUCCESS", "concurrent open")
    key_id, _ = check_secret_file(ctx, path, bob)
    expect_eq(ctx.creates(), creates + 1, "CreateAccessKey calls for two concurrent opens")
    expect_eq(sessions_of(ctx, bob), 2, "sessions the agent counts")
    for d in ds:
        expect_eq(d.close()[0], "PAM_SUCCESS", "close")
        d.quit()
    check(not os.path.lexists(path), "%s left after the last close" % path)
    ctx.wait_revoked(key_id)


def case_session_process_killed(ctx):
    """close_session is best effort: when the process that opened the
    session dies without closing it (sshd's monitor SIGKILLed), the agent
    ends the session itself and the key is revoked; another
    session of the same user keeps the key until it closes."""
    ctx.start_agent()
    alice = ctx.user("alice")
    run = ctx.runtime_dir(alice)
    alone = ctx.service("rk", "", alone=True)
    path = os.path.join(run, "ramkey", "credentials.json")

    d = ctx.driver(alone, alice, [xdg(run)])
    expect_eq(d.open()[0], "PAM_SUCCESS", "open_session")
    key_id, _ = check_secret_file(ctx, path, alice)
    d.proc.kill()
    d.proc.wait()
    log("  killed the session's process")
    ctx.wait_revoked(key_id, "the key of a session whose process died")

    log("two sessions, one process killed")
    d1 = ctx.driver(alone, alice, [xdg(run)])
    d2 = ctx.driver(alone, alice, [xdg(run)])
    expect_eq(d1.open()[0], "PAM_SUCCESS", "open_session 1")
    expect_eq(d2.open()[0], "PAM_SUCCESS", "open_session 2")
    key_id, _ = check_secret_file(ctx, path, alice)
    d1.proc.kill()
    d1.proc.wait()
    wait_for(lambda: sessions_of(ctx, alice) == 1, REVOKE_WAIT,
             what="the agent to end the dead process's session")
    key2, _ = check_secret_file(ctx, path, alice)
    expect_eq(key2, key_id, "key of the surviving session")
    expect_eq(d2.close()[0], "PAM_SUCCESS", "close of the surviving session")
    check(not os.path.lexists(path), "%s left after the last close" % path)
    ctx.wait_revoked(key_id)
    d2.quit()


def case_close_agent_down(ctx):
    """The agent cannot be told at close: on_error applies (PAM_SESSION_ERR
    or PAM_IGNORE) and the file stays; the session is still the agent's
    after its restart; a later close succeeds and removes the file, and a
    process that exits without a successful close still gets its key
    revoked."""
    ctx.start_agent()
    alice = ctx.user("alice")
    run = ctx.runtime_dir(alice)
    path = os.path.join(run, "ramkey", "credentials.json")
    for opt, want in (("on_error=fail", "PAM_SESSION_ERR"), ("on_error=ignore", "PAM_IGNORE")):
        log(opt)
        svc = ctx.service("rk-" + opt.split("=")[1],
                          "timeout=%d %s" % (SLOW_TIMEOUT, opt), alone=True)
        d = ctx.driver(svc, alice, [xdg(run)])
        expect_eq(d.open()[0], "PAM_SUCCESS", "open_session")
        key_id, _ = check_secret_file(ctx, path, alice)
        # A clean stop with a live lease (in the sanitizer build this
        # caught a use-after-free of the lease's armed timers in
        # agent_free()).
        expect_eq(ctx.agent.stop(), 0, "agent exit status (clean stop, session live)")
        rc, ms = d.close()
        expect_eq(rc, want, "close_session with the agent down, %s" % opt)
        check(ms <= SLOW_TIMEOUT * 1000 + SLACK_MS, "close took %d ms" % ms)
        check(re.search(r"SYSLOG\(3\): .*could not tell the agent", d.stderr()),
              "the failed close is not logged:\n%s" % d.stderr())
        check(os.path.lexists(path), "the file went although the agent was not told")
        ctx.agent.start()
        expect_eq(ctx.emu.key(key_id)["Status"], "Active", "key while the session lives")
        expect_eq(sessions_of(ctx, alice), 1, "sessions after the agent's restart")
        if want == "PAM_SESSION_ERR":
            log("  closing again, the agent up")
            expect_eq(d.close()[0], "PAM_SUCCESS", "second close_session")
            check(not os.path.lexists(path), "%s left after the last close" % path)
            ctx.wait_revoked(key_id)
            d.quit()
        else:
            log("  the process exits without a successful close")
            d.quit()
            ctx.wait_revoked(key_id, "the key of a session whose process exited")


def _final_name_case(ctx, plant, what, expect="PAM_SUCCESS"):
    """Plant something at the final name, open a session, check the result.
    plant(final_path, acct) -> list of (path, snapshot) that must not change."""
    ctx.start_agent()
    alice = ctx.user("alice")
    run = ctx.runtime_dir(alice)
    rdir = ctx.mkdir_as(os.path.join(run, "ramkey"), alice)
    final = os.path.join(rdir, "credentials.json")
    alone = ctx.service("rk", "timeout=%d" % SLOW_TIMEOUT, alone=True)
    ignore = ctx.service("rk-ignore", "on_error=ignore timeout=%d" % SLOW_TIMEOUT,
                         alone=True)
    guarded = plant(final, alice)
    log("planted %s at %s" % (what, final))

    d = ctx.driver(alone, alice, [xdg(run)])
    rc, ms = d.open()
    expect_eq(rc, expect, "open_session with %s at the final name" % what)
    check(ms < SLOW_TIMEOUT * 1000, "open took %d ms" % ms)
    for path, snap in guarded:
        expect_unchanged(snap, path, "%s (planted %s)" % (path, what))
    expect_eq(leftovers(rdir), [], "temporary files")
    if expect == "PAM_SUCCESS":
        key_id, _ = check_secret_file(ctx, final, alice)
        expect_eq(d.close()[0], "PAM_SUCCESS", "close_session")
        check(not os.path.lexists(final), "%s left after close" % final)
        ctx.wait_revoked(key_id)
    else:
        expect_eq(d.close()[0], "PAM_IGNORE", "close after the failed open")
        # The module ended the session it could not serve: no key stays Active.
        ctx.wait_no_active(alice)
        log("with on_error=ignore")
        rc2 = ctx.one_open(ignore, alice, [xdg(run)], close=False)[0]
        expect_eq(rc2, "PAM_IGNORE", "open_session with on_error=ignore")
        for path, snap in guarded:
            expect_unchanged(snap, path, "%s (planted %s)" % (path, what))
        ctx.wait_no_active(alice)
    d.quit()
    for path, snap in guarded:
        expect_unchanged(snap, path, "%s (planted %s), after close" % (path, what))


def _victim_file(ctx):
    v = ctx.wd.join("victim")
    with open(v, "w") as f:
        f.write("victim: must never change\n")
    os.chmod(v, 0o644)
    return v


def case_final_name_symlink(ctx):
    """A symlink at the final name is replaced, never followed; its target
    (a root-owned file as root) stays as it was. A dangling one is
    replaced without creating its target."""
    def plant(final, acct):
        victim = _victim_file(ctx)
        os.symlink(victim, final)
        ctx.chown(final, acct)
        return [(victim, snapshot(victim))]
    _final_name_case(ctx, plant, "a symlink to a root-owned file" if ROOT else "a symlink")


def case_final_name_fifo(ctx):
    """A FIFO at the final name is replaced and cannot hang the login."""
    def plant(final, acct):
        os.mkfifo(final, 0o600)
        ctx.chown(final, acct)
        return []
    _final_name_case(ctx, plant, "a FIFO")


def case_final_name_directory(ctx):
    """A directory at the final name is an error (PAM_SESSION_ERR, or
    PAM_IGNORE with on_error=ignore); it is left alone."""
    def plant(final, acct):
        ctx.mkdir_as(final, acct)
        with open(os.path.join(final, "inside"), "w") as f:
            f.write("x")
        ctx.chown(os.path.join(final, "inside"), acct)
        return [(final, snapshot(final))]
    _final_name_case(ctx, plant, "a directory", expect="PAM_SESSION_ERR")


def case_final_name_hardlink(ctx):
    """Root only: a hard link to a root-owned file at the final name is
    replaced; the root file keeps its inode, mtime, mode, owner and content
    (the link count drops back to 1)."""
    if not ROOT:
        log("SKIP: needs root (a hard link to a root-owned file)")
        return SKIP
    victim = []

    def plant(final, acct):
        v = _victim_file(ctx)
        os.chmod(v, 0o600)
        os.link(v, final)
        victim.append(v)
        return [(v, snapshot(v))]
    _final_name_case(ctx, plant, "a hard link to a root-owned file")
    st = os.stat(victim[0])
    expect_eq((st.st_uid, st.st_nlink), (0, 1), "owner and link count of the root file")


def case_dir_component_symlink(ctx):
    """A symlink the user planted as a directory of the path (in the home
    or runtime dir) is an error; nothing is written through it, and the
    key the agent minted for the session is revoked."""
    ctx.start_agent()
    alice = ctx.user("alice")
    run = ctx.runtime_dir(alice)
    # Targets the user could write to: following the link would succeed.
    target1 = ctx.mkdir_as(ctx.wd.join("elsewhere1"), alice)
    target2 = ctx.mkdir_as(ctx.wd.join("elsewhere2"), alice)
    ctx.mkdir_as(os.path.join(target2, "sub"), alice)
    target3 = ctx.mkdir_as(ctx.wd.join("elsewhere3"), alice)
    links = [
        # (link, target, secret_file option, env)
        (os.path.join(alice.pw_dir, ".alibabacloud"), target1, "", []),
        (os.path.join(alice.pw_dir, "cfg"), target2, "secret_file=%h/cfg/sub/key.json", []),
        (os.path.join(run, "ramkey"), target3, "", [xdg(run)]),
    ]
    for i, (link, target, opt, env) in enumerate(links):
        log("symlink %s -> %s (%s)" % (link, target, opt or "default path"))
        os.symlink(target, link)
        ctx.chown(link, alice)
        snaps = [(target, snapshot(target)), (link, snapshot(link))]
        svc = ctx.service("rk%d" % i, opt, alone=True)
        d = ctx.driver(svc, alice, env)
        expect_eq(d.open()[0], "PAM_SESSION_ERR", "open with a symlinked directory")
        for p, s in snaps:
            expect_unchanged(s, p, p)
        # The module ended the session it could not serve (the process
        # still lives, so this is not the agent's dead-process detection).
        ctx.wait_no_active(alice)
        expect_eq(d.close()[0], "PAM_IGNORE", "close after the failed open")
        d.quit()
        err = d.stderr()
        check(re.search(r"SYSLOG\(3\).*symbolic link", err),
              "the log does not name the symlink:\n%s" % err)
    expect_eq(ctx.creates(), len(links), "CreateAccessKey calls")


def case_runtime_dir_foreign(ctx):
    """XDG_RUNTIME_DIR not an absolute directory owned by the user: error
    per on_error, no key minted, no fallback file anywhere."""
    ctx.start_agent()
    alice = ctx.user("alice")
    fail, _ = ctx.services("rk", "")
    ignore, ignore_full = ctx.services("rk-ignore", "on_error=ignore")
    bad = []
    if ROOT:
        root_dir = ctx.wd.join("run-root")
        os.makedirs(root_dir)
        os.chmod(root_dir, 0o755)
        sticky = ctx.wd.join("run-sticky")      # like /tmp: root's, world-writable
        os.makedirs(sticky)
        os.chmod(sticky, 0o1777)
        other = ctx.wd.join("run-other")        # another user's
        os.makedirs(other)
        os.chown(other, alice.pw_uid + 1, alice.pw_gid + 1)
        os.chmod(other, 0o755)
        bad += [root_dir, sticky, other]
    else:
        bad += ["/tmp"]                          # root's, and writable by us
    mine = ctx.runtime_dir(alice)
    afile = os.path.join(mine, "a-file")
    with open(afile, "w") as f:
        f.write("x")
    bad += [afile, "relative/run"]
    link = ctx.wd.join("run-link")              # a symlink to the user's dir
    os.symlink(mine, link)
    bad.append(link)
    home_fallback = os.path.join(alice.pw_dir, ".alibabacloud")
    for d in bad:
        log("XDG_RUNTIME_DIR=%s" % d)
        watch = [p for p in (d, os.path.join(d, "ramkey"), mine) if os.path.lexists(p)]
        snaps = [(p, snapshot(p)) for p in watch if p != "/tmp"]
        mine_before = owned_by(alice, os.path.join(d, "ramkey")) if d == "/tmp" else None
        rc = ctx.one_open(fail, alice, [xdg(d)], close=False)[0]
        expect_eq(rc, "PAM_SESSION_ERR", "open with XDG_RUNTIME_DIR=%s" % d)
        rc = ctx.one_open(ignore, alice, [xdg(d)], close=False)[0]
        expect_eq(rc, "PAM_IGNORE", "on_error=ignore with XDG_RUNTIME_DIR=%s" % d)
        rc = ctx.one_open(ignore_full, alice, [xdg(d)])[0]
        expect_eq(rc, "PAM_SUCCESS", "full stack, on_error=ignore, XDG_RUNTIME_DIR=%s" % d)
        for p, s in snaps:
            expect_unchanged(s, p, p)
        check(not os.path.lexists(home_fallback), "a fallback %s was written" % home_fallback)
        if d == "/tmp":       # shared with others: only what is ours counts
            expect_eq(owned_by(alice, os.path.join(d, "ramkey")), mine_before,
                      "files of %s under /tmp/ramkey" % alice.pw_name)
        check(not os.path.lexists(os.path.join(mine, "ramkey")),
              "a file was written in the user's own runtime dir")
    log("secret_file=%r/... and no XDG_RUNTIME_DIR")
    for opt, want in (("", "PAM_SESSION_ERR"), ("on_error=ignore", "PAM_IGNORE")):
        svc = ctx.service("r-" + (opt or "fail"), "secret_file=%r/ramkey/x.json " + opt,
                          alone=True)
        rc = ctx.one_open(svc, alice, close=False)[0]
        expect_eq(rc, want, "open with %r in secret_file and no runtime dir, " + (opt or "fail"))
    check(not os.path.lexists(home_fallback), "a fallback %s was written" % home_fallback)
    expect_eq(ctx.creates(), 0, "CreateAccessKey calls")


# ---- fake agents

class FakeAgent(threading.Thread):
    """A Unix socket server in a directory that passes the module's
    real-agent check (ours, 0755), running as us (root or the test uid).
    behaviour: silent (never reads) | trickle (a reply, one byte per 300 ms)
      | oversized, huge (length header above 64 KiB) | garbage (not a frame)
      | garbage_frame (a frame of binary junk) | bad_json_reply (JSON, but no
      key) | zero (a zero length) | bad_seal (a key whose sealed secret does
      not open) | unsealed (a key with an encrypted secret nobody asked for).
    A close_session request is answered "ok" (the module ending a session
    it could not use)."""

    def __init__(self, ctx, behaviour, name=None):
        super().__init__(daemon=True)
        self.behaviour = behaviour
        self.dir = ctx.wd.join("fake-" + (name or behaviour))
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.path = os.path.join(self.dir, "agent.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.sock.listen(16)
        self.stop_r, self.stop_w = os.pipe()
        self.conns = []
        self.requests = []
        self.accepted = 0
        ctx.stack.callback(self.stop)
        self.start()

    def stop(self):
        os.write(self.stop_w, b"x")
        self.join(10)
        for c in self.conns:
            c.close()
        self.sock.close()
        os.close(self.stop_r)
        os.close(self.stop_w)

    def _read_frame(self, c):
        """Read one request frame (the module sends it at once)."""
        c.settimeout(5)
        hdr = b""
        while len(hdr) < 4:
            b = c.recv(4 - len(hdr))
            if not b:
                return None
            hdr += b
        n = struct.unpack(">I", hdr)[0]
        body = b""
        while len(body) < n:
            b = c.recv(n - len(body))
            if not b:
                return None
            body += b
        c.setblocking(False)
        return body

    def run(self):
        trickle = []            # (conn, remaining bytes)
        while True:
            r, _, _ = select.select([self.sock, self.stop_r], [], [],
                                    0.3 if trickle else None)
            if self.stop_r in r:
                return
            if self.sock in r:
                c, _ = self.sock.accept()
                self.accepted += 1
                self.conns.append(c)
                self._serve(c, trickle)
            for t in list(trickle):
                c, data = t
                try:
                    c.send(data[:1])
                except OSError:
                    trickle.remove(t)
                    continue
                t[1] = data[1:]
                if not t[1]:
                    trickle.remove(t)

    def _serve(self, c, trickle):
        b = self.behaviour
        if b == "silent":
            return                                     # never reads, never answers
        if b == "trickle":
            body = b'{"v":1,"op":"open_session","ok":false,"error":{"code":"internal",' \
                   b'"message":"' + b"x" * 3000 + b'"}}'
            trickle.append([c, struct.pack(">I", len(body)) + body])
            return
        req = self._read_frame(c)
        if req is None:
            return
        req = json.loads(req)
        op = req["op"]
        self.requests.append(req)
        try:
            if op == "close_session":       # the module ending what it opened
                body = json.dumps({"v": 1, "op": op, "ok": True,
                                   "last_session": True}).encode()
                c.send(struct.pack(">I", len(body)) + body)
                return
            if b in ("bad_seal", "unsealed"):
                key = {"access_key_id": "LTAI" + "F" * 20,
                       "create_date": "2026-01-01T00:00:00Z",
                       "status": "Active", "expires": 4102444800}
                if b == "bad_seal":         # a box not sealed to the module's key
                    key["sealed_secret"] = base64.b64encode(os.urandom(78)).decode()
                else:                       # "encrypted" although nothing asked for it
                    key["encrypted_secret"] = base64.b64encode(b"not a PGP message").decode()
                    key["key_fingerprint"] = "ab" * 20
                body = json.dumps({"v": 1, "op": op, "ok": True, "key": key,
                                   "session": "0123456789abcdef" * 2,
                                   "region_id": "cn-hangzhou"}).encode()
                c.send(struct.pack(">I", len(body)) + body)
                return
            if b == "oversized":
                c.send(struct.pack(">I", 65537) + b"{" + b" " * 1000)
            elif b == "huge":
                c.send(struct.pack(">I", 0xFFFFFFF0) + b"{")
            elif b == "garbage":
                c.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            elif b == "garbage_frame":
                junk = bytes(range(1, 200))
                c.send(struct.pack(">I", len(junk)) + junk)
            elif b == "bad_json_reply":
                body = json.dumps({"v": 1, "op": op, "ok": True}).encode()
                c.send(struct.pack(">I", len(body)) + body)
            elif b == "zero":
                c.send(struct.pack(">I", 0))
        except OSError:
            pass


def _agent_fault_case(ctx, behaviours, slow):
    """Each broken agent: the module returns within timeout + 0.5 s with
    PAM_SESSION_ERR (on_error=fail, and the default) or PAM_IGNORE
    (on_error=ignore), and the full stack lets the login through with
    on_error=ignore. slow: the agent keeps the module waiting, so it must
    give up at its deadline (not earlier, not later); otherwise it must
    not wait for the deadline at all. The variants of one agent run in
    parallel, each in its own process."""
    alice = ctx.user("alice")
    run = ctx.runtime_dir(alice)
    to = "timeout=%d" % SLOW_TIMEOUT
    for b in behaviours:
        log("agent: %s" % b)
        fake = None
        if b == "absent":
            sock = ctx.wd.join("agentdir", "agent.sock")
            os.makedirs(os.path.dirname(sock), exist_ok=True)
            os.chmod(os.path.dirname(sock), 0o755)
        elif b == "stale":
            sock = ctx.wd.join("stale", "agent.sock")
            os.makedirs(os.path.dirname(sock))
            os.chmod(os.path.dirname(sock), 0o755)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(sock)
            s.close()                       # a socket file nobody listens on
        else:
            fake = FakeAgent(ctx, b)
            sock = fake.path
        variants = [("on_error=fail", "PAM_SESSION_ERR"), ("on_error=ignore", "PAM_IGNORE"),
                    ("on_error=ignore", "PAM_SUCCESS")]       # the last: full stack
        if not slow:
            variants.append(("", "PAM_SESSION_ERR"))          # the default is fail
        drivers = []
        for i, (opt, want) in enumerate(variants):
            svc = ctx.service("%s-%d" % (b, i), "%s %s" % (to, opt), socket_path=sock,
                              alone=(want != "PAM_SUCCESS"))
            drivers.append((ctx.driver(svc, alice, [xdg(run)]), opt, want))
        for d, _, _ in drivers:
            d.send("open")
        for d, opt, want in drivers:
            what = "open with agent %s, %s%s" % (b, opt or "default on_error",
                                                 "" if d.alone else ", full stack")
            rc, ms = d.result("open", timeout=SLOW_TIMEOUT + 5)
            expect_eq(rc, want, what)
            check(ms <= SLOW_TIMEOUT * 1000 + SLACK_MS,
                  "%s took %d ms (timeout=%d)" % (what, ms, SLOW_TIMEOUT))
            if slow:
                check(ms >= SLOW_TIMEOUT * 1000 - 100,
                      "%s returned after %d ms, before its deadline" % (what, ms))
            else:
                check(ms < SLOW_TIMEOUT * 1000 - 500,
                      "%s took %d ms: it waited for the deadline" % (what, ms))
            expect_eq(d.close()[0], "PAM_IGNORE" if d.alone else "PAM_SUCCESS",
                      "close after the failed open")
            d.quit()
            err = d.stderr()
            m = re.search(r"SYSLOG\(3\): .*(no key for %s|the agent's secret is not sealed).*agent.*"
                          % alice.pw_name, err)
            check(m, "no LOG_ERR line says what failed:\n%s" % err)
            log("    log: %s" % m.group(0).split("SYSLOG(3): ")[1])
        check(not os.path.lexists(os.path.join(run, "ramkey")),
              "something was written for a failed open")
        if fake is not None:
            check(fake.accepted >= len(variants),
                  "the fake agent was asked %d times" % fake.accepted)
        if b in ("bad_seal", "unsealed"):
            # Each open got a session token it could not use: it told the
            # agent to end that session.
            ops = [r["op"] for r in fake.requests]
            expect_eq(ops.count("close_session"), ops.count("open_session"),
                      "sessions ended by the module (requests: %s)" % ops)
            check(all(r.get("session") == "0123456789abcdef" * 2
                      for r in fake.requests if r["op"] == "close_session"),
                  "close_session named another session")


SERVER_AS_USER = r"""
import os, socket, sys
s = socket.socket(fileno=int(sys.argv[1]))
s.listen(8)             # listen() as this uid: SO_PEERCRED reports it
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    got = b""
    try:
        while True:
            b = c.recv(4096)
            if not b:
                break
            got += b
    except OSError:
        pass
    c.close()
    print("conn %d" % len(got), flush=True)
"""


def case_agent_untrusted(ctx):
    """The module talks only to the real agent (PROTOCOL.md): a socket in a
    directory others can write, a socket file owned by another user, or a
    listener running as another user is refused (PAM_SESSION_ERR, or
    PAM_IGNORE with on_error=ignore) before a byte is sent."""
    alice = ctx.user("alice")
    run = ctx.runtime_dir(alice)

    def expect_refused(sock, what):
        for opt, want in (("", "PAM_SESSION_ERR"), ("on_error=ignore", "PAM_IGNORE")):
            svc = ctx.service("u%d" % len(ctx.alone_services), opt, socket_path=sock,
                              alone=True)
            rc, ms, crc, err = ctx.one_open(svc, alice, [xdg(run)])
            expect_eq(rc, want, "open with %s, %s" % (what, opt or "default on_error"))
            check(re.search(r"SYSLOG\(3\): .*refusing", err),
                  "the log does not say the agent was refused:\n%s" % err)
        check(not os.path.lexists(os.path.join(run, "ramkey")), "a file was written")

    for mode in (0o777, 0o775, 0o1777):
        fake = FakeAgent(ctx, "bad_seal", name="dir%o" % mode)
        os.chmod(fake.dir, mode)
        expect_refused(fake.path, "the socket in a directory of mode %o" % mode)
        expect_eq(fake.accepted, 0, "connections to the untrusted socket")
    if not ROOT:
        log("(socket owner and peer uid cases need root)")
        return
    other = ctx.users.add("other")
    fake = FakeAgent(ctx, "bad_seal", name="owner")
    os.chown(fake.path, other.pw_uid, other.pw_gid)
    expect_refused(fake.path, "a socket owned by another user")
    expect_eq(fake.accepted, 0, "connections to a socket owned by another user")

    d = ctx.wd.join("peer")
    os.makedirs(d)
    os.chmod(d, 0o755)
    path = os.path.join(d, "agent.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)                 # the file is root's, as the real agent's
    os.chmod(path, 0o666)
    srv = subprocess.Popen(as_user_cmd(other, [PYTHON, "-c", SERVER_AS_USER,
                                               str(s.fileno())]),
                           pass_fds=[s.fileno()], stdout=subprocess.PIPE, text=True)
    ctx.stack.callback(lambda: (srv.kill(), srv.wait()))
    s.close()
    expect_eq(srv.stdout.readline().strip(), "ready", "listener as another user")
    expect_refused(path, "a listener running as uid %d" % other.pw_uid)
    got = [srv.stdout.readline().strip() for _ in range(2)]
    expect_eq(got, ["conn 0", "conn 0"], "bytes the module sent to the impostor")


def case_agent_down(ctx):
    return _agent_fault_case(ctx, ["absent", "stale"], slow=False)


def case_agent_silent(ctx):
    return _agent_fault_case(ctx, ["silent"], slow=True)


def case_agent_trickle(ctx):
    return _agent_fault_case(ctx, ["trickle"], slow=True)


def case_agent_oversized(ctx):
    return _agent_fault_case(ctx, ["oversized", "huge"], slow=False)


def case_agent_garbage(ctx):
    return _agent_fault_case(ctx, ["garbage", "garbage_frame", "bad_json_reply", "zero",
                                   "bad_seal", "unsealed"], slow=False)


def case_root_excluded(ctx):
    """root (below min_uid): PAM_IGNORE without asking the agent, no key
    minted, the login goes through; also with the agent down and with
    invalid options."""
    ctx.start_agent()
    alone, full = ctx.services("rk", "")
    down_alone, _ = ctx.services("down", "", socket_path=ctx.wd.join("none", "sock"))
    bad_alone, _ = ctx.services("bad", "timeout=abc format=xml on_error=fail")
    run = ctx.wd.join("run-root")
    os.makedirs(run)
    os.chmod(run, 0o700)
    for svc in (alone, down_alone, bad_alone):
        rc, ms, crc, err = ctx.one_open(svc, "root", [xdg(run)])
        expect_eq(rc, "PAM_IGNORE", "open for root (%s)" % svc)
        expect_eq(crc, "PAM_IGNORE", "close for root (%s)" % svc)
    expect_eq(ctx.one_open(full, "root", [xdg(run)])[0], "PAM_SUCCESS",
              "full stack for root")
    rc, out = ctx.pamtester(full, "root", [xdg(run)])
    expect_eq(rc, 0, "pamtester open_session close_session for root: %s" % out)
    expect_eq(ctx.creates(), 0, "CreateAccessKey calls")
    expect_eq(ctx.emu.counters()["calls_total"], 0, "RAM calls")
    expect_eq(os.listdir(run), [], "files written for root")
    check("user=root " not in ctx.agent.log(), "the agent was asked about root")


def case_system_user_excluded(ctx):
    """A system account below min_uid (not root): the agent answers
    "excluded" and the module returns PAM_IGNORE; nothing minted; the login
    goes through. Likewise a user outside allowed_group."""
    ctx.start_agent()
    sysu = ctx.system_user()
    alone, full = ctx.services("rk", "")
    rc, ms, crc, err = ctx.one_open(alone, sysu)
    expect_eq(rc, "PAM_IGNORE", "open for %s (uid %d)" % (sysu.pw_name, sysu.pw_uid))
    expect_eq(crc, "PAM_IGNORE", "close for the system user")
    expect_eq(ctx.one_open(full, sysu)[0], "PAM_SUCCESS", "full stack for the system user")
    rc, out = ctx.pamtester(full, sysu)
    expect_eq(rc, 0, "pamtester for the system user: %s" % out)
    check(re.search(r"deny.*%s.*below min_uid" % re.escape(sysu.pw_name), ctx.agent.log()),
          "the agent did not refuse %s as below min_uid:\n%s" % (sysu.pw_name, ctx.agent.log()))
    check("below min_uid" in err, "the module did not log the agent's reason:\n%s" % err)
    expect_eq(ctx.creates(), 0, "CreateAccessKey calls")


def case_group_excluded(ctx):
    """allowed_group set and the user not in it: the agent answers
    "excluded", the module returns PAM_IGNORE, nothing is minted."""
    alice = ctx.user("alice")
    if ROOT:
        group = ctx.users.add_group("grp").gr_name
    else:
        mine = set(os.getgrouplist(alice.pw_name, alice.pw_gid))
        others = [g.gr_name for g in grp.getgrall() if g.gr_gid not in mine]
        check(others, "no group the invoking user is outside of")
        group = others[0]
    ctx.start_agent(allowed_group=group)
    run = ctx.runtime_dir(alice)
    alone, full = ctx.services("rk", "")
    rc, ms, crc, err = ctx.one_open(alone, alice, [xdg(run)])
    expect_eq(rc, "PAM_IGNORE", "open for a user outside allowed_group")
    expect_eq(crc, "PAM_IGNORE", "close")
    expect_eq(ctx.one_open(full, alice, [xdg(run)])[0], "PAM_SUCCESS", "full stack")
    check("allowed_group" in err, "the module did not log the agent's reason:\n%s" % err)
    expect_eq(ctx.creates(), 0, "CreateAccessKey calls")
    check(not os.path.lexists(os.path.join(run, "ramkey")), "a file was written")


def case_module_policy(ctx):
    """min_uid= and allowed_group= module options exclude users locally:
    PAM_IGNORE with the agent down, nothing asked of it; users the options
    let through still go to the agent (and fail here, as it is down)."""
    alice = ctx.user("alice")
    run = ctx.runtime_dir(alice)
    down = ctx.wd.join("none", "sock")
    mine = grp.getgrgid(alice.pw_gid).gr_name
    cases = [("min_uid=%d" % (alice.pw_uid + 1), "PAM_IGNORE", "below min_uid="),
             ("allowed_group=root", "PAM_IGNORE", "not in allowed_group=root"),
             ("min_uid=%d" % alice.pw_uid, "PAM_SESSION_ERR", "ramkey-agent is running"),
             ("allowed_group=%s" % mine, "PAM_SESSION_ERR", "ramkey-agent is running")]
    for i, (opt, want, line) in enumerate(cases):
        svc = ctx.service("pol%d" % i, opt, socket_path=down, alone=True)
        rc, ms, crc, err = ctx.one_open(svc, alice, [xdg(run)], close=False)
        log("  %s: %s" % (opt, rc))
        expect_eq(rc, want, "open with %s and the agent down" % opt)
        check(line in err, "no log line %r for %s:\n%s" % (line, opt, err))
    for opt in ("min_uid=abc", "min_uid=-1", "min_uid=", "allowed_group=", "allowed_group=a:b"):
        svc = ctx.service("polbad", opt, socket_path=down, alone=True)
        rc, ms, crc, err = ctx.one_open(svc, alice, [xdg(run)], close=False)
        expect_eq(rc, "PAM_SESSION_ERR", "open with %s (invalid)" % opt)
        check(re.search(r"SYSLOG\(3\).*%s" % re.escape(opt.split("=")[0]), err),
              "no LOG_ERR line about %s:\n%s" % (opt, err))
    check(not os.path.lexists(os.path.join(run, "ramkey")), "a file was written")


def case_invalid_options(ctx):
    """A bad value for a known option: on_error applies (PAM_SESSION_ERR,
    or PAM_IGNORE with on_error=ignore), nothing is asked of the agent;
    a bad on_error value itself fails closed."""
    ctx.start_agent()
    alice = ctx.user("alice")
    run = ctx.runtime_dir(alice)
    bad = ["timeout=abc", "timeout=0", "timeout=-1", "timeout=601", "timeout=",
           "timeout=5s", "format=xml", "format=", "socket=relative/agent.sock",
           "secret_file=%q/x", "secret_file=relative", "pgp_key=", "pgp_key=x pgp_key_file=/k",
           "format=ini pgp_key=x"]
    for i, opt in enumerate(bad):
        svc = ctx.service("bad%d" % i, opt, alone=True)
        svc_i = ctx.service("badi%d" % i, opt + " on_error=ignore", alone=True)
        svc_if = ctx.service("badif%d" % i, "on_error=ignore " + opt)
        rc, ms, crc, err = ctx.one_open(svc, alice, [xdg(run)])
        log("  %s: %s" % (opt, rc))
        expect_eq(rc, "PAM_SESSION_ERR", "open with %s" % opt)
        check(re.search(r"SYSLOG\(3\).*(%s|invalid)" % re.escape(opt.split("=")[0]), err),
              "no LOG_ERR line about %s:\n%s" % (opt, err))
        rc = ctx.one_open(svc_i, alice, [xdg(run)])[0]
        expect_eq(rc, "PAM_IGNORE", "open with %s on_error=ignore" % opt)
        expect_eq(ctx.one_open(svc_if, alice, [xdg(run)])[0], "PAM_SUCCESS",
                  "full stack with on_error=ignore %s" % opt)
    for opt in ("on_error=bogus", "on_error=ignore on_error=bogus", "on_error="):
        svc = ctx.service("oe", opt, alone=True)
        rc = ctx.one_open(svc, alice, [xdg(run)], close=False)[0]
        expect_eq(rc, "PAM_SESSION_ERR", "open with %s (fails closed)" % opt)
    expect_eq(ctx.creates(), 0, "CreateAccessKey calls")
    check(not os.path.lexists(os.path.join(run, "ramkey")), "a file was written")


def case_on_error(ctx):
    """RAM refuses (the user already holds two keys of their own):
    on_error=fail (and the default) blocks the session, on_error=ignore
    lets it through; the user's own keys are left alone."""
    ctx.start_agent()
    alice = ctx.user("alice")
    run = ctx.runtime_dir(alice)
    own = [ctx.emu.create_key(alice.pw_name) for _ in range(2)]
    cases = [("", "PAM_SESSION_ERR", "PAM_SESSION_ERR"),
             ("on_error=fail", "PAM_SESSION_ERR", "PAM_SESSION_ERR"),
             ("on_error=ignore", "PAM_IGNORE", "PAM_SUCCESS")]
    for opt, want_alone, want_full in cases:
        alone, full = ctx.services("rk-" + (opt.replace("=", "-") or "default"), opt)
        rc, ms, crc, err = ctx.one_open(alone, alice, [xdg(run)])
        expect_eq(rc, want_alone, "open, %s" % (opt or "default on_error"))
        check("LimitExceeded" in err or "two" in err,
              "the log does not say RAM refused:\n%s" % err)
        expect_eq(ctx.one_open(full, alice, [xdg(run)])[0], want_full,
                  "full stack, %s" % (opt or "default on_error"))
        check(not os.path.lexists(os.path.join(run, "ramkey", "credentials.json")),
              "a file was written")
    keys = {k["AccessKeyId"]: k["Status"] for k in ctx.emu.keys_of(alice.pw_name)}
    expect_eq(keys, {k["AccessKeyId"]: "Active" for k in own}, "the user's own keys")
    log("after the user's own keys are gone, the same session opens")
    for k in own:
        ctx.emu.delete_key(alice.pw_name, k["AccessKeyId"])
    alone = ctx.service("rk-ok", "on_error=fail", alone=True)
    d = ctx.driver(alone, alice, [xdg(run)])
    expect_eq(d.open()[0], "PAM_SUCCESS", "open once RAM has room")
    key_id, _ = check_secret_file(ctx, os.path.join(run, "ramkey", "credentials.json"), alice)
    expect_eq(d.close()[0], "PAM_SUCCESS", "close")
    ctx.wait_revoked(key_id)
    d.quit()


def case_unknown_option(ctx):
    """An unknown option is logged at LOG_ERR and otherwise ignored."""
    ctx.start_agent()
    alice = ctx.user("alice")
    run = ctx.runtime_dir(alice)
    svc = ctx.service("rk", "frobnicate=1 debug --weird", alone=True)
    d = ctx.driver(svc, alice, [xdg(run)])
    expect_eq(d.open()[0], "PAM_SUCCESS", "open with unknown options")
    key_id, _ = check_secret_file(ctx, os.path.join(run, "ramkey", "credentials.json"), alice)
    expect_eq(d.close()[0], "PAM_SUCCESS", "close with unknown options")
    err = d.stderr()
    for opt in ("frobnicate=1", "--weird"):
        check(re.search(r"SYSLOG\(3\).*unknown option %s" % re.escape(opt), err),
              "unknown option %s not logged at LOG_ERR:\n%s" % (opt, err))
    check(not re.search(r"unknown option debug", err), "debug reported as unknown")
    d.quit()
    ctx.wait_revoked(key_id)


# ---------------------------------------------------------------- runner

CASES = {
    # name: (function, short code for test user names)
    "lifecycle": (case_lifecycle, "a"),
    "export_env": (case_export_env, "b"),
    "close_without_open": (case_close_without_open, "c"),
    "two_sessions": (case_two_sessions, "d"),
    "session_process_killed": (case_session_process_killed, "w"),
    "close_agent_down": (case_close_agent_down, "x"),
    "final_name_symlink": (case_final_name_symlink, "e"),
    "final_name_fifo": (case_final_name_fifo, "f"),
    "final_name_directory": (case_final_name_directory, "g"),
    "final_name_hardlink": (case_final_name_hardlink, "h"),
    "dir_component_symlink": (case_dir_component_symlink, "i"),
    "runtime_dir_foreign": (case_runtime_dir_foreign, "j"),
    "agent_down": (case_agent_down, "k"),
    "agent_silent": (case_agent_silent, "l"),
    "agent_trickle": (case_agent_trickle, "m"),
    "agent_oversized": (case_agent_oversized, "n"),
    "agent_garbage": (case_agent_garbage, "o"),
    "agent_untrusted": (case_agent_untrusted, "p"),
    "root_excluded": (case_root_excluded, "q"),
    "system_user_excluded": (case_system_user_excluded, "r"),
    "group_excluded": (case_group_excluded, "v"),
    "module_policy": (case_module_policy, "y"),
    "invalid_options": (case_invalid_options, "s"),
    "on_error": (case_on_error, "t"),
    "unknown_option": (case_unknown_option, "u"),
}


def run_case(name):
    fn, code = CASES[name]
    log("==== pam.%s (%s)" % (name, "root, real test users" if ROOT else
                              "uid %d, nss_wrapper" % os.getuid()))
    ctx = Ctx("pm" + code)
    t0 = time.monotonic()
    try:
        r = fn(ctx)
    finally:
        ctx.close()
    if r == SKIP:
        return SKIP
    log("PASS pam.%s in %.1f s" % (name, time.monotonic() - t0))
    return 0


def run_as_user():
    """Root only: every case again, as a fresh non-root test user."""
    if not ROOT:
        log("SKIP: needs root (setpriv to a test user); the other pam.* tests "
            "already ran as uid %d" % os.getuid())
        return SKIP
    t0 = time.monotonic()
    with Users("pmz") as users:
        pw = users.add("runner")
        failed = []
        for name in CASES:
            if name == "final_name_hardlink":
                continue                           # needs root by design
            env = ["%s=%s" % (k, v) for k, v in os.environ.items()
                   if k.startswith(("RAMKEY_", "PYTHON", "ASAN_", "UBSAN_", "LSAN_"))]
            argv = as_user_cmd(pw, env + [PYTHON, os.path.abspath(__file__), name])
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=120, cwd="/")
            log(r.stdout)
            if r.returncode != 0:
                failed.append("%s (exit %d)" % (name, r.returncode))
                tail = [l for l in r.stdout.splitlines() if "ramkey-agent[" not in l]
                log("FAIL pam.%s as %s (exit %d); its last lines:\n%s"
                    % (name, pw.pw_name, r.returncode, "\n".join(tail[-25:])))
        if failed:
            log("FAIL as %s: %s" % (pw.pw_name, ", ".join(failed)))
            return 1
    log("PASS pam.as_user: all cases as uid %d in %.1f s" % (pw.pw_uid, time.monotonic() - t0))
    return 0


def main():
    if len(sys.argv) != 2 or (sys.argv[1] not in CASES and sys.argv[1] != "as_user"):
        print("usage: test_pam.py %s|as_user" % "|".join(CASES), file=sys.stderr)
        return 2
    for f in (DRIVER, PAM_MODULE, SYSLOG_SHIM):
        if not os.path.exists(f):
            print("FAIL: %s is not built" % f)
            return 1
    if sys.argv[1] == "as_user":
        return run_as_user()
    return run_case(sys.argv[1])


if __name__ == "__main__":
    sys.exit(main())
