//! The catalog: databases, tables, column types, tokens and Parquet files, kept on
//! the object store as append-only logs of numbered JSON objects.
//!
//! ```text
//! catalog/log/00000000000000000000.json      schema changes and tokens (shared)
//! catalog/files/<ingester-id>/000….json      Parquet registrations (one writer each)
//! catalog/files-checkpoint/000….json         the files logs folded up to a position
//! ```
//!
//! Every entry is written with `PutMode::Create` (each log is a
//! [`crate::store::AppendLog`]): the first writer of number N wins, a loser
//! reloads and retries. That needs no `PutMode::Update`, which the local
//! filesystem store lacks. File registrations are frequent and go to a log per
//! ingester, so they never contend with each other or with schema changes. Paths
//! use ids, never names (a database name may contain `/`).
//!
//! In parts: [`schema`] (databases, tables, columns, retention and quotas),
//! [`tokens`], both in the shared log that [`Catalog`] here reads and appends
//! to; and [`files`], the file manifest and the WAL coverage of each ingester,
//! which [`Catalog`] holds beside the schema and passes calls on to.

mod files;
mod schema;
mod tokens;

pub use files::{FileManifest, ParquetFile};
pub use schema::{
    CatalogState, ColumnDef, Database, DbRef, SchemaLimits, Table, TableColumns, table_columns,
};
pub use tokens::{Permission, TokenRecord};

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use parking_lot::RwLock;
use serde::Deserialize;

use crate::metrics::{CatalogLog, metrics};
use crate::schema::ColumnType;
use crate::store::{AppendLog, Appended, Store, StoreError};
use schema::{LogEntry, Op};

/// Version of the JSON entries this build reads up to; newer ones are refused.
/// An entry carries the lowest version that can read it: 1 for what the first
/// release understood (so a rolling upgrade's older readers go on reading it),
/// 2 for the lifecycle operations (retention, deletion, revocation, removed
/// files), which an older reader refuses by name instead of misreading.
pub const FORMAT_VERSION: u32 = 2;
const LIFECYCLE_VERSION: u32 = 2;
const FIRST_VERSION: u32 = 1;

pub type DbId = u32;
pub type TableId = u32;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("database \"{0}\" not found")]
    DatabaseNotFound(String),
    #[error("database \"{0}\" already exists")]
    DatabaseExists(String),
    #[error("token \"{0}\" not found")]
    TokenNotFound(String),
    #[error("column \"{column}\" of table \"{table}\" is {existing}, the write has {new}")]
    Conflict {
        table: String,
        column: String,
        existing: ColumnType,
        new: ColumnType,
    },
    #[error(
        "limit reached: {what} may number at most {limit}, there are {current}; cannot add {adding}"
    )]
    LimitExceeded {
        what: String,
        limit: usize,
        current: usize,
        adding: String,
    },
    #[error("catalog storage: {0}")]
    Store(#[from] StoreError),
    #[error("catalog entry {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(
        "catalog entry {path} has format version {version}; this build reads up to {FORMAT_VERSION}"
    )]
    UnsupportedVersion { path: String, version: u32 },
}

impl CatalogError {
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            Self::DatabaseNotFound(_) | Self::TokenNotFound(_) => ErrorKind::NotFound,
            Self::DatabaseExists(_) => ErrorKind::AlreadyExists,
            Self::Conflict { .. } => ErrorKind::Invalid,
            Self::LimitExceeded { .. } => ErrorKind::LimitExceeded,
            Self::Store(_) => ErrorKind::Unavailable,
            Self::Corrupt { .. } | Self::UnsupportedVersion { .. } => ErrorKind::Internal,
        }
    }
}

/// What a write checks its lines against.
impl Database {
    /// The type of `column` of `table`, if both exist.
    pub fn column_type(&self, table: &str, column: &str) -> Option<ColumnType> {
        self.table(table).and_then(|t| t.column_type(column))
    }

    /// Tables the database has (for its table quota).
    pub fn table_count(&self) -> usize {
        self.tables.len()
    }

    /// Columns `table` has, `time` included; `None` if it does not exist.
    pub fn column_count(&self, table: &str) -> Option<usize> {
        self.table(table).map(|t| table_columns(t).count())
    }
}

