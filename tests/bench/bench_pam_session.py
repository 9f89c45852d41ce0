#!/usr/bin/env python3
"""Login overhead: pam_open_session + pam_close_session through
the real module (libpam, pam_start_confdir, no wrapper) with pam_ramkey,
minus the same with only pam_permit: p50 under 1 ms, p99 under 5 ms, with
a lease already held (the common case). First login (a mint) separately,
with the emulator's own service time subtracted.

    bench_pam_session.py [--quick|--full] [--logins N]

Set-up: the RAM emulator (HTTPS, no injected latency), a real agent (its
state_dir on disk, as deployed), and the PAM side (pam_bench, as root like
sshd) under nss_wrapper for users with homes in the work directory.
XDG_RUNTIME_DIR is set in the PAM environment, as pam_systemd sets it
before pam_ramkey in a deployment, to a directory owned by the user on
tmpfs (/dev/shm standing in for /run/user/UID), so the module writes its
default secret_file (%r/ramkey/credentials.json) there. Services in a
private PAM config directory, each ending with pam_permit:
    rkpermit       pam_permit only: the baseline
    rkramkey       pam_ramkey socket=AGENT (defaults): the headline figures
    rkramkeyhome   diagnostic: secret_file=%h/.alibabacloud/ramkey.json,
                   on disk (what a login pays where XDG_RUNTIME_DIR is unset)
    rkramkeytmpfs  diagnostic: a second agent whose state_dir is on tmpfs:
                   no fsync anywhere; the difference to rkramkey is what the
                   agent's durable commits cost a login
Lease held: a bench_load holder keeps one session of rkb0 open (on each
agent); pam_bench logs rkb0 in and out N times, the services interleaved,
a fresh PAM handle per login (pam_start/pam_end not timed). Each ramkey
login: open (connect, key pair, the agent attaches a session and commits,
seal-open, the file written as the user), close (the agent detaches and
commits; not the last session, so the file stays).
First login: users rkb1.. each log in once (the agent mints: ListAccessKeys
+ CreateAccessKey) and out (last session: file removed, key revoked in the
background; pam_bench pauses 100 ms, untimed, so that revocation does not
overlap the next mint). The emulator's service time for those two calls
is measured in the same run by a minimal keep-alive HTTPS client (Python,
pre-signed requests, only the exchange timed) and subtracted.
Fresh process per login (fresh_process_*): as sshd's session really pays
it, Debian's pamtester runs "open_session close_session" once per login,
a new process each time (module load, key pair, the agent's commit, the
file), with pam_ramkey then pam_permit against pam_permit only, the two
stacks interleaved, N logins each (10 warm-up logins each first).
pamtester reads /etc/pam.d, so the two services are written there under
unique names and removed afterwards; the secret_file is named explicitly
in the user's runtime directory on tmpfs (pamtester's PAM environment has
no XDG_RUNTIME_DIR). Goal: p50 overhead under 1.5 ms.
Needs root (the module writes the file as the user); exits 77 otherwise.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

from benchlib import (BUILD_DIR, UID_BASE, Emulator, Holder, SubWorkdir, Workdir, cpu_note,
                      fail, figure, nss_env, nss_files, parse_mode, start_agent)
from ramkey_fixture import PAM_MODULE

B = "pam_session"
PAM_BENCH = os.path.join(BUILD_DIR, "tests", "bench", "pam_bench")


def arg(name, default):
    if name in sys.argv:
        return type(default)(sys.argv[sys.argv.index(name) + 1])
    return default


def pam_bench(env, *args):
    r = subprocess.run([PAM_BENCH] + [str(a) for a in args], capture_output=True, text=True,
                       env=env, timeout=600)
    if r.returncode != 0:
        fail("pam_bench exited %d: %s" % (r.returncode, r.stderr.strip()[-2000:]))
    out = {}
    for line in r.stdout.splitlines():
        o = json.loads(line)
        out[o["service"]] = o
    for o in out.values():
        if o["failed_opens"] or o["failed_closes"]:
            fail("pam_bench %s: %d opens and %d closes failed (last: %s / %s); stderr: %s"
                 % (o["service"], o["failed_opens"], o["failed_closes"], o["last_open"],
                    o["last_close"], r.stderr.strip()[-2000:]))
    return out


PAMTESTER = "/usr/bin/pamtester"


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def fresh_process_logins(env, user, services, n, warmup=10):
    """Wall times (ms) of pamtester open_session+close_session, one fresh
    process per login, the services interleaved."""
    def once(svc):
        t0 = time.perf_counter()
        r = subprocess.run([PAMTESTER, svc, user, "open_session", "close_session"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                           timeout=60)
        ms = (time.perf_counter() - t0) * 1e3
        if r.returncode != 0:
            fail("pamtester %s %s exited %d: %s" % (svc, user, r.returncode,
                                                     r.stderr.decode(errors="replace")[-500:]))
        return ms
    for svc in services:
        for _ in range(warmup):
            once(svc)
    times = {svc: [] for svc in services}
    for _ in range(n):
        for svc in services:
            times[svc].append(once(svc))
    return times


def emulator_service_ms(emu, n):
    """Median time of ListAccessKeys + CreateAccessKey (v3, POST, as the
    agent signs them) over one kept-alive HTTPS connection, requests
    signed before the clock starts."""
    conn = emu.connection()
    times = []
    try:
        for i in range(n):
            user = "rkbsvc%d" % i
            total = 0.0
            for action in ("ListAccessKeys", "CreateAccessKey"):
                req = emu.prepare(action, {"UserName": user}, signature="v3", method="POST")
                t0 = time.perf_counter()
                conn.request(req.method, req.target, body=req.body or None, headers=req.headers)
                r = conn.getresponse()
                r.read()
                total += time.perf_counter() - t0
                if r.status != 200:
                    fail("emulator %s answered %d" % (action, r.status))
            times.append(total * 1e3)
    finally:
        conn.close()
    times.sort()
    return times[len(times) // 2]


def main():
    mode = parse_mode(sys.argv, full_fits=True)
    logins = arg("--logins", 400 if mode == "full" else 100)
    firsts = 20 if mode == "full" else 10
    if os.geteuid() != 0:
        print("SKIP: needs root (the module writes the secret_file as the user)")
        return 77
    if not os.path.exists(PAM_BENCH):
        fail("%s is not built" % PAM_BENCH)
    print("bench.%s: mode=%s logins=%d first_logins=%d %s"
          % (B, mode, logins, firsts, cpu_note()), flush=True)

    with Workdir(prefix="ramkey-bench-pam-") as wd:
        passwd, group = nss_files(wd, firsts + 1, homes=True)
        # The users' runtime directories (/run/user/UID in a deployment).
        tmp_root = "/dev/shm" if os.path.isdir("/dev/shm") else None
        rt_root = tempfile.mkdtemp(prefix="ramkey-bench-run-", dir=tmp_root)
        os.chmod(rt_root, 0o755)
        for i in range(firsts + 1):
            d = os.path.join(rt_root, str(UID_BASE + i))
            os.makedirs(d, mode=0o700)
            os.chown(d, UID_BASE + i, -1)
        emu = Emulator(https=True, auto_users=True)
        agent = holder = shm_agent = shm_holder = None
        try:
            agent = start_agent(wd, emu, passwd, group, log_to_null=True, mint_rate="1000/h")
            confdir = wd.join("pam.d")
            os.makedirs(confdir)

            def service(name, sock, opts=""):
                with open(os.path.join(confdir, name), "w") as f:
                    if sock:
                        f.write("session required %s socket=%s%s\n" % (PAM_MODULE, sock, opts))
                    f.write("session required pam_permit.so\n")

            service("rkpermit", None)
            service("rkramkey", agent.socket)
            service("rkramkeyhome", agent.socket, " secret_file=%h/.alibabacloud/ramkey.json")
            services = ["rkpermit", "rkramkey", "rkramkeyhome"]
            holder = Holder(agent.socket, 0, 1, 1)
            if holder.result["ok"] != 1:
                fail("holder session: %s" % holder.result["first_error"])
            if tmp_root is not None:
                shm_agent = start_agent(SubWorkdir(wd, "second"), emu, passwd, group,
                                        log_to_null=True, state_dir=os.path.join(rt_root, "state"))
                shm_holder = Holder(shm_agent.socket, 0, 1, 1)
                if shm_holder.result["ok"] != 1:
                    fail("holder session (tmpfs agent): %s" % shm_holder.result["first_error"])
                service("rkramkeytmpfs", shm_agent.socket)
                services.append("rkramkeytmpfs")
            env = {"PATH": "/usr/bin:/bin"}
            env.update(nss_env(passwd, group))
            rt = "XDG_RUNTIME_DIR=%s/%d" % (rt_root, UID_BASE)
            held = pam_bench(env, "-C", confdir, "-n", logins, "-w", 10, "-E", rt, "rkb0",
                             *services)
            p, k = held["rkpermit"], held["rkramkey"]

            def over(svc, q):
                return (held[svc]["pair_%s_us" % q] - p["pair_%s_us" % q]) / 1e3

            o50, o99 = over("rkramkey", "p50"), over("rkramkey", "p99")
            figure(B, "overhead_p50", "%.3f" % o50, "ms", goal="< 1 ms", met=o50 < 1.0,
                   detail="lease held; open+close with pam_ramkey minus pam_permit only, "
                   "%d logins; secret_file in XDG_RUNTIME_DIR (tmpfs), agent state on disk"
                   % logins)
            figure(B, "overhead_p99", "%.3f" % o99, "ms", goal="< 5 ms", met=o99 < 5.0)
            figure(B, "ramkey_open", "p50 %.3f / p90 %.3f / p99 %.3f / max %.3f" % (
                k["open_p50_us"] / 1e3, k["open_p90_us"] / 1e3, k["open_p99_us"] / 1e3,
                k["open_max_us"] / 1e3), "ms", detail="pam_open_session, ramkey stack")
            figure(B, "ramkey_close", "p50 %.3f / p90 %.3f / p99 %.3f / max %.3f" % (
                k["close_p50_us"] / 1e3, k["close_p90_us"] / 1e3, k["close_p99_us"] / 1e3,
                k["close_max_us"] / 1e3), "ms", detail="pam_close_session, ramkey stack")
            figure(B, "permit_pair", "p50 %.3f / p99 %.3f" % (
                p["pair_p50_us"] / 1e3, p["pair_p99_us"] / 1e3), "ms",
                detail="open+close, pam_permit only")
            figure(B, "overhead_home_on_disk", "p50 %.3f / p99 %.3f" % (
                over("rkramkeyhome", "p50"), over("rkramkeyhome", "p99")), "ms",
                detail="diagnostic: secret_file in the home directory on disk (the module "
                "fsyncs the file and its directory)")
            if "rkramkeytmpfs" in held:
                figure(B, "overhead_no_fsync", "p50 %.3f / p99 %.3f" % (
                    over("rkramkeytmpfs", "p50"), over("rkramkeytmpfs", "p99")), "ms",
                    detail="diagnostic: agent state_dir on tmpfs too, no fsync anywhere: "
                    "rkramkey minus this is what the agent's two commits cost")

            if os.path.exists(PAMTESTER):
                tag = "rkbench" + secrets.token_hex(3)
                sf = os.path.join(rt_root, str(UID_BASE), "ramkey", "credentials.json")
                etc = {tag + "permit": None, tag + "ramkey": " secret_file=%s" % sf}
                try:
                    for name, opts in etc.items():
                        with open(os.path.join("/etc/pam.d", name), "w") as f:
                            if opts is not None:
                                f.write("session required %s socket=%s%s\n"
                                        % (PAM_MODULE, agent.socket, opts))
                            f.write("session required pam_permit.so\n")
                    t = fresh_process_logins(env, "rkb0", list(etc), logins)
                finally:
                    for name in etc:
                        try:
                            os.unlink(os.path.join("/etc/pam.d", name))
                        except OSError:
                            pass
                tp, tr = t[tag + "permit"], t[tag + "ramkey"]
                f50 = pct(tr, 0.5) - pct(tp, 0.5)
                figure(B, "fresh_process_overhead_p50", "%.3f" % f50, "ms", goal="< 1.5 ms",
                       met=f50 < 1.5, detail="pamtester open_session close_session, a fresh "
                       "process per login, pam_ramkey+pam_permit minus pam_permit only, %d "
                       "logins each, interleaved; lease held, secret_file on tmpfs, agent "
                       "state on disk" % logins)
                figure(B, "fresh_process_overhead_p90", "%.3f" % (pct(tr, 0.9) - pct(tp, 0.9)),
                       "ms")
                figure(B, "fresh_process_permit", "p50 %.3f / p90 %.3f" % (
                    pct(tp, 0.5), pct(tp, 0.9)), "ms",
                    detail="pamtester with pam_permit only, the whole process")
            else:
                print("bench.%s.fresh_process: not measured: %s is not installed"
                      % (B, PAMTESTER))

            first = pam_bench(env, "-C", confdir, "-n", firsts, "-f", 1, "-p", 100, "rkb",
                              "rkramkeyhome")["rkramkeyhome"]
            svc = emulator_service_ms(emu, max(firsts, 10))
            fo = first["open_p50_us"] / 1e3
            figure(B, "first_login_open", "p50 %.2f / max %.2f" % (fo, first["open_max_us"] / 1e3),
                   "ms", detail="pam_open_session that mints, %d users, secret_file in the home "
                   "directory" % firsts)
            figure(B, "emulator_service", "%.2f" % svc, "ms",
                   detail="ListAccessKeys + CreateAccessKey, minimal client, median")
            figure(B, "first_login_overhead", "%.2f" % (fo - svc), "ms",
                   detail="first-login open p50 minus the emulator's service time; close "
                   "(last session: file removed, revocation started) p50 %.2f ms"
                   % (first["close_p50_us"] / 1e3))
            agent.stop()
            agent = None
        finally:
            for a in (agent, shm_agent):
                if a is not None:
                    a.kill()
            for h in (holder, shm_holder):
                if h is not None:
                    h.stop()
            shutil.rmtree(rt_root, ignore_errors=True)
            emu.stop()
    print(cpu_note(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
