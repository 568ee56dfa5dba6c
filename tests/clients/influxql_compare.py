"""Compares inflow's InfluxQL answers (v1 `/query`) with InfluxDB 1.6's, statement by statement.

Usage:
  influxql_compare.py INFLOW_BASE_URL TOKEN   compare inflow against a fresh influxd 1.6
  influxql_compare.py --only-influxd          run every statement on influxd alone
  influxql_compare.py --self-test             compare influxd against a second influxd
Options: --expected-dir DIR (default /tmp/iql/expected; influxd's raw answers are saved
there as NNN.json with the request in NNN.txt), --actual-dir DIR (default /tmp/iql/actual;
the other side's answers), -k SUBSTRING (only statements containing it), -v (print every
statement).

It starts Debian's `influxd` (1.6, /usr/bin/influxd) itself on ephemeral 127.0.0.1 ports
with a temporary config and data directory, writes the deterministic corpus of
influxql_corpus.py to every server through v1 `/write`, runs each statement through
`POST /query` (or GET where a case says so) and compares the parsed JSON cell by cell:
same HTTP status, same result count and statement ids, same keys, same series (name, tags,
columns) in the same order, same values; floats with a relative tolerance of 1e-9, an
integer and a float of equal value are equal but reported as a note, strings, booleans and
nulls exactly. Errors: top-level errors (parse errors, HTTP 400) compare the status, the
presence of an `error` key and of a `line 1, char N` position, not the text; a statement's
error inside `results` compares presence, and the text only where a case says `exact_error`.

Exit status 0 iff every statement matches (and, in every mode, influxd's own answers are
what each case expects: an error or not). The last line is
`influxql compare: N passed, M failed`.
"""

import argparse
import atexit
import base64
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import influxql_corpus  # noqa: E402

DB = "compare"
INFLUXD = "/usr/bin/influxd"
HTTP_TIMEOUT = 30

# ---------------------------------------------------------------------------------------
# influxd 1.6, started and stopped by this script
# ---------------------------------------------------------------------------------------

CONFIG = """\
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
  query-timeout = "60s"

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  # No _internal database: SHOW DATABASES lists only what the test creates.
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false

[continuous_queries]
  enabled = false

[logging]
  level = "warn"
  suppress-logo = true
"""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Influxd:
    """One influxd process in its own temporary directory."""

    _all = []

    def __init__(self, label):
        self.label = label
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="iql-influxd-")
        self.base = None
        Influxd._all.append(self)

    def start(self):
        if not os.access(INFLUXD, os.X_OK):
            raise RuntimeError(f"{INFLUXD} missing: apt-get install influxdb influxdb-client")
        for attempt in range(3):
            http, rpc = free_port(), free_port()
            with open(os.path.join(self.dir, "influxd.conf"), "w") as f:
                f.write(CONFIG.format(dir=self.dir, http=http, rpc=rpc))
            log = open(os.path.join(self.dir, "influxd.log"), "wb")
            self.proc = subprocess.Popen(
                [INFLUXD, "run", "-config", os.path.join(self.dir, "influxd.conf")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "INFLUXDB_REPORTING_DISABLED": "true"},
            )
            log.close()
            self.base = f"http://127.0.0.1:{http}"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    with urllib.request.urlopen(self.base + "/ping", timeout=1) as r:
                        if r.status == 204:
                            return self
                except (urllib.error.URLError, OSError):
                    pass
                time.sleep(0.05)
            tail = self.log_tail()
            self.stop()
            if "address already in use" not in tail:
                raise RuntimeError(f"{self.label} did not answer /ping in 20 s:\n{tail}")
        raise RuntimeError(f"{self.label}: no free ports after 3 attempts")

    def log_tail(self):
        try:
            with open(os.path.join(self.dir, "influxd.log"), "rb") as f:
                return f.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @classmethod
    def stop_all(cls):
        for d in cls._all:
            d.cleanup()


atexit.register(Influxd.stop_all)


def _on_signal(signum, _frame):
    Influxd.stop_all()
    sys.exit(128 + signum)


for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _on_signal)

# ---------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------


