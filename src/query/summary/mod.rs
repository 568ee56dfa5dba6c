//! Per-file summaries, so the questions dashboards ask every few seconds —
//! "which hosts are there" (`SHOW TAG VALUES`, `SHOW SERIES`, …) and "what is
//! each host's last value" (`last(x) … GROUP BY host`) — are answered without
//! reading a day of rows each time.
//!
//! ```text
//!  query ─► 1. ingesters: buffered rows in range ─► summarised for this query
//!           2. catalog files overlapping the range ─► FileSummaries (by path)
//!                    │ hit: the cached summary      miss: read the file once
//!                    ▼
//!           merge: series with points in range / last value per series, field
//! ```
//!
//! A summary holds a source's series (distinct tag sets, a missing tag null),
//! each series' first and last time, and per series per field the last value
//! with its time and write sequence.
//!
//! Why per file: a registered Parquet file never changes and its path is never
//! reused, so its summary is valid for as long as the file is listed — no
//! invalidation, no coordination with writers. The querier may be another
//! process than the ingesters: the cache is built from what any querier can
//! read (the catalog's files, and the buffered rows every query fetches
//! anyway, which are small and summarised per query). Files that compaction
//! or retention removed are no longer listed; their summaries age out of the
//! LRU. A summary bigger than the whole budget (`--query-cache-bytes`) is not
//! kept: such a file is summarised by every query that needs it.
//!
//! Exactness:
//! - Last values: per series and field, the greatest (time, sequence) over the
//!   sources — the point-identity fold the scan does (the latest write of a
//!   field of a point wins, wherever its versions are). A file's last value
//!   is exact for any range whose end is at or past the file's last time (a
//!   value before the range's start means none in range in that file); a file
//!   that reaches past the range's end is summarised for that range instead,
//!   uncached.
//! - Series in a time range: a series counts when its [first, last] time in
//!   some source overlaps the range — a series with points before and after
//!   the range in one file but none inside it counts too. Files wholly
//!   outside the range are not looked at.
//! - The database's retention period bounds the range, as for scans.
//!
//! When a querier starts it summarises the newest files in the background
//! ([`warm`]) until half the budget is used, so the first dashboard refresh
//! after a restart does not wait for them.

mod cache;
mod file;
mod merge;

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::DataType;
use futures::{StreamExt, TryStreamExt};

pub use cache::FileSummaries;
pub use file::{FileSummary, SummaryBuilder};
pub use merge::{FieldValues, LastValues, TableSeries};

use super::QueryError;
use super::table::Sources;
use crate::catalog::{Database, ParquetFile, Table, table_columns};
use crate::ingester::read::{BufferFilter, TimeRange};
use crate::schema::ColumnType;

/// The default of `--query-cache-bytes`.
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

/// Files summarised at once for one query (the cache bounds the total).
const PARALLEL_SUMMARIES: usize = 8;

/// A querier's summaries and where its rows come from.
#[derive(Clone, Copy)]
pub struct Summaries<'a> {
    pub(super) cache: &'a Arc<FileSummaries>,
    pub(super) sources: &'a Sources,
}

