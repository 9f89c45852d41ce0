"""A real OpenSSH sshd for end-to-end tests, isolated from the host's own.

    from sshd_fixture import Sshd, become_subreaper
    become_subreaper()
    with Sshd(wd, "main", session_lines=["session required %s socket=%s"
                                         % (PAM_MODULE, agent.socket)]) as sshd:
        sshd.authorize(alice)
        sshd.start()
        s = sshd.login(alice, REMOTE_SCRIPT)      # an SshLogin, held open
        ...
        s.close()
        sshd.stop()                                # asserts nothing is left

Isolation. Debian's sshd 9.2 always uses the PAM service "sshd" and reads
/etc/pam.d/sshd. The host's file is never touched: sshd runs in a private
mount namespace (`unshare --mount --propagation private`) in which the
test's own PAM stack is bind-mounted over /etc/pam.d/sshd, and it reads a
private sshd_config (-f), host key, pid file and log (-E) from the test's
directory. It listens on 127.0.0.1 only, on a free port, and accepts only
the test's accounts (AllowUsers). The namespace lives as long as a process
in it: sshd and its per-connection children; stop() checks that none is
left, so the namespace is gone.

The one host change: sshd needs its privilege-separation directory
/run/sshd (the Debian unit creates it at boot; a container may not have
it). It is created (root, 0755) when missing and left in place, as the
openssh-server package itself would.

The namespace is identified by an fd kept open on /proc/PID/ns/mnt while
sshd runs (namespace inode numbers are reused as soon as one is gone, and
tests run in parallel); stop() kills whatever is still in it, then closes
the fd.

Processes. sshd's per-connection processes outlive a killed parent and
would be re-parented to init, which in a container may never reap them.
become_subreaper() makes the test process the reaper for its descendants,
so every such process can be found (children()) and reaped (reap()).
"""

import base64
import ctypes
import gc
import os
import queue
import signal
import socket
import subprocess
import threading
import time

SSHD = "/usr/sbin/sshd"
SSH = "/usr/bin/ssh"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
PRIVSEP_DIR = "/run/sshd"
PR_SET_CHILD_SUBREAPER = 36


def have_sshd():
    return (all(os.access(p, os.X_OK) for p in (SSHD, SSH, SSH_KEYGEN)) and
            os.path.isfile("/etc/pam.d/sshd"))


