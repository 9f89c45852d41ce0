"""Crash soak: nothing leaks (rules L9 and R1-R4).

Setup: 50 local users (RAM user = local name). Before the run, 10 of them
get one AccessKey of their own, created directly in the emulator. During
the run a separate process (other_host.py) plays another host of the same
account: it creates and deletes keys of 5 other RAM users.

Run: 200 PAM sessions over the 50 users, opened and closed at random by 15
concurrent clients through the real module (pam_session_driver -C, service
`session required pam_ramkey.so socket=... timeout=5`, default secret_file
~/.alibabacloud/ramkey.json; the driver is the session's watched process),
against an emulator failing 20% of calls with 503 and throttling every 7th,
CreateAccessKey taking 400 ms. The agent is SIGKILLed at 10 moments (at
least 3 of them while a CreateAccessKey is in flight at RAM) and restarted
each time.

Checked during the run, at random moments, for every user with open
sessions (the user's open/close calls are serialised by the test so the
model below is exact):

- the key each open session received must be accepted by RAM: its lease has
  not ended (the session is open, max_ttl is 12h, nobody revoked it);
- the key in the user's secret_file must be accepted: an open session whose
  file holds a key must have that key accepted. A lease has *ended* only
  when every session that received its key has closed (or never opened);
  a file holding such a key while sessions of the user are open is counted
  as a violation ("stale shared file").

Opens may fail legitimately and are counted, not errors: the agent was down
(killed), the 5 s PAM timeout passed under the faults, or RAM refused a
second key (LimitExceeded: a user with one key of their own plus a key whose
secret the agent lost in a crash cannot get another).

At the end, after all sessions closed and the agent drained (no lease, no
pending revocation): zero keys minted by the agent remain in the emulator,
no ambiguous key is reported, and every user-owned and "other host" key is
still there, untouched (no UpdateAccessKey/DeleteAccessKey on it in the
emulator's log).

    python3 test_crash_soak.py

Knobs (environment): RAMKEY_SOAK_SEED=N repeats a run's random choices
(users, hold times, kill points, emulator faults; not the thread timing);
RAMKEY_SOAK_SYSLOG=1 gives the drivers the syslog shim so open failures
are classified from the module's syslog lines (RAMKEY_SOAK_VERBOSE=1 prints
each); RAMKEY_SOAK_ARTIFACTS=DIR keeps the agent log and the emulator's
request log of a failed run; RAMKEY_SOAK_WAIT_CREATES=1 restarts the agent
only after RAM finished the dead agent's CreateAccessKey calls (sidesteps
the reconciliation race to look at everything else; not for CI).
"""

import collections
import json
import os
import random
import subprocess
import sys
import threading
import time

from emulator import Emulator
from ramkey_fixture import Agent, Users, Workdir, require_root, wait_for
from reclib import (PamConf, PamSession, admin_keys, agent_entries, check_key, log,
                    need_driver, syslog_env, read_key_file, syslog_lines, wait_drained)

HERE = os.path.dirname(os.path.abspath(__file__))
N_USERS = 50
N_OWN = 10
N_OTHER = 5
N_SESSIONS = 200
CONCURRENCY = 15
N_KILLS = 10
MIN_CREATE_KILLS = 3
CREATE_KILL_ATTEMPTS = 5
PAM_TIMEOUT = 5
HOLD = (0.3, 3.0)
FAULTS = {"error_rate": 0.2, "throttle_every": 7,
          "latency_by_action": {"CreateAccessKey": 400}}
DRAIN_TIMEOUT = 120


def classify(line):
    for pat, what in (("LimitExceeded", "LimitExceeded"), ("did not answer in time", "timeout"),
                      ("cannot connect", "agent down"), ("reading the agent's reply",
                                                          "agent died mid-request"),
                      ("sending the request", "agent died mid-request"),
                      ("not writable", "store"), ("the agent said", "agent error")):
        if pat in line:
            return what
    return "other"


