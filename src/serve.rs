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

use clap::{Args, ValueEnum};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use crate::auth::{AdminTokenSource, Authorizer, admin_token, generate_token};
use crate::catalog::Catalog;
use crate::compactor::{Compactor, CompactorConfig};
use crate::edge::{self, Edge, body::Limits};
use crate::ingester::flight::IngesterFlight;
use crate::ingester::{Ingester, IngesterConfig};
use crate::lease::Leases;
use crate::lifecycle::{Lifecycle, LifecycleConfig};
use crate::query::frontend::QueryFrontend;
use crate::query::{FlightIngesters, LocalIngester, Querier};
use crate::route::{IngesterClient, Router};
use crate::series::SeriesRegistry;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    All,
    Router,
    Ingester,
    Querier,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectStoreKind {
    /// A local directory: `--data-dir`.
    File,
    /// S3 or an S3-compatible server; credentials from the usual `AWS_*` variables.
    S3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// The clock that stamps write sequences: the system's, unless a test moved it.
fn sequence_clock(args: &ServeArgs) -> crate::route::HybridClock {
    match args.test_clock_offset_secs {
        0 => crate::route::HybridClock::default(),
        secs => crate::route::HybridClock::offset_by(secs),
    }
}

/// Flags of `inflow serve`; each `--x-y` can also be set as `INFLOW_X_Y`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// What this process runs.
    #[arg(long, env = "INFLOW_ROLE", value_enum, default_value = "all")]
    pub role: Role,
    /// Root of the local object store.
    #[arg(long, env = "INFLOW_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Where WAL, catalog and Parquet live.
    #[arg(long, env = "INFLOW_OBJECT_STORE", value_enum, default_value = "file")]
    pub object_store: ObjectStoreKind,
    /// S3 bucket (with `--object-store s3`).
    #[arg(long, env = "INFLOW_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// S3 endpoint URL, for S3-compatible servers (default: AWS).
    #[arg(long, env = "INFLOW_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "INFLOW_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// HTTP (and gRPC) listener of the edge; health everywhere.
    #[arg(long, env = "INFLOW_HTTP_BIND", default_value = "0.0.0.0:8086")]
    pub http_bind: SocketAddr,
    /// An ingester's Flight listener (default 0.0.0.0:8087; in `all`, loopback
    /// on an ephemeral port).
    #[arg(long, env = "INFLOW_GRPC_BIND")]
    pub grpc_bind: Option<SocketAddr>,
    /// For routers and queriers: the ingesters, comma-separated `host:port`, or
    /// `dns:NAME:PORT`.
    #[arg(long, env = "INFLOW_INGESTERS")]
    pub ingesters: Option<String>,
    /// For routers: how many ingesters must acknowledge each part of a write.
    #[arg(long, env = "INFLOW_WRITE_REPLICAS", default_value_t = 1)]
    pub write_replicas: usize,
    /// Test only, hidden: moves the clock that stamps write sequences by this
    /// many seconds (negative: back), to show a router whose clock is behind.
    #[arg(
        long,
        env = "INFLOW_TEST_CLOCK_OFFSET_SECS",
        default_value_t = 0,
        allow_hyphen_values = true,
        hide = true
    )]
    pub test_clock_offset_secs: i64,
    /// Stable id of this ingester (default: from the id file in the data dir).
    #[arg(long, env = "INFLOW_INGESTER_ID")]
    pub ingester_id: Option<String>,
    /// File holding the operator token (else `INFLOW_ADMIN_TOKEN`, else generated
    /// into `<data-dir>/admin-token`).
    #[arg(long, env = "INFLOW_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// File holding the secret shared between roles (generated in `all`).
    #[arg(long, env = "INFLOW_CLUSTER_TOKEN_FILE")]
    pub cluster_token_file: Option<PathBuf>,
    /// Largest request body accepted, in bytes (413 above it).
    #[arg(long, env = "INFLOW_MAX_REQUEST_BYTES", default_value_t = 10 << 20)]
    pub max_request_bytes: usize,
    /// Largest body after gzip inflation, in bytes (413 above it).
    #[arg(long, env = "INFLOW_MAX_DECOMPRESSED_BYTES", default_value_t = 10 << 20)]
    pub max_decompressed_bytes: usize,
    /// Longest line accepted, in bytes (longer lines are rejected by number).
    #[arg(long, env = "INFLOW_MAX_LINE_BYTES", default_value_t = 1 << 20)]
    pub max_line_bytes: usize,
    /// Most tables a database may have (422 for a write that would add more).
    #[arg(long, env = "INFLOW_MAX_TABLES_PER_DATABASE", default_value_t = 2000)]
    pub max_tables_per_database: usize,
    /// Most columns a table may have, `time` included (422 above it).
    #[arg(long, env = "INFLOW_MAX_COLUMNS_PER_TABLE", default_value_t = 500)]
    pub max_columns_per_table: usize,
    /// Most series (tables × tag sets with data inside the retention period)
    /// a database may have; a line that would add one more gets 400. 0: no
    /// limit. As InfluxDB 1.x's `max-series-per-database`.
    #[arg(
        long,
        env = "INFLOW_MAX_SERIES_PER_DATABASE",
        default_value_t = 1_000_000
    )]
    pub max_series_per_database: usize,
    /// Longest measurement, tag key, tag value or field key, in bytes (as
    /// InfluxDB 3: 64 KiB); longer lines are rejected by number.
    #[arg(long, env = "INFLOW_MAX_TAG_BYTES", default_value_t = 64 << 10)]
    pub max_tag_bytes: usize,
    /// Longest string field value, in bytes (as InfluxDB 3: 64 KiB).
    #[arg(long, env = "INFLOW_MAX_STRING_BYTES", default_value_t = 64 << 10)]
    pub max_string_bytes: usize,
    /// Write requests handled at once; more wait, unread, up to --write-timeout
    /// and then get 503. Bounds the memory of requests in flight.
    #[arg(long, env = "INFLOW_MAX_CONCURRENT_WRITES", default_value_t = 16)]
    pub max_concurrent_writes: usize,
    /// Most HTTP (and gRPC) connections open at once on the HTTP port; past it
    /// the server stops accepting and new clients wait in the listen backlog.
    /// The server raises its open-file limit to the hard limit at start and
    /// warns when this does not fit under it.
    #[arg(long, env = "INFLOW_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// How long a client may take to send a request's headers; an HTTP/1
    /// connection waiting for its next request is closed after this too.
    #[arg(long, env = "INFLOW_HTTP_HEADER_READ_TIMEOUT", value_parser = duration, default_value = "10s")]
    pub http_header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// (gracefully; for HTTP/2 with GOAWAY).
    #[arg(long, env = "INFLOW_HTTP_IDLE_TIMEOUT", value_parser = duration, default_value = "60s")]
    pub http_idle_timeout: Duration,
    /// Longest gap between two pieces of a request body (408 and the connection
    /// closed past it); also the grace before --http-body-min-rate applies.
    #[arg(long, env = "INFLOW_HTTP_BODY_READ_TIMEOUT", value_parser = duration, default_value = "30s")]
    pub http_body_read_timeout: Duration,
    /// Slowest average rate, in bytes a second, a write's body may arrive at
    /// once --http-body-read-timeout has passed (408 below it). 0: no minimum.
    #[arg(long, env = "INFLOW_HTTP_BODY_MIN_RATE", default_value_t = 1024)]
    pub http_body_min_rate: usize,
    /// Most bytes of write request bodies the edge holds at once, from their
    /// first byte until their write is done; a body that would pass it gets
    /// 503 + Retry-After at once. Bounds the memory of slow uploads.
    #[arg(long, env = "INFLOW_MAX_BUFFERED_BODY_BYTES", default_value_t = 512 << 20)]
    pub max_buffered_body_bytes: usize,
    /// Extra time the WAL waits to gather writes into one segment.
    #[arg(long, env = "INFLOW_WAL_FLUSH_INTERVAL", value_parser = duration, default_value = "0s")]
    pub wal_flush_interval: Duration,
    /// How often an ingester writes its buffer to Parquet.
    #[arg(long, env = "INFLOW_SNAPSHOT_INTERVAL", value_parser = duration, default_value = "30s")]
    pub snapshot_interval: Duration,
    /// How long an ingester's WAL lease lives without a heartbeat; after that
    /// another ingester takes its WAL over.
    #[arg(long, env = "INFLOW_LEASE_TTL", value_parser = duration, default_value = "10s")]
    pub lease_ttl: Duration,
    /// Most bytes an ingester buffers before refusing writes (503).
    #[arg(long, env = "INFLOW_BUFFER_BYTES", default_value_t = 1 << 30)]
    pub buffer_bytes: usize,
    /// How long the edge waits for an ingester to acknowledge a write.
    #[arg(long, env = "INFLOW_WRITE_TIMEOUT", value_parser = duration, default_value = "10s")]
    pub write_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    #[arg(long, env = "INFLOW_SHUTDOWN_TIMEOUT", value_parser = duration, default_value = "30s")]
    pub shutdown_timeout: Duration,
    #[arg(long, env = "INFLOW_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// tracing filter, e.g. `info,inflow=debug`.
    #[arg(long, env = "INFLOW_LOG_FILTER", default_value = "info")]
    pub log_filter: String,
    /// For queriers: how long to wait for an ingester's buffered rows before the
    /// query fails with UNAVAILABLE (never a partial answer).
    #[arg(long, env = "INFLOW_QUERY_INGESTER_TIMEOUT", value_parser = duration, default_value = "10s")]
    pub query_ingester_timeout: Duration,
    /// For queriers: memory all running queries may hold between them; a query
    /// that needs more fails with RESOURCE_EXHAUSTED.
    #[arg(long, env = "INFLOW_QUERY_MEMORY_BYTES", default_value_t = 1 << 30)]
    pub query_memory_bytes: usize,
    /// For queriers: bytes of per-file summaries (series, last values) kept
    /// between queries, so `SHOW TAG VALUES`, `SHOW SERIES`, … and InfluxQL's
    /// `last()` by tag are answered without a scan; least recently used go
    /// first. 0 turns them off (every answer comes from a scan).
    #[arg(long, env = "INFLOW_QUERY_CACHE_BYTES", default_value_t = crate::query::summary::DEFAULT_CACHE_BYTES)]
    pub query_cache_bytes: usize,
    /// For queriers: how long one query may run, from admission to the last
    /// row handed to its reader; past it the query is cancelled and answered
    /// with a timeout error (HTTP 504, gRPC DEADLINE_EXCEEDED).
    #[arg(long, env = "INFLOW_QUERY_TIMEOUT", value_parser = duration, default_value = "5m")]
    pub query_timeout: Duration,
    /// For queriers: queries running at once; more wait up to
    /// `--query-queue-timeout`, then get 503 with `Retry-After`.
    #[arg(long, env = "INFLOW_MAX_CONCURRENT_QUERIES", default_value_t = 16)]
    pub max_concurrent_queries: usize,
    /// For queriers: how long a query waits for one of the
    /// `--max-concurrent-queries` slots.
    #[arg(long, env = "INFLOW_QUERY_QUEUE_TIMEOUT", value_parser = duration, default_value = "30s")]
    pub query_queue_timeout: Duration,
    /// PEM certificate chain: serve HTTP and gRPC over TLS on the HTTP port
    /// (plain text is then refused there). Needs `--tls-key`.
    #[arg(long, env = "INFLOW_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "INFLOW_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// How often every process rereads the catalog: a revoked token, a deleted
    /// database or a new retention period takes effect within this.
    #[arg(long, env = "INFLOW_CATALOG_REFRESH_INTERVAL", value_parser = duration, default_value = "10s")]
    pub catalog_refresh_interval: Duration,
    /// For ingesters: time between rounds of retention and deletion.
    #[arg(long, env = "INFLOW_LIFECYCLE_INTERVAL", value_parser = duration, default_value = "1m")]
    pub lifecycle_interval: Duration,
    /// How long a file dropped from the catalog (retention) stays readable,
    /// for queries planned before the drop.
    #[arg(long, env = "INFLOW_FILE_GRACE", value_parser = duration, default_value = "10m")]
    pub file_grace: Duration,
    /// How long a deleted database's data stays before it is purged.
    #[arg(long, env = "INFLOW_PURGE_GRACE", value_parser = duration, default_value = "24h")]
    pub purge_grace: Duration,
    /// For ingesters: time between compaction rounds (one ingester of a
    /// cluster compacts at a time, by lease).
    #[arg(long, env = "INFLOW_COMPACTION_INTERVAL", value_parser = duration, default_value = "1m")]
    pub compaction_interval: Duration,
    /// A day partition is compacted once it has this many files smaller than
    /// `--compaction-target-bytes`.
    #[arg(long, env = "INFLOW_COMPACTION_MIN_FILES", default_value_t = 10)]
    pub compaction_min_files: usize,
    /// Files at least this large are not compacted again.
    #[arg(long, env = "INFLOW_COMPACTION_TARGET_BYTES", default_value_t = 100 << 20)]
    pub compaction_target_bytes: u64,
    /// Most input bytes one compaction merges; bounds its memory.
    #[arg(long, env = "INFLOW_COMPACTION_MAX_INPUT_BYTES", default_value_t = 256 << 20)]
    pub compaction_max_input_bytes: u64,
}

