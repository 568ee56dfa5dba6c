//! The ingester: takes Arrow batches over Flight `DoPut`, makes them durable in a
//! WAL on the object store, acknowledges them, and later snapshots them to Parquet.
//!
//! ```text
//!  DoPut stream ──► write() ──► WAL task ──(group commit: one segment per put)──► object store
//!                    ▲  ack ◄───────┘ │
//!                    │                ▼
//!                    │             Buffer ──► snapshot ──► Parquet + catalog entry
//!                    │                                      └─► drop chunks, delete covered WAL
//! ```
//!
//! A write is acknowledged only after the segment holding it is durable. Snapshots
//! register their files with the last segment they cover; replay on start skips
//! what is covered, so no point is read twice.
//!
//! Each write is kept at a sequence above every one the ingester holds (the
//! receiving side of the routers' hybrid logical clock), and every ack says
//! the highest, so routers stamp later writes above it.
//!
//! The WAL prefix `wal/<id>` is written only by the holder of its lease
//! ([`crate::lease`]). An ingester claims its own prefix at start (waiting for a
//! previous holder to release it or expire), renews it every ttl/3, and takes
//! over any other prefix whose lease expired: it fences the prefix, replays
//! the uncovered WAL into Parquet, registers the files in that prefix's files
//! log and releases the lease. An ingester that finds itself fenced (a commit
//! hits the fence, or a heartbeat finds a newer epoch) refuses writes until it
//! has claimed its prefix again.
//!
//! In parts: [`wal`] (position, group commit, segments and log files, replay,
//! deletion of covered segments), [`persist`] (snapshots), [`takeover`]
//! (leases, fencing, another's prefix); [`Ingester`] here keeps the admission
//! of writes, backpressure and the lifecycle.

pub mod buffer;
pub mod flight;
mod persist;
pub mod read;
pub mod snapshot;
mod takeover;
pub mod wal;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

use crate::catalog::{Catalog, DbId, DbRef};
use crate::lease::Leases;
use crate::metrics::metrics;
use crate::proto::refusal::Reason;
use crate::store::Store;
use buffer::{Buffer, Chunk, TableKey};
use wal::{EncodedEntry, Queued, Wal};

#[derive(Debug, Clone)]
pub struct IngesterConfig {
    pub id: String,
    /// Most bytes of buffered data; writes beyond it are refused (backpressure).
    pub buffer_bytes: usize,
    /// Extra time the WAL task waits to gather writes into one segment.
    pub wal_flush_interval: Duration,
    /// How often buffered data is written to Parquet.
    pub snapshot_interval: Duration,
    /// How long a WAL lease lives without a heartbeat.
    pub lease_ttl: Duration,
    /// No other process can hold this ingester's lease (this one holds the local
    /// data directory's lock), so a lease its previous run left behind is taken
    /// at once instead of after the ttl.
    pub exclusive: bool,
}

/// Why a write was not acknowledged; travels back in the `WriteAck`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub reason: Reason,
    pub message: String,
}

impl Refused {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// The refusal of a write while the WAL lease of `ingester` is lost.
    fn fenced(ingester: &str) -> Self {
        Self::new(
            Reason::Fenced,
            format!("ingester {ingester} lost its WAL lease and is claiming it again"),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngesterError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    #[error(transparent)]
    Log(#[from] wal::log_file::LogError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error(
        "buffered data for table \"{table}\" of database id {database}, which the catalog lacks"
    )]
    UnknownTable { database: DbId, table: String },
    #[error(
        "WAL entry of an earlier release names database \"{0}\", which the catalog neither has nor deleted"
    )]
    UnknownDatabase(String),
    #[error("snapshot task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Lease(#[from] crate::lease::LeaseError),
    #[error("WAL segment {0} vanished before it was replayed and no snapshot covers it")]
    SegmentLost(String),
}