class Server:
    def __init__(self, label, base, token=None):
        self.label = label
        self.base = base.rstrip("/")
        self.token = token

    def request(self, method, path, params=None, body=None, headers=None):
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        h = dict(headers or {})
        if self.token is not None:
            h.setdefault("Authorization", f"Token {self.token}")
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(url, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def write(self, lines):
        for i in range(0, len(lines), 1000):
            body = "\n".join(lines[i : i + 1000]) + "\n"
            st, _, resp = self.request(
                "POST", "/write", {"db": DB, "precision": "ns"}, body, {"Content-Type": "text/plain"}
            )
            if st != 204:
                raise RuntimeError(f"{self.label}: /write answered {st}: {resp[:500]!r}")

    def query(self, case):
        """Runs one case; returns (status, content type, raw body, [parsed JSON objects])."""
        params = {}
        if case.db is not None:
            params["db"] = case.db
        params.update(case.params)
        if case.reference_params is not None and self.label.startswith("influxd"):
            params.update(case.reference_params)
        url_params = dict(case.url_params)
        headers = {}
        if case.method == "CHRONOGRAF":
            # Chronograf's backend (influx/influx.go, Client.query): POST with q, db, rp
            # (both even when empty) and epoch=ms in the URL, no body, Content-Type
            # application/json, Basic auth from the source's username and password.
            url_params.update({"db": case.db or "", "epoch": "ms", "q": case.q, "rp": ""})
            url_params.update(params)
            headers["Content-Type"] = "application/json"
            if self.token is not None:
                basic = base64.b64encode(f"chronograf:{self.token}".encode()).decode()
                headers["Authorization"] = f"Basic {basic}"
            st, hdrs, raw = self.request("POST", "/query", dict(sorted(url_params.items())), b"", headers)
        elif case.method == "GET":
            url_params.update(params)
            if case.q is not None:
                url_params["q"] = case.q
            st, hdrs, raw = self.request("GET", "/query", url_params, None, headers)
        else:
            form = dict(params)
            if case.q is not None:
                form["q"] = case.q
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            st, hdrs, raw = self.request(
                "POST", "/query", url_params, urllib.parse.urlencode(form), headers
            )
        ctype = next((v for k, v in hdrs.items() if k.lower() == "content-type"), "")
        return st, ctype, raw, parse_stream(raw)


def parse_stream(raw):
    """The JSON objects in a body: one, or one per chunk for chunked=true; None if not JSON."""
    text = raw.decode("utf-8", "replace")
    dec = json.JSONDecoder()
    out, i = [], 0
    while True:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if i >= len(text):
            return out
        try:
            obj, i = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            return None
        out.append(obj)


# ---------------------------------------------------------------------------------------
# The statements
# ---------------------------------------------------------------------------------------


class Case:
    def __init__(
        self,
        q,
        params=None,
        method="POST",
        db=DB,
        expect="ok",
        ignore_cols=(),
        exact_error=False,
        url_params=None,
        now_dependent=False,
        why=None,
        reference_params=None,
    ):
        self.q = q
        self.params = dict(params or {})
        self.url_params = dict(url_params or {})
        self.method = method
        self.db = db
        self.expect = expect  # "ok" (200, no error), "empty" (ok, no series), "error"
        self.ignore_cols = tuple(ignore_cols)
        self.exact_error = exact_error
        self.now_dependent = now_dependent  # retried once if it differs
        self.why = why
        # A documented deviation: influxd is asked with these parameters
        # instead (where 1.6 is known wrong), inflow with `params`.
        self.reference_params = reference_params

    def describe(self):
        parts = [f"q={self.q!r}", f"method={self.method}"]
        if self.db is not None:
            parts.append(f"db={self.db}")
        if self.params:
            parts.append(f"params={self.params}")
        if self.url_params:
            parts.append(f"url_params={self.url_params}")
        return " ".join(parts)


R = "time >= '2023-01-02T00:00:00Z' AND time < '2023-01-02T03:00:00Z'"  # the whole corpus
R1 = "time >= '2023-01-02T00:00:00Z' AND time < '2023-01-02T01:00:00Z'"  # first hour
MS_FROM, MS_TO = 1672617600000, 1672624800000  # 00:00 .. 02:00, as Grafana sends them


def cases():
    c = []
    add = c.append

    # --- SHOW -----------------------------------------------------------------------------
    add(Case("SHOW DATABASES", db=None))
    add(Case("SHOW DATABASES"))
    add(Case("SHOW MEASUREMENTS"))
    add(Case("SHOW MEASUREMENTS", method="GET"))
    add(Case("SHOW MEASUREMENTS WITH MEASUREMENT =~ /c/"))
    add(Case("SHOW MEASUREMENTS WITH MEASUREMENT =~ /^(cpu|mem)$/"))
    add(Case("SHOW MEASUREMENTS WITH MEASUREMENT = cpu"))
    add(Case('SHOW MEASUREMENTS WITH MEASUREMENT = "disk io"'))
    add(Case("SHOW MEASUREMENTS WITH MEASUREMENT =~ /nomatch/", expect="empty"))
    add(Case("SHOW MEASUREMENTS LIMIT 2 OFFSET 1"))
    add(Case("SHOW MEASUREMENTS WHERE host = 'h3'"))
    add(Case("SHOW MEASUREMENTS ON compare"))
    add(Case("SHOW TAG KEYS"))
    add(Case("SHOW TAG KEYS FROM cpu"))
    add(Case('SHOW TAG KEYS FROM "disk io"'))
    add(Case("SHOW TAG KEYS FROM /m.*/"))
    add(Case("SHOW TAG KEYS ON compare FROM mem"))
    add(Case("SHOW TAG KEYS FROM nosuch", expect="empty"))
    add(Case('SHOW TAG VALUES FROM cpu WITH KEY = "host"'))
    add(Case("SHOW TAG VALUES FROM cpu WITH KEY = host"))
    add(Case('SHOW TAG VALUES FROM cpu WITH KEY IN ("host", "region")'))
    add(Case("SHOW TAG VALUES FROM cpu WITH KEY =~ /reg/"))
    add(Case('SHOW TAG VALUES FROM cpu WITH KEY != "host"'))
    add(Case('SHOW TAG VALUES WITH KEY = "host"'))
    add(Case("SHOW TAG VALUES WITH KEY = \"host\" WHERE region = 'eu-west'"))
    add(Case("SHOW TAG VALUES FROM cpu WITH KEY = \"host\" WHERE region = 'us-east'"))
    add(Case("SHOW TAG VALUES FROM cpu WITH KEY = \"region\" WHERE host =~ /h[14]/"))
    add(Case('SHOW TAG VALUES FROM cpu WITH KEY = "nosuch"', expect="empty"))
    add(Case("SHOW TAG VALUES FROM cpu WITH KEY = host WHERE region =~ /east/ OR host = 'h3'"))
    add(Case("SHOW SERIES"))
    add(Case("SHOW SERIES FROM cpu WHERE region = 'eu-west'"))
    add(Case('SHOW SERIES FROM mem, "disk io" LIMIT 3 OFFSET 2'))
    add(Case("SHOW SERIES FROM cpu WHERE host = 'nosuch'", expect="empty"))
    add(Case("SHOW FIELD KEYS"))
    add(Case("SHOW FIELD KEYS FROM cpu"))
    add(Case('SHOW FIELD KEYS FROM "disk io"'))
    add(Case("SHOW FIELD KEYS FROM edge"))
    add(Case("SHOW FIELD KEYS ON compare FROM mem"))
    add(Case("SHOW RETENTION POLICIES ON compare", db=None))
    add(Case("SHOW RETENTION POLICIES"))
    add(Case("SHOW RETENTION POLICIES", db=None, expect="error", exact_error=True,
             why="no ON and no db parameter: 1.6 says 'database name required' in the result"))
    add(Case("SHOW RETENTION POLICIES ON nope", db=None, expect="error", exact_error=True))

    # --- raw SELECT -----------------------------------------------------------------------
    h1_10m = "host = 'h1' AND region = 'us-east' AND time < '2023-01-02T00:10:00Z'"
    add(Case(f"SELECT usage_idle, usage_user FROM cpu WHERE {h1_10m}"))
    add(Case(f"SELECT * FROM cpu WHERE {h1_10m}"))
    add(Case(f"SELECT *::field FROM cpu WHERE {h1_10m}"))
    add(Case(f"SELECT *::tag, usage_idle FROM cpu WHERE {h1_10m}"))
    add(Case(f"SELECT usage_idle, host, region FROM cpu WHERE {h1_10m}"))
    add(Case(f"SELECT host::tag, usage_idle::field, requests::integer FROM cpu WHERE {h1_10m}"))
    add(Case(f"SELECT /usage/ FROM cpu WHERE {h1_10m}"))
    add(Case(f"SELECT usage_idle * 2 + usage_user FROM cpu WHERE {h1_10m}"))
    add(Case(f"SELECT usage_idle / usage_user, requests / 3, requests * 2, requests - 1.5 FROM cpu WHERE {h1_10m}"))
    add(Case(f"SELECT (usage_idle + usage_user) * 10 AS total, -usage_idle AS neg FROM cpu WHERE {h1_10m}"))
    add(Case(f"SELECT usage_idle AS idle, usage_idle AS \"idle pct\", requests AS r FROM cpu WHERE {h1_10m}"))
    add(Case(f"SELECT usage_idle, usage_idle, usage_idle * 1 FROM cpu WHERE {h1_10m}"))
    add(Case(f"SELECT -usage_idle, usage_idle + 1, 2 * usage_idle, time FROM cpu WHERE {h1_10m}",
             why="column names of expressions: the field name, then _1, _2 ...; a selected time is dropped"))
    add(Case(f"SELECT status, ok FROM cpu WHERE {h1_10m}"))
    add(Case("SELECT * FROM edge"))
    add(Case("SELECT i, f FROM edge WHERE i > 0"))
    add(Case("SELECT * FROM \"disk io\" WHERE time < '2023-01-02T00:20:00Z'"))
    add(Case("SELECT \"read bytes\" FROM \"disk io\" WHERE dev = 'sda' AND time < '2023-01-02T00:20:00Z'"))
    add(Case("SELECT * FROM \"net.if\" WHERE time < '2023-01-02T01:00:00Z'"))
    add(Case("SELECT nosuchfield FROM cpu", expect="empty",
             why="1.x: an unknown field gives a result with no series"))
    add(Case("SELECT * FROM nosuch", expect="empty"))
    add(Case("SELECT usage_idle FROM nosuch WHERE time > now() - 1h", expect="empty"))

    # --- WHERE: time ----------------------------------------------------------------------
    add(Case("SELECT usage_idle FROM cpu WHERE host = 'h2' AND time >= '2023-01-02T00:38:00Z' AND time <= '2023-01-02T01:22:00Z'"))
    add(Case("SELECT usage_idle FROM cpu WHERE host = 'h1' AND time > 1672619400000000000 AND time < 1672619700000000000"))
    add(Case("SELECT usage_idle FROM cpu WHERE host = 'h1' AND time >= 1672619400000ms AND time <= 1672619700000ms"))
    add(Case("SELECT usage_idle FROM cpu WHERE host = 'h1' AND time >= 1672619400s AND time < 1672619700s"))
    add(Case("SELECT usage_idle FROM cpu WHERE host = 'h1' AND time >= 1672619400000000u AND time < 27876995m"))
    add(Case("SELECT usage_idle FROM cpu WHERE host = 'h1' AND time >= '2023-01-02 00:30:00' AND time < '2023-01-02 00:35:00'"))
    add(Case("SELECT usage_idle FROM cpu WHERE host = 'h1' AND time = '2023-01-02T00:00:00.123456789Z'"))
    add(Case("SELECT usage_idle FROM cpu WHERE host = 'h1' AND time > '2023-01-02T01:00:00Z' - 5m AND time < '2023-01-02T01:00:00Z' + 2m"))
    add(Case("SELECT usage_idle FROM cpu WHERE host = 'h1' AND time >= '2023-01-02T02:55:00Z'"))
    add(Case("SELECT usage_idle FROM cpu WHERE host = 'h1' AND time < '2023-01-02T00:05:00Z'"))
    add(Case("SELECT * FROM recent WHERE time > now() - 1h",
             why="the points are at absolute times, so the answer does not depend on now()"))
    add(Case("SELECT value FROM recent WHERE time > now() - 1h AND time < now() AND host = 'h2'"))
    add(Case("SELECT * FROM recent WHERE time > now()", expect="empty"))

    # --- WHERE: tags and fields -------------------------------------------------------------
    T = "time < '2023-01-02T00:05:00Z'"
    add(Case(f"SELECT usage_idle FROM cpu WHERE host = 'h1' OR host = 'h3' AND {T}"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE (host = 'h1' OR host = 'h3') AND {T}"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE (host = 'h1' OR host = 'h2') AND region = 'us-east' AND {T} GROUP BY host"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE host != 'h1' AND {T} GROUP BY host"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE host =~ /h[12]/ AND {T} GROUP BY host"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE host !~ /^h1$/ AND {T} GROUP BY host"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE \"host\" = 'h3' AND \"region\" = 'eu-west' AND {T}"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE host = 'nosuch' AND {T}", expect="empty"))
    add(Case(f"SELECT usage_idle, host FROM cpu WHERE usage_idle > 50 AND {T}"))
    add(Case(f"SELECT usage_idle, requests FROM cpu WHERE usage_idle > 50 AND requests < 500 AND host = 'h1' AND {R1}"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE (usage_idle > 90 OR usage_idle < 10) AND host = 'h1' AND {R1}"))
    add(Case(f"SELECT status FROM cpu WHERE status = 'warn' AND host = 'h2' AND {R}"))
    add(Case(f"SELECT ok, requests FROM cpu WHERE ok = false AND host = 'h3' AND {R1}"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE usage_idle = 77 AND {R}"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE usage_idle + usage_user > 140 AND {R}"))
    add(Case(f"SELECT count(used) FROM mem WHERE region = '' AND {R}",
             why="a tag compared with '' matches the series without that tag"))

    # --- GROUP BY time, fill ----------------------------------------------------------------
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(10m)"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(10m, 3m)"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(10m, -3m)"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(1h), host"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(1h), *"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY *"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY host, region"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY region, host"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE {T} GROUP BY *"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE {T} GROUP BY region"))
    add(Case(f"SELECT count(used) FROM mem WHERE {R} GROUP BY nosuchtag"))
    gap = "host = 'h2' AND time >= '2023-01-02T00:20:00Z' AND time < '2023-01-02T01:40:00Z'"
    for fill in ("", "fill(null)", "fill(none)", "fill(previous)", "fill(linear)", "fill(0)", "fill(-1.5)"):
        add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {gap} GROUP BY time(10m) {fill}".strip()))
    for fill in ("fill(null)", "fill(previous)", "fill(linear)", "fill(0)", "fill(7)"):
        add(Case(f"SELECT sum(requests), count(requests) FROM cpu WHERE {gap} GROUP BY time(10m) {fill}"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(30m), host fill(0)"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(30m), host fill(linear)"))
    add(Case(f"SELECT count(usage_idle) FROM cpu WHERE {R} GROUP BY time(30m), host",
             why="count of an empty window is 0, not null"))
    add(Case(f"SELECT count(usage_idle) FROM cpu WHERE {R} GROUP BY time(30m), host fill(null)"))
    add(Case(f"SELECT count(usage_idle) FROM cpu WHERE {R} GROUP BY time(30m), host fill(none)"))
    add(Case("SELECT mean(usage_idle) FROM cpu WHERE time >= '2023-01-02T00:00:00Z' GROUP BY time(1h) fill(none)",
             why="no upper bound: 1.x fills up to now(); fill(none) keeps the answer fixed"))
    add(Case("SELECT mean(usage_idle) FROM cpu WHERE time >= '2023-01-02T01:05:00Z' AND time < '2023-01-02T02:05:00Z' GROUP BY time(30m)",
             why="the first window starts before the lower bound; its time is the window start"))
    add(Case(f"SELECT max(usage_idle), min(usage_idle), first(usage_idle), last(usage_idle) FROM cpu WHERE {R} GROUP BY time(1h)"))
    add(Case("SELECT mean(usage_idle) FROM cpu WHERE time < '2023-01-02T02:00:00Z' GROUP BY time(30m), host",
             why="no lower bound: each series' windows start at its own first point (h4 from 01:00), "
                 "where with a lower bound every series gets every window (null-filled)"))
    add(Case("SELECT mean(usage_idle) FROM cpu WHERE time >= '2023-01-02T00:00:00Z' AND time < '2023-01-02T00:30:00Z' GROUP BY time(10m), host",
             why="a series with no point in the range (h4) is absent, not null-filled"))
    add(Case("SELECT sum(requests) FROM cpu WHERE host = 'h2' AND time >= '2023-01-02T00:30:00Z' AND time < '2023-01-02T01:00:00Z' GROUP BY time(10m) fill(-1.5)",
             why="a float fill value on an integer aggregate is truncated: -1"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(1h), host ORDER BY time DESC",
             why="ORDER BY time DESC also reverses the series order (h4 first)"))
    add(Case("SELECT count(usage_idle) FROM cpu WHERE host = 'h1' AND " + R + " GROUP BY time(1s) fill(0)",
             why="10800 rows in one series: 1.6 marks the series \"partial\": true even without "
                 "chunked=true (its internal 10000-row chunks are merged but the flag stays)"))
    add(Case(f"SELECT mean(used) FROM mem WHERE {R} GROUP BY time(20m), host"))
    add(Case(f"SELECT mean(*) FROM mem WHERE {R} GROUP BY time(1h)"))

    # --- aggregates and selectors -------------------------------------------------------------
    for fn in ("mean", "median", "sum", "count", "min", "max", "first", "last", "spread", "stddev"):
        add(Case(f"SELECT {fn}(usage_idle) FROM cpu WHERE {R} GROUP BY time(30m)"))
        add(Case(f"SELECT {fn}(requests) FROM cpu WHERE {R} GROUP BY time(30m)"))
    add(Case(f"SELECT percentile(usage_idle, 90) FROM cpu WHERE {R} GROUP BY time(30m)"))
    add(Case(f"SELECT percentile(requests, 50), percentile(requests, 99.5) FROM cpu WHERE {R} GROUP BY time(30m)"))
    add(Case(f"SELECT percentile(usage_idle, 90) FROM cpu WHERE {R}"))
    add(Case(f"SELECT distinct(requests) FROM cpu WHERE host = 'h1' AND time < '2023-01-02T00:10:00Z'"))
    add(Case(f"SELECT distinct(usage_idle) FROM cpu WHERE host = 'h3' AND {R1} GROUP BY time(30m)",
             why="distinct keeps first-seen order within a window, every row at the window start"))
    add(Case(f"SELECT distinct(status) FROM cpu WHERE {R} GROUP BY host"))
    add(Case(f"SELECT distinct(ok) FROM cpu WHERE {R}"))
    add(Case(f"SELECT count(distinct(status)) FROM cpu WHERE {R} GROUP BY time(1h)"))
    add(Case(f"SELECT count(distinct(requests)) FROM cpu WHERE {R}"))
    add(Case(f"SELECT count(status), first(status), last(status) FROM cpu WHERE {R} GROUP BY host"))
    add(Case(f"SELECT count(ok), first(ok), last(ok) FROM cpu WHERE {R} GROUP BY time(1h)"))
    add(Case(f"SELECT mean(usage_idle), max(usage_idle), min(requests), count(status), sum(requests) FROM cpu WHERE {R} GROUP BY time(30m)"))
    add(Case(f"SELECT mean(usage_idle), mean(usage_idle), mean(usage_user) FROM cpu WHERE {R}",
             why="duplicate column names: mean, mean_1, mean_2"))
    add(Case(f"SELECT mean(usage_idle) AS avg, max(usage_idle) AS \"top\" FROM cpu WHERE {R} GROUP BY host"))
    add(Case(f"SELECT mean(usage_idle) * 2 AS double, sum(requests) / count(requests) FROM cpu WHERE {R}"))
    add(Case(f"SELECT mean(usage_idle) - min(usage_idle) FROM cpu WHERE {R} GROUP BY time(1h)"))
    add(Case(f"SELECT mean(*) FROM cpu WHERE {R}"))
    add(Case(f"SELECT count(*) FROM cpu WHERE {R} GROUP BY host"))
    add(Case(f"SELECT max(*) FROM mem WHERE {R}"))
    # without GROUP BY time: aggregates carry the lower bound (1970-01-01 without one),
    # a single selector carries its point's time
    add(Case("SELECT mean(usage_idle) FROM cpu"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R}"))
    add(Case("SELECT count(usage_idle) FROM cpu GROUP BY host"))
    add(Case("SELECT max(usage_idle) FROM cpu"))
    add(Case("SELECT min(requests) FROM cpu GROUP BY host"))
    add(Case(f"SELECT first(usage_idle), last(usage_idle) FROM cpu WHERE {R}"))
    add(Case(f"SELECT first(usage_idle) FROM cpu WHERE {R} GROUP BY host"))
    add(Case(f"SELECT last(status) FROM cpu WHERE {R} GROUP BY host"))
    # what dashboards repeat, answered from per-file summaries: last value per series
    add(Case("SELECT last(usage_user) FROM cpu GROUP BY host"))
    add(Case(f"SELECT last(usage_user) FROM cpu WHERE {R} GROUP BY host"))
    add(Case(f"SELECT last(usage_idle) FROM cpu WHERE {R1} GROUP BY host, region"))
    add(Case("SELECT last(*) FROM cpu GROUP BY host"))
    add(Case(f"SELECT last(*) FROM cpu WHERE {R} GROUP BY *"))
    add(Case(f"SELECT last(usage_idle), last(requests), last(status), last(ok) FROM cpu WHERE {R} GROUP BY host"))
    add(Case("SELECT last(usage_idle) FROM cpu WHERE region = 'eu-west' GROUP BY host"))
    add(Case(f"SELECT last(requests) FROM cpu WHERE host =~ /h[12]/ AND {R1} GROUP BY region"))
    add(Case("SELECT last(used) AS u, last(pct) FROM mem GROUP BY host"))
    add(Case('SELECT last("read bytes") FROM "disk io" GROUP BY *'))
    add(Case(f"SELECT max(usage_idle), host, requests FROM cpu WHERE {R}",
             why="a single selector with other columns: the point's time and its own values"))
    add(Case(f"SELECT max(usage_idle), min(usage_idle) FROM cpu WHERE {R}",
             why="two selectors: the time is the lower bound"))
    add(Case(f"SELECT sum(i), max(i), min(i), mean(f), max(f) FROM edge WHERE {R}"))
    add(Case(f"SELECT count(*) FROM edge WHERE {R}"))

    # --- LIMIT, OFFSET, SLIMIT, SOFFSET, ORDER BY -------------------------------------------
    add(Case(f"SELECT usage_idle FROM cpu WHERE {R} LIMIT 3"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE {R} LIMIT 3 OFFSET 2"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE {R} GROUP BY host LIMIT 2"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE {R} GROUP BY host LIMIT 2 OFFSET 1000", expect="empty"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(30m), host LIMIT 2 OFFSET 1"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(30m), host SLIMIT 2"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(30m), host SLIMIT 2 SOFFSET 2"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(30m), host LIMIT 1 SLIMIT 1 SOFFSET 1"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE {R} GROUP BY * SLIMIT 1"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE host = 'h1' AND {R1} ORDER BY time DESC LIMIT 5"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(30m) ORDER BY time DESC"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {gap} GROUP BY time(10m) fill(previous) ORDER BY time DESC"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE {R1} GROUP BY host ORDER BY time DESC LIMIT 2"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE host = 'h1' AND {R1} ORDER BY time ASC LIMIT 2"))

    # --- tz ------------------------------------------------------------------------------------
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(1d) tz('America/New_York')"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(1h) tz('America/New_York')"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(1h) tz('Asia/Kolkata')"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE host = 'h1' AND time < '2023-01-02T00:03:00Z' tz('America/New_York')"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(1h) tz('America/New_York')",
             params={"epoch": "ms"}))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(1h) tz('Nowhere/Land')",
             expect="error"))

    # --- FROM forms -----------------------------------------------------------------------------
    add(Case(f"SELECT count(usage_idle) FROM compare.autogen.cpu WHERE {R}"))
    add(Case(f'SELECT count(usage_idle) FROM "compare"."autogen"."cpu" WHERE {R}'))
    add(Case(f"SELECT count(usage_idle) FROM compare..cpu WHERE {R}"))
    add(Case(f"SELECT count(usage_idle) FROM autogen.cpu WHERE {R}"))
    add(Case(f"SELECT count(usage_idle) FROM compare.autogen.cpu WHERE {R}", db=None))
    add(Case(f"SELECT count(usage_idle) FROM nope.autogen.cpu WHERE {R}", expect="error", exact_error=True))
    add(Case(f"SELECT count(usage_idle) FROM compare.nope.cpu WHERE {R}", expect="error", exact_error=True))
    # Not /c.*/: 1.6 takes a wildcard's fields from the shards in the time range, so a
    # measurement with no data there (recent) adds no columns; inflow takes them from
    # the catalog. /^c/ matches cpu alone on both.
    add(Case(f"SELECT count(*) FROM /^c/ WHERE {R}"))
    add(Case(f"SELECT count(*) FROM /^(cpu|mem)$/ WHERE {R} GROUP BY host"))
    add(Case(f"SELECT count(host) FROM cpu WHERE {R}", expect="empty",
             why="an aggregate over a tag: 1.6 gives no series"))
    add(Case(f"SELECT mean(usage_idle), mean(pct) FROM cpu, mem WHERE {R} GROUP BY time(1h)"))
    # --- transformations over points and over windows ------------------------------------
    H1 = "host = 'h1' AND region = 'us-east' AND time < '2023-01-02T00:10:00Z'"
    add(Case(f"SELECT derivative(usage_idle) FROM cpu WHERE {H1}"))
    add(Case(f"SELECT derivative(usage_idle, 1m), non_negative_derivative(usage_user) FROM cpu WHERE {H1}"))
    add(Case(f"SELECT difference(requests), non_negative_difference(usage_idle) FROM cpu WHERE {H1}"))
    add(Case(f"SELECT cumulative_sum(requests) FROM cpu WHERE {H1}"))
    add(Case(f"SELECT moving_average(usage_idle, 3) FROM cpu WHERE {H1}"))
    add(Case(f"SELECT elapsed(usage_idle, 1s) FROM cpu WHERE {H1}"))
    add(Case(f"SELECT derivative(usage_idle) FROM cpu WHERE {R1} GROUP BY host LIMIT 3"))
    add(Case(f"SELECT derivative(mean(usage_idle)) FROM cpu WHERE {R1} GROUP BY time(10m)",
             why="over windows the default unit is the GROUP BY interval"))
    add(Case(f"SELECT derivative(mean(usage_idle), 1m) FROM cpu WHERE {R1} GROUP BY time(10m), host"))
    add(Case(f"SELECT non_negative_derivative(max(requests), 1s) FROM cpu WHERE {R} GROUP BY time(15m), host"))
    add(Case(f"SELECT difference(mean(usage_idle)) FROM cpu WHERE host = 'h2' AND {R} GROUP BY time(10m)",
             why="h2 has a gap: null windows are skipped, not differenced"))
    add(Case(f"SELECT difference(mean(usage_idle)) FROM cpu WHERE host = 'h2' AND {R} GROUP BY time(10m) fill(0)"))
    MID = "time >= '2023-01-02T01:00:00Z' AND time < '2023-01-02T02:00:00Z'"
    add(Case(f"SELECT difference(mean(usage_idle)) FROM cpu WHERE host = 'h1' AND {MID} GROUP BY time(10m)",
             why="data before the lower bound: the first window is differenced with the one before it"))
    add(Case(f"SELECT difference(usage_idle), elapsed(usage_idle) FROM cpu WHERE host = 'h1' AND {MID} LIMIT 3"))
    add(Case(f"SELECT cumulative_sum(sum(requests)) FROM cpu WHERE {R} GROUP BY time(30m)"))
    add(Case(f"SELECT moving_average(mean(usage_idle), 2) FROM cpu WHERE {R} GROUP BY time(20m), host"))
    add(Case(f"SELECT derivative(mean(usage_idle)) FROM cpu WHERE {R1}", expect="error", exact_error=True,
             why="a transformation of an aggregate needs GROUP BY time"))
    add(Case(f"SELECT derivative(usage_idle) FROM cpu WHERE {R1} GROUP BY time(10m)", expect="error",
             exact_error=True))

    add(Case(f"SELECT * FROM cpu, mem WHERE host = 'h1' AND time < '2023-01-02T00:03:00Z'"))

    # --- several statements, epoch, chunked, pretty, GET ----------------------------------
    add(Case(f"SELECT count(usage_idle) FROM cpu WHERE {R}; SHOW MEASUREMENTS; SELECT * FROM nosuch"))
    add(Case(f"SELECT count(usage_idle) FROM cpu WHERE {R};SELECT count(used) FROM mem WHERE {R};"))
    add(Case(f"SELECT count(usage_idle) FROM cpu WHERE {R}; SELECT FROM", expect="error",
             why="one unparsable statement fails the whole request (400) before any runs"))
    # Two statements, not three: after a failed statement 1.6 numbers its "not executed"
    # results one too low and so hides the real error (a 1.6 bug); inflow answers
    # "not executed" for each later statement, with its own id.
    add(Case(f"SELECT count(usage_idle) FROM cpu WHERE {R}; SELECT mean(status) FROM cpu WHERE {R}",
             expect="error",
             why="an execution error in statement 1 is that statement's error"))
    raw_ns = f"SELECT usage_idle, requests FROM cpu WHERE host = 'h1' AND time < '2023-01-02T00:30:00Z'"
    for epoch in ("ns", "u", "µ", "ms", "s", "m", "h"):
        # 1.6 does not know µ and falls back to ns; the issue asks for µ = u, so
        # inflow's µ answer is compared with 1.6's u answer.
        add(Case(raw_ns, params={"epoch": epoch},
                 reference_params={"epoch": "u"} if epoch == "µ" else None,
                 why="µ is microseconds (compared with 1.6's epoch=u)" if epoch == "µ" else None))
    add(Case(raw_ns, params={"epoch": "ms"}, method="GET"))
    add(Case(raw_ns, params={"epoch": ""}))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(1h)", params={"epoch": "s"}))
    add(Case(f"SELECT max(usage_idle) FROM cpu WHERE {R}", params={"epoch": "ms"}))
    add(Case(f"SELECT usage_idle FROM cpu WHERE host = 'h1' AND {R1}", params={"chunked": "true", "chunk_size": "7"}))
    add(Case(f"SELECT usage_idle FROM cpu WHERE {T} GROUP BY host", params={"chunked": "true", "chunk_size": "2"}))
    add(Case(f"SELECT usage_idle FROM cpu WHERE {T} GROUP BY host", params={"chunked": "true"}))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(30m), host",
             params={"chunked": "true", "chunk_size": "3", "epoch": "ms"}))
    add(Case(f"SHOW MEASUREMENTS; SELECT usage_idle FROM cpu WHERE host = 'h3' AND {T}",
             params={"chunked": "true", "chunk_size": "2"}))
    add(Case("SHOW TAG VALUES FROM cpu WITH KEY = \"host\"", params={"chunked": "true", "chunk_size": "1"}))
    add(Case(f"SELECT usage_idle FROM cpu WHERE host = 'h1' AND {T}", params={"chunked": "1", "chunk_size": "1"},
             why="only chunked=true turns chunking on"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE host = 'h1' AND {T}", params={"chunked": "true", "chunk_size": "0"},
             why="chunk_size 0 (or not a number) means the default, 10000"))
    add(Case("SELECT * FROM cpu", db="nope", params={"chunked": "true"}, expect="error", exact_error=True))
    add(Case("SELECT * FROM nosuch", params={"chunked": "true"}, expect="empty"))
    add(Case("SHOW DATABASES", url_params={"q": "SHOW MEASUREMENTS", "db": "nope"},
             why="q and db in both the URL and a form body: the body wins (Go's FormValue)"))
    add(Case(f"SELECT usage_idle / 0, requests / 0, requests % 7, requests / 2, usage_idle % 7 FROM cpu WHERE host = 'h1' AND {T}",
             why="division by zero gives 0; integer % stays integer; integer / is float"))
    add(Case(f"SELECT usage_idle FROM cpu WHERE host = 'h1' AND {T}", url_params={"pretty": "true"}))
    add(Case(f"SELECT usage_idle FROM cpu WHERE host = 'h1' AND {T}", method="GET",
             params={"pretty": "true"}))

    # --- errors -----------------------------------------------------------------------------
    add(Case("SELECT FROM cpu", expect="error"))
    add(Case("SELEC * FROM cpu", expect="error"))
    add(Case("SELECT * FROM", expect="error"))
    add(Case("SELECT mean(usage_idle FROM cpu", expect="error"))
    add(Case("SELECT * FROM cpu WHERE host = 'h1", expect="error"))
    add(Case("SELECT * FROM cpu WHERE host =~ /[/", expect="error"))
    add(Case("SELECT mean(usage_idle) FROM cpu GROUP BY time(0s)",
             why="1.6 accepts time(0s) and treats it as no GROUP BY time (one row at 1970-01-01)"))
    add(Case("SELECT * FROM cpu GROUP BY time(10m)", expect="error",
             why="GROUP BY time without an aggregate"))
    add(Case("SELECT mean(usage_idle), usage_idle FROM cpu", expect="error",
             why="mixing an aggregate and a raw field"))
    add(Case("SELECT percentile(usage_idle) FROM cpu", expect="error"))
    add(Case("SELECT nosuchfn(usage_idle) FROM cpu", expect="error"))
    add(Case("SHOW NOTHING", expect="error"))
    add(Case("SELECT *\n\n\nFROM cpu WHERE (", expect="error", why="positions count lines: line 4, char 17"))
    add(Case("\n\n  SELECT FROM cpu", expect="error", why="q is trimmed first: line 1, char 8"))
    add(Case("SELECT mean(usage_idle) FROM cpu GROUP BY time(10x)", expect="error",
             why="a parse error without a position: 'invalid duration'"))
    add(Case(f"SELECT mean(usage_idle) FROM cpu WHERE {R} GROUP BY time(1h) fill(bogus)", expect="error",
             why="a parse error without a position: 'expected number argument in fill()'"))
    add(Case("SELECT * FROM cpu WHERE time > 'garbage'", expect="error",
             why="not a parse error: HTTP 200 with the error in the result"))
    add(Case("", expect="error", exact_error=True, why="an empty q: missing required parameter"))
    add(Case(None, expect="error", exact_error=True, why="no q at all"))
    add(Case("SELECT * FROM cpu", db=None, expect="error", exact_error=True,
             why="no db parameter and no db in FROM: 'database name required' in the result"))
    add(Case("SELECT * FROM cpu", db="nope", expect="error", exact_error=True))
    add(Case(f"SELECT mean(status) FROM cpu WHERE {R}", expect="error",
             why="mean over a string field: an execution error inside results, HTTP 200"))
    add(Case(f"SELECT sum(ok) FROM cpu WHERE {R}", expect="error"))

    # --- Grafana ----------------------------------------------------------------------------
    # Grafana's backend (pkg/tsdb/influxdb/influxql) sends GET /query?db=..&epoch=ms&q=..
    # or POST with q in a form body and db/epoch in the URL; the visual editor renders
    # SELECT mean("f") FROM "m" WHERE (tags) AND $timeFilter GROUP BY time($__interval), "tag" fill(null)
    # with $timeFilter = time >= <from>ms and time <= <to>ms.
    tf = f"time >= {MS_FROM}ms and time <= {MS_TO}ms"
    g = [
        f'SELECT mean("usage_idle") FROM "cpu" WHERE ("host" =~ /^(h1|h2)$/) AND {tf} GROUP BY time(1m), "host" fill(null)',
        f'SELECT mean("usage_idle") FROM "cpu" WHERE {tf} GROUP BY time(5m) fill(null)',
        f'SELECT mean("usage_idle") FROM "cpu" WHERE ("host" = \'h1\' AND "region" = \'us-east\') AND {tf} GROUP BY time(10m) fill(none)',
        f'SELECT max("requests"), mean("usage_user") FROM "autogen"."cpu" WHERE ("region" =~ /^eu-west$/) AND {tf} GROUP BY time(15m), "host" fill(0)',
        f'SELECT last("pct") FROM "mem" WHERE {tf} GROUP BY time(20s), "host" fill(previous) LIMIT 5',
        f'SELECT non_negative_difference(mean("used")) FROM "mem" WHERE {tf} GROUP BY time(10m), "host" fill(null)',
        f'SELECT mean("usage_idle") FROM "cpu" WHERE {tf} GROUP BY time(30m) fill(null) ORDER BY time DESC',
        f'SELECT "usage_idle" FROM "cpu" WHERE ("host" = \'h4\') AND {tf} LIMIT 10',
    ]
    for q in g:
        add(Case(q, params={"epoch": "ms"}, method="GET"))
    add(Case(g[0], url_params={"db": DB, "epoch": "ms"}, db=None, method="POST"))
    add(Case(g[0], params={"epoch": "ms"}, method="POST"))
    for q in (
        "SHOW measurements",  # Grafana's health check ("Save & test")
        "SHOW MEASUREMENTS LIMIT 100",
        "SHOW MEASUREMENTS WITH MEASUREMENT =~ /c/ LIMIT 100",
        "SHOW MEASUREMENTS WITH MEASUREMENT =~ /(?i)C/ LIMIT 100",
        "SHOW MEASUREMENTS WHERE \"host\" = 'h4' LIMIT 100",
        'SHOW TAG KEYS FROM "cpu"',
        'SHOW TAG VALUES FROM "cpu" WITH KEY = "host"',
        'SHOW TAG VALUES FROM "cpu" WITH KEY = "host" WHERE "region" = \'eu-west\'',
        'SHOW TAG VALUES FROM "cpu" WITH KEY = "host" WHERE "region" =~ /^(eu-west|us-east)$/',
        'SHOW FIELD KEYS FROM "cpu"',
        'SHOW FIELD KEYS FROM "autogen"."cpu"',
        'SHOW RETENTION POLICIES on "compare"',
        "SHOW DATABASES",
    ):
        add(Case(q, params={"epoch": "ms"}, method="GET"))

    # --- Chronograf ------------------------------------------------------------------------
    # The data explorer's requests (ui/src/shared/apis/metaQuery.js, sent by the backend as
    # method CHRONOGRAF above): the database list, the retention policies of every database
    # in one request joined by ';', the measurements, then a measurement's tag keys, the
    # values of its keys (sorted, WITH KEY IN) and its field keys, FROM "rp"."measurement".
    # The admin page lists measurements with ON, LIMIT and OFFSET (influx/databases.go).
    chrono = lambda q, db=DB, **kw: Case(q, method="CHRONOGRAF", db=db, **kw)  # noqa: E731
    add(chrono("SHOW DATABASES", db=None))
    add(chrono('SHOW RETENTION POLICIES ON "compare"', db=None))
    add(chrono('SHOW RETENTION POLICIES ON "compare";SHOW RETENTION POLICIES ON "gone"', db=None,
               expect="error", exact_error=True, why="a database dropped since the list was read"))
    add(chrono("SHOW MEASUREMENTS"))
    add(chrono('SHOW MEASUREMENTS ON "compare" LIMIT 2 OFFSET 1', db=None))
    rp = {"rp": "autogen"}
    add(chrono('SHOW TAG KEYS FROM "autogen"."cpu"', params=rp))
    add(chrono('SHOW TAG KEYS FROM "autogen"."disk io"', params=rp))
    add(chrono('SHOW TAG VALUES FROM "autogen"."cpu" WITH KEY IN ("host", "region")', params=rp))
    add(chrono('SHOW TAG VALUES FROM "autogen"."mem" WITH KEY IN ("dc")', params=rp))
    add(chrono('SHOW FIELD KEYS FROM "autogen"."cpu"'))
    add(chrono('SHOW FIELD KEYS FROM "autogen"."disk io"'))
    # The query builder (ui/src/utils/influxql.ts, buildInfluxQLQuery) writes
    #   SELECT mean("f") AS "mean_f" FROM "db"."rp"."m" WHERE time > :dashboardTime: AND
    #   time < :upperDashboardTime: [AND "tag"='v'] GROUP BY time(:interval:)[, "tag"] FILL(null)
    # and ui/src/tempVars/utils/replace.ts renders it: a custom range's bounds quoted
    # ('2023-01-02T00:00:00.000Z'), a relative one as is (now() - 1h, now()), and
    # :interval: as round(durationMs / 360) ms, durationMs from the backend's
    # influx.ParseTime (exclusive bounds: 1 h is 3599999 ms, so 10000ms; 10 min 1667ms).
    # A time shift adds a second statement with both bounds shifted (`- 1h`) and the
    # alias suffixed `_shifted__1__h`.
    lo, hi = "'2023-01-02T00:00:00.000Z'", "'2023-01-02T01:00:00.000Z'"
    fq = '"compare"."autogen"'
    add(chrono(f'SELECT mean("usage_idle") AS "mean_usage_idle" FROM {fq}."cpu" '
               f"WHERE time > {lo} AND time < {hi} GROUP BY time(10000ms) FILL(null)", params=rp))
    add(chrono(f'SELECT mean("usage_idle") AS "mean_usage_idle", max("requests") AS "max_requests" '
               f"FROM {fq}.\"cpu\" WHERE time > {lo} AND time < '2023-01-02T03:00:00.000Z' "
               "AND (\"host\"='h1' OR \"host\"='h2') GROUP BY time(30000ms), \"host\" FILL(null)",
               params=rp))
    add(chrono(f'SELECT mean("pct") AS "mean_pct" FROM {fq}."mem" WHERE time > {lo} '
               "AND time < '2023-01-02T00:10:00.000Z' AND \"dc\"!='b' "
               'GROUP BY time(1667ms), "host" FILL(null)', params=rp,
               why="an odd interval: windows aligned to multiples of 1667 ms since the epoch"))
    add(chrono(f'SELECT "usage_idle" FROM {fq}."cpu" WHERE time > {lo} '
               "AND time < '2023-01-02T00:10:00.000Z' AND \"host\"='h1'", params=rp,
               why="a field without a function: no GROUP BY, no FILL"))
    add(chrono(f'SELECT mean("usage_idle") AS "mean_usage_idle" FROM {fq}."cpu" '
               "WHERE time > '2023-01-02T02:00:00.000Z' AND time < '2023-01-02T03:00:00.000Z' "
               'GROUP BY time(10000ms) FILL(null);'
               f'SELECT mean("usage_idle") AS "mean_usage_idle_shifted__1__h" FROM {fq}."cpu" '
               "WHERE time > '2023-01-02T02:00:00.000Z' - 1h AND time < '2023-01-02T03:00:00.000Z' - 1h "
               'GROUP BY time(10000ms) FILL(null)', params=rp))
    add(chrono(f'SELECT mean("value") AS "mean_value" FROM {fq}."recent" '
               "WHERE time > now() - 1h AND time < now() GROUP BY time(10000ms) FILL(null)",
               params=rp, now_dependent=True,
               why="the default range: 360 windows of 10 s ending at now(); both servers agree "
                   "unless the two queries straddle a 10 s boundary (then retried once)"))

    # --- now()-relative --------------------------------------------------------------------------
    # `recent` has points from now-50m to now-10m (at write time), on the minute + 30 s.
    add(Case("SELECT mean(value) FROM recent WHERE time > now() - 1h GROUP BY time(10m), host fill(none)",
             now_dependent=True,
             why="window times are absolute 10m boundaries; both servers agree unless the two queries "
                 "straddle a 10-minute boundary (then retried once)"))
    add(Case("SELECT count(value) FROM recent WHERE time > now() - 1h GROUP BY host",
             ignore_cols=("time",), now_dependent=True,
             why="an aggregate without GROUP BY time carries the lower bound, now()-1h, which is "
                 "when each server ran the query"))
    add(Case("SELECT mean(value) FROM recent WHERE time >= now() - 1h",
             ignore_cols=("time",), now_dependent=True,
             why="as above: time = now()-1h at the server"))
    add(Case("SELECT max(value) FROM recent WHERE time > now() - 1h",
             why="a single selector carries the point's own time: no exception needed"))
    add(Case("SELECT count(value) FROM recent WHERE time > now() - 1h GROUP BY time(10m) fill(0)",
             now_dependent=True,
             why="window times are absolute 10m boundaries; the fill(0) windows depend only on "
                 "which 10 minutes now() is in (retried once if the servers straddle a boundary)"))
    return c


