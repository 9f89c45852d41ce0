#!/usr/bin/env python3
"""source.no_secrets: no secret or security token of the agent's own
credential (nor any minted secret) in the agent's log, its state
directory, what `status` and `status --json` print, the errors a failing
fetch prints, --check-config's output, or the agent's environment once it
runs (root only, else 77). Each source is exercised with renewals and
failures, since those are where reasons and key ids get written:

  - the instance role (metadata service on loopback), renewed every few
    seconds, then unreachable until its credential runs out;
  - a chained role (ram_role_arn), renewed; and a static key that may not
    assume the role;
  - an STS credential in the environment (ALIBABA_CLOUD_SECURITY_TOKEN).
"""

import base64
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from emulator import Emulator  # noqa: E402
from ramkey_fixture import (AGENT_BIN, Agent, Users, Workdir, require_root,  # noqa: E402
                            wait_for)
import subprocess  # noqa: E402

ROLE = "ramkey-agent"


def leaks(blob, secret):
    """Where does secret show up in blob (bytes)? [] if nowhere."""
    s = secret.encode()
    found = []
    for name, form in {"raw": s, "base64": base64.b64encode(s),
                       "base64url": base64.urlsafe_b64encode(s),
                       "hex": s.hex().encode(), "HEX": s.hex().upper().encode()}.items():
        if form in blob:
            found.append(name)
    for i in range(len(s) - 11):
        if s[i:i + 12] in blob:
            found.append("substring@%d" % i)
            break
    return found


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


class Capture:
    def __init__(self):
        self.blobs = {}
        self.n = 0

    def add(self, where, text):
        self.n += 1
        self.blobs["%s #%d" % (where, self.n)] = text.encode() if isinstance(text, str) \
            else text

    def run(self, agent, *args):
        r = agent.client(*args)
        self.add("client %s" % " ".join(args[:1]), r.stdout + r.stderr)
        return r

    def agent_files(self, agent):
        self.add("log of %s" % agent.dir, agent.log())
        for root, _, files in os.walk(agent.state_dir):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    self.add(os.path.join(root, name), f.read())

    def environ(self, agent):
        with open("/proc/%d/environ" % agent.pid, "rb") as f:
            self.add("environment of pid %d" % agent.pid, f.read())

    def check_config(self, agent, env=None):
        e = dict(os.environ)
        e.update(env or {})
        r = subprocess.run([AGENT_BIN, "--check-config", "-c", agent.conf_path],
                           capture_output=True, text=True, env=e, timeout=30)
        self.add("--check-config", r.stdout + r.stderr)
        return r


def exercise(cap, agent, pw):
    home = os.path.join(pw.pw_dir, "ramkey.json")
    r = cap.run(agent, "fetch", "--user", pw.pw_name, "--secret-file", home)
    cap.run(agent, "status")
    cap.run(agent, "status", "--json")
    if r.returncode == 0:
        cap.run(agent, "revoke", "--user", pw.pw_name)
    return r


