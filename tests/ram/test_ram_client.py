#!/usr/bin/env python3
"""Integration tests of the RAM API client (agent/ram_client.c) against the
RAM emulator over HTTPS. The client runs inside ram_driver (a C program
linked with ramkey_ram); this script starts the emulator, feeds the driver
commands and checks its answers, the emulator's state, log and counters.

Usage: test_ram_client.py BEHAVIOUR   (one ctest test per behaviour)
"""

import hashlib
import json
import os
import re
import select
import subprocess
import sys
import time

from emulator import Emulator

BUILD = os.environ.get("RAMKEY_BUILD_DIR", ".")
DRIVER = os.path.join(BUILD, "tests", "ram", "ram_driver")
SKIP = 77

RC = {"ok": 0, "ram_error": -15, "limit_exceeded": -16, "config": -23,
      "ram_timeout": -28}


class Driver:
    """One ram_driver process; cmd() sends a line and returns the JSON
    object it printed. Every line printed is kept in self.lines (and echoed
    to our output) so that tests can check none carries a secret."""

    def __init__(self, emu=None, signature="v3", endpoint=None, ca_file=True,
                 key_id=None, secret=None, allow_http=False, timeout_ms=30000,
                 wrapper=(), stderr_file=None):
        env = dict(os.environ)
        env["RAM_SIGNATURE"] = signature
        env["RAM_TIMEOUT_MS"] = str(timeout_ms)
        env["RAM_ALLOW_HTTP"] = "1" if allow_http else "0"
        if emu is not None:
            env["RAM_ENDPOINT"] = endpoint or emu.endpoint
            env["RAM_KEY_ID"] = key_id or emu.admin_key_id
            env["RAM_SECRET"] = secret or emu.admin_secret
            if ca_file is True:
                env["RAM_CA_FILE"] = emu.ca_file
            elif ca_file:
                env["RAM_CA_FILE"] = ca_file
            else:
                env.pop("RAM_CA_FILE", None)
        self.lines = []
        self.proc = subprocess.Popen(list(wrapper) + [DRIVER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=stderr_file or subprocess.PIPE,
                                     env=env, text=True, bufsize=1)

    def cmd(self, line, timeout=120):
        print("> " + line, flush=True)
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            raise AssertionError("driver: no answer to %r within %s s" % (line, timeout))
        out = self.proc.stdout.readline()
        if not out:
            raise AssertionError("driver exited (%s) on %r: %s"
                                 % (self.proc.wait(), line, self.stderr()))
        print("< " + out.rstrip(), flush=True)
        self.lines.append(out)
        return json.loads(out)

    def stderr(self):
        if self.proc.stderr is None:
            return ""
        try:
            return self.proc.stderr.read()
        except ValueError:
            return ""

    def close(self, timeout=300):
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        rc = self.proc.wait(timeout)
        err = self.stderr()
        if err:
            print(err, flush=True)
            self.lines.append(err)
        return rc

    def text(self):
        return "".join(self.lines)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok: " + what, flush=True)


def sha256(s):
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def assert_ok(r, what):
    check(r.get("rc") == 0, "%s succeeds (got %s)" % (what, r.get("err") or r.get("rc")))
    return r["result"]


def finish(d):
    st = d.cmd("stats")
    check(st["sync_callbacks"] == 0, "no callback ran inside the function that started it")
    check(d.close() == 0, "driver exits cleanly")


def no_secret_in(text, secrets, what):
    for s in secrets:
        check(s not in text, "%s never contains a secret (%s...)" % (what, s[:4]))


# ---------------------------------------------------------------- tests --

def test_lifecycle():
    """create x2, third refused with LimitExceeded; deactivate, list,
    delete, delete again; GetUser; both signature methods."""
    with Emulator(https=True, auto_users=False) as emu:
        for sig in ("v1", "v3"):
            user = "life-" + sig
            emu.create_user(user)
            t0 = time.time()
            d = Driver(emu, sig)
            k1 = assert_ok(d.cmd("create " + user), "first CreateAccessKey")["key"]
            k2 = assert_ok(d.cmd("create " + user), "second CreateAccessKey")["key"]
            state = {k["AccessKeyId"]: k for k in emu.keys_of(user)}
            for k in (k1, k2):
                check(k["id"] in state and state[k["id"]]["Status"] == "Active",
                      "key %s exists and is Active at the emulator" % k["id"])
                check(k["secret_sha256"] == sha256(state[k["id"]]["AccessKeySecret"]),
                      "the secret returned is the one the emulator minted")
                check(k["create_date"] == state[k["id"]]["CreateDate"] and
                      re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", k["create_date"]),
                      "CreateDate parsed and kept")
            r = d.cmd("create " + user)
            check(r["rc"] == RC["limit_exceeded"], "third create fails with RAMKEY_ERR_LIMIT")
            check(r["err"]["code"] == "LimitExceeded.User.AccessKey", "err->code says so")
            check(r["err"]["op"] == "CreateAccessKey" and r["err"]["attempts"] == 1,
                  "not retried, op named")
            check(r["err"]["http_status"] == 409 and r["err"]["kind"] == "api", "kind api, 409")

            assert_ok(d.cmd("update %s %s Inactive" % (user, k1["id"])), "UpdateAccessKey Inactive")
            lst = assert_ok(d.cmd("list " + user), "ListAccessKeys")["keys"]
            st = {k["id"]: k["status"] for k in lst}
            check(st == {k1["id"]: "Inactive", k2["id"]: "Active"},
                  "list shows the statuses (%s)" % st)
            check(emu.key(k1["id"])["Status"] == "Inactive", "emulator agrees")
            assert_ok(d.cmd("delete %s %s" % (user, k1["id"])), "DeleteAccessKey")
            check(emu.key(k1["id"]) is None, "the key is gone at the emulator")
            r = d.cmd("delete %s %s" % (user, k1["id"]))
            assert_ok(r, "deleting it again (EntityNotExist.User.AccessKey) is success")
            r = d.cmd("delete nosuchuser-%s %s" % (sig, k2["id"]))
            assert_ok(r, "deleting for a user that is gone (EntityNotExist.User) is success")
            lst = assert_ok(d.cmd("list " + user), "ListAccessKeys again")["keys"]
            check([k["id"] for k in lst] == [k2["id"]], "one key left")
            u = assert_ok(d.cmd("getuser " + user), "GetUser")
            check(u["user_name"] == user and u["user_id"], "GetUser returns the user")
            r = d.cmd("list nosuchuser-" + sig)
            check(r["rc"] == RC["ram_error"] and r["err"]["code"] == "EntityNotExist.User"
                  and r["err"]["attempts"] == 1, "EntityNotExist.User is not retried")
            assert_ok(d.cmd("delete %s %s" % (user, k2["id"])), "clean up")
            finish(d)
            log = [e for e in emu.log() if e["action"] and e["t"] >= t0]
            check(log and all(e["signature_version"] == sig for e in log),
                  "every request was signed with %s" % sig)
            check(all(e["method"] == "POST" for e in log), "every request was a POST")
            nonces = [e["nonce"] for e in log]
            check(len(nonces) == len(set(nonces)), "a fresh nonce per request")
            no_secret_in(d.text(), [k["AccessKeySecret"] for k in emu.keys_of(user)]
                         + [emu.admin_secret], "driver output")


def test_minted_key():
    """A request signed with a minted key is accepted while the key is
    Active and refused when it is Inactive (then NotFound once deleted)."""
    with Emulator(https=True) as emu:
        for sig in ("v1", "v3"):
            user = "mint-" + sig
            d = Driver(emu, sig)
            key = assert_ok(d.cmd("create " + user), "mint a key")["key"]
            kid = key["id"]
            lst = assert_ok(d.cmd("as %s list -" % kid),
                            "ListAccessKeys signed with the minted key (own user)")["keys"]
            check(kid in [k["id"] for k in lst], "it lists its own key")
            assert_ok(d.cmd("as %s list %s" % (kid, user)), "naming its own user")
            assert_ok(d.cmd("as %s getuser %s" % (kid, user)), "GetUser for itself")
            r = d.cmd("as %s list someone-else" % kid)
            check(r["rc"] == RC["ram_error"] and r["err"]["code"] == "NoPermission"
                  and r["err"]["attempts"] == 1, "another user: NoPermission, not retried")
            assert_ok(d.cmd("update %s %s Inactive" % (user, kid)), "deactivate it")
            r = d.cmd("as %s list -" % kid)
            check(r["rc"] == RC["ram_error"] and
                  r["err"]["code"] == "InvalidAccessKeyId.Inactive",
                  "refused while Inactive (%s)" % r["err"]["code"])
            assert_ok(d.cmd("update %s %s Active" % (user, kid)), "reactivate it")
            assert_ok(d.cmd("as %s list -" % kid), "accepted again once Active")
            assert_ok(d.cmd("delete %s %s" % (user, kid)), "delete it")
            r = d.cmd("as %s list -" % kid)
            check(r["rc"] == RC["ram_error"] and
                  r["err"]["code"] == "InvalidAccessKeyId.NotFound", "refused once deleted")
            finish(d)
            ver = {e["signature_version"] for e in emu.log() if e["access_key_id"] == kid}
            check(ver == {sig}, "the minted key signed with %s" % sig)
            no_secret_in(d.text(), [emu.admin_secret], "driver output")

            # Secrets full of shell and JSON specials (' " $ \\ ` space ! * & ; # %)
            # come through parsing intact and sign correctly.
            emu.set_faults(shell_secrets=True)
            d = Driver(emu, sig)
            user = "shell-" + sig
            key = assert_ok(d.cmd("create " + user), "mint a shell-special secret")["key"]
            real = emu.key(key["id"])["AccessKeySecret"]
            check(any(c in real for c in "\"\\'$&%"), "the secret is shell-special")
            check(key["secret_sha256"] == sha256(real), "returned exactly")
            assert_ok(d.cmd("as %s list -" % key["id"]), "and it signs a request")
            finish(d)
            no_secret_in(d.text(), [real], "driver output")
            emu.set_faults(shell_secrets=False)


def test_signature_mismatch():
    """A wrong secret: SignatureDoesNotMatch, not retried, and neither the
    secret nor the echoed string-to-sign reaches the error or the output."""
    with Emulator(https=True) as emu:
        for sig in ("v1", "v3"):
            wrong = "WrongSecret%sXyz0123456789abcd" % sig
            d = Driver(emu, sig, secret=wrong)
            for line in ("list -", "create victim-" + sig, "delete victim %s" % ("LTAI" + "x" * 20)):
                r = d.cmd(line)
                e = r["err"]
                check(r["rc"] == RC["ram_error"] and e["code"] == "SignatureDoesNotMatch",
                      "%s: SignatureDoesNotMatch" % line)
                check(e["attempts"] == 1 and e["kind"] == "api", "not retried")
                check(e["message"].startswith("Specified signature is not matched"),
                      "the useful part of the message is kept: %r" % e["message"])
                m = e["message"]
                for bad in ("string to sign", "GET&", "POST&", "%2F", "ACS3-HMAC",
                            emu.admin_key_id, wrong, emu.admin_secret):
                    check(bad.lower() not in m.lower(), "message lacks %r" % bad[:12])
            finish(d)
            # The emulator did echo its string-to-sign: scrubbing mattered.
            echoed = [e for e in emu.log() if e.get("result") == "SignatureDoesNotMatch"]
            check(echoed, "the emulator refused the signatures")
            text = d.text()
            for bad in (wrong, emu.admin_secret, "string to sign", "GET&%2F", "POST&%2F",
                        emu.admin_key_id):
                check(bad not in text, "nothing the driver printed contains %r" % bad[:12])
            check(not emu.state()["users"].get("victim-" + sig, {}).get("keys"),
                  "nothing was minted")


def test_faults():
    """error_rate 0.3 and throttle_every 3: every operation still completes
    within its timeout, retried with a fresh nonce each time. The
    sequential part comes first: with a fixed seed its fault sequence is
    reproducible."""
    timeout_ms = 60000
    with Emulator(https=True, seed=1234) as emu:
        emu.set_faults(error_rate=0.3, throttle_every=3)
        drivers = {sig: Driver(emu, sig, timeout_ms=timeout_ms) for sig in ("v1", "v3")}
        results = []
        for sig, d in drivers.items():
            for i in range(1):
                user = "fault-%s-%d" % (sig, i)
                k1 = d.cmd("create " + user)
                k2 = d.cmd("create " + user)
                results += [k1, k2]
                results.append(d.cmd("list " + user))
                if k1["rc"] == 0 and k2["rc"] == 0:
                    results.append(d.cmd("update %s %s Inactive" % (user, k1["result"]["key"]["id"])))
                    results.append(d.cmd("delete %s %s" % (user, k1["result"]["key"]["id"])))
                    results.append(d.cmd("delete %s %s" % (user, k2["result"]["key"]["id"])))
                lst = d.cmd("list " + user)
                results.append(lst)
                if lst["rc"] == 0:
                    check(lst["result"]["keys"] == [], "%s has no key left" % user)
        for sig, d in drivers.items():
            r = d.cmd("concurrent_create 6 faultc-%s-" % sig)
            check(r["ok"] == 6, "6 concurrent creates under faults all succeed (%s)" % r["rcs"])
            check(r["max_op_ms"] < timeout_ms, "each within its timeout (slowest %.0f ms)"
                  % r["max_op_ms"])
        for r in results:
            check(r["rc"] == 0 and r["elapsed_ms"] < timeout_ms,
                  "%s %s completed in %.0f ms (timeout %d ms)"
                  % (r["cmd"], r["user"], r["elapsed_ms"], timeout_ms))
        for d in drivers.values():
            finish(d)
        c = emu.counters()
        print("faults injected: %s; calls: %d" % (c["faults"], c["calls_total"]), flush=True)
        check(c["faults"]["error_5xx"] > 0 and c["faults"]["throttle"] > 0,
              "both kinds of fault were injected")
        log = [e for e in emu.log() if e["action"]]
        nonces = [e["nonce"] for e in log]
        check(all(nonces) and len(nonces) == len(set(nonces)),
              "no nonce reused across %d requests" % len(nonces))
        check(not any(e["result"] in ("SignatureNonceUsed", "InvalidTimeStamp.Expired")
                      for e in log), "no SignatureNonceUsed or InvalidTimeStamp.Expired")
        retried = [e for e in log if e["fault"]]
        check(len(retried) >= 10, "%d faulted requests were retried" % len(retried))
        keys = sum(len(u["keys"]) for u in emu.state()["users"].values())
        check(keys == 12, "exactly the 12 keys of the concurrent creates exist (%d)" % keys)


def test_timeout():
    """A permanently failing RAM: a 2-second operation fails between 2.0
    and 3.0 s with a timeout error naming the operation."""
    with Emulator(https=True) as emu:
        for sig, mode, line, op in (("v3", "fail", "create tim", "CreateAccessKey"),
                                    ("v1", "refuse", "delete tim LTAIabcdefghij", "DeleteAccessKey")):
            emu.set_faults(fail_all=mode)
            d = Driver(emu, sig, timeout_ms=2000)
            t0 = time.monotonic()
            r = d.cmd(line)
            elapsed = time.monotonic() - t0
            print("timeout (%s, fail_all=%s): failed after %.3f s (driver: %.1f ms), %d attempts"
                  % (op, mode, elapsed, r["elapsed_ms"], r["err"]["attempts"]), flush=True)
            check(r["rc"] == RC["ram_timeout"], "rc is RAMKEY_ERR_RAM_TIMEOUT")
            check(2.0 <= r["elapsed_ms"] / 1000.0 < 3.0 and 2.0 <= elapsed < 3.0,
                  "failed between 2.0 and 3.0 s (%.3f s)" % elapsed)
            e = r["err"]
            check(e["kind"] == "timeout" and e["op"] == op, "a timeout error naming %s" % op)
            check(re.match(r"^timed out after 2000 ms \(\d+ attempts?; last error: .+\)$",
                           e["message"]) is not None, "message: %r" % e["message"])
            check(e["attempts"] >= 2, "it retried")
            check(r["degraded"] is True, "the client reports itself degraded")
            emu.clear_faults()
            assert_ok(d.cmd("list tim"), "RAM back")
            check(d.cmd("stats")["degraded"] is False, "no longer degraded")
            finish(d)


def test_concurrency():
    """100 concurrent CreateAccessKey calls against 200 ms of latency from
    one thread, then 100 sequential ones on the same client: no new
    connection.

    Each new connection costs the client ~1 ms of OpenSSL 3 CPU (libcurl
    builds an SSL_CTX per connection), ~3 ms under ASan; on a CPU shared
    with other jobs the 100 handshakes may then not all fit in the 200 ms
    window. So a wave that misses the bar is measured again, at most three
    times, each time on a fresh client (new connections, new handshakes:
    nothing is reused between attempts); every attempt is printed."""
    want = 50 if os.environ.get("RAMKEY_SANITIZED") == "1" else 90
    with Emulator(https=True, latency_ms=200) as emu:
        d = Driver(emu, "v3")
        for attempt in range(1, 4):
            if attempt > 1:
                d.cmd("reset")  # free the client and its connections
                time.sleep(0.5)
            emu.reset_counters()
            r = d.cmd("concurrent_create 100 conc%d-" % attempt)
            c1 = emu.counters()
            print("concurrent (attempt %d): 100 CreateAccessKey in %.0f ms, emulator "
                  "in_flight_peak=%d, connections_opened=%d"
                  % (attempt, r["elapsed_ms"], c1["in_flight_peak"],
                     c1["connections_opened"]), flush=True)
            check(r["ok"] == 100, "all 100 succeeded (%s)" % r["rcs"])
            if r["elapsed_ms"] < 2000 and c1["in_flight_peak"] >= want:
                break
        check(r["elapsed_ms"] < 2000, "finished in under 2 s")
        check(c1["in_flight_peak"] >= want, "in_flight_peak >= %d" % want)
        before = c1["connections_opened"]
        # The second wave is about connection reuse, not latency.
        emu.set_faults(latency_ms=0)
        r = d.cmd("sequential_create 100 seq")
        after = emu.counters()["connections_opened"]
        print("connections_opened before=%d after=%d (second wave: 100 sequential "
              "calls in %.0f ms)" % (before, after, r["elapsed_ms"]), flush=True)
        check(r["ok"] == 100, "the sequential wave succeeded")
        check(after == before, "no new connection for the second wave")
        check(len(emu.state()["users"]) == 100 * (attempt + 1),
              "every call minted exactly one key")
        finish(d)


def test_http_refused():
    """http:// is refused without allow_http (RAMKEY_ERR_CONFIG); with it,
    calls work; other URL shapes are refused too."""
    with Emulator(https=True) as emu:
        d = Driver(emu, "v3")
        r = d.cmd("newclient %s 0 -" % emu.http_endpoint)
        check(r["rc"] == RC["config"] and not r["client"], "http:// refused without allow_http")
        r = d.cmd("newclient %s 1 -" % emu.http_endpoint)
        check(r["rc"] == 0, "http:// accepted with allow_http")
        for bad in ("ftp://127.0.0.1/", "%s/some/path" % emu.endpoint,
                    "%s/?x=1" % emu.endpoint, "127.0.0.1:443", "https://user:pw@127.0.0.1/"):
            r = d.cmd("newclient %s 0 -" % bad)
            check(r["rc"] == RC["config"], "endpoint %s refused" % bad)
        finish(d)
        d = Driver(emu, "v1", endpoint=emu.http_endpoint, allow_http=True)
        assert_ok(d.cmd("list plain"), "a call over plain HTTP when allowed")
        finish(d)


def test_tls_verify():
    """Without the emulator's CA in ca_file, TLS verification fails (and is
    not retried); a missing ca_file is a configuration error."""
    with Emulator(https=True) as emu:
        emu.reset_counters()
        d = Driver(emu, "v3", ca_file=None)
        r = d.cmd("list tls")
        e = r["err"]
        check(r["rc"] == RC["ram_error"] and e["kind"] == "transport",
              "TLS verification fails: %r" % e["message"])
        check("certificate" in e["message"].lower(), "the message says why")
        check(e["attempts"] == 1 and r["elapsed_ms"] < 5000, "not retried")
        check(emu.counters()["calls_total"] == 0, "no API request got through")
        r = d.cmd("newclient %s 0 /nonexistent/ca.pem" % emu.endpoint)
        check(r["rc"] == RC["config"], "a missing ca_file is a configuration error")
        r = d.cmd("newclient %s 0 %s" % (emu.endpoint, emu.ca_file))
        check(r["rc"] == 0, "an existing ca_file is accepted")
        finish(d)
        d = Driver(emu, "v3")
        assert_ok(d.cmd("list tls"), "with ca_file the same call works")
        finish(d)


def test_cancel():
    """ram_call_cancel: the callback never runs; ram_client_free with calls
    in flight: no callback; fds come back to where they were."""
    with Emulator(https=True, latency_ms=400) as emu:
        d = Driver(emu, "v3")
        base = d.cmd("stats")["fds"]
        emu.reset_counters()
        r = d.cmd("cancel_create cancel0 0")
        check(not r["completed_before_cancel"] and not r["callback_ran"] and
              r["in_flight_before"] == 1 and r["in_flight_after"] == 0,
              "cancelled before it started: no callback")
        time.sleep(0.2)
        check(emu.counters()["calls"].get("CreateAccessKey", 0) == 0,
              "and nothing was sent")
        r = d.cmd("cancel_create cancel1 150")
        check(not r["completed_before_cancel"] and not r["callback_ran"] and
              r["in_flight_after"] == 0, "cancelled while in flight: no callback")
        check(emu.counters()["calls"].get("CreateAccessKey", 0) == 1,
              "that one had reached the emulator")
        r = d.cmd("free_inflight cancel2")
        check(r["in_flight"] == 3 and not r["callback_ran"],
              "client freed under 3 calls: no callback")
        assert_ok(d.cmd("list cancel2"), "the client still works after cancels")
        d.cmd("reset")
        time.sleep(0.1)
        st = d.cmd("stats")
        check(st["fds"] == base, "no fd leaked (%d, was %d)" % (st["fds"], base))
        finish(d)


def test_valgrind():
    """The integration scenarios under valgrind: no leak, no error."""
    if os.environ.get("RAMKEY_SANITIZED") == "1":
        print("skipped: sanitized build (ASan and valgrind do not mix)")
        sys.exit(SKIP)
    vg = ["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect",
          "--error-exitcode=1", "--track-fds=no", "--quiet"]
    with Emulator(https=True, latency_ms=50) as emu:
        for sig in ("v3", "v1"):
            log = os.path.join(emu.workdir, "valgrind-%s.log" % sig)
            d = Driver(emu, sig, wrapper=vg + ["--log-file=" + log], timeout_ms=8000)
            user = "vg-" + sig
            k1 = assert_ok(d.cmd("create " + user, 300), "create")["key"]["id"]
            assert_ok(d.cmd("create " + user, 300), "create")
            check(d.cmd("create " + user, 300)["rc"] == RC["limit_exceeded"], "limit")
            assert_ok(d.cmd("list " + user, 300), "list")
            assert_ok(d.cmd("getuser " + user, 300), "getuser")
            assert_ok(d.cmd("as %s list -" % k1, 300), "minted key")
            assert_ok(d.cmd("update %s %s Inactive" % (user, k1), 300), "update")
            check(d.cmd("as %s list -" % k1, 300)["rc"] == RC["ram_error"], "inactive refused")
            assert_ok(d.cmd("delete %s %s" % (user, k1), 300), "delete")
            assert_ok(d.cmd("delete %s %s" % (user, k1), 300), "delete again")
            d.cmd("cancel_create %s-c 0" % user, 300)
            d.cmd("cancel_create %s-d 20" % user, 300)
            d.cmd("free_inflight %s-e" % user, 300)
            r = d.cmd("concurrent_create 8 %s-conc" % user, 300)
            check(r["ok"] == 8, "concurrent creates")
            emu.set_faults(error_rate=0.3, throttle_every=3, reset_rate=0.1)
            d.cmd("sequential_create 3 %s-f" % user, 300)
            emu.set_faults(fail_all="fail")
            d.cmd("list " + user, 300)
            emu.clear_faults()
            d.cmd("newclient %s 0 -" % emu.http_endpoint, 300)
            d.cmd("reset", 300)
            rc = d.close(600)
            with open(log) as f:
                report = f.read()
            print(report, flush=True)
            check(rc == 0, "valgrind (%s) reports no error and no leak" % sig)


TESTS = {
    "lifecycle": test_lifecycle,
    "minted_key": test_minted_key,
    "signature_mismatch": test_signature_mismatch,
    "faults": test_faults,
    "timeout": test_timeout,
    "concurrency": test_concurrency,
    "http_refused": test_http_refused,
    "tls_verify": test_tls_verify,
    "cancel": test_cancel,
    "valgrind": test_valgrind,
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in TESTS:
        sys.exit("usage: %s {%s}" % (sys.argv[0], "|".join(TESTS)))
    if not os.access(DRIVER, os.X_OK):
        sys.exit("ram_driver not found at %s (set RAMKEY_BUILD_DIR)" % DRIVER)
    TESTS[sys.argv[1]]()
    print("PASS ram.%s" % sys.argv[1])


if __name__ == "__main__":
    main()
