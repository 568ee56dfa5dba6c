//! Administration and the data lifecycle, end to end: the `/api/v3/configure`
//! API and the CLI (against a running server and offline), retention that
//! drops old days and refuses old points, and deletion that purges a
//! database's objects.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, Server, binary, eventually, files_under, request, write};

const DAY_NS: i64 = 86_400_000_000_000;

async fn api(s: &Server, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    let auth = format!("Token {token}");
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let r = request(method, &s.url(path), &[("authorization", &auth)], body).await;
    let json = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, json)
}

/// Runs the CLI; its stdout, or a panic with stderr.
fn cli(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(binary())
        .args(args)
        .env_remove("INFLOW_HOST")
        .env_remove("INFLOW_TOKEN")
        .env_remove("INFLOW_DATA_DIR")
        .envs(env.iter().copied())
        .output()
        .expect("inflow runs");
    assert!(
        out.status.success(),
        "inflow {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn sql(s: &Server, token: &str, db: &str, q: &str) -> (u16, Value) {
    let path = format!(
        "/api/v3/query_sql?{}",
        serde_urlencoded::to_string([("db", db), ("q", q)]).unwrap()
    );
    api(s, "GET", &path, token, Value::Null).await
}

/// Databases and tokens through the HTTP API, then the same catalog through
/// the CLI, against the running server and offline on its data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_and_tokens_over_http_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let db = |name: &str, retention: &str| json!({"db": name, "retention_period": retention});

    let (status, _) = api(
        &s,
        "POST",
        "/api/v3/configure/database",
        ADMIN_TOKEN,
        db("metrics", "30d"),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = api(
        &s,
        "POST",
        "/api/v3/configure/database",
        ADMIN_TOKEN,
        db("metrics", "1d"),
    )
    .await;
    assert_eq!(
        (status, body),
        (409, json!({"error": "database \"metrics\" already exists"}))
    );
    let (status, body) = api(
        &s,
        "POST",
        "/api/v3/configure/database",
        ADMIN_TOKEN,
        db("bad name", ""),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = api(
        &s,
        "POST",
        "/api/v3/configure/database",
        ADMIN_TOKEN,
        db("x", "soon"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    api(
        &s,
        "POST",
        "/api/v3/configure/database",
        ADMIN_TOKEN,
        json!({"db": "logs"}),
    )
    .await;
    let (status, _) = api(
        &s,
        "PUT",
        "/api/v3/configure/database",
        ADMIN_TOKEN,
        db("logs", "12h"),
    )
    .await;
    assert_eq!(status, 200);
    let (status, list) = api(
        &s,
        "GET",
        "/api/v3/configure/database",
        ADMIN_TOKEN,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        list,
        json!([
            {"iox::database": "metrics", "retention_period": "30d", "retention_period_ns": 30 * DAY_NS,
             "max_tables": null, "max_columns_per_table": null, "max_series": null},
            {"iox::database": "logs", "retention_period": "12h", "retention_period_ns": DAY_NS / 2,
             "max_tables": null, "max_columns_per_table": null, "max_series": null},
        ])
    );

    // A token for one database, with an expiry; its secret is shown once.
    let grant = json!({
        "token_name": "grafana",
        "permissions": [{"resource_type": "db", "resource_identifier": ["metrics"], "actions": ["read"]}],
        "expiry_secs": 3600,
    });
    let (status, made) = api(
        &s,
        "POST",
        "/api/v3/configure/token",
        ADMIN_TOKEN,
        grant.clone(),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["name"], "grafana");
    assert_eq!(made["permissions"], json!(["db:metrics:read"]));
    let secret = made["token"].as_str().unwrap().to_string();
    let (status, _) = api(&s, "POST", "/api/v3/configure/token", ADMIN_TOKEN, grant).await;
    assert_eq!(status, 409);
    // Only operators administer: the new token is refused (403), none is 401.
    let (status, _) = api(
        &s,
        "GET",
        "/api/v3/configure/database",
        &secret,
        Value::Null,
    )
    .await;
    assert_eq!(status, 403);
    let r = request("GET", &s.url("/api/v3/configure/token"), &[], "").await;
    assert_eq!(r.status, 401);
    // The token reads its database, and only it.
    assert_eq!(sql(&s, &secret, "metrics", "SHOW TABLES").await.0, 200);
    assert_eq!(sql(&s, &secret, "logs", "SHOW TABLES").await.0, 403);
    let (_, tokens) = api(
        &s,
        "GET",
        "/api/v3/configure/token",
        ADMIN_TOKEN,
        Value::Null,
    )
    .await;
    assert_eq!(tokens.as_array().unwrap().len(), 1);
    assert_eq!(tokens[0]["name"], "grafana");
    assert!(tokens[0].get("token").is_none(), "secrets are never listed");
    assert!(tokens[0]["expires_at"].is_string());

    // Tables and columns.
    let r = write(
        &s,
        "bucket=metrics&precision=s",
        ADMIN_TOKEN,
        "cpu,host=a usage=1,n=2i",
    )
    .await;
    assert_eq!(r.status, 204);
    let (_, tables) = api(
        &s,
        "GET",
        "/api/v3/configure/table?db=metrics",
        ADMIN_TOKEN,
        Value::Null,
    )
    .await;
    assert_eq!(
        tables,
        json!([{"table_name": "cpu", "columns": [
            {"name": "host", "type": "tag"}, {"name": "usage", "type": "float"},
            {"name": "n", "type": "integer"}, {"name": "time", "type": "time"}]}])
    );

    // The CLI against the running server.
    let host = [
        ("INFLOW_HOST", s.base.as_str()),
        ("INFLOW_TOKEN", ADMIN_TOKEN),
    ];
    cli(
        &["database", "create", "events", "--retention", "7d"],
        &host,
    );
    assert_eq!(
        cli(&["database", "list"], &host),
        "metrics\t30d\t-\t-\t-\nlogs\t12h\t-\t-\t-\nevents\t7d\t-\t-\t-\n"
    );
    let cli_token = cli(
        &[
            "token",
            "create",
            "--database",
            "events",
            "--permission",
            "write",
            "--name",
            "telegraf",
        ],
        &host,
    );
    let cli_token = cli_token.trim();
    let r = write(&s, "bucket=events&org=o", cli_token, "e v=1").await;
    assert_eq!(r.status, 204);
    cli(&["token", "revoke", "telegraf"], &host);
    let r = write(&s, "bucket=events&org=o", cli_token, "e v=1").await;
    assert_eq!(r.status, 401);
    cli(&["database", "delete", "logs"], &host);
    let (status, _) = api(
        &s,
        "DELETE",
        "/api/v3/configure/database?db=logs",
        ADMIN_TOKEN,
        Value::Null,
    )
    .await;
    assert_eq!(status, 404);
    assert!(s.stop().success());

    // Offline, on the data directory: the same catalog.
    let data = dir.path().to_str().unwrap();
    assert_eq!(
        cli(&["database", "list", "--data-dir", data], &[]),
        "metrics\t30d\t-\t-\t-\nevents\t7d\t-\t-\t-\n"
    );
    let listed = cli(&["token", "list", "--data-dir", data], &[]);
    assert!(
        listed.starts_with("1\tgrafana\tdb:metrics:read\t"),
        "{listed}"
    );
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert_eq!(
        cli(
            &["table", "list", "--database", "metrics", "--data-dir", data],
            &[]
        ),
        "cpu\thost:tag,usage:float,n:integer,time:time\n"
    );
}

/// A database with a 1-hour retention: old points are refused with a 400
/// naming the line, its old days leave the catalog and their objects are
/// deleted, queries answer only what the period keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_old_days_and_refuses_old_points() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--snapshot-interval",
        "1s",
        "--lifecycle-interval",
        "1s",
        "--file-grace",
        "1s",
    ];
    let s = Server::start(dir.path(), &args);
    let now_s = inflow::clock::Clock::now_ns(&inflow::clock::SystemClock) / 1_000_000_000;
    let old_s = now_s - 3 * 86_400;
    // Written before any retention: a day three days ago, and now.
    let body = format!("m,host=old v=1 {old_s}\nm,host=new v=2 {now_s}");
    let r = write(&s, "bucket=r&precision=s", ADMIN_TOKEN, body).await;
    assert_eq!(r.status, 204);
    let data = dir.path().to_path_buf();
    let old_day = chrono::DateTime::from_timestamp(old_s, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    eventually(Duration::from_secs(20), "both days in Parquet", || {
        let data = data.clone();
        let old_day = old_day.clone();
        async move {
            let files = files_under(&data, ".parquet");
            files.len() >= 2 && files.iter().any(|f| f.to_string_lossy().contains(&old_day))
        }
    })
    .await;
    let q = "SELECT host, v FROM m ORDER BY host";
    assert_eq!(
        sql(&s, ADMIN_TOKEN, "r", q).await,
        (
            200,
            json!([{"host": "new", "v": 2.0}, {"host": "old", "v": 1.0}])
        )
    );

    let (status, _) = api(
        &s,
        "PUT",
        "/api/v3/configure/database",
        ADMIN_TOKEN,
        json!({"db": "r", "retention_period": "1h"}),
    )
    .await;
    assert_eq!(status, 200);
    // Hidden from queries at once.
    assert_eq!(
        sql(&s, ADMIN_TOKEN, "r", q).await,
        (200, json!([{"host": "new", "v": 2.0}]))
    );
    // The old day's file is dropped from the catalog, then deleted.
    eventually(
        Duration::from_secs(20),
        "the old day's objects deleted",
        || {
            let data = data.clone();
            let old_day = old_day.clone();
            async move {
                !files_under(&data, ".parquet")
                    .iter()
                    .any(|f| f.to_string_lossy().contains(&old_day))
            }
        },
    )
    .await;
    assert!(
        !files_under(&data, ".parquet").is_empty(),
        "today's file stays"
    );
    // Old points are refused, naming the line; their good neighbours are
    // written, as for any rejected line.
    let body = format!("m,host=a v=3 {now_s}\nm,host=b v=4 {old_s}");
    let r = write(&s, "bucket=r&precision=s", ADMIN_TOKEN, body).await;
    assert_eq!(r.status, 400);
    let error: Value = serde_json::from_slice(&r.body).unwrap();
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("line 2")
            && message.contains("older than the database's retention period"),
        "{message}"
    );
    let kept = json!([{"host": "a", "v": 3.0}, {"host": "new", "v": 2.0}]);
    assert_eq!(sql(&s, ADMIN_TOKEN, "r", q).await, (200, kept.clone()));
    assert!(s.stop().success());
    // After a restart too.
    let s = Server::start(dir.path(), &args);
    assert_eq!(sql(&s, ADMIN_TOKEN, "r", q).await, (200, kept));
    assert!(s.stop().success());
}

/// Deleting a database hides it at once; after the purge grace its objects
/// are gone from the store and its name is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_and_purging_a_database_removes_its_objects() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--snapshot-interval",
        "1s",
        "--lifecycle-interval",
        "1s",
        "--purge-grace",
        "2s",
    ];
    let s = Server::start(dir.path(), &args);
    for db in ["doomed", "kept"] {
        let r = write(&s, &format!("bucket={db}"), ADMIN_TOKEN, "m v=1").await;
        assert_eq!(r.status, 204);
    }
    let data = dir.path().to_path_buf();
    // Database ids are 1 and 2, in creation order; objects live under them.
    let under = |id: &str| data.join(id);
    eventually(Duration::from_secs(20), "both databases in Parquet", || {
        let (a, b) = (under("1"), under("2"));
        async move { !files_under(&a, ".parquet").is_empty() && !files_under(&b, ".parquet").is_empty() }
    })
    .await;
    let (status, _) = api(
        &s,
        "DELETE",
        "/api/v3/configure/database?db=doomed",
        ADMIN_TOKEN,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = sql(&s, ADMIN_TOKEN, "doomed", "SELECT * FROM m").await;
    assert_eq!(status, 404, "{body}");
    eventually(
        Duration::from_secs(20),
        "the deleted database's objects purged",
        || {
            let a = under("1");
            async move { files_under(&a, "").is_empty() }
        },
    )
    .await;
    assert!(
        !files_under(&under("2"), ".parquet").is_empty(),
        "the other database stays"
    );
    assert_eq!(
        sql(&s, ADMIN_TOKEN, "kept", "SELECT v FROM m").await,
        (200, json!([{"v": 1.0}]))
    );
    // The name is free: a new database, a new id, no old data.
    let (status, _) = api(
        &s,
        "POST",
        "/api/v3/configure/database",
        ADMIN_TOKEN,
        json!({"db": "doomed"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = sql(&s, ADMIN_TOKEN, "doomed", "SHOW TABLES").await;
    assert_eq!(status, 200);
    assert!(!body.to_string().contains("\"m\""), "{body}");
    assert!(s.stop().success());
}

/// Many small writes leave many small files in a day; once compaction runs
/// they are one file, and every query answers exactly as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_leaves_one_file_and_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let s = Server::start(
        dir.path(),
        &[
            "--snapshot-interval",
            "1s",
            "--compaction-interval",
            "1h",
            "--lease-ttl",
            "1s",
        ],
    );
    // 2024-01-01T00:00:00Z; every write rewrites 40 points of the one before
    // (the host follows the time, so the same time is the same point), and
    // every other write the same field.
    let base = 1_704_067_200i64;
    for k in 0..6i64 {
        let body: Vec<String> = (0..50)
            .map(|i| {
                let field = if k % 2 == 0 { "x" } else { "y" };
                format!(
                    "m,host=h{} {field}={} {}",
                    (i + k * 10) % 7,
                    k * 100 + i,
                    base + i + k * 10
                )
            })
            .collect();
        let before = files_under(&data, ".parquet").len();
        let r = write(&s, "bucket=c&precision=s", ADMIN_TOKEN, body.join("\n")).await;
        assert_eq!(r.status, 204);
        eventually(Duration::from_secs(20), "a snapshot of the write", || {
            let data = data.clone();
            async move { files_under(&data, ".parquet").len() > before }
        })
        .await;
    }
    let small = files_under(&data, ".parquet").len();
    assert!(small >= 6, "{small} files");
    let expected = compaction_model(base);
    let queries = [
        "SELECT * FROM m ORDER BY host, time",
        "SELECT host, count(*) AS n, sum(x) AS x, sum(y) AS y FROM m GROUP BY host ORDER BY host",
    ];
    // The answers are computed from what was written, not taken from the
    // server: a dedup bug shared by the small files and the compacted one
    // must not pass.
    for (q, expected) in queries.iter().zip(&expected) {
        assert_eq!(
            sql(&s, ADMIN_TOKEN, "c", q).await,
            (200, expected.clone()),
            "before compaction: {q}"
        );
    }
    assert!(s.stop().success());

    let s = Server::start(
        dir.path(),
        &[
            "--compaction-interval",
            "1s",
            "--compaction-min-files",
            "2",
            "--lease-ttl",
            "1s",
            "--lifecycle-interval",
            "1s",
            "--file-grace",
            "1s",
        ],
    );
    eventually(Duration::from_secs(30), "one compacted file left", || {
        let data = data.clone();
        async move {
            let files = files_under(&data, ".parquet");
            files.len() == 1 && files[0].to_string_lossy().contains("compacted-")
        }
    })
    .await;
    for (q, expected) in queries.iter().zip(&expected) {
        assert_eq!(
            sql(&s, ADMIN_TOKEN, "c", q).await,
            (200, expected.clone()),
            "after compaction: {q}"
        );
    }
    assert!(s.stop().success());
}

/// The answers to the compaction test's two queries, from a model of its
/// writes: write `k` sets field `x` (even `k`) or `y` (odd `k`) of points
/// `(h{t % 7}, base + t)` with `t = i + 10k`, and a later write of a point
/// replaces only the field it sets.
fn compaction_model(base: i64) -> [Value; 2] {
    use std::collections::BTreeMap;
    let mut points: BTreeMap<(String, i64), (Option<f64>, Option<f64>)> = BTreeMap::new();
    for k in 0..6i64 {
        for i in 0..50 {
            let point = points
                .entry((format!("h{}", (i + k * 10) % 7), base + i + k * 10))
                .or_default();
            let v = Some((k * 100 + i) as f64);
            if k % 2 == 0 {
                point.0 = v;
            } else {
                point.1 = v;
            }
        }
    }
    let mut rows = Vec::new();
    let mut per_host: BTreeMap<&str, (u64, Option<f64>, Option<f64>)> = BTreeMap::new();
    for ((host, t), (x, y)) in &points {
        let time = chrono::DateTime::from_timestamp(*t, 0)
            .unwrap()
            .naive_utc()
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        let mut row = json!({"host": host, "time": time});
        let add = |sum: &mut Option<f64>, v: &Option<f64>| {
            if let Some(v) = v {
                *sum = Some(sum.unwrap_or(0.0) + v);
            }
        };
        let agg = per_host.entry(host).or_default();
        agg.0 += 1;
        add(&mut agg.1, x);
        add(&mut agg.2, y);
        if let Some(x) = x {
            row["x"] = json!(x);
        }
        if let Some(y) = y {
            row["y"] = json!(y);
        }
        rows.push(row);
    }
    let groups = per_host
        .into_iter()
        .map(|(host, (n, x, y))| {
            let mut row = json!({"host": host, "n": n});
            if let Some(x) = x {
                row["x"] = json!(x);
            }
            if let Some(y) = y {
                row["y"] = json!(y);
            }
            row
        })
        .collect();
    [Value::Array(rows), Value::Array(groups)]
}

/// A database's own quotas, set over the API and the CLI: a line past one is
/// refused naming the line, the limit and the count; rejected lines add
/// nothing; 0 returns to the server's quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_database_quotas_name_the_line_limit_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let body = json!({"db": "q", "max_tables": 1, "max_columns_per_table": 3});
    let (status, _) = api(&s, "POST", "/api/v3/configure/database", ADMIN_TOKEN, body).await;
    assert_eq!(status, 200);
    let r = write(
        &s,
        "bucket=q&precision=s",
        ADMIN_TOKEN,
        "a,t=x f=1i 1\nb f=1i 1\na,t=x g=1i 2",
    )
    .await;
    assert_eq!(r.status, 400);
    let message = serde_json::from_slice::<Value>(&r.body).unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("line 2, column 1: table \"b\" would exceed the database's limit of 1 tables (it has 1)")
            && message.contains("line 3, column 7: column \"g\" would exceed the limit of 3 columns of table \"a\" (it has 3, time included)"),
        "{message}"
    );
    // Line 1 was written; the rejected ones added nothing.
    let (_, tables) = api(
        &s,
        "GET",
        "/api/v3/configure/table?db=q",
        ADMIN_TOKEN,
        Value::Null,
    )
    .await;
    assert_eq!(tables.as_array().unwrap().len(), 1, "{tables}");
    assert_eq!(
        tables[0]["columns"].as_array().unwrap().len(),
        3,
        "{tables}"
    );
    // Raise the table quota from the CLI; the column quota stays.
    let host = [
        ("INFLOW_HOST", s.base.as_str()),
        ("INFLOW_TOKEN", ADMIN_TOKEN),
    ];
    cli(&["database", "update", "q", "--max-tables", "0"], &host);
    assert_eq!(cli(&["database", "list"], &host), "q\tnone\t-\t3\t-\n");
    let r = write(&s, "bucket=q&precision=s", ADMIN_TOKEN, "b f=1i 1").await;
    assert_eq!(r.status, 204);
    let r = write(&s, "bucket=q&precision=s", ADMIN_TOKEN, "a,t=x g=1i 2").await;
    assert_eq!(r.status, 400);
    assert!(s.stop().success());
}

