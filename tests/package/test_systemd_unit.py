#!/usr/bin/env python3
"""The systemd units, offline (ctest: package.systemd_unit).

The units this build generates (contrib/systemd/*.in with the install paths
and RAMKEY_USER) and the shipped ones are laid out in a scratch root next to
a copy of the machine's own unit directory (for the targets they name), the
build's agent at the path ExecStart= names and the man page Documentation=
names, and then:
  - systemd-analyze verify --root is clean (no output, exit 0) for
    ramkey-agent.service, ramkey-agent.socket, ramkey-sweep.service and
    ramkey-sweep.timer, and for ramkey-agent.service with the run-as-root
    drop-in;
  - systemd-analyze security --offline=yes rates ramkey-agent.service (and
    ramkey-sweep.service) under 2.0; the figure of the root drop-in is
    printed, not judged;
  - the settings that break peer credentials and /proc checks are not
    used (PrivateUsers, ProtectProc=invisible/noaccess, ProcSubset=pid), in
    the unit or the drop-in;
  - ExecStartPre=+ runs ramkey-agent --check-config as root before the
    agent, which runs as RAMKEY_USER; the root drop-in replaces it with
    the check of the files as root (--check-as root).
systemd is not PID 1 here (the test says so when it is not): nothing is
started; package.debian runs the installed agent.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

SOURCE_DIR = os.environ.get("RAMKEY_SOURCE_DIR",
                            os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD_DIR = os.environ.get("RAMKEY_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
GOAL = 2.0
FORBIDDEN = {
    # setting: values that are fine
    "PrivateUsers": ("no", "false", "0", "off"),
    "ProtectProc": ("default",),
    "ProcSubset": ("all",),
}
HOST_UNITS = "/lib/systemd/system"


def log(msg=""):
    print(msg, flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def cache_value(name):
    with open(os.path.join(BUILD_DIR, "CMakeCache.txt")) as f:
        for ln in f:
            if ln.startswith(name + ":"):
                return ln.split("=", 1)[1].strip()
    raise AssertionError("%s not in CMakeCache.txt" % name)


def settings(text):
    out = []
    for ln in text.splitlines():
        ln = ln.strip()
        if ln and ln[0] not in "#;[" and "=" in ln:
            k, v = ln.split("=", 1)
            out.append((k.strip(), v.strip()))
    return out


def one(sets, key):
    vals = [v for k, v in sets if k == key]
    check(vals, "the unit sets no %s=" % key)
    return vals[-1]


def analyze(root, *args):
    env = dict(os.environ, MANPATH=os.path.join(root, "man"), SYSTEMD_LOG_COLOR="0",
               SYSTEMD_COLORS="0", SYSTEMD_PAGER="")
    return subprocess.run(["systemd-analyze"] + list(args), capture_output=True, text=True,
                          env=env, timeout=60)


def verify(root, units, what):
    r = analyze(root, "verify", "--root=" + root, *units)
    out = (r.stdout + r.stderr).strip()
    check(r.returncode == 0 and not out,
          "systemd-analyze verify (%s) exited %d:\n%s" % (what, r.returncode, out))
    log("verify (%s): clean for %s" % (what, ", ".join(units)))


def exposure(root, unit):
    r = analyze(root, "security", "--offline=yes", "--root=" + root, unit)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    check(m, "no exposure figure for %s:\n%s%s" % (unit, r.stdout, r.stderr))
    exposed = [re.sub(r"\s{2,}", "  ", ln.strip()) for ln in r.stdout.splitlines()
               if ln.startswith("\u2717")]
    return float(m.group(1)), exposed


def main():
    if shutil.which("systemd-analyze") is None:
        raise AssertionError("systemd-analyze is missing (package systemd; scripts/deps)")
    with open("/proc/1/comm") as f:
        init = f.read().strip()
    if init != "systemd":
        log("systemd is not PID 1 here (PID 1 is %s): the units are checked offline "
            "(systemd-analyze verify --root, security --offline=yes), not started." % init)
    user = cache_value("RAMKEY_USER")
    gen = os.path.join(BUILD_DIR, "contrib", "systemd")
    src = os.path.join(SOURCE_DIR, "contrib", "systemd")
    files = {
        "ramkey-agent.service": os.path.join(gen, "ramkey-agent.service"),
        "ramkey-sweep.service": os.path.join(gen, "ramkey-sweep.service"),
        "ramkey-agent.socket": os.path.join(src, "ramkey-agent.socket"),
        "ramkey-sweep.timer": os.path.join(src, "ramkey-sweep.timer"),
    }
    dropin = os.path.join(gen, "run-as-root.conf")
    texts = {}
    for name, path in list(files.items()) + [("run-as-root.conf", dropin)]:
        with open(path) as f:
            texts[name] = f.read()

    # What the agent's unit must and must not say.
    svc = settings(texts["ramkey-agent.service"])
    for name in ("ramkey-agent.service", "ramkey-sweep.service", "run-as-root.conf"):
        for k, v in settings(texts[name]):
            if k in FORBIDDEN:
                check(v.lower() in FORBIDDEN[k],
                      "%s sets %s=%s: it breaks peer credentials or /proc checks"
                      % (name, k, v))
    agent = one(svc, "ExecStart").split()[0]
    check(os.path.basename(agent) == "ramkey-agent" and os.path.isabs(agent),
          "ExecStart= is not the installed ramkey-agent: %s" % agent)
    pre = [v for k, v in svc if k == "ExecStartPre"]
    check("+%s --check-config" % agent in pre,
          "no ExecStartPre=+%s --check-config (as root, before the agent): %s" % (agent, pre))
    check(one(svc, "User") == user and one(svc, "Group") == user,
          "the agent does not run as RAMKEY_USER (%s)" % user)
    log("ramkey-agent.service: ExecStartPre=+%s --check-config (root), then %s as %s; "
        "no PrivateUsers, ProtectProc or ProcSubset" % (agent, agent, user))
    # The root drop-in checks the files as root, the account it runs as.
    pre = [v for k, v in settings(texts["run-as-root.conf"]) if k == "ExecStartPre"]
    check(pre == ["", "+%s --check-config --check-as root" % agent],
          "run-as-root.conf does not replace the check with one as root: %s" % pre)
    log("run-as-root.conf: ExecStartPre=+%s --check-config --check-as root" % agent)

    root = tempfile.mkdtemp(prefix="ramkey-units-")
    try:
        units = os.path.join(root, "lib", "systemd", "system")
        shutil.copytree(HOST_UNITS, units, symlinks=True)
        for name, path in files.items():
            shutil.copy(path, os.path.join(units, name))
        # Every executable a unit names, at its path inside the root.
        for text in texts.values():
            for k, v in settings(text):
                if k.startswith("Exec") and v:
                    exe = v.lstrip("+-@!:").split()[0]
                    dst = os.path.join(root, exe.lstrip("/"))
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    srcbin = (os.path.join(BUILD_DIR, "agent", "ramkey-agent")
                              if os.path.basename(exe) == "ramkey-agent" else exe)
                    shutil.copy(srcbin, dst)
        os.makedirs(os.path.join(root, "man", "man8"))
        shutil.copy(os.path.join(SOURCE_DIR, "man", "ramkey-agent.8"),
                    os.path.join(root, "man", "man8"))

        verify(root, list(files), "as built")
        figure, exposed = exposure(root, "ramkey-agent.service")
        log("exposure of ramkey-agent.service: %.1f (goal: under %.1f); still exposed:\n%s"
            % (figure, GOAL, "\n".join("   " + ln for ln in exposed)))
        check(figure < GOAL, "ramkey-agent.service: exposure %.1f, goal under %.1f"
              % (figure, GOAL))
        sweep, _ = exposure(root, "ramkey-sweep.service")
        log("exposure of ramkey-sweep.service: %.1f" % sweep)
        check(sweep < GOAL, "ramkey-sweep.service: exposure %.1f" % sweep)

        d = os.path.join(root, "etc", "systemd", "system", "ramkey-agent.service.d")
        os.makedirs(d)
        shutil.copy(dropin, d)
        verify(root, ["ramkey-agent.service"], "with run-as-root.conf")
        as_root, _ = exposure(root, "ramkey-agent.service")
        log("exposure with run-as-root.conf: %.1f (root with CAP_SETUID/CAP_SETGID and "
            "write access to /home and /run/user, by design; not judged)" % as_root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    log("passed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
