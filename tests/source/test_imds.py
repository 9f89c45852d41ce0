#!/usr/bin/env python3
"""The agent's own credential from the ECS instance RAM role, at the
metadata service's real address (100.100.100.200:80) inside a private
network namespace, with the emulator's metadata service requiring its
session token. No credentials file, no key in the environment.

Usage: test_imds.py rotation|outage   (one ctest test each; root, else 77)

rotation  credentials rotating every 20 s: the agent mints (and revokes)
          across at least three rotations; every RAM call is signed by an
          instance-role credential the service handed out, every metadata
          request but the token's PUT carries the token, and status shows
          the credential's source, kind and expiry.
outage    with the metadata service stopped, mints keep working until the
          credential expires, then fail with one clear line and status
          exits 7; the agent asks the service at most once a second
          meanwhile; mints work again within 60 s of its return (here
          within seconds: a call that finds no credential asks at once).
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import netns  # noqa: E402

netns.enter()

import ramsign  # noqa: E402
from emulator import Emulator  # noqa: E402
from ramkey_fixture import Agent, Users, Workdir, wait_for  # noqa: E402

ROLE = "ramkey-instance"


def log(msg):
    print("[%7.2f] %s" % (time.monotonic() - T0, msg), flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def start(wd, emu, **conf):
    """An agent on the instance role: no credentials file, the default
    metadata URL (the real address)."""
    agent = Agent(wd, emu, credentials=False, credential_source="ecs_ram_role",
                  imds_unrestricted_ok="yes", mint_rate="1000/h", **conf)
    agent.start()
    wait_for(lambda: agent.client("status").returncode == 0, 10,
             what="the agent's first credential")
    return agent


def mint_and_revoke(agent, pw):
    """A fetch that mints (the user holds no lease), then its revocation."""
    r = agent.client("fetch", "--user", pw.pw_name, "--secret-file",
                     os.path.join(pw.pw_dir, "ramkey.json"))
    if r.returncode == 0:
        rv = agent.client("revoke", "--user", pw.pw_name)
        check(rv.returncode == 0, "revoke failed: %s" % rv.stderr)
    return r


def imds_checks(emu):
    """Every metadata GET carried a valid token; only the PUTs did not."""
    c = emu.imds_counters()
    gets = [e for e in c["log"] if e["method"] == "GET"]
    puts = [e for e in c["log"] if e["method"] == "PUT"]
    check(gets and all(e["token"] == "valid" for e in gets),
          "a metadata GET without a valid token: %s"
          % [e for e in gets if e["token"] != "valid"])
    check(c["without_token"] == c["token_puts"] == len(puts),
          "requests without a token other than the token's PUT: %s" % c)
    check("401" not in c["by_status"], "the service answered 401: %s" % c["by_status"])
    log("metadata service: %d requests, %d token PUTs, %d credential fetches, "
        "every GET with its token" % (c["requests"], c["token_puts"],
                                       c["credential_fetches"]))
    return c


def rotation():
    with Workdir() as wd, Users("imr") as users, \
            Emulator(imds=netns.IMDS_LISTEN) as emu:
        emu.set_imds(require_token=True, rotate_every=20, lifetime=63)
        emu.imds_rotate()
        emu.imds_reset_counters()
        alice = users.add("alice")
        agent = start(wd, emu)
        st = agent.status()
        src = st["source"]
        log("status source: %s" % json.dumps(src))
        check(src["source"] == "ecs_ram_role" and src["kind"] == "temporary"
              and src["type"] == "ecs_ram_role" and src["expires"]
              and src["usable"] and src["access_key_id"].startswith("STS."),
              "status --json source: %s" % src)
        check(ramsign.parse_timestamp(src["expires"]) > time.time(),
              "expires in the past: %s" % src)
        seen = []
        deadline = time.monotonic() + 100
        while time.monotonic() < deadline:
            r = mint_and_revoke(agent, alice)
            check(r.returncode == 0, "fetch failed: %s" % r.stderr)
            signers = [e["access_key_id"] for e in emu.log(action="CreateAccessKey")]
            for k in signers:
                if k not in seen:
                    seen.append(k)
                    log("CreateAccessKey signed by a new credential %s...%s "
                        "(%d so far)" % (k[:6], k[-4:], len(seen)))
            if len(seen) >= 4:
                break
            time.sleep(2.5)
        check(len(seen) >= 4, "minted with %d instance-role credentials; "
              "wanted 4 (three rotations)" % len(seen))
        handed = {s["AccessKeyId"] for s in emu.sessions(ROLE) if s["source"] == "imds"}
        api = [e for e in emu.log() if e["api"] == "ram"]
        check(api, "no RAM calls logged")
        bad = [e for e in api if e["principal_kind"] != "role_session" or
               e["role"] != ROLE or e["access_key_id"] not in handed]
        check(not bad, "RAM calls not signed by the instance role: %s" % bad[:3])
        mints = emu.log(action="CreateAccessKey")
        check(all(e["result"] == "OK" for e in mints), "a mint failed: %s" % mints)
        log("%d RAM calls (%d CreateAccessKey), every one signed by a credential "
            "of %s from the metadata service" % (len(api), len(mints), ROLE))
        imds_checks(emu)
        text = agent.log()
        check("agent credential: credential_source = ecs_ram_role" in text,
              "the log does not name the source:\n" + text)
        check(agent.stop() == 0, "the agent did not stop cleanly")


def outage():
    with Workdir() as wd, Users("imo") as users, \
            Emulator(imds=netns.IMDS_LISTEN) as emu:
        emu.set_imds(require_token=True, rotate_every=10, lifetime=25)
        emu.imds_rotate()
        emu.imds_reset_counters()
        alice = users.add("alice")
        bob = users.add("bob")
        agent = start(wd, emu)
        expires = ramsign.parse_timestamp(agent.status()["source"]["expires"])
        emu.imds_stop("close")
        t_stop = time.time()
        log("metadata service stopped; the credential expires in %.1f s"
            % (expires - t_stop))
        last_ok = first_fail = None
        fail_lines = []
        i = 0
        while time.time() < expires + 6:
            user = (alice, bob)[i % 2]
            i += 1
            r = mint_and_revoke(agent, user)
            now = time.time()
            if r.returncode == 0:
                check(first_fail is None, "a mint worked after one had failed "
                      "with the service still stopped")
                last_ok = now
            else:
                if first_fail is None:
                    first_fail = now
                    log("first failure %.1f s before expiry: exit %d: %s"
                        % (expires - now, r.returncode, r.stderr.strip()))
                fail_lines.append(r.stderr)
                check(r.returncode == 7, "exit %d, want 7: %s" % (r.returncode, r.stderr))
            time.sleep(0.7)
        check(last_ok is not None and last_ok >= expires - 6,
              "mints stopped working %.1f s before the credential expired"
              % (expires - (last_ok or t_stop)))
        check(first_fail is not None and first_fail <= expires + 1.5,
              "mints still worked %.1f s after the credential expired"
              % ((first_fail or time.time()) - expires))
        log("mints worked until %.1f s before expiry" % (expires - last_ok))
        for err in fail_lines:
            lines = err.strip().splitlines()
            check(len(lines) == 1, "not one line: %r" % err)
            check("no usable credential of its own" in lines[0] and
                  "has run out" in lines[0], "not a clear reason: %r" % lines[0])
        st = agent.client("status")
        check(st.returncode == 7, "status exit %d, want 7:\n%s" % (st.returncode, st.stdout))
        check("agent credential unusable" in st.stdout, st.stdout)
        doc = agent.status()
        check(doc["source"]["usable"] is False and "has run out" in doc["source"]["error"],
              "status --json source: %s" % doc["source"])
        log("status exits 7: %s" % [ln for ln in st.stdout.splitlines()
                                    if "credential" in ln])
        # The agent's polls while the service was away.
        # The agent's polls while the service was away: each one a token
        # PUT the service read and dropped.
        c = emu.imds_counters()
        dropped = [e for e in c["log"] if e["dropped"]]
        t_outage = [e["t"] for e in dropped]
        gaps = [b - a for a, b in zip(t_outage, t_outage[1:])]
        log("%d polls in %.1f s of outage, shortest gap %.2f s"
            % (len(t_outage), time.time() - t_stop, min(gaps) if gaps else 0))
        check(t_outage, "the agent never asked the service during the outage")
        check(all(e["method"] == "PUT" for e in dropped),
              "requests other than the token's PUT while stopped: %s" % dropped)
        check(all(g >= 0.9 for g in gaps), "polled more than once a second: %s" % gaps)
        emu.imds_start()
        t_back = time.time()
        while True:
            r = mint_and_revoke(agent, alice)
            if r.returncode == 0:
                break
            check(time.time() - t_back < 60, "no mint within 60 s of the return: %s"
                  % r.stderr)
            time.sleep(0.5)
        log("mints work again %.1f s after the service's return" % (time.time() - t_back))
        check(agent.client("status").returncode == 0, "status not 0 after recovery")
        imds_checks(emu)
        text = agent.log()
        check("agent credential: usable again" in text, text)
        check(agent.stop() == 0, "the agent did not stop cleanly")


TESTS = {"rotation": rotation, "outage": outage}
T0 = time.monotonic()

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in TESTS:
        sys.exit("usage: %s {%s}" % (sys.argv[0], "|".join(TESTS)))
    netns.metadata_address()
    try:
        TESTS[sys.argv[1]]()
    except AssertionError as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
    print("PASS source.imds_%s" % sys.argv[1])
