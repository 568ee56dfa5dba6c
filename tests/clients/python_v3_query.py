"""Writes with `influxdb3-python` (InfluxDBClient3.write), then reads back with its
SQL query (the InfluxDB 3 Flight ticket) and prints what came back as JSON.

Usage: python_v3_query.py URL TOKEN DATABASE

Output: {"types": {column: arrow type}, "rows": [{column: value}], "tables": [...]}
with `time` as integer nanoseconds.
"""

import json
import sys

import pyarrow as pa
from influxdb_client_3 import InfluxDBClient3


def main() -> int:
    url, token, database = sys.argv[1], sys.argv[2], sys.argv[3]
    with InfluxDBClient3(host=url, token=token, database=database) as client:
        client.write(
            record=[
                'q3,host=a,region=eu f=1.5,i=-2i,u=3u,b=true,s="x \\"y\\"" 1700000000000000001',
                "q3,host=b f=2.25,i=4i 1700000000000000002",
            ],
            write_precision="ns",
        )
        table = client.query("SELECT * FROM q3 ORDER BY time", language="sql")
        types = {f.name: str(f.type) for f in table.schema}
        table = table.set_column(
            table.schema.get_field_index("time"), "time", table.column("time").cast(pa.int64())
        )
        shown = client.query("SHOW TABLES", language="sql").to_pylist()
    print(
        json.dumps(
            {
                "types": types,
                "rows": table.to_pylist(),
                "tables": sorted(r["table_name"] for r in shown if r["table_schema"] == "iox"),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