# ---------------------------------------------------------------------------------------
# Comparing answers
# ---------------------------------------------------------------------------------------

POS_RE = re.compile(r"line \d+, char \d+")


class Diff(Exception):
    pass


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compare_cell(a, b, path, notes):
    if a is None or b is None:
        if a is not b:
            raise Diff(f"{path}: {json.dumps(a)} vs {json.dumps(b)}")
        return
    if isinstance(a, bool) or isinstance(b, bool):
        if not (isinstance(a, bool) and isinstance(b, bool) and a == b):
            raise Diff(f"{path}: {json.dumps(a)} vs {json.dumps(b)}")
        return
    if _num(a) and _num(b):
        if isinstance(a, int) and isinstance(b, int):
            if a != b:
                raise Diff(f"{path}: {a} vs {b}")
            return
        if isinstance(a, int) != isinstance(b, int):
            if float(a) != float(b):
                raise Diff(f"{path}: {json.dumps(a)} vs {json.dumps(b)}")
            notes.append(f"{path}: integer vs float of equal value: {json.dumps(a)} vs {json.dumps(b)}")
            return
        if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-300):
            raise Diff(f"{path}: {a!r} vs {b!r}")
        return
    if type(a) is not type(b) or a != b:
        raise Diff(f"{path}: {json.dumps(a)} vs {json.dumps(b)}")


