"""max_ttl ends a held lease on time, across agent restarts (rules L4, L7 and R4):
with max_ttl=5s the key of a lease held by a living PAM session is Active
4.0 s after its CreateDate and gone 6.5 s after it; the same when the agent
is restarted 2 s after CreateDate, by SIGTERM + start and by SIGKILL + start.

    python3 test_max_ttl.py [MaxTtl.test_...]
"""

import os
import time
import unittest

from emulator import Emulator
from ramkey_fixture import Agent, Users, Workdir, require_root, wait_for
from reclib import PamConf, PamSession, log, need_driver, read_key_file, unix_time

ACTIVE_AT = 4.0
GONE_BY = 6.5


class MaxTtl(unittest.TestCase):
    def setUp(self):
        require_root()
        need_driver()
        self.wd = Workdir()
        self.users = Users("mt")
        self.emu = Emulator(https=True, auto_users=True)
        self.agent = Agent(self.wd, self.emu, max_ttl="5s")
        self.agent.start()
        self.conf = PamConf(self.wd, self.agent.socket)
        self.svc = self.conf.service("rk-ttl", timeout=5)
        self.session = None

    def tearDown(self):
        if self.session:
            self.session.kill()
        self.agent.kill()
        self.emu.stop()
        self.users.cleanup()
        self.wd.cleanup()

    def run_case(self, name, restart=None):
        pw = self.users.add(name)
        self.session = s = PamSession(self.conf, self.svc, pw.pw_name,
                                      errpath=self.wd.join("driver.err"))
        rc, _ = s.open()
        self.assertEqual(rc, "PAM_SUCCESS", s.stderr())
        kid, _ = read_key_file(os.path.join(pw.pw_dir, ".alibabacloud", "ramkey.json"))
        created = unix_time(self.emu.key(kid)["CreateDate"])
        if restart is not None:
            wait_for(lambda: time.time() >= created + 2.0, 10, interval=0.01)
            if restart == "sigterm":
                self.assertEqual(self.agent.stop(), 0)
            else:
                self.agent.kill()
            self.agent.start()
            log("agent restarted (%s) %.2f s after CreateDate"
                % (restart, time.time() - created))
        wait_for(lambda: time.time() >= created + ACTIVE_AT, 10, interval=0.01)
        k = self.emu.key(kid)
        self.assertIsNotNone(k, "key gone before %.1f s" % ACTIVE_AT)
        self.assertEqual(k["Status"], "Active", "key not Active at %.1f s" % ACTIVE_AT)
        self.assertTrue(s.alive())
        wait_for(lambda: self.emu.key(kid) is None, 15, interval=0.02,
                 what="the key to be deleted at max_ttl")
        gone = time.time() - created
        log("max_ttl=5s%s: key gone %.2f s after CreateDate"
            % ("" if restart is None else " (restart %s at 2 s)" % restart, gone))
        self.assertLess(gone, GONE_BY)
        self.assertIn("max_ttl", self.agent.log())
        # The session outlives its lease: its close is a no-op, not an error.
        rc, _ = s.close()
        self.assertEqual(rc, "PAM_SUCCESS", s.stderr())

    def test_held_lease_ends_at_max_ttl(self):
        self.run_case("a")

    def test_restart_sigterm_at_2s(self):
        self.run_case("b", "sigterm")

    def test_restart_sigkill_at_2s(self):
        self.run_case("c", "sigkill")


if __name__ == "__main__":
    unittest.main(verbosity=2)
