#!/usr/bin/env python3
"""emulator.fleet: what a fleet sweep needs. RAM ListUsers and
ListUsersForGroup page with Marker/MaxItems/IsTruncated; groups and their
members are made through the admin API; keys can be made with a CreateDate
in the past, which ListAccessKeys shows; the new actions are counted."""

import os
import re
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import ramsign  # noqa: E402
from emulator import Emulator, EmulatorError  # noqa: E402

DATE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class Fleet(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(https=True, auto_users=False)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def pages(self, action, params, max_items, signature="v1"):
        """Follow Marker to the end -> (list of pages of names, responses)."""
        pages, bodies = [], []
        marker = None
        while True:
            p = dict(params, MaxItems=str(max_items))
            if marker:
                p["Marker"] = marker
            st, body = self.emu.call(action, p, signature=signature)
            self.assertEqual(st, 200, body)
            bodies.append(body)
            pages.append([u["UserName"] for u in body["Users"]["User"]])
            if not body["IsTruncated"]:
                self.assertNotIn("Marker", body)
                return pages, bodies
            marker = body["Marker"]
            self.assertTrue(marker)
            self.assertLess(len(pages), 50)

    def test_list_users_paging(self):
        emu = self.emu
        names = ["lu-%02d" % i for i in range(7)]
        for n in names:
            emu.create_user(n)
        all_users = list(emu.state()["users"])
        for sig in ("v1", "v3"):
            pages, bodies = self.pages("ListUsers", {}, 3, sig)
            self.assertEqual([len(p) for p in pages][:-1], [3] * (len(pages) - 1))
            self.assertEqual(sum(pages, []), all_users)
            self.assertTrue(bodies[0]["IsTruncated"])
            u = bodies[0]["Users"]["User"][0]
            self.assertEqual(set(u), {"UserId", "UserName", "DisplayName", "Comments",
                                      "CreateDate", "UpdateDate"})
            self.assertRegex(u["CreateDate"], DATE_RE)
        st, body = emu.call("ListUsers")               # default MaxItems: 100
        self.assertEqual(st, 200, body)
        self.assertEqual([u["UserName"] for u in body["Users"]["User"]], all_users)
        self.assertEqual(list(body), ["RequestId", "IsTruncated", "Users"])
        for bad in ({"MaxItems": "0"}, {"MaxItems": "1001"}, {"MaxItems": "x"},
                    {"Marker": "!!not-a-marker"}, {"Marker": "bm9ib2R5"}):
            with self.subTest(bad=bad):
                st, body = emu.call("ListUsers", bad)
                self.assertEqual((st, body["Code"]), (400, "InvalidParameter"), body)

    def test_groups_and_list_users_for_group(self):
        emu = self.emu
        self.assertTrue(emu.create_group("ramkey-users", "dedicated to ramkey")["created"])
        self.assertFalse(emu.create_group("ramkey-users")["created"])
        members = ["grp-%d" % i for i in range(5)]
        for n in members + ["not-in-group"]:
            emu.create_user(n)
        t0 = time.time()
        for n in members:
            self.assertTrue(emu.add_user_to_group("ramkey-users", n)["added"])
        self.assertFalse(emu.add_user_to_group("ramkey-users", members[0])["added"])
        g = emu.groups()["ramkey-users"]
        self.assertEqual((g["members"], g["Comments"]), (members, "dedicated to ramkey"))
        self.assertEqual(emu.state()["groups"]["ramkey-users"]["members"], members)
        for sig in ("v1", "v3"):
            pages, bodies = self.pages("ListUsersForGroup", {"GroupName": "ramkey-users"}, 2,
                                       sig)
            self.assertEqual(pages, [members[0:2], members[2:4], members[4:]])
            u = bodies[0]["Users"]["User"][0]
            self.assertEqual(set(u), {"UserName", "DisplayName", "UserId", "JoinDate"})
            self.assertLessEqual(abs(ramsign.parse_timestamp(u["JoinDate"]) - t0), 5)
        self.assertTrue(emu.create_group("empty.group")["created"])
        st, body = emu.call("ListUsersForGroup", {"GroupName": "empty.group"})
        self.assertEqual((st, body["IsTruncated"], body["Users"]["User"]), (200, False, []))
        for params, status, code in (
                ({"GroupName": "no-such-group"}, 404, "EntityNotExist.Group"),
                ({}, 400, "MissingGroupName"),
                ({"GroupName": "bad_name"}, 400, "InvalidParameter.GroupName.InvalidChars"),
                ({"GroupName": "x" * 65}, 400, "InvalidParameter.GroupName.Length"),
                ({"GroupName": "ramkey-users", "MaxItems": "0"}, 400, "InvalidParameter")):
            with self.subTest(params=params):
                st, body = emu.call("ListUsersForGroup", params, signature="v3")
                self.assertEqual((st, body["Code"]), (status, code), body)
        for req, status in (({"group": "nope", "user": members[0]}, 404),
                            ({"group": "ramkey-users", "user": "ghost"}, 404),
                            ({"group": "ramkey-users"}, 400)):
            with self.subTest(req=req), self.assertRaises(EmulatorError) as cm:
                emu.admin("POST", "/_emu/groups/members", req)
            self.assertEqual(cm.exception.status, status)
        with self.assertRaises(EmulatorError) as cm:
            emu.create_group("bad name")
        self.assertEqual(cm.exception.status, 400)

    def test_backdated_keys_and_a_sweep(self):
        emu = self.emu
        emu.create_group("sweep-me")
        for n in ("sw-old", "sw-new"):
            emu.create_user(n)
            emu.add_user_to_group("sweep-me", n)
        old = emu.create_key("sw-old", create_date="2020-01-02T03:04:05Z")
        self.assertEqual(old["CreateDate"], "2020-01-02T03:04:05Z")
        aged = emu.create_key("sw-new", age=86400, status="Inactive")
        self.assertLessEqual(abs(ramsign.parse_timestamp(aged["CreateDate"])
                                 - (time.time() - 86400)), 5)
        fresh = emu.create_key("sw-new")
        unix = emu.create_key("sw-old", create_date=1600000000)
        self.assertEqual(unix["CreateDate"], ramsign.utc_timestamp(1600000000))
        st, body = emu.call("ListAccessKeys", {"UserName": "sw-old"})
        self.assertEqual([(k["AccessKeyId"], k["CreateDate"]) for k in
                          body["AccessKeys"]["AccessKey"]],
                         [(old["AccessKeyId"], "2020-01-02T03:04:05Z"),
                          (unix["AccessKeyId"], "2020-09-13T12:26:40Z")])
        # A sweep: list the group, list each user's keys, delete the old ones.
        emu.reset_counters()
        cutoff = time.time() - 3600
        st, body = emu.call("ListUsersForGroup", {"GroupName": "sweep-me"})
        for u in body["Users"]["User"]:
            st, keys = emu.call("ListAccessKeys", {"UserName": u["UserName"]})
            for k in keys["AccessKeys"]["AccessKey"]:
                if ramsign.parse_timestamp(k["CreateDate"]) < cutoff:
                    st, _ = emu.call("DeleteAccessKey", {"UserName": u["UserName"],
                                                         "UserAccessKeyId": k["AccessKeyId"]})
                    self.assertEqual(st, 200)
        emu.call("ListUsers")
        self.assertEqual(emu.keys_of("sw-old"), [])
        self.assertEqual([k["AccessKeyId"] for k in emu.keys_of("sw-new")],
                         [fresh["AccessKeyId"]])
        self.assertEqual(emu.counters()["calls"], {"ListUsersForGroup": 1, "ListAccessKeys": 2,
                                                   "DeleteAccessKey": 3, "ListUsers": 1})
        for req in ({"user": "sw-new", "create_date": "yesterday"},
                    {"user": "sw-new", "age": -5},
                    {"user": "sw-new", "age": 5, "create_date": "2020-01-01T00:00:00Z"}):
            with self.subTest(req=req), self.assertRaises(EmulatorError) as cm:
                emu.admin("POST", "/_emu/keys", req)
            self.assertEqual(cm.exception.status, 400)


if __name__ == "__main__":
    unittest.main()
