"""Single-flight minting and concurrency: 50 fetches for one user make one
key; 50 fetches for 50 users against a slow RAM run in parallel."""

import os
import subprocess
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

from emulator import Emulator
from ramkey_fixture import Agent, Users, Workdir, read_json_secret_file


class Concurrency(unittest.TestCase):
    def setUp(self):
        self.wd = Workdir()
        self.users = Users("cc")

    def tearDown(self):
        self.users.cleanup()
        self.wd.cleanup()

    def test_fifty_fetches_for_one_user_mint_once(self):
        pw = self.users.add("one")
        with Emulator(https=True, auto_users=True, latency_ms=200) as emu:
            agent = Agent(self.wd, emu)
            agent.start()
            try:
                emu.reset_counters()
                paths = [os.path.join(pw.pw_dir, "k%02d.json" % i)
                         for i in range(50)]

                def fetch(path):
                    return agent.client("fetch", "--user", pw.pw_name,
                                        "--secret-file", path)

                with ThreadPoolExecutor(50) as ex:
                    results = list(ex.map(fetch, paths))
                for r in results:
                    self.assertEqual(r.returncode, 0, r.stderr)
                calls = emu.counters()["calls"]
                self.assertEqual(calls.get("CreateAccessKey", 0), 1, calls)
                ids = {read_json_secret_file(p)[0] for p in paths}
                secrets = {read_json_secret_file(p)[1] for p in paths}
                self.assertEqual(len(ids), 1, ids)
                self.assertEqual(len(secrets), 1)
                self.assertEqual(len(emu.keys_of(pw.pw_name)), 1)
            finally:
                agent.stop()

    def test_fifty_users_in_parallel_against_slow_ram(self):
        users = [self.users.add("u%02d" % i) for i in range(50)]
        with Emulator(https=True, auto_users=True, latency_ms=300) as emu:
            agent = Agent(self.wd, emu)
            agent.start()
            try:
                def fetch(pw):
                    return agent.client("fetch", "--user", pw.pw_name)

                start = time.monotonic()
                with ThreadPoolExecutor(50) as ex:
                    results = list(ex.map(fetch, users))
                elapsed = time.monotonic() - start
                for r in results:
                    self.assertEqual(r.returncode, 0, r.stderr)
                counters = emu.counters()
                print("50 users, 300 ms RAM latency: %.2f s; RAM in-flight "
                      "peak %d" % (elapsed, counters["in_flight_peak"]))
                # The mints overlap at RAM (one at a time would take 30 s);
                # the wall-clock bound leaves room for a loaded machine.
                self.assertGreaterEqual(counters["in_flight_peak"], 25)
                self.assertLess(elapsed, 6.0)
                self.assertEqual(counters["calls"].get("CreateAccessKey"), 50)
            finally:
                agent.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
