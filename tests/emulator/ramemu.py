#!/usr/bin/env python3
"""ramemu: an Alibaba Cloud RAM (2015-05-01) and STS (2015-04-01) API emulator,
with an ECS instance metadata service, for ramkey's tests and demo.

Standard library only (plus the `openssl` command to mint a throwaway CA).
What it serves, its options and its admin endpoints: tests/emulator/README.md
and `ramemu.py --help`.

API on path "/" (GET query or POST form, RPC style), signature v1 (HMAC-SHA1)
and v3 (ACS3-HMAC-SHA256), routed by the request's version (v1: parameter
`Version`, v3: header x-acs-version):
  RAM 2015-05-01: CreateUser, GetUser, CreateAccessKey, UpdateAccessKey,
                  DeleteAccessKey, ListAccessKeys, ListUsers, ListUsersForGroup;
  STS 2015-04-01: AssumeRole, GetCallerIdentity.
Callers: the account's admin key, RAM users' keys, and temporary (STS.)
credentials of role sessions, which sign with their SecurityToken. Each
principal's permissions can be narrowed through the admin endpoints.
Unsigned JSON admin endpoints under /_emu/ (state, counters, faults, log,
users, keys, groups, roles, permissions, sts, sessions, imds, health).
With --imds-listen, the instance metadata service on a plain HTTP listener of
its own (token, role name, rotating role credentials).
"""

import argparse
import base64
import collections
import email.utils
import fcntl
import fnmatch
import hmac
import http.server
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import ssl
import string
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "lib"))
if _HERE not in sys.path:       # also when loaded as a module from elsewhere
    sys.path.insert(0, _HERE)
import ramsign  # noqa: E402  (shared canonicalization with the test signer)
import httploop  # noqa: E402  (the API listeners' event loop)

RAM_ACTIONS = ("CreateUser", "GetUser", "CreateAccessKey", "UpdateAccessKey",
               "DeleteAccessKey", "ListAccessKeys", "ListUsers", "ListUsersForGroup")
STS_ACTIONS = ("AssumeRole", "GetCallerIdentity")
ACTIONS = RAM_ACTIONS + STS_ACTIONS
API_OF = dict([(a, "ram") for a in RAM_ACTIONS] + [(a, "sts") for a in STS_ACTIONS])
API_VERSIONS = {"ram": ramsign.API_VERSION, "sts": ramsign.STS_API_VERSION}
API_OF_VERSION = {v: k for k, v in API_VERSIONS.items()}
# Actions that name a RAM user (UserName) and act on it.
USER_ACTIONS = ("CreateUser", "GetUser", "CreateAccessKey", "UpdateAccessKey",
                "DeleteAccessKey", "ListAccessKeys")
HOST_ID = "ram.aliyuncs.com"
HOST_IDS = {"ram": HOST_ID, "sts": "sts.aliyuncs.com"}
PRODUCTS = {"ram": "Ram", "sts": "Sts"}
MAX_BODY = 1 << 20           # bytes; larger bodies get 413
IDLE_TIMEOUT = 300           # s; an idle keep-alive connection is kept at least 120 s
HANDSHAKE_TIMEOUT = 30       # s; TLS handshake, done in the connection's thread
LINGER_S = 2.0               # s; draining a closed connection's unread input
LINGER_BYTES = 16 << 20
CLOCK_WINDOW = 15 * 60       # s; Timestamp / x-acs-date tolerance
NONCE_TTL = 40 * 60          # s; how long nonces are remembered (> 2 windows)
LOG_MAX = 200000             # entries kept in the request log
KEYS_PER_USER = 2
ALNUM = string.ascii_letters + string.digits
# Random bytes below 248 (4 x 62) map evenly onto ALNUM; the rest are
# dropped. One draw and one translate per id, not a call per character:
# drawing ids a character at a time was an eighth of an AssumeRole's CPU.
_ALNUM_TABLE = bytes(ord(ALNUM[b % 62]) if b < 248 else 0 for b in range(256))
_ALNUM_DROP = bytes(range(248, 256))
SHELL_SPECIALS = "'\"$\\` !*&;#%"
USERNAME_CHARS = frozenset(ALNUM + "._-")
FAULT_KINDS = ("error_5xx", "throttle", "reset", "down")
V3_REQUIRED_HEADERS = ("host", "x-acs-action", "x-acs-version", "x-acs-date",
                       "x-acs-signature-nonce", "x-acs-content-sha256")

# STS (2015-04-01) parameter rules.
DEFAULT_ACCOUNT_ID = "1234567890123456"
ROLE_NAME_RE = re.compile(r"^[A-Za-z0-9.-]{1,64}$")
ROLE_ARN_RE = re.compile(r"^acs:ram::([0-9]{1,32}):role/([A-Za-z0-9.-]{1,64})$")
SESSION_NAME_RE = re.compile(r"^[A-Za-z0-9.@_-]{2,64}$")
EXTERNAL_ID_RE = re.compile(r"^[A-Za-z0-9_+=,.@:/-]{2,1224}$")
GROUP_NAME_RE = re.compile(r"^[A-Za-z0-9.-]{1,64}$")
STS_MIN_DURATION = 900       # s; smallest DurationSeconds
STS_DEFAULT_DURATION = 3600  # s; DurationSeconds when not given, and a role's default maximum
STS_MAX_DURATION = 43200     # s; the largest maximum session duration a role may have
POLICY_MAX = 2048            # characters of a session policy
LIST_MAX_ITEMS = 1000        # ListUsers / ListUsersForGroup MaxItems range 1..1000
LIST_DEFAULT_ITEMS = 100

# Instance metadata service.
IMDS_TOKEN_TTL_MAX = 21600   # s; X-aliyun-ecs-metadata-token-ttl-seconds is 1..21600
IMDS_DEFAULT_ROLE = "ramkey-instance"
IMDS_LOG_MAX = 100000        # per-request records kept
IMDS_HANG_MAX = 600          # s; a "hang" stop holds a connection at most this long
IMDS_CRED_PATH = "/latest/meta-data/ram/security-credentials/"
IMDS_TOKEN_PATH = "/latest/api/token"
IMDS_STOP_MODES = ("refuse", "close", "hang")

# Code -> (HTTP status, default message), as RAM and STS answer them.
ERRORS = {
    "EntityNotExist.User": (404, "The user does not exist."),
    "EntityNotExist.User.AccessKey": (404, "The user access key does not exist."),
    "EntityAlreadyExists.User": (409, "The user does already exist."),
    "LimitExceeded.User.AccessKey": (
        409, "The access key count of the user access keys beyond the current limits."),
    "NoPermission": (403, "You are not authorized to do this action."),
    "InternalError": (500, "An internal error occurred."),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "SignatureDoesNotMatch": (400, "Specified signature is not matched with our calculation."),
    "IncompleteSignature": (400, "The request signature does not conform to Aliyun standards."),
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "InvalidAccessKeyId.Inactive": (400, "Specified access key is disabled."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "InvalidParameter.UserName.InvalidChars": (
        400, "The parameter UserName contains invalid chars (allowed: A-Z a-z 0-9 . _ -)."),
    "InvalidParameter.UserName.Length": (
        400, "The length of the parameter UserName must be 1 to 64 characters."),
    "InvalidParameter": (400, "The specified parameter is not valid."),
    "EntityNotExist.Group": (404, "The group does not exist."),
    "InvalidParameter.GroupName.InvalidChars": (
        400, "The parameter GroupName contains invalid chars (allowed: A-Z a-z 0-9 . -)."),
    "InvalidParameter.GroupName.Length": (
        400, "The length of the parameter GroupName must be 1 to 64 characters."),
    # STS
    "EntityNotExist.Role": (404, "The role does not exist."),
    "InvalidParameter.RoleArn": (400, "The parameter RoleArn is wrongly formed."),
    "InvalidParameter.RoleSessionName": (400, "The parameter RoleSessionName is wrongly formed."),
    "InvalidParameter.DurationSeconds": (400, "The parameter DurationSeconds is wrongly formed."),
    "InvalidParameter.ExternalId": (400, "The parameter ExternalId is wrongly formed."),
    "InvalidParameter.PolicyGrammar": (400, "The parameter Policy has not passed grammar check."),
    "InvalidParameter.PolicySize": (
        400, "The size of the parameter Policy exceeds the limit of 2048 characters."),
    "MissingSecurityToken": (
        400, 'The input parameter "SecurityToken" that is mandatory for processing this '
        "request is not supplied."),
    "InvalidSecurityToken.Expired": (400, "Specified SecurityToken is expired."),
    "InvalidSecurityToken.Malformed": (400, "Specified SecurityToken is malformed."),
    "InvalidSecurityToken.MismatchWithAccessKey": (
        400, "Specified SecurityToken mismatch with the AccessKey."),
    "InvalidVersion": (400, "Specified parameter Version is not valid."),
    "InvalidAction.NotFound": (404, "Specified api is not found, please check your url and method."),
    "InvalidSignatureMethod": (400, "Specified signature method is not supported."),
    "InvalidSignatureVersion": (400, "Specified signature version is not supported."),
    # Transport-level errors of the emulator itself.
    "BadRequest": (400, "The request could not be parsed."),
    "NotFound": (404, "No such path."),
    "MethodNotAllowed": (405, "The method is not allowed for this path."),
    "LengthRequired": (411, "A request body needs a Content-Length."),
    "RequestEntityTooLarge": (413, "The request body exceeds 1 MiB."),
}


class ApiError(Exception):
    def __init__(self, code, message=None, status=None, detail=None):
        st, msg = ERRORS.get(code, (400, code))
        self.code = code
        self.status = status if status is not None else st
        self.message = message if message is not None else msg
        self.detail = detail
        super().__init__("%s: %s" % (code, self.message))


def missing(name):
    return ApiError("Missing" + name,
                    'The input parameter "%s" that is mandatory for processing this '
                    "request is not supplied." % name, status=400)


def new_request_id():
    return str(uuid.uuid4()).upper()


_http_date = (None, "")


def http_date(t):
    """The Date header's value for unix time t, formatted once a second."""
    sec = int(t)
    cached = _http_date
    if cached[0] != sec:
        globals()["_http_date"] = cached = (sec, email.utils.formatdate(sec, usegmt=True))
    return cached[1]


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t)))


def error_body(code, message, request_id, api="ram"):
    return collections.OrderedDict([
        ("RequestId", request_id),
        ("HostId", HOST_IDS[api]),
        ("Code", code),
        ("Message", message),
        ("Recommend", "https://api.aliyun.com/troubleshoot?q=%s&product=%s&requestId=%s"
         % (urllib.parse.quote(code), PRODUCTS[api], request_id)),
    ])


def parse_params(s):
    """Query string or form body -> dict (last value wins). ValueError if not UTF-8."""
    if not s:
        return {}
    return dict(urllib.parse.parse_qsl(s, keep_blank_values=True, encoding="utf-8",
                                       errors="strict", max_num_fields=1000))


# ------------------------------------------------------------------ state --

class Key:
    __slots__ = ("id", "secret", "status", "created", "created_by", "user")

    def __init__(self, key_id, secret, created, created_by, user, status="Active"):
        self.id, self.secret, self.created = key_id, secret, created
        self.created_by, self.user, self.status = created_by, user, status

    def dump(self):
        return collections.OrderedDict([
            ("AccessKeyId", self.id), ("AccessKeySecret", self.secret),
            ("Status", self.status), ("CreateDate", iso(self.created)),
            ("created_by", self.created_by)])


class User:
    __slots__ = ("name", "user_id", "display_name", "comments", "created", "keys")

    def __init__(self, name, user_id, created, display_name=None, comments=""):
        self.name, self.user_id, self.created = name, user_id, created
        self.display_name = display_name if display_name else name
        self.comments = comments or ""
        self.keys = []

    def info(self):
        return collections.OrderedDict([
            ("UserId", self.user_id), ("UserName", self.name),
            ("DisplayName", self.display_name), ("Comments", self.comments),
            ("CreateDate", iso(self.created)), ("UpdateDate", iso(self.created))])


class Group:
    __slots__ = ("name", "group_id", "created", "comments", "members")

    def __init__(self, name, group_id, created, comments=""):
        self.name, self.group_id, self.created = name, group_id, created
        self.comments = comments or ""
        self.members = collections.OrderedDict()     # user name -> join time

    def dump(self):
        return collections.OrderedDict([
            ("GroupId", self.group_id), ("GroupName", self.name), ("Comments", self.comments),
            ("CreateDate", iso(self.created)), ("members", list(self.members))])


class Role:
    """A RAM role: who may assume it (trusted: principal references, see
    principal_ref), the longest session it allows, the ExternalId its trust
    policy asks for (None: none), and a test-chosen credential lifetime."""
    __slots__ = ("name", "role_id", "created", "trusted", "max_session", "external_id",
                 "sts_lifetime")

    def __init__(self, name, role_id, created):
        self.name, self.role_id, self.created = name, role_id, created
        self.trusted = ["account"]
        self.max_session = STS_DEFAULT_DURATION
        self.external_id = None
        self.sts_lifetime = None

    def arn(self, account_id):
        return "acs:ram::%s:role/%s" % (account_id, self.name)

    def dump(self, account_id):
        return collections.OrderedDict([
            ("RoleName", self.name), ("RoleId", self.role_id), ("Arn", self.arn(account_id)),
            ("MaxSessionDuration", self.max_session), ("CreateDate", iso(self.created)),
            ("trusted", list(self.trusted)), ("external_id", self.external_id),
            ("sts_lifetime", self.sts_lifetime)])


