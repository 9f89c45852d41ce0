#!/usr/bin/env python3
"""Agent throughput for users who already hold a lease, at the
protocol level, against the crypto floor measured in the same run.

    bench_throughput.py [--quick|--full] [--clients N] [--seconds S]

What runs:
1. bench_load crypto: key pair (ramkey_seal_keypair_new), seal, seal-open
   and Unix-socket round trips, in microseconds, and the floor they imply
   (ncpu / (key pair + seal + open + round trips of one open and one close)).
2. The measured floor: bench_load floor-server, a one-thread epoll server
   that does what the agent must do per request and nothing else (read a
   frame, seal a secret to the requester's key, write a reply), loaded by
   the same clients as the agent.
3. The agent (under nss_wrapper, USERS users, each holding a lease through
   one long-lived session opened at the start), loaded by CLIENTS processes
   that each loop: connect, open_session with a fresh X25519 key pair,
   seal-open the reply, connect, close_session (as the PAM module does: one
   connection per request). No file I/O on the requester side.
Rounds alternate floor and agent so that a burst of load from elsewhere
hits both; the best round of each is reported. Also reported: each
server's CPU time per open+close pair; the agent with no requester crypto
(-x: random seal keys, boxes not opened), the agent's own capacity; and,
as a diagnostic, a second agent whose state_dir is on tmpfs (/dev/shm), so
that its commits cost no fdatasync: the difference is what the durable
store costs.

Goal: agent >= 80% of the floor and >= 7,000 opens/s on 2 cores.
"""

import os
import shutil
import subprocess
import sys
import tempfile

from benchlib import (BENCH_LOAD, PREFIX, Emulator, Holder, SubWorkdir, Workdir, bench_load,
                      cpu_note, fail, figure, nss_files, parse_mode, raise_nofile, rss_kb,
                      start_agent)

B = "throughput"


def arg(name, default):
    if name in sys.argv:
        return type(default)(sys.argv[sys.argv.index(name) + 1])
    return default


