//! The object store, plus the durability object_store 0.13 does not give on a local disk.
//!
//! On S3 a successful PUT is durable. `LocalFileSystem` writes a temporary file and
//! renames it, but never fsyncs: after a power cut the object could be empty. So on
//! a local directory [`Store::put`] does the put itself, in one blocking task (it is
//! the WAL's commit, on every write's path): a temporary file beside the object,
//! fsynced, then published under its name and the directories that name it fsynced.
//! Reads, listings and deletes stay with `LocalFileSystem`, whose listing skips the
//! temporary names (`name#digits`) as it skips its own.
//!
//! [`AppendLog`] is the numbered, create-only log that the catalog, the series
//! logs, the WAL's segment objects and the leases are written as.

mod append_log;
mod instrumented;

pub use append_log::{AppendLog, Appended};
pub use instrumented::Instrumented;

use std::collections::HashSet;
use std::io::ErrorKind;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parking_lot::Mutex;

use crate::metrics::{StoreOutcome, metrics};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {0} already exists")]
    AlreadyExists(String),
    #[error("object {0} not found")]
    NotFound(String),
    #[error("object store: {0}")]
    ObjectStore(#[source] object_store::Error),
    #[error("fsync {path}: {source}")]
    Sync {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<object_store::Error> for StoreError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::AlreadyExists { path, .. } => Self::AlreadyExists(path),
            object_store::Error::NotFound { path, .. } => Self::NotFound(path),
            e => Self::ObjectStore(e),
        }
    }
}

/// Whether a put may replace an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Fail with [`StoreError::AlreadyExists`] if the object exists (log entries, WAL).
    Create,
    Overwrite,
}

#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    local: Option<Arc<LocalDurability>>,
}

/// Durable puts on a local directory. Tracks the directories already fsynced, so
/// a put syncs only what is new.
#[derive(Debug)]
struct LocalDurability {
    fs: Arc<LocalFileSystem>,
    root: PathBuf,
    synced_dirs: Mutex<HashSet<PathBuf>>,
}

