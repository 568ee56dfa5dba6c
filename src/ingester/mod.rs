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
//! ([`lease`]). An ingester claims its own prefix at start (waiting for a
//! previous holder to release it or expire), renews it every ttl/3, and takes
//! over any other prefix whose lease expired: it fences the prefix, replays
//! the uncovered WAL into Parquet, registers the files in that prefix's files
//! log and releases the lease. An ingester that finds itself fenced (a commit
//! hits the fence, or a heartbeat finds a newer epoch) refuses writes until it
//! has claimed its prefix again.

pub mod buffer;
pub mod flight;
pub mod lease;
pub mod read;
pub mod snapshot;
pub mod wal;
pub mod wal_log;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use object_store::path::Path;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::catalog::{Catalog, CatalogState, DbId, DbRef, ParquetFile, table_columns};
use crate::metrics::metrics;
use crate::proto::refusal::Reason;
use crate::store::{Put, Store, StoreError};
use buffer::{Buffer, Chunk, TableKey};
use lease::{Claimed, Leases};
use wal::EncodedEntry;
use wal_log::LogWriter;

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
}

#[derive(Debug, thiserror::Error)]
pub enum IngesterError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    #[error(transparent)]
    Log(#[from] wal_log::LogError),
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
    Lease(#[from] lease::LeaseError),
    #[error("WAL segment {0} vanished before it was replayed and no snapshot covers it")]
    SegmentLost(String),
}

struct WalWrite {
    entry: EncodedEntry,
    batch: RecordBatch,
    done: oneshot::Sender<Result<u64, Refused>>,
    /// Its bytes in `pending_bytes`, released once the commit put them in the
    /// buffer (or failed): a `no_sync` write is answered while queued, and its
    /// bytes must count against the limit until then.
    _pending: PendingGuard,
}

/// Where the next WAL commit goes. Held across each commit, and across a
/// re-claim of the lease, so the two never interleave.
#[derive(Debug)]
struct WalPosition {
    epoch: u64,
    next: u64,
    /// Set when segments go to a local log file rather than an object each
    /// (see [`wal_log`]).
    log: Option<LogWriter>,
}

pub struct Ingester {
    config: IngesterConfig,
    leases: Leases,
    wal_position: tokio::sync::Mutex<WalPosition>,
    /// The epoch of the lease held, for heartbeats and release.
    epoch: AtomicU64,
    /// Set when the lease was lost: writes are refused until it is claimed again.
    fenced: AtomicBool,
    store: Store,
    catalog: Arc<Catalog>,
    buffer: Mutex<Buffer>,
    /// Bytes accepted but not yet in the buffer (waiting for their WAL commit).
    pending_bytes: Arc<AtomicUsize>,
    /// The highest write sequence this ingester holds or has persisted (and
    /// the catalog's, at start). Every ack carries it, so routers stamp later
    /// writes above it even when their clocks are behind (see `route`).
    max_sequence: AtomicU64,
    wal_tx: Mutex<Option<mpsc::Sender<WalWrite>>>,
    wal_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    snapshot_lock: tokio::sync::Mutex<()>,
    snapshot_wanted: Notify,
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
        let leases = Leases::new(store.clone(), config.id.clone(), config.lease_ttl);
        let (position, buffer) = claim_own(&config, &leases, &store, &catalog).await?;
        let epoch = position.epoch;
        let max_sequence = catalog.max_sequence().max(max_sequence_of(&buffer));
        let (tx, rx) = mpsc::channel(4096);
        let ingester = Arc::new(Self {
            leases,
            wal_position: tokio::sync::Mutex::new(position),
            epoch: AtomicU64::new(epoch),
            fenced: AtomicBool::new(false),
            store,
            catalog,
            buffer: Mutex::new(buffer),
            pending_bytes: Arc::default(),
            max_sequence: AtomicU64::new(max_sequence),
            wal_tx: Mutex::new(Some(tx)),
            wal_task: Mutex::new(None),
            snapshot_lock: tokio::sync::Mutex::new(()),
            snapshot_wanted: Notify::new(),
            takeover_lock: tokio::sync::Mutex::new(()),
            stopping: AtomicBool::new(false),
            config,
        });
        let wal = tokio::spawn(Arc::clone(&ingester).wal_loop(rx));
        *ingester.wal_task.lock() = Some(wal);
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
        if self.stopping.load(Ordering::Acquire) {
            return Err(Refused::new(
                Reason::ShuttingDown,
                "ingester is shutting down",
            ));
        }
        if self.fenced.load(Ordering::Acquire) {
            return Err(self.fenced_refusal());
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
        let tx = self.wal_tx.lock().clone();
        let stopped = || Refused::new(Reason::ShuttingDown, "ingester is shutting down");
        tx.ok_or_else(stopped)?
            .send(WalWrite {
                entry,
                batch,
                done,
                _pending: pending,
            })
            .await
            .map_err(|_| stopped())?;
        if no_sync {
            return Ok(0);
        }
        rx.await.map_err(|_| stopped())?
    }

    fn fenced_refusal(&self) -> Refused {
        Refused::new(
            Reason::Fenced,
            format!(
                "ingester {} lost its WAL lease and is claiming it again",
                self.config.id
            ),
        )
    }

    /// Group commit: each pass takes every write queued while the previous put ran.
    async fn wal_loop(self: Arc<Self>, mut rx: mpsc::Receiver<WalWrite>) {
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
            let outcome = self.commit(&writes).await;
            if self.buffer.lock().bytes() > self.config.buffer_bytes / 2 {
                self.snapshot_wanted.notify_one();
            }
            for WalWrite { done, _pending, .. } in writes {
                drop(_pending); // in the buffer now, or refused
                let _ = done.send(outcome.clone());
            }
        }
    }

    /// Writes one segment holding `writes` at the next number, then adds them to
    /// the buffer. Numbers are never skipped: after a failed put the next commit
    /// tries the same number again, so a fence placed after our last segment is
    /// always the next number we try.
    async fn commit(&self, writes: &[WalWrite]) -> Result<u64, Refused> {
        let mut position = self.wal_position.lock().await;
        if self.fenced.load(Ordering::Acquire) {
            return Err(self.fenced_refusal());
        }
        let entries: Vec<EncodedEntry> = writes.iter().map(|w| w.entry.clone()).collect();
        loop {
            let (epoch, segment) = (position.epoch, position.next);
            let body = wal::encode_segment(&self.config.id, epoch, segment, &entries);
            let path = wal::segment_path(&self.config.id, segment);
            let (size, started) = (body.len(), std::time::Instant::now());
            let written = match &position.log {
                Some(log) => log.append(segment, body).await.map_err(IngesterError::from),
                None => (self.store.put(&path, body, Put::Create).await).map_err(Into::into),
            };
            match written {
                Ok(()) => {
                    let id = [self.config.id.as_str()];
                    let m = metrics();
                    let took = started.elapsed().as_secs_f64();
                    m.wal_flush_duration.with_label_values(&id).observe(took);
                    m.wal_flush_bytes
                        .with_label_values(&id)
                        .observe(size as f64);
                    // Built before the lock is taken: a chunk measures its size.
                    let chunks: Vec<_> = writes
                        .iter()
                        .map(|w| {
                            let key = (w.entry.database_id, Arc::clone(&w.entry.table));
                            let chunk = Chunk::new(segment, w.entry.sequence, w.batch.clone());
                            (key, chunk)
                        })
                        .collect();
                    self.buffer.lock().insert_segment(segment, chunks);
                    self.publish_buffer_bytes();
                    position.next += 1;
                    return Ok(segment);
                }
                Err(IngesterError::Store(StoreError::AlreadyExists(_))) => {
                    match self.adopt(&path, epoch).await {
                        // Our own earlier put, reported failed but done: keep its
                        // data and try the next number.
                        Ok(true) => position.next += 1,
                        Ok(false) => {
                            tracing::warn!(%path, "WAL commit hit a fence: lease lost");
                            self.fenced.store(true, Ordering::Release);
                            return Err(self.fenced_refusal());
                        }
                        Err(e) => {
                            return Err(Refused::new(
                                Reason::Storage,
                                format!("WAL commit failed: {e}"),
                            ));
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, %path, "WAL commit failed");
                    return Err(Refused::new(
                        Reason::Storage,
                        format!("WAL commit failed: {e}"),
                    ));
                }
            }
        }
    }

    /// A segment found where we meant to write: if we wrote it in this epoch (a
    /// put whose success was not reported), its data goes into the buffer and
    /// `true` is returned; anything else there is a fence.
    async fn adopt(&self, path: &Path, epoch: u64) -> Result<bool, IngesterError> {
        let bytes = self.store.get(path).await?;
        let (segment, entries) = wal::decode_segment(path, bytes)?;
        if segment.ingester_id != self.config.id || segment.epoch != epoch {
            return Ok(false);
        }
        let number = segment.segment;
        let state = self.catalog.state();
        let chunks = replayed_chunks(number, entries, &state)?;
        self.buffer.lock().insert_segment(number, chunks);
        Ok(true)
    }

    /// Every ttl/3, the pace of the lease's renewals and checks.
    fn lease_ticks(&self) -> tokio::time::Interval {
        let mut tick = tokio::time::interval(self.config.lease_ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    }

    /// Renews the lease every ttl/3. A task of its own: a takeover or a
    /// reclaim can take longer than the ttl, and must not let the lease lapse.
    async fn heartbeat_loop(self: Arc<Self>) {
        let mut tick = self.lease_ticks();
        loop {
            tick.tick().await;
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            if self.fenced.load(Ordering::Acquire) {
                continue; // reclaim() renews its new claim itself
            }
            let epoch = self.epoch.load(Ordering::Acquire);
            match self.leases.beat(&self.config.id, epoch).await {
                Ok(true) => {}
                // A reclaim may have moved to a newer epoch of ours meanwhile.
                Ok(false) if self.epoch.load(Ordering::Acquire) != epoch => {}
                Ok(false) => {
                    tracing::warn!(epoch, "WAL lease taken by another ingester: fenced");
                    self.fenced.store(true, Ordering::Release);
                }
                Err(e) => tracing::warn!(error = %e, "WAL lease heartbeat failed"),
            }
        }
    }

    /// Claims the lease again after losing it, and takes over the WAL of
    /// ingesters whose lease expired.
    async fn lease_loop(self: Arc<Self>) {
        let mut tick = self.lease_ticks();
        loop {
            tick.tick().await;
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            if self.fenced.load(Ordering::Acquire) {
                if let Err(e) = self.reclaim().await {
                    tracing::warn!(error = %e, "claiming the WAL lease again failed; will retry");
                }
                continue;
            }
            if let Err(e) = self.take_over_expired().await {
                tracing::warn!(error = %e, "taking over an expired WAL lease failed; will retry");
            }
        }
    }

    /// After a fence: waits for the lease, then starts a new epoch from what the
    /// WAL and the catalog hold. Whatever the buffer had was committed before
    /// the fence, so the ingester that took over has it.
    async fn reclaim(&self) -> Result<(), IngesterError> {
        let _no_snapshot = self.snapshot_lock.lock().await;
        let mut position = self.wal_position.lock().await;
        let (claimed, buffer) =
            claim_own(&self.config, &self.leases, &self.store, &self.catalog).await?;
        let (epoch, next) = (claimed.epoch, claimed.next);
        *position = claimed;
        self.observe_sequence(max_sequence_of(&buffer));
        *self.buffer.lock() = buffer;
        self.epoch.store(epoch, Ordering::Release);
        self.fenced.store(false, Ordering::Release);
        tracing::info!(epoch, next_segment = next, "WAL lease claimed again");
        Ok(())
    }

    async fn take_over_expired(&self) -> Result<(), IngesterError> {
        for prefix in self.leases.prefixes().await? {
            // Checked under the lock: shutdown sets `stopping`, then takes it.
            let _running = self.takeover_lock.lock().await;
            if self.stopping.load(Ordering::Acquire) {
                return Ok(());
            }
            if prefix == self.config.id {
                continue;
            }
            let Some(view) = self.leases.view(&prefix).await? else {
                continue;
            };
            if view.released || !self.leases.is_free(&view).await? {
                continue;
            }
            let Some(claimed) = self.leases.try_claim(&prefix).await? else {
                continue;
            };
            tracing::warn!(
                prefix,
                previous_owner = view.owner,
                epoch = claimed.epoch,
                "WAL lease expired: taking over"
            );
            let heartbeat = self.leases.keep_alive(&prefix, claimed.epoch);
            let done = self.take_over(&prefix, claimed).await;
            drop(heartbeat);
            let files = done?;
            self.leases.release(&prefix, claimed.epoch).await?;
            tracing::info!(prefix, files, "took over WAL and released its lease");
        }
        Ok(())
    }

    /// Fences the dead holder of `prefix`, and moves its uncovered WAL into Parquet
    /// registered in that prefix's files log.
    async fn take_over(&self, prefix: &str, claimed: Claimed) -> Result<usize, IngesterError> {
        self.catalog.refresh_files_of(prefix).await?;
        let covered = self.catalog.covered_segment(prefix);
        let fence = match claimed.unreleased {
            Some(_) => Some(
                lease::fence(&self.store, prefix, claimed.epoch, &self.config.id, covered).await?,
            ),
            None => None,
        };
        let (buffer, _) = replay(prefix, &self.store, &self.catalog).await?;
        let Some(last) = buffer.last_segment().max(fence) else {
            return Ok(0);
        };
        let max_sequence = max_sequence_of(&buffer);
        self.observe_sequence(max_sequence);
        let files = persist(
            &self.store,
            &self.catalog,
            (prefix, claimed.epoch),
            last,
            buffer.chunks_up_to(last),
        )
        .await?;
        let n = files.len();
        (self.catalog)
            .register_files(prefix, last, max_sequence, files)
            .await?;
        // Its holder is gone: its newest log file is written no more.
        delete_covered(&self.store, prefix, last, false).await?;
        Ok(n)
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
            if self.fenced.load(Ordering::Acquire) {
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
        let epoch = self.epoch.load(Ordering::Acquire);
        let writer = (self.config.id.as_str(), epoch);
        let files = persist(&self.store, &self.catalog, writer, covered, tables).await?;
        let n = files.len();
        self.catalog
            .register_files(&self.config.id, covered, max_sequence, files)
            .await?;
        let persisted = self.buffer.lock().remove_up_to(covered);
        crate::background::run(move || drop(persisted)).await;
        self.publish_buffer_bytes();
        metrics()
            .snapshot_files
            .with_label_values(&[self.config.id.as_str()])
            .inc_by(n as u64);
        // Our newest log file is the one being appended to.
        delete_covered(&self.store, &self.config.id, covered, true).await?;
        Ok(n)
    }

    fn count_snapshot(&self, outcome: &str) {
        metrics()
            .snapshots
            .with_label_values(&[self.config.id.as_str(), outcome])
            .inc();
    }

    fn publish_buffer_bytes(&self) {
        let bytes = self.buffer.lock().bytes();
        metrics()
            .buffer_bytes
            .with_label_values(&[self.config.id.as_str()])
            .set(bytes as i64);
    }

    /// Stops taking writes, commits what is queued, snapshots everything, and
    /// releases the lease so a restart or another ingester need not wait for it.
    /// A takeover under way is finished first: cut short, it would leave that
    /// prefix's WAL unpersisted (durable, but in Parquet only once some
    /// ingester starts again) and its lease held until it expires.
    pub async fn shutdown(&self) -> Result<(), IngesterError> {
        self.stopping.store(true, Ordering::Release);
        drop(self.takeover_lock.lock().await);
        // Closing the channel ends the WAL task once the queued writes commit.
        drop(self.wal_tx.lock().take());
        let task = self.wal_task.lock().take();
        if let Some(task) = task {
            task.await?;
        }
        self.snapshot().await?;
        // Nothing appends any more: the newest log file goes too once covered.
        if let Some(covered) = self.catalog.covered_segment(&self.config.id) {
            delete_covered(&self.store, &self.config.id, covered, false).await?;
        }
        let _no_reclaim = self.wal_position.lock().await;
        if !self.fenced.load(Ordering::Acquire) {
            let epoch = self.epoch.load(Ordering::Acquire);
            self.leases.release(&self.config.id, epoch).await?;
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

struct PendingGuard {
    counter: Arc<AtomicUsize>,
    size: usize,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.size, Ordering::AcqRel);
    }
}

/// Claims this ingester's own WAL prefix (waiting for a previous holder unless
/// `exclusive`), fences the epoch it ended without a release, and replays what
/// no snapshot covers. Returns where commits go next, and the buffer.
async fn claim_own(
    config: &IngesterConfig,
    leases: &Leases,
    store: &Store,
    catalog: &Catalog,
) -> Result<(WalPosition, Buffer), IngesterError> {
    let id = config.id.as_str();
    let claimed = if config.exclusive {
        loop {
            if let Some(c) = leases.claim_exclusive(id).await? {
                break c;
            }
        }
    } else {
        leases.acquire(id).await?
    };
    // The replay can outlast the ttl; the caller's heartbeats start after it.
    let _renewed = leases.keep_alive(id, claimed.epoch);
    catalog.refresh_files_of(id).await?;
    // An exclusive claimant knows the previous holder is dead: nothing to fence.
    if let Some(old) = claimed.unreleased.filter(|_| !config.exclusive) {
        let covered = catalog.covered_segment(id);
        let at = lease::fence(store, id, claimed.epoch, id, covered).await?;
        tracing::info!(
            old_epoch = old,
            fence_segment = at,
            "fenced the previous run's WAL"
        );
    }
    leases.prune(id, claimed.epoch).await?;
    let (buffer, next) = replay(id, store, catalog).await?;
    // Appending needs a file of our own, which only the data directory's lock
    // guarantees (see `wal_log`).
    let log = match (config.exclusive, store.local_files()) {
        (true, Some(files)) => Some(LogWriter::new(files, id)),
        _ => None,
    };
    tracing::info!(
        epoch = claimed.epoch,
        next_segment = next,
        log = log.is_some(),
        "WAL lease claimed"
    );
    let position = WalPosition {
        epoch: claimed.epoch,
        next,
        log,
    };
    Ok((position, buffer))
}

/// Most buffered bytes a snapshot persists and registers in one step.
const SNAPSHOT_SLICE_BYTES: usize = 64 << 20;

/// Most buffered bytes merged at once by a snapshot. Merging copies the data
/// about three times (concatenated, sort keys, sorted), so this, not the buffer
/// size, bounds the snapshot's extra memory.
const SNAPSHOT_GROUP_BYTES: usize = 32 << 20;

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
async fn persist(
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

/// Deletes the WAL segments of `prefix` that registered files cover, in one
/// batch (a snapshot covers thousands), and the log files all of whose
/// segments they cover. With `keep_newest_log`, the newest log file stays
/// whatever it holds: its writer may append to it still.
async fn delete_covered(
    store: &Store,
    prefix: &str,
    covered: u64,
    keep_newest_log: bool,
) -> Result<(), IngesterError> {
    let (mut doomed, mut doomed_logs) = (Vec::new(), Vec::new());
    let mut logs = Vec::new();
    for meta in store.list(&wal::prefix(prefix)).await? {
        if let Some(first) = wal_log::first_segment(&meta.location) {
            logs.push((first, meta));
            continue;
        }
        let is_covered = wal::segment_number(&meta.location).is_some_and(|s| s <= covered);
        if is_covered && !is_fence(store, &meta).await? {
            doomed.push(meta.location);
        }
    }
    logs.sort_by_key(|(first, _)| *first);
    for (i, (_, meta)) in logs.iter().enumerate() {
        // A file's segments all come before the next file's first.
        let is_covered = match logs.get(i + 1) {
            Some((next, _)) => *next <= covered + 1,
            None if keep_newest_log => false,
            None => wal_log::last_segment(store, &meta.location)
                .await?
                .is_none_or(|s| s <= covered),
        };
        if is_covered {
            doomed_logs.push(meta.location.clone());
        }
    }
    store.delete_many(doomed).await?;
    // Nothing reads a covered log file: it can go a few MiB at a time.
    store.delete_unread(doomed_logs).await?;
    Ok(())
}

/// Deletes a covered segment, but never a fence.
async fn delete_unless_fence(
    store: &Store,
    meta: &object_store::ObjectMeta,
) -> Result<(), IngesterError> {
    if !is_fence(store, meta).await? {
        store.delete(&meta.location).await?;
    }
    Ok(())
}

/// A fence is never deleted: a paused old holder may wake up at any time and
/// try that number, and must find it taken.
async fn is_fence(store: &Store, meta: &object_store::ObjectMeta) -> Result<bool, IngesterError> {
    if !wal::may_be_fence(meta.size) {
        return Ok(false);
    }
    let bytes = store.get(&meta.location).await?;
    Ok(wal::decode_segment(&meta.location, bytes)?.1.is_empty())
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

/// The chunks of a replayed segment, by database id; entries of a deleted
/// database are left out (their rows went with it).
fn replayed_chunks(
    segment: u64,
    entries: Vec<wal::ReplayedEntry>,
    state: &CatalogState,
) -> Result<Vec<(TableKey, Chunk)>, IngesterError> {
    let mut kept = Vec::with_capacity(entries.len());
    for e in entries {
        match entry_database(state, &e)? {
            Some(id) => kept.push((id, e)),
            None => tracing::info!(
                database = %e.database,
                database_id = e.database_id,
                table = %e.table,
                segment,
                "WAL entry of a deleted database skipped"
            ),
        }
    }
    let chunks = kept.into_iter().flat_map(move |(id, e)| {
        let key: TableKey = (id, e.table.into());
        let sequence = e.sequence;
        e.batches
            .into_iter()
            .map(move |batch| (key.clone(), Chunk::new(segment, sequence, batch)))
    });
    Ok(chunks.collect())
}

/// The database a WAL entry belongs to, `None` if it was deleted. An entry of
/// a release before ids were written names its database only: it belongs to
/// the live database of that name (what that release itself did; a name
/// deleted and created again before the upgrade cannot be told apart).
fn entry_database(
    state: &CatalogState,
    entry: &wal::ReplayedEntry,
) -> Result<Option<DbId>, IngesterError> {
    let id = match (entry.database_id, state.database(&entry.database)) {
        (0, Some(db)) => db.id,
        (0, None) if state.was_deleted(&entry.database) => return Ok(None),
        (0, None) => return Err(IngesterError::UnknownDatabase(entry.database.clone())),
        (id, _) => id,
    };
    Ok((!state.is_dropped(id)).then_some(id))
}

/// Rebuilds a buffer from the WAL segments of `prefix` (every epoch) that no
/// snapshot covers, deleting covered ones left by a crash between registration
/// and deletion. Returns the buffer and the next segment number.
async fn replay(
    prefix: &str,
    store: &Store,
    catalog: &Catalog,
) -> Result<(Buffer, u64), IngesterError> {
    let mut covered = catalog.covered_segment(prefix);
    // Fresh, to tell which entries belong to databases deleted meanwhile.
    let state = catalog.refresh().await?;
    let mut buffer = Buffer::default();
    let mut next = covered.map_or(0, |c| c + 1);
    let mut segments = Vec::new();
    let mut logs = Vec::new();
    for meta in store.list(&wal::prefix(prefix)).await? {
        if let Some(s) = wal::segment_number(&meta.location) {
            segments.push((s, meta));
        } else if wal_log::first_segment(&meta.location).is_some() {
            logs.push(meta.location);
        }
    }
    segments.sort_by_key(|(s, _)| *s);
    let mut replayed = 0;
    // Log files are deleted only once all they hold is covered (a later
    // snapshot does it), so one that vanished since the listing held nothing
    // to replay.
    for path in logs {
        let bytes = match store.get(&path).await {
            Err(crate::store::StoreError::NotFound(_)) => continue,
            bytes => bytes?,
        };
        for record in wal_log::read(&path, &bytes)? {
            next = next.max(record.segment + 1);
            if covered.is_some_and(|c| record.segment <= c) {
                continue;
            }
            let (_, entries) = wal::decode_segment(&path, record.body)?;
            let chunks = replayed_chunks(record.segment, entries, &state)?;
            buffer.insert_segment(record.segment, chunks);
            replayed += 1;
        }
    }
    for (segment, meta) in segments {
        next = next.max(segment + 1);
        if covered.is_some_and(|c| segment <= c) {
            delete_unless_fence(store, &meta).await?;
            continue;
        }
        let path = meta.location;
        let bytes = match store.get(&path).await {
            Ok(bytes) => bytes,
            // Deleted since the listing: only a snapshot that covers it may do
            // that (a fenced old holder finishing one), so it must be covered now.
            Err(crate::store::StoreError::NotFound(_)) => {
                catalog.refresh_files_of(prefix).await?;
                covered = catalog.covered_segment(prefix);
                if covered.is_some_and(|c| segment <= c) {
                    continue;
                }
                return Err(IngesterError::SegmentLost(path.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let (_, entries) = wal::decode_segment(&path, bytes)?;
        buffer.insert_segment(segment, replayed_chunks(segment, entries, &state)?);
        replayed += 1;
    }
    if covered.is_some() {
        // A covered segment may have been replayed before the refresh found it so.
        drop(buffer.remove_up_to(covered.unwrap_or_default()));
    }
    if replayed > 0 {
        tracing::info!(
            prefix,
            segments = replayed,
            bytes = buffer.bytes(),
            "replayed WAL"
        );
    }
    Ok((buffer, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Buffered, catalog_with_table, chunk, sql};

    /// The database `catalog_with_table` makes.
    const DB: DbRef<'static> = DbRef { id: 1, name: "db" };

    fn rows_in(bytes: bytes::Bytes) -> usize {
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum()
    }

    /// A WAL written by an earlier build (a directory per epoch) replays.
    #[tokio::test]
    async fn segments_of_the_per_epoch_layout_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (store, catalog) = catalog_with_table(dir.path()).await;
        let batch = chunk(1, &[("a", Some(1.0), None, 1)]).batch.clone();
        // Written before entries carried ids: bound by name on replay.
        let entry = wal::EncodedEntry {
            database_id: 0,
            database: "db".into(),
            table: "m".into(),
            sequence: 1,
            ipc: wal::encode_batch(&batch).unwrap(),
        };
        let old = Path::from(format!("wal/ing-0/{:020}/{:020}", 3, 12));
        let body = wal::encode_segment("ing-0", 3, 12, &[entry]);
        store.put(&old, body, Put::Create).await.unwrap();
        let (buffer, next) = replay("ing-0", &store, &catalog).await.unwrap();
        assert_eq!(next, 13);
        assert_eq!(buffer.last_segment(), Some(12));
        let key: TableKey = (1, "m".into());
        assert_eq!(buffer.table_chunks(&key)[0].batch, batch);
    }

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

    /// The WAL objects of `ing-0`, by file name.
    async fn wal_files(store: &Store) -> Vec<String> {
        let listed = store.list(&wal::prefix("ing-0")).await.unwrap();
        let names = listed
            .iter()
            .map(|m| m.location.filename().unwrap().to_string());
        names.collect()
    }

    fn log_name(first: u64) -> String {
        wal_log::file_path("ing-0", first)
            .filename()
            .unwrap()
            .to_string()
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
        let stalled = ingester.wal_position.lock().await;
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

    /// Log files go once every segment in them is covered: a file's segments
    /// end where the next file's begin, and the newest is read to its end
    /// unless its writer may still append to it. A fence goes after them.
    #[tokio::test]
    async fn covered_log_files_are_deleted_and_fenced_after() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _catalog) = catalog_with_table(dir.path()).await;
        for segments in [&[1u64, 2][..], &[3, 4], &[5]] {
            // Each writer starts a file of its own.
            let log = LogWriter::new(store.local_files().unwrap(), "ing-0");
            for &s in segments {
                let body = wal::encode_segment("ing-0", 1, s, &[]);
                log.append(s, body).await.unwrap();
            }
        }
        let fenced_at = lease::fence(&store, "ing-0", 2, "other", Some(1)).await;
        assert_eq!(fenced_at.unwrap(), 6);
        let fence = wal::segment_path("ing-0", 6)
            .filename()
            .unwrap()
            .to_string();
        let logs = |firsts: &[u64]| {
            let mut names: Vec<String> = firsts.iter().map(|&f| log_name(f)).collect();
            names.push(fence.clone());
            names
        };
        delete_covered(&store, "ing-0", 3, true).await.unwrap();
        assert_eq!(wal_files(&store).await, logs(&[3, 5]));
        delete_covered(&store, "ing-0", 5, true).await.unwrap();
        assert_eq!(wal_files(&store).await, logs(&[5]));
        delete_covered(&store, "ing-0", 4, false).await.unwrap();
        assert_eq!(
            wal_files(&store).await,
            logs(&[5]),
            "segment 5 is not covered"
        );
        delete_covered(&store, "ing-0", 6, false).await.unwrap();
        assert_eq!(wal_files(&store).await, logs(&[]), "the fence stays");
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

    /// Which database a replayed entry belongs to: its id unless that was
    /// deleted; for an entry of a release before ids, the live database of
    /// its name (none if that name was deleted). A name the catalog never
    /// had is an error, not a guess.
    #[tokio::test]
    async fn replayed_entries_belong_to_their_id_or_to_their_name_before_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, catalog) = catalog_with_table(dir.path()).await;
        let entry = |database_id, database: &str| wal::ReplayedEntry {
            database_id,
            database: database.into(),
            table: "m".into(),
            sequence: 1,
            batches: vec![],
        };
        let of = |state: &CatalogState, id, name| entry_database(state, &entry(id, name)).unwrap();
        let state = catalog.state();
        assert_eq!(
            (of(&state, 1, "db"), of(&state, 0, "db")),
            (Some(1), Some(1))
        );
        let unknown = entry_database(&state, &entry(0, "never"));
        assert!(matches!(unknown, Err(IngesterError::UnknownDatabase(_))));
        catalog.delete_database("db", 1).await.unwrap();
        let state = catalog.state();
        assert_eq!((of(&state, 1, "db"), of(&state, 0, "db")), (None, None));
        assert_eq!(catalog.create_database("db").await.unwrap(), 2);
        let state = catalog.state();
        assert_eq!(of(&state, 1, "db"), None, "the deleted id stays dropped");
        assert_eq!(of(&state, 2, "db"), Some(2));
        assert_eq!(of(&state, 0, "db"), Some(2), "by name: the live database");
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
