"""scripts/demo from a fresh clone prints the flow and exits 0; afterwards
no ramkey process runs and the demo account is gone."""

import os
import pwd
import shutil
import subprocess
import tempfile
import unittest

from ramkey_fixture import SOURCE_DIR, require_root


class Demo(unittest.TestCase):
    def test_demo_from_a_fresh_clone(self):
        require_root()
        if not os.path.exists(os.path.join(SOURCE_DIR, ".git")):
            self.fail("the source tree is not a git checkout; cannot clone it")
        tmp = tempfile.mkdtemp(prefix="ramkey-demo-clone-")
        try:
            clone = os.path.join(tmp, "ramkey")
            subprocess.run(["git", "clone", "-q", SOURCE_DIR, clone], check=True)
            r = subprocess.run([os.path.join(clone, "scripts", "demo")],
                               capture_output=True, text=True, timeout=600,
                               cwd=clone)
            print(r.stdout[-3000:])
            self.assertEqual(r.returncode, 0, r.stderr[-3000:])
            for step in ("RAM emulator listening", "demo account",
                         "ramkey-agent started", "fetch a key", "mode 0600",
                         "the emulator's view of the key", "revoke it",
                         "the emulator no longer has", "agent stopped (exit 0)"):
                self.assertIn(step, r.stdout)
            ps = subprocess.run(["pgrep", "-af", clone], capture_output=True,
                                text=True)
            self.assertEqual(ps.stdout.strip(), "", "processes left running")
            with self.assertRaises(KeyError):
                pwd.getpwnam("rkdemodemo")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
