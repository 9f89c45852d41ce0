#!/usr/bin/env python3
"""emulator.transport: HTTP/1.1 keep-alive (a reused connection counts once),
concurrency (N slow calls are N in flight), HTTPS with the generated CA only,
and robustness against garbage: every malformed request gets a JSON error,
and the emulator keeps serving."""

import json
import os
import socket
import ssl
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from emulator import Emulator  # noqa: E402


def raw_exchange(port, data, timeout=5.0, tls_ctx=None, head=False, responses=1):
    """Send raw bytes, read until `responses` complete responses arrived
    (headers only when head), the server closes, or it stays quiet for the
    timeout; returns what came back."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls_ctx is not None:
        s = tls_ctx.wrap_socket(s, server_hostname="127.0.0.1")
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
            if complete(out, head) >= responses:
                return out
        return out
    finally:
        s.close()


def complete(data, head=False):
    """How many complete responses `data` holds."""
    n = 0
    while b"\r\n\r\n" in data:
        hdr, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in hdr.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = 0 if head else int(line.split(b":")[1])
        if len(rest) < length:
            break
        n += 1
        data = rest[length:]
    return n


def parse_raw(resp):
    head, _, body = resp.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    return status, headers, body


class Transport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(https=True, auto_users=True)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def setUp(self):
        self.emu.clear_faults()
        self.emu.reset_counters()

    def assertAlive(self):
        self.assertEqual(self.emu.call("GetUser", {"UserName": "alive"})[0], 200)

    # -- keep-alive -------------------------------------------------------
    def test_keepalive_counts_connection_once(self):
        for use_http in (False, True):
            with self.subTest(use_http=use_http):
                self.emu.reset_counters()
                conn = self.emu.connection(use_http=use_http)
                try:
                    for i in range(5):
                        self.emu.state()        # admin calls in between do not count
                        st, _ = self.emu.call("GetUser", {"UserName": "ka"}, conn=conn,
                                              signature=("v1", "v3")[i % 2],
                                              method=("GET", "POST")[i % 2], use_http=use_http)
                        self.assertEqual(st, 200)
                    time.sleep(1.0)             # idle a moment: still open
                    self.assertEqual(self.emu.call("GetUser", {"UserName": "ka"}, conn=conn,
                                                   use_http=use_http)[0], 200)
                finally:
                    conn.close()
                c = self.emu.counters()
                self.assertEqual(c["connections_opened"], 1)
                self.assertEqual(c["calls_total"], 6)
        self.emu.reset_counters()
        for _ in range(3):
            self.emu.call("GetUser", {"UserName": "ka"})
        self.assertEqual(self.emu.counters()["connections_opened"], 3)

    def test_error_responses_keep_connection(self):
        conn = self.emu.connection()
        try:
            self.assertEqual(self.emu.call("GetUser", {"UserName": "k"}, secret="bad",
                                           conn=conn)[0], 400)
            self.assertEqual(self.emu.call("GetUser", {"UserName": "k"}, conn=conn)[0], 200)
        finally:
            conn.close()
        self.assertEqual(self.emu.counters()["connections_opened"], 1)

    # -- concurrency ------------------------------------------------------
    def test_in_flight_peak(self):
        n = 8
        self.emu.set_faults(latency_by_action={"CreateAccessKey": 1000})
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(
            self.emu.call("CreateAccessKey", {"UserName": "conc%d" % i},
                          signature=("v1", "v3")[i % 2])[0])) for i in range(n)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        try:
            c = self.emu.wait_until(
                lambda: (lambda c: c if c["in_flight"]["CreateAccessKey"] == n else None)(
                    self.emu.counters()), timeout=5)
            self.assertEqual(c["in_flight_total"], n)
        finally:
            for t in threads:
                t.join()
        elapsed = time.monotonic() - t0
        self.assertEqual(results, [200] * n)
        self.assertLess(elapsed, 1.0 * n / 2)           # concurrent, not serialized
        c = self.emu.counters()
        self.assertEqual(c["in_flight_total"], 0)
        self.assertEqual(c["in_flight"]["CreateAccessKey"], 0)
        self.assertEqual(c["in_flight_peak"], n)
        self.assertEqual(c["in_flight_peak_by_action"]["CreateAccessKey"], n)
        self.assertEqual(c["connections_opened"], n)
        self.emu.reset_counters()
        self.assertEqual(self.emu.counters()["in_flight_peak"], 0)

    def test_silent_client_does_not_stall_accept(self):
        # A client that connects to the TLS port and never starts the
        # handshake must not keep others from being served.
        silent = [socket.create_connection(("127.0.0.1", self.emu.https_port))
                  for _ in range(3)]
        try:
            t0 = time.monotonic()
            self.assertAlive()
            self.assertLess(time.monotonic() - t0, 2.0)
        finally:
            for s in silent:
                s.close()

    # -- TLS --------------------------------------------------------------
    def test_https_needs_the_ca(self):
        url = self.emu.https_endpoint + "/_emu/health"
        ctx = ssl.create_default_context(cafile=self.emu.ca_file)
        with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
            self.assertEqual(json.load(r), {"ok": True})
        url_name = "https://localhost:%d/_emu/health" % self.emu.https_port
        with urllib.request.urlopen(url_name, context=ctx, timeout=10) as r:
            self.assertEqual(r.status, 200)
        with self.assertRaises(urllib.error.URLError) as cm:
            urllib.request.urlopen(url, context=ssl.create_default_context(), timeout=10)
        self.assertIsInstance(cm.exception.reason, ssl.SSLCertVerificationError)
        self.assertAlive()

    def test_plain_http_on_tls_port(self):
        out = raw_exchange(self.emu.https_port, b"GET /_emu/health HTTP/1.1\r\nHost: x\r\n\r\n",
                           timeout=5)
        self.assertNotIn(b"200 OK", out)
        self.assertAlive()

    # -- garbage ----------------------------------------------------------
    def check_json_error(self, data, status, tls=False):
        ctx = ssl.create_default_context(cafile=self.emu.ca_file) if tls else None
        port = self.emu.https_port if tls else self.emu.http_port
        out = raw_exchange(port, data, tls_ctx=ctx)
        st, headers, body = parse_raw(out)
        self.assertEqual(st, status, out[:300])
        self.assertTrue(headers["content-type"].startswith("application/json"))
        self.assertEqual(int(headers["content-length"]), len(body))
        doc = json.loads(body)
        for k in ("RequestId", "HostId", "Code", "Message"):
            self.assertIn(k, doc)
        return doc

    def test_garbage_requests(self):
        cases = [
            (b"HELLO\r\n\r\n", 400),
            (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
            (b"\x16\x03\x01\x00\xff\x01\x00\x00\xfb\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400),
            (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
            (b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
            (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n", 413),
            (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404),
            (b"GET /_emu/nope HTTP/1.1\r\nHost: x\r\n\r\n", 404),
            (b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
            (b"GET /_emu/reset_counters HTTP/1.1\r\nHost: x\r\n\r\n", 405),
            (b"POST /_emu/faults HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{nope", 400),
            (b"GET /?Action=GetUser&UserName=%FF%FE HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GET /?Action=GetUser HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Zm9v\r\n\r\n",
             400),
        ]
        for data, status in cases:
            with self.subTest(data=data[:60]):
                self.check_json_error(data, status)
        self.check_json_error(b"HELLO\r\n\r\n", 400, tls=True)
        self.assertAlive()

    def test_header_block_limits_and_folding(self):
        # The emulator parses the header block itself: the same limits as
        # http.client (100 fields, 64 KiB a line) and obsolete line folding.
        many = b"".join(b"X-F%d: v\r\n" % i for i in range(101))
        self.check_json_error(b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n", 431)
        long_line = b"X-Long: " + b"a" * 70000 + b"\r\n"
        self.check_json_error(b"GET / HTTP/1.1\r\nHost: x\r\n" + long_line + b"\r\n", 431)
        req = self.emu.prepare("GetUser", {"UserName": "folded"}, signature="v3",
                               use_http=True)
        head = "GET %s HTTP/1.1\r\n" % req.target
        for k, v in req.headers.items():
            if k == "Authorization":        # folded after its first comma
                first, rest = v.split(",", 1)
                head += "%s: %s,\r\n %s\r\n" % (k, first, rest)
            else:
                head += "%s: %s\r\n" % (k, v)
        out = raw_exchange(self.emu.http_port, head.encode() + b"\r\n")
        st, _, body = parse_raw(out)
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body)["User"]["UserName"], "folded")
        self.assertAlive()

    def test_big_body_refused(self):
        big = b"A=" + b"x" * (1 << 20)
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        doc = self.check_json_error(head + b"Content-Length: %d\r\n\r\n" % len(big) + big, 413)
        self.assertEqual(doc["Code"], "RequestEntityTooLarge")
        self.assertAlive()

    def test_head(self):
        out = raw_exchange(self.emu.http_port, b"HEAD /_emu/health HTTP/1.1\r\nHost: x\r\n\r\n",
                           head=True)
        st, headers, body = parse_raw(out)
        self.assertEqual(st, 200)
        self.assertGreater(int(headers["content-length"]), 0)
        self.assertEqual(body, b"")
        out = raw_exchange(self.emu.http_port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", head=True)
        st, headers, body = parse_raw(out)
        self.assertEqual((st, body), (405, b""))
        self.assertAlive()

    def test_http10_and_pipelining(self):
        req = self.emu.prepare("GetUser", {"UserName": "pipe"}, use_http=True)
        req2 = self.emu.prepare("GetUser", {"UserName": "pipe"}, use_http=True)
        data = b""
        for r in (req, req2):
            data += ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (r.target, r.headers["Host"])).encode()
        out = raw_exchange(self.emu.http_port, data, responses=2)
        self.assertEqual(out.count(b"HTTP/1.1 200 OK"), 2, out)
        out = raw_exchange(self.emu.http_port,
                           b"GET /_emu/health HTTP/1.0\r\n\r\n")
        st, headers, body = parse_raw(out)
        self.assertEqual((st, json.loads(body)), (200, {"ok": True}))
        self.assertEqual(headers.get("connection"), "close")


if __name__ == "__main__":
    unittest.main()
