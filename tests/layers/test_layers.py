#!/usr/bin/env python3
"""The agent's layers link only downward (docs/ARCHITECTURE.md).

    test_layers.py LIB_BOTTOM.a ... LIB_TOP.a

Given the layers' static libraries from the lowest to the highest, fail
when a layer's objects use a symbol that a higher layer defines: the
layering is then a lie even if it still links (static libraries resolve
in any order once linked together). Symbols defined by several layers are
reported too. Prints each violation with the object that needs the symbol.
"""

import os
import subprocess
import sys


def nm(archive, *flags):
    r = subprocess.run(["nm", "-A", "-g", *flags, archive],
                       capture_output=True, text=True, check=True)
    out = []
    for line in r.stdout.splitlines():
        # "archive.a:object.o:  U symbol" or "...:0000 T symbol"
        where, _, rest = line.rpartition(":")
        parts = rest.split()
        if len(parts) >= 2:
            out.append((where.split(":")[-1], parts[-2], parts[-1]))
    return out


def main():
    libs = sys.argv[1:]
    if len(libs) < 2:
        print("usage: test_layers.py LIB.a ... (lowest layer first)")
        return 2
    defined, undefined = [], []
    for lib in libs:
        d, u = {}, {}
        for obj, kind, sym in nm(lib, "--defined-only"):
            d[sym] = obj
        for obj, kind, sym in nm(lib, "--undefined-only"):
            if sym not in d:
                u.setdefault(sym, obj)
        defined.append(d)
        undefined.append(u)
    bad = 0
    for i, lib in enumerate(libs):
        name = os.path.basename(lib)
        for sym, obj in sorted(undefined[i].items()):
            for j in range(i + 1, len(libs)):
                if sym in defined[j]:
                    print("FAIL: %s (%s) uses %s of the higher layer %s (%s)"
                          % (name, obj, sym, os.path.basename(libs[j]),
                             defined[j][sym]))
                    bad += 1
        for j in range(i + 1, len(libs)):
            for sym in sorted(set(defined[i]) & set(defined[j])):
                print("FAIL: %s is defined in both %s and %s"
                      % (sym, name, os.path.basename(libs[j])))
                bad += 1
    counts = ", ".join("%s: %d defined, %d needed" % (
        os.path.basename(l), len(defined[k]), len(undefined[k]))
        for k, l in enumerate(libs))
    print(counts)
    if bad:
        print("%d layering violation(s)" % bad)
        return 1
    print("PASS: %d layers, every call goes downward" % len(libs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
