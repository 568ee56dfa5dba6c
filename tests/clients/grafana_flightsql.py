"""Grafana's Flight SQL data source (influxdata/grafana-flightsql-datasource, Go; Grafana's
InfluxDB data source in SQL mode embeds the same code), replayed call by call. The plugin
cannot run here (a Grafana backend plugin); its calls are Flight SQL commands, built here
by flightsql-dbapi's FlightSQLClient exactly as the Go `flightsql.Client` builds them.

Usage: grafana_flightsql.py URL TOKEN DATABASE

What the plugin does (pkg/flightsql/*.go at the version read):
- connection (flightsql.go, NewDatasource): gRPC metadata `authorization: Bearer TOKEN`
  plus the user's key/value pairs, here `database: DATABASE` as InfluxDB's guide says
  (`bucket-name` for Serverless); with username/password instead of a token it first
  calls Handshake with Basic auth and sends the `authorization` header the server
  answers with on every call;
- "Save & test" (CheckHealth): `select 1`, as a table;
- the query editor (resources.go): `/flightsql/sql-info` = GetSqlInfo with no ids (all of
  them); the editor then takes row 17 of the value column as its keywords and spreads rows
  18..21 as function lists (src/components/QueryEditor.tsx: `[...values[1][18], ...]`,
  which throws on a shorter answer); `/flightsql/tables`
  = GetTables with table types ["BASE TABLE", "table"], the names from column 2;
  `/flightsql/columns?table=T` = GetTables filtered by name with include_schema, the first
  row's `table_schema` decoded;
- a query (query_data.go): GetFlightInfo(CommandStatementQuery) with exactly one endpoint,
  then DoGet of its ticket; the SQL has Grafana's macros expanded (macro.go and the
  plugin SDK's sqlutil): `$__timeFilter(c)`/`$__timeRange(c)` = `c >= 'FROM' AND c <=
  'TO'` (RFC 3339), `$__timeRangeFrom(c)` = `c >= 'FROM'`, `$__timeRangeTo(c)` = `c <=
  'TO'`, `$__timeFrom`/`$__timeTo` = `cast('FROM' as timestamp)`, `$__interval` =
  `interval 'N second'`, `$__dateBin(c)` = `date_bin(interval 'N second', c, timestamp
  '1970-01-01T00:00:00Z')` (`$__dateBinAlias(c)` adds `as c_binned`), `$__timeGroup(c,
  hour)` = `datepart('hour', c),datepart('day', c),…` (`$__timeGroupAlias` with `as
  c_hour`…); a column type outside the plugin's newField (utf8, integers, floats, bool,
  timestamp, duration) would be lost, and a timestamp is read as nanoseconds whatever its
  unit: each answer's Arrow types are printed so the test pins them.
Grafana's own InfluxDB data source in SQL mode (pkg/tsdb/influxdb/fsql) connects and
queries the same way (token, metadata, the same macros but `$__timeRange*`); its query
builder lists schemas, tables and columns with information_schema SQL
(flightsqlMetaQuery.ts) and writes `SELECT "c", AVG("f") FROM "t" WHERE "time" >=
$__timeFrom AND "time" <= $__timeTo AND … GROUP BY … ORDER BY … LIMIT n` (sqlUtil.ts).

Prints JSON.
"""

import json
import re
import sys

import pyarrow as pa
from flightsql import FlightSQLClient
from pyarrow import flight

FROM, TO = "2023-01-02T00:00:00Z", "2023-01-02T00:10:00Z"
INTERVAL_S = 60  # the panel's interval, 60000 ms


