#!/usr/bin/env python3
"""emulator.faults: every injected fault (latency, error_rate, throttle_every,
reset_rate, shell_secrets, down_for in both modes, fail_all) is observable by
a client, counted in /_emu/counters and the log, reproducible with a seed,
changeable at run time, and never changes state. The same faults apply to
STS actions, and action_faults scope them to one action or one API (ram,
sts) for a while, e.g. AssumeRole throttled while RAM works, or STS down."""

import http.client
import os
import ssl
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from emulator import Emulator  # noqa: E402

RESET_ERRORS = (ConnectionError, http.client.RemoteDisconnected, ssl.SSLError)
SPECIALS = "'\"$\\` !*&;#%"


class Faults(unittest.TestCase):
    counter = 0

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(https=True, auto_users=True, seed=7)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def setUp(self):
        self.emu.clear_faults()
        self.emu.reset_counters()

    def tearDown(self):
        self.emu.clear_faults()

    def user(self):
        Faults.counter += 1
        return "fault-user%d" % Faults.counter

    def timed(self, *a, **kw):
        t0 = time.monotonic()
        r = self.emu.call(*a, **kw)
        return r, time.monotonic() - t0

    # -- latency ----------------------------------------------------------
    def test_latency(self):
        self.emu.set_faults(latency_ms=250)
        (st, _), dt = self.timed("GetUser", {"UserName": "lat"})
        self.assertEqual(st, 200)
        self.assertGreaterEqual(dt, 0.25)
        self.emu.set_faults(latency_ms=0, latency_by_action={"CreateAccessKey": 300})
        (st, _), dt = self.timed("GetUser", {"UserName": "lat"})
        self.assertLess(dt, 0.25)
        u = self.user()
        (st, _), dt = self.timed("CreateAccessKey", {"UserName": u}, signature="v3")
        self.assertEqual(st, 200)
        self.assertGreaterEqual(dt, 0.3)
        self.assertEqual(self.emu.faults()["latency_by_action"], {"CreateAccessKey": 300})
        c = self.emu.counters()
        self.assertEqual(c["faults_total"], 0)
        self.assertEqual(c["calls"], {"GetUser": 2, "CreateAccessKey": 1})

    def test_latency_before_state_change(self):
        self.emu.set_faults(latency_by_action={"CreateAccessKey": 1000})
        u = self.user()
        t = threading.Thread(target=self.emu.call, args=("CreateAccessKey", {"UserName": u}))
        t.start()
        try:
            self.emu.wait_until(lambda: self.emu.counters()["in_flight"]["CreateAccessKey"] == 1,
                                timeout=2)
            self.assertEqual(self.emu.keys_of(u), [])      # still in flight: no key yet
        finally:
            t.join()
        self.assertEqual(len(self.emu.keys_of(u)), 1)
        self.assertEqual(self.emu.counters()["in_flight_total"], 0)

    # -- 5xx --------------------------------------------------------------
    def test_error_rate(self):
        self.emu.set_faults(error_rate=1.0)
        u = self.user()
        for sig in ("v1", "v3"):
            st, body = self.emu.call("CreateAccessKey", {"UserName": u}, signature=sig)
            self.assertEqual((st, body["Code"]), (503, "ServiceUnavailable"))
            self.assertEqual(set(body), {"RequestId", "HostId", "Code", "Message", "Recommend"})
        self.assertEqual(self.emu.keys_of(u), [])          # faulted calls change nothing
        c = self.emu.counters()
        self.assertEqual(c["faults"]["error_5xx"], 2)
        self.assertEqual(c["faults_total"], 2)
        self.assertEqual(c["calls"]["CreateAccessKey"], 2)
        self.assertEqual(c["results"]["ServiceUnavailable"], 2)
        self.assertEqual([e["fault"] for e in self.emu.log(last=2)], ["error_5xx"] * 2)
        self.emu.set_faults(error_rate=0.0)
        self.assertEqual(self.emu.call("CreateAccessKey", {"UserName": u})[0], 200)

    def test_error_rate_fraction_and_seed(self):
        def run():
            self.emu.set_faults(error_rate=0.5, seed=1234)
            return [self.emu.call("GetUser", {"UserName": "seeded"})[0] for _ in range(40)]
        a = run()
        b = run()
        self.assertEqual(a, b)                              # same seed, same sequence
        self.assertEqual(set(a), {200, 503})
        self.assertTrue(8 <= a.count(503) <= 32, a)

    # -- throttling -------------------------------------------------------
    def test_throttle_every(self):
        self.emu.set_faults(throttle_every=3)
        got = []
        for i in range(8):
            st, body = self.emu.call("GetUser", {"UserName": "thr"}, signature=("v1", "v3")[i % 2])
            got.append((st, body.get("Code")))
        thr = (400, "Throttling.User")
        self.assertEqual([g == thr for g in got],
                         [False, False, True, False, False, True, False, False])
        u = self.user()
        st, body = self.emu.call("CreateAccessKey", {"UserName": u})   # the 9th call
        self.assertEqual((st, body["Code"]), thr)
        self.assertEqual(self.emu.keys_of(u), [])
        self.assertEqual(body["Message"], "Request was denied due to user flow control.")
        c = self.emu.counters()
        self.assertEqual(c["faults"]["throttle"], 3)
        self.assertEqual(c["results"]["Throttling.User"], 3)

    # -- resets -----------------------------------------------------------
    def test_reset_rate(self):
        self.emu.set_faults(reset_rate=1.0)
        u = self.user()
        with self.assertRaises(ConnectionResetError):       # RST, not a clean close
            self.emu.call("CreateAccessKey", {"UserName": u}, use_http=True)
        with self.assertRaises(RESET_ERRORS):
            self.emu.call("CreateAccessKey", {"UserName": u}, signature="v3")
        self.assertEqual(self.emu.keys_of(u), [])
        c = self.emu.counters()
        self.assertEqual(c["faults"]["reset"], 2)
        self.assertEqual(c["calls"]["CreateAccessKey"], 2)
        e = self.emu.log(last=1)[0]
        self.assertEqual((e["fault"], e["result"], e["http_status"]),
                         ("reset", "ConnectionReset", None))
        self.emu.set_faults(reset_rate=0.0)
        self.assertEqual(self.emu.call("CreateAccessKey", {"UserName": u})[0], 200)

    def test_reset_rate_fraction(self):
        self.emu.set_faults(reset_rate=0.5, seed=99)
        outcomes = []
        for _ in range(30):
            try:
                outcomes.append(self.emu.call("GetUser", {"UserName": "rr"}, use_http=True)[0])
            except RESET_ERRORS:
                outcomes.append("reset")
        self.assertIn("reset", outcomes)
        self.assertIn(200, outcomes)
        self.assertEqual(self.emu.counters()["faults"]["reset"], outcomes.count("reset"))

    # -- secrets ----------------------------------------------------------
    def test_shell_secrets(self):
        self.emu.set_faults(shell_secrets=True)
        u = self.user()
        st, body = self.emu.call("CreateAccessKey", {"UserName": u})
        self.assertEqual(st, 200, body)
        s = body["AccessKey"]["AccessKeySecret"]
        self.assertEqual(len(s), 30)
        for ch in SPECIALS:
            self.assertIn(ch, s)
        self.assertTrue(any(c.isalpha() for c in s) and any(c.isdigit() for c in s))
        self.assertEqual(self.emu.keys_of(u)[0]["AccessKeySecret"], s)
        self.assertEqual(self.emu.create_key(u)["AccessKeySecret"].count("$"), 1)
        self.emu.set_faults(shell_secrets=False)
        self.emu.delete_key(u, body["AccessKey"]["AccessKeyId"])
        st, body = self.emu.call("CreateAccessKey", {"UserName": u})
        self.assertTrue(body["AccessKey"]["AccessKeySecret"].isalnum())

    # -- down -------------------------------------------------------------
    def test_down_for_fail(self):
        u = self.user()
        self.assertEqual(self.emu.call("CreateAccessKey", {"UserName": u})[0], 200)
        self.emu.set_faults(down_for=1.5, down_mode="fail")
        t0 = time.monotonic()
        self.assertGreater(self.emu.faults()["down_for"], 0)
        for sig in ("v1", "v3"):
            st, body = self.emu.call("CreateAccessKey", {"UserName": u}, signature=sig)
            self.assertEqual((st, body["Code"]), (503, "ServiceUnavailable"))
        self.assertEqual(self.emu.health(), {"ok": True})    # admin still answers
        time.sleep(max(0.0, 1.6 - (time.monotonic() - t0)))
        self.assertEqual(self.emu.call("CreateAccessKey", {"UserName": u})[0], 200)
        self.assertEqual(len(self.emu.keys_of(u)), 2)        # state intact, no extra key
        c = self.emu.counters()
        self.assertEqual(c["faults"]["down"], 2)
        self.assertEqual(c["calls"]["CreateAccessKey"], 4)

    def test_down_for_refuse(self):
        u = self.user()
        self.emu.set_faults(down_for=1.5, down_mode="refuse")
        t0 = time.monotonic()
        with self.assertRaises(ConnectionResetError):
            self.emu.call("CreateAccessKey", {"UserName": u}, use_http=True)
        with self.assertRaises(RESET_ERRORS):
            self.emu.call("CreateAccessKey", {"UserName": u}, signature="v3")
        self.assertEqual(self.emu.keys_of(u), [])
        time.sleep(max(0.0, 1.6 - (time.monotonic() - t0)))
        self.assertEqual(self.emu.call("CreateAccessKey", {"UserName": u})[0], 200)
        c = self.emu.counters()
        self.assertEqual(c["faults"]["down"], 2)
        self.assertEqual(c["faults"]["reset"], 0)
        self.assertEqual([e["fault"] for e in self.emu.log(last=3)], ["down", "down", None])

    def test_fail_all(self):
        u = self.user()
        self.emu.create_key(u)
        self.emu.set_faults(fail_all="fail")
        for _ in range(3):
            st, body = self.emu.call("ListAccessKeys", {"UserName": u})
            self.assertEqual(st, 503)
        self.emu.set_faults(fail_all="refuse")
        with self.assertRaises(ConnectionResetError):
            self.emu.call("ListAccessKeys", {"UserName": u}, use_http=True)
        self.assertEqual(self.emu.faults()["fail_all"], "refuse")
        self.emu.set_faults(fail_all=None)
        st, body = self.emu.call("ListAccessKeys", {"UserName": u})
        self.assertEqual(st, 200)
        self.assertEqual(len(body["AccessKeys"]["AccessKey"]), 1)
        self.assertEqual(self.emu.counters()["faults"]["down"], 4)

    def test_fault_validation(self):
        from emulator import EmulatorError
        for bad in ({"error_rate": 2}, {"throttle_every": -1}, {"down_mode": "maybe"},
                    {"fail_all": "sometimes"}, {"no_such_fault": 1},
                    {"latency_by_action": {"NoSuchAction": 5}}, {"shell_secrets": "yes"}):
            with self.subTest(bad=bad), self.assertRaises(EmulatorError) as cm:
                self.emu.set_faults(**bad)
            self.assertEqual(cm.exception.status, 400)
        f = self.emu.faults()
        self.assertEqual((f["error_rate"], f["throttle_every"], f["fail_all"]), (0.0, 0, None))


