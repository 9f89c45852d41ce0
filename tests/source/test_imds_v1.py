#!/usr/bin/env python3
"""source.imds_v1: a metadata service that hands out no session token
(an old one: PUT /latest/api/token answers 403), on loopback, and never
through a proxy (http_proxy points at nothing):

  - by default the agent has no credential: status exits 7 and says the
    service refused a session token and that imds_v1 = yes would allow
    token-less requests;
  - with imds_v1 = yes it asks without the token and has the credential;
  - a role named in the credentials file (type = ecs_ram_role, role_name)
    is asked for directly, without listing the role.
"""

import http.server
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from emulator import Emulator  # noqa: E402
from ramkey_fixture import Agent, Workdir, wait_for  # noqa: E402

BASE = "/latest/meta-data/ram/security-credentials/"


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


class Service(http.server.BaseHTTPRequestHandler):
    requests = []

    def log_message(self, *args):
        pass

    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):
        self.requests.append(("PUT", self.path, None))
        self.answer(403, "Forbidden")

    def do_GET(self):
        self.requests.append(("GET", self.path,
                              self.headers.get("X-aliyun-ecs-metadata-token")))
        if self.path in (BASE, BASE.rstrip("/")):
            self.answer(200, "old-role")
        elif self.path.startswith(BASE):
            exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
            self.answer(200, json.dumps({
                "AccessKeyId": "STS.oldservice0000000000001",
                "AccessKeySecret": "old-service-secret-000000000000000000000000",
                "Expiration": exp, "SecurityToken": "CAISoldservicetoken",
                "LastUpdated": exp, "Code": "Success"}, indent=2))
        else:
            self.answer(404, "Not Found")


def main():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Service)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d" % srv.server_address[1]
    env = {"http_proxy": "http://127.0.0.1:9", "no_proxy": ""}
    try:
        with Workdir() as wd, Emulator() as emu:
            agent = Agent(wd, emu, credentials=False, credential_source="ecs_ram_role",
                          metadata_url=url, imds_unrestricted_ok="yes")
            agent.start(env=env)
            wait_for(lambda: Service.requests, 5, what="a request to the service")
            time.sleep(0.3)
            st = agent.client("status")
            check(st.returncode == 7, "status %d without a token, want 7" % st.returncode)
            err = agent.status()["source"]["error"]
            check("refused a session token (HTTP 403" in err and "imds_v1 = yes" in err, err)
            check(all(m == "PUT" for m, _, _ in Service.requests),
                  "asked without a token although imds_v1 is off: %s" % Service.requests)
            print("imds_v1 = no: " + err, flush=True)
            check(agent.stop() == 0, "the agent did not stop cleanly")

            Service.requests.clear()
            agent.write_config(imds_v1="yes")
            agent.start(env=env)
            wait_for(lambda: agent.client("status").returncode == 0, 5,
                     what="a token-less credential")
            src = agent.status()["source"]
            check(src["usable"] and src["role"] == "old-role" and
                  src["access_key_id"] == "STS.****0001", src)
            check([(m, p) for m, p, _ in Service.requests[:3]] ==
                  [("PUT", "/latest/api/token"), ("GET", BASE), ("GET", BASE + "old-role")]
                  and all(t is None for _, _, t in Service.requests[1:3]),
                  "not the token-less sequence: %s" % Service.requests)
            check("token-less" in agent.log(), agent.log())
            print("imds_v1 = yes: %s" % src, flush=True)
            check(agent.stop() == 0, "the agent did not stop cleanly")

            Service.requests.clear()
            with Workdir() as wd2:
                named = Agent(wd2, emu, credentials="[default]\ntype = ecs_ram_role\n"
                              "role_name = old-role\n", metadata_url=url, imds_v1="yes",
                              imds_unrestricted_ok="yes")
                named.start(env=env)
                wait_for(lambda: named.client("status").returncode == 0, 5,
                         what="the named role's credential")
                check([p for _, p, _ in Service.requests[:2]] ==
                      ["/latest/api/token", BASE + "old-role"],
                      "the role was listed: %s" % Service.requests)
                src = named.status()["source"]
                check(src["source"] == "file" and src["type"] == "ecs_ram_role", src)
                check(named.stop() == 0, "the agent did not stop cleanly")
            print("role_name from the credentials file: asked for directly", flush=True)
    finally:
        srv.shutdown()


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
    print("PASS source.imds_v1")
