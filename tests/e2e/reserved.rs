//! Names the server uses for its own columns are not the client's.

use std::time::Duration;

use crate::harness::{ADMIN_TOKEN, Server, eventually, files_under, parquet_rows, row, write};

/// A field named like the hidden write sequence is refused by line, its good
/// neighbours are written, and snapshots go on: the data reaches Parquet.
#[tokio::test]
async fn a_field_named_like_the_write_sequence_is_refused_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "200ms"]);
    let body = "m,host=a _inflow_seq=5i,v=1 1000\nm,host=b v=2 2000\n";
    let r = write(&server, "bucket=db", ADMIN_TOKEN, body).await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let json = r.json();
    assert_eq!(json["line"], 1);
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("column name \"_inflow_seq\" is reserved"),
        "{json}"
    );
    eventually(Duration::from_secs(20), "a snapshot of table m", || async {
        !files_under(dir.path(), ".parquet").is_empty()
    })
    .await;
    let r = write(&server, "bucket=db", ADMIN_TOKEN, "m,host=c v=3 3000").await;
    assert_eq!(r.status, 204);
    assert!(server.stop().success());
    let mut rows = parquet_rows(dir.path(), "db", "m").await;
    rows.sort();
    assert_eq!(
        rows,
        vec![
            row(&[("host", "b"), ("time", "2000"), ("v", "2.0")]),
            row(&[("host", "c"), ("time", "3000"), ("v", "3.0")]),
        ]
    );
}