def explain_leak(entries, kills, user, kid, agent_log):
    """One line on how a leaked key came to be: its CreateAccessKey, the
    nearest kill, and the agent's next ListAccessKeys of that user."""
    create = [e for e in entries if e["action"] == "CreateAccessKey" and e.get("key_id") == kid]
    if not create:
        return "%s of %s: no CreateAccessKey for it in the log" % (kid, user)
    c = create[0]
    lat = FAULTS["latency_by_action"].get("CreateAccessKey", 0) / 1000.0
    kill = [k for k in kills if c["t"] <= k["t"] <= c["t"] + lat + 1]
    nxt = [e for e in entries if e["action"] == "ListAccessKeys" and e["user"] == user
           and e["t"] > c["t"]]
    return ("%s of %s: CreateAccessKey started at %s (RAM answers %.1f s later)%s; the "
            "agent's next ListAccessKeys of %s started %.3f s after the create%s; key id in "
            "the agent log: %s"
            % (kid, user, time.strftime("%H:%M:%S", time.localtime(c["t"])) +
               ("%.3f" % (c["t"] % 1))[1:], lat,
               "; agent SIGKILLed %.3f s after it started" % (kill[0]["t"] - c["t"])
               if kill else "", user, nxt[0]["t"] - c["t"] if nxt else float("nan"),
               " (before RAM had created the key)" if nxt and nxt[0]["t"] - c["t"] < lat
               else "", (kid[:4] + "****" + kid[-4:]) in agent_log))


class Session:
    def __init__(self, sid, pw):
        self.sid = sid
        self.pw = pw
        self.user = pw.pw_name
        self.kid = None
        self.secret = None