def become_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _stat_fields(pid):
    """(state, ppid) of a process, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    return rest[0], int(rest[1])


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def children(ppid, include_zombies=False):
    out = []
    for pid in all_pids():
        st = _stat_fields(pid)
        if st and st[1] == ppid and (include_zombies or st[0] != "Z"):
            out.append(pid)
    return out


def alive(pid):
    st = _stat_fields(pid)
    return st is not None and st[0] != "Z"


def _popen_pids():
    """Pids of child processes a live, not yet waited-for Popen object
    owns: their exit status belongs to that object."""
    return {o.pid for o in gc.get_objects()
            if isinstance(o, subprocess.Popen) and o.returncode is None}


def reap():
    """Reap zombie children of this process that no Popen object owns
    (sshd's processes re-parented to us as subreaper)."""
    me = os.getpid()
    owned = _popen_pids()
    for pid in all_pids():
        st = _stat_fields(pid)
        if st and st[1] == me and st[0] == "Z" and pid not in owned:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def mnt_ns(pid):
    """The mount namespace of a live process, (st_dev, st_ino), or None.
    Namespace inodes are reused once a namespace is gone: compare only
    against a namespace kept alive by an open fd (Sshd.ns_fd)."""
    try:
        st = os.stat("/proc/%d/ns/mnt" % pid)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pids_in_ns(ns):
    return [p for p in all_pids() if mnt_ns(p) == ns and alive(p)]


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def sanitizer_env(module):
    """For a module built with ASan/UBSan: the environment sshd needs to
    load it (the sanitizer runtimes must come first in the process, so
    they are preloaded into sshd; sshd's own allocations are not ours to
    leak-check). Empty for a normal build."""
    out = subprocess.run(["ldd", module], capture_output=True, text=True).stdout
    libs = []
    for name in ("libasan", "libubsan"):
        for line in out.splitlines():
            parts = line.split()
            if parts and parts[0].startswith(name) and "=>" in parts:
                libs.append(parts[parts.index("=>") + 1])
    if not libs:
        return {}
    return {"LD_PRELOAD": ":".join(libs),
            "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1:halt_on_error=1",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}


def ensure_privsep_dir():
    try:
        os.mkdir(PRIVSEP_DIR, 0o755)
    except FileExistsError:
        pass


class SshLogin:
    """One `ssh user@127.0.0.1 COMMAND` kept open; its stdout is read line
    by line on a thread, so a test can wait for a line with a deadline."""

    def __init__(self, argv, name):
        self.name = name
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines = queue.Queue()
        self.stderr = []
        self.ended_at = None
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines),
                         daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    @staticmethod
    def _pump(stream, q):
        for line in stream:
            q.put(line.rstrip("\n"))
        q.put(None)

    def _pump_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def readline(self, timeout=15.0):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("%s: no output within %.0f s (ssh stderr: %s)"
                                 % (self.name, timeout, " | ".join(self.stderr)))
        if line is None:
            self.wait(5)
            raise AssertionError("%s: ssh ended (status %s) while a line was expected; "
                                 "ssh stderr: %s" % (self.name, self.proc.returncode,
                                                     " | ".join(self.stderr)))
        return line

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close_stdin(self):
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass

    def wait(self, timeout=15.0):
        rc = self.proc.wait(timeout)
        if self.ended_at is None:
            self.ended_at = time.monotonic()
        return rc

    def poll(self):
        rc = self.proc.poll()
        if rc is not None and self.ended_at is None:
            self.ended_at = time.monotonic()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


