//! `inflow bench write`: an end-to-end load generator for any v2 write endpoint.
//!
//! It builds a deterministic TSBS-style `cpu` corpus (hosts × ticks, 10 tags, 10
//! float fields, recent timestamps), gzips it in batches, and sends the batches over
//! N connections. It reports lines/s, fields/s, MB/s, latency percentiles, and, when
//! given the server's pid, the server's CPU seconds and peak RSS. Bounded in batches
//! and in time; it only talks to the URL it is given.
//!
//! Without `--rate` every connection sends as fast as the server answers (closed
//! loop: peak throughput). With `--rate` requests leave on a fixed schedule and
//! latency counts from the scheduled time, so a slow server cannot hide its
//! queueing (open loop, no coordinated omission). A 503 with `Retry-After` is
//! load shedding, reported apart; any other failure fails the run.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;

use crate::clock::Clock;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, Clone, Args)]
pub struct WriteBenchArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8086")]
    pub url: String,
    /// Token sent as `Authorization: Token …`.
    #[arg(long, env = "INFLOW_TOKEN", default_value = "")]
    pub token: String,
    /// Database (bucket) to write to.
    #[arg(long, default_value = "bench")]
    pub database: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Distinct hosts (series) in the corpus.
    #[arg(long, default_value_t = 1000)]
    pub hosts: usize,
    /// Lines per request.
    #[arg(long, default_value_t = 5000)]
    pub lines_per_batch: usize,
    /// Requests to send in all.
    #[arg(long, default_value_t = 200)]
    pub batches: usize,
    /// Stop sending after this long even if batches remain.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub max_duration: Duration,
    /// The server's pid, to report its CPU seconds and peak RSS (Linux /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Send at this many lines per second in all (open loop) instead of as
    /// fast as the server answers.
    #[arg(long)]
    pub rate: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bad URL: {0}")]
    Url(String),
    #[error("{failed} of {sent} requests failed; first: {first}")]
    Failed {
        failed: usize,
        sent: usize,
        first: String,
    },
}

/// The tag values of the TSBS `cpu` use case, chosen per host.
const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];
const FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];

/// The `i`-th line of the corpus: host `i % hosts` at tick `i / hosts` (10 s apart).
pub fn corpus_line(out: &mut String, i: usize, hosts: usize, start_ns: i64) {
    let host = i % hosts;
    let tick = (i / hosts) as i64;
    let region = REGIONS[host % REGIONS.len()];
    let _ = write!(
        out,
        "cpu,hostname=host_{host},region={region},datacenter={region}{dc},rack={rack},os=Ubuntu{os},arch=x{arch},team={team},service={svc},service_version={ver},service_environment={env} ",
        dc = ["a", "b", "c"][host % 3],
        rack = host % 100,
        os = [16, 18, 20][host % 3],
        arch = [64, 86][host % 2],
        team = ["SF", "NYC", "LON", "CHI"][host % 4],
        svc = host % 20,
        ver = host % 2,
        env = ["production", "staging", "test"][host % 3],
    );
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for (k, f) in FIELDS.iter().enumerate() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = (x % 10_000) as f64 / 100.0;
        let sep = if k == 0 { "" } else { "," };
        let _ = write!(out, "{sep}{f}={v}");
    }
    let _ = writeln!(out, " {}", start_ns + tick * 10_000_000_000);
}

fn gzip(text: &str) -> Bytes {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(text.as_bytes()).expect("writing to a Vec");
    Bytes::from(e.finish().expect("writing to a Vec"))
}

struct Sample {
    latency: Duration,
    outcome: Outcome,
}

enum Outcome {
    Accepted,
    /// 503 with `Retry-After`: the server shed the load, as it should.
    Shed,
    Failed(String),
}

