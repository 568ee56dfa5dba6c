//! Persisting the buffer: the snapshot loop, the slicing of a snapshot, the
//! naming of its Parquet files and their registration in the files log, after
//! which the buffered chunks and the WAL they came from are dropped.
//!
//! Apart from the ingester's admission of writes because it runs on its own
//! pace (a timer, or a buffer past half full), and because a takeover persists
//! another prefix's replayed WAL the same way ([`persist`]).

use std::sync::Arc;

use object_store::path::Path;

use super::buffer::{Chunk, TableKey};
use super::{Ingester, IngesterError, max_sequence_in, publish_buffer_bytes, snapshot, wal};
use crate::catalog::{Catalog, ParquetFile, table_columns};
use crate::metrics::metrics;
use crate::store::{Put, Store};

/// Most buffered bytes a snapshot persists and registers in one step.
const SNAPSHOT_SLICE_BYTES: usize = 64 << 20;

/// Most buffered bytes merged at once by a snapshot. Merging copies the data
/// about three times (concatenated, sort keys, sorted), so this, not the buffer
/// size, bounds the snapshot's extra memory.
const SNAPSHOT_GROUP_BYTES: usize = 32 << 20;

impl Ingester {
    pub(super) async fn snapshot_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.snapshot_interval);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.snapshot_wanted.notified() => {}
            }
            if self.is_stopping() {
                return;
            }
            if let Err(e) = self.snapshot().await {
                tracing::error!(error = %e, "snapshot failed; will retry");
                self.count_snapshot("error");
            }
        }
    }

    /// Writes everything committed so far to Parquet, in slices of a sixteenth
    /// of the buffer (at most [`SNAPSHOT_SLICE_BYTES`]) taken in segment order.
    /// Each slice is registered, dropped from the buffer and its WAL deleted
    /// before the next starts, so memory comes back while a large snapshot
    /// runs instead of after it: taken whole, a snapshot of half the buffer
    /// took long enough under load for writes to fill the other half.
    pub async fn snapshot(&self) -> Result<usize, IngesterError> {
        let _one_at_a_time = self.snapshot_lock.lock().await;
        let Some(last) = self.buffer.lock().last_segment() else {
            return Ok(0);
        };
        let started = std::time::Instant::now();
        let (mut files, mut slices) = (0, 0);
        loop {
            if self.wal.is_fenced() {
                break; // the ingester that took over the WAL persists it
            }
            let cut = self.buffer.lock().cut(self.slice_bytes());
            let Some(covered) = cut.map(|c| c.min(last)) else {
                break;
            };
            files += self.snapshot_slice(covered).await?;
            slices += 1;
            if covered == last {
                break;
            }
        }
        if slices > 0 {
            self.count_snapshot("ok");
            metrics()
                .snapshot_duration
                .with_label_values(&[self.config.id.as_str()])
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(
                files,
                slices,
                covered_segment = last,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "snapshot"
            );
        }
        Ok(files)
    }

    fn slice_bytes(&self) -> usize {
        (self.config.buffer_bytes / 16).min(SNAPSHOT_SLICE_BYTES)
    }

    /// Persists and registers the buffered chunks up to `covered`, then drops
    /// them and the WAL they came from.
    async fn snapshot_slice(&self, covered: u64) -> Result<usize, IngesterError> {
        let tables = self.buffer.lock().chunks_up_to(covered);
        let max_sequence = max_sequence_in(&tables);
        // Stable while the snapshot lock is held: a reclaim takes it too.
        let epoch = self.wal.epoch();
        let writer = (self.config.id.as_str(), epoch);
        let files = persist(&self.store, &self.catalog, writer, covered, tables).await?;
        let n = files.len();
        self.catalog
            .register_files(&self.config.id, covered, max_sequence, files)
            .await?;
        let persisted = self.buffer.lock().remove_up_to(covered);
        crate::background::run(move || drop(persisted)).await;
        publish_buffer_bytes(&self.config.id, &self.buffer);
        metrics()
            .snapshot_files
            .with_label_values(&[self.config.id.as_str()])
            .inc_by(n as u64);
        // Our newest log file is the one being appended to.
        wal::delete_covered(&self.store, &self.config.id, covered, true).await?;
        Ok(n)
    }

    fn count_snapshot(&self, outcome: &str) {
        metrics()
            .snapshots
            .with_label_values(&[self.config.id.as_str(), outcome])
            .inc();
    }
}

