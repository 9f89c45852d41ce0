"""A PAM session whose opening process dies without close_session (sshd
killed with SIGKILL) is ended by the agent and its key revoked (rule R4):
while the agent runs (pidfd), after an agent restart between the open and
the death, and when the agent was down while the process died and its pid
was taken by a new process (start time differs: the session ends, the new
process is left alone).

    python3 test_dead_sessions.py [DeadSessions.test_...]
"""

import os
import time
import unittest

from emulator import Emulator
from ramkey_fixture import Agent, Users, Workdir, require_root, wait_for
from reclib import PamConf, PamSession, Spawner, log, need_driver, read_key_file

REVOKE_WITHIN = 5.0


class DeadSessions(unittest.TestCase):
    def setUp(self):
        require_root()
        need_driver()
        self.wd = Workdir()
        self.users = Users("ds")
        self.emu = Emulator(https=True, auto_users=True)
        self.agent = Agent(self.wd, self.emu)
        self.agent.start()
        self.conf = PamConf(self.wd, self.agent.socket)
        self.svc = self.conf.service("rk-dead", timeout=5)
        self.sessions = []
        self.others = []

    def tearDown(self):
        for s in self.sessions:
            s.kill()
        for p in self.others:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.agent.kill()
        self.emu.stop()
        self.users.cleanup()
        self.wd.cleanup()

    def open(self, name):
        pw = self.users.add(name)
        s = PamSession(self.conf, self.svc, pw.pw_name,
                       errpath=self.wd.join("driver-%s.err" % name))
        self.sessions.append(s)
        rc, ms = s.open()
        self.assertEqual(rc, "PAM_SUCCESS", s.stderr() + self.agent.log())
        path = os.path.join(pw.pw_dir, ".alibabacloud", "ramkey.json")
        kid, secret = read_key_file(path)
        self.assertEqual(self.emu.key(kid)["Status"], "Active")
        log("%s: session open in %d ms, driver pid %d, key %s...%s"
            % (pw.pw_name, ms, s.pid, kid[:4], kid[-4:]))
        return pw, s, kid

    def wait_revoked(self, kid, t0, what):
        wait_for(lambda: self.emu.key(kid) is None, REVOKE_WITHIN + 10,
                 interval=0.05, what=what)
        took = time.monotonic() - t0
        log("%s: key gone %.2f s later" % (what, took))
        self.assertLess(took, REVOKE_WITHIN, "%s took %.2f s" % (what, took))
        return took

    def test_sigkill_while_agent_runs(self):
        pw, s, kid = self.open("a")
        s.kill()
        t0 = time.monotonic()
        self.wait_revoked(kid, t0, "revocation after the session's process was SIGKILLed")
        self.assertIn("the session's process exited", self.agent.log())

    def test_sigkill_after_agent_restart(self):
        # SIGTERM + start, then SIGKILL + start, with a session held across
        # both; only then does its process die.
        pw, s, kid = self.open("b")
        self.assertEqual(self.agent.stop(), 0)
        self.agent.start()
        self.agent.kill()
        self.agent.start()
        self.assertIn("recovered 1 live lease", self.agent.log())
        time.sleep(0.5)
        self.assertEqual(self.emu.key(kid)["Status"], "Active",
                         "the living session lost its key at restart")
        self.assertEqual(self.agent.status(pw.pw_name)["leases"][0]["sessions"], 1)
        s.kill()
        t0 = time.monotonic()
        self.wait_revoked(kid, t0, "revocation after the process died (agent restarted before)")

    def test_pid_reused_while_agent_down(self):
        pw, s, kid = self.open("c")
        pid = s.pid
        self.agent.kill()
        s.kill()
        # The dead session's pid now belongs to another long-lived process.
        other = Spawner.with_pid(pid, ["sleep", "300"])
        self.others.append(other)
        log("pid %d reused by a new process (sleep)" % pid)
        with open("/proc/%d/stat" % pid) as f:
            self.assertIn("(sleep)", f.read())
        t0 = time.monotonic()
        self.agent.start()
        self.wait_revoked(kid, t0, "revocation at start (pid reused by another process)")
        self.assertIn("dead session", self.agent.log())
        time.sleep(0.5)
        self.assertIsNone(other.poll(), "the process that reused the pid was touched")
        # RAM has deleted the key; the agent forgets the lease once its
        # answer is in (a moment later under load).
        wait_for(lambda: self.agent.status(pw.pw_name)["leases"] == [], 5,
                 what="the revoked lease to be forgotten")
        # The agent must not have adopted the new process either: it is
        # still running, and nothing about it reaches the agent's state.
        other.kill()
        other.wait()
        time.sleep(0.3)
        self.assertEqual(self.agent.status()["leases"], [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
