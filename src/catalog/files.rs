//! The files part of the catalog: which Parquet files hold the data, and how
//! far each ingester's WAL they cover, read from one create-only log per
//! writer (`catalog/files/<writer>/<n>.json`) and folded now and then into a
//! checkpoint (`catalog/files-checkpoint/<n>.json`).
//!
//! Apart from the schema catalog because it changes at every snapshot, is
//! written by one writer per log (never contending with schema changes), and
//! is read and rebuilt on its own (a querier refreshes it, a starting
//! ingester reads its own log).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use object_store::path::Path;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{CatalogError, DbId, FIRST_VERSION, LIFECYCLE_VERSION, TableId, decode};
use crate::metrics::{CatalogLog, metrics};
use crate::store::{AppendLog, Appended, Store, StoreError};

/// A Parquet file registered by an ingester snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParquetFile {
    pub path: String,
    pub database: DbId,
    pub table: TableId,
    /// `yyyy-mm-dd` of the rows' time.
    pub partition: String,
    pub min_time: i64,
    pub max_time: i64,
    pub rows: u64,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FilesEntry {
    format_version: u32,
    ingester_id: String,
    /// Every WAL segment up to this one is in the files of this entry or earlier ones.
    covered_segment: u64,
    files: Vec<ParquetFile>,
    /// The highest write sequence in `files` (0 in entries of earlier
    /// builds): a starting ingester reports it, so that routers stamp later
    /// writes above it whatever their clocks say.
    #[serde(default, skip_serializing_if = "is_zero")]
    max_sequence: u64,
    /// Files no longer part of the data (dropped by retention or replaced),
    /// by path; their objects are deleted once `removed_at_ns` is a grace
    /// period old, so queries planned before the removal can finish.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    removed: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    removed_at_ns: Option<i64>,
}

/// Every files log folded up to a position, so the entries before it can go.
///
/// Written by [`FileManifest::checkpoint_files`] with `Create` under the next
/// number; positions never go back from one checkpoint to the next (a writer
/// first catches up with the newest one). A reader starts from the newest
/// checkpoint and reads each log on from its `next_entry`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FilesCheckpoint {
    format_version: u32,
    /// Per files log: the number of its first entry not folded in, and its
    /// covered WAL segment.
    logs: BTreeMap<String, CheckpointLog>,
    files: Vec<ParquetFile>,
    /// The highest write sequence of the entries folded in.
    #[serde(default)]
    max_sequence: u64,
    /// Removed paths still kept, with when they were removed.
    removed: BTreeMap<String, i64>,
    /// Removals at or before this time whose objects were deleted are left
    /// out of `removed` (see [`FileManifest::checkpoint_files`]).
    pruned_before_ns: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointLog {
    next_entry: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    covered_segment: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Default)]
struct FilesState {
    /// Per ingester: the next entry number of its files log and its covered segment.
    logs: HashMap<String, (u64, Option<u64>)>,
    /// The highest write sequence of any entry applied.
    max_sequence: u64,
    files: Vec<ParquetFile>,
    /// Removed files by path, with when: a registration read after its
    /// removal (logs are read in any order) stays removed.
    removed: HashMap<String, i64>,
    /// The newest checkpoint this state is at or past in every log.
    checkpoint: Option<u64>,
    /// The sum of that checkpoint's log positions.
    checkpoint_entries: u64,
}

impl FilesState {
    fn from_checkpoint(n: u64, c: FilesCheckpoint) -> Self {
        let checkpoint_entries = c.logs.values().map(|l| l.next_entry).sum();
        Self {
            logs: c
                .logs
                .into_iter()
                .map(|(id, l)| (id, (l.next_entry, l.covered_segment)))
                .collect(),
            max_sequence: c.max_sequence,
            files: c.files,
            removed: c.removed.into_iter().collect(),
            checkpoint: Some(n),
            checkpoint_entries,
        }
    }

