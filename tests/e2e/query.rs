//! Reading back what was written: SQL over the InfluxDB 3 Flight ticket (the
//! path `influxdb3-python` takes) and Flight SQL, against the real binary.

use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch, TimestampNanosecondArray};
use arrow::util::display::array_value_to_string;
use arrow_flight::Ticket;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use futures::TryStreamExt;
use tonic::transport::Endpoint;

use crate::harness::{ADMIN_TOKEN, Row, Server, create_token, files_under, row, write};

/// Runs `sql` with the InfluxDB 3 JSON ticket, as influxdb3-python does.
pub async fn query(
    base: &str,
    token: Option<&str>,
    database: &str,
    sql: &str,
) -> Result<Vec<RecordBatch>, tonic::Status> {
    let ticket = serde_json::json!({
        "database": database,
        "sql_query": sql,
        "query_type": "sql",
    });
    query_ticket(base, token, ticket.to_string().into_bytes()).await
}

pub async fn query_ticket(
    base: &str,
    token: Option<&str>,
    ticket: Vec<u8>,
) -> Result<Vec<RecordBatch>, tonic::Status> {
    let channel = Endpoint::from_shared(base.to_string())
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut client = FlightServiceClient::new(channel);
    let mut request = tonic::Request::new(Ticket::new(ticket));
    if let Some(t) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let stream = client.do_get(request).await?.into_inner();
    FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from))
        .try_collect()
        .await
        .map_err(|e| match e {
            FlightError::Tonic(s) => *s,
            other => tonic::Status::internal(other.to_string()),
        })
}

/// Rows as column → value (nulls left out); `time` as nanoseconds.
pub fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for batch in batches {
        for r in 0..batch.num_rows() {
            let mut row = Row::new();
            for (i, field) in batch.schema().fields().iter().enumerate() {
                let col = batch.column(i);
                if col.is_null(r) {
                    continue;
                }
                let v = match col.as_any().downcast_ref::<TimestampNanosecondArray>() {
                    Some(t) => t.value(r).to_string(),
                    None => array_value_to_string(col, r).unwrap(),
                };
                row.insert(field.name().clone(), v);
            }
            out.push(row);
        }
    }
    out
}

pub async fn query_rows(base: &str, database: &str, sql: &str) -> Vec<Row> {
    let batches = query(base, Some(ADMIN_TOKEN), database, sql)
        .await
        .unwrap_or_else(|s| panic!("{sql}: {s:?}"));
    rows(&batches)
}

/// A point acknowledged is visible at once (only in the ingester's buffer), after
/// a snapshot (only in Parquet), after a restart, and when its versions are split
/// between Parquet and the buffer: always exactly once, with the later write's
/// fields on top of the earlier ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_points_are_visible_at_once_after_snapshot_and_restart_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let body = "cpu,host=a,region=eu usage=1.5,n=1i,ok=true,msg=\"hi\" 1000\n\
                cpu,host=b usage=2.5,n=2i 2000\n";
    assert_eq!(write(&s, "bucket=db", ADMIN_TOKEN, body).await.status, 204);
    let sql = "SELECT * FROM cpu ORDER BY host";
    let expected = vec![
        row(&[
            ("host", "a"),
            ("region", "eu"),
            ("usage", "1.5"),
            ("n", "1"),
            ("ok", "true"),
            ("msg", "hi"),
            ("time", "1000"),
        ]),
        row(&[
            ("host", "b"),
            ("usage", "2.5"),
            ("n", "2"),
            ("time", "2000"),
        ]),
    ];
    assert!(files_under(dir.path(), ".parquet").is_empty());
    assert_eq!(
        query_rows(&s.base, "db", sql).await,
        expected,
        "from the buffer"
    );

    // SIGTERM snapshots everything; after the restart it is all in Parquet.
    assert!(s.stop().success());
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    assert!(!files_under(dir.path(), ".parquet").is_empty());
    assert_eq!(
        query_rows(&s.base, "db", sql).await,
        expected,
        "from Parquet"
    );

    // A later write of host=a's point sets only `usage`: it is in the buffer,
    // the rest in Parquet. Same point, one row, the other fields kept.
    let overwrite = "cpu,region=eu,host=a usage=9.5 1000\ncpu,host=c usage=3 3000\n";
    assert_eq!(
        write(&s, "bucket=db", ADMIN_TOKEN, overwrite).await.status,
        204
    );
    let mut merged = expected.clone();
    merged[0].insert("usage".into(), "9.5".into());
    merged.push(row(&[("host", "c"), ("usage", "3.0"), ("time", "3000")]));
    assert_eq!(
        query_rows(&s.base, "db", sql).await,
        merged,
        "Parquet + buffer"
    );
    assert_eq!(
        query_rows(&s.base, "db", "SELECT count(*) AS n FROM cpu").await,
        vec![row(&[("n", "3")])]
    );
    assert!(s.stop().success());

    // With snapshots every second, the same answer once everything is persisted.
    let s = Server::start(dir.path(), &["--snapshot-interval", "1s"]);
    let before = files_under(dir.path(), ".parquet").len();
    assert_eq!(
        write(&s, "bucket=db", ADMIN_TOKEN, "cpu,host=d usage=4 4000")
            .await
            .status,
        204
    );
    let started = Instant::now();
    while files_under(dir.path(), ".parquet").len() == before {
        assert!(started.elapsed() < Duration::from_secs(20), "no snapshot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    merged.push(row(&[("host", "d"), ("usage", "4.0"), ("time", "4000")]));
    assert_eq!(
        query_rows(&s.base, "db", sql).await,
        merged,
        "after a snapshot"
    );
    assert!(s.stop().success());
}

/// The overwrite rule (point identity) through a query, within the buffer: a
/// field not set by the later write keeps its earlier value; a missing tag is
/// part of the identity (null), tag order is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_of_one_field_keeps_the_other_fields() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    for body in [
        "pt,a=1,b=2 x=1i,y=1i 10",
        "pt,b=2,a=1 y=2i,z=3i 10",
        "pt,a=1 x=9i 10",
    ] {
        let r = write(&s, "bucket=db&precision=s", ADMIN_TOKEN, body).await;
        assert_eq!(r.status, 204);
    }
    let got = query_rows(&s.base, "db", "SELECT * FROM pt ORDER BY b NULLS FIRST").await;
    assert_eq!(
        got,
        vec![
            row(&[("a", "1"), ("x", "9"), ("time", "10000000000")]),
            row(&[
                ("a", "1"),
                ("b", "2"),
                ("x", "1"),
                ("y", "2"),
                ("z", "3"),
                ("time", "10000000000")
            ]),
        ]
    );
    assert!(s.stop().success());
}

