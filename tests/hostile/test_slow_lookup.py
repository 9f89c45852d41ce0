"""hostile.slow_lookup: a directory service that takes 5 s to answer for
one user does not delay anyone else. User and group lookups run on the
agent's worker threads, never on its event loop, queued per user (or per
calling uid) with a deadline (agent/server/authz.c, agent/base/worker.c):
one user's slow lookups hold at most one thread, however many requests
wait on them.

The directory service is a test NSS module (libnss_ramkeytest.so.2, built
here) behind nss_wrapper, loaded into the agent only: every name comes
from copies of /etc/passwd and /etc/group at once, except one user that
only the module knows, and a lookup of that one takes 5 s.

Checked:
- while 6 requests for the slow user wait on its lookups (more than the
  agent's 4 worker threads), root's fetches for another user take no more
  than 100 ms longer than before (the median; none may take 1 s, where a
  fetch waiting on the slow lookup would take seconds);
- a requester that gives up before the directory answers (--timeout 3)
  is told so by the agent just before its timeout: exit 7, "took too
  long", at about 2.75 s;
- with time enough (--timeout 30), the slow user gets a key, after the
  directory's 5 s (and after the lookup already running, at most 10 s)."""

import os
import shutil
import subprocess
import sys
import threading
import time

from emulator import Emulator
from ramkey_fixture import CLIENT_BIN, Agent, Users, Workdir, require_root
from hostile_lib import check, check_latency, finish, median, raw_fetch, require

DELAY_MS = 5000
SLOW_UID = 47011
SLOW = "rkhlslowdir"
WAITERS = 6


def nss_wrapper_lib():
    try:
        out = subprocess.run(["pkg-config", "--libs", "nss_wrapper"],
                             capture_output=True, text=True,
                             check=True).stdout.split()
        if out and out[0].startswith("/"):
            return out[0]
    except (OSError, subprocess.CalledProcessError):
        pass
    return "libnss_wrapper.so"


def slow_client(agent, timeout_s, out, i):
    """credential-process for the slow user as root: no file is written,
    so the client itself never looks the user up."""
    t0 = time.monotonic()
    r = subprocess.run([CLIENT_BIN, "--timeout", str(timeout_s),
                        "credential-process", "--user", SLOW],
                       capture_output=True, text=True, timeout=timeout_s + 10,
                       env={"PATH": "/usr/bin:/bin",
                            "RAMKEY_SOCKET": agent.socket})
    out[i] = (r, time.monotonic() - t0)


def main():
    require_root()
    module = sys.argv[1]
    require(os.path.exists(module), "the test NSS module is built (%s)" % module)
    with Workdir() as wd, Users("hl") as users, Emulator(https=True) as emu:
        bob = users.add("bob")
        passwd, group = wd.join("passwd"), wd.join("group")
        shutil.copy("/etc/passwd", passwd)
        shutil.copy("/etc/group", group)
        nsslog = wd.join("nss.log")
        env = {"LD_PRELOAD": nss_wrapper_lib(),
               "NSS_WRAPPER_PASSWD": passwd, "NSS_WRAPPER_GROUP": group,
               "NSS_WRAPPER_MODULE_SO_PATH": module,
               "NSS_WRAPPER_MODULE_FN_PREFIX": "ramkeytest",
               "RAMKEY_NSSTEST_USER": SLOW,
               "RAMKEY_NSSTEST_UID": str(SLOW_UID),
               "RAMKEY_NSSTEST_DELAY_MS": str(DELAY_MS),
               "RAMKEY_NSSTEST_LOG": nsslog}
        if os.environ.get("ASAN_OPTIONS"):
            # nss_wrapper is preloaded ahead of the sanitizer's runtime,
            # and must not dlopen libc with RTLD_DEEPBIND under it.
            env["ASAN_OPTIONS"] = os.environ["ASAN_OPTIONS"] + \
                ":verify_asan_link_order=0"
            env["NSS_WRAPPER_DISABLE_DEEPBIND"] = "1"
        agent = Agent(wd, emu)
        agent.start(env=env)
        try:
            r = agent.client("fetch", "--user", bob.pw_name)
            require(r.returncode == 0, "root's first fetch for bob (%s)"
                    % r.stderr.strip())
            quiet = []
            for _ in range(10):
                rep, t = raw_fetch(agent.socket, bob.pw_name)
                if not rep.get("ok"):
                    require(False, "root fetch for bob (%s)" % rep.get("error"))
                quiet.append(t)

            # 1. Six requesters wait on the slow user's lookups and give
            # up after 3 s; bob's fetches meanwhile.
            res = [None] * WAITERS
            threads = [threading.Thread(target=slow_client,
                                        args=(agent, 3, res, i))
                       for i in range(WAITERS)]
            start = time.monotonic()
            for t in threads:
                t.start()
            time.sleep(0.3)
            during, failed, marks = [], [], []
            t_end = time.monotonic() + 4.5
            while time.monotonic() < t_end:
                t0 = time.monotonic()
                rep, t = raw_fetch(agent.socket, bob.pw_name)
                during.append(t)
                marks.append((t0 - start, t))
                if not rep.get("ok"):
                    failed.append(rep.get("error"))
                time.sleep(0.1)
            print("bob's fetches (start s, took ms): %s" % " ".join(
                "%.2f:%.0f" % (a, b * 1000) for a, b in marks))
            for t in threads:
                t.join()
            print("%d requests wait on %s's %d ms lookups" % (
                WAITERS, SLOW, DELAY_MS))
            print("the slow user's requesters: %s" % ", ".join(
                "exit %d after %.2f s" % (r.returncode, t) for r, t in res))
            print("what they were told: %s" % res[0][0].stderr.strip())
            check(not failed, "every fetch for bob succeeded (%s)" % failed[:2])
            check_latency("root fetch for bob", quiet, during,
                          median(quiet) + 0.1)
            r = agent.client("fetch", "--user", bob.pw_name)
            check(r.returncode == 0, "and with the client (%s)" % r.stderr.strip())
            check(all(r.returncode == 7 and "took too long" in r.stderr
                      for r, _ in res),
                  "every slow requester: exit 7, the lookup took too long")
            check(all(2.5 <= t < 3.2 for _, t in res),
                  "answered at the requester's deadline, before it gave up "
                  "(%.2f-%.2f s)" % (min(t for _, t in res),
                                     max(t for _, t in res)))

            # 2. With time enough, the slow user gets a key.
            out = [None]
            slow_client(agent, 30, out, 0)
            r, t = out[0]
            print("slow user, --timeout 30: exit %d after %.2f s" % (
                r.returncode, t))
            check(r.returncode == 0 and "access_key_secret" in r.stdout.lower(),
                  "with time enough the slow user gets a key (%s)"
                  % r.stderr.strip())
            check(DELAY_MS / 1000 - 0.5 <= t < 2 * DELAY_MS / 1000 + 2,
                  "after the directory's answer (%.2f s)" % t)
            with open(nsslog) as f:
                starts = [l for l in f if l.endswith(" start\n")]
            check(len(starts) <= 3, "the directory was asked %d times for "
                  "%s (one at a time, queued ones dropped at their "
                  "deadline)" % (len(starts), SLOW))
        finally:
            if agent.proc.poll() is not None:
                print("the agent exited with %s; its log ends:\n%s" % (
                    agent.proc.returncode, "\n".join(
                        agent.log().splitlines()[-30:])))
            check(agent.stop() == 0, "agent stops cleanly")
    finish()


if __name__ == "__main__":
    main()
