//! Prometheus metrics of the process, served as text at `GET /metrics` on every
//! role's HTTP port.
//!
//! One registry per process: in `all` mode the edge's and the ingester's
//! metrics come out of the same endpoint, as one scrape target. Every name
//! is prefixed `inflow_`, except the process collector's (`process_*`,
//! [`process`]), which keep the names every dashboard knows.
//!
//! Labels come from fixed sets (an API, a stage, an outcome, an operation) or
//! from what the operator configured (an ingester's id or address, a
//! database of the catalog): never from a request's text.
//!
//! `helm/inflow/dashboards/inflow.json` and `helm/inflow/rules/inflow-alerts.yaml`
//! query these names; `tests/e2e/dashboard.rs` fails when one of their
//! queries names a metric that no role exports.

mod process;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds, from a local fsync to a slow object store.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of work that takes seconds to minutes: snapshots, compactions, and
/// queries (whose deadline is minutes).
const LONG_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// WAL segment sizes in bytes: 1 KiB to 64 MiB (the largest segment).
const SIZE_BUCKETS: &[f64] = &[
    1024.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0,
];

pub struct Metrics {
    registry: Registry,
    /// The `process_*` metrics, in a registry without the prefix.
    process_registry: Registry,
    process: process::Process,
    /// Always 1, labelled with the version and the role (`all`, `router`,
    /// `ingester`, `querier`): a dashboard's role selector reads it.
    pub build_info: IntGaugeVec,
    /// HTTP requests by route and status code.
    pub http_requests: IntCounterVec,
    /// Write requests' time to answer, by API (`v1`, `v2`, `v3`; `flight` per
    /// `DoPut` batch) and status.
    pub write_duration: HistogramVec,
    /// Each stage of a line-protocol write that got that far (Flight `DoPut`
    /// batches are not counted): `read` (body), `decode` (gzip),
    /// `parse`, `commit` (schema and series), `ingest` (until the ingesters
    /// acknowledged). Says which stage a slow write spent its time in.
    pub write_stage: HistogramVec,
    /// Lines written (accepted and sent to ingesters).
    pub lines: IntCounter,
    /// Bytes of line protocol received, after gzip inflation.
    pub line_bytes: IntCounter,
    /// Bad lines, by database and reason (a fixed set).
    pub rejected_lines: IntCounterVec,
    /// Parts of a write sent to another ingester because one failed.
    pub failovers: IntCounter,
    /// Whether an ingester answered the last time a router (`via="router"`)
    /// wrote to it or a querier (`via="querier"`) asked it: 1 or 0, by address.
    pub ingester_reachable: IntGaugeVec,
    /// Bytes an ingester holds in memory, not yet in Parquet.
    pub buffer_bytes: IntGaugeVec,
    /// The most bytes an ingester buffers before it refuses writes
    /// (`--buffer-bytes`): fill is `buffer_bytes / buffer_limit_bytes`.
    pub buffer_limit: IntGaugeVec,
    /// Time from a WAL segment's put to its acknowledgement.
    pub wal_flush_duration: HistogramVec,
    /// Size of each WAL segment written.
    pub wal_flush_bytes: HistogramVec,
    /// Snapshots to Parquet, by outcome.
    pub snapshots: IntCounterVec,
    /// Time a successful snapshot took.
    pub snapshot_duration: HistogramVec,
    /// Parquet files written by snapshots.
    pub snapshot_files: IntCounterVec,
    /// Expired WAL leases of other ingesters this one took over, by outcome.
    pub lease_takeovers: IntCounterVec,
    /// Times this ingester found its own WAL lease taken by another one.
    pub lease_fenced: IntCounterVec,
    /// Compaction rounds run while holding the compactor lease, by outcome.
    pub compaction_rounds: IntCounterVec,
    /// Time to merge one day partition's files into one.
    pub compaction_duration: Histogram,
    /// Parquet files compactions read (`in`) and wrote (`out`).
    pub compaction_files: IntCounterVec,
    /// Bytes of Parquet compactions read (`in`) and wrote (`out`).
    pub compaction_bytes: IntCounterVec,
    /// Catalog rereads, by whether they found new entries.
    pub catalog_refreshes: IntCounterVec,
    /// Entries appended to the catalog's logs (`schema`, `files`), by outcome.
    pub catalog_commits: IntCounterVec,
    /// Appends that found their entry number taken by another writer and
    /// tried again.
    pub catalog_conflicts: IntCounterVec,
    /// Object store calls by operation and outcome.
    pub object_store_requests: IntCounterVec,
    /// Object store calls' time, by operation.
    pub object_store_duration: HistogramVec,
    /// Queries answered, by language, transport and outcome, with their time
    /// until the last byte of the answer.
    pub query_duration: HistogramVec,
    /// Queries being answered now.
    pub queries_active: IntGauge,
    /// Table scans of a querier that left out an unreachable ingester, by its
    /// address, because every WAL it may have held is in Parquet.
    pub skipped_ingesters: IntCounterVec,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn histogram_vec(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    HistogramVec::new(opts, labels).expect("valid metric")
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new_custom(Some("inflow".into()), None)
            .expect("the prefix `inflow` is a valid metric name");
        let process_registry = Registry::new();
        let metrics = Self {
            process: process::Process::new(&process_registry),
            process_registry,
            build_info: gauge_vec(
                "build_info",
                "Always 1: the version and role of this process",
                &["version", "role"],
            ),
            http_requests: counter_vec(
                "http_requests_total",
                "HTTP requests by route and status",
                &["endpoint", "status"],
            ),
            write_duration: histogram_vec(
                "write_duration_seconds",
                "Time to answer a write request, by API and status",
                LATENCY_BUCKETS,
                &["api", "status"],
            ),
            write_stage: histogram_vec(
                "write_stage_duration_seconds",
                "Time a write spent in each stage: read, decode, parse, commit, ingest",
                LATENCY_BUCKETS,
                &["stage"],
            ),
            lines: IntCounter::new("write_lines_total", "Lines written").expect("valid metric"),
            line_bytes: IntCounter::new(
                "write_bytes_total",
                "Bytes of line protocol received, after decompression",
            )
            .expect("valid metric"),
            rejected_lines: counter_vec(
                "write_rejected_lines_total",
                "Lines rejected, by database and reason",
                &["database", "reason"],
            ),
            failovers: IntCounter::new(
                "route_failovers_total",
                "Write parts sent to another ingester after one failed",
            )
            .expect("valid metric"),
            ingester_reachable: gauge_vec(
                "ingester_reachable",
                "1 if the ingester answered this router's or querier's last call, else 0",
                &["via", "ingester"],
            ),
            buffer_bytes: gauge_vec(
                "ingester_buffer_bytes",
                "Bytes buffered in an ingester, not yet in Parquet",
                &["ingester"],
            ),
            buffer_limit: gauge_vec(
                "ingester_buffer_limit_bytes",
                "Most bytes an ingester buffers before it refuses writes",
                &["ingester"],
            ),
            wal_flush_duration: histogram_vec(
                "wal_flush_duration_seconds",
                "Time to make one WAL segment durable",
                LATENCY_BUCKETS,
                &["ingester"],
            ),
            wal_flush_bytes: histogram_vec(
                "wal_flush_bytes",
                "Size of each WAL segment",
                SIZE_BUCKETS,
                &["ingester"],
            ),
            snapshots: counter_vec(
                "snapshots_total",
                "Snapshots to Parquet by outcome",
                &["ingester", "outcome"],
            ),
            snapshot_duration: histogram_vec(
                "snapshot_duration_seconds",
                "Time a successful snapshot to Parquet took",
                LONG_BUCKETS,
                &["ingester"],
            ),
            snapshot_files: counter_vec(
                "snapshot_files_total",
                "Parquet files written by snapshots",
                &["ingester"],
            ),
            lease_takeovers: counter_vec(
                "lease_takeovers_total",
                "Expired WAL leases of other ingesters taken over, by outcome",
                &["ingester", "outcome"],
            ),
            lease_fenced: counter_vec(
                "lease_fenced_total",
                "Times this ingester found its WAL lease taken by another",
                &["ingester"],
            ),
            compaction_rounds: counter_vec(
                "compaction_rounds_total",
                "Compaction rounds run holding the compactor lease, by outcome",
                &["outcome"],
            ),
            compaction_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "compaction_duration_seconds",
                    "Time to merge one day partition's files into one",
                )
                .buckets(LONG_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            compaction_files: counter_vec(
                "compaction_files_total",
                "Parquet files compactions read (in) and wrote (out)",
                &["direction"],
            ),
            compaction_bytes: counter_vec(
                "compaction_bytes_total",
                "Bytes of Parquet compactions read (in) and wrote (out)",
                &["direction"],
            ),
            catalog_refreshes: counter_vec(
                "catalog_refreshes_total",
                "Catalog rereads, by outcome: changed, unchanged, error",
                &["outcome"],
            ),
            catalog_commits: counter_vec(
                "catalog_commits_total",
                "Entries appended to the catalog's schema and files logs, by outcome",
                &["log", "outcome"],
            ),
            catalog_conflicts: counter_vec(
                "catalog_conflicts_total",
                "Catalog appends that found their entry taken by another writer",
                &["log"],
            ),
            object_store_requests: counter_vec(
                "object_store_requests_total",
                "Object store calls by operation and outcome",
                &["operation", "outcome"],
            ),
            object_store_duration: histogram_vec(
                "object_store_request_duration_seconds",
                "Time of an object store call, by operation",
                LATENCY_BUCKETS,
                &["operation"],
            ),
            query_duration: histogram_vec(
                "query_duration_seconds",
                "Queries by language, transport and outcome; time to the answer's last byte",
                LONG_BUCKETS,
                &["kind", "transport", "outcome"],
            ),
            queries_active: IntGauge::new("queries_active", "Queries being answered now")
                .expect("valid metric"),
            skipped_ingesters: counter_vec(
                "query_skipped_ingesters_total",
                "Table scans that left out an unreachable ingester whose WAL is in Parquet",
                &["ingester"],
            ),
            registry,
        };
        metrics.register();
        metrics.start_at_zero();
        metrics
    }