pub struct Ingester {
    config: IngesterConfig,
    leases: Leases,
    /// The WAL of this ingester's own prefix: its position, its lease epoch,
    /// whether it is fenced, and the group commit.
    wal: Arc<Wal>,
    store: Store,
    catalog: Arc<Catalog>,
    /// Shared with the WAL, which adds each durable segment.
    buffer: Arc<Mutex<Buffer>>,
    /// Bytes accepted but not yet in the buffer (waiting for their WAL commit).
    pending_bytes: Arc<AtomicUsize>,
    /// The highest write sequence this ingester holds or has persisted (and
    /// the catalog's, at start). Every ack carries it, so routers stamp later
    /// writes above it even when their clocks are behind (see `route`).
    max_sequence: AtomicU64,
    snapshot_lock: tokio::sync::Mutex<()>,
    snapshot_wanted: Arc<Notify>,
    /// Held while another prefix is taken over, so shutdown waits for it.
    takeover_lock: tokio::sync::Mutex<()>,
    stopping: AtomicBool,
}

impl std::fmt::Debug for Ingester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingester")
            .field("id", &self.config.id)
            .finish_non_exhaustive()
    }
}

impl Ingester {
    /// Replays the WAL this ingester owns and starts its WAL and snapshot tasks.
    pub async fn start(
        config: IngesterConfig,
        store: Store,
        catalog: Arc<Catalog>,
    ) -> Result<Arc<Self>, IngesterError> {
        metrics().ingester_started(&config.id, config.buffer_bytes);
        let leases = Leases::new(store.clone(), config.id.clone(), config.lease_ttl);
        let (position, buffer) = takeover::claim_own(&config, &leases, &store, &catalog).await?;
        let max_sequence = catalog.max_sequence().max(max_sequence_of(&buffer));
        let buffer = Arc::new(Mutex::new(buffer));
        let wal = Arc::new(Wal::new(
            &config.id,
            store.clone(),
            Arc::clone(&catalog),
            Arc::clone(&buffer),
            position,
            config.wal_flush_interval,
        ));
        let snapshot_wanted = Arc::new(Notify::new());
        let ingester = Arc::new(Self {
            leases,
            wal: Arc::clone(&wal),
            store,
            catalog,
            buffer: Arc::clone(&buffer),
            pending_bytes: Arc::default(),
            max_sequence: AtomicU64::new(max_sequence),
            snapshot_lock: tokio::sync::Mutex::new(()),
            snapshot_wanted: Arc::clone(&snapshot_wanted),
            takeover_lock: tokio::sync::Mutex::new(()),
            stopping: AtomicBool::new(false),
            config,
        });
        // Past half full, the buffer asks for a snapshot after each commit.
        let half = ingester.config.buffer_bytes / 2;
        wal.start(move || {
            if buffer.lock().bytes() > half {
                snapshot_wanted.notify_one();
            }
        });
        tokio::spawn(Arc::clone(&ingester).snapshot_loop());
        tokio::spawn(Arc::clone(&ingester).heartbeat_loop());
        tokio::spawn(Arc::clone(&ingester).lease_loop());
        Ok(ingester)
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buffer.lock().bytes()
    }

    /// The highest write sequence this ingester holds (buffered or persisted).
    pub fn max_sequence(&self) -> u64 {
        self.max_sequence.load(Ordering::Acquire)
    }

