"""Helpers shared by the benchmarks in tests/bench .

Every benchmark prints one line per figure:

    bench.<name>.<figure>: <value> <unit> [goal ... MET|NOT MET] [detail]

and exits 0 whatever the figures are (benchmarks are not pass/fail); it
exits non-zero only when the measurement itself could not be made (the
agent did not start, requests failed).

Many users without real accounts: the agent runs under nss_wrapper
(LD_PRELOAD=libnss_wrapper.so, NSS_WRAPPER_PASSWD/GROUP) with a passwd
file listing PREFIX0 .. PREFIX<n-1>, uids from 20000 up (the agent refuses
uids from 65534 up); the requests name those users (trusted_uids holds the
uid running the benchmark).
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from emulator import Emulator  # noqa: E402
from ramkey_fixture import (AGENT_BIN, BUILD_DIR, CLIENT_BIN,  # noqa: E402
                            SOURCE_DIR, Agent, Workdir)

BENCH_LOAD = os.path.join(BUILD_DIR, "tests", "bench", "bench_load")
UID_BASE = 20000
GID = 20000
PREFIX = "rkb"

__all__ = ["Emulator", "Agent", "Workdir", "BENCH_LOAD", "AGENT_BIN",
           "CLIENT_BIN", "SOURCE_DIR", "BUILD_DIR", "PREFIX", "UID_BASE",
           "figure", "nss_files", "nss_env", "start_agent", "bench_load",
           "rss_kb", "smaps", "mem_detail", "Holder", "SubWorkdir", "parse_mode",
           "cpu_note", "fail"]


def figure(bench, name, value, unit="", goal=None, met=None, detail=""):
    """One figure, one line."""
    line = "bench.%s.%s: %s" % (bench, name, value)
    if unit:
        line += " " + unit
    if goal is not None:
        line += "  [goal %s: %s]" % (goal, "MET" if met else "NOT MET")
    if detail:
        line += "  (%s)" % detail
    print(line, flush=True)


def fail(msg):
    print("bench: ERROR: %s" % msg, flush=True)
    sys.exit(1)


def parse_mode(argv, full_fits=False):
    """--quick / --full from the command line; the default is the full
    size where it fits the CI budget (full_fits), else quick."""
    if "--full" in argv:
        return "full"
    if "--quick" in argv:
        return "quick"
    return "full" if full_fits else "quick"


def cpu_note():
    """Load on the machine while we measure (other tests may be running)."""
    try:
        with open("/proc/loadavg") as f:
            la = f.read().split()[:3]
    except OSError:
        la = ["?"] * 3
    return "ncpu=%d loadavg=%s" % (os.cpu_count() or 0, "/".join(la))


class SubWorkdir:
    """A directory inside a Workdir, usable where a Workdir is (a second
    Agent needs its own); removed with the Workdir."""

    def __init__(self, wd, name):
        self.path = wd.join(name)
        os.makedirs(self.path, mode=0o755, exist_ok=True)
        os.chmod(self.path, 0o755)

    def join(self, *parts):
        return os.path.join(self.path, *parts)


def nss_files(wd, count, prefix=PREFIX, homes=False):
    """nss_wrapper passwd and group files: root, the invoking user and
    prefix0 .. prefix<count-1>. Returns (passwd, group)."""
    passwd = wd.join("passwd")
    group = wd.join("group")
    me = os.geteuid()
    lines = ["root:x:0:0:root:/root:/bin/sh"]
    glines = ["root:x:0:", "rkbench:x:%d:" % GID]
    if me != 0:
        import pwd
        try:
            p = pwd.getpwuid(me)
            lines.append("%s:x:%d:%d::%s:/bin/sh" % (p.pw_name, me, p.pw_gid, p.pw_dir))
            glines.append("%s:x:%d:" % (p.pw_name, p.pw_gid))
        except KeyError:
            pass
    home_root = wd.join("home")
    for i in range(count):
        name = "%s%d" % (prefix, i)
        home = os.path.join(home_root, name)
        lines.append("%s:x:%d:%d::%s:/bin/sh" % (name, UID_BASE + i, GID, home))
        if homes:
            os.makedirs(home, exist_ok=True)
            os.chmod(home, 0o700)
            if me == 0:
                os.chown(home, UID_BASE + i, GID)
    with open(passwd, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(group, "w") as f:
        f.write("\n".join(glines) + "\n")
    return passwd, group


def _nss_wrapper_lib():
    try:
        out = subprocess.run(["pkg-config", "--libs", "nss_wrapper"], capture_output=True,
                             text=True, check=True).stdout.split()
        if out and out[0].startswith("/"):
            return out[0]
    except (OSError, subprocess.CalledProcessError):
        pass
    return "libnss_wrapper.so"


def nss_env(passwd, group):
    return {"LD_PRELOAD": _nss_wrapper_lib(), "NSS_WRAPPER_PASSWD": passwd,
            "NSS_WRAPPER_GROUP": group}


def start_agent(wd, emu, passwd, group, log_to_null=False, **conf):
    """A real agent under nss_wrapper. log_to_null: its log (two audit
    lines per request) goes to /dev/null instead of a file, for long runs."""
    agent = Agent(wd, emu, **conf)
    if log_to_null:
        agent.log_path = "/dev/null"
    agent.start(env=nss_env(passwd, group))
    return agent


def bench_load(*args, timeout=600, stdin=None):
    """Run bench_load; returns the list of JSON objects it printed."""
    r = subprocess.run([BENCH_LOAD] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout, input=stdin)
    if r.returncode != 0:
        fail("bench_load %s exited %d: %s" % (args[0], r.returncode, r.stderr.strip()))
    out = []
    for line in r.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


class Holder:
    """bench_load hold -W: opens one session per user and keeps them (this
    process is their watched process) until stop()."""

    def __init__(self, sock, first, count, concurrency, op="open", ttl=None,
                 prefix=PREFIX, timeout=600):
        args = [BENCH_LOAD, "hold", sock, "-p", prefix, "-f", first, "-c", count,
                "-j", concurrency, "-o", op, "-W"]
        if ttl is not None:
            args += ["-t", ttl]
        self.proc = subprocess.Popen([str(a) for a in args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        import select
        deadline = time.monotonic() + timeout
        line = ""
        while not line:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                fail("bench_load hold: no result within %d s" % timeout)
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                line = self.proc.stdout.readline()
                if not line:
                    err = self.proc.stderr.read()
                    fail("bench_load hold died (%s): %s" % (self.proc.wait(), err))
        self.result = json.loads(line)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def rss_kb(pid):
    """VmRSS and VmHWM of a process, in kB."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])
    return out


