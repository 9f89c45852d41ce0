#!/usr/bin/env python3
"""The Debian packages, end to end (ctest: package.debian; root only, else
exit 77).

  1. scripts/package builds ramkey-agent, libpam-ramkey and ramkey-client
     with dpkg-buildpackage; lintian finds nothing (overrides aside).
  2. They are installed with dpkg into a throwaway root (pkgroot.py: an
     overlayfs over / with a private tmpfs upper layer, chrooted into), so
     their maintainer scripts run for real while nothing of the machine
     changes: the ramkey account, /etc/ramkey, /var/lib/ramkey, enabled
     units (the sweep's timer not enabled).
  3. pam-auth-update --enable ramkey puts pam_ramkey after pam_systemd in
     common-session, and not in common-session-noninteractive.
  4. The installed units pass systemd-analyze verify; the agent's unit
     scores under 2.0 in systemd-analyze security --offline.
  5. The installed nftables rule, loaded in a private network namespace,
     lets root and ramkey reach 100.100.100.200 and nobody else.
  6. The installed agent runs as its unit says (ExecStartPre as root,
     ExecStart as User= with the unit's environment, umask and limits,
     READY=1 on NOTIFY_SOCKET), against the RAM emulator, and serves a
     real ssh login through Debian's own /etc/pam.d/sshd: the user gets a
     working key in a 0600 file.
  7. dpkg -r ramkey-agent with that login live revokes the lease first
     (ramkey-agent-client revoke --all): the emulator has the key no more.
  8. dpkg --purge of all three leaves no file of theirs: dpkg -L, a find
     for "ramkey" in /etc, /var, /usr and /lib, and nothing owned by the
     ramkey account; common-session is back without pam_ramkey.
The machine's own /etc/pam.d is compared before and after (unchanged), and
it has no ramkey account or file afterwards that it did not have before.

systemd is not PID 1 here: nothing starts or stops units. The test runs the
agent from the installed unit's settings and stops it where systemd would
(after the prerm); the unit's sandbox is systemd's to apply and is not
imitated (package.systemd_unit checks it offline).
"""

import hashlib
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "sshd"))

from emulator import Emulator                                   # noqa: E402
from pkgroot import PkgRoot                                     # noqa: E402
from ramkey_fixture import SOURCE_DIR, Workdir, key_works, require_root  # noqa: E402
from sshd_fixture import SSH, SSH_KEYGEN, HeldLogin, free_port  # noqa: E402

PACKAGES = ("ramkey-client", "ramkey-agent", "libpam-ramkey")
USER = "rkpkgalice"
UNIT = "/lib/systemd/system/ramkey-agent.service"
NOTIFY = "/run/ramkey-test.notify"
EXPOSURE_GOAL = 2.0
# Where the module writes without XDG_RUNTIME_DIR (pam_systemd cannot reach
# logind here) and with it.
SECRET_PATH = ('$(if [ -n "${XDG_RUNTIME_DIR:-}" ]; then '
               'echo "$XDG_RUNTIME_DIR/ramkey/credentials.json"; '
               'else echo "$HOME/.alibabacloud/ramkey.json"; fi)')
TOOLS = ("dpkg-buildpackage", "dh", "lintian", "unshare", "nsenter", "setpriv", "prlimit",
         "nft", "ip", "systemd-analyze", "pam-auth-update", "/usr/sbin/sshd")


def log(msg=""):
    print(msg, flush=True)


T0 = time.monotonic()


def step(msg):
    log("\n== [%5.1f s] %s" % (time.monotonic() - T0, msg))


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def indent(text):
    return "\n".join("   | " + ln for ln in text.rstrip("\n").splitlines())


def host_snapshot():
    """What the packages would change on a real machine. (Other tests add
    and remove accounts meanwhile: passwd and group are checked for the
    names this test creates, not as a whole.)"""
    out = {}
    for name in sorted(os.listdir("/etc/pam.d")):
        p = os.path.join("/etc/pam.d", name)
        if os.path.isfile(p) and (name.startswith("common-") or name == "sshd"):
            with open(p, "rb") as f:
                out[p] = hashlib.sha256(f.read()).hexdigest()
    for p in ("/etc/passwd", "/etc/group"):
        with open(p) as f:
            names = {ln.split(":", 1)[0] for ln in f}
        for n in ("ramkey", USER):
            out["%s in %s" % (n, p)] = n in names
    for p in ("/etc/ramkey", "/var/lib/ramkey", "/run/ramkey", "/usr/share/pam-configs/ramkey",
              "/usr/sbin/ramkey-agent", "/lib/systemd/system/ramkey-agent.service"):
        out[p + " exists"] = os.path.lexists(p)
    return out