    /// Whether some log of `c` is further along than here: its entries
    /// before that position may be gone, so this state must start over from `c`.
    fn behind(&self, c: &FilesCheckpoint) -> bool {
        c.logs
            .iter()
            .any(|(id, l)| self.logs.get(id).map_or(0, |p| p.0) < l.next_entry)
    }

    /// Takes note of checkpoint `n` (not [`Self::behind`] it): forgets the
    /// removals it dropped.
    fn passed(&mut self, n: u64, c: &FilesCheckpoint) {
        self.removed
            .retain(|path, at| *at > c.pruned_before_ns || c.removed.contains_key(path));
        self.checkpoint = Some(n);
        self.checkpoint_entries = c.logs.values().map(|l| l.next_entry).sum();
    }

    /// Log entries read since the checkpoint this state is at.
    fn entries_since_checkpoint(&self) -> u64 {
        let total: u64 = self.logs.values().map(|l| l.0).sum();
        total.saturating_sub(self.checkpoint_entries)
    }

    /// Applies entry `n` of a files log, unless another task already did.
    fn apply(&mut self, n: u64, entry: FilesEntry) {
        let log = self.logs.entry(entry.ingester_id).or_default();
        if log.0 != n {
            return;
        }
        log.0 = n + 1;
        self.max_sequence = self.max_sequence.max(entry.max_sequence);
        if !entry.removed.is_empty() {
            let at = entry.removed_at_ns.unwrap_or_default();
            for path in entry.removed {
                self.removed.insert(path, at);
            }
            let removed = &self.removed;
            self.files.retain(|f| !removed.contains_key(&f.path));
        } else {
            log.1 = log.1.max(Some(entry.covered_segment));
        }
        let removed = &self.removed;
        self.files.extend(
            entry
                .files
                .into_iter()
                .filter(|f| !removed.contains_key(&f.path)),
        );
    }
}

/// The files log of one ingester (or of another writer: the lifecycle, the
/// compactor).
fn files_log(store: &Store, ingester: &str) -> AppendLog {
    AppendLog::new(store.clone(), format!("catalog/files/{ingester}")).with_suffix(".json")
}

/// The file manifest: every files log and checkpoint as this process last
/// read them.
#[derive(Debug)]
pub struct FileManifest {
    store: Store,
    /// The files checkpoints, numbered as a log of their own.
    checkpoints: AppendLog,
    state: Mutex<FilesState>,
    /// Set when this process is the only one that writes files logs (a
    /// server holding its data directory's lock): every entry is then
    /// applied here as it is appended, and reading the logs back finds
    /// nothing new.
    sole_writer: AtomicBool,
}

impl FileManifest {
    /// An empty manifest of the files logs on `store`; [`Self::load`] reads them.
    pub(super) fn new(store: Store) -> Self {
        Self {
            checkpoints: AppendLog::new(store.clone(), "catalog/files-checkpoint")
                .with_suffix(".json"),
            store,
            state: Mutex::new(FilesState::default()),
            sole_writer: AtomicBool::new(false),
        }
    }

    /// Builds the files state from the newest checkpoint (if any) and the
    /// log entries after it.
    pub(super) async fn load(&self) -> Result<(), CatalogError> {
        self.reload_files().await
    }

    /// Rebuilds the files state from the newest checkpoint (or none) and the
    /// entries after it, aside, and only then replaces this process's: a
    /// query meanwhile sees the old state, never a partial one. Entries are
    /// immutable, so the new state ends where the old one was, or further.
    async fn reload_files(&self) -> Result<(), CatalogError> {
        loop {
            let fresh = Mutex::new(match self.newest_checkpoint().await? {
                Some((n, c)) => FilesState::from_checkpoint(n, c),
                None => FilesState::default(),
            });
            self.read_logs(&fresh).await?;
            let at = fresh.lock().checkpoint;
            // Listed after the reads: a checkpoint that deleted an entry
            // they missed was written before it, so it shows here.
            if self.newest_checkpoint_number().await? <= at {
                *self.state.lock() = fresh.into_inner();
                return Ok(());
            }
        }
    }

