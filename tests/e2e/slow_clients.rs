//! Slow and stalled clients: each is cut by the HTTP timeouts, and none of them
//! holds the write path (or a connection slot) away from everyone else.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{ADMIN_TOKEN, Server, parquet_rows, request, row, write};

/// Raises this process's soft open-file limit to at least `want` (up to the
/// hard limit): the test holds more sockets than a default of 1024 allows, and
/// the server it starts inherits the limit.
fn raise_nofile(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < want {
            limit.rlim_cur = limit.rlim_max.min(want);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= want,
        "the hard open-file limit ({}) is below the {want} this test needs",
        limit.rlim_max
    );
}

fn addr(server: &Server) -> String {
    server
        .base
        .strip_prefix("http://")
        .expect("plain HTTP")
        .to_string()
}

/// Reads until the server closes the connection (EOF or reset), within
/// `deadline`; returns what it sent.
async fn read_until_closed(stream: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await;
        match read {
            Err(_) => {
                return Err(format!(
                    "still open at the deadline; received {:?}",
                    String::from_utf8_lossy(&got)
                ));
            }
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

const HALF_REQUEST_LINES: usize = 1_200;
const STALLED_UPLOADS: usize = 40;
/// Bytes a stalled upload declares, under the default --max-request-bytes.
const DECLARED: usize = 10_000_000;

/// 1,200 connections that send half a request line and 40 authenticated uploads
/// that declare 10 MB and stall after 1 KB take neither the write slots nor the
/// connections from a normal write; then every one of them is closed by the
/// header-read and body-read timeouts, the uploads with a 408 JSON error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_cut_and_writes_go_on() {
    raise_nofile((HALF_REQUEST_LINES + STALLED_UPLOADS + 512) as u64);
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(3);
    let args = [
        "--snapshot-interval",
        "1h",
        "--http-header-read-timeout",
        "3s",
        "--http-body-read-timeout",
        "3s",
    ];
    let server = Server::start(dir.path(), &args);
    let r = write(
        &server,
        "bucket=slow&org=o",
        ADMIN_TOKEN,
        "m,c=first v=1 1\n",
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);

    let addr = addr(&server);
    let mut half = Vec::with_capacity(HALF_REQUEST_LINES);
    for _ in 0..HALF_REQUEST_LINES {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(b"POST /api/v2/wri").await.unwrap();
        half.push(s);
    }
    let head = format!(
        "POST /api/v2/write?bucket=slow&org=o HTTP/1.1\r\nhost: {addr}\r\n\
         authorization: Token {ADMIN_TOKEN}\r\ncontent-length: {DECLARED}\r\n\r\n"
    );
    // 1 KB of good lines; the other 9.99 MB never come.
    let mut kilobyte = Vec::new();
    let mut i = 0;
    while kilobyte.len() < 1024 {
        kilobyte.extend_from_slice(format!("m,c=stalled v={i} {}\n", 1000 + i).as_bytes());
        i += 1;
    }
    let mut uploads = Vec::with_capacity(STALLED_UPLOADS);
    for _ in 0..STALLED_UPLOADS {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&kilobyte).await.unwrap();
        uploads.push(s);
    }
    let stalled_at = Instant::now();
    // A round trip on a new connection: the server has accepted the stalled ones
    // (accepts are in order) and their handlers have started.
    let ping = request("GET", &server.url("/ping"), &[], "").await;
    assert_eq!(ping.status, 204);

    let started = Instant::now();
    let r = write(
        &server,
        "bucket=slow&org=o",
        ADMIN_TOKEN,
        "m,c=normal v=2 2\n",
    )
    .await;
    let took = started.elapsed();
    assert_eq!(
        (r.status, String::from_utf8_lossy(&r.body).into_owned()),
        (204, String::new())
    );
    assert!(
        took < Duration::from_secs(2),
        "the normal write took {took:?}"
    );

    // Each stalled client is cut within the timeout plus a generous margin for
    // a loaded machine.
    let deadline = stalled_at + timeout + Duration::from_secs(15);
    let cut = futures::future::join_all(half.iter_mut().map(|s| read_until_closed(s, deadline)));
    for (n, got) in cut.await.into_iter().enumerate() {
        let got = got.unwrap_or_else(|e| panic!("half request line {n}: {e}"));
        assert!(
            got.is_empty(),
            "half request line {n} was answered: {got:?}"
        );
    }
    let cut = futures::future::join_all(uploads.iter_mut().map(|s| read_until_closed(s, deadline)));
    for (n, got) in cut.await.into_iter().enumerate() {
        let got = got.unwrap_or_else(|e| panic!("stalled upload {n}: {e}"));
        let text = String::from_utf8_lossy(&got);
        let (head, body) = text.split_once("\r\n\r\n").expect("a whole response");
        assert!(head.starts_with("HTTP/1.1 408 "), "upload {n}: {head}");
        assert!(
            head.to_ascii_lowercase().contains("connection: close"),
            "upload {n}: {head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON error body");
        assert_eq!(json["code"], "invalid", "{json}");
        let message = json["message"].as_str().unwrap();
        assert!(
            message.contains("--http-body-read-timeout"),
            "upload {n}: {message}"
        );
    }

    let r = write(
        &server,
        "bucket=slow&org=o",
        ADMIN_TOKEN,
        "m,c=after v=3 3\n",
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert!(server.stop().success());
    // The stalled uploads' first kilobyte was never written.
    let mut rows = parquet_rows(dir.path(), "slow", "m").await;
    rows.sort_by(|a, b| a["time"].cmp(&b["time"]));
    assert_eq!(
        rows,
        vec![
            row(&[("c", "first"), ("v", "1.0"), ("time", "1")]),
            row(&[("c", "normal"), ("v", "2.0"), ("time", "2")]),
            row(&[("c", "after"), ("v", "3.0"), ("time", "3")]),
        ]
    );
}

/// Past `--max-connections` the server stops accepting: a new client waits in
/// the listen backlog until a connection closes (here: stalled ones cut by the
/// header-read timeout), then is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_for_a_free_one() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--snapshot-interval",
        "1h",
        "--max-connections",
        "20",
        "--http-header-read-timeout",
        "2s",
    ];
    let server = Server::start(dir.path(), &args);
    let addr = addr(&server);
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(b"GET /pi").await.unwrap();
        stalled.push(s);
    }
    let started = Instant::now();
    let mut extra = TcpStream::connect(&addr)
        .await
        .expect("the backlog takes it");
    extra
        .write_all(b"GET /ping HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut extra, started + Duration::from_secs(20))
        .await
        .expect("answered once a slot frees");
    let waited = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 204 "), "{text}");
    // It was served only after the stalled ones were cut at ~2 s.
    assert!(
        waited >= Duration::from_millis(1500),
        "served after {waited:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    for s in &mut stalled {
        read_until_closed(s, deadline).await.expect("cut");
    }
}

/// An HTTP/1.1 keep-alive connection with no request in flight is closed after
/// `--http-idle-timeout`, while one in the middle of a slow request is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--snapshot-interval",
        "1h",
        "--http-idle-timeout",
        "1s",
        "--http-header-read-timeout",
        "30s",
    ];
    let server = Server::start(dir.path(), &args);
    let mut s = TcpStream::connect(addr(&server)).await.expect("connect");
    s.write_all(b"GET /ping HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 204 "));
    let idle = Instant::now();
    let rest = read_until_closed(&mut s, idle + Duration::from_secs(10))
        .await
        .expect("closed when idle");
    assert!(rest.is_empty());
    let after = idle.elapsed();
    assert!(
        after >= Duration::from_millis(800),
        "closed after {after:?}"
    );
}
