//! Last-write-wins across routers' clocks: write sequences come from a hybrid
//! logical clock that never stamps below what the ingesters already hold.

use crate::harness::{ADMIN_TOKEN, Server, write};
use crate::query::query_rows;

const POINT_TIME: i64 = 1_700_000_000_000_000_000;

async fn write_v(server: &Server, v: i64) {
    let line = format!("m,host=a v={v}i {POINT_TIME}");
    let r = write(server, "bucket=db", ADMIN_TOKEN, line).await;
    assert_eq!(r.status, 204, "v={v}: {:?}", r.body);
}

async fn values(server: &Server) -> Vec<String> {
    let rows = query_rows(&server.base, "db", "SELECT v FROM m").await;
    rows.into_iter().map(|r| r["v"].clone()).collect()
}

/// One point written, then overwritten after a restart whose clock is an hour
/// behind (the hidden `--test-clock-offset-secs`): the overwrite was
/// acknowledged later, so it wins, live and after another restart. Once with
/// the first value only in the WAL (kill -9), once with it in Parquet (a clean
/// stop snapshots it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_stamped_by_a_clock_set_back_still_wins() {
    for crash in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
        write_v(&server, 1).await;
        if crash {
            server.kill9();
        } else {
            assert!(server.stop().success());
        }
        let behind = [
            "--snapshot-interval",
            "1h",
            "--test-clock-offset-secs",
            "-3600",
        ];
        let server = Server::start(dir.path(), &behind);
        write_v(&server, 2).await;
        assert_eq!(values(&server).await, ["2"], "crash: {crash}, live");
        assert!(server.stop().success());
        let server = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
        assert_eq!(values(&server).await, ["2"], "crash: {crash}, restarted");
        assert!(server.stop().success());
    }
}