    /// The number of the newest files checkpoint.
    async fn newest_checkpoint_number(&self) -> Result<Option<u64>, CatalogError> {
        Ok(self.checkpoints.numbers().await?.last().copied())
    }

    /// The newest files checkpoint, with its number.
    async fn newest_checkpoint(&self) -> Result<Option<(u64, FilesCheckpoint)>, CatalogError> {
        loop {
            let Some(n) = self.newest_checkpoint_number().await? else {
                return Ok(None);
            };
            // None: deleted since the listing, a newer one was written.
            if let Some(bytes) = self.checkpoints.get(n).await? {
                return Ok(Some((n, decode(&self.checkpoints.path(n), &bytes)?)));
            }
        }
    }

    /// Looks for a checkpoint newer than the one the state is at. Returns
    /// true when the state is behind it in some log, whose entries it still
    /// expects may be deleted: then it must start over from the checkpoint,
    /// not stop at the first missing entry as if the log ended there.
    async fn behind_checkpoint(&self) -> Result<bool, CatalogError> {
        let seen = self.state.lock().checkpoint;
        let newest = self.newest_checkpoint_number().await?;
        if newest <= seen {
            return Ok(false);
        }
        let Some((n, c)) = self.newest_checkpoint().await? else {
            return Ok(false);
        };
        let mut files = self.state.lock();
        if files.behind(&c) {
            return Ok(true);
        }
        if files.checkpoint < Some(n) {
            files.passed(n, &c);
        }
        Ok(false)
    }

    /// Declares this process the only writer of the files logs from now on
    /// (it holds the data directory's lock, and every ingester, compactor
    /// and lifecycle task writing them shares this manifest), so
    /// [`Self::refresh_file_logs`] reads nothing: a query in a one-process
    /// server no longer lists and reads the logs to learn what this process
    /// appended itself.
    pub fn set_sole_writer(&self) {
        self.sole_writer.store(true, Ordering::Release);
    }

    /// Registers a snapshot's files, covering the WAL of `ingester_id` up to
    /// `covered_segment`. Only the holder of that WAL's lease calls this; an entry
    /// number taken meanwhile (a takeover, or a fenced old holder finishing a
    /// snapshot) is read, and the next one tried.
    pub async fn register_files(
        &self,
        ingester_id: &str,
        covered_segment: u64,
        max_sequence: u64,
        files: Vec<ParquetFile>,
    ) -> Result<(), CatalogError> {
        let entry = FilesEntry {
            format_version: FIRST_VERSION,
            ingester_id: ingester_id.to_string(),
            covered_segment,
            files,
            max_sequence,
            removed: Vec::new(),
            removed_at_ns: None,
        };
        self.append_files_entry(entry).await
    }

    /// Takes files out of the data (retention, purge), as `writer` (any name
    /// that is not an ingester's). Their objects stay until
    /// [`Self::removed_files`] says the grace period is over.
    pub async fn remove_files(
        &self,
        writer: &str,
        paths: Vec<String>,
        now_ns: i64,
    ) -> Result<(), CatalogError> {
        if paths.is_empty() {
            return Ok(());
        }
        let entry = FilesEntry {
            format_version: LIFECYCLE_VERSION,
            ingester_id: writer.to_string(),
            covered_segment: 0,
            files: Vec::new(),
            max_sequence: 0,
            removed: paths,
            removed_at_ns: Some(now_ns),
        };
        self.append_files_entry(entry).await
    }

    /// Replaces files by others in one entry (compaction): a reader applies
    /// the removal and the addition together, so it never sees both or neither.
    pub async fn replace_files(
        &self,
        writer: &str,
        files: Vec<ParquetFile>,
        removed: Vec<String>,
        now_ns: i64,
    ) -> Result<(), CatalogError> {
        let entry = FilesEntry {
            format_version: LIFECYCLE_VERSION,
            ingester_id: writer.to_string(),
            covered_segment: 0,
            files,
            max_sequence: 0,
            removed,
            removed_at_ns: Some(now_ns),
        };
        self.append_files_entry(entry).await
    }