/// The series quota: a line that would add one series too many is refused by
/// number with the limit and the count, the rest are written, and the count
/// (kept on the object store) holds across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_quota_names_the_line_and_holds_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--snapshot-interval", "1h"];
    let s = Server::start(dir.path(), &args);
    let host = [
        ("INFLOW_HOST", s.base.as_str()),
        ("INFLOW_TOKEN", ADMIN_TOKEN),
    ];
    cli(&["database", "create", "s", "--max-series", "2"], &host);
    assert_eq!(cli(&["database", "list"], &host), "s\tnone\t-\t-\t2\n");
    let body =
        "cpu,host=a v=1 1\ncpu,host=b v=1 1\ncpu,host=c v=1 1\ncpu,host=a v=2 2\nmem,host=a v=1 1";
    let r = write(&s, "bucket=s&org=o&precision=s", ADMIN_TOKEN, body).await;
    assert_eq!(r.status, 400);
    let error: Value = serde_json::from_slice(&r.body).unwrap();
    let over = "new series would exceed the database's limit of 2 series (it has 2)";
    assert_eq!(
        error["message"],
        format!(
            "failed to parse line protocol: errors encountered on line(s):\n\
             line 3, column 1: {over}\n    cpu,host=c v=1 1\n    ^\n\
             line 5, column 1: {over}\n    mem,host=a v=1 1\n    ^"
        ),
        "{error}"
    );
    // Known series are still written, in any tag order.
    let r = write(
        &s,
        "bucket=s&org=o&precision=s",
        ADMIN_TOKEN,
        "cpu,host=b v=2 2",
    )
    .await;
    assert_eq!(r.status, 204);
    let q = "SELECT host, v FROM cpu ORDER BY host, time";
    let (status, rows) = sql(&s, ADMIN_TOKEN, "s", q).await;
    assert_eq!(status, 200);
    assert_eq!(
        rows,
        json!([
            {"host": "a", "v": 1.0}, {"host": "a", "v": 2.0},
            {"host": "b", "v": 1.0}, {"host": "b", "v": 2.0},
        ])
    );
    assert!(s.stop().success());
    // The series log is on the object store, under the database's id.
    assert!(
        !files_under(dir.path(), "series").is_empty(),
        "no series log under {}",
        dir.path().display()
    );

    let s = Server::start(dir.path(), &args);
    let r = write(
        &s,
        "bucket=s&org=o&precision=s",
        ADMIN_TOKEN,
        "cpu,host=c v=1 3",
    )
    .await;
    assert_eq!(r.status, 400);
    let error: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(error["message"].as_str().unwrap().contains(over), "{error}");
    // Raised over the API, the quota lets the third series in.
    let body = json!({"db": "s", "max_series": 3});
    let (status, _) = api(&s, "PUT", "/api/v3/configure/database", ADMIN_TOKEN, body).await;
    assert_eq!(status, 200);
    let r = write(
        &s,
        "bucket=s&org=o&precision=s",
        ADMIN_TOKEN,
        "cpu,host=c v=1 3\nmem,host=a v=1 3",
    )
    .await;
    assert_eq!(r.status, 400);
    let error: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        error["message"].as_str().unwrap().contains(
            "line 2, column 1: new series would exceed the database's limit of 3 series (it has 3)"
        ),
        "{error}"
    );
    let (_, rows) = sql(&s, ADMIN_TOKEN, "s", "SELECT count(*) AS n FROM cpu").await;
    assert_eq!(rows, json!([{"n": 5}]));
    assert!(s.stop().success());
}

