//! The object store, plus the durability object_store 0.13 does not give on a local disk.
//!
//! On S3 a successful PUT is durable. `LocalFileSystem` writes a temporary file and
//! renames it, but never fsyncs: after a power cut or `kill -9` of the kernel's page
//! cache owner the object could be empty. [`Store::put`] therefore fsyncs the file and
//! the directories that name it before it returns.

use std::collections::HashSet;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parking_lot::Mutex;

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

/// Tracks the directories already fsynced, so a put syncs only what is new.
#[derive(Debug)]
struct LocalDurability {
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
        let fs = LocalFileSystem::new_with_prefix(&root)?.with_automatic_cleanup(true);
        Ok(Self {
            inner: Arc::new(fs),
            local: Some(Arc::new(LocalDurability {
                root,
                synced_dirs: Mutex::new(HashSet::new()),
            })),
        })
    }

    /// A store with no local durability work to do (S3, or in-memory in tests).
    pub fn remote(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner, local: None }
    }

    /// The local directory behind the store, if it is one.
    pub fn local_root(&self) -> Option<&FsPath> {
        self.local.as_deref().map(|l| l.root.as_path())
    }

    /// Writes an object and returns only once it would survive a crash.
    pub async fn put(&self, path: &Path, bytes: Bytes, mode: Put) -> Result<(), StoreError> {
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
        if let Some(local) = &self.local {
            let local = Arc::clone(local);
            let file = local.root.join(path.as_ref());
            tokio::task::spawn_blocking(move || local.sync(&file))
                .await
                .map_err(|e| StoreError::Sync {
                    path: PathBuf::from(path.as_ref()),
                    source: std::io::Error::other(e),
                })??;
        }
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
    pub async fn delete_many(&self, paths: Vec<Path>) -> Result<(), StoreError> {
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

impl LocalDurability {
    /// fsyncs the file, its directory, and each new ancestor up to the root, so the
    /// rename that published the file is durable too.
    fn sync(&self, file: &FsPath) -> Result<(), StoreError> {
        let sync = |p: &FsPath| {
            std::fs::File::open(p)
                .and_then(|f| f.sync_all())
                .map_err(|source| StoreError::Sync {
                    path: p.to_path_buf(),
                    source,
                })
        };
        sync(file)?;
        let mut dir = file.parent();
        while let Some(d) = dir {
            if !d.starts_with(&self.root) {
                break;
            }
            sync(d)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