    /// Files removed at or before `before_ns`, by path: their objects may go.
    pub fn removed_files(&self, before_ns: i64) -> Vec<String> {
        let files = self.state.lock();
        let mut paths: Vec<String> = files
            .removed
            .iter()
            .filter(|(_, at)| **at <= before_ns)
            .map(|(p, _)| p.clone())
            .collect();
        paths.sort();
        paths
    }

    async fn append_files_entry(&self, entry: FilesEntry) -> Result<(), CatalogError> {
        let ingester_id = entry.ingester_id.clone();
        let ingester_id = ingester_id.as_str();
        let log = files_log(&self.store, ingester_id);
        let bytes = Bytes::from(serde_json::to_vec(&entry).expect("catalog entries serialize"));
        let position = || self.state.lock().logs.get(ingester_id).map_or(0, |l| l.0);
        let position = &position;
        loop {
            // Taken: read the entries written meanwhile and try after them.
            let taken = |_| async move {
                metrics().catalog_conflict(CatalogLog::Files);
                self.refresh_files_of(ingester_id).await?;
                Ok::<_, CatalogError>(position())
            };
            let appended = log.append(position(), |_| bytes.clone(), taken).await;
            metrics().catalog_commit(CatalogLog::Files, appended.is_ok());
            let n = appended?;
            // A state behind a checkpoint may put an entry at a number
            // the checkpoint folded in and deleted: nobody reads that
            // again, so the entry goes on at the log's real end.
            if self.checkpoint_covers(ingester_id, n).await? {
                self.reload_files().await?;
                continue;
            }
            self.state.lock().apply(n, entry);
            return Ok(());
        }
    }

    /// Whether the newest checkpoint folded in entry `n` of a log.
    async fn checkpoint_covers(&self, ingester_id: &str, n: u64) -> Result<bool, CatalogError> {
        let seen = self.state.lock().checkpoint;
        if self.newest_checkpoint_number().await? <= seen {
            // This state is at or past the newest checkpoint, so `n` is not in it.
            return Ok(false);
        }
        Ok(self
            .newest_checkpoint()
            .await?
            .and_then(|(_, c)| c.logs.get(ingester_id).map(|l| l.next_entry))
            .is_some_and(|next| n < next))
    }

    /// Reads the entries of one files log written since this process last looked.
    pub async fn refresh_files_of(&self, ingester_id: &str) -> Result<(), CatalogError> {
        self.read_log(&self.state, ingester_id).await?;
        if self.behind_checkpoint().await? {
            self.reload_files().await?;
        }
        Ok(())
    }

    /// Reads one files log on from this state's position, to its end or to
    /// an entry deleted by a checkpoint (the caller tells them apart).
    async fn read_log(
        &self,
        state: &Mutex<FilesState>,
        ingester_id: &str,
    ) -> Result<(), CatalogError> {
        let log = files_log(&self.store, ingester_id);
        loop {
            let n = state.lock().logs.get(ingester_id).map_or(0, |l| l.0);
            let Some(bytes) = log.get(n).await? else {
                return Ok(());
            };
            let entry: FilesEntry = decode(&log.path(n), &bytes)?;
            state.lock().apply(n, entry);
        }
    }

    /// The last WAL segment of an ingester that Parquet files cover.
    pub fn covered_segment(&self, ingester_id: &str) -> Option<u64> {
        self.state.lock().logs.get(ingester_id).and_then(|l| l.1)
    }

    /// The highest write sequence registered files hold, as far as the files
    /// logs read so far tell (0 for files registered by earlier builds).
    pub fn max_sequence(&self) -> u64 {
        self.state.lock().max_sequence
    }

    /// Every registered Parquet file.
    pub fn files(&self) -> Vec<ParquetFile> {
        self.state.lock().files.clone()
    }

