#!/usr/bin/env python3
"""Run a program with some system calls failing, as on an older kernel:

    seccomp_deny.py NAME=ERRNO [NAME=ERRNO...] -- PROGRAM [ARG...]

e.g. `pidfd_open=ENOSYS`. Sets no_new_privs and loads a seccomp filter
(libseccomp through ctypes) that allows everything else, then execs
PROGRAM; the filter is inherited by everything it runs.
"""

import ctypes
import errno
import os
import sys

SCMP_ACT_ALLOW = 0x7FFF0000


def main():
    sep = sys.argv.index("--")
    denials = [a.split("=", 1) for a in sys.argv[1:sep]]
    argv = sys.argv[sep + 1:]
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    for name, err in denials:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            sys.exit("unknown system call %s" % name)
        r = lib.seccomp_rule_add_array(ctx, 0x00050000 | getattr(errno, err), nr, 0, None)
        if r != 0:
            raise OSError(-r, "seccomp_rule_add %s" % name)
    if ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    r = lib.seccomp_load(ctx)
    if r != 0:
        raise OSError(-r, "seccomp_load")
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
