"""Per-uid connection limits and the 5-second request deadline."""

import json
import os
import socket
import subprocess
import time
import unittest

from emulator import Emulator
from ramkey_fixture import Agent, Users, Workdir, as_user_cmd

HOLD = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                    "hold_connections.py")


class Connections(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.wd = Workdir()
        cls.users = Users("cn")
        cls.emu = Emulator(https=True, auto_users=True)
        cls.agent = Agent(cls.wd, cls.emu, max_connections_per_uid=4)
        cls.agent.start()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()
        cls.emu.stop()
        cls.users.cleanup()
        cls.wd.cleanup()

    def test_limit_per_uid_does_not_stop_root(self):
        pw = self.users.add("hog")
        target = self.users.add("tgt")
        p = subprocess.Popen(as_user_cmd(pw, ["python3", HOLD, self.agent.socket,
                                              "4"]),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        try:
            report = json.loads(p.stdout.readline())
            self.assertTrue(report["extra_closed"], report)
            self.assertLess(report["after"], 1.0)
            # While the user holds its 4 connections, root is served.
            r = self.agent.client("fetch", "--user", target.pw_name)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertRegex(self.agent.log(),
                             r"audit: event=deny user=- ram_user=- key=- "
                             r"peer_uid=%d .*op=connect "
                             r'reason="max_connections_per_uid reached"' % pw.pw_uid)
        finally:
            p.stdin.close()
            p.stdout.close()
            p.wait(10)

    def test_request_flood_is_refused_and_audited_once(self):
        # 500 requests at once from one user: past the burst of 100 the
        # agent answers "rate" (exit 4's code) and writes one deny line
        # for the flood, not one per request.
        pw = self.users.add("flood")
        code = ("import json, sys\n"
                "from ramkey_fixture import raw_call\n"
                "errs = [raw_call(sys.argv[1], {'v': 1, 'op': 'status'})"
                ".get('error', {}).get('code') for _ in range(500)]\n"
                "print(json.dumps(errs))\n")
        env = dict(os.environ)
        r = subprocess.run(as_user_cmd(pw, ["env", "PYTHONPATH=" +
                                            os.environ.get("PYTHONPATH", ""),
                                            "python3", "-c", code,
                                            self.agent.socket]),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        errs = json.loads(r.stdout)
        refused = [e for e in errs if e == "rate_limited"]
        print("refused %d of %d" % (len(refused), len(errs)))
        self.assertIsNone(errs[0])
        self.assertGreater(len(refused), 0)
        lines = [l for l in self.agent.log().splitlines()
                 if "event=deny" in l and "peer_uid=%d " % pw.pw_uid in l]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn('op=status reason="request rate" suppressed=0', lines[0])

    def test_half_a_frame_is_closed_after_five_seconds(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.agent.socket)
        s.sendall(b"\x00\x00")  # half a header, then nothing
        s.settimeout(10)
        t0 = time.monotonic()
        self.assertEqual(s.recv(1), b"")
        elapsed = time.monotonic() - t0
        s.close()
        print("half-frame connection closed after %.2f s" % elapsed)
        self.assertGreater(elapsed, 4.5)
        self.assertLess(elapsed, 6.0)

    def test_oversized_frame_and_garbage_are_closed(self):
        for payload in (b"\x00\x01\x00\x01", b"\x00\x00\x00\x05hello",
                        b"\x00\x00\x00\x02{}"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.agent.socket)
            s.sendall(payload)
            s.settimeout(3)
            self.assertEqual(s.recv(1), b"", payload)
            s.close()
        r = self.agent.client("status")
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
