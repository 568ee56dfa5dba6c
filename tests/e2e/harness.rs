//! Starts the real `inflow` binary on an ephemeral port and talks to it over HTTP.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use arrow::util::display::array_value_to_string;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use inflow::catalog::Catalog;
use inflow::store::Store;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// The binary under test: cargo's, or `$INFLOW_TEST_BIN` (a copy, so a long
/// loop of one test keeps running one build while the tree is rebuilt).
pub fn binary() -> String {
    std::env::var("INFLOW_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_inflow").into())
}

pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub stdout_lines: Vec<String>,
}

impl Server {
    /// Starts `inflow serve` with the admin token in the environment.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(data_dir, extra, &[("INFLOW_ADMIN_TOKEN", ADMIN_TOKEN)])
    }

    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_logging_to(data_dir, extra, env, Stdio::inherit())
    }

    /// Like [`Server::start_with_env`], with the server's stderr (its logs)
    /// going to `stderr`; `extra` may set its own `--log-filter`.
    pub fn start_logging_to(
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Self {
        Self::try_start_logging_to(data_dir, extra, env, stderr).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Server::start_logging_to`], but a process that exits before it
    /// listens is an `Err` with what it printed (for a caller that retries).
    pub fn try_start_logging_to(
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Result<Self, String> {
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http-bind", "127.0.0.1:0"]);
        if !extra.contains(&"--log-filter") {
            let filter = std::env::var("INFLOW_TEST_LOG").unwrap_or_else(|_| "error".into());
            cmd.args(["--log-filter", &filter]);
        }
        cmd.args(extra)
            .env_remove("INFLOW_ADMIN_TOKEN")
            .env_remove("INFLOW_TOKEN")
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("inflow binary starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        let base = loop {
            let Some(line) = lines.next() else {
                let status = child.wait().expect("reaped");
                return Err(format!(
                    "inflow exited ({status}) before listening; stdout: {seen:?}"
                ));
            };
            let line = line.expect("stdout readable");
            seen.push(line.clone());
            if let Some(rest) = line.strip_prefix("inflow: listening on ") {
                break rest.split_whitespace().next().expect("address").to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Self {
            child: Some(child),
            base,
            stdout_lines: seen,
        })
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    /// The `host:port` an ingester printed as its gRPC address at start.
    pub fn grpc_addr(&self) -> String {
        self.stdout_lines
            .iter()
            .find_map(|l| l.split("grpc://").nth(1))
            .expect("ingester prints its gRPC address")
            .to_string()
    }

    /// SIGTERM, then wait for exit (graceful shutdown snapshots everything).
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) with a pid we own.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        wait_timeout(&mut child, Duration::from_secs(60))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal (`SIGSTOP` to pause the process, `SIGCONT` to resume it).
    pub fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("running");
        // SAFETY: kill(2) with a pid we own.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    }

    /// `kill -9`: no chance to flush or snapshot.
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("server did not exit within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends one request; `headers` are (name, value) pairs.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut builder = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let response = client
        .request(builder.body(Full::new(body.into())).expect("request"))
        .await
        .expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Response {
        status,
        headers,
        body,
    }
}

/// POST to the v2 write endpoint with `Authorization: Token …`.
pub async fn write(server: &Server, query: &str, token: &str, body: impl Into<Bytes>) -> Response {
    let auth = format!("Token {token}");
    request(
        "POST",
        &server.url(&format!("/api/v2/write?{query}")),
        &[("authorization", &auth)],
        body,
    )
    .await
}

/// A Flight client connected to `base` (`http://host:port`).
pub async fn flight_client(
    base: &str,
) -> arrow_flight::flight_service_client::FlightServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(base.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    arrow_flight::flight_service_client::FlightServiceClient::new(channel)
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Creates a token with the real CLI against the server's data dir.
pub fn create_token(data_dir: &Path, database: &str, permission: &str) -> String {
    let out = Command::new(binary())
        .args([
            "token",
            "create",
            "--database",
            database,
            "--permission",
            permission,
            "--data-dir",
        ])
        .arg(data_dir)
        .output()
        .expect("inflow token create runs");
    assert!(
        out.status.success(),
        "token create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .last()
        .expect("token on the last line")
        .to_string()
}

/// One row as column name → displayed value (nulls left out).
pub type Row = BTreeMap<String, String>;

/// Every row of `table` in `database`, read from the Parquet files the catalog
/// registers (the server must be stopped: what is still only in the WAL is not here).
pub async fn parquet_rows(data_dir: &Path, database: &str, table: &str) -> Vec<Row> {
    parquet_rows_in(&Store::local(data_dir).unwrap(), database, table).await
}

/// [`parquet_rows`] from any object store (S3 too). A database or table the
/// catalog does not know is a panic, not `[]`: an "is empty" check must not
/// pass because the name was wrong or nothing was ever written (say that with
/// [`assert_no_table`]).
pub async fn parquet_rows_in(store: &Store, database: &str, table: &str) -> Vec<Row> {
    let catalog = Catalog::load(store.clone()).await.unwrap();
    let state = catalog.state();
    let db = state
        .database(database)
        .unwrap_or_else(|| panic!("database {database:?} is not in the catalog"));
    let t = db
        .table(table)
        .unwrap_or_else(|| panic!("table {table:?} is not in database {database:?}"));
    let mut rows = Vec::new();
    for f in catalog
        .files()
        .into_iter()
        .filter(|f| f.database == db.id && f.table == t.id)
    {
        let file = store
            .get(&f.path.as_str().into())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.path));
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            for r in 0..batch.num_rows() {
                let mut row = Row::new();
                for (i, field) in batch.schema().fields().iter().enumerate() {
                    // The hidden write sequence is not user data.
                    if field.name() == inflow::schema::SEQUENCE_COLUMN {
                        continue;
                    }
                    let col = batch.column(i);
                    if col.is_valid(r) {
                        let v = if field.name() == "time" {
                            let t = col
                                .as_any()
                                .downcast_ref::<arrow::array::TimestampNanosecondArray>()
                                .unwrap();
                            t.value(r).to_string()
                        } else {
                            array_value_to_string(col, r).unwrap()
                        };
                        row.insert(field.name().clone(), v);
                    }
                }
                rows.push(row);
            }
        }
    }
    rows
}

/// Asserts that the catalog has no table `table` in `database` (or no such
/// database at all), and so no Parquet file of it: what a write refused as a
/// whole must leave behind.
pub async fn assert_no_table(data_dir: &Path, database: &str, table: &str) {
    let catalog = Catalog::load(Store::local(data_dir).unwrap())
        .await
        .unwrap();
    let state = catalog.state();
    if let Some(db) = state.database(database) {
        assert!(
            db.table(table).is_none(),
            "table {table:?} exists in database {database:?}"
        );
    }
}

/// The sorted column names the catalog has for `table` (which must exist).
pub async fn table_columns(data_dir: &Path, database: &str, table: &str) -> Vec<String> {
    let catalog = Catalog::load(Store::local(data_dir).unwrap())
        .await
        .unwrap();
    let state = catalog.state();
    let db = state
        .database(database)
        .unwrap_or_else(|| panic!("database {database:?} is not in the catalog"));
    let t = db
        .table(table)
        .unwrap_or_else(|| panic!("table {table:?} is not in database {database:?}"));
    let mut names: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
    names.sort();
    names
}

pub fn row(pairs: &[(&str, &str)]) -> Row {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Files below `dir` whose path contains `part`.
pub fn files_under(dir: &Path, part: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains(part) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Polls `check` every 100 ms until it holds, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
