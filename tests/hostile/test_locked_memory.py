"""hostile.locked_memory_*: after a mint, the credential's secret (and an
STS credential's SecurityToken) is nowhere in the agent's memory but in
locked memory (the lease arena: sodium_malloc'd, mlock'd chunks); after
the lease ends, it is nowhere at all.

The copies this rules out: libcurl's receive buffer (freed unwiped), the
record buffer of the kept-alive TLS connection (OpenSSL keeps the last
plaintext until the next answer overwrites it), json-c's strings and print
buffer (the STS token in the reply), the token held on the heap. The
defences: agent/cloud/wipe_mem.c (allocators that wipe, and
SSL_OP_CLEANSE_PLAINTEXT), the token in the arena (agent/lease/lease.c),
the token kept out of json-c when a reply is encoded (proto/message.c).

    test_locked_memory.py {access_key|sts} {https|http}

The scan reads every readable mapping of the agent through /proc/PID/mem
(root) and tells locked ones by smaps' Locked: field. Skipped (77) in the
sanitizer build, as every memory scan is (ASan keeps freed memory in
quarantine, unwiped by design)."""

import os
import sys
import time

from emulator import Emulator
from ramkey_fixture import Agent, Users, Workdir, require_root, wait_for
from hostile_lib import check, describe, finish, memory_hits, require

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "sts"))
import stslib  # noqa: E402


def needles_of(secret, token=None):
    """The byte strings to look for: the secret; the token whole and its
    first and last 40 characters (a copy may be cut)."""
    n = {"secret": secret.encode()}
    if token:
        n["token"] = token.encode()
        n["token head"] = token[:40].encode()
        n["token tail"] = token[-40:].encode()
    return n


def scan(pid, creds):
    """{(who, what): (locked hits, other hits)}"""
    flat = {}
    for who, n in creds.items():
        for what, b in n.items():
            flat[b] = (who, what)
    hits = memory_hits(pid, list(flat))
    out = {}
    for b, (who, what) in flat.items():
        locked = [h for h in hits[b] if h[0]["locked"] > 0]
        other = [h for h in hits[b] if h[0]["locked"] == 0]
        out[(who, what)] = (locked, other)
    return out


def main():
    require_root()
    if os.environ.get("RAMKEY_SANITIZED") == "1":
        print("SKIP: sanitized build (ASan keeps freed memory in quarantine "
              "and maps terabytes of shadow)")
        sys.exit(77)
    kind, transport = sys.argv[1], sys.argv[2]
    https = transport == "https"
    prefix = "hm%s%s" % (kind[0], "s" if https else "p")
    with Workdir() as wd, Users(prefix) as users, Emulator(https=https) as emu:
        pws = [users.add(n) for n in ("ann", "ben", "cy")]
        conf = {} if https else {"allow_http": "yes"}
        if kind == "sts":
            for pw in pws:
                stslib.setup_role(emu, pw.pw_name)
            agent = stslib.sts_agent(wd, emu, **conf)
        else:
            agent = Agent(wd, emu, **conf)
        agent.start()
        try:
            creds = {}
            for pw in pws:
                r = agent.client("fetch", user=pw)
                require(r.returncode == 0, "%s fetches (%s)"
                        % (pw.pw_name, r.stderr.strip()))
                if kind == "sts":
                    s = [x for x in emu.sessions() if x["session"].startswith(
                        pw.pw_name)][-1]
                    creds[pw.pw_name] = needles_of(s["AccessKeySecret"],
                                                   s["SecurityToken"])
                else:
                    k = emu.keys_of(pw.pw_name)
                    require(len(k) == 1, "one key for %s" % pw.pw_name)
                    creds[pw.pw_name] = needles_of(k[0]["AccessKeySecret"])
            # Hand the credentials out again (no mint): the reply path.
            for pw in pws:
                r = agent.client("fetch", "--user", pw.pw_name)
                require(r.returncode == 0, "root fetches for %s" % pw.pw_name)
            print("%s over %s: %d credentials minted, the connection to the "
                  "emulator kept alive" % (kind, transport, len(creds)))
            try:
                found = scan(agent.pid, creds)
            except PermissionError:
                print("SKIP: cannot read the agent's memory here")
                sys.exit(77)
            for (who, what), (locked, other) in sorted(found.items()):
                check(locked, "%s's %s is in locked memory (%d cop%s)" % (
                    who, what, len(locked), "y" if len(locked) == 1 else "ies"))
                check(not other, "%s's %s is nowhere else%s" % (
                    who, what, "" if not other else ": " +
                    "; ".join(describe(other)[:3])))

            # End every lease; for AccessKeys, wait for RAM to confirm.
            for pw in pws:
                r = agent.client("revoke", "--user", pw.pw_name)
                require(r.returncode == 0, "root revokes %s's lease (%s)"
                        % (pw.pw_name, r.stderr.strip()))
            if kind == "access_key":
                wait_for(lambda: all(emu.keys_of(pw.pw_name) == []
                                     for pw in pws), 15, what="deletions")
            else:
                time.sleep(0.5)
            found = scan(agent.pid, creds)
            for (who, what), (locked, other) in sorted(found.items()):
                check(not locked and not other, "after the revocation, %s's "
                      "%s is nowhere%s" % (who, what, "" if not (
                          locked or other) else ": " + "; ".join(
                              describe(locked + other)[:3])))
        finally:
            check(agent.stop() == 0, "agent stops cleanly")
    finish()


if __name__ == "__main__":
    main()
