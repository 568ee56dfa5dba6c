#!/usr/bin/env python3
"""Draws the panels of helm/inflow/dashboards/inflow.json from a live cluster
under load, for a look at the dashboard where Grafana is not at hand.

Starts two ingesters, a router and a querier (the debug binary, on loopback,
sharing a data directory), a real Prometheus scraping each of them every
second with the chart's alert rules loaded, and a load of writes (v1, v2 and
v3, with some bad lines) and queries (SQL and InfluxQL, some refused). Half
way through one ingester is killed (kill -9): the router fails over, the other
ingester takes its WAL over. At the end every panel's queries are asked of
Prometheus exactly as Grafana would ask them (the variables set to all pods,
$__rate_interval to 4 scrapes) and drawn one subplot per panel; the alerts
that were pending or firing are printed and named in the figure's title.

Needs Prometheus (Debian: `apt-get install prometheus`, which brings
`prometheus` and `promtool`) and matplotlib:

    python3 -m venv target/dashboard-venv
    target/dashboard-venv/bin/pip install -r tests/dashboard/requirements.txt
    cargo build --bin inflow
    target/dashboard-venv/bin/python tests/dashboard/render.py --seconds 60 --out target/dashboard.png

Not part of tests/run.sh: it takes the run's length plus a few seconds, and
what it shows is for a person to look at.
"""

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "inflow" / "dashboards" / "inflow.json"
RULES = ROOT / "helm" / "inflow" / "rules" / "inflow-alerts.yaml"
TOKEN = "render-admin-token"
SCRAPE_SECONDS = 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=10):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e).encode()


class Process:
    """One `inflow serve`, its HTTP base URL, and (an ingester) its gRPC address."""

    def __init__(self, binary, data, args, log):
        env = {**os.environ, "INFLOW_ADMIN_TOKEN": TOKEN}
        env.pop("INFLOW_TOKEN", None)
        argv = [binary, "serve", "--data-dir", data, "--http-bind", "127.0.0.1:0",
                "--log-filter", "warn", *args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, env=env, text=True)
        self.grpc = None
        for line in self.proc.stdout:
            if "grpc://" in line:
                self.grpc = line.split("grpc://", 1)[1].split()[0]
            if line.startswith("inflow: listening on "):
                self.base = line.split()[3]
                break
        else:
            raise SystemExit(f"inflow exited before listening: {argv}")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_cluster(binary, tmp, log):
    data = str(tmp / "data")
    token_file = tmp / "cluster-token"
    token_file.write_text("render-cluster-secret\n")
    common = ["--cluster-token-file", str(token_file)]
    ingest = ["--snapshot-interval", "5s", "--lease-ttl", "2s", "--compaction-interval", "5s",
              "--compaction-min-files", "3"]
    ingesters = [Process(binary, data, ["--role", "ingester", "--ingester-id", f"ing-{i}",
                                        "--grpc-bind", "127.0.0.1:0", *common, *ingest], log)
                 for i in range(2)]
    addrs = ",".join(i.grpc for i in ingesters)
    router = Process(binary, data, ["--role", "router", "--ingesters", addrs, *common,
                                    "--write-timeout", "2s"], log)
    querier = Process(binary, data, ["--role", "querier", "--ingesters", addrs, *common,
                                     "--query-ingester-timeout", "2s"], log)
    return {"ingester-0": ingesters[0], "ingester-1": ingesters[1], "router-0": router, "querier-0": querier}


