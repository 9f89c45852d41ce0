"""hostile.change_rate: one ordinary user toggles its key Active/Inactive
with `set-status` for 10 s. Each change is an UpdateAccessKey call, and
RAM's UpdateAccessKey quota is the account's, shared by every login; the
agent allows a burst of 5 changes (set-status and revoke together) per
calling uid, then one per 10 minutes (CHANGE_BURST, CHANGE_INTERVAL_S in
agent/main.c; change_rate_ok() in agent/server/authz.c).

Checked: at most 10 UpdateAccessKey calls for that user's key reach RAM
(the emulator's request log); every other toggle exits 4 with a message
that says when to try again; another uid whose key belongs to the same RAM
user changes its own key meanwhile without being refused; a revoke by the
first user is refused as well (one budget for both)."""

import os
import re
import time

from emulator import Emulator
from ramkey_fixture import (Agent, Users, Workdir, read_json_secret_file,
                            require_root)
from hostile_lib import check, finish, require

WINDOW_S = 10
PACE_S = 0.01      # as fast as a client starts: past the per-uid request
                   # rate too at times, whose refusal also says when
RETRY_RE = re.compile(r"try again in (\d+[dhms])+")


def key_of(agent, pw):
    path = os.path.join(pw.pw_dir, "key.json")
    r = agent.client("fetch", "--secret-file", path, user=pw)
    require(r.returncode == 0, "fetch as %s (%s)" % (pw.pw_name, r.stderr.strip()))
    return read_json_secret_file(path)[0]


def main():
    require_root()
    with Workdir() as wd, Users("hc") as users, Emulator(https=True) as emu:
        mallory = users.add("mallory")
        bob = users.add("bob")
        shared = "rkhcshared"
        agent = Agent(wd, emu, ram_user=shared)
        agent.start()
        try:
            kid_m, kid_b = key_of(agent, mallory), key_of(agent, bob)
            require(kid_m != kid_b and
                    {k["AccessKeyId"] for k in emu.keys_of(shared)} ==
                    {kid_m, kid_b}, "mallory and bob hold the two keys of "
                    "RAM user %s" % shared)
            since = time.time()
            time.sleep(0.01)
            results = []
            bob_results = []
            status = "Inactive"
            t_end = time.monotonic() + WINDOW_S
            n = 0
            while time.monotonic() < t_end:
                r = agent.client("set-status", "--key-id", kid_m, status,
                                 user=mallory)
                results.append(r)
                if r.returncode == 0:
                    status = "Active" if status == "Inactive" else "Inactive"
                n += 1
                if n in (25, 100):
                    # bob (same RAM user, another uid), within his own
                    # budget of 5: 4 changes in all
                    for st in ("Inactive", "Active"):
                        rb = agent.client("set-status", "--key-id", kid_b,
                                          st, user=bob)
                        bob_results.append(rb)
                time.sleep(PACE_S)
            time.sleep(1.0)
            calls = emu.log(since=since, action="UpdateAccessKey")
            of_m = [e for e in calls if e.get("key_id") == kid_m]
            of_b = [e for e in calls if e.get("key_id") == kid_b]
            ok = [r for r in results if r.returncode == 0]
            refused = [r for r in results if r.returncode != 0]
            print("mallory: %d set-status in %d s: %d done, %d refused; "
                  "UpdateAccessKey at RAM for her key: %d, for bob's: %d" % (
                      len(results), WINDOW_S, len(ok), len(refused),
                      len(of_m), len(of_b)))
            if refused:
                print("a refusal: exit %d: %s" % (refused[-1].returncode,
                                                   refused[-1].stderr.strip()))
            check(len(results) >= 100, "mallory tried %d times (>= 100)"
                  % len(results))
            check(len(of_m) <= 10, "UpdateAccessKey calls for mallory's key "
                  "at RAM: %d (<= 10)" % len(of_m))
            # A try that fails in transit is retried (rule R5): a granted
            # change is one call or more, never none.
            check(len(of_m) >= len(ok), "each change she was granted reached "
                  "RAM (%d granted, %d calls)" % (len(ok), len(of_m)))
            bad = [r for r in refused if r.returncode != 4 or
                   not RETRY_RE.search(r.stderr)]
            check(not bad, "every refusal exits 4 and says when to try again "
                  "(%d do not%s)" % (len(bad), ": exit %d %r" % (
                      bad[0].returncode, bad[0].stderr) if bad else ""))
            bob_bad = [r for r in bob_results if r.returncode != 0]
            check(len(bob_results) >= 4 and not bob_bad,
                  "bob (same RAM user, another uid) changed his key %d times "
                  "meanwhile, none refused%s" % (len(bob_results), (
                      ": %s" % bob_bad[0].stderr.strip()) if bob_bad else ""))
            check(len(of_b) >= len(bob_results) - len(bob_bad),
                  "each of bob's changes reached RAM (%d calls)" % len(of_b))
            r = agent.client("revoke", user=mallory)
            check(r.returncode == 4 and RETRY_RE.search(r.stderr) is not None,
                  "mallory's revoke is refused too: exit %d: %s"
                  % (r.returncode, r.stderr.strip()))
            r = agent.client("revoke", "--user", mallory.pw_name)
            check(r.returncode == 0, "root revokes for her at once (%s)"
                  % r.stderr.strip())
        finally:
            check(agent.stop() == 0, "agent stops cleanly")
    finish()


if __name__ == "__main__":
    main()
