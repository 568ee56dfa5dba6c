//! `inflow serve`: wires the roles together.
//!
//! In the default `all` role one process runs the edge, a router and an ingester;
//! the edge still reaches the ingester over Flight on loopback, the same path a
//! split deployment uses.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use crate::auth::{AdminTokenSource, Authorizer, admin_token, generate_token};
use crate::catalog::Catalog;
use crate::compactor::{Compactor, CompactorConfig};
use crate::edge::body::BodyReader;
use crate::edge::frontend::QueryFrontend;
use crate::edge::{self, Edge};
use crate::ingester::flight::IngesterFlight;
use crate::ingester::{Ingester, IngesterConfig};
use crate::lease::Leases;
use crate::lifecycle::Lifecycle;
use crate::query::{FlightIngesters, LocalIngester, Querier};
use crate::route::{IngesterClient, IngesterLink, Router};
use crate::series::SeriesRegistry;
use crate::store::Store;
pub use crate::telemetry::LogFormat;

mod flags;

use crate::write::Writer;
pub use flags::{IngesterArgs, ObjectStoreKind, Role, RouterArgs, ServeArgs, StoreArgs, TokenArgs};

/// The clock that stamps write sequences: the system's, unless a test moved it.
fn sequence_clock(args: &ServeArgs) -> crate::route::HybridClock {
    match args.router.test_clock_offset_secs {
        0 => crate::route::HybridClock::default(),
        secs => crate::route::HybridClock::offset_by(secs),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{flag} is required for --role {role:?}")]
    Missing { flag: &'static str, role: Role },
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(transparent)]
    AdminToken(#[from] crate::auth::AdminTokenError),
    #[error(transparent)]
    Ingester(#[from] crate::ingester::IngesterError),
    #[error("data directory {0} is in use by another inflow process")]
    DataDirInUse(PathBuf),
    #[error("--tls-cert and --tls-key go together: give both or neither")]
    TlsPair,
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// Runs until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let shutdown = shutdown_signal()?;
    let role = clap::ValueEnum::to_possible_value(&args.role).map(|v| v.get_name().to_owned());
    crate::metrics::metrics().set_role(role.as_deref().unwrap_or("unknown"));
    raise_open_file_limit(args.conn.max_connections);
    // A bad certificate is found before an ingester waits for its lease.
    tls_acceptor(&args)?;
    let store = object_store(&args)?;
    let catalog = Catalog::load(store.clone()).await?;
    let refresher = tokio::spawn(refresh_catalog(
        Arc::clone(&catalog),
        args.catalog_refresh_interval,
    ));
    let _stop_refresher = AbortOnDrop(refresher);
    match args.role {
        Role::All => run_all(&args, store, catalog, shutdown).await,
        Role::Router => run_router(&args, catalog, shutdown).await,
        Role::Ingester => run_ingester(&args, store, catalog, shutdown).await,
        Role::Querier => run_querier(&args, store, catalog, shutdown).await,
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Rereads the catalog every `interval`, so that what other processes
/// changed (tokens revoked, databases deleted) takes effect here.
async fn refresh_catalog(catalog: Arc<Catalog>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = catalog.refresh().await {
            tracing::warn!(error = %e, "catalog refresh failed");
        }
    }
}

/// Retention, deletion and compaction rounds (see `lifecycle` and
/// `compactor`), until dropped.
fn start_lifecycle(
    args: &ServeArgs,
    store: Store,
    catalog: Arc<Catalog>,
    me: &str,
) -> (AbortOnDrop, AbortOnDrop) {
    let lifecycle = Lifecycle::new(Arc::clone(&catalog), store.clone(), args.lifecycle);
    let compaction = CompactorConfig {
        lease_ttl: args.ingester.lease_ttl,
        ..args.compactor
    };
    let compactor = Compactor::new(catalog, store, compaction, me);
    (
        AbortOnDrop(tokio::spawn(lifecycle.run())),
        AbortOnDrop(tokio::spawn(compactor.run())),
    )
}

/// Everything in one process; the edge still reaches its ingester over Flight.
async fn run_all(
    args: &ServeArgs,
    store: Store,
    catalog: Arc<Catalog>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let cluster_token = match &args.tokens.cluster_token_file {
        Some(path) => read_cluster_token(path)?,
        None => generate_token().into(),
    };
    // Held until this function returns. It proves that no other process uses
    // the directory, so the WAL lease a crashed previous run left is taken at once.
    let data_dir_lock = match store.local_root() {
        Some(root) => Some(lock_data_dir(root)?),
        None => None,
    };
    if data_dir_lock.is_some() {
        // Every writer of the files logs is in this process, on this
        // catalog: queries need not read back what it appended.
        catalog.manifest().set_sole_writer();
    }
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let ingester = IngesterRole::start(
        args,
        store.clone(),
        Arc::clone(&catalog),
        &cluster_token,
        args.ingester.grpc_bind.unwrap_or(loopback),
        data_dir_lock.is_some(),
    )
    .await?;
    let addr = ingester.addr.to_string();
    let _lifecycle = start_lifecycle(
        args,
        store.clone(),
        Arc::clone(&catalog),
        ingester.ingester.id(),
    );
    // Queries read the embedded ingester's buffer in place.
    let buffers = LocalIngester(Arc::clone(&ingester.ingester));
    let querier = Querier::new(Arc::clone(&catalog), store, Arc::new(buffers));
    let querier = Arc::new(querier.configured(&args.query));
    querier.warm_summaries();
    let client = IngesterClient::new(addr, cluster_token, args.write.write_timeout);
    let router = Router::new(vec![Arc::new(client)], 1).with_clock(sequence_clock(args));
    let router = Arc::new(router);
    serve_edge(args, catalog, Arc::clone(&router), Some(querier), shutdown).await?;
    router.close().await;
    ingester.stop(args.shutdown_timeout).await
}

/// The edge and a router to remote ingesters (`--ingesters`).
async fn run_router(
    args: &ServeArgs,
    catalog: Arc<Catalog>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let cluster_token = required_cluster_token(args, Role::Router)?;
    let source = IngesterSource::parse(args.ingesters.as_deref().unwrap_or_default())?;
    let (timeout, token) = (args.write.write_timeout, Arc::clone(&cluster_token));
    let new_client = move |addr: String| -> Arc<dyn IngesterLink> {
        Arc::new(IngesterClient::new(addr, Arc::clone(&token), timeout))
    };
    let clients = match &source {
        IngesterSource::Static(addrs) if addrs.len() < args.router.write_replicas => {
            return Err(ServeError::Unsupported(format!(
                "--write-replicas is {} but --ingesters names only {}",
                args.router.write_replicas,
                addrs.len()
            )));
        }
        IngesterSource::Static(addrs) => addrs.iter().cloned().map(&new_client).collect(),
        IngesterSource::Dns { .. } => Vec::new(),
    };
    let router = Router::new(clients, args.router.write_replicas).with_clock(sequence_clock(args));
    let router = Arc::new(router);
    if let IngesterSource::Dns { name, port } = source {
        tokio::spawn(resolve_ingesters(
            Arc::clone(&router),
            name,
            port,
            new_client,
        ));
    }
    serve_edge(args, catalog, Arc::clone(&router), None, shutdown).await?;
    router.close().await;
    Ok(())
}

/// A querier: SQL over Flight on `--http-bind`, reading the catalog's Parquet
/// files and the buffered rows of `--ingesters`.
async fn run_querier(
    args: &ServeArgs,
    store: Store,
    catalog: Arc<Catalog>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let missing = |flag| ServeError::Missing {
        flag,
        role: Role::Querier,
    };
    let cluster_token = required_cluster_token(args, Role::Querier)?;
    let source = IngesterSource::parse(args.ingesters.as_deref().ok_or(missing("--ingesters"))?)?;
    let addrs = match &source {
        IngesterSource::Static(addrs) => addrs.clone(),
        IngesterSource::Dns { .. } => Vec::new(),
    };
    // Reads only (no claims): an unreachable ingester is left out of queries
    // once the leases show its WAL in Parquet.
    let wal_leases = Leases::new(store.clone(), "querier", args.ingester.lease_ttl);
    let buffers = Arc::new(
        FlightIngesters::new(addrs, cluster_token, args.query.ingester_timeout)
            .with_wal_leases(wal_leases),
    );
    if let IngesterSource::Dns { name, port } = source {
        tokio::spawn(resolve_query_ingesters(Arc::clone(&buffers), name, port));
    }
    let auth = operator_auth(args, Arc::clone(&catalog))?;
    let querier = Querier::new(catalog, store.clone(), buffers);
    let querier = querier.configured(&args.query);
    let querier = Arc::new(querier);
    querier.warm_summaries();
    let bodies = BodyReader::new(args.body, args.body.budget());
    let frontend = Arc::new(QueryFrontend::new(auth, querier, bodies));
    let listener = bind_http(args).await?;
    let (stopping, shutdown) = flag_on_shutdown(shutdown);
    let service = edge::EdgeService::querier(frontend, stopping, store, &args.body);
    edge::serve(
        listener,
        service,
        args.conn,
        shutdown,
        args.shutdown_timeout,
    )
    .await;
    tracing::info!("querier stopped");
    Ok(())
}

/// Keeps a querier's ingester set equal to what `name` resolves to.
async fn resolve_query_ingesters(ingesters: Arc<FlightIngesters>, name: String, port: u16) {
    const EVERY: Duration = Duration::from_secs(5);
    loop {
        match tokio::net::lookup_host((name.as_str(), port)).await {
            Ok(found) => ingesters.set_addrs(found.map(|a| a.to_string()).collect()),
            Err(e) => {
                tracing::warn!(%name, error = %e, "resolving ingesters failed; keeping the last set")
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// An ingester: Flight on `--grpc-bind`, health on `--http-bind`.
async fn run_ingester(
    args: &ServeArgs,
    store: Store,
    catalog: Arc<Catalog>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let cluster_token = required_cluster_token(args, Role::Ingester)?;
    let bind = args
        .ingester
        .grpc_bind
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8087)));
    let ready_store = store.clone();
    let lifecycle_store = store.clone();
    let lifecycle_catalog = Arc::clone(&catalog);
    let ingester = IngesterRole::start(args, store, catalog, &cluster_token, bind, false).await?;
    let _lifecycle = start_lifecycle(
        args,
        lifecycle_store,
        lifecycle_catalog,
        ingester.ingester.id(),
    );
    println!(
        "inflow: ingester {} taking writes on grpc://{}",
        ingester.ingester.id(),
        ingester.addr
    );
    let listener = bind_http(args).await?;
    let (stopping, shutdown) = flag_on_shutdown(shutdown);
    let ops = edge::ops_app(stopping, ready_store);
    edge::serve(listener, ops, args.conn, shutdown, args.shutdown_timeout).await;
    ingester.stop(args.shutdown_timeout).await
}

/// A flag that turns true when `shutdown` resolves (readiness fails first, so
/// load balancers stop sending), and the shutdown future that sets it.
fn flag_on_shutdown(
    shutdown: impl Future<Output = ()>,
) -> (Arc<AtomicBool>, impl Future<Output = ()>) {
    let stopping = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stopping);
    let shutdown = async move {
        shutdown.await;
        flag.store(true, std::sync::atomic::Ordering::Release);
    };
    (stopping, shutdown)
}

/// A running ingester and its Flight server.
struct IngesterRole {
    ingester: Arc<Ingester>,
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl IngesterRole {
    async fn start(
        args: &ServeArgs,
        store: Store,
        catalog: Arc<Catalog>,
        cluster_token: &Arc<str>,
        bind: SocketAddr,
        exclusive: bool,
    ) -> Result<Self, ServeError> {
        let config = IngesterConfig {
            id: ingester_id(args)?,
            buffer_bytes: args.ingester.buffer_bytes,
            wal_flush_interval: args.ingester.wal_flush_interval,
            snapshot_interval: args.ingester.snapshot_interval,
            lease_ttl: args.ingester.lease_ttl,
            exclusive,
        };
        let ingester = Ingester::start(config, store, catalog).await?;
        let listener = TcpListener::bind(bind)
            .await
            .map_err(io(format!("binding {bind}")))?;
        let addr = listener.local_addr().map_err(io("grpc listener address"))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // Acks are small writes on a busy stream: without TCP_NODELAY, Nagle and
        // delayed ACKs hold every second one back ~40 ms.
        let incoming = TcpListenerStream::new(listener).map(|conn| {
            conn.inspect(|s| {
                let _ = s.set_nodelay(true);
            })
        });
        let flight =
            IngesterFlight::new(Arc::clone(&ingester), Arc::clone(cluster_token)).into_server();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(flight)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        tracing::info!(%addr, ingester = ingester.id(), "ingester serving Flight");
        Ok(Self {
            ingester,
            addr,
            stop,
            server,
        })
    }

    /// Stops taking writes (open streams get `deadline`), then flushes the WAL and
    /// snapshots everything to Parquet.
    async fn stop(self, deadline: Duration) -> Result<(), ServeError> {
        let _ = self.stop.send(());
        if tokio::time::timeout(deadline, self.server).await.is_err() {
            tracing::warn!("ingester gRPC server did not stop before the deadline");
        }
        self.ingester.shutdown().await?;
        tracing::info!("ingester shut down");
        Ok(())
    }
}

/// Serves the edge (HTTP, producer Flight, and queries when `querier` is given)
/// until `shutdown`, then drains.
async fn serve_edge(
    args: &ServeArgs,
    catalog: Arc<Catalog>,
    router: Arc<Router>,
    querier: Option<Arc<Querier>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let auth = operator_auth(args, Arc::clone(&catalog))?;
    let series = SeriesRegistry::new(catalog.store().clone());
    let writer = Writer::new(catalog, series, router, args.write);
    let edge = Arc::new(Edge {
        auth,
        writer: Arc::new(writer),
        limits: args.body,
        stopping: Default::default(),
        body_bytes: args.body.budget(),
    });
    let listener = bind_http(args).await?;
    let stopping = Arc::clone(&edge);
    let shutdown = async move {
        shutdown.await;
        // Fail readiness first, so load balancers stop sending.
        stopping
            .stopping
            .store(true, std::sync::atomic::Ordering::Release);
    };
    let query = querier.map(|q| {
        Arc::new(QueryFrontend::new(
            Arc::clone(&edge.auth),
            q,
            edge.body_reader(),
        ))
    });
    edge::serve(
        listener,
        edge::EdgeService::with_query(edge, query),
        args.conn,
        shutdown,
        args.shutdown_timeout,
    )
    .await;
    tracing::info!("edge stopped");
    Ok(())
}

/// Raises the soft open-file limit to the hard one (each connection is a
/// file descriptor; many systems start processes at 1024), and warns when
/// `--max-connections` does not fit under it.
fn raise_open_file_limit(max_connections: usize) {
    /// Descriptors kept for everything but client connections: WAL and
    /// Parquet files, object-store and ingester connections.
    const RESERVED: u64 = 256;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a pointer to a local struct.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if got != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "reading the open-file limit failed");
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), "raising the open-file limit failed");
        }
    }
    let wanted = (max_connections as u64).saturating_add(RESERVED);
    if limit.rlim_cur < wanted {
        tracing::warn!(
            open_file_limit = limit.rlim_cur,
            max_connections,
            "--max-connections does not fit under the open-file limit: accepts will fail with EMFILE before it is reached"
        );
    }
}