impl Store {
    /// A store rooted at a local directory, created if missing.
    pub fn local(dir: &FsPath) -> Result<Self, StoreError> {
        let data_dir = |source| StoreError::DataDir {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(data_dir)?;
        let root = dir.canonicalize().map_err(data_dir)?;
        let fs = Arc::new(LocalFileSystem::new_with_prefix(&root)?.with_automatic_cleanup(true));
        Ok(Self {
            inner: Arc::new(Instrumented::new(Arc::clone(&fs) as Arc<dyn ObjectStore>)),
            local: Some(Arc::new(LocalDurability {
                fs,
                root,
                synced_dirs: Mutex::new(HashSet::new()),
            })),
        })
    }

    /// A store with no local durability work to do (S3, or in-memory in tests).
    pub fn remote(inner: Arc<dyn ObjectStore>) -> Self {
        let inner = Arc::new(Instrumented::new(inner));
        Self { inner, local: None }
    }

    /// The local directory behind the store, if it is one.
    pub fn local_root(&self) -> Option<&FsPath> {
        self.local.as_deref().map(|l| l.root.as_path())
    }

    /// The local directory behind the store, for a file written in place
    /// rather than as a whole object (a local WAL's log file).
    pub fn local_files(&self) -> Option<LocalFiles> {
        self.local.clone().map(LocalFiles)
    }

    /// Writes an object and returns only once it would survive a crash.
    pub async fn put(&self, path: &Path, bytes: Bytes, mode: Put) -> Result<(), StoreError> {
        if let Some(local) = &self.local {
            let (local, location) = (Arc::clone(local), path.clone());
            let put = move || local.put(&location, &bytes, mode, Pace::Full);
            let started = Instant::now();
            let put = tokio::task::spawn_blocking(put)
                .await
                .map_err(|e| StoreError::Sync {
                    path: PathBuf::from(path.as_ref()),
                    source: std::io::Error::other(e),
                })
                .and_then(|put| put);
            return counted_local("put", put, started);
        }
        self.put_remote(path, bytes, mode).await
    }

    /// [`Store::put`] for data that can wait (a snapshot's or a compaction's
    /// Parquet): on a local directory it is written at background priority and
    /// paced, so that it leaves the disk to the WAL commits half the time.
    pub async fn put_background(
        &self,
        path: &Path,
        bytes: Bytes,
        mode: Put,
    ) -> Result<(), StoreError> {
        if let Some(local) = &self.local {
            let (local, location) = (Arc::clone(local), path.clone());
            let put = move || local.put(&location, &bytes, mode, Pace::Background);
            let started = Instant::now();
            return counted_local("put", crate::background::run(put).await, started);
        }
        self.put_remote(path, bytes, mode).await
    }

    async fn put_remote(&self, path: &Path, bytes: Bytes, mode: Put) -> Result<(), StoreError> {
        let mode = match mode {
            Put::Create => PutMode::Create,
            Put::Overwrite => PutMode::Overwrite,
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        self.inner
            .put_opts(path, PutPayload::from(bytes), opts)
            .await?;
        Ok(())
    }

    pub async fn get(&self, path: &Path) -> Result<Bytes, StoreError> {
        Ok(self.inner.get(path).await?.bytes().await?)
    }

    /// Whether the store answers: a HEAD of an object that need not exist
    /// (not found is an answer), for `/ready`.
    pub async fn reachable(&self) -> Result<(), StoreError> {
        match self.inner.head(&Path::from(".ready")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn head(&self, path: &Path) -> Result<ObjectMeta, StoreError> {
        Ok(self.inner.head(path).await?)
    }

    /// Every object under `prefix`, sorted by path.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut objects: Vec<ObjectMeta> = self.inner.list(Some(prefix)).try_collect().await?;
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(objects)
    }

    /// Deletes an object; one that is already gone is not an error.
    pub async fn delete(&self, path: &Path) -> Result<(), StoreError> {
        match self.inner.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes many objects in as few requests as the store allows (S3:
    /// `DeleteObjects`, up to 1,000 a request); ones already gone are fine.
    /// On a local directory they go paced, at background priority (see
    /// [`LocalDurability::delete_paced`]).
    pub async fn delete_many(&self, paths: Vec<Path>) -> Result<(), StoreError> {
        self.delete_with(paths, Shrink::No).await
    }

    /// [`Store::delete_many`] for large objects that nothing reads any more (a
    /// local WAL's log files): on a local directory each is cut down a few MiB
    /// at a time before it is unlinked (see [`shrink_then_remove`]). Not for
    /// Parquet, which a query may still be reading: cutting, unlike unlinking,
    /// takes the data from under an open file.
    pub async fn delete_unread(&self, paths: Vec<Path>) -> Result<(), StoreError> {
        self.delete_with(paths, Shrink::Yes).await
    }

    async fn delete_with(&self, paths: Vec<Path>, shrink: Shrink) -> Result<(), StoreError> {
        if let Some(local) = &self.local {
            let local = Arc::clone(local);
            let started = Instant::now();
            let deleted = crate::background::run(move || local.delete_paced(&paths, shrink)).await;
            // One call for the batch, paced on purpose: not a store's latency.
            return counted_local("delete_paced", deleted, started);
        }
        let paths = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut deleted = self.inner.delete_stream(paths);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.inner)
    }
}

/// Counts a call that [`LocalDurability`] made itself rather than through
/// the [`Instrumented`] store.
fn counted_local<T>(
    operation: &str,
    result: Result<T, StoreError>,
    started: Instant,
) -> Result<T, StoreError> {
    let outcome = match &result {
        Ok(_) => StoreOutcome::Ok,
        Err(StoreError::AlreadyExists(_)) => StoreOutcome::AlreadyExists,
        Err(StoreError::NotFound(_)) => StoreOutcome::NotFound,
        Err(_) => StoreOutcome::Error,
    };
    metrics().object_store_call(operation, outcome, started.elapsed());
    result
}

/// See [`Store::local_files`].
#[derive(Debug, Clone)]
pub struct LocalFiles(Arc<LocalDurability>);

impl LocalFiles {
    /// Creates, or empties, the file behind `location` to append to, and makes
    /// its name durable as a put's is. Returns it and its path on disk.
    pub fn create_appendable(
        &self,
        location: &Path,
    ) -> Result<(std::fs::File, PathBuf), StoreError> {
        let file = self.0.fs.path_to_filesystem(location)?;
        let create = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&file)
        };
        let created = match (create(), file.parent()) {
            (Err(e), Some(dir)) if e.kind() == ErrorKind::NotFound => {
                self.0.make_dir(dir)?;
                create()
            }
            (created, _) => created,
        };
        let created = created.map_err(sync_error(&file))?;
        self.0.sync_dirs(&file)?;
        Ok((created, file))
    }
}

impl LocalDurability {
    /// Publishes a fully written, fsynced temporary file: by hard link for
    /// `Create` (atomic, and refused if the name exists), by rename for
    /// `Overwrite`. A reader never sees a partial object.
    fn put(&self, location: &Path, bytes: &[u8], mode: Put, pace: Pace) -> Result<(), StoreError> {
        let file = self.fs.path_to_filesystem(location)?;
        let temp = match Self::write_temp(&file, bytes, pace) {
            // A new directory, or one that a delete emptied and removed
            // (`with_automatic_cleanup`) meanwhile: make it, then try again.
            Err(StoreError::Sync { source, .. }) if source.kind() == ErrorKind::NotFound => {
                if let Some(dir) = file.parent() {
                    self.make_dir(dir)?;
                }
                Self::write_temp(&file, bytes, pace)?
            }
            other => other?,
        };
        let published = match mode {
            Put::Create => {
                std::fs::hard_link(&temp, &file).and_then(|()| std::fs::remove_file(&temp))
            }
            Put::Overwrite => std::fs::rename(&temp, &file),
        };
        if let Err(e) = published {
            let _ = std::fs::remove_file(&temp);
            return Err(match e.kind() {
                ErrorKind::AlreadyExists => StoreError::AlreadyExists(location.to_string()),
                _ => sync_error(&file)(e),
            });
        }
        self.sync_dirs(&file)
    }

    /// Makes a directory that is new, or that a delete emptied and removed
    /// meanwhile; its entry, and any new ancestor's, must be synced again.
    fn make_dir(&self, dir: &FsPath) -> Result<(), StoreError> {
        std::fs::create_dir_all(dir).map_err(sync_error(dir))?;
        self.synced_dirs
            .lock()
            .retain(|known| !dir.starts_with(known));
        Ok(())
    }

    /// Writes `bytes` to a new `<file>#<n>` (the first n free) and fsyncs it.
    fn write_temp(file: &FsPath, bytes: &[u8], pace: Pace) -> Result<PathBuf, StoreError> {
        let mut name = file.as_os_str().to_owned();
        name.push("#");
        for n in 1u32..=u32::MAX {
            let mut temp = name.clone();
            temp.push(n.to_string());
            let temp = PathBuf::from(temp);
            let mut f = match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
            {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(sync_error(&temp)(e)),
            };
            let written = write_paced(&mut f, bytes, pace).and_then(|()| f.sync_data());
            if let Err(e) = written {
                let _ = std::fs::remove_file(&temp);
                return Err(sync_error(&temp)(e));
            }
            return Ok(temp);
        }
        Err(sync_error(file)(ErrorKind::AlreadyExists.into()))
    }

    /// Deletes `paths` a few at a time, each batch followed by a pause three
    /// times as long as it took. A snapshot frees thousands of WAL segments at
    /// once, and each unlink waits on the disk (freeing blocks; on a `discard`
    /// mount, a device command): unpaced, that burst queues ahead of the WAL
    /// commits' fsyncs, paced it takes at most a quarter of the disk's time.
    /// Directories left empty are removed, as `with_automatic_cleanup` does.
    fn delete_paced(&self, paths: &[Path], shrink: Shrink) -> Result<(), StoreError> {
        const BATCH: usize = 16;
        for batch in paths.chunks(BATCH) {
            let started = std::time::Instant::now();
            for path in batch {
                let file = self.fs.path_to_filesystem(path)?;
                let removed = match shrink {
                    Shrink::Yes => shrink_then_remove(&file),
                    Shrink::No => std::fs::remove_file(&file),
                };
                match removed {
                    Ok(()) => self.remove_empty_parents(&file),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(sync_error(&file)(e)),
                }
            }
            std::thread::sleep(started.elapsed() * 3);
        }
        Ok(())
    }

    /// Removes the file's directory if it is now empty, then its parent, and so
    /// on below the root; stops at the first that is not empty.
    fn remove_empty_parents(&self, file: &FsPath) {
        let mut dir = file.parent();
        while let Some(d) = dir.filter(|d| d.starts_with(&self.root) && *d != self.root) {
            if std::fs::remove_dir(d).is_err() {
                return;
            }
            dir = d.parent();
        }
    }

    /// fsyncs the file's directory, and each new ancestor up to the root, so the
    /// link or rename that published the file is durable too.
    fn sync_dirs(&self, file: &FsPath) -> Result<(), StoreError> {
        let mut dir = file.parent();
        while let Some(d) = dir {
            if !d.starts_with(&self.root) {
                break;
            }
            std::fs::File::open(d)
                .and_then(|f| f.sync_all())
                .map_err(sync_error(d))?;
            // A directory synced before already had its entry made durable in its
            // parent; a new one must have its parent synced too.
            let known_before = !self.synced_dirs.lock().insert(d.to_path_buf());
            if known_before {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

/// Whether a deletion cuts a large file down before unlinking it.
#[derive(Debug, Clone, Copy)]
enum Shrink {
    Yes,
    No,
}

/// How much of a file [`shrink_then_remove`] frees at a time.
const SHRINK_STEP: u64 = 4 << 20;

/// Frees a file's blocks [`SHRINK_STEP`] at a time from its end, each step
/// followed by a pause three times as long as it took, then unlinks it. On a
/// `discard` mount, freeing blocks is a device command the next fsync waits
/// behind: unlinking a 64 MiB file at once held up a WAL commit's fdatasync
/// by about 10 ms on the development machine. (RocksDB's delete scheduler
/// truncates large files in chunks for the same reason.)
fn shrink_then_remove(file: &FsPath) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(file)?;
    let mut len = f.metadata()?.len();
    while len > SHRINK_STEP {
        let started = std::time::Instant::now();
        len -= SHRINK_STEP;
        f.set_len(len)?;
        std::thread::sleep(started.elapsed() * 3);
    }
    drop(f);
    std::fs::remove_file(file)
}

/// An I/O error of a local put, naming the file or directory it concerns.
fn sync_error(path: &FsPath) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Sync { path, source }
}

/// A large object (a snapshot's or a compaction's Parquet) goes to the disk a
/// chunk at a time, each written back before the next: with at most this much of
/// it queued at the device, a WAL commit's fsync waits milliseconds behind it
/// rather than the whole file.
const WRITEBACK_CHUNK: usize = 1 << 20;

/// How a large object shares the disk with other writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// Chunks back to back (a WAL segment: a write waits for it).
    Full,
    /// After each chunk, a pause as long as its writeback took.
    Background,
}

fn write_paced(f: &mut std::fs::File, bytes: &[u8], pace: Pace) -> std::io::Result<()> {
    use std::io::Write;
    if bytes.len() <= WRITEBACK_CHUNK {
        return f.write_all(bytes);
    }
    let mut offset = 0;
    for chunk in bytes.chunks(WRITEBACK_CHUNK) {
        let started = std::time::Instant::now();
        f.write_all(chunk)?;
        write_back(f, offset, chunk.len())?;
        offset += chunk.len();
        if pace == Pace::Background {
            std::thread::sleep(started.elapsed());
        }
    }
    Ok(())
}

/// Writes a range of the file back to the disk and waits for it (not a
/// durability point: that is the fsync after; it only paces the writes).
#[cfg(target_os = "linux")]
fn write_back(f: &std::fs::File, offset: usize, len: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: the descriptor is open for the call's length; the rest are integers.
    let done = unsafe { libc::sync_file_range(f.as_raw_fd(), offset as i64, len as i64, flags) };
    match done {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(not(target_os = "linux"))]
fn write_back(_: &std::fs::File, _: usize, _: usize) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths of the objects under `prefix`, in order.
    async fn listed(store: &Store, prefix: &str) -> Vec<String> {
        let objects = store.list(&Path::from(prefix)).await.unwrap();
        objects
            .into_iter()
            .map(|m| m.location.to_string())
            .collect()
    }

    #[tokio::test]
    async fn create_refuses_to_replace() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        let p = Path::from("a/b/c");
        store
            .put(&p, Bytes::from_static(b"1"), Put::Create)
            .await
            .unwrap();
        let again = store.put(&p, Bytes::from_static(b"2"), Put::Create).await;
        assert!(
            matches!(again, Err(StoreError::AlreadyExists(_))),
            "{again:?}"
        );
        assert_eq!(store.get(&p).await.unwrap(), Bytes::from_static(b"1"));
        assert!(dir.path().join("a/b/c").is_file());
        store
            .put(&p, Bytes::from_static(b"3"), Put::Overwrite)
            .await
            .unwrap();
        assert_eq!(store.get(&p).await.unwrap(), Bytes::from_static(b"3"));
        store.delete(&p).await.unwrap();
        store.delete(&p).await.unwrap();
        assert!(matches!(store.get(&p).await, Err(StoreError::NotFound(_))));
    }

    /// A temporary file left by a put that died keeps its name taken, is skipped
    /// by listings, and does not stop the next put; a directory that deletes
    /// emptied and removed is made again.
    #[tokio::test]
    async fn puts_step_over_leftovers_and_listings_skip_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("wal/1")).unwrap();
        std::fs::write(dir.path().join("wal/1/0001#1"), b"torn").unwrap();
        let p = Path::from("wal/1/0001");
        store
            .put(&p, Bytes::from_static(b"whole"), Put::Create)
            .await
            .unwrap();
        assert_eq!(store.get(&p).await.unwrap(), Bytes::from_static(b"whole"));
        assert_eq!(listed(&store, "wal").await, ["wal/1/0001"]);
        assert!(
            !dir.path().join("wal/1/0001#2").exists(),
            "temp file removed"
        );

        std::fs::remove_file(dir.path().join("wal/1/0001#1")).unwrap();
        store.delete(&p).await.unwrap();
        assert!(
            !dir.path().join("wal/1").exists(),
            "emptied directory removed"
        );
        store
            .put(&p, Bytes::from_static(b"again"), Put::Create)
            .await
            .unwrap();
        assert_eq!(store.get(&p).await.unwrap(), Bytes::from_static(b"again"));
    }

