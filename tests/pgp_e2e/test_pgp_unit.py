#!/usr/bin/env python3
"""PGP under the shipped unit's process restrictions (ctest:
pgp_e2e.unit_sandbox).

systemd is not PID 1 where the tests run, so unit_sandbox.py reproduces
what ramkey-agent.service (as this build generates it) imposes on the
agent's processes: an unprivileged account with no capabilities,
no_new_privs, its SystemCallFilter= (with the Landlock and seccomp calls
the helper needs), MemoryDenyWriteExecute= and RestrictAddressFamilies=.
Under them the agent serves PGP fetches (a small key, the 40-user-ID
4096-bit RSA key), refuses a bad key, and reports its helpers confined as
far as this kernel allows; the agent itself runs unprivileged, filtered.
Under a unit whose filter leaves out the Landlock calls, the helper's
confinement (confine_probe) goes on without Landlock and says so.

Requests are sent as raw protocol frames from root (a trusted uid): the
client would refuse an agent that runs neither as root nor as the
RAMKEY_USER account, and this test runs it as a throwaway account.
"""

import base64
import ctypes.util
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

from ramkey_fixture import BUILD_DIR, SOURCE_DIR, raw_call


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
UNIT = os.path.join(BUILD_DIR, "contrib", "systemd", "ramkey-agent.service")
SANDBOX = os.path.join(SOURCE_DIR, "tests", "pgp_e2e", "unit_sandbox.py")
PROBE = os.path.join(BUILD_DIR, "tests", "pgp", "confine_probe")


def chown_tree(path, uid, gid):
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, gid)
        for f in files:
            os.lchown(os.path.join(root, f), uid, gid)


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            k, _, v = ln.partition(":")
            out[k] = v.strip()
    return out


