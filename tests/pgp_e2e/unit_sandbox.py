#!/usr/bin/env python3
"""Run a program under the process restrictions of a systemd unit, for
hosts where systemd is not PID 1 (test_pgp_unit.py uses it for the
shipped ramkey-agent.service):

    unit_sandbox.py UNIT_FILE UID GID PROGRAM [ARG...]

As root: drops to UID:GID with no supplementary groups (and so with no
capabilities), sets no_new_privs, and loads seccomp filters built the way
systemd builds them from the unit's SystemCallFilter= (allow list, then
~deny lists; groups expanded by `systemd-analyze syscall-filter`),
SystemCallErrorNumber=, SystemCallArchitectures=native,
MemoryDenyWriteExecute= and RestrictAddressFamilies=; then execs PROGRAM.
The file-system settings (ProtectSystem=, PrivateTmp=...) need a mount
namespace and are not reproduced.

libseccomp (libseccomp2, a dependency of systemd) is used through ctypes.
"""

import ctypes
import errno
import os
import subprocess
import sys

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
SCMP_CMP_MASKED_EQ = 7
PROT_WRITE, PROT_EXEC = 0x2, 0x4
SHM_EXEC = 0o100000
FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17}


def SCMP_ACT_ERRNO(e):
    return 0x00050000 | (e & 0xFFFF)


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def unit_settings(path):
    out = []
    with open(path) as f:
        for ln in f:
            ln = ln.strip()
            if ln and ln[0] not in "#;[" and "=" in ln:
                k, v = ln.split("=", 1)
                out.append((k.strip(), v.strip()))
    return out


_groups = {}


def expand(name):
    """A syscall group, recursively, as systemd-analyze lists it."""
    if not name.startswith("@"):
        return {name}
    if name not in _groups:
        text = subprocess.run(["systemd-analyze", "syscall-filter", name], check=True,
                              capture_output=True, text=True).stdout
        found = set()
        for ln in text.splitlines()[1:]:
            ln = ln.strip()
            if not ln or ln.startswith("#"):
                continue
            found |= expand(ln)
        _groups[name] = found
    return _groups[name]


def syscall_set(settings):
    allowed = None
    for k, v in settings:
        if k != "SystemCallFilter":
            continue
        deny = v.startswith("~")
        names = set()
        for item in v.lstrip("~").split():
            names |= expand(item)
        if deny:
            if allowed is not None:
                allowed -= names
        else:
            allowed = names if allowed is None else allowed | names
    return allowed


def main():
    unit, uid, gid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    argv = sys.argv[4:]
    settings = unit_settings(unit)
    allowed = syscall_set(settings)
    err_name = dict(settings).get("SystemCallErrorNumber", "EPERM")
    err = getattr(errno, err_name)
    mdwe = dict(settings).get("MemoryDenyWriteExecute", "no") == "yes"
    families = [FAMILIES[f] for k, v in settings if k == "RestrictAddressFamilies"
                for f in v.split()]

    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(ArgCmp)]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    libc = ctypes.CDLL(None, use_errno=True)

    def nr(name):
        n = lib.seccomp_syscall_resolve_name(name.encode())
        return n if n >= 0 else None

    def rule(ctx, action, name, cmps=()):
        n = nr(name)
        if n is None:
            return
        arr = (ArgCmp * max(len(cmps), 1))(*cmps)
        r = lib.seccomp_rule_add_array(ctx, action, n, len(cmps), arr)
        if r != 0 and r != -errno.EEXIST:
            raise OSError(-r, "seccomp_rule_add %s" % name)

    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if libc.prctl(38, 1, 0, 0, 0) != 0:          # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    # The allow list last: it may not allow seccomp() itself.
    filters = []
    if mdwe or families:
        ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
        if mdwe:
            both = PROT_WRITE | PROT_EXEC
            for name in ("mmap", "mmap2"):
                rule(ctx, SCMP_ACT_ERRNO(errno.EPERM), name,
                     [ArgCmp(2, SCMP_CMP_MASKED_EQ, both, both)])
            for name in ("mprotect", "pkey_mprotect"):
                rule(ctx, SCMP_ACT_ERRNO(errno.EPERM), name,
                     [ArgCmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC)])
            rule(ctx, SCMP_ACT_ERRNO(errno.EPERM), "shmat",
                 [ArgCmp(2, SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC)])
        if families:
            for fam in set(FAMILIES.values()) - set(families):
                rule(ctx, SCMP_ACT_ERRNO(errno.EAFNOSUPPORT), "socket",
                     [ArgCmp(0, SCMP_CMP_EQ, fam, 0)])
        filters.append(ctx)
    if allowed is not None:
        ctx = lib.seccomp_init(SCMP_ACT_ERRNO(err))
        for name in sorted(allowed):
            rule(ctx, SCMP_ACT_ALLOW, name)
        filters.append(ctx)
    for ctx in filters:
        r = lib.seccomp_load(ctx)
        if r != 0:
            raise OSError(-r, "seccomp_load")
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
