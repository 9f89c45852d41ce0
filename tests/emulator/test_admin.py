#!/usr/bin/env python3
"""emulator.admin: the /_emu/ endpoints (state dump, request log, counters,
users, direct keys, health) and the command line (--help, ready file,
options given at start, TLS material reuse, clean stop on SIGTERM); the
emulator's files describe themselves without pointing outside the
repository."""

import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import ramsign  # noqa: E402
from emulator import RAMEMU, Emulator, EmulatorError  # noqa: E402

DATE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
LOG_FIELDS = {"t", "action", "user", "access_key_id", "nonce", "signature_version", "method",
              "result", "http_status", "fault", "key_id"}


class AdminEndpoints(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(https=True, auto_users=False)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def test_state_dump(self):
        emu = self.emu
        self.assertEqual(emu.create_user("alice")["created"], True)
        self.assertEqual(emu.create_user("alice")["created"], False)
        st, body = emu.call("CreateAccessKey", {"UserName": "alice"})
        self.assertEqual(st, 200, body)
        minted = body["AccessKey"]
        direct = emu.create_key("alice")
        self.assertEqual(direct["created_by"], "direct")
        self.assertEqual(direct["UserName"], "alice")
        s = emu.state()
        self.assertTrue(set(s) >= {"users", "deleted_keys", "now", "account_id", "groups",
                                   "roles", "sessions_live"}, s)
        self.assertEqual(s["account_id"], "1234567890123456")
        self.assertRegex(s["now"], DATE_RE)
        keys = s["users"]["alice"]["keys"]
        self.assertEqual([k["created_by"] for k in keys], ["admin", "direct"])
        self.assertEqual(keys[0], {"AccessKeyId": minted["AccessKeyId"],
                                   "AccessKeySecret": minted["AccessKeySecret"],
                                   "Status": "Active", "CreateDate": minted["CreateDate"],
                                   "created_by": "admin"})
        # the direct key works for the API too
        st, body = emu.call("ListAccessKeys", {}, direct["AccessKeyId"],
                            direct["AccessKeySecret"], "v3")
        self.assertEqual(st, 200, body)
        # status and delete through the admin endpoints
        emu.set_key_status("alice", direct["AccessKeyId"], "Inactive")
        self.assertEqual(emu.key(direct["AccessKeyId"])["Status"], "Inactive")
        self.assertEqual(emu.key(direct["AccessKeyId"])["UserName"], "alice")
        emu.delete_key("alice", direct["AccessKeyId"])
        self.assertIsNone(emu.key(direct["AccessKeyId"]))
        d = emu.state()["deleted_keys"][-1]
        self.assertEqual((d["AccessKeyId"], d["UserName"]), (direct["AccessKeyId"], "alice"))
        self.assertRegex(d["deleted_at"], DATE_RE)
        self.assertEqual(len(emu.keys_of("alice")), 1)
        self.assertEqual(emu.keys_of("nobody"), [])

    def test_admin_errors(self):
        emu = self.emu
        with self.assertRaises(EmulatorError) as cm:
            emu.create_key("ghost")                      # no auto users here
        self.assertEqual((cm.exception.status, cm.exception.body["Code"]),
                         (404, "EntityNotExist.User"))
        emu.create_user("bob")
        emu.create_key("bob")
        emu.create_key("bob")
        with self.assertRaises(EmulatorError) as cm:
            emu.create_key("bob")
        self.assertEqual((cm.exception.status, cm.exception.body["Code"]),
                         (409, "LimitExceeded.User.AccessKey"))
        with self.assertRaises(EmulatorError) as cm:
            emu.delete_key("bob", "LTAInotakey")
        self.assertEqual(cm.exception.status, 404)
        with self.assertRaises(EmulatorError) as cm:
            emu.set_key_status("bob", emu.keys_of("bob")[0]["AccessKeyId"], "Maybe")
        self.assertEqual(cm.exception.status, 400)
        with self.assertRaises(EmulatorError) as cm:
            emu.admin("POST", "/_emu/users", {"nom": "x"})
        self.assertEqual(cm.exception.status, 400)
        with self.assertRaises(EmulatorError) as cm:
            emu.create_user("bad name")
        self.assertEqual(cm.exception.status, 400)

    def test_log_and_counters(self):
        emu = self.emu
        emu.create_user("carol")
        emu.reset_counters()
        t0 = time.time()
        nonce = ramsign.new_nonce()
        st, body = emu.call("CreateAccessKey", {"UserName": "carol"}, nonce=nonce,
                            signature="v3", method="POST")
        self.assertEqual(st, 200)
        kid = body["AccessKey"]["AccessKeyId"]
        emu.call("GetUser", {"UserName": "carol"}, secret="wrong")
        emu.state()
        emu.counters()
        emu.faults()
        emu.health()                                     # admin calls: not logged, not counted
        log = emu.log(since=t0)
        self.assertEqual(len(log), 2)
        e = log[0]
        self.assertTrue(LOG_FIELDS <= set(e), e)
        self.assertEqual(
            (e["action"], e["user"], e["access_key_id"], e["nonce"], e["signature_version"],
             e["method"], e["result"], e["http_status"], e["fault"], e["key_id"]),
            ("CreateAccessKey", "carol", emu.admin_key_id, nonce, "v3", "POST", "OK", 200, None,
             kid))
        self.assertGreaterEqual(e["t"], t0)
        self.assertEqual((log[1]["action"], log[1]["result"], log[1]["http_status"],
                          log[1]["signature_version"]),
                         ("GetUser", "SignatureDoesNotMatch", 400, "v1"))
        self.assertEqual(emu.log(last=1), log[-1:])
        c = emu.counters()
        self.assertEqual(c["calls"], {"CreateAccessKey": 1, "GetUser": 1})
        self.assertEqual(c["calls_total"], 2)
        self.assertEqual(c["results"], {"OK": 1, "SignatureDoesNotMatch": 1})
        self.assertEqual(c["faults"], {"error_5xx": 0, "throttle": 0, "reset": 0, "down": 0})
        self.assertEqual(c["faults_total"], 0)
        self.assertEqual(c["connections_opened"], 2)
        for k in ("in_flight", "in_flight_total", "in_flight_peak", "in_flight_peak_by_action"):
            self.assertIn(k, c)
        emu.reset_counters()
        c = emu.counters()
        self.assertEqual((c["calls"], c["calls_total"], c["results"], c["connections_opened"]),
                         ({}, 0, {}, 0))

    def test_health_and_faults_roundtrip(self):
        self.assertEqual(self.emu.health(), {"ok": True})
        f = self.emu.set_faults(latency_ms=5, error_rate=0.25, throttle_every=4)
        self.assertEqual((f["latency_ms"], f["error_rate"], f["throttle_every"]), (5, 0.25, 4))
        self.assertEqual(self.emu.faults()["error_rate"], 0.25)
        f = self.emu.clear_faults()
        for k in ("latency_ms", "latency_by_action", "error_rate", "throttle_every", "reset_rate",
                  "shell_secrets", "down_for", "down_mode", "fail_all"):
            self.assertIn(k, f)
        self.assertEqual((f["latency_ms"], f["error_rate"], f["throttle_every"], f["fail_all"]),
                         (0, 0.0, 0, None))


class CommandLine(unittest.TestCase):
    def test_help_describes_every_option(self):
        out = subprocess.run([sys.executable, RAMEMU, "--help"], stdout=subprocess.PIPE,
                             check=True, timeout=30).stdout.decode()
        for opt in ("--host", "--https-port", "--http-port", "--tls-dir", "--admin-key-id",
                    "--admin-secret", "--auto-users", "--users", "--latency-ms",
                    "--latency-by-action", "--seed", "--error-rate", "--throttle-every",
                    "--reset-rate", "--shell-secrets", "--down-for", "--down-mode",
                    "--fail-all", "--ready-file", "--exit-with-parent", "--verbose",
                    "--account-id", "--roles", "--sts-lifetime", "--imds-listen",
                    "--imds-role", "--imds-v1", "--imds-rotate-every", "--imds-lifetime"):
            self.assertIn(opt, out)
        for endpoint in ("/_emu/state", "/_emu/log", "/_emu/faults", "action_faults",
                         "/_emu/users", "/_emu/keys", "create_date", "/_emu/groups",
                         "/_emu/groups/members", "/_emu/roles", "/_emu/permissions",
                         "/_emu/sts", "/_emu/sessions", "/_emu/imds", "/_emu/imds/stop",
                         "/_emu/imds/start", "/_emu/imds/rotate", "/_emu/imds/counters",
                         "/_emu/imds/reset_counters", "/latest/api/token",
                         "100.100.100.200", "AssumeRole", "GetCallerIdentity", "ListUsers",
                         "ListUsersForGroup", "x-acs-security-token", "SecurityToken"):
            self.assertIn(endpoint, out)

    def test_no_references_outside_the_repository(self):
        lib = os.path.join(HERE, "..", "lib")
        files = [os.path.join(HERE, n) for n in sorted(os.listdir(HERE))
                 if n.endswith((".py", ".md", ".txt"))]
        files += [os.path.join(lib, n) for n in ("emulator.py", "ramsign.py")]
        self.assertIn(os.path.join(HERE, "README.md"), files)
        # (spelled in pieces so that this file does not contain them)
        outside = ["ramkey" + "-specs", "/work" + "/", "ref/" + "ram-api",
                   "ref/" + "sts-and-imds", "DES" + "IGN.md", "/tmp/" + "ramkey"]
        for path in files:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for bad in outside:
                with self.subTest(file=os.path.basename(path), ref=bad):
                    self.assertFalse(bad in text, "%s mentions %s" % (path, bad))

    def test_imds_option_in_the_ready_file(self):
        with tempfile.TemporaryDirectory() as d:
            ready = os.path.join(d, "r")
            p = subprocess.Popen([sys.executable, RAMEMU, "--https-port", "-1", "--ready-file",
                                  ready, "--imds-listen", "127.0.0.1:0"],
                                 stdout=subprocess.PIPE)
            try:
                info = json.loads(p.stdout.readline())
                self.assertEqual(set(info), {"pid", "https_port", "http_port", "ca_file",
                                             "admin_key_id", "admin_secret", "imds_host",
                                             "imds_port"})
                self.assertEqual(info["imds_host"], "127.0.0.1")
                conn = http.client.HTTPConnection("127.0.0.1", info["imds_port"], timeout=10)
                conn.request("PUT", "/latest/api/token",
                             headers={"X-aliyun-ecs-metadata-token-ttl-seconds": "10"})
                self.assertEqual(conn.getresponse().status, 200)
                conn.close()
                p.send_signal(signal.SIGTERM)
                self.assertEqual(p.wait(10), 0)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                p.stdout.close()

    def test_start_options_ready_file_and_sigterm(self):
        with tempfile.TemporaryDirectory() as d:
            ready = os.path.join(d, "ready.json")
            tls = os.path.join(d, "tls")
            args = [sys.executable, RAMEMU, "--https-port", "0", "--http-port", "-1",
                    "--tls-dir", tls, "--ready-file", ready, "--users", "ann,ben",
                    "--admin-key-id", "LTAIfixedAdminKeyId00001", "--admin-secret", "s3cret",
                    "--fail-all", "fail", "--latency-by-action", '{"GetUser": 1}']
            p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                line = p.stdout.readline()
                info = json.loads(line)
                with open(ready) as f:
                    self.assertEqual(json.load(f), info)
                self.assertEqual(set(info), {"pid", "https_port", "http_port", "ca_file",
                                             "admin_key_id", "admin_secret"})
                self.assertEqual((info["pid"], info["http_port"]), (p.pid, None))
                self.assertEqual(info["ca_file"], os.path.join(tls, "ca.pem"))
                self.assertEqual((info["admin_key_id"], info["admin_secret"]),
                                 ("LTAIfixedAdminKeyId00001", "s3cret"))
                self.assertEqual(os.stat(os.path.join(tls, "server.key")).st_mode & 0o077, 0)
                with open(info["ca_file"]) as f:
                    ca_before = f.read()
                req = ramsign.build_request("127.0.0.1:%d" % info["https_port"], "GetUser",
                                            {"UserName": "ann"}, info["admin_key_id"], "s3cret")
                ctx = ssl.create_default_context(cafile=info["ca_file"])
                conn = http.client.HTTPSConnection("127.0.0.1", info["https_port"], context=ctx,
                                                   timeout=10)
                conn.request(req.method, req.target, headers=req.headers)
                r = conn.getresponse()
                self.assertEqual(r.status, 503)              # --fail-all fail
                r.read()
                conn.request("POST", "/_emu/faults", body=b'{"fail_all": null}')
                r = conn.getresponse()
                f = json.loads(r.read())
                self.assertEqual(f["latency_by_action"], {"GetUser": 1})
                conn.request("GET", "/_emu/state")
                s = json.loads(conn.getresponse().read())
                self.assertEqual(sorted(s["users"]), ["ann", "ben"])
                conn.close()
                p.send_signal(signal.SIGTERM)
                self.assertEqual(p.wait(10), 0)
                self.assertFalse(os.path.exists(ready))
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                p.stdout.close()
                p.stderr.close()
            # The TLS material is reused by the next start.
            with Emulator(workdir=d, extra_args=["--tls-dir", tls]) as emu:
                self.assertEqual(emu.ca_file, os.path.join(tls, "ca.pem"))
                with open(emu.ca_file) as f:
                    self.assertEqual(f.read(), ca_before)
                self.assertEqual(emu.call("GetUser", {"UserName": "x"})[0], 200)
                pid = emu.pid
            self.assertFalse(emu.running())
            with self.assertRaises(ProcessLookupError):
                os.kill(pid, 0)

    def test_bad_options(self):
        for args in (["--error-rate", "2"], ["--https-port", "-1", "--http-port", "-1"],
                     ["--down-mode", "sideways"], ["--latency-by-action", "{bad"],
                     ["--imds-listen", "nowhere"], ["--imds-listen", "127.0.0.1:70000"],
                     ["--account-id", "12ab"], ["--sts-lifetime", "0"],
                     ["--roles", "bad_role"], ["--imds-role", "bad_role"],
                     ["--imds-rotate-every", "-1"]):
            with self.subTest(args=args):
                r = subprocess.run([sys.executable, RAMEMU] + args, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, timeout=30)
                self.assertEqual(r.returncode, 2, r.stderr)

    def test_exit_with_parent(self):
        # A parent (sh) starts the emulator in the background and is killed:
        # the emulator notices and stops on its own.
        with tempfile.TemporaryDirectory() as d:
            ready = os.path.join(d, "r")
            sh = subprocess.Popen(["sh", "-c", '"$0" "$1" --https-port -1 --ready-file "$2" '
                                   "--exit-with-parent >/dev/null & wait",
                                   sys.executable, RAMEMU, ready])
            try:
                deadline = time.monotonic() + 20
                while not os.path.exists(ready):
                    self.assertLess(time.monotonic(), deadline)
                    time.sleep(0.02)
                with open(ready) as f:
                    pid = json.load(f)["pid"]
            finally:
                sh.kill()
                sh.wait()
            deadline = time.monotonic() + 5
            while True:
                try:
                    with open("/proc/%d/stat" % pid) as f:
                        if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                            break               # exited, not reaped (yet)
                except (FileNotFoundError, ProcessLookupError):
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    self.fail("emulator outlived its parent")
                time.sleep(0.05)

    def test_sigint_stops(self):
        with tempfile.TemporaryDirectory() as d:
            p = subprocess.Popen([sys.executable, RAMEMU, "--https-port", "-1", "--ready-file",
                                  os.path.join(d, "r")], stdout=subprocess.PIPE)
            try:
                info = json.loads(p.stdout.readline())
                self.assertIsNone(info["https_port"])
                self.assertIsNone(info["ca_file"])
                p.send_signal(signal.SIGINT)
                self.assertEqual(p.wait(10), 0)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                p.stdout.close()


if __name__ == "__main__":
    unittest.main()