    fn observe_sequence(&self, sequence: u64) {
        self.max_sequence.fetch_max(sequence, Ordering::AcqRel);
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The sequence a write stamped `sequence` by its router is kept at: the
    /// receiving side of the hybrid logical clock. Above every sequence this
    /// ingester took or holds, so a write sent after another was acknowledged
    /// orders after it even when the two routers' clocks disagree.
    fn stamp(&self, sequence: u64) -> u64 {
        let held = self
            .max_sequence
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(sequence.max(held.saturating_add(1)))
            })
            .unwrap_or_default();
        sequence.max(held.saturating_add(1))
    }

    /// Makes one batch durable; returns the WAL segment that holds it. With
    /// `no_sync` it returns once the batch is queued for the WAL (segment 0): a
    /// crash before the commit loses it, which is what the client asked for.
    pub async fn write(
        &self,
        database: DbRef<'_>,
        table: &str,
        sequence: u64,
        batch: RecordBatch,
        no_sync: bool,
    ) -> Result<u64, Refused> {
        if self.is_stopping() {
            return Err(Refused::new(
                Reason::ShuttingDown,
                "ingester is shutting down",
            ));
        }
        if self.wal.is_fenced() {
            return Err(Refused::fenced(&self.config.id));
        }
        let batch = buffer::compact(batch);
        let size = buffer::batch_bytes(&batch);
        let used =
            self.buffer.lock().bytes() + self.pending_bytes.fetch_add(size, Ordering::AcqRel);
        let pending = PendingGuard {
            counter: Arc::clone(&self.pending_bytes),
            size,
        };
        if used + size > self.config.buffer_bytes {
            self.snapshot_wanted.notify_one();
            return Err(Refused::new(
                Reason::BufferFull,
                format!(
                    "ingester {} buffer is full ({used} of {} bytes)",
                    self.config.id, self.config.buffer_bytes
                ),
            ));
        }
        let ipc =
            wal::encode_batch(&batch).map_err(|e| Refused::new(Reason::Invalid, e.to_string()))?;
        let sequence = self.stamp(sequence);
        let entry = EncodedEntry {
            database_id: database.id,
            database: database.name.into(),
            table: table.into(),
            sequence,
            ipc,
        };
        let (done, rx) = oneshot::channel();
        let stopped = || Refused::new(Reason::ShuttingDown, "ingester is shutting down");
        let queued = Queued {
            entry,
            batch,
            done,
            pending,
        };
        if !self.wal.enqueue(queued).await {
            return Err(stopped());
        }
        if no_sync {
            return Ok(0);
        }
        rx.await.map_err(|_| stopped())?
    }

    /// Stops taking writes, commits what is queued, snapshots everything, and
    /// releases the lease so a restart or another ingester need not wait for it.
    /// A takeover under way is finished first: cut short, it would leave that
    /// prefix's WAL unpersisted (durable, but in Parquet only once some
    /// ingester starts again) and its lease held until it expires.
    pub async fn shutdown(&self) -> Result<(), IngesterError> {
        self.stopping.store(true, Ordering::Release);
        drop(self.takeover_lock.lock().await);
        self.wal.close().await?;
        self.snapshot().await?;
        // Nothing appends any more: the newest log file goes too once covered.
        if let Some(covered) = self.catalog.covered_segment(&self.config.id) {
            wal::delete_covered(&self.store, &self.config.id, covered, false).await?;
        }
        let _no_reclaim = self.wal.hold().await;
        if !self.wal.is_fenced() {
            self.leases
                .release(&self.config.id, self.wal.epoch())
                .await?;
        }
        Ok(())
    }

    /// The buffered (not yet persisted) chunks of one table, for a querier. A
    /// snapshot drops chunks only after registering their files, so a querier
    /// that asks here first and reads the catalog afterwards misses nothing.
    pub fn buffered_chunks(&self, database: DbId, table: &str) -> Vec<Arc<Chunk>> {
        self.buffer
            .lock()
            .table_chunks(&(database, Arc::from(table)))
    }

    /// The id of the live database `name`, for a peer of a release that sends
    /// names only (a rolling upgrade); `None` if there is none.
    pub async fn database_id(&self, name: &str) -> Option<DbId> {
        if let Some(db) = self.catalog.state().database(name) {
            return Some(db.id);
        }
        let state = self.catalog.refresh().await.ok()?;
        state.database(name).map(|d| d.id)
    }
}

/// Bytes of a write counted as pending until it is in the buffer or refused.
struct PendingGuard {
    counter: Arc<AtomicUsize>,
    size: usize,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.size, Ordering::AcqRel);
    }
}

/// Publishes the buffer's size as the `buffer_bytes` gauge of ingester `id`.
fn publish_buffer_bytes(id: &str, buffer: &Mutex<Buffer>) {
    let bytes = buffer.lock().bytes();
    metrics()
        .buffer_bytes
        .with_label_values(&[id])
        .set(bytes as i64);
}

/// The highest write sequence among `tables`' chunks (0 if none).
fn max_sequence_in(tables: &[(TableKey, Vec<Arc<Chunk>>)]) -> u64 {
    let chunks = tables.iter().flat_map(|(_, chunks)| chunks);
    chunks.map(|c| c.sequence).max().unwrap_or_default()
}

