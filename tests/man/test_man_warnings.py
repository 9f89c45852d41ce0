#!/usr/bin/env python3
"""man.warnings: `man --warnings -l PAGE` renders every page in man/
without a single warning from man or groff, at the usual terminal width
and at a narrower and a wider one (a line that cannot be broken shows up
at some width only). man-db and groff-base come from scripts/deps.
"""

import glob
import os
import shutil
import subprocess
import sys

SOURCE_DIR = os.environ.get(
    "RAMKEY_SOURCE_DIR",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
WIDTHS = (65, 80, 120)


def main():
    if shutil.which("man") is None:
        print("FAIL: man is not installed (scripts/deps installs man-db)")
        sys.exit(1)
    pages = sorted(glob.glob(os.path.join(SOURCE_DIR, "man", "*.[1-8]")))
    if len(pages) < 4:
        print("FAIL: expected the four pages in man/, found %d" % len(pages))
        sys.exit(1)
    bad = []
    for path in pages:
        for width in WIDTHS:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                   "LC_ALL": "C.UTF-8", "MANWIDTH": str(width),
                   "MANPAGER": "cat", "PAGER": "cat", "MAN_DISABLE_SECCOMP": "1"}
            r = subprocess.run(["man", "--warnings", "-l", path],
                               capture_output=True, text=True, env=env,
                               timeout=30)
            name = os.path.basename(path)
            if r.returncode != 0 or r.stderr.strip():
                bad.append("%s at width %d (exit %d):\n    %s" % (
                    name, width, r.returncode,
                    r.stderr.strip().replace("\n", "\n    ")))
            elif len(r.stdout.splitlines()) < 20:
                bad.append("%s at width %d: rendered only %d lines"
                           % (name, width, len(r.stdout.splitlines())))
    for b in bad:
        print("FAIL: %s" % b)
    if bad:
        sys.exit(1)
    print("%d pages render without warnings at widths %s" % (
        len(pages), ", ".join(map(str, WIDTHS))))


if __name__ == "__main__":
    main()
