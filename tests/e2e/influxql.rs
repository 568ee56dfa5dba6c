//! InfluxQL end to end: the same statements answered by Debian's InfluxDB 1.6
//! and by inflow, compared cell by cell; the clients that speak it (the v1
//! Python client, the `influx` shell, Grafana's requests, influxdb3-python
//! over Flight); and the v1 `/query` contract itself.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::clients::{python, script};
use crate::harness::{ADMIN_TOKEN, Server, create_token, files_under, request, write};

/// Runs a Python script against `server`; its whole output on failure.
fn run_script(name: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(script(name))
        .args(args)
        .output()
        .expect("python runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} failed:\n{text}");
    text
}

/// `tests/clients/influxql_compare.py` starts Debian's `influxd` 1.6 (installed
/// by `tests/run.sh`), writes the same corpus to both servers and compares ~340
/// statements cell by cell (among them Grafana's and Chronograf's requests as
/// their backends send them); its deviations from 1.6 are documented per case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxql_answers_match_influxdb_1_6() {
    compare_with_1_6(&["--snapshot-interval", "1h"]);
}

/// The same comparison with snapshots every second and compaction on: the
/// answers do not depend on whether rows are buffered, in Parquet, or merged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxql_answers_match_influxdb_1_6_from_parquet() {
    compare_with_1_6(&[
        "--snapshot-interval",
        "1s",
        "--compaction-interval",
        "1s",
        "--compaction-min-files",
        "2",
    ]);
}

fn compare_with_1_6(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), args);
    // Each run keeps both servers' answers in its own directory.
    let expected = dir.path().join("expected");
    let actual = dir.path().join("actual");
    let out = run_script(
        "influxql_compare.py",
        &[
            &s.base,
            ADMIN_TOKEN,
            "--expected-dir",
            expected.to_str().unwrap(),
            "--actual-dir",
            actual.to_str().unwrap(),
        ],
    );
    let last = out
        .lines()
        .rev()
        .find(|l| l.starts_with("influxql compare:"))
        .unwrap_or_default();
    assert!(last.ends_with(" 0 failed"), "{out}");
    assert!(s.stop().success());
}

/// The v1 Python client, Grafana's requests, the `influx` shell and
/// influxdb3-python (`language="influxql"`), with exact values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxql_clients_get_exact_answers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let out = run_script("influxql_clients.py", &[&s.base, ADMIN_TOKEN, "iqlc"]);
    assert!(
        out.contains("influxql clients: 31 passed, 0 failed"),
        "{out}"
    );
    assert!(s.stop().success());
}

async fn query(s: &Server, auth: Option<&str>, query: &str) -> (u16, serde_json::Value) {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    let r = request("GET", &s.url(&format!("/query?{query}")), &headers, "").await;
    let body = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, body)
}

