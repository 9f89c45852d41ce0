#!/usr/bin/env python3
"""STS credentials (credential = sts, fleet mode), against the emulator.

    test_sts.py ten_hosts | consumers | formats | renewal | bounds | pgp

ten_hosts: one person on ten hosts at once (ten agents, one emulator):
one AssumeRole per host, each file's credential works and names the
user's role and a session that says who and where; with credential =
access_key the third host is refused, pointing at credential = sts.
consumers: the official Node.js credentials package reads the cli
(StsToken) file and runs credential-process, and the calls it signs with
what it got are accepted, v1 and v3.
formats: what each format holds with a token; ini refused; set-status,
revoke and status as STS has them.
renewal: credentials that live 60 s, renewed 20 s before: credential-
process every 5 s never gets one with less than 20 s left, one AssumeRole
per renewal; fetch --follow keeps its file valid; STS failing for 30 s.
bounds: max_ttl = 2m with sts_duration = 1h: one AssumeRole for requests
every second, no credential expiring over 15 minutes after the lease.
pgp: with a PGP key the json file holds the STS secret encrypted
(EncryptedSecret, KeyFingerprint) and never in clear; gpg decrypts it and,
with the id and token beside it, the credential works.
"""

import base64
import calendar
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from emulator import Emulator
from ramkey_fixture import (CLIENT_BIN, Users, Workdir, as_user_cmd,
                            open_session_raw, require_root, wait_for)
import stslib


