#!/usr/bin/env python3
"""emulator.sts: STS 2015-04-01 on the API listeners. AssumeRole answers
STS's shapes, parameter rules and error codes; roles decide who may assume
them (trust list, ExternalId, longest session); credentials expire after
DurationSeconds or a test-chosen lifetime, consistently with the Date
header; requests signed with a temporary credential need its own unexpired
token (v1 parameter, v3 signed header) on the RAM and STS sides alike;
GetCallerIdentity names every kind of caller; the request's version picks
the API."""

import base64
import email.utils
import os
import re
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import ramsign  # noqa: E402
from emulator import Emulator, EmulatorError  # noqa: E402

VARIANTS = [("v1", "GET", None), ("v1", "POST", None), ("v3", "GET", None),
            ("v3", "POST", None), ("v1", "POST", "query"), ("v3", "POST", "query")]
ERROR_FIELDS = {"RequestId", "HostId", "Code", "Message", "Recommend"}
DATE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
STS_ID_RE = re.compile(r"^STS\.[A-Za-z0-9]{20,}$")


def http_date(headers):
    return email.utils.parsedate_to_datetime(headers["Date"]).timestamp()


class Sts(unittest.TestCase):
    counter = 0

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(https=True, auto_users=True)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def setUp(self):
        self.emu.clear_faults()

    def name(self, prefix="role"):
        Sts.counter += 1
        return "%s-%d" % (prefix, Sts.counter)

    def role(self, **kw):
        return self.emu.create_role(self.name(), **kw)

    def assertError(self, resp, status, code, api="sts"):
        st, body = resp[0], resp[1]
        self.assertEqual((st, body.get("Code")), (status, code), body)
        self.assertEqual(set(body), ERROR_FIELDS)
        self.assertEqual(body["HostId"], "%s.aliyuncs.com" % api)
        self.assertIn("product=%s" % api.capitalize(), body["Recommend"])
        self.assertTrue(body["Message"])
        return body

    def assume(self, role, session="sess", **kw):
        st, body = self.emu.assume_role(role, session, **kw)
        self.assertEqual(st, 200, body)
        return body["Credentials"]

    def as_session(self, creds, action, params=None, signature="v3", **kw):
        return self.emu.call(action, params or {}, creds["AccessKeyId"],
                             creds["AccessKeySecret"], signature,
                             security_token=creds["SecurityToken"], **kw)

    # -- AssumeRole -------------------------------------------------------
    def test_assume_role_shapes_all_variants(self):
        r = self.role()
        for sig, method, where in VARIANTS:
            with self.subTest(sig=sig, method=method, params_in=where):
                session = "alice@host-1.example_x"
                st, body, hdr = self.emu.assume_role(r["RoleName"], session, signature=sig,
                                                     method=method, params_in=where,
                                                     with_headers=True)
                self.assertEqual(st, 200, body)
                self.assertEqual(list(body), ["RequestId", "AssumedRoleUser", "Credentials"])
                self.assertEqual(body["AssumedRoleUser"], {
                    "Arn": "acs:ram::%s:role/%s/%s" % (self.emu.account_id, r["RoleName"],
                                                       session),
                    "AssumedRoleId": "%s:%s" % (r["RoleId"], session)})
                c = body["Credentials"]
                self.assertEqual(set(c), {"AccessKeyId", "AccessKeySecret", "SecurityToken",
                                          "Expiration"})
                self.assertRegex(c["AccessKeyId"], STS_ID_RE)
                self.assertGreaterEqual(len(c["AccessKeySecret"]), 30)
                tok = c["SecurityToken"]
                self.assertTrue(tok.startswith("CAIS"), tok[:10])
                self.assertTrue(900 <= len(tok) <= 1400, len(tok))
                base64.b64decode(tok[4:], validate=True)
                self.assertRegex(c["Expiration"], DATE_RE)
                left = ramsign.parse_timestamp(c["Expiration"]) - http_date(hdr)
                self.assertTrue(3600 <= left <= 3601, left)     # default DurationSeconds
                e = self.emu.log(last=1)[0]
                self.assertEqual((e["action"], e["api"], e["result"], e["target_role"],
                                  e["key_id"], e["principal_kind"]),
                                 ("AssumeRole", "sts", "OK", r["RoleName"], c["AccessKeyId"],
                                  "account"))

    def test_duration_seconds_and_role_maximum(self):
        r = self.role()
        long_role = self.role(max_session_duration=7200)
        self.assertEqual(long_role["MaxSessionDuration"], 7200)
        for role, dur, ok in ((r, 900, True), (r, 3600, True), (r, 3601, False),
                              (r, 899, False), (r, 0, False), (long_role, 7200, True),
                              (long_role, 7201, False), (r, "abc", False), (r, "-5", False),
                              (r, "1e3", False)):
            with self.subTest(role=role["MaxSessionDuration"], duration=dur):
                st, body, hdr = self.emu.assume_role(role["RoleName"], "dd", duration=dur,
                                                     with_headers=True)
                if not ok:
                    self.assertError((st, body), 400, "InvalidParameter.DurationSeconds")
                    continue
                self.assertEqual(st, 200, body)
                left = ramsign.parse_timestamp(body["Credentials"]["Expiration"]) - http_date(hdr)
                self.assertTrue(dur <= left <= dur + 1, left)

    def test_expiration_follows_the_emulators_clock(self):
        # Date and Expiration come from the same (here skewed) clock: a
        # client computing the lifetime from both gets it right.
        r = self.role()
        self.emu.set_faults(clock_skew=5000)
        try:
            ts = ramsign.utc_timestamp(time.time() + 5000)
            st, body, hdr = self.emu.call(
                "AssumeRole", {"RoleArn": self.emu.role_arn(r["RoleName"]),
                               "RoleSessionName": "skew", "DurationSeconds": "1200"},
                timestamp=ts, with_headers=True)
            self.assertEqual(st, 200, body)
            self.assertTrue(4990 <= http_date(hdr) - time.time() <= 5010)
            left = ramsign.parse_timestamp(body["Credentials"]["Expiration"]) - http_date(hdr)
            self.assertTrue(1200 <= left <= 1201, left)
        finally:
            self.emu.clear_faults()

    def test_parameter_errors(self):
        r = self.role()
        arn = self.emu.role_arn(r["RoleName"])
        good = {"RoleArn": arn, "RoleSessionName": "ok-name"}
        cases = [
            ({"RoleSessionName": "x1"}, 400, "MissingRoleArn"),
            ({"RoleArn": arn}, 400, "MissingRoleSessionName"),
            (dict(good, RoleArn="acs:ram::12345:user/x"), 400, "InvalidParameter.RoleArn"),
            (dict(good, RoleArn="arn:acs:ram::1:role/x"), 400, "InvalidParameter.RoleArn"),
            (dict(good, RoleArn="acs:ram:cn-hangzhou:1:role/x"), 400,
             "InvalidParameter.RoleArn"),
            (dict(good, RoleArn="acs:ram::1234567890123456:role/bad_name"), 400,
             "InvalidParameter.RoleArn"),
            (dict(good, RoleSessionName="a"), 400, "InvalidParameter.RoleSessionName"),
            (dict(good, RoleSessionName="x" * 65), 400, "InvalidParameter.RoleSessionName"),
            (dict(good, RoleSessionName="two words"), 400, "InvalidParameter.RoleSessionName"),
            (dict(good, RoleSessionName="semi;colon"), 400, "InvalidParameter.RoleSessionName"),
            (dict(good, ExternalId="a"), 400, "InvalidParameter.ExternalId"),
            (dict(good, ExternalId="has space"), 400, "InvalidParameter.ExternalId"),
            (dict(good, Policy="x" * 2049), 400, "InvalidParameter.PolicySize"),
            (dict(good, Policy="not json"), 400, "InvalidParameter.PolicyGrammar"),
            (dict(good, Policy='{"Version":"2","Statement":[]}'), 400,
             "InvalidParameter.PolicyGrammar"),
            (dict(good, Policy='{"Version":"1","Statement":[{"Effect":"Maybe","Action":"*",'
                  '"Resource":"*"}]}'), 400, "InvalidParameter.PolicyGrammar"),
            (dict(good, RoleArn="acs:ram::1234567890123456:role/no-such-role"), 404,
             "EntityNotExist.Role"),
            (dict(good, RoleArn="acs:ram::999:role/%s" % r["RoleName"]), 404,
             "EntityNotExist.Role"),
        ]
        for params, status, code in cases:
            for sig in ("v1", "v3"):
                with self.subTest(params=params, sig=sig):
                    self.assertError(self.emu.call("AssumeRole", params, signature=sig,
                                                   method="POST"), status, code)
        # limits that are allowed
        for params in (dict(good, RoleSessionName="x" * 64), dict(good, RoleSessionName="ab"),
                       dict(good, ExternalId="abc-+=,.@:/_XYZ09"),
                       dict(good, RoleArn=arn.replace(r["RoleName"], r["RoleName"].upper()))):
            with self.subTest(params=params):
                st, body = self.emu.call("AssumeRole", params, method="POST")
                self.assertEqual(st, 200, body)

    def test_trust_list_and_external_id(self):
        st, body = self.emu.call("CreateAccessKey", {"UserName": "trusted-alice"})
        alice = body["AccessKey"]
        self.emu.set_permissions("user/trusted-alice", ["sts:AssumeRole"])
        r = self.role(trusted=["user/trusted-alice"])
        self.assertEqual(r["trusted"], ["user/trusted-alice"])
        self.assertError(self.emu.assume_role(r["RoleName"]), 403, "NoPermission")
        e = self.emu.log(last=1)[0]
        self.assertIn("trust", e["detail"])
        st, body = self.emu.assume_role(r["RoleName"], key_id=alice["AccessKeyId"],
                                        secret=alice["AccessKeySecret"])
        self.assertEqual(st, 200, body)
        # The ARN form names the same principal.
        self.emu.update_role(r["RoleName"], trusted=[
            "acs:ram::%s:user/trusted-alice" % self.emu.account_id])
        self.assertEqual(self.emu.assume_role(r["RoleName"], key_id=alice["AccessKeyId"],
                                              secret=alice["AccessKeySecret"])[0], 200)
        # Another account's principal trusts nobody here.
        self.emu.update_role(r["RoleName"], trusted=["acs:ram::999:root"])
        self.assertError(self.emu.assume_role(r["RoleName"], key_id=alice["AccessKeyId"],
                                              secret=alice["AccessKeySecret"]),
                         403, "NoPermission")
        # ExternalId
        x = self.role(external_id="ext-id-1")
        self.assertEqual(x["external_id"], "ext-id-1")
        self.assertError(self.emu.assume_role(x["RoleName"]), 403, "NoPermission")
        self.assertError(self.emu.assume_role(x["RoleName"], external_id="ext-id-2"),
                         403, "NoPermission")
        self.assertIn("ExternalId", self.emu.log(last=1)[0]["detail"])
        self.assertEqual(self.emu.assume_role(x["RoleName"], external_id="ext-id-1")[0], 200)
        self.emu.update_role(x["RoleName"], external_id=None)
        self.assertEqual(self.emu.assume_role(x["RoleName"])[0], 200)

    def test_lifetime_override_expires_credentials(self):
        r = self.role()
        other = self.role(sts_lifetime=30)
        self.emu.set_sts_lifetime(2)
        self.assertEqual(self.emu.sts_settings()["lifetime"], 2)
        try:
            st, body, hdr = self.emu.assume_role(r["RoleName"], "short", duration=3600,
                                                 with_headers=True)
            self.assertEqual(st, 200, body)
            creds = body["Credentials"]
            t0 = time.time()
            left = ramsign.parse_timestamp(creds["Expiration"]) - http_date(hdr)
            self.assertTrue(2 <= left <= 3, left)
            st, body, hdr = self.emu.assume_role(other["RoleName"], "role-wins",
                                                 with_headers=True)
            left = ramsign.parse_timestamp(body["Credentials"]["Expiration"]) - http_date(hdr)
            self.assertTrue(30 <= left <= 31, left)           # the role's own lifetime wins
            for sig in ("v1", "v3"):
                self.assertEqual(self.as_session(creds, "GetCallerIdentity", signature=sig)[0],
                                 200)
            time.sleep(max(0.0, 3.1 - (time.time() - t0)))
            for sig in ("v1", "v3"):
                self.assertError(self.as_session(creds, "GetCallerIdentity", signature=sig),
                                 400, "InvalidSecurityToken.Expired")
                self.assertError(self.as_session(creds, "ListAccessKeys", {"UserName": "u"},
                                                 signature=sig),
                                 400, "InvalidSecurityToken.Expired", api="ram")
            sess = [s for s in self.emu.sessions(r["RoleName"])
                    if s["AccessKeyId"] == creds["AccessKeyId"]]
            self.assertEqual(len(sess), 1)
            self.assertTrue(sess[0]["expired"])
        finally:
            self.emu.set_sts_lifetime(None)
        st, body, hdr = self.emu.assume_role(r["RoleName"], "back", duration=900,
                                             with_headers=True)
        left = ramsign.parse_timestamp(body["Credentials"]["Expiration"]) - http_date(hdr)
        self.assertTrue(900 <= left <= 901, left)

    # -- signing with a temporary credential ------------------------------
    def test_security_token_rules(self):
        r = self.role()
        a = self.assume(r["RoleName"], "sa")
        b = self.assume(r["RoleName"], "sb")
        kid, secret = a["AccessKeyId"], a["AccessKeySecret"]
        for sig in ("v1", "v3"):
            for action, params, api in (("GetCallerIdentity", {}, "sts"),
                                        ("ListAccessKeys", {"UserName": "tok-u"}, "ram")):
                with self.subTest(sig=sig, action=action):
                    call = self.emu.call
                    self.assertError(call(action, params, kid, secret, sig),
                                     400, "MissingSecurityToken", api)
                    self.assertError(call(action, params, kid, secret, sig,
                                          security_token="CAISgarbage=="),
                                     400, "InvalidSecurityToken.Malformed", api)
                    self.assertError(call(action, params, kid, secret, sig,
                                          security_token=b["SecurityToken"]),
                                     400, "InvalidSecurityToken.MismatchWithAccessKey", api)
                    self.assertError(call(action, params, kid, "wrong", sig,
                                          security_token=a["SecurityToken"]),
                                     400, "SignatureDoesNotMatch", api)
                    # a token with a long-term key
                    self.assertError(call(action, params, security_token=a["SecurityToken"],
                                          signature=sig),
                                     400, "InvalidSecurityToken.MismatchWithAccessKey", api)
                    self.assertError(call(action, params, security_token="garbage",
                                          signature=sig),
                                     400, "InvalidSecurityToken.Malformed", api)
                    self.assertEqual(call(action, params, kid, secret, sig,
                                          security_token=a["SecurityToken"])[0], 200)
        # Unknown STS. key with a token of nobody.
        self.assertError(self.emu.call("GetCallerIdentity", {}, "STS.unknownkey0000000000",
                                       "s", "v1", security_token="CAISnothing"),
                         400, "InvalidSecurityToken.Malformed")
        # v1: the token is signed like every parameter.
        req = self.emu.prepare("GetCallerIdentity", {}, kid, secret, "v1",
                               security_token=a["SecurityToken"])
        self.assertIn("SecurityToken=", req.target)
        tampered = req.target.replace("SecurityToken=CAIS", "SecurityToken=CAIT")
        conn = self.emu.connection()
        try:
            conn.request("GET", tampered, headers=req.headers)
            resp = conn.getresponse()
            self.assertEqual(resp.status, 400)
            resp.read()
        finally:
            conn.close()
        # v3: an unsigned x-acs-security-token header is refused.
        req = self.emu.prepare("GetCallerIdentity", {}, kid, secret, "v3")
        headers = dict(req.headers, **{"x-acs-security-token": a["SecurityToken"]})
        conn = self.emu.connection()
        try:
            conn.request("GET", req.target, headers=headers)
            resp = conn.getresponse()
            import json
            body = json.loads(resp.read())
        finally:
            conn.close()
        self.assertEqual(body["Code"], "IncompleteSignature")

    def test_chaining(self):
        a = self.role()
        b = self.role(trusted=["role/%s" % a["RoleName"]])
        c = self.role(trusted=["user/nobody"])
        ca = self.assume(a["RoleName"], "first")
        for sig in ("v1", "v3"):
            st, body = self.emu.assume_role(b["RoleName"], "second", key_id=ca["AccessKeyId"],
                                            secret=ca["AccessKeySecret"],
                                            security_token=ca["SecurityToken"], signature=sig)
            self.assertEqual(st, 200, body)
            cb = body["Credentials"]
            e = self.emu.log(last=1)[0]
            self.assertEqual((e["principal"], e["principal_kind"], e["role"], e["target_role"]),
                             ("acs:ram::%s:assumed-role/%s/first" % (self.emu.account_id,
                                                                     a["RoleName"]),
                              "role_session", a["RoleName"], b["RoleName"]))
            st, who = self.as_session(cb, "GetCallerIdentity", signature=sig)
            self.assertEqual(who["Arn"], "acs:ram::%s:assumed-role/%s/second"
                             % (self.emu.account_id, b["RoleName"]))
        # The admin key is not role a: b does not trust it.
        self.assertError(self.emu.assume_role(b["RoleName"]), 403, "NoPermission")
        self.assertError(self.emu.assume_role(c["RoleName"], key_id=ca["AccessKeyId"],
                                              secret=ca["AccessKeySecret"],
                                              security_token=ca["SecurityToken"]),
                         403, "NoPermission")

    # -- GetCallerIdentity ------------------------------------------------
    def test_get_caller_identity_every_kind(self):
        acct = self.emu.account_id
        st, body = self.emu.call("CreateAccessKey", {"UserName": "who-bob"})
        bob = body["AccessKey"]
        bob_id = self.emu.state()["users"]["who-bob"]["UserId"]
        r = self.role()
        s = self.assume(r["RoleName"], "who@host")
        for sig in ("v1", "v3"):
            with self.subTest(sig=sig):
                st, who = self.emu.caller_identity(signature=sig)
                self.assertEqual(st, 200, who)
                self.assertEqual(who, {"RequestId": who["RequestId"], "AccountId": acct,
                                       "Arn": "acs:ram::%s:root" % acct,
                                       "IdentityType": "Account", "PrincipalId": acct,
                                       "UserId": acct})
                st, who = self.emu.caller_identity(bob["AccessKeyId"], bob["AccessKeySecret"],
                                                   signature=sig)
                self.assertEqual(st, 200, who)
                self.assertEqual(who, {"RequestId": who["RequestId"], "AccountId": acct,
                                       "Arn": "acs:ram::%s:user/who-bob" % acct,
                                       "IdentityType": "RAMUser", "PrincipalId": bob_id,
                                       "UserId": bob_id})
                st, who = self.emu.caller_identity(s["AccessKeyId"], s["AccessKeySecret"],
                                                   s["SecurityToken"], signature=sig)
                self.assertEqual(st, 200, who)
                self.assertEqual(who, {"RequestId": who["RequestId"], "AccountId": acct,
                                       "Arn": "acs:ram::%s:assumed-role/%s/who@host"
                                       % (acct, r["RoleName"]),
                                       "IdentityType": "AssumedRoleUser",
                                       "PrincipalId": "%s:who@host" % r["RoleId"],
                                       "RoleId": r["RoleId"]})
        # It needs no permission: a principal allowed nothing still gets it.
        self.emu.set_permissions("user/who-bob", [])
        try:
            st, who = self.emu.caller_identity(bob["AccessKeyId"], bob["AccessKeySecret"])
            self.assertEqual(st, 200, who)
        finally:
            self.emu.clear_permissions("user/who-bob")

    def test_a_role_session_uses_ram(self):
        r = self.role()
        s = self.assume(r["RoleName"], "minter")
        for sig, method in (("v1", "GET"), ("v1", "POST"), ("v3", "GET"), ("v3", "POST")):
            with self.subTest(sig=sig, method=method):
                user = self.name("sess-user")
                st, body = self.as_session(s, "CreateAccessKey", {"UserName": user}, sig,
                                           method=method)
                self.assertEqual(st, 200, body)
                kid = body["AccessKey"]["AccessKeyId"]
                self.assertEqual(self.emu.keys_of(user)[0]["AccessKeyId"], kid)
                st, body = self.as_session(s, "DeleteAccessKey",
                                           {"UserName": user, "UserAccessKeyId": kid}, sig,
                                           method=method)
                self.assertEqual(st, 200, body)
                self.assertEqual(self.emu.keys_of(user), [])

    # -- routing ----------------------------------------------------------
    def test_version_routes_to_the_api(self):
        r = self.role()
        arn = self.emu.role_arn(r["RoleName"])
        for sig in ("v1", "v3"):
            with self.subTest(sig=sig):
                self.assertError(self.emu.call("AssumeRole", {"RoleArn": arn,
                                                              "RoleSessionName": "x1"},
                                               signature=sig, version=ramsign.API_VERSION),
                                 404, "InvalidAction.NotFound", api="ram")
                self.assertError(self.emu.call("CreateAccessKey", {"UserName": "route"},
                                               signature=sig,
                                               version=ramsign.STS_API_VERSION),
                                 404, "InvalidAction.NotFound")
                self.assertError(self.emu.call("GetCallerIdentity", {}, signature=sig,
                                               version="2019-08-15"),
                                 400, "InvalidVersion")
                self.assertEqual(self.emu.call("GetCallerIdentity", signature=sig)[0], 200)
        self.assertEqual(self.emu.log(last=1)[0]["api"], "sts")

    def test_counters_include_sts_actions(self):
        r = self.role()
        self.emu.reset_counters()
        self.emu.assume_role(r["RoleName"])
        self.emu.caller_identity()
        self.emu.caller_identity()
        c = self.emu.counters()
        self.assertEqual(c["calls"], {"AssumeRole": 1, "GetCallerIdentity": 2})
        self.assertEqual(c["in_flight"]["AssumeRole"], 0)
        self.assertIn("GetCallerIdentity", c["in_flight_peak_by_action"])

    def test_session_policy_narrows_the_role(self):
        r = self.role()
        policy = {"Version": "1", "Statement": [
            {"Effect": "Allow", "Action": ["ram:ListAccessKeys", "ram:GetUser"],
             "Resource": "acs:ram:*:%s:user/pol-*" % self.emu.account_id},
            {"Effect": "Deny", "Action": "ram:GetUser", "Resource": "*"}]}
        s = self.assume(r["RoleName"], "narrow", policy=policy)
        self.assertEqual(self.as_session(s, "ListAccessKeys", {"UserName": "pol-a"})[0], 200)
        body = self.assertError(self.as_session(s, "ListAccessKeys", {"UserName": "other"}),
                                403, "NoPermission", api="ram")
        self.assertIn("session policy", self.emu.log(last=1)[0]["detail"])
        self.assertEqual(body["Message"], "You are not authorized to do this action.")
        self.assertError(self.as_session(s, "GetUser", {"UserName": "pol-a"}),
                         403, "NoPermission", api="ram")
        self.assertError(self.as_session(s, "CreateAccessKey", {"UserName": "pol-a"}),
                         403, "NoPermission", api="ram")
        self.assertEqual(self.as_session(s, "GetCallerIdentity")[0], 200)

    # -- admin ------------------------------------------------------------
    def test_role_admin(self):
        name = self.name()
        r = self.emu.create_role(name)
        self.assertTrue(r["created"])
        self.assertEqual((r["Arn"], r["MaxSessionDuration"], r["trusted"], r["external_id"],
                          r["sts_lifetime"]),
                         ("acs:ram::%s:role/%s" % (self.emu.account_id, name), 3600,
                          ["account"], None, None))
        self.assertRegex(r["RoleId"], r"^[0-9]{19}$")
        r2 = self.emu.update_role(name, max_session_duration=43200)
        self.assertFalse(r2["created"])
        self.assertEqual((r2["RoleId"], r2["MaxSessionDuration"], r2["trusted"]),
                         (r["RoleId"], 43200, ["account"]))
        self.assertIn(name, [x["RoleName"] for x in self.emu.roles()])
        self.assertEqual(self.emu.state()["roles"][name]["MaxSessionDuration"], 43200)
        for bad in ({"name": "bad_name"}, {"name": ""}, {"name": "x", "trusted": "account"},
                    {"name": "x", "trusted": ["group/x"]}, {"name": "x", "nope": 1},
                    {"name": "x", "max_session_duration": 3599},
                    {"name": "x", "max_session_duration": 43201},
                    {"name": "x", "external_id": "a"}, {"name": "x", "sts_lifetime": 0},
                    {"name": "x", "allow": ["nosuch:Thing"]}):
            with self.subTest(bad=bad), self.assertRaises(EmulatorError) as cm:
                self.emu.admin("POST", "/_emu/roles", bad)
            self.assertEqual(cm.exception.status, 400)
        with self.assertRaises(EmulatorError):
            self.emu.admin("POST", "/_emu/sts", {"lifetime": -1})
        self.assertNotIn("x", [x["RoleName"] for x in self.emu.roles()])


class CommandLine(unittest.TestCase):
    def test_account_roles_and_lifetime_options(self):
        with Emulator(account_id="5555000011112222",
                      extra_args=["--roles", "cli-a,cli-b", "--sts-lifetime", "60"]) as emu:
            self.assertEqual(emu.account_id, "5555000011112222")
            self.assertEqual(sorted(x["RoleName"] for x in emu.roles()), ["cli-a", "cli-b"])
            st, body = emu.assume_role("cli-b", "ss", duration=3600)
            self.assertEqual(st, 200, body)
            self.assertTrue(body["AssumedRoleUser"]["Arn"].startswith(
                "acs:ram::5555000011112222:role/cli-b/"))
            left = ramsign.parse_timestamp(body["Credentials"]["Expiration"]) - time.time()
            self.assertTrue(55 <= left <= 62, left)


if __name__ == "__main__":
    unittest.main()
