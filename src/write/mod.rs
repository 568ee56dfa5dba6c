//! The write service: what every write endpoint does once it has read its
//! parameters, knowing no transport.
//!
//! [`Writer::write_lp`] takes line protocol (v1 `/write`, v2 `/api/v2/write`,
//! v3 `/api/v3/write_lp`), [`Writer::write_batch`] a producer's Arrow batch
//! (Flight `DoPut`). Both resolve the database (created on a first write by an
//! operator token), turn its quotas and retention into checks made on each
//! line or row, admit new series, commit new tables and columns to the
//! catalog, and hand the rows to the ingesters through the router. When other
//! writes take the last of the series quota between the check and the commit,
//! the write is checked again (counted by `QuotaRaces`).
//!
//! Errors are [`WriteError`]s, each of a [`ErrorKind`]; the transport maps
//! them to statuses.

mod batch;
mod check;
mod rejected;
mod schema;

use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use tracing::Instrument;

use crate::auth::Principal;
use crate::catalog::{Catalog, CatalogError, Database, DbId, SchemaLimits};
use crate::clock::SharedClock;
use crate::error::ErrorKind;
use crate::lineproto::{LineError, ParseOptions, TableBatch};
use crate::metrics::{metrics, stage};
use crate::route::{RouteError, Router};
use crate::series::{Committed, DbSeries, SeriesDay, SeriesError, SeriesRegistry, day_of};

pub use batch::normalize_producer_batch;

/// Why a write was refused; each says its [`ErrorKind`].
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("token does not have write permission on database \"{0}\"")]
    Forbidden(String),
    #[error("database \"{0}\" not found")]
    DatabaseNotFound(String),
    /// `max_concurrent_writes` writes are being decoded and written; none
    /// finished within `write_queue_timeout`.
    #[error("{writes} writes in flight and none finished within {waited:?}; retry later")]
    Busy { writes: usize, waited: Duration },
    #[error("no line protocol in request body")]
    EmptyBody,
    /// Some lines were rejected; the others were written unless `written` is false.
    #[error("{total} lines rejected")]
    Lines {
        errors: Vec<LineError>,
        total: usize,
        written: bool,
    },
    /// A producer's batch breaks a rule a line would be refused for.
    #[error("{0}")]
    InvalidBatch(String),
    /// A producer's batch would add series past the database's quota.
    #[error("{0}")]
    SeriesLimit(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Series(#[from] SeriesError),
    #[error(transparent)]
    Route(#[from] RouteError),
    /// A blocking task (decompression, parsing) panicked or was cancelled.
    #[error("{what} task failed")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("{0}")]
    Internal(String),
}

impl WriteError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Forbidden(_) => ErrorKind::Forbidden,
            Self::DatabaseNotFound(_) => ErrorKind::NotFound,
            Self::Busy { .. } => ErrorKind::Unavailable,
            Self::EmptyBody | Self::Lines { .. } | Self::InvalidBatch(_) => ErrorKind::Invalid,
            Self::SeriesLimit(_) => ErrorKind::LimitExceeded,
            Self::Catalog(e) => e.kind(),
            Self::Series(e) => e.kind(),
            Self::Route(e) => e.kind(),
            Self::Task { .. } | Self::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// The limits every write is held to: the write flags of `inflow serve`
/// (each `--x-y` can also be set as `INFLOW_X_Y`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct WriteLimits {
    /// Longest line accepted, in bytes (longer lines are rejected by number).
    #[arg(long, env = "INFLOW_MAX_LINE_BYTES", default_value_t = 1 << 20)]
    pub max_line_bytes: usize,
    /// Most tables a database may have; a line that would add one more is
    /// rejected (400, naming the line), the good lines are written.
    #[arg(long, env = "INFLOW_MAX_TABLES_PER_DATABASE", default_value_t = 2000)]
    pub max_tables_per_database: usize,
    /// Most columns a table may have, `time` included; a line that would add
    /// one more is rejected (400, naming the line).
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
    /// How long the edge waits for an ingester to acknowledge a write (and a
    /// write for one of the --max-concurrent-writes slots).
    #[arg(long, env = "INFLOW_WRITE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    pub write_timeout: Duration,
    /// Retention period of databases created by a first write (Telegraf
    /// creates its databases so), e.g. `30d`; without it they keep their data
    /// until a retention period is set (`inflow database update`). 0: none.
    #[arg(long, env = "INFLOW_DEFAULT_RETENTION", value_parser = humantime::parse_duration)]
    pub default_retention: Option<Duration>,
}

/// How a write endpoint wants bad lines and durability handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteMode {
    /// Write the good lines of a body that has bad ones (v1, v2; v3's default).
    pub accept_partial: bool,
    /// Acknowledge before the WAL is durable (v3 `no_sync=true`).
    pub no_sync: bool,
    /// Parse and check against the catalog, answer as a write would, write nothing.
    pub dry_run: bool,
}

