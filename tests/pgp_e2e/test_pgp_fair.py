#!/usr/bin/env python3
"""One hostile local user slows only itself (README, "PGP-encrypted
secrets"): the real agent, client and PGP helpers against the RAM emulator.

- fair_load: for 15 s an ordinary uid keeps 48 PGP fetches in flight with
  a 4096-bit RSA key with three subkeys and 40 user IDs (about 40 KB
  armored, accepted); meanwhile three root fetches for another user with
  a small key each complete in under 2 s. With one FIFO queue for all
  users they would wait behind the hog's dozens of jobs (several seconds).
- status: `status --json` says how the PGP helpers are confined, and
  what the kernel lacked, matching what this kernel offers.

Usage: test_pgp_fair.py BEHAVIOUR   (one ctest test per behaviour; root)
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

from ramkey_fixture import SOURCE_DIR, as_user_cmd


def load(name, *path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(SOURCE_DIR, *path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


e2e = load("test_pgp_e2e", "tests", "pgp_e2e", "test_pgp_e2e.py")
helper_tests = load("test_pgp_helper", "tests", "pgp", "test_pgp_helper.py")
check = e2e.check
expect_eq = e2e.expect_eq
log = e2e.log

SKIP = 77
HOG_SECONDS = 15
HOG_CONCURRENCY = 48
VICTIM_LIMIT_S = 2.0

# Runs as the hog's uid: HOG_CONCURRENCY threads, each sending fetch
# requests with the big PGP key over the agent's socket, back to back, for
# the given time; prints what came back.
HOG = r'''
import json, socket, struct, sys, threading, time
sock_path, key_path, seconds, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
key = open(key_path).read()
body = json.dumps({"v": 1, "op": "fetch", "pgp_key": key, "ttl": 600}).encode()
frame = struct.pack(">I", len(body)) + body
end = time.monotonic() + seconds
lock = threading.Lock()
stats = {"ok": 0, "errors": {}, "max_s": 0.0}

def recv_all(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise ConnectionError("closed")
        b += c
    return b

def loop():
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(60)
            s.connect(sock_path)
            s.sendall(frame)
            (m,) = struct.unpack(">I", recv_all(s, 4))
            rep = json.loads(recv_all(s, m))
            s.close()
            err = None if rep.get("ok") else rep.get("error", "?")
        except Exception as e:
            err = type(e).__name__
        with lock:
            stats["max_s"] = max(stats["max_s"], time.monotonic() - t)
            if err is None:
                stats["ok"] += 1
            else:
                stats["errors"][err] = stats["errors"].get(err, 0) + 1

threads = [threading.Thread(target=loop) for _ in range(n)]
for th in threads:
    th.start()
for th in threads:
    th.join()
print(json.dumps(stats))
'''


def test_fair_load(ctx):
    fprs = helper_tests.big_keys()
    ctx.start_agent()
    hog = ctx.users.add("hog")
    vic = ctx.users.add("vic")
    big = ctx.key_file("big", "asc", content=e2e.read(helper_tests.big_key_file("big")))
    size = os.path.getsize(big)
    check(35000 < size < 49152, "the hog's key: 4096-bit RSA, three subkeys, 40 user IDs, "
          "%d bytes armored" % size)
    small = ctx.key_file("ed", "asc")
    fpr_small = ctx.gpg.primary_fpr(small)
    # A first fetch each: both keys are accepted, both leases exist.
    r = ctx.fetch(hog, "--pgp-key", "@" + big, "--secret-file",
                  os.path.join(hog.pw_dir, "k.json"), as_user=True)
    expect_eq(r.returncode, 0, "the hog's first fetch with the big key (%s)" % r.stderr.strip())
    doc = json.load(open(os.path.join(hog.pw_dir, "k.json")))
    expect_eq(doc["KeyFingerprint"], fprs["big"], "the big key's fingerprint")
    vpath = os.path.join(vic.pw_dir, "k.json")
    t = time.monotonic()
    r = ctx.fetch(vic, "--pgp-key", "@" + small, "--secret-file", vpath)
    log("  the victim's first fetch (a mint), no load: %.0f ms" % ((time.monotonic() - t) * 1000))
    expect_eq(r.returncode, 0, "the victim's first fetch")

    hog_cmd = as_user_cmd(hog, ["/usr/bin/python3", "-c", HOG, ctx.agent.socket, big,
                                str(HOG_SECONDS), str(HOG_CONCURRENCY)])
    t0 = time.monotonic()
    proc = subprocess.Popen(hog_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    took = []
    try:
        for at in (3, 7, 11):
            time.sleep(max(0, t0 + at - time.monotonic()))
            st = ctx.agent.status()["pgp"]
            log("  at %.1f s: helpers running %d, jobs queued %d" % (
                time.monotonic() - t0, st["helpers_running"], st["jobs_queued"]))
            t = time.monotonic()
            r = ctx.fetch(vic, "--pgp-key", "@" + small, "--secret-file", vpath)
            took.append(time.monotonic() - t)
            expect_eq(r.returncode, 0, "root fetch for %s at %d s (%s)"
                      % (vic.pw_name, at, r.stderr.strip()))
            ctx.check_pgp_file(vic, vpath, fpr_small, "root fetch at %d s" % at)
        check(proc.poll() is None, "the hog was still at it throughout")
        out, err = proc.communicate(timeout=HOG_SECONDS + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stats = json.loads(out) if out.strip() else None
    log("  the hog: %s (%s)" % (stats, err.strip()[-300:]))
    log("  root fetches for %s took %s" % (vic.pw_name, ", ".join(
        "%.0f ms" % (x * 1000) for x in took)))
    check(stats is not None and stats["ok"] > 0 and not stats["errors"],
          "the hog's fetches with the big key all succeeded (%d)" % (stats or {}).get("ok", 0))
    for i, x in enumerate(took):
        check(x < VICTIM_LIMIT_S, "root fetch %d for another user: %.0f ms (< %.0f ms)"
              % (i + 1, x * 1000, VICTIM_LIMIT_S * 1000))
    e2e.wait_for(lambda: ctx.agent.status()["pgp"]["helpers_running"] == 0, 30,
                 what="the helpers to finish")
    ctx.tmp_empty("after the load")


def test_status(ctx):
    ctx.start_agent()
    abi = helper_tests.kernel_landlock_abi()
    seccomp = helper_tests.kernel_has_seccomp()
    r = ctx.agent.client("status", "--json")
    expect_eq(r.returncode, 0, "status --json")
    pgp = json.loads(r.stdout).get("pgp")
    log("  status --json: \"pgp\": %s" % json.dumps(pgp))
    check(pgp is not None and pgp["available"] is True, "PGP available")
    want = ["no_new_privs", "rlimits"] + (["landlock"] if abi else []) + \
        (["seccomp"] if seccomp else [])
    expect_eq(pgp["confinement"], want, "confinement, as this kernel allows")
    expect_eq(pgp["landlock_abi"], abi, "landlock_abi")
    if not abi:
        check("landlock" in pgp["lacking"], "lacking names Landlock (%r)" % pgp["lacking"])
    if abi and seccomp:
        expect_eq(pgp["lacking"], helper_tests.expected_lacking(), "nothing lacking")
    expect_eq((pgp["helpers_max"], pgp["deadline_ms"]), (2, 10000), "helpers_max, deadline_ms")
    check(("PGP helpers confined by: " + " ".join(want)) in ctx.agent.log(),
          "the agent logs the confinement at start")
    # An ordinary user sees it too.
    pw = ctx.users.add("st")
    r = ctx.agent.client("status", "--json", user=pw)
    expect_eq(json.loads(r.stdout)["pgp"]["confinement"], want, "as an ordinary user")


BEHAVIOURS = {
    "fair_load": ("pl", test_fair_load),
    "status": ("pt", test_status),
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in BEHAVIOURS:
        sys.exit("usage: %s {%s}" % (sys.argv[0], "|".join(BEHAVIOURS)))
    name = sys.argv[1]
    if os.geteuid() != 0:
        print("SKIP: needs root (real accounts, setpriv)")
        sys.exit(SKIP)
    if not shutil.which("gpg") or not shutil.which("gpgconf"):
        sys.exit("gpg and gpgconf are needed (package gnupg)")
    code, fn = BEHAVIOURS[name]
    e2e.keys()
    t0 = time.monotonic()
    e2e.run(code, fn, kb_users=e2e.kb_all())
    print("PASS pgp_e2e.%s (%.1f s)" % (name, time.monotonic() - t0))


if __name__ == "__main__":
    main()