impl ServeArgs {
    fn query_limits(&self) -> crate::query::QueryLimits {
        crate::query::QueryLimits {
            max_concurrent: self.max_concurrent_queries,
            queue_timeout: self.query_queue_timeout,
            timeout: self.query_timeout,
        }
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
    raise_open_file_limit(args.max_connections);
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
    let config = LifecycleConfig {
        interval: args.lifecycle_interval,
        file_grace: args.file_grace,
        purge_grace: args.purge_grace,
    };
    let lifecycle = Lifecycle::new(Arc::clone(&catalog), store.clone(), config);
    let compaction = CompactorConfig {
        interval: args.compaction_interval,
        min_files: args.compaction_min_files.max(2),
        target_bytes: args.compaction_target_bytes,
        max_input_bytes: args.compaction_max_input_bytes,
        lease_ttl: args.lease_ttl,
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
    let cluster_token = match &args.cluster_token_file {
        Some(path) => read_cluster_token(path)?,
        None => generate_token().into(),
    };
    // Held until this function returns. It proves that no other process uses
    // the directory, so the WAL lease a crashed previous run left is taken at once.
    let data_dir_lock = match store.local_root() {
        Some(root) => Some(lock_data_dir(root)?),
        None => None,
    };
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let ingester = IngesterRole::start(
        args,
        store.clone(),
        Arc::clone(&catalog),
        &cluster_token,
        args.grpc_bind.unwrap_or(loopback),
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
    let querier = Arc::new(
        querier
            .with_memory_limit(args.query_memory_bytes)
            .with_cache_bytes(args.query_cache_bytes)
            .with_limits(args.query_limits()),
    );
    querier.warm_summaries();
    let client = IngesterClient::new(addr, cluster_token, args.write_timeout);
    let router = Router::new(vec![client], 1).with_clock(sequence_clock(args));
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
    let cluster_token = read_cluster_token(args.cluster_token_file.as_deref().ok_or(
        ServeError::Missing {
            flag: "--cluster-token-file",
            role: Role::Router,
        },
    )?)?;
    let source = IngesterSource::parse(args.ingesters.as_deref().unwrap_or_default())?;
    let (timeout, token) = (args.write_timeout, Arc::clone(&cluster_token));
    let new_client = move |addr: String| IngesterClient::new(addr, Arc::clone(&token), timeout);
    let clients = match &source {
        IngesterSource::Static(addrs) if addrs.len() < args.write_replicas => {
            return Err(ServeError::Unsupported(format!(
                "--write-replicas is {} but --ingesters names only {}",
                args.write_replicas,
                addrs.len()
            )));
        }
        IngesterSource::Static(addrs) => addrs.iter().cloned().map(&new_client).collect(),
        IngesterSource::Dns { .. } => Vec::new(),
    };
    let router = Router::new(clients, args.write_replicas).with_clock(sequence_clock(args));
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
    let cluster_token = read_cluster_token(
        args.cluster_token_file
            .as_deref()
            .ok_or(missing("--cluster-token-file"))?,
    )?;
    let source = IngesterSource::parse(args.ingesters.as_deref().ok_or(missing("--ingesters"))?)?;
    let addrs = match &source {
        IngesterSource::Static(addrs) => addrs.clone(),
        IngesterSource::Dns { .. } => Vec::new(),
    };
    // Reads only (no claims): an unreachable ingester is left out of queries
    // once the leases show its WAL in Parquet.
    let wal_leases = Leases::new(store.clone(), "querier", args.lease_ttl);
    let buffers = Arc::new(
        FlightIngesters::new(addrs, cluster_token, args.query_ingester_timeout)
            .with_wal_leases(wal_leases),
    );
    if let IngesterSource::Dns { name, port } = source {
        tokio::spawn(resolve_query_ingesters(Arc::clone(&buffers), name, port));
    }
    let auth = operator_auth(args, Arc::clone(&catalog))?;
    let querier = Querier::new(catalog, store.clone(), buffers);
    let querier = querier
        .with_memory_limit(args.query_memory_bytes)
        .with_cache_bytes(args.query_cache_bytes)
        .with_limits(args.query_limits());
    let querier = Arc::new(querier);
    querier.warm_summaries();
    let frontend = Arc::new(QueryFrontend::new(auth, querier));
    let listener = bind_http(args).await?;
    let (stopping, shutdown) = flag_on_shutdown(shutdown);
    let service = edge::EdgeService::querier(frontend, stopping, store, &edge_limits(args));
    edge::serve(
        listener,
        service,
        conn_limits(args),
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
    let cluster_token = read_cluster_token(args.cluster_token_file.as_deref().ok_or(
        ServeError::Missing {
            flag: "--cluster-token-file",
            role: Role::Ingester,
        },
    )?)?;
    let bind = args
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
    edge::serve(
        listener,
        ops,
        conn_limits(args),
        shutdown,
        args.shutdown_timeout,
    )
    .await;
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
            buffer_bytes: args.buffer_bytes,
            wal_flush_interval: args.wal_flush_interval,
            snapshot_interval: args.snapshot_interval,
            lease_ttl: args.lease_ttl,
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
    let edge = Arc::new(Edge {
        auth: operator_auth(args, Arc::clone(&catalog))?,
        series: SeriesRegistry::new(catalog.store().clone()),
        catalog,
        router,
        limits: edge_limits(args),
        stopping: Default::default(),
        write_slots: tokio::sync::Semaphore::new(args.max_concurrent_writes),
        body_bytes: tokio::sync::Semaphore::new(
            args.max_buffered_body_bytes
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        ),
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
    let query = querier.map(|q| Arc::new(QueryFrontend::new(Arc::clone(&edge.auth), q)));
    edge::serve(
        listener,
        edge::EdgeService::with_query(edge, query),
        conn_limits(args),
        shutdown,
        args.shutdown_timeout,
    )
    .await;
    tracing::info!("edge stopped");
    Ok(())
}

/// The write limits of an edge, from the flags.
fn edge_limits(args: &ServeArgs) -> Limits {
    Limits {
        max_request_bytes: args.max_request_bytes,
        max_decompressed_bytes: args.max_decompressed_bytes,
        max_line_bytes: args.max_line_bytes,
        max_tables_per_database: args.max_tables_per_database,
        max_columns_per_table: args.max_columns_per_table,
        max_series_per_database: match args.max_series_per_database {
            0 => usize::MAX,
            n => n,
        },
        max_tag_bytes: args.max_tag_bytes,
        max_string_bytes: args.max_string_bytes,
        max_concurrent_writes: args.max_concurrent_writes,
        write_queue_timeout: args.write_timeout,
        body_read_timeout: args.http_body_read_timeout,
        body_min_rate: args.http_body_min_rate,
        max_buffered_body_bytes: args.max_buffered_body_bytes,
    }
}

/// How the HTTP port treats connections, from the flags.
fn conn_limits(args: &ServeArgs) -> edge::ConnLimits {
    edge::ConnLimits {
        max_connections: args.max_connections,
        header_read_timeout: args.http_header_read_timeout,
        idle_timeout: args.http_idle_timeout,
    }
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
    let env_token = std::env::var("INFLOW_ADMIN_TOKEN").ok();
    let (admin, source) = admin_token(env_token, args.admin_token_file.as_deref(), &args.data_dir)?;
    match &source {
        AdminTokenSource::Env => println!("inflow: operator token from INFLOW_ADMIN_TOKEN"),
        AdminTokenSource::File(p) => println!("inflow: operator token read from {}", p.display()),
        AdminTokenSource::Generated(p) => {
            println!(
                "inflow: operator token generated and written to {}",
                p.display()
            )
        }
    }
    Ok(Arc::new(Authorizer::new(&admin, catalog)))
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
        args.data_dir.display()
    );
    Ok(edge::Listener { tcp, tls })
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
    new_client: impl Fn(String) -> IngesterClient,
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
    match args.object_store {
        ObjectStoreKind::File => Ok(Store::local(&args.data_dir)?),
        ObjectStoreKind::S3 => {
            let bucket = args.s3_bucket.as_deref().ok_or(ServeError::Missing {
                flag: "--s3-bucket",
                role: args.role,
            })?;
            let mut builder = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_region(&args.s3_region);
            if let Some(endpoint) = &args.s3_endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
            }
            let s3 = builder.build().map_err(|e| ServeError::Store(e.into()))?;
            // The data dir still holds this process's own files (token, id).
            std::fs::create_dir_all(&args.data_dir)
                .map_err(io(format!("creating {}", args.data_dir.display())))?;
            Ok(Store::remote(Arc::new(s3)))
        }
    }
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
    if let Some(id) = &args.ingester_id {
        return Ok(id.clone());
    }
    let path = args.data_dir.join("ingester-id");
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
