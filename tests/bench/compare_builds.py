#!/usr/bin/env python3
"""The benchmarks of two builds in one run, side by side: how a change
moved each figure on the same machine at the same time (not a ctest test).

    compare_builds.py OLD_BUILD_DIR [NEW_BUILD_DIR] [--rounds N] [--only NAME,...]

NEW_BUILD_DIR defaults to $RAMKEY_BUILD_DIR or ./build. Both builds run
this tree's bench scripts (the requester side of an old build is its own
bench_load and pam_bench, so the protocol must match). Each round runs
every bench for the old build, then for the new one; with more rounds the
order alternates, so that a burst of load from elsewhere does not land on
one build only. A figure whose value is a number is shown per round and
as the median; a figure a build does not print (a feature it lacks) is
shown as "-". Benches: throughput, storm (with its STS half), memory,
pam_session (in-process and a fresh pamtester process per login).
"""

import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))
BENCHES = [
    ("throughput", "bench_throughput.py", []),
    ("storm", "bench_storm.py", []),
    ("memory", "bench_memory.py", ["--requests", "100000"]),
    ("pam_session", "bench_pam_session.py", []),
]
LINE = re.compile(r"^bench\.([a-z_]+)\.([a-z0-9_]+): ([^\[(]*?)\s*(\[[^\]]*\])?\s*(\(.*)?$")


def number(v):
    try:
        return float(v)
    except ValueError:
        return None


def run(build, script, args):
    env = dict(os.environ, RAMKEY_BUILD_DIR=build, RAMKEY_SOURCE_DIR=SOURCE,
               PYTHONPATH=os.path.join(SOURCE, "tests", "lib"))
    r = subprocess.run([sys.executable, os.path.join(HERE, script)] + args, env=env,
                       capture_output=True, text=True, timeout=1800)
    figures = {}
    for line in r.stdout.splitlines():
        m = LINE.match(line)
        if m:
            text = m.group(3).strip()
            parts = text.split(None, 1)
            if number(parts[0]) is not None and (len(parts) == 1 or
                                                 number(parts[1].split()[0]) is None):
                value, unit = parts[0], parts[1] if len(parts) > 1 else ""
            else:
                value, unit = text, ""
            figures[m.group(2)] = (value, unit, m.group(4) or "")
    return figures, r.returncode, r.stdout + r.stderr


def main():
    args = [a for a in sys.argv[1:]]
    rounds, only = 1, None
    if "--rounds" in args:
        i = args.index("--rounds")
        rounds = int(args[i + 1])
        del args[i:i + 2]
    if "--only" in args:
        i = args.index("--only")
        only = set(args[i + 1].split(","))
        del args[i:i + 2]
    if not args:
        print(__doc__)
        return 2
    old = os.path.abspath(args[0])
    new = os.path.abspath(args[1] if len(args) > 1 else
                          os.environ.get("RAMKEY_BUILD_DIR", os.path.join(SOURCE, "build")))
    builds = {"old": old, "new": new}
    results = {}      # (bench, figure) -> {"old": [values], "new": [values]}, units
    for rnd in range(rounds):
        order = ["old", "new"] if rnd % 2 == 0 else ["new", "old"]
        for name, script, extra in BENCHES:
            if only and name not in only:
                continue
            for which in order:
                figs, rc, out = run(builds[which], script, extra)
                load = open("/proc/loadavg").read().split()[:3]
                print("round %d %-11s %s: %d figures, exit %d, load %s"
                      % (rnd + 1, name, which, len(figs), rc, "/".join(load)), flush=True)
                if rc != 0:
                    print("    " + "\n    ".join(out.strip().splitlines()[-3:]), flush=True)
                for fig, (value, unit, goal) in figs.items():
                    e = results.setdefault((name, fig), {"old": [], "new": [], "unit": unit,
                                                         "goal": goal})
                    e[which].append(value)
                    e["goal"] = e["goal"] or goal
    print("\n%-44s %-26s %-26s %s" % ("figure", "old (" + old + ")", "new (" + new + ")",
                                      "goal"))
    for (name, fig), e in results.items():
        cells = []
        for which in ("old", "new"):
            vals = e[which]
            nums = [number(v) for v in vals]
            if not vals:
                cells.append("-")
            elif all(n is not None for n in nums) and len(nums) > 1:
                cells.append("%g %s [%s]" % (statistics.median(nums), e["unit"],
                                              " ".join(vals)))
            else:
                cells.append("%s %s" % (vals[0] if len(vals) == 1 else " | ".join(vals),
                                        e["unit"]))
        goal = re.sub(r":\s*(MET|NOT MET)\]$", "]", e["goal"])
        print("%-44s %-26s %-26s %s" % (name + "." + fig, cells[0], cells[1], goal))
    return 0


if __name__ == "__main__":
    sys.exit(main())
