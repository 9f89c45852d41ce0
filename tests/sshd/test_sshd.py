#!/usr/bin/env python3
"""End-to-end: a real OpenSSH sshd (UsePAM yes) with pam_ramkey.so in its
session stack, a real ramkey-agent, the RAM emulator over HTTPS, real
accounts logging in with `ssh`.

Usage: test_sshd.py CASE      (ctest: sshd.CASE; root only, else exit 77)

Cases:
  login              one login: inside it the secret_file is there (0600,
                     the user's), its key signs a request the emulator
                     accepts; after logout the key is deleted and the file
                     gone within 5 s.
  login_runtime_dir  the same with XDG_RUNTIME_DIR set by pam_env (the
                     default path %r/ramkey/credentials.json) and
                     export_env: the session sees RAMKEY_SECRET_FILE.
  two_logins         two logins of one user share one key; ending the first
                     leaves the key working and the file in place; ending
                     the second revokes and removes.
  killed_monitor     SIGKILL to the per-connection privileged sshd (the
                     process that ran pam_open_session, so close_session
                     never runs): the agent's process watch must revoke the
                     key and remove the file within 5 s; the agent and sshd
                     keep working.
  killed_user_child  SIGKILL to the user's unprivileged sshd child instead:
                     the monitor runs close_session; key and file go.

How sshd is isolated from the host: see sshd_fixture.py.
"""

import json
import os
import pwd
import re
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from emulator import Emulator                      # noqa: E402
from ramkey_fixture import (PAM_MODULE, Agent, Users, Workdir,  # noqa: E402
                            key_works, wait_for)
from sshd_fixture import (HeldLogin, Sshd, alive, become_subreaper,  # noqa: E402
                          cmdline, have_sshd, reap, sanitizer_env)

HOST_PAM = "/etc/pam.d/sshd"
REVOKE_WAIT = 5.0       # acceptance: key deleted and file gone within this
HOME_FILE = "$HOME/.alibabacloud/ramkey.json"


def log(msg):
    print(msg, flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def expect_eq(got, want, what):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, got, want))


def home_path(pw):
    return os.path.join(pw.pw_dir, ".alibabacloud", "ramkey.json")


