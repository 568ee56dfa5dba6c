//! The v1 `/write` and InfluxDB 3 `/api/v3/write_lp` endpoints: same pipeline,
//! their own parameters and error shapes (snapshot-tested: clients parse them).

use base64::Engine;
use serde_json::json;

use crate::harness::{ADMIN_TOKEN, Server, parquet_rows, request, row, write};

/// (path and query, headers, body)
type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'static str);

const BAD_BODY: &str = "m,t=a f=1i 1\nm,t=b f=oops 2\n";

#[tokio::test]
async fn v1_write_accepts_every_credential_form_and_maps_rp() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("telegraf:{ADMIN_TOKEN}"))
    );
    let token = format!("Token {ADMIN_TOKEN}");
    let cases: [Case<'_>; 4] = [
        (
            "/write?db=tg&precision=s".into(),
            vec![("authorization", token.as_str())],
            "cpu,via=token v=1i 1",
        ),
        (
            "/write?db=tg&precision=s".into(),
            vec![("authorization", basic.as_str())],
            "cpu,via=basic v=1i 1",
        ),
        (
            format!("/write?db=tg&precision=s&u=x&p={ADMIN_TOKEN}"),
            vec![],
            "cpu,via=query v=1i 1",
        ),
        (
            "/write?db=tg&rp=weekly&precision=n".into(),
            vec![("authorization", token.as_str())],
            "cpu,via=rp v=1i 1000000000",
        ),
    ];
    for (path, headers, body) in cases.iter() {
        let r = request("POST", &server.url(path), headers, *body).await;
        assert_eq!(r.status, 204, "{path}: {:?}", r.body);
    }
    let r = request("POST", &server.url("/write?db=tg"), &[], "cpu v=1i").await;
    assert_eq!(
        (r.status, r.json()),
        (401, json!({"error": "unauthorized access"}))
    );
    let r = request(
        "POST",
        &server.url("/write?precision=s"),
        &[("authorization", &token)],
        "cpu v=1i",
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"error": "database is required: set the db query parameter"})
        )
    );
    let r = request(
        "POST",
        &server.url("/write?db=tg&precision=x"),
        &[("authorization", &token)],
        "cpu v=1i",
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"error": "invalid precision \"x\": use n, ns, u, us, ms, s, m or h"})
        )
    );
    // Partial write: the good line lands, the answer names the bad one, v1 shape.
    let r = request(
        "POST",
        &server.url("/write?db=tg"),
        &[("authorization", &token)],
        BAD_BODY,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": "failed to parse line protocol: errors encountered on line(s):\nline 2, column 9: invalid field value \"oops\" for field \"f\"\n    m,t=b f=oops 2\n            ^"})
    );
    assert!(server.stop().success());

    let mut via: Vec<String> = parquet_rows(dir.path(), "tg", "cpu")
        .await
        .into_iter()
        .map(|r| r["via"].clone())
        .collect();
    via.sort();
    assert_eq!(via, ["basic", "query", "token"]);
    assert_eq!(
        parquet_rows(dir.path(), "tg/weekly", "cpu").await,
        vec![row(&[("via", "rp"), ("v", "1"), ("time", "1000000000")])]
    );
    assert_eq!(
        parquet_rows(dir.path(), "tg", "m").await,
        vec![row(&[("t", "a"), ("f", "1"), ("time", "1")])]
    );
}

#[tokio::test]
async fn v3_write_lp_partial_all_or_nothing_auto_precision_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let post = |query: &str, body: &'static str| {
        let url = server.url(&format!("/api/v3/write_lp?{query}"));
        let auth = auth.clone();
        async move { request("POST", &url, &[("authorization", &auth)], body).await }
    };
    // auto: seconds, milliseconds and nanoseconds guessed from the magnitude.
    let r = post("db=v3", "auto,u=s v=1i 1641024000\nauto,u=ms v=2i 1641024000123\nauto,u=ns v=3i 1641024000123456789\n").await;
    assert_eq!(r.status, 204, "{:?}", r.body);

    let r = post("db=v3&accept_partial=false", BAD_BODY).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": "parsing failed for write_lp endpoint", "data": [
            {"original_line": "m,t=b f=oops 2", "line_number": 2, "error_message": "column 9: invalid field value \"oops\" for field \"f\""}
        ]})
    );
    let r = post("db=v3", BAD_BODY).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "partial write of line protocol occurred");
    assert_eq!(r.json()["data"][0]["line_number"], 2);

    let r = post("db=v3&precision=s", "x v=1i").await;
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"error": "invalid precision \"s\": use auto, nanosecond, microsecond, millisecond or second"})
        )
    );
    let r = post("db=v3&no_sync=true&precision=second", "nosync v=1i 5").await;
    assert_eq!(r.status, 204);
    assert!(server.stop().success());

    let mut rows = parquet_rows(dir.path(), "v3", "auto").await;
    rows.sort_by(|a, b| a["v"].cmp(&b["v"]));
    let times: Vec<&str> = rows.iter().map(|r| r["time"].as_str()).collect();
    assert_eq!(
        times,
        [
            "1641024000000000000",
            "1641024000123000000",
            "1641024000123456789"
        ]
    );
    // accept_partial=false wrote nothing; the default wrote the good line once
    // (its timestamp 1 read as seconds by precision=auto).
    assert_eq!(
        parquet_rows(dir.path(), "v3", "m").await,
        vec![row(&[("t", "a"), ("f", "1"), ("time", "1000000000")])]
    );
    assert_eq!(
        parquet_rows(dir.path(), "v3", "nosync").await.len(),
        1,
        "no_sync writes still land"
    );
}

/// `dry_run=true` answers as the write would, and writes nothing.
#[tokio::test]
async fn dry_run_checks_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    assert_eq!(
        write(&server, "bucket=dry", ADMIN_TOKEN, "t f=1i 1")
            .await
            .status,
        204
    );
    let r = write(&server, "bucket=dry&dry_run=true", ADMIN_TOKEN, "t f=2i 2").await;
    assert_eq!(r.status, 204);
    let r = write(&server, "bucket=dry&dry_run=true", ADMIN_TOKEN, "t f=2.5 3").await;
    assert_eq!(r.status, 400, "a type conflict is found without writing");
    assert!(r.json()["message"].as_str().unwrap().contains("integer"));
    let r = write(&server, "bucket=dry&dry_run=true", ADMIN_TOKEN, "t g=1i 4").await;
    assert_eq!(r.status, 204);
    // The same on v1 and v3.
    let auth = format!("Token {ADMIN_TOKEN}");
    let r = request(
        "POST",
        &server.url("/write?db=dry&dry_run=true"),
        &[("authorization", &auth)],
        "t f=9i 9",
    )
    .await;
    assert_eq!(r.status, 204);
    let r = request(
        "POST",
        &server.url("/api/v3/write_lp?db=dry&dry_run=true"),
        &[("authorization", &auth)],
        "t f=9.5 9",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "parsing failed for write_lp endpoint");
    assert!(server.stop().success());
    assert_eq!(
        parquet_rows(dir.path(), "dry", "t").await,
        vec![row(&[("f", "1"), ("time", "1")])]
    );
}
