//! What an acknowledged write survives: kill -9, restarts, replays.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::harness::{ADMIN_TOKEN, Server, files_under, parquet_rows, row, write};

/// Writes batches, kills the server with SIGKILL right after the last 204,
/// restarts it, and finds every acknowledged point exactly once. Snapshots run
/// every 200 ms meanwhile, so some points are in Parquet and some only in the WAL
/// at the moment of the kill.
#[tokio::test]
async fn kill_9_loses_no_acknowledged_point_and_duplicates_none() {
    const BATCHES: usize = 40;
    const LINES: usize = 250;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "200ms"]);
    for b in 0..BATCHES {
        let body: String = (0..LINES)
            .map(|l| {
                let i = b * LINES + l;
                format!(
                    "crash,host=h{},batch=b{b} v={i}i,f={i}.5 {}\n",
                    i % 10,
                    1_600_000_000_000_000_000i64 + i as i64
                )
            })
            .collect();
        let r = write(&server, "bucket=db", ADMIN_TOKEN, body).await;
        assert_eq!(r.status, 204, "batch {b}: {:?}", r.body);
    }
    server.kill9();
    assert!(
        !files_under(dir.path(), "/wal/").is_empty()
            || !files_under(dir.path(), ".parquet").is_empty()
    );

    let restarted = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    assert!(restarted.stop().success());
    let rows = parquet_rows(dir.path(), "db", "crash").await;
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &rows {
        let v: i64 = r["v"].parse().unwrap();
        *seen.entry(v).or_default() += 1;
        assert_eq!(r["f"], format!("{v}.5"));
        assert_eq!(r["time"], (1_600_000_000_000_000_000i64 + v).to_string());
        assert_eq!(r["host"], format!("h{}", v % 10));
    }
    let dupes: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "points stored twice: {dupes:?}");
    assert_eq!(seen.len(), BATCHES * LINES, "acknowledged points lost");
    assert!(
        files_under(dir.path(), "/wal/").is_empty(),
        "replayed WAL snapshotted and deleted"
    );
}

/// One write; `None` when no response came (the server was killed).
async fn post(url: &str, body: String) -> Option<u16> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::post(url)
        .header("authorization", format!("Token {ADMIN_TOKEN}"))
        .body(Full::new(Bytes::from(body)))
        .ok()?;
    let response = client.request(request).await.ok()?;
    let status = response.status().as_u16();
    response.into_body().collect().await.ok()?;
    Some(status)
}

/// SIGKILL while four clients write (each commit appended to the local WAL
/// log, snapshots every 300 ms): after a restart every acknowledged batch is
/// there once, and a batch that was in flight is there whole or not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_write_keeps_every_acknowledged_batch_whole() {
    const WRITERS: usize = 4;
    const LINES: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(dir.path(), &["--snapshot-interval", "300ms"]));
    let url = server.url("/api/v2/write?bucket=db");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (url, acked) = (url.clone(), Arc::clone(&acked));
            tokio::spawn(async move {
                for n in 0.. {
                    let b = n * WRITERS + w;
                    let body: String = (0..LINES)
                        .map(|l| format!("mid,w=w{w} b={b}i,l={l}i {}\n", b * LINES + l))
                        .collect();
                    match post(&url, body).await {
                        Some(204) => acked.lock().unwrap().push(b),
                        Some(status) => panic!("batch {b}: {status}"),
                        None => return n + 1, // batches sent, the last unanswered
                    }
                }
                unreachable!()
            })
        })
        .collect();
    // Kill once 100 batches are acknowledged; writers that stall or fail
    // (each panics on a status other than 204) fail the test here, not hang it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 100 {
        if let Some(i) = writers.iter().position(|w| w.is_finished()) {
            let outcome = writers.swap_remove(i).await;
            panic!("writer stopped before the kill: {outcome:?}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of 100 batches acknowledged within 60 s",
            acked.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.signal(libc::SIGKILL);
    let mut sent = 0;
    for w in writers {
        sent += w.await.unwrap();
    }
    drop(server);
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 100 && sent > acked.len(), "{sent} sent");

    let restarted = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    assert!(restarted.stop().success());
    let mut lines_of: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for r in parquet_rows(dir.path(), "db", "mid").await {
        let (b, l): (usize, usize) = (r["b"].parse().unwrap(), r["l"].parse().unwrap());
        assert_eq!(r["time"], (b * LINES + l).to_string());
        lines_of.entry(b).or_default().push(l);
    }
    let whole: Vec<usize> = (0..LINES).collect();
    for b in &acked {
        let mut lines = lines_of.remove(b).unwrap_or_default();
        lines.sort();
        assert_eq!(
            lines, whole,
            "acknowledged batch {b}: lost or duplicated points"
        );
    }
    // The rest were in flight at the kill: durable whole, or not at all.
    for (b, mut lines) in lines_of {
        lines.sort();
        assert_eq!(lines, whole, "unacknowledged batch {b} is partly there");
    }
}

/// A graceful stop, a restart, more writes, a kill: each point once.
#[tokio::test]
async fn replay_after_restart_skips_what_snapshots_cover() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    assert_eq!(
        write(&s, "bucket=db&precision=s", ADMIN_TOKEN, "r,k=a v=1i 1")
            .await
            .status,
        204
    );
    assert!(s.stop().success());
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    assert_eq!(
        write(&s, "bucket=db&precision=s", ADMIN_TOKEN, "r,k=b v=2i 2")
            .await
            .status,
        204
    );
    s.kill9();
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    assert!(s.stop().success());
    let mut rows = parquet_rows(dir.path(), "db", "r").await;
    rows.sort_by(|a, b| a["k"].cmp(&b["k"]));
    assert_eq!(
        rows,
        vec![
            row(&[("k", "a"), ("v", "1"), ("time", "1000000000")]),
            row(&[("k", "b"), ("v", "2"), ("time", "2000000000")]),
        ]
    );
}

/// Point identity: the same (table, tag set, time) written again
/// replaces only the fields the later write sets; a missing tag is part of the
/// identity (null), and tag order does not matter.
#[tokio::test]
async fn later_write_of_a_point_replaces_the_fields_it_sets() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    let w = |body: &'static str| write(&s, "bucket=db&precision=s", ADMIN_TOKEN, body);
    assert_eq!(w("pt,a=1,b=2 x=1i,y=1i 10").await.status, 204);
    assert_eq!(w("pt,b=2,a=1 y=2i,z=3i 10").await.status, 204);
    assert_eq!(w("pt,a=1 x=9i 10").await.status, 204);
    assert!(s.stop().success());
    let mut rows = parquet_rows(dir.path(), "db", "pt").await;
    rows.sort_by_key(|r| r.len());
    assert_eq!(
        rows,
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
}
