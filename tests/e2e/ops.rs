//! Operating it: Prometheus metrics and TLS, checked with real clients.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::clients::{python, python_json, script};
use crate::harness::{ADMIN_TOKEN, Server, request, write};

/// The value of the sample `name` whose labels include `labels`.
fn sample(scrape: &Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .find(|s| {
            s["name"] == name
                && labels
                    .iter()
                    .all(|(k, v)| s["labels"][*k].as_str() == Some(*v))
        })
        .map(|s| s["value"].as_f64().expect("numeric sample"))
}

/// `/metrics` parsed by the Prometheus client's own text parser: requests by
/// route and status, lines, bytes, write latency, WAL flushes, buffer bytes
/// and snapshots, each with the value the traffic implies.
#[tokio::test]
async fn metrics_count_what_happened_in_prometheus_text_format() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let body = "m,host=a v=1 1\nm,host=b v=2 2\nm,host=c v=3 3\n";
    for _ in 0..2 {
        let r = write(&server, "bucket=mdb&org=o", ADMIN_TOKEN, body).await;
        assert_eq!(r.status, 204);
    }
    let bad = write(&server, "bucket=mdb&org=o", ADMIN_TOKEN, "m v=\n").await;
    assert_eq!(bad.status, 400);

    let scrape = python_json("prometheus_scrape.py", &[&server.base]);
    assert_eq!(
        scrape["content_type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let types = &scrape["types"];
    assert_eq!(types["inflow_write_lines"], "counter");
    assert_eq!(types["inflow_write_duration_seconds"], "histogram");
    assert_eq!(types["inflow_ingester_buffer_bytes"], "gauge");
    let requests = |status| {
        let labels = [("endpoint", "/api/v2/write"), ("status", status)];
        sample(&scrape, "inflow_http_requests_total", &labels)
    };
    assert_eq!(requests("204"), Some(2.0));
    assert_eq!(requests("400"), Some(1.0));
    assert_eq!(sample(&scrape, "inflow_write_lines_total", &[]), Some(6.0));
    assert_eq!(
        sample(&scrape, "inflow_write_bytes_total", &[]),
        Some((2 * body.len() + 5) as f64)
    );
    let rejected = [("database", "mdb"), ("reason", "syntax")];
    assert_eq!(
        sample(&scrape, "inflow_write_rejected_lines_total", &rejected),
        Some(1.0)
    );
    let latency = [("api", "v2"), ("status", "204")];
    let count = sample(&scrape, "inflow_write_duration_seconds_count", &latency);
    assert_eq!(count, Some(2.0));
    let all_buckets = [("api", "v2"), ("status", "204"), ("le", "+Inf")];
    assert_eq!(
        sample(
            &scrape,
            "inflow_write_duration_seconds_bucket",
            &all_buckets
        ),
        Some(2.0)
    );
    // Every write is read, decoded and parsed; only the two good ones reach
    // the schema commit and the ingesters.
    let stage = |name| {
        sample(
            &scrape,
            "inflow_write_stage_duration_seconds_count",
            &[("stage", name)],
        )
    };
    let stages = ["read", "decode", "parse", "commit", "ingest"].map(stage);
    let counts = [3.0, 3.0, 3.0, 2.0, 2.0].map(Some);
    assert_eq!(stages, counts, "read, decode, parse, commit, ingest");
    let flushes = sample(&scrape, "inflow_wal_flush_bytes_count", &[]).unwrap();
    assert!(
        flushes >= 2.0,
        "two acknowledged writes, two WAL segments at least"
    );
    assert!(sample(&scrape, "inflow_wal_flush_duration_seconds_sum", &[]).unwrap() > 0.0);
    let buffered = sample(&scrape, "inflow_ingester_buffer_bytes", &[]).unwrap();
    assert!(buffered > 0.0, "six points are buffered");
    assert_eq!(
        sample(&scrape, "inflow_route_failovers_total", &[]),
        Some(0.0)
    );

    // A graceful stop snapshots; a restart's scrape starts from zero, so
    // count the snapshot in a server that snapshots on its own.
    assert!(server.stop().success());
    let server = Server::start(dir.path(), &["--snapshot-interval", "200ms"]);
    let r = write(&server, "bucket=mdb&org=o", ADMIN_TOKEN, body).await;
    assert_eq!(r.status, 204);
    let deadline = Instant::now() + Duration::from_secs(30);
    let scrape = loop {
        let scrape = python_json("prometheus_scrape.py", &[&server.base]);
        let ok = [("outcome", "ok")];
        if sample(&scrape, "inflow_snapshots_total", &ok).unwrap_or(0.0) >= 1.0
            && sample(&scrape, "inflow_ingester_buffer_bytes", &[]) == Some(0.0)
        {
            break scrape;
        }
        assert!(Instant::now() < deadline, "no snapshot counted: {scrape}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(sample(&scrape, "inflow_snapshot_files_total", &[]).unwrap() >= 1.0);
    assert!(server.stop().success());
}

/// With a certificate and key, the one port speaks TLS only: the v2 Python
/// client writes over HTTPS and a Flight client queries over TLS, both trusting
/// only a CA made for the test; plain HTTP and an untrusting client fail.
#[tokio::test]
async fn tls_serves_https_and_flight_and_refuses_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let made = std::process::Command::new(python())
        .arg(script("make_certs.py"))
        .arg(certs.path())
        .status()
        .unwrap();
    assert!(made.success());
    let cert = certs.path().join("server.pem");
    let key = certs.path().join("server-key.pem");
    let server = Server::start(
        dir.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let ca = certs.path().join("ca.pem");
    let got = python_json(
        "tls_clients.py",
        &[&server.base, ADMIN_TOKEN, "tlsdb", ca.to_str().unwrap()],
    );
    let expected = json!({
        "write": "ok",
        "rows": [{"host": "a", "v": 1.5}],
        "plain_http": "refused",
        "untrusted": "refused",
    });
    assert_eq!(got, expected);
    assert!(server.stop().success());

    // A key without its certificate is a start-up error, not a plain-text port.
    let out = std::process::Command::new(crate::harness::binary())
        .args(["serve", "--http-bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--tls-key", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--tls-cert and --tls-key go together"),
        "{stderr}"
    );
}

/// Logs are JSON lines when asked, and no token ever appears in them: not the
/// operator token, not a database token, not a wrong one, even at `trace`
/// (every line of ours and of the libraries').
#[tokio::test]
async fn json_logs_never_contain_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = Server::start_logging_to(
        dir.path(),
        &["--log-format", "json", "--log-filter", "trace"],
        &[("INFLOW_ADMIN_TOKEN", ADMIN_TOKEN)],
        log.into(),
    );
    // Offline, on the data directory the server made (a token it has not
    // read yet is looked up again on its first use).
    let token = crate::harness::create_token(dir.path(), "logdb", "read,write");
    let wrong = "wrong-token-0123456789abcdef";
    for t in [ADMIN_TOKEN, token.as_str(), wrong] {
        write(&server, "bucket=logdb&org=o", t, "m,host=a v=1 1").await;
        let auth = format!("Bearer {t}");
        let url = server.url("/api/v3/query_sql?db=logdb&q=SELECT%201");
        crate::harness::request("GET", &url, &[("authorization", &auth)], "").await;
    }
    assert!(server.stop().success());
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        text.lines().count() > 10,
        "trace logging wrote little: {text}"
    );
    for line in text.lines() {
        let parsed: Result<Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok(), "not a JSON line: {line}");
    }
    for t in [ADMIN_TOKEN, token.as_str(), wrong] {
        assert!(!text.contains(t), "a token was logged");
    }
}

/// A rejected line is logged for the operator (database, line, column,
/// reason, never the token), at most once a second however many come; and
/// counted by database and reason.
#[tokio::test]
async fn rejected_lines_are_logged_at_most_once_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let data = dir.path().join("data");
    let server = Server::start_logging_to(
        &data,
        &["--log-filter", "warn", "--log-format", "json"],
        &[("INFLOW_ADMIN_TOKEN", ADMIN_TOKEN)],
        std::process::Stdio::from(log),
    );
    let started = std::time::Instant::now();
    for _ in 0..50 {
        let r = write(&server, "bucket=logs", ADMIN_TOKEN, "m v=1 1\nm v=oops 2\n").await;
        assert_eq!(r.status, 400);
    }
    let took = started.elapsed();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let logged: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &serde_json::Value| l["fields"]["message"] == "line rejected")
        .collect();
    let seconds = took.as_secs() as usize + 2;
    assert!(
        !logged.is_empty() && logged.len() <= seconds,
        "{} lines in {took:?}: {text}",
        logged.len()
    );
    let first = &logged[0]["fields"];
    assert_eq!(first["database"], "logs");
    assert_eq!(first["line"], 2);
    assert_eq!(first["column"], 5);
    assert_eq!(first["reason"], "invalid_value");
    assert!(!text.contains(ADMIN_TOKEN), "the token is never logged");
    let body = request("GET", &server.url("/metrics"), &[], "").await.body;
    let metrics = String::from_utf8_lossy(&body);
    assert!(
        metrics.contains(
            "inflow_write_rejected_lines_total{database=\"logs\",reason=\"invalid_value\"} 50"
        ),
        "{metrics}"
    );
}
