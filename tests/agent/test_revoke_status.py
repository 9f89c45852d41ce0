"""revoke, set-status and status: keys end at RAM, status toggles show, and
nobody can name a key that is not theirs."""

import os
import unittest

from emulator import Emulator
from ramkey_fixture import Agent, Users, Workdir, read_json_secret_file, wait_for


class RevokeStatus(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.wd = Workdir()
        cls.users = Users("rv")
        cls.emu = Emulator(https=True, auto_users=True)
        cls.agent = Agent(cls.wd, cls.emu)
        cls.agent.start()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()
        cls.emu.stop()
        cls.users.cleanup()
        cls.wd.cleanup()

    def fetch(self, pw, agent=None):
        agent = agent or self.agent
        path = os.path.join(pw.pw_dir, "k.json")
        r = agent.client("fetch", "--user", pw.pw_name, "--secret-file", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        return read_json_secret_file(path)[0]

    def test_revoke_deletes_the_key_at_ram(self):
        pw = self.users.add("del")
        kid = self.fetch(pw)
        self.assertIsNotNone(self.emu.key(kid))
        r = self.agent.client("revoke", "--user", pw.pw_name)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("revoked 1", r.stdout)
        wait_for(lambda: self.emu.key(kid) is None, 10, what="key deleted")
        r = self.agent.client("revoke", "--user", pw.pw_name)
        self.assertEqual(r.returncode, 0)
        self.assertIn("nothing to revoke", r.stdout)
        # The next fetch mints again.
        self.assertNotEqual(self.fetch(pw), kid)

    def test_revoke_deactivate_mode_leaves_key_inactive(self):
        with Workdir() as wd:
            agent = Agent(wd, self.emu, revoke="deactivate")
            agent.start()
            try:
                pw = self.users.add("deact")
                kid = self.fetch(pw, agent)
                r = agent.client("revoke", "--user", pw.pw_name)
                self.assertEqual(r.returncode, 0, r.stderr)
                wait_for(lambda: (self.emu.key(kid) or {}).get("Status") ==
                         "Inactive", 10, what="key Inactive")
                self.assertIsNotNone(self.emu.key(kid))
            finally:
                agent.stop()

    def test_deactivate_mode_frees_a_parked_slot_before_minting(self):
        # Two parked Inactive keys fill the user's two RAM slots. The next
        # fetch must delete one and wait for it, even when the delete is
        # slow, instead of failing with LimitExceeded.
        with Workdir() as wd:
            agent = Agent(wd, self.emu, revoke="deactivate")
            agent.start()
            try:
                pw = self.users.add("slot")
                parked = []
                for _ in range(2):
                    kid = self.fetch(pw, agent)
                    r = agent.client("revoke", "--user", pw.pw_name)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    wait_for(lambda: (self.emu.key(kid) or {}).get(
                        "Status") == "Inactive", 10, what="key Inactive")
                    parked.append(kid)
                self.emu.set_faults(latency_by_action={"DeleteAccessKey": 700})
                try:
                    kid = self.fetch(pw, agent)
                finally:
                    self.emu.set_faults(latency_by_action={})
                self.assertNotIn(kid, parked)
                self.assertEqual(self.emu.key(kid)["Status"], "Active")
                gone = [k for k in parked if self.emu.key(k) is None]
                self.assertEqual(len(gone), 1, parked)
            finally:
                agent.stop()

    def test_key_minted_after_the_requester_gave_up_is_revoked_at_once(self):
        # CreateAccessKey answers after the client's --timeout: the client
        # gets the agent's reason in time, and the key nobody holds is
        # deleted as soon as it arrives.
        pw = self.users.add("late")
        self.emu.set_faults(latency_by_action={"CreateAccessKey": 1500})
        try:
            r = self.agent.client("--timeout", "1", "fetch", "--user", pw.pw_name)
        finally:
            self.emu.set_faults(latency_by_action={})
        self.assertEqual(r.returncode, 5, r.stdout + r.stderr)
        self.assertIn("within 750 ms", r.stderr)
        line = [None]

        def revoked():
            for l in self.agent.log().splitlines():
                if ("event=revoke user=%s " % pw.pw_name in l and
                        'reason="requester gave up before the mint finished"' in l):
                    line[0] = l
            return line[0] is not None and self.emu.keys_of(pw.pw_name) == []
        wait_for(revoked, 10, what="the orphaned key to be deleted")
        self.assertEqual(self.agent.status(pw.pw_name)["leases"], [])

    def test_set_status_toggles_and_status_shows_it(self):
        pw = self.users.add("tog")
        kid = self.fetch(pw)
        masked = kid[:4] + "****" + kid[-4:]
        for want in ("Inactive", "Active", "Inactive", "Active"):
            r = self.agent.client("set-status", "--key-id", kid, want, user=pw)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(self.emu.key(kid)["Status"], want)
            doc = self.agent.status(pw.pw_name)
            lease = [l for l in doc["leases"] if l["access_key_id"] == masked]
            self.assertEqual(len(lease), 1, doc)
            self.assertEqual(lease[0]["status"], want)
        r = self.agent.client("set-status", "--key-id", kid, "Bogus", user=pw)
        self.assertEqual(r.returncode, 2)

    def test_fetch_hands_out_a_key_set_inactive_instead_of_minting(self):
        # set-status Inactive is the holder's choice: the next fetch gets
        # the same key, not a second one in the user's other RAM slot.
        pw = self.users.add("paus")
        kid = self.fetch(pw)
        r = self.agent.client("set-status", "--key-id", kid, "Inactive", user=pw)
        self.assertEqual(r.returncode, 0, r.stderr)
        path = os.path.join(pw.pw_dir, "k2.json")
        r = self.agent.client("fetch", "--user", pw.pw_name, "--secret-file", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        again, _, doc = read_json_secret_file(path)
        self.assertEqual(again, kid)
        self.assertEqual(doc.get("Status"), "Inactive", doc)
        self.assertEqual(len(self.emu.keys_of(pw.pw_name)), 1)

    def test_status_json_shape(self):
        pw = self.users.add("shape")
        kid = self.fetch(pw)
        doc = self.agent.status(pw.pw_name)
        self.assertEqual(sorted(doc), ["ambiguous_keys", "leases",
                                       "pending_revocations", "pgp", "source"])
        # The agent's own credential: where from, which kind, until when.
        self.assertEqual(doc["source"], {
            "source": "file", "type": "access_key", "kind": "static",
            "expires": None, "renewable": False,
            "access_key_id": self.emu.admin_key_id[:4] + "****" +
            self.emu.admin_key_id[-4:],
            "role": None, "usable": True, "error": None})
        # How the PGP helpers are confined (README, "PGP-encrypted
        # secrets"); "unavailable" only when GnuPG cannot be used.
        self.assertEqual(sorted(set(doc["pgp"]) - {"unavailable"}), sorted([
            "available", "confinement", "lacking", "landlock_abi",
            "helpers_running", "helpers_max", "jobs_queued", "deadline_ms"]))
        (lease,) = doc["leases"]
        self.assertEqual(sorted(lease), sorted([
            "user", "ram_user", "access_key_id", "status", "create_time",
            "expires", "sessions", "ttl_holder_expires", "pending_revocation",
            "key_fingerprint"]))
        self.assertEqual(lease["access_key_id"], kid[:4] + "****" + kid[-4:])
        self.assertNotIn(kid, str(doc))
        self.assertEqual(lease["sessions"], 0)
        self.assertRegex(lease["create_time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertRegex(lease["expires"], r"Z$")
        self.assertRegex(lease["ttl_holder_expires"], r"Z$")
        self.assertFalse(lease["pending_revocation"])
        self.assertIsNone(lease["key_fingerprint"])
        # The user sees only their own leases.
        other = self.users.add("shape2")
        self.fetch(other)
        r = self.agent.client("status", "--json", user=pw)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(other.pw_name, r.stdout)
        r = self.agent.client("status", "--user", other.pw_name, user=pw)
        self.assertEqual(r.returncode, 4)

    def test_keys_of_others_or_never_minted_are_refused(self):
        alice = self.users.add("ka")
        bob = self.users.add("kb")
        akid = self.fetch(alice)
        bkid = self.fetch(bob)
        foreign = self.emu.create_key(alice.pw_name)["AccessKeyId"]
        for kid in (bkid, foreign, "LTAI00000000000000000000"):
            r = self.agent.client("set-status", "--key-id", kid, "Inactive",
                                  user=alice)
            self.assertEqual(r.returncode, 4, (kid, r.stderr))
            r = self.agent.client("revoke", "--key-id", kid, user=alice)
            self.assertEqual(r.returncode, 4, (kid, r.stderr))
        # Root may act on keys the agent minted, never on others.
        r = self.agent.client("revoke", "--key-id", foreign)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertEqual(self.emu.key(foreign)["Status"], "Active")
        self.assertEqual(self.emu.key(bkid)["Status"], "Active")
        # Their own key works.
        r = self.agent.client("revoke", "--key-id", akid, user=alice)
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for(lambda: self.emu.key(akid) is None, 10, what="key deleted")
        self.assertIsNotNone(self.emu.key(foreign))


if __name__ == "__main__":
    unittest.main(verbosity=2)
