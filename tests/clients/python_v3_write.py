"""Writes through the `influxdb3-python` client (InfluxDBClient3.write), the v3
client library InfluxDB 3 recommends, with gzip.

Usage: python_v3_write.py URL TOKEN DATABASE N

Point i: measurement `py3client`, tag sensor=s{i % 10}; fields temp=i / 4 (float),
n=i (int); time = 1_690_000_000 + i seconds (written with precision "s").
"""

import sys

from influxdb_client_3 import InfluxDBClient3, Point, WriteOptions, write_client_options


def main() -> int:
    url, token, database, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    errors = []
    options = write_client_options(
        write_options=WriteOptions(batch_size=2_000, flush_interval=200, max_retries=0),
        error_callback=lambda conf, data, exc: errors.append(repr(exc)),
    )
    with InfluxDBClient3(
        host=url, token=token, database=database, write_client_options=options, enable_gzip=True, gzip_threshold=1
    ) as client:
        points = [
            Point("py3client").tag("sensor", f"s{i % 10}").field("temp", i / 4).field("n", i).time(1_690_000_000 + i, "s")
            for i in range(n)
        ]
        client.write(record=points, write_precision="s")
    if errors:
        print(f"{len(errors)} batches failed; first: {errors[0]}", file=sys.stderr)
        return 1
    print(f"wrote {n} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
