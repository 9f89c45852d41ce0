"""hostile.fetch_paths: one ordinary user names a new 3-4 KB secret_file
path in `fetch` after `fetch` for 20 s. The agent keeps at most
fetch_paths_max (8) of them per user (agent/lease/holders.c, files_trim),
so its memory and its state_dir stay put, and root's fetches for another
user are answered meanwhile.

Bounds checked: agent RSS grows < 5 MB, state_dir < 2 MB, root's fetches
for another user during the flood are answered in < 200 ms (the median;
none may take 1 s), and the store holds at most 8 of the user's fetch
paths at the end."""

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time

from emulator import Emulator
from ramkey_fixture import SANITIZED, Agent, Users, Workdir, require_root
from hostile_lib import (as_user_python, check, check_latency, finish,
                         raw_fetch, require, rss_kib, tree_bytes)

FLOOD_S = 20
FETCH_PATHS_MAX = 8


def stored_paths(state_dir, user):
    """How many secret_file rows of user the store holds. The agent keeps
    its database locked: read a copy of the files (WAL included)."""
    tmp = tempfile.mkdtemp()
    try:
        for name in os.listdir(state_dir):
            if name.startswith("leases.db"):
                shutil.copy(os.path.join(state_dir, name), tmp)
        db = sqlite3.connect(os.path.join(tmp, "leases.db"))
        try:
            return db.execute("SELECT count(*) FROM files WHERE user=?",
                              (user,)).fetchone()[0]
        finally:
            db.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    require_root()
    with Workdir() as wd, Users("hp") as users, Emulator(https=True) as emu:
        mallory = users.add("mallory")
        bob = users.add("bob")
        agent = Agent(wd, emu)
        agent.start()
        try:
            # Both leases exist before the flood: what is measured is the
            # flood, not a first mint.
            r = agent.client("fetch", user=mallory)
            require(r.returncode == 0, "mallory's first fetch (%s)" % r.stderr.strip())
            r = agent.client("fetch", "--user", bob.pw_name)
            require(r.returncode == 0, "root's first fetch for bob (%s)" % r.stderr.strip())
            quiet = []
            for _ in range(10):
                rep, t = raw_fetch(agent.socket, bob.pw_name)
                if not rep.get("ok"):
                    require(False, "root fetch for bob before the flood (%s)"
                            % rep.get("error"))
                quiet.append(t)
            rss0, state0 = rss_kib(agent.pid), tree_bytes(agent.state_dir)
            print("before: rss %d KiB, state_dir %d bytes" % (rss0, state0))

            flood = subprocess.Popen(
                as_user_python(mallory, "flood_fetch.py", agent.socket, FLOOD_S),
                stdout=subprocess.PIPE, text=True)
            during, failed = [], []
            time.sleep(1.0)
            t_end = time.monotonic() + FLOOD_S - 2
            while time.monotonic() < t_end:
                rep, t = raw_fetch(agent.socket, bob.pw_name)
                during.append(t)
                if not rep.get("ok"):
                    failed.append(rep.get("error"))
                time.sleep(0.25)
            out, _ = flood.communicate(timeout=FLOOD_S + 30)
            counts = json.loads(out.strip().splitlines()[-1])
            rss1, state1 = rss_kib(agent.pid), tree_bytes(agent.state_dir)
            print("flood by uid %d: %s" % (mallory.pw_uid, counts))
            print("after: rss %d KiB, state_dir %d bytes" % (rss1, state1))
            check(not failed, "every root fetch for bob during the flood "
                  "succeeded (%s)" % failed[:2])
            check(counts["ok"] >= 200, "the flood named %d new paths that "
                  "the agent accepted (>= 200)" % counts["ok"])
            if SANITIZED:
                # ASan's quarantine, size-class caches and shadow pages
                # grow with any allocation traffic: RSS tells nothing here.
                print("agent RSS grew %d KiB (not bounded in the sanitizer "
                      "build)" % (rss1 - rss0))
            else:
                check((rss1 - rss0) < 5 * 1024, "agent RSS grew %d KiB "
                      "(< 5 MB)" % (rss1 - rss0))
            check((state1 - state0) < 2 * 1024 * 1024, "state_dir grew %d "
                  "bytes (< 2 MB)" % (state1 - state0))
            check_latency("root fetch for bob", quiet, during, 0.2)
            r = agent.client("fetch", "--user", bob.pw_name)
            check(r.returncode == 0, "and with the client (%s)" % r.stderr.strip())
            n = stored_paths(agent.state_dir, mallory.pw_name)
            check(n <= FETCH_PATHS_MAX, "the store keeps %d of mallory's "
                  "paths (<= %d)" % (n, FETCH_PATHS_MAX))
        finally:
            check(agent.stop() == 0, "agent stops cleanly")
    finish()


if __name__ == "__main__":
    main()
