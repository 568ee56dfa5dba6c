//! Every row of the v2 write contract (InfluxDB Clustered's `/api/v2/write`
//! as its documentation gives it), against the real binary.

use std::time::Duration;

use serde_json::json;

use crate::harness::{
    ADMIN_TOKEN, Server, assert_no_table, create_token, files_under, gzip, parquet_rows, request,
    row, table_columns, write,
};

const SEED_LINE: &str = "home,room=kitchen temp=72 1641024000";

/// InfluxDB Clustered's documented curl examples, verbatim but for the host: `--request post` in
/// lower case, Bearer and Token. The 204 comes only once the WAL segment is on
/// disk; after shutdown the point is in Parquet and the WAL is gone.
#[tokio::test]
async fn seed_curl_examples_are_durable_then_in_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    for scheme in ["Bearer", "Token"] {
        let out = std::process::Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--write-out",
                "%{http_code}",
                "--request",
                "post",
            ])
            .arg(server.url("/api/v2/write?bucket=DATABASE_NAME&precision=s"))
            .args([
                "--header",
                &format!("Authorization: {scheme} {ADMIN_TOKEN}"),
            ])
            .args(["--data-binary", SEED_LINE])
            .output()
            .expect("curl runs");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "204",
            "{scheme}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Durable before the 204: the segment is a file on disk right now.
        let wal = files_under(dir.path(), "/wal/");
        assert!(!wal.is_empty(), "no WAL segment on disk after the 204");
    }
    assert!(
        parquet_rows(dir.path(), "DATABASE_NAME", "home")
            .await
            .is_empty(),
        "no snapshot yet"
    );
    assert!(server.stop().success());

    assert!(
        files_under(dir.path(), "/wal/").is_empty(),
        "covered WAL segments are deleted"
    );
    let rows = parquet_rows(dir.path(), "DATABASE_NAME", "home").await;
    // The same point written twice is one point.
    assert_eq!(
        rows,
        vec![row(&[
            ("room", "kitchen"),
            ("temp", "72.0"),
            ("time", "1641024000000000000")
        ])]
    );
    assert_eq!(files_under(dir.path(), ".parquet").len(), 1);
}

#[tokio::test]
async fn seed_error_examples_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let r = write(&server, "precision=s", ADMIN_TOKEN, SEED_LINE).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"code": "invalid", "message": "missing bucket value"})
    );
    let r = write(&server, "bucket=&precision=s", ADMIN_TOKEN, SEED_LINE).await;
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"code": "invalid", "message": "missing bucket value"})
        )
    );

    let r = write(&server, "bucket=db&precision=u", ADMIN_TOKEN, SEED_LINE).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"code": "invalid", "message": "failed to deserialize org/bucket/precision in request: unknown variant `u`, expected one of `s`, `ms`, `us`, `ns`"})
    );
    assert_eq!(r.headers["content-type"], "application/json");
}

