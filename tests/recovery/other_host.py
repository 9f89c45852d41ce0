"""Plays "another host" of the same Alibaba Cloud account during the crash
soak: creates and deletes AccessKeys of its own RAM users directly in the
emulator (admin endpoints, created_by "direct"), at random, until stdin
closes. Then prints one JSON line: every key it created, the ones it
deleted, and the ones it still holds.

    other_host.py ENDPOINT CA_FILE SEED USER...
"""

import json
import random
import select
import ssl
import sys
import urllib.request


def admin(endpoint, ctx, path, obj):
    req = urllib.request.Request(endpoint + path, data=json.dumps(obj).encode(),
                                 method="POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
        return json.loads(r.read().decode("utf-8"))


def main():
    endpoint, ca_file, seed, users = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    ctx = ssl.create_default_context(cafile=ca_file)
    rng = random.Random(seed)
    held = {u: [] for u in users}
    created, deleted = [], []
    for u in users:
        admin(endpoint, ctx, "/_emu/users", {"name": u})
    while True:
        r, _, _ = select.select([sys.stdin], [], [], rng.uniform(0.05, 0.4))
        if r and not sys.stdin.readline():
            break
        u = rng.choice(users)
        if len(held[u]) < 2 and (not held[u] or rng.random() < 0.5):
            k = admin(endpoint, ctx, "/_emu/keys", {"user": u})
            held[u].append(k["AccessKeyId"])
            created.append(k["AccessKeyId"])
        elif held[u]:
            kid = held[u].pop(rng.randrange(len(held[u])))
            admin(endpoint, ctx, "/_emu/keys/delete", {"user": u, "key_id": kid})
            deleted.append(kid)
    print(json.dumps({"created": created, "deleted": deleted,
                      "held": {u: ks for u, ks in held.items()}}), flush=True)


if __name__ == "__main__":
    main()