class Case:
    """Emulator, agent, accounts and one sshd for a case; torn down (and
    checked: nothing left running) by close()."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.wd = self.emu = self.users = self.agent = None
        self.sshds = []
        with open(HOST_PAM, "rb") as f:
            self.host_pam = f.read()

    def start(self):
        self.wd = Workdir("ramkey-sshd-")
        self.emu = Emulator(https=True, auto_users=True)
        self.users = Users(self.prefix)
        self.agent = Agent(self.wd, self.emu, min_uid=1000, mint_rate="100/h")
        self.agent.start()

    def sshd(self, name="main", module_args="", before=(), account_lines=None):
        lines = list(before) + [
            "session required %s socket=%s timeout=5 %s"
            % (PAM_MODULE, self.agent.socket, module_args),
            "session optional pam_permit.so"]
        s = Sshd(self.wd, name, [ln.rstrip() for ln in lines], account_lines=account_lines,
                 env=sanitizer_env(PAM_MODULE))
        self.sshds.append(s)
        return s

    def user(self, name, sshd):
        pw = self.users.add(name)
        sshd.authorize(pw)
        return pw

    # -- what the emulator and the agent say ------------------------------
    def key_state(self, key_id):
        k = self.emu.key(key_id)
        return None if k is None else k["Status"]

    def wait_key_deleted(self, key_id, since, what):
        """Wait until the emulator no longer has the key; returns the delay
        from `since` (a monotonic time). Fails past REVOKE_WAIT."""
        deadline = since + REVOKE_WAIT
        while True:
            state = self.emu.state()
            if not any(k["AccessKeyId"] == key_id
                       for u in state["users"].values() for k in u["keys"]):
                check(key_id in [d["AccessKeyId"] for d in state["deleted_keys"]],
                      "%s: key %s is gone but not among the emulator's deleted keys"
                      % (what, key_id))
                return time.monotonic() - since
            if time.monotonic() >= deadline:
                raise AssertionError("%s: key %s still at the emulator (%s) %.1f s later"
                                     % (what, key_id, self.key_state(key_id), REVOKE_WAIT))
            time.sleep(0.05)

    def wait_gone(self, path, since, what):
        deadline = since + REVOKE_WAIT
        while True:
            if not os.path.lexists(path):
                return time.monotonic() - since
            if time.monotonic() >= deadline:
                raise AssertionError("%s: %s still exists %.1f s later"
                                     % (what, path, REVOKE_WAIT))
            time.sleep(0.05)

    def audit(self, event, user):
        """The agent's audit lines for an event and user, parsed."""
        out = []
        for line in self.agent.log().splitlines():
            m = re.search(r"audit: event=(\S+) user=(\S+) (.*)", line)
            if m and m.group(1) == event and m.group(2) == user:
                out.append(dict(re.findall(r'(\w+)=("[^"]*"|\S+)', m.group(3))))
        return out

    def agent_connections(self):
        """Connections open on the agent's socket now (`ss`: the agent's
        side of each, with the process holding the other end)."""
        out = subprocess.run(["ss", "-x", "-a", "-p", "-n"], capture_output=True,
                             text=True).stdout.splitlines()
        rows = [ln.split() for ln in out[1:]]
        by_inode = {r[5]: r for r in rows if len(r) > 7}
        conns = []
        for r in rows:
            if len(r) > 7 and r[4] == self.agent.socket and r[1] == "ESTAB":
                peer = by_inode.get(r[7])
                conns.append(" ".join(peer[8:]) if peer else "peer inode %s" % r[7])
        return conns

    def leases(self, user):
        return self.agent.status(user=user)["leases"]

    def close(self, ok):
        """Stop everything; with ok, also check that nothing was left
        (session processes, the namespace, accounts) and that the host's
        /etc/pam.d/sshd is untouched."""
        errors = []
        for s in self.sshds:
            try:
                s.stop(check=ok)
            except AssertionError as e:
                errors.append(str(e))
        if not ok:
            for s in self.sshds:
                log("--- sshd %s log ---\n%s" % (s.name, s.log()))
            if self.agent is not None:
                log("--- agent log ---\n%s" % self.agent.log())
        if self.agent is not None:
            rc = self.agent.stop()
            if ok and rc != 0:
                errors.append("ramkey-agent exited with %s on SIGTERM" % rc)
        names = list(self.users.users) if self.users else []
        if self.users is not None:
            self.users.cleanup()
        if self.emu is not None:
            self.emu.stop()
        if self.wd is not None:
            self.wd.cleanup()
        with open(HOST_PAM, "rb") as f:
            if f.read() != self.host_pam:
                errors.append("the host's %s changed during the test" % HOST_PAM)
        for n in names:
            try:
                pwd.getpwnam(n)
                errors.append("account %s still exists" % n)
            except KeyError:
                pass
        reap()
        if ok and errors:
            raise AssertionError("; ".join(errors))


def check_report_file(case, rep, pw, where):
    """The secret_file as seen from inside a login: a regular file, 0600,
    the user's, holding a key the emulator accepts. Returns (id, secret)."""
    check(rep.exists, "%s: no secret_file inside the login" % where)
    expect_eq(rep.stat, "600 %s regular file" % pw.pw_name, "%s: stat of the secret_file" % where)
    check(rep.dir is not None and rep.dir.split()[1:] == [pw.pw_name],
          "%s: the file's directory is not the user's: %r" % (where, rep.dir))
    doc = json.loads(rep.data.decode())
    expect_eq(sorted(doc), ["AccessKeyId", "AccessKeySecret", "CreateDate", "Status"],
              "%s: secret_file fields" % where)
    key_id, secret = doc["AccessKeyId"], doc["AccessKeySecret"]
    expect_eq(doc["Status"], "Active", "%s: Status in the file" % where)
    check(key_works(case.emu, key_id, secret),
          "%s: the key in the secret_file does not sign a request the emulator accepts" % where)
    k = case.emu.key(key_id)
    check(k is not None and k["UserName"] == pw.pw_name and k["Status"] == "Active",
          "%s: the emulator's view of %s: %r" % (where, key_id, k))
    return key_id, secret