class Session:
    """A temporary credential of a role: from AssumeRole, or the instance
    role's credential from the metadata service (source "imds")."""
    __slots__ = ("key_id", "secret", "token", "role", "name", "created", "expires", "policy",
                 "source", "assumed_by")

    def __init__(self, key_id, secret, token, role, name, created, expires, policy, source,
                 assumed_by):
        self.key_id, self.secret, self.token = key_id, secret, token
        self.role, self.name, self.created, self.expires = role, name, created, expires
        self.policy, self.source, self.assumed_by = policy, source, assumed_by

    def credentials(self):
        return collections.OrderedDict([
            ("SecurityToken", self.token), ("AccessKeyId", self.key_id),
            ("AccessKeySecret", self.secret), ("Expiration", iso(self.expires))])

    def dump(self, account_id, now):
        return collections.OrderedDict([
            ("AccessKeyId", self.key_id), ("AccessKeySecret", self.secret),
            ("SecurityToken", self.token), ("role", self.role.name),
            ("session", self.name),
            ("Arn", "acs:ram::%s:assumed-role/%s/%s" % (account_id, self.role.name, self.name)),
            ("source", self.source), ("assumed_by", self.assumed_by),
            ("created", iso(self.created)), ("Expiration", iso(self.expires)),
            ("expires_unix", self.expires), ("expired", now >= self.expires),
            ("session_policy", self.policy is not None)])


class Principal:
    """Who signed a request. kind: "account" (the admin key), "ram_user" or
    "role_session"; ref: the key of its permissions ("account", "user/NAME",
    "role/NAME"); arn as GetCallerIdentity answers it."""
    __slots__ = ("kind", "arn", "ref", "principal_id", "user", "session")

    def __init__(self, kind, arn, ref, principal_id, user=None, session=None):
        self.kind, self.arn, self.ref, self.principal_id = kind, arn, ref, principal_id
        self.user, self.session = user, session


