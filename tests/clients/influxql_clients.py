"""Real InfluxQL clients against one server: inflow's v1 `/query` (and InfluxQL over Flight).

Usage:
  influxql_clients.py INFLOW_BASE_URL TOKEN DB   against a running inflow
  influxql_clients.py --influxd                  the same checks against a fresh influxd 1.6
                                                 (which the expected values come from; the
                                                 Flight checks are skipped: 1.x has no Flight)

DB should be a database only this script writes to: it writes the few points below through
v1 `/write` (Authorization: Token) and asserts exact answers, e.g. that SHOW MEASUREMENTS
lists `iqlc` alone. Each check prints `ok NAME` or `FAIL NAME: why`; the last line is
`influxql clients: N passed, M failed`; the exit status is non-zero on any failure.

Checks:
- the `influxdb` v1 Python client (5.3.2): query + get_points, epoch='ms', chunked=True with
  chunk_size=2 (it sends chunked=true&chunk_size=2 and reads one JSON object per line),
  several statements, a parse error, get_list_measurements, get_list_database,
  create_database; it sends Basic auth (username any, password = the token), query
  parameters in the URL (POST too, with no body), Accept: application/x-msgpack and
  Content-Type: application/json (JSON answers are fine: it decodes by Content-Type).
- influxdb3-python over Flight, language="influxql" (ticket
  {"database":…,"sql_query":…,"query_type":"influxql"}): the InfluxDB 3 shape, columns
  iox::measurement, time, GROUP BY tags, then the projection; SHOW statements as
  iox::measurement + their columns.
- Grafana's InfluxQL data source, replayed: GET /query?db=&epoch=ms&q= and POST with q in
  a form body and db/epoch in the URL; Basic auth with the token as password and
  Authorization: Token; the health check `SHOW measurements`; the template-variable queries.
- Debian's `influx` 1.6 shell: -format json, -format csv, the default column output, and
  -precision rfc3339; it sends GET /ping then POST /query?chunked=true&db=DB&epoch=ns&q=…
  with Basic auth and an empty body.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

LINES = [
    'iqlc,dc=x,host=a v=1.5,n=10i,s="one",t=true 1672617600',
    'iqlc,dc=x,host=a v=2.5,n=20i,s="two",t=false 1672617610',
    "iqlc,dc=x,host=a v=4,n=30i 1672617620",
    'iqlc,dc=y,host=b v=10.25,n=-5i,s="b1" 1672617605',
    "iqlc,dc=y,host=b v=20.75,n=7i,t=true 1672617625",
]
RANGE = "time >= '2023-01-02T00:00:00Z' AND time < '2023-01-02T00:01:00Z'"
MS_FROM, MS_TO = 1672617600000, 1672617659999

RESULTS = []


def check(name):
    """Runs the decorated function at once as one named check and records the outcome."""

    def run(fn):
        try:
            fn()
        except Skip as e:
            print(f"skip {name}: {e}")
            return
        except Exception as e:  # noqa: BLE001 - a failing check of any kind
            RESULTS.append(False)
            detail = str(e) if isinstance(e, AssertionError) else f"{type(e).__name__}: {e}"[:800]
            print(f"FAIL {name}: {detail}")
            return
        RESULTS.append(True)
        print(f"ok {name}")

    return run


class Skip(Exception):
    pass


def eq(got, want, what=""):
    if got != want:
        raise AssertionError(f"{what}\n    got:  {got!r}\n    want: {want!r}")


# -----------------------------------------------------------------------------------------
# HTTP helpers
# -----------------------------------------------------------------------------------------


def http(method, url, headers=None, body=None, timeout=20):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def write_points(base, token, db):
    st, _, body = http(
        "POST",
        f"{base}/write?" + urllib.parse.urlencode({"db": db, "precision": "s"}),
        {"Authorization": f"Token {token}", "Content-Type": "text/plain"},
        ("\n".join(LINES) + "\n").encode(),
    )
    if st != 204:
        raise RuntimeError(f"/write answered {st}: {body[:300]!r}")


# -----------------------------------------------------------------------------------------
# influxdb (v1) Python client
# -----------------------------------------------------------------------------------------

A_ROWS_RFC = [
    {"time": "2023-01-02T00:00:00Z", "v": 1.5, "n": 10, "s": "one"},
    {"time": "2023-01-02T00:00:10Z", "v": 2.5, "n": 20, "s": "two"},
    {"time": "2023-01-02T00:00:20Z", "v": 4, "n": 30, "s": None},
]


def v1_client_checks(host, port, token, db):
    from influxdb import InfluxDBClient
    from influxdb.exceptions import InfluxDBClientError

    client = InfluxDBClient(host=host, port=port, username="any", password=token, database=db,
                            timeout=20, retries=1)

    @check("v1 client: query + get_points (RFC3339 times)")
    def _():
        rs = client.query("SELECT v, n, s FROM iqlc WHERE host = 'a'")
        eq(list(rs.get_points()), A_ROWS_RFC)
        eq(list(rs.keys()), [("iqlc", None)], "ResultSet keys")

    @check("v1 client: query epoch='ms' with GROUP BY host")
    def _():
        rs = client.query("SELECT v, n FROM iqlc GROUP BY host", epoch="ms")
        eq(list(rs.keys()), [("iqlc", {"host": "a"}), ("iqlc", {"host": "b"})], "series keys")
        eq(list(rs.get_points(tags={"host": "b"})), [
            {"time": 1672617605000, "v": 10.25, "n": -5},
            {"time": 1672617625000, "v": 20.75, "n": 7},
        ])

    @check("v1 client: aggregate GROUP BY time(20s) fill(0), epoch='s'")
    def _():
        rs = client.query(f"SELECT mean(v), count(n) FROM iqlc WHERE {RANGE} GROUP BY time(20s) fill(0)",
                          epoch="s")
        eq(list(rs.get_points()), [
            {"time": 1672617600, "mean": 4.75, "count": 3},
            {"time": 1672617620, "mean": 12.375, "count": 2},
            {"time": 1672617640, "mean": 0, "count": 0},
        ])

    # The client asks for msgpack (Accept: application/x-msgpack) and reads a chunked answer
    # as msgpack when it gets one, which fails (msgpack ExtraData) on influxd 1.6's
    # msgpack chunks; JSON chunks, one object per line, work. So chunked users ask for JSON.
    json_client = InfluxDBClient(host=host, port=port, username="any", password=token, database=db,
                                 timeout=20, retries=1, headers={"Accept": "application/json"})

    @check("v1 client: chunked=True, chunk_size=2 (one ResultSet per chunk)")
    def _():
        chunks = list(json_client.query("SELECT v FROM iqlc GROUP BY host", chunked=True, chunk_size=2))
        got = [[(k, list(rs.get_points(*k))) for k in rs.keys()] for rs in chunks]
        eq(got, [
            [(("iqlc", {"host": "a"}), [{"time": "2023-01-02T00:00:00Z", "v": 1.5},
                                        {"time": "2023-01-02T00:00:10Z", "v": 2.5}])],
            [(("iqlc", {"host": "a"}), [{"time": "2023-01-02T00:00:20Z", "v": 4}])],
            [(("iqlc", {"host": "b"}), [{"time": "2023-01-02T00:00:05Z", "v": 10.25},
                                        {"time": "2023-01-02T00:00:25Z", "v": 20.75}])],
        ])

    @check("v1 client: two statements give two ResultSets")
    def _():
        out = client.query("SELECT count(v) FROM iqlc; SELECT last(s) FROM iqlc WHERE host = 'a'")
        eq([list(r.get_points()) for r in out], [
            [{"time": "1970-01-01T00:00:00Z", "count": 5}],
            [{"time": "2023-01-02T00:00:10Z", "last": "two"}],
        ])

    @check("v1 client: a parse error raises InfluxDBClientError(400)")
    def _():
        try:
            client.query("SELECT FROM iqlc")
        except InfluxDBClientError as e:
            eq(e.code, 400, "code")
            body = json.loads(e.content)
            assert "error" in body and "line 1, char" in body["error"], body
            return
        raise AssertionError("no exception")

    @check("v1 client: get_list_measurements")
    def _():
        eq(client.get_list_measurements(), [{"name": "iqlc"}])

    @check("v1 client: create_database + get_list_database")
    def _():
        client.create_database("iqlc_created")
        dbs = client.get_list_database()
        assert all(set(d) == {"name"} for d in dbs), dbs
        names = [d["name"] for d in dbs]
        assert db in names and "iqlc_created" in names, names

    @check("v1 client: SHOW TAG VALUES / FIELD KEYS via get_points")
    def _():
        eq(list(client.query('SHOW TAG VALUES FROM iqlc WITH KEY = "host"').get_points()),
           [{"key": "host", "value": "a"}, {"key": "host", "value": "b"}])
        eq(list(client.query("SHOW FIELD KEYS FROM iqlc").get_points()), [
            {"fieldKey": "n", "fieldType": "integer"},
            {"fieldKey": "s", "fieldType": "string"},
            {"fieldKey": "t", "fieldType": "boolean"},
            {"fieldKey": "v", "fieldType": "float"},
        ])


# -----------------------------------------------------------------------------------------
# influxdb3-python, InfluxQL over Flight
# -----------------------------------------------------------------------------------------


def flight_checks(base, token, db):
    import pyarrow as pa
    from influxdb_client_3 import InfluxDBClient3

    def rows(table):
        if "time" in table.column_names:
            i = table.schema.get_field_index("time")
            table = table.set_column(i, "time", table.column("time").cast(pa.int64()))
        return [tuple(r.values()) for r in table.to_pylist()]

    with InfluxDBClient3(host=base, token=token, database=db, query_timeout=20000) as client:

        @check("flight influxql: raw SELECT (iox::measurement, time, projection)")
        def _():
            t = client.query("SELECT v, n FROM iqlc WHERE host = 'a'", language="influxql")
            eq(t.column_names, ["iox::measurement", "time", "v", "n"], "columns")
            assert str(t.schema.field("time").type) == "timestamp[ns]", t.schema
            eq(rows(t), [
                ("iqlc", 1672617600000000000, 1.5, 10),
                ("iqlc", 1672617610000000000, 2.5, 20),
                ("iqlc", 1672617620000000000, 4.0, 30),
            ])

        @check("flight influxql: GROUP BY tag (tag column after time), aggregate time 0")
        def _():
            t = client.query("SELECT mean(v) FROM iqlc GROUP BY host", language="influxql")
            eq(t.column_names, ["iox::measurement", "time", "host", "mean"], "columns")
            eq(rows(t), [("iqlc", 0, "a", 8 / 3), ("iqlc", 0, "b", 15.5)])

        @check("flight influxql: SHOW MEASUREMENTS")
        def _():
            t = client.query("SHOW MEASUREMENTS", language="influxql")
            eq(t.column_names, ["iox::measurement", "name"], "columns")
            eq(rows(t), [("measurements", "iqlc")])

        @check("flight influxql: SHOW TAG KEYS / FIELD KEYS")
        def _():
            t = client.query("SHOW TAG KEYS FROM iqlc", language="influxql")
            eq(t.column_names, ["iox::measurement", "tagKey"], "columns")
            eq(rows(t), [("iqlc", "dc"), ("iqlc", "host")])
            t = client.query("SHOW FIELD KEYS FROM iqlc", language="influxql")
            eq(t.column_names, ["iox::measurement", "fieldKey", "fieldType"], "columns")
            eq(rows(t), [("iqlc", "n", "integer"), ("iqlc", "s", "string"),
                         ("iqlc", "t", "boolean"), ("iqlc", "v", "float")])


# -----------------------------------------------------------------------------------------
# Grafana, replayed
# -----------------------------------------------------------------------------------------

G_TS = (f'SELECT mean("v") FROM "iqlc" WHERE ("host" =~ /^(a|b)$/) AND time >= {MS_FROM}ms and '
        f'time <= {MS_TO}ms GROUP BY time(20s), "host" fill(null)')
G_TS_ANSWER = {"results": [{"statement_id": 0, "series": [
    {"name": "iqlc", "tags": {"host": "a"}, "columns": ["time", "mean"],
     "values": [[1672617600000, 2], [1672617620000, 4], [1672617640000, None]]},
    {"name": "iqlc", "tags": {"host": "b"}, "columns": ["time", "mean"],
     "values": [[1672617600000, 10.25], [1672617620000, 20.75], [1672617640000, None]]},
]}]}


def grafana_checks(base, token, db):
    def get(q, auth):
        url = f"{base}/query?" + urllib.parse.urlencode({"db": db, "epoch": "ms", "q": q})
        return http("GET", url, {"Authorization": auth, "User-Agent": "Grafana/11.0.0"})

    def post(q, auth):
        url = f"{base}/query?" + urllib.parse.urlencode({"db": db, "epoch": "ms"})
        return http("POST", url, {"Authorization": auth, "User-Agent": "Grafana/11.0.0",
                                  "Content-Type": "application/x-www-form-urlencoded"},
                    urllib.parse.urlencode({"q": q}).encode())

    def answer(resp):
        st, hdrs, body = resp
        eq(st, 200, f"status (body {body[:300]!r})")
        ctype = next((v for k, v in hdrs.items() if k.lower() == "content-type"), "")
        assert ctype.split(";")[0].strip() == "application/json", ctype
        return json.loads(body)

    for mode, send in (("GET", get), ("POST", post)):
        for auth_name, auth in (("Basic", basic("grafana", token)), ("Token", f"Token {token}")):

            @check(f"grafana {mode} {auth_name}: time series panel query")
            def _():
                eq(answer(send(G_TS, auth)), G_TS_ANSWER)

    @check("grafana: health check `SHOW measurements`")
    def _():
        eq(answer(get("SHOW measurements", basic("grafana", token))),
           {"results": [{"statement_id": 0, "series": [
               {"name": "measurements", "columns": ["name"], "values": [["iqlc"]]}]}]})

    meta = [
        ("SHOW MEASUREMENTS LIMIT 100", [{"name": "measurements", "columns": ["name"], "values": [["iqlc"]]}]),
        ("SHOW MEASUREMENTS WITH MEASUREMENT =~ /(?i)QL/ LIMIT 100",
         [{"name": "measurements", "columns": ["name"], "values": [["iqlc"]]}]),
        ('SHOW TAG KEYS FROM "iqlc"', [{"name": "iqlc", "columns": ["tagKey"], "values": [["dc"], ["host"]]}]),
        ('SHOW TAG VALUES FROM "iqlc" WITH KEY = "host"',
         [{"name": "iqlc", "columns": ["key", "value"], "values": [["host", "a"], ["host", "b"]]}]),
        ('SHOW TAG VALUES FROM "iqlc" WITH KEY = "host" WHERE "dc" = \'y\'',
         [{"name": "iqlc", "columns": ["key", "value"], "values": [["host", "b"]]}]),
        ('SHOW FIELD KEYS FROM "iqlc"', [{"name": "iqlc", "columns": ["fieldKey", "fieldType"], "values": [
            ["n", "integer"], ["s", "string"], ["t", "boolean"], ["v", "float"]]}]),
        (f'SHOW RETENTION POLICIES on "{db}"', [{"columns": ["name", "duration", "shardGroupDuration",
                                                              "replicaN", "default"],
                                                  "values": [["autogen", "0s", "168h0m0s", 1, True]]}]),
    ]
    for q, series in meta:

        @check(f"grafana template variable: {q}")
        def _():
            eq(answer(post(q, f"Token {token}")), {"results": [{"statement_id": 0, "series": series}]})

    @check("grafana: table panel raw query, ORDER BY time DESC LIMIT 2")
    def _():
        q = f'SELECT "v", "s", "t" FROM "iqlc" WHERE {RANGE} ORDER BY time DESC LIMIT 2'
        eq(answer(get(q, basic("grafana", token))), {"results": [{"statement_id": 0, "series": [
            {"name": "iqlc", "columns": ["time", "v", "s", "t"],
             "values": [[1672617625000, 20.75, None, True], [1672617620000, 4, None, None]]}]}]})


# -----------------------------------------------------------------------------------------
# influx 1.6 shell
# -----------------------------------------------------------------------------------------

CLI_JSON = (
    '{"results":[{"series":[{"name":"iqlc","columns":["time","v","n","s"],"values":'
    '[[1672617600000000000,1.5,10,"one"],[1672617610000000000,2.5,20,"two"],'
    '[1672617620000000000,4,30,null]]}]}]}\n'
)
CLI_CSV = (
    "name,time,v,n,s\n"
    "iqlc,1672617600000000000,1.5,10,one\n"
    "iqlc,1672617610000000000,2.5,20,two\n"
    "iqlc,1672617620000000000,4,30,\n"
)
CLI_COLUMN = (
    "name: iqlc\n"
    "tags: host=a\n"
    "time                 mean\n"
    "----                 ----\n"
    "2023-01-02T00:00:00Z 2\n"
    "2023-01-02T00:00:20Z 4\n"
    "\n"
    "name: iqlc\n"
    "tags: host=b\n"
    "time                 mean\n"
    "----                 ----\n"
    "2023-01-02T00:00:00Z 10.25\n"
    "2023-01-02T00:00:20Z 20.75\n"
)
CLI_SHOW = (
    "name: measurements\n"
    "name\n"
    "----\n"
    "iqlc\n"
)


def cli_checks(base, token, db):
    influx = shutil.which("influx") or "/usr/bin/influx"
    if not os.access(influx, os.X_OK):
        raise Skip("no influx shell: apt-get install influxdb-client")
    u = urllib.parse.urlsplit(base)
    common = [influx, "-host", u.hostname, "-port", str(u.port or 80),
              "-username", "u", "-password", token, "-database", db]

    def run(*args):
        p = subprocess.run(common + list(args), capture_output=True, text=True, timeout=20,
                           stdin=subprocess.DEVNULL)
        eq(p.returncode, 0, f"exit status (stderr {p.stderr!r}, stdout {p.stdout[:300]!r})")
        return p.stdout

    q = "SELECT v, n, s FROM iqlc WHERE host = 'a'"

    @check("influx shell: -format json")
    def _():
        eq(run("-execute", q, "-format", "json"), CLI_JSON)

    @check("influx shell: -format csv")
    def _():
        eq(run("-execute", q, "-format", "csv"), CLI_CSV)

    @check("influx shell: column output, -precision rfc3339, GROUP BY host")
    def _():
        eq(run("-execute", f"SELECT mean(v) FROM iqlc WHERE {RANGE} GROUP BY time(20s), host fill(none)",
               "-precision", "rfc3339"), CLI_COLUMN)

    @check("influx shell: SHOW MEASUREMENTS")
    def _():
        eq(run("-execute", "SHOW MEASUREMENTS"), CLI_SHOW)

    @check("influx shell: a parse error exits 1 with the server's message")
    def _():
        p = subprocess.run(common + ["-execute", "SELECT FROM iqlc"], capture_output=True, text=True,
                           timeout=20, stdin=subprocess.DEVNULL)
        eq(p.returncode, 1, "exit status")
        assert "error parsing query" in p.stderr + p.stdout and "line 1, char" in p.stderr + p.stdout, (
            p.stderr, p.stdout)


# -----------------------------------------------------------------------------------------


def main():
    args = sys.argv[1:]
    influxd = None
    if args == ["--influxd"]:
        import influxql_compare

        influxd = influxql_compare.Influxd("influxd").start()
        base, token, db = influxd.base, "not-checked-by-influxd", "iqlc_db"
        st, _, body = http("POST", f"{base}/query", {"Content-Type": "application/x-www-form-urlencoded"},
                           urllib.parse.urlencode({"q": f"CREATE DATABASE {db}"}).encode())
        assert st == 200, body
    elif len(args) == 3:
        base, token, db = args
        base = base.rstrip("/")
    else:
        print(__doc__)
        return 2
    try:
        write_points(base, token, db)
        u = urllib.parse.urlsplit(base)
        v1_client_checks(u.hostname, u.port or 80, token, db)
        grafana_checks(base, token, db)
        cli_checks(base, token, db)
        if influxd is None:
            flight_checks(base, token, db)
        else:
            print("skip flight influxql: influxd 1.6 has no Flight endpoint")
    finally:
        if influxd is not None:
            influxd.cleanup()
    passed, failed = RESULTS.count(True), RESULTS.count(False)
    print(f"influxql clients: {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
