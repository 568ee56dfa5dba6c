"""Writes a deterministic corpus through the official Python `influxdb-client`
(v2 API, batching write API with gzip), as a Telegraf-less user would.

Usage: python_v2_write.py URL TOKEN BUCKET N

Point i: measurement `pyclient`, tags host=h{i % 100}, region=r{i % 7}; fields
value=i * 0.25 (float), count=i (int), ok=(i % 3 == 0) (bool),
msg='m{i} "q" \\ é' (string); time = 1_700_000_000_000_000_000 + i * 1000 ns.
The Rust side (tests/e2e/clients.rs) recomputes the same values to check them.
"""

import sys

from influxdb_client import InfluxDBClient, Point, WriteOptions, WritePrecision

BASE_NS = 1_700_000_000_000_000_000


def main() -> int:
    url, token, bucket, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    errors = []

    def failed(conf, data, exc):
        errors.append(repr(exc))

    options = WriteOptions(batch_size=5_000, flush_interval=200, max_retries=0)
    with InfluxDBClient(url=url, token=token, org="inflow", enable_gzip=True) as client:
        with client.write_api(write_options=options, error_callback=failed) as w:
            for i in range(n):
                p = (
                    Point("pyclient")
                    .tag("host", f"h{i % 100}")
                    .tag("region", f"r{i % 7}")
                    .field("value", i * 0.25)
                    .field("count", i)
                    .field("ok", i % 3 == 0)
                    .field("msg", f'm{i} "q" \\ é')
                    .time(BASE_NS + i * 1000, WritePrecision.NS)
                )
                w.write(bucket=bucket, record=p)
    if errors:
        print(f"{len(errors)} batches failed; first: {errors[0]}", file=sys.stderr)
        return 1
    print(f"wrote {n} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
