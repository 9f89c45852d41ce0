#!/usr/bin/env python3
"""Where the agent's CPU time goes, per function (not a ctest test; for
people chasing a benchmark figure). Runs a workload against an agent under
valgrind --tool=callgrind, counting only the workload (callgrind_control
-z before, -d after), and prints callgrind_annotate's inclusive and
exclusive tables. Instruction counts do not depend on the machine's load.

    profile_agent.py WORKLOAD [--requests N] [--out DIR] [--massif]

WORKLOAD:
  held     open_session + close_session pairs for users that already hold a
           lease (the throughput bench; random seal keys: agent side only)
  mint     one open_session per new user (each mints: ListAccessKeys +
           CreateAccessKey against the emulator, no latency)
  idle     nothing: the agent's start-up (for memory questions use massif)

--massif: valgrind --tool=massif instead (heap by allocation site, the
whole run including start-up); prints ms_print's peak snapshot. With
WORKLOAD mint and --requests N this shows the heap of N live leases.

The raw callgrind.out / massif.out file stays in --out (default: a temporary directory,
printed) for kcachegrind or callgrind_annotate --tree=caller.
"""

import os
import subprocess
import sys
import tempfile
import time

import benchlib
import ramkey_fixture
from benchlib import PREFIX, Emulator, Holder, Workdir, bench_load, fail, nss_files, start_agent


def arg(name, default):
    if name in sys.argv:
        return type(default)(sys.argv[sys.argv.index(name) + 1])
    return default


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("held", "mint", "idle"):
        print(__doc__)
        return 2
    work = sys.argv[1]
    requests = arg("--requests", 4000 if work == "held" else 200)
    out = arg("--out", "") or tempfile.mkdtemp(prefix="ramkey-callgrind-")
    os.makedirs(out, exist_ok=True)
    massif = "--massif" in sys.argv
    cg_out = os.path.join(out, "massif.out" if massif else "callgrind.out")
    users = 64 if work != "mint" else requests
    benchlib.raise_nofile()
    with Workdir(prefix="ramkey-bench-prof-") as wd:
        wrapper = wd.join("agent-under-callgrind")
        with open(wrapper, "w") as f:
            if massif:
                f.write("#!/bin/sh\nexec valgrind --tool=massif --massif-out-file=%s "
                        "--depth=12 %s \"$@\"\n" % (cg_out, ramkey_fixture.AGENT_BIN))
            else:
                f.write("#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s "
                        "--dump-instr=no %s \"$@\"\n"
                        % (cg_out, ramkey_fixture.AGENT_BIN))
        os.chmod(wrapper, 0o755)
        ramkey_fixture.AGENT_BIN = wrapper
        passwd, group = nss_files(wd, users)
        emu = Emulator(https=True, auto_users=True)
        agent = holder = None
        try:
            agent = start_agent(wd, emu, passwd, group, log_to_null=True)
            agent.wait_ready(timeout=120)
            if work == "held":
                holder = Holder(agent.socket, 0, users, 8, timeout=600)
            if not massif:
                subprocess.run(["callgrind_control", "-z", str(agent.pid)], check=True,
                               capture_output=True)
            t0 = time.monotonic()
            if work == "held":
                r = bench_load("load", agent.socket, "-p", PREFIX, "-f", 0, "-c", users, "-j", 4,
                               "-r", requests, "-x", timeout=3600)[-1]
                done = r["requests_total"]
            elif work == "mint":
                holder = Holder(agent.socket, 0, users, 16, timeout=3600)
                done = holder.result["ok"]
            else:
                time.sleep(1)
                done = 0
            wall = time.monotonic() - t0
            if work == "mint" and massif:
                time.sleep(2)     # let the agent settle with the leases live
            if not massif:
                subprocess.run(["callgrind_control", "-d", str(agent.pid)], check=True,
                               capture_output=True)
            print("profile: workload=%s requests=%d wall=%.1f s (under callgrind) out=%s"
                  % (work, done, wall, out), flush=True)
            agent.stop(timeout=120)
            agent = None
        finally:
            if agent is not None:
                agent.kill()
            if holder is not None:
                holder.stop()
            emu.stop()
    if massif:
        r = subprocess.run(["ms_print", "--threshold=2", cg_out], capture_output=True, text=True)
        print(r.stdout[:30000])
        return 0
    dumps = sorted(p for p in os.listdir(out) if p.startswith("callgrind.out"))
    dump = os.path.join(out, [d for d in dumps if d != "callgrind.out"][0]
                        if len(dumps) > 1 else dumps[0])
    for inclusive in ("yes", "no"):
        r = subprocess.run(["callgrind_annotate", "--inclusive=%s" % inclusive,
                            "--threshold=99", dump], capture_output=True, text=True)
        lines = r.stdout.splitlines()
        print("\n==== %s (%s) ====" % ("inclusive" if inclusive == "yes" else "exclusive", dump))
        print("\n".join(lines[:70]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