    /// Reads the file registrations other processes made since the last look,
    /// so a querier sees snapshots taken after it started, including the logs
    /// of ingesters it has not seen before.
    pub async fn refresh_file_logs(&self) -> Result<(), CatalogError> {
        if self.sole_writer.load(Ordering::Acquire) {
            return Ok(());
        }
        self.read_logs(&self.state).await?;
        // Listed after every read that ended on a missing entry: a
        // checkpoint that deleted one was written before it.
        if self.behind_checkpoint().await? {
            self.reload_files().await?;
        }
        Ok(())
    }

    /// Reads every files log on from `state`'s positions: the logs it knows
    /// and those listed.
    async fn read_logs(&self, state: &Mutex<FilesState>) -> Result<(), CatalogError> {
        let prefix = Path::from("catalog/files");
        let listing = self
            .store
            .object_store()
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(StoreError::from)?;
        let mut logs: HashSet<String> = state.lock().logs.keys().cloned().collect();
        logs.extend(
            listing
                .common_prefixes
                .iter()
                .filter_map(|dir| dir.filename().map(str::to_string)),
        );
        for ingester in logs {
            self.read_log(state, &ingester).await?;
        }
        Ok(())
    }

    /// Folds every files log into a new checkpoint when at least
    /// `min_entries` entries were added since the last one (or a removal
    /// can be forgotten), then deletes the entries it covers and all but the
    /// previous checkpoint. Returns the new checkpoint's number; `None` when
    /// there was nothing to do or another process wrote that number first.
    ///
    /// A removed path is left out of the checkpoint (and forgotten here) when
    /// it was removed at or before `pruned_before_ns` and `deleted(path)`
    /// says its object is gone. That is safe because the removed set only
    /// guards against a registration of the path read after its removal;
    /// `pruned_before_ns` must be at least a file grace before the logs are
    /// read here (pass `now - file_grace` with `now` taken before the call),
    /// so every registration of such a path was written before then, lies
    /// below this checkpoint's positions, and no reader starting from it (or
    /// at or past it) reads it again. Only a registration written more than a
    /// file grace after the file's removal (whose object may be gone
    /// already) could bring it back: the grace already assumes none is.
    /// A reader behind the checkpoint keeps its own removed set until it
    /// starts over from the checkpoint, which no longer registers the path.
    pub async fn checkpoint_files(
        &self,
        pruned_before_ns: i64,
        deleted: impl Fn(&str) -> bool,
        min_entries: u64,
    ) -> Result<Option<u64>, CatalogError> {
        // Now at or past the newest checkpoint in every log, so positions
        // never go back from one checkpoint to the next.
        self.refresh_file_logs().await?;
        let (n, checkpoint) = {
            let files = self.state.lock();
            let forgettable =
                |(path, at): (&String, &i64)| *at <= pruned_before_ns && deleted(path);
            let any_forgettable = files.removed.iter().any(forgettable);
            if files.entries_since_checkpoint() < min_entries.max(1) && !any_forgettable {
                return Ok(None);
            }
            let checkpoint = FilesCheckpoint {
                format_version: LIFECYCLE_VERSION,
                logs: files
                    .logs
                    .iter()
                    .map(|(id, &(next_entry, covered_segment))| {
                        let log = CheckpointLog {
                            next_entry,
                            covered_segment,
                        };
                        (id.clone(), log)
                    })
                    .collect(),
                files: files.files.clone(),
                max_sequence: files.max_sequence,
                removed: files
                    .removed
                    .iter()
                    .filter(|r| !forgettable(*r))
                    .map(|(p, at)| (p.clone(), *at))
                    .collect(),
                pruned_before_ns,
            };
            (files.checkpoint.map_or(0, |c| c + 1), checkpoint)
        };
        let bytes = serde_json::to_vec(&checkpoint).expect("checkpoints serialize");
        if self.checkpoints.create(n, Bytes::from(bytes)).await? == Appended::Taken {
            return Ok(None);
        }
        {
            let mut files = self.state.lock();
            if !files.behind(&checkpoint) {
                files.passed(n, &checkpoint);
            }
        }
        let mut doomed = Vec::new();
        for (id, log) in &checkpoint.logs {
            let entries = files_log(&self.store, id);
            let covered = entries.numbers().await?.into_iter();
            let covered = covered.filter(|&e| e < log.next_entry);
            doomed.extend(covered.map(|e| entries.path(e)));
        }
        // The previous checkpoint stays for a reader that listed it just now.
        let old = self.checkpoints.numbers().await?.into_iter();
        doomed.extend(old.filter(|&e| e + 1 < n).map(|e| self.checkpoints.path(e)));
        self.store.delete_many(doomed).await?;
        Ok(Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use std::sync::Arc;

    fn file(path: &str) -> ParquetFile {
        ParquetFile {
            path: path.into(),
            database: 1,
            table: 1,
            partition: "2022-01-01".into(),
            min_time: 0,
            max_time: 1,
            rows: 2,
            size_bytes: 3,
        }
    }

    async fn catalog(dir: &std::path::Path) -> Arc<Catalog> {
        Catalog::load(Store::local(dir).unwrap()).await.unwrap()
    }

    /// A sole writer's manifest has what it appended without reading the
    /// logs; what another process appends (which a server holding the data
    /// directory's lock rules out) it then no longer reads, while a manifest
    /// that is not the sole writer does.
    #[tokio::test]
    async fn a_sole_writer_reads_no_logs_back() {
        let dir = tempfile::tempdir().unwrap();
        let server = catalog(dir.path()).await;
        server.manifest().set_sole_writer();
        let reader = catalog(dir.path()).await;
        let other = catalog(dir.path()).await;
        // The server sees its own file, and still only that after another's.
        for (writer, id, path) in [(&server, "ing", "own"), (&other, "other", "theirs")] {
            let files = vec![file(path)];
            writer.register_files(id, 1, 0, files).await.unwrap();
            server.refresh_file_logs().await.unwrap();
            assert_eq!(paths(&server), ["own"]);
        }
        reader.refresh_file_logs().await.unwrap();
        assert_eq!(paths(&reader), ["own", "theirs"]);
    }

    fn paths(catalog: &Catalog) -> Vec<String> {
        let mut paths: Vec<String> = catalog.files().into_iter().map(|f| f.path).collect();
        paths.sort();
        paths
    }

    #[tokio::test]
    async fn files_log_tracks_coverage() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(dir.path()).await;
        assert_eq!(c.covered_segment("i1"), None);
        let f = file("1/1/2022-01-01/x.parquet");
        c.register_files("i1", 7, 40, vec![f.clone()])
            .await
            .unwrap();
        c.register_files("i1", 9, 30, vec![]).await.unwrap();
        let again = catalog(dir.path()).await;
        assert_eq!(again.covered_segment("i1"), Some(9));
        assert_eq!(again.files(), vec![f]);
        assert_eq!(
            again.max_sequence(),
            40,
            "the highest write sequence registered"
        );
    }

    #[tokio::test]
    async fn a_reader_picks_up_files_registered_after_it_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let writer = catalog(dir.path()).await;
        let reader = catalog(dir.path()).await;
        writer
            .register_files("i1", 1, 0, vec![file("a")])
            .await
            .unwrap();
        writer
            .register_files("i2", 4, 0, vec![file("b")])
            .await
            .unwrap();
        assert!(reader.files().is_empty());
        reader.refresh_file_logs().await.unwrap();
        writer
            .register_files("i1", 2, 0, vec![file("c")])
            .await
            .unwrap();
        reader.refresh_file_logs().await.unwrap();
        let mut paths: Vec<_> = reader.files().into_iter().map(|f| f.path).collect();
        paths.sort();
        assert_eq!(paths, vec!["a", "b", "c"]);
        assert_eq!(reader.covered_segment("i1"), Some(2));
    }

