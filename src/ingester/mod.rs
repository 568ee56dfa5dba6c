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

pub mod buffer;
pub mod flight;
pub mod read;
pub mod snapshot;
pub mod wal;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use object_store::path::Path;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::catalog::{Catalog, ParquetFile, table_columns};
use crate::proto::refusal::Reason;
use crate::store::{Put, Store};
use buffer::{Buffer, Chunk, TableKey};
use wal::EncodedEntry;

#[derive(Debug, Clone)]
pub struct IngesterConfig {
    pub id: String,
    /// Most bytes of buffered data; writes beyond it are refused (backpressure).
    pub buffer_bytes: usize,
    /// Extra time the WAL task waits to gather writes into one segment.
    pub wal_flush_interval: Duration,
    /// How often buffered data is written to Parquet.
    pub snapshot_interval: Duration,
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
}

#[derive(Debug, thiserror::Error)]
pub enum IngesterError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error(
        "buffered data for table \"{table}\" of database \"{database}\", which the catalog lacks"
    )]
    UnknownTable { database: String, table: String },
    #[error("snapshot task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

struct WalWrite {
    entry: EncodedEntry,
    batch: RecordBatch,
    done: oneshot::Sender<Result<u64, Refused>>,
}

pub struct Ingester {
    config: IngesterConfig,
    epoch: u64,
    store: Store,
    catalog: Arc<Catalog>,
    buffer: Mutex<Buffer>,
    /// Bytes accepted but not yet in the buffer (waiting for their WAL commit).
    pending_bytes: AtomicUsize,
    wal_tx: Mutex<Option<mpsc::Sender<WalWrite>>>,
    wal_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    snapshot_lock: tokio::sync::Mutex<()>,
    snapshot_wanted: Notify,
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
        let (buffer, next_segment) = replay(&config.id, &store, &catalog).await?;
        let (tx, rx) = mpsc::channel(4096);
        let ingester = Arc::new(Self {
            epoch: 0,
            store,
            catalog,
            buffer: Mutex::new(buffer),
            pending_bytes: AtomicUsize::new(0),
            wal_tx: Mutex::new(Some(tx)),
            wal_task: Mutex::new(None),
            snapshot_lock: tokio::sync::Mutex::new(()),
            snapshot_wanted: Notify::new(),
            stopping: AtomicBool::new(false),
            config,
        });
        let wal = tokio::spawn(Arc::clone(&ingester).wal_loop(rx, next_segment));
        *ingester.wal_task.lock() = Some(wal);
        tokio::spawn(Arc::clone(&ingester).snapshot_loop());
        Ok(ingester)
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buffer.lock().bytes()
    }

    /// Makes one batch durable; returns the WAL segment that holds it. With
    /// `no_sync` it returns once the batch is queued for the WAL (segment 0): a
    /// crash before the commit loses it, which is what the client asked for.
    pub async fn write(
        &self,
        database: &str,
        table: &str,
        sequence: u64,
        batch: RecordBatch,
        no_sync: bool,
    ) -> Result<u64, Refused> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(Refused::new(
                Reason::ShuttingDown,
                "ingester is shutting down",
            ));
        }
        let size = buffer::batch_bytes(&batch);
        let used =
            self.buffer.lock().bytes() + self.pending_bytes.fetch_add(size, Ordering::AcqRel);
        let _pending = PendingGuard {
            counter: &self.pending_bytes,
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
        let entry = EncodedEntry {
            database: database.into(),
            table: table.into(),
            sequence,
            ipc,
        };
        let (done, rx) = oneshot::channel();
        let tx = self.wal_tx.lock().clone();
        let stopped = || Refused::new(Reason::ShuttingDown, "ingester is shutting down");
        tx.ok_or_else(stopped)?
            .send(WalWrite { entry, batch, done })
            .await
            .map_err(|_| stopped())?;
        if no_sync {
            return Ok(0);
        }
        rx.await.map_err(|_| stopped())?
    }

    /// Group commit: each pass takes every write queued while the previous put ran.
    async fn wal_loop(self: Arc<Self>, mut rx: mpsc::Receiver<WalWrite>, mut segment: u64) {
        const MAX_SEGMENT_BYTES: usize = 64 << 20;
        while let Some(first) = rx.recv().await {
            let mut writes = vec![first];
            if !self.config.wal_flush_interval.is_zero() {
                tokio::time::sleep(self.config.wal_flush_interval).await;
            }
            let mut bytes = writes[0].entry.ipc.len();
            while bytes < MAX_SEGMENT_BYTES {
                match rx.try_recv() {
                    Ok(w) => {
                        bytes += w.entry.ipc.len();
                        writes.push(w);
                    }
                    Err(_) => break,
                }
            }
            let entries: Vec<EncodedEntry> = writes.iter().map(|w| w.entry.clone()).collect();
            let body = wal::encode_segment(&self.config.id, self.epoch, segment, &entries);
            let path = wal::segment_path(&self.config.id, self.epoch, segment);
            let result = self.store.put(&path, body, Put::Create).await;
            let outcome = match result {
                Ok(()) => {
                    let chunks: Vec<(TableKey, Chunk)> = writes
                        .iter()
                        .map(|w| {
                            let key = (Arc::clone(&w.entry.database), Arc::clone(&w.entry.table));
                            (
                                key,
                                Chunk {
                                    segment,
                                    sequence: w.entry.sequence,
                                    batch: w.batch.clone(),
                                },
                            )
                        })
                        .collect();
                    self.buffer.lock().insert_segment(segment, chunks);
                    Ok(segment)
                }
                Err(e) => {
                    tracing::error!(error = %e, %path, "WAL commit failed");
                    Err(Refused::new(
                        Reason::Storage,
                        format!("WAL commit failed: {e}"),
                    ))
                }
            };
            segment += 1;
            if self.buffer.lock().bytes() > self.config.buffer_bytes / 2 {
                self.snapshot_wanted.notify_one();
            }
            for w in writes {
                let _ = w.done.send(outcome.clone());
            }
        }
    }

    async fn snapshot_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.snapshot_interval);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.snapshot_wanted.notified() => {}
            }
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            if let Err(e) = self.snapshot().await {
                tracing::error!(error = %e, "snapshot failed; will retry");
            }
        }
    }

    /// Writes everything committed so far to Parquet, registers it, then drops it
    /// from the buffer and deletes the WAL segments it covers.
    pub async fn snapshot(&self) -> Result<usize, IngesterError> {
        let _one_at_a_time = self.snapshot_lock.lock().await;
        let (covered, tables) = {
            let buffer = self.buffer.lock();
            match buffer.last_segment() {
                Some(s) if !buffer.is_empty() => (s, buffer.chunks_up_to(s)),
                _ => return Ok(0),
            }
        };
        let started = std::time::Instant::now();
        let mut state = self.catalog.state();
        let mut files = Vec::new();
        for ((db_name, table_name), chunks) in tables {
            if state
                .database(&db_name)
                .and_then(|d| d.table(&table_name))
                .is_none()
            {
                state = self.catalog.refresh().await?;
            }
            // Writes reach an ingester only after the edge committed their schema,
            // so this means a broken catalog: keep everything and retry later.
            let unknown = || IngesterError::UnknownTable {
                database: db_name.to_string(),
                table: table_name.to_string(),
            };
            let db = state.database(&db_name).cloned().ok_or_else(unknown)?;
            let table = db.table(&table_name).cloned().ok_or_else(unknown)?;
            let day_files = tokio::task::spawn_blocking(move || {
                let schema = snapshot::target_schema(table_columns(&table), &chunks);
                let merged = snapshot::merge(&schema, &chunks)?;
                snapshot::day_files(&merged).map(|f| (table.id, f))
            })
            .await??;
            let (table_id, day_files) = day_files;
            for f in day_files {
                // Named by what it covers, so a snapshot redone after a crash
                // overwrites its own earlier attempt instead of adding a copy.
                let path = format!(
                    "{}/{}/{}/{}-{:020}.parquet",
                    db.id, table_id, f.partition, self.config.id, covered
                );
                self.store
                    .put(&Path::from(path.as_str()), f.bytes.clone(), Put::Overwrite)
                    .await?;
                files.push(ParquetFile {
                    path,
                    database: db.id,
                    table: table_id,
                    partition: f.partition,
                    min_time: f.min_time,
                    max_time: f.max_time,
                    rows: f.rows,
                    size_bytes: f.bytes.len() as u64,
                });
            }
        }
        let n = files.len();
        self.catalog
            .register_files(&self.config.id, covered, files)
            .await?;
        self.buffer.lock().remove_up_to(covered);
        for meta in self.store.list(&wal::prefix(&self.config.id)).await? {
            if wal::segment_number(&meta.location).is_some_and(|s| s <= covered) {
                self.store.delete(&meta.location).await?;
            }
        }
        tracing::info!(
            files = n,
            covered_segment = covered,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot"
        );
        Ok(n)
    }

    /// Stops taking writes, commits what is queued, and snapshots everything.
    pub async fn shutdown(&self) -> Result<(), IngesterError> {
        self.stopping.store(true, Ordering::Release);
        // Closing the channel ends the WAL task once the queued writes commit.
        drop(self.wal_tx.lock().take());
        let task = self.wal_task.lock().take();
        if let Some(task) = task {
            task.await?;
        }
        self.snapshot().await?;
        Ok(())
    }

    /// The buffered (not yet persisted) chunks of one table, for a querier. A
    /// snapshot drops chunks only after registering their files, so a querier
    /// that asks here first and reads the catalog afterwards misses nothing.
    pub fn buffered_chunks(&self, database: &str, table: &str) -> Vec<Arc<Chunk>> {
        self.buffer
            .lock()
            .table_chunks(&(Arc::from(database), Arc::from(table)))
    }
}

