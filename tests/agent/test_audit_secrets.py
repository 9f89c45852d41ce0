"""The audit trail has a line for every mint, attach and revoke, and no
secret appears in any log, error output or file under state_dir."""

import base64
import os
import subprocess
import unittest

from emulator import Emulator
from ramkey_fixture import (Agent, Users, Workdir, close_session_raw,
                            open_session_raw, wait_for)


def leaks(blob, secret):
    """Where does secret show up in blob (bytes)? [] if nowhere."""
    s = secret.encode()
    found = []
    forms = {"raw": s, "base64": base64.b64encode(s),
             "base64url": base64.urlsafe_b64encode(s),
             "hex": s.hex().encode(), "HEX": s.hex().upper().encode()}
    for name, form in forms.items():
        if form in blob:
            found.append(name)
    for i in range(len(s) - 11):
        if s[i:i + 12] in blob:
            found.append("substring@%d" % i)
            break
    return found


class AuditAndSecrets(unittest.TestCase):
    def test_audit_lines_and_no_secret_anywhere(self):
        with Workdir() as wd, Users("au") as users, \
                Emulator(https=True, auto_users=True) as emu:
            agent = Agent(wd, emu, revoke="delete")
            agent.start()
            outputs = []
            secrets = set()

            def run(*args, **kw):
                r = agent.client(*args, **kw)
                outputs.append(r.stdout + r.stderr)
                return r

            def collect():
                for user in emu.state()["users"].values():
                    for k in user["keys"]:
                        secrets.add(k["AccessKeySecret"])

            alice = users.add("alice")
            bob = users.add("bob")
            full = users.add("full")
            self.assertEqual(run("fetch", "--user", alice.pw_name).returncode, 0)
            self.assertEqual(run("fetch", user=bob).returncode, 0)
            self.assertEqual(run("credential-process", user=bob).returncode, 0)
            outputs.pop()  # credential-process prints the secret by design
            rep = open_session_raw(agent.socket, alice.pw_name, rhost="192.0.2.7",
                                   tty="ssh")
            self.assertTrue(rep["ok"], rep)
            outputs.append(str(rep))  # the sealed box, not the secret
            collect()
            run("status", "--json")
            run("set-status", "--key-id", rep["key"]["access_key_id"], "Inactive")
            run("set-status", "--key-id", rep["key"]["access_key_id"], "Active")
            close_session_raw(agent.socket, rep["session"])
            # A session still open when revoke ends its lease gets its own
            # detach line.
            rep2 = open_session_raw(agent.socket, alice.pw_name, rhost="192.0.2.8",
                                    tty="pts/9")
            self.assertTrue(rep2["ok"], rep2)
            outputs.append(str(rep2))
            for _ in range(2):
                emu.create_key(full.pw_name)
            collect()
            self.assertEqual(run("fetch", "--user", full.pw_name).returncode, 5)
            run("fetch", "--user", "root")
            run("revoke", "--user", alice.pw_name)
            run("revoke", "--user", bob.pw_name)
            wait_for(lambda: emu.keys_of(alice.pw_name) == [] and
                     emu.keys_of(bob.pw_name) == [], 10, what="revocations")

            # An agent with the wrong admin secret: RAM answers
            # SignatureDoesNotMatch and echoes its string-to-sign.
            with Workdir() as wd2:
                bad = Agent(wd2, emu, credentials=(emu.admin_key_id,
                                                   "wrong" + emu.admin_secret))
                bad.start()
                r = bad.client("fetch", "--user", alice.pw_name)
                outputs.append(r.stdout + r.stderr)
                self.assertEqual(r.returncode, 5)
                self.assertIn("SignatureDoesNotMatch", r.stderr)
                for needle in ("string to sign", "GET&", "POST&", "%2F"):
                    self.assertNotIn(needle, r.stderr)
                bad.stop()
                bad_log = bad.log()
            self.assertEqual(agent.stop(), 0)

            log = agent.log()
            for event in ("event=mint", "event=attach", "event=revoke",
                          "event=revoked", "event=detach", "event=deny"):
                self.assertIn(event, log)
            self.assertIn("rhost=192.0.2.7 tty=ssh", log)
            self.assertRegex(log, r"event=detach user=%s .*rhost=192\.0\.2\.8 "
                             r'tty=pts/9 reason="lease ended: ' % alice.pw_name)
            mints = [l for l in log.splitlines() if "event=mint " in l]
            self.assertEqual(len(mints), 2, mints)  # alice, bob (full refused)

            blobs = {"agent log": log.encode(), "bad agent log": bad_log.encode(),
                     "client output": "\n".join(outputs).encode()}
            for root, _, files in os.walk(agent.state_dir):
                for name in files:
                    with open(os.path.join(root, name), "rb") as f:
                        blobs[os.path.join(root, name)] = f.read()
            secrets.add(emu.admin_secret)
            self.assertGreaterEqual(len(secrets), 5)
            for secret in secrets:
                for where, blob in blobs.items():
                    self.assertEqual(leaks(blob, secret), [],
                                     "a secret leaked into %s" % where)