def expand(sql):
    """Grafana's macro expansion (sqlutil.Interpolate with the plugin's macros)."""

    def args_of(m, text):
        rest = text[m.end() :]
        if not rest.startswith("("):
            return None, m.end()
        depth = 0
        for i, ch in enumerate(rest):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                inner = rest[1:i]
                return [a.strip() for a in inner.split(",")], m.end() + i + 1
        raise ValueError(f"unclosed macro in {text!r}")

    def time_group(c, period, alias):
        parts = ["minute", "hour", "day", "month", "year"]
        return ",".join(
            f"datepart('{p}', {c})" + (f" as {c}_{p}" if alias else "")
            for p in parts[parts.index(period) :]
        )

    bin_ = f"date_bin(interval '{INTERVAL_S} second', {{c}}, timestamp '1970-01-01T00:00:00Z')"
    macros = {
        "timeFilter": lambda a: f"{a[0]} >= '{FROM}' AND {a[0]} <= '{TO}'",
        "timeRange": lambda a: f"{a[0]} >= '{FROM}' AND {a[0]} <= '{TO}'",
        "timeRangeFrom": lambda a: f"{a[0]} >= '{FROM}'",
        "timeRangeTo": lambda a: f"{a[0]} <= '{TO}'",
        "timeFrom": lambda a: f"cast('{FROM}' as timestamp)",
        "timeTo": lambda a: f"cast('{TO}' as timestamp)",
        "interval": lambda a: f"interval '{INTERVAL_S} second'",
        "dateBin": lambda a: bin_.format(c=a[0]),
        "dateBinAlias": lambda a: bin_.format(c=a[0]) + f" as {a[0]}_binned",
        "timeGroup": lambda a: time_group(a[0], a[1], False),
        "timeGroupAlias": lambda a: time_group(a[0], a[1], True),
    }
    out = sql
    for name, fn in macros.items():
        while True:
            m = re.search(rf"\$__{name}\b", out)
            if m is None:
                break
            args, end = args_of(m, out)
            out = out[: m.start()] + fn(args or []) + out[end:]
    return out


# The plugin's newField/copyData: the Arrow types it turns into Grafana fields.
GRAFANA_TYPES = (
    pa.types.is_string,
    pa.types.is_floating,
    pa.types.is_integer,
    pa.types.is_boolean,
    pa.types.is_timestamp,
    pa.types.is_duration,
)


def cell(v):
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def answer(client, sql):
    """CheckHealth/QueryData: one endpoint, then DoGet; names, types and rows."""
    info = client.execute(sql)
    assert len(info.endpoints) == 1, f"{len(info.endpoints)} endpoints (the plugin needs 1)"
    table = client.do_get(info.endpoints[0].ticket).read_all()
    lost = [f.name for f in table.schema if not any(t(f.type) for t in GRAFANA_TYPES)]
    assert not lost, f"columns Grafana cannot read: {lost}"
    return {
        "sql": sql,
        "types": [[f.name, str(f.type)] for f in table.schema],
        "rows": [[cell(v) for v in row.values()] for row in table.to_pylist()],
    }


def union_kind(value_type):
    return {
        pa.string(): "string",
        pa.bool_(): "bool",
        pa.int32(): "int32",
        pa.int64(): "int64",
    }.get(value_type, "list" if pa.types.is_list(value_type) else str(value_type))


def sql_info(client):
    info = client.get_sql_info([])
    table = client.do_get(info.endpoints[0].ticket).read_all()
    values = table.column("value").combine_chunks()
    kinds = [union_kind(values.type.field(values.type_codes[i].as_py()).type) for i in range(len(values))]
    names = table.column("info_name").to_pylist()

    def listed(row):
        value = values[row].as_py() if row < len(values) else None
        return value if isinstance(value, list) else []

    by_id = dict(zip(names, values.to_pylist()))
    return {
        "sorted": names == sorted(names),
        "name": by_id.get(0),
        "quote": by_id.get(504),
        # The editor (QueryEditor.tsx) takes row 17 of the value column as its
        # keywords and spreads rows 18..21 as numeric, string, system and date/time
        # functions: each must be a list, and the functions its macros use listed.
        "editor_rows": kinds[17:22],
        "editor_lists": {
            name: want in listed(row)
            for row, name, want in (
                (17, "keywords", "SELECT"),
                (18, "numeric", "abs"),
                (19, "string", "concat"),
                (20, "system", "coalesce"),
                (21, "datetime", "date_bin"),
                (21, "datetime:datepart", "datepart"),
            )
        },
    }


