#!/usr/bin/env python3
"""Agent memory (goal, tests/bench/README.md): the agent's own pages (USS without the
clean pages of shared libraries) under 10 MB with 10,000 live leases, flat over 1,000,000
requests. RSS is printed too.

    bench_memory.py [--quick|--full] [--leases N] [--requests R]

--full: 10,000 leases, then 1,000,000 requests (open_session + close_session
pairs on the existing leases; several minutes). --quick (the default, what
ctest runs): 10,000 leases, then 100,000 requests.

The agent runs under nss_wrapper with N users; bench_load hold opens one
PAM-style session per user (one process watches them all, so the agent
holds N pidfds) and keeps it: N live leases, each with its key minted from
the emulator. Then bench_load load sends the requests from 16 client
processes (random seal keys: this bench is about the agent, not the
requester's crypto) and prints the agent's VmRSS every tenth of the run.
Printed: RSS at start (no lease), with N leases, at each tenth, the growth
over the requests after the first tenth, and the peak (VmHWM).
"""

import sys
import time

from benchlib import (PREFIX, Emulator, Holder, Workdir, bench_load, cpu_note, fail,
                      figure, mem_detail, nss_files, own_private_kb, parse_mode, raise_nofile,
                      rss_kb, smaps, start_agent)

B = "memory"
SETTLE_S = 3


def arg(name, default):
    if name in sys.argv:
        return type(default)(sys.argv[sys.argv.index(name) + 1])
    return default


def main():
    mode = parse_mode(sys.argv, full_fits=False)
    leases = arg("--leases", 10000)
    requests = arg("--requests", 1000000 if mode == "full" else 100000)
    clients = 16
    limit = raise_nofile()
    # Each watched session costs the agent a pidfd; where the hard limit
    # does not allow that many, the leases are held by TTL holders (fetch).
    holder_op = "open" if limit[0] >= leases + 256 else "fetch"
    if "--ttl-holders" in sys.argv:
        holder_op = "fetch"
    print("bench.%s: mode=%s leases=%d requests=%d clients=%d %s"
          % (B, mode, leases, requests, clients, cpu_note()), flush=True)

    with Workdir(prefix="ramkey-bench-mem-") as wd:
        passwd, group = nss_files(wd, leases)
        emu = Emulator(https=True, auto_users=True)
        agent = holder = None
        try:
            agent = start_agent(wd, emu, passwd, group, log_to_null=True)
            time.sleep(SETTLE_S)
            r0 = rss_kb(agent.pid)
            own0 = own_private_kb(agent.pid)
            figure(B, "rss_idle", r0["VmRSS"], "kB", detail="agent started, no lease; %s"
                   % mem_detail(agent.pid))
            holder = Holder(agent.socket, 0, leases, 64, op=holder_op, ttl=3600, timeout=900)
            h = holder.result
            if h["ok"] != leases:
                fail("%d of %d leases minted; first error: %s"
                     % (h["ok"], leases, h["first_error"]))
            # Settled: the agent gives free heap back within a few seconds
            # of a burst (agent/base/heap_trim.h).
            time.sleep(SETTLE_S)
            r1 = rss_kb(agent.pid)
            figure(B, "rss_leases", r1["VmRSS"], "kB", goal="< 10 MB (10240 kB)",
                   met=r1["VmRSS"] < 10240,
                   detail="%d live leases, each held by %s; minted in %.1f s, measured "
                   "%d s later; %s" % (
                       leases, "one watched session" if holder_op == "open" else
                       "a TTL holder (RLIMIT_NOFILE %d too low for pidfds)" % limit[0],
                       h["wall_s"], SETTLE_S, mem_detail(agent.pid)))
            m1 = smaps(agent.pid)
            own1 = own_private_kb(agent.pid)
            figure(B, "private_leases", own1, "kB", goal="< 10 MB (10240 kB)",
                   met=own1 < 10240,
                   detail="the agent's own pages with %d leases (USS without the clean "
                   "pages of shared libraries: anonymous memory, heap, stacks, written "
                   "copies of library pages); USS with them %s kB, PSS %s kB"
                   % (leases, m1.get("Private_Clean", 0) + m1.get("Private_Dirty", 0),
                      m1.get("Pss")))
            figure(B, "private_per_lease", "%.2f" % ((own1 - own0) / float(leases)), "kB",
                   detail="(own pages with leases - idle) / leases")
            figure(B, "rss_per_lease", "%.2f" % ((r1["VmRSS"] - r0["VmRSS"]) / float(leases)),
                   "kB", detail="(with leases - idle) / leases; anonymous: %.2f kB"
                   % ((r1["RssAnon"] - r0["RssAnon"]) / float(leases)))
            out = bench_load("load", agent.socket, "-p", PREFIX, "-f", 0, "-c", leases,
                             "-j", clients, "-r", requests, "-x", "-R", agent.pid,
                             "-e", max(requests // 10, 1), timeout=7200)
            res = out[-1]
            if res["errors"]:
                fail("load: %d errors, first: %s" % (res["errors"], res["first_error"]))
            samples = [(o["requests"], o["rss_kb"]) for o in out if "rss_kb" in o
                       and "requests" in o and "mode" not in o]
            samples.append((res["requests_total"], res["rss_kb"]))
            figure(B, "rss_series", " ".join("%d:%d" % s for s in samples), "requests:kB",
                   detail="VmRSS every tenth of the run")
            after_first = [s for s in samples if s[0] >= requests // 10]
            grow = after_first[-1][1] - after_first[0][1]
            span = max(after_first[-1][0] - after_first[0][0], 1)
            figure(B, "rss_growth", grow, "kB",
                   goal="flat (< 1 MB over the run)", met=grow < 1024,
                   detail="from request %d to %d: %.2f kB per 100k requests" % (
                       after_first[0][0], after_first[-1][0], grow * 100000.0 / span))
            r2 = rss_kb(agent.pid)
            figure(B, "rss_end", r2["VmRSS"], "kB", goal="< 10 MB (10240 kB)",
                   met=r2["VmRSS"] < 10240,
                   detail="after %d requests at %.0f opens/s; peak VmHWM %d kB"
                   % (res["requests_total"], res["pairs_per_s"], r2["VmHWM"]))
            agent.stop()          # before the holder: no revocation storm
            agent = None
        finally:
            if agent is not None:
                agent.kill()
            if holder is not None:
                holder.stop()
            emu.stop()
    print(cpu_note(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
