//! The flags of `inflow serve`. Each `--x-y` can also be set as `INFLOW_X_Y`.
//!
//! A component's flags are one block, flattened in here and passed whole to
//! the component: [`WriteLimits`] to the writer, [`Limits`] and [`ConnLimits`]
//! to the edge, [`QueryConfig`] to the querier, [`LifecycleConfig`] and
//! [`CompactorConfig`] to those rounds, [`LogArgs`] to telemetry. The blocks
//! here are those `serve` itself wires: the object store, the tokens, the
//! router and the ingester.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::compactor::CompactorConfig;
use crate::edge::ConnLimits;
use crate::edge::body::Limits;
use crate::lifecycle::LifecycleConfig;
use crate::query::QueryConfig;
use crate::telemetry::LogArgs;
use crate::write::WriteLimits;

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

/// Flags of `inflow serve`; each `--x-y` can also be set as `INFLOW_X_Y`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// What this process runs.
    #[arg(long, env = "INFLOW_ROLE", value_enum, default_value = "all")]
    pub role: Role,
    /// HTTP (and gRPC) listener of the edge; health everywhere.
    #[arg(long, env = "INFLOW_HTTP_BIND", default_value = "0.0.0.0:8086")]
    pub http_bind: SocketAddr,
    /// For routers and queriers: the ingesters, comma-separated `host:port`, or
    /// `dns:NAME:PORT`.
    #[arg(long, env = "INFLOW_INGESTERS")]
    pub ingesters: Option<String>,
    /// PEM certificate chain: serve HTTP and gRPC over TLS on the HTTP port
    /// (plain text is then refused there). Needs `--tls-key`.
    #[arg(long, env = "INFLOW_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "INFLOW_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// How long shutdown waits for in-flight requests.
    #[arg(long, env = "INFLOW_SHUTDOWN_TIMEOUT", value_parser = humantime::parse_duration, default_value = "30s")]
    pub shutdown_timeout: Duration,
    /// How often every process rereads the catalog: a revoked token, a deleted
    /// database or a new retention period takes effect within this.
    #[arg(long, env = "INFLOW_CATALOG_REFRESH_INTERVAL", value_parser = humantime::parse_duration, default_value = "10s")]
    pub catalog_refresh_interval: Duration,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,
    #[command(flatten)]
    pub router: RouterArgs,
    #[command(flatten)]
    pub ingester: IngesterArgs,
    #[command(flatten)]
    pub body: Limits,
    #[command(flatten)]
    pub conn: ConnLimits,
    #[command(flatten)]
    pub write: WriteLimits,
    #[command(flatten)]
    pub query: QueryConfig,
    #[command(flatten)]
    pub lifecycle: LifecycleConfig,
    #[command(flatten)]
    pub compactor: CompactorConfig,
    #[command(flatten)]
    pub log: LogArgs,
}

/// Where the WAL, the catalog and Parquet live.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
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
    /// S3 region (default: `AWS_REGION` or `AWS_DEFAULT_REGION`, else
    /// us-east-1); given, it wins over them.
    #[arg(long, env = "INFLOW_S3_REGION")]
    pub s3_region: Option<String>,
}

/// The secrets: the operator's token and the one the roles share.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// File holding the operator token (else the `INFLOW_TOKEN` variable,
    /// which the CLI reads too, or its older name `INFLOW_ADMIN_TOKEN`; else
    /// generated into `<data-dir>/admin-token`).
    #[arg(long, env = "INFLOW_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Let every request in as the operator, with or without a token: for
    /// local development only (as InfluxDB 3 Core's `--without-auth`).
    /// Logged as a warning at start.
    #[arg(long, env = "INFLOW_WITHOUT_AUTH")]
    pub without_auth: bool,
    /// File holding the secret shared between roles (generated in `all`).
    #[arg(long, env = "INFLOW_CLUSTER_TOKEN_FILE")]
    pub cluster_token_file: Option<PathBuf>,
}

/// How a router spreads and stamps writes.
#[derive(Debug, Clone, Args)]
pub struct RouterArgs {
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
}

