"""Helpers for the STS (fleet mode) tests: an emulator with a role per
user, agents with credential = sts, and reading what a secret file holds."""

import json
import os
import subprocess

from ramkey_fixture import SOURCE_DIR, Agent, as_user_cmd

INTEROP = os.path.join(SOURCE_DIR, "tests", "interop")


def role_name(user):
    return "ramkey-" + user


def setup_role(emu, user, lifetime=None):
    """A role for user that the account (the agent's admin key) may
    assume; lifetime: seconds its credentials live (the emulator's
    override), None for DurationSeconds."""
    return emu.create_role(role_name(user), trusted=["account"],
                           max_session_duration=43200,
                           sts_lifetime=lifetime)


def sts_agent(wd, emu, name="agent", **conf):
    """An agent in STS mode on its own socket and state dir (wd/name)."""
    sub = wd.join(name)
    os.makedirs(sub, exist_ok=True)
    os.chmod(sub, 0o755)

    class Sub:
        """Workdir-like view of a sub-directory, so that several agents
        share one test directory."""
        path = sub

        @staticmethod
        def join(*parts):
            return os.path.join(sub, *parts)

    base = {
        "credential": "sts",
        "role_arn": "acs:ram::%s:role/ramkey-%%u" % emu.account_id,
        "sts_endpoint": emu.endpoint,
    }
    base.update(conf)
    return Agent(Sub, emu, **base)


def read_file(path):
    with open(path) as f:
        return json.load(f)


def identity(emu, key_id, secret, token, signature="v3"):
    """GetCallerIdentity signed with a credential: (status, body)."""
    return emu.caller_identity(key_id=key_id, secret=secret,
                               security_token=token, signature=signature)


def node(pw, script, args, env):
    """Run a Node.js interop script as pw, with the official SDKs."""
    envs = ["%s=%s" % kv for kv in env.items()]
    r = subprocess.run(as_user_cmd(pw, envs + ["node", os.path.join(
        INTEROP, script)] + list(args)), capture_output=True, text=True,
        timeout=120, cwd=INTEROP)
    if r.returncode != 0:
        raise AssertionError("node %s failed: %s%s" % (script, r.stdout,
                                                        r.stderr))
    return json.loads(r.stdout.strip().splitlines()[-1])