def compare_series(sa, sb, path, case, notes):
    if set(sa) != set(sb):
        raise Diff(f"{path}: keys {sorted(sa)} vs {sorted(sb)}")
    for k in ("name", "tags", "columns", "partial"):
        if k in sa and sa[k] != sb[k]:
            raise Diff(f"{path}.{k}: {json.dumps(sa[k])} vs {json.dumps(sb[k])}")
    va, vb = sa.get("values"), sb.get("values")
    if (va is None) != (vb is None):
        raise Diff(f"{path}.values: present on one side only")
    if va is None:
        return
    if len(va) != len(vb):
        raise Diff(f"{path}.values: {len(va)} rows vs {len(vb)} rows")
    cols = sa.get("columns", [])
    skip = {i for i, c in enumerate(cols) if c in case.ignore_cols}
    for r, (ra, rb) in enumerate(zip(va, vb)):
        if len(ra) != len(rb):
            raise Diff(f"{path}.values[{r}]: {len(ra)} cells vs {len(rb)} cells")
        for i, (ca, cb) in enumerate(zip(ra, rb)):
            if i in skip:
                continue
            col = cols[i] if i < len(cols) else "?"
            compare_cell(ca, cb, f"{path}.values[{r}][{i}] ({col})", notes)


def compare_result(ra, rb, path, case, notes):
    if set(ra) != set(rb):
        raise Diff(f"{path}: keys {sorted(ra)} vs {sorted(rb)}")
    if ra.get("statement_id") != rb.get("statement_id"):
        raise Diff(f"{path}.statement_id: {ra.get('statement_id')} vs {rb.get('statement_id')}")
    if "error" in ra:
        if ra["error"] != rb["error"]:
            if case.exact_error:
                raise Diff(f"{path}.error: {json.dumps(ra['error'])} vs {json.dumps(rb['error'])}")
            notes.append(f"{path}.error text differs: {json.dumps(ra['error'])} vs {json.dumps(rb['error'])}")
    for k in ("partial", "messages"):
        if k in ra and ra[k] != rb[k]:
            raise Diff(f"{path}.{k}: {json.dumps(ra[k])} vs {json.dumps(rb[k])}")
    sa, sb = ra.get("series"), rb.get("series")
    if sa is None:
        return
    if len(sa) != len(sb):
        na = [(s.get("name"), s.get("tags")) for s in sa]
        nb = [(s.get("name"), s.get("tags")) for s in sb]
        raise Diff(f"{path}.series: {len(sa)} series vs {len(sb)}: {json.dumps(na)} vs {json.dumps(nb)}")
    for i, (x, y) in enumerate(zip(sa, sb)):
        compare_series(x, y, f"{path}.series[{i}]", case, notes)


