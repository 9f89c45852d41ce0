"""agent.sweep: ramkey-agent --sweep [--apply] against the emulator.

RAM users dedicated to ramkey (by sweep_prefix, or by sweep_group) and
others hold keys of several ages; one dedicated user's young key is
leased by a live agent. The dry run lists exactly the keys of dedicated
users older than sweep_min_age (max_ttl + create_timeout + 10m unless
set), --apply deletes exactly those (and logs each), a second run finds
nothing; throttling is ridden out; a sweep_min_age below the bound, or
neither sweep_group nor sweep_prefix, is refused with exit 1; a RAM that
refuses is exit 5.
"""

import json
import os
import re
import subprocess
import unittest

from emulator import Emulator
from ramkey_fixture import (AGENT_BIN, SOURCE_DIR, Agent, Users, Workdir,
                            read_json_secret_file)

HOUR = 3600
DAY = 24 * HOUR
PREFIX = "rksw-"
LINE = re.compile(r"^(would delete|deleted|delete failed): ram_user=(\S+) "
                  r"key=(\S+) status=(\S+) created=(\S+) age=(\S+)")


def mask(key_id):
    return key_id[:4] + "****" + key_id[-4:]


def readme_policies(account_id):
    """The sweep's RAM policy as the README gives it (by prefix), and the
    variant by group it describes."""
    with open(os.path.join(SOURCE_DIR, "README.md")) as f:
        text = f.read()
    section = text[text.index("\n## Fleet sweep\n"):]
    section = section[:section.index("\n## ", 1)].replace("ACCOUNT_ID", account_id)
    by_prefix = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    snippet = re.search(r'`(\{"Effect": "Allow", "Action": "ram:ListUsersForGroup".*?)`',
                        section, re.S)
    by_group = json.loads(json.dumps(by_prefix))
    by_group["Statement"][1] = json.loads(snippet.group(1))
    return by_prefix, by_group