class ActionFaults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(https=True, auto_users=True, seed=11)
        cls.emu.create_role("faulty")

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def setUp(self):
        self.emu.clear_faults()
        self.emu.reset_counters()

    def tearDown(self):
        self.emu.clear_faults()

    def assume(self, **kw):
        return self.emu.assume_role("faulty", "fault-sess", **kw)

    def assertSts(self, resp, status, code):
        st, body = resp
        self.assertEqual((st, body.get("Code")), (status, code), body)
        self.assertEqual(body["HostId"], "sts.aliyuncs.com")

    def test_global_faults_apply_to_sts(self):
        self.emu.set_faults(error_rate=1.0)
        self.assertSts(self.assume(), 503, "ServiceUnavailable")
        self.assertSts(self.emu.caller_identity(), 503, "ServiceUnavailable")
        self.emu.set_faults(error_rate=0.0, throttle_every=1)
        self.assertSts(self.assume(), 400, "Throttling.User")
        self.emu.set_faults(throttle_every=0, latency_by_action={"AssumeRole": 300})
        t0 = time.monotonic()
        self.assertEqual(self.assume()[0], 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        self.assertEqual(self.emu.set_faults(clear=True)["latency_by_action"], {})
        self.assertEqual(self.emu.counters()["faults"]["error_5xx"], 2)

    def test_assume_role_throttled_for_a_while_ram_works(self):
        f = self.emu.set_action_faults("AssumeRole", 1.0, throttle_every=1)
        self.assertEqual(f["action_faults"]["AssumeRole"]["throttle_every"], 1)
        self.assertTrue(0 < f["action_faults"]["AssumeRole"]["for"] <= 1.0)
        t0 = time.monotonic()
        for sig in ("v1", "v3"):
            self.assertSts(self.assume(signature=sig), 400, "Throttling.User")
        self.assertEqual(self.emu.caller_identity()[0], 200)            # other STS action
        self.assertEqual(self.emu.call("CreateAccessKey", {"UserName": "af-1"})[0], 200)
        self.assertEqual(self.emu.log(last=1, action="AssumeRole")[0]["fault"], "throttle")
        time.sleep(max(0.0, 1.1 - (time.monotonic() - t0)))
        self.assertEqual(self.assume()[0], 200)                          # lapsed
        self.assertEqual(self.emu.faults()["action_faults"], {})
        c = self.emu.counters()
        self.assertEqual((c["faults"]["throttle"], c["calls"]["AssumeRole"]), (2, 3))

    def test_assume_role_5xx_and_resets(self):
        self.emu.set_action_faults("AssumeRole", error_rate=1.0)
        self.assertSts(self.assume(), 503, "ServiceUnavailable")
        self.assertEqual(self.emu.call("GetUser", {"UserName": "af-2"})[0], 200)
        self.emu.set_action_faults("AssumeRole")                          # removed
        self.assertEqual(self.assume()[0], 200)
        self.emu.set_action_faults("AssumeRole", reset_rate=1.0)
        with self.assertRaises(ConnectionResetError):
            self.assume(use_http=True)
        self.emu.set_action_faults("AssumeRole", latency_ms=300)
        t0 = time.monotonic()
        self.assertEqual(self.assume()[0], 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        c = self.emu.counters()["faults"]
        self.assertEqual((c["error_5xx"], c["reset"]), (1, 1))

    def test_sts_down_while_ram_works(self):
        self.emu.set_action_faults("sts", down_for=1.0)
        t0 = time.monotonic()
        self.assertGreater(self.emu.faults()["action_faults"]["sts"]["down_for"], 0)
        self.assertSts(self.assume(), 503, "ServiceUnavailable")
        self.assertSts(self.emu.caller_identity(signature="v3"), 503, "ServiceUnavailable")
        self.assertEqual(self.emu.call("ListAccessKeys", {"UserName": "af-3"})[0], 200)
        time.sleep(max(0.0, 1.1 - (time.monotonic() - t0)))
        self.assertEqual(self.assume()[0], 200)
        self.emu.set_action_faults("sts", down_for=5, down_mode="refuse")
        with self.assertRaises(ConnectionResetError):
            self.emu.caller_identity(use_http=True)
        self.assertEqual(self.emu.call("ListAccessKeys", {"UserName": "af-3"})[0], 200)
        self.emu.set_action_faults("sts", fail_all="fail")               # replaces the spec
        self.assertSts(self.assume(), 503, "ServiceUnavailable")
        self.emu.set_action_faults("ram", fail_all="fail")
        self.assertEqual(self.emu.call("ListAccessKeys", {"UserName": "af-3"})[0], 503)
        self.emu.clear_action_faults()
        self.assertEqual(self.assume()[0], 200)
        self.assertEqual(self.emu.counters()["faults"]["down"], 5)

    def test_action_fault_validation(self):
        from emulator import EmulatorError
        for bad in ({"NoSuchAction": {"error_rate": 1}}, {"AssumeRole": {"error_rate": 2}},
                    {"sts": {"colour": 1}}, {"sts": {"for": -1}}, {"sts": "down"},
                    {"AssumeRole": {"down_mode": "maybe"}}):
            with self.subTest(bad=bad), self.assertRaises(EmulatorError) as cm:
                self.emu.set_faults(action_faults=bad)
            self.assertEqual(cm.exception.status, 400)
        with self.assertRaises(EmulatorError):
            self.emu.set_faults(action_faults=["AssumeRole"])
        self.emu.set_action_faults("AssumeRole", throttle_every=2)
        self.assertEqual(self.emu.clear_faults()["action_faults"], {})


if __name__ == "__main__":
    unittest.main()