#[tokio::test]
async fn authentication_and_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let url = server.url("/api/v2/write?bucket=db");
    let unauthorized = json!({"code": "unauthorized", "message": "unauthorized access"});
    for auth in [
        None,
        Some("Token nope"),
        Some("Bearer nope"),
        Some("Basic dXNlcjpwYXNz"),
        Some("Token"),
        Some("Token "),
        Some(ADMIN_TOKEN),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let r = request("POST", &url, &headers, SEED_LINE).await;
        assert_eq!(
            (r.status, r.json()),
            (401, unauthorized.clone()),
            "auth {auth:?}"
        );
    }

    // Tokens made by the CLI while the server runs work without a restart.
    let writer = create_token(dir.path(), "db", "write");
    let reader = create_token(dir.path(), "db", "read");
    assert!(writer.starts_with("inflow_") && writer != reader);
    let r = write(&server, "bucket=db&precision=s", &writer, SEED_LINE).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = request(
        "POST",
        &url,
        &[("authorization", &format!("Bearer {writer}"))],
        SEED_LINE,
    )
    .await;
    assert_eq!(r.status, 204, "Bearer and Token are equivalent");

    let r = write(&server, "bucket=db", &reader, SEED_LINE).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["code"], "forbidden");
    let r = write(&server, "bucket=other", &writer, SEED_LINE).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json(),
        json!({"code": "forbidden", "message": "token does not have write permission on database \"other\""})
    );
    // Credentials are checked before anything else.
    let r = request("POST", &server.url("/api/v2/write?precision=u"), &[], "").await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn org_is_ignored_empty_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for query in [
        "bucket=db&org=anything&orgID=123",
        "bucket=db&org=",
        "org=&bucket=db",
    ] {
        let r = write(&server, query, ADMIN_TOKEN, SEED_LINE).await;
        assert_eq!(
            r.status,
            204,
            "{query}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

#[tokio::test]
async fn all_six_precisions_scale_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let cases = [
        ("ns", 1i64),
        ("us", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    for (p, _) in cases {
        let r = write(
            &server,
            &format!("bucket=db&precision={p}"),
            ADMIN_TOKEN,
            format!("prec,p={p} v=1i 2"),
        )
        .await;
        assert_eq!(r.status, 204, "{p}");
    }
    // Default is ns.
    assert_eq!(
        write(&server, "bucket=db", ADMIN_TOKEN, "prec,p=default v=1i 5")
            .await
            .status,
        204
    );
    // Overflow for the precision is a bad line, not a wrap.
    let r = write(
        &server,
        "bucket=db&precision=h",
        ADMIN_TOKEN,
        "prec,p=big v=1i 9223372036854775807",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["line"], 1);
    assert!(server.stop().success());
    let mut rows = parquet_rows(dir.path(), "db", "prec").await;
    rows.sort_by_key(|r| r["time"].parse::<i64>().unwrap());
    let mut expected: Vec<_> = cases
        .iter()
        .map(|(p, m)| row(&[("p", p), ("v", "1"), ("time", &(2 * m).to_string())]))
        .collect();
    expected.insert(0, row(&[("p", "default"), ("v", "1"), ("time", "5")]));
    expected.sort_by_key(|r| r["time"].parse::<i64>().unwrap());
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn gzip_identity_and_unknown_encodings() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let url = server.url("/api/v2/write?bucket=db&precision=s");
    let auth = ("authorization", "Token test-admin-token");

    let r = request(
        "POST",
        &url,
        &[auth, ("content-encoding", "gzip")],
        gzip(b"enc,k=gzip v=1i 1\n"),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let mut two = gzip(b"enc,k=member1 v=1i 1\n");
    two.extend(gzip(b"enc,k=member2 v=2i 1\n"));
    let r = request("POST", &url, &[auth, ("content-encoding", "gzip")], two).await;
    assert_eq!(r.status, 204, "multi-member gzip");
    let r = request(
        "POST",
        &url,
        &[auth, ("content-encoding", "identity")],
        "enc,k=identity v=1i 1",
    )
    .await;
    assert_eq!(r.status, 204);

    let r = request(
        "POST",
        &url,
        &[auth, ("content-encoding", "br")],
        "enc v=1i",
    )
    .await;
    assert_eq!(r.status, 415);
    assert_eq!(
        r.json(),
        json!({"code": "unsupported media type", "message": "unsupported Content-Encoding \"br\": use gzip or identity"})
    );

    let whole = gzip(b"enc,k=trunc v=1i 1\n");
    for (what, body) in [
        ("corrupt", b"definitely not gzip".to_vec()),
        ("truncated", whole[..whole.len() - 8].to_vec()),
    ] {
        let r = request("POST", &url, &[auth, ("content-encoding", "gzip")], body).await;
        assert_eq!(r.status, 400, "{what}");
        assert_eq!(r.json()["code"], "invalid");
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .starts_with("invalid gzip request body"),
            "{what}: {}",
            r.json()
        );
    }
    assert!(server.stop().success());
    let mut keys: Vec<String> = parquet_rows(dir.path(), "db", "enc")
        .await
        .into_iter()
        .map(|r| r["k"].clone())
        .collect();
    keys.sort();
    assert_eq!(keys, ["gzip", "identity", "member1", "member2"]);
}

#[tokio::test]
async fn body_limits_answer_413_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--max-request-bytes",
            "1000",
            "--max-decompressed-bytes",
            "2000",
        ],
    );
    let url = server.url("/api/v2/write?bucket=db");
    let auth = ("authorization", "Token test-admin-token");
    let big: String = (0..200).map(|i| format!("big,n={i} v=1i {i}\n")).collect();
    assert!(big.len() > 2000);

    let r = request("POST", &url, &[auth], big.clone()).await;
    assert_eq!(r.status, 413);
    assert_eq!(
        r.json(),
        json!({"code": "request too large", "message": "request body too large: it exceeds the limit of 1000 bytes (--max-request-bytes)"})
    );
    // Same body through curl, which streams it: the client gets the 413.
    let out = std::process::Command::new("curl")
        .args([
            "--silent",
            "--write-out",
            "\n%{http_code}",
            "--header",
            "Authorization: Token test-admin-token",
        ])
        .args([
            "--header",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &big,
        ])
        .arg(&url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n413"), "{text}");

    // Small on the wire, too large once inflated.
    let bomb = gzip("big,n=1 v=1i 1\n".repeat(300).as_bytes());
    assert!(bomb.len() < 1000);
    let r = request("POST", &url, &[auth, ("content-encoding", "gzip")], bomb).await;
    assert_eq!(r.status, 413);
    assert_eq!(
        r.json()["message"],
        "decompressed request body too large: it exceeds the limit of 2000 bytes (--max-decompressed-bytes)"
    );
    assert!(server.stop().success());
    // Refused whole: not even the table was made.
    assert_no_table(dir.path(), "db", "big").await;
}

#[tokio::test]
async fn bad_lines_are_named_and_good_lines_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let body = "# a comment\nm,t=a f=1i 1\n\nm,t=b f=oops 2\nm,t=c f=3i 3\r\nm,t=d 4\n";
    let r = write(&server, "bucket=db", ADMIN_TOKEN, body).await;
    assert_eq!(r.status, 400);
    let j = r.json();
    assert_eq!(j["code"], "invalid");
    assert_eq!(j["line"], 4, "line numbers count comment and blank lines");
    let message = j["message"].as_str().unwrap();
    assert!(message.contains("line 4, column"), "{message}");
    assert!(message.contains("line 6, column"), "{message}");

    for (body, what) in [("", "empty"), ("# only\n\n# comments\n", "comments")] {
        let r = write(&server, "bucket=db", ADMIN_TOKEN, body).await;
        assert_eq!(
            (r.status, r.json()),
            (
                400,
                json!({"code": "invalid", "message": "no line protocol in request body"})
            ),
            "{what}"
        );
    }

    // A field whose type differs from the table's names line, column and both types.
    let r = write(
        &server,
        "bucket=db",
        ADMIN_TOKEN,
        "m,t=e f=1i 5\nm,t=f f=2.5 6\n",
    )
    .await;
    assert_eq!(r.status, 400);
    let j = r.json();
    assert_eq!(j["line"], 2);
    let message = j["message"].as_str().unwrap();
    assert!(
        message.contains("line 2, column")
            && message.contains("float")
            && message.contains("integer"),
        "{message}"
    );

    assert!(server.stop().success());
    let mut tags: Vec<String> = parquet_rows(dir.path(), "db", "m")
        .await
        .into_iter()
        .map(|r| r["t"].clone())
        .collect();
    tags.sort();
    assert_eq!(tags, ["a", "c", "e"]);
}