# -- the unit, read as systemd would ------------------------------------------
def unit_service(text):
    """[Service] settings: name -> list of values, in order."""
    out, section = {}, None
    for raw in text.splitlines():
        ln = raw.strip()
        if not ln or ln[0] in "#;":
            continue
        if ln.startswith("["):
            section = ln
            continue
        if section == "[Service]" and "=" in ln:
            k, v = ln.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def size_bytes(v):
    m = re.fullmatch(r"(\d+)([KMGT]?)", v)
    check(m, "unsupported limit value %r" % v)
    return int(m.group(1)) * 1024 ** " KMGT".index(m.group(2) or " ")


def can_raise_limits():
    """Has this process CAP_SYS_RESOURCE?"""
    with open("/proc/self/status") as f:
        eff = next(ln for ln in f if ln.startswith("CapEff:")).split()[1]
    return bool(int(eff, 16) >> 24 & 1)


class UnitAgent:
    """The installed agent, run the way its unit says, in the root."""

    def __init__(self, root, wd):
        self.root = root
        self.text = root.read(UNIT)
        self.svc = unit_service(self.text)
        self.log_path = wd.join("agent.log")
        self.proc = None
        self.pid = None      # inside the root's PID namespace

    def one(self, key, default=None):
        v = self.svc.get(key)
        return v[-1] if v else default

    def env(self, user):
        pw = self.root.run(["getent", "passwd", user], check=True).stdout.strip().split(":")
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "USER": user, "LOGNAME": user, "HOME": pw[5], "SHELL": pw[6]}
        for key, var, base in (("RuntimeDirectory", "RUNTIME_DIRECTORY", "/run"),
                               ("StateDirectory", "STATE_DIRECTORY", "/var/lib"),
                               ("ConfigurationDirectory", "CONFIGURATION_DIRECTORY", "/etc")):
            if self.one(key):
                env[var] = os.path.join(base, self.one(key))
        for assignment in self.svc.get("Environment", []):
            for item in assignment.split():
                k, _, v = item.strip('"').partition("=")
                env[k] = v
        return env

    def start(self):
        user, group = self.one("User"), self.one("Group")
        check(user and group, "the unit names no User=/Group=")
        env = self.env(user)
        # ExecStartPre=+...: as root, no User=, before the agent starts.
        for pre in self.svc.get("ExecStartPre", []):
            privileged = pre.startswith("+")
            argv = pre.lstrip("+-@!").split()
            r = self.root.run(argv if privileged else
                              ["setpriv", "--reuid", user, "--regid", group, "--clear-groups",
                               "--"] + argv, env=env)
            log("ExecStartPre=%s (%s) exited %d:\n%s" % (
                pre, "as root" if privileged else "as " + user, r.returncode,
                indent(r.stdout + r.stderr)))
            check(r.returncode == 0, "ExecStartPre=%s failed: the agent would not start%s" % (
                pre, " (the check runs as root, as under systemd, and must accept the "
                "files of the unit's User=, %s)" % user if privileged else ""))
        # The directories systemd makes before ExecStart=.
        for key, base in (("RuntimeDirectory", "/run"), ("StateDirectory", "/var/lib")):
            if self.one(key):
                d = os.path.join(base, self.one(key))
                mode = self.one(key + "Mode", "0755")
                self.root.run(["install", "-d", "-o", user, "-g", group, "-m", mode, d],
                              check=True)
        # READY=1 arrives here (Type=notify).
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.root.path(NOTIFY))
        os.chmod(self.root.path(NOTIFY), 0o666)
        env["NOTIFY_SOCKET"] = NOTIFY
        limits = []
        for key, opt, res in (("LimitCORE", "--core", resource.RLIMIT_CORE),
                              ("LimitMEMLOCK", "--memlock", resource.RLIMIT_MEMLOCK),
                              ("LimitNOFILE", "--nofile", resource.RLIMIT_NOFILE)):
            if not self.one(key):
                continue
            want = size_bytes(self.one(key))
            hard = resource.getrlimit(res)[1]
            if hard != resource.RLIM_INFINITY and want > hard and not can_raise_limits():
                log("%s=%s: this machine's root cannot raise the hard limit (%d) without "
                    "CAP_SYS_RESOURCE, which systemd has; using %d"
                    % (key, self.one(key), hard, hard))
                want = hard
            limits.append("%s=%d" % (opt, want))
        argv = self.one("ExecStart").split()
        umask = self.one("UMask", "0022")
        # One process, exec after exec: the pid written first is the agent's.
        inner = ["/bin/sh", "-c", 'echo $$ > /run/ramkey-test.agent.pid; exec "$@"', "sh",
                 "prlimit"] + limits + [
            "--", "setpriv", "--reuid", user, "--regid", group, "--clear-groups", "--",
            "env", "-i"] + ["%s=%s" % kv for kv in sorted(env.items())] + [
            "/bin/sh", "-c", 'umask %s; exec "$@"' % umask, "sh"] + argv
        log("ExecStart=%s as %s:%s, umask %s, %s" % (" ".join(argv), user, group, umask,
                                                     " ".join(limits)))
        self.logf = open(self.log_path, "ab")
        self.proc = self.root.popen(inner, stdout=self.logf, stderr=self.logf,
                                    stdin=subprocess.DEVNULL)
        self.notify.settimeout(30)
        try:
            while True:
                msg = self.notify.recv(4096).decode(errors="replace")
                if "READY=1" in msg.split("\n"):
                    break
        except socket.timeout:
            raise AssertionError("the agent sent no READY=1 within 30 s:\n" + self.log())
        self.pid = int(self.root.read("/run/ramkey-test.agent.pid"))
        st = os.stat(self.root.path("/proc/%d" % self.pid))
        log("agent ready (pid %d in the root, uid %d)" % (self.pid, st.st_uid))

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        """SIGTERM, as systemctl stop would; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.root.run(["kill", "-TERM", str(self.pid)])
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.logf.close()
        self.notify.close()
        return rc


class RootSshd:
    """Debian's sshd, in the root, with the root's /etc/ssh/sshd_config and
    /etc/pam.d/sshd, on a loopback port, for the test's account only."""

    def __init__(self, root, wd):
        self.root = root
        self.dir = "/tmp/sshd"
        self.client_key = wd.join("client_ed25519")
        subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", self.client_key],
                       check=True)
        root.run(["mkdir", "-p", self.dir], check=True)
        root.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", self.dir + "/host_key"],
                 check=True)
        root.run(["install", "-d", "-m", "0755", "/run/sshd"], check=True)
        self.port = None
        self.proc = None

    def authorize(self, user):
        home = self.root.run(["getent", "passwd", user], check=True).stdout.split(":")[5]
        with open(self.client_key + ".pub") as f:
            pub = f.read()
        self.root.run(["install", "-d", "-o", user, "-g", user, "-m", "0700", home + "/.ssh"],
                      check=True)
        self.root.write(home + "/.ssh/authorized_keys", pub, 0o600, owner=user + ":" + user)

    def start(self, user, attempts=5):
        for _ in range(attempts):
            self.port = free_port()
            argv = ["/bin/sh", "-c", 'echo $$ > /run/sshd-test.pid; exec "$@"', "sh",
                    "/usr/sbin/sshd", "-D", "-f", "/etc/ssh/sshd_config",
                    "-h", self.dir + "/host_key", "-E", self.dir + "/sshd.log"]
            for opt in ("ListenAddress=127.0.0.1", "Port=%d" % self.port, "UsePAM=yes",
                        "AllowUsers=" + user, "PermitRootLogin=no",
                        "PasswordAuthentication=no", "KbdInteractiveAuthentication=no",
                        "PidFile=none", "UseDNS=no", "PermitTTY=no",
                        "X11Forwarding=no", "LogLevel=VERBOSE"):
                argv += ["-o", opt]
            start = len(self.log())
            self.proc = self.root.popen(argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 15
            while "Server listening on" not in self.log()[start:]:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            else:
                return
            self.stop()
            if "Address already in use" not in self.log()[start:]:
                raise AssertionError("sshd did not start:\n" + self.log())
        raise AssertionError("sshd found no free port in %d attempts" % attempts)

    def log(self):
        try:
            return self.root.read(self.dir + "/sshd.log")
        except OSError:
            return ""

    def ssh_argv(self, user, command):
        name = user if isinstance(user, str) else user.pw_name
        return [SSH, "-F", "/dev/null", "-i", self.client_key, "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "-p", str(self.port),
                "%s@127.0.0.1" % name, command]

    def login(self, user, command, name=None):
        from sshd_fixture import SshLogin
        return SshLogin(self.ssh_argv(user, command), name or "ssh login")

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.root.run(["sh", "-c", 'kill -TERM "$(cat /run/sshd-test.pid)"'])
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- steps ----------------------------------------------------------------------
def build(wd):
    step("build the packages: scripts/package")
    out = wd.join("pkg")
    r = subprocess.run([os.path.join(SOURCE_DIR, "scripts", "package"), "--out", out],
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise AssertionError("scripts/package failed (%d):\n%s" % (r.returncode, r.stderr[-6000:]))
    debs = r.stdout.split()
    log("\n".join(debs))
    found = {}
    for p in PACKAGES:
        m = [d for d in debs if os.path.basename(d).startswith(p + "_")]
        check(len(m) == 1 and os.path.isfile(m[0]), "scripts/package printed no %s .deb" % p)
        found[p] = m[0]
    changes = [os.path.join(out, f) for f in os.listdir(out) if f.endswith(".changes")]
    check(len(changes) == 1, "expected one .changes in %s" % out)

    step("lintian (errors, warnings, info and pedantic tags fail)")
    r = subprocess.run(["lintian", "--pedantic", "--display-info",
                        "--fail-on", "error,warning,info,pedantic", changes[0]],
                       capture_output=True, text=True, timeout=300)
    log(indent(r.stdout) if r.stdout.strip() else "   (no tags)")
    check(r.returncode == 0, "lintian failed (%d):\n%s%s" % (r.returncode, r.stdout, r.stderr))
    debian = os.path.join(SOURCE_DIR, "debian")
    for name in sorted(os.listdir(debian)):
        if name.endswith(".lintian-overrides"):
            with open(os.path.join(debian, name)) as f:
                tags = [ln for ln in f.read().splitlines() if ln and not ln.startswith("#")]
            log("overridden (debian/%s, reasons there):\n%s" % (name, indent("\n".join(tags))))
    return found


def install(root, debs):
    step("dpkg -i %s in the throwaway root" % " ".join(PACKAGES))
    root.run(["mkdir", "-p", "/tmp/debs"], check=True)
    inside = []
    for p in PACKAGES:
        dst = "/tmp/debs/" + os.path.basename(debs[p])
        shutil.copy(debs[p], root.path(dst))
        inside.append(dst)
    r = root.run(["dpkg", "-i"] + inside, check=True)
    log(indent(r.stdout + r.stderr))

    pw = root.run(["getent", "passwd", "ramkey"]).stdout.strip().split(":")
    check(len(pw) == 7, "the ramkey account was not created")
    check(int(pw[2]) < 1000 and pw[6] == "/usr/sbin/nologin",
          "ramkey is not a system account with no shell: %s" % ":".join(pw))
    log("account: " + ":".join(pw))
    for path, mode, owner in (("/etc/ramkey", 0o755, 0), ("/var/lib/ramkey", 0o700, int(pw[2]))):
        st = os.lstat(root.path(path))
        check(st.st_mode & 0o7777 == mode and st.st_uid == owner,
              "%s: mode %o uid %d, want %o uid %d"
              % (path, st.st_mode & 0o7777, st.st_uid, mode, owner))
    conf = root.read("/etc/ramkey/agent.conf")
    live = [ln for ln in conf.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    check(not live, "the example agent.conf sets keys: %s" % live)
    wants = {"/etc/systemd/system/multi-user.target.wants/ramkey-agent.service": True,
             "/etc/systemd/system/sockets.target.wants/ramkey-agent.socket": True,
             "/etc/systemd/system/timers.target.wants/ramkey-sweep.timer": False}
    for p, want in wants.items():
        check(os.path.lexists(root.path(p)) == want,
              "%s %s" % (p, "missing: unit not enabled" if want else "exists: enabled"))
    log("ramkey-agent.service and .socket enabled, ramkey-sweep.timer not")
    files = {}
    for p in PACKAGES:
        files[p] = root.run(["dpkg", "-L", p], check=True).stdout.split("\n")
        shipped = [f for f in files[p] if f and not os.path.isdir(root.path(f))
                   and not f.startswith("/usr/share/doc/")]
        log("%s:\n%s" % (p, indent("\n".join(shipped))))
    return files


def session_modules(text):
    out = []
    for ln in text.splitlines():
        f = ln.split()
        if f and not f[0].startswith("#") and f[0] == "session" and len(f) >= 3:
            mod = f[2] if not f[1].startswith("[") else next(x for x in f[1:] if ".so" in x)
            out.append((mod, ln))
    return out


def pam_auth_update(root):
    step("pam-auth-update --enable ramkey")
    before = root.read("/etc/pam.d/common-session")
    check("pam_ramkey" not in before,
          "pam_ramkey is in common-session before it was enabled (Default: no)")
    r = root.run(["pam-auth-update", "--enable", "ramkey"], check=True)
    if (r.stdout + r.stderr).strip():
        log(indent(r.stdout + r.stderr))
    mods = session_modules(root.read("/etc/pam.d/common-session"))
    log("common-session, session lines:\n" + indent("\n".join(ln for _, ln in mods)))
    names = [m for m, _ in mods]
    check("pam_ramkey.so" in names, "pam_ramkey is not in common-session")
    check("pam_systemd.so" in names, "no pam_systemd in common-session (libpam-systemd?)")
    check(names.index("pam_systemd.so") < names.index("pam_ramkey.so"),
          "pam_ramkey comes before pam_systemd in common-session")
    nonint = root.read("/etc/pam.d/common-session-noninteractive")
    check("pam_ramkey" not in nonint,
          "pam_ramkey is in common-session-noninteractive (Session-Interactive-Only)")
    log("pam_ramkey after pam_systemd; not in common-session-noninteractive")


def units(root):
    step("the installed units: systemd-analyze verify and security --offline")
    names = ["/lib/systemd/system/" + u for u in ("ramkey-agent.service", "ramkey-agent.socket",
                                                  "ramkey-sweep.service", "ramkey-sweep.timer")]
    # --man=no: man would leave a formatted copy in /var/cache/man, which is
    # man-db's, not the package's (package.systemd_unit checks the page).
    r = root.run(["systemd-analyze", "verify", "--man=no"] + names)
    out = (r.stdout + r.stderr).strip()
    check(r.returncode == 0 and not out, "systemd-analyze verify: %d\n%s" % (r.returncode, out))
    log("verify: clean for %s" % ", ".join(os.path.basename(n) for n in names))
    r = root.run(["systemd-analyze", "security", "--offline=yes", UNIT])
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    check(m, "no exposure figure in:\n" + r.stdout + r.stderr)
    log("exposure of the installed ramkey-agent.service: %s (goal: under %.1f)"
        % (m.group(1), EXPOSURE_GOAL))
    check(float(m.group(1)) < EXPOSURE_GOAL, "exposure %s" % m.group(1))


NFT_PROBE = r'''
import os, pwd, socket, subprocess, sys
addr = "100.100.100.200"
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["ip", "addr", "add", addr + "/32", "dev", "lo"], check=True)
r = subprocess.run(["nft", "-f", "/usr/share/ramkey/ramkey-metadata.nft"],
                   capture_output=True, text=True)
if r.returncode:
    sys.exit("nft -f failed: " + r.stderr)
srv = socket.socket()
srv.bind((addr, 80))
srv.listen(16)
for user in sys.argv[1:]:
    # From 127.0.0.1: a reply from 100.100.100.200 to itself would meet the
    # rule again on the way back (on a real host it goes to the host's IP).
    code = ("import socket; s = socket.socket(); s.settimeout(3)\n"
            "s.bind(('127.0.0.1', 0))\n"
            "try:\n    s.connect(('%s', 80)); print('reached')\n"
            "except OSError as e:\n    print('refused (%%r)' %% e)\n" % addr)
    argv = [sys.executable, "-c", code]
    if user != "root":
        argv = ["setpriv", "--reuid", user, "--regid", str(pwd.getpwnam(user).pw_gid),
                "--clear-groups", "--"] + argv
    r = subprocess.run(argv, capture_output=True, text=True)
    print("%s %s" % (user, (r.stdout.strip() or "failed: " + r.stderr.strip()).replace("\n", " ")))
'''


def nftables(root):
    step("the nftables rule, in a private network namespace of the root")
    r = root.run(["unshare", "--net", "--", "/usr/bin/python3", "-c", NFT_PROBE,
                  "root", "ramkey", "nobody", USER])
    log(indent(r.stdout + r.stderr))
    check(r.returncode == 0, "the probe failed")
    got = dict(ln.split(" ", 1) for ln in r.stdout.splitlines())
    for user, want in (("root", "reached"), ("ramkey", "reached"), ("nobody", "refused"),
                       (USER, "refused")):
        check(got.get(user, "").startswith(want), "%s: %s, want %s"
              % (user, got.get(user), want))
    log("root and ramkey reach 100.100.100.200; nobody and %s do not" % USER)


def configure(root, emu):
    step("configure the agent: credentials and the emulator's endpoint")
    root.write("/etc/ramkey/emulator-ca.pem", open(emu.ca_file).read(), 0o644)
    root.write("/etc/ramkey/credentials",
               "[default]\ntype = access_key\naccess_key_id = %s\naccess_key_secret = %s\n"
               % (emu.admin_key_id, emu.admin_secret), 0o600, owner="ramkey:ramkey")
    with open(root.path("/etc/ramkey/agent.conf"), "a") as f:
        f.write("\n# tests/package: the RAM emulator\nendpoint = %s\n"
                "ca_file = /etc/ramkey/emulator-ca.pem\n" % emu.https_endpoint)
    log("credentials: /etc/ramkey/credentials (ramkey, 0600); endpoint %s" % emu.https_endpoint)


def login_and_remove(root, wd, emu, agent):
    step("a real ssh login through the root's /etc/pam.d/sshd")
    root.run(["useradd", "-m", "-s", "/bin/sh", USER], check=True)
    sshd = RootSshd(root, wd)
    sshd.authorize(USER)
    sshd.start(USER)
    held = None
    try:
        held = HeldLogin(sshd, types.SimpleNamespace(pw_name=USER), SECRET_PATH,
                         env_names=("XDG_RUNTIME_DIR",), name="login of " + USER)
        rep = held.first
        check(rep.exists, "no secret file in the login (XDG_RUNTIME_DIR=%s)\nsshd log:\n%s\n"
              "agent log:\n%s" % (rep.env.get("XDG_RUNTIME_DIR"), sshd.log(), agent.log()))
        check(rep.stat == "600 %s regular file" % USER, "secret file: %s" % rep.stat)
        doc = json.loads(rep.data)
        key_id = doc["AccessKeyId"]
        check(key_works(emu, key_id, doc["AccessKeySecret"]), "the key does not work")
        check(emu.key(key_id)["Status"] == "Active", "the key is not Active")
        log("login: secret file %s, 0600, the user's; key %s...%s works at the emulator"
            % ("under XDG_RUNTIME_DIR" if rep.env.get("XDG_RUNTIME_DIR", "<unset>") != "<unset>"
               else "~/.alibabacloud/ramkey.json", key_id[:4], key_id[-4:]))
        r = root.run(["ramkey-agent-client", "status"])
        log("ramkey-agent-client status (root, in the root) exited %d:\n%s"
            % (r.returncode, indent(r.stdout + r.stderr)))
        check(r.returncode == 0 and USER in r.stdout, "status does not show the lease")

        step("dpkg -r ramkey-agent with the login live")
        t = time.monotonic()
        r = root.run(["dpkg", "-r", "ramkey-agent"], timeout=180)
        log(indent(r.stdout + r.stderr))
        check(r.returncode == 0, "dpkg -r ramkey-agent failed")
        check("revoke --all" in r.stdout + r.stderr,
              "the removal did not say it revokes the live leases")
        gone = emu.wait_until(lambda: emu.key(key_id) is None, timeout=10)
        check(gone, "the key is still at the emulator")
        deleted = [k["AccessKeyId"] for k in emu.state()["deleted_keys"]]
        check(key_id in deleted, "the key is gone but not deleted")
        log("the emulator deleted key %s...%s during the removal (%.1f s)"
            % (key_id[:4], key_id[-4:], time.monotonic() - t))
        st = root.run(["dpkg-query", "-W", "-f", "${Status}", "ramkey-agent"]).stdout
        check(st == "deinstall ok config-files", "ramkey-agent after removal: %s" % st)
        # systemd would stop the unit here (the prerm asks deb-systemd-invoke).
        rc = agent.stop()
        log("agent stopped (as systemd would after the prerm): exit %s" % rc)
        held.end()
        held = None
    finally:
        if held is not None:
            held.kill()
        sshd.stop()
    root.run(["userdel", "-r", "-f", USER])


FIND = ["find", "/etc", "/var", "/usr", "/lib", "-name", "*ramkey*"]


def purge(root, files, baseline):
    step("dpkg --purge %s" % " ".join(PACKAGES))
    r = root.run(["dpkg", "--purge"] + list(PACKAGES), check=True)
    log(indent(r.stdout + r.stderr))
    for p in PACKAGES:
        st = root.run(["dpkg-query", "-W", "-f", "${Status}", p]).stdout
        check("installed" not in st and "config-files" not in st, "%s: %s" % (p, st))
        check(root.run(["dpkg", "-L", p]).returncode != 0, "dpkg -L %s still lists files" % p)
    left = []
    for p, paths in files.items():
        for f in paths:
            if f and ("ramkey" in f or not os.path.isdir(root.path(f))) and \
                    os.path.lexists(root.path(f)):
                left.append(f)
    check(not left, "files of the packages left after purge: %s" % left)
    found = set(root.run(FIND).stdout.split()) - baseline
    check(not found, "left after purge:\n" + "\n".join(sorted(found)))
    uid = root.run(["id", "-u", "ramkey"]).stdout.strip()
    r = root.run(["find", "/etc", "/var", "/usr", "/lib", "/run", "-xdev", "-uid", uid])
    check(not r.stdout.strip(), "files of the ramkey account left after purge:\n" + r.stdout)
    check("pam_ramkey" not in root.read("/etc/pam.d/common-session"),
          "pam_ramkey still in common-session after purge")
    log('nothing left: dpkg -L, find -name "*ramkey*" in /etc /var /usr /lib, find -uid %s; '
        "common-session without pam_ramkey; the ramkey account stays, as Debian keeps "
        "system accounts" % uid)


def main():
    require_root()
    missing = [t for t in TOOLS if shutil.which(t) is None]
    check(not missing, "missing: %s (scripts/deps installs them)" % " ".join(missing))
    with open("/proc/1/comm") as f:
        init = f.read().strip()
    if init != "systemd":
        log("systemd is not PID 1 here (PID 1 is %s): maintainer scripts start and stop "
            "no unit, so the test runs the installed agent from its unit's settings "
            "(ExecStartPre as root, then User=, environment, umask, limits, "
            "NOTIFY_SOCKET) and stops it where systemd would; the unit's sandbox is "
            "systemd's to apply and is checked offline by package.systemd_unit." % init)
    before = host_snapshot()
    wd = Workdir("ramkey-pkg-")
    emu = root = agent = None
    ok = False
    try:
        debs = build(wd)
        emu = Emulator(https=True, auto_users=True)
        root = PkgRoot()
        # Whatever the machine itself has (another test's PAM service file,
        # say) is no concern of the purge.
        baseline = set(root.run(FIND).stdout.split())
        files = install(root, debs)
        pam_auth_update(root)
        units(root)
        root.run(["useradd", "-M", "-s", "/bin/sh", USER], check=True)
        nftables(root)
        root.run(["userdel", "-f", USER], check=True)
        configure(root, emu)
        step("start the installed agent as its unit says")
        agent = UnitAgent(root, wd)
        agent.start()
        login_and_remove(root, wd, emu, agent)
        purge(root, files, baseline)
        ok = True
    finally:
        if agent is not None:
            if not ok:
                log("--- agent log ---\n" + agent.log())
            agent.stop()
        if root is not None:
            root.stop()
        if emu is not None:
            emu.stop()
        wd.cleanup()
    after = host_snapshot()
    changed = [k for k in before if before[k] != after.get(k)]
    check(not changed, "the machine changed: %s" % changed)
    step("the machine is unchanged (/etc/pam.d, no ramkey account or file); passed")


if __name__ == "__main__":
    main()
