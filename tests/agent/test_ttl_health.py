"""max_ttl ends a lease even while it is held; `status` reports the agent's
health (exit 7 after a RAM failure, 0 after the next success)."""

import calendar
import time
import unittest

from emulator import Emulator
from ramkey_fixture import Agent, Users, Workdir, open_session_raw, wait_for


def unix(create_date):
    return calendar.timegm(time.strptime(create_date, "%Y-%m-%dT%H:%M:%SZ"))


class TtlHealth(unittest.TestCase):
    def setUp(self):
        self.wd = Workdir()
        self.users = Users("tt")

    def tearDown(self):
        self.users.cleanup()
        self.wd.cleanup()

    def test_max_ttl_ends_a_held_lease(self):
        pw = self.users.add("max")
        with Emulator(https=True, auto_users=True) as emu:
            agent = Agent(self.wd, emu, max_ttl="5s")
            agent.start()
            try:
                # A PAM-style session held by this (living) process.
                rep = open_session_raw(agent.socket, pw.pw_name)
                self.assertTrue(rep["ok"], rep)
                kid = rep["key"]["access_key_id"]
                created = unix(emu.key(kid)["CreateDate"])
                wait_for(lambda: time.time() >= created + 4.0, 10)
                self.assertEqual(emu.key(kid)["Status"], "Active")
                wait_for(lambda: emu.key(kid) is None, 10, interval=0.02,
                         what="the key to be deleted")
                gone = time.time() - created
                print("max_ttl=5s: key gone %.2f s after CreateDate" % gone)
                self.assertLess(gone, 6.5)
                self.assertIn('reason="max_ttl reached"', agent.log())
            finally:
                agent.stop()

    def test_status_exit_7_while_ram_fails(self):
        pw = self.users.add("h1")
        pw2 = self.users.add("h2")
        with Emulator(https=True, auto_users=True) as emu:
            agent = Agent(self.wd, emu, create_timeout="2s")
            agent.start()
            try:
                self.assertEqual(agent.client("status").returncode, 0)
                emu.set_faults(fail_all="fail")
                t0 = time.monotonic()
                r = agent.client("fetch", "--user", pw.pw_name)
                took = time.monotonic() - t0
                self.assertEqual(r.returncode, 5, r.stderr)
                self.assertIn("ListAccessKeys", r.stderr)
                self.assertLess(took, 4.0)
                r = agent.client("status")
                self.assertEqual(r.returncode, 7, r.stdout + r.stderr)
                self.assertIn("unhealthy", r.stdout)
                emu.clear_faults()
                r = agent.client("fetch", "--user", pw2.pw_name)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(agent.client("status").returncode, 0)
            finally:
                agent.stop()

    def test_clock_skew_is_named_on_mint_and_revocation(self):
        # RAM refuses a timestamp 15 minutes off. The agent says so in
        # words (once a minute at most), and revocations keep retrying
        # until the clock is right again.
        pw = self.users.add("sk1")
        pw2 = self.users.add("sk2")
        with Emulator(https=True, auto_users=True) as emu:
            agent = Agent(self.wd, emu)
            agent.start()
            try:
                r = agent.client("fetch", "--user", pw.pw_name)
                self.assertEqual(r.returncode, 0, r.stderr)
                (kid,) = [k["AccessKeyId"] for k in emu.keys_of(pw.pw_name)]
                emu.set_faults(clock_skew=3600)
                # The revocation hits it first, then a mint.
                r = agent.client("revoke", "--user", pw.pw_name)
                self.assertEqual(r.returncode, 0, r.stderr)
                wait_for(lambda: "this host's clock is off" in agent.log(), 10,
                         what="the clock hint from the revocation")
                self.assertIn("revoking %s" % (kid[:4] + "****" + kid[-4:]),
                              agent.log())
                r = agent.client("fetch", "--user", pw2.pw_name)
                self.assertEqual(r.returncode, 5, r.stderr)
                self.assertIn("InvalidTimeStamp.Expired", r.stderr)
                log = agent.log()
                self.assertEqual(log.count("this host's clock is off"), 1, log)
                self.assertIsNotNone(emu.key(kid))
                emu.clear_faults()
                wait_for(lambda: emu.key(kid) is None, 20,
                         what="the revocation once the clock is right")
            finally:
                agent.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
