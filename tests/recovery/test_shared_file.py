"""The per-user secret_file and two leases (README: "one user, one
file", §4 invariant: "while a session is open, its lease has not ended and
nobody set its key Inactive, its secret_file holds an Active key").

A user's sessions share one file. When a second lease is minted for the
user while a session of the first lease is still open (after an agent
restart, the first lease's secret is unknown; or past 80% of max_ttl,
rotation), the second open overwrites the shared file with the new key. If
that second session then closes first, its lease must not end: the first
session reads the new key from the shared file now, so it moves to the
second lease, and the first lease (whose key is in no file any more) ends.

    python3 test_shared_file.py [SharedFile.test_...]
"""

import os
import time
import unittest

from emulator import Emulator
from ramkey_fixture import Agent, Users, Workdir, require_root, wait_for
from reclib import PamConf, PamSession, check_key, log, need_driver, read_key_file


class SharedFile(unittest.TestCase):
    def setUp(self):
        require_root()
        need_driver()
        self.wd = Workdir()
        self.users = Users("sh")
        self.emu = Emulator(https=True, auto_users=True)
        self.sessions = []
        self.agent = None

    def tearDown(self):
        for s in self.sessions:
            s.kill()
        if self.agent:
            self.agent.kill()
        self.emu.stop()
        self.users.cleanup()
        self.wd.cleanup()

    def start(self, **conf):
        self.agent = Agent(self.wd, self.emu, **conf)
        self.agent.start()
        self.conf = PamConf(self.wd, self.agent.socket)
        self.svc = self.conf.service("rk-shared", timeout=5)

    def open(self, pw):
        s = PamSession(self.conf, self.svc, pw.pw_name,
                       errpath=self.wd.join("drv-%d.err" % len(self.sessions)))
        self.sessions.append(s)
        rc, _ = s.open()
        self.assertEqual(rc, "PAM_SUCCESS", s.stderr())
        return s, read_key_file(self.path)

    def second_lease_closes_first(self, pw, first):
        s1, (k1, sec1) = first
        s2, (k2, sec2) = self.open(pw)
        self.assertNotEqual(k1, k2, "expected a second lease (new key)")
        log("second session got a new key %s...; the file now holds it" % k2[:8])
        rc, _ = s2.close()
        self.assertEqual(rc, "PAM_SUCCESS")
        s2.quit()
        # The first session reads the shared file, which holds the second
        # key now: it moves to the second lease, which stays; the first
        # lease, held by nobody any more, ends.
        wait_for(lambda: self.emu.key(k1) is None, 10,
                 what="the first lease's key (no longer in any file) to go")
        self.assertTrue(s1.alive())
        self.assertTrue(check_key(self.emu, k2, sec2),
                        "the second key, in the open session's file, was revoked")
        doc = self.agent.status(pw.pw_name)
        live = [l for l in doc["leases"] if not l["pending_revocation"]]
        self.assertEqual([(l["access_key_id"], l["sessions"]) for l in live],
                         [(k2[:4] + "****" + k2[-4:], 1)], doc)
        kf = read_key_file(self.path)
        self.assertIsNotNone(kf, "the first session's secret_file was removed")
        self.assertEqual(kf[0], k2)
        self.assertTrue(check_key(self.emu, kf[0], kf[1]),
                        "session 1 is open but its secret_file holds a dead key")
        self.assertIn("moved_from=", self.agent.log())
        # The last close ends it all.
        rc, _ = s1.close()
        self.assertEqual(rc, "PAM_SUCCESS")
        wait_for(lambda: self.emu.key(k2) is None, 10, what="the last key to go")
        self.assertIsNone(read_key_file(self.path))

    def test_after_agent_restart(self):
        self.start()
        pw = self.users.add("a")
        self.path = os.path.join(pw.pw_dir, ".alibabacloud", "ramkey.json")
        first = self.open(pw)
        self.assertEqual(self.agent.stop(), 0)
        self.agent.start()
        self.second_lease_closes_first(pw, first)

    def test_rotation_past_80_percent_of_max_ttl(self):
        self.start(max_ttl="20s")
        pw = self.users.add("b")
        self.path = os.path.join(pw.pw_dir, ".alibabacloud", "ramkey.json")
        first = self.open(pw)
        t0 = time.monotonic()
        wait_for(lambda: time.monotonic() - t0 > 16.5, 30, interval=0.1)
        self.second_lease_closes_first(pw, first)


    def test_fetch_into_the_session_file_after_restart(self):
        # fetch writes the login session's file (its default path) with a
        # new key; when that fetch's TTL holder expires, the session, which
        # now reads the new key, must keep it.
        self.start()
        pw = self.users.add("c")
        self.path = os.path.join(pw.pw_dir, ".alibabacloud", "ramkey.json")
        s1, (k1, sec1) = self.open(pw)
        self.assertEqual(self.agent.stop(), 0)
        self.agent.start()
        r = self.agent.client("fetch", "--user", pw.pw_name, "--ttl", "3s")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(self.path, r.stdout)
        k2, sec2 = read_key_file(self.path)
        self.assertNotEqual(k1, k2)
        wait_for(lambda: self.emu.key(k1) is None, 15,
                 what="the first key to go once the fetch holder expired")
        self.assertTrue(s1.alive())
        kf = read_key_file(self.path)
        self.assertEqual(kf[0], k2)
        self.assertTrue(check_key(self.emu, k2, sec2),
                        "the open session's file holds a dead key")
        rc, _ = s1.close()
        self.assertEqual(rc, "PAM_SUCCESS")
        wait_for(lambda: self.emu.key(k2) is None, 10, what="the last key to go")


if __name__ == "__main__":
    unittest.main(verbosity=2)