def compare_answers(a, b, case):
    """Raises Diff at the first difference; returns a list of notes."""
    notes = []
    sta, _, rawa, ja = a
    stb, _, rawb, jb = b
    if sta != stb:
        raise Diff(f"HTTP status {sta} vs {stb}")
    media_a, media_b = (t.split(";")[0].strip().lower() for t in (a[1], b[1]))
    if media_a != media_b:
        raise Diff(f"Content-Type {a[1]!r} vs {b[1]!r}")
    if ja is None or jb is None:
        if ja is not None or jb is not None:
            raise Diff("body is JSON on one side only")
        return notes
    if len(ja) != len(jb):
        raise Diff(f"{len(ja)} JSON objects (chunks) vs {len(jb)}")
    for n, (oa, ob) in enumerate(zip(ja, jb)):
        p = f"chunk[{n}]" if len(ja) > 1 else "answer"
        if set(oa) != set(ob):
            raise Diff(f"{p}: top-level keys {sorted(oa)} vs {sorted(ob)}")
        if "error" in oa:
            ea, eb = oa["error"], ob["error"]
            # inflow may say where when 1.6 does not (`invalid duration`), not
            # the other way round.
            if POS_RE.search(ea) and not POS_RE.search(eb):
                raise Diff(f"{p}.error: position present on one side only: {json.dumps(ea)} vs {json.dumps(eb)}")
            if ea != eb:
                if case.exact_error:
                    raise Diff(f"{p}.error: {json.dumps(ea)} vs {json.dumps(eb)}")
                notes.append(f"{p}.error text differs: {json.dumps(ea)} vs {json.dumps(eb)}")
        ra, rb = oa.get("results"), ob.get("results")
        if ra is None:
            continue
        if len(ra) != len(rb):
            raise Diff(f"{p}.results: {len(ra)} vs {len(rb)} results")
        for i, (x, y) in enumerate(zip(ra, rb)):
            compare_result(x, y, f"{p}.results[{i}]", case, notes)
    return notes


