#!/usr/bin/env python3
"""End-to-end mint with `ramkey-agent-client fetch` versus the
same mint by the official Alibaba Cloud Node.js SDK (@alicloud/pop-core),
against the same emulator over HTTPS, as a ratio in one run.

    bench_mint_vs_sdk.py [--quick|--full] [--rounds N]

Both sides mint for a fresh RAM user each time (ListAccessKeys snapshot +
CreateAccessKey, the two calls the agent makes), against one emulator
(HTTPS, no injected latency), interleaved round by round so that load from
elsewhere hits both alike:
- ramkey: the wall time of one `ramkey-agent-client fetch --user U
  --secret-file F` process (exec, connect, the agent's mint over its kept-
  alive HTTPS connection, seal, the file written as U and fsynced), run as
  root for an nss_wrapper user (the agent and client under nss_wrapper).
- SDK, warm: the time of the two RPCClient.request calls in one long-lived
  node process (keep-alive agent; connection set up by a first mint that is
  not counted), as a program that mints repeatedly would see it.
- SDK, cold: the wall time of a fresh `node sdk_mint.js --once U` process
  (node start, SDK load, TLS handshake, the two calls), as one CLI run.
The figure is ramkey / SDK (warm) at the median; < 1 means ramkey is faster.
Needs root (the client writes the file as the user) and node with
tests/interop/node_modules (`npm ci` there); otherwise exits 77 (skipped).
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from benchlib import (CLIENT_BIN, Emulator, SOURCE_DIR, Workdir, cpu_note, fail, figure,
                      nss_env, nss_files, parse_mode, start_agent)

B = "mint_vs_sdk"
HERE = os.path.dirname(os.path.abspath(__file__))
SDK_JS = os.path.join(HERE, "sdk_mint.js")
POP_CORE = os.path.join(SOURCE_DIR, "tests", "interop", "node_modules", "@alicloud", "pop-core")


def arg(name, default):
    if name in sys.argv:
        return type(default)(sys.argv[sys.argv.index(name) + 1])
    return default


def q(v):
    v = sorted(v)
    return v[len(v) // 2], v[min(len(v) - 1, int(0.9 * len(v)))]


def main():
    mode = parse_mode(sys.argv, full_fits=True)
    rounds = arg("--rounds", 30 if mode == "full" else 10)
    if os.geteuid() != 0:
        print("SKIP: needs root (the client writes the secret_file as the user)")
        return 77
    node = shutil.which("node")
    if node is None or not os.path.isdir(POP_CORE):
        print("SKIP: node or tests/interop/node_modules/@alicloud/pop-core missing "
              "(run `npm ci` in tests/interop)")
        return 77
    print("bench.%s: mode=%s rounds=%d %s" % (B, mode, rounds, cpu_note()), flush=True)

    with Workdir(prefix="ramkey-bench-sdk-") as wd:
        passwd, group = nss_files(wd, rounds + 1, homes=True)
        emu = Emulator(https=True, auto_users=True)
        agent = sdk = None
        try:
            agent = start_agent(wd, emu, passwd, group)
            env = dict(os.environ)
            env.update({"NODE_EXTRA_CA_CERTS": emu.ca_file,
                        "ALIBABA_CLOUD_ACCESS_KEY_ID": emu.admin_key_id,
                        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emu.admin_secret})
            sdk = subprocess.Popen([node, SDK_JS, emu.endpoint], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env, bufsize=1)

            def sdk_mint(user):
                sdk.stdin.write(user + "\n")
                sdk.stdin.flush()
                line = sdk.stdout.readline()
                if not line:
                    fail("sdk_mint.js died: %s" % sdk.stderr.read())
                return json.loads(line)["ms"]

            cenv = {"PATH": "/usr/bin:/bin", "RAMKEY_SOCKET": agent.socket}
            cenv.update(nss_env(passwd, group))

            def ramkey_fetch(i):
                user = "rkb%d" % i
                path = wd.join("home", user, "ramkey.json")
                t0 = time.perf_counter()
                r = subprocess.run([CLIENT_BIN, "fetch", "--user", user, "--secret-file", path],
                                   capture_output=True, text=True, env=cenv, timeout=60)
                ms = (time.perf_counter() - t0) * 1e3
                if r.returncode != 0:
                    fail("ramkey-agent-client fetch exited %d: %s" % (r.returncode,
                                                                     r.stderr.strip()))
                return ms

            def sdk_cold(i):
                t0 = time.perf_counter()
                r = subprocess.run([node, SDK_JS, emu.endpoint, "--once", "sdkcold%d" % i],
                                   capture_output=True, text=True, env=env, timeout=60)
                ms = (time.perf_counter() - t0) * 1e3
                if r.returncode != 0:
                    fail("node sdk_mint.js --once exited %d: %s" % (r.returncode,
                                                                   r.stderr.strip()))
                return ms

            # Warm-up, not counted: the agent's and the SDK's first
            # connection and TLS handshake.
            ramkey_fetch(rounds)
            sdk_mint("sdkwarm")
            rk, sw, sc = [], [], []
            for i in range(rounds):
                rk.append(ramkey_fetch(i))
                sw.append(sdk_mint("sdk%d" % i))
                if i < max(3, rounds // 5):
                    sc.append(sdk_cold(i))
            c = emu.counters()["calls"]
            rk50, rk90 = q(rk)
            sw50, sw90 = q(sw)
            sc50, _ = q(sc)
            figure(B, "ramkey_fetch", "p50 %.1f / p90 %.1f" % (rk50, rk90), "ms",
                   detail="one client process per mint, %d mints" % len(rk))
            figure(B, "sdk_warm", "p50 %.1f / p90 %.1f" % (sw50, sw90), "ms",
                   detail="@alicloud/pop-core RPCClient in one node process, %d mints" % len(sw))
            figure(B, "sdk_cold", "p50 %.1f" % sc50, "ms",
                   detail="fresh node process per mint, %d mints" % len(sc))
            figure(B, "ratio", "%.2f" % (rk50 / sw50), "ramkey / SDK (warm), p50",
                   detail="< 1: ramkey's whole fetch is faster than the SDK's two calls")
            figure(B, "ratio_cold", "%.2f" % (rk50 / sc50), "ramkey / SDK (cold process), p50")
            figure(B, "emulator_calls", ", ".join("%s=%d" % kv for kv in sorted(c.items())))
            agent.stop()
            agent = None
        finally:
            if sdk is not None:
                sdk.stdin.close()
                try:
                    sdk.wait(10)
                except subprocess.TimeoutExpired:
                    sdk.kill()
            if agent is not None:
                agent.kill()
            emu.stop()
    print(cpu_note(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
