//! The write-ahead log of one ingester's prefix `wal/<id>`, behind [`Wal`]:
//! where the next commit goes, the group commit of queued writes, and the
//! deletion of segments that snapshots cover.
//!
//! A commit is one segment: an object of its own ([`segment`]), or a record
//! appended to a local log file when this process holds the data directory
//! ([`log_file`]). A write is acknowledged only once its segment is durable,
//! and only then is it put in the buffer, in segment order. [`replay`]
//! rebuilds a buffer from what no snapshot covers; [`fence`] stops an earlier
//! holder of the prefix from committing again.
//!
//! Kept apart from the ingester so that the WAL's invariants (numbers never
//! skipped, a fence is never deleted, a log file is deleted only once all it
//! holds is covered) can be read in one place.

pub mod log_file;
pub mod replay;
pub mod segment;

pub use segment::{
    EncodedEntry, ReplayedEntry, WalError, decode_segment, encode_batch, encode_segment,
    may_be_fence, prefix, segments,
};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use object_store::path::Path;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use super::buffer::{Buffer, Chunk};
use super::{IngesterError, PendingGuard, Refused, publish_buffer_bytes};
use crate::catalog::Catalog;
use crate::metrics::metrics;
use crate::proto::refusal::Reason;
use crate::store::{AppendLog, Appended, Store};
use log_file::LogWriter;

/// A write queued for the WAL's next group commit.
pub(super) struct Queued {
    pub entry: EncodedEntry,
    pub batch: RecordBatch,
    pub done: oneshot::Sender<Result<u64, Refused>>,
    /// Its bytes in the ingester's pending count, released once the commit
    /// put them in the buffer (or failed): a `no_sync` write is answered
    /// while queued, and its bytes must count against the limit until then.
    pub pending: PendingGuard,
}

/// Where the next WAL commit goes. Held across each commit, and across a
/// re-claim of the lease, so the two never interleave.
#[derive(Debug)]
pub struct Position {
    pub epoch: u64,
    pub next: u64,
    /// Set when segments go to a local log file rather than an object each
    /// (see [`log_file`]).
    log: Option<LogWriter>,
}

impl Position {
    pub fn new(epoch: u64, next: u64, log: Option<LogWriter>) -> Self {
        Self { epoch, next, log }
    }

    pub fn appends_to_log_file(&self) -> bool {
        self.log.is_some()
    }
}

/// The WAL of this ingester's own prefix, as long as it holds the lease.
pub struct Wal {
    id: String,
    store: Store,
    /// The segment objects (when not appending to a log file).
    segments: AppendLog,
    catalog: Arc<Catalog>,
    /// Where durable writes go, in segment order (shared with the ingester).
    buffer: Arc<Mutex<Buffer>>,
    position: tokio::sync::Mutex<Position>,
    /// The epoch of the lease held, for heartbeats, snapshots and release.
    epoch: AtomicU64,
    /// Set when the lease was lost: commits are refused until it is claimed again.
    fenced: AtomicBool,
    /// Extra time the group commit waits to gather writes into one segment.
    flush_interval: Duration,
    queue: Mutex<Option<mpsc::Sender<Queued>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// A WAL committing at `position`, claimed under its lease; its group
    /// commit runs once [`Self::start`] is called.
    pub(super) fn new(
        id: &str,
        store: Store,
        catalog: Arc<Catalog>,
        buffer: Arc<Mutex<Buffer>>,
        position: Position,
        flush_interval: Duration,
    ) -> Self {
        Self {
            id: id.to_string(),
            segments: segments(&store, id),
            store,
            catalog,
            buffer,
            epoch: AtomicU64::new(position.epoch),
            position: tokio::sync::Mutex::new(position),
            fenced: AtomicBool::new(false),
            flush_interval,
            queue: Mutex::new(None),
            task: Mutex::new(None),
        }
    }

    /// Starts the group commit; `after_group` runs after each commit (the
    /// ingester asks for a snapshot there when the buffer fills).
    pub(super) fn start(self: &Arc<Self>, after_group: impl Fn() + Send + 'static) {
        let (tx, rx) = mpsc::channel(4096);
        *self.queue.lock() = Some(tx);
        let task = tokio::spawn(Arc::clone(self).group_commit(rx, after_group));
        *self.task.lock() = Some(task);
    }

    /// The epoch of the lease this WAL commits under.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether the lease was lost: no commit succeeds until it is claimed again.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// The lease was found lost (a heartbeat found a newer epoch).
    pub fn mark_fenced(&self) {
        self.fenced.store(true, Ordering::Release);
    }

