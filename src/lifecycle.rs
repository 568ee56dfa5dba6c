//! The data lifecycle on the object store, run in rounds by every ingester:
//!
//! 1. retention: whole days of a database older than its retention period
//!    leave the catalog (queries hide such points at once; writes refuse them);
//! 2. deletion: a soft-deleted database's files leave the catalog at once, and
//!    its objects go once `purge_grace` has passed, then the database itself;
//! 3. removed files' objects are deleted after `file_grace`, so a query that
//!    listed them just before their removal can still read them;
//! 4. the files logs are folded into a checkpoint (their entries deleted, and
//!    removals whose objects are gone forgotten), so they stay bounded.
//!
//! Every step is idempotent (removing a removed file, deleting a deleted
//! object), so several processes may run rounds at once without a lease.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use object_store::path::Path;

use crate::catalog::{Catalog, CatalogError, Database, ParquetFile};
use crate::clock::SharedClock;
use crate::store::{Store, StoreError};

/// The files log name this task writes its removals under.
const WRITER: &str = "lifecycle";

/// Files log entries added since the last checkpoint that make a round write
/// the next one (a load reads each entry after the newest checkpoint).
const CHECKPOINT_ENTRIES: u64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy, clap::Args)]
pub struct LifecycleConfig {
    /// For ingesters: time between rounds of retention and deletion.
    #[arg(long = "lifecycle-interval", id = "lifecycle_interval", env = "INFLOW_LIFECYCLE_INTERVAL", value_parser = humantime::parse_duration, default_value = "1m")]
    pub interval: Duration,
    /// How long a file dropped from the catalog (retention) stays readable,
    /// for queries planned before the drop.
    #[arg(long, env = "INFLOW_FILE_GRACE", value_parser = humantime::parse_duration, default_value = "10m")]
    pub file_grace: Duration,
    /// How long a deleted database's data stays before it is purged.
    #[arg(long, env = "INFLOW_PURGE_GRACE", value_parser = humantime::parse_duration, default_value = "24h")]
    pub purge_grace: Duration,
}

/// What one round did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub files_removed: usize,
    pub objects_deleted: usize,
    pub databases_purged: usize,
    /// The files checkpoint this round wrote.
    pub checkpoint: Option<u64>,
}

pub struct Lifecycle {
    catalog: Arc<Catalog>,
    store: Store,
    config: LifecycleConfig,
    /// Objects of removed files this process deleted already (not asked to
    /// delete them again); forgotten with the removal.
    deleted: HashSet<String>,
    /// Says when a round runs (retention cutoffs, graces).
    clock: SharedClock,
}

impl Lifecycle {
    pub fn new(catalog: Arc<Catalog>, store: Store, config: LifecycleConfig) -> Self {
        Self {
            catalog,
            store,
            config,
            deleted: HashSet::new(),
            clock: crate::clock::system(),
        }
    }

    /// These rounds judging time by `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Runs rounds until the task is aborted; a failed round is logged and
    /// the next one tries again.
    pub async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.round(self.clock.now_ns()).await {
                Ok(round) if round != Round::default() => {
                    tracing::info!(?round, "lifecycle round");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "lifecycle round failed; retrying next round"),
            }
        }
    }

    pub async fn round(&mut self, now_ns: i64) -> Result<Round, LifecycleError> {
        let state = self.catalog.refresh().await?;
        self.catalog.refresh_file_logs().await?;
        let mut round = Round::default();

        // 1 and 2: files past retention, and every file of a deleted database.
        let files = self.catalog.files();
        let mut removed = Vec::new();
        for db in state.databases() {
            if let Some(cutoff) = db.retention_cutoff(now_ns) {
                removed.extend(
                    files
                        .iter()
                        .filter(|f| f.database == db.id && day_end(f).is_some_and(|e| e <= cutoff))
                        .map(|f| f.path.clone()),
                );
            }
        }
        let deleted: Vec<&Arc<Database>> = state.deleted_databases().collect();
        for db in &deleted {
            removed.extend(
                files
                    .iter()
                    .filter(|f| f.database == db.id)
                    .map(|f| f.path.clone()),
            );
        }
        round.files_removed = removed.len();
        self.catalog.remove_files(WRITER, removed, now_ns).await?;

        // 3: objects of files removed a grace period ago.
        let grace = i64::try_from(self.config.file_grace.as_nanos()).unwrap_or(i64::MAX);
        for path in self.catalog.removed_files(now_ns.saturating_sub(grace)) {
            if self.deleted.contains(&path) {
                continue;
            }
            self.store.delete(&Path::from(path.as_str())).await?;
            self.deleted.insert(path);
            round.objects_deleted += 1;
        }

        // 4: fold the files logs; removals whose objects this process deleted
        // leave the removed set, then this process's memory of them.
        let gone = &self.deleted;
        round.checkpoint = self
            .catalog
            .checkpoint_files(
                now_ns.saturating_sub(grace),
                |path| gone.contains(path),
                CHECKPOINT_ENTRIES,
            )
            .await?;
        let removed: HashSet<String> = self.catalog.removed_files(i64::MAX).into_iter().collect();
        self.deleted.retain(|path| removed.contains(path));

        // 2, later: a deleted database's objects, then the database.
        let purge = i64::try_from(self.config.purge_grace.as_nanos()).unwrap_or(i64::MAX);
        for db in deleted {
            let Some(at) = db.deleted_at_ns else { continue };
            if at.saturating_add(purge) > now_ns {
                continue;
            }
            for object in self.store.list(&Path::from(db.id.to_string())).await? {
                self.store.delete(&object.location).await?;
                round.objects_deleted += 1;
            }
            self.catalog.purge_database(db.id).await?;
            round.databases_purged += 1;
            tracing::info!(database = %db.name, id = db.id, "deleted database purged");
        }
        Ok(round)
    }
}

