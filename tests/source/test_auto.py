#!/usr/bin/env python3
"""source.auto: credential_source = auto (the default) chooses, and says
what it chose and what it left (root only, else 77), in a private network
namespace where the emulator's metadata service listens at
100.100.100.200:80 so that any contact with it would show:

  - with both the environment variables and a credentials file, the
    environment wins; the log names it and the file it ignored, and RAM
    sees the environment's key;
  - with neither, on a machine that is not Alibaba Cloud hardware (no DMI
    sys_vendor saying so), the agent and --check-config refuse with one
    line saying what was looked for, and the metadata address is never
    contacted (no connection, no request);
  - with neither on Alibaba Cloud hardware (a DMI sys_vendor of "Alibaba
    Cloud", in a private mount namespace), auto takes the instance role.
"""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import netns  # noqa: E402

netns.enter()

from emulator import Emulator  # noqa: E402
from ramkey_fixture import AGENT_BIN, Agent, Users, Workdir, wait_for  # noqa: E402

T0 = time.monotonic()
DMI = "/sys/class/dmi/id/sys_vendor"


def log(msg):
    print("[%6.2f] %s" % (time.monotonic() - T0, msg), flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def untouched(emu):
    c = emu.imds_counters()
    check(c["requests"] == 0 and c["connections_accepted"] == 0,
          "the metadata address was contacted: %s" % {k: c[k] for k in
                                                       ("requests", "connections_accepted")})


def main():
    netns.metadata_address()
    with open(DMI) if os.path.exists(DMI) else open(os.devnull) as f:
        vendor = f.read().strip()
    if vendor.lower().startswith("alibaba cloud"):
        sys.exit("this machine says it is Alibaba Cloud hardware (%s); the test "
                 "needs one that is not" % DMI)
    with Workdir() as wd, Users("au") as users, \
            Emulator(imds=netns.IMDS_LISTEN) as emu:
        alice = users.add("alice")
        emu.imds_reset_counters()

        # Both: the environment's key wins, the file is named as ignored.
        emu.create_user("filekey")
        filekey = emu.create_key("filekey")
        agent = Agent(wd, emu, credentials=(filekey["AccessKeyId"],
                                            filekey["AccessKeySecret"]))
        agent.start(env={"ALIBABA_CLOUD_ACCESS_KEY_ID": emu.admin_key_id,
                         "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emu.admin_secret})
        text = agent.log()
        line = [ln for ln in text.splitlines() if "agent credential: credential_source" in ln]
        check(len(line) == 1, "no line naming the source:\n" + text)
        log("both present: " + line[0].split("]: ", 1)[1])
        check("credential_source = auto: using the environment (env)" in line[0] and
              "also present, not used: %s" % agent.cred_path in line[0], line[0])
        r = agent.client("fetch", "--user", alice.pw_name, "--secret-file",
                         os.path.join(alice.pw_dir, "ramkey.json"))
        check(r.returncode == 0, "fetch: " + r.stderr)
        mints = emu.log(action="CreateAccessKey")
        check(mints and all(e["access_key_id"] == emu.admin_key_id for e in mints),
              "not signed by the environment's key: %s" % mints)
        check("agent credential: %s from the environment, static (does not "
              "expire)" % (emu.admin_key_id[:4] + "****" + emu.admin_key_id[-4:])
              in agent.log(), "the log does not give the kind:\n" + agent.log())
        src = agent.status()["source"]
        check(src["source"] == "env" and src["kind"] == "static" and
              src["expires"] is None, "status source: %s" % src)
        check(agent.client("revoke", "--user", alice.pw_name).returncode == 0, "revoke")
        check(agent.stop() == 0, "the agent did not stop cleanly")
        for secret in (emu.admin_secret, filekey["AccessKeySecret"]):
            check(secret not in agent.log(), "a secret in the log")

        # Neither, not Alibaba Cloud hardware: refused, metadata untouched.
        with Workdir() as wd2:
            none = Agent(wd2, emu, credentials=False)
            for args in ([], ["--check-config"]):
                r = subprocess.run([AGENT_BIN, "-f", "-c", none.conf_path] + args,
                                   capture_output=True, text=True, timeout=30)
                lines = r.stderr.strip().splitlines()
                check(r.returncode == 1 and len(lines) == 1,
                      "%s: exit %d:\n%s" % (args, r.returncode, r.stderr))
                for needle in ("credential_source = auto", "ALIBABA_CLOUD_ACCESS_KEY_ID",
                               none.cred_path, "not an Alibaba Cloud instance"):
                    check(needle in lines[0], "%r not in %s" % (needle, lines[0]))
            log("neither, not Alibaba Cloud hardware: " + lines[0].split("]: ", 1)[1])
            time.sleep(0.5)
            untouched(emu)
            log("the metadata service saw no connection and no request")

            # Neither, on Alibaba Cloud hardware (as DMI says in a mount
            # namespace of the agent's own): the instance role.
            none.write_config(imds_unrestricted_ok="yes")
            script = ('mount -t tmpfs ramkey-test /sys/class && mkdir -p /sys/class/dmi/id'
                      ' && echo "Alibaba Cloud" > %s && exec "$@"' % DMI)
            logf = open(none.log_path, "a")
            none.proc = subprocess.Popen(
                ["unshare", "--mount", "--", "sh", "-c", script, "sh", AGENT_BIN, "-f",
                 "-c", none.conf_path], stdout=logf, stderr=logf, start_new_session=True)
            logf.close()
            try:
                none.wait_ready()
                wait_for(lambda: none.client("status").returncode == 0, 10,
                         what="the instance role's credential")
                r = none.client("fetch", "--user", alice.pw_name, "--secret-file",
                                os.path.join(alice.pw_dir, "ramkey.json"))
                check(r.returncode == 0, "fetch on the instance role: " + r.stderr)
                text = none.log()
                check("credential_source = auto: using the instance metadata service"
                      in text, text)
                check(none.stop() == 0, "the agent did not stop cleanly")
            finally:
                none.kill()
            c = emu.imds_counters()
            check(c["credential_fetches"] >= 1, "no credential fetched: %s" % c)
            log("on Alibaba Cloud hardware auto took the instance role (%d metadata "
                "requests)" % c["requests"])


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
    print("PASS source.auto")
