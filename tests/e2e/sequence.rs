//! Last-write-wins across routers' clocks: write sequences come from a hybrid
//! logical clock that never stamps below what the ingesters already hold.

use std::path::Path;

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

/// A process of split roles on the shared data directory, with the cluster
/// token.
fn start_role(data: &Path, token: &Path, args: &[&str]) -> Server {
    let token = token.to_str().unwrap();
    let all = [args, &["--cluster-token-file", token]].concat();
    Server::start(data, &all)
}

/// Split roles: one ingester, two routers, the second an hour behind the
/// first. A point written through the first router, then overwritten through
/// the second (its first write: it has heard from the ingester only as its
/// stream opened), keeps the overwrite; so does an overwrite through the
/// second once the first has written again, which it hears of in its acks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_behind_another_stamps_its_overwrites_above_what_it_heard() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("cluster-token");
    std::fs::write(&token, "cluster-secret\n").unwrap();
    let data = dir.path().join("data");
    let ingester = start_role(
        &data,
        &token,
        &[
            "--role",
            "ingester",
            "--ingester-id",
            "ing-0",
            "--grpc-bind",
            "127.0.0.1:0",
            "--snapshot-interval",
            "1h",
        ],
    );
    let addr = ingester.grpc_addr();
    let router = |extra: &[&str]| {
        let args = [&["--role", "router", "--ingesters", addr.as_str()], extra].concat();
        start_role(&data, &token, &args)
    };
    let ahead = router(&[]);
    let behind = router(&["--test-clock-offset-secs", "-3600"]);
    let querier = start_role(
        &data,
        &token,
        &["--role", "querier", "--ingesters", addr.as_str()],
    );
    write_v(&ahead, 1).await;
    write_v(&behind, 2).await;
    assert_eq!(
        values(&querier).await,
        ["2"],
        "the behind router's first write"
    );
    write_v(&ahead, 3).await;
    write_v(&behind, 4).await;
    assert_eq!(
        values(&querier).await,
        ["4"],
        "after the other router wrote again"
    );
}