/// Writes buffered chunks as Parquet (per table, per group of at most
/// [`SNAPSHOT_GROUP_BYTES`] in write order, one file per day). A point written
/// again in a later group is stored in both files; queries keep the later one.
///
/// Files are named by the WAL prefix, the lease epoch of the writer and the
/// last segment they cover. A snapshot redone in the same epoch holds the same
/// chunks, so it overwrites its own earlier attempt instead of adding a copy.
/// Two holders of a prefix (an owner whose lease expired mid-snapshot and the
/// ingester taking over, or two takers in turn) may persist up to the same
/// segment with different chunks: without the epoch the later put would
/// replace a registered file by one missing some of its rows.
pub(super) async fn persist(
    store: &Store,
    catalog: &Catalog,
    (prefix, epoch): (&str, u64),
    covered: u64,
    tables: Vec<(TableKey, Vec<Arc<Chunk>>)>,
) -> Result<Vec<ParquetFile>, IngesterError> {
    // Fresh: rows of a database deleted by another process are dropped, not
    // written under an id that the lifecycle may already have purged.
    let mut state = catalog.refresh().await?;
    let mut files = Vec::new();
    for ((db_id, table_name), chunks) in tables {
        let known = state
            .live_database_by_id(db_id)
            .and_then(|d| d.table(&table_name))
            .is_some();
        if !known && !state.is_dropped(db_id) {
            state = catalog.refresh().await?;
        }
        // Rows of a database deleted since they were written go with it; a
        // database that took its name has another id, and never sees them.
        if state.is_dropped(db_id) {
            tracing::info!(database_id = db_id, table = %table_name, "dropping buffered rows of a deleted database");
            continue;
        }
        // Writes reach an ingester only after the edge committed their schema,
        // so this means a broken catalog: keep everything and retry later.
        let unknown = || IngesterError::UnknownTable {
            database: db_id,
            table: table_name.to_string(),
        };
        let db = state
            .live_database_by_id(db_id)
            .cloned()
            .ok_or_else(unknown)?;
        let table = db.table(&table_name).cloned().ok_or_else(unknown)?;
        for (group, chunks) in snapshot::groups(chunks, SNAPSHOT_GROUP_BYTES)
            .into_iter()
            .enumerate()
        {
            let columns = Arc::clone(&table);
            let day_files = crate::background::run(move || {
                let schema = snapshot::target_schema(table_columns(&columns), &chunks);
                let merged = snapshot::merge(&schema, &chunks)?;
                snapshot::day_files(&merged)
            })
            .await?;
            for f in day_files {
                let path = format!(
                    "{}/{}/{}/{prefix}-{epoch:020}-{covered:020}-{group:04}.parquet",
                    db.id, table.id, f.partition
                );
                store
                    .put_background(&Path::from(path.as_str()), f.bytes.clone(), Put::Overwrite)
                    .await?;
                files.push(f.entry(path, db.id, table.id));
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{catalog_with_table, chunk};

    fn rows_in(bytes: bytes::Bytes) -> usize {
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum()
    }

    /// An owner registers a snapshot up to segment 7; an ingester that took
    /// over the prefix meanwhile persists up to 7 too, having missed a segment
    /// the owner's snapshot deleted. The owner's registered file keeps its rows.
    #[tokio::test]
    async fn another_holder_never_replaces_a_registered_file() {
        let dir = tempfile::tempdir().unwrap();
        let (store, catalog) = catalog_with_table(dir.path()).await;
        let key: TableKey = (1, "m".into());
        let both = vec![
            chunk(6, &[("a", Some(1.0), None, 1)]),
            chunk(7, &[("b", Some(2.0), None, 1)]),
        ];
        let owner = persist(&store, &catalog, ("ing-0", 4), 7, vec![(key.clone(), both)])
            .await
            .unwrap();
        catalog.register_files("ing-0", 7, 0, owner).await.unwrap();

        let missed_one = vec![chunk(7, &[("b", Some(2.0), None, 1)])];
        let taker = persist(&store, &catalog, ("ing-0", 5), 7, vec![(key, missed_one)])
            .await
            .unwrap();
        assert_eq!(taker.len(), 1);

        let registered = catalog.files();
        assert_eq!(registered.len(), 1);
        let bytes = store.get(&Path::from(registered[0].path.as_str())).await;
        assert_eq!(rows_in(bytes.unwrap()), 2, "the taker's put replaced it");
        assert_ne!(registered[0].path, taker[0].path);
    }
}
