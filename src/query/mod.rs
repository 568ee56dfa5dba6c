//! Queries: SQL (DataFusion) over what was written, served over Arrow Flight
//! (the InfluxDB 3 ticket) and Flight SQL.
//!
//! ```text
//!  ticket / Flight SQL ─► Querier::plan (one SessionContext per query, a table
//!                          provider per catalog table, information_schema on)
//!                              │ scan of a table
//!                              ▼
//!        1. ingesters: buffered rows (Flight DoGet, cluster token)
//!        2. then catalog files: Parquet on the object store
//!                              │ both carry each row's write sequence
//!                              ▼
//!        scan::plan: files alone in time ─► DataFusion's Parquet scan
//!                    overlapping sources ─► merge by key ─► DedupExec
//! ```
//!
//! The order of 1 and 2 is what makes a snapshot in between harmless: an
//! ingester drops buffered rows only after their file is registered, so a row
//! missing from the buffer answer is in the files read afterwards; a row in both
//! is folded by the deduplication.
//!
//! Questions about series and last values (InfluxQL's `SHOW TAG VALUES`,
//! `last()` by tag) can skip the scan: [`summary`] keeps a summary per file.

mod dedup_exec;
pub mod depth;
mod footers;
mod held;
pub mod ingesters;
pub mod limits;
mod run_fold;
pub mod scan;
mod session;
pub mod summary;
pub mod table;
pub mod ticket;
pub mod unreachable;
mod zones;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryPool, MemoryReservation, UnboundedMemoryPool,
};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{DataFrame, SQLOptions, SessionContext};

use crate::catalog::{Catalog, CatalogError, Database};
use crate::clock::SharedClock;
use crate::store::Store;
pub use ingesters::{BufferSource, FlightIngesters, LocalIngester};
pub use limits::{Admission, QueryConfig, QueryLimits, Ticket};
use session::BaseSession;
use table::Sources;

/// The catalog and schema every table is in, as InfluxDB 3 names them.
pub const CATALOG_NAME: &str = "public";
pub const SCHEMA_NAME: &str = "iox";
const INFORMATION_SCHEMA: &str = "information_schema";

/// Why a query failed. Cloneable and string-based so it can travel inside a
/// `DataFusionError::External` and be recovered for its status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    #[error("database \"{0}\" not found")]
    DatabaseNotFound(String),
    #[error("table \"{table}\" not found in database \"{database}\"")]
    TableNotFound { database: String, table: String },
    /// The SQL does not parse or plan: DataFusion's message.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotImplemented(String),
    /// An ingester or the object store could not be read: no partial answers.
    #[error("{0}")]
    Unavailable(String),
    /// The query needs more memory than `--query-memory-bytes` leaves it.
    #[error("{0}")]
    ResourcesExhausted(String),
    /// `--max-concurrent-queries` are running and none finished in time.
    #[error("{0}")]
    Busy(String),
    /// The query ran past `--query-timeout` and was cancelled.
    #[error("{0}")]
    TimedOut(String),
    #[error("{0}")]
    Internal(String),
}

impl QueryError {
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            Self::DatabaseNotFound(_) | Self::TableNotFound { .. } => ErrorKind::NotFound,
            Self::Invalid(_) => ErrorKind::Invalid,
            Self::NotImplemented(_) => ErrorKind::NotImplemented,
            Self::Unavailable(_) | Self::Busy(_) => ErrorKind::Unavailable,
            Self::ResourcesExhausted(_) => ErrorKind::ResourcesExhausted,
            Self::TimedOut(_) => ErrorKind::TimedOut,
            Self::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl From<CatalogError> for QueryError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::DatabaseNotFound(name) => Self::DatabaseNotFound(name),
            CatalogError::Store(_) => Self::Unavailable(format!("catalog unavailable: {e}")),
            CatalogError::Conflict { .. }
            | CatalogError::DatabaseExists(_)
            | CatalogError::TokenNotFound(_)
            | CatalogError::LimitExceeded { .. }
            | CatalogError::Corrupt { .. }
            | CatalogError::UnsupportedVersion { .. } => Self::Internal(e.to_string()),
        }
    }
}

impl From<DataFusionError> for QueryError {
    /// Our own errors come back out of `External`; the rest are classified by
    /// the innermost DataFusion error, with the whole message.
    fn from(e: DataFusionError) -> Self {
        if let Some(ours) = find_query_error(&e) {
            return ours.clone();
        }
        let message = e.strip_backtrace();
        match e.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::Configuration(_)
            | DataFusionError::Execution(_)
            | DataFusionError::ArrowError(..) => Self::Invalid(message),
            DataFusionError::NotImplemented(_) => Self::NotImplemented(message),
            DataFusionError::ResourcesExhausted(_) => Self::ResourcesExhausted(message),
            _ => Self::Internal(message),
        }
    }
}

