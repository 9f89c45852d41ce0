#!/usr/bin/env python3
"""pam.exports_nm: `nm -D --defined-only pam_ramkey.so` lists exactly
pam_sm_open_session and pam_sm_close_session (both in the text section),
and the dynamic section needs no library beyond libpam, json-c, libsodium,
libc (and the sanitizer runtimes in a sanitizer build). With
RAMKEY_PAM_STATIC_DEPS (the default when the static archives exist)
json-c and libsodium are inside the module and only libpam and libc are
needed."""

import os
import re
import subprocess
import sys

from ramkey_fixture import PAM_MODULE, SANITIZED


def main():
    if not os.path.exists(PAM_MODULE):
        print("FAIL: %s not built" % PAM_MODULE)
        return 1
    out = subprocess.run(["nm", "-D", "--defined-only", PAM_MODULE],
                         capture_output=True, text=True, check=True).stdout
    print(out, end="")
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            syms[parts[2]] = parts[1]
        elif len(parts) == 2:      # absolute symbols have no address column
            syms[parts[1]] = parts[0]
    want = {"pam_sm_open_session": "T", "pam_sm_close_session": "T"}
    if syms != want:
        extra = sorted(set(syms) - set(want))
        missing = sorted(set(want) - set(syms))
        print("FAIL: exported symbols differ: extra %s, missing %s, got %s"
              % (extra, missing, syms))
        return 1

    dyn = subprocess.run(["readelf", "-d", PAM_MODULE], capture_output=True,
                         text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)
    allowed = re.compile(r"^(libpam\.so|libjson-c\.so|libsodium\.so|libc\.so"
                         r"|ld-linux)")
    if SANITIZED:
        allowed = re.compile(allowed.pattern + r"|^(libasan|libubsan|libm\.so"
                             r"|libstdc\+\+|libgcc_s)")
    bad = [n for n in needed if not allowed.match(n)]
    print("NEEDED:", ", ".join(needed))
    if bad:
        print("FAIL: pam_ramkey.so links libraries it should not: %s" % bad)
        return 1
    print("PASS: exactly pam_sm_open_session and pam_sm_close_session exported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