def cpu_ticks(pid):
    """utime and stime of a process, in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def load(sock, clients, seconds, users, extra=(), server_pid=None, first=0):
    """One load run; with server_pid, also the server's CPU time per
    open+close pair (user and system, microseconds)."""
    t0 = cpu_ticks(server_pid) if server_pid else None
    res = bench_load("load", sock, "-p", PREFIX, "-f", first, "-c", users, "-j", clients,
                     "-s", seconds, "-w", 0.5, *extra, timeout=seconds + 120)
    r = res[-1]
    if r["errors"]:
        fail("load: %d errors, first: %s" % (r["errors"], r["first_error"]))
    if server_pid:
        t1 = cpu_ticks(server_pid)
        pairs = max(r["requests_total"] / 2.0, 1)
        hz = os.sysconf("SC_CLK_TCK")
        r["server_user_us"] = (t1[0] - t0[0]) * 1e6 / hz / pairs
        r["server_sys_us"] = (t1[1] - t0[1]) * 1e6 / hz / pairs
    return r


def main():
    mode = parse_mode(sys.argv, full_fits=True)
    clients = arg("--clients", 16)
    seconds = arg("--seconds", 3.0 if mode == "full" else 2.0)
    rounds = 3 if mode == "full" else 2
    users = 64
    raise_nofile()
    print("bench.%s: mode=%s clients=%d seconds=%.1f rounds=%d users=%d %s"
          % (B, mode, clients, seconds, rounds, users, cpu_note()), flush=True)

    c = bench_load("crypto", "-n", 3000)[0]
    figure(B, "keypair", "%.1f" % c["keypair_us"], "us",
           detail="ramkey_seal_keypair_new: sodium_malloc + crypto_box_keypair; "
           "crypto_box_keypair alone %.1f us" % c["keypair_raw_us"])
    figure(B, "seal", "%.1f" % c["seal_us"], "us", detail="crypto_box_seal, 30-byte secret")
    figure(B, "seal_open", "%.1f" % c["open_us"], "us",
           detail="ramkey_seal_open: sodium_malloc + crypto_box_seal_open")
    figure(B, "socket_rtt", "%.1f" % c["rtt_us"], "us",
           detail="open connection; with connect/accept/close %.1f us" % c["connect_rtt_us"])
    per_pair = c["keypair_us"] + c["seal_us"] + c["open_us"] + 2 * c["connect_rtt_us"]
    computed = c["ncpu"] * 1e6 / per_pair
    figure(B, "floor_computed", "%.0f" % computed, "opens/s",
           detail="%d cores / (key pair + seal + open + 2 connection round trips "
           "= %.0f us)" % (c["ncpu"], per_pair))

    with Workdir(prefix="ramkey-bench-tp-") as wd:
        rundir = wd.join("floor")
        os.makedirs(rundir, mode=0o755)
        fsock = os.path.join(rundir, "floor.sock")
        floor = subprocess.Popen([BENCH_LOAD, "floor-server", fsock], stdout=subprocess.PIPE,
                                 text=True)
        if floor.stdout.readline().strip() != "ready":
            fail("floor-server did not start")
        # Users 0..63 for the agent, 64..127 for the diagnostic agent whose
        # state_dir is on tmpfs (its commits' fdatasync costs nothing).
        passwd, group = nss_files(wd, 2 * users)
        emu = Emulator(https=True, auto_users=True)
        agent = shm_agent = holder = shm_holder = shm_dir = None
        try:
            agent = start_agent(wd, emu, passwd, group, log_to_null=True)
            holder = Holder(agent.socket, 0, users, 16)
            if holder.result["ok"] != users:
                fail("holder sessions: %d of %d opened, first error: %s"
                     % (holder.result["ok"], users, holder.result["first_error"]))
            if os.path.isdir("/dev/shm"):
                shm_dir = tempfile.mkdtemp(prefix="ramkey-bench-state-", dir="/dev/shm")
                shm_agent = start_agent(SubWorkdir(wd, "second"), emu, passwd, group,
                                        log_to_null=True, state_dir=os.path.join(shm_dir, "state"))
                shm_holder = Holder(shm_agent.socket, users, users, 16)
                if shm_holder.result["ok"] != users:
                    fail("holder sessions (tmpfs agent): %s" % shm_holder.result["first_error"])

            # Warm-up, then rounds alternating the servers.
            load(fsock, clients, 1.0, users)
            load(agent.socket, clients, 1.0, users)
            fl, ag, sh = [], [], []
            for _ in range(rounds):
                fl.append(load(fsock, clients, seconds, users, server_pid=floor.pid))
                ag.append(load(agent.socket, clients, seconds, users, server_pid=agent.pid))
                if shm_agent is not None:
                    sh.append(load(shm_agent.socket, clients, seconds, users, first=users,
                                   server_pid=shm_agent.pid))
            agx = load(agent.socket, clients, seconds, users, extra=("-x",),
                       server_pid=agent.pid)
            best_f = max(fl, key=lambda r: r["pairs_per_s"])
            best_a = max(ag, key=lambda r: r["pairs_per_s"])

            def rounds_of(rs):
                return "/".join("%.0f" % r["pairs_per_s"] for r in rs)

            def cpu_of(r):
                return "%.0f us (user %.0f + sys %.0f)" % (
                    r["server_user_us"] + r["server_sys_us"], r["server_user_us"],
                    r["server_sys_us"])

            figure(B, "floor_measured", "%.0f" % best_f["pairs_per_s"], "opens/s",
                   detail="minimal one-thread server, open+close pairs, best of rounds %s; "
                   "open p50 %d us p99 %d us" % (rounds_of(fl), best_f["open_p50_us"],
                                                 best_f["open_p99_us"]))
            figure(B, "agent", "%.0f" % best_a["pairs_per_s"], "opens/s",
                   goal=">= 7000 opens/s", met=best_a["pairs_per_s"] >= 7000,
                   detail="open+close pairs, best of rounds %s; open p50 %d us p99 %d us"
                   % (rounds_of(ag), best_a["open_p50_us"], best_a["open_p99_us"]))
            ratio = best_a["pairs_per_s"] / best_f["pairs_per_s"]
            figure(B, "agent_vs_floor", "%.2f" % ratio, "", goal=">= 0.80", met=ratio >= 0.8,
                   detail="agent / measured floor, same run")
            figure(B, "agent_vs_floor_computed", "%.2f" % (best_a["pairs_per_s"] / computed), "",
                   detail="agent / floor computed from the crypto figures")
            figure(B, "server_cpu_per_open", "agent %s, floor server %s" % (
                cpu_of(best_a), cpu_of(best_f)), "",
                detail="CPU time of the one-thread server per open+close pair")
            if sh:
                best_s = max(sh, key=lambda r: r["pairs_per_s"])
                figure(B, "agent_state_on_tmpfs", "%.0f" % best_s["pairs_per_s"], "opens/s",
                       detail="diagnostic: the same agent with state_dir on tmpfs (commits "
                       "cost no fdatasync), rounds %s; open p50 %d us; agent CPU %s; "
                       "vs floor %.2f" % (rounds_of(sh), best_s["open_p50_us"], cpu_of(best_s),
                                          best_s["pairs_per_s"] / best_f["pairs_per_s"]))
            figure(B, "agent_no_requester_crypto", "%.0f" % agx["pairs_per_s"], "opens/s",
                   detail="random seal keys, boxes not opened: the agent's own capacity; "
                   "open p50 %d us; agent CPU %s" % (agx["open_p50_us"], cpu_of(agx)))
            figure(B, "agent_rss", "%d" % rss_kb(agent.pid)["VmRSS"], "kB",
                   detail="after %d requests" % sum(r["requests_total"] for r in ag + [agx]))
            print(cpu_note(), flush=True)
        finally:
            for a in (agent, shm_agent):
                if a is not None:
                    a.stop()
            for h in (holder, shm_holder):
                if h is not None:
                    h.stop()
            if shm_dir is not None:
                shutil.rmtree(shm_dir, ignore_errors=True)
            emu.stop()
            floor.terminate()
            floor.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