    fn sorted_paths(c: &Catalog) -> Vec<String> {
        let mut paths: Vec<String> = c.files().into_iter().map(|f| f.path).collect();
        paths.sort();
        paths
    }

    fn count_under(dir: &std::path::Path) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .map(|e| e.unwrap().path())
            .map(|p| if p.is_dir() { count_under(&p) } else { 1 })
            .sum()
    }

    /// A checkpoint deletes the entries it folds in; a fresh load, and a
    /// reader that was behind it (its next entries are gone), see exactly
    /// the files they saw before; a writer behind it does not lose its entry
    /// to a number the checkpoint deleted; forgotten removals stay removed.
    #[tokio::test]
    async fn a_checkpoint_replaces_the_entries_it_covers() {
        let dir = tempfile::tempdir().unwrap();
        let writer = catalog(dir.path()).await;
        let behind = catalog(dir.path()).await;
        for i in 0..30u64 {
            let ing = if i.is_multiple_of(2) { "i1" } else { "i2" };
            writer
                .register_files(ing, i, i, vec![file(&format!("f{i}"))])
                .await
                .unwrap();
            if i == 10 {
                // Part way: `behind` has read some entries only.
                behind.refresh_file_logs().await.unwrap();
            }
            if i.is_multiple_of(3) {
                writer
                    .remove_files("lifecycle", vec![format!("f{i}")], i as i64)
                    .await
                    .unwrap();
            }
        }
        // A registration read after its removal stays removed (f0 again, in i2's log).
        writer
            .register_files("i2", 30, 77, vec![file("f0")])
            .await
            .unwrap();
        let expected = sorted_paths(&*catalog(dir.path()).await);
        assert_eq!(expected.len(), 20);
        assert!(!expected.contains(&"f0".to_string()));
        let files_dir = dir.path().join("catalog/files");
        assert_eq!(count_under(&files_dir), 41);

        // Removals up to t=5 (f0, f3) are forgotten: their objects are gone.
        let n = writer
            .checkpoint_files(5, |_| true, 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
        assert_eq!(count_under(&files_dir), 0, "every entry is folded in");
        assert_eq!(sorted_paths(&writer), expected);
        assert_eq!(writer.removed_files(i64::MAX).len(), 8);
        assert!(!writer.removed_files(i64::MAX).contains(&"f0".to_string()));

        let fresh = catalog(dir.path()).await;
        assert_eq!(sorted_paths(&fresh), expected);
        assert_eq!(fresh.covered_segment("i1"), Some(28));
        assert_eq!(fresh.covered_segment("i2"), Some(30));
        assert_eq!(fresh.max_sequence(), 77);
        assert_eq!(
            fresh.removed_files(i64::MAX),
            writer.removed_files(i64::MAX)
        );

        behind.refresh_file_logs().await.unwrap();
        assert_eq!(sorted_paths(&behind), expected);
        assert_eq!(behind.covered_segment("i2"), Some(30));
        assert_eq!(behind.removed_files(i64::MAX).len(), 8);

        // A writer whose state is behind: the number it tries was deleted,
        // so its put succeeds there; it must notice and append at the end.
        let stale = catalog(dir.path()).await;
        writer
            .remove_files("lifecycle", vec!["f1".into()], 40)
            .await
            .unwrap();
        writer.checkpoint_files(0, |_| false, 1).await.unwrap();
        *stale.files.state.lock() = FilesState::default();
        stale
            .remove_files("lifecycle", vec!["f5".into()], 41)
            .await
            .unwrap();
        let mut after = expected.clone();
        after.retain(|p| p != "f1" && p != "f5");
        assert_eq!(sorted_paths(&*catalog(dir.path()).await), after);
        writer.refresh_file_logs().await.unwrap();
        assert_eq!(sorted_paths(&writer), after);
        assert_eq!(sorted_paths(&stale), after);
        // Only the previous checkpoint is kept besides the newest.
        writer.checkpoint_files(0, |_| false, 1).await.unwrap();
        assert_eq!(count_under(&dir.path().join("catalog/files-checkpoint")), 2);
    }
}
