#!/usr/bin/env python3
"""emulator.imds: the ECS instance metadata service on a listener of its
own. Token (PUT /latest/api/token), role name and the role's credential
(pretty-printed JSON, Code Success), token required unless token-less access
is allowed (401 otherwise), credentials that rotate every N seconds and live
M seconds and work on the RAM and STS sides as the instance role (subject to
its permissions), stop (refuse, close, hang) and start without losing state,
counters and request times, and the real address 100.100.100.200:80 inside
a private network namespace."""

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join(HERE, "..", "lib")
sys.path.insert(0, LIB)

import ramsign  # noqa: E402
from emulator import Emulator, EmulatorError  # noqa: E402

BASE = "/latest/meta-data/ram/security-credentials/"
ROLE = "ramkey-instance"
DOC_RE = re.compile(
    r'^\{\n  "AccessKeyId" : "STS\.[A-Za-z0-9]+",\n  "AccessKeySecret" : "[A-Za-z0-9]+",\n'
    r'  "Expiration" : "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",\n  "SecurityToken" : "CAIS[^"]+",\n'
    r'  "LastUpdated" : "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",\n  "Code" : "Success"\n\}$')


class Imds(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(https=True, auto_users=True, imds=True)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def setUp(self):
        self.emu.imds_start()
        self.emu.set_imds(role=ROLE, require_token=True, rotate_every=3600, lifetime=21600,
                          latency_ms=0)
        self.emu.imds_rotate()
        self.emu.imds_reset_counters()

    def get(self, path, token=None, **kw):
        return self.emu.imds_request("GET", path, token, **kw)

    def test_token_role_name_and_document(self):
        emu = self.emu
        self.assertIsInstance(emu.imds_port, int)
        self.assertEqual(emu.imds_endpoint, "http://127.0.0.1:%d" % emu.imds_port)
        with open(emu.ready_file) as f:
            ready = json.load(f)
        self.assertEqual((ready["imds_host"], ready["imds_port"]), ("127.0.0.1", emu.imds_port))
        st, token, hdr = emu.imds_request("PUT", "/latest/api/token", ttl=21600)
        self.assertEqual(st, 200)
        self.assertTrue(token and token.strip() == token)
        self.assertEqual(hdr["X-aliyun-ecs-metadata-token-ttl-seconds"], "21600")
        st, text, hdr = self.get(BASE, token)
        self.assertEqual((st, text), (200, ROLE))
        self.assertEqual(hdr["Content-Type"], "text/plain")
        self.assertEqual(self.get(BASE.rstrip("/"), token)[:2], (200, ROLE))
        st, text, hdr = self.get(BASE + ROLE, token)
        self.assertEqual(st, 200, text)
        self.assertRegex(text, DOC_RE)
        doc = json.loads(text)
        self.assertEqual(list(doc), ["AccessKeyId", "AccessKeySecret", "Expiration",
                                     "SecurityToken", "LastUpdated", "Code"])
        # Expiration is rounded up to a whole second, LastUpdated down.
        self.assertIn(ramsign.parse_timestamp(doc["Expiration"]) -
                      ramsign.parse_timestamp(doc["LastUpdated"]), (21600, 21601))
        self.assertEqual(emu.imds_settings()["current"]["AccessKeyId"], doc["AccessKeyId"])
        self.assertEqual(self.get(BASE + "other-role", token)[0], 404)
        self.assertEqual(self.get("/latest/meta-data/instance-id", token)[:2],
                         (200, emu.imds_settings()["instance_id"]))
        self.assertEqual(self.get("/latest/meta-data/no/such/thing", token)[0], 404)
        self.assertEqual(emu.imds_credentials(), doc)          # the wrapper's SDK-like fetch
        # The role exists at RAM with an ECS trust, so nobody else assumes it.
        role = [r for r in emu.roles() if r["RoleName"] == ROLE][0]
        self.assertEqual(role["trusted"], ["service/ecs.aliyuncs.com"])
        self.assertEqual(emu.assume_role(ROLE)[1]["Code"], "NoPermission")

    def test_token_rules(self):
        emu = self.emu
        for path in (BASE, BASE + ROLE, "/latest/meta-data/instance-id"):
            with self.subTest(path=path):
                self.assertEqual(self.get(path)[0], 401)                      # no token
                self.assertEqual(self.get(path, "not-a-token")[0], 401)
        for ttl in ("0", "21601", "abc", "-1", ""):
            with self.subTest(ttl=ttl):
                st, _, _ = emu.imds_request("PUT", "/latest/api/token", ttl=ttl)
                self.assertEqual(st, 400)
        self.assertEqual(emu.imds_request("PUT", "/latest/api/token")[0], 400)   # no ttl
        self.assertEqual(emu.imds_request("GET", "/latest/api/token", ttl=60)[0], 405)
        self.assertEqual(emu.imds_request("POST", BASE, emu.imds_token())[0], 405)
        short = emu.imds_token(ttl=1)
        self.assertEqual(self.get(BASE, short)[0], 200)
        time.sleep(1.1)
        self.assertEqual(self.get(BASE, short)[0], 401)                      # expired
        # token-less (v1) access when allowed; a bad token still fails
        emu.set_imds(require_token=False)
        self.assertEqual(self.get(BASE)[:2], (200, ROLE))
        self.assertEqual(json.loads(self.get(BASE + ROLE)[1])["Code"], "Success")
        self.assertEqual(self.get(BASE, "bogus")[0], 401)
        self.assertEqual(emu.imds_credentials(token=None)["Code"], "Success")
        c = emu.imds_counters()
        self.assertEqual(c["token_invalid"], 4)
        self.assertEqual(c["token_expired"], 1)
        self.assertEqual(c["by_status"]["401"], 8)
        self.assertEqual(c["with_token"] + c["without_token"], c["requests"])
        self.assertEqual(c["token_puts"], 8)

    def test_credentials_are_the_instance_roles(self):
        emu = self.emu
        doc = emu.imds_credentials()
        kid, secret, token = doc["AccessKeyId"], doc["AccessKeySecret"], doc["SecurityToken"]
        st, who = emu.caller_identity(kid, secret, token)
        self.assertEqual(st, 200, who)
        iid = emu.imds_settings()["instance_id"]
        self.assertEqual((who["IdentityType"], who["Arn"]),
                         ("AssumedRoleUser", "acs:ram::%s:assumed-role/%s/%s"
                          % (emu.account_id, ROLE, iid)))
        for sig in ("v1", "v3"):
            st, body = emu.call("CreateAccessKey", {"UserName": "imds-u-" + sig}, kid, secret,
                                sig, security_token=token)
            self.assertEqual(st, 200, body)
        self.assertTrue(all(e["role"] == ROLE and e["principal_kind"] == "role_session"
                            for e in emu.log(action="CreateAccessKey", last=2)))
        emu.set_permissions("role/" + ROLE, ["sts:AssumeRole"])
        try:
            st, body = emu.call("CreateAccessKey", {"UserName": "imds-u-3"}, kid, secret, "v3",
                                security_token=token)
            self.assertEqual((st, body["Code"]), (403, "NoPermission"))
        finally:
            emu.clear_permissions("role/" + ROLE)
        self.assertEqual(emu.sessions(ROLE)[-1]["source"], "imds")

    def test_rotation_and_lifetime(self):
        emu = self.emu
        emu.set_imds(rotate_every=1, lifetime=2)
        emu.imds_rotate()
        token = emu.imds_token()
        a = json.loads(self.get(BASE + ROLE, token)[1])
        t0 = time.time()
        self.assertIn(ramsign.parse_timestamp(a["Expiration"]) -
                      ramsign.parse_timestamp(a["LastUpdated"]), (2, 3))
        again = json.loads(self.get(BASE + ROLE, token)[1])
        self.assertEqual(again, a)                          # the same until rotation
        time.sleep(max(0.0, 1.1 - (time.time() - t0)))
        b = json.loads(self.get(BASE + ROLE, token)[1])
        self.assertNotEqual(b["AccessKeyId"], a["AccessKeyId"])
        self.assertGreater(b["LastUpdated"], a["LastUpdated"])
        # the old one stays valid until its own Expiration, then it is refused
        self.assertEqual(emu.caller_identity(a["AccessKeyId"], a["AccessKeySecret"],
                                             a["SecurityToken"])[0], 200)
        time.sleep(max(0.0, 3.1 - (time.time() - t0)))
        st, body = emu.caller_identity(a["AccessKeyId"], a["AccessKeySecret"],
                                       a["SecurityToken"], signature="v1")
        self.assertEqual((st, body["Code"]), (400, "InvalidSecurityToken.Expired"))
        # a forced rotation
        c = emu.imds_rotate()["current"]
        self.assertNotIn(c["AccessKeyId"], (a["AccessKeyId"], b["AccessKeyId"]))
        self.assertEqual(emu.imds_credentials()["AccessKeyId"], c["AccessKeyId"])
        # lifetime shorter than rotation: an expired one is handed out, as a
        # stale service would
        emu.set_imds(rotate_every=3600, lifetime=0.5)
        d = emu.imds_rotate()["current"]
        time.sleep(1.6)
        self.assertEqual(emu.imds_credentials()["AccessKeyId"], d["AccessKeyId"])
        self.assertEqual(emu.caller_identity(d["AccessKeyId"], d["AccessKeySecret"],
                                             d["SecurityToken"])[1]["Code"],
                         "InvalidSecurityToken.Expired")

    def test_stop_and_start_keep_state(self):
        emu = self.emu
        token = emu.imds_token()
        before = emu.imds_credentials(token)
        s = emu.imds_stop("refuse")
        self.assertEqual((s["stopped"], s["listening"]), ("refuse", False))
        with self.assertRaises(ConnectionRefusedError):
            self.get(BASE, token)
        s = emu.imds_start()
        self.assertEqual((s["stopped"], s["listening"], s["port"]), (None, True, emu.imds_port))
        self.assertEqual(emu.imds_credentials(token), before)     # token and credential kept
        emu.imds_stop("close")
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionResetError)):
            self.get(BASE, token)
        emu.imds_stop("hang")
        t0 = time.monotonic()
        with self.assertRaises(socket.timeout):
            self.get(BASE, token, timeout=0.5)
        self.assertGreaterEqual(time.monotonic() - t0, 0.45)
        emu.imds_start()
        self.assertEqual(emu.imds_credentials(token), before)
        c = emu.imds_counters()
        self.assertEqual(c["dropped"], 2)
        self.assertEqual(c["by_status"]["dropped"], 2)
        self.assertEqual([r["dropped"] for r in c["log"] if r["dropped"]], ["close", "hang"])
        with self.assertRaises(EmulatorError) as cm:
            emu.imds_stop("sideways")
        self.assertEqual(cm.exception.status, 400)

    def test_counters_and_request_times(self):
        emu = self.emu
        token = emu.imds_token()
        t0 = time.time()
        for _ in range(3):
            self.get(BASE + ROLE, token)
            time.sleep(0.2)
        self.get(BASE, token)
        self.get(BASE)
        c = emu.imds_counters()
        self.assertEqual((c["requests"], c["with_token"], c["without_token"], c["token_puts"],
                          c["credential_fetches"]), (6, 4, 2, 1, 3))
        self.assertEqual(c["by_path"], {"/latest/api/token": 1, BASE + ROLE: 3, BASE: 2})
        self.assertEqual(c["by_status"], {"200": 5, "401": 1})
        self.assertEqual(len(c["times"]), 6)
        ft = c["credential_times"]
        self.assertEqual(len(ft), 3)
        self.assertTrue(all(t >= t0 for t in ft))
        self.assertTrue(all(0.19 <= b - a <= 1.0 for a, b in zip(ft, ft[1:])), ft)
        self.assertEqual(c["log"][0]["path"], "/latest/api/token")
        self.assertEqual([r["token"] for r in c["log"]],
                         ["none", "valid", "valid", "valid", "valid", "none"])
        self.assertGreaterEqual(c["connections_accepted"], 6)
        # The API counters are separate.
        self.assertNotIn("requests", emu.counters())
        emu.imds_reset_counters()
        c = emu.imds_counters()
        self.assertEqual((c["requests"], c["times"], c["by_path"]), (0, [], {}))

    def test_no_role_and_latency(self):
        emu = self.emu
        token = emu.imds_token()
        emu.set_imds(role=None)
        self.assertEqual(self.get(BASE, token)[0], 404)
        self.assertEqual(self.get(BASE + ROLE, token)[0], 404)
        with self.assertRaises(EmulatorError):
            emu.imds_rotate()
        emu.set_imds(role="other-instance-role", latency_ms=300)
        t0 = time.monotonic()
        self.assertEqual(self.get(BASE, token)[:2], (200, "other-instance-role"))
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        doc = emu.imds_credentials(token)
        st, who = emu.caller_identity(doc["AccessKeyId"], doc["AccessKeySecret"],
                                      doc["SecurityToken"])
        self.assertIn(":assumed-role/other-instance-role/", who["Arn"])
        for bad in ({"role": "bad_name"}, {"require_token": "no"}, {"rotate_every": 0},
                    {"lifetime": -1}, {"instance_id": "x"}, {"colour": 1}):
            with self.subTest(bad=bad), self.assertRaises(EmulatorError) as cm:
                emu.set_imds(**bad)
            self.assertEqual(cm.exception.status, 400)