fn find_query_error(e: &DataFusionError) -> Option<&QueryError> {
    let mut current: &(dyn std::error::Error + 'static) = e;
    loop {
        if let Some(q) = current.downcast_ref::<QueryError>() {
            return Some(q);
        }
        current = current.source()?;
    }
}

/// A planned query: its result schema and a way to run it.
pub struct Planned {
    frame: DataFrame,
}

impl Planned {
    pub fn schema(&self) -> SchemaRef {
        Arc::new(self.frame.schema().as_arrow().clone())
    }

    /// Runs the query: this is when tables are read (ingesters, then files).
    pub async fn execute(self) -> Result<SendableRecordBatchStream, QueryError> {
        Ok(self.frame.execute_stream().await?)
    }
}

/// Plans and runs SQL against one database.
#[derive(Debug)]
pub struct Querier {
    sources: Arc<Sources>,
    /// The session state each query's is cloned from, over the runtime every
    /// query shares (so its memory pool bounds them together).
    base: BaseSession,
    /// How many queries run at once, and for how long.
    admission: Admission,
    /// Per-file summaries for the questions dashboards repeat; `None` when
    /// `--query-cache-bytes` is 0 (every answer then comes from a scan).
    summaries: Option<Arc<summary::FileSummaries>>,
}

impl Querier {
    pub fn new(catalog: Arc<Catalog>, store: Store, ingesters: Arc<dyn BufferSource>) -> Self {
        let base = BaseSession::new(runtime(Arc::new(UnboundedMemoryPool::default()), &store));
        Self {
            sources: Arc::new(Sources {
                catalog,
                store,
                ingesters,
                clock: crate::clock::system(),
            }),
            base,
            admission: Admission::new(QueryLimits::default()),
            summaries: Some(summary::FileSummaries::new(summary::DEFAULT_CACHE_BYTES)),
        }
    }

    /// This querier reading the time (retention cutoffs, InfluxQL's `now()`)
    /// from `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.sources = Arc::new(Sources {
            clock,
            ..Sources::clone(&self.sources)
        });
        self
    }

    /// The clock queries are answered by.
    pub fn clock(&self) -> &SharedClock {
        &self.sources.clock
    }

    /// Bounds the file summaries kept between queries to `bytes`; 0 turns
    /// them off (see [`summary`]).
    pub fn with_cache_bytes(mut self, bytes: usize) -> Self {
        self.summaries = (bytes > 0).then(|| summary::FileSummaries::new(bytes));
        self
    }

    /// Summarises the newest files in the background (see [`summary::warm`]),
    /// so the first dashboard refresh after a start finds them ready.
    pub fn warm_summaries(&self) {
        let Some(cache) = self.summaries.clone() else {
            return;
        };
        let sources = Arc::clone(&self.sources);
        tokio::spawn(async move {
            match summary::warm(&cache, &sources).await {
                Ok(n) => tracing::debug!(files = n, "file summaries warmed"),
                Err(e) => tracing::warn!(error = %e, "warming the file summaries failed"),
            }
        });
    }

    /// The file summaries, unless turned off.
    pub fn summaries(&self) -> Option<summary::Summaries<'_>> {
        self.summaries.as_ref().map(|cache| summary::Summaries {
            cache,
            sources: &self.sources,
        })
    }

    /// Sets how many queries run at once and how long each may run.
    /// This querier with the memory pool, summaries cache and admission the
    /// flags set.
    pub fn configured(self, config: &QueryConfig) -> Self {
        self.with_memory_limit(config.memory_bytes)
            .with_cache_bytes(config.cache_bytes)
            .with_limits(config.limits)
    }

    pub fn with_limits(mut self, limits: QueryLimits) -> Self {
        self.admission = Admission::new(limits);
        self
    }

    /// A reservation against the query memory pool, for what a query holds
    /// outside DataFusion's operators (an answer being written).
    pub fn reservation(&self, name: &str) -> MemoryReservation {
        MemoryConsumer::new(name).register(&self.base.runtime().memory_pool)
    }

    /// A slot for one query, waiting as `--max-concurrent-queries` says; the
    /// query's deadline starts now.
    pub async fn admit(&self) -> Result<Ticket, QueryError> {
        self.admission.admit().await
    }

    /// Queries running at once may hold at most `bytes` of data between them
    /// (scans and DataFusion's operators); past that a query fails with
    /// `RESOURCE_EXHAUSTED` rather than the process running out of memory.
    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        let runtime = runtime(Arc::new(GreedyMemoryPool::new(bytes)), &self.sources.store);
        self.base = BaseSession::new(runtime);
        self
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.sources.catalog
    }

    /// The database as the catalog has it now (other processes may have added
    /// tables and columns since the last look).
    pub async fn database(&self, name: &str) -> Result<Arc<Database>, QueryError> {
        let state = self.sources.catalog.refresh().await?;
        state
            .database(name)
            .cloned()
            .ok_or_else(|| QueryError::DatabaseNotFound(name.to_string()))
    }

    /// Parses and plans `sql`; reads no data. Unknown tables are `NOT_FOUND`;
    /// DDL, DML and `SET` are refused, and so is an expression nested past
    /// [`depth::MAX_SQL_EXPR_DEPTH`] (before it is parsed).
    pub async fn plan(&self, database: &str, sql: &str) -> Result<Planned, QueryError> {
        let db = self.database(database).await?;
        let ctx = self.context(&db);
        let state = ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        depth::check(sql, dialect).map_err(|e| QueryError::Invalid(e.to_string()))?;
        let statement = state.sql_to_statement(sql, &dialect)?;
        let references = state.resolve_table_references(&statement)?;
        // A plan that fails because it names an unknown table is NOT_FOUND; a
        // `CREATE TABLE x` plans fine and is refused below as DDL.
        let plan = match state.statement_to_plan(statement).await {
            Ok(plan) => plan,
            Err(e) => {
                for reference in &references {
                    check_table(&db, reference)?;
                }
                return Err(e.into());
            }
        };
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)?;
        let frame = ctx.execute_logical_plan(plan).await?;
        Ok(Planned { frame })
    }

    /// The database and a DataFusion session over its tables, for planners
    /// other than SQL's (InfluxQL builds its plans on it).
    pub async fn session(
        &self,
        database: &str,
    ) -> Result<(Arc<Database>, SessionContext), QueryError> {
        let db = self.database(database).await?;
        let ctx = self.context(&db);
        Ok((db, ctx))
    }

    /// A context for one query: every table of `db` under `public.iox`.
    fn context(&self, db: &Arc<Database>) -> SessionContext {
        self.base.context(db, &self.sources)
    }
}