/// The authorizer of an entry point: the operator token (announced on stdout)
/// plus the catalog's tokens.
fn operator_auth(args: &ServeArgs, catalog: Arc<Catalog>) -> Result<Arc<Authorizer>, ServeError> {
    let from_env = crate::auth::TOKEN_VARIABLES.into_iter().find_map(|name| {
        let value = std::env::var(name).ok()?;
        (!value.trim().is_empty()).then_some((name, value))
    });
    let (env_name, env_token) = from_env.unzip();
    let (admin, source) = admin_token(
        env_token,
        args.tokens.admin_token_file.as_deref(),
        &args.store.data_dir,
    )?;
    match &source {
        AdminTokenSource::Env => println!(
            "inflow: operator token from {}",
            env_name.unwrap_or("the environment")
        ),
        AdminTokenSource::File(p) => println!("inflow: operator token read from {}", p.display()),
        AdminTokenSource::Generated(p) => {
            println!(
                "inflow: operator token generated and written to {}",
                p.display()
            )
        }
    }
    let auth = Authorizer::new(&admin, catalog);
    if args.tokens.without_auth {
        let warning = "--without-auth: every request is let in as the operator, with or \
                       without a token; for local development only, never where others can connect";
        println!("inflow: WARNING: {warning}");
        tracing::warn!("{warning}");
        return Ok(Arc::new(auth.without_auth()));
    }
    Ok(Arc::new(auth))
}