/// Tokens: read permission is needed; errors carry the right gRPC code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_and_errors_have_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    assert_eq!(
        write(&s, "bucket=db", ADMIN_TOKEN, "m,t=x v=1 1")
            .await
            .status,
        204
    );
    let write_only = create_token(dir.path(), "db", "write");
    let reader = create_token(dir.path(), "db", "read");
    let q = |token: Option<String>, db: &'static str, sql: &'static str| {
        let base = s.base.clone();
        async move { query(&base, token.as_deref(), db, sql).await }
    };
    let code = |r: Result<Vec<RecordBatch>, tonic::Status>| r.map(|_| ()).unwrap_err().code();

    let denied = q(Some(write_only), "db", "SELECT * FROM m").await;
    assert_eq!(code(denied), tonic::Code::PermissionDenied);
    assert_eq!(
        code(q(None, "db", "SELECT * FROM m").await),
        tonic::Code::Unauthenticated
    );
    assert_eq!(
        code(q(Some("inflow_nope".into()), "db", "SELECT * FROM m").await),
        tonic::Code::Unauthenticated
    );
    // A reader of db may not read another database, existing or not.
    assert_eq!(
        code(q(Some(reader.clone()), "other", "SELECT 1").await),
        tonic::Code::PermissionDenied
    );
    let ok = q(Some(reader.clone()), "db", "SELECT v FROM m")
        .await
        .unwrap();
    assert_eq!(rows(&ok), vec![row(&[("v", "1.0")])]);

    let bad = q(Some(reader.clone()), "db", "SELEC v FROM m")
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("SELEC"), "{}", bad.message());
    let bad = q(Some(reader.clone()), "db", "SELECT nope FROM m")
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().contains("nope"), "{}", bad.message());
    let missing = q(Some(reader.clone()), "db", "SELECT * FROM nope")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert_eq!(
        missing.message(),
        "table \"nope\" not found in database \"db\""
    );
    let missing = q(Some(ADMIN_TOKEN.into()), "nodb", "SELECT 1")
        .await
        .unwrap_err();
    assert_eq!(
        (missing.code(), missing.message()),
        (tonic::Code::NotFound, "database \"nodb\" not found")
    );
    // DDL is not a query.
    let ddl = q(Some(reader.clone()), "db", "CREATE TABLE x (a int)")
        .await
        .unwrap_err();
    assert_eq!(ddl.code(), tonic::Code::InvalidArgument, "{ddl:?}");

    // InfluxQL over the same ticket: answered, and its errors have their codes.
    let influxql = |q: &str| {
        serde_json::json!({"database": "db", "sql_query": q, "query_type": "influxql"})
            .to_string()
            .into_bytes()
    };
    let batches = query_ticket(&s.base, Some(&reader), influxql("SHOW MEASUREMENTS"))
        .await
        .unwrap();
    let names: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name("name").unwrap().as_string::<i32>();
            column
                .iter()
                .flatten()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(names, ["m"]);
    let e = query_ticket(&s.base, Some(&reader), influxql("SELECT FROM m"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "error parsing query: found FROM, expected identifier, string, number, bool at line 1, char 8"
    );
    let e = query_ticket(&s.base, Some(&reader), influxql("SHOW SERIES CARDINALITY"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message()
            .contains("SHOW SERIES CARDINALITY is not supported at line 1, char 13"),
        "{e:?}"
    );
    assert!(s.stop().success());
}

/// information_schema, SHOW TABLES and SHOW COLUMNS, as InfluxDB 3 users expect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_introspection_over_sql() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let body = "cpu,host=a usage=1,n=1i,u=1u,ok=t,msg=\"x\" 1\nmem,host=a free=1i 1\n";
    assert_eq!(write(&s, "bucket=db", ADMIN_TOKEN, body).await.status, 204);
    let tables = query_rows(
        &s.base,
        "db",
        "SELECT table_catalog, table_schema, table_name, table_type FROM information_schema.tables \
         WHERE table_schema = 'iox' ORDER BY table_name",
    )
    .await;
    let t = |name: &str| {
        row(&[
            ("table_catalog", "public"),
            ("table_schema", "iox"),
            ("table_name", name),
            ("table_type", "BASE TABLE"),
        ])
    };
    assert_eq!(tables, vec![t("cpu"), t("mem")]);
    let show = query_rows(&s.base, "db", "SHOW TABLES").await;
    assert!(
        show.contains(&t("cpu")) && show.contains(&t("mem")),
        "{show:?}"
    );

    let columns = query_rows(&s.base, "db", "SHOW COLUMNS FROM cpu").await;
    let types: Vec<(String, String)> = columns
        .iter()
        .map(|r| (r["column_name"].clone(), r["data_type"].clone()))
        .collect();
    let expected = [
        ("host", "Utf8"),
        ("msg", "Utf8"),
        ("n", "Int64"),
        ("ok", "Boolean"),
        ("u", "UInt64"),
        ("usage", "Float64"),
        ("time", "Timestamp(ns)"),
    ];
    for (name, ty) in expected {
        let found = types.iter().find(|(n, _)| n == name);
        assert!(found.is_some(), "{name} missing from {types:?}");
        let (_, got) = found.unwrap();
        assert!(
            got.starts_with(ty)
                || (ty == "Timestamp(ns)" && got.starts_with("Timestamp(Nanosecond")),
            "{name}: {got} is not {ty}"
        );
    }
    assert_eq!(types.len(), expected.len(), "no hidden column: {types:?}");
    assert!(s.stop().success());
}

