#!/usr/bin/env python3
"""emulator.actions: the six RAM actions answer RAM's JSON shapes, enforce the
two-key limit and answer RAM's error codes, statuses and error bodies."""

import os
import re
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from emulator import Emulator, EmulatorError  # noqa: E402

DATE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
KEY_ID_RE = re.compile(r"^LTAI[A-Za-z0-9]{20}$")
SECRET_RE = re.compile(r"^[A-Za-z0-9]{30}$")
ERROR_FIELDS = ["RequestId", "HostId", "Code", "Message", "Recommend"]
LIMIT_MSG = "The access key count of the user access keys beyond the current limits."


class Actions(unittest.TestCase):
    counter = 0

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(https=True, auto_users=True)
        cls.strict = Emulator(https=False, auto_users=False, extra_args=["--users", "carol,dave"])

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()
        cls.strict.stop()

    def user(self):
        Actions.counter += 1
        return "act-user.%d" % Actions.counter

    def ok(self, resp):
        st, body = resp
        self.assertEqual(st, 200, body)
        self.assertIn("RequestId", body)
        return body

    def err(self, resp, status, code, message=None):
        st, body = resp
        self.assertEqual((st, body.get("Code")), (status, code), body)
        self.assertEqual(list(body), ERROR_FIELDS)
        self.assertEqual(body["HostId"], "ram.aliyuncs.com")
        self.assertIn("requestId=" + body["RequestId"], body["Recommend"])
        if message is not None:
            self.assertEqual(body["Message"], message)
        return body

    def test_create_access_key_shape(self):
        u = self.user()
        b = self.ok(self.emu.call("CreateAccessKey", {"UserName": u}))
        self.assertEqual(set(b), {"RequestId", "AccessKey"})
        k = b["AccessKey"]
        self.assertEqual(set(k), {"AccessKeyId", "AccessKeySecret", "Status", "CreateDate"})
        self.assertRegex(k["AccessKeyId"], KEY_ID_RE)
        self.assertRegex(k["AccessKeySecret"], SECRET_RE)
        self.assertRegex(k["CreateDate"], DATE_RE)
        self.assertEqual(k["Status"], "Active")
        st = self.emu.keys_of(u)[0]
        self.assertEqual(st, dict(k, created_by="admin"))

    def test_two_key_limit(self):
        u = self.user()
        a = self.ok(self.emu.call("CreateAccessKey", {"UserName": u}))["AccessKey"]
        b = self.ok(self.emu.call("CreateAccessKey", {"UserName": u}, signature="v3",
                                  method="POST"))["AccessKey"]
        self.assertNotEqual(a["AccessKeyId"], b["AccessKeyId"])
        for sig in ("v1", "v3"):
            self.err(self.emu.call("CreateAccessKey", {"UserName": u}, signature=sig),
                     409, "LimitExceeded.User.AccessKey", LIMIT_MSG)
        # Inactive keys count
        self.ok(self.emu.call("UpdateAccessKey", {"UserName": u, "Status": "Inactive",
                                                  "UserAccessKeyId": a["AccessKeyId"]}))
        self.err(self.emu.call("CreateAccessKey", {"UserName": u}), 409,
                 "LimitExceeded.User.AccessKey")
        # direct keys share the limit
        with self.assertRaises(EmulatorError) as cm:
            self.emu.create_key(u)
        self.assertEqual(cm.exception.status, 409)
        # deleting frees a slot
        self.ok(self.emu.call("DeleteAccessKey", {"UserName": u,
                                                  "UserAccessKeyId": a["AccessKeyId"]}))
        c = self.ok(self.emu.call("CreateAccessKey", {"UserName": u}))["AccessKey"]
        self.assertEqual([k["AccessKeyId"] for k in self.emu.keys_of(u)],
                         [b["AccessKeyId"], c["AccessKeyId"]])
        self.assertGreaterEqual(
            self.emu.counters()["results"].get("LimitExceeded.User.AccessKey", 0), 3)

    def test_list_access_keys_nested_shape(self):
        u = self.user()
        a = self.ok(self.emu.call("CreateAccessKey", {"UserName": u}))["AccessKey"]
        b = self.emu.create_key(u, status="Inactive")
        for sig, method in (("v1", "GET"), ("v1", "POST"), ("v3", "GET"), ("v3", "POST")):
            with self.subTest(sig=sig, method=method):
                body = self.ok(self.emu.call("ListAccessKeys", {"UserName": u}, signature=sig,
                                             method=method))
                self.assertEqual(set(body), {"RequestId", "AccessKeys"})
                self.assertEqual(set(body["AccessKeys"]), {"AccessKey"})
                items = body["AccessKeys"]["AccessKey"]
                self.assertIsInstance(items, list)
                self.assertEqual([(x["AccessKeyId"], x["Status"]) for x in items],
                                 [(a["AccessKeyId"], "Active"), (b["AccessKeyId"], "Inactive")])
                for x in items:
                    self.assertEqual(set(x), {"AccessKeyId", "Status", "CreateDate"})
                    self.assertRegex(x["CreateDate"], DATE_RE)
        empty = self.ok(self.emu.call("ListAccessKeys", {"UserName": self.user()}))
        self.assertEqual(empty["AccessKeys"], {"AccessKey": []})

    def test_update_and_delete(self):
        u, v = self.user(), self.user()
        a = self.ok(self.emu.call("CreateAccessKey", {"UserName": u}))["AccessKey"]
        kid = a["AccessKeyId"]
        b = self.ok(self.emu.call("UpdateAccessKey", {"UserName": u, "UserAccessKeyId": kid,
                                                      "Status": "Inactive"}, signature="v3"))
        self.assertEqual(set(b), {"RequestId"})
        self.assertEqual(self.emu.key(kid)["Status"], "Inactive")
        self.ok(self.emu.call("UpdateAccessKey", {"UserName": u, "UserAccessKeyId": kid,
                                                  "Status": "Active"}))
        self.assertEqual(self.emu.key(kid)["Status"], "Active")
        self.err(self.emu.call("UpdateAccessKey", {"UserName": u, "UserAccessKeyId": kid,
                                                   "Status": "Disabled"}),
                 400, "InvalidParameter")
        # the key is not v's
        self.err(self.emu.call("UpdateAccessKey", {"UserName": v, "UserAccessKeyId": kid,
                                                   "Status": "Inactive"}),
                 404, "EntityNotExist.User.AccessKey", "The user access key does not exist.")
        self.err(self.emu.call("DeleteAccessKey", {"UserName": v, "UserAccessKeyId": kid}),
                 404, "EntityNotExist.User.AccessKey")
        self.assertEqual(self.emu.key(kid)["Status"], "Active")
        b = self.ok(self.emu.call("DeleteAccessKey", {"UserName": u, "UserAccessKeyId": kid},
                                  method="POST"))
        self.assertEqual(set(b), {"RequestId"})
        self.assertIsNone(self.emu.key(kid))
        self.err(self.emu.call("DeleteAccessKey", {"UserName": u, "UserAccessKeyId": kid}),
                 404, "EntityNotExist.User.AccessKey")
        deleted = [d for d in self.emu.state()["deleted_keys"] if d["AccessKeyId"] == kid]
        self.assertEqual(len(deleted), 1)
        self.assertEqual(deleted[0]["UserName"], u)
        self.assertRegex(deleted[0]["deleted_at"], DATE_RE)

    def test_users(self):
        u = self.user()
        b = self.ok(self.emu.call("CreateUser", {"UserName": u, "DisplayName": "Act User",
                                                 "Comments": "tester (QA) 100%"}, method="POST"))
        self.assertEqual(b["User"]["UserName"], u)
        self.assertEqual(b["User"]["DisplayName"], "Act User")
        self.assertEqual(b["User"]["Comments"], "tester (QA) 100%")
        self.assertRegex(b["User"]["CreateDate"], DATE_RE)
        self.err(self.emu.call("CreateUser", {"UserName": u}), 409, "EntityAlreadyExists.User")
        g = self.ok(self.emu.call("GetUser", {"UserName": u}, signature="v3"))
        self.assertEqual(g["User"]["UserId"], b["User"]["UserId"])
        for k in ("UserName", "DisplayName", "Comments", "CreateDate", "UpdateDate",
                  "LastLoginDate"):
            self.assertIn(k, g["User"])

    def test_user_name_rules(self):
        self.err(self.emu.call("CreateAccessKey", {"UserName": "a" * 65}), 400,
                 "InvalidParameter.UserName.Length")
        for bad in ("alice smith", "a*b", "中文", "x/y"):
            with self.subTest(bad=bad):
                self.err(self.emu.call("CreateAccessKey", {"UserName": bad}), 400,
                         "InvalidParameter.UserName.InvalidChars")
        self.err(self.emu.call("CreateAccessKey", {}), 400, "MissingUserName")
        self.ok(self.emu.call("GetUser", {"UserName": "Dot.Under_score-1"}))

    def test_unknown_and_missing_action(self):
        self.err(self.emu.call("DescribeRegions", {}), 404, "InvalidAction.NotFound")
        self.err(self.emu.call("", {}), 400, "MissingAction")

    def test_without_auto_users(self):
        s = self.strict
        self.err(s.call("CreateAccessKey", {"UserName": "nobody"}), 404, "EntityNotExist.User",
                 "The user does not exist.")
        self.err(s.call("ListAccessKeys", {"UserName": "nobody"}, signature="v3"),
                 404, "EntityNotExist.User")
        self.err(s.call("UpdateAccessKey", {"UserName": "nobody", "UserAccessKeyId": "LTAIx",
                                            "Status": "Inactive"}),
                 404, "EntityNotExist.User")
        self.err(s.call("DeleteAccessKey", {"UserName": "nobody", "UserAccessKeyId": "LTAIx"}),
                 404, "EntityNotExist.User")
        self.err(s.call("GetUser", {"UserName": "nobody"}), 404, "EntityNotExist.User")
        self.assertNotIn("nobody", s.state()["users"])
        self.ok(s.call("CreateAccessKey", {"UserName": "carol"}))     # from --users
        self.ok(s.call("CreateUser", {"UserName": "erin"}))
        self.ok(s.call("CreateAccessKey", {"UserName": "erin"}))
        s.create_user("frank")
        self.ok(s.call("ListAccessKeys", {"UserName": "frank"}))
        self.assertEqual(sorted(s.state()["users"]), ["carol", "dave", "erin", "frank"])

    def test_success_headers(self):
        req = self.emu.prepare("GetUser", {"UserName": "hdr"})
        conn = self.emu.connection()
        conn.request(req.method, req.target, headers=req.headers)
        r = conn.getresponse()
        body = r.read()
        conn.close()
        self.assertEqual(r.status, 200)
        self.assertTrue(r.getheader("Content-Type").startswith("application/json"))
        self.assertEqual(int(r.getheader("Content-Length")), len(body))
        self.assertIn(r.getheader("x-acs-request-id").encode(), body)


if __name__ == "__main__":
    unittest.main()
