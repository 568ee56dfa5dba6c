//! Flight `DoPut` on the public port is held to the HTTP write limits: the
//! message size (`--max-request-bytes`), authentication before any message is
//! read, name and value sizes, and the database's retention period.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray, TimestampNanosecondArray};
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::{FlightData, FlightDescriptor};
use futures::TryStreamExt;
use inflow::proto::WriteAck;
use prost::Message;

use crate::harness::{ADMIN_TOKEN, Server, parquet_rows, request, row, write};

/// Sends `batch` as one `DoPut` to `[database, table]`, unsplit (as pyarrow
/// sends it), with `token` as a bearer token.
pub async fn put(
    server: &Server,
    token: &str,
    path: [&str; 2],
    batch: RecordBatch,
) -> Result<Vec<WriteAck>, tonic::Status> {
    let mut client = crate::harness::flight_client(&server.base).await;
    let descriptor = FlightDescriptor::new_path(path.iter().map(|s| s.to_string()).collect());
    let data: Vec<FlightData> = FlightDataEncoderBuilder::new()
        .with_max_flight_data_size(usize::MAX)
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter([Ok(batch)]))
        .try_collect()
        .await
        .unwrap();
    let mut request = tonic::Request::new(futures::stream::iter(data));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut results = client.do_put(request).await?.into_inner();
    let mut acks = Vec::new();
    while let Some(r) = results.message().await? {
        acks.push(WriteAck::decode(r.app_metadata).unwrap());
    }
    Ok(acks)
}

/// `rows` rows of `m`: tag `host`, float `v`, times `time_ns`, `time_ns + 1`, ….
pub fn batch(host: &str, rows: usize, time_ns: i64) -> RecordBatch {
    RecordBatch::try_from_iter([
        (
            "host",
            Arc::new(StringArray::from(vec![host; rows])) as ArrayRef,
        ),
        (
            "v",
            Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))) as ArrayRef,
        ),
        (
            "time",
            Arc::new(TimestampNanosecondArray::from_iter_values(
                (0..rows as i64).map(|i| time_ns + i),
            )) as ArrayRef,
        ),
    ])
    .unwrap()
}

const LIMIT: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_writes_keep_the_write_limits() {
    let dir = tempfile::tempdir().unwrap();
    let limit = LIMIT.to_string();
    let args = [
        "--snapshot-interval",
        "1h",
        "--max-request-bytes",
        &limit,
        "--max-tag-bytes",
        "16",
    ];
    let server = Server::start(dir.path(), &args);
    let now = inflow::clock::Clock::now_ns(&inflow::clock::SystemClock);
    let (status, _) = {
        let r = request(
            "POST",
            &server.url("/api/v3/configure/database"),
            &[
                ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
                ("content-type", "application/json"),
            ],
            r#"{"db": "p", "retention_period": "1h"}"#,
        )
        .await;
        (r.status, r.body)
    };
    assert_eq!(status, 200);

    // 200,000 rows: about 3.2 MB in one message, over the 1 MiB limit.
    let big = batch("a", 200_000, now);
    let status = put(&server, ADMIN_TOKEN, ["p", "m"], big.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains(&limit) && status.message().contains("--max-request-bytes"),
        "{}",
        status.message()
    );

    // A bad token is refused before the message is read, however large.
    let status = put(&server, "no-such-token", ["p", "m"], big)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let status = put(&server, "no-such-token", ["p", "m"], batch("a", 1, now))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");

    // Rows older than the retention period are refused, as over HTTP.
    let two_hours_ago = now - 2 * 3_600_000_000_000;
    let status = put(
        &server,
        ADMIN_TOKEN,
        ["p", "m"],
        batch("a", 1, two_hours_ago),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("row 1")
            && status
                .message()
                .contains("older than the database's retention period"),
        "{}",
        status.message()
    );
    let r = write(
        &server,
        "bucket=p&org=o",
        ADMIN_TOKEN,
        format!("m,host=a v=1 {two_hours_ago}"),
    )
    .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        String::from_utf8_lossy(&r.body).contains("older than the database's retention period")
    );

    // Tag values past --max-tag-bytes, as over HTTP.
    let status = put(
        &server,
        ADMIN_TOKEN,
        ["p", "m"],
        batch("seventeen-bytes-x", 1, now),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("row 1")
            && status.message().contains("\"host\" is 17 bytes")
            && status.message().contains("--max-tag-bytes"),
        "{}",
        status.message()
    );

    // Still writable, over Flight and HTTP; only those rows are there.
    let acks = put(&server, ADMIN_TOKEN, ["p", "m"], batch("b", 2, now))
        .await
        .unwrap();
    assert_eq!(acks.len(), 1);
    let r = write(
        &server,
        "bucket=p&org=o",
        ADMIN_TOKEN,
        format!("m,host=c v=9 {}", now + 5),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert!(server.stop().success());
    let mut rows = parquet_rows(dir.path(), "p", "m").await;
    rows.sort_by(|a, b| a["time"].cmp(&b["time"]));
    let t = |d: i64| (now + d).to_string();
    assert_eq!(
        rows,
        vec![
            row(&[("host", "b"), ("v", "0.0"), ("time", &t(0))]),
            row(&[("host", "b"), ("v", "1.0"), ("time", &t(1))]),
            row(&[("host", "c"), ("v", "9.0"), ("time", &t(5))]),
        ]
    );
}
