#!/usr/bin/env python3
"""source.reload: SIGHUP and the agent's own credential (root only, else
77). A key rotated in the credentials file is taken at once; a file that
now describes another kind of credential (the instance role) is reported
and waits for a restart, the running key staying in use; so does a change
of credential_source.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from emulator import Emulator  # noqa: E402
from ramkey_fixture import Agent, Users, Workdir, require_root, wait_for  # noqa: E402


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def main():
    require_root()
    with Workdir() as wd, Users("rl") as users, Emulator() as emu:
        alice = users.add("alice")
        emu.create_user("rotated")
        new = emu.create_key("rotated")
        emu.set_permissions("user/rotated", allow=["ram:*"])
        agent = Agent(wd, emu, mint_rate="1000/h")
        agent.start()

        def mint_signer():
            r = agent.client("fetch", "--user", alice.pw_name, "--secret-file",
                             os.path.join(alice.pw_dir, "ramkey.json"))
            check(r.returncode == 0, "fetch: " + r.stderr)
            check(agent.client("revoke", "--user", alice.pw_name).returncode == 0, "revoke")
            return emu.log(action="CreateAccessKey")[-1]["access_key_id"]

        check(mint_signer() == emu.admin_key_id, "not signed by the first key")
        write(agent.cred_path, "[default]\ntype = access_key\naccess_key_id = %s\n"
              "access_key_secret = %s\n" % (new["AccessKeyId"], new["AccessKeySecret"]))
        agent.reload()
        wait_for(lambda: agent.log().count("reloaded the configuration") == 1, 5,
                 what="the reload")
        check(mint_signer() == new["AccessKeyId"], "the rotated key is not used")
        print("a key rotated in the credentials file is used after SIGHUP", flush=True)

        write(agent.cred_path, "[default]\ntype = ecs_ram_role\n")
        agent.write_config(credential_source="file")
        agent.reload()
        wait_for(lambda: agent.log().count("reloaded the configuration") == 2, 5,
                 what="the second reload")
        text = agent.log()
        check("now describes another kind of credential" in text and
              "change only at restart" in text, text)
        check(mint_signer() == new["AccessKeyId"], "the running key was dropped")
        check(agent.client("status").returncode == 0, "unhealthy after the reload")
        check(agent.stop() == 0, "the agent did not stop cleanly")
        print("another kind of credential waits for a restart; the running key "
              "stays in use", flush=True)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
    print("PASS source.reload")
