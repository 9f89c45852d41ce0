"""The client talks only to the real agent; the agent refuses to start over
a live agent and replaces a leftover socket."""

import json
import os
import socket
import subprocess
import sys
import time
import unittest

from emulator import Emulator
from ramkey_fixture import (CLIENT_BIN, Agent, Users, Workdir, as_user_cmd,
                            wait_for)

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_agent.py")


def start_fake(argv_prefix, sock, report, extra=()):
    # As another user, the system python3 (the test's own may sit in an
    # unreadable home).
    py = "/usr/bin/python3" if argv_prefix else sys.executable
    p = subprocess.Popen(list(argv_prefix) + [py, FAKE, sock, report] +
                         list(extra), stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    p.stdout.close()
    return p


def reports(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f]


class AgentIdentity(unittest.TestCase):
    def setUp(self):
        self.wd = Workdir()
        self.users = Users("sk")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            p.kill()
            p.wait()
        self.users.cleanup()
        self.wd.cleanup()

    def client(self, sock):
        return subprocess.run([CLIENT_BIN, "--socket", sock, "--timeout", "3",
                               "status"], capture_output=True, text=True,
                              timeout=20)

    def test_world_writable_directory_is_refused_before_sending(self):
        d = self.wd.join("open")
        os.mkdir(d)
        os.chmod(d, 0o1777)
        sock, report = os.path.join(d, "agent.sock"), self.wd.join("r1")
        self.procs.append(start_fake([], sock, report))
        r = self.client(sock)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("writable by others", r.stderr)
        time.sleep(0.3)
        self.assertEqual(reports(report), [])  # not even a connection

    def test_agent_of_another_uid_is_refused_before_sending(self):
        mallory = self.users.add("mal")
        d = self.wd.join("mal")
        os.mkdir(d)
        os.chown(d, mallory.pw_uid, mallory.pw_gid)
        sock, report = os.path.join(d, "agent.sock"), self.wd.join("r2")
        open(report, "w").close()
        os.chmod(report, 0o666)
        self.procs.append(start_fake(as_user_cmd(mallory, []), sock, report))
        r = self.client(sock)
        self.assertEqual(r.returncode, 3, r.stderr)
        time.sleep(0.3)
        self.assertEqual(reports(report), [])

    def test_peer_credentials_are_checked_after_connect(self):
        # Socket file and directory look right (root), but the listening
        # process is not root: only SO_PEERCRED can tell.
        mallory = self.users.add("peer")
        d = self.wd.join("peer")
        os.mkdir(d)
        os.chmod(d, 0o755)
        sock, report = os.path.join(d, "agent.sock"), self.wd.join("r3")
        open(report, "w").close()
        os.chmod(report, 0o666)
        self.procs.append(start_fake([], sock, report,
                                     ["--uid", str(mallory.pw_uid)]))
        self.assertEqual(os.stat(sock).st_uid, 0)
        r = self.client(sock)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("uid %d" % mallory.pw_uid, r.stderr)
        wait_for(lambda: reports(report), 5, what="the fake agent's report")
        self.assertEqual(reports(report), [{"bytes": 0}])

    def test_second_agent_refuses_a_live_socket(self):
        with Emulator(https=True) as emu:
            first = Agent(self.wd, emu)
            first.start()
            try:
                with Workdir() as wd2:
                    second = Agent(wd2, emu, socket=first.socket)
                    p = second.start(wait=False)
                    self.assertEqual(p.wait(20), 3)
                    log = second.log()
                    self.assertIn("another agent is answering", log)
                self.assertTrue(first.answers())
            finally:
                first.stop()

    def test_leftover_socket_is_replaced(self):
        with Emulator(https=True) as emu:
            agent = Agent(self.wd, emu)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(agent.socket)
            s.close()  # a socket file nobody listens on
            self.assertTrue(os.path.exists(agent.socket))
            agent.start()
            try:
                self.assertIn("replaced the leftover socket", agent.log())
                r = agent.client("status")
                self.assertEqual(r.returncode, 0, r.stderr)
            finally:
                self.assertEqual(agent.stop(), 0)
            self.assertFalse(os.path.exists(agent.socket))


class SocketActivation(unittest.TestCase):
    """Under systemd's ramkey-agent.socket the agent takes the socket on
    fd 3, reports READY=1, and leaves the socket to systemd at exit so
    clients queue on it across a restart."""

    def test_activated_socket_serves_and_outlives_the_agent(self):
        with Workdir() as wd, Users("sa") as users, \
                Emulator(https=True, auto_users=True) as emu:
            agent = Agent(wd, emu)
            lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            lsock.bind(agent.socket)
            os.chmod(agent.socket, 0o666)
            lsock.listen(16)
            notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            npath = wd.join("notify")
            notify.bind(npath)
            notify.settimeout(15)
            try:
                agent.start(listen_fd=lsock.fileno(),
                            env={"NOTIFY_SOCKET": npath})
                self.assertIn(b"READY=1", notify.recv(4096))
                self.assertIn("(socket activation)", agent.log())
                pw = users.add("act")
                r = agent.client("fetch", "--user", pw.pw_name)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(agent.stop(), 0)
                # systemd's socket: still there, still listening.
                self.assertTrue(os.path.exists(agent.socket))
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.connect(agent.socket)  # queues until the next agent
                c.close()
                agent.start(listen_fd=lsock.fileno())
                r = agent.client("fetch", "--user", pw.pw_name)
                self.assertEqual(r.returncode, 0, r.stderr)
            finally:
                agent.stop()
                lsock.close()
                notify.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