/// The runtime every query of a querier shares: its memory pool, and the
/// object store the Parquet files are read from (with DataFusion's cache of
/// their footers, so a small query does not fetch them again).
fn runtime(pool: Arc<dyn MemoryPool>, store: &Store) -> Arc<RuntimeEnv> {
    // Building a runtime from a pool and the default disk manager cannot fail.
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(pool)
        .build_arc()
        .expect("default runtime environment");
    let url = ObjectStoreUrl::parse(scan::STORE_URL).expect("a valid object store URL");
    runtime.register_object_store(url.as_ref(), store.object_store());
    runtime
}

/// A table the query names must be one of the database's (or an
/// `information_schema` view).
fn check_table(db: &Database, reference: &TableReference) -> Result<(), QueryError> {
    let not_found = || QueryError::TableNotFound {
        database: db.name.clone(),
        table: reference.to_string(),
    };
    if reference.schema() == Some(INFORMATION_SCHEMA) {
        return Ok(());
    }
    if reference.catalog().is_some_and(|c| c != CATALOG_NAME)
        || reference.schema().is_some_and(|s| s != SCHEMA_NAME)
    {
        return Err(not_found());
    }
    db.table(reference.table())
        .map(|_| ())
        .ok_or_else(not_found)
}

/// The one child of a one-input operator (`DedupExec`, `HeldScan`,
/// `RunFoldExec`), for `ExecutionPlan::with_new_children`.
fn only_child(
    operator: &str,
    mut children: Vec<Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>, DataFusionError> {
    match children.len() {
        1 => Ok(children.swap_remove(0)),
        n => Err(DataFusionError::Internal(format!(
            "{operator} takes one child, got {n}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        Buffered, catalog_with_table, chunk, on_small_stack, persist, querier_with_one_row, sql,
    };

    /// A chain past the bound is refused before it is parsed (it used to
    /// overflow the stack and abort); one exactly at the bound plans and runs
    /// on a 2 MiB stack, where about 670 levels overflow in a debug build.
    #[test]
    fn deep_sql_is_refused_and_sql_at_the_bound_runs_on_a_small_stack() {
        on_small_stack(|| async {
            let dir = tempfile::tempdir().unwrap();
            let querier = querier_with_one_row(dir.path()).await;
            let deep = format!(
                "SELECT x FROM m WHERE {}",
                vec!["x=1"; 100_000].join(" OR ")
            );
            let e = querier.plan("db", &deep).await.err().unwrap();
            let want = format!("more than {} levels", depth::MAX_SQL_EXPR_DEPTH);
            assert!(
                matches!(&e, QueryError::Invalid(m) if m.contains(&want)),
                "{e}"
            );
            // SELECT, AS, FROM and 253 `+`.
            let at_bound = format!("SELECT x{} AS s FROM m", "+x".repeat(253));
            let answer = sql(&querier, &at_bound).await;
            assert!(answer.contains("| 254.0 |"), "{answer}");
        });
    }

    /// A sort's up-front reservation is cut to the pool: with DataFusion's
    /// 10 MiB default, no sort at all could run under a 1 MiB limit.
    #[tokio::test]
    async fn a_small_sort_runs_under_a_small_memory_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (store, catalog) = catalog_with_table(dir.path()).await;
        let rows = chunk(1, &[("b", Some(2.0), None, 20), ("a", Some(1.0), None, 10)]);
        persist(&catalog, &store, "i1", 1, rows).await;
        let querier =
            Querier::new(catalog, store, Arc::new(Buffered(vec![]))).with_memory_limit(1 << 20);
        let sorted = sql(&querier, "SELECT host, x FROM m ORDER BY x DESC").await;
        let expected = "\
+------+-----+
| host | x   |
+------+-----+
| b    | 2.0 |
| a    | 1.0 |
+------+-----+";
        assert_eq!(sorted, expected);
        assert_eq!(session::sort_reservation(1 << 20, 2), 1 << 17);
        assert_eq!(session::sort_reservation(1 << 40, 2), 10 << 20);
        assert_eq!(session::sort_reservation(1 << 20, 0), 1 << 18);
    }

    /// Two files of the same point from different ingesters (a failover) and a
    /// buffered version: per field, the latest write sequence wins.
    #[tokio::test]
    async fn versions_across_files_and_buffers_fold_by_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let (store, catalog) = catalog_with_table(dir.path()).await;
        let first = chunk(5, &[("a", Some(1.0), Some(1.0), 10)]);
        persist(&catalog, &store, "i1", 1, first).await;
        let failover = chunk(7, &[("a", Some(2.0), None, 10), ("b", Some(3.0), None, 20)]);
        persist(&catalog, &store, "i2", 1, failover).await;
        let buffered = vec![
            chunk(8, &[("a", None, Some(9.0), 10)]),
            chunk(6, &[("b", Some(4.0), Some(4.0), 20)]),
        ];
        // A querier in another process: it must find the files by itself.
        let reader = Catalog::load(store.clone()).await.unwrap();
        let querier = Querier::new(reader, store, Arc::new(Buffered(buffered)));
        let all = sql(&querier, "SELECT * FROM m ORDER BY host").await;
        let expected = "\
+------+-----+-----+-------------------------------+
| host | x   | y   | time                          |
+------+-----+-----+-------------------------------+
| a    | 2.0 | 9.0 | 1970-01-01T00:00:00.000000010 |
| b    | 3.0 | 4.0 | 1970-01-01T00:00:00.000000020 |
+------+-----+-----+-------------------------------+";
        assert_eq!(all, expected);
        let late = sql(
            &querier,
            "SELECT host, x FROM m WHERE time >= to_timestamp_nanos(15)",
        )
        .await;
        assert!(
            late.contains("| b    | 3.0 |") && !late.contains("| a "),
            "{late}"
        );
        // A tag filter applies before the fold; a field filter only after it:
        // host a's x is 2.0 now, its older version 1.0 must not match.
        let b = sql(&querier, "SELECT host, y FROM m WHERE host = 'b'").await;
        assert!(b.contains("| b    | 4.0 |") && !b.contains("| a "), "{b}");
        let old = sql(&querier, "SELECT host FROM m WHERE x = 1.0").await;
        assert!(!old.contains("| a "), "{old}");
        let new = sql(
            &querier,
            "SELECT host, y FROM m WHERE x = 2.0 AND host = 'a'",
        )
        .await;
        assert!(new.contains("| a    | 9.0 |"), "{new}");

        let e = querier
            .plan("db", "SELECT * FROM nope")
            .await
            .err()
            .unwrap();
        assert!(matches!(e, QueryError::TableNotFound { .. }), "{e}");
        let e = querier.plan("db", "SELEC 1").await.err().unwrap();
        assert!(matches!(e, QueryError::Invalid(_)), "{e}");
        let e = querier.plan("nodb", "SELECT 1").await.err().unwrap();
        assert!(matches!(e, QueryError::DatabaseNotFound(_)), "{e}");
    }
}
