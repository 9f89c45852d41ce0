"""Open a PAM-style session (open_session over the raw protocol) as this
process, print the reply as one JSON line, then wait: on "close" close the
session and exit; on EOF just exit (the agent notices the process died).

    hold_session.py SOCKET USER
"""

import json
import sys

from ramkey_fixture import close_session_raw, open_session_raw


def main():
    sock, user = sys.argv[1], sys.argv[2]
    rep = open_session_raw(sock, user)
    print(json.dumps(rep), flush=True)
    for line in sys.stdin:
        if line.strip() == "close" and rep.get("ok"):
            print(json.dumps(close_session_raw(sock, rep["session"], user)),
                  flush=True)
            return
    return


if __name__ == "__main__":
    main()
