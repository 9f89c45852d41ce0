"""Alibaba Cloud RPC request signing: v1 (HMAC-SHA1) and v3 (ACS3-HMAC-SHA256).

Standard library only. Used by tests (to sign requests, to reproduce the
vectors in tests/vectors/) and by the RAM emulator (to verify requests): both
sides share the canonicalization code below. The same signing serves RAM
(Version 2015-05-01) and STS (Version 2015-04-01).

It follows the algorithms as the official SDKs implement them (the
vectors in tests/vectors were computed by the official SDK).

A temporary (STS) credential signs like any other key and adds its token:
v1 as the parameter SecurityToken (signed with the rest), v3 as the header
x-acs-security-token (an x-acs-* header, so among the signed headers).

Percent-encoding: UTF-8 bytes; A-Z a-z 0-9 - _ . ~ stay; every other byte is
%XY with upper-case hex (space is %20, never +; * is %2A).

v1 (SignatureVersion=1.0):
  StringToSign = METHOD + "&" + enc("/") + "&" + enc(CanonicalizedQueryString)
  Signature    = base64(HMAC-SHA1(secret + "&", StringToSign))
v3:
  CanonicalRequest = METHOD \\n URI \\n CanonicalQuery \\n CanonicalHeaders \\n
                     SignedHeaders \\n HashedPayload
  StringToSign     = "ACS3-HMAC-SHA256\\n" + hex(sha256(CanonicalRequest))
  Signature        = hex(HMAC-SHA256(secret, StringToSign))
"""

import base64
import collections
import datetime
import hashlib
import hmac
import re
import time
import urllib.parse
import uuid

__all__ = [
    "API_VERSION", "STS_API_VERSION", "STS_ACTIONS", "api_version_for",
    "V3_ALGORITHM", "EMPTY_SHA256",
    "percent_encode", "canonical_query", "form_encode",
    "utc_timestamp", "parse_timestamp", "new_nonce",
    "v1_common_params", "v1_string_to_sign", "v1_signature", "sign_v1",
    "v3_is_signed_header", "v3_canonical_headers", "v3_canonical_request",
    "v3_string_to_sign", "v3_signature", "v3_authorization",
    "parse_v3_authorization", "sha256_hex", "sign_v3",
    "PreparedRequest", "build_request",
]

API_VERSION = "2015-05-01"            # RAM
STS_API_VERSION = "2015-04-01"        # STS
STS_ACTIONS = ("AssumeRole", "GetCallerIdentity")
V3_ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _to_bytes(value):
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        value = str(value)
    return value.encode("utf-8")


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*\Z", re.ASCII)


def percent_encode(value):
    """RFC 3986 encoding as Alibaba Cloud signs it (UTF-8, upper-case hex).

    urllib.parse.quote with safe='' leaves exactly A-Za-z0-9 and -_.~ alone;
    a string of those alone is returned as it is, without quote's cost.
    """
    if isinstance(value, str) and _UNRESERVED.match(value):
        return value
    return urllib.parse.quote(_to_bytes(value), safe="")


def _items(params):
    if params is None:
        return []
    if isinstance(params, dict):
        return list(params.items())
    return list(params)


def canonical_query(params, exclude=("Signature",)):
    """`k=v` pairs sorted by parameter name, joined by '&'.

    params: dict or iterable of (name, value). Names in `exclude` are left
    out (v1 excludes Signature; pass exclude=() for v3). Empty values give
    `k=`.
    """
    pairs = [(str(k), "" if v is None else v) for k, v in _items(params)
             if k not in exclude]
    pairs.sort(key=lambda kv: kv[0])
    return "&".join(percent_encode(k) + "=" + percent_encode(v) for k, v in pairs)


def form_encode(params):
    """Wire encoding for a query string or an x-www-form-urlencoded body:
    same encoding as the canonical form, in the given order."""
    return "&".join(percent_encode(k) + "=" + percent_encode("" if v is None else v)
                    for k, v in _items(params))


def utc_timestamp(t=None):
    """`yyyy-MM-ddTHH:mm:ssZ` for unix time t (default: now)."""
    if t is None:
        t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t)))


_TIMESTAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?\Z",
                        re.ASCII)


