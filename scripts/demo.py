"""The flow behind scripts/demo (see README). Python 3 standard library."""

import json
import os
import pwd
import stat
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
os.environ.setdefault("RAMKEY_BUILD_DIR", os.path.join(ROOT, "build"))
os.environ.setdefault("RAMKEY_SOURCE_DIR", ROOT)

from emulator import Emulator  # noqa: E402
from ramkey_fixture import Agent, Users, Workdir  # noqa: E402

DEMO_USER = "demo"  # the account is "rkdemo" + this: "rkdemodemo"


def say(text):
    print("\n== " + text, flush=True)


def run(agent, *args, **kw):
    shown = " ".join(["ramkey-agent-client"] + list(args))
    print("$ " + shown, flush=True)
    r = agent.client(*args, **kw)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    print("(exit %d)" % r.returncode, flush=True)
    return r


def masked(secret):
    return secret[:2] + "*" * (len(secret) - 4) + secret[-2:]


def main():
    with Workdir(prefix="ramkey-demo-") as wd, \
            Emulator(https=True, auto_users=True) as emu, \
            Users("demo") as users:
        say("RAM emulator listening on %s (throwaway CA %s)" %
            (emu.endpoint, emu.ca_file))
        acct = users.add(DEMO_USER)
        say("demo account %s (uid %d) created" % (acct.pw_name, acct.pw_uid))

        agent = Agent(wd, emu, min_uid=1000, max_ttl="1h", fetch_ttl="10m")
        agent.start()
        say("ramkey-agent started (pid %d) on %s" % (agent.pid, agent.socket))
        try:
            say("fetch a key for %s" % acct.pw_name)
            r = run(agent, "fetch", "--user", acct.pw_name)
            if r.returncode != 0:
                return 1
            path = r.stdout.split(" written to ")[1].split(" (")[0]

            say("the secret file (secret masked)")
            st = os.lstat(path)
            print("%s  mode %04o  owner %s:%s" % (
                path, stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name,
                st.st_gid))
            with open(path) as f:
                doc = json.load(f)
            shown = dict(doc, AccessKeySecret=masked(doc["AccessKeySecret"]))
            print(json.dumps(shown, indent=4))

            say("the emulator's view of the key")
            key = emu.key(doc["AccessKeyId"])
            print(json.dumps({k: key[k] for k in
                              ("UserName", "AccessKeyId", "Status", "CreateDate")},
                             indent=4))

            say("the agent's view")
            run(agent, "status", "--user", acct.pw_name)

            say("revoke it")
            run(agent, "revoke", "--user", acct.pw_name)
            deadline = time.monotonic() + 10
            while emu.key(doc["AccessKeyId"]) is not None:
                if time.monotonic() > deadline:
                    print("the key is still in the emulator!")
                    return 1
                time.sleep(0.1)
            say("the emulator no longer has %s: %s" % (
                doc["AccessKeyId"][:4] + "****" + doc["AccessKeyId"][-4:],
                json.dumps(emu.keys_of(acct.pw_name))))
        finally:
            status = agent.stop()
            say("agent stopped (exit %s); emulator stopped; demo account "
                "removed" % status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
