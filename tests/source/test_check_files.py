#!/usr/bin/env python3
"""source.check_files: --check-config opens every file the configuration
names (ca_file, credentials_file) as the agent's account would, and a
start-up that cannot open one says which and why, in one line (root only,
else 77):

  - a ca_file that does not exist: --check-config and the agent refuse,
    naming the key, the file and "No such file or directory";
  - a ca_file that holds no PEM certificate: both refuse, naming the key
    and the file and saying what a CA file must hold;
  - a ca_file (or credentials file) only root can read: --check-config run
    as root opens it as RAMKEY_USER (the unit's account) and refuses with
    "Permission denied"; an agent started as RAMKEY_USER stops with the
    same line (not "cannot set up the RAM client");
    --check-config --check-as root accepts it (the run-as-root drop-in).

RAMKEY_USER's account is created for the test if the machine has none.
"""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from emulator import Emulator  # noqa: E402
from ramkey_fixture import (AGENT_BIN, Agent, ServiceAccount, Workdir,  # noqa: E402
                            cache_value, require_root)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def one_line_failure(r, *needles):
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 1, "exit %d, want 1:\n%s%s" % (r.returncode, r.stdout, r.stderr))
    check(len(lines) == 1, "not one line:\n" + r.stderr)
    for n in needles:
        check(n in lines[0], "%r not in %s" % (n, lines[0]))
    check("cannot set up the RAM client" not in lines[0], lines[0])
    return lines[0].split("]: ", 1)[-1]


def main():
    require_root()
    user = cache_value("RAMKEY_USER")
    with ServiceAccount(user) as svc, Workdir() as wd, Emulator() as emu:
        pw = svc.pw
        agent = Agent(wd, emu)
        os.chown(agent.cred_path, pw.pw_uid, pw.pw_gid)
        as_svc = ["setpriv", "--reuid", str(pw.pw_uid), "--regid", str(pw.pw_gid),
                  "--clear-groups", "--"]
        check_config = [AGENT_BIN, "--check-config", "-c", agent.conf_path]
        start = [AGENT_BIN, "-f", "-c", agent.conf_path]

        r = run(check_config)
        check(r.returncode == 0 and "configuration OK" in r.stdout, r.stdout + r.stderr)

        # A ca_file that does not exist.
        missing = wd.join("no-such-ca.pem")
        agent.write_config(ca_file=missing)
        line = one_line_failure(run(check_config), "ca_file", missing,
                                "No such file or directory")
        print("missing ca_file, --check-config: " + line, flush=True)
        line = one_line_failure(run(start), "ca_file", missing, "No such file or directory")
        print("missing ca_file, start-up: " + line, flush=True)

        # A ca_file that holds no certificate.
        garbage = wd.join("garbage-ca.pem")
        with open(garbage, "w") as f:
            f.write("this is not a certificate\n")
        agent.write_config(ca_file=garbage)
        for what, argv in (("--check-config", check_config), ("start-up", start)):
            line = one_line_failure(run(argv), "ca_file", garbage, "holds no certificate",
                                    "BEGIN CERTIFICATE")
            print("ca_file without a certificate, %s: %s" % (what, line), flush=True)

        # A ca_file only root can read.
        private = wd.join("private-ca.pem")
        shutil.copy(emu.ca_file, private)
        os.chmod(private, 0o600)
        agent.write_config(ca_file=private)
        line = one_line_failure(run(check_config), "ca_file", private,
                                "cannot open as %s" % user, "Permission denied")
        print("unreadable ca_file, --check-config as root: " + line, flush=True)
        for d in (agent.run_dir, agent.dir):
            os.chown(d, pw.pw_uid, pw.pw_gid)
        line = one_line_failure(run(as_svc + start), "ca_file", private,
                                "Permission denied")
        print("unreadable ca_file, agent as %s: %s" % (user, line), flush=True)
        r = run(check_config + ["--check-as", "root"])
        check(r.returncode == 0 and "configuration OK" in r.stdout,
              "--check-as root: " + r.stdout + r.stderr)
        print("--check-config --check-as root: " + r.stdout.strip(), flush=True)

        # The credentials file, root's only.
        agent.write_config(ca_file=emu.ca_file)
        os.chown(agent.cred_path, 0, 0)
        line = one_line_failure(run(check_config), "credentials_file", agent.cred_path,
                                "Permission denied")
        print("credentials only root can read: " + line, flush=True)
        r = run(check_config + ["--check-as", "nosuchaccount-ramkey"])
        check(r.returncode == 1 and "nosuchaccount-ramkey" in r.stderr, r.stderr)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
    print("PASS source.check_files")
