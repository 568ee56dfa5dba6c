//! A log of numbered objects on the object store, appended create-only.
//!
//! The catalog's log, the files logs and their checkpoints, the series logs,
//! the WAL's segment objects and the lease claims are all such logs: entry `n`
//! is the object `<dir>/<prefix><n:020><suffix>`, written with
//! [`Put::Create`], so that of two writers (in one process or several) that
//! want the same number exactly one wins, and the other finds it taken. What
//! a writer does with a taken number is its own: read the winner's entry and
//! try the next number, rebuild its entry from fresher state, or give up. A
//! log needs no `PutMode::Update`, which the local filesystem store lacks.
//!
//! Names are fixed by the data already on disk and in buckets: this type only
//! spells them, in one place.

use bytes::Bytes;
use object_store::path::Path;

use super::{Put, Store, StoreError};

/// What a create-only append found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The entry is written (and durable, as every put is).
    Written,
    /// Another writer has an entry at that number.
    Taken,
}

/// A numbered, append-only log under one directory of the store.
#[derive(Debug, Clone)]
pub struct AppendLog {
    store: Store,
    dir: String,
    /// Before the number in an entry's name (`checkpoint-` for the series
    /// logs' checkpoints; nothing for most).
    prefix: &'static str,
    /// After the number (`.json`, `.claim`; nothing for WAL segments).
    suffix: &'static str,
}

impl AppendLog {
    /// The log whose entries are `<dir>/<n:020>`.
    pub fn new(store: Store, dir: impl Into<String>) -> Self {
        Self {
            store,
            dir: dir.into(),
            prefix: "",
            suffix: "",
        }
    }

    /// The same log with entries named `<n:020><suffix>`.
    pub fn with_suffix(mut self, suffix: &'static str) -> Self {
        self.suffix = suffix;
        self
    }

    /// The same log with entries named `<prefix><n:020>`.
    pub fn with_prefix(mut self, prefix: &'static str) -> Self {
        self.prefix = prefix;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The directory the entries are in.
    pub fn dir(&self) -> Path {
        Path::from(self.dir.as_str())
    }

    /// The path of entry `n`.
    pub fn path(&self, n: u64) -> Path {
        let (dir, prefix, suffix) = (&self.dir, self.prefix, self.suffix);
        Path::from(format!("{dir}/{prefix}{n:020}{suffix}"))
    }

    /// The number of an entry of this log from its path's file name, if it
    /// is one (other objects in the directory are not).
    pub fn number(&self, path: &Path) -> Option<u64> {
        self.number_of_name(path.filename()?)
    }

    /// The number of an entry of this log from its file name.
    pub fn number_of_name(&self, name: &str) -> Option<u64> {
        let n = name.strip_prefix(self.prefix)?.strip_suffix(self.suffix)?;
        n.parse().ok()
    }

    /// Writes entry `n` unless it exists: one try, the caller decides what a
    /// taken number means.
    pub async fn create(&self, n: u64, bytes: Bytes) -> Result<Appended, StoreError> {
        match self.store.put(&self.path(n), bytes, Put::Create).await {
            Ok(()) => Ok(Appended::Written),
            Err(StoreError::AlreadyExists(_)) => Ok(Appended::Taken),
            Err(e) => Err(e),
        }
    }

    /// Appends `entry(n)` at `n`, or, when another writer took `n`, at the
    /// number `taken(n)` says to try next (after reading what was written
    /// meanwhile, or listing the log again). Returns the number written.
    pub async fn append<E, Taken>(
        &self,
        mut n: u64,
        mut entry: impl FnMut(u64) -> Bytes,
        mut taken: impl FnMut(u64) -> Taken,
    ) -> Result<u64, E>
    where
        E: From<StoreError>,
        Taken: Future<Output = Result<u64, E>>,
    {
        loop {
            match self.create(n, entry(n)).await? {
                Appended::Written => return Ok(n),
                Appended::Taken => n = taken(n).await?,
            }
        }
    }

    /// Entry `n`, or `None` if there is none (yet, or any more).
    pub async fn get(&self, n: u64) -> Result<Option<Bytes>, StoreError> {
        match self.store.get(&self.path(n)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The entries from `n` on, in order, up to the first number that has none.
    pub async fn read_from(&self, mut n: u64) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let mut entries = Vec::new();
        while let Some(bytes) = self.get(n).await? {
            entries.push((n, bytes));
            n += 1;
        }
        Ok(entries)
    }

    /// The numbers of the entries listed now, in order.
    pub async fn numbers(&self) -> Result<Vec<u64>, StoreError> {
        let listed = self.store.list(&self.dir()).await?;
        let mut numbers: Vec<u64> = listed
            .iter()
            .filter_map(|m| self.number(&m.location))
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names are the ones data on disk already has; of two writers of one
    /// number, one wins; reading stops at the first gap.
    #[tokio::test]
    async fn entries_are_created_once_and_read_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        let log = AppendLog::new(store.clone(), "catalog/log").with_suffix(".json");
        assert_eq!(
            log.path(3).to_string(),
            "catalog/log/00000000000000000003.json"
        );
        assert_eq!(log.number(&log.path(3)), Some(3));
        let other = log.clone().with_prefix("checkpoint-");
        assert_eq!(log.number(&other.path(3)), None);
        assert_eq!(other.number(&log.path(3)), None);

        let one = Bytes::from_static(b"1");
        assert_eq!(log.create(0, one.clone()).await.unwrap(), Appended::Written);
        assert_eq!(log.create(0, one.clone()).await.unwrap(), Appended::Taken);
        // Taken: try the next one.
        let at = log
            .append(
                0,
                |n| Bytes::from(n.to_string()),
                |n| async move { Ok::<_, StoreError>(n + 1) },
            )
            .await
            .unwrap();
        assert_eq!(at, 1);
        assert_eq!(log.get(1).await.unwrap(), Some(Bytes::from_static(b"1")));
        assert_eq!(log.create(3, one.clone()).await.unwrap(), Appended::Written);
        let read = log.read_from(0).await.unwrap();
        let read: Vec<(u64, &[u8])> = read.iter().map(|(n, b)| (*n, &b[..])).collect();
        assert_eq!(read, [(0, &b"1"[..]), (1, b"1")]);
        assert_eq!(log.get(2).await.unwrap(), None);
        store
            .put(&other.path(9), one, Put::Overwrite)
            .await
            .unwrap();
        assert_eq!(log.numbers().await.unwrap(), [0, 1, 3]);
        assert_eq!(other.numbers().await.unwrap(), [9]);
    }
}