#[tokio::test]
async fn request_ids_health_ping_and_json_errors_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let r = request(
        "GET",
        &server.url("/health"),
        &[("x-request-id", "abc-123")],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-request-id"], "abc-123");
    assert_eq!(r.json()["status"], "pass");
    assert_eq!(r.json()["name"], "inflow");

    let r = request("GET", &server.url("/ready"), &[], "").await;
    assert_eq!((r.status, r.json()), (200, json!({"status": "ready"})));

    let r = request("GET", &server.url("/ping"), &[], "").await;
    assert_eq!(r.status, 204);
    assert!(r.headers.contains_key("x-influxdb-version"));
    assert!(
        !r.headers["x-request-id"].is_empty(),
        "generated when the client sent none"
    );

    let r = request("GET", &server.url("/nope"), &[], "").await;
    assert_eq!(
        (r.status, r.json()),
        (
            404,
            json!({"code": "not found", "message": "path not found"})
        )
    );
    let r = request("GET", &server.url("/api/v2/write"), &[], "").await;
    assert_eq!(
        (r.status, r.json()),
        (
            405,
            json!({"code": "method not allowed", "message": "method not allowed"})
        )
    );
}

/// Without INFLOW_ADMIN_TOKEN the operator token is generated once into a 0600
/// file, the start-up message says where, and it is never printed itself.
#[tokio::test]
async fn generated_admin_token_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(dir.path(), &[], &[]);
    let path = dir.path().join("admin-token");
    let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let said = server.stdout_lines.join("\n");
    assert!(said.contains(&path.display().to_string()), "{said}");
    assert!(!said.contains(&token));
    assert_eq!(
        write(&server, "bucket=db", &token, SEED_LINE).await.status,
        204
    );
    assert!(server.stop().success());
    let again = Server::start_with_env(dir.path(), &[], &[]);
    assert_eq!(
        write(&again, "bucket=db", &token, SEED_LINE).await.status,
        204,
        "same token after restart"
    );
}

