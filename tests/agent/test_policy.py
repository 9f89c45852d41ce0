"""Who gets keys: own user only, min_uid, allowed_group, mint_rate, and
RAM's two-key limit."""

import os
import unittest

from emulator import Emulator
from ramkey_fixture import Agent, Users, Workdir, wait_for


class Policy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.wd = Workdir()
        cls.users = Users("po")
        cls.emu = Emulator(https=True, auto_users=True)
        cls.group = cls.users.add_group("keyed")
        cls.agent = Agent(cls.wd, cls.emu, mint_rate="2/h")
        cls.agent.start()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()
        cls.emu.stop()
        cls.users.cleanup()
        cls.wd.cleanup()

    def test_ordinary_user_fetches_for_itself_only(self):
        alice = self.users.add("alice")
        bob = self.users.add("bob")
        r = self.agent.client("fetch", user=alice)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(self.emu.keys_of(alice.pw_name)), 1)
        r = self.agent.client("fetch", "--user", bob.pw_name, user=alice)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)
        self.assertIn("only act for itself", r.stderr)
        self.assertEqual(self.emu.keys_of(bob.pw_name), [])
        wait_for(lambda: "event=deny user=%s" % bob.pw_name in self.agent.log(),
                 5, what="the denial in the agent's log")
        line = [l for l in self.agent.log().splitlines()
                if "event=deny user=%s" % bob.pw_name in l][0]
        self.assertIn("peer_uid=%d" % alice.pw_uid, line)

    def test_below_min_uid_is_denied(self):
        sysu = self.users.add("sys", system=True)
        self.assertLess(sysu.pw_uid, 1000)
        r = self.agent.client("fetch", "--user", sysu.pw_name)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn("min_uid", r.stderr)
        r = self.agent.client("fetch", "--user", "root")
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertEqual(self.emu.keys_of(sysu.pw_name), [])

    def test_unknown_user_is_denied(self):
        r = self.agent.client("fetch", "--user", "rkpo-nosuchuser")
        self.assertEqual(r.returncode, 4, r.stderr)

    def test_allowed_group(self):
        member = self.users.add("member", groups=(self.group.gr_name,))
        outsider = self.users.add("outsider")
        with Workdir() as wd:
            agent = Agent(wd, self.emu, allowed_group=self.group.gr_name)
            agent.start()
            try:
                r = agent.client("fetch", "--user", member.pw_name)
                self.assertEqual(r.returncode, 0, r.stderr)
                r = agent.client("fetch", "--user", outsider.pw_name)
                self.assertEqual(r.returncode, 4, r.stderr)
                self.assertIn("allowed_group", r.stderr)
                r = agent.client("fetch", user=outsider)
                self.assertEqual(r.returncode, 4, r.stderr)
                self.assertEqual(self.emu.keys_of(outsider.pw_name), [])
            finally:
                agent.stop()

    def test_mint_rate(self):
        pw = self.users.add("rate")
        for _ in range(2):
            r = self.agent.client("fetch", "--user", pw.pw_name)
            self.assertEqual(r.returncode, 0, r.stderr)
            r = self.agent.client("revoke", "--user", pw.pw_name)
            self.assertEqual(r.returncode, 0, r.stderr)
        before = self.emu.counters()["calls"].get("CreateAccessKey", 0)
        r = self.agent.client("fetch", "--user", pw.pw_name)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn("mint_rate", r.stderr)
        self.assertEqual(self.emu.counters()["calls"].get("CreateAccessKey", 0),
                         before)

    def test_user_with_two_keys_of_their_own(self):
        pw = self.users.add("full")
        own = [self.emu.create_key(pw.pw_name)["AccessKeyId"] for _ in range(2)]
        r = self.agent.client("fetch", "--user", pw.pw_name)
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)
        self.assertIn("LimitExceeded.User.AccessKey", r.stderr)
        self.assertIn("two", r.stderr)
        keys = {k["AccessKeyId"]: k["Status"] for k in self.emu.keys_of(pw.pw_name)}
        self.assertEqual(keys, {own[0]: "Active", own[1]: "Active"})
        log = self.emu.log()
        touched = [e for e in log if e.get("key_id") in own and
                   e["action"] in ("UpdateAccessKey", "DeleteAccessKey")]
        self.assertEqual(touched, [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
