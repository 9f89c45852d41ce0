"""The agent refuses a bad configuration with one line naming the file, the
line and the problem, and reloads on SIGHUP without losing a good one."""

import os
import subprocess
import unittest

from emulator import Emulator
from ramkey_fixture import AGENT_BIN, Agent, Workdir, wait_for


class ConfigErrors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.wd = Workdir()
        cls.emu = Emulator(https=True)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()
        cls.wd.cleanup()

    def refuse(self, agent, *expected):
        r = subprocess.run([AGENT_BIN, "-f", "-c", agent.conf_path],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        for e in expected:
            self.assertIn(e, lines[0])
        self.assertFalse(os.path.exists(agent.socket))
        return lines[0]

    def agent_with(self, extra_lines):
        wd = Workdir()
        self.addCleanup(wd.cleanup)
        agent = Agent(wd, self.emu)
        with open(agent.conf_path, "a") as f:
            f.write(extra_lines)
        return agent

    def line_of(self, agent, needle):
        with open(agent.conf_path) as f:
            for i, l in enumerate(f, 1):
                if needle in l:
                    return i
        raise AssertionError(needle)

    def test_unknown_key(self):
        a = self.agent_with("# comment\n; another\nmax_tll = 1h\n")
        self.refuse(a, a.conf_path + ":%d" % self.line_of(a, "max_tll"),
                    "max_tll", "unknown key")

    def test_duplicate_key(self):
        a = self.agent_with("max_ttl = 1h\nmax_ttl = 2h\n")
        self.refuse(a, ":%d:" % (self.line_of(a, "max_ttl = 2h")), "max_ttl",
                    "twice")

    def test_bad_duration(self):
        a = self.agent_with("fetch_ttl = 1x\n")
        self.refuse(a, ":%d:" % self.line_of(a, "fetch_ttl"), "fetch_ttl",
                    "duration")
        b = self.agent_with("max_ttl = 0\n")
        self.refuse(b, "max_ttl", "zero")

    def test_world_readable_credentials(self):
        a = self.agent_with("")
        os.chmod(a.cred_path, 0o644)
        line = self.refuse(a, a.cred_path, "0644", "chmod 600")
        self.assertNotIn(self.emu.admin_secret, line)

    def test_check_config(self):
        a = self.agent_with("")
        r = subprocess.run([AGENT_BIN, "--check-config", "-c", a.conf_path],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("configuration OK", r.stdout)
        b = self.agent_with("revoke = sometimes\n")
        r = subprocess.run([AGENT_BIN, "--check-config", "-c", b.conf_path],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 1)
        self.assertIn("revoke", r.stderr)

    def test_usage_error(self):
        r = subprocess.run([AGENT_BIN, "--bogus"], capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(r.returncode, 2)

    def test_sighup_keeps_the_old_config_when_the_new_is_invalid(self):
        a = self.agent_with("")
        a.start()
        try:
            with open(a.conf_path, "a") as f:
                f.write("bogus_key = 1\n")
            a.reload()
            wait_for(lambda: "keeping the previous configuration" in a.log(), 5,
                     what="reload refusal")
            self.assertIsNone(a.proc.poll())
            self.assertEqual(a.client("status").returncode, 0)
            a.write_config(max_ttl="2h")  # rewrites the file, valid again
            a.reload()
            wait_for(lambda: "reloaded the configuration" in a.log(), 5,
                     what="reload")
            self.assertIn("max_ttl=2h", a.log())
        finally:
            self.assertEqual(a.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
