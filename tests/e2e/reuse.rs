//! A deleted database's name used again at once: the rows, WAL entries and
//! tokens of the old database must never reach the new one, and the old
//! rows must not wedge the ingester's snapshots (issue 23, item 5).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, Server, eventually, files_under, request, write};

/// Small enough that `y`'s writes below fill it unless snapshots drain it.
const BUFFER_BYTES: &str = "2000000";

fn args() -> [&'static str; 6] {
    [
        "--snapshot-interval",
        "3s",
        "--buffer-bytes",
        BUFFER_BYTES,
        "--purge-grace",
        "1h",
    ]
}

async fn api(s: &Server, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    let auth = format!("Token {token}");
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let r = request(method, &s.url(path), &[("authorization", &auth)], body).await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

async fn sql(s: &Server, token: &str, db: &str, q: &str) -> (u16, Value) {
    let query = serde_urlencoded::to_string([("db", db), ("q", q)]).unwrap();
    api(
        s,
        "GET",
        &format!("/api/v3/query_sql?{query}"),
        token,
        Value::Null,
    )
    .await
}

/// Deletes `x` and creates it again, each answered 200.
async fn recreate_x(s: &Server) {
    let path = "/api/v3/configure/database";
    let (status, body) = api(
        s,
        "DELETE",
        &format!("{path}?db=x"),
        ADMIN_TOKEN,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "delete x: {body}");
    let (status, body) = api(s, "POST", path, ADMIN_TOKEN, json!({"db": "x"})).await;
    assert_eq!(status, 200, "create x again: {body}");
}

/// The sum of a metric's samples (of any labels) whose line holds `label`.
async fn metric(s: &Server, name: &str, label: &str) -> f64 {
    let r = request("GET", &s.url("/metrics"), &[], "").await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A snapshot of database `id` succeeded: its Parquet file is on disk, the
/// buffer is empty and no snapshot failed.
async fn await_clean_snapshot(s: &Server, data: &Path, id: &str) {
    let dir = data.join(id);
    eventually(
        Duration::from_secs(30),
        &format!("a Parquet file of database {id} and an empty buffer"),
        || {
            let dir = dir.clone();
            async move {
                !files_under(&dir, ".parquet").is_empty()
                    && metric(s, "inflow_ingester_buffer_bytes", "").await == 0.0
            }
        },
    )
    .await;
    let failed = metric(s, "inflow_snapshots_total", "outcome=\"error\"").await;
    assert_eq!(failed, 0.0, "no snapshot failed");
}

/// Writes more than the ingester's buffer holds to database `y`; each write
/// must be taken within a few seconds (a 503 while a snapshot drains the
/// buffer is retried), which holds only if snapshots succeed.
async fn y_stays_writable(s: &Server, round: i64) {
    let body = |w: i64| -> String {
        (0..4000)
            .map(|i| {
                format!(
                    "n,host=h{} v={i}i {}\n",
                    i % 50,
                    1_700_000_000 + round * 1_000_000 + w * 4000 + i
                )
            })
            .collect()
    };
    for w in 0..40 {
        let started = Instant::now();
        loop {
            let r = write(s, "bucket=y&precision=s", ADMIN_TOKEN, body(w)).await;
            if r.status == 204 {
                break;
            }
            assert_eq!(r.status, 503, "write {w} to y: {:?}", r.body);
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "write {w} to y still refused after 10 s: {:?}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (status, body) = sql(s, ADMIN_TOKEN, "y", "SELECT count(*) AS n FROM n").await;
    assert_eq!(
        (status, body),
        (200, json!([{"n": 1 + (round + 1) * 160_000}]))
    );
}

/// Write `x.m` (f integer), delete `x`, create `x`, write `x.m` with `f` a
/// string and another column: only the new rows are ever seen, snapshots go
/// on succeeding, other databases stay writable, a `kill -9` and restart
/// replays into the same state, and a token made for the old `x` is refused
/// on the new one. Database ids: `y` 1, then `x` 2, 3, 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_database_name_reused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let s = Server::start(dir.path(), &args());
    assert_eq!(
        write(&s, "bucket=y", ADMIN_TOKEN, "n v=0i 1").await.status,
        204
    );
    let (status, made) = api(
        &s,
        "POST",
        "/api/v3/configure/token",
        ADMIN_TOKEN,
        json!({"token_name": "old-x", "permissions": [
            {"resource_type": "db", "resource_identifier": ["x"], "actions": ["read", "write"]}
        ]}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let old_token = made["token"].as_str().unwrap().to_string();

    // Within the snapshot interval: the old rows are still only buffered.
    // Table `gone` is one the new `x` never has (a snapshot that looked it
    // up by name would fail on every try).
    let old_rows = "m f=1i 1700000000\ngone v=1i 1700000000";
    let r = write(&s, "bucket=x&precision=s", &old_token, old_rows).await;
    assert_eq!(r.status, 204);
    recreate_x(&s).await;
    let r = write(
        &s,
        "bucket=x&precision=s",
        ADMIN_TOKEN,
        "m f=\"a\",g=2i 1700000001",
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let only_new = json!([{"f": "a", "g": 2}]);
    assert_eq!(
        sql(&s, ADMIN_TOKEN, "x", "SELECT f, g FROM m").await,
        (200, only_new.clone())
    );
    check_old_token_refused(&s, &old_token).await;

    await_clean_snapshot(&s, &data, "3").await;
    assert_eq!(
        sql(&s, ADMIN_TOKEN, "x", "SELECT f, g FROM m").await,
        (200, only_new.clone())
    );
    let (status, body) = sql(&s, ADMIN_TOKEN, "x", "SELECT * FROM gone").await;
    assert_eq!(status, 404, "the old database's table: {body}");
    y_stays_writable(&s, 0).await;

    // Again, but killed before any snapshot: the restart replays a WAL that
    // holds rows of the deleted database 3 and of the new database 4.
    let r = write(
        &s,
        "bucket=x&precision=s",
        ADMIN_TOKEN,
        "m f=\"b\",g=3i 1700000002",
    )
    .await;
    assert_eq!(r.status, 204);
    recreate_x(&s).await;
    let r = write(
        &s,
        "bucket=x&precision=s",
        ADMIN_TOKEN,
        "m f=3.5,h=true 1700000003",
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    s.kill9();
    let s = Server::start(dir.path(), &args());
    let newest = json!([{"f": 3.5, "h": true}]);
    assert_eq!(
        sql(&s, ADMIN_TOKEN, "x", "SELECT f, h FROM m").await,
        (200, newest.clone())
    );
    check_old_token_refused(&s, &old_token).await;
    await_clean_snapshot(&s, &data, "4").await;
    assert_eq!(
        sql(&s, ADMIN_TOKEN, "x", "SELECT f, h FROM m").await,
        (200, newest.clone())
    );
    y_stays_writable(&s, 1).await;

    // And from Parquet alone after another kill -9.
    s.kill9();
    let s = Server::start(dir.path(), &args());
    assert_eq!(
        sql(&s, ADMIN_TOKEN, "x", "SELECT f, h FROM m").await,
        (200, newest)
    );
    check_old_token_refused(&s, &old_token).await;
    assert!(s.stop().success());
}

/// A token made for an earlier database of the name may neither write nor
/// read the current one: 403, as InfluxDB 3 answers a token without
/// permission on a database.
async fn check_old_token_refused(s: &Server, token: &str) {
    let r = write(s, "bucket=x&precision=s", token, "m f=\"stale\" 1700000009").await;
    assert_eq!(r.status, 403, "write with the old token: {:?}", r.body);
    let (status, body) = sql(s, token, "x", "SELECT * FROM m").await;
    assert_eq!(status, 403, "query with the old token: {body}");
}
