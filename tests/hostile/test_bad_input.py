"""hostile.bad_input_log: one ordinary user sends the agent garbage for
10 s (bad frame headers, malformed JSON, requests that do not decode), and
requests it must deny, on many connections at once. Every garbage
connection is closed; the agent writes at most one line about one uid's
bad input per 5 s, with the count of the lines it left out (log_bad_input()
in agent/server/conn.c), at most one deny line per 5 s for an untrusted
uid (deny() in agent/server/authz.c) and one per 5 s for a RAM user past
mint_rate (deny_rate() in agent/lease/obtain.c), so the user cannot flood
the log, and the agent keeps answering root.

Checked: at most 200 lines in the agent's log for the whole flood (stderr,
what journald would get), a "suppressed" count in them, and root's fetches
for another user during the flood all answered, in < 200 ms (the median;
none may take 1 s: the flooder's processes share the machine's CPUs)."""

import json
import subprocess
import time

from emulator import Emulator
from ramkey_fixture import Agent, Users, Workdir, require_root
from hostile_lib import (as_user_python, check, check_latency, finish,
                         raw_fetch, require)

FLOOD_S = 10
THREADS = 16


def main():
    require_root()
    with Workdir() as wd, Users("hb") as users, Emulator(https=True) as emu:
        mallory = users.add("mallory")
        bob = users.add("bob")
        agent = Agent(wd, emu, mint_rate="1/h")
        agent.start()
        try:
            # mallory's one mint this hour, ended: her fetches are
            # refused for mint_rate from now on.
            r = agent.client("fetch", user=mallory)
            require(r.returncode == 0, "mallory's fetch (%s)" % r.stderr.strip())
            r = agent.client("revoke", "--user", mallory.pw_name)
            require(r.returncode == 0, "root revokes it (%s)" % r.stderr.strip())
            r = agent.client("fetch", "--user", bob.pw_name)
            require(r.returncode == 0, "root's first fetch for bob (%s)"
                    % r.stderr.strip())
            quiet = []
            for _ in range(10):
                rep, t = raw_fetch(agent.socket, bob.pw_name)
                if not rep.get("ok"):
                    require(False, "root fetch for bob before the flood (%s)"
                            % rep.get("error"))
                quiet.append(t)
            lines0 = len(agent.log().splitlines())
            flood = subprocess.Popen(
                as_user_python(mallory, "flood_garbage.py", agent.socket,
                               FLOOD_S, THREADS),
                stdout=subprocess.PIPE, text=True)
            during, failed = [], []
            time.sleep(0.5)
            t_end = time.monotonic() + FLOOD_S - 1
            while time.monotonic() < t_end:
                rep, t = raw_fetch(agent.socket, bob.pw_name)
                during.append(t)
                if not rep.get("ok"):
                    failed.append(rep.get("error"))
                time.sleep(0.2)
            out, _ = flood.communicate(timeout=FLOOD_S + 30)
            counts = json.loads(out.strip().splitlines()[-1])
            time.sleep(0.5)
            new = agent.log().splitlines()[lines0:]
            about = [l for l in new if "uid %d " % mallory.pw_uid in l or
                     "peer_uid=%d " % mallory.pw_uid in l]
            print("flood by uid %d: %s" % (mallory.pw_uid, counts))
            print("agent log: %d new lines, %d about uid %d:"
                  % (len(new), len(about), mallory.pw_uid))
            for l in about:
                print("  " + l)
            check(counts["connections"] >= 1000, "the flood made %d "
                  "connections (>= 1000)" % counts["connections"])
            check(counts["garbage_answered"] == 0 and
                  counts["garbage_closed"] >= 500, "garbage is closed, not "
                  "answered (%d closed, %d answered)" % (
                      counts["garbage_closed"], counts["garbage_answered"]))
            check(counts["denied_answered"] >= 100, "%d requests denied "
                  "(or refused for their rate)" % counts["denied_answered"])
            check(len(new) <= 200, "the agent wrote %d log lines during the "
                  "flood (<= 200)" % len(new))
            check(any("suppressed" in l for l in about),
                  "the lines count the ones left out")
            denies = [l for l in about if "event=deny" in l]
            check(0 < len(denies) <= 3 * (FLOOD_S / 5 + 1), "%d deny lines "
                  "about uid %d (at most one per 5 s for her requests, one "
                  "per 5 s for her RAM user's mint_rate, one per 10 s for "
                  "the request rate)" % (len(denies), mallory.pw_uid))
            check(any("reason=mint_rate" in l for l in denies),
                  "mint_rate refusals among them")
            check(not failed, "every root fetch for bob during the flood "
                  "succeeded (%s)" % failed[:2])
            check_latency("root fetch for bob", quiet, during, 0.2)
            r = agent.client("fetch", "--user", bob.pw_name)
            check(r.returncode == 0, "and with the client (%s)" % r.stderr.strip())
        finally:
            check(agent.stop() == 0, "agent stops cleanly")
    finish()


if __name__ == "__main__":
    main()