def parse_timestamp(s):
    """Unix time of a `yyyy-MM-ddTHH:mm:ssZ` string (fractional seconds
    `.fff` accepted); ValueError when malformed."""
    if not isinstance(s, str) or not s.endswith("Z"):
        raise ValueError("timestamp must be UTC with a trailing Z")
    body = s[:-1]
    m = _TIMESTAMP.match(body)
    if m is not None:       # the usual form, without strptime's cost
        frac = m.group(7) or ""
        dt = datetime.datetime(*(int(g) for g in m.groups()[:6]),
                               int(frac.ljust(6, "0")) if frac else 0,
                               tzinfo=datetime.timezone.utc)
        return dt.timestamp()
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in body else "%Y-%m-%dT%H:%M:%S"
    dt = datetime.datetime.strptime(body, fmt).replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


def new_nonce():
    return str(uuid.uuid4())


def api_version_for(action):
    """The API version an action belongs to: STS's for AssumeRole and
    GetCallerIdentity, RAM's for everything else."""
    return STS_API_VERSION if action in STS_ACTIONS else API_VERSION


# ---------------------------------------------------------------- v1 ----

def v1_common_params(action, access_key_id, nonce=None, timestamp=None,
                     version=API_VERSION, fmt="JSON", security_token=None):
    """The common parameters of a v1 request (everything but Signature);
    SecurityToken too when a temporary credential signs."""
    p = {
        "Action": action,
        "Version": version,
        "Format": fmt,
        "AccessKeyId": access_key_id,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": nonce if nonce is not None else new_nonce(),
        "Timestamp": timestamp if timestamp is not None else utc_timestamp(),
    }
    if security_token:
        p["SecurityToken"] = security_token
    return p


def v1_string_to_sign(method, params):
    """METHOD&%2F&enc(canonical query); `Signature` in params is ignored."""
    return method + "&" + percent_encode("/") + "&" + percent_encode(canonical_query(params))


