//! The local WAL log under damage: a record damaged in the middle of a log
//! stops the server by file and byte instead of dropping what follows it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{ADMIN_TOKEN, Server, binary, files_under, parquet_rows, request, write};

const WRITES: usize = 5;

/// The one WAL log file of the data directory and the byte offset of each
/// record in it. `.log` files (earlier builds) have a 16-byte record header,
/// `.log2` files a 20-byte one; both start with the body's length.
fn log_records(dir: &Path) -> (PathBuf, Vec<usize>) {
    let logs: Vec<PathBuf> = files_under(dir, "/wal/")
        .into_iter()
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("log" | "log2")))
        .collect();
    assert_eq!(logs.len(), 1, "one run, one log file: {logs:?}");
    let header = match logs[0].extension().and_then(|e| e.to_str()) {
        Some("log") => 16,
        _ => 20,
    };
    let file = std::fs::read(&logs[0]).unwrap();
    let mut offsets = Vec::new();
    let mut at = 0;
    while at < file.len() {
        offsets.push(at);
        let len = u32::from_le_bytes(file[at..at + 4].try_into().unwrap()) as usize;
        at += header + len;
    }
    (logs[0].clone(), offsets)
}

/// How a start ended: the server listening (it started), or its exit with
/// what it wrote to stderr.
enum Start {
    Listening(std::process::Child),
    Exited(std::process::ExitStatus, String),
}

fn start(dir: &Path) -> Start {
    let mut child = Command::new(binary())
        .args([
            "serve",
            "--http-bind",
            "127.0.0.1:0",
            "--log-filter",
            "error",
        ])
        .arg("--data-dir")
        .arg(dir)
        .env("INFLOW_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("inflow binary starts");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("inflow: listening on ") {
                let _ = tx.send(());
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if rx.try_recv().is_ok() {
            return Start::Listening(child);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Start::Exited(status, errors.join().unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "neither listening nor exited in 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Five acknowledged writes, one WAL record each, then `kill -9`. A bit flipped
/// in the second record's length (its top bit: the length now runs past the
/// end of the file, as a torn append's would) must not pass for a torn tail:
/// the restart refuses, naming the file and the record's byte. Once the bit is
/// restored and the last record cut short instead (what a crash mid-append
/// leaves), the restart replays the four records before it.
#[tokio::test]
async fn a_flipped_length_in_the_wal_log_stops_the_start_by_file_and_byte() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    for i in 0..WRITES {
        let line = format!(
            "m,host=h{i} v={i}i {}",
            1_700_000_000_000_000_000i64 + i as i64
        );
        let r = write(&server, "bucket=db", ADMIN_TOKEN, line).await;
        assert_eq!(r.status, 204, "write {i}: {:?}", r.body);
    }
    server.kill9();
    let (log, offsets) = log_records(dir.path());
    assert_eq!(offsets.len(), WRITES, "a record per acknowledged write");
    let original = std::fs::read(&log).unwrap();

    let second = offsets[1];
    let mut damaged = original.clone();
    damaged[second + 3] ^= 0x80;
    std::fs::write(&log, &damaged).unwrap();
    match start(dir.path()) {
        Start::Listening(mut child) => {
            // SAFETY: kill(2) with a pid we own; SIGTERM snapshots what it holds.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            child.wait().unwrap();
            let rows = parquet_rows(dir.path(), "db", "m").await;
            panic!(
                "started on a damaged WAL log, with {} of {WRITES} acknowledged rows",
                rows.len()
            );
        }
        Start::Exited(status, stderr) => {
            assert!(!status.success(), "{stderr}");
            let relative = log.strip_prefix(dir.path()).unwrap().to_string_lossy();
            let named = format!("WAL log {relative} is corrupt at byte {second}");
            assert!(stderr.contains(&named), "{named:?} not in {stderr:?}");
        }
    }

    // A torn last record: the rest replays, and a clean stop persists it.
    let last = offsets[WRITES - 1];
    std::fs::write(&log, &original[..last + (original.len() - last) / 2]).unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "1h"]);
    assert!(server.stop().success());
    let mut values: Vec<String> = parquet_rows(dir.path(), "db", "m")
        .await
        .into_iter()
        .map(|r| r["v"].clone())
        .collect();
    values.sort();
    assert_eq!(values, ["0", "1", "2", "3"]);
}

/// `no_sync` writes while the WAL is slower than the writer (a commit waits
/// `--wal-flush-interval`, 10 s, to gather writes): each is answered once
/// queued, but what is queued counts against `--buffer-bytes` until it is in
/// the buffer, so past it they get 503 with `Retry-After` like any write, and
/// every one acknowledged is there after a clean stop.
#[tokio::test]
async fn no_sync_writes_past_the_buffer_get_503_while_the_wal_lags() {
    const WRITES: usize = 12;
    const LINES: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--snapshot-interval",
        "1h",
        "--wal-flush-interval",
        "10s",
        "--buffer-bytes",
        "1048576",
    ];
    let server = Server::start(dir.path(), &flags);
    let auth = format!("Token {ADMIN_TOKEN}");
    let url = server.url("/api/v3/write_lp?db=db&no_sync=true");
    let started = Instant::now();
    let mut statuses = Vec::new();
    for i in 0..WRITES {
        let body: String = (0..LINES)
            .map(|l| {
                format!(
                    "q,host=h{l} v={i}i {}\n",
                    1_700_000_000_000_000_000i64 + i as i64
                )
            })
            .collect();
        let r = request("POST", &url, &[("authorization", &auth)], body).await;
        if r.status == 503 {
            assert_eq!(r.headers["retry-after"], "1", "{:?}", r.body);
        }
        statuses.push(r.status);
    }
    // All sent before the first commit: the queue alone held the bytes.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let accepted = statuses.iter().filter(|s| **s == 204).count();
    let refused = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(accepted + refused, WRITES, "{statuses:?}");
    assert!(accepted > 0 && refused > 0, "{statuses:?}");
    assert!(server.stop().success());
    let rows = parquet_rows(dir.path(), "db", "q").await;
    assert_eq!(rows.len(), accepted * LINES, "{statuses:?}");
}