fn tls_acceptor(args: &ServeArgs) -> Result<Option<tokio_rustls::TlsAcceptor>, ServeError> {
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(crate::tls::acceptor(cert, key)?)),
        (None, None) => Ok(None),
        _ => Err(ServeError::TlsPair),
    }
}

async fn bind_http(args: &ServeArgs) -> Result<edge::Listener, ServeError> {
    let tls = tls_acceptor(args)?;
    let tcp = TcpListener::bind(args.http_bind)
        .await
        .map_err(io(format!("binding {}", args.http_bind)))?;
    let addr = tcp.local_addr().map_err(io("http listener address"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!(
        "inflow: listening on {scheme}://{addr} (role {:?}, data in {})",
        args.role,
        args.store.data_dir.display()
    );
    Ok(edge::Listener { tcp, tls })
}

/// The cluster token a split role must be given (`--cluster-token-file`).
fn required_cluster_token(args: &ServeArgs, role: Role) -> Result<Arc<str>, ServeError> {
    let path = args.tokens.cluster_token_file.as_deref();
    read_cluster_token(path.ok_or(ServeError::Missing {
        flag: "--cluster-token-file",
        role,
    })?)
}

fn read_cluster_token(path: &std::path::Path) -> Result<Arc<str>, ServeError> {
    let token = std::fs::read_to_string(path).map_err(io(format!("reading {}", path.display())))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(ServeError::Io {
            what: format!("reading {}", path.display()),
            source: std::io::Error::other("the cluster token file is empty"),
        });
    }
    Ok(token.into())
}

/// Where a router finds its ingesters.
#[derive(Debug, PartialEq)]
enum IngesterSource {
    /// `host:port,host:port`
    Static(Vec<String>),
    /// `dns:NAME:PORT`, re-resolved every few seconds (a Kubernetes headless Service).
    Dns { name: String, port: u16 },
}

impl IngesterSource {
    fn parse(list: &str) -> Result<Self, ServeError> {
        let list = list.trim();
        if let Some(rest) = list.strip_prefix("dns:") {
            let (name, port) = rest
                .rsplit_once(':')
                .and_then(|(n, p)| Some((n.to_string(), p.parse().ok()?)))
                .filter(|(n, _)| !n.is_empty())
                .ok_or_else(|| {
                    ServeError::Unsupported(format!("--ingesters {list}: expected dns:NAME:PORT"))
                })?;
            return Ok(Self::Dns { name, port });
        }
        let addrs: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if addrs.is_empty() {
            return Err(ServeError::Missing {
                flag: "--ingesters",
                role: Role::Router,
            });
        }
        Ok(Self::Static(addrs))
    }
}

/// Keeps the router's ingester set equal to what `name` resolves to.
async fn resolve_ingesters(
    router: Arc<Router>,
    name: String,
    port: u16,
    new_client: impl Fn(String) -> Arc<dyn IngesterLink>,
) {
    const EVERY: Duration = Duration::from_secs(5);
    loop {
        match tokio::net::lookup_host((name.as_str(), port)).await {
            Ok(found) => router.set_ingesters(found.map(|a| a.to_string()).collect(), &new_client),
            Err(e) => {
                tracing::warn!(%name, error = %e, "resolving ingesters failed; keeping the last set")
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}

fn object_store(args: &ServeArgs) -> Result<Store, ServeError> {
    match args.store.object_store {
        ObjectStoreKind::File => Ok(Store::local(&args.store.data_dir)?),
        ObjectStoreKind::S3 => {
            let bucket = args.store.s3_bucket.as_deref().ok_or(ServeError::Missing {
                flag: "--s3-bucket",
                role: args.role,
            })?;
            let from_env = object_store::aws::AmazonS3Builder::from_env();
            let s3 = s3_builder(&args.store, bucket, from_env)
                .build()
                .map_err(|e| ServeError::Store(e.into()))?;
            // The data dir still holds this process's own files (token, id).
            std::fs::create_dir_all(&args.store.data_dir)
                .map_err(io(format!("creating {}", args.store.data_dir.display())))?;
            Ok(Store::remote(Arc::new(s3)))
        }
    }
}

/// The S3 client's settings: the `AWS_*` environment (`base`), then the
/// flags given, which win.
fn s3_builder(
    store: &StoreArgs,
    bucket: &str,
    base: object_store::aws::AmazonS3Builder,
) -> object_store::aws::AmazonS3Builder {
    let mut builder = base.with_bucket_name(bucket);
    if let Some(region) = &store.s3_region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &store.s3_endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    builder
}

/// Takes an exclusive `flock` on `<root>/.lock`; the kernel drops it when the
/// process dies, however it dies.
fn lock_data_dir(root: &std::path::Path) -> Result<std::fs::File, ServeError> {
    use std::os::fd::AsRawFd;
    let path = root.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))?;
    // SAFETY: flock on a file descriptor this function owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(ServeError::DataDirInUse(root.to_path_buf()));
    }
    Ok(file)
}

/// `--ingester-id`, else the id file in the data dir, else a new id saved there.
fn ingester_id(args: &ServeArgs) -> Result<String, ServeError> {
    if let Some(id) = &args.ingester.ingester_id {
        return Ok(id.clone());
    }
    let path = args.store.data_dir.join("ingester-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let id = format!(
                "ingester-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            );
            std::fs::write(&path, format!("{id}\n"))
                .map_err(io(format!("writing {}", path.display())))?;
            Ok(id)
        }
    }
}