    fn register(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 30] = [
            Box::new(self.build_info.clone()),
            Box::new(self.http_requests.clone()),
            Box::new(self.write_duration.clone()),
            Box::new(self.write_stage.clone()),
            Box::new(self.lines.clone()),
            Box::new(self.line_bytes.clone()),
            Box::new(self.rejected_lines.clone()),
            Box::new(self.failovers.clone()),
            Box::new(self.ingester_reachable.clone()),
            Box::new(self.buffer_bytes.clone()),
            Box::new(self.buffer_limit.clone()),
            Box::new(self.wal_flush_duration.clone()),
            Box::new(self.wal_flush_bytes.clone()),
            Box::new(self.snapshots.clone()),
            Box::new(self.snapshot_duration.clone()),
            Box::new(self.snapshot_files.clone()),
            Box::new(self.lease_takeovers.clone()),
            Box::new(self.lease_fenced.clone()),
            Box::new(self.compaction_rounds.clone()),
            Box::new(self.compaction_duration.clone()),
            Box::new(self.compaction_files.clone()),
            Box::new(self.compaction_bytes.clone()),
            Box::new(self.catalog_refreshes.clone()),
            Box::new(self.catalog_commits.clone()),
            Box::new(self.catalog_conflicts.clone()),
            Box::new(self.object_store_requests.clone()),
            Box::new(self.object_store_duration.clone()),
            Box::new(self.query_duration.clone()),
            Box::new(self.queries_active.clone()),
            Box::new(self.skipped_ingesters.clone()),
        ];
        for c in collectors {
            self.registry
                .register(c)
                .expect("each metric is registered once, under its own name");
        }
    }

    /// Series whose label values are known from the start, at zero, so that
    /// a dashboard's `rate()` and an alert see them before the first event.
    fn start_at_zero(&self) {
        for outcome in ["ok", "error"] {
            self.compaction_rounds.with_label_values(&[outcome]);
        }
        for direction in ["in", "out"] {
            self.compaction_files.with_label_values(&[direction]);
            self.compaction_bytes.with_label_values(&[direction]);
        }
        for outcome in ["changed", "unchanged", "error"] {
            self.catalog_refreshes.with_label_values(&[outcome]);
        }
        for log in [CatalogLog::Schema, CatalogLog::Files] {
            for outcome in ["ok", "error"] {
                self.catalog_commits
                    .with_label_values(&[log.as_str(), outcome]);
            }
            self.catalog_conflicts.with_label_values(&[log.as_str()]);
        }
    }

    /// The registry in Prometheus text format (version 0.0.4), the process
    /// metrics read afresh.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        self.process.update();
        let mut families = self.registry.gather();
        families.extend(self.process_registry.gather());
        let mut out = Vec::new();
        TextEncoder::new().encode(&families, &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    /// Names this process's role in `inflow_build_info`.
    pub fn set_role(&self, role: &str) {
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), role])
            .set(1);
    }

    /// An ingester started: its limit, and its series at zero.
    pub fn ingester_started(&self, id: &str, buffer_limit: usize) {
        self.buffer_limit
            .with_label_values(&[id])
            .set(i64::try_from(buffer_limit).unwrap_or(i64::MAX));
        self.buffer_bytes.with_label_values(&[id]);
        self.snapshot_files.with_label_values(&[id]);
        self.lease_fenced.with_label_values(&[id]);
        for outcome in ["ok", "error"] {
            self.snapshots.with_label_values(&[id, outcome]);
            self.lease_takeovers.with_label_values(&[id, outcome]);
        }
    }

    /// Whether the ingester at `addr` answered the last call of a router or
    /// a querier (`via`).
    pub fn set_reachable(&self, via: Via, addr: &str, reachable: bool) {
        self.ingester_reachable
            .with_label_values(&[via.as_str(), addr])
            .set(i64::from(reachable));
    }

    /// Drops the reachability of an address no longer among the ingesters
    /// (a pod gone with its IP), so that it does not stay 0 forever.
    pub fn forget_ingester(&self, via: Via, addr: &str) {
        let _ = self
            .ingester_reachable
            .remove_label_values(&[via.as_str(), addr]);
        if via == Via::Querier {
            let _ = self.skipped_ingesters.remove_label_values(&[addr]);
        }
    }

    /// A querier's ingester: its count of scans left without it, at zero.
    pub fn querier_knows(&self, addr: &str) {
        self.skipped_ingesters.with_label_values(&[addr]);
    }

    /// Counts one object store call.
    pub fn object_store_call(&self, operation: &str, outcome: StoreOutcome, took: Duration) {
        self.object_store_requests
            .with_label_values(&[operation, outcome.as_str()])
            .inc();
        self.object_store_duration
            .with_label_values(&[operation])
            .observe(took.as_secs_f64());
    }

    /// Counts one append to a catalog log: written, or failed.
    pub fn catalog_commit(&self, log: CatalogLog, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.catalog_commits
            .with_label_values(&[log.as_str(), outcome])
            .inc();
    }

    /// Counts an append that found its entry number taken.
    pub fn catalog_conflict(&self, log: CatalogLog) {
        self.catalog_conflicts
            .with_label_values(&[log.as_str()])
            .inc();
    }
}

