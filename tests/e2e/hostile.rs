//! The hostile-client run: every kind of careless or malicious client this
//! suite knows, against one server at once for a minute (`INFLOW_HOSTILE_SECS`),
//! beside a well-behaved writer. At the end the server must be writable, and
//! every write it acknowledged must be there, before and after a `kill -9`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{ADMIN_TOKEN, Server, request, write};

const DB: &str = "hostile";

fn run_for() -> Duration {
    let secs = std::env::var("INFLOW_HOSTILE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// What the well-behaved writer saw.
#[derive(Default)]
struct Ledger {
    /// Ids of lines in writes answered 204.
    acked: BTreeSet<u64>,
    /// Ids of lines in writes whose answer never came (written or not).
    unknown: BTreeSet<u64>,
    refused: u64,
}

/// Writes batches of 200 lines with unique ids until `until`, retrying a 503
/// as a client should; anything else but 204 fails the run.
async fn good_writer(server: Arc<Server>, until: Instant) -> Ledger {
    let mut ledger = Ledger::default();
    let mut next = 0u64;
    let auth = format!("Token {ADMIN_TOKEN}");
    while Instant::now() < until {
        let ids: Vec<u64> = (next..next + 200).collect();
        next += 200;
        let body: String = ids
            .iter()
            .map(|i| {
                format!(
                    "good,writer=w{} id={i}i {}\n",
                    i % 7,
                    1_700_000_000_000_000_000 + i
                )
            })
            .collect();
        loop {
            let url = server.url(&format!("/api/v2/write?bucket={DB}&org="));
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Full<bytes::Bytes>>();
            let req = http::Request::post(url)
                .header("authorization", &auth)
                .body(http_body_util::Full::new(bytes::Bytes::from(body.clone())))
                .unwrap();
            match tokio::time::timeout(Duration::from_secs(30), client.request(req)).await {
                Ok(Ok(r)) if r.status() == 204 => {
                    ledger.acked.extend(&ids);
                    break;
                }
                Ok(Ok(r)) if r.status() == 503 => {
                    ledger.refused += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Ok(r)) => panic!("the good writer got {}", r.status()),
                Ok(Err(_)) | Err(_) => {
                    ledger.unknown.extend(&ids);
                    break;
                }
            }
        }
    }
    ledger
}

/// Reads `bytes` of an answer over a raw connection, then stops reading for
/// `hold` with the connection open.
async fn stalled_read(base: &str, path: &str, bytes: usize, hold: Duration) {
    let host = base.trim_start_matches("http://");
    let Ok(mut socket) = TcpStream::connect(host).await else {
        return;
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Token {ADMIN_TOKEN}\r\n\r\n"
    );
    if socket.write_all(request.as_bytes()).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0;
    while got < bytes {
        match tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got += n,
            _ => break,
        }
    }
    tokio::time::sleep(hold).await;
}

fn sql_path(q: &str) -> String {
    let query = serde_urlencoded::to_string([("db", DB), ("q", q), ("format", "jsonl")]).unwrap();
    format!("/api/v3/query_sql?{query}")
}

/// Readers of answers far larger than the server's memory, that stop reading.
async fn huge_readers(base: String, until: Instant, done: Arc<AtomicU64>) {
    let path = sql_path("SELECT * FROM generate_series(1, 20000000000)");
    while Instant::now() < until {
        let readers = (0..4).map(|_| stalled_read(&base, &path, 4 << 20, Duration::from_secs(2)));
        futures::future::join_all(readers).await;
        done.fetch_add(4, Ordering::Relaxed);
    }
}

/// Queries that run past `--query-timeout`.
async fn endless_queries(base: String, until: Instant, done: Arc<AtomicU64>) {
    let auth = format!("Token {ADMIN_TOKEN}");
    let path = sql_path("SELECT count(*) FROM generate_series(1, 20000000000)");
    while Instant::now() < until {
        let r = request(
            "GET",
            &format!("{base}{path}"),
            &[("authorization", &auth)],
            "",
        )
        .await;
        assert!(
            matches!(r.status, 503 | 504),
            "an endless query got {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes with random tokens (each a catalog miss), names the server keeps for
/// itself, and Telegraf's `org=`.
async fn careless_writers(server: Arc<Server>, until: Instant, done: Arc<AtomicU64>) {
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let r = write(
            &server,
            &format!("bucket={DB}"),
            &format!("inflow_random{n}"),
            "m v=1",
        )
        .await;
        assert_eq!(r.status, 401, "an unknown token");
        let body = format!("careless _inflow_seq={n}i,v=1 {n}\ncareless v=2 {n}\n");
        let r = write(&server, &format!("bucket={DB}&org="), ADMIN_TOKEN, body).await;
        assert!(
            matches!(r.status, 400 | 503),
            "a reserved name got {}",
            r.status
        );
        done.fetch_add(2, Ordering::Relaxed);
    }
}

/// Connections that send half a request line and stall, over and over.
async fn slow_loris(base: String, until: Instant, done: Arc<AtomicU64>) {
    let host = base.trim_start_matches("http://").to_string();
    while Instant::now() < until {
        let mut held = Vec::new();
        for _ in 0..200 {
            if let Ok(mut s) = TcpStream::connect(&host).await
                && s.write_all(b"POST /api/v2/wri").await.is_ok()
            {
                held.push(s);
            }
        }
        done.fetch_add(held.len() as u64, Ordering::Relaxed);
        // The header timeout closes them; a read then ends.
        let closed = held.into_iter().map(|mut s| async move {
            let mut buf = [0u8; 64];
            tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
                .await
                .is_ok()
        });
        let closed = futures::future::join_all(closed).await;
        assert!(
            closed.iter().all(|c| *c),
            "a half request outlived the header timeout"
        );
    }
}

/// Authenticated uploads that declare 1 MB (under the limit) and stall after 1 KB.
async fn stalled_uploads(base: String, until: Instant, done: Arc<AtomicU64>) {
    let host = base.trim_start_matches("http://").to_string();
    while Instant::now() < until {
        let uploads = (0..20).map(|_| async {
            let mut s = TcpStream::connect(&host).await.ok()?;
            let head = format!(
                "POST /api/v2/write?bucket={DB} HTTP/1.1\r\nHost: {host}\r\n\
                 Authorization: Token {ADMIN_TOKEN}\r\nContent-Length: 1000000\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.ok()?;
            s.write_all(&[b'x'; 1024]).await.ok()?;
            let mut answer = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer));
            read.await.ok()?.ok()?;
            Some(String::from_utf8_lossy(&answer).into_owned())
        });
        for answer in futures::future::join_all(uploads).await {
            let answer = answer.expect("a stalled upload was neither answered nor closed");
            assert!(
                answer.is_empty()
                    || answer.starts_with("HTTP/1.1 408")
                    || answer.starts_with("HTTP/1.1 503"),
                "a stalled upload got {answer}"
            );
        }
        done.fetch_add(20, Ordering::Relaxed);
    }
}

/// Flight producers: batches over the size limit, and unknown tokens.
async fn hostile_producers(server: Arc<Server>, until: Instant, done: Arc<AtomicU64>) {
    while Instant::now() < until {
        let big = crate::flight_limits::batch("h", 200_000, 1_700_000_000_000_000_000);
        let e = crate::flight_limits::put(&server, ADMIN_TOKEN, [DB, "big"], big)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
        let small = crate::flight_limits::batch("h", 10, 1_700_000_000_000_000_000);
        let e = crate::flight_limits::put(&server, "inflow_forged", [DB, "small"], small)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
        done.fetch_add(2, Ordering::Relaxed);
    }
}

/// Deletes a database and makes it again under the same name, with the same
/// table's column typed otherwise each time: only the new rows answer, and
/// snapshots go on (the good writer's data reaches Parquet beside it).
async fn name_churn(server: Arc<Server>, until: Instant, done: Arc<AtomicU64>) {
    let auth = format!("Token {ADMIN_TOKEN}");
    let path = "/api/v3/configure/database";
    let mut round = 0u64;
    while Instant::now() < until {
        round += 1;
        let line = if round.is_multiple_of(2) {
            format!("m f={round}i {round}")
        } else {
            format!("m f=\"r{round}\" {round}")
        };
        let r = write(&server, "bucket=churn", ADMIN_TOKEN, line).await;
        assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
        let q = serde_urlencoded::to_string([("db", "churn"), ("q", "SELECT f FROM m")]).unwrap();
        let r = request(
            "GET",
            &server.url(&format!("/api/v3/query_sql?{q}")),
            &[("authorization", &auth)],
            "",
        )
        .await;
        match r.status {
            200 => {
                let expected = if round.is_multiple_of(2) {
                    serde_json::json!([{ "f": round }])
                } else {
                    serde_json::json!([{ "f": format!("r{round}") }])
                };
                assert_eq!(
                    r.json(),
                    expected,
                    "round {round}: only the new database's rows"
                );
            }
            503 | 504 => {} // the query slots are taken by the other actors
            other => panic!(
                "churn query got {other}: {}",
                String::from_utf8_lossy(&r.body)
            ),
        }
        let r = request(
            "DELETE",
            &server.url(&format!("{path}?db=churn")),
            &[("authorization", &auth)],
            "",
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Statements nested far past the expression depth limit (each would have
/// overflowed a thread's stack and aborted the process), InfluxQL and SQL.
async fn deep_statements(base: String, until: Instant, done: Arc<AtomicU64>) {
    let auth = format!("Token {ADMIN_TOKEN}");
    let ors = vec!["v=1"; 100_000].join(" OR ");
    let influxql = format!("SELECT v FROM m WHERE {ors}");
    let sums = format!("SELECT {}", vec!["1"; 50_000].join("+"));
    while Instant::now() < until {
        let form = serde_urlencoded::to_string([("db", DB), ("q", influxql.as_str())]).unwrap();
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        let r = request("POST", &format!("{base}/query"), &headers, form).await;
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
        let body = serde_json::json!({ "db": DB, "q": sums }).to_string();
        let r = request(
            "POST",
            &format!("{base}/api/v3/query_sql"),
            &[("authorization", &auth)],
            body,
        )
        .await;
        assert!(matches!(r.status, 400 | 503), "deep SQL got {}", r.status);
        done.fetch_add(2, Ordering::Relaxed);
    }
}

async fn acknowledged_are_there(server: &Server, ledger: &Ledger) {
    let auth = format!("Token {ADMIN_TOKEN}");
    let path = sql_path("SELECT id FROM good");
    let r = request("GET", &server.url(&path), &[("authorization", &auth)], "").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let found: BTreeSet<u64> = String::from_utf8_lossy(&r.body)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let missing: Vec<&u64> = ledger.acked.difference(&found).take(10).collect();
    assert!(missing.is_empty(), "acknowledged but missing: {missing:?}…");
    let extra = found
        .iter()
        .filter(|i| !ledger.acked.contains(i) && !ledger.unknown.contains(i))
        .count();
    assert_eq!(extra, 0, "rows nobody wrote");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_clients_for_a_minute_lose_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--snapshot-interval",
        "2s",
        "--query-memory-bytes",
        "134217728",
        "--query-timeout",
        "3s",
        "--max-concurrent-queries",
        "4",
        "--query-queue-timeout",
        "200ms",
        "--http-header-read-timeout",
        "2s",
        "--http-body-read-timeout",
        "2s",
        "--max-request-bytes",
        "1048576",
    ];
    let server = Arc::new(Server::start(dir.path(), &args));
    let r = write(
        &server,
        &format!("bucket={DB}"),
        ADMIN_TOKEN,
        "before v=1 1",
    )
    .await;
    assert_eq!(r.status, 204, "the database is made by a first write");
    let until = Instant::now() + run_for();
    let counts: Vec<Arc<AtomicU64>> = (0..8).map(|_| Arc::default()).collect();
    let writer = tokio::spawn(good_writer(Arc::clone(&server), until));
    let actors = vec![
        tokio::spawn(huge_readers(
            server.base.clone(),
            until,
            Arc::clone(&counts[0]),
        )),
        tokio::spawn(endless_queries(
            server.base.clone(),
            until,
            Arc::clone(&counts[1]),
        )),
        tokio::spawn(careless_writers(
            Arc::clone(&server),
            until,
            Arc::clone(&counts[2]),
        )),
        tokio::spawn(slow_loris(
            server.base.clone(),
            until,
            Arc::clone(&counts[3]),
        )),
        tokio::spawn(stalled_uploads(
            server.base.clone(),
            until,
            Arc::clone(&counts[4]),
        )),
        tokio::spawn(hostile_producers(
            Arc::clone(&server),
            until,
            Arc::clone(&counts[5]),
        )),
        tokio::spawn(name_churn(
            Arc::clone(&server),
            until,
            Arc::clone(&counts[6]),
        )),
        tokio::spawn(deep_statements(
            server.base.clone(),
            until,
            Arc::clone(&counts[7]),
        )),
    ];
    for actor in actors {
        actor.await.expect("a hostile actor's checks");
    }
    let ledger = writer.await.expect("the good writer");
    eprintln!(
        "hostile run: {} lines acknowledged, {} unknown, {} writes retried after 503; \
         huge readers {}, endless queries {}, careless writes {}, half requests {}, \
         stalled uploads {}, hostile producers {}, databases deleted {}, deep statements {}",
        ledger.acked.len(),
        ledger.unknown.len(),
        ledger.refused,
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
        counts[2].load(Ordering::Relaxed),
        counts[3].load(Ordering::Relaxed),
        counts[4].load(Ordering::Relaxed),
        counts[5].load(Ordering::Relaxed),
        counts[6].load(Ordering::Relaxed),
        counts[7].load(Ordering::Relaxed),
    );
    assert!(
        ledger.acked.len() >= 200,
        "the good writer got nothing through"
    );
    for c in &counts {
        assert!(c.load(Ordering::Relaxed) > 0, "an actor never ran");
    }
    let r = write(&server, &format!("bucket={DB}"), ADMIN_TOKEN, "after v=1 1").await;
    assert_eq!(r.status, 204, "writable at the end");
    acknowledged_are_there(&server, &ledger).await;

    // And after a crash: the WAL has every acknowledged write.
    let server = Arc::try_unwrap(server)
        .ok()
        .expect("no actor holds the server");
    server.kill9();
    let server = Server::start(dir.path(), &args);
    acknowledged_are_there(&server, &ledger).await;
    assert!(server.stop().success());
}