/// The end of a file's day partition (the next midnight, UTC), in ns.
fn day_end(file: &ParquetFile) -> Option<i64> {
    let day = NaiveDate::parse_from_str(&file.partition, "%Y-%m-%d").ok()?;
    day.succ_opt()?
        .and_hms_opt(0, 0, 0)?
        .and_utc()
        .timestamp_nanos_opt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{SchemaLimits, TableColumns};
    use crate::schema::ColumnType;
    use crate::store::Put;
    use bytes::Bytes;

    const DAY: i64 = 86_400_000_000_000;
    /// 2024-03-10T00:00:00Z
    const MARCH_10: i64 = 1_710_028_800_000_000_000;

    fn file(db: u32, day: &str, path: &str) -> ParquetFile {
        ParquetFile {
            path: path.into(),
            database: db,
            table: 1,
            partition: day.into(),
            min_time: 0,
            max_time: 0,
            rows: 1,
            size_bytes: 1,
        }
    }

    async fn setup() -> (tempfile::TempDir, Store, Arc<Catalog>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        let catalog = Catalog::load(store.clone()).await.unwrap();
        (dir, store, catalog)
    }

    async fn put(store: &Store, path: &str) {
        store
            .put(&Path::from(path), Bytes::from_static(b"x"), Put::Overwrite)
            .await
            .unwrap();
    }

    /// Days entirely before the cutoff go, the day holding it stays; objects
    /// are deleted only after the file grace; another process sees the same.
    #[tokio::test]
    async fn retention_drops_whole_days_then_their_objects() {
        let (_dir, store, catalog) = setup().await;
        let db = catalog.create_database_strict("db", None).await.unwrap();
        let columns = [TableColumns {
            table: "m",
            columns: vec![("v", ColumnType::Float), ("time", ColumnType::Time)],
        }];
        catalog
            .ensure_schema("db", &columns, SchemaLimits::UNLIMITED)
            .await
            .unwrap();
        let days = ["2024-03-08", "2024-03-09", "2024-03-10"];
        let mut files = Vec::new();
        for d in days {
            let path = format!("{db}/1/{d}/a.parquet");
            put(&store, &path).await;
            files.push(file(db, d, &path));
        }
        catalog.register_files("ing", 1, 0, files).await.unwrap();
        // One day of retention at 03-10 12:00: the cutoff is 03-09 12:00, so
        // 03-08 goes; 03-09 still holds points inside the period.
        catalog.set_retention("db", Some(DAY)).await.unwrap();
        let now = MARCH_10 + DAY / 2;
        let config = LifecycleConfig {
            interval: Duration::from_secs(1),
            file_grace: Duration::from_secs(60),
            purge_grace: Duration::from_secs(3600),
        };
        let mut lifecycle = Lifecycle::new(Arc::clone(&catalog), store.clone(), config);
        let round = lifecycle.round(now).await.unwrap();
        assert_eq!((round.files_removed, round.objects_deleted), (1, 0));
        let left: Vec<String> = catalog.files().into_iter().map(|f| f.partition).collect();
        assert_eq!(left, ["2024-03-09", "2024-03-10"]);
        assert!(
            store
                .head(&Path::from(format!("{db}/1/2024-03-08/a.parquet")))
                .await
                .is_ok()
        );

        let other = Catalog::load(store.clone()).await.unwrap();
        assert_eq!(other.files().len(), 2, "the removal is in the catalog");

        let round = lifecycle.round(now + 61_000_000_000).await.unwrap();
        assert_eq!((round.files_removed, round.objects_deleted), (0, 1));
        assert!(
            store
                .head(&Path::from(format!("{db}/1/2024-03-08/a.parquet")))
                .await
                .is_err()
        );
    }

    /// A deleted database's files leave the catalog at once; after the purge
    /// grace its objects and the database itself are gone, and its name may
    /// be used again with a new id.
    #[tokio::test]
    async fn deleted_databases_are_purged_after_the_grace() {
        let (_dir, store, catalog) = setup().await;
        let db = catalog.create_database_strict("gone", None).await.unwrap();
        let path = format!("{db}/1/2024-03-10/a.parquet");
        put(&store, &path).await;
        catalog
            .register_files("ing", 1, 0, vec![file(db, "2024-03-10", &path)])
            .await
            .unwrap();
        catalog.delete_database("gone", MARCH_10).await.unwrap();
        assert!(catalog.state().database("gone").is_none());
        assert!(catalog.state().was_deleted("gone"));
        let config = LifecycleConfig {
            interval: Duration::from_secs(1),
            file_grace: Duration::from_secs(3600),
            purge_grace: Duration::from_secs(60),
        };
        let mut lifecycle = Lifecycle::new(Arc::clone(&catalog), store.clone(), config);
        let round = lifecycle.round(MARCH_10 + 1).await.unwrap();
        assert_eq!((round.files_removed, round.databases_purged), (1, 0));
        assert!(catalog.files().is_empty());
        let round = lifecycle.round(MARCH_10 + 61_000_000_000).await.unwrap();
        assert_eq!(round.databases_purged, 1);
        assert!(
            store
                .list(&Path::from(db.to_string()))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(catalog.state().deleted_databases().count(), 0);
        assert!(catalog.state().was_deleted("gone"));
        let again = catalog.create_database_strict("gone", None).await.unwrap();
        assert!(again > db, "ids are not reused");
        assert!(!catalog.state().was_deleted("gone"));
    }
    /// Many rounds of snapshots and retention: the objects under the files
    /// logs and checkpoints stay bounded (each round's checkpoint deletes the
    /// entries it covers), the removed set forgets files whose objects are
    /// gone, and a fresh load sees the same files as the long-running process.
    #[tokio::test]
    async fn files_log_objects_stay_bounded_across_rounds() {
        let (_dir, store, catalog) = setup().await;
        let db = catalog.create_database_strict("db", None).await.unwrap();
        catalog.set_retention("db", Some(DAY)).await.unwrap();
        let config = LifecycleConfig {
            interval: Duration::from_secs(1),
            file_grace: Duration::from_secs(60),
            purge_grace: Duration::from_secs(3600),
        };
        let mut lifecycle = Lifecycle::new(Arc::clone(&catalog), store.clone(), config);
        let count = |prefix: &'static str| {
            let store = store.clone();
            async move { store.list(&Path::from(prefix)).await.unwrap().len() }
        };
        let mut counts = Vec::new();
        for round in 0..40i64 {
            // Each round: an old day (dropped by retention) and a current one.
            let now = MARCH_10 + round * 120_000_000_000;
            for (i, day) in ["2024-03-01", "2024-03-10"].into_iter().enumerate() {
                let path = format!("{db}/1/{day}/r{round}-{i}.parquet");
                put(&store, &path).await;
                catalog
                    .register_files("ing", round as u64, 0, vec![file(db, day, &path)])
                    .await
                    .unwrap();
            }
            lifecycle.round(now).await.unwrap();
            let objects = count("catalog/files").await + count("catalog/files-checkpoint").await;
            counts.push(objects);
        }
        assert!(
            counts.iter().all(|&c| c <= 20),
            "files log objects per round: {counts:?}"
        );
        assert!(
            catalog.removed_files(i64::MAX).len() <= 2,
            "removed set: {:?}",
            catalog.removed_files(i64::MAX)
        );
        let fresh = Catalog::load(store.clone()).await.unwrap();
        let paths = |c: &Catalog| {
            let mut p: Vec<String> = c.files().into_iter().map(|f| f.path).collect();
            p.sort();
            p
        };
        assert_eq!(paths(&fresh), paths(&catalog));
        assert_eq!(paths(&fresh).len(), 40, "every current day's file stays");
        assert_eq!(fresh.covered_segment("ing"), Some(39));
    }
}
