//! What an acknowledged write survives: kill -9, restarts, replays.

use std::collections::BTreeMap;

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

/// Point identity (DESIGN.md §2): the same (table, tag set, time) written again
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
