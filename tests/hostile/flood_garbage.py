"""Run as an ordinary user: for DURATION seconds, on THREADS connections
at a time, send the agent garbage (bad frame headers, frames that are not
JSON, JSON that is not a request), each on a fresh connection, and wait
for the agent to close it. Prints one JSON line of counts."""

import json
import os
import socket
import struct
import sys
import threading
import time

sock_path, duration, nthreads = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])


def frame(body):
    return struct.pack(">I", len(body)) + body


PAYLOADS = [
    b"\xff\xff\xff\xff",                       # length over the limit
    b"\x00\x00\x00\x00",                       # empty frame
    frame(b"{not json"),                       # malformed JSON
    frame(b'{"v":1,"op":"fetch","seal_key":3}'),  # wrong type
    frame(b'{"v":1,"op":"no_such_op"}'),       # unknown op
    frame(b'{"v":99,"op":"status"}'),          # unknown version
    frame(b"[1,2,3]"),                         # not an object
    frame(b'{"v":1,"op":"status","extra":"field"}'),  # unknown field
]
counts = {"connections": 0, "closed_by_agent": 0, "answered": 0, "errors": 0}
lock = threading.Lock()
deadline = time.monotonic() + duration


def worker(k):
    i = k
    while time.monotonic() < deadline:
        payload = PAYLOADS[i % len(PAYLOADS)] + os.urandom(i % 3)
        i += 1
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        what = "errors"
        try:
            s.connect(sock_path)
            s.sendall(payload)
            data = s.recv(65536)
            what = "closed_by_agent" if data == b"" else "answered"
        except OSError:
            pass
        finally:
            s.close()
        with lock:
            counts["connections"] += 1
            counts[what] += 1


threads = [threading.Thread(target=worker, args=(k,)) for k in range(nthreads)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(counts), flush=True)
