//! Interoperability with the client libraries users run, pinned in
//! `tests/clients/requirements.txt` and installed by `tests/run.sh`.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{Server, create_token, parquet_rows};

/// The venv's Python: `INFLOW_TEST_PYTHON`, else the venv `tests/run.sh` makes.
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("INFLOW_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    assert!(
        venv.exists(),
        "no Python venv with the client libraries: run tests/run.sh (it installs them)"
    );
    venv
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// The official Python `influxdb-client` writes 100,000 points with gzip and its
/// batching write API; every one is read back from Parquet with exact values.
#[tokio::test]
async fn python_influxdb_client_writes_100k_points() {
    const N: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--snapshot-interval", "2s"]);
    let token = create_token(dir.path(), "pydb", "write");
    let out = Command::new(python())
        .arg(script("python_v2_write.py"))
        .args([&server.base, &token, "pydb", &N.to_string()])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.stop().success());

    let mut rows = parquet_rows(dir.path(), "pydb", "pyclient").await;
    assert_eq!(rows.len(), N);
    rows.sort_by_key(|r| r["count"].parse::<usize>().unwrap());
    for (i, r) in rows.iter().enumerate() {
        let value = i as f64 * 0.25;
        let expected = [
            ("host", format!("h{}", i % 100)),
            ("region", format!("r{}", i % 7)),
            ("value", format!("{value:?}")),
            ("count", i.to_string()),
            ("ok", (i % 3 == 0).to_string()),
            ("msg", format!("m{i} \"q\" \\ é")),
            (
                "time",
                (1_700_000_000_000_000_000i64 + i as i64 * 1000).to_string(),
            ),
        ];
        for (k, v) in &expected {
            assert_eq!(&r[*k], v, "point {i}, column {k}: {r:?}");
        }
        assert_eq!(r.len(), expected.len(), "point {i}: {r:?}");
    }
}
