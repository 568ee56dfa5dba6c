//! Split roles in separate processes: routers in front of stateless ingesters that
//! share one object store, with ingesters and a router killed under load.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use inflow::store::Store;

/// (host, batch, time): a point's identity in the chaos table.
type PointKey = (String, String, String);

use crate::harness::{
    ADMIN_TOKEN, Row, Server, eventually, parquet_rows, parquet_rows_in, request,
};

struct Cluster {
    /// Object store flags and environment every process gets.
    store_args: Vec<String>,
    /// Flags every ingester gets.
    ingester_args: Vec<String>,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    token_file: std::path::PathBuf,
    ingesters: Vec<Mutex<Option<Server>>>,
    ingester_addrs: Vec<String>,
    routers: Vec<Mutex<Option<Server>>>,
    router_urls: Vec<Mutex<String>>,
}

fn start_role(
    dir: &Path,
    args: &[&str],
    store_args: &[String],
    env: &[(String, String)],
) -> Server {
    try_start_role(dir, args, store_args, env).unwrap_or_else(|e| panic!("{e}"))
}

/// [`start_role`], with a process that exits before listening as an `Err`.
fn try_start_role(
    dir: &Path,
    args: &[&str],
    store_args: &[String],
    env: &[(String, String)],
) -> Result<Server, String> {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(store_args.iter().map(String::as_str));
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("INFLOW_ADMIN_TOKEN", ADMIN_TOKEN));
    Server::try_start_logging_to(dir, &all, &env, log_sink(args))
}

