"""Open N connections to SOCKET and keep them; then open one more and
report (JSON) whether the agent closed it at once."""

import json
import socket
import sys
import time

path, n = sys.argv[1], int(sys.argv[2])
held = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    held.append(s)
time.sleep(0.3)
extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
extra.connect(path)
extra.settimeout(2)
t0 = time.monotonic()
try:
    closed = extra.recv(1) == b""
except socket.timeout:
    closed = False
print(json.dumps({"extra_closed": closed,
                  "after": round(time.monotonic() - t0, 3)}), flush=True)
sys.stdin.readline()  # hold the others until told
