"""fetch as root for a test user, in each of the four formats, each read by
a real consumer (Alibaba Cloud's Node.js credentials provider, sh), plus
credential-process as an External-mode profile command."""

import json
import os
import shutil
import stat
import subprocess
import unittest

from emulator import Emulator
from ramkey_fixture import (CLIENT_BIN, SOURCE_DIR, Agent, Users, Workdir,
                            as_user_cmd, key_works, read_json_secret_file)

INTEROP = os.path.join(SOURCE_DIR, "tests", "interop")
READER = os.path.join(INTEROP, "read_credentials.js")


def node_credentials(pw, env):
    """Resolve credentials as pw with the official provider's default chain."""
    envs = ["%s=%s" % kv for kv in env.items()]
    r = subprocess.run(as_user_cmd(pw, envs + ["node", READER]),
                       capture_output=True, text=True, timeout=60,
                       cwd=INTEROP)
    if r.returncode != 0:
        raise AssertionError("node provider failed: %s" % r.stderr)
    return json.loads(r.stdout)


class FetchFormats(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isdir(os.path.join(INTEROP, "node_modules")):
            raise AssertionError("tests/interop/node_modules is missing: run "
                                 "`npm ci` there (scripts/test does)")
        cls.wd = Workdir()
        cls.users = Users("ff")
        cls.emu = Emulator(https=True, auto_users=True, shell_secrets=True)
        cls.agent = Agent(cls.wd, cls.emu)
        cls.agent.start()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()
        cls.emu.stop()
        cls.users.cleanup()
        cls.wd.cleanup()

    def fetch(self, pw, fmt, path):
        r = self.agent.client("fetch", "--user", pw.pw_name, "--format", fmt,
                              "--secret-file", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(path, r.stdout)
        st = os.lstat(path)
        self.assertTrue(stat.S_ISREG(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(st.st_uid, pw.pw_uid)
        self.assertEqual(st.st_gid, pw.pw_gid)
        return r

    def emulator_secret(self, user, key_id):
        keys = {k["AccessKeyId"]: k for k in self.emu.keys_of(user)}
        self.assertIn(key_id, keys)
        self.assertEqual(keys[key_id]["Status"], "Active")
        return keys[key_id]["AccessKeySecret"]

    def test_json_has_the_terraform_field_names(self):
        pw = self.users.add("json")
        path = os.path.join(pw.pw_dir, "key.json")
        self.fetch(pw, "json", path)
        kid, secret, doc = read_json_secret_file(path)
        self.assertEqual(sorted(doc), ["AccessKeyId", "AccessKeySecret",
                                       "CreateDate", "Status"])
        self.assertEqual(doc["Status"], "Active")
        self.assertEqual(secret, self.emulator_secret(pw.pw_name, kid))
        self.assertTrue(key_works(self.emu, kid, secret))

    def test_ini_read_by_credentials_provider_via_env(self):
        pw = self.users.add("ini")
        path = os.path.join(pw.pw_dir, "credentials.ini")
        self.fetch(pw, "ini", path)
        got = node_credentials(pw, {"ALIBABA_CLOUD_CREDENTIALS_FILE": path,
                                    "ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true"})
        secret = self.emulator_secret(pw.pw_name, got["access_key_id"])
        self.assertEqual(got["access_key_secret"], secret)
        self.assertTrue(key_works(self.emu, got["access_key_id"], secret))

    def test_cli_read_by_credentials_provider_from_aliyun_config(self):
        pw = self.users.add("cli")
        path = os.path.join(pw.pw_dir, ".aliyun", "config.json")
        self.fetch(pw, "cli", path)
        with open(path) as f:
            doc = json.load(f)
        self.assertEqual(doc["current"], "default")
        self.assertEqual(doc["profiles"][0]["mode"], "AK")
        self.assertEqual(doc["profiles"][0]["region_id"], "cn-hangzhou")
        got = node_credentials(pw, {})
        self.assertIn("cli", got["provider"])
        secret = self.emulator_secret(pw.pw_name, got["access_key_id"])
        self.assertEqual(got["access_key_secret"], secret)
        self.assertTrue(key_works(self.emu, got["access_key_id"], secret))

    def test_credential_process_as_external_profile_command(self):
        pw = self.users.add("ext")
        cfg_dir = os.path.join(pw.pw_dir, ".aliyun")
        os.makedirs(cfg_dir, mode=0o700)
        # The provider splits process_command itself (no shell).
        profile = {"current": "ramkey", "profiles": [{
            "name": "ramkey", "mode": "External",
            "process_command": "env RAMKEY_SOCKET=%s %s credential-process" %
                               (self.agent.socket, CLIENT_BIN),
            "region_id": "cn-hangzhou"}]}
        with open(os.path.join(cfg_dir, "config.json"), "w") as f:
            json.dump(profile, f)
        shutil.chown(cfg_dir, pw.pw_uid, pw.pw_gid)
        shutil.chown(os.path.join(cfg_dir, "config.json"), pw.pw_uid, pw.pw_gid)
        got = node_credentials(pw, {})
        secret = self.emulator_secret(pw.pw_name, got["access_key_id"])
        self.assertEqual(got["access_key_secret"], secret)
        self.assertTrue(key_works(self.emu, got["access_key_id"], secret))

    def test_credential_process_output_and_empty_stdout_on_failure(self):
        pw = self.users.add("cp")
        r = self.agent.client("credential-process", user=pw)
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        self.assertEqual(sorted(doc), ["access_key_id", "access_key_secret", "mode"])
        self.assertEqual(doc["mode"], "AK")
        self.assertEqual(doc["access_key_secret"],
                         self.emulator_secret(pw.pw_name, doc["access_key_id"]))
        bad = self.agent.client("credential-process", "--user", "nosuchuserxyz")
        self.assertEqual(bad.returncode, 4)
        self.assertEqual(bad.stdout, "")
        self.assertEqual(len(bad.stderr.strip().splitlines()), 1)

    def test_env_sourced_by_sh_keeps_shell_special_characters(self):
        pw = self.users.add("env")
        path = os.path.join(pw.pw_dir, "key.env")
        self.fetch(pw, "env", path)
        script = ('. "$1" && printf "%s\\n%s" "$ALIBABA_CLOUD_ACCESS_KEY_ID" '
                  '"$ALIBABA_CLOUD_ACCESS_KEY_SECRET"')
        r = subprocess.run(as_user_cmd(pw, ["sh", "-c", script, "sh", path]),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        kid, secret = r.stdout.split("\n", 1)
        want = self.emulator_secret(pw.pw_name, kid)
        for ch in "'\"$\\ ":
            self.assertIn(ch, want)  # the emulator mints shell-special secrets
        self.assertEqual(secret, want)
        self.assertTrue(key_works(self.emu, kid, secret))

    def test_default_path_is_home_alibabacloud_without_runtime_dir(self):
        pw = self.users.add("dflt")
        r = self.agent.client("fetch", "--user", pw.pw_name)
        self.assertEqual(r.returncode, 0, r.stderr)
        path = os.path.join(pw.pw_dir, ".alibabacloud", "ramkey.json")
        self.assertIn(path, r.stdout)
        st = os.stat(os.path.dirname(path))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o700)
        self.assertEqual(st.st_uid, pw.pw_uid)
        kid, secret, _ = read_json_secret_file(path)
        self.assertNotIn(secret, r.stdout + r.stderr)
        self.assertTrue(key_works(self.emu, kid, secret))

    def test_default_path_prefers_run_user(self):
        pw = self.users.add("run")
        rundir = "/run/user/%d" % pw.pw_uid
        os.makedirs(rundir, mode=0o700, exist_ok=True)
        os.chown(rundir, pw.pw_uid, pw.pw_gid)
        try:
            r = self.agent.client("fetch", "--user", pw.pw_name)
            self.assertEqual(r.returncode, 0, r.stderr)
            path = rundir + "/ramkey/credentials.json"
            self.assertIn(path, r.stdout)
            self.assertEqual(os.stat(path).st_uid, pw.pw_uid)
        finally:
            shutil.rmtree(rundir, ignore_errors=True)

    def test_bad_format_and_ttl_are_usage_errors(self):
        pw = self.users.add("bad")
        for args in (["--format", "xml"], ["--ttl", "0"], ["--ttl", "abc"],
                     ["--ttl", "13h"], ["--format", "ini", "--pgp-key", "keybase:x"]):
            r = self.agent.client("fetch", "--user", pw.pw_name, *args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