def main() -> int:
    url, token, database = sys.argv[1:4]
    host, port = url.removeprefix("http://").rsplit(":", 1)
    client = FlightSQLClient(
        host=host, port=int(port), token=token, insecure=True, metadata={"database": database}
    )
    out = {"health": answer(client, "select 1")["rows"], "sql_info": sql_info(client)}

    info = client.get_tables(table_types=["BASE TABLE", "table"])
    tables = client.do_get(info.endpoints[0].ticket).read_all()
    out["tables"] = tables.column(2).to_pylist()

    info = client.get_tables(table_name_filter_pattern="cpu", include_schema=True)
    first = client.do_get(info.endpoints[0].ticket).read_all().to_pylist()[0]
    schema = pa.ipc.read_schema(pa.py_buffer(first["table_schema"]))
    out["columns"] = [[f.name, str(f.type)] for f in schema]

    panels = {
        "series": "SELECT $__dateBin(time) AS time, avg(usage) AS usage FROM cpu "
        "WHERE $__timeRange(time) GROUP BY 1 ORDER BY 1",
        "by_host": "SELECT $__dateBin(time) AS time, host, avg(usage) AS usage FROM cpu "
        "WHERE $__timeFilter(time) GROUP BY 1, host ORDER BY 1, host",
        "raw": "SELECT time, usage FROM cpu WHERE time >= $__timeFrom AND time < $__timeTo "
        "AND host = 'a' ORDER BY time",
        "interval": "SELECT date_bin($__interval, time) AS time, max(usage) AS usage FROM cpu "
        "WHERE $__timeRangeFrom(time) AND $__timeRangeTo(time) GROUP BY 1 ORDER BY 1",
        "bin_alias": "SELECT $__dateBinAlias(time), count(usage) AS n FROM cpu "
        "WHERE $__timeRange(time) GROUP BY 1 ORDER BY 1",
        "time_group": "SELECT $__timeGroupAlias(time, hour), count(*) AS n FROM cpu "
        "WHERE $__timeRange(time) GROUP BY $__timeGroup(time, hour)",
        "variable": "SELECT DISTINCT host FROM cpu ORDER BY host",
        "builder": "SELECT usage,host,time FROM cpu WHERE host = 'b' and $__timeFilter(time) "
        "ORDER BY time LIMIT 10",
        # Grafana's own InfluxDB data source in SQL mode (public/app/plugins/datasource/
        # influxdb/fsql): the builder's lists come from information_schema
        # (flightsqlMetaQuery.ts), its query from toRawSql (sqlUtil.ts).
        "core_datasets": "SELECT DISTINCT TABLE_SCHEMA from information_schema.TABLES "
        "where TABLE_TYPE != 'SYSTEM VIEW' ORDER BY TABLE_SCHEMA",
        "core_tables": "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'iox' ORDER BY table_name",
        "core_columns": "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'iox' AND table_name = 'cpu' ORDER BY column_name",
        "core_builder": 'SELECT "host", AVG("usage") FROM "cpu" WHERE "time" >= $__timeFrom '
        'AND "time" <= $__timeTo AND "host" = \'a\' GROUP BY "host" ORDER BY "host" ASC LIMIT 50',
    }
    out["panels"] = {name: answer(client, expand(sql)) for name, sql in panels.items()}

    # Username/password: Handshake with Basic auth, then the answered header on every call.
    try:
        basic = flight.FlightClient(f"grpc+tcp://{host}:{port}")
        pair = basic.authenticate_basic_token(b"grafana", token.encode())
        by_password = FlightSQLClient(host=host, port=int(port), token="unused", insecure=True)
        by_password.client = basic
        by_password.headers = [pair, (b"database", database.encode())]
        out["basic_auth"] = answer(by_password, "select 1")["rows"]
    except pa.ArrowException as e:  # FlightError and ArrowNotImplementedError alike
        out["basic_auth"] = [type(e).__name__, str(e).split(". Detail:")[0]]

    try:
        flight.FlightClient(f"grpc+tcp://{host}:{port}").authenticate_basic_token(b"grafana", b"wrong")
        out["basic_auth_wrong"] = "no error"
    except pa.ArrowException as e:
        out["basic_auth_wrong"] = [type(e).__name__, str(e).split(". Detail:")[0]]

    bad = FlightSQLClient(
        host=host, port=int(port), token="wrong", insecure=True, metadata={"database": database}
    )
    try:
        answer(bad, "select 1")
        out["bad_token"] = "no error"
    except pa.ArrowException as e:
        out["bad_token"] = [type(e).__name__, str(e).split(". Detail:")[0]]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
