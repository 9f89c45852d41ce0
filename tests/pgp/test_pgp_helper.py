#!/usr/bin/env python3
"""Behaviour tests of the PGP helper (agent/pgp/helper.c, confine.c) and
of the agent's fair PGP queue (agent/pgp/pgp.c).

- confinement: confine_probe applies the helper's own pgp_confine() and
  then tries what a compromised gpg would: read the agent's credentials
  file, its state directory, another job's GnuPG home, /proc; create files
  outside its home; open sockets of every family; ptrace or signal its
  parent; start a session, a namespace, io_uring. Where the kernel lacks
  Landlock (or seccomp) the test says so and checks the rest.
- helper_process: the real helpers, seen from outside while they run:
  no_new_privs, a seccomp filter, the limits, their descriptors (pipes and
  /dev/null only), their two-variable environment, their own process
  group, no library of the agent's in their memory; gpg inherits it all.
- fair_queue: jobs of one owner run one at a time and owners take turns:
  a victim's jobs queued behind twelve of a hog's finish among the first
  few, not after them (a single FIFO queue fails this).
- key_bounds: a 4096-bit RSA key with three subkeys and 40 user IDs
  (about 40 KB armored) is accepted and encrypted to; 64 user IDs and 16
  subkeys are accepted, 65 and 17 refused, and so is a key whose minimal
  export is over 64 KiB.
- deadline: a job that outlives its deadline has its helper killed, fails
  saying so, and leaves no GnuPG home and no process behind.
- no_pidfd: the same without pidfd_open() (older kernels): helpers are
  reaped by waitpid(WNOHANG) once their reply pipe is at its end.

Keys are made with gpg once per build tree (tests/pgp/bigkeys, under a
lock; big_keys() is shared with tests/pgp_e2e).

Usage: test_pgp_helper.py BEHAVIOUR   (one ctest test per behaviour)
"""

import ctypes
import fcntl
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("RAMKEY_BUILD_DIR", ".")
SOURCE = os.environ.get("RAMKEY_SOURCE_DIR",
                        os.path.dirname(os.path.dirname(os.path.dirname(
                            os.path.abspath(__file__)))))
PROBE = os.path.join(BUILD, "tests", "pgp", "confine_probe")
HELPER = os.path.join(BUILD, "agent", "ramkey-pgp-helper")
BIG_CACHE = os.path.join(BUILD, "tests", "pgp", "bigkeys")
SANITIZED = os.environ.get("RAMKEY_SANITIZED") == "1"
SKIP = 77

# The helper's limits (agent/pgp/confine.h, pgp_wire.h).
CPU_S = 5
AS_BYTES = 64 << 20
FSIZE_BYTES = 4096 << 10
NOFILE = 64

RC_PGP_KEY = -19
RC_CRYPTO = -18

# The PGP module's own test helpers: keys, Driver, check_clean, decrypt.
_spec = importlib.util.spec_from_file_location(
    "test_pgp", os.path.join(SOURCE, "tests", "pgp", "test_pgp.py"))
pgpt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pgpt)
check = pgpt.check
Driver = pgpt.Driver
check_clean = pgpt.check_clean
decrypt = pgpt.decrypt
read = pgpt.read


def log(msg):
    print(msg, flush=True)


# ------------------------------------------------------------- big keys --