    /// An object larger than the writeback chunk, written back piece by piece,
    /// reads back whole (and its last, partial chunk too).
    #[tokio::test]
    async fn a_large_object_is_written_in_paced_chunks_and_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        let bytes: Vec<u8> = (0..WRITEBACK_CHUNK * 3 + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        let p = Path::from("db/table/day/file.parquet");
        store
            .put(&p, Bytes::from(bytes.clone()), Put::Overwrite)
            .await
            .unwrap();
        assert_eq!(store.get(&p).await.unwrap(), Bytes::from(bytes));
    }

    /// More than one batch of deletes: every named object goes, ones already
    /// gone are fine, the directory they emptied goes, and other objects stay.
    #[tokio::test]
    async fn delete_many_removes_the_named_objects_and_emptied_directories() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        let put = |p: String| {
            let store = store.clone();
            async move {
                let p = Path::from(p);
                store
                    .put(&p, Bytes::from_static(b"x"), Put::Create)
                    .await
                    .unwrap();
                p
            }
        };
        let mut doomed = Vec::new();
        for i in 0..40 {
            doomed.push(put(format!("wal/a/{i:04}")).await);
        }
        let kept = put("wal/b/0001".into()).await;
        doomed.push(Path::from("wal/a/9999"));
        store.delete_many(doomed).await.unwrap();
        assert_eq!(listed(&store, "wal").await, [kept.to_string()]);
        assert!(
            !dir.path().join("wal/a").exists(),
            "emptied directory removed"
        );
        assert!(dir.path().join("wal/b").exists());
    }

    /// A large unread file is cut down, then unlinked; a missing one is fine.
    #[tokio::test]
    async fn delete_unread_removes_large_files_in_steps() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        let big = Path::from("wal/a/00000000000000000001.log");
        let body = Bytes::from(vec![7u8; (2 * SHRINK_STEP + 5) as usize]);
        store.put(&big, body, Put::Create).await.unwrap();
        let kept = Path::from("wal/b/00000000000000000001.log");
        store
            .put(&kept, Bytes::from_static(b"x"), Put::Create)
            .await
            .unwrap();
        let gone = Path::from("wal/a/00000000000000000009.log");
        store.delete_unread(vec![big, gone]).await.unwrap();
        assert_eq!(listed(&store, "wal").await, [kept.to_string()]);
        assert!(
            !dir.path().join("wal/a").exists(),
            "emptied directory removed"
        );
    }
}
