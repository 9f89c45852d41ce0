"""RAM down for 30 s (emulator down_for=30, down_mode "fail": every API call
answers 503) while 20 PAM sessions close (rules R1 and R5):

- every close is recorded and answered at once, and the 20 revocations stay
  pending; none is lost across an agent restart (SIGKILL + start) during
  the outage;
- all 20 keys are gone within 10 s of RAM coming back;
- during the outage the agent makes at most 10 RAM calls per pending
  revocation (counted from the emulator's log by key id): it backs off;
- a new PAM open during the outage fails within the module's timeout with
  one clear syslog line naming RAM as the cause;
- sessions that stay open through the outage keep their key: their
  secret_file is unchanged and the key is still Active, and accepted once
  RAM is back.

    python3 test_ram_outage.py
"""

import os
import re
import threading
import time
import unittest

from emulator import Emulator
from ramkey_fixture import Agent, Users, Workdir, require_root, wait_for
from reclib import (PamConf, PamSession, agent_entries, check_key, log, need_driver,
                    syslog_env, read_key_file, syslog_lines)

N_CLOSING = 20
N_KEPT = 2
OUTAGE = 30.0
REVOKED_WITHIN = 10.0
MAX_CALLS_PER_REVOCATION = 10
PAM_TIMEOUT = 5