/// Who found an ingester reachable or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Router,
    Querier,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Self::Router => "router",
            Self::Querier => "querier",
        }
    }
}

/// The catalog's logs: the schema log and the per-writer files logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogLog {
    Schema,
    Files,
}

impl CatalogLog {
    fn as_str(self) -> &'static str {
        match self {
            Self::Schema => "schema",
            Self::Files => "files",
        }
    }
}

/// How an object store call ended. A create-only put that finds the object
/// there and a read of one that is not are answers the callers expect (the
/// catalog's and the WAL's logs work by them), not errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    Ok,
    NotFound,
    AlreadyExists,
    Error,
}

impl StoreOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::Error => "error",
        }
    }
}

/// A query's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Sql,
    InfluxQl,
}

/// How a query came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http,
    Flight,
}

/// How a query ended: answered whole, refused for the client's fault (4xx,
/// a gRPC code such as `INVALID_ARGUMENT`), failed on the server's side
/// (5xx, `INTERNAL`, `UNAVAILABLE`, `RESOURCE_EXHAUSTED`...), or dropped by
/// the client before its answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryOutcome {
    Ok,
    ClientError,
    ServerError,
    Cancelled,
}

impl QueryOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ClientError => "client_error",
            Self::ServerError => "server_error",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Times one query from its start to the last byte of its answer. Dropped