/// Offline, the CLI works on a server's data directory: given one no
/// server ever used (a typo, a wrong mount), it refuses, naming it, instead
/// of creating an empty catalog there and answering as if it held nothing.
#[test]
fn offline_commands_refuse_a_data_dir_without_a_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for data_dir in [&missing, &empty] {
        for args in [
            &["database", "list"][..],
            &["database", "create", "x"],
            &[
                "token",
                "create",
                "--database",
                "x",
                "--permission",
                "write",
            ],
        ] {
            let out = Command::new(binary())
                .args(args)
                .arg("--data-dir")
                .arg(data_dir)
                .env_remove("INFLOW_HOST")
                .env_remove("INFLOW_TOKEN")
                .env_remove("INFLOW_DATA_DIR")
                .output()
                .expect("inflow runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} on {data_dir:?}: {stderr}");
            assert!(
                stderr.contains("no inflow catalog under") && stderr.contains("--host"),
                "{stderr}"
            );
        }
    }
    assert!(!missing.exists(), "nothing was created");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

/// One variable for the server and the CLI: `INFLOW_TOKEN` sets the server's
/// operator token and is what the CLI sends with `--host`; the older
/// `INFLOW_ADMIN_TOKEN` still sets the server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_variable_serves_the_server_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(dir.path(), &[], &[("INFLOW_TOKEN", "one-variable")]);
    assert!(
        s.stdout_lines
            .iter()
            .any(|l| l == "inflow: operator token from INFLOW_TOKEN"),
        "{:?}",
        s.stdout_lines
    );
    let r = write(&s, "bucket=one", "one-variable", "m f=1").await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let listed = cli(
        &["database", "list", "--host", &s.base],
        &[("INFLOW_TOKEN", "one-variable")],
    );
    assert!(listed.contains("one"), "{listed}");
    drop(s);
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(dir.path(), &[], &[("INFLOW_ADMIN_TOKEN", "older-name")]);
    let r = write(&s, "bucket=old", "older-name", "m f=1").await;
    assert_eq!(r.status, 204, "{:?}", r.body);
}