    /// Holds the position: no commit runs (nor a reclaim) until it is dropped.
    pub async fn hold(&self) -> tokio::sync::MutexGuard<'_, Position> {
        self.position.lock().await
    }

    /// Commits go on at `claimed`, in its epoch, once the caller (holding
    /// the position) has put the replayed buffer in place.
    pub(super) fn resume(&self, held: &mut Position, claimed: Position) {
        let epoch = claimed.epoch;
        *held = claimed;
        self.epoch.store(epoch, Ordering::Release);
        self.fenced.store(false, Ordering::Release);
    }

    /// Queues a write for the next group commit; `false` once the WAL is closed.
    pub(super) async fn enqueue(&self, write: Queued) -> bool {
        let tx = self.queue.lock().clone();
        match tx {
            Some(tx) => tx.send(write).await.is_ok(),
            None => false,
        }
    }

    /// Takes no more writes, and returns once the queued ones are committed.
    pub(super) async fn close(&self) -> Result<(), IngesterError> {
        // Closing the channel ends the task once the queued writes commit.
        drop(self.queue.lock().take());
        let task = self.task.lock().take();
        if let Some(task) = task {
            task.await?;
        }
        Ok(())
    }

    /// Group commit: each pass takes every write queued while the previous put ran.
    async fn group_commit(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Queued>,
        after_group: impl Fn() + Send + 'static,
    ) {
        const MAX_SEGMENT_BYTES: usize = 64 << 20;
        while let Some(first) = rx.recv().await {
            let mut writes = vec![first];
            if !self.flush_interval.is_zero() {
                tokio::time::sleep(self.flush_interval).await;
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
            after_group();
            for Queued { done, pending, .. } in writes {
                drop(pending); // in the buffer now, or refused
                let _ = done.send(outcome.clone());
            }
        }
    }

    /// Writes one segment holding `writes` at the next number, then adds them to
    /// the buffer. Numbers are never skipped: after a failed put the next commit
    /// tries the same number again, so a fence placed after our last segment is
    /// always the next number we try.
    async fn commit(&self, writes: &[Queued]) -> Result<u64, Refused> {
        let mut position = self.position.lock().await;
        if self.is_fenced() {
            return Err(Refused::fenced(&self.id));
        }
        let entries: Vec<EncodedEntry> = writes.iter().map(|w| w.entry.clone()).collect();
        loop {
            let (epoch, segment) = (position.epoch, position.next);
            let body = encode_segment(&self.id, epoch, segment, &entries);
            let path = self.segments.path(segment);
            let (size, started) = (body.len(), std::time::Instant::now());
            let written = match &position.log {
                Some(log) => (log.append(segment, body).await)
                    .map(|()| Appended::Written)
                    .map_err(IngesterError::from),
                None => (self.segments.create(segment, body).await).map_err(Into::into),
            };
            match written {
                Ok(Appended::Written) => {
                    let id = [self.id.as_str()];
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
                    publish_buffer_bytes(&self.id, &self.buffer);
                    position.next += 1;
                    return Ok(segment);
                }
                Ok(Appended::Taken) => {
                    match self.adopt(&path, epoch).await {
                        // Our own earlier put, reported failed but done: keep its
                        // data and try the next number.
                        Ok(true) => position.next += 1,
                        Ok(false) => {
                            tracing::warn!(%path, "WAL commit hit a fence: lease lost");
                            self.mark_fenced();
                            return Err(Refused::fenced(&self.id));
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
        let (segment, entries) = decode_segment(path, bytes)?;
        if segment.ingester_id != self.id || segment.epoch != epoch {
            return Ok(false);
        }
        let number = segment.segment;
        let state = self.catalog.state();
        let chunks = replay::replayed_chunks(number, entries, &state)?;
        self.buffer.lock().insert_segment(number, chunks);
        Ok(true)
    }
}

/// Deletes the WAL segments of `prefix` that registered files cover, in one
/// batch (a snapshot covers thousands), and the log files all of whose
/// segments they cover. With `keep_newest_log`, the newest log file stays
/// whatever it holds: its writer may append to it still.
pub async fn delete_covered(
    store: &Store,
    prefix: &str,
    covered: u64,
    keep_newest_log: bool,
) -> Result<(), IngesterError> {
    let (mut doomed, mut doomed_logs) = (Vec::new(), Vec::new());
    let mut logs = Vec::new();
    let objects = segments(store, prefix);
    for meta in store.list(&objects.dir()).await? {
        if let Some(first) = log_file::first_segment(&meta.location) {
            logs.push((first, meta));
            continue;
        }
        let is_covered = objects.number(&meta.location).is_some_and(|s| s <= covered);
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
            None => log_file::last_segment(store, &meta.location)
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
    if !may_be_fence(meta.size) {
        return Ok(false);
    }
    let bytes = store.get(&meta.location).await?;
    Ok(decode_segment(&meta.location, bytes)?.1.is_empty())
}

/// Fences `prefix` for epoch `new_epoch`: writes an empty segment, in the new
/// holder's name, at the first free segment number after every segment of the
/// prefix, and returns that number. Every epoch writes in one namespace of
/// numbers and commits them in order, so any earlier holder still running
/// (whichever epoch it holds) finds the number taken at its next commit. A
/// commit that wins the race for the number just moves the fence one further.
pub async fn fence(
    store: &Store,
    prefix: &str,
    new_epoch: u64,
    by: &str,
    covered: Option<u64>,
) -> Result<u64, IngesterError> {
    let objects = segments(store, prefix);
    // The first number after every segment of the prefix, as listed now.
    let objects = &objects;
    let next_free = || async move {
        let mut next = covered.map_or(0, |c| c + 1);
        let mut newest_log = None;
        for meta in store.list(&objects.dir()).await? {
            if let Some(s) = objects.number(&meta.location) {
                next = next.max(s + 1);
            }
            if let Some(first) = log_file::first_segment(&meta.location) {
                newest_log = newest_log.max(Some((first, meta.location)));
            }
        }
        // A log file's segments come after the older files' ones.
        if let Some((_, path)) = newest_log
            && let Some(last) = log_file::last_segment(store, &path).await?
        {
            next = next.max(last + 1);
        }
        Ok::<_, IngesterError>(next)
    };
    let empty = |n| encode_segment(by, new_epoch, n, &[]);
    // Taken: a commit won the race for that number; the fence goes after it.
    (objects.append(next_free().await?, empty, |_| next_free())).await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ingester::wal;
    use crate::store::{Put, StoreError};
    use crate::testing::catalog_with_table;

    fn store(dir: &std::path::Path) -> Store {
        Store::local(dir).unwrap()
    }

    /// The WAL objects of `ing-0`, by file name.
    pub(crate) async fn wal_files(store: &Store) -> Vec<String> {
        let listed = store.list(&wal::prefix("ing-0")).await.unwrap();
        let names = listed
            .iter()
            .map(|m| m.location.filename().unwrap().to_string());
        names.collect()
    }

    pub(crate) fn log_name(first: u64) -> String {
        log_file::file_path("ing-0", first)
            .filename()
            .unwrap()
            .to_string()
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
        let fenced_at = fence(&store, "ing-0", 2, "other", Some(1)).await;
        assert_eq!(fenced_at.unwrap(), 6);
        let fence = wal::segments(&store, "ing-0")
            .path(6)
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

    #[tokio::test]
    async fn a_fence_takes_the_old_holders_next_segment() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        for seg in [3, 4] {
            let body = wal::encode_segment("old", 1, seg, &[]);
            s.put(&wal::segments(&s, "p").path(seg), body, Put::Create)
                .await
                .unwrap();
        }
        let at = fence(&s, "p", 3, "new", Some(1)).await.unwrap();
        assert_eq!(at, 5);
        // The old holder's next commit is refused, and so is that of a holder
        // of epoch 2, claimed after 1 but never fenced by its claimant (who
        // died first): the number is taken whatever the epoch.
        for (holder, epoch) in [("old", 1), ("other", 2)] {
            let late = s
                .put(
                    &wal::segments(&s, "p").path(5),
                    wal::encode_segment(holder, epoch, 5, &[]),
                    Put::Create,
                )
                .await;
            assert!(
                matches!(late, Err(StoreError::AlreadyExists(_))),
                "{late:?}"
            );
        }
        let (seg, entries) = wal::decode_segment(
            &wal::segments(&s, "p").path(5),
            s.get(&wal::segments(&s, "p").path(5)).await.unwrap(),
        )
        .unwrap();
        assert_eq!(
            (seg.ingester_id.as_str(), seg.epoch, entries.len()),
            ("new", 3, 0)
        );
        // With nothing in the WAL, the fence goes after what is covered.
        assert_eq!(fence(&s, "q", 2, "new", Some(9)).await.unwrap(), 10);
    }

    /// A store written by an earlier build (one directory per epoch) is read:
    /// the fence goes after its segments.
    #[tokio::test]
    async fn a_fence_counts_segments_of_the_per_epoch_layout() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let old = Path::from(format!("wal/p/{:020}/{:020}", 4, 7));
        s.put(&old, wal::encode_segment("old", 4, 7, &[]), Put::Create)
            .await
            .unwrap();
        assert_eq!(fence(&s, "p", 5, "new", None).await.unwrap(), 8);
    }
}