/// Overload: when the ingester's buffer is full the write is refused, and the
/// client gets 503 with `Retry-After` (what Telegraf retries on), never a 500.
/// Right after such a refusal the edge sheds writes before decoding them (a
/// corrupt gzip body is a 503, not a 400); a moment later it decodes again.
#[tokio::test]
async fn full_ingester_buffer_is_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--buffer-bytes", "1"]);
    let r = write(&server, "bucket=db", ADMIN_TOKEN, SEED_LINE).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["retry-after"], "1");
    let j = r.json();
    assert_eq!(j["code"], "unavailable");
    assert!(
        j["message"].as_str().unwrap().contains("buffer is full"),
        "{j}"
    );

    let url = server.url("/api/v2/write?bucket=db");
    let auth = format!("Token {ADMIN_TOKEN}");
    let corrupt = || async {
        let headers = [
            ("authorization", auth.as_str()),
            ("content-encoding", "gzip"),
        ];
        request("POST", &url, &headers, &b"not gzip"[..]).await
    };
    // The shed lasts 100 ms after a refusal: on a loaded machine the corrupt
    // body may come later, so each try refreshes the refusal first.
    let mut shed = None;
    for _ in 0..5 {
        assert_eq!(
            write(&server, "bucket=db", ADMIN_TOKEN, SEED_LINE)
                .await
                .status,
            503
        );
        let r = corrupt().await;
        if r.status != 400 {
            shed = Some(r);
            break;
        }
    }
    let r = shed.expect("a corrupt body right after a refusal is shed, not decoded");
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.headers["retry-after"], "1");
    let message = r.json()["message"].as_str().unwrap().to_string();
    assert!(message.contains("shed before decoding"), "{message}");

    // Deliberately letting time pass: the shed is over 100 ms after the
    // last refusal, whatever else happens.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = corrupt().await;
    assert_eq!(
        r.status, 400,
        "decoded again once the refusal is old: {:?}",
        r.body
    );
}