class Sweep(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.wd = Workdir()
        cls.users = Users("sw")
        cls.emu = Emulator(https=True, auto_users=True)
        # A live agent leasing a key of a dedicated RAM user.
        cls.live_pw = cls.users.add("live")
        cls.agent = Agent(cls.wd, cls.emu, ram_user=PREFIX + "%u")
        cls.agent.start()
        path = os.path.join(cls.live_pw.pw_dir, "k.json")
        r = cls.agent.client("fetch", "--user", cls.live_pw.pw_name,
                             "--secret-file", path)
        assert r.returncode == 0, r.stderr
        cls.live_key = read_json_secret_file(path)[0]
        cls.live_ram_user = PREFIX + cls.live_pw.pw_name

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()
        cls.emu.stop()
        cls.users.cleanup()
        cls.wd.cleanup()

    def key(self, user, age):
        self.emu.create_user(user)
        return self.emu.create_key(user, age=age)["AccessKeyId"]

    def sweep(self, *args, credentials=None, **conf):
        """Run ramkey-agent --sweep with its own agent.conf (the live
        agent's socket and state are never touched)."""
        d = self.wd.join("sweep-%d" % len(os.listdir(self.wd.path)))
        os.makedirs(d)
        base = {"endpoint": self.emu.endpoint, "ca_file": self.emu.ca_file,
                "credentials_file": credentials or self.agent.cred_path,
                "socket": os.path.join(d, "nowhere.sock"),
                "state_dir": os.path.join(d, "nostate")}
        base.update(conf)
        path = os.path.join(d, "agent.conf")
        with open(path, "w") as f:
            for k, v in base.items():
                f.write("%s = %s\n" % (k, v))
        os.chmod(path, 0o644)
        env = {"PATH": "/usr/bin:/bin"}
        r = subprocess.run([AGENT_BIN, "-c", path, "--sweep"] + list(args),
                           capture_output=True, text=True, timeout=120, env=env)
        self.assertFalse(os.path.exists(base["state_dir"]), "the sweep made a store")
        return r

    def listed(self, r, what):
        return {(m.group(2), m.group(3)) for m in map(LINE.match, r.stdout.splitlines())
                if m and m.group(1) == what}

    def test_prefix_dry_run_apply_then_nothing(self):
        old = {
            (PREFIX + "a", self.key(PREFIX + "a", 2 * DAY)),
            (PREFIX + "b", self.key(PREFIX + "b", 13 * HOUR)),
            (PREFIX + "b", self.key(PREFIX + "b", 30 * DAY)),
        }
        young = {
            (PREFIX + "a", self.key(PREFIX + "a", 60)),
            # Just under the bound (12h + 5m + 10m): a live lease's key may
            # be this old.
            (PREFIX + "c", self.key(PREFIX + "c", 12 * HOUR + 14 * 60)),
        }
        other = {("other-d", self.key("other-d", 3 * DAY)),
                 ("xrksw-e", self.key("xrksw-e", 3 * DAY))}
        want = {(u, mask(k)) for u, k in old}

        r = self.sweep(sweep_prefix=PREFIX)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("(dry run)", r.stdout)
        self.assertIn("keys older than 12h15m", r.stdout)
        self.assertEqual(self.listed(r, "would delete"), want, r.stdout)
        self.assertEqual(self.listed(r, "deleted"), set())
        for u, k in old | young | other:
            self.assertIsNotNone(self.emu.key(k), "the dry run deleted %s" % k)
        self.assertNotIn(self.live_key, r.stdout + r.stderr)
        for u, k in old:
            self.assertNotIn(k, r.stdout + r.stderr, "unmasked key id")

        # Throttled every other call: the client backs off and goes on.
        throttled = len(self.emu.log(result="Throttling.User"))
        self.emu.set_faults(throttle_every=2)
        try:
            r = self.sweep("--apply", sweep_prefix=PREFIX)
        finally:
            self.emu.clear_faults()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertGreater(len(self.emu.log(result="Throttling.User")), throttled)
        self.assertEqual(self.listed(r, "deleted"), want, r.stdout)
        for u, k in old:
            self.assertIsNone(self.emu.key(k), "not deleted: %s" % k)
        for u, k in young | other:
            self.assertIsNotNone(self.emu.key(k), "wrongly deleted: %s of %s" % (k, u))
        self.assertIsNotNone(self.emu.key(self.live_key), "the live lease's key")
        # Every deletion logged, as an audit line.
        audits = [ln for ln in r.stderr.splitlines() if "event=sweep-delete " in ln]
        self.assertEqual(len(audits), len(old), r.stderr)
        self.assertTrue(all("ram_user=" + PREFIX in ln for ln in audits))
        deletes = self.emu.log(action="DeleteAccessKey", result="OK")
        self.assertEqual({e["key_id"] for e in deletes} & {k for _, k in old},
                         {k for _, k in old})

        r = self.sweep("--apply", sweep_prefix=PREFIX)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("nothing to delete", r.stdout)
        self.assertEqual(self.listed(r, "deleted"), set())
        # The live agent's lease is untouched and still usable.
        st = self.agent.status(self.live_pw.pw_name)
        self.assertEqual(len(st["leases"]), 1)
        self.assertIsNotNone(self.emu.key(self.live_key))

    def test_group_is_the_set_of_dedicated_users(self):
        self.emu.create_group("rksw-fleet")
        member = self.key("gm-member", 2 * DAY)
        self.emu.add_user_to_group("rksw-fleet", "gm-member")
        outsider = self.key("gm-outsider", 2 * DAY)
        r = self.sweep(sweep_group="rksw-fleet")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("members of RAM group rksw-fleet", r.stdout)
        self.assertEqual(self.listed(r, "would delete"), {("gm-member", mask(member))})
        # Both: members with the prefix only.
        r = self.sweep(sweep_group="rksw-fleet", sweep_prefix="nomatch-")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.listed(r, "would delete"), set())
        r = self.sweep("--apply", sweep_group="rksw-fleet")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIsNone(self.emu.key(member))
        self.assertIsNotNone(self.emu.key(outsider))
        # A group RAM does not know: a RAM failure.
        r = self.sweep(sweep_group="rksw-nosuch")
        self.assertEqual(r.returncode, 5, r.stdout + r.stderr)
        self.assertIn("EntityNotExist.Group", r.stderr)

    def test_every_page_of_users(self):
        # ListUsers answers 100 users a page: the old key is on page two.
        for i in range(130):
            self.emu.create_user("rkpg-%03d" % i)
        old = self.key("rkpg-129", 2 * DAY)
        r = self.sweep(sweep_prefix="rkpg-")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.listed(r, "would delete"), {("rkpg-129", mask(old))})
        self.assertIn("of 130 RAM user(s)", r.stdout)
        self.assertGreaterEqual(len(self.emu.log(action="ListUsers")), 2)

    def test_min_age_below_the_bound_is_refused(self):
        r = self.sweep(sweep_prefix=PREFIX, sweep_min_age="1h")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("sweep_min_age", r.stderr)
        self.assertIn("12h15m", r.stderr)
        self.assertEqual(r.stdout, "")
        # The bound follows max_ttl and create_timeout.
        r = self.sweep(sweep_prefix=PREFIX, max_ttl="2h", create_timeout="1m",
                       sweep_min_age="2h10m")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("2h11m", r.stderr)
        r = self.sweep(sweep_prefix=PREFIX, max_ttl="2h", create_timeout="1m",
                       sweep_min_age="3d")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("keys older than 3d", r.stdout)
        # --check-config says the same.
        d = self.wd.join("cc")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "agent.conf")
        with open(path, "w") as f:
            f.write("sweep_prefix = %s\nsweep_min_age = 12h\ncredentials_file = %s\n"
                    % (PREFIX, self.agent.cred_path))
        os.chmod(path, 0o644)
        r = subprocess.run([AGENT_BIN, "-c", path, "--check-config"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("sweep_min_age", r.stderr)

    def test_needs_a_set_of_dedicated_users(self):
        r = self.sweep()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("sweep_group or sweep_prefix", r.stderr)
        r = subprocess.run([AGENT_BIN, "--apply"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_the_readme_policy_is_enough(self):
        by_prefix, by_group = readme_policies(self.emu.account_id)
        sweeper = self.emu.create_key("sweeper")
        cred = self.wd.join("sweeper.cred")
        with open(cred, "w") as f:
            f.write("[default]\ntype = access_key\naccess_key_id = %s\n"
                    "access_key_secret = %s\n" % (sweeper["AccessKeyId"],
                                                  sweeper["AccessKeySecret"]))
        os.chmod(cred, 0o600)
        self.emu.create_group("ramkey-users")
        old = self.key("ramkey-pol", 2 * DAY)
        self.emu.add_user_to_group("ramkey-users", "ramkey-pol")
        old2 = self.key("ramkey-pol2", 2 * DAY)
        self.emu.add_user_to_group("ramkey-users", "ramkey-pol2")
        others = [self.key("pol-other", 2 * DAY)]
        try:
            self.emu.set_permissions("user/sweeper", policy=by_group)
            r = self.sweep("--apply", credentials=cred, sweep_group="ramkey-users")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIsNone(self.emu.key(old))
            self.assertIsNone(self.emu.key(old2))
            old3 = self.key("ramkey-pol3", 2 * DAY)
            self.emu.set_permissions("user/sweeper", policy=by_prefix)
            r = self.sweep("--apply", credentials=cred, sweep_prefix="ramkey-")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIsNone(self.emu.key(old3))
            # The policy is what stops it elsewhere: a wider prefix is
            # refused by RAM, and nothing else is deleted.
            r = self.sweep("--apply", credentials=cred, sweep_prefix="pol-")
            self.assertEqual(r.returncode, 5, r.stdout + r.stderr)
            self.assertIn("NoPermission", r.stderr)
            for k in others:
                self.assertIsNotNone(self.emu.key(k))
        finally:
            self.emu.clear_permissions("user/sweeper")

    def test_ram_refusing_is_exit_5(self):
        self.key(PREFIX + "f", 2 * DAY)
        self.emu.set_permissions("account", allow=["ram:ListAccessKeys"])
        try:
            r = self.sweep(sweep_prefix=PREFIX)
        finally:
            self.emu.clear_permissions("account")
        self.assertEqual(r.returncode, 5, r.stdout + r.stderr)
        self.assertIn("NoPermission", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
