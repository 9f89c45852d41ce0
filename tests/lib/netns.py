"""Run a test inside a private network namespace where the instance
metadata service's real address, 100.100.100.200, is on the loopback
interface (standard library only; root only).

    import netns
    netns.enter()                  # re-runs this script under `unshare -n`
    netns.metadata_address()       # lo up, 100.100.100.200 on lo
    with Emulator(imds=netns.IMDS_LISTEN) as emu: ...

Nothing outside the namespace is ever a target, and what the test changes
there (addresses, nftables rules) goes away with it.
"""

import os
import shutil
import subprocess
import sys

from ramkey_fixture import require_root

ADDR = "100.100.100.200"
IMDS_LISTEN = ADDR + ":80"
_MARK = "RAMKEY_IN_NETNS"


def inside():
    return os.environ.get(_MARK) == "1"


def enter():
    """Re-execute the running script in a new network namespace (as root;
    exit 77 otherwise). Returns when already inside."""
    if inside():
        return
    require_root()
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            sys.exit("%s(8) is needed (util-linux, iproute2)" % tool)
    env = dict(os.environ)
    env[_MARK] = "1"
    argv = ["unshare", "--net", "--", sys.executable,
            os.path.abspath(sys.argv[0])] + sys.argv[1:]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe("unshare", argv, env)


def metadata_address():
    """lo up and the metadata address on it. Connections to it are made
    from 127.0.0.1 (the route's preferred source): a reply to
    100.100.100.200 itself would meet the nftables rule again on the way
    back, which on a real host goes to the host's own address."""
    assert inside(), "call netns.enter() first"
    for cmd in (["ip", "link", "set", "lo", "up"],
                ["ip", "addr", "add", ADDR + "/32", "dev", "lo"],
                ["ip", "route", "replace", "local", ADDR, "dev", "lo", "table",
                 "local", "proto", "kernel", "scope", "host", "src", "127.0.0.1"]):
        subprocess.run(cmd, check=True)


def load_rule(path):
    """Load an nftables rule file (nft -f) inside the namespace."""
    r = subprocess.run(["nft", "-f", path], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("nft -f %s failed: %s" % (path, r.stderr.strip()))


def unload_rule(table="ramkey_metadata"):
    subprocess.run(["nft", "delete", "table", "inet", table],
                   capture_output=True)