def check_expectation(ans, case):
    """None if influxd's answer is what the case expects, else why not (a broken case)."""
    st, _, _, objs = ans
    if objs is None:
        return f"influxd's body is not JSON (status {st})"
    has_err = st != 200 or any("error" in o for o in objs) or any(
        "error" in r for o in objs for r in o.get("results", [])
    )
    if case.expect == "error":
        return None if has_err else "expected an error, influxd gave none"
    if has_err:
        return f"expected success, influxd gave an error (status {st}): {objs}"
    if case.expect == "empty":
        if any(r.get("series") for o in objs for r in o.get("results", [])):
            return "expected no series, influxd gave some"
    return None


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def short(raw, limit=3000):
    text = raw.decode("utf-8", "replace").strip()
    if len(text) > limit:
        return text[:limit] + f" ... ({len(text) - limit} more characters)"
    return text


def save(dirpath, n, case, ans, label):
    st, ctype, raw, _ = ans
    with open(os.path.join(dirpath, f"{n:03d}.json"), "wb") as f:
        f.write(raw)
    with open(os.path.join(dirpath, f"{n:03d}.txt"), "w") as f:
        f.write(f"server: {label}\n")
        f.write(f"method: {case.method}\n")
        f.write(f"q: {case.q}\n" if case.q is not None else "q: (none)\n")
        f.write(f"db: {case.db}\n" if case.db is not None else "db: (none)\n")
        for k, v in case.params.items():
            f.write(f"param {k}: {v}\n")
        for k, v in case.url_params.items():
            f.write(f"url param {k}: {v}\n")
        f.write(f"status: {st}\ncontent-type: {ctype}\n")
        f.write(f"expect: {case.expect}\n")
        if case.ignore_cols:
            f.write(f"ignored columns: {', '.join(case.ignore_cols)}\n")
        if case.why:
            f.write(f"why: {case.why}\n")


