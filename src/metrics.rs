//! Prometheus metrics of the process, served as text at `GET /metrics` on every
//! role's HTTP port.
//!
//! One registry per process: in `all` mode the edge's and the ingester's
//! metrics come out of the same endpoint, as one scrape target.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Latency buckets in seconds, from a local fsync to a slow object store.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// WAL segment sizes in bytes: 1 KiB to 64 MiB (the largest segment).
const SIZE_BUCKETS: &[f64] = &[
    1024.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0,
];

pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route and status code.
    pub http_requests: IntCounterVec,
    /// Write requests' time to answer, by API (`v1`, `v2`, `v3`) and outcome.
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
    /// Lines rejected as malformed or conflicting.
    /// Bad lines, by database and reason (a fixed set).
    pub rejected_lines: IntCounterVec,
    /// Parts of a write sent to another ingester because one failed.
    pub failovers: IntCounter,
    /// Bytes an ingester holds in memory, not yet in Parquet.
    pub buffer_bytes: IntGaugeVec,
    /// Time from a WAL segment's put to its acknowledgement.
    pub wal_flush_duration: HistogramVec,
    /// Size of each WAL segment written.
    pub wal_flush_bytes: HistogramVec,
    /// Snapshots to Parquet, by outcome.
    pub snapshots: IntCounterVec,
    /// Parquet files written by snapshots.
    pub snapshot_files: IntCounterVec,
    /// Table scans of a querier that left out an unreachable ingester, by its
    /// address, because every WAL it may have held is in Parquet.
    pub skipped_ingesters: IntCounterVec,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new_custom(Some("inflow".into()), None)
            .expect("the prefix `inflow` is a valid metric name");
        let metrics = Self {
            http_requests: IntCounterVec::new(
                Opts::new("http_requests_total", "HTTP requests by route and status"),
                &["endpoint", "status"],
            )
            .expect("valid metric"),
            write_duration: HistogramVec::new(
                HistogramOpts::new(
                    "write_duration_seconds",
                    "Time to answer a write request, by API and status",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["api", "status"],
            )
            .expect("valid metric"),
            write_stage: HistogramVec::new(
                HistogramOpts::new(
                    "write_stage_duration_seconds",
                    "Time a write spent in each stage: read, decode, parse, commit, ingest",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["stage"],
            )
            .expect("valid metric"),
            lines: IntCounter::new("write_lines_total", "Lines written").expect("valid metric"),
            line_bytes: IntCounter::new(
                "write_bytes_total",
                "Bytes of line protocol received, after decompression",
            )
            .expect("valid metric"),
            rejected_lines: IntCounterVec::new(
                Opts::new(
                    "write_rejected_lines_total",
                    "Lines rejected, by database and reason",
                ),
                &["database", "reason"],
            )
            .expect("valid metric"),
            failovers: IntCounter::new(
                "route_failovers_total",
                "Write parts sent to another ingester after one failed",
            )
            .expect("valid metric"),
            buffer_bytes: IntGaugeVec::new(
                Opts::new(
                    "ingester_buffer_bytes",
                    "Bytes buffered in an ingester, not yet in Parquet",
                ),
                &["ingester"],
            )
            .expect("valid metric"),
            wal_flush_duration: HistogramVec::new(
                HistogramOpts::new(
                    "wal_flush_duration_seconds",
                    "Time to make one WAL segment durable",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["ingester"],
            )
            .expect("valid metric"),
            wal_flush_bytes: HistogramVec::new(
                HistogramOpts::new("wal_flush_bytes", "Size of each WAL segment")
                    .buckets(SIZE_BUCKETS.to_vec()),
                &["ingester"],
            )
            .expect("valid metric"),
            snapshots: IntCounterVec::new(
                Opts::new("snapshots_total", "Snapshots to Parquet by outcome"),
                &["ingester", "outcome"],
            )
            .expect("valid metric"),
            snapshot_files: IntCounterVec::new(
                Opts::new("snapshot_files_total", "Parquet files written by snapshots"),
                &["ingester"],
            )
            .expect("valid metric"),
            skipped_ingesters: IntCounterVec::new(
                Opts::new(
                    "query_skipped_ingesters_total",
                    "Table scans that left out an unreachable ingester whose WAL is in Parquet",
                ),
                &["ingester"],
            )
            .expect("valid metric"),
            registry,
        };
        metrics.register();
        metrics
    }

    fn register(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 13] = [
            Box::new(self.http_requests.clone()),
            Box::new(self.write_duration.clone()),
            Box::new(self.write_stage.clone()),
            Box::new(self.lines.clone()),
            Box::new(self.line_bytes.clone()),
            Box::new(self.rejected_lines.clone()),
            Box::new(self.failovers.clone()),
            Box::new(self.buffer_bytes.clone()),
            Box::new(self.wal_flush_duration.clone()),
            Box::new(self.wal_flush_bytes.clone()),
            Box::new(self.snapshots.clone()),
            Box::new(self.snapshot_files.clone()),
            Box::new(self.skipped_ingesters.clone()),
        ];
        for c in collectors {
            self.registry
                .register(c)
                .expect("each metric is registered once, under its own name");
        }
    }

    /// The registry in Prometheus text format (version 0.0.4).
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
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
    }
}
