"""agent.metrics: the agent's metrics, as `ramkey-agent-client metrics`
prints them and as metrics_file holds them.

  - a real Prometheus parser (Debian's python3-prometheus-client) reads
    the text; every family has HELP and TYPE, names start with ramkey_,
    counters end in _total, times are in seconds, histogram buckets are
    cumulative and end in +Inf = _count;
  - ramkey_mints_total and ramkey_revocations_total (and the cloud calls
    behind them) move by exactly the mints, refusals and revocations the
    test makes;
  - no label value is a user name, a RAM user or a key id;
  - only trusted callers get them;
  - metrics_file is mode 0644, readable by another account, and replaced
    atomically: a reader polling it never sees a partial file, and no
    temporary file is left behind.
"""

import glob
import os
import subprocess
import sys
import time
import unittest

from emulator import Emulator
from ramkey_fixture import (Agent, Users, Workdir, as_user_cmd,
                            read_json_secret_file, wait_for)


def prometheus_parser():
    """text_string_to_metric_families from Debian's python3-prometheus-client
    (scripts/deps installs it), also when python3 is not Debian's own."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")
        from prometheus_client.parser import text_string_to_metric_families
    return text_string_to_metric_families


PARSE = prometheus_parser()

FAMILIES = {
    "ramkey_build_info": "gauge",
    "ramkey_leases_live": "gauge",
    "ramkey_revocations_pending": "gauge",
    "ramkey_store_writable": "gauge",
    "ramkey_cloud_healthy": "gauge",
    "ramkey_source_credential_expiry_timestamp_seconds": "gauge",
    "ramkey_mints_total": "counter",
    "ramkey_revocations_total": "counter",
    "ramkey_cloud_calls_total": "counter",
    "ramkey_cloud_retries_total": "counter",
    "ramkey_cloud_call_duration_seconds": "histogram",
}


def parse(text):
    """{(sample name, sorted label items): value} and {family: type}, as
    the Prometheus parser reads them (it raises on malformed text)."""
    samples, types = {}, {}
    for fam in PARSE(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in samples:
                raise AssertionError("sample %r twice" % (key,))
            samples[key] = s.value
    return samples, types


def read(path):
    with open(path) as f:
        return f.read()


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def check_conventions(test, text):
    """What the parser lets through but Prometheus's conventions want."""
    lines = text.split("\n")
    test.assertEqual(lines[-1], "", "the text ends in a newline")
    helps, types = set(), {}
    for ln in lines[:-1]:
        if ln.startswith("# HELP "):
            helps.add(ln.split()[2])
        elif ln.startswith("# TYPE "):
            _, _, name, typ = ln.split()
            test.assertIn(name, helps, "HELP before TYPE for %s" % name)
            types[name] = typ
        else:
            test.assertFalse(ln.startswith("#"), ln)
            name = ln.split("{")[0].split(" ")[0]
            test.assertTrue(name.startswith("ramkey_"), ln)
            fam = name
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix) and name[:-len(suffix)] in types \
                        and types[name[:-len(suffix)]] == "histogram":
                    fam = name[:-len(suffix)]
            test.assertIn(fam, types, "a sample of a family with TYPE: %s" % ln)
    for name, typ in types.items():
        test.assertTrue(name.startswith("ramkey_"), name)
        if typ == "counter":
            test.assertTrue(name.endswith("_total"), name)
        for unit in ("_ms", "_milliseconds", "_minutes", "_hours"):
            test.assertNotIn(unit, name, "base units: %s" % name)
    test.assertEqual({n: types.get(n) for n in FAMILIES}, FAMILIES)


def check_histograms(test, samples):
    series = {}
    for (name, labels), v in samples.items():
        if name == "ramkey_cloud_call_duration_seconds_bucket":
            d = dict(labels)
            le = d.pop("le")
            series.setdefault(d["action"], []).append(
                (float("inf") if le == "+Inf" else float(le), v))
    test.assertTrue(series)
    for action, buckets in series.items():
        buckets.sort()
        counts = [c for _, c in buckets]
        test.assertEqual(counts, sorted(counts), "cumulative: %s" % action)
        test.assertEqual(buckets[-1][0], float("inf"))
        test.assertEqual(buckets[-1][1], value(
            samples, "ramkey_cloud_call_duration_seconds_count", action=action))


class Metrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.wd = Workdir()
        cls.users = Users("mt")
        cls.emu = Emulator(https=True, auto_users=True)
        cls.prom_dir = cls.wd.join("textfile")
        os.mkdir(cls.prom_dir)
        os.chmod(cls.prom_dir, 0o755)
        cls.prom = os.path.join(cls.prom_dir, "ramkey.prom")
        cls.agent = Agent(cls.wd, cls.emu, metrics_file=cls.prom,
                          metrics_interval="1s")
        cls.agent.start()
        cls.names = set()
        cls.key_ids = set()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()
        cls.emu.stop()
        cls.users.cleanup()
        cls.wd.cleanup()

    def scrape(self):
        r = self.agent.client("metrics")
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def add_user(self, name):
        pw = self.users.add(name)
        self.names.add(pw.pw_name)
        return pw

    def fetch(self, pw, expect=0):
        path = os.path.join(pw.pw_dir, "k.json")
        r = self.agent.client("fetch", "--user", pw.pw_name, "--secret-file", path)
        self.assertEqual(r.returncode, expect, r.stdout + r.stderr)
        if expect == 0:
            kid = read_json_secret_file(path)[0]
            self.key_ids.add(kid)
            return kid
        return None

    def test_1_text_parses_and_follows_the_conventions(self):
        text = self.scrape()
        samples, types = parse(text)
        check_conventions(self, text)
        check_histograms(self, samples)
        self.assertEqual(value(samples, "ramkey_build_info", version="0.1.0"), 1)
        self.assertEqual(value(samples, "ramkey_store_writable"), 1)
        self.assertEqual(value(samples, "ramkey_cloud_healthy"), 1)
        # A static AccessKey does not expire: the gauge has no sample.
        self.assertNotIn("\nramkey_source_credential_expiry_timestamp_seconds ", text)

    def test_2_mints_and_revocations_move_by_exactly_what_happened(self):
        before, _ = parse(self.scrape())
        pws = [self.add_user("u%d" % i) for i in range(3)]
        kids = [self.fetch(pw) for pw in pws]
        # A refusal: the RAM user already holds two keys of its own.
        full = self.add_user("full")
        for _ in range(2):
            self.key_ids.add(self.emu.create_key(full.pw_name)["AccessKeyId"])
        self.fetch(full, expect=5)
        mid, _ = parse(self.scrape())

        def delta(s, name, **labels):
            return value(s, name, **labels) - value(before, name, **labels)

        self.assertEqual(delta(mid, "ramkey_mints_total", result="ok"), 3)
        self.assertEqual(delta(mid, "ramkey_mints_total", result="refused"), 1)
        self.assertEqual(delta(mid, "ramkey_mints_total", result="failed"), 0)
        self.assertEqual(delta(mid, "ramkey_leases_live"), 3)
        self.assertEqual(delta(mid, "ramkey_cloud_calls_total",
                               action="CreateAccessKey", result="ok"), 3)
        self.assertEqual(delta(mid, "ramkey_cloud_calls_total",
                               action="CreateAccessKey", result="api_error"), 1)
        self.assertEqual(delta(mid, "ramkey_cloud_call_duration_seconds_count",
                               action="CreateAccessKey"), 4)
        # Revoke two of the three.
        for pw in pws[:2]:
            r = self.agent.client("revoke", "--user", pw.pw_name)
            self.assertEqual(r.returncode, 0, r.stderr)
        for kid in kids[:2]:
            wait_for(lambda: self.emu.key(kid) is None, 10, what="key deleted")
        wait_for(lambda: value(parse(self.scrape())[0],
                               "ramkey_revocations_pending") == 0, 10,
                 what="no revocation pending")
        after, _ = parse(self.scrape())
        self.assertEqual(delta(after, "ramkey_revocations_total", result="deleted"), 2)
        self.assertEqual(delta(after, "ramkey_revocations_total", result="failed_try"), 0)
        self.assertEqual(delta(after, "ramkey_leases_live"), 1)
        for action in ("UpdateAccessKey", "DeleteAccessKey"):
            self.assertEqual(delta(after, "ramkey_cloud_calls_total",
                                   action=action, result="ok"), 2)
        self.assertEqual(delta(after, "ramkey_mints_total", result="ok"), 3)
        check_histograms(self, after)

    def test_3_no_user_name_or_key_in_any_label(self):
        if not self.names:
            self.fetch(self.add_user("lbl"))
        text = self.scrape()
        samples, _ = parse(text)
        values = {v for _, labels in samples for _, v in labels}
        secrets = set(self.names) | set(self.key_ids)
        for v in values:
            for s in secrets:
                self.assertNotIn(s, v)
        for s in secrets:
            self.assertNotIn(s, text)
            self.assertNotIn(s[:4] + "****" + s[-4:], text)
        # Labels only of the fixed sets: nothing a request could choose.
        allowed = {"version", "result", "action", "reason", "le"}
        self.assertTrue({k for _, labels in samples for k, _ in labels} <= allowed)

    def test_4_only_trusted_callers(self):
        pw = self.add_user("nt")
        r = self.agent.client("metrics", user=pw)
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
        self.assertIn("trusted", r.stderr)
        self.assertEqual(r.stdout, "")

    def test_5_metrics_file_is_replaced_atomically_and_readable(self):
        wait_for(lambda: os.path.exists(self.prom), 10, what="metrics_file")
        st = os.stat(self.prom)
        self.assertEqual(st.st_mode & 0o7777, 0o644)
        reads, inodes = 0, set()
        families = None
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            with open(self.prom) as f:
                inodes.add(os.fstat(f.fileno()).st_ino)
                text = f.read()
            self.assertTrue(text.endswith("\n"), "partial file: %r" % text[-80:])
            samples, types = parse(text)
            if families is None:
                families = set(types)
            self.assertEqual(set(types), families)
            reads += 1
        self.assertGreaterEqual(len(inodes), 2, "rewritten every metrics_interval")
        check_conventions(self, text)
        # The same counts as the socket gives (it is rewritten each second).
        want = value(parse(self.scrape())[0], "ramkey_mints_total", result="ok")
        wait_for(lambda: value(parse(read(self.prom))[0],
                               "ramkey_mints_total", result="ok") == want,
                 5, what="metrics_file to catch up")
        # Another account reads it.
        pw = self.add_user("rd")
        r = subprocess.run(as_user_cmd(pw, ["cat", self.prom]),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        parse(r.stdout)
        print("%d reads of metrics_file, %d versions, all whole" % (reads, len(inodes)))

    def test_6_reload_moves_the_file_and_nothing_is_left_behind(self):
        other = os.path.join(self.prom_dir, "moved.prom")
        self.agent.write_config(metrics_file=other)
        self.agent.reload()
        wait_for(lambda: os.path.exists(other), 10, what="the new metrics_file")
        parse(read(other))
        self.agent.write_config(metrics_file=self.prom)
        self.agent.reload()
        time.sleep(1.5)
        leftovers = glob.glob(os.path.join(self.prom_dir, ".*"))
        self.assertEqual(leftovers, [], "temporary files left behind")


if __name__ == "__main__":
    unittest.main(verbosity=2)