def principal_ref(value, account_id, trust=False):
    """A principal reference: "account" (also "root", "*" or the account's
    root ARN), "user/NAME", "role/NAME" (role names compare case-insensitively),
    or their ARNs acs:ram::ACCOUNT:user/NAME, acs:ram::ACCOUNT:role/NAME.
    In a trust list (trust=True) also "service/NAME" and other accounts'
    ARNs, which no caller of this emulator matches. ValueError if malformed."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a principal must be a non-empty string")
    v = value.strip()
    if v in ("account", "root", "*"):
        return "account"
    m = re.match(r"^acs:ram::([0-9]+):(.+)$", v)
    if m:
        if m.group(1) != account_id:
            if trust:
                return v
            raise ValueError("principal %r belongs to another account" % value)
        v = m.group(2)
        if v == "root":
            return "account"
    kind, _, name = v.partition("/")
    if kind == "user" and name and all(c in USERNAME_CHARS for c in name):
        return "user/" + name
    if kind == "role" and ROLE_NAME_RE.match(name):
        return "role/" + name.lower()
    if kind == "service" and name and trust:
        return v
    raise ValueError("principal %r: use account, user/NAME or role/NAME (or their ARNs)"
                     % value)


def _norm_resource(pattern):
    """acs:ram::ACCOUNT:... (a RoleArn) matches like acs:ram:*:ACCOUNT:..."""
    if pattern.startswith("acs:"):
        parts = pattern.split(":", 4)
        if len(parts) == 5 and parts[2] == "":
            parts[2] = "*"
            return ":".join(parts)
    return pattern


def _norm_action(pattern, bare_ok):
    a = pattern.strip()
    if a == "*":
        return a
    if ":" not in a:
        if bare_ok:
            for name, api in API_OF.items():
                if name.lower() == a.lower():
                    return ("%s:%s" % (api, name)).lower()
        raise ValueError("action %r: use SERVICE:ACTION, e.g. ram:CreateAccessKey" % pattern)
    svc, _, rest = a.partition(":")
    if svc.lower() not in ("ram", "sts", "*") or not rest:
        raise ValueError("action %r: the service must be ram or sts" % pattern)
    return a.lower()


def _str_list(v, what):
    if isinstance(v, str) and v:
        return [v]
    if isinstance(v, list) and v and all(isinstance(x, str) and x for x in v):
        return list(v)
    raise ValueError("%s must be a non-empty string or list of strings" % what)


def compile_policy(doc):
    """A RAM policy document {"Version":"1","Statement":[{"Effect","Action",
    "Resource"[,"Condition"]}]} (dict or JSON text) -> statements
    [(effect, action patterns, resource patterns)]; ValueError if malformed.
    Conditions are not evaluated."""
    if isinstance(doc, str):
        doc = json.loads(doc)
    if not isinstance(doc, dict) or str(doc.get("Version")) != "1":
        raise ValueError('a policy is an object with "Version": "1"')
    if set(doc) - {"Version", "Statement"}:
        extra = sorted(set(doc) - {"Version", "Statement"})
        raise ValueError("unknown policy field(s): %s" % ", ".join(extra))
    stmts = doc.get("Statement")
    if not isinstance(stmts, list) or not stmts:
        raise ValueError('a policy needs a non-empty "Statement" list')
    out = []
    for st in stmts:
        if not isinstance(st, dict) or set(st) - {"Effect", "Action", "Resource", "Condition"}:
            raise ValueError("a statement has Effect, Action, Resource and optionally Condition")
        if st.get("Effect") not in ("Allow", "Deny"):
            raise ValueError('Effect must be "Allow" or "Deny"')
        acts = [_norm_action(a, False) for a in _str_list(st.get("Action"), "Action")]
        ress = [_norm_resource(r) for r in _str_list(st.get("Resource"), "Resource")]
        out.append((st["Effect"], acts, ress))
    return out


def compile_allow(entries):
    """The admin form of permissions: a list of "SERVICE:ACTION" strings
    (bare action names accepted, any resource) and objects {"action": str or
    list, "resource": str or list (default "*"), "effect": "Allow"|"Deny"}.
    -> statements as compile_policy; ValueError if malformed."""
    if not isinstance(entries, list):
        raise ValueError('"allow" must be a list')
    out = []
    for e in entries:
        if isinstance(e, str):
            out.append(("Allow", [_norm_action(e, True)], ["*"]))
            continue
        if not isinstance(e, dict) or set(e) - {"action", "resource", "effect"}:
            raise ValueError('an "allow" entry is a string or {"action","resource","effect"}')
        effect = e.get("effect", "Allow")
        if effect not in ("Allow", "Deny"):
            raise ValueError('effect must be "Allow" or "Deny"')
        acts = [_norm_action(a, True) for a in _str_list(e.get("action"), "action")]
        ress = [_norm_resource(r) for r in _str_list(e.get("resource", "*"), "resource")]
        out.append((effect, acts, ress))
    return out


def policy_allows(stmts, action, resource):
    """Allowed when an Allow statement matches and no Deny does."""
    full = ("%s:%s" % (API_OF[action], action)).lower()
    allowed = False
    for effect, acts, ress in stmts:
        if (any(fnmatch.fnmatchcase(full, a) for a in acts)
                and any(fnmatch.fnmatchcase(resource, r) for r in ress)):
            if effect == "Deny":
                return False
            allowed = True
    return allowed


DEFAULT_FAULTS = {
    "latency_ms": 0,
    "latency_by_action": {},
    "error_rate": 0.0,
    "throttle_every": 0,
    "reset_rate": 0.0,
    "shell_secrets": False,
    "down_mode": "fail",
    "fail_all": None,
    "clock_skew": 0,
}


# Settings of the instance metadata service (GET/POST /_emu/imds).
IMDS_DEFAULTS = {
    "role": IMDS_DEFAULT_ROLE,     # the instance role's name; None: no role attached
    "require_token": True,         # False: token-less (v1) requests are answered too
    "rotate_every": 3600,          # s; a new credential once the current one is this old
    "lifetime": 21600,             # s; each credential's validity
    "instance_id": "i-ramemu00000000000001",   # also the session name of its credentials
    "latency_ms": 0,               # delay before each answer
}

def _num(name, v, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("%s must be a number" % name)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError("%s out of range" % name)
    return v


class Emulator:
    """All state, counters and the request log, behind one lock."""

    def __init__(self, admin_key_id=None, admin_secret=None, auto_users=False,
                 seed=None, verbose=False, account_id=None):
        self.lock = threading.Lock()
        self.verbose = verbose
        self.auto_users = auto_users
        self.seed = seed
        self.fault_rng = random.Random(seed)
        self.scope_rng = random.Random(seed + 2) if seed is not None else random.Random()
        self.id_rng = random.Random(seed + 1) if seed is not None else random.SystemRandom()
        sysrng = random.SystemRandom()
        self.admin_key_id = admin_key_id or "LTAI" + "".join(sysrng.choice(ALNUM) for _ in range(20))
        self.admin_secret = admin_secret or "".join(sysrng.choice(ALNUM) for _ in range(30))
        self.users = collections.OrderedDict()
        self.keys = {}
        self.deleted = []
        self.deleted_ids = set()
        self.nonces = {}
        self.nonce_inserts = 0
        self.faults = json.loads(json.dumps(DEFAULT_FAULTS))
        self.down_until = 0.0
        self.throttle_count = 0
        self.log = collections.deque(maxlen=LOG_MAX)
        self.log_seq = 0
        self.action_faults = {}           # scope (action, "ram", "sts") -> fault spec
        self.account_id = account_id or DEFAULT_ACCOUNT_ID
        if not re.match(r"^[0-9]{1,32}$", self.account_id):
            raise ValueError("the account id must be digits")
        self.groups = collections.OrderedDict()
        self.roles = collections.OrderedDict()     # lower-case name -> Role
        self.sessions = {}                # AccessKeyId -> Session
        self.tokens = {}                  # SecurityToken -> Session
        self.permissions = {}             # principal ref -> (as given, statements)
        self.sts_lifetime = None
        self.imds = dict(IMDS_DEFAULTS)
        self.imds_tokens = {}             # token -> expiry (emulator clock)
        self.imds_current = None          # the instance role's current Session
        self.imds_mode = None             # None (serving) or one of IMDS_STOP_MODES
        self.imds_wake = threading.Event()
        self.imds_listener = None         # ImdsListener when --imds-listen
        self._reset_counters_locked()
        self._reset_imds_counters_locked()

    # -- clock ------------------------------------------------------------
    def now(self):
        return time.time() + self.faults["clock_skew"]

    # -- counters ---------------------------------------------------------
    def _reset_counters_locked(self):
        self.calls = collections.Counter()
        self.fault_counts = dict.fromkeys(FAULT_KINDS, 0)
        self.connections_opened = 0
        self.connections_accepted = 0
        self.results = collections.Counter()
        if not hasattr(self, "in_flight"):
            self.in_flight = dict.fromkeys(ACTIONS, 0)
        self.in_flight_peak = sum(self.in_flight.values())
        self.in_flight_peak_by_action = dict(self.in_flight)

    def reset_counters(self):
        with self.lock:
            self._reset_counters_locked()

    def counters(self):
        with self.lock:
            return collections.OrderedDict([
                ("calls", dict(self.calls)),
                ("calls_total", sum(self.calls.values())),
                ("faults", dict(self.fault_counts)),
                ("faults_total", sum(self.fault_counts.values())),
                ("connections_opened", self.connections_opened),
                ("connections_accepted", self.connections_accepted),
                ("in_flight", dict(self.in_flight)),
                ("in_flight_total", sum(self.in_flight.values())),
                ("in_flight_peak", self.in_flight_peak),
                ("in_flight_peak_by_action", dict(self.in_flight_peak_by_action)),
                ("results", dict(self.results)),
            ])

    # -- faults -----------------------------------------------------------
    def get_faults(self):
        with self.lock:
            f = json.loads(json.dumps(self.faults))
            f["down_for"] = max(0.0, round(self.down_until - time.time(), 3))
            now = time.time()
            scoped = {}
            for scope in list(self.action_faults):
                sc = self.action_faults[scope]
                if sc["until"] is not None and now >= sc["until"]:
                    del self.action_faults[scope]
                    continue
                d = dict(sc["spec"])
                d["for"] = None if sc["until"] is None else round(sc["until"] - now, 3)
                if "down_for" in d:
                    d["down_for"] = max(0.0, round(sc["down_until"] - now, 3))
                scoped[scope] = d
            f["action_faults"] = scoped
            return f

    @staticmethod
    def _check_scope_spec(scope, v):
        """Validate one action_faults entry -> its spec (None: remove)."""
        if scope not in ACTIONS and scope not in ("ram", "sts"):
            raise ValueError("action_faults: %r is neither an action nor ram or sts" % scope)
        if v is None or v == {}:
            return None
        if not isinstance(v, dict):
            raise ValueError("action_faults.%s must be an object" % scope)
        known = ("latency_ms", "error_rate", "throttle_every", "reset_rate", "down_for",
                 "down_mode", "fail_all", "for")
        unknown = set(v) - set(known)
        if unknown:
            raise ValueError("action_faults.%s: unknown field(s): %s"
                             % (scope, ", ".join(sorted(unknown))))
        out = {}
        for k, x in v.items():
            name = "action_faults.%s.%s" % (scope, k)
            if k == "latency_ms":
                out[k] = _num(name, x, 0, 600000)
            elif k in ("error_rate", "reset_rate"):
                out[k] = _num(name, x, 0, 1)
            elif k == "throttle_every":
                if isinstance(x, bool) or not isinstance(x, int) or x < 0:
                    raise ValueError(name + " must be an integer >= 0")
                out[k] = x
            elif k in ("down_for", "for"):
                if k == "for" and x is None:
                    continue
                out[k] = _num(name, x, 0, 86400)
            elif k == "down_mode":
                if x not in ("fail", "refuse"):
                    raise ValueError(name + ' must be "fail" or "refuse"')
                out[k] = x
            elif k == "fail_all":
                if x is False:
                    x = None
                if x not in (None, "fail", "refuse"):
                    raise ValueError(name + ' must be "fail", "refuse" or null')
                out[k] = x
        return out

    def set_faults(self, spec):
        """Validate everything first, then apply atomically. ValueError if bad."""
        if not isinstance(spec, dict):
            raise ValueError("faults must be a JSON object")
        known = set(DEFAULT_FAULTS) | {"down_for", "clear", "seed", "action_faults"}
        unknown = set(spec) - known
        if unknown:
            raise ValueError("unknown fault field(s): %s" % ", ".join(sorted(unknown)))
        new = {}
        for k, v in spec.items():
            if k == "latency_ms":
                new[k] = _num(k, v, 0, 600000)
            elif k == "latency_by_action":
                if v is None:
                    v = {}
                if not isinstance(v, dict):
                    raise ValueError("latency_by_action must be an object")
                for a, ms in v.items():
                    if a not in ACTIONS:
                        raise ValueError("latency_by_action: unknown action %r" % a)
                    _num("latency_by_action." + a, ms, 0, 600000)
                new[k] = dict(v)
            elif k in ("error_rate", "reset_rate"):
                new[k] = _num(k, v, 0, 1)
            elif k == "throttle_every":
                v = 0 if v is None else v
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise ValueError("throttle_every must be an integer >= 0")
                new[k] = v
            elif k in ("shell_secrets", "clear"):
                if not isinstance(v, bool):
                    raise ValueError("%s must be true or false" % k)
                new[k] = v
            elif k == "down_for":
                new[k] = _num(k, v, 0, 86400)
            elif k == "down_mode":
                if v not in ("fail", "refuse"):
                    raise ValueError('down_mode must be "fail" or "refuse"')
                new[k] = v
            elif k == "fail_all":
                if v is False:
                    v = None
                if v not in (None, "fail", "refuse"):
                    raise ValueError('fail_all must be "fail", "refuse" or null')
                new[k] = v
            elif k == "clock_skew":
                new[k] = _num(k, v, -10 * 365 * 86400, 10 * 365 * 86400)
            elif k == "seed":
                if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                    raise ValueError("seed must be an integer or null")
                new[k] = v
            elif k == "action_faults":
                if v is None:
                    new[k] = None
                    continue
                if not isinstance(v, dict):
                    raise ValueError("action_faults must be an object or null")
                new[k] = {scope: self._check_scope_spec(scope, x) for scope, x in v.items()}
        with self.lock:
            if new.pop("clear", False):
                self.faults = json.loads(json.dumps(DEFAULT_FAULTS))
                self.down_until = 0.0
                self.throttle_count = 0
                self.action_faults = {}
            if "seed" in new:
                seed = new.pop("seed")
                self.fault_rng = random.Random(seed)
                self.scope_rng = random.Random(seed + 2) if seed is not None else random.Random()
            if "action_faults" in new:
                scoped = new.pop("action_faults")
                if scoped is None:
                    self.action_faults = {}
                else:
                    now = time.time()
                    for scope, spec in scoped.items():
                        if spec is None:
                            self.action_faults.pop(scope, None)
                            continue
                        d = spec.get("down_for", 0)
                        self.action_faults[scope] = {
                            "spec": spec, "throttle_count": 0,
                            "until": now + spec["for"] if "for" in spec else None,
                            "down_until": now + d if d > 0 else 0.0}
            if "down_for" in new:
                d = new.pop("down_for")
                self.down_until = time.time() + d if d > 0 else 0.0
            if "throttle_every" in new:
                self.throttle_count = 0
            self.faults.update(new)

    def decide(self, action):
        """Count an API call that reached `action` and pick its fault.
        Returns (fault, mode, latency_s). Caller holds the lock."""
        self.calls[action] += 1
        self.in_flight[action] += 1
        total = sum(self.in_flight.values())
        self.in_flight_peak = max(self.in_flight_peak, total)
        self.in_flight_peak_by_action[action] = max(
            self.in_flight_peak_by_action.get(action, 0), self.in_flight[action])
        f = self.faults
        if f["fail_all"]:
            return "down", f["fail_all"], 0.0
        if self.down_until:
            if time.time() < self.down_until:
                return "down", f["down_mode"], 0.0
            self.down_until = 0.0
        # Faults scoped to this action, then to its API (ram or sts).
        now = time.time()
        scoped = []
        for scope in (action, API_OF.get(action)):
            sc = self.action_faults.get(scope)
            if sc is None:
                continue
            if sc["until"] is not None and now >= sc["until"]:
                del self.action_faults[scope]
                continue
            scoped.append(sc)
        for sc in scoped:
            sp = sc["spec"]
            if sp.get("fail_all"):
                return "down", sp["fail_all"], 0.0
            if sc["down_until"]:
                if now < sc["down_until"]:
                    return "down", sp.get("down_mode", "fail"), 0.0
                sc["down_until"] = 0.0
        latency = f["latency_by_action"].get(action, f["latency_ms"]) / 1000.0
        for sc in scoped:
            if "latency_ms" in sc["spec"]:
                latency = sc["spec"]["latency_ms"] / 1000.0
                break
        r_reset = self.fault_rng.random()
        r_error = self.fault_rng.random()
        fault = None
        if f["throttle_every"]:
            self.throttle_count += 1
            if self.throttle_count % f["throttle_every"] == 0:
                fault = "throttle"
        for sc in scoped:
            sp = sc["spec"]
            if fault is None and sp.get("throttle_every"):
                sc["throttle_count"] += 1
                if sc["throttle_count"] % sp["throttle_every"] == 0:
                    fault = "throttle"
            rng = self.scope_rng
            if fault is None and sp.get("reset_rate") and rng.random() < sp["reset_rate"]:
                fault = "reset"
            if fault is None and sp.get("error_rate") and rng.random() < sp["error_rate"]:
                fault = "error_5xx"
        if fault is None and r_reset < f["reset_rate"]:
            fault = "reset"
        if fault is None and r_error < f["error_rate"]:
            fault = "error_5xx"
        return fault, None, latency

    def finish(self, action, entry, fault):
        """Record a finished API request (log, results, faults, in-flight)."""
        with self.lock:
            if action is not None:
                self.in_flight[action] -= 1
            if fault:
                self.fault_counts[fault] += 1
            self.results[entry["result"]] += 1
            self.log_seq += 1
            entry["seq"] = self.log_seq
            self.log.append(entry)

    # -- ids and secrets --------------------------------------------------
    def _alnum(self, n):
        """n characters drawn uniformly from ALNUM."""
        out = ""
        while len(out) < n:
            need = n - len(out)
            raw = self.id_rng.getrandbits((need + 8) * 8).to_bytes(need + 8, "big")
            out += raw.translate(_ALNUM_TABLE, _ALNUM_DROP)[:need].decode("ascii")
        return out

    def _new_key_id(self):
        while True:
            kid = "LTAI" + self._alnum(20)
            if kid not in self.keys and kid not in self.deleted_ids and kid != self.admin_key_id:
                return kid

    def _new_secret(self, length=30):
        rng = self.id_rng
        if not self.faults["shell_secrets"]:
            return self._alnum(length)
        # Each special once, alphanumerics around them; the first and last
        # characters are alphanumeric (a value that starts or ends with a
        # space or '#' cannot be represented in INI files at all).
        middle = list(SHELL_SPECIALS) + [rng.choice(ALNUM)
                                         for _ in range(length - 2 - len(SHELL_SPECIALS))]
        rng.shuffle(middle)
        return rng.choice(string.ascii_letters) + "".join(middle) + rng.choice(string.digits)

    def _new_digits(self, n):
        return self.id_rng.choice("123456789") + "".join(
            self.id_rng.choice(string.digits) for _ in range(n - 1))

    def _new_session(self, role, name, lifetime, policy, source, assumed_by):
        """Mint a temporary credential of `role`: AccessKeyId "STS." + 28
        characters, a 44-character secret, a SecurityToken of about 1 KB
        (base64, starting "CAIS" like the real ones), expiring `lifetime`
        seconds from now (rounded up to a whole second, as Expiration
        shows it)."""
        while True:
            kid = "STS." + self._alnum(28)
            if kid not in self.sessions:
                break
        while True:
            raw = self.id_rng.getrandbits(760 * 8).to_bytes(760, "big")
            token = "CAIS" + base64.b64encode(raw).decode("ascii")
            if token not in self.tokens:
                break
        now = self.now()
        sess = Session(kid, self._new_secret(44), token, role, name, now,
                       math.ceil(now + lifetime), policy, source, assumed_by)
        self.sessions[kid] = sess
        self.tokens[token] = sess
        return sess

    # -- users and keys (caller holds the lock) ---------------------------
    @staticmethod
    def check_user_name(name):
        if not 1 <= len(name) <= 64:
            raise ApiError("InvalidParameter.UserName.Length")
        if any(c not in USERNAME_CHARS for c in name):
            raise ApiError("InvalidParameter.UserName.InvalidChars")

    def _create_user(self, name, display_name=None, comments=""):
        uid = "".join(self.id_rng.choice(string.digits) for _ in range(16))
        u = User(name, uid, self.now(), display_name, comments)
        self.users[name] = u
        return u

    def _get_user(self, name):
        self.check_user_name(name)
        u = self.users.get(name)
        if u is None:
            if not self.auto_users:
                raise ApiError("EntityNotExist.User")
            u = self._create_user(name)
        return u

    def _create_key(self, u, created_by, status="Active", created=None):
        if len(u.keys) >= KEYS_PER_USER:
            raise ApiError("LimitExceeded.User.AccessKey")
        k = Key(self._new_key_id(), self._new_secret(),
                self.now() if created is None else created, created_by, u.name, status)
        u.keys.append(k)
        self.keys[k.id] = k
        return k

    @staticmethod
    def _user_key(u, key_id):
        for k in u.keys:
            if k.id == key_id:
                return k
        raise ApiError("EntityNotExist.User.AccessKey")

    def _delete_key(self, u, k):
        u.keys.remove(k)
        del self.keys[k.id]
        self.deleted_ids.add(k.id)
        self.deleted.append(collections.OrderedDict([
            ("AccessKeyId", k.id), ("UserName", u.name), ("deleted_at", iso(self.now()))]))

    # -- authentication (caller holds the lock) ---------------------------
    def _check_time(self, value):
        try:
            t = ramsign.parse_timestamp(value)
        except (ValueError, OverflowError):
            raise ApiError("InvalidTimeStamp.Format")
        if abs(t - self.now()) > CLOCK_WINDOW:
            raise ApiError("InvalidTimeStamp.Expired")

    def _account_principal(self):
        a = self.account_id
        return Principal("account", "acs:ram::%s:root" % a, "account", a)

    def _user_principal(self, name):
        u = self.users.get(name)
        return Principal("ram_user", "acs:ram::%s:user/%s" % (self.account_id, name),
                         "user/" + name, u.user_id if u else "", user=name)

    def _session_principal(self, sess):
        r = sess.role
        return Principal("role_session", "acs:ram::%s:assumed-role/%s/%s"
                         % (self.account_id, r.name, sess.name), "role/" + r.name.lower(),
                         "%s:%s" % (r.role_id, sess.name), session=sess)

    def _lookup(self, key_id, token=None):
        """-> (Principal, secret) of the signing credential. A temporary
        (STS.) credential needs its own SecurityToken, unexpired; a token
        with a long-term key is refused too."""
        token = token or None
        sess = self.sessions.get(key_id)
        if sess is not None or key_id.startswith("STS."):
            if token is None:
                raise ApiError("MissingSecurityToken")
            owner = self.tokens.get(token)
            if owner is None:
                raise ApiError("InvalidSecurityToken.Malformed")
            if owner is not sess:
                raise ApiError("InvalidSecurityToken.MismatchWithAccessKey")
            if self.now() >= sess.expires:
                raise ApiError("InvalidSecurityToken.Expired")
            return self._session_principal(sess), sess.secret
        if token is not None:
            raise ApiError("InvalidSecurityToken.MismatchWithAccessKey" if token in self.tokens
                           else "InvalidSecurityToken.Malformed")
        if key_id == self.admin_key_id:
            return self._account_principal(), self.admin_secret
        k = self.keys.get(key_id)
        if k is None:
            raise ApiError("InvalidAccessKeyId.NotFound")
        if k.status != "Active":
            raise ApiError("InvalidAccessKeyId.Inactive")
        return self._user_principal(k.user), k.secret

    def _use_nonce(self, key_id, nonce):
        now = time.time()
        seen = self.nonces.setdefault(key_id, {})
        if nonce in seen and now - seen[nonce] < NONCE_TTL:
            raise ApiError("SignatureNonceUsed")
        seen[nonce] = now
        self.nonce_inserts += 1
        if self.nonce_inserts % 10000 == 0:
            for d in self.nonces.values():
                for n in [n for n, t in d.items() if now - t >= NONCE_TTL]:
                    del d[n]

    @staticmethod
    def _legacy(principal):
        # What auth_v1/auth_v3 have always returned: None for the account's
        # key, the user name for a RAM user's key (a Principal otherwise).
        if principal.kind == "account":
            return None
        if principal.kind == "ram_user":
            return principal.user
        return principal

    def auth_v1(self, method, params):
        return self._legacy(self.authenticate_v1(method, params))

    def auth_v3(self, method, path, query, header_items, body):
        return self._legacy(self.authenticate_v3(method, path, query, header_items, body))

    def authenticate_v1(self, method, params):
        """Verify a v1 request -> the Principal that signed it."""
        for p in ("AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion",
                  "SignatureNonce", "Timestamp", "Version"):
            if not params.get(p):
                raise missing(p)
        if params["SignatureMethod"] != "HMAC-SHA1":
            raise ApiError("InvalidSignatureMethod")
        if params["SignatureVersion"] != "1.0":
            raise ApiError("InvalidSignatureVersion")
        if params["Version"] not in API_VERSIONS.values():
            raise ApiError("InvalidVersion")
        if params.get("Format", "JSON") != "JSON":
            raise ApiError("InvalidParameter", 'The emulator answers JSON only: "Format" must be JSON.')
        self._check_time(params["Timestamp"])
        key_id = params["AccessKeyId"]
        principal, secret = self._lookup(key_id, params.get("SecurityToken"))
        sig, sts = ramsign.sign_v1(method, params, secret)
        if not hmac.compare_digest(sig.encode(), params["Signature"].encode("utf-8")):
            raise ApiError("SignatureDoesNotMatch",
                           "Specified signature is not matched with our calculation. "
                           "server string to sign is:" + sts, detail=sts)
        self._use_nonce(key_id, params["SignatureNonce"])
        return principal

    def authenticate_v3(self, method, path, query, header_items, body):
        """Verify a v3 request -> the Principal that signed it."""
        headers = {}
        for k, v in header_items:
            headers.setdefault(k.lower(), []).append(v)
        try:
            auth = ramsign.parse_v3_authorization(headers.get("authorization", [None])[0])
        except ValueError as e:
            raise ApiError("IncompleteSignature",
                           "The request signature does not conform to Aliyun standards: %s." % e)
        signed = [h.lower() for h in auth["signed_headers"]]
        for h in V3_REQUIRED_HEADERS:
            if h not in headers:
                raise ApiError("IncompleteSignature",
                               "The request signature does not conform to Aliyun standards: "
                               "header %s is required." % h)
        for h in headers:
            if ramsign.v3_is_signed_header(h) and h not in signed:
                raise ApiError("IncompleteSignature",
                               "The request signature does not conform to Aliyun standards: "
                               "header %s must be signed." % h)
        if headers["x-acs-version"][0].strip() not in API_VERSIONS.values():
            raise ApiError("InvalidVersion")
        self._check_time(headers["x-acs-date"][0].strip())
        key_id = auth["credential"]
        token = headers.get("x-acs-security-token", [""])[0].strip()
        principal, secret = self._lookup(key_id, token)
        # The payload line is the hash of the body as received: a wrong
        # x-acs-content-sha256 makes the signature mismatch.
        cr, _ = ramsign.v3_canonical_request(method, path, query, header_items,
                                             ramsign.sha256_hex(body), signed)
        sts = ramsign.v3_string_to_sign(cr)
        sig = ramsign.v3_signature(secret, sts)
        if not hmac.compare_digest(sig.encode(), auth["signature"].encode("utf-8")):
            raise ApiError("SignatureDoesNotMatch",
                           "Specified signature is not matched with our calculation. "
                           "server string to sign is:" + sts, detail=cr)
        self._use_nonce(key_id, headers["x-acs-signature-nonce"][0].strip())
        return principal

    # -- permissions (caller holds the lock) ------------------------------
    def _res(self, path):
        return "acs:ram:*:%s:%s" % (self.account_id, path)

    def _authorize(self, caller, action, resource, entry):
        """NoPermission unless the caller may do `action` on `resource`: the
        account's key and role sessions may do everything and a RAM user's
        key nothing beyond its legacy rights (see run_action), unless
        permissions were set for the principal; a role session's session
        policy narrows further."""
        perm = self.permissions.get(caller.ref)
        ok = caller.kind != "ram_user" if perm is None else policy_allows(perm[1], action, resource)
        why = "its permissions"
        if ok and caller.session is not None and caller.session.policy is not None:
            ok = policy_allows(caller.session.policy, action, resource)
            why = "its session policy"
        if not ok:
            entry["detail"] = "%s: %s on %s is not allowed by %s" % (caller.arn, action,
                                                                     resource, why)
            raise ApiError("NoPermission", self._no_permission_message(action))

    @staticmethod
    def _no_permission_message(action):
        if API_OF.get(action) == "sts":
            return "You are not authorized to do this action. You should be authorized by RAM."
        return None

    # -- actions (caller holds the lock) ----------------------------------
    def run_action(self, action, params, caller, entry):
        if API_OF[action] == "sts":
            if action == "GetCallerIdentity":
                return self._caller_identity(caller)   # needs no permission
            return self._assume_role(params, caller, entry)
        name = params.get("UserName") or None
        legacy = caller.kind == "ram_user" and caller.ref not in self.permissions
        if caller.kind == "ram_user":
            if legacy and (action not in ("ListAccessKeys", "GetUser")
                           or name not in (None, caller.user)):
                # A RAM user's key with no permissions set: its own user's
                # ListAccessKeys and GetUser only.
                raise ApiError("NoPermission")
            if name is None and action in USER_ACTIONS:
                name = caller.user             # a RAM user acts on itself by default
            entry["user"] = name
        if action == "ListUsers":
            self._authorize(caller, action, self._res("user/*"), entry)
            return self._list_users(params)
        if action == "ListUsersForGroup":
            group = params.get("GroupName")
            if not group:
                raise missing("GroupName")
            self.check_group_name(group)
            self._authorize(caller, action, self._res("group/" + group), entry)
            return self._list_group_users(group, params)
        if name is None:
            raise missing("UserName")
        if not legacy:
            self._authorize(caller, action, self._res("user/" + name), entry)
        if action == "CreateUser":
            self.check_user_name(name)
            if name in self.users:
                raise ApiError("EntityAlreadyExists.User")
            u = self._create_user(name, params.get("DisplayName"), params.get("Comments", ""))
            info = u.info()
            del info["UpdateDate"]
            return {"User": info}
        u = self._get_user(name)
        if action == "GetUser":
            info = u.info()
            info["LastLoginDate"] = ""
            return {"User": info}
        if action == "CreateAccessKey":
            k = self._create_key(u, "admin")
            entry["key_id"] = k.id
            return {"AccessKey": collections.OrderedDict([
                ("Status", k.status), ("AccessKeySecret", k.secret),
                ("CreateDate", iso(k.created)), ("AccessKeyId", k.id)])}
        if action == "ListAccessKeys":
            return {"AccessKeys": {"AccessKey": [
                collections.OrderedDict([("Status", k.status), ("AccessKeyId", k.id),
                                         ("CreateDate", iso(k.created))]) for k in u.keys]}}
        key_id = params.get("UserAccessKeyId")
        if not key_id:
            raise missing("UserAccessKeyId")
        entry["key_id"] = key_id
        if action == "UpdateAccessKey":
            status = params.get("Status")
            if not status:
                raise missing("Status")
            if status not in ("Active", "Inactive"):
                raise ApiError("InvalidParameter",
                               'The parameter "Status" must be Active or Inactive.')
            self._user_key(u, key_id).status = status
            return {}
        if action == "DeleteAccessKey":
            self._delete_key(u, self._user_key(u, key_id))
            return {}
        raise ApiError("InvalidAction.NotFound")

    # -- RAM listings -----------------------------------------------------
    @staticmethod
    def _max_items(params):
        v = params.get("MaxItems")
        if v in (None, ""):
            return LIST_DEFAULT_ITEMS
        if not v.isdigit() or not 1 <= int(v) <= LIST_MAX_ITEMS:
            raise ApiError("InvalidParameter",
                           'The parameter "MaxItems" must be an integer from 1 to %d.'
                           % LIST_MAX_ITEMS)
        return int(v)

    @staticmethod
    def _page(names, params):
        """-> (names on this page, Marker of the next page or None). The
        marker is opaque to clients: it names the first entry of the next page."""
        n = Emulator._max_items(params)
        marker = params.get("Marker") or None
        start = 0
        if marker is not None:
            try:
                first = base64.urlsafe_b64decode(marker + "=" * (-len(marker) % 4)).decode("utf-8")
                start = names.index(first)
            except (ValueError, UnicodeDecodeError, TypeError):
                raise ApiError("InvalidParameter", 'The parameter "Marker" is not valid.')
        page = names[start:start + n]
        nxt = None
        if start + n < len(names):
            nxt = base64.urlsafe_b64encode(names[start + n].encode("utf-8"))
            nxt = nxt.decode("ascii").rstrip("=")
        return page, nxt

    @staticmethod
    def _listing(key, item, entries, marker):
        out = collections.OrderedDict([("IsTruncated", marker is not None)])
        if marker is not None:
            out["Marker"] = marker
        out[key] = {item: entries}
        return out

    def _list_users(self, params):
        page, marker = self._page(list(self.users), params)
        return self._listing("Users", "User", [self.users[n].info() for n in page], marker)

    def _list_group_users(self, group, params):
        g = self.groups.get(group)
        if g is None:
            raise ApiError("EntityNotExist.Group")
        page, marker = self._page(list(g.members), params)
        entries = []
        for n in page:
            u = self.users[n]
            entries.append(collections.OrderedDict([
                ("UserName", u.name), ("DisplayName", u.display_name), ("UserId", u.user_id),
                ("JoinDate", iso(g.members[n]))]))
        return self._listing("Users", "User", entries, marker)

    @staticmethod
    def check_group_name(name):
        if not 1 <= len(name) <= 64:
            raise ApiError("InvalidParameter.GroupName.Length")
        if not GROUP_NAME_RE.match(name):
            raise ApiError("InvalidParameter.GroupName.InvalidChars")

    # -- STS (caller holds the lock) --------------------------------------
    def _caller_identity(self, caller):
        acct = self.account_id
        out = collections.OrderedDict([("AccountId", acct), ("Arn", caller.arn)])
        if caller.kind == "account":
            out.update([("IdentityType", "Account"), ("PrincipalId", acct), ("UserId", acct)])
        elif caller.kind == "ram_user":
            out.update([("IdentityType", "RAMUser"), ("PrincipalId", caller.principal_id),
                        ("UserId", caller.principal_id)])
        else:
            out.update([("IdentityType", "AssumedRoleUser"),
                        ("PrincipalId", caller.principal_id),
                        ("RoleId", caller.session.role.role_id)])
        return out

    def _find_role(self, name):
        return self.roles.get(name.lower())

    def _trusts(self, role, caller):
        return any(t == "account" or t == caller.ref for t in role.trusted)

    def _assume_role(self, params, caller, entry):
        arn = params.get("RoleArn")
        if not arn:
            raise missing("RoleArn")
        sname = params.get("RoleSessionName")
        if not sname:
            raise missing("RoleSessionName")
        m = ROLE_ARN_RE.match(arn)
        if not m:
            raise ApiError("InvalidParameter.RoleArn")
        if not SESSION_NAME_RE.match(sname):
            raise ApiError("InvalidParameter.RoleSessionName")
        dur = params.get("DurationSeconds")
        if dur in (None, ""):
            dur = STS_DEFAULT_DURATION
        elif not dur.isdigit() or int(dur) < STS_MIN_DURATION:
            raise ApiError("InvalidParameter.DurationSeconds")
        dur = int(dur)
        policy = params.get("Policy") or None
        if policy is not None:
            if len(policy) > POLICY_MAX:
                raise ApiError("InvalidParameter.PolicySize")
            try:
                policy = compile_policy(policy)
            except ValueError:
                raise ApiError("InvalidParameter.PolicyGrammar")
        ext = params.get("ExternalId") or None
        if ext is not None and not EXTERNAL_ID_RE.match(ext):
            raise ApiError("InvalidParameter.ExternalId")
        acct, rname = m.groups()
        role = self._find_role(rname) if acct == self.account_id else None
        if role is None:
            raise ApiError("EntityNotExist.Role")
        entry["target_role"] = role.name
        if dur > role.max_session:
            raise ApiError("InvalidParameter.DurationSeconds",
                           "The parameter DurationSeconds is wrongly formed: the role allows "
                           "900 to %d seconds." % role.max_session)
        self._authorize(caller, "AssumeRole", self._res("role/" + role.name), entry)
        denied = None
        if not self._trusts(role, caller):
            denied = "the trust policy of role %s does not name %s" % (role.name, caller.arn)
        elif role.external_id is not None and ext != role.external_id:
            denied = "role %s requires another ExternalId" % role.name
        if denied:
            entry["detail"] = denied
            raise ApiError("NoPermission", self._no_permission_message("AssumeRole"))
        if role.sts_lifetime is not None:
            lifetime = role.sts_lifetime
        elif self.sts_lifetime is not None:
            lifetime = self.sts_lifetime
        else:
            lifetime = dur
        sess = self._new_session(role, sname, lifetime, policy, "AssumeRole", caller.arn)
        entry["key_id"] = sess.key_id
        return collections.OrderedDict([
            ("AssumedRoleUser", collections.OrderedDict([
                ("AssumedRoleId", "%s:%s" % (role.role_id, sname)),
                ("Arn", "%s/%s" % (role.arn(self.account_id), sname))])),
            ("Credentials", sess.credentials())])

    def api(self, sigver, method, path, query, params, header_items, body, entry):
        """Authenticate and run. -> response payload dict; raises ApiError."""
        with self.lock:
            if sigver == "v3":
                caller = self.authenticate_v3(method, path, query, header_items, body)
            else:
                caller = self.authenticate_v1(method, params)
            entry["principal"] = caller.arn
            entry["principal_kind"] = caller.kind
            if caller.session is not None:
                entry["role"] = caller.session.role.name
                entry["role_session"] = caller.session.name
            return self.run_action(entry["action"], params, caller, entry)

    # -- admin views ------------------------------------------------------
    def dump_state(self):
        with self.lock:
            users = collections.OrderedDict()
            for name, u in self.users.items():
                users[name] = collections.OrderedDict([
                    ("keys", [k.dump() for k in u.keys]),
                    ("UserId", u.user_id), ("CreateDate", iso(u.created))])
            now = self.now()
            return collections.OrderedDict([
                ("users", users),
                ("deleted_keys", list(self.deleted)),
                ("now", iso(now)),
                ("now_unix", now),
                ("admin_key_id", self.admin_key_id),
                ("auto_users", self.auto_users),
                ("account_id", self.account_id),
                ("groups", collections.OrderedDict(
                    (n, g.dump()) for n, g in self.groups.items())),
                ("roles", collections.OrderedDict(
                    (r.name, r.dump(self.account_id)) for r in self.roles.values())),
                ("sessions_live", sum(1 for x in self.sessions.values() if now < x.expires)),
            ])

    LOG_FILTERS = ("action", "api", "principal", "principal_kind", "role", "role_session",
                   "target_role", "user", "result", "key_id", "access_key_id")

    def get_log(self, since=None, last=None, filters=None):
        """Entries at or after `since`, matching every field of `filters`
        (exact values), the `last` N of them."""
        with self.lock:
            entries = list(self.log)
        if since is not None:
            entries = [e for e in entries if e["t"] >= since]
        for k, v in (filters or {}).items():
            entries = [e for e in entries if e.get(k) == v]
        if last is not None:
            entries = entries[-last:] if last > 0 else []
        return entries

    def admin_create_user(self, name):
        with self.lock:
            self.check_user_name(name)
            if name in self.users:
                return False
            self._create_user(name)
            return True

    def admin_create_key(self, name, status="Active", created=None):
        """A key made directly (created_by "direct"); `created` (unix time,
        e.g. in the past) sets its CreateDate."""
        with self.lock:
            u = self._get_user(name)
            k = self._create_key(u, "direct", status, created)
            d = k.dump()
            d["UserName"] = u.name
            return d

    def admin_delete_key(self, name, key_id):
        with self.lock:
            u = self.users.get(name)
            if u is None:
                raise ApiError("EntityNotExist.User")
            self._delete_key(u, self._user_key(u, key_id))

    def admin_key_status(self, name, key_id, status):
        if status not in ("Active", "Inactive"):
            raise ApiError("InvalidParameter", 'status must be "Active" or "Inactive".')
        with self.lock:
            u = self.users.get(name)
            if u is None:
                raise ApiError("EntityNotExist.User")
            self._user_key(u, key_id).status = status

    # -- groups -----------------------------------------------------------
    def admin_create_group(self, name, comments=""):
        with self.lock:
            self.check_group_name(name)
            if name in self.groups:
                return False
            self.groups[name] = Group(name, self._new_digits(16), self.now(), comments)
            return True

    def admin_add_to_group(self, group, user):
        with self.lock:
            g = self.groups.get(group)
            if g is None:
                raise ApiError("EntityNotExist.Group")
            u = self._get_user(user)
            if u.name in g.members:
                return False
            g.members[u.name] = self.now()
            return True

    # -- roles, permissions, STS settings ---------------------------------
    def admin_role(self, spec):
        """Create a role, or change the fields given of an existing one.
        spec: {"name", "trusted": [principal refs], "max_session_duration",
        "external_id", "sts_lifetime", "allow" | "policy"}. -> (dump, created)"""
        known = {"name", "trusted", "max_session_duration", "external_id", "sts_lifetime",
                 "allow", "policy"}
        unknown = set(spec) - known
        if unknown:
            raise ValueError("unknown role field(s): %s" % ", ".join(sorted(unknown)))
        name = spec.get("name")
        if not isinstance(name, str) or not ROLE_NAME_RE.match(name):
            raise ValueError('"name" must be 1-64 characters of A-Z a-z 0-9 . -')
        changes = {}
        if "trusted" in spec:
            t = spec["trusted"]
            if not isinstance(t, list):
                raise ValueError('"trusted" must be a list of principals')
            changes["trusted"] = [principal_ref(x, self.account_id, trust=True) for x in t]
        if "max_session_duration" in spec:
            v = spec["max_session_duration"]
            if v is None:
                v = STS_DEFAULT_DURATION
            if isinstance(v, bool) or not isinstance(v, int) or \
                    not STS_DEFAULT_DURATION <= v <= STS_MAX_DURATION:
                raise ValueError('"max_session_duration" must be an integer from %d to %d'
                                 % (STS_DEFAULT_DURATION, STS_MAX_DURATION))
            changes["max_session"] = v
        if "external_id" in spec:
            v = spec["external_id"]
            if v is not None and (not isinstance(v, str) or not EXTERNAL_ID_RE.match(v)):
                raise ValueError('"external_id" must be null or 2-1224 characters of '
                                 "A-Z a-z 0-9 _ + = , . @ : / -")
            changes["external_id"] = v
        if "sts_lifetime" in spec:
            v = spec["sts_lifetime"]
            changes["sts_lifetime"] = None if v is None else _num("sts_lifetime", v, 1, 7 * 86400)
        perm = self._check_permissions(spec.get("allow"), spec.get("policy"))
        with self.lock:
            role = self._find_role(name)
            created = role is None
            if created:
                role = Role(name, self._new_digits(19), self.now())
                self.roles[name.lower()] = role
            for k, v in changes.items():
                setattr(role, k, v)
            if "allow" in spec or "policy" in spec:
                self._store_permissions("role/" + name.lower(), perm)
            return role.dump(self.account_id), created

    def list_roles(self):
        with self.lock:
            return [r.dump(self.account_id) for r in self.roles.values()]

    @staticmethod
    def _check_permissions(allow, policy):
        """-> (as given, statements) or None (the default)."""
        if allow is not None and policy is not None:
            raise ValueError('give "allow" or "policy", not both')
        if allow is not None:
            return ({"allow": allow}, compile_allow(allow))
        if policy is not None:
            try:
                return ({"policy": policy}, compile_policy(policy))
            except (TypeError, json.JSONDecodeError) as e:
                raise ValueError("policy: %s" % e)
        return None

    def _store_permissions(self, ref, perm):
        if perm is None:
            self.permissions.pop(ref, None)
        else:
            self.permissions[ref] = perm

    def admin_permissions(self, principal, allow=None, policy=None):
        """Set (or with neither allow nor policy, reset to the default) the
        permissions of a principal: "account", "user/NAME", "role/NAME"."""
        ref = principal_ref(principal, self.account_id)
        perm = self._check_permissions(allow, policy)
        with self.lock:
            self._store_permissions(ref, perm)
            return self._permissions_view()

    def get_permissions(self):
        with self.lock:
            return self._permissions_view()

    def _permissions_view(self):
        return collections.OrderedDict((ref, p[0]) for ref, p in sorted(self.permissions.items()))

    def sts_settings(self, spec=None):
        spec = spec or {}
        unknown = set(spec) - {"lifetime"}
        if unknown:
            raise ValueError("unknown STS setting(s): %s" % ", ".join(sorted(unknown)))
        if "lifetime" in spec:
            v = spec["lifetime"]
            v = None if v is None else _num("lifetime", v, 1, 7 * 86400)
        with self.lock:
            if "lifetime" in spec:
                self.sts_lifetime = v
            return collections.OrderedDict([("account_id", self.account_id),
                                            ("lifetime", self.sts_lifetime)])

    def list_sessions(self, role=None):
        with self.lock:
            now = self.now()
            return [x.dump(self.account_id, now) for x in self.sessions.values()
                    if role is None or x.role.name.lower() == role.lower()]

    # -- instance metadata service ----------------------------------------
    def _reset_imds_counters_locked(self):
        self.imds_counts = collections.Counter()
        self.imds_by_path = collections.Counter()
        self.imds_by_status = collections.Counter()
        self.imds_log = collections.deque(maxlen=IMDS_LOG_MAX)

    def imds_reset_counters(self):
        with self.lock:
            self._reset_imds_counters_locked()

    def imds_counters(self):
        with self.lock:
            log = [dict(r) for r in self.imds_log]
            c = self.imds_counts
            return collections.OrderedDict([
                ("requests", c["requests"]),
                ("with_token", c["with_token"]),
                ("without_token", c["without_token"]),
                ("token_invalid", c["token_invalid"]),
                ("token_expired", c["token_expired"]),
                ("token_puts", c["token_puts"]),
                ("credential_fetches", c["credential_fetches"]),
                ("dropped", c["dropped"]),
                ("connections_accepted", c["connections_accepted"]),
                ("by_path", dict(self.imds_by_path)),
                ("by_status", dict(self.imds_by_status)),
                ("times", [r["t"] for r in log]),
                ("credential_times", [r["t"] for r in log if r["credential"]]),
                ("log", log),
            ])

    def _ensure_role_locked(self, name):
        role = self._find_role(name)
        if role is None:
            role = Role(name, self._new_digits(19), self.now())
            role.trusted = ["service/ecs.aliyuncs.com"]
            self.roles[name.lower()] = role
        return role

    def _imds_credential_locked(self, rotate=False):
        """The instance role's current credential: a new one when there is
        none, the role changed, or the current one is rotate_every old."""
        name = self.imds["role"]
        if name is None:
            return None
        role = self._ensure_role_locked(name)
        cur = self.imds_current
        if rotate or cur is None or cur.role is not role or \
                self.now() >= cur.created + self.imds["rotate_every"]:
            cur = self._new_session(role, self.imds["instance_id"], self.imds["lifetime"], None,
                                    "imds", None)
            self.imds_current = cur
        return cur

    @staticmethod
    def _imds_document(sess):
        d = collections.OrderedDict([
            ("AccessKeyId", sess.key_id), ("AccessKeySecret", sess.secret),
            ("Expiration", iso(sess.expires)), ("SecurityToken", sess.token),
            ("LastUpdated", iso(sess.created)), ("Code", "Success")])
        return json.dumps(d, indent=2, separators=(",", " : "))

    def imds_status(self):
        with self.lock:
            out = collections.OrderedDict(sorted(self.imds.items()))
            lst = self.imds_listener
            out["enabled"] = lst is not None
            out["host"] = lst.host if lst else None
            out["port"] = lst.port if lst else None
            out["stopped"] = self.imds_mode
            out["listening"] = bool(lst and lst.listening())
            cur = self.imds_current
            out["current"] = None if cur is None else cur.dump(self.account_id, self.now())
            return out

    def imds_configure(self, spec, create_role=True):
        unknown = set(spec) - set(IMDS_DEFAULTS)
        if unknown:
            raise ValueError("unknown metadata service setting(s): %s"
                             % ", ".join(sorted(unknown)))
        new = {}
        for k, v in spec.items():
            if k == "role":
                if v is not None and (not isinstance(v, str) or not ROLE_NAME_RE.match(v)):
                    raise ValueError('"role" must be null or a role name')
            elif k == "require_token":
                if not isinstance(v, bool):
                    raise ValueError('"require_token" must be true or false')
            elif k in ("rotate_every", "lifetime"):
                v = _num(k, v, 0.001, 7 * 86400)
            elif k == "instance_id":
                if not isinstance(v, str) or not SESSION_NAME_RE.match(v):
                    raise ValueError('"instance_id" must be 2-64 characters of A-Z a-z 0-9 . @ _ -')
            elif k == "latency_ms":
                v = _num(k, v, 0, 600000)
            new[k] = v
        with self.lock:
            self.imds.update(new)
            if create_role and self.imds["role"] is not None:
                self._ensure_role_locked(self.imds["role"])
        return self.imds_status()

    def imds_rotate(self):
        with self.lock:
            cur = self._imds_credential_locked(rotate=True)
            if cur is None:
                raise ValueError("no instance role is attached (imds role is null)")
        return self.imds_status()

    def imds_stop(self, mode="refuse"):
        if mode not in IMDS_STOP_MODES:
            raise ValueError('"mode" must be one of %s' % ", ".join(IMDS_STOP_MODES))
        lst = self.imds_listener
        if lst is None:
            raise ValueError("the metadata service is not enabled (start with --imds-listen)")
        self._imds_set_mode(mode)
        if mode == "refuse":
            lst.close_listener()
        else:
            lst.open_listener()
        return self.imds_status()

    def imds_start(self):
        lst = self.imds_listener
        if lst is None:
            raise ValueError("the metadata service is not enabled (start with --imds-listen)")
        lst.open_listener()
        self._imds_set_mode(None)
        return self.imds_status()

    def _imds_set_mode(self, mode):
        with self.lock:
            self.imds_mode = mode
            wake, self.imds_wake = self.imds_wake, threading.Event()
        wake.set()                  # held ("hang") connections are let go

    def _imds_record_locked(self, method, path, cls, status, credential=False, dropped=None):
        c = self.imds_counts
        c["requests"] += 1
        c["without_token" if cls == "none" else "with_token"] += 1
        if cls in ("invalid", "expired"):
            c["token_" + cls] += 1
        if method == "PUT" and path == IMDS_TOKEN_PATH:
            c["token_puts"] += 1
        if credential:
            c["credential_fetches"] += 1
        if dropped:
            c["dropped"] += 1
        self.imds_by_path[path] += 1
        self.imds_by_status[str(status) if status is not None else "dropped"] += 1
        self.imds_log.append(collections.OrderedDict([
            ("t", time.time()), ("method", method), ("path", path), ("token", cls),
            ("status", status), ("credential", credential), ("dropped", dropped)]))

    def _imds_token_class_locked(self, token):
        if not token:
            return "none"
        exp = self.imds_tokens.get(token)
        if exp is None:
            return "invalid"
        return "valid" if self.now() < exp else "expired"

    def imds_dropped(self, method, path, token, mode):
        with self.lock:
            self._imds_record_locked(method, path, self._imds_token_class_locked(token), None,
                                     dropped=mode)

    def imds_request(self, method, path, token, ttl):
        """Answer one metadata request -> (status, text, extra headers)."""
        with self.lock:
            cls = self._imds_token_class_locked(token)
            status, text, extra, cred = self._imds_answer_locked(method, path, cls, ttl)
            self._imds_record_locked(method, path, cls, status, credential=cred)
            return status, text, extra

    def _imds_answer_locked(self, method, path, cls, ttl):
        if path == IMDS_TOKEN_PATH:
            if method != "PUT":
                return 405, "Method Not Allowed", {}, False
            ttl = (ttl or "").strip()
            if not ttl.isdigit() or not 1 <= int(ttl) <= IMDS_TOKEN_TTL_MAX:
                return 400, "Bad Request", {}, False
            token = base64.urlsafe_b64encode(
                self.id_rng.getrandbits(40 * 8).to_bytes(40, "big")).decode("ascii")
            now = self.now()
            self.imds_tokens[token] = now + int(ttl)
            for t in [t for t, exp in self.imds_tokens.items() if exp <= now]:
                del self.imds_tokens[t]
            return 200, token, {"X-aliyun-ecs-metadata-token-ttl-seconds": ttl}, False
        if method not in ("GET", "HEAD"):
            return 405, "Method Not Allowed", {}, False
        if cls in ("invalid", "expired") or (cls == "none" and self.imds["require_token"]):
            return 401, "Unauthorized", {}, False
        if path in (IMDS_CRED_PATH, IMDS_CRED_PATH.rstrip("/")):
            if self.imds["role"] is None:
                return 404, "Not Found", {}, False
            return 200, self._ensure_role_locked(self.imds["role"]).name, {}, False
        if path.startswith(IMDS_CRED_PATH):
            name = path[len(IMDS_CRED_PATH):]
            role = self.imds["role"]
            if role is None or name.lower() != role.lower():
                return 404, "Not Found", {}, False
            return 200, self._imds_document(self._imds_credential_locked()), {}, True
        if path == "/latest/meta-data/instance-id":
            return 200, self.imds["instance_id"], {}, False
        return 404, "Not Found", {}, False


# ------------------------------------------------------------------- HTTP --

class Headers:
    """A request's header fields as the handlers use them: get() the first
    field of a name in any case, items() all of them in order."""
    __slots__ = ("_items", "_first")

    def __init__(self, items):
        self._items = items
        self._first = {}
        for name, value in items:
            self._first.setdefault(name.lower(), value)

    def get(self, name, default=None):
        return self._first.get(name.lower(), default)

    def __contains__(self, name):
        return name.lower() in self._first

    def items(self):
        return list(self._items)


MAX_HEADER_LINE = 65536      # as http.client: longer is 431
MAX_HEADERS = 100            # as http.client: more is 431


def read_headers(rfile):
    """The header block of a request -> Headers. A folded line continues
    the field before it; a line that is not a field is ignored. Raises
    ValueError (a line too long, too many fields). http.client's parser
    goes through the email package and cost an eighth of an API call's
    CPU, enough to make the emulator the bottleneck of the login storm."""
    items = []
    nlines = 0
    while True:
        line = rfile.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise ValueError("Line too long")
        if line in (b"\r\n", b"\n", b""):
            return Headers(items)
        nlines += 1
        if nlines > MAX_HEADERS:
            raise ValueError("Too many headers")
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text[:1] in (" ", "\t"):
            if items:
                name, value = items[-1]
                items[-1] = (name, (value + " " + text.strip(" \t")).strip(" \t"))
            continue
        name, sep, value = text.partition(":")
        if sep and name and name == name.strip() and " " not in name:
            items.append((name, value.strip(" \t")))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ramemu/1.0"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    def parse_request(self):
        """BaseHTTPRequestHandler.parse_request with read_headers() for
        the header block; the same answers to a bad request line."""
        self.command = None
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if not words:
            return False
        if len(words) >= 3:
            version = words[-1]
            number = version[5:].split(".") if version.startswith("HTTP/") else []
            if len(number) != 2 or not all(n.isdigit() and len(n) <= 10 for n in number):
                self.send_error(400, "Bad request version (%r)" % version)
                return False
            number = (int(number[0]), int(number[1]))
            if number >= (2, 0):
                self.send_error(505, "Invalid HTTP version (%s)" % version[5:])
                return False
            self.close_connection = number < (1, 1)
            self.request_version = version
        if len(words) not in (2, 3):
            self.send_error(400, "Bad request syntax (%r)" % self.requestline)
            return False
        self.command, self.path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if self.command != "GET":
                self.send_error(400, "Bad HTTP/0.9 request type (%r)" % self.command)
                return False
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")
        try:
            self.headers = read_headers(self.rfile)
        except ValueError as e:
            self.send_error(431, str(e))
            return False
        conn = self.headers.get("Connection", "").lower()
        if conn == "close":
            self.close_connection = True
        elif conn == "keep-alive":
            self.close_connection = False
        if (self.headers.get("Expect", "").lower() == "100-continue"
                and self.request_version >= "HTTP/1.1"):
            return self.handle_expect_100()
        return True

    @classmethod
    def attach(cls, sock, client_address, server):
        """The handler of one connection of the event loop (httploop), which
        sets rfile and wfile for each request."""
        self = cls.__new__(cls)
        self.request = self.connection = sock
        self.client_address = client_address
        self.server = server
        self.close_connection = True
        self.api_seen = False          # this connection carried an API request
        self.reset_requested = False   # close with RST, no response
        self._responded = False
        self._deferred = None
        return self

    def take_deferred(self):
        """(delay_s, resume) when the answer waits (the latency fault): the
        loop calls resume() after the delay; else None."""
        d, self._deferred = self._deferred, None
        return d

    # -- plumbing ---------------------------------------------------------
    def log_message(self, fmt, *args):
        if self.server.emu.verbose:
            sys.stderr.write("ramemu: %s %s\n" % (self.address_string(), fmt % args))

    def _write(self, status, payload, close=False, request_id=None):
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if close:
            self.close_connection = True
        reason = self.responses.get(status, ("Unknown",))[0]
        lines = ["HTTP/1.1 %d %s" % (status, reason),
                 "Server: " + self.server_version,
                 "Date: " + http_date(self.server.emu.now()),
                 "Content-Type: application/json;charset=utf-8",
                 "Content-Length: %d" % len(body)]
        if request_id:
            lines.append("x-acs-request-id: " + request_id)
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            data += body
        self._responded = True
        self.wfile.write(data)
        self.log_request(status, len(body))

    def _error(self, status_code_name, message=None, close=False):
        err = ApiError(status_code_name, message)
        rid = new_request_id()
        self._write(err.status, error_body(err.code, err.message, rid), close, rid)

    def send_error(self, code, message=None, explain=None):
        """Protocol-level errors from BaseHTTPRequestHandler: JSON, then close."""
        rid = new_request_id()
        short = self.responses.get(code, ("Error",))[0]
        name = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed",
                413: "RequestEntityTooLarge"}.get(code, short.replace(" ", ""))
        msg = message or short
        try:
            self._write(code, error_body(name, msg, rid), close=True, request_id=rid)
        except OSError:
            self.close_connection = True

    def _reset(self):
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.reset_requested = True
        self.close_connection = True

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding")
        if te is not None and te.strip().lower() != "identity":
            self._error("LengthRequired", "Chunked request bodies are not supported; send "
                        "Content-Length.", close=True)
            return None
        cl = self.headers.get("Content-Length")
        if cl is None:
            return b""
        cl = cl.strip()
        if not cl.isdigit():
            self._error("BadRequest", "Invalid Content-Length.", close=True)
            return None
        n = int(cl)
        if n > MAX_BODY:
            self._error("RequestEntityTooLarge", close=True)
            return None
        data = self.rfile.read(n) if n else b""
        if len(data) != n:
            self.close_connection = True
            return None
        return data

    # -- dispatch ---------------------------------------------------------
    def do_GET(self):
        try:
            self._dispatch()
        except httploop.NeedMore:
            raise
        except (ConnectionError, TimeoutError, socket.timeout, ssl.SSLError):
            self.close_connection = True
        except Exception:
            self.close_connection = True
            sys.stderr.write("ramemu: internal error handling %r\n" % (self.requestline,))
            traceback.print_exc()
            if not self._responded:
                try:
                    self._error("InternalError", close=True)
                except OSError:
                    pass

    do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _dispatch(self):
        self._responded = False
        url = urllib.parse.urlsplit(self.path)
        body = self._read_body()
        if body is None:
            return
        path = url.path
        if path == "/_emu" or path.startswith("/_emu/"):
            return self._admin(path, url.query, body)
        if path != "/":
            return self._error("NotFound", "No such path: %s (the API is on /)." % path[:200])
        if self.command not in ("GET", "POST"):
            return self._error("MethodNotAllowed", "The API accepts GET and POST only.")
        return self._api(path, url.query, body)

    # -- API --------------------------------------------------------------
    def _api(self, path, query, body):
        emu = self.server.emu
        if not self.api_seen:
            self.api_seen = True
            with emu.lock:
                emu.connections_opened += 1
        rid = new_request_id()
        method = self.command
        call = _ApiCall(rid, collections.OrderedDict([
            ("t", time.time()), ("action", None), ("user", None), ("access_key_id", None),
            ("nonce", None), ("signature_version", None), ("method", method),
            ("result", None), ("http_status", None), ("fault", None), ("key_id", None),
            ("request_id", rid), ("api", "ram"), ("principal", None), ("principal_kind", None),
            ("role", None), ("role_session", None)]))
        entry = call.entry
        header_items = list(self.headers.items())
        req = {}

        def begin():
            """Parse and route, count the call and pick its fault -> latency."""
            try:
                qparams = parse_params(query)
                params = dict(qparams)
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                if body and ctype in ("", "application/x-www-form-urlencoded"):
                    params.update(parse_params(body.decode("utf-8")))
            except (ValueError, UnicodeDecodeError):
                raise ApiError("InvalidParameter", "The query or form body is not valid "
                               "UTF-8 application/x-www-form-urlencoded.")
            req["qparams"], req["params"] = qparams, params
            auth = self.headers.get("Authorization")
            sigver = "v3" if auth is not None else "v1"
            req["sigver"] = sigver
            entry["signature_version"] = sigver
            entry["user"] = params.get("UserName") or None
            if sigver == "v3":
                name = (self.headers.get("x-acs-action") or params.get("Action") or "").strip()
                version = (self.headers.get("x-acs-version") or "").strip()
                entry["nonce"] = self.headers.get("x-acs-signature-nonce")
                try:
                    entry["access_key_id"] = ramsign.parse_v3_authorization(auth)["credential"]
                except ValueError:
                    pass
            else:
                name = params.get("Action") or ""
                version = params.get("Version") or ""
                entry["nonce"] = params.get("SignatureNonce")
                entry["access_key_id"] = params.get("AccessKeyId")
            entry["action"] = name or None
            # The version picks the API (RAM or STS); an unknown version is
            # refused by the authentication below (InvalidVersion).
            api = API_OF_VERSION.get(version, API_OF.get(name, "ram"))
            entry["api"] = api
            if not name:
                raise missing("Action")
            if API_OF.get(name) != api:
                raise ApiError("InvalidAction.NotFound")
            call.action = name
            with emu.lock:
                fault, mode, latency = emu.decide(name)
            call.fault = fault
            if fault == "down":
                entry["fault"] = "down"
                if mode == "refuse":
                    raise _Reset()
                raise ApiError("ServiceUnavailable")
            return latency

        def run():
            """After the latency: the fault, or the action -> (200, payload)."""
            fault = call.fault
            if fault:
                entry["fault"] = fault
                if fault == "reset":
                    raise _Reset()
                if fault == "throttle":
                    raise ApiError("Throttling.User")
                raise ApiError("ServiceUnavailable")
            payload = emu.api(req["sigver"], method, path, req["qparams"], req["params"],
                              header_items, body, entry)
            payload = collections.OrderedDict([("RequestId", rid)] + list(payload.items()))
            entry["result"] = "OK"
            return 200, payload

        try:
            latency = begin()
        except Exception as e:
            return self._api_failed(call, e)
        if latency > 0:
            # The state changes after the latency, as a slow service's would;
            # the loop answers other connections meanwhile.
            self._deferred = (latency, lambda: self._api_end(call, run))
            return
        self._api_end(call, run)

    def _api_end(self, call, run):
        try:
            status, payload = run()
        except Exception as e:
            return self._api_failed(call, e)
        call.entry["http_status"] = status
        self.server.emu.finish(call.action, call.entry, call.fault)
        self._write(status, payload, request_id=call.rid)

    def _api_failed(self, call, e):
        """An API call that ends in an error: its answer, or a reset."""
        emu, entry, rid = self.server.emu, call.entry, call.rid
        if isinstance(e, _Reset):
            entry["result"] = "ConnectionReset"
            emu.finish(call.action, entry, call.fault)
            self._reset()
            return
        if isinstance(e, ApiError):
            status = e.status
            payload = error_body(e.code, e.message, rid, entry["api"])
            entry["result"] = e.code
            if e.detail is not None:
                entry["detail"] = e.detail
        else:
            sys.stderr.write("ramemu: internal error in %s\n" % call.action)
            traceback.print_exception(type(e), e, e.__traceback__)
            status = 500
            payload = error_body("InternalError", ERRORS["InternalError"][1], rid, entry["api"])
            entry["result"] = "InternalError"
        entry["http_status"] = status
        emu.finish(call.action, entry, call.fault)
        self._write(status, payload, request_id=rid)

    # -- admin ------------------------------------------------------------
    def _admin(self, path, query, body):
        emu = self.server.emu
        method = "GET" if self.command == "HEAD" else self.command
        routes = {
            "/_emu/health": ("GET",), "/_emu/state": ("GET",), "/_emu/counters": ("GET",),
            "/_emu/reset_counters": ("POST",), "/_emu/faults": ("GET", "POST"),
            "/_emu/log": ("GET",), "/_emu/users": ("POST",), "/_emu/keys": ("POST",),
            "/_emu/keys/delete": ("POST",), "/_emu/keys/status": ("POST",),
            "/_emu/groups": ("GET", "POST"), "/_emu/groups/members": ("POST",),
            "/_emu/roles": ("GET", "POST"), "/_emu/permissions": ("GET", "POST"),
            "/_emu/sts": ("GET", "POST"), "/_emu/sessions": ("GET",),
            "/_emu/imds": ("GET", "POST"), "/_emu/imds/stop": ("POST",),
            "/_emu/imds/start": ("POST",), "/_emu/imds/rotate": ("POST",),
            "/_emu/imds/counters": ("GET",), "/_emu/imds/reset_counters": ("POST",),
        }
        if path not in routes:
            return self._error("NotFound", "No such admin endpoint: %s." % path[:200])
        if method not in routes[path]:
            return self._error("MethodNotAllowed", "%s takes %s." % (path, " or ".join(routes[path])))
        req = {}
        if method == "POST" and body.strip():
            try:
                req = json.loads(body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                return self._error("BadRequest", "The body is not valid JSON.")
            if not isinstance(req, dict):
                return self._error("BadRequest", "The body must be a JSON object.")
        try:
            out = self._admin_route(emu, path, method, query, req)
        except ApiError as e:
            rid = new_request_id()
            return self._write(e.status, error_body(e.code, e.message, rid), request_id=rid)
        except ValueError as e:
            return self._error("BadRequest", str(e))
        self._write(200, out)

    @staticmethod
    def _field(req, name):
        v = req.get(name)
        if not isinstance(v, str) or not v:
            raise ValueError('"%s" (a non-empty string) is required' % name)
        return v

    def _admin_route(self, emu, path, method, query, req):
        if path == "/_emu/health":
            return {"ok": True}
        if path == "/_emu/state":
            return emu.dump_state()
        if path == "/_emu/counters":
            return emu.counters()
        if path == "/_emu/reset_counters":
            emu.reset_counters()
            return {"ok": True}
        if path == "/_emu/faults":
            if method == "POST":
                emu.set_faults(req)
            return emu.get_faults()
        if path == "/_emu/log":
            q = parse_params(query)
            since = float(q.pop("since")) if q.get("since") else None
            last = int(q.pop("last")) if q.get("last") else None
            q.pop("since", None)
            q.pop("last", None)
            unknown = set(q) - set(emu.LOG_FILTERS)
            if unknown:
                raise ValueError("unknown log filter(s): %s" % ", ".join(sorted(unknown)))
            return emu.get_log(since, last, q)
        if path == "/_emu/users":
            name = self._field(req, "name")
            return {"ok": True, "name": name, "created": emu.admin_create_user(name)}
        if path == "/_emu/keys":
            status = req.get("status", "Active")
            if status not in ("Active", "Inactive"):
                raise ValueError('"status" must be "Active" or "Inactive"')
            created = None
            if req.get("create_date") is not None and req.get("age") is not None:
                raise ValueError('give "create_date" or "age", not both')
            if req.get("create_date") is not None:
                try:
                    created = ramsign.parse_timestamp(req["create_date"])
                except (ValueError, OverflowError):
                    raise ValueError('"create_date" must be YYYY-MM-DDThh:mm:ssZ')
            elif req.get("age") is not None:
                created = emu.now() - _num("age", req["age"], 0, 100 * 365 * 86400)
            return emu.admin_create_key(self._field(req, "user"), status, created)
        if path == "/_emu/keys/delete":
            emu.admin_delete_key(self._field(req, "user"), self._field(req, "key_id"))
            return {"ok": True}
        if path == "/_emu/keys/status":
            emu.admin_key_status(self._field(req, "user"), self._field(req, "key_id"),
                                 self._field(req, "status"))
            return {"ok": True}
        if path == "/_emu/groups":
            if method == "GET":
                return emu.dump_state()["groups"]
            name = self._field(req, "name")
            comments = req.get("comments", "")
            if not isinstance(comments, str):
                raise ValueError('"comments" must be a string')
            return {"ok": True, "name": name, "created": emu.admin_create_group(name, comments)}
        if path == "/_emu/groups/members":
            group, user = self._field(req, "group"), self._field(req, "user")
            return {"ok": True, "group": group, "user": user,
                    "added": emu.admin_add_to_group(group, user)}
        if path == "/_emu/roles":
            if method == "GET":
                return emu.list_roles()
            role, created = emu.admin_role(req)
            role["created"] = created
            return role
        if path == "/_emu/permissions":
            if method == "POST":
                unknown = set(req) - {"principal", "allow", "policy"}
                if unknown:
                    raise ValueError("unknown field(s): %s" % ", ".join(sorted(unknown)))
                return emu.admin_permissions(self._field(req, "principal"), req.get("allow"),
                                             req.get("policy"))
            return emu.get_permissions()
        if path == "/_emu/sts":
            return emu.sts_settings(req if method == "POST" else None)
        if path == "/_emu/sessions":
            return emu.list_sessions(parse_params(query).get("role") or None)
        if path == "/_emu/imds":
            if method == "POST":
                return emu.imds_configure(req)
            return emu.imds_status()
        if path == "/_emu/imds/stop":
            return emu.imds_stop(req.get("mode", "refuse"))
        if path == "/_emu/imds/start":
            return emu.imds_start()
        if path == "/_emu/imds/rotate":
            return emu.imds_rotate()
        if path == "/_emu/imds/counters":
            return emu.imds_counters()
        if path == "/_emu/imds/reset_counters":
            emu.imds_reset_counters()
            return {"ok": True}
        raise ApiError("NotFound")


class _Reset(Exception):
    pass


class _ApiCall:
    """One API request while it is being answered."""
    __slots__ = ("rid", "entry", "action", "fault")

    def __init__(self, rid, entry):
        self.rid, self.entry, self.action, self.fault = rid, entry, None, None


class ThreadedServer(http.server.ThreadingHTTPServer):
    """A thread per connection: the metadata service's listener, whose
    "hang" stop holds connections open. (The API's listeners are on the
    event loop: api_listeners().)"""
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr, emu, handler, tls_ctx=None):
        self.emu = emu
        self.tls_ctx = tls_ctx
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, handler)

    def process_request(self, request, client_address):
        with self.emu.lock:
            self.emu.connections_accepted += 1
        super().process_request(request, client_address)

    @staticmethod
    def _lingering_close(conn):
        """Send FIN, then read and discard what the client still sends (for
        at most LINGER_S seconds / LINGER_BYTES): closing with unread input
        would send a RST that can destroy the response we just wrote (e.g. a
        413 for a body we refused to read)."""
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            return
        deadline = time.monotonic() + LINGER_S
        total = 0
        try:
            while total < LINGER_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                conn.settimeout(left)
                chunk = conn.recv(65536)
                if not chunk:
                    break
                total += len(chunk)
        except (OSError, ValueError):
            pass

    def process_request_thread(self, request, client_address):
        # Runs in the connection's own thread: the TLS handshake happens
        # here, so a slow or silent client never stalls the accept loop.
        conn = request
        handler = None
        try:
            try:
                request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            if self.tls_ctx is not None:
                request.settimeout(HANDSHAKE_TIMEOUT)
                conn = self.tls_ctx.wrap_socket(request, server_side=True)
            handler = self.RequestHandlerClass(conn, client_address, self)
        except (ssl.SSLError, ConnectionError, TimeoutError, OSError) as e:
            if self.emu.verbose:
                sys.stderr.write("ramemu: connection from %s: %s\n" % (client_address[0], e))
        except Exception:
            self.handle_error(conn, client_address)
        finally:
            if handler is None or not handler.reset_requested:
                self._lingering_close(conn)
            try:
                conn.close()
            except OSError:
                pass
            if conn is not request:
                try:
                    request.close()
                except OSError:
                    pass


# ------------------------------------------------------------------- IMDS --

class ImdsHandler(http.server.BaseHTTPRequestHandler):
    """The ECS instance metadata service: plain text answers, like the real one."""
    protocol_version = "HTTP/1.1"
    server_version = "ramemu-imds/1.0"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    def setup(self):
        super().setup()
        self.reset_requested = False

    def log_message(self, fmt, *args):
        if self.server.emu.verbose:
            sys.stderr.write("ramemu imds: %s %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        try:
            self._handle()
        except (ConnectionError, TimeoutError, socket.timeout):
            self.close_connection = True
        except Exception:
            self.close_connection = True
            sys.stderr.write("ramemu: internal error in the metadata service, %r\n"
                             % (self.requestline,))
            traceback.print_exc()

    do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def send_error(self, code, message=None, explain=None):
        self._send(code, self.responses.get(code, ("Error",))[0], {}, close=True)

    def _send(self, status, text, extra, close=False):
        body = text.encode("utf-8")
        if close:
            self.close_connection = True
        lines = ["HTTP/1.1 %d %s" % (status, self.responses.get(status, ("Unknown",))[0]),
                 "Server: " + self.server_version,
                 "Date: " + http_date(self.server.emu.now()),
                 "Content-Type: text/plain",
                 "Content-Length: %d" % len(body)]
        lines += ["%s: %s" % kv for kv in extra.items()]
        if self.close_connection:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            data += body
        self.wfile.write(data)
        self.log_request(status, len(body))

    def _handle(self):
        emu = self.server.emu
        path = urllib.parse.urlsplit(self.path).path
        token = self.headers.get("X-aliyun-ecs-metadata-token")
        cl = (self.headers.get("Content-Length") or "0").strip()
        if not cl.isdigit() or int(cl) > MAX_BODY or self.headers.get("Transfer-Encoding"):
            return self._send(400, "Bad Request", {}, close=True)
        if int(cl):
            self.rfile.read(int(cl))
        with emu.lock:
            mode, wake, latency = emu.imds_mode, emu.imds_wake, emu.imds["latency_ms"]
        if mode is not None:
            # Stopped: no answer. "hang" holds the connection until the
            # service is started again (or IMDS_HANG_MAX passes).
            emu.imds_dropped(self.command, path, token, mode)
            if mode == "hang":
                wake.wait(IMDS_HANG_MAX)
            self.close_connection = True
            return
        if latency > 0:
            time.sleep(latency / 1000.0)
        status, text, extra = emu.imds_request(
            self.command, path, token, self.headers.get("X-aliyun-ecs-metadata-token-ttl-seconds"))
        self._send(status, text, extra)


class ImdsServer(ThreadedServer):
    def __init__(self, addr, emu):
        super().__init__(addr, emu, ImdsHandler)

    def process_request(self, request, client_address):
        with self.emu.lock:
            self.emu.imds_counts["connections_accepted"] += 1
        http.server.ThreadingHTTPServer.process_request(self, request, client_address)


class ImdsListener:
    """The metadata service's listening socket, which /_emu/imds/stop
    ("refuse") closes and /_emu/imds/start opens again on the same address
    and port; the state lives in the Emulator."""

    def __init__(self, emu, host, port):
        self.emu, self.host = emu, host
        self.lock = threading.Lock()
        self.server = ImdsServer((host, port), emu)
        self.port = self.server.server_address[1]
        self.thread = None
        self._serve()

    def _serve(self):
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.2}, name="imds", daemon=True)
        self.thread.start()

    def listening(self):
        return self.server is not None       # no lock: read by imds_status under emu.lock

    def open_listener(self):
        with self.lock:
            if self.server is not None:
                return
            deadline = time.monotonic() + 10
            while True:
                try:
                    self.server = ImdsServer((self.host, self.port), self.emu)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            self._serve()

    def close_listener(self):
        with self.lock:
            if self.server is None:
                return
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()
            self.server = self.thread = None

    # the interface main() uses for every listener
    def shutdown(self):
        self.close_listener()

    def server_close(self):
        pass


def parse_listen(value):
    """"HOST:PORT" or "[V6]:PORT" -> (host, port); ValueError if malformed."""
    m = re.match(r"^\[([0-9A-Fa-f:.]+)\]:([0-9]+)$", value) or \
        re.match(r"^([^:\[\]]+):([0-9]+)$", value)
    if not m or int(m.group(2)) > 65535:
        raise ValueError("expected HOST:PORT or [IPV6]:PORT, got %r" % value)
    return m.group(1), int(m.group(2))


# -------------------------------------------------------------------- TLS --

OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = ramkey RAM emulator throwaway CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,IP:::1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
"""