def start_prometheus(tmp, pods):
    port = free_port()
    targets = []
    for pod, p in pods.items():
        role = pod.split("-")[0]
        targets.append({"targets": [p.base.split("://", 1)[1]],
                        "labels": {"namespace": "inflow", "pod": pod, "role": role}})
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "scrape_timeout": f"{SCRAPE_SECONDS}s",
                   "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "inflow", "static_configs": targets}],
    }
    path = tmp / "prometheus.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    binary = shutil.which("prometheus") or sys.exit("prometheus not found (apt-get install prometheus)")
    proc = subprocess.Popen([binary, f"--config.file={path}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        if http("GET", f"{url}/-/ready")[0] == 200:
            return proc, url
        time.sleep(0.2)
    proc.kill()
    sys.exit("prometheus did not become ready")


def load(router, querier, stop, stats):
    """Writes through the router on the three write APIs, some lines bad, and
    queries the querier in SQL and InfluxQL, some queries refused."""
    auth = {"Authorization": f"Token {TOKEN}"}
    endpoints = ["/write?db=load&precision=ns", "/api/v2/write?bucket=load&precision=ns",
                 "/api/v3/write_lp?db=load&precision=nanosecond"]

    def writer(seed):
        rnd = random.Random(seed)
        n = 0
        while not stop.is_set():
            now = time.time_ns()
            lines = [f"cpu,host=h{rnd.randrange(50)},region=r{rnd.randrange(4)} "
                     f"usage={rnd.random() * 100:.2f},load={rnd.randrange(16)}i {now + i}"
                     for i in range(rnd.randrange(200, 1200))]
            if n % 8 == 0:
                lines += ["cpu,host=bad usage=", f"cpu,host=h1 usage=\"text\" {now}"]
            status, _ = http("POST", router.base + endpoints[n % 3], "\n".join(lines).encode(), auth)
            stats[status] = stats.get(status, 0) + 1
            n += 1
            time.sleep(rnd.uniform(0.02, 0.12))

    def reader():
        rnd = random.Random(7)
        qauth = {"Authorization": f"Bearer {TOKEN}"}
        queries = [
            "/api/v3/query_sql?db=load&q=" + urllib.parse.quote(
                "SELECT host, avg(usage) FROM cpu WHERE time > now() - interval '1 minute' GROUP BY host"),
            "/query?db=load&q=" + urllib.parse.quote(
                "SELECT mean(usage) FROM cpu WHERE time > now() - 1m GROUP BY time(10s), region"),
            "/api/v3/query_sql?db=load&q=" + urllib.parse.quote("SELECT count(*) FROM cpu"),
            "/api/v3/query_sql?db=load&q=" + urllib.parse.quote("SELECT * FROM no_such_table"),
        ]
        while not stop.is_set():
            http("GET", querier.base + rnd.choice(queries), headers=qauth, timeout=30)
            time.sleep(rnd.uniform(0.1, 0.4))

    threads = [threading.Thread(target=writer, args=(s,), daemon=True) for s in range(3)]
    threads += [threading.Thread(target=reader, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    return threads


def query_range(prom, expr, start, end, step):
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    status, body = http("GET", f"{prom}/api/v1/query_range?{q}")
    answer = json.loads(body or b"{}")
    if status != 200 or answer.get("status") != "success":
        raise SystemExit(f"Prometheus refused {expr!r}: {status} {body[:300]!r}")
    return answer["data"]["result"]


def grafana_expr(expr):
    """The expression as Grafana sends it with every pod selected."""
    return (expr.replace("$__rate_interval", f"{4 * SCRAPE_SECONDS}s")
            .replace("$namespace", ".*").replace("$pod", ".*").replace("$role", ".*"))


def legend(fmt, labels):
    if not fmt:
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()


UNITS = {  # unit → (scale, axis label)
    "percentunit": (100.0, "%"), "bytes": (1 / 2**20, "MiB"), "Bps": (1 / 2**20, "MiB/s"),
    "s": (1000.0, "ms"), "reqps": (1.0, "req/s"), "short": (1.0, ""),
}


def draw(panels, series, t0, kill_at, alerts, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.3 * rows), squeeze=False)
    empty = []
    for ax, panel in zip(axes.flat, panels):
        defaults = panel["fieldConfig"]["defaults"]
        scale, unit = UNITS.get(defaults.get("unit", "short"), (1.0, ""))
        custom = defaults.get("custom", {})
        drawn = 0
        for target in panel["targets"]:
            for s in series[(panel["id"], target["refId"])]:
                xs = [float(t) - t0 for t, _ in s["values"]]
                ys = [float(v) * scale for _, v in s["values"]]
                if any(not math.isnan(y) for y in ys):
                    label = legend(target.get("legendFormat"), s["metric"])[:40]
                    if custom.get("drawStyle") == "bars":
                        ax.step(xs, ys, where="post", linewidth=1, label=label)
                    else:
                        ax.plot(xs, ys, linewidth=1, label=label)
                    drawn += 1
        title = panel["title"] + (" (stat)" if panel["type"] == "stat" else "")
        if drawn == 0:
            empty.append(panel["title"])
            title += " — no data"
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.axvline(kill_at - t0, color="red", linestyle="--", linewidth=0.8)
        ax.set_xlim(0, None)
        if drawn:
            handles, labels = ax.get_legend_handles_labels()
            ax.legend(handles[:8], labels[:8], fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fired = ", ".join(sorted(alerts)) or "none"
    fig.suptitle(f"inflow dashboard, live: 2 ingesters, router, querier; seconds since start "
                 f"(red: ingester-1 killed). Alerts pending/firing: {fired}", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(out, dpi=70)
    return empty


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.environ.get(
        "INFLOW_BIN", str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "inflow")))
    parser.add_argument("--seconds", type=int, default=60, help="length of the load")
    parser.add_argument("--out", default=str(ROOT / "target" / "dashboard.png"))
    args = parser.parse_args()

    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with open(tmp / "inflow.log", "w") as log:
            pods = start_cluster(args.bin, tmp, log)
            prom, prom_url = start_prometheus(tmp, pods)
            stop, stats = threading.Event(), {}
            try:
                t0 = time.time()
                threads = load(pods["router-0"], pods["querier-0"], stop, stats)
                time.sleep(args.seconds / 2)
                kill_at = time.time()
                pods["ingester-1"].stop(signal.SIGKILL)
                time.sleep(args.seconds / 2)
                stop.set()
                for t in threads:
                    t.join(timeout=30)
                time.sleep(2 * SCRAPE_SECONDS)
                end = time.time()
                series = {}
                for p in panels:
                    for target in p["targets"]:
                        series[(p["id"], target["refId"])] = query_range(
                            prom_url, grafana_expr(target["expr"]), t0, end, SCRAPE_SECONDS)
                alerts = {s["metric"]["alertname"] + ":" + s["metric"]["alertstate"]
                          for s in query_range(prom_url, "ALERTS", t0, end, SCRAPE_SECONDS)}
            finally:
                stop.set()
                prom.terminate()
                for p in pods.values():
                    p.stop()
    empty = draw(panels, series, t0, kill_at, alerts, args.out)
    print(f"write statuses: {dict(sorted(stats.items()))}")
    print(f"alerts pending or firing: {sorted(alerts) or 'none'}")
    print(f"panels without data: {empty or 'none'}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
