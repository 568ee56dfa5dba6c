//! Internal producers: Arrow Flight `DoPut` on the edge's own port (shared with HTTP).

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::{FlightData, FlightDescriptor};
use futures::TryStreamExt;
use inflow::proto::{WriteAck, write_ack};
use prost::Message;

use crate::harness::{ADMIN_TOKEN, Server, parquet_rows, row, write};

async fn put(
    server: &Server,
    token: Option<&str>,
    path: &[&str],
    batch: RecordBatch,
) -> Result<Vec<WriteAck>, tonic::Status> {
    let mut client = crate::harness::flight_client(&server.base).await;
    let descriptor = FlightDescriptor::new_path(path.iter().map(|s| s.to_string()).collect());
    let data: Vec<FlightData> = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter([Ok(batch)]))
        .try_collect()
        .await
        .unwrap();
    let mut request = tonic::Request::new(futures::stream::iter(data));
    if let Some(t) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let mut results = client.do_put(request).await?.into_inner();
    let mut acks = Vec::new();
    while let Some(r) = results.message().await? {
        acks.push(WriteAck::decode(r.app_metadata).unwrap());
    }
    Ok(acks)
}

fn cpu_batch() -> RecordBatch {
    RecordBatch::try_from_iter([
        (
            "host",
            Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
        ),
        (
            "usage",
            Arc::new(Float64Array::from(vec![0.5, 1.5])) as ArrayRef,
        ),
        (
            "time",
            Arc::new(TimestampMillisecondArray::from(vec![1_000, 2_000])) as ArrayRef,
        ),
    ])
    .unwrap()
}

// Multi-threaded: `stop` blocks this thread while the server's graceful shutdown
// waits for the client's h2 connection tasks to answer its GOAWAY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_put_arrow_on_the_http_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let acks = put(&server, Some(ADMIN_TOKEN), &["prod", "cpu"], cpu_batch())
        .await
        .unwrap();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].write_id, 1);
    assert!(matches!(
        acks[0].outcome,
        Some(write_ack::Outcome::WalSegment(_))
    ));

    let status = put(&server, None, &["prod", "cpu"], cpu_batch())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let status = put(&server, Some(ADMIN_TOKEN), &["prod"], cpu_batch())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    // `usage` is a float: an integer column of that name conflicts.
    let conflicting = RecordBatch::try_from_iter([
        ("usage", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
        (
            "time",
            Arc::new(TimestampMillisecondArray::from(vec![3_000])) as ArrayRef,
        ),
    ])
    .unwrap();
    let status = put(&server, Some(ADMIN_TOKEN), &["prod", "cpu"], conflicting)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("float") && status.message().contains("integer"),
        "{}",
        status.message()
    );

    assert!(server.stop().success());
    let mut rows = parquet_rows(dir.path(), "prod", "cpu").await;
    rows.sort_by(|a, b| a["host"].cmp(&b["host"]));
    assert_eq!(
        rows,
        vec![
            row(&[("host", "a"), ("usage", "0.5"), ("time", "1000000000")]),
            row(&[("host", "b"), ("usage", "1.5"), ("time", "2000000000")]),
        ]
    );
}

/// A producer's batch that would pass the series quota is refused whole,
/// naming its first row past it; the quota counts series written over HTTP too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_batches_count_against_the_series_quota() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--snapshot-interval",
        "1h",
        "--max-series-per-database",
        "3",
    ];
    let server = Server::start(dir.path(), &args);
    put(&server, Some(ADMIN_TOKEN), &["capped", "cpu"], cpu_batch())
        .await
        .unwrap();
    let r = write(
        &server,
        "bucket=capped&org=o",
        ADMIN_TOKEN,
        "cpu,host=c usage=1 3000000000",
    )
    .await;
    assert_eq!(r.status, 204);
    let hosts = |hosts: Vec<&str>| {
        let n = hosts.len();
        RecordBatch::try_from_iter([
            ("host", Arc::new(StringArray::from(hosts)) as ArrayRef),
            (
                "usage",
                Arc::new(Float64Array::from(vec![2.0; n])) as ArrayRef,
            ),
            (
                "time",
                Arc::new(TimestampMillisecondArray::from(vec![4_000; n])) as ArrayRef,
            ),
        ])
        .unwrap()
    };
    let status = put(
        &server,
        Some(ADMIN_TOKEN),
        &["capped", "cpu"],
        hosts(vec!["a", "b", "d", "c"]),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "row 3: new series would exceed the database's limit of 3 series (it has 3)"
    );
    put(
        &server,
        Some(ADMIN_TOKEN),
        &["capped", "cpu"],
        hosts(vec!["c", "a"]),
    )
    .await
    .unwrap();
    assert!(server.stop().success());
    let mut rows = parquet_rows(dir.path(), "capped", "cpu").await;
    rows.sort_by(|a, b| (&a["host"], &a["time"]).cmp(&(&b["host"], &b["time"])));
    let hosts: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["host"].as_str(), r["time"].as_str()))
        .collect();
    assert_eq!(
        hosts,
        [
            ("a", "1000000000"),
            ("a", "4000000000"),
            ("b", "2000000000"),
            ("c", "3000000000"),
            ("c", "4000000000"),
        ]
    );
}