impl WriteMode {
    pub const DEFAULT: Self = Self {
        accept_partial: true,
        no_sync: false,
        dry_run: false,
    };
}

/// Times a write is checked again because others took its series quota first.
const MAX_QUOTA_RACES: usize = 4;

/// Counts the attempts of one write: each is checked against the series
/// quota, and is made again when other writes took the quota between its
/// check and its commit, at most [`MAX_QUOTA_RACES`] times.
struct QuotaRaces {
    left: usize,
    db: DbId,
}

impl QuotaRaces {
    fn new(db: &Database) -> Self {
        Self {
            left: MAX_QUOTA_RACES,
            db: db.id,
        }
    }

    /// Another attempt, or the write gives up (503: retry later).
    fn next(&mut self) -> Result<(), WriteError> {
        self.left = self
            .left
            .checked_sub(1)
            .ok_or(SeriesError::Contended(self.db))?;
        Ok(())
    }
}

/// The one write path.
pub struct Writer {
    catalog: Arc<Catalog>,
    /// Every database's series, for the series quota.
    series: SeriesRegistry,
    router: Arc<Router>,
    limits: WriteLimits,
    /// One permit per write being decoded and written.
    slots: tokio::sync::Semaphore,
    /// Stamps lines without a time and places the retention period's start.
    clock: SharedClock,
}

impl Writer {
    pub fn new(
        catalog: Arc<Catalog>,
        series: SeriesRegistry,
        router: Arc<Router>,
        mut limits: WriteLimits,
    ) -> Self {
        if limits.max_series_per_database == 0 {
            limits.max_series_per_database = usize::MAX;
        }
        Self {
            catalog,
            series,
            router,
            slots: tokio::sync::Semaphore::new(limits.max_concurrent_writes),
            limits,
            clock: crate::clock::system(),
        }
    }

    /// This writer reading the time from `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock a write's received time is read from.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The server-wide quotas, for databases without their own.
    pub fn server_limits(&self) -> SchemaLimits {
        SchemaLimits {
            max_tables: self.limits.max_tables_per_database,
            max_columns: self.limits.max_columns_per_table,
            max_series: self.limits.max_series_per_database,
        }
    }

    /// Waits for a write slot, or gives up (503 + `Retry-After` at the edge).
    pub async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, WriteError> {
        match tokio::time::timeout(self.limits.write_timeout, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(WriteError::Busy {
                writes: self.limits.max_concurrent_writes,
                waited: self.limits.write_timeout,
            }),
        }
    }

    /// Refuses at once while every ingester has just refused a write for a
    /// full buffer: shed before the body is decoded.
    pub fn shed(&self) -> Result<(), WriteError> {
        match self.router.all_full() {
            Some(full) => Err(full.into()),
            None => Ok(()),
        }
    }