#[derive(Debug)]
pub struct Catalog {
    store: Store,
    /// The shared log of schema changes and tokens.
    log: AppendLog,
    state: RwLock<Arc<CatalogState>>,
    /// Serialises this process's commits; other processes are handled by `Create`.
    commit: tokio::sync::Mutex<()>,
    /// The Parquet files and the WAL each covers, from the files logs.
    files: FileManifest,
}

fn decode<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, CatalogError> {
    #[derive(Deserialize)]
    struct Version {
        format_version: u32,
    }
    let corrupt = |e: serde_json::Error| CatalogError::Corrupt {
        path: path.to_string(),
        reason: e.to_string(),
    };
    let v: Version = serde_json::from_slice(bytes).map_err(corrupt)?;
    if v.format_version > FORMAT_VERSION {
        return Err(CatalogError::UnsupportedVersion {
            path: path.to_string(),
            version: v.format_version,
        });
    }
    serde_json::from_slice(bytes).map_err(corrupt)
}

impl Catalog {
    /// The object store the catalog lives on.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reads the whole catalog from the store.
    pub async fn load(store: Store) -> Result<Arc<Self>, CatalogError> {
        let catalog = Self {
            log: AppendLog::new(store.clone(), "catalog/log").with_suffix(".json"),
            files: FileManifest::new(store.clone()),
            store,
            state: RwLock::new(Arc::new(CatalogState::default())),
            commit: tokio::sync::Mutex::new(()),
        };
        catalog.refresh().await?;
        catalog.files.load().await?;
        Ok(Arc::new(catalog))
    }

    pub fn state(&self) -> Arc<CatalogState> {
        Arc::clone(&self.state.read())
    }

    /// Applies the shared log entries written since the last look, by any process.
    pub async fn refresh(&self) -> Result<Arc<CatalogState>, CatalogError> {
        let refreshed = self.refresh_inner().await;
        let outcome = match &refreshed {
            Ok((_, true)) => "changed",
            Ok((_, false)) => "unchanged",
            Err(_) => "error",
        };
        metrics()
            .catalog_refreshes
            .with_label_values(&[outcome])
            .inc();
        refreshed.map(|(state, _)| state)
    }

    /// [`Self::refresh`], and whether it found new entries.
    async fn refresh_inner(&self) -> Result<(Arc<CatalogState>, bool), CatalogError> {
        let current = self.state();
        let mut next = current.next_entry;
        let mut new_ops = Vec::new();
        for (n, bytes) in self.log.read_from(next).await? {
            let entry: LogEntry = decode(&self.log.path(n), &bytes)?;
            new_ops.extend(entry.ops);
            next = n + 1;
        }
        if next == current.next_entry {
            return Ok((current, false));
        }
        // Entries are immutable, so `current` plus the entries read is right even if
        // another task moved the state meanwhile: keep whichever is further along.
        let mut state = (*current).clone();
        for op in new_ops {
            state.apply(op);
        }
        state.next_entry = next;
        let mut guard = self.state.write();
        if guard.next_entry < next {
            *guard = Arc::new(state);
        }
        Ok((Arc::clone(&guard), true))
    }

    /// Appends one entry built from the current state. `build` is called again on
    /// the fresh state whenever another writer took the entry number first; it
    /// returns no ops when there is nothing left to do.
    async fn commit<F>(&self, mut build: F) -> Result<Arc<CatalogState>, CatalogError>
    where
        F: FnMut(&CatalogState) -> Result<Vec<Op>, CatalogError>,
    {
        // Nearly every write finds its schema already there: that check needs
        // a fresh state, not the lock that would queue every write behind one.
        let state = self.refresh().await?;
        if build(&state)?.is_empty() {
            return Ok(state);
        }
        let _guard = self.commit.lock().await;
        loop {
            let state = self.refresh().await?;
            let ops = build(&state)?;
            if ops.is_empty() {
                return Ok(state);
            }
            let entry = LogEntry {
                format_version: ops.iter().map(Op::version).max().unwrap_or(FIRST_VERSION),
                ops,
            };
            let bytes = serde_json::to_vec(&entry).expect("catalog entries serialize");
            // Taken: another writer's entry came first; build again on it.
            let appended = self.log.create(state.next_entry, Bytes::from(bytes)).await;
            metrics().catalog_commit(CatalogLog::Schema, appended.is_ok());
            if appended? == Appended::Taken {
                metrics().catalog_conflict(CatalogLog::Schema);
                continue;
            }
            let mut next = (*state).clone();
            for op in entry.ops {
                next.apply(op);
            }
            next.next_entry += 1;
            let next = Arc::new(next);
            let mut guard = self.state.write();
            if guard.next_entry < next.next_entry {
                *guard = Arc::clone(&next);
            }
            return Ok(next);
        }
    }