struct PendingGuard<'a> {
    counter: &'a AtomicUsize,
    size: usize,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.size, Ordering::AcqRel);
    }
}

/// Rebuilds the buffer from the WAL segments no snapshot covers, deleting covered
/// ones left by a crash between registration and deletion. Returns the buffer and
/// the next segment number.
async fn replay(
    id: &str,
    store: &Store,
    catalog: &Catalog,
) -> Result<(Buffer, u64), IngesterError> {
    let covered = catalog.covered_segment(id);
    let mut buffer = Buffer::default();
    let mut next = covered.map_or(0, |c| c + 1);
    let mut segments: Vec<(u64, Path)> = store
        .list(&wal::prefix(id))
        .await?
        .into_iter()
        .filter_map(|m| wal::segment_number(&m.location).map(|s| (s, m.location)))
        .collect();
    segments.sort();
    let mut replayed = 0;
    for (segment, path) in segments {
        if covered.is_some_and(|c| segment <= c) {
            store.delete(&path).await?;
            continue;
        }
        let bytes = store.get(&path).await?;
        let (_, entries) = wal::decode_segment(&path, bytes)?;
        let chunks = entries.into_iter().flat_map(|e| {
            let key: TableKey = (e.database.into(), e.table.into());
            let sequence = e.sequence;
            e.batches.into_iter().map(move |batch| {
                (
                    key.clone(),
                    Chunk {
                        segment,
                        sequence,
                        batch,
                    },
                )
            })
        });
        buffer.insert_segment(segment, chunks);
        next = next.max(segment + 1);
        replayed += 1;
    }
    if replayed > 0 {
        tracing::info!(segments = replayed, bytes = buffer.bytes(), "replayed WAL");
    }
    Ok((buffer, next))
}