/// Each limit is a flag and gives a clear 4xx naming the line: quotas name
/// the limit and the count, a too-long line its length limit.
#[tokio::test]
async fn table_column_and_line_limits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--max-tables-per-database",
            "2",
            "--max-columns-per-table",
            "3",
            "--max-line-bytes",
            "40",
            "--max-tag-bytes",
            "8",
            "--max-string-bytes",
            "4",
        ],
    );
    let w = |body: String| write(&server, "bucket=db", ADMIN_TOKEN, body);
    assert_eq!(w("a,t=x f=1i 1".into()).await.status, 204);
    assert_eq!(w("b f=1i 1".into()).await.status, 204);
    // Quotas are checked per line, with what the database has: the line is
    // named, and it adds nothing (a later write within quota still fits).
    let r = w("c f=1i 1".into()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"code": "invalid", "line": 1, "message": "failed to parse line protocol: errors encountered on line(s):\nline 1, column 1: table \"c\" would exceed the database's limit of 2 tables (it has 2)\n    c f=1i 1\n    ^"})
    );
    // `a` has t, f and time: a fourth column is refused.
    let r = w("a,t=x f=2i 2\na,t=x g=1i 2".into()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["line"], 2);
    assert_eq!(
        r.json()["message"],
        "failed to parse line protocol: errors encountered on line(s):\nline 2, column 7: column \"g\" would exceed the limit of 3 columns of table \"a\" (it has 3, time included)\n    a,t=x g=1i 2\n          ^"
    );

    let long = format!("a,t={} f=2i 3", "x".repeat(50));
    let r = w(format!("a,t=y f=3i 4\n{long}\n")).await;
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"code": "invalid", "line": 2, "message": format!("failed to parse line protocol: errors encountered on line(s):\nline 2, column 41: line is longer than 40 bytes\n    {long}\n                                            ^")})
        )
    );

    // Tag and string lengths, each a bad line named with its number, its
    // length and the limit (the echoed line holds digits too, so the whole
    // message is compared).
    let r = w("a,t=123456789 f=4i 5\na,t=z f=5i 6\n".into()).await;
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"code": "invalid", "line": 1, "message": "failed to parse line protocol: errors encountered on line(s):\nline 1, column 5: value of tag \"t\" is 9 bytes, over the limit of 8 (max_tag_bytes)\n    a,t=123456789 f=4i 5\n        ^"})
        )
    );
    let r = w("b f=1i,s=\"12345\" 7\n".into()).await;
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"code": "invalid", "line": 1, "message": "failed to parse line protocol: errors encountered on line(s):\nline 1, column 10: string value of field \"s\" is 5 bytes, over the limit of 4 (max_string_bytes)\n    b f=1i,s=\"12345\" 7\n             ^"})
        )
    );

    // The refused table and column added nothing: a later write to what
    // exists still fits.
    assert_eq!(w("a,t=x f=9i 9\nb f=9i 9".into()).await.status, 204);
    assert!(server.stop().success());

    // Read back: every good line of the partial writes, nothing refused.
    let mut rows = parquet_rows(dir.path(), "db", "a").await;
    rows.sort_by_key(|r| r["time"].parse::<i64>().unwrap());
    assert_eq!(
        rows,
        vec![
            row(&[("t", "x"), ("f", "1"), ("time", "1")]),
            row(&[("t", "x"), ("f", "2"), ("time", "2")]),
            row(&[("t", "y"), ("f", "3"), ("time", "4")]),
            row(&[("t", "z"), ("f", "5"), ("time", "6")]),
            row(&[("t", "x"), ("f", "9"), ("time", "9")]),
        ]
    );
    let mut rows = parquet_rows(dir.path(), "db", "b").await;
    rows.sort_by_key(|r| r["time"].parse::<i64>().unwrap());
    assert_eq!(
        rows,
        vec![
            row(&[("f", "1"), ("time", "1")]),
            row(&[("f", "9"), ("time", "9")]),
        ]
    );
    assert_no_table(dir.path(), "db", "c").await;
    assert_eq!(
        table_columns(dir.path(), "db", "a").await,
        ["f", "t", "time"]
    );
    assert_eq!(table_columns(dir.path(), "db", "b").await, ["f", "time"]);
}

