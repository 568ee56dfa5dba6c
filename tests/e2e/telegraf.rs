//! Telegraf's `outputs.influxdb_v2`, replayed request for request (Telegraf
//! itself cannot be installed here). What it sends, from its `http.go`:
//!
//! - `POST <url>/api/v2/write?bucket=<bucket>&org=<organization>`: the query is
//!   Go's `url.Values.Encode()`, so keys are sorted and `org` is always there,
//!   empty when the config says `organization = ""` (as the InfluxDB 3 and
//!   Clustered Telegraf guides do); no `precision` (nanoseconds).
//! - `Authorization: Token <token>`, `Content-Type: text/plain; charset=utf-8`,
//!   `Content-Encoding: gzip` (its default `content_encoding`), its `User-Agent`.
//! - On 413 it splits the batch in two and sends each half, recursively; on
//!   400/422 (and other 4xx but 401/403/413/429) it drops the batch; on
//!   429/502/503/504 it waits `Retry-After` (a float in seconds) and retries.
//!
//! So a 400 for anything Telegraf always sends silently loses every metric.

use serde_json::json;

use crate::harness::{ADMIN_TOKEN, Response, Server, gzip, request};

const USER_AGENT: &str = "Telegraf/1.36.1 Go/1.24.5";

/// One `writeBatch` of Telegraf: `lines` are its influx-serialized metrics.
async fn telegraf_write(server: &Server, bucket: &str, org: &str, lines: &[String]) -> Response {
    let body: String = lines.concat();
    let auth = format!("Token {ADMIN_TOKEN}");
    request(
        "POST",
        &server.url(&format!("/api/v2/write?bucket={bucket}&org={org}")),
        &[
            ("authorization", &auth),
            ("content-type", "text/plain; charset=utf-8"),
            ("content-encoding", "gzip"),
            ("user-agent", USER_AGENT),
            ("accept-encoding", "gzip"),
        ],
        gzip(body.as_bytes()),
    )
    .await
}

/// Telegraf's `splitAndWrite`: a batch refused with 413 is halved and each half
/// sent again, until a single metric is refused (then it is kept for a retry).
/// Returns the statuses of the requests that were not split further.
async fn telegraf_send(server: &Server, bucket: &str, lines: &[String]) -> Vec<u16> {
    let mut pending = vec![lines.to_vec()];
    let mut settled = Vec::new();
    while let Some(batch) = pending.pop() {
        let r = telegraf_write(server, bucket, "", &batch).await;
        if r.status == 413 && batch.len() > 1 {
            assert_eq!(r.json()["code"], "request too large", "{:?}", r.body);
            let (a, b) = batch.split_at(batch.len() / 2);
            pending.push(b.to_vec());
            pending.push(a.to_vec());
        } else {
            settled.push(r.status);
        }
    }
    settled
}

async fn sql(server: &Server, db: &str, q: &str) -> serde_json::Value {
    let query = serde_urlencoded::to_string([("db", db), ("q", q)]).unwrap();
    let auth = format!("Token {ADMIN_TOKEN}");
    let r = request(
        "GET",
        &server.url(&format!("/api/v3/query_sql?{query}")),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// The InfluxDB 3 Telegraf guide's `organization = ""` sends `org=`: written,
/// and read back.
#[tokio::test]
async fn empty_organization_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let lines = vec![
        "cpu,cpu=cpu0,host=web1 usage_idle=97.5,usage_user=1.25 1700000000000000000\n".to_string(),
        "cpu,cpu=cpu1,host=web1 usage_idle=88,usage_user=9.5 1700000000000000000\n".to_string(),
        "mem,host=web1 used=12345i 1700000000000000000\n".to_string(),
    ];
    let r = telegraf_write(&server, "telegraf", "", &lines).await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    // A non-empty organization is ignored the same way.
    let more = vec!["mem,host=web2 used=1i 1700000000000000000\n".to_string()];
    let r = telegraf_write(&server, "telegraf", "my-org", &more).await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));

    assert_eq!(
        sql(
            &server,
            "telegraf",
            "SELECT cpu, host, usage_idle, usage_user, time FROM cpu ORDER BY cpu"
        )
        .await,
        json!([
            {"cpu": "cpu0", "host": "web1", "usage_idle": 97.5, "usage_user": 1.25, "time": "2023-11-14T22:13:20"},
            {"cpu": "cpu1", "host": "web1", "usage_idle": 88.0, "usage_user": 9.5, "time": "2023-11-14T22:13:20"}
        ])
    );
    assert_eq!(
        sql(
            &server,
            "telegraf",
            "SELECT host, used FROM mem ORDER BY host"
        )
        .await,
        json!([{"host": "web1", "used": 12345}, {"host": "web2", "used": 1}])
    );
}

/// A batch over `--max-request-bytes` is 413; Telegraf halves it until each
/// part fits, and every metric lands exactly once.
#[tokio::test]
async fn a_413_batch_split_as_telegraf_does_lands_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--snapshot-interval", "1h", "--max-request-bytes", "2048"],
    );
    // Values that do not compress away, so the gzip body is several KB.
    let lines: Vec<String> = (0..400u64)
        .map(|i| {
            let noise = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
            format!(
                "disk,host=h{},path=/p{noise} free={noise}i {}\n",
                i % 7,
                1_700_000_000_000_000_000u64 + i
            )
        })
        .collect();
    assert!(gzip(lines.concat().as_bytes()).len() > 2048 * 2);
    let statuses = telegraf_send(&server, "split", &lines).await;
    assert!(statuses.len() > 2, "the batch was split: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 204), "{statuses:?}");
    let expected: u64 = lines
        .iter()
        .map(|l| {
            let free = l.split("free=").nth(1).unwrap();
            free.split('i').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(
        sql(
            &server,
            "split",
            "SELECT count(*) AS n, sum(free) AS s FROM disk"
        )
        .await,
        json!([{"n": 400, "s": expected}])
    );
}