class Sshd:
    """sshd -D in a private mount namespace with its own PAM stack.

    session_lines: the PAM "session" lines of the stack (the account phase
    is `account required pam_permit.so`: public-key authentication does
    not run the PAM auth phase). Accounts must be authorize()d before
    they can log in."""

    def __init__(self, wd, name, session_lines, account_lines=None, extra_config=(),
                 env=None):
        self.dir = wd.join("sshd-" + name)
        self.name = name
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.keys_dir = os.path.join(self.dir, "authorized_keys")
        os.makedirs(self.keys_dir)
        os.chmod(self.keys_dir, 0o755)
        self.host_key = os.path.join(self.dir, "host_ed25519")
        self.client_key = os.path.join(self.dir, "client_ed25519")
        for k in (self.host_key, self.client_key):
            subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C",
                            "ramkey-test", "-f", k], check=True)
        self.pam_path = os.path.join(self.dir, "pam.sshd")
        lines = list(account_lines or ["account required pam_permit.so"])
        lines += list(session_lines)
        with open(self.pam_path, "w") as f:
            f.write("# ramkey sshd test stack (bind-mounted over /etc/pam.d/sshd\n"
                    "# in the test sshd's private mount namespace only)\n")
            f.write("\n".join(lines) + "\n")
        os.chmod(self.pam_path, 0o644)
        self.conf_path = os.path.join(self.dir, "sshd_config")
        self.log_path = os.path.join(self.dir, "sshd.log")
        self.pid_path = os.path.join(self.dir, "sshd.pid")
        self.extra_config = list(extra_config)
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
        self.env.update(env or {})
        self.users = []
        self.port = None
        self.proc = None
        self.ns = None          # sshd's mount namespace, (dev, ino) ...
        self.ns_fd = -1         # ... held open so its identity cannot be reused

    # -- configuration ----------------------------------------------------
    def _write_config(self):
        conf = [
            "ListenAddress 127.0.0.1",
            "Port %d" % self.port,
            "AddressFamily inet",
            "HostKey %s" % self.host_key,
            "PidFile %s" % self.pid_path,
            "UsePAM yes",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            "AuthorizedKeysFile %s/%%u" % self.keys_dir,
            "StrictModes no",
            "AllowUsers %s" % " ".join(self.users or ["nobody-at-all"]),
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "PermitTTY no",
            "MaxStartups 100:30:200",
            "LogLevel VERBOSE",
        ] + self.extra_config
        with open(self.conf_path, "w") as f:
            f.write("\n".join(conf) + "\n")

    def authorize(self, pw):
        """Let this account log in with the client key."""
        with open(self.client_key + ".pub") as f:
            pub = f.read()
        path = os.path.join(self.keys_dir, pw.pw_name)
        with open(path, "w") as f:
            f.write(pub)
        os.chmod(path, 0o644)
        self.users.append(pw.pw_name)

    # -- lifecycle --------------------------------------------------------
    def start(self, attempts=5):
        ensure_privsep_dir()
        for _ in range(attempts):
            self.port = free_port()
            self._write_config()
            r = subprocess.run([SSHD, "-t", "-f", self.conf_path], capture_output=True,
                               text=True)
            if r.returncode != 0:
                raise AssertionError("sshd -t rejects the test config: %s" % r.stderr)
            log_start = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
            script = ('mount --bind "$1" /etc/pam.d/sshd || exit 97\n'
                      'exec "$2" -D -f "$3" -E "$4"\n')
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--",
                 "/bin/sh", "-c", script, "sh", self.pam_path, SSHD, self.conf_path,
                 self.log_path],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True, start_new_session=True,
                env=self.env)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if "Server listening on" in self.log(log_start):
                    self.ns_fd = os.open("/proc/%d/ns/mnt" % self.proc.pid,
                                         os.O_RDONLY | os.O_CLOEXEC)
                    st = os.fstat(self.ns_fd)
                    self.ns = (st.st_dev, st.st_ino)
                    if self.ns == mnt_ns(os.getpid()):
                        raise AssertionError("sshd is not in a private mount namespace")
                    return
                time.sleep(0.02)
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            text = self.log(log_start)
            self.stop(check=False)
            if "Address already in use" in text:
                continue        # lost a race for the port: try another
            raise AssertionError("sshd did not start (status %s): %s\n%s"
                                 % (self.proc.returncode if self.proc else None, err, text))
        raise AssertionError("sshd found no free port in %d attempts" % attempts)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def session_pids(self):
        """Processes in sshd's namespace other than the listener."""
        if self.ns is None:
            return []
        return [p for p in pids_in_ns(self.ns) if p != self.pid]

    def monitors(self):
        """The per-connection privileged processes (children of the listener)."""
        return children(self.pid) if self.running() else []

    def wait_sessions_gone(self, timeout=10.0):
        """Wait until only the listener is left in the namespace; returns the
        leftovers (pid, cmdline) if any remain at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.session_pids()
            if not left or time.monotonic() >= deadline:
                return [(p, cmdline(p)) for p in left]
            time.sleep(0.05)

    def stop(self, check=True):
        """Stop sshd. With check, assert that no session process was still
        running and that the namespace is gone afterwards."""
        leftovers = []
        if self.proc is not None:
            if self.ns is not None:
                # ssh returns before the server side has run close_session
                # and exited: give that a moment.
                leftovers = self.wait_sessions_gone(timeout=5 if check else 0)
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            if self.proc.stderr:
                self.proc.stderr.close()
        if self.ns is not None:
            # Nothing may keep the namespace alive.
            for p in pids_in_ns(self.ns):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
            while pids_in_ns(self.ns) and time.monotonic() < deadline:
                time.sleep(0.05)
            still = pids_in_ns(self.ns)
            reap()
            if check and still:
                raise AssertionError("sshd namespace still has processes: %s" % still)
            if not still:
                # No process left in it: with our fd closed, it is gone.
                os.close(self.ns_fd)
                self.ns_fd = -1
                self.ns = None
        reap()
        if check and leftovers:
            raise AssertionError("session processes were still running when sshd "
                                 "stopped: %s" % leftovers)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop(check=False)

    def log(self, offset=0):
        try:
            with open(self.log_path, errors="replace") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return ""

    # -- client -----------------------------------------------------------
    def ssh_argv(self, user, command, options=()):
        """ssh to this sshd; options: more `-o` settings ("Name=value")."""
        name = user if isinstance(user, str) else user.pw_name
        extra = [a for o in options for a in ("-o", o)]
        return ([SSH, "-F", "/dev/null", "-i", self.client_key,
                 "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
                 "-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null",
                 "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]
                + extra + ["-p", str(self.port), "%s@127.0.0.1" % name, command])

    def login(self, user, command, name=None):
        return SshLogin(self.ssh_argv(user, command), name or "ssh login")

    def run(self, user, command, timeout=30):
        return subprocess.run(self.ssh_argv(user, command), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)


# The remote side of a held login: report the secret file on start and on
# every "show" line; end on "exit" or EOF. Output, per report:
#   INFO pid=<shell pid> ppid=<its sshd>      (first report only)
#   STAT <mode> <owner> <type>   or  STAT missing
#   DIR <mode> <owner>                        (the file's directory)
#   DATA <base64 of the file content>
#   ENV <name>=<value>                        (the variables asked for)
#   END
def remote_script(path_expr, env_names=()):
    env = "".join('echo "ENV %s=${%s-<unset>}"; ' % (n, n) for n in env_names)
    return (
        'f="%s"; '
        'show() { '
        'if [ -e "$f" ]; then echo "STAT $(stat -c \'%%a %%U %%F\' "$f")"; '
        'else echo "STAT missing"; fi; '
        'echo "DIR $(stat -c \'%%a %%U\' "$(dirname "$f")" 2>/dev/null)"; '
        'echo "DATA $(base64 -w0 "$f" 2>/dev/null)"; %s'
        'echo END; }; '
        'echo "INFO pid=$$ ppid=$PPID"; show; '
        'while read -r cmd; do '
        'case "$cmd" in show) show;; exit) break;; esac; done'
    ) % (path_expr, env)


class Report:
    """One report of remote_script, parsed."""

    def __init__(self, lines):
        self.stat = None
        self.dir = None
        self.data = b""
        self.env = {}
        for line in lines:
            tag, _, rest = line.partition(" ")
            if tag == "STAT":
                self.stat = rest
            elif tag == "DIR":
                self.dir = rest
            elif tag == "DATA":
                self.data = base64.b64decode(rest) if rest else b""
            elif tag == "ENV":
                k, _, v = rest.partition("=")
                self.env[k] = v

    @property
    def exists(self):
        return self.stat is not None and self.stat != "missing"


class HeldLogin:
    """A login running remote_script: report() on start, show() later."""

    def __init__(self, sshd, user, path_expr, env_names=(), name=None):
        self.login = sshd.login(user, remote_script(path_expr, env_names),
                                name=name or "login of %s" % user.pw_name)
        first = self.login.readline(timeout=20)
        if not first.startswith("INFO "):
            raise AssertionError("%s: unexpected first line %r (ssh stderr: %s)"
                                 % (self.login.name, first, " | ".join(self.login.stderr)))
        info = dict(kv.split("=", 1) for kv in first.split()[1:])
        self.shell_pid = int(info["pid"])
        self.first = self._read_report()

    def _read_report(self):
        lines = []
        while True:
            line = self.login.readline()
            if line == "END":
                return Report(lines)
            lines.append(line)

    def show(self):
        self.login.send("show")
        return self._read_report()

    def end(self, timeout=15):
        """Log out: "exit" to the remote loop, then EOF; returns ssh's status."""
        try:
            self.login.send("exit")
        except BrokenPipeError:
            pass
        self.login.close_stdin()
        return self.login.wait(timeout)

    def kill(self):
        self.login.kill()