def generate_big_keys(cache):
    """cache/: big (RSA 4096, three RSA 4096 subkeys, 40 user IDs),
    uids64/uids65, subs16/subs17 (Curve25519, 16 and 17 subkeys besides
    the primary), fat (51 user IDs of 1.5 KB: over 64 KiB exported);
    NAME.asc, keys.json (name -> fingerprint) and gnupghome/."""
    work = tempfile.mkdtemp(prefix="pgpbig-")
    home = os.path.join(work, "h")
    os.mkdir(home, 0o700)
    gpg = pgpt.gpg
    try:
        fprs = {}

        def new_key(name, uid, algo, usage):
            gpg(home, "--quick-gen-key", uid, algo, usage, "never")
            fprs[name] = pgpt.primary_fpr(home, uid)
            return fprs[name]

        def export(name, fpr):
            fprs[name] = fpr
            with open(os.path.join(work, name + ".asc"), "wb") as f:
                f.write(gpg(home, "--export", "--armor", fpr).stdout)

        big = new_key("big", "Big Key 0 <big0@ramkey.test>", "rsa4096", "cert,sign")
        for usage in ("encr", "sign", "auth"):
            gpg(home, "--quick-add-key", big, "rsa4096", usage, "never")
        for i in range(1, 40):
            gpg(home, "--quick-add-uid", big, "Big Key %d <big%d@ramkey.test>" % (i, i))
        export("big", big)

        u = new_key("uids64", "Uids 0 <uids0@ramkey.test>", "ed25519", "cert,sign")
        gpg(home, "--quick-add-key", u, "cv25519", "encr", "never")
        for i in range(1, 64):
            gpg(home, "--quick-add-uid", u, "Uids %d <uids%d@ramkey.test>" % (i, i))
        export("uids64", u)
        gpg(home, "--quick-add-uid", u, "Uids 64 <uids64@ramkey.test>")
        export("uids65", u)

        s = new_key("subs16", "Subs <subs@ramkey.test>", "ed25519", "cert,sign")
        for i in range(16):
            gpg(home, "--quick-add-key", s, "cv25519", "encr", "never")
        export("subs16", s)
        gpg(home, "--quick-add-key", s, "cv25519", "encr", "never")
        export("subs17", s)

        fat = new_key("fat", "Fat 0 <fat0@ramkey.test>", "ed25519", "cert,sign")
        gpg(home, "--quick-add-key", fat, "cv25519", "encr", "never")
        for i in range(1, 51):
            gpg(home, "--quick-add-uid", fat, "Fat %d %s <fat%d@ramkey.test>"
                % (i, "x" * 1500, i))
        export("fat", fat)

        with open(os.path.join(work, "keys.json"), "w") as f:
            json.dump({k: v.lower() for k, v in fprs.items()}, f)
        pgpt.kill_agents(home)
        shutil.copytree(home, os.path.join(work, "gnupghome"),
                        ignore=shutil.ignore_patterns("S.*", "*.lock", ".#*"))
        shutil.rmtree(home)
        tmp = cache + ".new"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(work, tmp)
        os.replace(tmp, cache)
    finally:
        pgpt.kill_agents(home)
        shutil.rmtree(work, ignore_errors=True)


def big_keys():
    """The big key set (made once per build tree, under a lock)."""
    os.makedirs(os.path.dirname(BIG_CACHE), exist_ok=True)
    with open(BIG_CACHE + ".lock", "a") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(BIG_CACHE, "keys.json")):
            t0 = time.monotonic()
            generate_big_keys(BIG_CACHE)
            log("generated the big test keys in %.1f s" % (time.monotonic() - t0))
    with open(os.path.join(BIG_CACHE, "keys.json")) as f:
        return json.load(f)


def big_key_file(name):
    return os.path.join(BIG_CACHE, name + ".asc")


class BigWorkdir(pgpt.Workdir):
    """A work directory whose GNUPGHOME holds the big keys' secrets."""

    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="pgph-")
        self.gh = os.path.join(self.path, "gh")
        shutil.copytree(os.path.join(BIG_CACHE, "gnupghome"), self.gh)
        os.chmod(self.gh, 0o700)


# --------------------------------------------------------------- driver --

def new_worker(d, deadline_ms=0, helpers=0):
    """pgp_worker_new with a deadline and a number of helpers (0: the
    defaults); returns its rc."""
    return d.cmd("new - 1 - - %d %d" % (deadline_ms, helpers))["rc"]


def collect(d, ids, timeout=120):
    """The key/enc callbacks of jobs ids, in the order they came."""
    ids = set(ids)
    got = []
    for ev in list(d.events):
        if ev["ev"] in ("key", "enc") and ev.get("id") in ids:
            d.events.remove(ev)
            ids.discard(ev["id"])
            ev["t"] = time.monotonic()      # at the latest
            got.append(ev)
    deadline = time.monotonic() + timeout
    while ids:
        ev = d._next(max(deadline - time.monotonic(), 0))
        if ev is None:
            raise AssertionError("no callback for jobs %s" % sorted(ids))
        if ev["ev"] in ("key", "enc") and ev.get("id") in ids:
            ids.discard(ev["id"])
            ev["t"] = time.monotonic()
            got.append(ev)
        else:
            d.events.append(ev)
    return got


# ------------------------------------------------------ what the kernel has --

ASAN_NOTE = "RLIMIT_AS: not set in an AddressSanitizer build"


