"""Helpers for the recovery tests (tests/recovery/): PAM sessions through the
real module (pam_session_driver with -C, no pam_wrapper), fault-tolerant key
checks against the emulator, and views of the emulator's log.

Standard library only. Binaries come from $RAMKEY_BUILD_DIR like the rest
of the suite (ramkey_fixture).
"""

import calendar
import json
import os
import select
import subprocess
import sys
import threading
import time

from ramkey_fixture import BUILD_DIR, PAM_MODULE, SANITIZED, wait_for

DRIVER = os.path.join(BUILD_DIR, "tests", "pam", "pam_session_driver")

# Answers from the emulator's fault injection, not from RAM's judgement of
# the key: a key check that gets one of these is asked again.
FAULT_CODES = ("ServiceUnavailable", "InternalError", "Throttling.User",
               "Throttling", "ConnectionReset")


def log(msg):
    sys.stdout.write("%s %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


def need_driver():
    if not os.access(DRIVER, os.X_OK):
        print("SKIP: %s is not built" % DRIVER)
        sys.exit(77)
    if not os.path.exists(PAM_MODULE):
        print("SKIP: %s is not built" % PAM_MODULE)
        sys.exit(77)


def unix_time(create_date):
    return calendar.timegm(time.strptime(create_date, "%Y-%m-%dT%H:%M:%SZ"))


class PamConf:
    """A PAM configuration directory for pam_start_confdir (driver -C)."""

    def __init__(self, wd, agent_socket, name="pam.d"):
        self.dir = wd.join(name)
        os.makedirs(self.dir, exist_ok=True)
        self.socket = agent_socket

    def service(self, name, secret_file=None, timeout=5, extra=""):
        args = "socket=%s timeout=%d" % (self.socket, timeout)
        if secret_file:
            args += " secret_file=%s" % secret_file
        if extra:
            args += " " + extra
        with open(os.path.join(self.dir, name), "w") as f:
            f.write("session required %s %s\n" % (PAM_MODULE, args))
        return name


def syslog_env():
    """Environment for a driver whose module logs should be read: the
    tests/pam syslog shim puts pam_syslog lines on the driver's stderr as
    "SYSLOG(prio): ...". In a sanitizer build the sanitizer runtimes the
    driver links must come first in LD_PRELOAD."""
    preload = []
    if SANITIZED:
        out = subprocess.run(["ldd", DRIVER], capture_output=True, text=True).stdout
        for name in ("libasan", "libubsan"):
            for line in out.splitlines():
                if name in line and "=>" in line:
                    preload.append(line.split("=>")[1].split()[0])
    preload.append(os.path.join(BUILD_DIR, "tests", "pam", "libpam_test_syslog.so"))
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(preload)
    return env


def syslog_lines(text):
    """The module's syslog lines in a driver's stderr (syslog_env)."""
    return [l.split("SYSLOG(", 1)[1].split(": ", 1)[1] for l in text.splitlines()
            if "SYSLOG(" in l and ": " in l.split("SYSLOG(", 1)[1]]


class PamSession:
    """One pam_session_driver process holding one PAM handle. The driver is
    the process that opens the session, so the agent watches its pid."""

    def __init__(self, conf, service, user, errpath=None, env=None):
        self.user = user
        self.errpath = errpath
        self.errf = open(errpath, "w") if errpath else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [DRIVER, "-C", conf.dir, "-r", "198.51.100.7", "-t", "pts/9",
             service, user],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errf,
            text=True, bufsize=1, env=env)
        self.pid = self.proc.pid
        w = self._read("start", 10)
        if w[0] != "start" or w[2] != "PAM_SUCCESS":
            self.kill()
            raise AssertionError("pam_start failed: %r" % (w,))

    def _read(self, what, timeout):
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            raise TimeoutError("driver: no answer to %s within %s s" % (what, timeout))
        line = self.proc.stdout.readline()
        if not line:
            raise ConnectionError("driver died during %s" % what)
        return line.rstrip("\n").split(" ", 3)

    def cmd(self, line, timeout=30):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._read(line, timeout)

    def open(self, timeout=30):
        """-> (PAM rc name, milliseconds the call took)"""
        w = self.cmd("open", timeout)
        return w[2], int(w[3])

    def close(self, timeout=30):
        w = self.cmd("close", timeout)
        return w[2], int(w[3])

    def quit(self, timeout=10):
        """pam_end and exit; the process is gone when this returns."""
        if self.proc.poll() is None:
            try:
                self.cmd("quit", timeout)
            except (OSError, TimeoutError, ConnectionError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_files()

    def kill(self):
        """SIGKILL: no close_session, no pam_end."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close_files()

    def alive(self):
        return self.proc.poll() is None

    def _close_files(self):
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        if self.errf is not subprocess.DEVNULL:
            self.errf.close()
            self.errf = subprocess.DEVNULL

    def stderr(self):
        if not self.errpath:
            return ""
        with open(self.errpath, errors="replace") as f:
            return f.read()


def read_key_file(path):
    """(AccessKeyId, AccessKeySecret) from a json-format secret_file, or
    None if there is no (complete) file."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    kid, secret = doc.get("AccessKeyId"), doc.get("AccessKeySecret")
    if not kid or not secret:
        return None
    return kid, secret


def check_key(emu, key_id, secret, tries=40):
    """Sign a request with the key. True: RAM accepted it; False: RAM
    rejected the key itself (InvalidAccessKeyId.*, ...). Injected faults
    (503, throttling, resets) are not an answer about the key: ask again."""
    last = None
    for _ in range(tries):
        try:
            status, body = emu.call("ListAccessKeys", {}, key_id=key_id,
                                    secret=secret, signature="v3")
        except (OSError, ConnectionError) as e:
            last = repr(e)
            time.sleep(0.05)
            continue
        if status == 200:
            return True
        code = body.get("Code", "")
        if code in FAULT_CODES or status >= 500:
            last = code or status
            time.sleep(0.05)
            continue
        return False
    raise AssertionError("could not check key %s: only faults (%s)" % (key_id, last))


def agent_entries(emu, since=None):
    """The emulator's log entries of calls made with the admin key (the
    agent's own calls, not the tests' key checks)."""
    return [e for e in emu.log(since=since)
            if e.get("access_key_id") == emu.admin_key_id]


def admin_keys(state, users):
    """Keys created through the API with the admin key (= by the agent) that
    still exist, for the given RAM users: [(user, key dict)]."""
    out = []
    for name in users:
        u = state["users"].get(name)
        for k in (u["keys"] if u else []):
            if k.get("created_by") == "admin":
                out.append((name, k))
    return out


def wait_drained(agent, timeout=60):
    """Wait until the agent has no lease left at all (nothing live, nothing
    pending). Returns the last status document."""
    box = {}

    def drained():
        try:
            doc = agent.status()
        except Exception:   # agent busy or restarting: ask again
            return False
        box["doc"] = doc
        return doc["pending_revocations"] == 0 and not doc["leases"]
    wait_for(drained, timeout, interval=0.25, what="the agent to drain")
    return box["doc"]


class Spawner:
    """Start a long-lived process with a chosen pid (as root, through
    /proc/sys/kernel/ns_last_pid), to model pid reuse."""

    LOCK = threading.Lock()

    @staticmethod
    def with_pid(pid, argv, tries=200):
        with Spawner.LOCK:
            for _ in range(tries):
                with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                    f.write(str(pid - 1))
                p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
                if p.pid == pid:
                    return p
                p.kill()
                p.wait()
        raise AssertionError("could not get pid %d for a new process" % pid)