/// Each process's logs in a file of their own under `$INFLOW_TEST_LOG_DIR`
/// when set (to tell the processes of a failed chaos run apart), else stderr.
fn log_sink(args: &[&str]) -> std::process::Stdio {
    static STARTED: AtomicUsize = AtomicUsize::new(0);
    let Some(dir) = std::env::var_os("INFLOW_TEST_LOG_DIR") else {
        return std::process::Stdio::inherit();
    };
    let name = args
        .iter()
        .position(|a| *a == "--ingester-id")
        .map_or("router", |i| args[i + 1]);
    let n = STARTED.fetch_add(1, Ordering::Relaxed);
    let path = Path::new(&dir).join(format!("{n:03}-{name}.log"));
    std::fs::File::create(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into()
}

/// Ingester flags of most tests: snapshots often, and a short lease so a killed
/// ingester's WAL is taken over (or its restart claims it) within a second.
const INGESTER_ARGS: [&str; 4] = ["--snapshot-interval", "1s", "--lease-ttl", "1s"];

fn start_ingester(
    dir: &Path,
    token_file: &Path,
    id: &str,
    grpc: &str,
    store_args: &[String],
    env: &[(String, String)],
) -> (Server, String) {
    try_start_ingester(dir, token_file, id, grpc, store_args, env).unwrap_or_else(|e| panic!("{e}"))
}

/// [`start_ingester`], with an ingester that exits before listening (its
/// `--grpc-bind` port taken, say) as an `Err`.
fn try_start_ingester(
    dir: &Path,
    token_file: &Path,
    id: &str,
    grpc: &str,
    store_args: &[String],
    env: &[(String, String)],
) -> Result<(Server, String), String> {
    let token = token_file.to_str().unwrap();
    let args = [
        "--role",
        "ingester",
        "--ingester-id",
        id,
        "--grpc-bind",
        grpc,
        "--cluster-token-file",
        token,
    ];
    let server = try_start_role(dir, &args, store_args, env)?;
    let addr = server.grpc_addr();
    Ok((server, addr))
}

fn start_router(
    dir: &Path,
    token_file: &Path,
    ingesters: &str,
    store_args: &[String],
    env: &[(String, String)],
) -> Server {
    let token = token_file.to_str().unwrap();
    let args = [
        "--role",
        "router",
        "--ingesters",
        ingesters,
        "--cluster-token-file",
        token,
        "--write-timeout",
        "2s",
    ];
    start_role(dir, &args, store_args, env)
}

impl Cluster {
    /// On the local filesystem store under the cluster's temp dir.
    fn start(ingesters: usize, routers: usize) -> Self {
        Self::start_on(ingesters, routers, vec![], vec![])
    }

    fn start_on(
        ingesters: usize,
        routers: usize,
        store_args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Self {
        let ingester_args = INGESTER_ARGS.map(String::from).to_vec();
        Self::start_with(ingesters, routers, store_args, ingester_args, env)
    }

    fn start_with(
        ingesters: usize,
        routers: usize,
        store_args: Vec<String>,
        ingester_args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("cluster-token");
        std::fs::write(&token_file, "cluster-secret\n").unwrap();
        let data = dir.path().join("data");
        let mut servers = Vec::new();
        let mut addrs = Vec::new();
        let with_store = |extra: &[String]| [extra, &store_args].concat();
        for i in 0..ingesters {
            let (s, a) = start_ingester(
                &data,
                &token_file,
                &format!("ing-{i}"),
                "127.0.0.1:0",
                &with_store(&ingester_args),
                &env,
            );
            servers.push(Mutex::new(Some(s)));
            addrs.push(a);
        }
        let list = addrs.join(",");
        let routers: Vec<Server> = (0..routers)
            .map(|_| start_router(&data, &token_file, &list, &store_args, &env))
            .collect();
        Self {
            store_args,
            ingester_args,
            env,
            router_urls: routers.iter().map(|r| Mutex::new(r.base.clone())).collect(),
            routers: routers.into_iter().map(|r| Mutex::new(Some(r))).collect(),
            dir,
            token_file,
            ingesters: servers,
            ingester_addrs: addrs,
        }
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    fn kill_ingester(&self, i: usize) {
        if let Some(s) = self.ingesters[i].lock().take() {
            s.kill9();
        }
    }

    /// Ingester `i`'s `inflow_ingester_buffer_bytes`, scraped from its HTTP
    /// port: 0 before it published any (no write committed since it started).
    async fn buffer_bytes(&self, i: usize) -> i64 {
        let base = self.ingesters[i]
            .lock()
            .as_ref()
            .expect("running")
            .base
            .clone();
        let r = request("GET", &format!("{base}/metrics"), &[], "").await;
        assert_eq!(r.status, 200);
        let text = String::from_utf8_lossy(&r.body);
        let value = text
            .lines()
            .find(|l| l.starts_with("inflow_ingester_buffer_bytes{"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or("0");
        value.parse().unwrap()
    }

    /// SIGTERM to ingester `i`: it snapshots all it buffers and exits 0.
    fn stop_ingester(&self, i: usize) {
        if let Some(s) = self.ingesters[i].lock().take() {
            assert!(s.stop().success(), "ingester {i} exits 0");
        }
    }

    /// Starts ingester `i` again on its old gRPC address, the one the routers
    /// were given. Its first start bound port 0, so nothing raced for the port
    /// then; but once it died, another process may bind that port before it
    /// comes back. Then its start fails, and is retried (for at most 15 s)
    /// only while the port is seen taken: any other failure fails the test.
    fn restart_ingester(&self, i: usize) {
        let mut slot = self.ingesters[i].lock();
        if slot.is_some() {
            return;
        }
        let addr = &self.ingester_addrs[i];
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let started = try_start_ingester(
                &self.data(),
                &self.token_file,
                &format!("ing-{i}"),
                addr,
                &[&self.ingester_args[..], &self.store_args].concat(),
                &self.env,
            );
            match started {
                Ok((s, _)) => {
                    *slot = Some(s);
                    return;
                }
                Err(e) => {
                    let taken = matches!(
                        std::net::TcpListener::bind(addr.as_str()),
                        Err(b) if b.kind() == std::io::ErrorKind::AddrInUse
                    );
                    assert!(taken, "ingester {i} did not restart on {addr}: {e}");
                    assert!(
                        Instant::now() < deadline,
                        "ingester {i}: {addr} still taken by another process after 15 s: {e}"
                    );
                    // Waiting for another process to let go of the port.
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn restart_router(&self, i: usize) {
        if let Some(s) = self.routers[i].lock().take() {
            s.kill9();
        }
        let r = start_router(
            &self.data(),
            &self.token_file,
            &self.ingester_addrs.join(","),
            &self.store_args,
            &self.env,
        );
        *self.router_urls[i].lock() = r.base.clone();
        *self.routers[i].lock() = Some(r);
    }

    /// SIGTERM to routers, then ingesters: every one must exit 0.
    fn stop(&self) {
        for slot in self.routers.iter().chain(&self.ingesters) {
            if let Some(s) = slot.lock().take() {
                assert!(s.stop().success());
            }
        }
    }
}

fn batch_body(k: usize, lines: usize) -> String {
    (0..lines)
        .map(|l| {
            format!(
                "chaos,host=h{},batch=b{k} v={}i,f={l}.5 {}\n",
                l % 37,
                k * 1000 + l,
                1_700_000_000_000_000_000i64 + l as i64
            )
        })
        .collect()
}

/// Every part of a write spreads over the ingesters by series, and a write
/// acknowledged by the routers is in Parquet after shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_spread_series_over_ingesters() {
    let cluster = Cluster::start(3, 1);
    let url = cluster.router_urls[0].lock().clone();
    let auth = format!("Token {ADMIN_TOKEN}");
    for k in 0..5 {
        let r = request(
            "POST",
            &format!("{url}/api/v2/write?bucket=db"),
            &[("authorization", &auth)],
            batch_body(k, 300),
        )
        .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
    }
    let r = request("GET", &format!("{url}/ready"), &[], "").await;
    assert_eq!(r.status, 200);
    cluster.stop();
    let rows = parquet_rows(&cluster.data(), "db", "chaos").await;
    assert_eq!(rows.len(), 1500);
    // Each ingester wrote its own files: all three took a share.
    let catalog =
        inflow::catalog::Catalog::load(inflow::store::Store::local(&cluster.data()).unwrap())
            .await
            .unwrap();
    let owners: BTreeSet<String> = catalog
        .files()
        .iter()
        .map(|f| {
            f.path
                .rsplit('/')
                .next()
                .unwrap()
                .split('-')
                .take(2)
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect();
    assert_eq!(
        owners,
        BTreeSet::from(["ing-0".to_string(), "ing-1".into(), "ing-2".into()])
    );
}

/// Chaos: 2 routers, 3 ingesters. Gzip-less batches run from two clients (which
/// retry a 503 or a dead router, as Telegraf does) while ingesters are killed with
/// SIGKILL and restarted, over and over, and a router is killed once. Afterwards
/// every line of every acknowledged batch is read back with its values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_when_processes_die() {
    let cluster = Arc::new(Cluster::start(3, 2));
    let store = Store::local(&cluster.data()).unwrap();
    chaos(cluster, store).await;
}

/// The same chaos against S3: a real S3-compatible server (moto, pinned in
/// tests/clients/requirements.txt) on 127.0.0.1, conditional puts and all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_on_s3() {
    let s3 = MotoServer::start().await;
    let (store_args, env) = s3.role_config();
    let cluster = Arc::new(Cluster::start_on(3, 2, store_args, env));
    chaos(Arc::clone(&cluster), s3.store()).await;
    // Nothing of it is on the local disk: the data dir holds no WAL or Parquet.
    assert!(crate::harness::files_under(&cluster.data(), ".parquet").is_empty());
    assert!(crate::harness::files_under(&cluster.data(), "/wal/").is_empty());
}

/// A moto S3 server on an ephemeral loopback port, with one bucket.
struct MotoServer {
    child: std::process::Child,
    endpoint: String,
    bucket: String,
}

impl MotoServer {
    /// moto binds port 0 itself and logs the port it got (werkzeug's
    /// " * Running on http://127.0.0.1:PORT" on stderr): no port is picked
    /// here and released for another process to take first.
    async fn start() -> Self {
        use std::io::BufRead;
        let mut child =
            std::process::Command::new(crate::clients::python().with_file_name("moto_server"))
                .args(["-H", "127.0.0.1", "-p", "0"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("moto_server starts (tests/run.sh installs it)");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the port, then keeps draining moto's request log.
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok);
            let mut said = Vec::new();
            for line in lines.by_ref() {
                let port = line
                    .trim()
                    .strip_prefix("* Running on http://127.0.0.1:")
                    .and_then(|p| p.parse::<u16>().ok());
                if let Some(port) = port {
                    let _ = tx.send(Ok(port));
                    lines.for_each(drop);
                    return;
                }
                said.push(line);
            }
            let _ = tx.send(Err(format!("moto_server exited without a port: {said:?}")));
        });
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(port)) => port,
            Ok(Err(e)) => panic!("{e}"),
            Err(e) => {
                let _ = child.kill();
                panic!("moto_server named no port within 30 s: {e}");
            }
        };
        let endpoint = format!("http://127.0.0.1:{port}");
        let bucket = "inflow-test".to_string();
        let started = Instant::now();
        loop {
            if try_put(&format!("{endpoint}/{bucket}")).await == Some(200) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not come up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            child,
            endpoint,
            bucket,
        }
    }

    /// The flags and environment that put an inflow process on this server.
    fn role_config(&self) -> (Vec<String>, Vec<(String, String)>) {
        let args = vec![
            "--object-store".to_string(),
            "s3".into(),
            "--s3-bucket".into(),
            self.bucket.clone(),
            "--s3-endpoint".into(),
            self.endpoint.clone(),
        ];
        let env = vec![
            ("AWS_ACCESS_KEY_ID".to_string(), "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ];
        (args, env)
    }

    fn store(&self) -> Store {
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(&self.bucket)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap();
        Store::remote(Arc::new(s3))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates the bucket (moto takes an unsigned `PUT /bucket`).
async fn try_put(url: &str) -> Option<u16> {
    use http_body_util::Full;
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = http::Request::put(url)
        .body(Full::new(bytes::Bytes::new()))
        .ok()?;
    Some(client.request(req).await.ok()?.status().as_u16())
}

async fn chaos(cluster: Arc<Cluster>, store: Store) {
    const BATCHES: usize = 600;
    const LINES: usize = 200;
    let done = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();

    let chaos = {
        let (cluster, done) = (Arc::clone(&cluster), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut round = 0usize;
            while !done.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(60) {
                let victim = round % 3;
                cluster.kill_ingester(victim);
                // Deliberate pauses: the victim stays dead for a while (its
                // parts fail over meanwhile), and the cluster runs whole
                // between rounds. Time passing is the point, no condition.
                std::thread::sleep(Duration::from_millis(150));
                cluster.restart_ingester(victim);
                if round == 2 {
                    cluster.restart_router(1);
                }
                std::thread::sleep(Duration::from_millis(250));
                round += 1;
            }
            round
        })
    };

    let clients: Vec<_> = (0..2)
        .map(|c| {
            let (cluster, next, acked, refused) = (
                Arc::clone(&cluster),
                Arc::clone(&next),
                Arc::clone(&acked),
                Arc::clone(&refused),
            );
            tokio::spawn(async move {
                let auth = format!("Token {ADMIN_TOKEN}");
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= BATCHES {
                        return;
                    }
                    let body = batch_body(k, LINES);
                    // Every batch adds 37 series (its `batch` tag), so each
                    // write also appends to the series log: on moto that made
                    // the run ~30 s longer (56 → 86 s), hence the room.
                    for attempt in 0.. {
                        assert!(
                            attempt < 200 && started.elapsed() < Duration::from_secs(180),
                            "batch {k} never accepted"
                        );
                        let url = cluster.router_urls[(c + attempt) % 2].lock().clone();
                        let sent = tokio::time::timeout(
                            Duration::from_secs(10),
                            try_request(
                                &format!("{url}/api/v2/write?bucket=chaos"),
                                &auth,
                                body.clone(),
                            ),
                        )
                        .await;
                        match sent {
                            Ok(Some(204)) => {
                                acked.lock().push((k, std::time::SystemTime::now()));
                                break;
                            }
                            Ok(Some(503)) | Ok(None) | Err(_) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                // A client's back-off before it retries, as Telegraf's.
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            Ok(Some(other)) => panic!("batch {k}: unexpected status {other}"),
                        }
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    done.store(true, Ordering::Release);
    let rounds = chaos.join().unwrap();
    for i in 0..3 {
        cluster.restart_ingester(i);
    }
    cluster.stop();

    let rows = parquet_rows_in(&store, "chaos", "chaos").await;
    let mut by_point: BTreeMap<PointKey, Vec<&Row>> = BTreeMap::new();
    for r in &rows {
        by_point
            .entry((r["host"].clone(), r["batch"].clone(), r["time"].clone()))
            .or_default()
            .push(r);
    }
    let acked = acked.lock().clone();
    let mut lost = 0;
    // Which series lost lines: (batch, host) → lines, to find them in the logs.
    let mut lost_series: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for &(k, _) in &acked {
        for l in 0..LINES {
            let key = (
                format!("h{}", l % 37),
                format!("b{k}"),
                (1_700_000_000_000_000_000i64 + l as i64).to_string(),
            );
            match by_point.get(&key) {
                Some(copies) => {
                    for r in copies {
                        assert_eq!(r["v"], (k * 1000 + l).to_string());
                        assert_eq!(r["f"], format!("{l}.5"));
                    }
                }
                None => {
                    lost += 1;
                    *lost_series.entry((k, l % 37)).or_default() += 1;
                }
            }
        }
    }
    let copies = rows.len() - by_point.len();
    println!(
        "chaos: {} batches acknowledged, {} attempts refused or failed (503 / router down), {lost} lines lost, {copies} duplicate copies from failover retries, {rounds} kill rounds",
        acked.len(),
        refused.load(Ordering::Relaxed),
    );
    assert_eq!(acked.len(), BATCHES);
    // When each batch with lost lines was acknowledged, to find it in the logs.
    let when: BTreeMap<usize, String> = acked
        .iter()
        .filter(|(k, _)| lost_series.keys().any(|(b, _)| b == k))
        .map(|(k, t)| (*k, chrono::DateTime::<chrono::Utc>::from(*t).to_rfc3339()))
        .collect();
    assert_eq!(
        lost, 0,
        "acknowledged lines lost, by (batch, host): {lost_series:?}; acknowledged at {when:?}"
    );
}

/// One POST; `None` when the connection failed (a killed router).
async fn try_request(url: &str, auth: &str, body: String) -> Option<u16> {
    use http_body_util::{BodyExt, Full};
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = http::Request::post(url)
        .header("authorization", auth)
        .body(Full::new(bytes::Bytes::from(body)))
        .ok()?;
    let resp = client.request(req).await.ok()?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Some(status)
}

/// An ingester's port takes writes only with the cluster token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingesters_refuse_writes_without_the_cluster_token() {
    use arrow_flight::{FlightData, FlightDescriptor};
    let cluster = Cluster::start(1, 0);
    let endpoint = format!("http://{}", cluster.ingester_addrs[0]);
    for auth in [None, Some("Bearer wrong"), Some("Bearer cluster-secre")] {
        let mut client = crate::harness::flight_client(&endpoint).await;
        let open = FlightData {
            flight_descriptor: Some(FlightDescriptor::new_path(vec!["x".into()])),
            ..Default::default()
        };
        let mut request = tonic::Request::new(futures::stream::iter([open]));
        if let Some(a) = auth {
            request
                .metadata_mut()
                .insert("authorization", a.parse().unwrap());
        }
        let status = client.do_put(request).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{auth:?}");
    }
    cluster.stop();
}

/// `--ingesters dns:NAME:PORT`: the router resolves the name (here `localhost`,
/// which may also give `::1`, where nothing listens: that address fails over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_find_ingesters_by_dns() {
    let cluster = Cluster::start(1, 0);
    let port = cluster.ingester_addrs[0]
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let router = start_router(
        &cluster.data(),
        &cluster.token_file,
        &format!("dns:localhost:{port}"),
        &[],
        &[],
    );
    let started = Instant::now();
    while request("GET", &router.url("/ready"), &[], "").await.status != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "router never found its ingester"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let auth = format!("Token {ADMIN_TOKEN}");
    for k in 0..3 {
        let r = request(
            "POST",
            &router.url("/api/v2/write?bucket=dns"),
            &[("authorization", &auth)],
            batch_body(k, 50),
        )
        .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
    }
    assert!(router.stop().success());
    cluster.stop();
    assert_eq!(
        parquet_rows(&cluster.data(), "dns", "chaos").await.len(),
        150
    );
}

/// With one of three ingesters dead, writes keep succeeding; prints write
/// latency before and after the kill (its parts fail over to the next ingester).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_keep_succeeding_with_an_ingester_dead() {
    let cluster = Cluster::start(3, 1);
    let url = cluster.router_urls[0].lock().clone();
    let auth = format!("Token {ADMIN_TOKEN}");
    let mut timings = Vec::new();
    for phase in 0..2 {
        if phase == 1 {
            cluster.kill_ingester(1);
        }
        let mut lat = Vec::new();
        for k in 0..40 {
            let t = Instant::now();
            let r = request(
                "POST",
                &format!("{url}/api/v2/write?bucket=fo"),
                &[("authorization", &auth)],
                batch_body(phase * 100 + k, 100),
            )
            .await;
            assert_eq!(r.status, 204, "phase {phase} batch {k}: {:?}", r.body);
            lat.push(t.elapsed());
        }
        lat.sort();
        timings.push((lat[lat.len() / 2], lat[lat.len() * 99 / 100]));
    }
    println!(
        "failover latency: before the kill p50 {:?} p99 {:?}; with one of 3 ingesters dead p50 {:?} p99 {:?}",
        timings[0].0, timings[0].1, timings[1].0, timings[1].1
    );
    cluster.restart_ingester(1);
    cluster.stop();
    assert_eq!(
        parquet_rows(&cluster.data(), "fo", "chaos").await.len(),
        80 * 100
    );
}

fn start_querier(dir: &Path, token_file: &Path, ingesters: &str) -> Server {
    let token = token_file.to_str().unwrap();
    let args = [
        "--role",
        "querier",
        "--ingesters",
        ingesters,
        "--cluster-token-file",
        token,
        "--query-ingester-timeout",
        "3s",
    ];
    start_role(dir, &args, &[], &[])
}

/// InfluxQL on a querier of its own: `GET /query` (epoch=s), the answer as JSON.
async fn influxql(querier: &Server, q: &str) -> serde_json::Value {
    let auth = format!("Token {ADMIN_TOKEN}");
    let url = format!(
        "{}/query?db=db&epoch=s&q={}",
        querier.base,
        q.replace(' ', "+")
    );
    let r = request("GET", &url, &[("authorization", &auth)], "").await;
    assert_eq!(r.status, 200, "{q}: {:?}", r.body);
    serde_json::from_slice(&r.body).unwrap()
}

/// A querier in its own process answers `last()` by host and `SHOW TAG
/// VALUES` from summaries it builds itself: of the ingesters' buffers (over
/// Flight), of the Parquet files they leave, and of both at once when a
/// buffered write overwrites a point of a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_querier_answers_from_its_own_summaries() {
    let ingester_args = [
        "--snapshot-interval",
        "1h",
        "--lease-ttl",
        "1s",
        "--shutdown-timeout",
        "1s",
    ]
    .map(String::from);
    let cluster = Cluster::start_with(1, 1, vec![], ingester_args.to_vec(), vec![]);
    let url = cluster.router_urls[0].lock().clone();
    let querier = start_querier(
        &cluster.data(),
        &cluster.token_file,
        &cluster.ingester_addrs[0],
    );
    let auth = format!("Token {ADMIN_TOKEN}");
    let write = |body: &'static str| {
        let url = format!("{url}/api/v2/write?bucket=db&precision=s");
        let auth = auth.clone();
        async move {
            let r = request("POST", &url, &[("authorization", &auth)], body).await;
            assert_eq!(r.status, 204, "{:?}", r.body);
        }
    };
    write("sq,host=h0 v=1i 10\nsq,host=h0 v=2i 20\nsq,host=h1 v=3i 15\n").await;
    let last = |h0: i64| {
        serde_json::json!({"results":[{"statement_id":0,"series":[
            {"name":"sq","tags":{"host":"h0"},"columns":["time","last"],"values":[[20,h0]]},
            {"name":"sq","tags":{"host":"h1"},"columns":["time","last"],"values":[[15,3]]}]}]})
    };
    let values = serde_json::json!({"results":[{"statement_id":0,"series":[
        {"name":"sq","columns":["key","value"],"values":[["host","h0"],["host","h1"]]}]}]});
    let q_last = "SELECT last(v) FROM sq GROUP BY host";
    let q_values = "SHOW TAG VALUES FROM sq WITH KEY = host";
    let parquet = || crate::harness::files_under(&cluster.data(), ".parquet");
    // From the buffer.
    assert!(parquet().is_empty());
    assert_eq!(influxql(&querier, q_last).await, last(2));
    assert_eq!(influxql(&querier, q_values).await, values);
    // From Parquet: a graceful stop snapshots the buffer.
    cluster.stop_ingester(0);
    cluster.restart_ingester(0);
    assert!(!parquet().is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    let auth_header = [("authorization", auth.as_str())];
    // The querier may take a moment to reconnect to the restarted ingester.
    loop {
        let probe = format!(
            "{}/query?db=db&q=SHOW+MEASUREMENTS+WHERE+host+%3D+%27h0%27",
            querier.base
        );
        let r = request("GET", &probe, &auth_header, "").await;
        if r.status == 200 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(influxql(&querier, q_last).await, last(2));
    assert_eq!(influxql(&querier, q_values).await, values);
    // A newer version of h0@20 in the buffer, over its file.
    write("sq,host=h0 v=9i 20\n").await;
    assert_eq!(influxql(&querier, q_last).await, last(9));
    assert!(querier.stop().success());
    cluster.stop();
}

/// Split mode: router, two ingesters and a querier in separate processes. Rows
/// written through the router are visible through the querier whether they sit
/// in an ingester's buffer or in Parquet; with an ingester gone the querier
/// answers UNAVAILABLE rather than a partial result.
///
/// Which path answered is pinned down: the first answer comes while no Parquet
/// file exists at all (only the buffers hold the rows), the second after both
/// ingesters stopped gracefully (snapshotting everything) and restarted with
/// empty buffers (their WAL holds no entry to replay), so only Parquet holds
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn querier_sees_buffered_and_persisted_rows_and_refuses_partial_answers() {
    // No snapshot but on a graceful stop, which waits 1 s (not 30) for the
    // router's and querier's connections to go.
    // A 3 s lease: the refusals after the kill come before ing-0 takes its WAL
    // over (after which the querier would answer).
    let ingester_args = [
        "--snapshot-interval",
        "1h",
        "--lease-ttl",
        "3s",
        "--shutdown-timeout",
        "1s",
    ]
    .map(String::from);
    let cluster = Cluster::start_with(2, 1, vec![], ingester_args.to_vec(), vec![]);
    let url = cluster.router_urls[0].lock().clone();
    let querier = start_querier(
        &cluster.data(),
        &cluster.token_file,
        &cluster.ingester_addrs.join(","),
    );
    let auth = format!("Token {ADMIN_TOKEN}");
    let body: String = (0..50)
        .map(|i| format!("sq,host=h{i} v={i}i 1000\n"))
        .collect();
    let r = request(
        "POST",
        &format!("{url}/api/v2/write?bucket=db"),
        &[("authorization", &auth)],
        body,
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let sql = "SELECT count(*) AS n, sum(v) AS total, count(DISTINCT host) AS hosts FROM sq";
    let expected = vec![crate::harness::row(&[
        ("n", "50"),
        ("total", "1225"),
        ("hosts", "50"),
    ])];
    let parquet = || crate::harness::files_under(&cluster.data(), ".parquet");
    // From the buffers: no Parquet file before or after the answer, and
    // both ingesters buffer a share.
    assert_eq!(parquet(), Vec::<std::path::PathBuf>::new());
    assert!(cluster.buffer_bytes(0).await > 0 && cluster.buffer_bytes(1).await > 0);
    assert_eq!(
        crate::query::query_rows(&querier.base, "db", sql).await,
        expected
    );
    assert_eq!(
        parquet(),
        Vec::<std::path::PathBuf>::new(),
        "still no snapshot"
    );

    // From Parquet: a graceful stop snapshots what an ingester buffers; the
    // restarted ones buffer nothing.
    let store = Store::local(&cluster.data()).unwrap();
    for i in 0..2 {
        cluster.stop_ingester(i);
        // What a restart replays into its buffer: nothing.
        let wal = segments_of(&store, &format!("ing-{i}")).await;
        assert!(wal.iter().all(|(.., entries)| *entries == 0), "{wal:?}");
        cluster.restart_ingester(i);
    }
    assert!(!parquet().is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    let batches = loop {
        match crate::query::query(&querier.base, Some(ADMIN_TOKEN), "db", sql).await {
            Ok(batches) => break batches,
            // The querier may take a moment to reconnect to the restarted ingesters.
            Err(e) if e.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{sql}: {e:?}"),
        }
    };
    assert_eq!(crate::query::rows(&batches), expected);

    // Both: an overwrite of one point in a buffer, on top of Parquet.
    let r = request(
        "POST",
        &format!("{url}/api/v2/write?bucket=db"),
        &[("authorization", &auth)],
        "sq,host=h0 v=100i 1000\n",
    )
    .await;
    assert_eq!(r.status, 204);
    let expected = vec![crate::harness::row(&[
        ("n", "50"),
        ("total", "1325"),
        ("hosts", "50"),
    ])];
    assert_eq!(
        crate::query::query_rows(&querier.base, "db", sql).await,
        expected
    );

    cluster.kill_ingester(1);
    let err = crate::query::query(&querier.base, Some(ADMIN_TOKEN), "db", sql)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("has not been taken over yet"),
        "{}",
        err.message()
    );
    let r = request(
        "GET",
        &format!(
            "{}/api/v3/query_sql?db=db&q=SELECT%20count(*)%20FROM%20sq",
            querier.base
        ),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.headers["retry-after"], "1");
    // The router serves no queries; the querier no writes.
    let e = crate::query::query(&url, Some(ADMIN_TOKEN), "db", sql)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented);
    assert!(querier.stop().success());
    cluster.restart_ingester(1);
    cluster.stop();
}

/// A querier with a static `--ingesters` list, one of whose ingesters is
/// killed for good: while the dead one's lease is live its buffered rows may
/// be in no file, so queries answer UNAVAILABLE naming it; once the survivor
/// has taken its WAL over (replayed into Parquet, lease released), queries
/// answer every acknowledged row again, from this querier and from a second
/// one started after the death (which never reached the dead ingester, so
/// never learnt its id). Restarted on its address, it is asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_querier_answers_again_once_a_dead_ingesters_wal_is_taken_over() {
    use inflow::lease::Leases;
    // Snapshots only on a graceful stop: the rows sit in buffers and WAL. A
    // 3 s lease leaves room to query while the dead one's is live.
    let ingester_args = [
        "--snapshot-interval",
        "1h",
        "--lease-ttl",
        "3s",
        "--shutdown-timeout",
        "1s",
    ]
    .map(String::from);
    let cluster = Cluster::start_with(2, 1, vec![], ingester_args.to_vec(), vec![]);
    let url = cluster.router_urls[0].lock().clone();
    let list = cluster.ingester_addrs.join(",");
    let querier = start_querier(&cluster.data(), &cluster.token_file, &list);
    let auth = format!("Token {ADMIN_TOKEN}");
    let write = |hosts: std::ops::Range<usize>| {
        let url = format!("{url}/api/v2/write?bucket=db");
        let auth = auth.clone();
        async move {
            let body: String = hosts
                .map(|i| format!("sq,host=h{i:03} v={}i 1000\n", i * 7))
                .collect();
            let r = request("POST", &url, &[("authorization", &auth)], body).await;
            assert_eq!(r.status, 204, "{:?}", r.body);
        }
    };
    let expected = |hosts: std::ops::Range<usize>| -> Vec<Row> {
        hosts
            .map(|i| {
                let (host, v) = (format!("h{i:03}"), (i * 7).to_string());
                crate::harness::row(&[("host", &host), ("v", &v)])
            })
            .collect()
    };
    let sql = "SELECT host, v FROM sq ORDER BY host";
    write(0..60).await;
    assert!(cluster.buffer_bytes(0).await > 0 && cluster.buffer_bytes(1).await > 0);
    assert_eq!(
        crate::query::query_rows(&querier.base, "db", sql).await,
        expected(0..60)
    );

    let store = Store::local(&cluster.data()).unwrap();
    let leases = Leases::new(store.clone(), "test", Duration::from_secs(3));
    let view = |prefix: &'static str| {
        let leases = leases.clone();
        async move { leases.view(prefix).await.unwrap().unwrap() }
    };
    cluster.kill_ingester(1);
    // Acknowledged after the death too: these fail over to ing-0.
    write(60..80).await;
    let dead = &cluster.ingester_addrs[1];
    let err = crate::query::query(&querier.base, Some(ADMIN_TOKEN), "db", sql)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let says = format!(
        "ingester {dead} (id ing-1) is unreachable and its WAL has not been taken over yet"
    );
    assert!(err.message().starts_with(&says), "{}", err.message());
    let r = request(
        "GET",
        &format!(
            "{}/api/v3/query_sql?db=db&q=SELECT%20count(*)%20FROM%20sq",
            querier.base
        ),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert!(
        String::from_utf8_lossy(&r.body).contains(&says),
        "{:?}",
        r.body
    );
    // Both refusals came while ing-1's lease was live (else they would prove nothing).
    let v = view("ing-1").await;
    assert_eq!((v.epoch, v.owner.as_str(), v.released), (1, "ing-1", false));

    eventually(
        Duration::from_secs(30),
        "ing-0 takes over ing-1's WAL",
        || async {
            let v = view("ing-1").await;
            (v.epoch, v.owner.as_str(), v.released) == (2, "ing-0", true)
        },
    )
    .await;
    // Every acknowledged row, exactly, again and again, from both queriers.
    let second = start_querier(&cluster.data(), &cluster.token_file, &list);
    for _ in 0..5 {
        for q in [&querier, &second] {
            assert_eq!(
                crate::query::query_rows(&q.base, "db", sql).await,
                expected(0..80)
            );
        }
    }
    let metrics = request("GET", &format!("{}/metrics", querier.base), &[], "").await;
    let text = String::from_utf8_lossy(&metrics.body);
    let skipped = format!("inflow_query_skipped_ingesters_total{{ingester=\"{dead}\"}} ");
    let count: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&skipped))
        .unwrap_or_else(|| panic!("no {skipped} in {text}"))
        .parse()
        .unwrap();
    assert!(count >= 5, "{count}");

    // Back on its address, ing-1 claims its lease anew (unreleased: it may not
    // be left out any more) and takes writes; the queriers ask it again.
    cluster.restart_ingester(1);
    let v = view("ing-1").await;
    assert_eq!((v.epoch, v.owner.as_str(), v.released), (3, "ing-1", false));
    // Until a write's share lands on ing-1 (its router may try it again only
    // after a while), so the answers below need its buffer.
    let mut end = 80;
    while cluster.buffer_bytes(1).await == 0 {
        assert!(end < 200, "no write reached the restarted ing-1");
        write(end..end + 5).await;
        end += 5;
    }
    for q in [&querier, &second] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match crate::query::query(&q.base, Some(ADMIN_TOKEN), "db", sql).await {
                Ok(batches) => {
                    assert_eq!(crate::query::rows(&batches), expected(0..end));
                    break;
                }
                // A moment to reconnect to the restarted ingester.
                Err(e) if e.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{sql}: {e:?}"),
            }
        }
    }
    for _ in 0..3 {
        for q in [&querier, &second] {
            assert_eq!(
                crate::query::query_rows(&q.base, "db", sql).await,
                expected(0..end)
            );
        }
    }
    assert!(querier.stop().success() && second.stop().success());
    cluster.stop();
}

/// The points a WAL prefix holds in its segments with entries (not fences).
async fn wal_points(store: &Store, prefix: &str) -> BTreeSet<PointKey> {
    use arrow::array::{Array, TimestampNanosecondArray};
    use arrow::util::display::array_value_to_string;
    let mut points = BTreeSet::new();
    for meta in store.list(&format!("wal/{prefix}").into()).await.unwrap() {
        let bytes = store.get(&meta.location).await.unwrap();
        let (_, entries) = inflow::ingester::wal::decode_segment(&meta.location, bytes).unwrap();
        for batch in entries.iter().flat_map(|e| &e.batches) {
            let col = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
            let (host, tag, time) = (col("host"), col("batch"), col("time"));
            let time = time
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
                .unwrap();
            for r in 0..batch.num_rows() {
                points.insert((
                    array_value_to_string(&host, r).unwrap(),
                    array_value_to_string(&tag, r).unwrap(),
                    time.value(r).to_string(),
                ));
            }
        }
    }
    points
}

/// An ingester paused (SIGSTOP) past its lease loses its WAL: the other one
/// claims the expired lease, fences the old epoch, moves what the paused one had
/// acknowledged into Parquet, and releases the lease; writes fail over meanwhile.
/// Resumed (SIGCONT), the old holder cannot commit into its fenced epoch: it
/// claims its lease again in a new epoch and takes writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_ingester_is_fenced_and_its_wal_taken_over() {
    use inflow::lease::Leases;
    let ingester_args = ["--snapshot-interval", "1h", "--lease-ttl", "1s"].map(String::from);
    let cluster = Cluster::start_with(2, 1, vec![], ingester_args.to_vec(), vec![]);
    let url = cluster.router_urls[0].lock().clone();
    let write = |k: usize| {
        let url = format!("{url}/api/v2/write?bucket=db");
        async move {
            let auth = format!("Token {ADMIN_TOKEN}");
            request(
                "POST",
                &url,
                &[("authorization", &auth)],
                batch_body(k, 100),
            )
            .await
            .status
        }
    };
    for k in 0..10 {
        assert_eq!(write(k).await, 204);
    }
    let store = Store::local(&cluster.data()).unwrap();
    let held = wal_points(&store, "ing-0").await;
    assert!(
        !held.is_empty(),
        "ing-0 took a share and has not snapshotted"
    );
    let leases = Leases::new(store.clone(), "test", Duration::from_secs(1));
    let view = |prefix: &'static str| {
        let leases = leases.clone();
        async move { leases.view(prefix).await.unwrap().unwrap() }
    };
    assert_eq!(
        (view("ing-0").await.epoch, view("ing-0").await.owner),
        (1, "ing-0".into())
    );

    let ing0 = cluster.ingesters[0].lock().take().unwrap();
    ing0.signal(libc::SIGSTOP);
    // Writes fail over to ing-1 (after the router's 2 s deadline on ing-0).
    for k in 10..15 {
        assert_eq!(write(k).await, 204);
    }
    eventually(
        Duration::from_secs(30),
        "ing-1 takes over ing-0's WAL",
        || async {
            let v = view("ing-0").await;
            (v.epoch, v.owner.as_str(), v.released) == (2, "ing-1", true)
        },
    )
    .await;
    // Exactly what ing-0 had acknowledged is now in Parquet (ing-1 has not
    // snapshotted its own share yet), and ing-0's WAL holds only the fence.
    let rows = parquet_rows_in(&store, "db", "chaos").await;
    let in_parquet: BTreeSet<PointKey> = rows
        .iter()
        .map(|r| (r["host"].clone(), r["batch"].clone(), r["time"].clone()))
        .collect();
    assert_eq!(in_parquet, held);
    assert_eq!(rows.len(), held.len(), "each point once");
    let wal = segments_of(&store, "ing-0").await;
    assert_eq!(wal.len(), 1, "{wal:?}");
    let (fence, by, epoch, entries) = wal[0].clone();
    assert_eq!((by.as_str(), epoch, entries), ("ing-1", 2, 0));

    // Resumed: ing-0 finds its lease gone, claims epoch 3, and commits there.
    ing0.signal(libc::SIGCONT);
    *cluster.ingesters[0].lock() = Some(ing0);
    eventually(
        Duration::from_secs(30),
        "ing-0 claims its lease again",
        || async {
            let v = view("ing-0").await;
            (v.epoch, v.owner.as_str(), v.released) == (3, "ing-0", false)
        },
    )
    .await;
    let mut k = 14; // the next batch is 15
    eventually(Duration::from_secs(30), "ing-0 commits in epoch 3", || {
        k += 1;
        let sent = write(k);
        let store = store.clone();
        async move {
            assert_eq!(sent.await, 204);
            segments_of(&store, "ing-0")
                .await
                .iter()
                .any(|(n, by, epoch, _)| *n > fence && by == "ing-0" && *epoch == 3)
        }
    })
    .await;
    // Nothing was committed in the fenced epoch after the fence (what it had
    // committed before went to Parquet and its segments are gone).
    let wal = segments_of(&store, "ing-0").await;
    assert!(wal.iter().all(|(_, _, epoch, _)| *epoch != 1), "{wal:?}");

    cluster.stop();
    let rows = parquet_rows_in(&store, "db", "chaos").await;
    let points: BTreeSet<PointKey> = rows
        .iter()
        .map(|r| (r["host"].clone(), r["batch"].clone(), r["time"].clone()))
        .collect();
    for b in 0..=k {
        for l in 0..100 {
            let key = (
                format!("h{}", l % 37),
                format!("b{b}"),
                (1_700_000_000_000_000_000i64 + l as i64).to_string(),
            );
            assert!(points.contains(&key), "acknowledged point {key:?} lost");
        }
    }
    // Graceful stops release every lease.
    assert!(view("ing-0").await.released && view("ing-1").await.released);
}

/// The WAL segments of `prefix`: (number, writer, epoch, entries).
async fn segments_of(store: &Store, prefix: &str) -> Vec<(u64, String, u64, usize)> {
    let mut out = Vec::new();
    for meta in store.list(&format!("wal/{prefix}").into()).await.unwrap() {
        let bytes = store.get(&meta.location).await.unwrap();
        let (segment, entries) =
            inflow::ingester::wal::decode_segment(&meta.location, bytes).unwrap();
        out.push((
            segment.segment,
            segment.ingester_id,
            segment.epoch,
            entries.len(),
        ));
    }
    out.sort();
    out
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, one write is one trace across two
/// processes: the ingester's `ingester.write` span is a child of the router's
/// `write` span, both exported to a real OTLP/gRPC receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_one_trace_across_router_and_ingester() {
    use std::io::BufRead;
    let spans = tempfile::tempdir().unwrap();
    let spans_file = spans.path().join("spans.jsonl");
    let mut receiver = std::process::Command::new(crate::clients::python())
        .arg(crate::clients::script("otlp_receiver.py"))
        .arg(&spans_file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(receiver.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port = first
        .trim()
        .strip_prefix("listening ")
        .expect("receiver port");
    let env = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
            format!("http://127.0.0.1:{port}"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY".to_string(), "100".to_string()),
    ];
    let cluster = Cluster::start_on(1, 1, vec![], env);
    let url = cluster.router_urls[0].lock().clone();
    let auth = format!("Token {ADMIN_TOKEN}");
    let r = request(
        "POST",
        &format!("{url}/api/v2/write?bucket=traced"),
        &[("authorization", &auth)],
        "m,host=a v=1 1",
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    // A graceful stop flushes each process's queued spans.
    cluster.stop();
    receiver.kill().unwrap();
    receiver.wait().unwrap();

    let text = std::fs::read_to_string(&spans_file).unwrap_or_default();
    let spans: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |service: &str, name: &str| {
        spans
            .iter()
            .find(|s| s["service"] == service && s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} span from {service} in {spans:?}"))
    };
    let write = find("inflow-router", "write");
    let ingest = find("inflow-ingester", "ingester.write");
    assert_eq!(ingest["trace_id"], write["trace_id"], "one trace");
    assert_eq!(
        ingest["parent_span_id"], write["span_id"],
        "router → ingester"
    );
    assert_ne!(write["trace_id"], "0".repeat(32));
}

/// `/ready` needs the object store: with the S3 server gone, a router's and an
/// ingester's readiness fail with 503 naming the store, while `/health` (the
/// process is alive) still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_object_store() {
    let s3 = MotoServer::start().await;
    let (store_args, env) = s3.role_config();
    let cluster = Cluster::start_on(1, 1, store_args, env);
    let router = cluster.router_urls[0].lock().clone();
    let ingester = cluster.ingesters[0].lock().as_ref().unwrap().base.clone();
    let status = |base: String| async move {
        let r = request("GET", &format!("{base}/ready"), &[], "").await;
        (r.status, String::from_utf8_lossy(&r.body).into_owned())
    };
    for base in [&router, &ingester] {
        eventually(Duration::from_secs(10), "ready", || async {
            status(base.clone()).await.0 == 200
        })
        .await;
    }
    drop(s3);
    for base in [&router, &ingester] {
        eventually(Duration::from_secs(10), "not ready", || async {
            let (code, body) = status(base.clone()).await;
            code == 503 && body.contains("object store")
        })
        .await;
        let health = request("GET", &format!("{base}/health"), &[], "").await;
        assert_eq!(health.status, 200);
    }
    // Without its store an ingester cannot snapshot on the way out.
    for slot in cluster.routers.iter().chain(&cluster.ingesters) {
        if let Some(s) = slot.lock().take() {
            s.kill9();
        }
    }
}

/// A token revoked through one router stops working on the other router
/// within the catalog refresh interval (1 s here), without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_stops_working_on_every_router() {
    let env = vec![(
        "INFLOW_CATALOG_REFRESH_INTERVAL".to_string(),
        "1s".to_string(),
    )];
    let cluster = Cluster::start_on(1, 2, vec![], env);
    let a = cluster.router_urls[0].lock().clone();
    let b = cluster.router_urls[1].lock().clone();
    let admin = format!("Token {ADMIN_TOKEN}");
    let grant = serde_json::json!({
        "token_name": "telegraf",
        "permissions": [{"resource_type": "db", "resource_identifier": ["db"], "actions": ["write"]}],
    });
    let r = request(
        "POST",
        &format!("{a}/api/v3/configure/token"),
        &[("authorization", &admin)],
        grant.to_string(),
    )
    .await;
    assert_eq!(r.status, 201);
    let made: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let token = format!("Token {}", made["token"].as_str().unwrap());
    let write_b = || async {
        let url = format!("{b}/api/v2/write?bucket=db&org=o");
        request("POST", &url, &[("authorization", &token)], "m v=1")
            .await
            .status
    };
    assert_eq!(write_b().await, 204);
    let r = request(
        "DELETE",
        &format!("{a}/api/v3/configure/token?token_name=telegraf"),
        &[("authorization", &admin)],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let revoked = Instant::now();
    eventually(
        Duration::from_secs(5),
        "router b refuses the token",
        || async { write_b().await == 401 },
    )
    .await;
    assert!(
        revoked.elapsed() < Duration::from_secs(3),
        "{:?}",
        revoked.elapsed()
    );
    cluster.stop();
}

/// Two routers share one series quota: a router whose view is behind finds
/// its log slot taken, reads what it missed, and refuses the line by number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_quota_holds_across_routers() {
    let cluster = Cluster::start_on(1, 2, vec![], vec![]);
    let a = cluster.router_urls[0].lock().clone();
    let b = cluster.router_urls[1].lock().clone();
    let admin = format!("Token {ADMIN_TOKEN}");
    let r = request(
        "POST",
        &format!("{a}/api/v3/configure/database"),
        &[("authorization", &admin)],
        serde_json::json!({"db": "s", "max_series": 3}).to_string(),
    )
    .await;
    assert_eq!(r.status, 200);
    let write = |base: &str, body: &'static str| {
        let url = format!("{base}/api/v2/write?bucket=s&org=o");
        let admin = admin.clone();
        async move { request("POST", &url, &[("authorization", &admin)], body).await }
    };
    // b reads the series log now; a adds to it after.
    assert_eq!(write(&b, "m,h=1 v=1 1").await.status, 204);
    assert_eq!(write(&a, "m,h=2 v=1 2").await.status, 204);
    // b still counts 1 series: both lines fit its view, not the log's.
    let r = write(&b, "m,h=3 v=1 3\nm,h=4 v=1 4\nm,h=1 v=2 5").await;
    assert_eq!(r.status, 400);
    let error: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        error,
        serde_json::json!({"code": "invalid", "line": 2, "message": "failed to parse line protocol: errors encountered on line(s):\nline 2, column 1: new series would exceed the database's limit of 3 series (it has 3)\n    m,h=4 v=1 4\n    ^"})
    );
    let r = write(&a, "m,h=4 v=1 6").await;
    assert_eq!(r.status, 400, "a knows of h=3 only through the log");
    assert_eq!(write(&a, "m,h=3 v=2 7").await.status, 204);
    cluster.stop();
    // Read back: the accepted lines, of three series, and no h=4.
    let mut rows = parquet_rows(&cluster.data(), "s", "m").await;
    rows.sort_by_key(|r| r["time"].parse::<i64>().unwrap());
    let point = |h: &str, v: &str, t: &str| crate::harness::row(&[("h", h), ("v", v), ("time", t)]);
    assert_eq!(
        rows,
        vec![
            point("1", "1.0", "1"),
            point("2", "1.0", "2"),
            point("3", "1.0", "3"),
            point("1", "2.0", "5"),
            point("3", "2.0", "7"),
        ]
    );
}

/// The harness's restart of an ingester on its old address: while another
/// process holds that port the start fails and is retried, and it succeeds
/// once the port is free (the race a restart on a fixed port can lose).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_ingester_waits_for_its_port() {
    let cluster = Cluster::start(1, 0);
    cluster.kill_ingester(0);
    let squatter = std::net::TcpListener::bind(cluster.ingester_addrs[0].as_str())
        .expect("the dead ingester's port is free");
    let release = std::thread::spawn(move || {
        // Holding the port for a while is the point: no condition to await.
        std::thread::sleep(Duration::from_millis(1500));
        drop(squatter);
    });
    let started = Instant::now();
    cluster.restart_ingester(0);
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "restarted while the port was taken? {:?}",
        started.elapsed()
    );
    release.join().unwrap();
    let base = cluster.ingesters[0].lock().as_ref().unwrap().base.clone();
    let r = request("GET", &format!("{base}/ready"), &[], "").await;
    assert_eq!(r.status, 200);
    cluster.stop();
}