def expected_lacking(*parts):
    """What the helper says it lacks: the parts, after the note of a
    sanitized build (which sets no RLIMIT_AS)."""
    return "; ".join(([ASAN_NOTE] if SANITIZED else []) + list(parts))


def kernel_landlock_abi():
    """The kernel's Landlock ABI version, or 0 (asked directly)."""
    nr = {"x86_64": 444, "aarch64": 444, "riscv64": 444, "ppc64le": 444}.get(
        platform.machine())
    if nr is None:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    v = libc.syscall(ctypes.c_long(nr), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return v if v > 0 else 0


def kernel_has_seccomp():
    with open("/proc/self/status") as f:
        return any(line.startswith("Seccomp:") for line in f)


# ----------------------------------------------------------- confinement --

def run_probe(home, ops, pass_fd=None):
    kw = {}
    if pass_fd is not None:
        kw["pass_fds"] = (pass_fd,)
    r = subprocess.run([PROBE, home] + ops, capture_output=True, text=True, timeout=60, **kw)
    if r.returncode != 0:
        raise AssertionError("confine_probe failed (%d): %s" % (r.returncode, r.stderr))
    return json.loads(r.stdout)


def test_confinement():
    """The helper's confinement, from the inside."""
    if os.geteuid() != 0:
        log("note: not root; denials below are Landlock's or seccomp's all the same")
    abi = kernel_landlock_abi()
    seccomp = kernel_has_seccomp()
    log("kernel %s: Landlock ABI %s, seccomp %s" % (
        platform.release(), abi or "none", "yes" if seccomp else "no"))
    top = tempfile.mkdtemp(prefix="pgpconf-")
    try:
        # The agent's layout: its credentials file and state directory,
        # and TMPDIR holding this job's home and another job's.
        etc = os.path.join(top, "etc-ramkey")
        state = os.path.join(top, "state")
        tmp = os.path.join(top, "tmp")
        home = os.path.join(tmp, "ramkey-gpg-this")
        other = os.path.join(tmp, "ramkey-gpg-other")
        for d in (etc, state, tmp, home, other):
            os.makedirs(d, mode=0o700)
        creds = os.path.join(etc, "credentials")
        with open(creds, "w") as f:
            f.write("[default]\naccess_key_secret = not-for-gpg\n")
        os.chmod(creds, 0o600)
        db = os.path.join(state, "leases.db")
        with open(db, "w") as f:
            f.write("rows\n")
        theirs = os.path.join(other, "pubring.kbx")
        with open(theirs, "w") as f:
            f.write("another user's key\n")
        must_deny = [creds, etc, state, db, other, theirs, tmp, "/etc/shadow",
                     "/etc/passwd", "/proc/1/environ", "/proc/self/status",
                     os.path.join(os.path.dirname(PROBE))]
        must_allow = ["/usr/bin/gpg", "/etc/ld.so.cache", "/dev/null", "/dev/urandom"]
        ops = (["read:" + p for p in must_deny + must_allow] +
               ["create:" + os.path.join(home, "pubring.kbx"),
                "create:" + os.path.join(tmp, "planted"),
                "create:" + os.path.join(other, "planted"),
                "run:/usr/bin/gpg:--version",
                "run:/bin/cat:" + creds,
                "run:/bin/cat:/etc/ld.so.cache"])
        extra = os.open("/dev/null", os.O_RDONLY)       # an inherited descriptor
        try:
            doc = run_probe(home, ops, pass_fd=extra)
        finally:
            os.close(extra)
        log("probe: applied %s, Landlock ABI %s, lacking %r" % (
            doc["applied"], doc["landlock_abi"], doc["lacking"]))
        check(doc["rc"] == 0, "pgp_confine() succeeded (%s)" % doc["why"])
        res = {(r["what"], r["arg"]): r for r in doc["results"]}

        def denied(what, arg, errs=("EACCES", "EPERM")):
            r = res[(what, arg)]
            return not r["ok"] and r["errno"] in errs

        def allowed(what, arg):
            return res[(what, arg)]["ok"]

        # Always: no_new_privs, the limits, no dump, no inherited fd.
        check("no_new_privs" in doc["applied"] and doc["no_new_privs"] == 1, "no_new_privs")
        check("rlimits" in doc["applied"], "rlimits applied")
        lim = doc["limits"]
        check(lim["cpu"] == [CPU_S, CPU_S + 1], "RLIMIT_CPU %s" % lim["cpu"])
        check(lim["fsize"] == [FSIZE_BYTES, FSIZE_BYTES], "RLIMIT_FSIZE %s" % lim["fsize"])
        check(lim["nofile"] == [NOFILE, NOFILE], "RLIMIT_NOFILE %s" % lim["nofile"])
        check(lim["core"] == [0, 0], "RLIMIT_CORE %s" % lim["core"])
        if SANITIZED:
            log("note: sanitized build: RLIMIT_AS is not set (AddressSanitizer)")
        else:
            check(lim["as"] == [AS_BYTES, AS_BYTES], "RLIMIT_AS %s" % lim["as"])
        check(doc["dumpable"] == 0, "not dumpable")
        check(doc["open_fds"] == [], "no descriptor above stderr survives (%s)"
              % doc["open_fds"])
        check(allowed("run", "/usr/bin/gpg=0"), "gpg --version runs inside it")

        # Landlock.
        if abi > 0:
            check("landlock" in doc["applied"] and doc["landlock_abi"] == abi,
                  "Landlock applied (ABI %d)" % abi)
            for p in must_deny:
                check(denied("read", p), "Landlock: cannot open %s (%s)"
                      % (p, res[("read", p)]["errno"]))
            for p in must_allow:
                check(allowed("read", p), "Landlock: can read %s" % p)
            check(allowed("create", os.path.join(home, "pubring.kbx")),
                  "Landlock: can write in its own home")
            for p in (os.path.join(tmp, "planted"), os.path.join(other, "planted")):
                check(denied("create", p), "Landlock: cannot create %s" % p)
            check(not allowed("run", "/bin/cat=1") and allowed("run", "/bin/cat=0"),
                  "Landlock: a program it runs cannot read the credentials either "
                  "(cat exits 1), but reads a system file")
            if abi >= 6:
                check(denied("call", "kill_parent_0"),
                      "Landlock ABI %d: cannot signal its parent" % abi)
            else:
                log("note: Landlock ABI %d has no signal scoping (ABI 6)" % abi)
        else:
            log("the kernel lacks Landlock (%r): the file-system checks are skipped"
                % doc["lacking"])
            check("landlock" not in doc["applied"] and "landlock" in doc["lacking"],
                  "status says Landlock is lacking")

        # seccomp.
        if seccomp and "seccomp: no filter" not in doc["lacking"]:
            check("seccomp" in doc["applied"], "seccomp filter applied")
            for fam in ("AF_INET", "AF_INET_DGRAM", "AF_INET6", "AF_NETLINK", "AF_PACKET",
                        "AF_UNIX", "socketpair"):
                check(denied("socket", fam, ("EACCES",)), "seccomp: no %s socket" % fam)
            for call in ("setsid", "setpgid", "unshare_user", "bpf"):
                check(denied("call", call), "seccomp: %s refused" % call)
            # Nothing done to the parent (the agent, in the helper),
            # whatever Landlock ABI: a signal, a pidfd, its priority or
            # limits; its own group and itself it may signal.
            for call in ("kill_parent_0", "kill_parent_group_0", "kill_all_0",
                         "tgkill_parent_0", "pidfd_open_parent", "setpriority_parent",
                         "prlimit_parent"):
                if ("call", call) in res:
                    check(denied("call", call), "seccomp: %s refused" % call)
            for call in ("kill_own_group_0", "tgkill_self_0"):
                check(allowed("call", call), "seccomp: %s allowed" % call)
            if ("call", "io_uring_setup") in res:
                check(denied("call", "io_uring_setup", ("ENOSYS",)), "seccomp: no io_uring")
        else:
            log("seccomp lacking (%r): the socket checks are skipped" % doc["lacking"])
            check("seccomp" not in doc["applied"], "status says seccomp is lacking")
        if abi > 0 or "seccomp" in doc["applied"]:
            check(denied("call", "ptrace_attach_parent"), "cannot ptrace its parent")
    finally:
        shutil.rmtree(top, ignore_errors=True)


# -------------------------------------------------------- real helpers --

def proc_read(pid, name):
    try:
        with open("/proc/%d/%s" % (pid, name), "rb") as f:
            return f.read()
    except OSError:
        return None


def snapshot(pid):
    """What /proc says of a process, or None if it is gone."""
    status = proc_read(pid, "status")
    limits = proc_read(pid, "limits")
    environ = proc_read(pid, "environ")
    maps = proc_read(pid, "maps")
    stat = proc_read(pid, "stat")
    cmd = proc_read(pid, "cmdline")
    try:
        fds = {}
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                fds[int(fd)] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                pass
    except OSError:
        return None
    if None in (status, limits, environ, maps, stat, cmd):
        return None
    st = {}
    for line in status.decode().splitlines():
        k, _, v = line.partition(":")
        st[k] = v.strip()
    fields = stat.decode().rsplit(")", 1)[1].split()
    return {"pid": pid, "status": st, "limits": limits.decode(), "fds": fds,
            "environ": sorted(x.decode() for x in environ.split(b"\0") if x),
            "maps": maps.decode(), "ppid": int(fields[1]), "pgid": int(fields[2]),
            "argv": [x.decode() for x in cmd.split(b"\0") if x]}


def limit_of(limits, name):
    for line in limits.splitlines():
        if line.startswith(name):
            parts = line[len(name):].split()
            return [None if p == "unlimited" else int(p) for p in parts[:2]]
    return None


def children(pid):
    data = proc_read(pid, "task/%d/children" % pid)
    return [int(x) for x in data.split()] if data else []


def test_helper_process():
    """The real helpers and their gpg, seen from outside while they run."""
    if os.geteuid() != 0:
        print("SKIP: reading the helpers' /proc entries needs root")
        sys.exit(SKIP)
    big_keys()
    seccomp = kernel_has_seccomp()
    with BigWorkdir() as wd:
        d = Driver(wd.path)
        helpers, gpgs = {}, {}
        try:
            check(d.new() == 0, "worker created")
            st = d.cmd("status")
            log("driver status: %s" % st)
            check(st["unavailable"] is None, "PGP available")
            check({"no_new_privs", "rlimits"} <= set(st["confinement"]),
                  "the helper reports no_new_privs and rlimits")
            check(("landlock" in st["confinement"]) == (kernel_landlock_abi() > 0),
                  "the helper reports Landlock exactly when the kernel has it")
            check(("seccomp" in st["confinement"]) == seccomp,
                  "the helper reports seccomp exactly when the kernel has it")
            drv = d.proc.pid
            ids = []
            for j in range(12):
                ids.append(j)
                d.start("prepare_as %d %s %s" % (j, "ab"[j % 2], big_key_file("big")))
            # Watch the driver's children (the helpers) and the members of
            # their process groups (gpg: GPGME double-forks, so gpg is not
            # a child of the helper) until every job is done. A helper is
            # looked at once a gpg of its own runs: it is confined by then.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                leaders = set(children(drv))
                for p in os.listdir("/proc"):
                    if not p.isdigit() or int(p) in leaders or int(p) in gpgs:
                        continue
                    stat = proc_read(int(p), "stat")
                    if stat is None:
                        continue
                    pgid = int(stat.decode().rsplit(")", 1)[1].split()[2])
                    if pgid not in leaders:
                        continue
                    gs = snapshot(int(p))
                    if gs is None or not gs["argv"] or \
                            os.path.basename(gs["argv"][0]) != "gpg":
                        continue
                    hs = helpers.get(pgid) or snapshot(pgid)
                    if hs is None or not hs["argv"] or \
                            os.path.basename(hs["argv"][0]) != "ramkey-pgp-helper":
                        continue
                    gs["helper"] = pgid
                    gpgs[gs["pid"]] = gs
                    helpers[pgid] = hs
                st = d.cmd("status")
                if (st["running"] == 0 and st["queued"] == 0) or \
                        (len(helpers) >= 4 and len(gpgs) >= 4):
                    break
            for ev in collect(d, ids):
                check(ev["rc"] == 0, "job %d prepared" % ev["id"])
            log("seen %d helpers and %d gpg processes" % (len(helpers), len(gpgs)))
            check(len(helpers) >= 1 and len(gpgs) >= 1, "helpers and gpg caught running")
            hs, gs = list(helpers.values()), list(gpgs.values())
            n = "all %d helpers" % len(hs)

            def bad(procs, ok):
                return [p["pid"] for p in procs if not ok(p)]

            check(not bad(hs, lambda p: p["pgid"] == p["pid"]),
                  "%s lead their own process groups" % n)
            env = ["LC_ALL=C", "PATH=/usr/local/bin:/usr/bin:/bin"]
            check(not bad(hs, lambda p: p["environ"] == env),
                  "%s have the environment %s only" % (n, env))
            check(not bad(hs, lambda p: len(p["argv"]) == 2 and p["argv"][1].startswith(
                os.path.join(d.tmpdir, "ramkey-gpg-"))), "%s get their home as argument" % n)
            check(not bad(hs, lambda p: p["fds"].get(0, "").startswith("pipe:") and
                          p["fds"].get(1, "").startswith("pipe:") and
                          p["fds"].get(2) == "/dev/null"),
                  "%s have pipes on 0 and 1, /dev/null on 2" % n)
            check(not bad(hs, lambda p: all(t.startswith("pipe:") for fd, t in
                                            p["fds"].items() if fd > 2)),
                  "%s hold nothing but GPGME's pipes above stderr (e.g. %s)"
                  % (n, hs[0]["fds"]))

            def libs(p):
                return {os.path.basename(l.split()[-1]) for l in p["maps"].splitlines()
                        if "/" in l}

            agentish = ("libcurl", "libssl", "libcrypto", "libsqlite", "libjson",
                        "ramkey-agent", "pgp_driver")
            check(not bad(hs, lambda p: not any(x in l for l in libs(p) for x in agentish)),
                  "%s map no agent code or library (%s)" % (n, sorted(libs(hs[0]))))
            check(not bad(gs, lambda p: p["pgid"] == p["helper"] and
                          p["ppid"] != p["helper"]),
                  "all %d gpg run in their helper's process group (as grandchildren: "
                  "GPGME double-forks)" % len(gs))
            for kind, procs in (("helpers", hs), ("gpg", gs)):
                n = "all %d %s" % (len(procs), kind)
                check(not bad(procs, lambda p: p["status"].get("NoNewPrivs") == "1"),
                      "%s: NoNewPrivs 1" % n)
                if seccomp:
                    check(not bad(procs, lambda p: p["status"].get("Seccomp") == "2"),
                          "%s: Seccomp 2 (a filter)" % n)
                want = [("Max cpu time", [CPU_S, CPU_S + 1]),
                        ("Max open files", [NOFILE, NOFILE]),
                        ("Max file size", [FSIZE_BYTES, FSIZE_BYTES]),
                        ("Max core file size", [0, 0])]
                if not SANITIZED:
                    want.append(("Max address space", [AS_BYTES, AS_BYTES]))
                for name, v in want:
                    check(not bad(procs, lambda p: limit_of(p["limits"], name) == v),
                          "%s: %s %s" % (n, name, v))
        finally:
            rc = d.close()
        check(rc == 0, "driver exit status")
        check_clean(d, "end")


# ------------------------------------------------------------ fair queue --

def test_fair_queue():
    """One owner's jobs run one at a time; owners take turns."""
    fprs = big_keys()
    pgpt.keys()
    big = big_key_file("big")
    small = pgpt.key_file("ed", "asc")
    with BigWorkdir() as wd:
        d = Driver(wd.path)
        try:
            # Two helpers: a hog's twelve big keys, then a victim's three.
            check(new_worker(d, helpers=2) == 0, "worker created (two helpers)")
            for j in range(12):
                d.start("prepare_as %d hog %s" % (j, big))
            st = d.cmd("status")
            check(st["running"] == 1 and st["queued"] == 11,
                  "one owner alone: one helper runs, the rest wait (%d/%d)"
                  % (st["running"], st["queued"]))
            t0 = time.monotonic()
            for j in range(3):
                d.start("prepare_as %d victim %s" % (100 + j, small))
            st = d.cmd("status")
            check(st["running"] == 2, "a second owner gets the second helper at once")
            order, took = [], {}
            for ev in collect(d, list(range(12)) + [100, 101, 102]):
                check(ev["rc"] == 0, "job %d prepared" % ev["id"])
                order.append("V" if ev["id"] >= 100 else "h")
                if ev["id"] >= 100:
                    took[ev["id"]] = ev["t"] - t0
                    check(ev["fpr"] == pgpt.keys()["ed"], "victim's fingerprint")
                else:
                    check(ev["fpr"] == fprs["big"], "hog's fingerprint")
            log("completion order: %s" % "".join(order))
            log("victim's jobs done after %s" % ", ".join(
                "%.0f ms" % (took[j] * 1000) for j in sorted(took)))
            last_victim = max(i for i, o in enumerate(order) if o == "V")
            hog_before = order[:last_victim].count("h")
            check(hog_before <= 4,
                  "the victim's three jobs finish while the hog's twelve wait "
                  "(%d of the hog's finished first; a FIFO queue would make it 12)"
                  % hog_before)

            # One helper, three owners: strict turns.
            check(new_worker(d, helpers=1) == 0, "worker with one helper")
            owners = ("x", "y", "z")
            n = 0
            for o in owners:
                for k in range(3):
                    d.start("prepare_as %d %s %s" % (200 + n, o, small))
                    n += 1
            got = []
            ids = {200 + i: owners[i // 3] for i in range(9)}
            for ev in collect(d, ids):
                check(ev["rc"] == 0, "job %d prepared" % ev["id"])
                got.append(ids[ev["id"]])
            log("one helper, owners x, y, z queued three each in that order: %s"
                % "".join(got))
            check(got == list("xyzxyzxyz"), "owners take turns, each in its own order")
        finally:
            rc = d.close()
        check(rc == 0, "driver exit status")
        check_clean(d, "end")


# ------------------------------------------------------------ key bounds --

def test_key_bounds():
    """The 40-user-ID 4096-bit RSA key is accepted; over the bounds is not."""
    fprs = big_keys()
    big = big_key_file("big")
    size = os.path.getsize(big)
    log("big key: %d bytes armored" % size)
    check(35000 < size < 49152, "the big key is about 40 KB armored (%d bytes)" % size)
    with BigWorkdir() as wd:
        d = Driver(wd.path)
        try:
            check(d.new() == 0, "worker created")
            t = time.monotonic()
            ev = d.prepare(1, big)
            log("prepared the big key in %.0f ms" % ((time.monotonic() - t) * 1000))
            check(ev["rc"] == 0 and ev["fpr"] == fprs["big"],
                  "4096-bit RSA, three subkeys, 40 user IDs: accepted (%s)" % ev["why"])
            ev = d.encrypt(2, 1)
            check(ev["rc"] == 0 and decrypt(wd.gh, ev["b64"]) == pgpt.SECRET.encode(),
                  "and encrypted to; gpg decrypts the secret")
            for n, name in ((3, "uids64"), (4, "subs16")):
                ev = d.prepare(n, big_key_file(name))
                check(ev["rc"] == 0 and ev["fpr"] == fprs[name], "%s accepted" % name)
            cases = [
                (5, "uids65", "the PGP key has 65 user IDs; at most 64 are accepted"),
                (6, "subs17", "the PGP key has 17 subkeys; at most 16 are accepted"),
                (7, "fat", "KiB after a minimal export; at most 64 KiB is accepted"),
            ]
            for n, name, why in cases:
                ev = d.prepare(n, big_key_file(name))
                check(ev["rc"] == RC_PGP_KEY and why in (ev["why"] or ""),
                      "%s refused: %r" % (name, ev["why"]))
            check_clean(d, "after the bounds")
        finally:
            rc = d.close()
        check(rc == 0, "driver exit status")
        check_clean(d, "end")


# -------------------------------------------------------------- deadline --

def test_deadline():
    """Past the deadline the helper's group is killed and the job fails
    saying so; nothing is left behind and the queue goes on."""
    big_keys()
    pgpt.keys()
    big = big_key_file("big")
    with BigWorkdir() as wd:
        d = Driver(wd.path)
        try:
            check(d.new() == 0, "worker created (default deadline)")
            ev = d.prepare(1, big)
            check(ev["rc"] == 0, "the big key is prepared within the default deadline")
            # A deadline no job can meet.
            check(new_worker(d, deadline_ms=20) == 0, "worker with a 20 ms deadline")
            st = d.cmd("status")
            check(st["unavailable"] is None and st["deadline_ms"] == 20,
                  "its start-up check still passed (it waits longer)")
            t = time.monotonic()
            ev = d.prepare(2, big)
            took = time.monotonic() - t
            check(ev["rc"] == RC_PGP_KEY and
                  ev["why"] == "checking the PGP key took longer than 20 ms; "
                  "a key this costly is refused", "prepare past the deadline: %r" % ev["why"])
            check(took < 2, "answered at the deadline, not at the job's end (%.0f ms)"
                  % (took * 1000))
            check_clean(d, "after the killed prepare")
            ev = d.encrypt(3, 1)
            check(ev["rc"] == RC_CRYPTO and
                  ev["why"] == "encrypting to the PGP key took longer than 20 ms",
                  "encrypt past the deadline: %r" % ev["why"])
            check_clean(d, "after the killed encryption")
            # The same owner's next jobs run: the killed helper was reaped.
            for j in range(4):
                d.start("prepare_as %d test %s" % (10 + j, big))
            for j in range(4):
                ev = d.wait(10 + j)
                check(ev["rc"] == RC_PGP_KEY, "queued job %d also ends at its deadline" % j)
            st = d.cmd("status")
            check(st["running"] == 0 and st["queued"] == 0, "no helper left running")
            check_clean(d, "after the queue")
            check(d.new() == 0, "worker with the default deadline again")
            ev = d.prepare(20, big)
            check(ev["rc"] == 0, "and the key is fine")
        finally:
            rc = d.close()
        check(rc == 0, "driver exit status")
        check_clean(d, "end")


# ------------------------------------------------------- without pidfds --

def test_no_pidfd():
    """On a kernel without pidfd_open() the agent learns of a helper's
    exit by waitpid(WNOHANG) once its reply pipe is at its end: jobs,
    deadlines and cancellations work the same."""
    import ctypes.util
    if ctypes.util.find_library("seccomp") is None:
        print("SKIP: needs libseccomp (to make pidfd_open fail)")
        sys.exit(SKIP)
    fprs = big_keys()
    keys = pgpt.keys()
    wrapper = (sys.executable, os.path.join(SOURCE, "tests", "lib", "seccomp_deny.py"),
               "pidfd_open=ENOSYS", "--")
    with BigWorkdir() as wd:
        d = Driver(wd.path, wrapper=wrapper)
        try:
            check(d.new() == 0, "worker created, pidfd_open() failing with ENOSYS")
            st = d.cmd("status")
            check(st["unavailable"] is None, "PGP available")
            ev = d.prepare(1, pgpt.key_file("ed", "asc"))
            check(ev["rc"] == 0 and ev["fpr"] == keys["ed"], "a key is prepared")
            ev = d.encrypt(2, 1)
            check(ev["rc"] == 0, "and encrypted to")
            gh = os.path.join(wd.path, "gh-small")
            shutil.copytree(os.path.join(pgpt.KEY_CACHE, "gnupghome"), gh)
            check(decrypt(gh, ev["b64"]) == pgpt.SECRET.encode(), "gpg decrypts it")
            pgpt.kill_agents(gh)
            for j in range(6):
                d.start("prepare_as %d %s %s" % (10 + j, "xy"[j % 2], big_key_file("big")))
            d.cmd("cancel 12")
            got = collect(d, [10, 11, 13, 14, 15])
            check(all(e["rc"] == 0 and e["fpr"] == fprs["big"] for e in got),
                  "six jobs of two owners, one cancelled while it ran or waited: the "
                  "other five complete")
            check_clean(d, "after the jobs")
            check(new_worker(d, deadline_ms=20) == 0, "worker with a 20 ms deadline")
            ev = d.prepare(20, big_key_file("big"))
            check(ev["rc"] == RC_PGP_KEY and "took longer than 20 ms" in ev["why"],
                  "the deadline kills the helper: %r" % ev["why"])
            check_clean(d, "after the deadline")
            st = d.cmd("status")
            check(st["running"] == 0, "the killed helper was reaped")
        finally:
            rc = d.close()
        check(rc == 0, "driver exit status")
        check_clean(d, "end")


TESTS = {
    "no_pidfd": test_no_pidfd,
    "confinement": test_confinement,
    "helper_process": test_helper_process,
    "fair_queue": test_fair_queue,
    "key_bounds": test_key_bounds,
    "deadline": test_deadline,
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in TESTS:
        sys.exit("usage: %s {%s}" % (sys.argv[0], "|".join(TESTS)))
    for prog in (PROBE, HELPER, pgpt.DRIVER):
        if not os.access(prog, os.X_OK):
            sys.exit("%s not built (set RAMKEY_BUILD_DIR)" % prog)
    if not shutil.which("gpg") or not shutil.which("gpgconf"):
        sys.exit("gpg and gpgconf are needed (package gnupg)")
    t0 = time.monotonic()
    TESTS[sys.argv[1]]()
    print("PASS pgp.%s (%.1f s)" % (sys.argv[1], time.monotonic() - t0))


if __name__ == "__main__":
    main()
