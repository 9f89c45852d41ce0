#!/usr/bin/env python3
"""source.imds_restriction: the instance role only with the metadata
service closed to ordinary accounts (root only, else 77), in a private
network namespace where 100.100.100.200:80 is the emulator's metadata
service:

  - without the nftables rule, an agent started as root refuses
    credential_source = ecs_ram_role with one line that names the rule
    (and so does --check-config), before it asks the service for anything;
  - with the shipped rule loaded (nft from Debian, the build's copy that
    names RAMKEY_USER), --check-config passes, an agent started as root
    mints, and so does one started as RAMKEY_USER after the check ran as
    root (the unit's order: ExecStartPre=+ramkey-agent --check-config);
  - an ordinary account's curl to the service fails, RAMKEY_USER's gets a
    token, the role name and the credential.

RAMKEY_USER's account is created for the test if the machine has none,
and removed again.
"""

import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import netns  # noqa: E402

netns.enter()

from emulator import Emulator  # noqa: E402
from ramkey_fixture import (AGENT_BIN, BUILD_DIR, Agent, ServiceAccount,  # noqa: E402
                            Users, Workdir, as_user_cmd, cache_value, wait_for)

RULE = os.path.join(BUILD_DIR, "contrib", "nftables", "ramkey-metadata.nft")
BASE = "http://%s" % netns.ADDR
T0 = time.monotonic()


def log(msg):
    print("[%6.2f] %s" % (time.monotonic() - T0, msg), flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def curl_as(pw, *args):
    argv = ["curl", "--noproxy", "*", "-sS", "-m", "3", "-f"] + list(args)
    return subprocess.run(as_user_cmd(pw, argv), capture_output=True, text=True)


def metadata_as(pw):
    """Token, role name, credential, as pw; (ok, what happened)."""
    r = curl_as(pw, "-X", "PUT", "-H", "X-aliyun-ecs-metadata-token-ttl-seconds: 60",
                BASE + "/latest/api/token")
    if r.returncode != 0:
        return False, "token: curl exit %d %s" % (r.returncode, r.stderr.strip())
    token = r.stdout.strip()
    hdr = "X-aliyun-ecs-metadata-token: " + token
    r = curl_as(pw, "-H", hdr, BASE + "/latest/meta-data/ram/security-credentials/")
    if r.returncode != 0:
        return False, "role: curl exit %d" % r.returncode
    role = r.stdout.strip()
    r = curl_as(pw, "-H", hdr, BASE + "/latest/meta-data/ram/security-credentials/" + role)
    return r.returncode == 0 and '"Code" : "Success"' in r.stdout, "credential of " + role


def refused(agent, args=()):
    r = subprocess.run([AGENT_BIN, "-f", "-c", agent.conf_path] + list(args),
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 1, "exit %d, want 1:\n%s%s" % (r.returncode, r.stdout, r.stderr))
    lines = r.stderr.strip().splitlines()
    check(len(lines) == 1, "not one line:\n" + r.stderr)
    for needle in ("ecs_ram_role", "ramkey-metadata.nft", "imds_unrestricted_ok",
                   "ordinary account"):
        check(needle in lines[0], "%r not in: %s" % (needle, lines[0]))
    return lines[0]


def main():
    if shutil.which("nft") is None or shutil.which("curl") is None:
        sys.exit("nft and curl are needed (packages nftables, curl; scripts/deps)")
    netns.metadata_address()
    user = cache_value("RAMKEY_USER")
    with ServiceAccount(user) as svc, Workdir() as wd, Users("imx") as users, \
            Emulator(imds=netns.IMDS_LISTEN) as emu:
        alice = users.add("alice")
        emu.set_imds(require_token=True)
        agent = Agent(wd, emu, credentials=False, credential_source="ecs_ram_role")
        emu.imds_reset_counters()

        # No rule: refused, by the agent and by --check-config.
        line = refused(agent)
        log("without the rule, the agent as root: " + line)
        refused(agent, ["--check-config"])
        c = emu.imds_counters()
        check(c["requests"] == 0, "the service was asked before the refusal: %s" % c)
        ok, what = metadata_as(alice)
        check(ok, "without the rule an ordinary account should reach the service: " + what)

        # The rule, as shipped (with RAMKEY_USER's name).
        netns.load_rule(RULE)
        log("loaded %s" % RULE)
        ok, what = metadata_as(alice)
        check(not ok, "%s reached the metadata service through the rule" % alice.pw_name)
        log("%s (an ordinary account): %s" % (alice.pw_name, what))
        ok, what = metadata_as(svc.pw)
        check(ok, "%s cannot reach the metadata service: %s" % (user, what))
        log("%s: %s" % (user, what))

        r = subprocess.run([AGENT_BIN, "--check-config", "-c", agent.conf_path],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 0 and "configuration OK" in r.stdout,
              "--check-config with the rule: %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
        check("metadata service is restricted" in r.stderr, r.stderr)
        log("--check-config: " + r.stdout.strip())

        agent.start()
        wait_for(lambda: agent.client("status").returncode == 0, 10,
                 what="the agent's credential")
        r = agent.client("fetch", "--user", alice.pw_name, "--secret-file",
                         os.path.join(alice.pw_dir, "ramkey.json"))
        check(r.returncode == 0, "fetch as root's agent: " + r.stderr)
        check(agent.client("revoke", "--user", alice.pw_name).returncode == 0, "revoke")
        check(agent.stop() == 0, "the agent did not stop cleanly")
        log("an agent started as root mints with the rule loaded")

        # The unit's order: the check as root, then the agent as its account.
        for d in (agent.run_dir, agent.state_dir):
            os.makedirs(d, exist_ok=True)
            os.chown(d, svc.pw.pw_uid, svc.pw.pw_gid)
        for root, dirs, files in os.walk(agent.state_dir):
            for n in dirs + files:
                os.chown(os.path.join(root, n), svc.pw.pw_uid, svc.pw.pw_gid)
        logf = open(agent.log_path, "a")
        proc = subprocess.Popen(
            ["setpriv", "--reuid", str(svc.pw.pw_uid), "--regid", str(svc.pw.pw_gid),
             "--clear-groups", "--", AGENT_BIN, "-f", "-c", agent.conf_path],
            stdout=logf, stderr=logf, start_new_session=True)
        logf.close()
        agent.proc = proc
        try:
            agent.wait_ready()
            wait_for(lambda: agent.client("status").returncode == 0, 10,
                     what="the unprivileged agent's credential")
            r = agent.client("fetch", "--user", alice.pw_name, "--secret-file",
                             os.path.join(alice.pw_dir, "ramkey.json"))
            check(r.returncode == 0, "fetch as %s's agent: %s" % (user, r.stderr))
            check("the unit checks it as root" in agent.log(), agent.log())
            check(agent.stop() == 0, "the unprivileged agent did not stop cleanly")
        finally:
            agent.kill()
        log("an agent running as %s mints; it says the root check covers it" % user)
        mints = emu.log(action="CreateAccessKey")
        check(len(mints) == 2 and all(e["role"] == "ramkey-instance" for e in mints),
              "mints not signed by the instance role: %s" % mints)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
    print("PASS source.imds_restriction")