def test_unit_sandbox(ctx):
    fprs = helper_tests.big_keys()
    svc = ctx.users.add("svc", system=True)
    # The agent's files belong to its account, as the package sets them up.
    chown_tree(ctx.agent.dir, svc.pw_uid, svc.pw_gid)
    os.chmod(ctx.agent.cred_path, 0o600)
    os.chown(ctx.tmpdir, svc.pw_uid, svc.pw_gid)
    ctx.agent.wrapper = (sys.executable, SANDBOX, UNIT, str(svc.pw_uid), str(svc.pw_gid))
    ctx.start_agent()
    pid = ctx.agent.proc.pid
    st = proc_status(pid)
    log("  the agent: Uid %s, CapEff %s, NoNewPrivs %s, Seccomp %s, Seccomp_filters %s"
        % (st["Uid"], st["CapEff"], st["NoNewPrivs"], st["Seccomp"],
           st.get("Seccomp_filters")))
    check(st["Uid"].split()[0] == str(svc.pw_uid) and int(st["CapEff"], 16) == 0,
          "the agent runs as %s with no capabilities" % svc.pw_name)
    check(st["NoNewPrivs"] == "1" and st["Seccomp"] == "2",
          "the agent runs with no_new_privs and the unit's seccomp filters")
    check("PGP keys cannot be used" not in ctx.agent.log(), "PGP is available")

    def fetch(user, key):
        return raw_call(ctx.agent.socket, {"v": 1, "op": "fetch", "user": user,
                                           "pgp_key": key, "ttl": 600}, timeout=60)

    for suffix, name, path, fpr in (
            ("small", "ed", e2e.key_path("ed", "asc"), ctx.gpg.primary_fpr(
                e2e.key_path("ed", "asc"))),
            ("big", "big (4096-bit RSA, 40 user IDs)", helper_tests.big_key_file("big"),
             fprs["big"])):
        pw = ctx.users.add(suffix)
        t = time.monotonic()
        rep = fetch(pw.pw_name, e2e.read(path, "r"))
        took = time.monotonic() - t
        check(rep.get("ok") is True, "%s key: fetch for %s (%s, %.0f ms)"
              % (name, pw.pw_name, rep.get("error"), took * 1000))
        key = rep["key"]
        expect_eq(key["key_fingerprint"], fpr, "%s key: fingerprint" % name)
        check("sealed_secret" not in key and "AccessKeySecret" not in json.dumps(rep),
              "%s key: no plaintext or sealed secret in the reply" % name)
        if suffix == "small":
            secret = ctx.emu.key(key["access_key_id"])["AccessKeySecret"]
            expect_eq(ctx.gpg.decrypt(key["encrypted_secret"]), secret,
                      "%s key: gpg decrypts the emulator's secret" % name)
        else:
            raw = base64.b64decode(key["encrypted_secret"], validate=True)
            check(raw[0] & 0x80 != 0, "%s key: a binary OpenPGP message" % name)
        ctx.tmp_empty(name)
    pw = ctx.users.add("bad")
    rep = fetch(pw.pw_name, e2e.read(e2e.key_path("expired", "asc"), "r"))
    check(rep.get("ok") is False and rep["error"]["code"] == "pgp_key_invalid" and
          e2e.EXPIRED_WHY in rep["error"]["message"], "an expired key is refused (%s)"
          % rep.get("error"))
    expect_eq(ctx.creates(), 2, "CreateAccessKey for the two good keys only")
    rep = raw_call(ctx.agent.socket, {"v": 1, "op": "status"})
    pgp = rep["status"]["pgp"]
    log("  status --json \"pgp\": %s" % json.dumps(pgp))
    abi = helper_tests.kernel_landlock_abi()
    want = ["no_new_privs", "rlimits"] + (["landlock"] if abi else []) + \
        (["seccomp"] if helper_tests.kernel_has_seccomp() else [])
    expect_eq(pgp["confinement"], want, "the helpers are confined as far as the kernel "
              "allows, under the unit's restrictions too")
    ctx.tmp_empty("end")

    # A unit whose filter leaves out the Landlock calls (an older unit, an
    # administrator's drop-in): the helper's confinement goes on without
    # Landlock and says so; its own seccomp filter still goes in.
    if not abi or "seccomp" not in want:
        log("  (the kernel lacks Landlock or seccomp: the filtered-unit check is skipped)")
        return
    unit = ctx.wd.join("ramkey-agent.service")
    with open(UNIT) as src, open(unit, "w") as dst:
        for ln in src:
            if ln.startswith("SystemCallFilter=") and "landlock" in ln:
                ln = " ".join(w for w in ln.split() if not w.startswith("landlock_")) + "\n"
            dst.write(ln)
    home = os.path.join(ctx.tmpdir, "ramkey-gpg-probe")
    os.mkdir(home, 0o700)
    os.chown(home, svc.pw_uid, svc.pw_gid)
    try:
        r = subprocess.run([sys.executable, SANDBOX, unit, str(svc.pw_uid), str(svc.pw_gid),
                            PROBE, home], capture_output=True, text=True, timeout=60)
        doc = json.loads(r.stdout)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    log("  confine_probe under a filter without the Landlock calls: applied %s, lacking %r"
        % (doc["applied"], doc["lacking"]))
    expect_eq(doc["applied"], ["no_new_privs", "rlimits", "seccomp"],
              "without Landlock calls in the unit: the rest of the confinement")
    expect_eq(doc["lacking"], helper_tests.expected_lacking(
        "landlock: refused by a system call filter"), "lacking")
    socks = {x["arg"]: x for x in doc["results"] if x["what"] == "socket"}
    check(not socks["AF_INET"]["ok"] and not socks["AF_UNIX"]["ok"],
          "its seccomp filter still refuses sockets")
    calls = {x["arg"]: x for x in doc["results"] if x["what"] == "call"}
    check(not calls["kill_parent_0"]["ok"] and not calls["tgkill_parent_0"]["ok"],
          "and signals to its parent, without Landlock's signal scoping")


def main():
    if os.geteuid() != 0:
        print("SKIP: needs root (real accounts, dropping privileges)")
        sys.exit(SKIP)
    if not shutil.which("systemd-analyze") or ctypes.util.find_library("seccomp") is None:
        print("SKIP: needs systemd-analyze and libseccomp (systemd's own dependencies)")
        sys.exit(SKIP)
    if not os.path.exists(UNIT):
        sys.exit("the generated unit is missing: %s" % UNIT)
    if not shutil.which("gpg") or not shutil.which("gpgconf"):
        sys.exit("gpg and gpgconf are needed (package gnupg)")
    e2e.keys()
    t0 = time.monotonic()
    e2e.run("pu", test_unit_sandbox, kb_users=e2e.kb_all())
    print("PASS pgp_e2e.unit_sandbox (%.1f s)" % (time.monotonic() - t0))


if __name__ == "__main__":
    main()