def smaps(pid):
    """/proc/PID/smaps_rollup in kB: Rss, Pss, Private_Clean, Private_Dirty,
    Shared_Clean, Anonymous, ..."""
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                v = v.split()
                if v and v[-1] == "kB":
                    out[k] = int(v[0])
    except OSError:
        pass
    return out


def own_private_kb(pid):
    """The process's own memory in kB: private pages, without the clean
    pages of files it maps (library code and read-only data count as
    private whenever no other process happens to map that library, so
    USS moves with what else runs). Anonymous memory, the heap, stacks,
    and the written (copied) pages of file mappings count."""
    total = 0
    anon = True
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5 and ":" in head[3]:
                name = head[5] if len(head) > 5 else ""
                anon = not name.startswith("/") or name.startswith("/memfd:")
                continue
            if head and head[0] == "Private_Dirty:":
                total += int(head[1])
            elif head and head[0] == "Private_Clean:" and anon:
                total += int(head[1])
    return total


def mem_detail(pid):
    """One line: where a process's RSS is (shared library pages vs its own)."""
    r, m = rss_kb(pid), smaps(pid)
    return ("RssFile %s kB (mostly shared library pages), RssAnon %s kB, "
            "PSS %s kB, private %s kB (own %s kB: without libraries' clean pages)"
            % (r.get("RssFile"), r.get("RssAnon"), m.get("Pss"),
               m.get("Private_Clean", 0) + m.get("Private_Dirty", 0), own_private_kb(pid)))


def raise_nofile():
    """Soft RLIMIT_NOFILE up to the hard limit, for us and the agent we
    start (each watched session holds a pidfd in the agent)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def which(name):
    return shutil.which(name)
