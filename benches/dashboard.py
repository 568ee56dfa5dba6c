#!/usr/bin/env python3
"""Dashboard queries: inflow against InfluxDB 1.6 and VictoriaMetrics on the questions a Grafana
dashboard asks, over one generated corpus loaded into all three.

The corpus is Telegraf's `cpu` measurement: HOSTS hosts (`host=host_0000`, …, with `cpu`,
`rack` and `region` tags derived from the host), ten float fields, one point per host every
10 s over HOURS hours (× DAYS) ending at the last whole minute before the start. Values come
from a seeded generator, so every run writes the same points at the same offsets from its end.

Each server is started here on ephemeral 127.0.0.1 ports with its data in one temporary
directory and stopped at exit. The corpus goes to each in turn, gzip batches of 5,000 lines over
a few keep-alive connections (v1 `/write`; VictoriaMetrics takes the same line protocol at its
`/write`); a server is ready once it counts every point (and, for inflow, once its buffer is in
Parquet and compaction has gone quiet). The questions use fixed absolute time bounds, so every
server answers the same question in every round. After a warm-up, each round asks every
question of every server, interleaved. Printed on stdout (Markdown): per question the median
client wall time per server and the ratios, the median of the ratios, then load time, peak RSS
while loading and while querying, and disk use per server. inflow's InfluxQL answers are
compared with InfluxDB 1.6's (same series, tags, columns, values; floats to a relative 1e-9),
and VictoriaMetrics' last values and host list with 1.6's as a check of the corpus; the exit
status is 1 if anything differs.

Usage: benches/dashboard.sh [--hosts N] [--hours H] [--days D] [--rounds R] [--inflow-flags F]
                            [--only inflow,influxdb,vm] [--keep]
"""

import argparse
import atexit
import http.client
import json
import math
import os
import random
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zlib

DB = "bench"
TOKEN = "bench"
INFLUXD = "/usr/bin/influxd"
VICTORIA = "/usr/bin/victoria-metrics"
SERVER_NAMES = ("inflow", "influxdb", "vm")
TITLES = {"inflow": "inflow", "influxdb": "InfluxDB 1.6", "vm": "VictoriaMetrics"}
STEP_S = 10
FIELDS = (
    # Telegraf's cpu plugin, with the range each percentage is drawn from.
    ("usage_user", 0.0, 60.0),
    ("usage_system", 0.0, 30.0),
    ("usage_idle", 10.0, 100.0),
    ("usage_nice", 0.0, 5.0),
    ("usage_iowait", 0.0, 20.0),
    ("usage_irq", 0.0, 2.0),
    ("usage_softirq", 0.0, 5.0),
    ("usage_steal", 0.0, 3.0),
    ("usage_guest", 0.0, 1.0),
    ("usage_guest_nice", 0.0, 1.0),
)
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1")
TABLE = 10007  # values per field (prime): a point's value is TABLE[(i·a + h·b) mod TABLE]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------


class Corpus:
    """The generated line protocol, written once as gzip batches to a file every loader reads."""

    def __init__(self, hosts, span_s, end_s, seed, batch_lines):
        self.hosts = hosts
        self.end = end_s  # exclusive, minute-aligned: points at start … end-10 s
        self.start = end_s - span_s
        self.steps = span_s // STEP_S
        self.points = self.steps * hosts
        self.seed = seed
        self.batch_lines = batch_lines
        self.path = None
        self.batches = 0
        self.bytes = 0

    def host(self, h):
        return f"host_{h:04d}"

    def write(self, path):
        rng = random.Random(self.seed)
        tables, mult_i, host_off = [], [], []
        for name, lo, hi in FIELDS:
            tables.append([f"{name}={round(rng.uniform(lo, hi), 2)!r}" for _ in range(TABLE)])
            mult_i.append(rng.randrange(1, TABLE))
            b = rng.randrange(1, TABLE)
            host_off.append([h * b % TABLE for h in range(self.hosts)])
        prefixes = [
            f"cpu,cpu=cpu-total,host={self.host(h)},rack=rack_{h // 4 % 25:02d},"
            f"region={REGIONS[h % len(REGIONS)]} "
            for h in range(self.hosts)
        ]
        nf = len(FIELDS)
        self.path = path
        raw_bytes = 0
        with open(path, "wb") as out:
            lines = []
            for i in range(self.steps):
                ts = f" {self.start + i * STEP_S}\n"
                offs = [i * mult_i[f] % TABLE for f in range(nf)]
                cols = list(zip(tables, offs, host_off))
                for h in range(self.hosts):
                    lines.append(
                        prefixes[h]
                        + ",".join([t[(o + ho[h]) % TABLE] for t, o, ho in cols])
                        + ts
                    )
                    if len(lines) == self.batch_lines:
                        raw_bytes += self._flush(out, lines)
                        lines = []
                if i % 8640 == 8639:
                    log(f"  corpus: {i + 1} of {self.steps} steps")
            if lines:
                raw_bytes += self._flush(out, lines)
        self.bytes = raw_bytes
        return self

    def _flush(self, out, lines):
        body = "".join(lines).encode()
        z = zlib.compressobj(1, zlib.DEFLATED, 31)
        gz = z.compress(body) + z.flush()
        out.write(struct.pack("<I", len(gz)))
        out.write(gz)
        self.batches += 1
        return len(body)

    def reader(self):
        return BatchReader(self.path)


