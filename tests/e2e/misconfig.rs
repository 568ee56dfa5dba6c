//! Configurations that cannot do what they promise are refused at start.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::binary;

/// A router asked for more acknowledgements than it names ingesters exits
/// with the shortfall named, instead of acknowledging writes on fewer.
#[test]
fn more_write_replicas_than_ingesters_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("cluster-token");
    std::fs::write(&token, "cluster-secret").unwrap();
    let mut child = Command::new(binary())
        .args(["serve", "--role", "router", "--http-bind", "127.0.0.1:0"])
        .args([
            "--ingesters",
            "127.0.0.1:1,127.0.0.1:2",
            "--write-replicas",
            "3",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--cluster-token-file")
        .arg(&token)
        .env("INFLOW_ADMIN_TOKEN", "admin")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("inflow runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the router started and kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "exited 0: {stderr}");
    assert!(
        stderr.contains("--write-replicas is 3 but --ingesters names only 2"),
        "{stderr}"
    );
}
