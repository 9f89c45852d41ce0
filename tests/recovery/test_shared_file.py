"""The per-user secret_file and two leases (DESIGN §3.4 "one user, one
file", §4 invariant: "while a session is open, its lease has not ended and
nobody set its key Inactive, its secret_file holds an Active key").

A user's sessions share one file. When a second lease is minted for the
user while a session of the first lease is still open (after an agent
restart, the first lease's secret is unknown; or past 80% of max_ttl,
rotation), the second open overwrites the shared file with the new key. If
that second session then closes first, the new lease ends and its key is
revoked, but the file still holds it, while the first session is still open
on a lease that has not ended: the open session's file holds a dead key.

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
        wait_for(lambda: self.emu.key(k2) is None, 10, what="the second lease's key to go")
        self.assertTrue(s1.alive())
        self.assertTrue(check_key(self.emu, k1, sec1),
                        "the first session's own lease should still be live")
        doc = self.agent.status(pw.pw_name)
        self.assertEqual([l["sessions"] for l in doc["leases"]], [1], doc)
        kf = read_key_file(self.path)
        self.assertIsNotNone(kf, "the first session's secret_file was removed")
        log("first session still open on %s...; its secret_file holds %s..." %
            (k1[:8], kf[0][:8]))
        self.assertTrue(check_key(self.emu, kf[0], kf[1]),
                        "session 1 is open and its lease (%s) has not ended, but its "
                        "secret_file holds %s, the key of the second lease, revoked when "
                        "session 2 closed" % (k1, kf[0]))

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


if __name__ == "__main__":
    unittest.main(verbosity=2)