class BatchReader:
    """Hands the corpus's gzip batches to loader threads, one at a time, in order."""

    def __init__(self, path):
        self.f = open(path, "rb")
        self.lock = threading.Lock()

    def next(self):
        with self.lock:
            head = self.f.read(4)
            if len(head) < 4:
                return None
            (n,) = struct.unpack("<I", head)
            return self.f.read(n)

    def close(self):
        self.f.close()


# ---------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------

INFLUXD_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"

[meta]
  dir = "{dir}/meta"
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"

[coordinator]
  query-timeout = "0s"
  max-select-point = 0
  max-select-series = 0
  max-select-buckets = 0

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false
  max-row-limit = 0

[continuous_queries]
  enabled = false

[logging]
  level = "warn"
  suppress-logo = true
"""


class Server:
    """One server process on an ephemeral loopback port, with its data under `dir`."""

    name = None
    write_path = None

    def __init__(self, work, args):
        self.args = args
        self.dir = os.path.join(work, self.name)
        os.makedirs(self.dir)
        self.proc = None
        self.port = None
        self.conn = None
        self.load_s = None
        self.ready_s = None
        self.load_retries = 0
        self.load_hwm = None
        self.query_hwm = None
        self.rss_after_load = None

    # -- process ------------------------------------------------------------------------

    def command(self):
        raise NotImplementedError

    def health_path(self):
        return "/health"

    def start(self):
        for _ in range(3):
            self.port = free_port()
            cmd, env = self.command()
            with open(os.path.join(self.dir, "server.log"), "wb") as out:
                self.proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
                )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    st, _ = self.request("GET", self.health_path(), timeout=1)
                    if st in (200, 204):
                        log(f"{self.name}: pid {self.proc.pid} on 127.0.0.1:{self.port}")
                        return
                except OSError:
                    pass
                time.sleep(0.1)
            tail = self.log_tail()
            self.stop()
            if "address already in use" not in tail.lower():
                raise RuntimeError(f"{self.name} did not start:\n{tail}")
        raise RuntimeError(f"{self.name}: no free port after 3 attempts")

    def log_tail(self):
        try:
            with open(os.path.join(self.dir, "server.log"), "rb") as f:
                return f.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def status_kib(self, key):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except (OSError, AttributeError):
            pass
        return None

    def reset_hwm(self):
        try:
            with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError as e:
            log(f"{self.name}: could not reset the RSS high-water mark: {e}")

    def disk_bytes(self):
        total = 0
        for root, _, files in os.walk(self.dir):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_size
                except OSError:
                    pass
        return total

    # -- HTTP ---------------------------------------------------------------------------

    def headers(self):
        return {}

    def request(self, method, path, params=None, body=None, headers=None, timeout=None):
        """One request on this thread's keep-alive connection; returns (status, body)."""
        if params:
            path += "?" + urllib.parse.urlencode(params)
        h = {**self.headers(), **(headers or {})}
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port)
            self.conn.timeout = timeout or self.args.timeout
            if self.conn.sock is not None:
                self.conn.sock.settimeout(self.conn.timeout)
            try:
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A keep-alive connection the server closed while idle: once more on a new one.
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
            except OSError:
                self.conn.close()
                self.conn = None
                raise
        raise AssertionError("unreachable")

    # -- loading ------------------------------------------------------------------------

    def create_database(self):
        pass

    def load(self, corpus):
        """Sends every batch over `--connections` connections; returns when all are in."""
        self.create_database()
        reader = corpus.reader()
        errors = []
        retries = [0]
        done = [0]
        lock = threading.Lock()

        def worker():
            conn = None
            try:
                while not errors:
                    gz = reader.next()
                    if gz is None:
                        return
                    for attempt in range(200):
                        try:
                            if conn is None:
                                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
                            conn.request(
                                "POST",
                                self.write_path,
                                body=gz,
                                headers={
                                    **self.headers(),
                                    "Content-Encoding": "gzip",
                                    "Content-Type": "text/plain; charset=utf-8",
                                },
                            )
                            r = conn.getresponse()
                            text = r.read()
                            if r.status == 204:
                                break
                            wait = float(r.getheader("retry-after") or 1)
                            if r.status not in (429, 500, 503):
                                raise RuntimeError(f"/write answered {r.status}: {text[:300]!r}")
                            if attempt == 0 or attempt % 20 == 19:
                                log(f"{self.name}: /write answered {r.status} ({text[:120]!r}); retrying")
                        except (http.client.HTTPException, OSError) as e:
                            if conn is not None:
                                conn.close()
                            conn = None
                            wait = 1
                            log(f"{self.name}: /write failed ({e}); retrying")
                        with lock:
                            retries[0] += 1
                        time.sleep(min(wait, 5))
                    else:
                        raise RuntimeError("/write kept failing")
                    with lock:
                        done[0] += 1
                        if done[0] % 200 == 0:
                            log(f"{self.name}: {done[0]} of {corpus.batches} batches")
            except Exception as e:  # noqa: BLE001 — handed to the main thread
                errors.append(e)
            finally:
                if conn is not None:
                    conn.close()

        started = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(self.args.connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        reader.close()
        if errors:
            raise RuntimeError(f"{self.name}: loading failed: {errors[0]}")
        self.load_s = time.monotonic() - started
        self.load_retries = retries[0]
        log(f"{self.name}: loaded {corpus.points:,} points in {self.load_s:.1f} s "
            f"({corpus.points / self.load_s:,.0f} points/s, {self.load_retries} retries)")

    def count(self, corpus):
        raise NotImplementedError

    def wait_ready(self, corpus):
        """Waits until the server counts every point (up to --ready-timeout)."""
        started = time.monotonic()
        deadline = started + self.args.ready_timeout
        last = None
        while True:
            try:
                last = self.count(corpus)
            except (OSError, http.client.HTTPException, ValueError, KeyError, IndexError) as e:
                last = f"error: {e}"
            if last == corpus.points:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: counts {last} points, expected {corpus.points}")
            log(f"{self.name}: counts {last} of {corpus.points} points; waiting")
            time.sleep(2)
        self.settle()
        self.ready_s = time.monotonic() - started
        log(f"{self.name}: ready {self.ready_s:.1f} s after loading")

    def settle(self):
        pass

    # -- questions ----------------------------------------------------------------------

    def ask(self, question):
        raise NotImplementedError


class InfluxQLServer(Server):
    write_path = f"/write?db={DB}&precision=s"

    def influxql(self, q, timeout=None):
        return self.request("GET", "/query", {"db": DB, "epoch": "ms", "q": q}, timeout=timeout)

    def count(self, corpus):
        st, body = self.influxql(
            f"SELECT count(usage_user) FROM cpu WHERE time >= {corpus.start * 1000}ms "
            f"AND time < {corpus.end * 1000}ms"
        )
        if st != 200:
            return f"HTTP {st}: {body[:200]!r}"
        res = json.loads(body)["results"][0]
        if "series" not in res:
            return res.get("error", 0)
        return res["series"][0]["values"][0][1]

    def ask(self, question):
        return self.influxql(question.influxql)


class Inflow(InfluxQLServer):
    name = "inflow"

    def command(self):
        cmd = [
            self.args.inflow_bin, "serve",
            "--data-dir", os.path.join(self.dir, "data"),
            "--http-bind", f"127.0.0.1:{self.port}",
            "--log-filter", "warn",
            *shlex.split(self.args.inflow_flags),
        ]
        return cmd, {**os.environ, "INFLOW_ADMIN_TOKEN": TOKEN}

    def headers(self):
        return {"Authorization": f"Token {TOKEN}"}

    def buffer_bytes(self):
        st, body = self.request("GET", "/metrics")
        if st != 200:
            return None
        total = 0
        for line in body.decode().splitlines():
            if line.startswith("inflow_ingester_buffer_bytes"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def newest_parquet_age(self):
        newest = 0
        for root, _, files in os.walk(os.path.join(self.dir, "data")):
            for name in files:
                if name.endswith(".parquet"):
                    try:
                        newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
                    except OSError:
                        pass
        return time.time() - newest if newest else None

    def settle(self):
        """Waits for the buffer to be in Parquet (a snapshot every 30 s) and for compaction
        (a round a minute) to go quiet: no new Parquet file for --settle seconds."""
        said = 0.0
        while (b := self.buffer_bytes()) != 0:
            if time.monotonic() - said >= 10:
                log(f"inflow: {b:,.0f} bytes buffered; waiting for the snapshot")
                said = time.monotonic()
            time.sleep(1)
        if self.args.settle <= 0:
            return
        while True:
            age = self.newest_parquet_age()
            if age is not None and age >= self.args.settle:
                return
            wait = self.args.settle - (age or 0)
            log(f"inflow: newest Parquet file {age or 0:.0f} s old; waiting {wait:.0f} s for compaction to go quiet")
            time.sleep(max(1.0, wait))


class Influxd(InfluxQLServer):
    name = "influxdb"

    def command(self):
        conf = os.path.join(self.dir, "influxd.conf")
        with open(conf, "w") as f:
            f.write(INFLUXD_CONFIG.format(dir=self.dir, http=self.port, rpc=free_port()))
        return [INFLUXD, "run", "-config", conf], {**os.environ, "INFLUXDB_REPORTING_DISABLED": "true"}

    def health_path(self):
        return "/ping"

    def create_database(self):
        st, body = self.request(
            "POST", "/query", body=urllib.parse.urlencode({"q": f"CREATE DATABASE {DB}"}),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        if st != 200:
            raise RuntimeError(f"influxdb: CREATE DATABASE answered {st}: {body[:300]!r}")


class Victoria(Server):
    name = "vm"
    # No `db`: VictoriaMetrics would add it as a label to every series.
    write_path = "/write?precision=s"

    def command(self):
        cmd = [
            VICTORIA,
            f"-storageDataPath={os.path.join(self.dir, 'data')}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=100y",
            "-loggerLevel=ERROR",
        ]
        if not self.args.vm_cache:
            cmd.append("-search.disableCache")
        return cmd, dict(os.environ)

    def count(self, corpus):
        self.request("GET", "/internal/force_flush")
        st, body = self.request(
            "GET", "/api/v1/query",
            {"query": f"sum(count_over_time(cpu_usage_user[{corpus.end - corpus.start + 60}s]))",
             "time": corpus.end},
        )
        if st != 200:
            return f"HTTP {st}: {body[:200]!r}"
        result = json.loads(body)["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0

    def ask(self, question):
        path, params = question.vm
        return self.request("GET", path, params)


SERVER_CLASSES = {"inflow": Inflow, "influxdb": Influxd, "vm": Victoria}

# ---------------------------------------------------------------------------------------
# Questions
# ---------------------------------------------------------------------------------------


class Question:
    def __init__(self, label, influxql, vm):
        self.label = label
        self.influxql = influxql
        self.vm = vm  # (path, params)


def dur(s):
    if s % 86400 == 0:
        return f"{s // 86400} d"
    if s % 3600 == 0:
        return f"{s // 3600} h"
    return f"{s // 60} m"


def questions(corpus, args):
    """The dashboard's questions over fixed bounds ending at the corpus's end (minute-aligned)."""
    t = corpus.end
    span = corpus.end - corpus.start
    day = min(args.hours * 3600, span)
    host = corpus.host(min(42, corpus.hosts - 1))

    def tr(seconds):
        return f"time >= {(t - seconds) * 1000}ms AND time < {t * 1000}ms"

    def vm_range(query, seconds, step):
        # VictoriaMetrics evaluates at start, start+step, … end, each over (e-step, e]: as many
        # windows of as many points as InfluxQL's [w, w+step) over [t-seconds, t), each one
        # sample later (and VictoriaMetrics rounds start down to a multiple of step).
        return ("/api/v1/query_range",
                {"query": query, "start": t - seconds + step, "end": t, "step": f"{step}s"})

    def mean_one(seconds, step):
        return Question(
            f"one host, mean per {dur(step)}, last {dur(seconds)}",
            f"SELECT mean(usage_user) FROM cpu WHERE host = '{host}' AND {tr(seconds)} "
            f"GROUP BY time({step}s)",
            vm_range(f'avg_over_time(cpu_usage_user{{host="{host}"}}[{step}s])', seconds, step),
        )

    def mean_all(seconds, step):
        return Question(
            f"all hosts, mean per {dur(step)} by host, last {dur(seconds)}",
            f"SELECT mean(usage_user) FROM cpu WHERE {tr(seconds)} GROUP BY time({step}s), host",
            vm_range(f"avg_over_time(cpu_usage_user[{step}s])", seconds, step),
        )

    last = Question(
        f"last value per host, last {dur(day)}",
        f"SELECT last(usage_user) FROM cpu WHERE {tr(day)} GROUP BY host",
        ("/api/v1/query", {"query": f"last_over_time(cpu_usage_user[{day}s])", "time": t}),
    )
    tags = Question(
        "tag values of host",
        'SHOW TAG VALUES FROM cpu WITH KEY = "host"',
        ("/api/v1/label/host/values",
         {"match[]": "cpu_usage_user", "start": corpus.start, "end": t}),
    )
    six = min(6 * 3600, span)
    max_all = Question(
        f"max over all hosts per 1 m, last {dur(six)}",
        f"SELECT max(usage_user) FROM cpu WHERE {tr(six)} GROUP BY time(60s)",
        vm_range("max(max_over_time(cpu_usage_user[60s]))", six, 60),
    )
    hour = min(3600, span)
    if args.days > 1:
        return [mean_all(span, 600), mean_one(day, 300), mean_all(day, 600), last]
    return [mean_one(hour, 60), mean_all(hour, 60), mean_one(day, 300), mean_all(day, 600),
            last, tags, max_all]


# ---------------------------------------------------------------------------------------
# Comparing answers (the rules of tests/clients/influxql_compare.py, for successful answers)
# ---------------------------------------------------------------------------------------


class Diff(Exception):
    pass


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def same_cell(a, b):
    if _num(a) and _num(b):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-300)
    return type(a) is type(b) and a == b


def compare_influxql(expected, actual):
    """Raises Diff naming each difference (at most 10) between 1.6's and inflow's JSON answers."""
    diffs = []

    def note(msg):
        diffs.append(msg)
        if len(diffs) >= 10:
            raise Diff("\n".join(diffs + ["(stopped after 10 differences)"]))

    ra, rb = expected.get("results", []), actual.get("results", [])
    if set(expected) != set(actual):
        note(f"top-level keys {sorted(expected)} vs {sorted(actual)}")
    if len(ra) != len(rb):
        raise Diff(f"{len(ra)} results vs {len(rb)}")
    for i, (x, y) in enumerate(zip(ra, rb)):
        p = f"results[{i}]"
        if set(x) != set(y):
            note(f"{p}: keys {sorted(x)} vs {sorted(y)}")
        if x.get("error") != y.get("error"):
            note(f"{p}.error: {x.get('error')!r} vs {y.get('error')!r}")
        sa, sb = x.get("series") or [], y.get("series") or []
        if len(sa) != len(sb):
            ids_a = {(s.get("name"), json.dumps(s.get("tags"), sort_keys=True)) for s in sa}
            ids_b = {(s.get("name"), json.dumps(s.get("tags"), sort_keys=True)) for s in sb}
            note(f"{p}.series: {len(sa)} vs {len(sb)}; only in 1.6: {sorted(ids_a - ids_b)[:5]}, "
                 f"only in inflow: {sorted(ids_b - ids_a)[:5]}")
            continue
        for j, (s, u) in enumerate(zip(sa, sb)):
            q = f"{p}.series[{j}]"
            if set(s) != set(u):
                note(f"{q}: keys {sorted(s)} vs {sorted(u)}")
            for k in ("name", "tags", "columns", "partial"):
                if s.get(k) != u.get(k):
                    note(f"{q}.{k}: {json.dumps(s.get(k))} vs {json.dumps(u.get(k))}")
            va, vb = s.get("values") or [], u.get("values") or []
            if len(va) != len(vb):
                note(f"{q} ({json.dumps(s.get('tags'))}): {len(va)} rows vs {len(vb)}; "
                     f"first rows {json.dumps(va[:2])} vs {json.dumps(vb[:2])}")
                continue
            cols = s.get("columns") or []
            for r, (row_a, row_b) in enumerate(zip(va, vb)):
                if len(row_a) != len(row_b) or not all(map(same_cell, row_a, row_b)):
                    note(f"{q} ({json.dumps(s.get('tags'))}).values[{r}] {cols}: "
                         f"{json.dumps(row_a)} vs {json.dumps(row_b)}")
    if diffs:
        raise Diff("\n".join(diffs))


def check_vm(questions_, answers):
    """VictoriaMetrics' last values and host list against 1.6's: a check of the corpus."""
    problems = []
    for q in questions_:
        a, b = answers.get(("influxdb", q.label)), answers.get(("vm", q.label))
        if a is None or b is None:
            continue
        ja, jb = json.loads(a), json.loads(b)
        if q.label.startswith("last value"):
            want = {s["tags"]["host"]: s["values"][0][1] for s in ja["results"][0].get("series", [])}
            got = {r["metric"].get("host"): float(r["value"][1]) for r in jb["data"]["result"]}
            if set(want) != set(got):
                problems.append(f"{q.label}: hosts differ ({len(want)} vs {len(got)})")
            bad = [h for h in want if h in got and not math.isclose(want[h], got[h], rel_tol=1e-9)]
            if bad:
                problems.append(f"{q.label}: {len(bad)} values differ, e.g. {bad[0]}: "
                                f"{want[bad[0]]} vs {got[bad[0]]}")
        elif q.label.startswith("tag values"):
            want = [v[1] for v in ja["results"][0]["series"][0]["values"]]
            if sorted(want) != sorted(jb["data"]):
                problems.append(f"{q.label}: {len(want)} hosts vs {len(jb['data'])}")
    return problems


# ---------------------------------------------------------------------------------------
# Running and reporting
# ---------------------------------------------------------------------------------------


class Timing:
    def __init__(self):
        self.ms = []
        self.failures = {}  # status or error kind -> count

    def add_failure(self, what):
        self.failures[what] = self.failures.get(what, 0) + 1

    def median(self):
        return statistics.median(self.ms) if self.ms else None

    def cell(self):
        m = self.median()
        fails = ", ".join(f"{k} ×{v}" for k, v in sorted(self.failures.items()))
        if m is None:
            return fails or "—"
        text = f"{m:.1f}" if m < 100 else f"{m:,.0f}"
        return f"{text} ({fails})" if fails else text


def ask_timed(server, question, timing, answers):
    started = time.perf_counter()
    try:
        st, body = server.ask(question)
    except TimeoutError:
        timing.add_failure("timeout")
        log(f"{server.name}: '{question.label}' timed out after {server.args.timeout} s")
        return
    except (OSError, http.client.HTTPException) as e:
        timing.add_failure("error")
        log(f"{server.name}: '{question.label}' failed: {e}")
        return
    ms = (time.perf_counter() - started) * 1000
    if st != 200:
        timing.add_failure(str(st))
        log(f"{server.name}: '{question.label}' answered {st}: {body[:200]!r}")
        return
    timing.ms.append(ms)
    answers.setdefault((server.name, question.label), body)


def shape(body):
    """'S series, R values' of an InfluxQL or Prometheus-API answer, for the progress log."""
    try:
        j = json.loads(body)
    except ValueError:
        return "not JSON"
    if "results" in j:
        series = [s for r in j["results"] for s in r.get("series") or []]
        return f"{len(series)} series, {sum(len(s.get('values') or []) for s in series)} values"
    data = j.get("data")
    if isinstance(data, list):
        return f"{len(data)} values"
    result = (data or {}).get("result") or []
    return f"{len(result)} series, {sum(len(r.get('values') or [0]) for r in result)} values"


def mib(kib):
    return "—" if kib is None else f"{kib / 1024:,.0f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}"


def report(servers, qs, timings, corpus, args):
    names = [s.name for s in servers]
    span = corpus.end - corpus.start
    out = []
    out.append(
        f"Dashboard queries: {corpus.hosts:,} hosts, {dur(span)} ending "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(corpus.end))} UTC, {corpus.points:,} points "
        f"(10 fields each), median client wall time in ms of {args.rounds} interleaved rounds "
        f"after a warm-up{'; VictoriaMetrics with -search.disableCache' if 'vm' in names and not args.vm_cache else ''}."
    )
    out.append("")
    head = ["question"] + [f"{TITLES[n]} ms" for n in names]
    ratio_cols = [o for o in ("influxdb", "vm") if "inflow" in names and o in names]
    head += [f"inflow/{'1.6' if o == 'influxdb' else 'VM'}" for o in ratio_cols]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    ratios = {o: [] for o in ratio_cols}
    for q in qs:
        row = [q.label] + [timings[(n, q.label)].cell() for n in names]
        for o in ratio_cols:
            r = ratio(timings[("inflow", q.label)].median(), timings[(o, q.label)].median())
            if r is not None and not timings[("inflow", q.label)].failures:
                ratios[o].append(r)
            row.append(fmt_ratio(r))
        out.append("| " + " | ".join(row) + " |")
    if ratio_cols:
        out.append("")
        out.append("Median over questions of the per-question ratios (questions inflow answered "
                   "every time): " + ", ".join(
                       f"inflow/{'1.6' if o == 'influxdb' else 'VM'} "
                       f"{fmt_ratio(statistics.median(ratios[o]) if ratios[o] else None)}"
                       for o in ratio_cols))
    out.append("")
    out.append("| server | load s | points/s | ready after s | peak RSS loading MiB | "
               "RSS after loading MiB | peak RSS querying MiB | disk MiB |")
    out.append("|---|---|---|---|---|---|---|---|")
    for s in servers:
        out.append(
            f"| {TITLES[s.name]} | {s.load_s:.1f} | {corpus.points / s.load_s:,.0f} | "
            f"{s.ready_s:.1f} | {mib(s.load_hwm)} | {mib(s.rss_after_load)} | {mib(s.query_hwm)} | "
            f"{s.disk_bytes() / 2**20:,.0f} |"
        )
    print("\n".join(out), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--hours", type=int, default=24, help="length of one corpus (default 24)")
    ap.add_argument("--days", type=int, default=1,
                    help="load DAYS × the corpus ending now and ask the whole-span question (e.g. 7)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--only", default=None,
                    help="comma-separated servers among inflow,influxdb,vm (default: all three; "
                         "with --days over 1, inflow and vm: InfluxDB 1.6 held 22 GB loading a "
                         "week of the corpus here and would take the machine down)")
    ap.add_argument("--keep", action="store_true", help="keep the data directories")
    ap.add_argument("--inflow-bin", default=os.environ.get("INFLOW_BIN", "target/release/inflow"))
    ap.add_argument("--inflow-flags", default="",
                    help="more `inflow serve` flags, e.g. \"--query-memory-bytes 4294967296\"")
    ap.add_argument("--connections", type=int, default=4, help="load connections per server")
    ap.add_argument("--batch-lines", type=int, default=5000)
    ap.add_argument("--timeout", type=float, default=300, help="seconds one query may take")
    ap.add_argument("--ready-timeout", type=float, default=1800,
                    help="seconds a server may take to count every point after loading")
    ap.add_argument("--settle", type=float, default=70,
                    help="inflow: seconds without a new Parquet file before querying (0: no wait)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--vm-cache", action="store_true",
                    help="keep VictoriaMetrics' response cache (off by default: every round recomputes)")
    args = ap.parse_args()

    if args.only is None:
        args.only = "inflow,vm" if args.days > 1 else ",".join(SERVER_NAMES)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SERVER_NAMES]
    if unknown or not names:
        ap.error(f"--only takes inflow, influxdb, vm; got {args.only!r}")
    names = [n for n in SERVER_NAMES if n in names]
    if args.hours < 1 or args.days < 1 or args.hosts < 1 or args.rounds < 1:
        ap.error("--hours, --days, --hosts and --rounds must be at least 1")
    if "inflow" in names:
        args.inflow_bin = os.path.abspath(args.inflow_bin)
        if not os.access(args.inflow_bin, os.X_OK):
            ap.error(f"no inflow binary at {args.inflow_bin} (cargo build --release, or INFLOW_BIN)")
    for n, path in (("influxdb", INFLUXD), ("vm", VICTORIA)):
        if n in names and not os.access(path, os.X_OK):
            ap.error(f"{path} missing (benches/dashboard.sh installs it)")

    work = tempfile.mkdtemp(prefix="inflow-dashboard-")
    servers = []

    def cleanup():
        for s in servers:
            s.stop()
        if args.keep:
            log(f"data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    atexit.register(cleanup)

    def on_signal(signum, _frame):
        sys.exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)

    span = args.hours * args.days * 3600
    end = int(time.time()) // 60 * 60 - 60  # a minute back: VictoriaMetrics hides the last 30 s
    corpus = Corpus(args.hosts, span, end, args.seed, args.batch_lines)
    log(f"corpus: {corpus.hosts} hosts × {corpus.steps} steps = {corpus.points:,} points "
        f"from {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(corpus.start))} "
        f"to {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(corpus.end))} (exclusive)")
    started = time.monotonic()
    corpus.write(os.path.join(work, "corpus.lp.gz-batches"))
    log(f"corpus: {corpus.batches} batches, {corpus.bytes / 2**20:,.0f} MiB of line protocol "
        f"({os.path.getsize(corpus.path) / 2**20:,.0f} MiB gzip) in {time.monotonic() - started:.1f} s")

    for n in names:
        s = SERVER_CLASSES[n](work, args)
        servers.append(s)
        s.start()
        s.reset_hwm()
        s.load(corpus)
        s.wait_ready(corpus)
        s.load_hwm = s.status_kib("VmHWM")
        s.rss_after_load = s.status_kib("VmRSS")

    if not args.keep:
        os.remove(corpus.path)
    qs = questions(corpus, args)
    for q in qs:
        log(f"question '{q.label}': {q.influxql}  |  VM {q.vm[0]} {q.vm[1]}")
    for s in servers:
        s.reset_hwm()

    timings = {(s.name, q.label): Timing() for s in servers for q in qs}
    answers = {}
    log("warm-up")
    for q in qs:
        for s in servers:
            ask_timed(s, q, Timing(), answers)
    for r in range(1, args.rounds + 1):
        log(f"round {r} of {args.rounds}")
        for q in qs:
            for s in servers:
                ask_timed(s, q, timings[(s.name, q.label)], answers)
    for s in servers:
        s.query_hwm = s.status_kib("VmHWM")
        for i, q in enumerate(qs, 1):
            body = answers.get((s.name, q.label))
            if body is not None:
                log(f"{s.name}: '{q.label}': {shape(body)}")
                if args.keep:
                    os.makedirs(os.path.join(work, "answers"), exist_ok=True)
                    with open(os.path.join(work, "answers", f"{s.name}-{i}.json"), "wb") as f:
                        f.write(body)
        if s.proc.poll() is not None:
            log(f"{s.name} exited with {s.proc.returncode}:\n{s.log_tail()}")

    report(servers, qs, timings, corpus, args)

    problems = []
    if "inflow" in names and "influxdb" in names:
        for q in qs:
            a, b = answers.get(("influxdb", q.label)), answers.get(("inflow", q.label))
            if a is None:
                problems.append(f"{q.label}: InfluxDB 1.6 never answered 200")
                continue
            if b is None:
                t = timings[("inflow", q.label)]
                problems.append(f"{q.label}: inflow never answered 200 ({t.cell()})")
                continue
            try:
                compare_influxql(json.loads(a), json.loads(b))
            except Diff as e:
                problems.append(f"{q.label}: inflow's answer differs from 1.6's (1.6 vs inflow):\n"
                                + "\n".join("    " + line for line in str(e).splitlines()))
            except ValueError as e:
                problems.append(f"{q.label}: an answer is not JSON: {e}")
    if "influxdb" in names and "vm" in names:
        problems += [f"VictoriaMetrics vs 1.6 (corpus check): {p}" for p in check_vm(qs, answers)]
    print()
    if problems:
        print(f"Differences ({len(problems)}):")
        for p in problems:
            print(f"- {p}")
        return 1
    if "inflow" in names and "influxdb" in names:
        print(f"inflow's answers match InfluxDB 1.6's on all {len(qs)} questions.")
    if "influxdb" in names and "vm" in names:
        print("VictoriaMetrics' last value per host and host list match InfluxDB 1.6's.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