pub async fn run(args: WriteBenchArgs) -> Result<String, BenchError> {
    let uri: hyper::Uri = format!(
        "{}/api/v2/write?bucket={}&org=bench&precision=ns",
        args.url.trim_end_matches('/'),
        args.database
    )
    .parse()
    .map_err(|e: hyper::http::uri::InvalidUri| BenchError::Url(e.to_string()))?;

    // Recent timestamps, so stores with retention keep every point.
    let ticks = (args.batches * args.lines_per_batch).div_ceil(args.hosts.max(1)) as i64;
    let now_ns = crate::clock::SystemClock.now_ns();
    let start_ns = (now_ns / 10_000_000_000 - ticks) * 10_000_000_000;
    let gen_started = Instant::now();
    let (bodies, raw_bytes): (Vec<Bytes>, usize) = {
        let mut raw = 0;
        let bodies = (0..args.batches)
            .map(|b| {
                let mut text = String::with_capacity(args.lines_per_batch * 330);
                for i in b * args.lines_per_batch..(b + 1) * args.lines_per_batch {
                    corpus_line(&mut text, i, args.hosts.max(1), start_ns);
                }
                raw += text.len();
                gzip(&text)
            })
            .collect();
        (bodies, raw)
    };
    let gz_bytes: usize = bodies.iter().map(Bytes::len).sum();
    eprintln!(
        "generated {} batches of {} lines ({} MB raw, {} MB gzip) in {:.1}s",
        args.batches,
        args.lines_per_batch,
        raw_bytes / 1_000_000,
        gz_bytes / 1_000_000,
        gen_started.elapsed().as_secs_f64()
    );

    let cpu_before = args.server_pid.and_then(process_cpu_seconds);
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + args.max_duration;
    // Open loop: request i leaves at started + i * interval, whichever
    // connection is free to send it.
    let interval = args
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(args.lines_per_batch as f64 / r));
    let tasks: Vec<_> = (0..args.connections.max(1))
        .map(|_| {
            let (bodies, next, uri, token) = (
                Arc::clone(&bodies),
                Arc::clone(&next),
                uri.clone(),
                args.token.clone(),
            );
            tokio::spawn(async move {
                // No Nagle, as Telegraf (Go) and urllib3 do: otherwise a
                // body's last partial segment can wait out the server's
                // delayed ACK (40 ms) and the bench measures that.
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(1)
                    .build(connector);
                let mut samples = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= bodies.len() || Instant::now() >= deadline {
                        return samples;
                    }
                    let t = match interval {
                        Some(every) => {
                            let at = started + every * i as u32;
                            tokio::time::sleep_until(at.into()).await;
                            at
                        }
                        None => Instant::now(),
                    };
                    let request = hyper::Request::post(uri.clone())
                        .header("authorization", format!("Token {token}"))
                        .header("content-encoding", "gzip")
                        .header("content-type", "text/plain; charset=utf-8")
                        .body(Full::new(bodies[i].clone()))
                        .expect("valid request");
                    let outcome = match client.request(request).await {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            let retry_after = resp.headers().contains_key("retry-after");
                            let body = resp
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            match status {
                                204 => Outcome::Accepted,
                                503 if retry_after => Outcome::Shed,
                                _ => Outcome::Failed(format!(
                                    "{status}: {}",
                                    String::from_utf8_lossy(&body)
                                )),
                            }
                        }
                        Err(e) => Outcome::Failed(e.to_string()),
                    };
                    samples.push(Sample {
                        latency: t.elapsed(),
                        outcome,
                    });
                }
            })
        })
        .collect();
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, args.server_pid.and_then(process_cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let rss = args.server_pid.and_then(peak_rss_bytes);

    let failed: Vec<&str> = samples
        .iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Failed(e) => Some(e.as_str()),
            _ => None,
        })
        .collect();
    if let Some(first) = failed.first() {
        return Err(BenchError::Failed {
            failed: failed.len(),
            sent: samples.len(),
            first: first.to_string(),
        });
    }
    let shed = samples
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Shed))
        .count();
    let sent = samples.len() - shed;
    let lines = (sent * args.lines_per_batch) as f64;
    let raw_per_batch = raw_bytes as f64 / args.batches as f64;
    let mut lat: Vec<Duration> = samples
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Accepted))
        .map(|s| s.latency)
        .collect();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let mut report = String::new();
    let _ = writeln!(
        report,
        "requests: {sent} x {} lines over {} connections in {elapsed:.2}s",
        args.lines_per_batch, args.connections
    );
    if let Some(rate) = args.rate {
        let _ = writeln!(report, "offered: {rate:.0} lines/s (open loop)");
    }
    let _ = writeln!(report, "shed (503 + Retry-After): {shed}");
    let _ = writeln!(report, "lines/s: {:.0}", lines / elapsed);
    let _ = writeln!(
        report,
        "fields/s: {:.0}",
        lines * FIELDS.len() as f64 / elapsed
    );
    let _ = writeln!(
        report,
        "MB/s (uncompressed line protocol): {:.1}",
        raw_per_batch * sent as f64 / elapsed / 1e6
    );
    let _ = writeln!(
        report,
        "latency p50: {:.1} ms, p99: {:.1} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
    if let Some(cpu) = cpu {
        let _ = writeln!(
            report,
            "server CPU: {cpu:.2} s ({:.0} lines per CPU-second)",
            lines / cpu.max(1e-9)
        );
    }
    if let Some(rss) = rss {
        let _ = writeln!(report, "server peak RSS: {} MiB", rss >> 20);
    }
    Ok(report)
}

/// The CPU time of a process, all its threads (exited ones too), in seconds.
/// Read from its CPU-time clock, to the nanosecond: utime and stime in
/// `/proc/<pid>/stat` count whole ticks (10 ms), which a short run can stay under.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let mut clock: libc::clockid_t = 0;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both calls only write through the valid pointers they are given.
    unsafe {
        if libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) != 0
            || libc::clock_gettime(clock, &mut now) != 0
        {
            return None;
        }
    }
    Some(now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9)
}

/// VmHWM: the peak resident set size of a process.
fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_deterministic_tsbs_cpu() {
        let (mut a, mut b) = (String::new(), String::new());
        corpus_line(&mut a, 1234, 1000, 0);
        corpus_line(&mut b, 1234, 1000, 0);
        assert_eq!(a, b);
        assert!(a.starts_with("cpu,hostname=host_234,region="));
        assert_eq!(a.matches('=').count(), 20, "10 tags and 10 fields: {a}");
        assert!(a.ends_with(" 10000000000\n"), "{a}");
    }

    /// Finer than a clock tick: a few milliseconds of work show.
    #[test]
    fn cpu_time_is_read_to_below_a_tick() {
        let cpu = || process_cpu_seconds(std::process::id()).unwrap();
        let before = cpu();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(3) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let spent = cpu() - before;
        assert!(spent > 0.0 && spent < 1.0, "{spent} s ({x} loops)");
        assert!(peak_rss_bytes(std::process::id()).unwrap() > 0);
    }
}