def logout_and_check_revoked(case, login, pw, key_id, path, where):
    rc = login.end()
    t0 = login.login.ended_at
    expect_eq(rc, 0, "%s: ssh exit status" % where)
    dk = case.wait_key_deleted(key_id, t0, where)
    df = case.wait_gone(path, t0, where)
    log("%s: logout -> key deleted at RAM after %.2f s, file gone after %.2f s"
        % (where, dk, df))


# ---------------------------------------------------------------------------
def case_login(case):
    sshd = case.sshd()
    alice = case.user("alice", sshd)
    sshd.start()
    log("sshd pid %d on 127.0.0.1:%d (mount namespace %d, not the host's %d)"
        % (sshd.pid, sshd.port, sshd.ns[1], os.stat("/proc/self/ns/mnt").st_ino))
    creates0 = case.emu.counters()["calls"].get("CreateAccessKey", 0)

    s = HeldLogin(sshd, alice, HOME_FILE)
    rep = s.first
    log("inside the login: stat %s; dir %s" % (rep.stat, rep.dir))
    key_id, secret = check_report_file(case, rep, alice, "login")
    expect_eq(rep.dir.split()[0], "700", "mode of ~/.alibabacloud (created by the module)")
    # The same file, seen from outside as root.
    st = os.lstat(home_path(alice))
    check(stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and
          st.st_uid == alice.pw_uid and st.st_gid == alice.pw_gid,
          "secret_file from outside: mode %o uid %d gid %d"
          % (st.st_mode, st.st_uid, st.st_gid))
    with open(home_path(alice), "rb") as f:
        expect_eq(f.read(), rep.data, "file content outside vs inside the login")
    expect_eq(case.emu.counters()["calls"].get("CreateAccessKey", 0) - creates0, 1,
              "CreateAccessKey calls for one login")
    leases = case.leases(alice.pw_name)
    expect_eq([(l["status"], l["sessions"]) for l in leases], [("Active", 1)],
              "agent status during the login")
    attach = case.audit("attach", alice.pw_name)
    expect_eq(len(attach), 1, "attach audit lines")
    expect_eq(attach[0].get("rhost"), "127.0.0.1", "rhost the module sent")
    monitor = int(attach[0]["peer_pid"])
    check(monitor in sshd.monitors(), "peer_pid %d is not a per-connection sshd (%s)"
          % (monitor, [(p, cmdline(p)) for p in sshd.monitors()]))
    log("session opened by pid %d (%s), peer_uid %s"
        % (monitor, cmdline(monitor), attach[0]["peer_uid"]))
    # The module closed its connection: neither the monitor nor the user's
    # sshd child (which inherits the monitor's fds) holds one to the agent.
    expect_eq(case.agent_connections(), [], "connections to the agent during the login")

    logout_and_check_revoked(case, s, alice, key_id, home_path(alice), "logout")
    check(not key_works(case.emu, key_id, secret), "the key still signs after logout")
    detach = case.audit("detach", alice.pw_name)
    expect_eq([d.get("reason") for d in detach], ['"closed"'],
              "detach audit lines (reason)")
    expect_eq(case.leases(alice.pw_name), [], "agent leases after logout")
    check(not sshd.wait_sessions_gone(), "session processes left after logout")
    check("pam_open_session" not in sshd.log(), "sshd logged a PAM session error")