def prepare_dir(d):
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        if re.fullmatch(r"\d{3}\.(json|txt)", name):
            os.remove(os.path.join(d, name))


def setup(server, lines, create_via_query):
    st, _, body = server.request(
        "POST", "/query", None, urllib.parse.urlencode({"q": f"CREATE DATABASE {DB}"}),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    if st != 200 and create_via_query:
        raise RuntimeError(f"{server.label}: CREATE DATABASE answered {st}: {body[:300]!r}")
    if st != 200:
        print(f"note: {server.label}: CREATE DATABASE answered {st}; relying on /write to create it")
    server.write(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", nargs="?")
    ap.add_argument("token", nargs="?")
    ap.add_argument("--only-influxd", action="store_true")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--expected-dir", default="/tmp/iql/expected")
    ap.add_argument("--actual-dir", default="/tmp/iql/actual")
    ap.add_argument("-k", dest="filter")
    ap.add_argument("-v", dest="verbose", action="store_true")
    args = ap.parse_args()
    if not (args.only_influxd or args.self_test) and not (args.url and args.token):
        ap.error("give INFLOW_BASE_URL TOKEN, or --only-influxd, or --self-test")

    started = time.monotonic()
    ref = Influxd("influxd").start()
    left = Server("influxd", ref.base)
    right = None
    if args.self_test:
        right = Server("influxd#2", Influxd("influxd#2").start().base)
    elif not args.only_influxd:
        right = Server("inflow", args.url, args.token)

    lines = influxql_corpus.generate(time.time_ns() // 10**9 * 10**9)
    setup(left, lines, True)
    if right is not None:
        try:
            setup(right, lines, right.label != "inflow")
        except (OSError, RuntimeError) as e:
            print(f"{right.label}: could not write the corpus: {e}")
            print("influxql compare: 0 passed, 1 failed")
            return 1

    prepare_dir(args.expected_dir)
    if right is not None:
        prepare_dir(args.actual_dir)

    passed = failed = 0
    for n, case in enumerate(cases(), 1):
        if args.filter and (case.q is None or args.filter not in case.q):
            continue
        a = left.query(case)
        save(args.expected_dir, n, case, a, left.label)
        problem = check_expectation(a, case)
        if problem:
            failed += 1
            print(f"BROKEN CASE {n:03d}: {case.describe()}\n  {problem}\n  influxd: {short(a[2])}")
            continue
        if right is None:
            passed += 1
            if args.verbose:
                print(f"ok {n:03d} {case.describe()}")
            continue
        for attempt in range(2):
            try:
                b = right.query(case)
            except OSError as e:  # refused, reset, timed out: a failure of this statement
                b = (0, "", f"request failed: {e}".encode(), None)
            try:
                notes = compare_answers(a, b, case)
                err = None
            except Diff as e:
                err = str(e)
            if err is None or not case.now_dependent or attempt == 1:
                break
            a = left.query(case)  # now()-relative: run both again, closer together
        save(args.actual_dir, n, case, b, right.label)
        if err is None:
            passed += 1
            if args.verbose:
                print(f"ok {n:03d} {case.describe()}")
            for note in notes:
                print(f"note {n:03d}: {note}   [{case.q!r}]")
        else:
            failed += 1
            print(f"MISMATCH {n:03d}: {case.describe()}")
            if case.why:
                print(f"  why this case: {case.why}")
            print(f"  first difference ({left.label} vs {right.label}): {err}")
            print(f"  {left.label}: [{a[0]}] {short(a[2])}")
            print(f"  {right.label}: [{b[0]}] {short(b[2])}")
    mode = "influxd only" if right is None else f"{left.label} vs {right.label}"
    print(f"({mode}; {time.monotonic() - started:.1f} s; influxd answers in {args.expected_dir})")
    print(f"influxql compare: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    try:
        code = main()
    finally:
        Influxd.stop_all()
    sys.exit(code)