def main():
    require_root()
    cap = Capture()
    with Workdir() as wd, Users("ns") as users, Emulator(imds=True) as emu:
        alice = users.add("alice")

        # The instance role: renewed, then gone until it runs out.
        emu.set_imds(require_token=True, rotate_every=3, lifetime=9)
        emu.imds_rotate()
        imds = Agent(wd, emu, credentials=False, credential_source="ecs_ram_role",
                     metadata_url=emu.imds_endpoint, imds_unrestricted_ok="yes",
                     mint_rate="1000/h")
        cap.check_config(imds)
        imds.start()
        wait_for(lambda: imds.client("status").returncode == 0, 10, what="a credential")
        cap.environ(imds)
        for _ in range(3):
            check(exercise(cap, imds, alice).returncode == 0, "fetch on the role")
            time.sleep(2)
        emu.imds_stop("refuse")
        wait_for(lambda: imds.client("status").returncode == 7, 15,
                 what="the role's credential to run out")
        check(exercise(cap, imds, alice).returncode == 7, "fetch without a credential")
        emu.imds_start()
        wait_for(lambda: exercise(cap, imds, alice).returncode == 0, 15, interval=1,
                 what="the role's return")
        check(imds.stop() == 0, "the agent did not stop cleanly")
        cap.agent_files(imds)

        # A chained role, and a key that may not assume it.
        emu.create_user("agentkey")
        key = emu.create_key("agentkey")
        arn = emu.role_arn(ROLE)
        emu.create_role(ROLE, trusted=["user/agentkey"], sts_lifetime=12)
        emu.set_permissions("user/agentkey",
                            allow=[{"action": "sts:AssumeRole", "resource": arn}])
        emu.create_user("otherkey")
        other = emu.create_key("otherkey")
        emu.set_permissions("user/otherkey", allow=["ram:GetUser"])
        for k, ok in ((key, True), (other, False)):
            with Workdir() as wd2:
                a = Agent(wd2, emu, sts_endpoint=emu.endpoint, mint_rate="1000/h",
                          credentials="[default]\ntype = ram_role_arn\n"
                          "access_key_id = %s\naccess_key_secret = %s\nrole_arn = %s\n"
                          % (k["AccessKeyId"], k["AccessKeySecret"], arn))
                cap.check_config(a)
                a.start()
                if ok:
                    wait_for(lambda: a.client("status").returncode == 0, 10,
                             what="the role's credential")
                    exercise(cap, a, alice)
                    time.sleep(5)      # a renewal
                    check(exercise(cap, a, alice).returncode == 0, "fetch after renewal")
                else:
                    wait_for(lambda: "NoPermission" in a.log(), 10, what="a refusal")
                    check(exercise(cap, a, alice).returncode == 7, "fetch without a role")
                cap.environ(a)
                check(a.stop() == 0, "the agent did not stop cleanly")
                cap.agent_files(a)

        # An STS credential from the environment.
        st, body = emu.assume_role(ROLE, "env-session", key_id=key["AccessKeyId"],
                                   secret=key["AccessKeySecret"])
        check(st == 200, "AssumeRole for the environment: %s" % body)
        cr = body["Credentials"]
        env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": cr["AccessKeyId"],
               "ALIBABA_CLOUD_ACCESS_KEY_SECRET": cr["AccessKeySecret"],
               "ALIBABA_CLOUD_SECURITY_TOKEN": cr["SecurityToken"],
               "ALIBABA_CLOUD_SECURITY_TOKEN_EXPIRATION": cr["Expiration"]}
        with Workdir() as wd3:
            a = Agent(wd3, emu, credentials=False, credential_source="env",
                      mint_rate="1000/h")
            cap.check_config(a, env)
            a.start(env=env)
            cap.environ(a)
            check(exercise(cap, a, alice).returncode == 0, "fetch with the env token")
            check("cannot renew" in a.log() and cr["Expiration"] in a.log(),
                  "the log does not say the token cannot be renewed and when it "
                  "expires:\n" + a.log())
            check(a.stop() == 0, "the agent did not stop cleanly")
            cap.agent_files(a)

        secrets = {emu.admin_secret, key["AccessKeySecret"], other["AccessKeySecret"]}
        tokens = set()
        for s in emu.sessions():
            secrets.add(s["AccessKeySecret"])
            tokens.add(s["SecurityToken"])
        for u in emu.state()["users"].values():
            for k in u["keys"]:
                secrets.add(k["AccessKeySecret"])
        for e in emu.state().get("deleted_keys", []):
            if isinstance(e, dict) and e.get("AccessKeySecret"):
                secrets.add(e["AccessKeySecret"])
        sessions = [s for s in emu.sessions() if s["role"] in (ROLE, "ramkey-instance")]
        check(len(sessions) >= 6, "few agent credentials handed out: %d" % len(sessions))
        bad = []
        for value in secrets | tokens:
            for where, blob in cap.blobs.items():
                found = leaks(blob, value)
                if found:
                    bad.append("%s...: %s in %s" % (value[:4], found, where))
        check(not bad, "secrets leaked:\n  " + "\n  ".join(bad))
        print("scanned %d outputs, logs, state files and environments for %d secrets "
              "and %d security tokens (%d credentials of the agent's own): none found"
              % (len(cap.blobs), len(secrets), len(tokens), len(sessions)), flush=True)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
    print("PASS source.no_secrets")
