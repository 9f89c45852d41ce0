"""SIGTERM stops the agent cleanly with leases kept in the store; after a
restart, sessions of living processes keep their lease, and a session
whose process dies is ended and its key revoked."""

import json
import os
import subprocess
import sys
import time
import unittest

from emulator import Emulator
from ramkey_fixture import SOURCE_DIR, Agent, Users, Workdir, wait_for

HOLD = os.path.join(SOURCE_DIR, "tests", "lib", "hold_session.py")


def reap(p):
    p.kill()
    p.wait()
    p.stdin.close()
    p.stdout.close()


def hold(agent, user):
    p = subprocess.Popen([sys.executable, HOLD, agent.socket, user],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env=dict(os.environ))
    rep = json.loads(p.stdout.readline())
    return p, rep


class Restart(unittest.TestCase):
    def test_sigterm_keeps_leases_and_restart_rewatches_sessions(self):
        with Workdir() as wd, Users("rs") as users, \
                Emulator(https=True, auto_users=True) as emu:
            pw = users.add("a")
            agent = Agent(wd, emu)
            agent.start()
            p, rep = hold(agent, pw.pw_name)
            try:
                self.assertTrue(rep["ok"], rep)
                kid = rep["key"]["access_key_id"]
                self.assertEqual(agent.stop(), 0)
                self.assertFalse(os.path.exists(agent.socket))
                self.assertEqual(emu.key(kid)["Status"], "Active")
                agent.start()
                self.assertIn("recovered 1 live lease", agent.log())
                doc = agent.status(pw.pw_name)
                self.assertEqual(doc["leases"][0]["sessions"], 1)
                time.sleep(1)
                self.assertEqual(emu.key(kid)["Status"], "Active")
                # The holder dies without closing: SIGKILL.
                reap(p)
                t0 = time.monotonic()
                wait_for(lambda: emu.key(kid) is None, 10, interval=0.05,
                         what="revocation after the holder died")
                print("key revoked %.2f s after its session's process died "
                      "(agent restarted in between)" % (time.monotonic() - t0))
                self.assertLess(time.monotonic() - t0, 5.0)
            finally:
                reap(p)
                agent.stop()

    def test_ttl_holder_survives_restart_but_not_its_expiry(self):
        with Workdir() as wd, Users("rt") as users, \
                Emulator(https=True, auto_users=True) as emu:
            pw = users.add("b")
            agent = Agent(wd, emu)
            agent.start()
            try:
                r = agent.client("fetch", "--user", pw.pw_name, "--ttl", "4s")
                self.assertEqual(r.returncode, 0, r.stderr)
                (key,) = emu.keys_of(pw.pw_name)
                agent.stop()
                agent.start()
                self.assertEqual(emu.key(key["AccessKeyId"])["Status"], "Active")
                wait_for(lambda: emu.key(key["AccessKeyId"]) is None, 10,
                         what="TTL expiry after restart")
            finally:
                agent.stop()

    def test_lease_without_holder_is_revoked_at_start(self):
        with Workdir() as wd, Users("rh") as users, \
                Emulator(https=True, auto_users=True) as emu:
            pw = users.add("c")
            agent = Agent(wd, emu)
            agent.start()
            p, rep = hold(agent, pw.pw_name)
            kid = rep["key"]["access_key_id"]
            agent.kill()  # no clean stop
            reap(p)       # the session's process dies while the agent is down
            agent.start()
            wait_for(lambda: emu.key(kid) is None, 10, what="revocation at start")
            self.assertIn("dead session", agent.log())
            agent.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