def case_login_runtime_dir(case):
    envconf = case.wd.join("pam_env.conf")
    with open(envconf, "w") as f:
        f.write("XDG_RUNTIME_DIR DEFAULT=@{HOME}/.xdg-runtime\n")
    empty = case.wd.join("environment")
    open(empty, "w").close()
    sshd = case.sshd(module_args="export_env", before=[
        "session required pam_env.so conffile=%s envfile=%s" % (envconf, empty)])
    alice = case.user("alice", sshd)
    rdir = os.path.join(alice.pw_dir, ".xdg-runtime")
    os.mkdir(rdir, 0o700)
    os.chown(rdir, alice.pw_uid, alice.pw_gid)
    path = os.path.join(rdir, "ramkey", "credentials.json")
    sshd.start()

    s = HeldLogin(sshd, alice, "$XDG_RUNTIME_DIR/ramkey/credentials.json",
                  env_names=("XDG_RUNTIME_DIR", "RAMKEY_SECRET_FILE",
                             "ALIBABA_CLOUD_CREDENTIALS_FILE"))
    rep = s.first
    log("inside the login: %s; stat %s; dir %s" % (rep.env, rep.stat, rep.dir))
    expect_eq(rep.env.get("XDG_RUNTIME_DIR"), rdir, "XDG_RUNTIME_DIR in the session")
    expect_eq(rep.env.get("RAMKEY_SECRET_FILE"), path, "RAMKEY_SECRET_FILE in the session")
    expect_eq(rep.env.get("ALIBABA_CLOUD_CREDENTIALS_FILE"), "<unset>",
              "ALIBABA_CLOUD_CREDENTIALS_FILE (format json)")
    key_id, _ = check_report_file(case, rep, alice, "login")
    check(not os.path.lexists(home_path(alice)), "a file was also written in ~/.alibabacloud")
    logout_and_check_revoked(case, s, alice, key_id, path, "logout")
    check(not sshd.wait_sessions_gone(), "session processes left after logout")


def case_two_logins(case):
    sshd = case.sshd()
    bob = case.user("bob", sshd)
    sshd.start()
    path = home_path(bob)

    a = HeldLogin(sshd, bob, HOME_FILE, name="login A")
    key_a, secret = check_report_file(case, a.first, bob, "login A")
    b = HeldLogin(sshd, bob, HOME_FILE, name="login B")
    key_b, _ = check_report_file(case, b.first, bob, "login B")
    expect_eq(key_b, key_a, "key of the second login (one lease per user)")
    expect_eq(case.emu.counters()["calls"].get("CreateAccessKey", 0), 1,
              "CreateAccessKey calls for two logins")
    expect_eq([(l["status"], l["sessions"]) for l in case.leases(bob.pw_name)],
              [("Active", 2)], "agent status with two logins")
    peers = [int(x["peer_pid"]) for x in case.audit("attach", bob.pw_name)]
    expect_eq(len(set(peers)), 2, "distinct sshd monitors of the two logins")

    rc = a.end()
    expect_eq(rc, 0, "ssh exit status of login A")
    # Give a wrongly-triggered revocation time to show.
    wait_for(lambda: [(l["sessions"]) for l in case.leases(bob.pw_name)] == [1],
             timeout=5, what="the agent to count one session")
    time.sleep(1.0)
    rep = b.show()
    log("after A ended, inside B: stat %s" % rep.stat)
    key_still, _ = check_report_file(case, rep, bob, "login B after A ended")
    expect_eq(key_still, key_a, "key in the file after A ended")
    st = os.lstat(path)
    check(stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == bob.pw_uid,
          "file from outside after A ended")
    check(key_works(case.emu, key_a, secret), "the key stopped working when A ended")
    expect_eq(case.key_state(key_a), "Active", "key status at RAM after A ended")

    logout_and_check_revoked(case, b, bob, key_a, path, "logout of B (the last)")
    check(not key_works(case.emu, key_a, secret), "the key still signs after the last logout")
    reasons = [d.get("reason") for d in case.audit("detach", bob.pw_name)]
    log("agent detach reasons: %s" % reasons)
    expect_eq(reasons, ['"closed"', '"closed"'], "detach audit lines (reasons)")
    check(not sshd.wait_sessions_gone(), "session processes left after logout")


