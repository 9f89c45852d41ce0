#!/usr/bin/env python3
"""The example configuration the packages install as /etc/ramkey/agent.conf
(contrib/config/agent.conf) against the agent (ctest: package.example_config):

  - it sets nothing: every key line is commented out;
  - it lists every key ramkey-agent.conf(5) documents, and no other;
  - each of its lines, uncommented on its own, is accepted by the built
    agent (ramkey-agent --check-config), so the defaults it shows are
    valid values.

When you add a key to the agent, document it in man/ramkey-agent.conf.5
and add a commented "#key = default" line to contrib/config/agent.conf.
"""

import os
import re
import subprocess
import sys
import tempfile

SOURCE_DIR = os.environ.get("RAMKEY_SOURCE_DIR",
                            os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD_DIR = os.environ.get("RAMKEY_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
EXAMPLE = os.path.join(SOURCE_DIR, "contrib", "config", "agent.conf")
MANPAGE = os.path.join(SOURCE_DIR, "man", "ramkey-agent.conf.5")
AGENT = os.path.join(BUILD_DIR, "agent", "ramkey-agent")
KEY_LINE = re.compile(r"^#([a-z][a-z0-9_]*) = ?(.*)$")


def man_keys():
    """Keys of the KEYS section: the unquoted words of the .BR line that
    follows each .TP, up to the "(default)" part."""
    keys = []
    with open(MANPAGE) as f:
        lines = f.read().splitlines()
    in_keys = False
    for i, ln in enumerate(lines):
        if ln.startswith(".SH"):
            in_keys = ln.strip() == ".SH KEYS"
            continue
        if not in_keys or ln != ".TP" or i + 1 >= len(lines):
            continue
        head = lines[i + 1]
        if not head.startswith((".B ", ".BR ")):
            continue
        for tok in re.findall(r'"[^"]*"|\S+', head.split(None, 1)[1]):
            if tok.startswith('"'):
                if "(" in tok:
                    break
                continue
            if re.fullmatch(r"[a-z][a-z0-9_]*", tok):
                keys.append(tok)
    return keys


def main():
    with open(EXAMPLE) as f:
        text = f.read()
    example = {}
    for n, ln in enumerate(text.splitlines(), 1):
        if ln.strip() and not ln.lstrip().startswith(("#", ";")):
            raise AssertionError("%s:%d sets a key: %r" % (EXAMPLE, n, ln))
        m = KEY_LINE.match(ln)
        if m:
            if m.group(1) in example:
                raise AssertionError("%s:%d: %s listed twice" % (EXAMPLE, n, m.group(1)))
            example[m.group(1)] = (n, m.group(2))
    documented = man_keys()
    print("%d keys in ramkey-agent.conf(5), %d in the example" % (len(documented), len(example)))
    missing = [k for k in documented if k not in example]
    extra = [k for k in example if k not in documented]
    if missing or extra:
        raise AssertionError(
            "contrib/config/agent.conf and man/ramkey-agent.conf.5 disagree: %s%s"
            % ("missing from the example (add a commented '#key = default' line): %s. "
               % ", ".join(missing) if missing else "",
               "not in the man page: %s" % ", ".join(extra) if extra else ""))

    env = {"PATH": "/usr/bin:/bin", "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAIexampleexample01",
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "example-secret-example-secret-00"}
    with tempfile.TemporaryDirectory(prefix="ramkey-example-conf-") as d:
        path = os.path.join(d, "agent.conf")
        bad = []
        for key, (n, value) in example.items():
            with open(path, "w") as f:
                f.write("%s = %s\n" % (key, value))
            os.chmod(path, 0o644)
            r = subprocess.run([AGENT, "--check-config", "-c", path], capture_output=True,
                               text=True, env=env, timeout=30)
            if r.returncode != 0:
                bad.append("line %d, %s = %s: %s" % (n, key, value,
                                                    (r.stdout + r.stderr).strip()))
        if bad:
            raise AssertionError("the agent refuses lines of the example:\n  "
                                 + "\n  ".join(bad))
    print("every key documented and listed once; each line, uncommented alone, "
          "passes ramkey-agent --check-config")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
