//! `inflow bench write` runs against a real server and reports what it promises.

use std::collections::BTreeMap;
use std::process::Command;

use crate::harness::{ADMIN_TOKEN, Server, binary, parquet_rows};

/// The report's `key: value` lines.
fn report(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn number(s: &str) -> f64 {
    s.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {s:?}"))
}

#[tokio::test]
async fn bench_write_sends_the_corpus_and_reports_well_formed_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let pid = server.pid().to_string();
    for rate in [None, Some("20000")] {
        let mut cmd = Command::new(binary());
        cmd.args([
            "bench",
            "write",
            "--url",
            &server.base,
            "--token",
            ADMIN_TOKEN,
        ])
        .args(["--database", "bench", "--connections", "2", "--hosts", "10"])
        .args(["--lines-per-batch", "200", "--batches", "4"])
        .args(["--server-pid", &pid]);
        if let Some(rate) = rate {
            cmd.args(["--rate", rate]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let r = report(&stdout);
        assert_eq!(
            r["requests"],
            "4 x 200 lines over 2 connections in ".to_string()
                + r["requests"].rsplit(' ').next().unwrap(),
            "{stdout}"
        );
        assert_eq!(r["shed (503 + Retry-After)"], "0");
        for key in ["lines/s", "fields/s", "MB/s (uncompressed line protocol)"] {
            assert!(number(&r[key]) > 0.0, "{key}: {stdout}");
        }
        let fields = number(&r["fields/s"]) / number(&r["lines/s"]);
        assert!((fields - 10.0).abs() < 0.01, "10 fields a line: {stdout}");
        let latency = &r["latency p50"];
        let (p50, p99) = latency.split_once(" ms, p99: ").expect(latency);
        assert!(number(p50) > 0.0 && number(p99) >= number(p50), "{stdout}");
        assert!(number(&r["server CPU"]) > 0.0, "{stdout}");
        assert!(number(&r["server peak RSS"]) > 1.0, "{stdout}");
        assert_eq!(
            r.contains_key("offered"),
            rate.is_some(),
            "open loop reports its rate: {stdout}"
        );
    }
    assert!(server.stop().success());
    // Each run wrote 800 deterministic lines; timestamps end at the run's 10 s
    // tick, so the two runs are the same points unless a tick passed between.
    let rows = parquet_rows(dir.path(), "bench", "cpu").await;
    assert!(rows.len() == 800 || rows.len() == 1600, "{}", rows.len());
    assert!(rows.iter().all(|r| r.len() == 10 + 10 + 1), "{:?}", rows[0]);
}