class RamOutage(unittest.TestCase):
    def setUp(self):
        require_root()
        need_driver()
        self.wd = Workdir()
        self.users = Users("ro")
        self.emu = Emulator(https=True, auto_users=True)
        self.agent = Agent(self.wd, self.emu, mint_rate="1000/h")
        self.agent.start()
        self.conf = PamConf(self.wd, self.agent.socket)
        self.svc = self.conf.service("rk-outage", timeout=PAM_TIMEOUT)
        self.sessions = []
        self.problems = []

    def expect(self, cond, msg):
        """A check that does not stop the test: every broken promise of the
        outage is reported, not just the first."""
        if not cond:
            log("FAILED: " + msg)
            self.problems.append(msg)

    def tearDown(self):
        for s in self.sessions:
            s.kill()
        self.emu.clear_faults()
        self.agent.kill()
        self.emu.stop()
        self.users.cleanup()
        self.wd.cleanup()

    def open(self, pw):
        s = PamSession(self.conf, self.svc, pw.pw_name,
                       errpath=self.wd.join("drv-%s.err" % pw.pw_name))
        self.sessions.append(s)
        rc, _ = s.open()
        self.assertEqual(rc, "PAM_SUCCESS", s.stderr() + self.agent.log()[-3000:])
        path = os.path.join(pw.pw_dir, ".alibabacloud", "ramkey.json")
        with open(path, "rb") as f:
            content = f.read()
        kid, secret = read_key_file(path)
        return s, path, content, kid, secret

    def test_outage(self):
        closing = [self.users.add("c%02d" % i) for i in range(N_CLOSING)]
        kept = [self.users.add("k%d" % i) for i in range(N_KEPT)]
        newcomer = self.users.add("new")
        opened = {pw.pw_name: self.open(pw) for pw in closing + kept}
        closing_keys = {opened[pw.pw_name][3] for pw in closing}
        self.assertEqual(len(closing_keys), N_CLOSING)
        log("%d sessions open, one key each" % len(opened))

        self.emu.set_faults(down_for=OUTAGE, down_mode="fail")
        t_down = time.time()
        t_up = t_down + OUTAGE
        log("RAM down for %.0f s" % OUTAGE)

        # The 20 sessions close, concurrently, while every RAM call fails.
        results = {}

        def close(pw):
            s = opened[pw.pw_name][0]
            results[pw.pw_name] = s.close()
            s.quit()
        threads = [threading.Thread(target=close, args=(pw,)) for pw in closing]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for name, (rc, ms) in sorted(results.items()):
            self.assertEqual(rc, "PAM_SUCCESS", "close of %s during the outage" % name)
        self.assertEqual(len(results), N_CLOSING)
        log("20 closes answered in %s ms" % sorted(ms for _, ms in results.values()))
        doc = self.agent.status()
        self.assertEqual(doc["pending_revocations"], N_CLOSING, doc)

        # A new login during the outage fails within the PAM timeout, with
        # one line that says RAM is the problem.
        s = PamSession(self.conf, self.svc, newcomer.pw_name,
                       errpath=self.wd.join("drv-new.err"), env=syslog_env())
        self.sessions.append(s)
        t0 = time.monotonic()
        rc, ms = s.open(timeout=PAM_TIMEOUT + 10)
        took = time.monotonic() - t0
        s.quit()
        lines = [l for l in syslog_lines(s.stderr()) if "no default config" not in l]
        log("open during the outage: %s after %.2f s; syslog: %s" % (rc, took, lines))
        self.assertEqual(rc, "PAM_SESSION_ERR")
        self.assertLess(took, PAM_TIMEOUT + 1.0)
        self.assertEqual(len(lines), 1, lines)
        self.expect(re.search(r"\bRAM\b|ServiceUnavailable|InternalError", lines[0]),
                    "an open during the RAM outage fails with a message that does not "
                    "name RAM as the cause: %r" % lines[0])

        # The sessions that stay open keep their key meanwhile.
        for pw in kept:
            s, path, content, kid, _ = opened[pw.pw_name]
            with open(path, "rb") as f:
                self.assertEqual(f.read(), content)
            self.assertEqual(self.emu.key(kid)["Status"], "Active")

        # An agent crash in the middle of the outage loses nothing.
        wait_for(lambda: time.time() >= t_down + OUTAGE / 2 - 3, OUTAGE, interval=0.1)
        self.agent.kill()
        t_restart = time.time()
        self.agent.start()
        log("agent restarted (SIGKILL + start) %.1f s into the outage" % (time.time() - t_down))
        doc = self.agent.status()
        self.assertEqual(doc["pending_revocations"], N_CLOSING, doc)
        self.assertEqual(sum(l["sessions"] for l in doc["leases"]), N_KEPT, doc)
        for kid in closing_keys:
            self.assertIsNotNone(self.emu.key(kid), "revoked while RAM was down?")

        # RAM comes back: every key goes within 10 s.
        wait_for(lambda: time.time() >= t_up, OUTAGE + 5, interval=0.05)
        left = wait_for(lambda: time.time() > t_up + REVOKED_WITHIN + 5 or
                        not [k for k in closing_keys if self.emu.key(k)], REVOKED_WITHIN + 10,
                        interval=0.1)
        remaining = [k for k in closing_keys if self.emu.key(k)]
        took = time.time() - t_up
        log("%d of %d keys revoked %.2f s after RAM came back"
            % (N_CLOSING - len(remaining), N_CLOSING, took))
        self.assertTrue(left)
        self.assertEqual(remaining, [], "keys not revoked after the outage")
        self.expect(took < REVOKED_WITHIN, "the last key went %.2f s after RAM came back "
                    "(limit %.0f s)" % (took, REVOKED_WITHIN))

        # Backoff: RAM calls per pending revocation during the outage. A
        # faulted call never reaches the action, so the emulator logs no
        # key_id for it; each closing user has exactly one key, so the
        # revocation calls are counted by user (UserName), which is the
        # same as by key here. Calls after the outage are counted by key_id.
        key_of = {pw.pw_name: opened[pw.pw_name][3] for pw in closing}
        calls = {k: 0 for k in closing_keys}
        before_restart = 0
        for e in agent_entries(self.emu, since=t_down):
            if e["t"] >= t_up or e["action"] not in ("UpdateAccessKey", "DeleteAccessKey"):
                continue
            kid = e.get("key_id") or key_of.get(e.get("user"))
            if kid in calls:
                calls[kid] += 1
                before_restart += e["t"] < t_restart
        worst = max(calls.values())
        total = sum(calls.values())
        log("RAM calls per pending revocation during the %.0f s outage: max %d, "
            "mean %.1f (%.1f before the restart at %.1f s, %.1f after), total %d"
            % (OUTAGE, worst, total / len(calls), before_restart / len(calls),
               t_restart - t_down, (total - before_restart) / len(calls), total))
        self.assertGreater(worst, 0, "no revocation call seen during the outage?")
        self.expect(worst <= MAX_CALLS_PER_REVOCATION,
                    "up to %d RAM calls for one pending revocation during the %.0f s outage "
                    "(limit %d): %s" % (worst, OUTAGE, MAX_CALLS_PER_REVOCATION,
                                        sorted(calls.values())))

        # The kept sessions still work, and the agent is healthy again.
        for pw in kept:
            s, path, content, kid, secret = opened[pw.pw_name]
            with open(path, "rb") as f:
                self.assertEqual(f.read(), content)
            self.assertTrue(check_key(self.emu, kid, secret),
                            "a session kept through the outage lost its key")
        wait_for(lambda: self.agent.client("status").returncode == 0, 15,
                 interval=0.5, what="status to exit 0 after the outage")
        for pw in kept:
            rc, _ = opened[pw.pw_name][0].close()
            self.assertEqual(rc, "PAM_SUCCESS")
            opened[pw.pw_name][0].quit()
        self.assertEqual(self.problems, [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
