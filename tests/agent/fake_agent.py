"""A fake agent for tests: listens on a Unix socket and records what it is
sent, without ever answering.

    fake_agent.py SOCKET REPORT [--uid UID --listen-after-drop]

With --uid it binds as root, drops to UID, and only then listens, so its
SO_PEERCRED is UID while the socket file still belongs to root. REPORT
gets one JSON line per connection: {"bytes": N}.
"""

import json
import os
import socket
import sys
import threading


def main():
    path, report = sys.argv[1], sys.argv[2]
    uid = None
    if "--uid" in sys.argv:
        uid = int(sys.argv[sys.argv.index("--uid") + 1])
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    os.chmod(path, 0o666)
    if uid is not None:
        os.setgid(uid)
        os.setuid(uid)
    s.listen(16)
    lock = threading.Lock()

    def serve(c):
        n = 0
        c.settimeout(10)
        try:
            while True:
                b = c.recv(4096)
                if not b:
                    break
                n += len(b)
        except OSError:
            pass
        with lock, open(report, "a") as f:
            f.write(json.dumps({"bytes": n}) + "\n")
        c.close()

    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()