/// Installs the SIGTERM/SIGINT handlers now (not on first poll, which could come
/// after a signal already arrived) and resolves when one arrives.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(io("installing the SIGTERM handler"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io("installing the SIGINT handler"))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--s3-region` wins over `AWS_REGION` only when given: the region the
    /// environment set (here put into the builder, as `from_env` would) stays.
    #[test]
    fn the_s3_region_flag_overrides_the_environment_only_when_given() {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        let store = |region: Option<&str>| StoreArgs {
            data_dir: "d".into(),
            object_store: ObjectStoreKind::S3,
            s3_bucket: Some("b".into()),
            s3_endpoint: None,
            s3_region: region.map(String::from),
        };
        let env = || AmazonS3Builder::new().with_region("eu-west-3");
        let region = |b: AmazonS3Builder| b.get_config_value(&AmazonS3ConfigKey::Region);
        assert_eq!(
            region(s3_builder(&store(None), "b", env())).as_deref(),
            Some("eu-west-3")
        );
        assert_eq!(
            region(s3_builder(&store(Some("us-west-2")), "b", env())).as_deref(),
            Some("us-west-2")
        );
    }

    #[test]
    fn ingester_sources() {
        assert_eq!(
            IngesterSource::parse("a:1, b:2").unwrap(),
            IngesterSource::Static(vec!["a:1".into(), "b:2".into()])
        );
        assert_eq!(
            IngesterSource::parse("dns:inflow-ingester.ns.svc:8087").unwrap(),
            IngesterSource::Dns {
                name: "inflow-ingester.ns.svc".into(),
                port: 8087
            }
        );
        assert!(IngesterSource::parse("dns:nope").is_err());
        assert!(IngesterSource::parse("").is_err());
    }
}
