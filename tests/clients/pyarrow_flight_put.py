"""An internal producer: pyarrow.flight DoPut of Arrow tables to the edge's port.

Usage: pyarrow_flight_put.py HOST:PORT TOKEN DATABASE TABLE N

Rows i: region (dictionary-encoded tag) = reg{i % 3}, host (plain string tag) =
p{i % 5}, load (float) = i * 1.5, hits (int) = i; time = 1_680_000_000_000 + i ms
as a millisecond timestamp (the edge converts it to ns). Sent in chunks of 1,000 rows;
one acknowledgement per chunk.
"""

import sys

import pyarrow as pa
import pyarrow.flight as flight


def main() -> int:
    addr, token, database, table_name, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    table = pa.table(
        {
            "region": pa.array([f"reg{i % 3}" for i in range(n)]).dictionary_encode(),
            "host": pa.array([f"p{i % 5}" for i in range(n)]),
            "load": pa.array([i * 1.5 for i in range(n)], pa.float64()),
            "hits": pa.array(list(range(n)), pa.int64()),
            "time": pa.array([1_680_000_000_000 + i for i in range(n)], pa.timestamp("ms")),
        }
    )
    client = flight.FlightClient(f"grpc+tcp://{addr}")
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
    descriptor = flight.FlightDescriptor.for_path(database, table_name)
    writer, reader = client.do_put(descriptor, table.schema, options=options)
    writer.write_table(table, max_chunksize=1_000)
    writer.done_writing()
    acks = 0
    while True:
        try:
            buf = reader.read()
        except StopIteration:
            break
        if buf is None:
            break
        acks += 1
    writer.close()
    expected = (n + 999) // 1_000
    if acks != expected:
        print(f"expected {expected} acknowledgements, got {acks}", file=sys.stderr)
        return 1
    print(f"put {n} rows, {acks} acks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