    /// The file manifest: registered files and WAL coverage. The methods
    /// below pass on to it.
    pub fn manifest(&self) -> &FileManifest {
        &self.files
    }

    /// See [`FileManifest::register_files`].
    pub async fn register_files(
        &self,
        ingester_id: &str,
        covered_segment: u64,
        max_sequence: u64,
        files: Vec<ParquetFile>,
    ) -> Result<(), CatalogError> {
        (self.files)
            .register_files(ingester_id, covered_segment, max_sequence, files)
            .await
    }

    /// See [`FileManifest::remove_files`].
    pub async fn remove_files(
        &self,
        writer: &str,
        paths: Vec<String>,
        now_ns: i64,
    ) -> Result<(), CatalogError> {
        self.files.remove_files(writer, paths, now_ns).await
    }

    /// See [`FileManifest::replace_files`].
    pub async fn replace_files(
        &self,
        writer: &str,
        files: Vec<ParquetFile>,
        removed: Vec<String>,
        now_ns: i64,
    ) -> Result<(), CatalogError> {
        self.files
            .replace_files(writer, files, removed, now_ns)
            .await
    }

    /// See [`FileManifest::removed_files`].
    pub fn removed_files(&self, before_ns: i64) -> Vec<String> {
        self.files.removed_files(before_ns)
    }

    /// See [`FileManifest::refresh_files_of`].
    pub async fn refresh_files_of(&self, ingester_id: &str) -> Result<(), CatalogError> {
        self.files.refresh_files_of(ingester_id).await
    }

    /// See [`FileManifest::covered_segment`].
    pub fn covered_segment(&self, ingester_id: &str) -> Option<u64> {
        self.files.covered_segment(ingester_id)
    }

    /// See [`FileManifest::max_sequence`].
    pub fn max_sequence(&self) -> u64 {
        self.files.max_sequence()
    }

    /// See [`FileManifest::files`].
    pub fn files(&self) -> Vec<ParquetFile> {
        self.files.files()
    }

    /// See [`FileManifest::refresh_file_logs`].
    pub async fn refresh_file_logs(&self) -> Result<(), CatalogError> {
        self.files.refresh_file_logs().await
    }