/// `--default-retention` (VictoriaMetrics' `-retentionPeriod`): a database
/// created by its first write gets it, so a Telegraf database does not grow
/// forever; one created through the API keeps what it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_created_by_a_first_write_get_the_default_retention() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--default-retention", "1d"]);
    let now_s = inflow::clock::Clock::now_ns(&inflow::clock::SystemClock) / 1_000_000_000;
    let body = format!("m f=1 {now_s}\nm f=2 {}", now_s - 2 * 86_400);
    let r = write(&s, "bucket=telegraf&precision=s", ADMIN_TOKEN, body).await;
    assert_eq!(r.status, 400, "the two-day-old point is refused");
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        text.contains("older than the database's retention period"),
        "{text}"
    );
    let made = api(
        &s,
        "POST",
        "/api/v3/configure/database",
        ADMIN_TOKEN,
        json!({"db": "kept"}),
    )
    .await;
    assert_eq!(made.0, 200, "{:?}", made.1);
    let (status, list) = api(
        &s,
        "GET",
        "/api/v3/configure/database",
        ADMIN_TOKEN,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    let retention = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|d| d["iox::database"] == name)
            .map(|d| d["retention_period"].clone())
    };
    assert_eq!(retention("telegraf"), Some(json!("1d")), "{list}");
    assert_eq!(retention("kept"), Some(json!("none")), "{list}");
}

/// `--without-auth` (local development): writes and queries need no token on
/// any API, and the server says so loudly when it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_lets_every_request_in_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(dir.path(), &["--without-auth"], &[]);
    assert!(
        s.stdout_lines
            .iter()
            .any(|l| l.starts_with("inflow: WARNING: --without-auth")),
        "{:?}",
        s.stdout_lines
    );
    for path in [
        "/api/v2/write?bucket=dev",
        "/write?db=dev",
        "/api/v3/write_lp?db=dev",
    ] {
        let r = request("POST", &s.url(path), &[], "m f=1").await;
        assert_eq!(r.status, 204, "{path}: {:?}", r.body);
    }
    let r = request(
        "GET",
        &s.url("/query?db=dev&q=SELECT%20f%20FROM%20m"),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = request("GET", &s.url("/api/v3/configure/database"), &[], "").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Without the flag the same request is refused.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let r = request("POST", &s.url("/api/v2/write?bucket=dev"), &[], "m f=1").await;
    assert_eq!(r.status, 401);
}