/// A real Flight client, `pyarrow.flight`, puts Arrow tables with a dictionary
/// tag, a plain string tag and a millisecond timestamp; every row lands in ns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyarrow_flight_producer() {
    const N: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let token = crate::harness::create_token(dir.path(), "arrowdb", "write");
    let addr = server.base.trim_start_matches("http://").to_string();
    let out = std::process::Command::new(crate::clients::python())
        .arg(crate::clients::script("pyarrow_flight_put.py"))
        .args([&addr, &token, "arrowdb", "metrics", &N.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.stop().success());
    let mut rows = parquet_rows(dir.path(), "arrowdb", "metrics").await;
    assert_eq!(rows.len(), N);
    rows.sort_by_key(|r| r["hits"].parse::<usize>().unwrap());
    for (i, r) in rows.iter().enumerate() {
        let expected = row(&[
            ("region", &format!("reg{}", i % 3)),
            ("host", &format!("p{}", i % 5)),
            ("load", &format!("{:?}", i as f64 * 1.5)),
            ("hits", &i.to_string()),
            (
                "time",
                &((1_680_000_000_000 + i as i64) * 1_000_000).to_string(),
            ),
        ]);
        assert_eq!(r, &expected, "row {i}");
    }
}

/// One `Handshake` with `authorization` set to `auth`: the `authorization`
/// header of the answer, or the refusal's code.
async fn handshake(server: &Server, auth: Option<&str>) -> Result<Option<String>, tonic::Code> {
    let mut client = crate::harness::flight_client(&server.base).await;
    let mut request = tonic::Request::new(futures::stream::iter([
        arrow_flight::HandshakeRequest::default(),
    ]));
    if let Some(a) = auth {
        request
            .metadata_mut()
            .insert("authorization", a.parse().unwrap());
    }
    let response = client.handshake(request).await.map_err(|s| s.code())?;
    let header = response
        .metadata()
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    let answers: Vec<_> = response
        .into_inner()
        .try_collect()
        .await
        .map_err(|s| s.code())?;
    assert_eq!(answers, vec![arrow_flight::HandshakeResponse::default()]);
    Ok(header)
}

/// Flight's basic authentication (Grafana's Flight SQL source and JDBC with a
/// username and password): Basic with the token as password, or the token
/// itself, is answered with `Bearer <token>`; a wrong, malformed or missing
/// credential is refused; `--without-auth` lets anything through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_answers_the_bearer_header() {
    use base64::Engine;
    let basic = |user: &str, password: &str| {
        let pair = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let ok = Ok(Some(bearer.clone()));
    assert_eq!(
        handshake(&s, Some(&basic("grafana", ADMIN_TOKEN))).await,
        ok
    );
    assert_eq!(handshake(&s, Some(&bearer)).await, ok);
    let unauthenticated = Err(tonic::Code::Unauthenticated);
    assert_eq!(
        handshake(&s, Some(&basic("grafana", "wrong"))).await,
        unauthenticated
    );
    assert_eq!(
        handshake(&s, Some(&basic("grafana", ""))).await,
        unauthenticated
    );
    assert_eq!(handshake(&s, Some("Basic !!!")).await, unauthenticated);
    assert_eq!(handshake(&s, None).await, unauthenticated);
    assert!(s.stop().success());

    let open_dir = tempfile::tempdir().unwrap();
    let open = Server::start_with_env(open_dir.path(), &["--without-auth"], &[]);
    assert_eq!(handshake(&open, None).await, Ok(None));
    let any = basic("grafana", "anything");
    assert_eq!(
        handshake(&open, Some(&any)).await,
        Ok(Some("Bearer anything".into()))
    );
    assert!(open.stop().success());
}