    /// See [`FileManifest::checkpoint_files`].
    pub async fn checkpoint_files(
        &self,
        pruned_before_ns: i64,
        deleted: impl Fn(&str) -> bool,
        min_entries: u64,
    ) -> Result<Option<u64>, CatalogError> {
        (self.files)
            .checkpoint_files(pruned_before_ns, deleted, min_entries)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn catalog(dir: &std::path::Path) -> Arc<Catalog> {
        Catalog::load(Store::local(dir).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn schema_survives_reload_and_conflicts_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(dir.path()).await;
        c.create_database("db/rp").await.unwrap();
        let cols = vec![("room", ColumnType::Tag), ("temp", ColumnType::Float)];
        c.ensure_schema(
            "db/rp",
            &[TableColumns {
                table: "home",
                columns: cols,
            }],
            SchemaLimits::UNLIMITED,
        )
        .await
        .unwrap();

        let again = catalog(dir.path()).await;
        let db = again.state().database("db/rp").cloned().unwrap();
        assert_eq!(db.column_type("home", "temp"), Some(ColumnType::Float));
        assert_eq!(db.column_type("home", "room"), Some(ColumnType::Tag));

        let bad = vec![("temp", ColumnType::Integer)];
        let err = again
            .ensure_schema(
                "db/rp",
                &[TableColumns {
                    table: "home",
                    columns: bad,
                }],
                SchemaLimits::UNLIMITED,
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "column \"temp\" of table \"home\" is float, the write has integer"
        );
        // Paths use ids, never names.
        assert!(
            dir.path()
                .join("catalog/log/00000000000000000000.json")
                .is_file()
        );
    }

    #[tokio::test]
    async fn table_and_column_limits_name_the_counts() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(dir.path()).await;
        c.create_database("db").await.unwrap();
        let limits = SchemaLimits {
            max_tables: 1,
            max_columns: 2,
            max_series: usize::MAX,
        };
        let t = |table, columns| TableColumns { table, columns };
        c.ensure_schema(
            "db",
            &[t(
                "a",
                vec![("f", ColumnType::Float), ("time", ColumnType::Time)],
            )],
            limits,
        )
        .await
        .unwrap();
        let err = c
            .ensure_schema("db", &[t("b", vec![("f", ColumnType::Float)])], limits)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "limit reached: tables in database \"db\" may number at most 1, there are 1; cannot add table \"b\""
        );
        let err = c
            .ensure_schema("db", &[t("a", vec![("g", ColumnType::Float)])], limits)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "limit reached: columns in table \"a\" may number at most 2, there are 2; cannot add 1 new columns"
        );
    }

    #[tokio::test]
    async fn concurrent_writers_both_land() {
        let dir = tempfile::tempdir().unwrap();
        let a = catalog(dir.path()).await;
        let b = catalog(dir.path()).await;
        a.create_database("one").await.unwrap();
        // b's view is stale: its commit loses entry 0, reloads, and takes entry 1.
        b.create_database("two").await.unwrap();
        let fresh = catalog(dir.path()).await.state();
        assert!(fresh.database("one").is_some() && fresh.database("two").is_some());
        assert_ne!(
            fresh.database("one").unwrap().id,
            fresh.database("two").unwrap().id
        );
    }

    #[tokio::test]
    async fn a_catalog_of_the_first_release_loads_and_lifecycle_entries_are_marked() {
        // As the first release wrote them (format 1).
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("catalog/log");
        let files = dir.path().join("catalog/files/ing");
        std::fs::create_dir_all(&log).unwrap();
        std::fs::create_dir_all(&files).unwrap();
        std::fs::write(
            log.join("00000000000000000000.json"),
            br#"{"format_version":1,"ops":[{"op":"create_database","id":1,"name":"db"},{"op":"create_table","database":1,"id":1,"name":"m"},{"op":"add_columns","database":1,"table":1,"columns":[{"name":"v","type":"float"}]}]}"#,
        )
        .unwrap();
        std::fs::write(
            files.join("00000000000000000000.json"),
            br#"{"format_version":1,"ingester_id":"ing","covered_segment":4,"files":[{"path":"1/1/2024-01-01/a.parquet","database":1,"table":1,"partition":"2024-01-01","min_time":1,"max_time":2,"rows":2,"size_bytes":100}]}"#,
        )
        .unwrap();
        let store = Store::local(dir.path()).unwrap();
        let upgraded = Catalog::load(store.clone()).await.unwrap();
        let db = upgraded.state().database("db").cloned().unwrap();
        assert_eq!(
            db.table("m").unwrap().column_type("v"),
            Some(ColumnType::Float)
        );
        assert_eq!(upgraded.covered_segment("ing"), Some(4));
        assert_eq!(upgraded.files().len(), 1);
        // What the previous release can read stays at version 1; lifecycle
        // entries are version 2, which it refuses by name.
        upgraded.create_database("other").await.unwrap();
        upgraded.set_retention("db", Some(1)).await.unwrap();
        let version = |n: u64| {
            let text = std::fs::read_to_string(log.join(format!("{n:020}.json"))).unwrap();
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["format_version"].clone()
        };
        assert_eq!((version(1), version(2)), (1.into(), 2.into()));
        let reread = Catalog::load(store).await.unwrap();
        assert_eq!(reread.state().database("db").unwrap().retention_ns, Some(1));
    }

    #[tokio::test]
    async fn future_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("catalog/log")).unwrap();
        std::fs::write(
            dir.path().join("catalog/log/00000000000000000000.json"),
            br#"{"format_version":99,"ops":[]}"#,
        )
        .unwrap();
        let err = Catalog::load(Store::local(dir.path()).unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(err, CatalogError::UnsupportedVersion { version: 99, .. }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "catalog entry catalog/log/00000000000000000000.json has format version 99; this build reads up to 2"
        );
    }
}
