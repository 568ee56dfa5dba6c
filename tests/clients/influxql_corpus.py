"""The deterministic line-protocol corpus the InfluxQL comparison writes to both servers.

Everything but the `recent` measurement is fixed: a fixed seed and absolute timestamps from
2023-01-02T00:00:00Z (T0) over three hours. `recent` holds a few points relative to the
`now_ns` the caller passes (now-50m ... now-10m), for `time > now() - 1h` queries; the caller
generates the corpus once and writes the same lines to every server.

Shape (what the statements in influxql_compare.py rely on):
- cpu, tags host (h1..h4) and region (us-east, eu-west); series:
    h1/us-east 00:00-03:00, h2/us-east 00:00-03:00 with a gap 00:40-01:20,
    h3/eu-west 00:00-02:00, h4/eu-west 01:00-03:00, h1/eu-west 02:00-02:30 only;
  one point a minute per series (h2 +15 s, h3 +30 s, h4 +45 s), some with sub-second parts;
  fields usage_idle (float, some whole numbers), usage_user (float, absent on some points),
  requests (integer), status (string, on every third point), ok (boolean, absent on some).
- mem, tags host (h1..h3) and dc (a, b), one point every 2 minutes, h3 missing 01:30-02:00;
  fields used and free (integers), pct (float).
- "disk io" (a name with a space), tag dev (sda, sdb), fields "read bytes" and write_bytes
  (integers), every 5 minutes.
- net.if (a dotted name), tag iface (eth0), fields rx and tx (integers), every 10 minutes.
- edge, no tags: extreme numbers (int64 max/min, 2^53+1, 1e300, 1e-300, 1.2345678901234568e20,
  -0.5, 0), a string with quotes/backslash/unicode, at T0 + n seconds.
- recent, tag host (h1, h2), field value (float), every 5 minutes from now-50m to now-10m,
  on the minute + 30 s so no point sits on a 10-minute window boundary.
"""

import random

T0_S = 1672617600  # 2023-01-02T00:00:00Z
T0 = T0_S * 10**9
MIN = 60 * 10**9
HOUR = 60 * MIN
SEED = 20230102


def _cpu(rng):
    lines = []
    series = [
        # host, region, offset seconds, start minute, end minute (exclusive), gap (start, end)
        ("h1", "us-east", 0, 0, 180, None),
        ("h2", "us-east", 15, 0, 180, (40, 80)),
        ("h3", "eu-west", 30, 0, 120, None),
        ("h4", "eu-west", 45, 60, 180, None),
        ("h1", "eu-west", 5, 120, 150, None),
    ]
    for host, region, off, start, end, gap in series:
        for i in range(start, end):
            if gap and gap[0] <= i < gap[1]:
                continue
            ts = T0 + i * MIN + off * 10**9
            if i % 13 == 0:
                ts += 123456789  # sub-second part: RFC3339Nano output and epoch truncation
            elif i % 29 == 0:
                ts += 500000  # sub-millisecond only
            fields = []
            if i % 17 == 0:
                idle = float(rng.randint(0, 100))  # a whole-number float: 2 vs 2.0
            else:
                idle = round(rng.uniform(0, 100), 3)
            fields.append(f"usage_idle={idle!r}")
            user = round(rng.uniform(0, 50), 2)
            if i % 7 != 3:
                fields.append(f"usage_user={user!r}")
            req = rng.randint(-5, 1000)
            fields.append(f"requests={req}i")
            status = rng.choice(["ok", "warn", "crit"])
            if i % 3 == 0:
                fields.append(f'status="{status}"')
            ok = rng.random() < 0.7
            if i % 11 != 0:
                fields.append(f"ok={'true' if ok else 'false'}")
            lines.append(f"cpu,host={host},region={region} {','.join(fields)} {ts}")
    return lines


def _mem(rng):
    lines = []
    for host, dc in (("h1", "a"), ("h2", "a"), ("h3", "b")):
        for i in range(0, 180, 2):
            if host == "h3" and 90 <= i < 120:
                continue
            ts = T0 + i * MIN + 7 * 10**9
            used = rng.randint(1000, 8000) * 1024
            free = 8192 * 1024 - used
            pct = round(100.0 * used / (8192 * 1024), 4)
            lines.append(f"mem,dc={dc},host={host} used={used}i,free={free}i,pct={pct!r} {ts}")
    return lines


def _disk(rng):
    lines = []
    for dev in ("sda", "sdb"):
        for i in range(0, 180, 5):
            ts = T0 + i * MIN + 3 * 10**9
            r = rng.randint(0, 10**6)
            w = rng.randint(0, 10**6)
            lines.append(f"disk\\ io,dev={dev} read\\ bytes={r}i,write_bytes={w}i {ts}")
    return lines


def _net(rng):
    lines = []
    for i in range(0, 180, 10):
        ts = T0 + i * MIN
        lines.append(f"net.if,iface=eth0 rx={rng.randint(0, 10**9)}i,tx={rng.randint(0, 10**9)}i {ts}")
    return lines


def _edge():
    s = 10**9
    return [
        f"edge i=9223372036854775807i,f=1e300 {T0 + 1 * s}",
        f"edge i=-9223372036854775808i,f=1e-300 {T0 + 2 * s}",
        f"edge i=9007199254740993i,f=123456789012345680000.0 {T0 + 3 * s}",
        f"edge i=0i,f=-0.5 {T0 + 4 * s}",
        f"edge i=1i,f=0.0 {T0 + 5 * s}",
        f'edge s="quote \\" back\\\\slash ünï" {T0 + 6 * s}',
        f"edge f=0.1,i=2i {T0 + 7 * s}",
    ]


def _recent(now_ns):
    base = now_ns - now_ns % MIN + 30 * 10**9 - MIN  # on the minute + 30 s, before now
    lines = []
    for host, bias in (("h1", 0.0), ("h2", 100.0)):
        for k in range(10, 51, 5):
            ts = base - k * MIN
            lines.append(f"recent,host={host} value={bias + k / 4!r} {ts}")
    return lines


def generate(now_ns):
    """The corpus as a list of line-protocol lines (nanosecond timestamps)."""
    rng = random.Random(SEED)
    return _cpu(rng) + _mem(rng) + _disk(rng) + _net(rng) + _edge() + _recent(now_ns)


if __name__ == "__main__":
    import time

    print("\n".join(generate(time.time_ns())))