class CommandLine(unittest.TestCase):
    def test_options(self):
        with Emulator(imds="127.0.0.1:0", imds_role="cli-role",
                      extra_args=["--imds-v1", "--imds-rotate-every", "1",
                                  "--imds-lifetime", "5"]) as emu:
            s = emu.imds_settings()
            self.assertEqual((s["role"], s["require_token"], s["rotate_every"], s["lifetime"],
                              s["enabled"]), ("cli-role", False, 1, 5, True))
            self.assertEqual(emu.imds_request("GET", BASE)[:2], (200, "cli-role"))
        with Emulator() as emu:
            self.assertIsNone(emu.imds_endpoint)
            self.assertFalse(emu.imds_settings()["enabled"])
            with self.assertRaises(EmulatorError) as cm:
                emu.imds_stop()
            self.assertEqual(cm.exception.status, 400)
            self.assertNotIn(ROLE, [r["RoleName"] for r in emu.roles()])


CHILD = r"""
import http.client, json, subprocess, sys
sys.path.insert(0, sys.argv[1])
from emulator import Emulator
for cmd in (["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", "100.100.100.200/32", "dev", "lo"]):
    subprocess.run(cmd, check=True)
with Emulator(imds="100.100.100.200:80") as emu:
    assert emu.imds_endpoint == "http://100.100.100.200:80", emu.imds_endpoint
    c = http.client.HTTPConnection("100.100.100.200", 80, timeout=5)
    c.request("PUT", "/latest/api/token",
              headers={"X-aliyun-ecs-metadata-token-ttl-seconds": "60"})
    token = c.getresponse().read().decode()
    c.request("GET", "/latest/meta-data/ram/security-credentials/",
              headers={"X-aliyun-ecs-metadata-token": token})
    role = c.getresponse().read().decode()
    c.request("GET", "/latest/meta-data/ram/security-credentials/" + role,
              headers={"X-aliyun-ecs-metadata-token": token})
    doc = json.loads(c.getresponse().read())
    st, who = emu.caller_identity(doc["AccessKeyId"], doc["AccessKeySecret"],
                                  doc["SecurityToken"])
    assert st == 200 and who["IdentityType"] == "AssumedRoleUser", who
    print("OK", role)
"""


class NetworkNamespace(unittest.TestCase):
    def test_real_address(self):
        unshare, ip = shutil.which("unshare"), shutil.which("ip")
        if not unshare or not ip:
            self.skipTest("needs unshare(1) and ip(8)")
        flags = "-n" if os.geteuid() == 0 else "-rn"
        probe = subprocess.run([unshare, flags, "true"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        if probe.returncode != 0:
            self.skipTest("cannot create a network namespace: %s"
                          % probe.stderr.decode(errors="replace").strip())
        r = subprocess.run([unshare, flags, sys.executable, "-c", CHILD, LIB],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        self.assertEqual(r.stdout.decode().split(), ["OK", ROLE])


if __name__ == "__main__":
    unittest.main()