def v1_signature(secret, string_to_sign):
    """base64(HMAC-SHA1(key = UTF-8(secret + '&'), string_to_sign))."""
    mac = hmac.new(_to_bytes(secret) + b"&", _to_bytes(string_to_sign), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def sign_v1(method, params, secret):
    """Return (signature, string_to_sign) for the full parameter map
    (common parameters included)."""
    sts = v1_string_to_sign(method, params)
    return v1_signature(secret, sts), sts


# ---------------------------------------------------------------- v3 ----

def sha256_hex(data):
    return hashlib.sha256(_to_bytes(data)).hexdigest()


def v3_is_signed_header(name):
    n = name.lower()
    return n == "host" or n == "content-type" or n.startswith("x-acs-")


def v3_canonical_headers(headers, names=None):
    """Return (canonical_headers, signed_headers).

    headers: dict or iterable of (name, value); several entries whose names
    differ only in case are joined with ','. names: the header names to sign
    (lower case); default: host, content-type and every x-acs-* header
    present. A name in `names` with no header gives `name:` (empty value).
    """
    grouped = collections.OrderedDict()
    for k, v in _items(headers):
        grouped.setdefault(k.lower(), []).append(str(v).strip())
    if names is None:
        names = sorted(n for n in grouped if v3_is_signed_header(n))
    else:
        names = sorted(n.lower() for n in names)
    canon = "".join(n + ":" + ",".join(grouped.get(n, [])) + "\n" for n in names)
    return canon, ";".join(names)


def v3_canonical_request(method, pathname, query, headers, hashed_payload,
                         signed_names=None):
    """Return (canonical_request, signed_headers)."""
    canon_headers, signed = v3_canonical_headers(headers, signed_names)
    cr = "\n".join([method, pathname or "/", canonical_query(query, exclude=()),
                    canon_headers, signed, hashed_payload])
    return cr, signed


def v3_string_to_sign(canonical_request):
    return V3_ALGORITHM + "\n" + sha256_hex(canonical_request)


def v3_signature(secret, string_to_sign):
    """hex(HMAC-SHA256(key = UTF-8(secret), string_to_sign)) -- no '&'."""
    return hmac.new(_to_bytes(secret), _to_bytes(string_to_sign), hashlib.sha256).hexdigest()


def v3_authorization(access_key_id, signed_headers, signature):
    return "%s Credential=%s,SignedHeaders=%s,Signature=%s" % (
        V3_ALGORITHM, access_key_id, signed_headers, signature)


def parse_v3_authorization(value):
    """Parse an ACS3-HMAC-SHA256 Authorization header into
    {"credential", "signed_headers" (list), "signature"}; ValueError if malformed."""
    if not isinstance(value, str):
        raise ValueError("no Authorization header")
    value = value.strip()
    if not value.startswith(V3_ALGORITHM + " "):
        raise ValueError("Authorization does not start with " + V3_ALGORITHM)
    fields = {}
    for part in value[len(V3_ALGORITHM) + 1:].split(","):
        part = part.strip()
        if "=" not in part:
            raise ValueError("malformed Authorization field %r" % part)
        k, v = part.split("=", 1)
        if k in fields:
            raise ValueError("duplicate Authorization field %r" % k)
        fields[k] = v
    for k in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(k):
            raise ValueError("Authorization lacks " + k)
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        raise ValueError("unknown Authorization field")
    return {"credential": fields["Credential"],
            "signed_headers": fields["SignedHeaders"].split(";"),
            "signature": fields["Signature"]}


def sign_v3(method, pathname, query, headers, body, access_key_id, secret):
    """Sign a v3 request whose headers are already complete (host, x-acs-*,
    content-type if any). The payload hash is computed from body.

    Returns a dict: hashed_payload, canonical_request, string_to_sign,
    signed_headers, signature, authorization.
    """
    hashed = sha256_hex(body or b"")
    cr, signed = v3_canonical_request(method, pathname, query, headers, hashed)
    sts = v3_string_to_sign(cr)
    sig = v3_signature(secret, sts)
    return {"hashed_payload": hashed, "canonical_request": cr, "string_to_sign": sts,
            "signed_headers": signed, "signature": sig,
            "authorization": v3_authorization(access_key_id, signed, sig)}


# ------------------------------------------------- whole requests ----

PreparedRequest = collections.namedtuple("PreparedRequest", "method target headers body")
PreparedRequest.__doc__ = """A signed request: method, target ('/' or '/?query'),
headers (dict), body (bytes). Send it to the endpoint as is."""


def build_request(host, action, params, access_key_id, secret, signature="v1",
                  method="GET", nonce=None, timestamp=None, params_in=None,
                  version=None, security_token=None):
    """Build a correctly signed RAM or STS RPC request.

    host: the Host header value (e.g. "127.0.0.1:8443"). params: the action's
    parameters (dict). signature: "v1" or "v3". params_in: "query" or "body";
    default "query" for GET and "body" (form) for POST. nonce/timestamp
    default to fresh values (timestamp is `yyyy-MM-ddTHH:mm:ssZ`; for v3 it is
    the x-acs-date). version: default api_version_for(action).
    security_token: the token of a temporary credential (v1: parameter
    SecurityToken; v3: signed header x-acs-security-token).
    """
    if version is None:
        version = api_version_for(action)
    method = method.upper()
    if params_in is None:
        params_in = "body" if method == "POST" else "query"
    if params_in not in ("query", "body"):
        raise ValueError("params_in must be 'query' or 'body'")
    params = dict(params or {})
    nonce = nonce if nonce is not None else new_nonce()
    timestamp = timestamp if timestamp is not None else utc_timestamp()
    headers = {"Host": host, "Accept": "application/json"}
    if signature == "v1":
        allp = dict(params)
        allp.update(v1_common_params(action, access_key_id, nonce, timestamp, version,
                                     security_token=security_token))
        sig, _ = sign_v1(method, allp, secret)
        wire = canonical_query(allp) + "&Signature=" + percent_encode(sig)
        if params_in == "query":
            return PreparedRequest(method, "/?" + wire, headers, b"")
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return PreparedRequest(method, "/", headers, wire.encode("ascii"))
    if signature != "v3":
        raise ValueError("signature must be 'v1' or 'v3'")
    query = params if params_in == "query" else {}
    body = b""
    if params_in == "body":
        body = canonical_query(params, exclude=()).encode("ascii")
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    headers.update({
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": timestamp,
        "x-acs-signature-nonce": nonce,
        "x-acs-content-sha256": sha256_hex(body),
    })
    if security_token:
        headers["x-acs-security-token"] = security_token
    signed = sign_v3(method, "/", query, headers, body, access_key_id, secret)
    headers["Authorization"] = signed["authorization"]
    target = "/"
    if query:
        target += "?" + canonical_query(query, exclude=())
    return PreparedRequest(method, target, headers, body)