class StsSecretsAndTokens(unittest.TestCase):
    """STS credentials (fleet mode): no secret and no security token in
    the logs, the state store, status or error output."""

    def test_no_sts_secret_or_token_anywhere(self):
        with Workdir() as wd, Users("at") as users, \
                Emulator(https=True, auto_users=True) as emu:
            alice = users.add("alice")
            bob = users.add("bob")
            for pw in (alice, bob):
                emu.create_role("ramkey-" + pw.pw_name, trusted=["account"])
            agent = Agent(wd, emu, credential="sts",
                          sts_endpoint=emu.endpoint,
                          role_arn="acs:ram::%s:role/ramkey-%%u" %
                          emu.account_id)
            agent.start()
            outputs = []

            def run(*args, **kw):
                r = agent.client(*args, **kw)
                outputs.append(r.stdout + r.stderr)
                return r

            self.assertEqual(run("fetch", "--user", alice.pw_name).returncode, 0)
            self.assertEqual(run("fetch", user=bob).returncode, 0)
            rep = open_session_raw(agent.socket, alice.pw_name,
                                   rhost="192.0.2.9", tty="pts/1")
            self.assertTrue(rep["ok"], rep)
            run("status", "--json")
            run("status")
            r = run("set-status", "--key-id", rep["key"]["access_key_id"],
                    "Inactive")
            self.assertEqual(r.returncode, 2)
            r = run("fetch", "--user", alice.pw_name, "--format", "ini",
                    "--secret-file", os.path.join(wd.path, "x.ini"))
            self.assertEqual(r.returncode, 2)
            close_session_raw(agent.socket, rep["session"])
            run("revoke", "--user", alice.pw_name)
            run("revoke", "--user", bob.pw_name)
            self.assertEqual(agent.stop(), 0)
            secrets = set()
            for sess in emu.sessions():
                for field in ("AccessKeySecret", "SecurityToken", "secret",
                              "token", "security_token"):
                    if sess.get(field):
                        secrets.add(sess[field])
            self.assertGreaterEqual(len(secrets), 4, emu.sessions())
            secrets.add(emu.admin_secret)
            blobs = {"agent log": agent.log().encode(),
                     "client output": "\n".join(outputs).encode()}
            for root, _, files in os.walk(agent.state_dir):
                for name in files:
                    with open(os.path.join(root, name), "rb") as f:
                        blobs[os.path.join(root, name)] = f.read()
            for secret in secrets:
                for where, blob in blobs.items():
                    self.assertEqual(leaks(blob, secret), [],
                                     "an STS secret or token leaked into %s"
                                     % where)


if __name__ == "__main__":
    unittest.main(verbosity=2)
