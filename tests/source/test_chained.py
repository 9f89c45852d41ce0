#!/usr/bin/env python3
"""source.chained_role: a credentials file of type ram_role_arn (root only,
else 77), signing with v1 (the token as the SecurityToken parameter). The static key in it may do nothing at the emulator but
sts:AssumeRole on the agent's own role; that is enough to mint, because
the agent signs its RAM calls with the role's temporary credential and
renews it (here it lives 20 s) before it runs out. A key that may not
assume the role leaves the agent without a credential: status exits 7 and
a fetch fails with one line carrying STS's Code.
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from emulator import Emulator  # noqa: E402
from ramkey_fixture import Agent, Users, Workdir, require_root, wait_for  # noqa: E402

ROLE = "ramkey-agent"
SESSION = "ramkey-test-agent"
T0 = time.monotonic()


def log(msg):
    print("[%6.2f] %s" % (time.monotonic() - T0, msg), flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def profile(key, arn):
    return ("[default]\ntype = ram_role_arn\naccess_key_id = %s\n"
            "access_key_secret = %s\nrole_arn = %s\nrole_session_name = %s\n"
            % (key["AccessKeyId"], key["AccessKeySecret"], arn, SESSION))


def mint(agent, pw):
    r = agent.client("fetch", "--user", pw.pw_name, "--secret-file",
                     os.path.join(pw.pw_dir, "ramkey.json"))
    if r.returncode == 0:
        check(agent.client("revoke", "--user", pw.pw_name).returncode == 0, "revoke")
    return r


def main():
    require_root()
    with Workdir() as wd, Users("ch") as users, Emulator() as emu:
        alice = users.add("alice")
        emu.create_user("agentkey")
        key = emu.create_key("agentkey")
        arn = emu.role_arn(ROLE)
        emu.create_role(ROLE, trusted=["user/agentkey"], sts_lifetime=20)
        emu.set_permissions("user/agentkey",
                            allow=[{"action": "sts:AssumeRole", "resource": arn}])
        st, body = emu.call("CreateAccessKey", {"UserName": alice.pw_name},
                            key["AccessKeyId"], key["AccessKeySecret"], "v3")
        check(st == 403 and body.get("Code") == "NoPermission",
              "the static key alone may mint: %s %s" % (st, body))
        log("the static key alone: CreateAccessKey -> %s" % body["Code"])
        since = time.time()

        # Signature v1 here (SecurityToken as a signed parameter); the
        # instance-role tests use v3 (the x-acs-security-token header).
        agent = Agent(wd, emu, credentials=profile(key, arn),
                      sts_endpoint=emu.endpoint, mint_rate="1000/h", signature="v1")
        agent.start()
        wait_for(lambda: agent.client("status").returncode == 0, 15,
                 what="the assumed role's credential")
        src = agent.status()["source"]
        log("status source: %s" % src)
        check(src["source"] == "file" and src["type"] == "ram_role_arn" and
              src["kind"] == "temporary" and src["role"] == arn and src["expires"]
              and src["access_key_id"].startswith("STS."), "status source: %s" % src)
        check(mint(agent, alice).returncode == 0, "the first mint failed")
        # The role's credential lives 20 s: the agent renews it well before.
        first = src["access_key_id"]
        wait_for(lambda: agent.status()["source"]["access_key_id"] != first, 20,
                 interval=0.5, what="a renewed role credential")
        r = mint(agent, alice)
        check(r.returncode == 0, "the mint after the renewal failed: %s" % r.stderr)
        log("renewed (%s -> %s); minted with both"
            % (first, agent.status()["source"]["access_key_id"]))

        assumes = emu.log(since=since, action="AssumeRole")
        check(assumes and all(e["result"] == "OK" and e["target_role"] == ROLE and
                              e["principal_kind"] == "ram_user" and
                              e["access_key_id"] == key["AccessKeyId"] for e in assumes),
              "AssumeRole calls: %s" % assumes)
        ram = [e for e in emu.log(since=since) if e["api"] == "ram"]
        check(ram and all(e["principal_kind"] == "role_session" and e["role"] == ROLE
                          and e["role_session"] == SESSION and
                          e["signature_version"] == "v1" for e in ram),
              "RAM calls not signed by the assumed role: %s" % ram)
        creates = emu.log(since=since, action="CreateAccessKey")
        check(len({e["access_key_id"] for e in creates}) == 2,
              "mints not signed by two role credentials: %s" % creates)
        check(not [e for e in emu.log(since=since, access_key_id=key["AccessKeyId"])
                   if e["action"] != "AssumeRole"],
              "the static key signed more than AssumeRole")
        log("%d AssumeRole by user/agentkey; %d RAM calls, every one signed by "
            "%s/%s" % (len(assumes), len(ram), ROLE, SESSION))
        text = agent.log()
        check("AssumeRole of %s" % arn in text, text)
        check(agent.stop() == 0, "the agent did not stop cleanly")

        # A key that may not assume the role.
        emu.create_user("otherkey")
        other = emu.create_key("otherkey")
        emu.set_permissions("user/otherkey", allow=["ram:GetUser"])
        with Workdir() as wd2:
            bad = Agent(wd2, emu, credentials=profile(other, arn),
                        sts_endpoint=emu.endpoint)
            bad.start()
            wait_for(lambda: "NoPermission" in bad.log(), 15, what="AssumeRole refused")
            st = bad.client("status")
            check(st.returncode == 7, "status %d, want 7" % st.returncode)
            r = mint(bad, alice)
            lines = r.stderr.strip().splitlines()
            check(r.returncode == 7 and len(lines) == 1 and "NoPermission" in lines[0]
                  and "no usable credential" in lines[0],
                  "fetch without a role credential: %d %r" % (r.returncode, r.stderr))
            log("a key that may not assume the role: " + lines[0])
            check(bad.stop() == 0, "the agent did not stop cleanly")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
    print("PASS source.chained_role")