def case_killed_monitor(case):
    sshd = case.sshd()
    carol = case.user("carol", sshd)
    sshd.start()
    path = home_path(carol)

    s = HeldLogin(sshd, carol, HOME_FILE, name="login")
    key_id, secret = check_report_file(case, s.first, carol, "login")
    attach = case.audit("attach", carol.pw_name)
    expect_eq(len(attach), 1, "attach audit lines")
    monitor = int(attach[0]["peer_pid"])
    mons = sshd.monitors()
    expect_eq(mons, [monitor], "per-connection sshd processes (children of the listener) "
              "vs the audit line's peer_pid")
    mon_cmd = cmdline(monitor)
    check("[priv]" in mon_cmd and carol.pw_name in mon_cmd,
          "the session's process is not the privileged monitor: %r" % mon_cmd)
    user_procs = sshd.session_pids()
    log("processes of the connection before the kill: %s"
        % [(p, cmdline(p)) for p in user_procs])

    os.kill(monitor, signal.SIGKILL)
    t0 = time.monotonic()
    log("SIGKILL -> pid %d (%s)" % (monitor, mon_cmd))

    # The agent's dead-session detection: key revoked within 5 s.
    dk = case.wait_key_deleted(key_id, t0, "after SIGKILL of the monitor")
    check(not key_works(case.emu, key_id, secret), "the key still signs after the kill")
    log("key deleted at RAM %.2f s after the kill" % dk)
    detach = case.audit("detach", carol.pw_name)
    expect_eq(len(detach), 1, "detach audit lines")
    log("agent detach: reason=%s peer_pid=%s" % (detach[0].get("reason"),
                                                 detach[0].get("peer_pid")))
    expect_eq(detach[0].get("peer_pid"), str(monitor), "detach peer_pid")
    expect_eq(detach[0].get("reason"), '"the session\'s process exited"',
              "detach reason (the agent's process watch)")

    # close_session never runs, so the agent (running as root) removes the
    # secret file of the user's last session itself, as the user.
    deadline = t0 + 5.0
    while os.path.lexists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    check(not os.path.lexists(path),
          "%s still exists 5 s after the session's process died" % path)
    log("secret_file removed by the agent %.2f s after the kill"
        % (time.monotonic() - t0))

    # What happens to the connection: the unprivileged sshd child only
    # talks to the monitor when it needs it, so the login may live on.
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    if s.login.poll() is None:
        rep = s.show()
        log("OBSERVED: 1 s after the kill the login is still open and usable; "
            "inside it the secret_file is %s, holding the revoked key: %s"
            % (rep.stat, key_id in rep.data.decode(errors="replace")))
        t1 = time.monotonic()
        rc = s.end()
        log("OBSERVED: logging out of it: ssh exit status %d after %.2f s; stderr: %s"
            % (rc, s.login.ended_at - t1, " | ".join(s.login.stderr) or "-"))
    else:
        log("OBSERVED: the login ended with the monitor: ssh exit status %d after "
            "%.2f s; stderr: %s" % (s.login.proc.returncode, s.login.ended_at - t0,
                                    " | ".join(s.login.stderr) or "-"))
    left = sshd.wait_sessions_gone(timeout=5)
    check(not left, "processes of the killed connection still running: %s" % left)
    detach = case.audit("detach", carol.pw_name)
    expect_eq(len(detach), 1, "detach audit lines after the logout")

    check(not os.path.lexists(path), "%s came back after the logout" % path)

    # Nothing crashed: the agent answers, sshd serves a new login.
    check(case.agent.proc.poll() is None, "ramkey-agent died")
    r = case.agent.client("status", "--json", "--user", carol.pw_name)
    expect_eq(r.returncode, 0, "ramkey-agent-client status exit (stderr: %s)" % r.stderr)
    doc = json.loads(r.stdout)
    expect_eq([l for l in doc["leases"] if l["status"] == "Active"], [],
              "live leases of the user after the kill")
    expect_eq(doc["pending_revocations"], 0, "pending revocations after the kill")
    check(alive(sshd.pid), "the sshd listener died")

    s2 = HeldLogin(sshd, carol, HOME_FILE, name="new login")
    key2, _ = check_report_file(case, s2.first, carol, "new login")
    check(key2 != key_id, "the new login got the revoked key back")
    log("new login after the kill: new key, file written again")
    logout_and_check_revoked(case, s2, carol, key2, path, "logout of the new login")
    check(not sshd.wait_sessions_gone(), "session processes left after logout")