/// The highest write sequence a buffer holds (0 if empty).
fn max_sequence_of(buffer: &Buffer) -> u64 {
    max_sequence_in(&buffer.chunks_up_to(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Buffered, catalog_with_table, chunk, sql};
    use wal::replay::replay;
    use wal::tests::{log_name, wal_files};

    /// The database `catalog_with_table` makes.
    const DB: DbRef<'static> = DbRef { id: 1, name: "db" };

    fn exclusive_config() -> IngesterConfig {
        IngesterConfig {
            id: "ing-0".into(),
            buffer_bytes: 1 << 30,
            wal_flush_interval: Duration::ZERO,
            snapshot_interval: Duration::from_secs(3600),
            lease_ttl: Duration::from_secs(30),
            exclusive: true,
        }
    }

    /// Holding the data directory, an ingester appends its segments to a log
    /// file; a snapshot keeps the file it appends to, and a later run, which
    /// starts a file of its own, replays what no snapshot covers.
    #[tokio::test]
    async fn an_exclusive_ingester_appends_its_wal_to_a_log_file() {
        let dir = tempfile::tempdir().unwrap();
        let (store, catalog) = catalog_with_table(dir.path()).await;
        let write = |ingester: Arc<Ingester>, host: &'static str, time: i64| async move {
            let batch = chunk(1, &[(host, Some(1.0), None, time)]).batch.clone();
            ingester
                .write(DB, "m", time as u64, batch, false)
                .await
                .unwrap()
        };
        let run1 = Ingester::start(exclusive_config(), store.clone(), Arc::clone(&catalog)).await;
        let run1 = run1.unwrap();
        assert_eq!(write(Arc::clone(&run1), "a", 1).await, 0);
        assert_eq!(write(Arc::clone(&run1), "b", 2).await, 1);
        assert_eq!(wal_files(&store).await, vec![log_name(0)]);
        assert_eq!(run1.snapshot().await.unwrap(), 1);
        assert_eq!(write(Arc::clone(&run1), "c", 3).await, 2);
        assert_eq!(wal_files(&store).await, vec![log_name(0)], "kept: in use");
        // What a restart after a crash would replay: the segment after the snapshot.
        let (buffer, next) = replay("ing-0", &store, &catalog).await.unwrap();
        assert_eq!((buffer.last_segment(), next), (Some(2), 3));
        let key: TableKey = (1, "m".into());
        let times = |buffer: &Buffer| -> Vec<i64> {
            let chunks = buffer.table_chunks(&key);
            let times = chunks.iter().map(|c| c.batch.column(3).as_any());
            let times = times.map(|t| {
                let t = t.downcast_ref::<arrow::array::TimestampNanosecondArray>();
                t.unwrap().value(0)
            });
            times.collect()
        };
        assert_eq!(times(&buffer), vec![3]);
        drop(run1); // its tasks hold it; as after kill -9, its lease stays unreleased

        let run2 = Ingester::start(exclusive_config(), store.clone(), Arc::clone(&catalog)).await;
        let run2 = run2.unwrap();
        assert_eq!(times(&run2.buffer.lock()), vec![3], "replayed");
        assert_eq!(write(Arc::clone(&run2), "d", 4).await, 3);
        assert_eq!(wal_files(&store).await, vec![log_name(0), log_name(3)]);
        assert_eq!(run2.snapshot().await.unwrap(), 1);
        assert_eq!(
            wal_files(&store).await,
            vec![log_name(3)],
            "the first run's is covered"
        );
        run2.shutdown().await.unwrap();
        assert!(
            wal_files(&store).await.is_empty(),
            "a clean stop leaves no WAL"
        );
    }

    /// A snapshot larger than a slice (a sixteenth of the buffer) registers
    /// and frees it slice by slice, in segment order, up to the last segment
    /// it saw at its start.
    #[tokio::test]
    async fn a_large_snapshot_is_persisted_slice_by_slice() {
        let dir = tempfile::tempdir().unwrap();
        let (store, catalog) = catalog_with_table(dir.path()).await;
        let batch = |time: i64| chunk(1, &[("a", Some(1.0), None, time)]).batch.clone();
        let one = buffer::batch_bytes(&batch(0));
        // Room for a few writes; a slice holds less than one.
        let config = IngesterConfig {
            buffer_bytes: 8 * one,
            ..exclusive_config()
        };
        let ingester = Ingester::start(config, store.clone(), Arc::clone(&catalog));
        let ingester = ingester.await.unwrap();
        for time in 1..=3 {
            let segment = ingester.write(DB, "m", time as u64, batch(time), false);
            assert_eq!(segment.await.unwrap(), time as u64 - 1);
        }
        assert_eq!(ingester.snapshot().await.unwrap(), 3, "one file per slice");
        let mut names: Vec<String> = catalog.files().iter().map(|f| f.path.clone()).collect();
        names.sort();
        let covered: Vec<&str> = names
            .iter()
            .map(|n| &n[n.len() - 34..n.len() - 13])
            .collect();
        assert_eq!(
            covered,
            [
                "-00000000000000000000",
                "-00000000000000000001",
                "-00000000000000000002"
            ]
        );
        assert_eq!(catalog.covered_segment("ing-0"), Some(2));
        assert_eq!(ingester.buffer.lock().bytes(), 0);
        assert_eq!(ingester.snapshot().await.unwrap(), 0, "nothing left");
        let querier = crate::query::Querier::new(catalog, store, Arc::new(Buffered(vec![])));
        let all = sql(&querier, "SELECT count(*) AS n FROM m").await;
        assert!(all.contains("| 3 |"), "{all}");
    }

    /// What a starting ingester tells routers (see `route::HybridClock`): the
    /// highest write sequence its WAL replays or its registered files hold,
    /// read back from the store as after a restart. A write stamped below what
    /// the ingester holds (by a router that had not heard of it) is taken one
    /// above it: it was sent after the others were acknowledged.
    #[tokio::test]
    async fn an_ingester_stamps_above_the_highest_sequence_it_holds_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _catalog) = catalog_with_table(dir.path()).await;
        let batch = |time: i64| chunk(1, &[("a", Some(1.0), None, time)]).batch.clone();
        let start = || async {
            let catalog = Catalog::load(store.clone()).await.unwrap();
            Ingester::start(exclusive_config(), store.clone(), catalog)
                .await
                .unwrap()
        };
        let sequences = |ingester: &Ingester| -> Vec<u64> {
            let chunks = ingester.buffered_chunks(1, "m");
            chunks.iter().map(|c| c.sequence).collect()
        };
        let run1 = start().await;
        assert_eq!(run1.max_sequence(), 0);
        run1.write(DB, "m", 70, batch(1), false).await.unwrap();
        assert_eq!(run1.snapshot().await.unwrap(), 1);
        run1.write(DB, "m", 90, batch(2), false).await.unwrap();
        run1.write(DB, "m", 80, batch(3), false).await.unwrap();
        assert_eq!(
            sequences(&run1),
            [90, 91],
            "80 came after 90 was acknowledged"
        );
        assert_eq!(run1.max_sequence(), 91);
        drop(run1); // as after kill -9: 90 and 91 only in the WAL

        let run2 = start().await;
        assert_eq!(run2.max_sequence(), 91, "from the WAL");
        run2.write(DB, "m", 5, batch(4), false).await.unwrap();
        assert_eq!(sequences(&run2), [90, 91, 92]);
        run2.shutdown().await.unwrap();
        let run3 = start().await;
        assert_eq!(run3.buffered_bytes(), 0, "everything persisted");
        assert_eq!(run3.max_sequence(), 92, "from the catalog");
        run3.write(DB, "m", 5, batch(5), false).await.unwrap();
        assert_eq!(sequences(&run3), [93]);
    }

    /// A WAL slower than its writers (here stalled: the test holds the lock
    /// every commit takes): `no_sync` writes are acknowledged once queued, but
    /// what is queued counts against `buffer_bytes` until it is in the buffer,
    /// so past the limit they are refused as a full buffer like the others.
    #[tokio::test]
    async fn queued_no_sync_writes_count_against_the_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let (store, catalog) = catalog_with_table(dir.path()).await;
        let batch = |time: i64| chunk(1, &[("a", Some(1.0), None, time)]).batch.clone();
        let one = buffer::batch_bytes(&batch(0));
        let config = IngesterConfig {
            buffer_bytes: 4 * one,
            ..exclusive_config()
        };
        let ingester = Ingester::start(config, store, catalog).await.unwrap();
        let stalled = ingester.wal.hold().await;
        let mut outcomes = Vec::new();
        for time in 0..16 {
            let write = ingester.write(DB, "m", time as u64, batch(time), true);
            let outcome = tokio::time::timeout(Duration::from_secs(10), write).await;
            outcomes.push(outcome.expect("a no_sync write is answered without its commit"));
        }
        let refused: Vec<bool> = outcomes
            .iter()
            .map(|o| matches!(o, Err(r) if r.reason == Reason::BufferFull))
            .collect();
        let accepted = refused.iter().filter(|r| !**r).count();
        assert_eq!(accepted, 4, "{outcomes:?}");
        assert!(refused[4..].iter().all(|r| *r), "{outcomes:?}");
        assert!(ingester.pending_bytes.load(Ordering::Acquire) <= 4 * one);

        // The WAL catches up: the queued writes are committed, and what was
        // queued for them is released. (The buffer may already be persisting
        // them: the refusals asked for a snapshot, so it is no measure.)
        drop(stalled);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while ingester.pending_bytes.load(Ordering::Acquire) != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "queued writes not committed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ingester.buffered_bytes() <= 4 * one);
        // A snapshot (ours, or the one a full buffer asked for) makes room.
        ingester.snapshot().await.unwrap();
        assert_eq!(ingester.buffered_bytes(), 0);
        let again = ingester.write(DB, "m", 99, batch(99), true).await;
        assert!(again.is_ok(), "room again after the snapshot: {again:?}");
    }

    /// Rows still buffered for a database that is deleted, and whose name a
    /// new database takes with other column types, never reach the new one:
    /// a replay (a restart) skips them, and the snapshot drops them and
    /// writes the new database's rows alone, under its id.
    #[tokio::test]
    async fn rows_of_a_deleted_database_never_reach_the_one_that_took_its_name() {
        use crate::catalog::{SchemaLimits, TableColumns};
        use crate::schema::{ColumnType, arrow_schema};
        let dir = tempfile::tempdir().unwrap();
        let (store, catalog) = catalog_with_table(dir.path()).await;
        let ingester = Ingester::start(exclusive_config(), store.clone(), Arc::clone(&catalog));
        let ingester = ingester.await.unwrap();
        let old = chunk(1, &[("a", Some(1.0), None, 1)]).batch.clone();
        ingester.write(DB, "m", 1, old, false).await.unwrap();
        catalog.delete_database("db", 1).await.unwrap();
        catalog.create_database_strict("db", None).await.unwrap();
        let columns = vec![("x", ColumnType::String), ("time", ColumnType::Time)];
        let table = TableColumns {
            table: "m",
            columns: columns.clone(),
        };
        let limits = SchemaLimits::UNLIMITED;
        let new_id = catalog
            .ensure_schema("db", &[table], limits)
            .await
            .unwrap()
            .id;
        assert_eq!(new_id, 2);
        let batch = RecordBatch::try_new(
            arrow_schema(columns),
            vec![
                Arc::new(arrow::array::StringArray::from(vec!["new"])),
                Arc::new(arrow::array::TimestampNanosecondArray::from(vec![2])),
            ],
        )
        .unwrap();
        let new = DbRef {
            id: new_id,
            name: "db",
        };
        ingester
            .write(new, "m", 2, batch.clone(), false)
            .await
            .unwrap();
        let buffered = ingester.buffered_chunks(new_id, "m");
        assert_eq!(buffered.len(), 1);
        assert_eq!(buffered[0].batch, batch);

        // What a restart now would replay: the new database's rows only.
        let (replayed, _) = replay("ing-0", &store, &catalog).await.unwrap();
        assert!(replayed.table_chunks(&(1, "m".into())).is_empty());
        let kept = replayed.table_chunks(&(new_id, "m".into()));
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].batch, batch);

        assert_eq!(
            ingester.snapshot().await.unwrap(),
            1,
            "one file: the new rows"
        );
        let files = catalog.files();
        assert_eq!(files.len(), 1);
        assert_eq!((files[0].database, files[0].rows), (new_id, 1));
        assert!(files[0].path.starts_with("2/"), "{}", files[0].path);
        assert_eq!(ingester.buffered_bytes(), 0);
    }
}
