#!/usr/bin/env python3
"""emulator.permissions: per-principal permissions and the signer in the
request log. By default the account's key and role sessions may do
everything and a RAM user's key only its own GetUser and ListAccessKeys;
/_emu/permissions narrows the account, a RAM user or a role to a list of
actions (with resources) or a RAM policy document, refusals are 403
NoPermission, and every log entry names who signed (ARN, kind, role), so a
test can prove which credential did what."""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from emulator import Emulator, EmulatorError  # noqa: E402

KEY_ACTIONS = ["ram:CreateAccessKey", "ram:UpdateAccessKey", "ram:DeleteAccessKey",
               "ram:ListAccessKeys"]


class Permissions(unittest.TestCase):
    counter = 0

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(https=True, auto_users=True)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def name(self, prefix):
        Permissions.counter += 1
        return "%s-%d" % (prefix, Permissions.counter)

    def refused(self, resp, api="ram"):
        st, body = resp
        self.assertEqual((st, body.get("Code")), (403, "NoPermission"), body)
        self.assertEqual(body["HostId"], "%s.aliyuncs.com" % api)

    def session(self, role, session="perm-sess"):
        st, body = self.emu.assume_role(role, session)
        self.assertEqual(st, 200, body)
        c = body["Credentials"]
        return c["AccessKeyId"], c["AccessKeySecret"], c["SecurityToken"]

    def as_(self, cred, action, params=None, signature="v3"):
        kid, secret, token = (tuple(cred) + (None,))[:3]
        return self.emu.call(action, params or {}, kid, secret, signature,
                             security_token=token)

    def test_account_key_limited_to_assuming_one_role(self):
        emu = self.emu
        agent, other = self.name("agent"), self.name("other")
        emu.create_role(agent)
        emu.create_role(other)
        emu.set_permissions("account", [{"action": "sts:AssumeRole",
                                         "resource": emu.role_arn(agent)}])
        try:
            self.assertEqual(emu.permissions()["account"],
                             {"allow": [{"action": "sts:AssumeRole",
                                         "resource": emu.role_arn(agent)}]})
            for sig in ("v1", "v3"):
                self.refused(emu.call("CreateAccessKey", {"UserName": "pa"}, signature=sig))
                self.refused(emu.call("ListUsers", signature=sig))
                self.refused(emu.assume_role(other, signature=sig), api="sts")
                self.assertEqual(emu.assume_role(agent, signature=sig)[0], 200)
                self.assertEqual(emu.caller_identity(signature=sig)[0], 200)
            e = emu.log(last=1, action="AssumeRole", result="NoPermission")[0]
            self.assertIn("AssumeRole on acs:ram:*:%s:role/%s" % (emu.account_id, other),
                          e["detail"])
            self.assertEqual(emu.keys_of("pa"), [])
            # The role's credential then does the work.
            cred = self.session(agent)
            self.assertEqual(self.as_(cred, "CreateAccessKey", {"UserName": "pa"})[0], 200)
        finally:
            emu.clear_permissions("account")
        self.assertNotIn("account", emu.permissions())
        self.assertEqual(emu.call("ListAccessKeys", {"UserName": "pa"})[0], 200)

    def test_role_limited_to_the_key_actions_on_a_prefix(self):
        emu = self.emu
        role = self.name("minter")
        emu.create_role(role, allow=[{"action": KEY_ACTIONS,
                                      "resource": "acs:ram:*:%s:user/ramkey-*"
                                      % emu.account_id}])
        cred = self.session(role)
        for sig in ("v1", "v3"):
            user = self.name("ramkey-u")
            st, body = self.as_(cred, "CreateAccessKey", {"UserName": user}, sig)
            self.assertEqual(st, 200, body)
            kid = body["AccessKey"]["AccessKeyId"]
            self.assertEqual(self.as_(cred, "UpdateAccessKey",
                                      {"UserName": user, "UserAccessKeyId": kid,
                                       "Status": "Inactive"}, sig)[0], 200)
            self.assertEqual(self.as_(cred, "ListAccessKeys", {"UserName": user}, sig)[0], 200)
            self.assertEqual(self.as_(cred, "DeleteAccessKey",
                                      {"UserName": user, "UserAccessKeyId": kid}, sig)[0], 200)
            self.refused(self.as_(cred, "CreateAccessKey", {"UserName": "admin-bob"}, sig))
            self.refused(self.as_(cred, "GetUser", {"UserName": user}, sig))
            self.refused(self.as_(cred, "CreateUser", {"UserName": "ramkey-new"}, sig))
            self.refused(self.as_(cred, "ListUsers", {}, sig))
            self.refused(self.as_(cred, "AssumeRole", {"RoleArn": emu.role_arn(role),
                                                       "RoleSessionName": "again"}, sig),
                         api="sts")
        self.assertEqual(emu.keys_of("admin-bob"), [])
        # Permissions change at once, for sessions already handed out too.
        emu.update_role(role, allow=None)
        self.assertEqual(self.as_(cred, "GetUser", {"UserName": "admin-bob"})[0], 200)

    def test_ram_user_permissions_replace_the_default(self):
        emu = self.emu
        user = self.name("sweeper")
        st, body = emu.call("CreateAccessKey", {"UserName": user})
        cred = (body["AccessKey"]["AccessKeyId"], body["AccessKey"]["AccessKeySecret"])
        # default: its own GetUser and ListAccessKeys only
        self.assertEqual(self.as_(cred, "GetUser", {"UserName": user})[0], 200)
        self.refused(self.as_(cred, "ListUsers"))
        self.refused(self.as_(cred, "CreateAccessKey"))
        role = self.name("r")
        emu.create_role(role)
        self.refused(emu.assume_role(role, key_id=cred[0], secret=cred[1]), api="sts")
        emu.set_permissions("user/" + user, ["ram:ListUsers", "ListUsersForGroup",
                                             "ram:CreateAccessKey"])
        st, body = self.as_(cred, "ListUsers")
        self.assertEqual(st, 200, body)
        self.assertIn(user, [u["UserName"] for u in body["Users"]["User"]])
        self.refused(self.as_(cred, "GetUser", {"UserName": user}))     # not granted now
        st, body = self.as_(cred, "CreateAccessKey")                     # no UserName: itself
        self.assertEqual(st, 200, body)
        self.assertEqual(len(emu.keys_of(user)), 2)
        self.assertEqual(emu.log(last=1)[0]["user"], user)
        emu.clear_permissions("user/" + user)
        self.assertEqual(self.as_(cred, "GetUser", {"UserName": user})[0], 200)
        self.refused(self.as_(cred, "ListUsers"))

    def test_policy_document_and_deny(self):
        emu = self.emu
        role = self.name("doc")
        emu.create_role(role)
        policy = {"Version": "1", "Statement": [
            {"Effect": "Allow", "Action": "ram:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "ram:DeleteAccessKey",
             "Resource": "acs:ram:*:*:user/keep-*"}]}
        emu.set_permissions("role/" + role.upper(), policy=policy)   # names: any case
        self.assertEqual(emu.permissions()["role/" + role], {"policy": policy})
        cred = self.session(role)
        user = self.name("keep-me")
        st, body = self.as_(cred, "CreateAccessKey", {"UserName": user})
        self.assertEqual(st, 200, body)
        kid = body["AccessKey"]["AccessKeyId"]
        self.refused(self.as_(cred, "DeleteAccessKey", {"UserName": user,
                                                        "UserAccessKeyId": kid}))
        self.refused(self.as_(cred, "AssumeRole", {"RoleArn": emu.role_arn(role),
                                                   "RoleSessionName": "nope"}), api="sts")
        # The policy as JSON text works the same.
        import json
        emu.set_permissions("acs:ram::%s:role/%s" % (emu.account_id, role),
                            policy=json.dumps(policy))
        self.refused(self.as_(cred, "DeleteAccessKey", {"UserName": user,
                                                        "UserAccessKeyId": kid}))
        emu.clear_permissions("role/" + role)
        self.assertEqual(self.as_(cred, "DeleteAccessKey", {"UserName": user,
                                                            "UserAccessKeyId": kid})[0], 200)

    def test_log_names_the_signer(self):
        emu = self.emu
        role = self.name("logged")
        emu.create_role(role)
        cred = self.session(role, "log-sess")
        user = self.name("log-user")
        st, body = emu.call("CreateAccessKey", {"UserName": user})
        ucred = (body["AccessKey"]["AccessKeyId"], body["AccessKey"]["AccessKeySecret"])
        self.as_(cred, "CreateAccessKey", {"UserName": user})
        self.as_(ucred, "ListAccessKeys")
        emu.call("GetUser", {"UserName": user}, secret="wrong")
        log = emu.log(last=4)
        acct = emu.account_id
        self.assertEqual(
            [(e["action"], e["principal"], e["principal_kind"], e["role"], e["role_session"])
             for e in log],
            [("CreateAccessKey", "acs:ram::%s:root" % acct, "account", None, None),
             ("CreateAccessKey", "acs:ram::%s:assumed-role/%s/log-sess" % (acct, role),
              "role_session", role, "log-sess"),
             ("ListAccessKeys", "acs:ram::%s:user/%s" % (acct, user), "ram_user", None, None),
             ("GetUser", None, None, None, None)])            # not authenticated: nobody
        self.assertEqual(emu.principal_arn("role/%s/log-sess" % role), log[1]["principal"])
        self.assertEqual(emu.principal_arn("user/" + user), log[2]["principal"])
        self.assertEqual(emu.principal_arn("account"), log[0]["principal"])
        # Filters: every CreateAccessKey of this role's sessions, and so on.
        mine = emu.log(action="CreateAccessKey", role=role)
        self.assertEqual([e["seq"] for e in mine], [log[1]["seq"]])
        self.assertEqual(emu.log(principal=log[2]["principal"])[-1]["seq"], log[2]["seq"])
        self.assertTrue(all(e["principal_kind"] == "ram_user"
                            for e in emu.log(principal_kind="ram_user")))
        self.assertEqual(emu.log(user=user, result="SignatureDoesNotMatch")[-1]["seq"],
                         log[3]["seq"])
        with self.assertRaises(EmulatorError) as cm:
            emu.admin("GET", "/_emu/log?colour=blue")
        self.assertEqual(cm.exception.status, 400)

    def test_validation(self):
        emu = self.emu
        for bad in ({"principal": "everyone", "allow": []},
                    {"principal": "user/bad name", "allow": []},
                    {"principal": "acs:ram::999:root", "allow": []},
                    {"principal": "account", "allow": "ram:*"},
                    {"principal": "account", "allow": ["ecs:RunInstances"]},
                    {"principal": "account", "allow": ["NoSuchAction"]},
                    {"principal": "account", "allow": [{"action": "ram:*", "effect": "Maybe"}]},
                    {"principal": "account", "allow": [{"actions": "ram:*"}]},
                    {"principal": "account", "allow": [], "policy": {"Version": "1"}},
                    {"principal": "account", "policy": {"Version": "1", "Statement": []}},
                    {"principal": "account", "policy": "{not json"},
                    {"principal": "account", "policy": {"Version": "1", "Statement": [
                        {"Effect": "Allow", "Action": "ram:*"}]}},
                    {"principal": "account", "extra": 1},
                    {"allow": []}):
            with self.subTest(bad=bad), self.assertRaises(EmulatorError) as cm:
                emu.admin("POST", "/_emu/permissions", bad)
            self.assertEqual(cm.exception.status, 400)
        self.assertEqual(emu.permissions(), {})
        # an empty list allows nothing (GetCallerIdentity needs no permission)
        emu.set_permissions("account", [])
        try:
            self.refused(emu.call("GetUser", {"UserName": "x1"}))
            self.assertEqual(emu.caller_identity()[0], 200)
        finally:
            emu.clear_permissions("account")
        self.assertEqual(emu.call("GetUser", {"UserName": "x1"})[0], 200)


if __name__ == "__main__":
    unittest.main()