/// Tokens: Basic, `Token`, `u`/`p`; a token that may not read the database is
/// refused (403) before anything is read; a missing one is 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_tokens_and_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let r = write(&s, "bucket=db&precision=s", ADMIN_TOKEN, "m,host=a v=1 10").await;
    assert_eq!(r.status, 204);
    let r = write(&s, "bucket=other&precision=s", ADMIN_TOKEN, "m v=2 10").await;
    assert_eq!(r.status, 204);
    s.stop();
    let reader = create_token(dir.path(), "db", "read");
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);

    let q = "db=db&epoch=s&q=SELECT+v+FROM+m";
    let expected = serde_json::json!({"results":[{"statement_id":0,"series":[
        {"name":"m","columns":["time","v"],"values":[[10,1]]}]}]});
    let token = format!("Token {reader}");
    assert_eq!(query(&s, Some(&token), q).await, (200, expected.clone()));
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("grafana:{reader}"))
    );
    assert_eq!(query(&s, Some(&basic), q).await, (200, expected.clone()));
    let with_p = format!("{q}&u=me&p={reader}");
    assert_eq!(query(&s, None, &with_p).await, (200, expected));

    let (status, body) = query(&s, Some(&token), "db=other&q=SELECT+v+FROM+m").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["error"],
        "token does not have read permission on database \"other\""
    );
    let (status, body) = query(&s, None, q).await;
    assert_eq!(status, 401, "{body}");
    // CREATE DATABASE needs the operator token.
    let (status, body) = query(&s, Some(&token), "q=CREATE+DATABASE+x").await;
    assert_eq!(status, 403, "{body}");
    let admin = format!("Token {ADMIN_TOKEN}");
    let (status, body) = query(&s, Some(&admin), "q=CREATE+DATABASE+x").await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"results":[{"statement_id":0}]}))
    );
    let (_, body) = query(&s, Some(&admin), "q=SHOW+DATABASES").await;
    assert_eq!(
        body["results"][0]["series"][0]["values"],
        serde_json::json!([["db"], ["other"], ["x"]])
    );
    // Times at the ends of the range are a statement error, never a crash.
    let (status, body) = query(
        &s,
        Some(&token),
        "db=db&q=SELECT+mean(v)+FROM+m+WHERE+time+%3E%3D+-9223372036854775808+AND+time+%3C%3D+9223372036854775807+GROUP+BY+time(1h,-1ns)+tz('America/New_York')",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["results"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("makes more than 1000000 windows")),
        "{body}"
    );
    let (status, body) = query(
        &s,
        Some(&token),
        "db=db&epoch=s&q=SELECT+difference(v),elapsed(v,1s)+FROM+m+WHERE+time+%3E%3D+-9223372036854775808",
    )
    .await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"results":[{"statement_id":0}]}))
    );
    // A parse error names the position; nothing runs.
    let (status, body) = query(&s, Some(&token), "db=db&q=SELECT+v+FROM").await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "error parsing query: found EOF, expected identifier at line 1, char 15"
    );
    let (status, body) = query(&s, Some(&token), "db=db&q=SELECT+mode(v)+FROM+m").await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "error parsing query: function mode is not supported at line 1, char 8"
    );
    assert!(s.stop().success());
}

/// The same answer from the ingester's buffer, from Parquet after a snapshot,
/// and after a restart: InfluxQL reads the deduplicated rows SQL reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_the_same_from_buffer_files_and_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let auth = format!("Token {ADMIN_TOKEN}");
    let q = "db=db&epoch=s&q=SELECT+mean(v),count(v),last(v)+FROM+m+WHERE+time+%3E%3D+0s+AND+time+%3C+60s+GROUP+BY+time(20s),host+fill(none)";
    let s = Server::start(dir.path(), &["--snapshot-interval", "1s"]);
    let before = files_under(dir.path(), ".parquet").len();
    let body = "m,host=a v=1 1\nm,host=a v=3 2\nm,host=b v=5 25\nm,host=a v=7 1";
    let r = write(&s, "bucket=db&precision=s", ADMIN_TOKEN, body).await;
    assert_eq!(r.status, 204);
    let expected = serde_json::json!({"results":[{"statement_id":0,"series":[
        {"name":"m","tags":{"host":"a"},"columns":["time","mean","count","last"],"values":[[0,5,2,3]]},
        {"name":"m","tags":{"host":"b"},"columns":["time","mean","count","last"],"values":[[20,5,1,5]]}]}]});
    assert_eq!(query(&s, Some(&auth), q).await, (200, expected.clone()));
    let started = Instant::now();
    while files_under(dir.path(), ".parquet").len() == before {
        assert!(started.elapsed() < Duration::from_secs(20), "no snapshot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(query(&s, Some(&auth), q).await, (200, expected.clone()));
    assert!(s.stop().success());
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    assert_eq!(query(&s, Some(&auth), q).await, (200, expected));
    assert!(s.stop().success());
}

/// The rows an InfluxQL statement holds count against `--query-memory-bytes`:
/// past it the request fails with 503, the process stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_the_memory_limit_is_a_503() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        // Room for a small statement, not for 60,000 points (their folded
        // buffer holds about 2 MB, the statement's rows about 5 MB more).
        &[
            "--snapshot-interval",
            "1h",
            "--query-memory-bytes",
            "4194304",
        ],
    );
    let body: Vec<String> = (0..60_000)
        .map(|i| format!("m,host=h{} v={i} {i}", i % 10))
        .collect();
    let r = write(&s, "bucket=db&precision=s", ADMIN_TOKEN, body.join("\n")).await;
    assert_eq!(r.status, 204);
    let auth = format!("Token {ADMIN_TOKEN}");
    let (status, body) = query(&s, Some(&auth), "db=db&q=SELECT+v+FROM+m").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("memory")),
        "{body}"
    );
    // A statement that fits still answers, once the refused one has let go
    // of its memory (its stream is dropped by its own task, just after the
    // 503 went out): within a second, as a client retrying after a 503 would.
    let small = "db=db&q=SELECT+v+FROM+m+WHERE+time+%3C+3s";
    let mut answer = query(&s, Some(&auth), small).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while answer.0 == 503 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        answer = query(&s, Some(&auth), small).await;
    }
    let (status, body) = answer;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"][0]["series"][0]["values"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert!(s.stop().success());
}

