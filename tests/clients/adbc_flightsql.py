"""Queries through ADBC's Flight SQL driver (what Flight SQL tools use): a
statement, a prepared statement, the table list and a table's schema.

Usage: adbc_flightsql.py URL TOKEN DATABASE

Prints JSON: {"rows", "prepared", "tables", "schema"}.
"""

import json
import sys

import adbc_driver_flightsql.dbapi as flightsql


def main() -> int:
    url, token, database = sys.argv[1], sys.argv[2], sys.argv[3]
    uri = url.replace("http://", "grpc+tcp://")
    options = {
        "adbc.flight.sql.authorization_header": f"Bearer {token}",
        "adbc.flight.sql.rpc.call_header.database": database,
    }
    out = {}
    with flightsql.connect(uri, db_kwargs=options) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT host, usage FROM cpu ORDER BY host")
            out["rows"] = cur.fetch_arrow_table().to_pylist()
            sql = "SELECT count(*) AS n, max(usage) AS top FROM cpu"
            cur.adbc_prepare(sql)
            cur.execute(sql)
            out["prepared"] = cur.fetch_arrow_table().to_pylist()
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        out["tables"] = sorted(
            table["table_name"]
            for catalog in objects
            for schema in catalog["catalog_db_schemas"] or []
            for table in schema["db_schema_tables"] or []
        )
        schema = conn.adbc_get_table_schema("cpu")
        out["schema"] = {f.name: str(f.type) for f in schema}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