    /// The database `name` to write to: created on first write for an
    /// operator token, else not found; then the token must grant it by id (a
    /// token for an earlier database of this name does not reach it).
    pub async fn database_for_write(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<Arc<Database>, WriteError> {
        if !principal.may_write(name) {
            return Err(WriteError::Forbidden(name.to_string()));
        }
        let db = self.resolve(principal, name).await?;
        if !principal.can_write(&db) {
            return Err(WriteError::Forbidden(name.to_string()));
        }
        Ok(db)
    }

    async fn resolve(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<Arc<Database>, WriteError> {
        if let Some(db) = self.catalog.state().database(name) {
            return Ok(Arc::clone(db));
        }
        if let Some(db) = self.catalog.refresh().await?.database(name) {
            return Ok(Arc::clone(db));
        }
        if !principal.is_admin() {
            return Err(WriteError::DatabaseNotFound(name.to_string()));
        }
        let retention = self
            .limits
            .default_retention
            .filter(|d| !d.is_zero())
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        self.catalog.create_database_with(name, retention).await?;
        self.catalog.state().database(name).cloned().ok_or_else(|| {
            WriteError::Internal(format!("database \"{name}\" vanished after creation"))
        })
    }

    /// Parses `text` (decoded line protocol) into `db` and writes it. Bad
    /// lines come back as [`WriteError::Lines`], after the good ones were
    /// written when `mode.accept_partial`.
    pub async fn write_lp(
        &self,
        db: Arc<Database>,
        text: Bytes,
        opts: ParseOptions,
        mode: WriteMode,
    ) -> Result<(), WriteError> {
        let opts = self.parse_options(&db, opts);
        let series = self.series_of(&db, opts.min_time_ns).await?;
        let m = metrics();
        m.line_bytes.inc_by(text.len() as u64);
        let mut races = QuotaRaces::new(&db);
        let parsed = loop {
            races.next()?;
            let parse = check::parse(text.clone(), &opts, &db, &series);
            let (mut parsed, found) = stage("parse", parse).await?;
            let refused = parsed.is_empty() || (parsed.error_count > 0 && !mode.accept_partial);
            if refused || mode.dry_run {
                break parsed;
            }
            let span = tracing::info_span!("write", database = %db.name, lines = parsed.lines);
            // The tables go to the ingesters; the line errors are answered below.
            let tables = std::mem::take(&mut parsed.tables);
            if self
                .commit(&db, &series, tables, &found, mode.no_sync, span)
                .await?
            {
                m.lines.inc_by(parsed.lines as u64);
                break parsed;
            }
        };
        rejected::record(&db.name, &parsed, self.clock.now_ns());
        if parsed.is_empty() && parsed.error_count == 0 {
            return Err(WriteError::EmptyBody);
        }
        if parsed.error_count > 0 {
            let written = !(parsed.is_empty() || !mode.accept_partial || mode.dry_run);
            return Err(WriteError::Lines {
                errors: parsed.errors,
                total: parsed.error_count,
                written,
            });
        }
        Ok(())
    }

    /// Writes a producer's batch of one table (already in the table layout,
    /// see [`normalize_producer_batch`]), held to the same limits as a line:
    /// name and value sizes, the retention period, the table and column quotas
    /// (at the schema commit) and the series quota. A batch is refused whole,
    /// naming its first row past a limit.
    pub async fn write_batch(
        &self,
        db: &Database,
        table: &str,
        batch: RecordBatch,
    ) -> Result<(), WriteError> {
        let cutoff = db.retention_cutoff(self.clock.now_ns());
        batch::check_batch(&self.limits, table, &batch, cutoff)?;
        let _slot = self.slot().await?;
        let series = self.series_of(db, cutoff).await?;
        let ids = batch::series_ids(table, &batch)?;
        let mut races = QuotaRaces::new(db);
        loop {
            races.next()?;
            let found = batch::admit(&series, &ids, &batch).await?;
            let tables = vec![TableBatch {
                table: table.to_string(),
                batch: batch.clone(),
            }];
            let span = tracing::info_span!("write_batch", database = %db.name, table);
            if self
                .commit(db, &series, tables, &found, false, span)
                .await?
            {
                return Ok(());
            }
        }
    }

    /// Commits the schema and the series, then writes the rows; false when
    /// the series commit found the quota taken meanwhile (nothing written).
    async fn commit(
        &self,
        db: &Database,
        series: &Arc<DbSeries>,
        tables: Vec<TableBatch>,
        found: &[SeriesDay],
        no_sync: bool,
        span: tracing::Span,
    ) -> Result<bool, WriteError> {
        let committed = stage("commit", async {
            let tables =
                schema::commit_schema(&self.catalog, db, tables, self.server_limits()).await?;
            Ok::<_, WriteError>((tables, series.commit(found).await?))
        });
        let (tables, committed) = committed.await?;
        if committed == Committed::OverQuota {
            return Ok(false);
        }
        let routed = self.router.write(db.key(), &tables, no_sync);
        stage("ingest", routed.instrument(span)).await?;
        Ok(true)
    }

    /// The request's parse options with the server's limits and the
    /// database's quotas and retention filled in.
    fn parse_options(&self, db: &Database, mut opts: ParseOptions) -> ParseOptions {
        opts.max_line_bytes = self.limits.max_line_bytes;
        opts.max_columns_per_table = self.limits.max_columns_per_table;
        opts.max_tag_bytes = self.limits.max_tag_bytes;
        opts.max_string_bytes = self.limits.max_string_bytes;
        opts.min_time_ns = db.retention_cutoff(opts.default_time_ns);
        let quotas = db.limits(self.server_limits());
        opts.max_tables = quotas.max_tables;
        opts.max_table_columns = quotas.max_columns;
        opts
    }

    /// The database's series, with its quota and retention applied.
    async fn series_of(
        &self,
        db: &Database,
        retention_cutoff: Option<i64>,
    ) -> Result<Arc<DbSeries>, WriteError> {
        let series = self.series.database(db.id).await?;
        let limit = db.limits(self.server_limits()).max_series;
        series.prepare(limit, retention_cutoff.map(day_of)).await;
        Ok(series)
    }
}