/// Aggregates DataFusion computes hold a value per series and window, not
/// the points: over 200,000 points of ten fields (from Parquet), `mean(*)`
/// by window and host answers within a limit the same points as rows exceed
/// (a `median`, which stays on the row path, over them as one series is a
/// 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_over_more_points_than_the_memory_limit_holds_answer() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    // Host h's fields at second i: f0 = i, f1 = i + 1, …, f9 = i + 9.
    for hosts in [0..5, 5..10] {
        let body: Vec<String> = hosts
            .flat_map(|h| {
                (0..20_000).map(move |i| {
                    let fields: Vec<String> = (0..10).map(|k| format!("f{k}={}", i + k)).collect();
                    format!("cpu,host=h{h} {} {i}", fields.join(","))
                })
            })
            .collect();
        let r = write(&s, "bucket=db&precision=s", ADMIN_TOKEN, body.join("\n")).await;
        assert_eq!(r.status, 204);
    }
    // Stopping snapshots everything: the statements read Parquet only.
    assert!(s.stop().success());
    let s = Server::start(
        dir.path(),
        &[
            "--snapshot-interval",
            "1h",
            "--query-memory-bytes",
            "67108864",
        ],
    );
    let auth = format!("Token {ADMIN_TOKEN}");
    let range = "WHERE+time+%3E%3D+0s+AND+time+%3C+20000s";
    // Window [1000 s, 2000 s): f_k's mean is 1499.5 + k, for every host.
    let second_window: Vec<serde_json::Value> = std::iter::once(serde_json::json!(1000))
        .chain((0..10).map(|k| serde_json::json!(1499.5 + f64::from(k))))
        .collect();
    let (status, body) = query(
        &s,
        Some(&auth),
        &format!("db=db&epoch=s&q=SELECT+mean(*)+FROM+cpu+{range}+GROUP+BY+time(1000s),host"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let series = body["results"][0]["series"].as_array().unwrap();
    assert_eq!(series.len(), 10);
    assert_eq!(series[3]["tags"], serde_json::json!({"host": "h3"}));
    assert_eq!(series[3]["columns"][10], "mean_f9");
    assert_eq!(series[3]["values"].as_array().unwrap().len(), 20);
    assert_eq!(
        series[3]["values"][1],
        serde_json::Value::from(second_window.clone())
    );
    let (status, body) = query(
        &s,
        Some(&auth),
        &format!("db=db&epoch=s&q=SELECT+mean(*)+FROM+cpu+{range}+GROUP+BY+time(1000s)"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"][0]["series"][0]["values"][1],
        serde_json::Value::from(second_window)
    );
    let (status, body) = query(
        &s,
        Some(&auth),
        "db=db&epoch=s&q=SELECT+max(f3),count(f3)+FROM+cpu",
    )
    .await;
    assert_eq!(
        (status, body),
        (
            200,
            serde_json::json!({"results":[{"statement_id":0,"series":[{"name":"cpu",
                "columns":["time","max","count"],"values":[[0,20002,200000]]}]}]})
        )
    );
    let (status, body) = query(
        &s,
        Some(&auth),
        &format!("db=db&q=SELECT+median(*)+FROM+cpu+{range}+GROUP+BY+time(1000s)"),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("memory")),
        "{body}"
    );
    assert!(s.stop().success());
}

/// The last value per host, `SHOW TAG VALUES … WHERE region = 'y'` and
/// `SHOW SERIES` of the dashboard test's points, b's last value being `b`.
async fn check_dashboard(s: &Server, b: i64) {
    let auth = format!("Token {ADMIN_TOKEN}");
    let last = "db=db&epoch=s&q=SELECT+last(v)+FROM+m+GROUP+BY+host";
    let values = "db=db&q=SHOW+TAG+VALUES+FROM+m+WITH+KEY+%3D+host+WHERE+region+%3D+%27y%27";
    let series = "db=db&q=SHOW+SERIES";
    let expected = serde_json::json!({"results":[{"statement_id":0,"series":[
        {"name":"m","tags":{"host":"a"},"columns":["time","last"],"values":[[2,3]]},
        {"name":"m","tags":{"host":"b"},"columns":["time","last"],"values":[[25,b]]}]}]});
    assert_eq!(query(s, Some(&auth), last).await, (200, expected));
    let expected = serde_json::json!({"results":[{"statement_id":0,"series":[
        {"name":"m","columns":["key","value"],"values":[["host","b"]]}]}]});
    assert_eq!(query(s, Some(&auth), values).await, (200, expected));
    let expected = serde_json::json!({"results":[{"statement_id":0,"series":[
        {"columns":["key"],"values":[["m,host=a,region=x"],["m,host=b,region=y"]]}]}]});
    assert_eq!(query(s, Some(&auth), series).await, (200, expected));
}

async fn wait_for_snapshot(dir: &std::path::Path, before: usize) {
    let started = Instant::now();
    while files_under(dir, ".parquet").len() == before {
        assert!(started.elapsed() < Duration::from_secs(20), "no snapshot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What dashboards repeat — last value per host, tag values, series — from the
/// querier's file summaries: the same answers from the buffer, from Parquet,
/// with a newer version of a point buffered over its file, and after
/// restarts with a cache too small to keep anything and with it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_questions_from_summaries_across_snapshots_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--snapshot-interval", "1s"]);
    let before = files_under(dir.path(), ".parquet").len();
    // a@1 twice in one write: the later line wins.
    let body = "m,host=a,region=x v=1 1\nm,host=a,region=x v=3 2\nm,host=b,region=y v=5 25\nm,host=a,region=x v=7 1";
    let r = write(&s, "bucket=db&precision=s", ADMIN_TOKEN, body).await;
    assert_eq!(r.status, 204);
    check_dashboard(&s, 5).await;
    wait_for_snapshot(dir.path(), before).await;
    check_dashboard(&s, 5).await;
    // A newer version of b@25, buffered while its first version is in a file.
    let before = files_under(dir.path(), ".parquet").len();
    let r = write(
        &s,
        "bucket=db&precision=s",
        ADMIN_TOKEN,
        "m,host=b,region=y v=6 25",
    )
    .await;
    assert_eq!(r.status, 204);
    check_dashboard(&s, 6).await;
    wait_for_snapshot(dir.path(), before).await;
    check_dashboard(&s, 6).await;
    assert!(s.stop().success());
    for bytes in ["1", "0"] {
        let args = ["--snapshot-interval", "1h", "--query-cache-bytes", bytes];
        let s = Server::start(dir.path(), &args);
        check_dashboard(&s, 6).await;
        assert!(s.stop().success());
    }
}