def case_killed_user_child(case):
    """The other half of a connection: SIGKILL to the user's unprivileged
    sshd child. The monitor sees it go and runs close_session (OpenSSH
    auth-pam.c: sshpam_cleanup), so this is an ordinary close."""
    sshd = case.sshd()
    dave = case.user("dave", sshd)
    sshd.start()
    path = home_path(dave)

    s = HeldLogin(sshd, dave, HOME_FILE, name="login")
    key_id, secret = check_report_file(case, s.first, dave, "login")
    monitor = int(case.audit("attach", dave.pw_name)[0]["peer_pid"])
    kids = [p for p in sshd.session_pids() if p != monitor and
            "%s@" % dave.pw_name in cmdline(p)]
    expect_eq(len(kids), 1, "the user's sshd child (%s)" % [(p, cmdline(p)) for p in
                                                         sshd.session_pids()])
    child = kids[0]
    child_cmd = cmdline(child)
    expect_eq(os.stat("/proc/%d" % child).st_uid, dave.pw_uid, "uid of the sshd child")
    os.kill(child, signal.SIGKILL)
    t0 = time.monotonic()
    log("SIGKILL -> pid %d (%s)" % (child, child_cmd))
    rc = s.login.wait(15)
    log("ssh client exit status %d" % rc)
    dk = case.wait_key_deleted(key_id, t0, "after SIGKILL of the user's sshd child")
    df = case.wait_gone(path, t0, "after SIGKILL of the user's sshd child")
    check(not key_works(case.emu, key_id, secret), "the key still signs after the kill")
    log("key deleted at RAM after %.2f s, file gone after %.2f s" % (dk, df))
    reasons = [d.get("reason") for d in case.audit("detach", dave.pw_name)]
    expect_eq(reasons, ['"closed"'], "detach (close_session ran in the monitor)")
    check(not sshd.wait_sessions_gone(), "session processes left after the kill")


CASES = {
    "login": ("sl", case_login),
    "login_runtime_dir": ("sr", case_login_runtime_dir),
    "two_logins": ("s2", case_two_logins),
    "killed_monitor": ("sk", case_killed_monitor),
    "killed_user_child": ("sc", case_killed_user_child),
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print("usage: test_sshd.py {%s}" % "|".join(CASES), file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("SKIP: a real sshd with UsePAM needs root")
        return 77
    if not have_sshd():
        raise AssertionError("openssh-server/openssh-client are not installed "
                             "(/usr/sbin/sshd, ssh, ssh-keygen)")
    check(os.path.exists(PAM_MODULE), "no module at %s (build first)" % PAM_MODULE)
    become_subreaper()
    prefix, fn = CASES[sys.argv[1]]
    t = time.monotonic()
    case = Case(prefix)
    ok = False
    try:
        case.start()
        fn(case)
        ok = True
    finally:
        case.close(ok)
    log("PASS sshd.%s (%.1f s)" % (sys.argv[1], time.monotonic() - t))
    return 0


if __name__ == "__main__":
    sys.exit(main())
