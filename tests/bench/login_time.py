#!/usr/bin/env python3
"""Benchmark: wall time an SSH login (`ssh user@127.0.0.1 true`) takes with
and without pam_ramkey in sshd's session stack. Figures, not pass/fail.

Two sshd instances (tests/sshd/sshd_fixture.py: private mount namespace,
own PAM stack, loopback) run side by side:
  plain:   account required pam_permit.so / session optional pam_permit.so
  ramkey:  the same plus `session required pam_ramkey.so` before pam_permit
against one real ramkey-agent and the RAM emulator (HTTPS, no latency).

Scenarios, RUNS logins each, plain and ramkey logins interleaved so both
see the same machine:
  mint each time: the user holds no lease before each login (the previous
      logout revoked it; the bench waits, untimed, until the emulator has
      no key left), so every login mints (ListAccessKeys snapshot +
      CreateAccessKey) and its logout revokes. mint_rate is 1000/h.
  lease held: another login of the same user stays open, so each login
      attaches to the held lease and rewrites the file; no RAM call.

Prints one line per figure (medians; the baseline is the median of all
plain logins; the added time is the difference of the medians), the
median of the paired differences (plain and ramkey login of the same
round), then a line of context. Needs root (exit 77 otherwise).
RAMKEY_BENCH_LOGINS overrides the number of logins per scenario.
"""

import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "sshd"))

from emulator import Emulator                                       # noqa: E402
from ramkey_fixture import PAM_MODULE, Agent, Users, Workdir, wait_for  # noqa: E402
from sshd_fixture import (HeldLogin, Sshd, become_subreaper, have_sshd,  # noqa: E402
                          reap, sanitizer_env)

RUNS = int(os.environ.get("RAMKEY_BENCH_LOGINS", "50"))
WARMUP = 3
# The key exchange is the same with and without the module; the default
# (sntrup761x25519) costs ~100 ms of CPU on a small machine and only adds
# noise to the difference, so the bench uses plain curve25519.
KEX = "curve25519-sha256"


def timed_login(sshd, pw):
    argv = sshd.ssh_argv(pw, "true", options=["KexAlgorithms=" + KEX])
    t = time.perf_counter()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=30)
    dt = (time.perf_counter() - t) * 1000.0
    if r.returncode != 0:
        raise AssertionError("login to sshd %s failed (%d): %s\n%s"
                             % (sshd.name, r.returncode, r.stderr, sshd.log()[-3000:]))
    return dt


def load():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def creates(emu):
    return emu.counters()["calls"].get("CreateAccessKey", 0)


def no_lease(emu, agent, user):
    return emu.keys_of(user) == [] and agent.status(user=user)["leases"] == []


def main():
    if os.geteuid() != 0:
        print("SKIP: a real sshd with UsePAM needs root")
        return 77
    if not have_sshd():
        raise AssertionError("openssh-server/openssh-client are not installed")
    become_subreaper()
    t_start = time.monotonic()
    with Workdir("ramkey-bench-login-") as wd, Emulator(https=True) as emu, \
            Users("bl") as users:
        agent = Agent(wd, emu, min_uid=1000, mint_rate="1000/h")
        sshds = []
        ok = False
        try:
            agent.start()
            env = sanitizer_env(PAM_MODULE)     # the same sshd environment for both
            plain = Sshd(wd, "plain", ["session optional pam_permit.so"], env=env)
            sshds.append(plain)
            ramkey = Sshd(wd, "ramkey", [
                "session required %s socket=%s timeout=5" % (PAM_MODULE, agent.socket),
                "session optional pam_permit.so"], env=env)
            sshds.append(ramkey)
            pw = users.add("u")
            for s in (plain, ramkey):
                s.authorize(pw)
                s.start()
            user = pw.pw_name

            def pair(i, without, with_module):
                # Alternate which one goes first.
                if i % 2:
                    with_module.append(timed_login(ramkey, pw))
                    without.append(timed_login(plain, pw))
                else:
                    without.append(timed_login(plain, pw))
                    with_module.append(timed_login(ramkey, pw))

            for _ in range(WARMUP):
                timed_login(plain, pw)
                timed_login(ramkey, pw)
                wait_for(lambda: no_lease(emu, agent, user), 10, what="no lease")

            base, mint, held = [], [], []
            # base[i] pairs with mint[i] (i < RUNS), then with held[i - RUNS].
            c0 = creates(emu)
            for i in range(RUNS):
                pair(i, base, mint)
                wait_for(lambda: no_lease(emu, agent, user), 10,
                         what="the key of the last login to be revoked")
            minted = creates(emu) - c0
            if minted != RUNS:
                raise AssertionError("%d mints for %d logins" % (minted, RUNS))

            holder = HeldLogin(ramkey, pw, "$HOME/.alibabacloud/ramkey.json",
                               name="holding login")
            c0 = creates(emu)
            for i in range(RUNS):
                pair(i, base, held)
            if creates(emu) != c0:
                raise AssertionError("logins minted while a lease was held")
            if holder.end() != 0:
                raise AssertionError("the holding login did not end cleanly")
            wait_for(lambda: no_lease(emu, agent, user), 10, what="the last key revoked")

            b = statistics.median(base)
            m = statistics.median(mint)
            h = statistics.median(held)
            print("login median without pam_ramkey: %.1f ms" % b)
            print("login median with pam_ramkey, mint each time: %.1f ms (%+.1f ms)"
                  % (m, m - b))
            print("login median with pam_ramkey, lease held: %.1f ms (%+.1f ms)" % (h, h - b))
            # Less sensitive to the machine's load drifting during the run:
            # the difference within each interleaved pair.
            dm = statistics.median(x - y for x, y in zip(mint, base[:RUNS]))
            dh = statistics.median(x - y for x, y in zip(held, base[RUNS:]))
            print("added time, median of paired differences: mint each time %+.1f ms, "
                  "lease held %+.1f ms" % (dm, dh))
            print("(%d logins per scenario, %d without pam_ramkey, interleaved; "
                  "ssh + sshd 9.2 on loopback, ed25519 keys, %s; "
                  "emulator over HTTPS, no latency; load average %s; "
                  "%.0f s in all)" % (RUNS, len(base), KEX, load(),
                                      time.monotonic() - t_start),
                  flush=True)
            for s in (plain, ramkey):
                left = s.wait_sessions_gone(5)
                if left:
                    raise AssertionError("sshd %s: processes left: %s" % (s.name, left))
            ok = True
        finally:
            for s in sshds:
                s.stop(check=ok)
            if not ok:
                print("--- agent log (tail) ---\n%s" % agent.log()[-4000:])
            agent.stop()
        reap()
    return 0


if __name__ == "__main__":
    sys.exit(main())