/// before [`QueryTimer::finish`] (the client went away, the stream was
/// dropped), it counts the query as cancelled.
#[derive(Debug)]
pub struct QueryTimer {
    kind: QueryKind,
    transport: Transport,
    started: Instant,
    finished: bool,
}

impl QueryTimer {
    pub fn start(kind: QueryKind, transport: Transport) -> Self {
        metrics().queries_active.inc();
        Self {
            kind,
            transport,
            started: Instant::now(),
            finished: false,
        }
    }

    /// The language, once known (a Flight ticket says it after it is read).
    pub fn set_kind(&mut self, kind: QueryKind) {
        self.kind = kind;
    }

    pub fn finish(mut self, outcome: QueryOutcome) {
        self.record(outcome);
    }

    fn record(&mut self, outcome: QueryOutcome) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let m = metrics();
        m.queries_active.dec();
        let kind = match self.kind {
            QueryKind::Sql => "sql",
            QueryKind::InfluxQl => "influxql",
        };
        let transport = match self.transport {
            Transport::Http => "http",
            Transport::Flight => "flight",
        };
        m.query_duration
            .with_label_values(&[kind, transport, outcome.as_str()])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for QueryTimer {
    fn drop(&mut self) {
        self.record(QueryOutcome::Cancelled);
    }
}

/// Awaits `fut` and counts its time as write stage `name`.
pub async fn stage<T>(name: &'static str, fut: impl Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let out = fut.await;
    metrics()
        .write_stage
        .with_label_values(&[name])
        .observe(started.elapsed().as_secs_f64());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_family_in_text_format() {
        let m = metrics();
        m.lines.inc_by(3);
        m.buffer_bytes.with_label_values(&["ing-0"]).set(42);
        m.write_duration
            .with_label_values(&["unit", "204"])
            .observe(0.003);
        let text = m.render().unwrap();
        assert!(
            text.contains("# TYPE inflow_write_lines_total counter"),
            "{text}"
        );
        assert!(
            text.contains("inflow_ingester_buffer_bytes{ingester=\"ing-0\"} 42"),
            "{text}"
        );
        assert!(
            text.contains(
                "inflow_write_duration_seconds_bucket{api=\"unit\",status=\"204\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        // The process collector's names, unprefixed, in the same answer.
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter"),
            "{text}"
        );
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        assert!(!text.contains("inflow_process_"), "{text}");
    }

    fn queries(kind: &str, outcome: &str) -> u64 {
        metrics()
            .query_duration
            .with_label_values(&[kind, "flight", outcome])
            .get_sample_count()
    }

    /// The only test that times Flight InfluxQL queries: the counts are
    /// process-wide.
    #[test]
    fn a_query_timer_dropped_unfinished_counts_a_cancelled_query() {
        let (ok, cancelled) = (queries("influxql", "ok"), queries("influxql", "cancelled"));
        let mut timer = QueryTimer::start(QueryKind::Sql, Transport::Flight);
        timer.set_kind(QueryKind::InfluxQl);
        timer.finish(QueryOutcome::Ok);
        drop(QueryTimer::start(QueryKind::InfluxQl, Transport::Flight));
        assert_eq!(queries("influxql", "ok"), ok + 1);
        assert_eq!(queries("influxql", "cancelled"), cancelled + 1);
    }
}
