"""A full state_dir (rule R6): state_dir is a 2 MiB tmpfs, filled until
the store's next write fails with ENOSPC. Then nothing is minted that
cannot be recorded: `fetch` fails with exit 7 and one line, no
CreateAccessKey reaches RAM (ListAccessKeys may), `status` exits 7; keys of
earlier leases are still revoked at RAM when their sessions close. Once
space is freed the store catches up: `status` exits 0 again within ~10 s, a
new fetch works, and what the store holds is what the agent knows (checked
by restarting the agent from it).

    python3 test_store_full.py
"""

import os
import subprocess
import time
import unittest

from emulator import Emulator
from ramkey_fixture import Agent, Users, Workdir, require_root, wait_for
from reclib import PamConf, PamSession, log, need_driver, read_key_file

TMPFS_SIZE = "2m"


def fill(path):
    """Write zeros until ENOSPC, in smaller and smaller pieces, so that not
    even a page is left. Returns the bytes written."""
    n = 0
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    n += f.write(b"\0" * chunk)
            except OSError as e:
                if e.errno != 28:
                    raise
    return n


class StoreFull(unittest.TestCase):
    def setUp(self):
        require_root()
        need_driver()
        self.wd = Workdir()
        self.users = Users("sf")
        self.emu = Emulator(https=True, auto_users=True)
        self.agent = Agent(self.wd, self.emu)
        os.makedirs(self.agent.state_dir, mode=0o700)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % TMPFS_SIZE,
                        "tmpfs", self.agent.state_dir], check=True)
        self.mounted = True
        self.sessions = []

    def tearDown(self):
        for s in self.sessions:
            s.kill()
        self.agent.kill()
        if self.mounted:
            subprocess.run(["umount", self.agent.state_dir], check=False)
        self.emu.stop()
        self.users.cleanup()
        self.wd.cleanup()

    def open(self, pw):
        s = PamSession(self.conf, self.svc, pw.pw_name,
                       errpath=self.wd.join("drv-%s.err" % pw.pw_name))
        self.sessions.append(s)
        rc, _ = s.open()
        self.assertEqual(rc, "PAM_SUCCESS", s.stderr())
        kid, _ = read_key_file(os.path.join(pw.pw_dir, ".alibabacloud", "ramkey.json"))
        return s, kid

    def test_full_state_dir(self):
        a, b, c = self.users.add("a"), self.users.add("b"), self.users.add("c")
        self.agent.start()
        self.conf = PamConf(self.wd, self.agent.socket)
        self.svc = self.conf.service("rk-full", timeout=5)
        sa, kid_a = self.open(a)
        sb, kid_b = self.open(b)
        self.assertEqual(self.agent.client("status").returncode, 0)

        filler = os.path.join(self.agent.state_dir, "filler")
        n = fill(filler)
        log("state_dir filled with %d bytes" % n)
        creates = self.emu.counters()["calls"].get("CreateAccessKey", 0)

        # The next write of the store fails: the fetch that needs it is
        # refused with exit 7, one line, and nothing is minted.
        r = self.agent.client("fetch", "--user", c.pw_name)
        log("fetch with the disk full: exit %d: %s" % (r.returncode, r.stderr.strip()))
        self.assertEqual(r.returncode, 7, r.stdout + r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("store", r.stderr)
        self.assertRegex(self.agent.log(), r"state store (write|commit) failed: .*full")
        r = self.agent.client("fetch", "--user", c.pw_name)
        self.assertEqual(r.returncode, 7, r.stdout + r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        r = self.agent.client("status")
        self.assertEqual(r.returncode, 7, r.stdout + r.stderr)
        self.assertEqual(self.emu.counters()["calls"].get("CreateAccessKey", 0), creates,
                         "a CreateAccessKey reached RAM while the store could not record it")
        self.assertEqual(self.emu.keys_of(c.pw_name), [])

        # Revocation goes on: the earlier lease's key goes at its close.
        rc, _ = sa.close()
        self.assertEqual(rc, "PAM_SUCCESS", sa.stderr())
        sa.quit()
        wait_for(lambda: self.emu.key(kid_a) is None, 10,
                 what="the key of a closed session to be revoked with the disk full")
        self.assertEqual(self.emu.key(kid_b)["Status"], "Active")
        self.assertEqual(self.agent.client("status").returncode, 7)

        # Space comes back: the store catches up.
        os.unlink(filler)
        t0 = time.monotonic()
        wait_for(lambda: self.agent.client("status").returncode == 0, 12, interval=0.5,
                 what="status to exit 0 once the disk has space again")
        log("store writable again after %.1f s" % (time.monotonic() - t0))
        r = self.agent.client("fetch", "--user", c.pw_name)
        self.assertEqual(r.returncode, 0, r.stderr)
        (kc,) = self.emu.keys_of(c.pw_name)
        self.assertGreater(self.emu.counters()["calls"].get("CreateAccessKey", 0), creates)

        # What the store holds now is what the agent knew: b's session
        # lease and c's fetch lease, nothing of a.
        self.agent.kill()
        self.agent.start()
        doc = self.agent.status()
        got = sorted((l["user"], l["sessions"], l["pending_revocation"]) for l in doc["leases"])
        self.assertEqual(got, [(b.pw_name, 1, False), (c.pw_name, 0, False)], doc)
        self.assertEqual(self.emu.key(kid_b)["Status"], "Active")
        self.assertEqual(self.emu.key(kc["AccessKeyId"])["Status"], "Active")

        rc, _ = sb.close()
        self.assertEqual(rc, "PAM_SUCCESS")
        sb.quit()
        wait_for(lambda: self.emu.key(kid_b) is None, 10, what="b's key to be revoked")
        self.assertEqual(self.agent.client("revoke", "--user", c.pw_name).returncode, 0)
        wait_for(lambda: self.emu.keys_of(c.pw_name) == [], 10, what="c's key to be revoked")
        self.agent.stop()
        subprocess.run(["umount", self.agent.state_dir], check=True)
        self.mounted = False


if __name__ == "__main__":
    unittest.main(verbosity=2)