def _openssl(*args, cwd):
    r = subprocess.run(("openssl",) + args, cwd=cwd, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (args[0], r.stderr.decode(errors="replace")))


def _cert_usable(path):
    r = subprocess.run(["openssl", "x509", "-noout", "-checkend", "3600", "-in", path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0


def ensure_tls(tls_dir):
    """CA (ca.pem) and server cert (server.pem, server.key) in tls_dir:
    reused when present and valid for another hour, else (re)generated.
    -> (ca_file, cert_file, key_file), absolute paths."""
    tls_dir = os.path.abspath(tls_dir)
    os.makedirs(tls_dir, mode=0o755, exist_ok=True)   # keys inside are 0600
    ca, cert, key = (os.path.join(tls_dir, n) for n in ("ca.pem", "server.pem", "server.key"))
    with open(os.path.join(tls_dir, ".lock"), "a") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if all(os.path.exists(p) for p in (ca, cert, key)) and _cert_usable(cert):
            return ca, cert, key
        tmp = tempfile.mkdtemp(prefix=".gen-", dir=tls_dir)
        try:
            with open(os.path.join(tmp, "openssl.cnf"), "w") as f:
                f.write(OPENSSL_CNF)
            ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
            _openssl("req", "-config", "openssl.cnf", "-x509", "-new", *ec,
                     "-keyout", "ca.key", "-out", "ca.pem", "-days", "10", "-sha256", cwd=tmp)
            _openssl("req", "-config", "openssl.cnf", "-new", *ec, "-subj", "/CN=localhost",
                     "-keyout", "server.key", "-out", "server.csr", cwd=tmp)
            serial = "0x%016x" % random.SystemRandom().getrandbits(63)
            _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                     "-set_serial", serial, "-days", "10", "-sha256", "-extfile", "openssl.cnf",
                     "-extensions", "v3_server", "-out", "server.pem", cwd=tmp)
            for n in ("ca.key", "server.key"):
                os.chmod(os.path.join(tmp, n), 0o600)
            for n in ("ca.key", "server.key", "server.pem", "ca.pem"):
                os.replace(os.path.join(tmp, n), os.path.join(tls_dir, n))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return ca, cert, key


def make_tls_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


# ------------------------------------------------------------------- main --

def write_ready_file(path, info):
    path = os.path.abspath(path)
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".ready-", dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _unit_float(s):
    v = float(s)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return v


def _nonneg_int(s):
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


def _port(s):
    v = int(s)
    if not -1 <= v <= 65535:
        raise argparse.ArgumentTypeError("must be -1 (off), 0 (pick a free port) or a port")
    return v


def _positive(s):
    v = float(s)
    if not v > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return v


def _listen(s):
    try:
        return parse_listen(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


EPILOG = """\
API callers:
  the account's admin key (--admin-key-id/--admin-secret; may do everything
  unless narrowed), RAM users' keys (by default: their own GetUser and
  ListAccessKeys only), and temporary STS credentials of role sessions (from
  AssumeRole or the metadata service; may do everything unless their role is
  narrowed). A temporary credential signs with its token: v1 parameter
  SecurityToken, v3 header x-acs-security-token (signed). GetCallerIdentity
  needs no permission. Refusals answer 403 NoPermission.

admin endpoints (no signature, JSON in and out, on the API listeners):
  GET  /_emu/health             {"ok":true}
  GET  /_emu/state              users and their keys (with secrets), deleted keys, now,
                                account_id, groups, roles, sessions_live
  GET  /_emu/counters           calls (per action), faults, connections, in-flight now
                                and peak, results
  POST /_emu/reset_counters     (the API counters; not the metadata service's)
  GET  /_emu/log[?since=T&last=N&FIELD=VALUE...]  one entry per API request; filter
       on action, api, principal (ARN), principal_kind (account, ram_user,
       role_session), role, role_session, target_role, user, result, key_id,
       access_key_id
  GET  /_emu/faults, POST /_emu/faults {field: value, ...}; fields: latency_ms,
       latency_by_action, error_rate, throttle_every, reset_rate, shell_secrets,
       down_for, down_mode, fail_all, clock_skew (seconds added to the
       emulator's clock, Date headers included), seed (re-seed the fault
       sequence), clear (true: all off), action_faults {SCOPE: SPEC or null}:
       SCOPE is an action or "ram" or "sts", SPEC any of latency_ms,
       error_rate, throttle_every, reset_rate, down_for, down_mode, fail_all
       and "for" (seconds until the SPEC lapses), e.g.
       {"action_faults": {"AssumeRole": {"throttle_every": 1, "for": 10}}}
       or {"action_faults": {"sts": {"down_for": 30}}}
  POST /_emu/users {"name"}
  POST /_emu/keys {"user"[,"status"][,"create_date":"YYYY-MM-DDThh:mm:ssZ" | "age":S]}
  POST /_emu/keys/delete {"user","key_id"}; POST /_emu/keys/status {"user","key_id","status"}
  GET  /_emu/groups; POST /_emu/groups {"name"[,"comments"]}
  POST /_emu/groups/members {"group","user"}
  GET  /_emu/roles; POST /_emu/roles {"name"[,"trusted":[PRINCIPAL...]]
       [,"max_session_duration":3600..43200][,"external_id":S|null]
       [,"sts_lifetime":S|null][,"allow":[...]|"policy":{...}]}: create, or change
       the fields given; trusted defaults to ["account"] (every principal)
  GET  /_emu/permissions; POST /_emu/permissions {"principal":PRINCIPAL,
       "allow":[ACTION | {"action","resource","effect"}...] | "policy":{RAM policy}};
       neither: back to the default
       PRINCIPAL: "account", "user/NAME", "role/NAME" or their ARNs
       (acs:ram::ACCOUNT:root, ...:user/NAME, ...:role/NAME); in trusted also
       "service/NAME"; ACTION "ram:CreateAccessKey", "sts:AssumeRole", "ram:*", "*"
  GET  /_emu/sts; POST /_emu/sts {"lifetime":S|null}: every new STS credential
       expires after S seconds whatever DurationSeconds asked (a role's
       sts_lifetime wins)
  GET  /_emu/sessions[?role=NAME]  temporary credentials handed out
  GET  /_emu/imds; POST /_emu/imds {"role":NAME|null,"require_token":BOOL,
       "rotate_every":S,"lifetime":S,"instance_id":ID,"latency_ms":MS}
  POST /_emu/imds/stop {"mode":"refuse"|"close"|"hang"}; POST /_emu/imds/start
  POST /_emu/imds/rotate        a new instance role credential now
  GET  /_emu/imds/counters; POST /_emu/imds/reset_counters

instance metadata service (--imds-listen; plain HTTP):
  PUT  /latest/api/token   header X-aliyun-ecs-metadata-token-ttl-seconds: 1..21600
  GET  /latest/meta-data/ram/security-credentials/        the role name
  GET  /latest/meta-data/ram/security-credentials/ROLE    the role's credential
  GET  /latest/meta-data/instance-id
  with header X-aliyun-ecs-metadata-token (401 when missing, unknown or
  expired, unless require_token is false). At the real address, in a private
  network namespace: unshare -n sh -c 'ip link set lo up;
  ip addr add 100.100.100.200/32 dev lo; exec ramemu.py --imds-listen
  100.100.100.200:80 ...' (unshare -rn without root).
"""


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="ramemu.py",
        description="Alibaba Cloud RAM 2015-05-01 and STS 2015-04-01 API emulator for ramkey's\n"
        "tests and demo. Serves RAM (CreateUser, GetUser, CreateAccessKey,\n"
        "UpdateAccessKey, DeleteAccessKey, ListAccessKeys, ListUsers,\n"
        "ListUsersForGroup) and STS (AssumeRole, GetCallerIdentity), signature v1\n"
        "and v3, on path / over HTTPS and/or plain HTTP, unsigned JSON admin\n"
        "endpoints under /_emu/, and optionally the ECS instance metadata service.\n"
        "Stops cleanly on SIGTERM or SIGINT.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--https-port", type=_port, default=0, metavar="N",
                   help="HTTPS port; 0 picks a free port (default), -1 disables HTTPS")
    p.add_argument("--http-port", type=_port, default=0, metavar="N",
                   help="plain HTTP port serving the same API and state; 0 picks a free "
                   "port (default), -1 disables plain HTTP")
    p.add_argument("--tls-dir", metavar="DIR",
                   help="directory for the throwaway CA (ca.pem) and server certificate "
                   "(server.pem, server.key; SAN IP:127.0.0.1, DNS:localhost; valid 10 days); "
                   "created if missing, reused if present (default: a temporary directory "
                   "removed at exit)")
    p.add_argument("--admin-key-id", metavar="ID",
                   help="AccessKeyId of the account's admin key (default: random LTAI...)")
    p.add_argument("--admin-secret", metavar="S",
                   help="AccessKeySecret of the admin key (default: random)")
    p.add_argument("--auto-users", action="store_true",
                   help="any UserName an API call references exists implicitly (created on "
                   "first use); otherwise unknown users get EntityNotExist.User")
    p.add_argument("--users", default="", metavar="a,b,c",
                   help="comma-separated RAM users to create at start")
    p.add_argument("--seed", type=int, metavar="N",
                   help="seed for fault decisions (and generated key ids/secrets): the same "
                   "seed gives the same fault sequence (default: random)")
    p.add_argument("--latency-ms", type=float, default=0, metavar="N",
                   help="delay every API call by N ms before it takes effect (fault latency_ms)")
    p.add_argument("--latency-by-action", metavar="JSON",
                   help='per-action latency in ms replacing --latency-ms for those actions, '
                   'e.g. \'{"CreateAccessKey":300}\' (fault latency_by_action)')
    p.add_argument("--error-rate", type=_unit_float, default=0.0, metavar="P",
                   help="fraction (0..1) of API calls answered 503 ServiceUnavailable "
                   "(fault error_rate)")
    p.add_argument("--throttle-every", type=_nonneg_int, default=0, metavar="N",
                   help="every Nth API call answers 400 Throttling.User; 0 = off "
                   "(fault throttle_every)")
    p.add_argument("--reset-rate", type=_unit_float, default=0.0, metavar="P",
                   help="fraction (0..1) of API calls whose TCP connection is reset without "
                   "a response (fault reset_rate)")
    p.add_argument("--shell-secrets", action="store_true",
                   help="minted secrets contain each of ' \" $ \\ ` space ! * & ; # %% "
                   "(fault shell_secrets)")
    p.add_argument("--down-for", type=float, default=0, metavar="S",
                   help="start 'down' for S seconds (fault down_for; see --down-mode)")
    p.add_argument("--down-mode", choices=("fail", "refuse"), default="fail",
                   help="while down: 'fail' answers 503 ServiceUnavailable, 'refuse' resets "
                   "the connection at once (fault down_mode; default fail)")
    p.add_argument("--fail-all", choices=("fail", "refuse"),
                   help="start down until cleared through POST /_emu/faults (fault fail_all)")
    p.add_argument("--account-id", default=DEFAULT_ACCOUNT_ID, metavar="DIGITS",
                   help="the account's id, in ARNs and GetCallerIdentity (default: %(default)s)")
    p.add_argument("--roles", default="", metavar="a,b,c",
                   help="comma-separated RAM roles to create at start (trusting every "
                   "principal of the account, maximum session 3600 s)")
    p.add_argument("--sts-lifetime", type=_positive, metavar="S",
                   help="every STS credential expires S seconds after it is handed out, "
                   "whatever DurationSeconds asked (admin: POST /_emu/sts)")
    p.add_argument("--imds-listen", type=_listen, metavar="HOST:PORT",
                   help="serve the ECS instance metadata service (plain HTTP) there, e.g. "
                   "127.0.0.1:0 (a free port) or 100.100.100.200:80 (in a network namespace)")
    p.add_argument("--imds-role", default=IMDS_DEFAULT_ROLE, metavar="NAME",
                   help="the instance role the metadata service hands credentials of "
                   "(default: %(default)s; created if missing)")
    p.add_argument("--imds-v1", action="store_true",
                   help="the metadata service also answers requests without a token")
    p.add_argument("--imds-rotate-every", type=_positive, default=IMDS_DEFAULTS["rotate_every"],
                   metavar="S", help="the instance role's credential is replaced once it is "
                   "S seconds old (default: %(default)s)")
    p.add_argument("--imds-lifetime", type=_positive, default=IMDS_DEFAULTS["lifetime"],
                   metavar="S", help="each instance role credential is valid S seconds "
                   "(default: %(default)s)")
    p.add_argument("--ready-file", metavar="PATH",
                   help='when listening, write {"pid","https_port","http_port","ca_file",'
                   '"admin_key_id","admin_secret"} (and "imds_host","imds_port" with '
                   "--imds-listen) there atomically (the same JSON is always printed as one "
                   "line on stdout)")
    p.add_argument("--exit-with-parent", action="store_true",
                   help="stop when the process that started the emulator goes away (so a "
                   "killed test run leaves no emulator behind)")
    p.add_argument("--verbose", action="store_true",
                   help="log every request and connection error on stderr")
    args = p.parse_args(argv)
    if args.https_port == -1 and args.http_port == -1:
        p.error("both --https-port and --http-port are -1: nothing to serve")
    if args.latency_ms < 0:
        p.error("--latency-ms must be >= 0")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        emu = Emulator(args.admin_key_id, args.admin_secret, args.auto_users, args.seed,
                       args.verbose, args.account_id)
    except ValueError as e:
        sys.stderr.write("ramemu: %s\n" % e)
        return 2
    faults = {"latency_ms": args.latency_ms, "error_rate": args.error_rate,
              "throttle_every": args.throttle_every, "reset_rate": args.reset_rate,
              "shell_secrets": args.shell_secrets, "down_mode": args.down_mode,
              "fail_all": args.fail_all}
    if args.down_for:
        faults["down_for"] = args.down_for
    try:
        if args.latency_by_action:
            faults["latency_by_action"] = json.loads(args.latency_by_action)
        emu.set_faults(faults)
        for name in filter(None, (n.strip() for n in args.users.split(","))):
            emu.admin_create_user(name)
        for name in filter(None, (n.strip() for n in args.roles.split(","))):
            emu.admin_role({"name": name})
        if args.sts_lifetime is not None:
            emu.sts_settings({"lifetime": args.sts_lifetime})
        emu.imds_configure({"role": args.imds_role, "require_token": not args.imds_v1,
                            "rotate_every": args.imds_rotate_every,
                            "lifetime": args.imds_lifetime}, create_role=bool(args.imds_listen))
    except (ValueError, ApiError) as e:
        sys.stderr.write("ramemu: %s\n" % e)
        return 2

    tmp_tls = None
    api = httploop.HttpLoop(verbose=emu.verbose)
    https = plain = None
    ca_file = None

    def accepted():
        with emu.lock:
            emu.connections_accepted += 1

    def listen(port, tls_ctx=None):
        return api.listen((args.host, port), Handler, tls_ctx,
                          handshake_timeout=HANDSHAKE_TIMEOUT, linger_s=LINGER_S,
                          linger_bytes=LINGER_BYTES, on_accept=accepted, emu=emu)
    try:
        if args.https_port != -1:
            tls_dir = args.tls_dir
            if tls_dir is None:
                tmp_tls = tls_dir = tempfile.mkdtemp(prefix="ramemu-tls-")
            ca_file, cert, key = ensure_tls(tls_dir)
            https = listen(args.https_port, make_tls_context(cert, key))
        if args.http_port != -1:
            plain = listen(args.http_port)
        if args.imds_listen:
            emu.imds_listener = ImdsListener(emu, *args.imds_listen)
    except (OSError, RuntimeError, ssl.SSLError) as e:
        sys.stderr.write("ramemu: cannot start: %s\n" % e)
        api.stop()
        if tmp_tls:
            shutil.rmtree(tmp_tls, ignore_errors=True)
        return 3

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    api.start()
    info = collections.OrderedDict([
        ("pid", os.getpid()),
        ("https_port", https.server_address[1] if https is not None else None),
        ("http_port", plain.server_address[1] if plain is not None else None),
        ("ca_file", ca_file),
        ("admin_key_id", emu.admin_key_id),
        ("admin_secret", emu.admin_secret),
    ])
    if emu.imds_listener is not None:
        info["imds_host"] = emu.imds_listener.host
        info["imds_port"] = emu.imds_listener.port
    if args.ready_file:
        write_ready_file(args.ready_file, info)
    try:
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
    except OSError:
        pass
    ppid = os.getppid()
    try:
        while not stop.wait(0.5):
            if args.exit_with_parent and os.getppid() != ppid:
                sys.stderr.write("ramemu: parent process gone, stopping\n")
                break
    finally:
        api.stop()
        if emu.imds_listener is not None:
            emu.imds_listener.close_listener()
        if args.ready_file:
            try:
                os.unlink(args.ready_file)
            except OSError:
                pass
        if tmp_tls:
            shutil.rmtree(tmp_tls, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
