"""Helpers for the hostile-user tests (tests/hostile): process memory and
size figures, latencies, and a scan of a process's memory for a secret.

Standard library only; the scan reads /proc/PID/mem and needs root (or
ptrace rights over the process).
"""

import os
import sys
import time


def rss_kib(pid):
    """Resident set size of pid, KiB (VmRSS)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def tree_bytes(path):
    """Bytes of the files under path (apparent sizes)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total


def timed(fn, *args, **kw):
    """(result, seconds) of fn(*args, **kw)."""
    t0 = time.monotonic()
    r = fn(*args, **kw)
    return r, time.monotonic() - t0


def regions(pid):
    """The readable mappings of pid: dicts with lo, hi, perms, name and
    locked (KiB mlock'd in the region, from /proc/PID/smaps)."""
    out = []
    cur = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):
                f_ = line.split()
                lo, hi = (int(x, 16) for x in f_[0].split("-"))
                cur = {"lo": lo, "hi": hi, "perms": f_[1],
                       "name": f_[5] if len(f_) > 5 else "", "locked": 0,
                       "line": line.strip()}
                out.append(cur)
            elif first == "Locked:" and cur is not None:
                cur["locked"] = int(line.split()[1])
    return out


def memory_hits(pid, needles):
    """Where each needle (bytes) is in pid's readable memory: a dict
    needle -> list of (region, offset). Regions that cannot be read
    (guard pages, [vvar]) are skipped."""
    hits = {n: [] for n in needles}
    with open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for reg in regions(pid):
            if "r" not in reg["perms"] or reg["name"] in ("[vvar]", "[vsyscall]"):
                continue
            try:
                mem.seek(reg["lo"])
                data = mem.read(reg["hi"] - reg["lo"])
            except (OSError, ValueError, OverflowError):
                continue
            for n in needles:
                i = data.find(n)
                while i >= 0:
                    hits[n].append((reg, i))
                    i = data.find(n, i + 1)
    return hits


def describe(hits):
    return ["%s (locked %d KiB) +%#x" % (reg["line"], reg["locked"], off)
            for reg, off in hits]


HERE = os.path.dirname(os.path.abspath(__file__))


def as_user_python(pw, script, *args):
    """argv running tests/hostile/<script> with python3 as pw, with
    PYTHONPATH so that it finds tests/lib."""
    from ramkey_fixture import as_user_cmd
    return as_user_cmd(pw, ["env", "PYTHONPATH=" + os.environ.get(
        "PYTHONPATH", os.path.join(HERE, "..", "lib")), "python3",
        os.path.join(HERE, script)] + [str(a) for a in args])


_failed = []


def check(cond, what):
    """Print the figure or fact checked; a false one fails the test at
    finish(), after every figure has been printed."""
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        _failed.append(what)
    return cond


def require(cond, what):
    """As check(), but stop at once: what follows depends on it."""
    if not check(cond, what):
        raise AssertionError(what)


def finish():
    """Exit 1 if any check failed."""
    if _failed:
        print("%d check(s) failed:" % len(_failed))
        for what in _failed:
            print("  " + what)
        sys.exit(1)
    print("all checks passed")


def summary(label, values):
    """'label: n=.. median .. max ..' of a list of seconds, in ms."""
    if not values:
        return "%s: none" % label
    v = sorted(values)
    return "%s: n=%d median %.1f ms, max %.1f ms" % (
        label, len(v), v[len(v) // 2] * 1000, v[-1] * 1000)


def raw_fetch(sock_path, user, timeout=10.0):
    """A fetch for user as this process (root), straight on the socket
    with a throwaway sealing key: (reply, seconds). What is timed is the
    agent's answer, without a client process to start (on a loaded
    machine that alone varies by tens of milliseconds)."""
    import base64
    from ramkey_fixture import raw_call
    req = {"v": 1, "op": "fetch", "user": user,
           "seal_key": base64.b64encode(os.urandom(32)).decode()}
    t0 = time.monotonic()
    rep = raw_call(sock_path, req, timeout=timeout)
    return rep, time.monotonic() - t0


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if v else float("nan")


def check_latency(label, before, during, bound_s):
    """The bound applies to the median of the samples during the attack;
    none may reach 1 s, the least a stall behind the attack would cost.
    Single samples vary on a loaded machine for reasons of its own."""
    print(summary(label + " before", before))
    print(summary(label + " during", during))
    check(len(during) >= 5, "%d samples during" % len(during))
    if not during:
        return
    check(median(during) < bound_s, "median %s during: %.1f ms (< %.0f ms)"
          % (label, median(during) * 1000, bound_s * 1000))
    check(max(during) < 1.0, "slowest %s during: %.1f ms (< 1 s)"
          % (label, max(during) * 1000))
