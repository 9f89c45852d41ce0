"""Run as an ordinary user: for DURATION seconds, on THREADS connections
at a time, send the agent garbage (bad frame headers, frames that are not
JSON, JSON that is not a request) and requests it must deny (another
user's key, a key that is not ours, a new key past mint_rate), each on a
fresh connection, and wait
for the agent's answer or for it to close the connection. Prints one JSON
line of counts: garbage closed or answered, denials answered, what else."""

import base64
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
SEAL = base64.b64encode(os.urandom(32)).decode()
DENIED = [
    frame(json.dumps({"v": 1, "op": "fetch", "user": "root",
                      "seal_key": SEAL}).encode()),
    frame(b'{"v":1,"op":"set_status","key_id":"LTAI5tNotYours0000000000",'
          b'"status":"Inactive"}'),
    # our own key, past mint_rate
    frame(json.dumps({"v": 1, "op": "fetch", "seal_key": SEAL}).encode()),
]
counts = {"connections": 0, "garbage_closed": 0, "garbage_answered": 0,
          "denied_answered": 0, "denied_other": 0, "errors": 0}
lock = threading.Lock()
deadline = time.monotonic() + duration


def worker(k):
    i = k
    while time.monotonic() < deadline:
        garbage = i % 5 != 4
        if garbage:
            payload = PAYLOADS[i % len(PAYLOADS)] + os.urandom(i % 3)
        else:
            payload = DENIED[i % len(DENIED)]
        i += 1
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        what = "errors"
        try:
            s.connect(sock_path)
            s.sendall(payload)
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                data = b""  # closed with our trailing bytes unread
            if garbage:
                what = "garbage_closed" if data == b"" else "garbage_answered"
            else:
                what = "denied_answered" if b'"ok":false' in data else \
                    "denied_other"
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