class Soak:
    def __init__(self, wd, emu, users, rng):
        self.wd = wd
        self.emu = emu
        self.rng = rng
        self.pws = users
        self.names = [pw.pw_name for pw in users]
        self.path = {pw.pw_name: os.path.join(pw.pw_dir, ".alibabacloud", "ramkey.json")
                     for pw in users}
        self.agent = Agent(wd, emu, mint_rate="1000/h")
        self.conf = None
        self.lock = threading.Lock()          # model and counters
        self.user_lock = {n: threading.Lock() for n in self.names}
        self.open_by_user = collections.defaultdict(set)
        self.holders = collections.defaultdict(set)   # key id -> open session ids
        self.started = 0
        self.stats = collections.Counter()
        self.violations = collections.defaultdict(list)
        self.kills = []
        self.stop = threading.Event()
        self.agent_lock = threading.Lock()     # kill/restart vs. final checks
        self.failures = collections.Counter()  # open failures by cause (syslog shim)
        self.verbose = os.environ.get("RAMKEY_SOAK_VERBOSE") == "1"
        # With RAMKEY_SOAK_SYSLOG=1 the drivers get the syslog shim so the
        # module's syslog lines (why an open failed) are on their stderr.
        self.driver_env = (syslog_env()
                           if os.environ.get("RAMKEY_SOAK_SYSLOG") == "1" else None)
        os.makedirs(wd.join("drv"), exist_ok=True)
        # RAMKEY_SOAK_WAIT_CREATES=1: restart only once RAM has finished the
        # dead agent's CreateAccessKey calls (avoids the reconciliation
        # race, to look at everything else).
        self.wait_creates = os.environ.get("RAMKEY_SOAK_WAIT_CREATES") == "1"

    def errpath(self, sid):
        return self.wd.join("drv", "%03d.err" % sid)

    # -- bookkeeping ------------------------------------------------------
    def count(self, what, n=1):
        with self.lock:
            self.stats[what] += n

    def violation(self, kind, msg):
        log("VIOLATION (%s): %s" % (kind, msg))
        with self.lock:
            self.violations[kind].append(msg)

    def next_session(self):
        with self.lock:
            if self.started >= N_SESSIONS:
                return None
            self.started += 1
            return self.started

    def pick_user(self):
        """A random user, preferring one nobody is opening/closing for."""
        for _ in range(20):
            pw = self.rng.choice(self.pws)
            if self.user_lock[pw.pw_name].acquire(blocking=False):
                return pw
        pw = self.rng.choice(self.pws)
        self.user_lock[pw.pw_name].acquire()
        return pw

    # -- clients ----------------------------------------------------------
    def worker(self, wid):
        while not self.stop.is_set():
            sid = self.next_session()
            if sid is None:
                return
            pw = self.pick_user()
            s = Session(sid, pw)
            drv = None
            try:
                drv = PamSession(self.conf, "rk-soak", pw.pw_name, errpath=self.errpath(sid),
                                 env=self.driver_env)
                rc, ms = drv.open(timeout=PAM_TIMEOUT + 20)
                if rc == "PAM_SUCCESS":
                    kf = read_key_file(self.path[s.user])
                    if kf is None:
                        self.violation("file", "session %d of %s: open succeeded but "
                                       "there is no secret_file" % (sid, s.user))
                    else:
                        s.kid, s.secret = kf
                        with self.lock:
                            self.open_by_user[s.user].add(s)
                            self.holders[s.kid].add(sid)
                    self.count("opened")
                else:
                    self.count("open_failed")
                    why = [l for l in syslog_lines(drv.stderr()) if "no key for" in l]
                    if why:
                        self.failures[classify(why[0])] += 1
                        if self.verbose:
                            log("open %d of %s: %s: %s" % (sid, s.user, rc, why[0]))
                    self.count("open_failed_timeout" if ms >= PAM_TIMEOUT * 1000 - 50
                               else "open_failed_fast")
            except Exception as e:   # noqa: BLE001 - any driver trouble is reported
                self.violation("driver", "session %d of %s: driver failed at open: %r"
                               % (sid, s.user, e))
                if drv:
                    drv.kill()
                time.sleep(self.rng.uniform(*HOLD))
                continue
            finally:
                self.user_lock[pw.pw_name].release()
            if s.kid is None:
                # A failed login: the person tries again a little later
                # (so an agent restart does not burn through the sessions).
                drv.quit()
                time.sleep(self.rng.uniform(*HOLD))
                continue
            time.sleep(self.rng.uniform(*HOLD))
            with self.user_lock[s.user]:
                with self.lock:
                    self.open_by_user[s.user].discard(s)
                    self.holders[s.kid].discard(sid)
                try:
                    rc, ms = drv.close(timeout=PAM_TIMEOUT + 20)
                    self.count("closed" if rc == "PAM_SUCCESS" else "close_failed")
                except Exception as e:   # noqa: BLE001
                    self.violation("driver", "session %d of %s: driver failed at close: %r"
                                   % (sid, s.user, e))
            drv.quit()

    # -- key checks -------------------------------------------------------
    def check_user(self, user):
        """Under the user's lock: nobody opens or closes for them meanwhile,
        so which leases are held is exactly known."""
        with self.lock:
            sessions = list(self.open_by_user[user])
        if not sessions:
            return
        seen = {}
        for s in sessions:
            if s.kid not in seen:
                seen[s.kid] = check_key(self.emu, s.kid, s.secret)
                self.count("key_checks")
            if not seen[s.kid]:
                self.violation("held_key_rejected",
                               "%s: key %s of open session %d is no longer accepted "
                               "(its lease has %d open session(s))"
                               % (user, s.kid, s.sid, len(self.holders[s.kid])))
        kf = read_key_file(self.path[user])
        if kf is None:
            self.violation("file", "%s has %d open session(s) but no secret_file"
                           % (user, len(sessions)))
            return
        kid, secret = kf
        self.count("file_checks")
        if kid in seen:
            return   # checked above, as a held key
        with self.lock:
            held = len(self.holders.get(kid, ()))
        ok = check_key(self.emu, kid, secret)
        self.count("key_checks")
        if not ok:
            self.violation("stale_shared_file",
                           "%s: the secret_file holds %s, which is no longer accepted (its "
                           "lease ended: %d holder(s)) while %d session(s) of the user are "
                           "open on key(s) %s" % (user, kid, held, len(sessions),
                                                  sorted({s.kid for s in sessions})))

    def checker(self):
        while not self.stop.wait(self.rng.uniform(0.3, 1.5)):
            with self.lock:
                users = [u for u, ss in self.open_by_user.items() if ss]
            self.rng.shuffle(users)
            for u in users:
                if not self.user_lock[u].acquire(blocking=False):
                    self.count("checks_skipped_busy")
                    continue
                try:
                    self.check_user(u)
                except AssertionError as e:   # only faults, no answer
                    self.count("checks_inconclusive")
                    log("check of %s inconclusive: %s" % (u, e))
                finally:
                    self.user_lock[u].release()
            self.count("check_rounds")

    # -- crashes ----------------------------------------------------------
    def in_flight_creates(self):
        return self.emu.counters()["in_flight"].get("CreateAccessKey", 0)

    def killer(self):
        thresholds = sorted(self.rng.sample(range(6, N_SESSIONS - 15), N_KILLS))
        targeted = set(self.rng.sample(range(N_KILLS), CREATE_KILL_ATTEMPTS))
        create_kills = 0
        for i, th in enumerate(thresholds):
            while not self.stop.is_set():
                with self.lock:
                    if self.started >= th:
                        break
                time.sleep(0.02)
            if self.stop.is_set():
                return
            want_create = i in targeted or MIN_CREATE_KILLS - create_kills >= N_KILLS - i
            kind = "random"
            if want_create:
                deadline = time.monotonic() + 8
                while time.monotonic() < deadline and not self.stop.is_set():
                    if self.in_flight_creates() > 0:
                        kind = "create"
                        break
                    time.sleep(0.01)
            else:
                time.sleep(self.rng.uniform(0, 0.8))
            with self.agent_lock:
                self.agent.kill()
                t = time.time()
                after = self.in_flight_creates() if kind == "create" else 0
                if kind == "create" and after > 0:
                    create_kills += 1
                elif kind == "create":
                    kind = "create-missed"
                # A supervisor restarts the agent (systemd's default
                # RestartSec is 100 ms); after a crash in the middle of a
                # mint, the restart is quick.
                down = self.rng.uniform(0.05, 0.3) if kind == "create" else \
                    self.rng.uniform(0.1, 1.2)
                time.sleep(down)
                if self.wait_creates:
                    wait_for(lambda: self.in_flight_creates() == 0, 30, interval=0.02)
                self.agent.start()
            self.kills.append({"t": t, "kind": kind, "creates_in_flight": after,
                               "down_s": round(down, 2), "after_sessions": th})
            log("kill %d/%d (%s, CreateAccessKey in flight: %d), agent down %.1f s, "
                "restarted" % (i + 1, N_KILLS, kind, after, down))