def log(msg):
    print(msg, flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    log("ok: " + what)


def parse_time(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def assume_calls(emu):
    return emu.counters()["calls"].get("AssumeRole", 0)


def fetch_json(agent, pw, path, *extra):
    r = agent.client("fetch", "--user", pw.pw_name, "--secret-file", path,
                     *extra)
    if r.returncode != 0:
        raise AssertionError("fetch failed: %s" % r.stderr)
    return stslib.read_file(path)


def ten_hosts():
    with Workdir() as wd, Emulator() as emu, Users("st") as users:
        alice = users.add("alice")
        stslib.setup_role(emu, alice.pw_name)
        agents = []
        for i in range(10):
            a = stslib.sts_agent(wd, emu, "host%d" % i,
                                 role_session_name="%%u@host%d" % i)
            a.start()
            agents.append(a)
        emu.reset_counters()
        # Sessions on all ten (this process stands for each sshd), two
        # on the first.
        for i, a in enumerate(agents):
            for _ in range(2 if i == 0 else 1):
                rep = open_session_raw(a.socket, alice.pw_name)
                check(rep.get("ok"), "session on host%d" % i)
        check(assume_calls(emu) == 10, "exactly ten AssumeRole calls "
              "(got %d)" % assume_calls(emu))
        role_arn = emu.role_arn(stslib.role_name(alice.pw_name))
        for i, a in enumerate(agents):
            path = os.path.join(alice.pw_dir, "host%d.json" % i)
            doc = fetch_json(a, alice, path)
            status, body = stslib.identity(emu, doc["AccessKeyId"],
                                           doc["AccessKeySecret"],
                                           doc["SecurityToken"])
            check(status == 200, "host%d's credential works" % i)
            want = "acs:ram::%s:assumed-role/%s/%s@host%d" % (
                emu.account_id, stslib.role_name(alice.pw_name),
                alice.pw_name, i)
            check(body.get("Arn") == want, "GetCallerIdentity names the "
                  "role and session %s (got %s)" % (want, body.get("Arn")))
            check(body.get("RoleId") is not None or role_arn,
                  "an assumed-role identity")
        check(assume_calls(emu) == 10, "fetches add no AssumeRole")
        for a in agents:
            a.stop()
        # The same person with AccessKeys: two hosts, then the limit.
        bob = users.add("bob")
        aks = []
        for i in range(3):
            a = stslib.sts_agent(wd, emu, "ak%d" % i, credential="access_key")
            a.start()
            aks.append(a)
        for i in range(2):
            rep = open_session_raw(aks[i].socket, bob.pw_name)
            check(rep.get("ok"), "access_key host %d gets a key" % i)
        rep = open_session_raw(aks[2].socket, bob.pw_name)
        msg = rep.get("error", {}).get("message", "")
        check(not rep.get("ok") and rep["error"].get("ram_code") ==
              "LimitExceeded.User.AccessKey", "the third host is refused "
              "with LimitExceeded")
        check("credential = sts" in msg, "the refusal points at credential "
              "= sts: %s" % msg)
        for a in aks:
            a.stop()


def consumers():
    if not os.path.isdir(os.path.join(stslib.INTEROP, "node_modules")):
        raise AssertionError("tests/interop/node_modules is missing: run "
                             "`npm ci` there (scripts/test does)")
    with Workdir() as wd, Emulator() as emu, Users("sc") as users:
        pw = users.add("carol")
        stslib.setup_role(emu, pw.pw_name)
        agent = stslib.sts_agent(wd, emu)
        agent.start()
        home = pw.pw_dir
        aliyun = os.path.join(home, ".aliyun")
        os.makedirs(aliyun, exist_ok=True)
        os.chown(aliyun, pw.pw_uid, pw.pw_gid)
        env = {"HOME": home, "NODE_EXTRA_CA_CERTS": emu.ca_file}
        # 1. The cli file: an aliyun config.json with a StsToken profile.
        r = agent.client("fetch", "--user", pw.pw_name, "--format", "cli",
                         "--secret-file", os.path.join(aliyun, "config.json"))
        check(r.returncode == 0, "fetch --format cli: %s" % r.stderr)
        got = stslib.node(pw, "sts_calls.js", [emu.endpoint], env)
        check(got["access_key_id"].startswith("STS."), "the provider read "
              "the StsToken profile (%s)" % got.get("provider"))
        check(got["has_token"], "with its security token")
        check(got["v1"]["ok"] and got["v3"]["ok"], "calls signed v1 and v3 "
              "with it are accepted: %s" % json.dumps(got))
        # 2. credential-process as an External profile.
        with open(os.path.join(aliyun, "config.json"), "w") as f:
            json.dump({"current": "ext", "profiles": [{
                "name": "ext", "mode": "External", "region_id": "cn-hangzhou",
                "process_command": "%s --socket %s credential-process" %
                (CLIENT_BIN, agent.socket)}]}, f)
        got = stslib.node(pw, "sts_calls.js", [emu.endpoint], env)
        check(got["access_key_id"].startswith("STS.") and got["has_token"],
              "External mode got a StsToken credential from "
              "credential-process")
        check(got["v1"]["ok"] and got["v3"]["ok"], "calls signed v1 and v3 "
              "with it are accepted: %s" % json.dumps(got))
        agent.stop()


def formats():
    with Workdir() as wd, Emulator() as emu, Users("sf") as users:
        pw = users.add("dave")
        stslib.setup_role(emu, pw.pw_name)
        agent = stslib.sts_agent(wd, emu)
        agent.start()
        d = pw.pw_dir
        doc = fetch_json(agent, pw, os.path.join(d, "k.json"))
        check(sorted(doc) == ["AccessKeyId", "AccessKeySecret", "CreateDate",
                              "Expiration", "SecurityToken", "Status"],
              "json: the AccessKey fields plus SecurityToken and Expiration")
        check(parse_time(doc["Expiration"]) > time.time() + 600,
              "Expiration is the credential's")
        r = agent.client("fetch", "--user", pw.pw_name, "--format", "env",
                         "--secret-file", os.path.join(d, "k.env"))
        check(r.returncode == 0, "env written")
        out = subprocess.run(["sh", "-c", ". %s && printf '%%s\\n' "
                              "\"$ALIBABA_CLOUD_SECURITY_TOKEN\"" %
                              os.path.join(d, "k.env")],
                             capture_output=True, text=True).stdout.strip()
        check(out == doc["SecurityToken"], "env: ALIBABA_CLOUD_SECURITY_TOKEN")
        r = agent.client("fetch", "--user", pw.pw_name, "--format", "cli",
                         "--secret-file", os.path.join(d, "cfg.json"))
        prof = stslib.read_file(os.path.join(d, "cfg.json"))["profiles"][0]
        check(prof["mode"] == "StsToken" and prof["sts_token"] ==
              doc["SecurityToken"], "cli: a StsToken profile")
        r = agent.client("fetch", "--user", pw.pw_name, "--format", "ini",
                         "--secret-file", os.path.join(d, "k.ini"))
        check(r.returncode == 2 and "json" in r.stderr and "env" in
              r.stderr and "cli" in r.stderr, "ini refused (exit 2), "
              "naming the formats that work: %s" % r.stderr.strip())
        check(not os.path.exists(os.path.join(d, "k.ini")), "no ini written")
        r = agent.client("credential-process", "--user", pw.pw_name)
        ext = json.loads(r.stdout)
        check(ext["mode"] == "StsToken" and sorted(ext) == [
            "access_key_id", "access_key_secret", "expiration", "mode",
            "sts_token"], "credential-process: StsToken mode with expiration")
        r = agent.client("set-status", "--key-id", doc["AccessKeyId"],
                         "Inactive")
        check(r.returncode == 2 and "expire" in r.stderr, "set-status does "
              "not apply (exit 2, saying why): %s" % r.stderr.strip())
        st = agent.status()
        lease = st["leases"][0]
        check(lease.get("kind") == "sts" and lease.get("credential_expires"),
              "status --json: kind and credential_expires")
        r = agent.client("revoke", "--user", pw.pw_name)
        check(r.returncode == 0 and "valid at RAM until " +
              doc["Expiration"] in r.stdout, "revoke says until when the "
              "token stays valid: %s" % r.stdout.strip())
        st = agent.status()
        check(len(st["leases"]) == 1 and st["leases"][0].get("ended"),
              "status lists the ended lease whose token is still valid")
        status, _ = stslib.identity(emu, doc["AccessKeyId"],
                                    doc["AccessKeySecret"],
                                    doc["SecurityToken"])
        check(status == 200, "(STS cannot revoke it: it still works)")
        agent.stop()


def sample_credential_process(agent, pw, samples, stop_at):
    while time.time() < stop_at:
        r = agent.client("credential-process", "--user", pw.pw_name,
                         "--timeout", "3")
        now = time.time()
        if r.returncode == 0:
            ext = json.loads(r.stdout)
            samples.append((now, parse_time(ext["expiration"]) - now, None,
                            ext["access_key_id"]))
        else:
            samples.append((now, None, r.stderr.strip(), None))
        time.sleep(max(0.0, 5.0 - (time.time() - now)))


def renewal():
    with Workdir() as wd, Emulator() as emu, Users("sr") as users:
        pw = users.add("erin")
        stslib.setup_role(emu, pw.pw_name, lifetime=60)
        agent = stslib.sts_agent(wd, emu, sts_renew_before="20s",
                                 sts_duration="15m", fetch_ttl="1h")
        agent.start()
        follow_file = os.path.join(pw.pw_dir, "follow.json")
        follower = subprocess.Popen(
            as_user_cmd(pw, ["RAMKEY_SOCKET=%s" % agent.socket, CLIENT_BIN,
                             "fetch", "--follow", "--secret-file",
                             follow_file]),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        emu.reset_counters()
        t0 = time.time()
        samples = []
        follow_bad = []

        # 3 minutes of credential-process every 5 s, the --follow file
        # checked every second.
        import threading
        th = threading.Thread(target=sample_credential_process,
                              args=(agent, pw, samples, t0 + 180))
        th.start()
        while th.is_alive():
            try:
                doc = stslib.read_file(follow_file)
                left = parse_time(doc["Expiration"]) - time.time()
                if left <= 0:
                    follow_bad.append(left)
            except (OSError, ValueError, KeyError):
                if time.time() - t0 > 5:
                    follow_bad.append("unreadable")
            time.sleep(1)
        th.join()
        calls = assume_calls(emu)
        lefts = [s[1] for s in samples if s[1] is not None]
        log("credential-process: %d samples, least left %.1f s; AssumeRole "
            "calls in 180 s: %d" % (len(samples), min(lefts), calls))
        check(len(lefts) == len(samples), "every credential-process "
              "succeeded")
        check(min(lefts) >= 20, "never a credential with less than 20 s "
              "left (least %.1f s)" % min(lefts))
        # One renewal per ~40 s (60 s lifetime, renewed 20 s before),
        # shared by credential-process and --follow: about 4-5, not 36.
        check(3 <= calls <= 7, "one AssumeRole per renewal, not one per "
              "request (%d)" % calls)
        check(not follow_bad, "fetch --follow kept its file valid (%s)" %
              follow_bad)
        # STS down for 30 s, starting when the current credential has
        # about 22 s left: it runs out during the outage.
        def left_now():
            r = agent.client("credential-process", "--user", pw.pw_name)
            ext = json.loads(r.stdout)
            return parse_time(ext["expiration"]) - time.time()
        wait_for(lambda: 20.5 < left_now() <= 23.0, timeout=90, interval=0.5,
                 what="the credential to have about 22 s left")
        emu.set_action_faults("AssumeRole", for_seconds=30, throttle_every=1)
        t_down = time.time()
        samples = []
        sample_credential_process(agent, pw, samples, t_down + 45)
        ok_during = [s for s in samples if s[1] is not None and
                     s[0] < t_down + 30]
        failed = [s for s in samples if s[1] is None]
        after = [s for s in samples if s[1] is not None and s[0] > t_down + 30]
        for s in samples:
            log("  t=%5.1f left=%s err=%s" % (s[0] - t_down, s[1], s[2]))
        check(all(s[1] >= 5 for s in ok_during), "during the outage, "
              "credentials handed out have at least 5 s left")
        check(failed and all("STS" in s[2] and "Throttling.User" in s[2]
                             for s in failed),
              "then a clear failure naming STS's error (%s)" %
              (failed[0][2] if failed else "none"))
        check(after and after[0][0] - (t_down + 30) < 10, "a fresh credential "
              "within seconds of STS's return")
        follower.terminate()
        follower.wait(10)
        agent.stop()


def bounds():
    with Workdir() as wd, Emulator() as emu, Users("sb") as users:
        pw = users.add("fay")
        stslib.setup_role(emu, pw.pw_name)
        agent = stslib.sts_agent(wd, emu, max_ttl="2m", sts_duration="1h",
                                 sts_renew_before="20m", fetch_ttl="2m")
        agent.start()
        emu.reset_counters()
        t0 = time.time()
        worst = 0
        ends = set()
        while time.time() < t0 + 117:
            r = agent.client("credential-process", "--user", pw.pw_name,
                             "--ttl", "2m")
            if r.returncode == 0:
                ext = json.loads(r.stdout)
                worst = max(worst, parse_time(ext["expiration"]))
            st = agent.status(pw.pw_name)
            for lease in st["leases"]:
                if lease.get("expires"):
                    ends.add(parse_time(lease["expires"]))
            time.sleep(1)
        check(len(ends) == 1, "one lease (ends at %s)" % sorted(ends))
        lease_end = ends.pop()
        check(abs(lease_end - (t0 + 120)) < 5, "the lease ends at 2 minutes")
        check(worst <= lease_end + 15 * 60, "no credential expires more than "
              "15 minutes after the lease ends (%d s after)" %
              (worst - lease_end))
        calls = assume_calls(emu)
        check(calls == 1, "requests every second over those 2 minutes "
              "caused one AssumeRole, not one per request (%d)" % calls)
        wait_for(lambda: time.time() > lease_end + 2, timeout=30)
        st = agent.status(pw.pw_name)
        check(st["leases"] and all(lease.get("ended") for lease in
                                   st["leases"]),
              "at 2 minutes the lease has ended (its token is listed "
              "until it expires)")
        agent.stop()


def gpg(home, *args, data=None):
    r = subprocess.run(["gpg", "--batch", "--homedir", home, "--pinentry-mode",
                        "loopback", "--passphrase", ""] + list(args),
                       input=data, capture_output=True)
    if r.returncode != 0:
        raise AssertionError("gpg %s failed: %s" % (" ".join(args),
                                                    r.stderr.decode()))
    return r.stdout


def pgp():
    with Workdir() as wd, Emulator() as emu, Users("sg") as users:
        pw = users.add("erin")
        stslib.setup_role(emu, pw.pw_name)
        agent = stslib.sts_agent(wd, emu)
        agent.start()
        home = tempfile.mkdtemp(prefix="stsgpg-")
        try:
            gpg(home, "--quick-gen-key", "STS Test <sts@ramkey.test>",
                "ed25519", "cert,sign", "never")
            fpr = [ln.split(":")[9] for ln in gpg(
                home, "--with-colons", "--list-keys").decode().splitlines()
                if ln.startswith("fpr:")][0]
            gpg(home, "--quick-add-key", fpr, "cv25519", "encr", "never")
            key = os.path.join(pw.pw_dir, "erin.asc")
            with open(key, "wb") as f:
                f.write(gpg(home, "--export", "--armor", fpr))
            os.chown(key, pw.pw_uid, pw.pw_gid)
            path = os.path.join(pw.pw_dir, "k.json")
            doc = fetch_json(agent, pw, path, "--pgp-key", "@" + key)
            check(sorted(doc) == ["AccessKeyId", "CreateDate",
                                  "EncryptedSecret", "Expiration",
                                  "KeyFingerprint", "SecurityToken",
                                  "Status"], "json with the secret "
                  "encrypted: %s" % sorted(doc))
            check(doc["KeyFingerprint"] == fpr.lower(), "KeyFingerprint is "
                  "the key's (%s)" % doc["KeyFingerprint"])
            secret = gpg(home, "--decrypt", data=base64.b64decode(
                doc["EncryptedSecret"])).decode()
            with open(path) as f:
                check(secret not in f.read(), "the secret is not in the "
                      "file in clear")
            status, body = stslib.identity(emu, doc["AccessKeyId"], secret,
                                           doc["SecurityToken"])
            check(status == 200 and body.get("Arn", "").startswith(
                "acs:ram::%s:assumed-role/" % emu.account_id),
                "gpg --decrypt gives the STS secret; with the id and token "
                "it works (%s)" % body.get("Arn"))
            check(assume_calls(emu) == 1, "one AssumeRole")
        finally:
            subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"],
                           capture_output=True)
            shutil.rmtree(home, ignore_errors=True)
        agent.stop()


def main():
    require_root()
    what = sys.argv[1]
    {"ten_hosts": ten_hosts, "consumers": consumers, "formats": formats,
     "renewal": renewal, "bounds": bounds, "pgp": pgp}[what]()
    log("PASS: sts.%s" % what)


if __name__ == "__main__":
    main()
