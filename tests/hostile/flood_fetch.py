"""Run as an ordinary user: `fetch` over and over for DURATION seconds,
each naming a new secret_file path of 3-4 KB, straight on the socket (as
a hostile user would: no file is written). Prints one JSON line: how many
requests were sent and how they were answered."""

import base64
import json
import os
import random
import sys
import time

from ramkey_fixture import raw_call

sock, duration = sys.argv[1], float(sys.argv[2])
seg = "/" + "d" * 200
counts = {"sent": 0, "ok": 0}
deadline = time.monotonic() + duration
n = 0
while time.monotonic() < deadline:
    n += 1
    depth = random.randint(15, 19)          # 3015-3819 bytes of directories
    path = "/tmp/rkhostile" + seg * depth + "/f%08d" % n
    req = {"v": 1, "op": "fetch", "secret_file": path,
           "seal_key": base64.b64encode(os.urandom(32)).decode()}
    try:
        rep = raw_call(sock, req, timeout=10)
    except OSError as e:
        counts["oserror"] = counts.get("oserror", 0) + 1
        continue
    counts["sent"] += 1
    if rep.get("ok"):
        counts["ok"] += 1
    else:
        code = rep.get("error", {}).get("code", "?")
        counts[code] = counts.get(code, 0) + 1
        if code == "rate_limited":
            time.sleep(0.005)
print(json.dumps(counts), flush=True)