/// An ingester's listener, identity, WAL, buffer and lease.
#[derive(Debug, Clone, Args)]
pub struct IngesterArgs {
    /// An ingester's Flight listener (default 0.0.0.0:8087; in `all`, loopback
    /// on an ephemeral port).
    #[arg(long, env = "INFLOW_GRPC_BIND")]
    pub grpc_bind: Option<SocketAddr>,
    /// Stable id of this ingester (default: from the id file in the data dir).
    #[arg(long, env = "INFLOW_INGESTER_ID")]
    pub ingester_id: Option<String>,
    /// Extra time the WAL waits to gather writes into one segment.
    #[arg(long, env = "INFLOW_WAL_FLUSH_INTERVAL", value_parser = humantime::parse_duration, default_value = "0s")]
    pub wal_flush_interval: Duration,
    /// How often an ingester writes its buffer to Parquet.
    #[arg(long, env = "INFLOW_SNAPSHOT_INTERVAL", value_parser = humantime::parse_duration, default_value = "30s")]
    pub snapshot_interval: Duration,
    /// How long an ingester's WAL lease lives without a heartbeat; after that
    /// another ingester takes its WAL over.
    #[arg(long, env = "INFLOW_LEASE_TTL", value_parser = humantime::parse_duration, default_value = "10s")]
    pub lease_ttl: Duration,
    /// Most bytes an ingester buffers before refusing writes (503).
    #[arg(long, env = "INFLOW_BUFFER_BYTES", default_value_t = 1 << 30)]
    pub buffer_bytes: usize,
}

#[cfg(test)]
mod tests {
    use clap::{Command, CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    /// Every flag (and its `INFLOW_…` variable) a deployment may set stays as
    /// it was when the flags were one flat list, and clap accepts the blocks
    /// together (unique ids).
    #[test]
    fn the_flags_are_those_of_the_flat_list() {
        Serve::command().debug_assert();
        let flags: Vec<String> = ServeArgs::augment_args(Command::new("serve"))
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect();
        let mut sorted = flags.clone();
        sorted.sort();
        let expected = [
            "admin-token-file",
            "buffer-bytes",
            "catalog-refresh-interval",
            "cluster-token-file",
            "compaction-interval",
            "compaction-max-input-bytes",
            "compaction-min-files",
            "compaction-target-bytes",
            "data-dir",
            "default-retention",
            "file-grace",
            "grpc-bind",
            "http-bind",
            "http-body-min-rate",
            "http-body-read-timeout",
            "http-header-read-timeout",
            "http-idle-timeout",
            "ingester-id",
            "ingesters",
            "lease-ttl",
            "lifecycle-interval",
            "log-filter",
            "log-format",
            "max-buffered-body-bytes",
            "max-columns-per-table",
            "max-concurrent-queries",
            "max-concurrent-writes",
            "max-connections",
            "max-decompressed-bytes",
            "max-line-bytes",
            "max-request-bytes",
            "max-series-per-database",
            "max-string-bytes",
            "max-tables-per-database",
            "max-tag-bytes",
            "object-store",
            "purge-grace",
            "query-cache-bytes",
            "query-ingester-timeout",
            "query-memory-bytes",
            "query-queue-timeout",
            "query-timeout",
            "role",
            "s3-bucket",
            "s3-endpoint",
            "s3-region",
            "shutdown-timeout",
            "snapshot-interval",
            "test-clock-offset-secs",
            "tls-cert",
            "tls-key",
            "wal-flush-interval",
            "without-auth",
            "write-replicas",
            "write-timeout",
        ];
        assert_eq!(sorted, expected);
        for arg in ServeArgs::augment_args(Command::new("serve")).get_arguments() {
            let long = arg.get_long().unwrap_or_default();
            let env = arg.get_env().and_then(|e| e.to_str()).unwrap_or_default();
            let want = format!("INFLOW_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(env, want, "--{long}");
        }
    }

    #[test]
    fn defaults_reach_the_blocks() {
        let args = Serve::parse_from(["serve", "--lifecycle-interval", "2m"]).args;
        assert_eq!(args.lifecycle.interval, Duration::from_secs(120));
        assert_eq!(args.compactor.interval, Duration::from_secs(60));
        assert_eq!(args.write.write_timeout, Duration::from_secs(10));
        assert_eq!(args.query.limits.timeout, Duration::from_secs(300));
        assert_eq!(args.body.max_request_bytes, 10 << 20);
    }
}