/// InfluxDB 3's HTTP query API, `/api/v3/query_sql`: JSON, JSON lines and CSV,
/// and the same error kinds as HTTP statuses with `{"error"}` bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_query_sql_answers_and_maps_errors() {
    use crate::harness::request;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let body = "h,host=a v=1.5,n=1i 1000000000\nh,host=b n=2i 2000000000\n";
    assert_eq!(write(&s, "bucket=db", ADMIN_TOKEN, body).await.status, 204);
    let reader = format!("Token {}", create_token(dir.path(), "db", "read"));
    let writer = format!("Bearer {}", create_token(dir.path(), "db", "write"));
    let get = |q: &str, auth: Option<&str>| {
        let url = s.url(&format!("/api/v3/query_sql?{q}"));
        let auth = auth.map(str::to_string);
        async move {
            let headers: Vec<(&str, &str)> = auth
                .as_deref()
                .map(|a| vec![("authorization", a)])
                .unwrap_or_default();
            request("GET", &url, &headers, "").await
        }
    };
    let sql = "db=db&q=SELECT%20host%2C%20v%2C%20n%2C%20time%20FROM%20h%20ORDER%20BY%20host";
    let r = get(sql, Some(&reader)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(
        r.json(),
        serde_json::json!([
            {"host": "a", "v": 1.5, "n": 1, "time": "1970-01-01T00:00:01"},
            {"host": "b", "n": 2, "time": "1970-01-01T00:00:02"}
        ])
    );
    let r = get(&format!("{sql}&format=jsonl"), Some(&reader)).await;
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "{\"host\":\"a\",\"v\":1.5,\"n\":1,\"time\":\"1970-01-01T00:00:01\"}\n\
         {\"host\":\"b\",\"n\":2,\"time\":\"1970-01-01T00:00:02\"}\n"
    );
    let r = request(
        "POST",
        &s.url("/api/v3/query_sql"),
        &[("authorization", &reader)],
        r#"{"db":"db","q":"SELECT host, n FROM h ORDER BY host","format":"csv"}"#,
    )
    .await;
    assert_eq!(
        (r.status, String::from_utf8_lossy(&r.body).as_ref()),
        (200, "host,n\na,1\nb,2\n")
    );

    let status = |r: crate::harness::Response| (r.status, r.json()["error"].is_string());
    assert_eq!(status(get(sql, None).await), (401, true));
    assert_eq!(status(get(sql, Some(&writer)).await), (403, true));
    assert_eq!(
        status(get("db=db&q=SELEC%201", Some(&reader)).await),
        (400, true)
    );
    assert_eq!(
        status(get("db=db&q=SELECT%20*%20FROM%20nope", Some(&reader)).await),
        (404, true)
    );
    assert_eq!(
        status(get("q=SELECT%201", Some(&reader)).await),
        (400, true)
    );
    assert!(s.stop().success());
}
