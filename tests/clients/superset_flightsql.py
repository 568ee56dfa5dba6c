"""What Apache Superset does with a Flight SQL database, through the adapter it uses for
DataFusion (`flightsql-dbapi`'s SQLAlchemy dialect, `datafusion+flightsql://`).

Usage: superset_flightsql.py URL TOKEN DATABASE OTHER_DATABASE

The steps are Superset's (superset/db_engine_specs/datafusion.py, models/core.py,
connectors/sqla/models.py):
- "Test connection": `create_engine(uri)`, then `dialect.do_ping(raw_connection)`, which
  runs `SELECT 1` (SQLAlchemy 1.4's ping);
- "Add dataset" (schema reflection): `inspect(engine)`: `get_schema_names()`,
  `get_table_names(schema)`, `get_view_names(schema)`, then for the table chosen
  `get_columns`, `get_pk_constraint`, `get_foreign_keys`, `get_indexes`;
- SQL Lab's preview: `SELECT <columns> FROM iox.cpu LIMIT 100`, built with `select()` and
  compiled with literal binds, as `BaseEngineSpec.select_star` does;
- a time-series chart: the time grain expression of Superset's `DataFusionEngineSpec`
  (`DATE_TRUNC('minute', {col})`, `DATE_BIN(INTERVAL '5 minutes', {col}, TIMESTAMP
  '1970-01-01 00:00:00')`) labelled `time`, a dimension, the metric `AVG(usage)`, the time
  range as `convert_dttm` renders it (`TIMESTAMP '… .ffffff'`), GROUP BY, ORDER BY the
  metric, LIMIT the row limit; compiled to a string and run on a raw DB-API cursor, as
  `Database.get_df` does.
The database goes in the URI's query, as InfluxDB's Superset guide writes it
(`?database=…&token=…`; `bucket-name=` for Serverless); `insecure=true` is plain TCP.

Prints JSON: the answers, with timestamps as ISO strings and SQL types as names.
"""

import json
import math
import sys
import warnings

import flightsql.sqlalchemy  # noqa: F401 - registers the datafusion+flightsql dialect
import sqlalchemy as sa
from sqlalchemy import and_, column, func, literal_column, select, table, text

# SQLAlchemy 1.4 (the adapter needs < 2.0) warns about 2.0-style usage Superset shares.
warnings.filterwarnings("ignore", category=sa.exc.SADeprecationWarning)

# superset/db_engine_specs/datafusion.py, _time_grain_expressions (PT1M, PT5M).
GRAINS = {
    "PT1M": "DATE_TRUNC('minute', {col})",
    "PT5M": "DATE_BIN(INTERVAL '5 minutes', {col}, TIMESTAMP '1970-01-01 00:00:00')",
}


def cell(v):
    """A JSON-able cell: pandas timestamps as ISO strings; the NaN pandas makes of a
    null string (what Superset's result set gets) as null."""
    if isinstance(v, float) and math.isnan(v):
        return None
    return v.isoformat() if hasattr(v, "isoformat") else v


def run(raw, sql, sort=False):
    """Runs compiled SQL on a DB-API cursor as Superset does; rows and description
    (`sort`: rows sorted here, for a statement without ORDER BY)."""
    cur = raw.cursor()
    cur.execute(sql)
    rows = [[cell(v) for v in row] for row in cur.fetchall()]
    return {
        "sql": sql,
        "columns": [[name, type_.__name__] for name, type_ in cur.description],
        "rows": sorted(rows, key=json.dumps) if sort else rows,
    }


def chart(engine, raw, grain):
    """Superset's time-series query (get_sqla_query) for one time grain."""
    time_col = column("time")
    rendered = str(time_col.compile(dialect=engine.dialect))
    bucket = literal_column(GRAINS[grain].replace("{col}", rendered)).label("time")
    metric = func.avg(column("usage")).label("AVG(usage)")
    qry = (
        select([bucket, column("host").label("host"), metric])
        .select_from(table("cpu", schema="iox"))
        .where(
            and_(
                time_col >= text("TIMESTAMP '2023-01-02 00:00:00.000000'"),
                time_col < text("TIMESTAMP '2023-01-02 00:10:00.000000'"),
            )
        )
        .group_by(bucket, column("host"))
        .order_by(metric.desc())
        .limit(10000)
    )
    sql = str(qry.compile(engine, compile_kwargs={"literal_binds": True}))
    return run(raw, sql)


def main() -> int:
    url, token, database, other = sys.argv[1:5]
    host_port = url.removeprefix("http://")
    uri = f"datafusion+flightsql://{host_port}?insecure=true&token={token}&database={database}"
    out = {}
    engine = sa.create_engine(uri)
    raw = engine.raw_connection()
    out["ping"] = engine.dialect.do_ping(raw)
    out["quote"] = engine.dialect.identifier_preparer.initial_quote

    insp = sa.inspect(engine)
    schemas = insp.get_schema_names()
    out["schemas"] = schemas
    out["tables"] = {s: insp.get_table_names(schema=s) for s in schemas}
    out["views"] = insp.get_view_names(schema="iox")
    out["columns"] = [
        [c["name"], str(c["type"]), c["nullable"]] for c in insp.get_columns("cpu", schema="iox")
    ]
    out["keys"] = [
        insp.get_pk_constraint("cpu", schema="iox"),
        insp.get_foreign_keys("cpu", schema="iox"),
        insp.get_indexes("cpu", schema="iox"),
    ]

    cols = [literal_column(insp.dialect.identifier_preparer.quote(c[0])) for c in out["columns"]]
    preview = select(cols).select_from(table("cpu", schema="iox")).limit(100)
    sql = str(preview.compile(engine, compile_kwargs={"literal_binds": True}))
    out["preview"] = run(raw, sql, sort=True)
    out["chart_1m"] = chart(engine, raw, "PT1M")
    out["chart_5m"] = chart(engine, raw, "PT5M")
    raw.close()

    # InfluxDB Cloud Serverless' guide names the bucket instead.
    by_bucket = sa.create_engine(uri.replace("&database=", "&bucket-name="))
    out["bucket_name_tables"] = sa.inspect(by_bucket).get_table_names(schema="iox")

    # What Superset shows for a wrong token and for a database the token may not read.
    errors = {}
    for name, bad in (
        ("bad_token", uri.replace(f"token={token}", "token=wrong")),
        ("other_database", uri.replace(f"database={database}", f"database={other}")),
    ):
        try:
            sa.create_engine(bad).raw_connection().cursor().execute("SELECT 1")
            errors[name] = "no error"
        except Exception as e:  # noqa: BLE001 - pyarrow's Flight errors, as Superset sees them
            errors[name] = [type(e).__name__, str(e).split(". Detail:")[0]]
    out["errors"] = errors
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