/// Every endpoint that takes a body reads it through the edge's body reader:
/// past `--max-request-bytes` the answer is the JSON 413 in the endpoint's
/// own shape (v3 `{"error"}` for SQL and admin, v1 `{"error"}` for
/// InfluxQL), never axum's plain-text rejection, and the server answers the
/// next request.
#[tokio::test]
async fn every_body_past_the_limit_is_a_json_413() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-request-bytes", "4096"]);
    let auth = ("authorization", "Bearer test-admin-token");
    // Past the limit, yet small enough that the client has sent all of it
    // before the 413 (which closes the connection) comes back; axum's own
    // 2 MiB default took such a body and answered 400 or 200.
    let too_big = "x".repeat(16 << 10);
    let message =
        "request body too large: it exceeds the limit of 4096 bytes (--max-request-bytes)";
    let cases = [
        ("/api/v3/query_sql", "application/json"),
        ("/query", "application/x-www-form-urlencoded"),
        ("/api/v3/configure/database", "application/json"),
        ("/api/v3/configure/token", "application/json"),
    ];
    for (path, content_type) in cases {
        let r = request(
            "POST",
            &server.url(path),
            &[auth, ("content-type", content_type)],
            too_big.clone(),
        )
        .await;
        assert_eq!(r.status, 413, "{path}: {:?}", r.body);
        assert_eq!(r.json(), json!({ "error": message }), "{path}");
    }
    // Under the limit, the same endpoints answer as usual.
    let r = request(
        "POST",
        &server.url("/api/v3/configure/database"),
        &[auth, ("content-type", "application/json")],
        r#"{"db":"small"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// A measurement, tag key, tag value or field key that ends in a backslash
/// once unescaped is refused by line on all three write endpoints, as
/// InfluxDB 3 refuses it (`EndsWithBackslash`); the good lines are written.
/// Before, `t=bad\\` was stored as the value `bad\`.
#[tokio::test]
async fn names_ending_in_a_backslash_are_refused_on_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let auth = ("authorization", "Token test-admin-token");
    let message = "Measurements, tag keys and values, and field keys may not end with a backslash";
    let body = "m,t=ok f=1 1\nm,t=bad\\\\ f=2 2\nm\\\\,t=x f=3 3\nm f\\\\=4 4";
    for (path, db) in [
        ("/api/v2/write?bucket=v2&precision=ns", "v2"),
        ("/write?db=v1&precision=ns", "v1"),
        ("/api/v3/write_lp?db=v3&precision=nanosecond", "v3"),
    ] {
        let r = request("POST", &server.url(path), &[auth], body).await;
        assert_eq!(r.status, 400, "{path}: {:?}", r.body);
        let text = String::from_utf8_lossy(&r.body);
        assert!(text.contains(message), "{path}: {text}");
        let q = server.url(&format!(
            "/api/v3/query_sql?db={db}&format=json&q=SELECT%20t%2C%20f%20FROM%20m"
        ));
        let rows = request("GET", &q, &[auth], "").await;
        assert_eq!(rows.status, 200, "{db}: {:?}", rows.body);
        assert_eq!(rows.json(), json!([{"t": "ok", "f": 1.0}]), "{db}");
    }
}

/// Every response carries `X-Influxdb-Version` (as InfluxDB 1.x sends it, and
/// as v1 clients and Chronograf read it) and the request id as both
/// `X-Request-Id` and `Request-Id`: the client's, echoed, or a new one.
#[tokio::test]
async fn every_response_names_the_version_and_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    const AUTH: &[(&str, &str)] = &[("authorization", "Token test-admin-token")];
    type Case = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
        u16,
    );
    let cases: [Case; 5] = [
        ("POST", "/api/v2/write?bucket=db", AUTH, "m f=1", 204),
        ("POST", "/api/v2/write?bucket=db", AUTH, "m f=", 400),
        ("GET", "/query?db=db&q=SHOW%20MEASUREMENTS", AUTH, "", 200),
        ("GET", "/api/v3/configure/database", &[], "", 401),
        ("GET", "/nowhere", &[], "", 404),
    ];
    for (method, path, headers, body, status) in cases {
        let r = request(method, &server.url(path), headers, body).await;
        assert_eq!(r.status, status, "{path}: {:?}", r.body);
        assert_eq!(
            r.headers["x-influxdb-version"],
            env!("CARGO_PKG_VERSION"),
            "{path}"
        );
        assert!(!r.headers["x-request-id"].is_empty(), "{path}");
        assert_eq!(r.headers["request-id"], r.headers["x-request-id"], "{path}");
        let mut sent = headers.to_vec();
        sent.push(("x-request-id", "abc-123"));
        let r = request(method, &server.url(path), &sent, body).await;
        assert_eq!(
            (&r.headers["x-request-id"], &r.headers["request-id"]),
            (&"abc-123".parse().unwrap(), &"abc-123".parse().unwrap()),
            "{path}"
        );
    }
}
