//! Queries bounded by the server, not by what a reader asks: answers stream
//! with what they hold counted, a reader that stops reading stops its query,
//! `--query-timeout` cuts a query that runs too long, and
//! `--max-concurrent-queries` makes the excess wait, then 503.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{ADMIN_TOKEN, Server, request, write};

const MIB: u64 = 1 << 20;
const POOL: u64 = 128 * MIB;

/// The server's peak resident memory so far (`VmHWM`), in bytes.
fn peak_rss(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb * 1024
}

/// A reader that sends a query over a raw connection, reads `read` bytes of
/// the answer (status line and headers included), then stops reading while
/// keeping the connection open.
struct StalledReader {
    _socket: TcpStream,
    head: String,
}

async fn stalled_reader(server: &Server, path_and_query: &str, read: u64) -> StalledReader {
    let host = server.base.trim_start_matches("http://").to_string();
    let mut socket = TcpStream::connect(&host).await.unwrap();
    let request = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Token {ADMIN_TOKEN}\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    let mut head = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while got < read {
        assert!(Instant::now() < deadline, "read only {got} bytes in 120 s");
        let n = tokio::time::timeout(Duration::from_secs(60), socket.read(&mut buf))
            .await
            .expect("the answer keeps coming")
            .unwrap();
        assert!(
            n > 0,
            "the answer ended after {got} bytes: {}",
            String::from_utf8_lossy(&head)
        );
        if head.len() < 512 {
            head.extend_from_slice(&buf[..n.min(512)]);
        }
        got += n as u64;
    }
    StalledReader {
        _socket: socket,
        head: String::from_utf8_lossy(&head).into_owned(),
    }
}

fn sql_path(db: &str, q: &str, format: &str) -> String {
    let query = serde_urlencoded::to_string([("db", db), ("q", q), ("format", format)]).unwrap();
    format!("/api/v3/query_sql?{query}")
}

/// Writes a point and reads it back: the server is up for everyone else.
async fn assert_writable(server: &Server, value: u64) {
    let line = format!("alive,probe=p v={value}i {value}");
    let r = write(server, "bucket=q", ADMIN_TOKEN, line).await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let auth = format!("Token {ADMIN_TOKEN}");
    let q = format!("SELECT v FROM alive WHERE v = {value}");
    let r = request(
        "GET",
        &server.url(&sql_path("q", &q, "json")),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json(), serde_json::json!([{ "v": value }]));
}

/// Polls the server's peak RSS for `span`, failing as soon as it passes
/// `bound` (and so killing the server before it takes the machine down).
async fn rss_stays_under(server: &Server, bound: u64, span: Duration) -> u64 {
    let start = Instant::now();
    let mut peak = 0;
    while start.elapsed() < span {
        peak = peak_rss(server);
        assert!(
            peak <= bound,
            "peak RSS {} MiB is over {} MiB",
            peak / MIB,
            bound / MIB
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    peak
}

/// `generate_series` over 20 billion rows, and a self cross join, from readers
/// that stop after 64 MiB: the server's memory stays under the query pool plus
/// 256 MiB, and it keeps taking writes and answering other queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_answers_stream_within_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let pool = POOL.to_string();
    let server = Server::start(
        dir.path(),
        &["--snapshot-interval", "1h", "--query-memory-bytes", &pool],
    );
    assert_writable(&server, 1).await;
    // 2,000 rows to join with themselves: 4 million rows of answer.
    let body: String = (0..2000)
        .map(|i| format!("t,k=k{i} v={i}i {i}\n"))
        .collect();
    assert_eq!(
        write(&server, "bucket=q", ADMIN_TOKEN, body).await.status,
        204
    );
    let bound = POOL + 256 * MIB;

    let series = sql_path(
        "q",
        "SELECT * FROM generate_series(1, 20000000000)",
        "jsonl",
    );
    let one = stalled_reader(&server, &series, 64 * MIB).await;
    assert!(one.head.starts_with("HTTP/1.1 200"), "{}", one.head);
    rss_stays_under(&server, bound, Duration::from_secs(3)).await;
    assert_writable(&server, 2).await;

    // Eight at once, the JSON array and CSV forms and the cross join among them.
    let join = sql_path("q", "SELECT * FROM t a CROSS JOIN t b", "json");
    let csv = sql_path("q", "SELECT * FROM generate_series(1, 20000000000)", "csv");
    let mut readers = Vec::new();
    for i in 0..8 {
        let path = match i % 3 {
            0 => &series,
            1 => &join,
            _ => &csv,
        };
        readers.push(stalled_reader(&server, path, 64 * MIB));
    }
    let readers = futures::future::join_all(readers).await;
    for r in &readers {
        assert!(r.head.starts_with("HTTP/1.1 200"), "{}", r.head);
    }
    let peak = rss_stays_under(&server, bound, Duration::from_secs(3)).await;
    eprintln!("peak RSS with nine stalled readers: {} MiB", peak / MIB);
    assert_writable(&server, 3).await;
    drop(readers);
    drop(one);
    assert!(server.stop().success());
}

/// A query past `--query-timeout` is cancelled: before its first row it is
/// answered 504 with the limit named; a reader that stalls mid-answer has its
/// answer cut (never completed) and its slot freed. Past
/// `--max-concurrent-queries` a query waits `--query-queue-timeout`, then 503
/// with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_queries_time_out_and_excess_queries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--snapshot-interval",
            "1h",
            "--query-timeout",
            "3s",
            "--max-concurrent-queries",
            "1",
            "--query-queue-timeout",
            "500ms",
        ],
    );
    assert_writable(&server, 1).await;
    let auth = format!("Token {ADMIN_TOKEN}");
    let get = |path: String| {
        let url = server.url(&path);
        let auth = auth.clone();
        async move { request("GET", &url, &[("authorization", &auth)], "").await }
    };

    // Counting 20 billion rows takes minutes: cut at 3 s, before any answer.
    let started = Instant::now();
    let count = sql_path(
        "q",
        "SELECT count(*) FROM generate_series(1, 20000000000)",
        "json",
    );
    let r = get(count).await;
    assert_eq!(r.status, 504, "{}", String::from_utf8_lossy(&r.body));
    let message = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        message.contains("query-timeout limit exceeded") && message.contains("3s"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // InfluxQL over /query answers the same way.
    let form = serde_urlencoded::to_string([("db", "q"), ("q", "SELECT v FROM alive")]).unwrap();
    let r = get(format!("/query?{form}")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // A reader that stops reading holds the only slot until the deadline.
    let series = sql_path(
        "q",
        "SELECT * FROM generate_series(1, 20000000000)",
        "jsonl",
    );
    let mut stalled = stalled_reader(&server, &series, 4 * MIB).await;
    let held_from = Instant::now();
    let r = get(sql_path("q", "SELECT 1 AS one", "json")).await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["retry-after"], "1");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("--max-concurrent-queries")
    );
    let form = serde_urlencoded::to_string([("db", "q"), ("q", "SELECT v FROM alive")]).unwrap();
    let r = get(format!("/query?{form}")).await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    // Writes are not queries: they go on.
    let line = "alive,probe=p v=2i 2";
    assert_eq!(
        write(&server, "bucket=q", ADMIN_TOKEN, line).await.status,
        204
    );

    // After the deadline the slot is free again, and the stalled answer, read
    // to its end, is cut: no closing chunk.
    let mut freed = false;
    while held_from.elapsed() < Duration::from_secs(15) {
        let r = get(sql_path("q", "SELECT 1 AS one", "json")).await;
        if r.status == 200 {
            assert_eq!(r.json(), serde_json::json!([{"one": 1}]));
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        freed,
        "the stalled query's slot was not freed after its deadline"
    );
    assert!(
        held_from.elapsed() >= Duration::from_secs(2),
        "freed before the deadline"
    );
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        stalled._socket.read_to_end(&mut rest),
    )
    .await;
    let tail = match read {
        Ok(Ok(_)) | Ok(Err(_)) => rest,
        Err(_) => panic!("the cut answer's connection stayed open"),
    };
    assert!(
        !tail.ends_with(b"\r\n0\r\n\r\n"),
        "the cut answer looks complete"
    );
    assert!(server.stop().success());
}

