//! Statements built to exhaust the server's stack: long `OR` and `+` chains,
//! in InfluxQL and in SQL. Each must be a 400 that names the depth limit, and
//! the server must stay up and writable afterwards.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::harness::{ADMIN_TOKEN, Server, write};
use crate::query::{query, query_rows};

/// The limit both languages report (`influxql::parser::MAX_EXPR_DEPTH`,
/// `query::MAX_SQL_EXPR_DEPTH`).
const LIMIT: &str = "256";

/// One request; a transport error (the server died mid-request) is returned,
/// not panicked on, so the test can say what happened.
async fn send(
    method: &str,
    url: &str,
    content_type: &str,
    body: String,
) -> Result<(u16, serde_json::Value), String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let auth = format!("Token {ADMIN_TOKEN}");
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", auth)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{e:?}"))?
        .to_bytes();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into()));
    Ok((status, json))
}

/// Asserts a 400 whose `error` names the depth limit.
fn assert_refused(what: &str, answer: Result<(u16, serde_json::Value), String>) {
    let (status, body) =
        answer.unwrap_or_else(|e| panic!("{what}: no answer, the server went down: {e}"));
    let error = body["error"].as_str().unwrap_or_default();
    assert_eq!(status, 400, "{what}: {body}");
    assert!(
        error.contains("nested too deeply") && error.contains(LIMIT),
        "{what}: {error}"
    );
}

fn chain(first: &str, op: &str, term: &str, terms: usize) -> String {
    let mut s = String::with_capacity(terms * (op.len() + term.len()) + first.len());
    s.push_str(first);
    s.push_str(term);
    for _ in 1..terms {
        s.push_str(op);
        s.push_str(term);
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_expressions_are_a_400_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let r = write(&s, "bucket=db&precision=s", ADMIN_TOKEN, "m v=1 1").await;
    assert_eq!(r.status, 204);

    let or_chain = chain("SELECT v FROM m WHERE ", " OR ", "v=1", 100_000);
    let plus_chain = chain("SELECT ", "+", "1", 50_000);

    // InfluxQL, as a POST form (Grafana's way) and in the query string.
    let form = serde_urlencoded::to_string([("db", "db"), ("q", or_chain.as_str())]).unwrap();
    let answer = send(
        "POST",
        &s.url("/query"),
        "application/x-www-form-urlencoded",
        form,
    )
    .await;
    assert_refused("InfluxQL OR chain", answer);
    let form = serde_urlencoded::to_string([("db", "db"), ("q", plus_chain.as_str())]).unwrap();
    let answer = send(
        "POST",
        &s.url("/query"),
        "application/x-www-form-urlencoded",
        form,
    )
    .await;
    assert_refused("InfluxQL + chain", answer);

    // SQL over HTTP, with the same statements.
    for (what, sql) in [("SQL OR chain", &or_chain), ("SQL + chain", &plus_chain)] {
        let body = serde_json::json!({"db": "db", "q": sql}).to_string();
        let answer = send(
            "POST",
            &s.url("/api/v3/query_sql"),
            "application/json",
            body,
        )
        .await;
        assert_refused(what, answer);
    }
    // And over the Flight ticket: INVALID_ARGUMENT naming the limit.
    for sql in [&or_chain, &plus_chain] {
        let status = query(&s.base, Some(ADMIN_TOKEN), "db", sql)
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("nested too deeply") && status.message().contains(LIMIT),
            "{status:?}"
        );
    }

    // Chains at the limit still answer (the server's threads have the stack
    // for them), in both languages.
    let field = chain("SELECT ", "+", "v", 257);
    let at_limit = format!("{field} FROM m WHERE {}", chain("", " OR ", "v=1", 256));
    let form = serde_urlencoded::to_string([("db", "db"), ("q", at_limit.as_str())]).unwrap();
    let (status, json) = send(
        "POST",
        &s.url("/query"),
        "application/x-www-form-urlencoded",
        form,
    )
    .await
    .expect("answer");
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        json["results"][0]["series"][0]["values"][0][1], 257.0,
        "{json}"
    );
    // SQL's bound counts keywords too: SELECT, AS and FROM leave 253 `+`,
    // and SELECT, FROM, WHERE and 127 `=` leave 126 `OR`.
    let sum = chain("SELECT ", "+", "v", 254) + " AS s FROM m";
    let or = chain("SELECT v FROM m WHERE ", " OR ", "v=1", 127);
    for (sql, column, want) in [(sum, "s", 254.0), (or, "v", 1.0)] {
        let body = serde_json::json!({"db": "db", "q": sql}).to_string();
        let (status, json) = send(
            "POST",
            &s.url("/api/v3/query_sql"),
            "application/json",
            body,
        )
        .await
        .expect("answer");
        assert_eq!(status, 200, "{json}");
        assert_eq!(json, serde_json::json!([{ column: want }]));
    }

    // The server is up: a write is acknowledged and read back.
    let r = write(&s, "bucket=db&precision=s", ADMIN_TOKEN, "m v=2 2").await;
    assert_eq!(r.status, 204);
    let rows = query_rows(&s.base, "db", "SELECT v FROM m ORDER BY time").await;
    let values: Vec<&str> = rows.iter().map(|r| r["v"].as_str()).collect();
    assert_eq!(values, ["1.0", "2.0"]);
    assert!(s.stop().success());
}