def run():
    require_root()
    need_driver()
    seed = int(os.environ.get("RAMKEY_SOAK_SEED", random.randrange(1 << 30)))
    log("seed %d" % seed)
    rng = random.Random(seed)
    t_begin = time.monotonic()
    with Workdir() as wd, Users("sk") as users, \
            Emulator(https=True, auto_users=True, seed=seed) as emu:
        pws = [users.add("%02d" % i) for i in range(N_USERS)]
        names = [pw.pw_name for pw in pws]
        log("%d users created in %.1f s" % (N_USERS, time.monotonic() - t_begin))

        # Keys of the users' own (not the agent's).
        own = {}
        for name in rng.sample(names, N_OWN):
            own[name] = emu.create_key(name)["AccessKeyId"]
        other_users = ["rkskother%d" % i for i in range(N_OTHER)]
        other = subprocess.Popen([sys.executable, os.path.join(HERE, "other_host.py"),
                                  emu.endpoint, emu.ca_file, str(seed)] + other_users,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

        soak = Soak(wd, emu, pws, rng)
        soak.agent.start()
        soak.conf = PamConf(wd, soak.agent.socket)
        soak.conf.service("rk-soak", timeout=PAM_TIMEOUT)
        emu.set_faults(**FAULTS)
        t0 = time.time()
        t_run = time.monotonic()
        workers = [threading.Thread(target=soak.worker, args=(i,), daemon=True)
                   for i in range(CONCURRENCY)]
        checker = threading.Thread(target=soak.checker, daemon=True)
        killer = threading.Thread(target=soak.killer, daemon=True)
        try:
            for t in workers + [checker, killer]:
                t.start()
            for t in workers:
                t.join(600)
            killer_done = not killer.is_alive() or (killer.join(15) or not killer.is_alive())
            soak.stop.set()
            checker.join(60)
            killer.join(60)
            run_s = time.monotonic() - t_run
            log("sessions done in %.1f s" % run_s)
            other.stdin.close()
            other_res = json.loads(other.stdout.readline())
            other.wait(30)

            # Drain, with the faults still on.
            with soak.agent_lock:
                if soak.agent.proc.poll() is not None:
                    soak.agent.start()
            t_drain = time.monotonic()
            drained = True
            try:
                doc = wait_drained(soak.agent, DRAIN_TIMEOUT)
            except AssertionError as e:
                drained = False
                doc = soak.agent.status()
                log("not drained: %s\n%s" % (e, json.dumps(doc, indent=1)))
            drain_s = time.monotonic() - t_drain
            emu.clear_faults()

            state = emu.state()
            entries = agent_entries(emu)
            all_entries = emu.log()
            counters = emu.counters()
            minted = [e["key_id"] for e in entries
                      if e["action"] == "CreateAccessKey" and e["result"] == "OK"]
            deleted_ok = [e["key_id"] for e in entries
                          if e["action"] == "DeleteAccessKey" and e["result"] == "OK"]
            leaked = admin_keys(state, names)
            foreign = set(own.values()) | set(other_res["created"])
            touched = [e for e in entries if e.get("key_id") in foreign and
                       e["action"] in ("UpdateAccessKey", "DeleteAccessKey")]
            touched += [e for e in entries if e.get("user") in other_users]
            own_missing = [(u, k) for u, k in own.items()
                           if not any(x["AccessKeyId"] == k and x["Status"] == "Active"
                                      for x in state["users"].get(u, {}).get("keys", []))]
            other_live = {k["AccessKeyId"]: k for u in other_users
                          for k in state["users"].get(u, {}).get("keys", [])}
            other_missing = [k for u, ks in other_res["held"].items() for k in ks
                             if k not in other_live or other_live[k]["Status"] != "Active"]
            agent_faults = sum(1 for e in entries if e.get("fault"))
            alog = soak.agent.log()
            st = soak.stats
            create_kills = sum(1 for k in soak.kills if k["kind"] == "create")
            print()
            print("=== crash soak (seed %d) ===" % seed)
            print("sessions:           %d started, %d opened, %d open failures "
                  "(%d fast: agent down or refused, %d at the %d s PAM timeout), "
                  "%d closed, %d close failures"
                  % (soak.started, st["opened"], st["open_failed"], st["open_failed_fast"],
                     st["open_failed_timeout"], PAM_TIMEOUT, st["closed"], st["close_failed"]))
            print("LimitExceeded:      %d refusals in the agent log"
                  % alog.count("(LimitExceeded.User.AccessKey)"))
            if soak.failures:
                print("open failures:      %s (from the module's syslog lines)"
                      % dict(soak.failures))
            print("kills:              %d (SIGKILL + restart), %d while a CreateAccessKey "
                  "was in flight" % (len(soak.kills), create_kills))
            print("lost mints found:   %d (reconciled after a crash)"
                  % alog.count("it is the lost mint and is revoked"))
            print("RAM calls:          %d by the agent (%s); %d by the test's key checks"
                  % (len(entries), dict(collections.Counter(e["action"] for e in entries)),
                     len(all_entries) - len(entries)))
            print("faults injected:    %d on the agent's calls (%d in all: %s)"
                  % (agent_faults, counters["faults_total"], counters["faults"]))
            print("keys minted:        %d" % len(minted))
            print("keys revoked:       %d deleted by the agent (%d of them minted by it)"
                  % (len(deleted_ok), len(set(deleted_ok) & set(minted))))
            print("keys leaked:        %d %s" % (len(leaked), [(u, k["AccessKeyId"], k["Status"])
                                                          for u, k in leaked]))
            print("foreign keys touched: %d (user-owned %d, other host created %d, "
                  "deleted %d, holds %d)"
                  % (len(touched), len(own), len(other_res["created"]),
                     len(other_res["deleted"]),
                     sum(len(v) for v in other_res["held"].values())))
            print("key checks:         %d keys checked, %d file checks, %d rounds, "
                  "%d skipped (user busy), %d inconclusive"
                  % (st["key_checks"], st["file_checks"], st["check_rounds"],
                     st["checks_skipped_busy"], st["checks_inconclusive"]))
            print("violations:         %s" % {k: len(v) for k, v in soak.violations.items()})
            print("drain:              %s in %.1f s; ambiguous keys %s"
                  % ("done" if drained else "NOT DONE", drain_s, doc.get("ambiguous_keys")))
            print("time:               run %.1f s, total %.1f s"
                  % (run_s, time.monotonic() - t_begin))
            print()

            problems = []
            if not killer_done or len(soak.kills) != N_KILLS:
                problems.append("only %d of %d kills happened" % (len(soak.kills), N_KILLS))
            if create_kills < MIN_CREATE_KILLS:
                problems.append("only %d kills with a CreateAccessKey in flight"
                                % create_kills)
            if soak.started != N_SESSIONS:
                problems.append("only %d sessions started" % soak.started)
            if not drained:
                problems.append("the agent did not drain within %d s" % DRAIN_TIMEOUT)
            if leaked:
                problems.append("%d keys minted by the agent remain: %s"
                                % (len(leaked), [(u, k["AccessKeyId"], k["Status"])
                                                 for u, k in leaked]))
                for u, k in leaked:
                    print("leaked " + explain_leak(entries, kills=soak.kills, user=u,
                                                   kid=k["AccessKeyId"], agent_log=alog))
            if doc.get("ambiguous_keys"):
                problems.append("ambiguous keys reported: %s" % doc["ambiguous_keys"])
            if touched:
                problems.append("foreign keys touched: %s" % touched[:5])
            if own_missing:
                problems.append("user-owned keys gone or changed: %s" % own_missing)
            if other_missing:
                problems.append("other host's keys gone or changed: %s" % other_missing)
            for kind, msgs in soak.violations.items():
                problems.append("%d x %s, e.g. %s" % (len(msgs), kind, msgs[0]))
            if problems:
                with open(soak.agent.log_path, errors="replace") as f:
                    full = f.read()
                keep = os.environ.get("RAMKEY_SOAK_ARTIFACTS")
                if keep:
                    os.makedirs(keep, exist_ok=True)
                    dst = os.path.join(keep, "soak-%d-agent.log" % seed)
                    with open(dst, "w") as f:
                        f.write(full)
                    with open(os.path.join(keep, "soak-%d-emulator-log.json" % seed), "w") as f:
                        json.dump(all_entries, f)
                    print("agent log and emulator log kept in %s" % keep)
                print("agent log (tail):\n" + full[-3000:])
                print("FAILED:\n  " + "\n  ".join(problems))
                return 1
            print("OK")
            return 0
        finally:
            soak.stop.set()
            if other.poll() is None:
                other.kill()
                other.wait()
            # The killer may be restarting the agent right now: let it
            # finish, then stop whatever agent runs.
            if killer.is_alive():
                killer.join(30)
            with soak.agent_lock:
                soak.agent.kill()


if __name__ == "__main__":
    sys.exit(run())