async fn ask_sql(server: &Server, db: &str, q: &str) -> serde_json::Value {
    let auth = format!("Token {ADMIN_TOKEN}");
    let url = server.url(&sql_path(db, q, "json"));
    let r = request("GET", &url, &[("authorization", &auth)], "").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// A scan streams: a million points in Parquet (about 40 MB as Arrow) are
/// counted and summed under a 32 MiB query pool, by host too, with the
/// server's memory bounded. The scan used to gather every row into memory
/// and count it against the pool, so these answered 503.
///
/// While the points are still buffered, folding them (fetched and folded:
/// about 80 MB) fits a 128 MiB pool. Batches decoded from Flight share one
/// message buffer per batch, and counting each column as that whole buffer
/// made the same query ask for about 4 times what it held ("Failed to
/// allocate additional 152.7 MB for buffered rows", 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_larger_than_the_memory_pool_streams() {
    const HOSTS: u64 = 100;
    const POINTS: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let pool = (128 * MIB).to_string();
    let server = Server::start(
        dir.path(),
        &["--snapshot-interval", "1h", "--query-memory-bytes", &pool],
    );
    for h in 0..HOSTS {
        let body: String = (0..POINTS)
            .map(|t| format!("m,host=h{h:03} a={t}i,b={h}.5 {t}\n"))
            .collect();
        let r = write(&server, "bucket=big&precision=s", ADMIN_TOKEN, body).await;
        assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    }
    let count = "SELECT count(*) AS n, sum(a) AS s FROM m";
    let per_host_sum = POINTS * (POINTS - 1) / 2;
    let expected = serde_json::json!([{ "n": HOSTS * POINTS, "s": HOSTS * per_host_sum }]);
    assert_eq!(ask_sql(&server, "big", count).await, expected);
    // A clean stop persists the buffer: every row is in Parquet after it.
    assert!(server.stop().success());
    let pool = (32 * MIB).to_string();
    let server = Server::start(dir.path(), &["--query-memory-bytes", &pool]);
    let ask = |q: &'static str| ask_sql(&server, "big", q);
    assert_eq!(ask(count).await, expected);
    let by_host =
        ask("SELECT host, count(*) AS n, max(b) AS b FROM m GROUP BY host ORDER BY host").await;
    let rows = by_host.as_array().unwrap();
    assert_eq!(rows.len() as u64, HOSTS);
    assert_eq!(
        rows[42],
        serde_json::json!({ "host": "h042", "n": POINTS, "b": 42.5 })
    );
    let peak = peak_rss(&server);
    eprintln!("peak RSS scanning 1M points: {} MiB", peak / MIB);
    assert!(peak < 32 * MIB + 256 * MIB, "peak RSS {} MiB", peak / MIB);
    assert!(server.stop().success());
}
