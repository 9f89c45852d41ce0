#!/usr/bin/env python3
"""emulator.auth: who the emulator lets in. Correctly signed v1/v3 GET/POST
requests from the admin key and from minted keys are accepted; wrong
secrets, replayed nonces, stale timestamps, Inactive/deleted/unknown keys and
minted keys overstepping their rights are refused with RAM's codes."""

import http.client
import os
import re
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import ramsign  # noqa: E402
from emulator import Emulator  # noqa: E402

VARIANTS = [("v1", "GET", None), ("v1", "POST", None), ("v3", "GET", None),
            ("v3", "POST", None), ("v1", "POST", "query"), ("v3", "POST", "query")]
ERROR_FIELDS = {"RequestId", "HostId", "Code", "Message", "Recommend"}
UUID_RE = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")


class Auth(unittest.TestCase):
    emu = None
    counter = 0

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(https=True, auto_users=True)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def user(self):
        Auth.counter += 1
        return "user%d" % Auth.counter

    def assertError(self, resp, status, code):
        st, body = resp
        self.assertEqual((st, body.get("Code")), (status, code), body)
        self.assertEqual(set(body), ERROR_FIELDS)
        self.assertRegex(body["RequestId"], UUID_RE)
        self.assertEqual(body["HostId"], "ram.aliyuncs.com")
        self.assertTrue(body["Message"])
        self.assertIn(code, body["Recommend"])
        return body

    def minted(self, user):
        st, body = self.emu.call("CreateAccessKey", {"UserName": user})
        self.assertEqual(st, 200, body)
        return body["AccessKey"]

    # -- accepted ---------------------------------------------------------
    def test_admin_key_all_variants(self):
        for sig, method, where in VARIANTS:
            with self.subTest(sig=sig, method=method, params_in=where):
                u = self.user()
                st, body = self.emu.call("CreateAccessKey", {"UserName": u}, signature=sig,
                                         method=method, params_in=where)
                self.assertEqual(st, 200, body)
                self.assertEqual(body["AccessKey"]["Status"], "Active")
                self.assertEqual(self.emu.keys_of(u)[0]["AccessKeyId"],
                                 body["AccessKey"]["AccessKeyId"])
                entry = self.emu.log(last=1)[0]
                self.assertEqual((entry["signature_version"], entry["method"], entry["result"]),
                                 (sig, method, "OK"))

    def test_admin_key_over_plain_http(self):
        for sig in ("v1", "v3"):
            st, body = self.emu.call("GetUser", {"UserName": self.user()}, signature=sig,
                                     use_http=True)
            self.assertEqual(st, 200, body)

    def test_minted_key_all_variants(self):
        u = self.user()
        k = self.minted(u)
        for sig, method, where in VARIANTS:
            with self.subTest(sig=sig, method=method, params_in=where):
                st, body = self.emu.call("ListAccessKeys", {}, k["AccessKeyId"],
                                         k["AccessKeySecret"], sig, method, params_in=where)
                self.assertEqual(st, 200, body)
                ids = [x["AccessKeyId"] for x in body["AccessKeys"]["AccessKey"]]
                self.assertEqual(ids, [k["AccessKeyId"]])
                st, body = self.emu.call("GetUser", {"UserName": u}, k["AccessKeyId"],
                                         k["AccessKeySecret"], sig, method, params_in=where)
                self.assertEqual(st, 200, body)
                self.assertEqual(body["User"]["UserName"], u)
        entry = self.emu.log(last=1)[0]
        self.assertEqual((entry["access_key_id"], entry["user"]), (k["AccessKeyId"], u))

    def test_shell_special_secret_signs(self):
        self.emu.set_faults(shell_secrets=True)
        try:
            k = self.minted(self.user())
        finally:
            self.emu.set_faults(shell_secrets=False)
        for ch in "'\"$\\` !*&;#%":
            self.assertIn(ch, k["AccessKeySecret"])
        for sig, method, where in VARIANTS:
            with self.subTest(sig=sig, method=method):
                st, body = self.emu.call("ListAccessKeys", {}, k["AccessKeyId"],
                                         k["AccessKeySecret"], sig, method, params_in=where)
                self.assertEqual(st, 200, body)

    # -- refused ----------------------------------------------------------
    def test_wrong_secret(self):
        u = self.user()
        for sig, method in (("v1", "GET"), ("v1", "POST"), ("v3", "GET"), ("v3", "POST")):
            with self.subTest(sig=sig, method=method):
                body = self.assertError(
                    self.emu.call("CreateAccessKey", {"UserName": u}, secret="wrong",
                                  signature=sig, method=method),
                    400, "SignatureDoesNotMatch")
                prefix = ("Specified signature is not matched with our calculation. "
                          "server string to sign is:")
                self.assertTrue(body["Message"].startswith(prefix), body["Message"])
                sts = body["Message"][len(prefix):]
                if sig == "v1":
                    self.assertTrue(sts.startswith(method + "&%2F&AccessKeyId%3D"), sts)
                    self.assertIn("UserName%3D" + u, sts)
                else:
                    self.assertRegex(sts, r"^ACS3-HMAC-SHA256\n[0-9a-f]{64}$")
                self.assertEqual(self.emu.keys_of(u), [])
        # a minted key with the wrong secret as well
        k = self.minted(self.user())
        self.assertError(self.emu.call("ListAccessKeys", {}, k["AccessKeyId"], "x" * 30),
                         400, "SignatureDoesNotMatch")

    def test_tampered_request(self):
        req = self.emu.prepare("GetUser", {"UserName": "alice"})
        target = req.target.replace("UserName=alice", "UserName=mallory")
        conn = self.emu.connection()
        conn.request(req.method, target, headers=req.headers)
        r = conn.getresponse()
        self.assertEqual(r.status, 400)
        self.assertIn(b"SignatureDoesNotMatch", r.read())
        conn.close()

    def test_v3_payload_hash_must_match_body(self):
        req = self.emu.prepare("GetUser", {"UserName": "alice"}, signature="v3", method="POST")
        conn = self.emu.connection()
        conn.request("POST", req.target, body=req.body.replace(b"alice", b"bobby"),
                     headers=req.headers)
        r = conn.getresponse()
        self.assertEqual(r.status, 400)
        self.assertIn(b"SignatureDoesNotMatch", r.read())
        conn.close()

    def test_v3_unsigned_acs_header(self):
        req = self.emu.prepare("GetUser", {"UserName": "alice"}, signature="v3")
        headers = dict(req.headers)
        headers["x-acs-extra"] = "1"
        conn = self.emu.connection()
        conn.request("GET", req.target, headers=headers)
        r = conn.getresponse()
        self.assertEqual(r.status, 400)
        self.assertIn(b"IncompleteSignature", r.read())
        conn.close()

    def test_nonce_replay(self):
        for sig in ("v1", "v3"):
            with self.subTest(sig=sig):
                nonce = ramsign.new_nonce()
                u = self.user()
                st, body = self.emu.call("GetUser", {"UserName": u}, signature=sig, nonce=nonce)
                self.assertEqual(st, 200, body)
                self.assertError(self.emu.call("CreateAccessKey", {"UserName": u},
                                               signature=sig, nonce=nonce),
                                 400, "SignatureNonceUsed")
                self.assertEqual(self.emu.keys_of(u), [])
                # nonces are per AccessKeyId: another key may use the same one
                k = self.minted(u)
                st, body = self.emu.call("GetUser", {}, k["AccessKeyId"], k["AccessKeySecret"],
                                         signature=sig, nonce=nonce)
                self.assertEqual(st, 200, body)

    def test_bad_signature_does_not_burn_nonce(self):
        nonce = ramsign.new_nonce()
        u = self.user()
        self.assertError(self.emu.call("GetUser", {"UserName": u}, secret="bad", nonce=nonce),
                         400, "SignatureDoesNotMatch")
        self.assertEqual(self.emu.call("GetUser", {"UserName": u}, nonce=nonce)[0], 200)

    def test_timestamp_window(self):
        now = time.time()
        for sig in ("v1", "v3"):
            for off in (-16 * 60, 16 * 60):
                with self.subTest(sig=sig, offset=off):
                    u = self.user()
                    self.assertError(
                        self.emu.call("CreateAccessKey", {"UserName": u}, signature=sig,
                                      timestamp=ramsign.utc_timestamp(now + off)),
                        400, "InvalidTimeStamp.Expired")
                    self.assertEqual(self.emu.keys_of(u), [])
            for off in (-14 * 60, 14 * 60):
                with self.subTest(sig=sig, offset=off):
                    st, body = self.emu.call("GetUser", {"UserName": self.user()}, signature=sig,
                                             timestamp=ramsign.utc_timestamp(now + off))
                    self.assertEqual(st, 200, body)
            self.assertError(self.emu.call("GetUser", {"UserName": "x"}, signature=sig,
                                           timestamp="yesterday"),
                             400, "InvalidTimeStamp.Format")

    def test_inactive_key(self):
        u = self.user()
        k = self.minted(u)
        st, body = self.emu.call("UpdateAccessKey", {"UserName": u, "Status": "Inactive",
                                                     "UserAccessKeyId": k["AccessKeyId"]})
        self.assertEqual(st, 200, body)
        for sig in ("v1", "v3"):
            self.assertError(self.emu.call("ListAccessKeys", {}, k["AccessKeyId"],
                                           k["AccessKeySecret"], sig),
                             400, "InvalidAccessKeyId.Inactive")
        self.emu.set_key_status(u, k["AccessKeyId"], "Active")
        self.assertEqual(self.emu.call("ListAccessKeys", {}, k["AccessKeyId"],
                                       k["AccessKeySecret"])[0], 200)

    def test_deleted_and_unknown_key(self):
        u = self.user()
        k = self.minted(u)
        st, body = self.emu.call("DeleteAccessKey", {"UserName": u,
                                                     "UserAccessKeyId": k["AccessKeyId"]})
        self.assertEqual(st, 200, body)
        for sig in ("v1", "v3"):
            self.assertError(self.emu.call("ListAccessKeys", {}, k["AccessKeyId"],
                                           k["AccessKeySecret"], sig),
                             404, "InvalidAccessKeyId.NotFound")
            self.assertError(self.emu.call("ListAccessKeys", {"UserName": u},
                                           "LTAI" + "0" * 20, "s" * 30, sig),
                             404, "InvalidAccessKeyId.NotFound")

    def test_minted_key_permissions(self):
        u, other = self.user(), self.user()
        k = self.minted(u)
        kid, sec = k["AccessKeyId"], k["AccessKeySecret"]
        denied = [("CreateAccessKey", {"UserName": u}), ("CreateAccessKey", {}),
                  ("UpdateAccessKey", {"UserName": u, "UserAccessKeyId": kid,
                                       "Status": "Inactive"}),
                  ("DeleteAccessKey", {"UserName": u, "UserAccessKeyId": kid}),
                  ("CreateUser", {"UserName": self.user()}),
                  ("ListAccessKeys", {"UserName": other}), ("GetUser", {"UserName": other})]
        for sig in ("v1", "v3"):
            for action, params in denied:
                with self.subTest(sig=sig, action=action, params=params):
                    self.assertError(self.emu.call(action, params, kid, sec, sig),
                                     403, "NoPermission")
        self.assertEqual([x["AccessKeyId"] for x in self.emu.keys_of(u)], [kid])
        self.assertEqual(self.emu.key(kid)["Status"], "Active")

    def test_missing_parameters(self):
        for drop in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp"):
            with self.subTest(drop=drop):
                req = self.emu.prepare("GetUser", {"UserName": "alice"})
                q = "&".join(p for p in req.target[2:].split("&")
                             if not p.startswith(drop + "="))
                conn = self.emu.connection()
                conn.request("GET", "/?" + q, headers=req.headers)
                r = conn.getresponse()
                self.assertEqual(r.status, 400)
                self.assertIn(b'"Code":"Missing' + drop.encode() + b'"', r.read())
                conn.close()
        self.assertError(self.emu.call("UpdateAccessKey", {"UserName": "alice", "Status": "Active"}),
                         400, "MissingUserAccessKeyId")

    def test_reused_connection_mixed_keys(self):
        u = self.user()
        k = self.minted(u)
        conn = self.emu.connection()
        try:
            for i in range(3):
                self.assertEqual(self.emu.call("GetUser", {"UserName": u}, conn=conn)[0], 200)
                self.assertEqual(self.emu.call("ListAccessKeys", {}, k["AccessKeyId"],
                                               k["AccessKeySecret"], "v3", conn=conn)[0], 200)
        finally:
            conn.close()
        self.assertIsInstance(conn, http.client.HTTPSConnection)


if __name__ == "__main__":
    unittest.main()