impl Summaries<'_> {
    /// The series of `table` with points in `range` (see the module doc for
    /// how a series counts).
    pub async fn series(
        &self,
        db: &Database,
        table: &Table,
        range: TimeRange,
    ) -> Result<TableSeries, QueryError> {
        let range = retained(db, range, self.sources.clock.now_ns());
        let mut sources = vec![self.buffered(db, table, range).await?];
        let files = self.files(db, table, range).await?;
        sources.extend(self.cached(files).await?);
        merge::series(&sources, &tags(table), range).map_err(internal)
    }

    /// Each series' last value of each of `fields` in `range`; a name that is
    /// not a field of the table has none.
    pub async fn last(
        &self,
        db: &Database,
        table: &Table,
        range: TimeRange,
        fields: &[String],
    ) -> Result<LastValues, QueryError> {
        let range = retained(db, range, self.sources.clock.now_ns());
        let mut sources = vec![self.buffered(db, table, range).await?];
        let (whole, cut): (Vec<ParquetFile>, Vec<ParquetFile>) = self
            .files(db, table, range)
            .await?
            .into_iter()
            .partition(|f| range.max.is_none_or(|max| f.max_time <= max));
        sources.extend(self.cached(whole).await?);
        let store = self.sources.store.object_store();
        let cut: Vec<Arc<FileSummary>> = futures::stream::iter(cut)
            .map(|f| {
                let store = Arc::clone(&store);
                async move {
                    FileSummary::read(store, &f, Some(range))
                        .await
                        .map(Arc::new)
                }
            })
            .buffer_unordered(PARALLEL_SUMMARIES)
            .try_collect()
            .await?;
        sources.extend(cut);
        let typed: Vec<(String, DataType)> = fields
            .iter()
            .map(|name| {
                let ty = table
                    .column_type(name)
                    .filter(|t| t.is_field())
                    .map_or(DataType::Null, ColumnType::arrow_type);
                (name.clone(), ty)
            })
            .collect();
        merge::last(&sources, &tags(table), &typed, range).map_err(internal)
    }

    /// The ingesters' rows of the table in `range`, summarised. Asked before
    /// the files are listed, as a scan does: a row that leaves the buffers in
    /// between is in a file by then.
    async fn buffered(
        &self,
        db: &Database,
        table: &Table,
        range: TimeRange,
    ) -> Result<Arc<FileSummary>, QueryError> {
        let batches = self
            .sources
            .ingesters
            .fetch(db.key(), &table.name, &BufferFilter::range(range))
            .await?;
        let mut builder = SummaryBuilder::default();
        for batch in &batches {
            builder.add(batch).map_err(internal)?;
        }
        builder.finish().map(Arc::new).map_err(internal)
    }

    /// The table's registered files that may hold rows in `range`, each once.
    async fn files(
        &self,
        db: &Database,
        table: &Table,
        range: TimeRange,
    ) -> Result<Vec<ParquetFile>, QueryError> {
        self.sources.catalog.refresh_file_logs().await?;
        let mut seen = HashSet::new();
        Ok(self
            .sources
            .catalog
            .files()
            .into_iter()
            .filter(|f| f.database == db.id && f.table == table.id)
            .filter(|f| range.overlaps(f.min_time, f.max_time))
            .filter(|f| seen.insert(f.path.clone()))
            .collect())
    }

    async fn cached(&self, files: Vec<ParquetFile>) -> Result<Vec<Arc<FileSummary>>, QueryError> {
        let store = self.sources.store.object_store();
        futures::stream::iter(files)
            .map(|f| {
                let store = Arc::clone(&store);
                async move { self.cache.get(&store, &f).await }
            })
            .buffer_unordered(PARALLEL_SUMMARIES)
            .try_collect()
            .await
    }
}

/// Summarises the live databases' files, newest first and one at a time,
/// until the summaries use half of the cache (the rest is for what queries
/// ask for). A file that cannot be read is skipped. Returns how many were
/// summarised.
pub async fn warm(cache: &Arc<FileSummaries>, sources: &Sources) -> Result<usize, QueryError> {
    sources.catalog.refresh_file_logs().await?;
    let state = sources.catalog.refresh().await?;
    let now = sources.clock.now_ns();
    let mut seen = HashSet::new();
    let mut files: Vec<ParquetFile> = sources
        .catalog
        .files()
        .into_iter()
        .filter(|f| {
            state
                .live_database_by_id(f.database)
                .is_some_and(|db| db.retention_cutoff(now).is_none_or(|c| f.max_time >= c))
        })
        .filter(|f| seen.insert(f.path.clone()))
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.max_time));
    let store = sources.store.object_store();
    let mut summarised = 0;
    for file in files {
        if cache.usage().0 >= cache.capacity() / 2 {
            break;
        }
        match cache.get(&store, &file).await {
            Ok(_) => summarised += 1,
            Err(e) => tracing::debug!(file = %file.path, error = %e, "not summarised"),
        }
    }
    Ok(summarised)
}

/// The range a query may see: not before the retention period's start.
fn retained(db: &Database, mut range: TimeRange, now_ns: i64) -> TimeRange {
    if let Some(cutoff) = db.retention_cutoff(now_ns) {
        range.min = Some(range.min.map_or(cutoff, |m| m.max(cutoff)));
    }
    range
}

fn tags(table: &Table) -> Vec<String> {
    table_columns(table)
        .filter(|(_, t)| *t == ColumnType::Tag)
        .map(|(n, _)| n.to_string())
        .collect()
}

fn internal(e: arrow::error::ArrowError) -> QueryError {
    QueryError::Internal(format!("combining summaries: {e}"))
}
#[cfg(test)]
mod tests;
