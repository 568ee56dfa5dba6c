"""Talks to an inflow serving TLS: the v2 client writes over HTTPS trusting
only the test CA, a Flight client queries over TLS, and plain HTTP to the same
port is tried.

Usage: tls_clients.py HTTPS_URL TOKEN DATABASE CA_PEM

Output: {"write": "ok"|error, "rows": [...], "plain_http": "refused"|status,
         "untrusted": "refused"|"accepted"|"unavailable: ..."}
"""

import http.client
import json
import sys
import urllib.error
import urllib.request

import pyarrow.flight as flight
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS


def main() -> int:
    url, token, database, ca = sys.argv[1:5]
    result = {}
    with InfluxDBClient(url=url, token=token, org="o", ssl_ca_cert=ca) as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket=database, record="tls,host=a v=1.5 1700000000000000000"
        )
        result["write"] = "ok"

    hostport = url.removeprefix("https://")
    with open(ca, "rb") as f:
        root = f.read()
    client = flight.FlightClient(f"grpc+tls://{hostport}", tls_root_certs=root)
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
    ticket = json.dumps(
        {"database": database, "sql_query": "SELECT host, v FROM tls", "query_type": "sql"}
    )
    table = client.do_get(flight.Ticket(ticket.encode()), options).read_all()
    result["rows"] = table.to_pylist()

    # The TLS port must not answer plain HTTP: the connection is closed (or
    # answered with TLS bytes, not a status line). Only those errors count as
    # "refused"; an HTTP status (even an error one) is reported as the status,
    # and any other exception fails the script.
    try:
        with urllib.request.urlopen(f"http://{hostport}/health", timeout=5) as r:
            result["plain_http"] = r.status
    except urllib.error.HTTPError as e:
        result["plain_http"] = e.code
    except (http.client.BadStatusLine, ConnectionResetError):
        # RemoteDisconnected is both.
        result["plain_http"] = "refused"

    # A client that does not trust the test CA fails the TLS handshake on the
    # certificate; any other failure (a bad ticket, a refused token) is
    # reported as itself.
    try:
        untrusted = flight.FlightClient(f"grpc+tls://{hostport}")
        untrusted.do_get(flight.Ticket(ticket.encode()), options).read_all()
        result["untrusted"] = "accepted"
    except flight.FlightUnavailableError as e:
        # BoringSSL says CERTIFICATE_VERIFY_FAILED, OpenSSL 3 "certificate verify failed".
        if "certificate verify failed" in str(e).lower().replace("_", " "):
            result["untrusted"] = "refused"
        else:
            result["untrusted"] = f"unavailable: {e}"
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
