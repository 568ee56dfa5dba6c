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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::lineproto::SchemaLookup;
use crate::schema::{ColumnType, TIME_COLUMN};
use crate::store::{AppendLog, Appended, Store, StoreError};

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
}

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Permission {
    Admin,
    /// One database, by id: a database deleted and created again under the
    /// same name is another database, which this permission does not reach.
    /// `name` is what the token was made for (shown, and checked first so a
    /// token learns nothing of databases it never named).
    Database {
        name: String,
        /// Absent in entries of releases before ids were stored: the log
        /// binds such a permission, as it is read, to the database that had
        /// the name when the token was created (see [`CatalogState::apply`]).
        /// Older readers ignore the field and go on matching by name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        database_id: Option<DbId>,
        read: bool,
        write: bool,
    },
}

impl Permission {
    /// A permission on the database `name`; its id is set when the token is stored.
    pub fn database(name: impl Into<String>, read: bool, write: bool) -> Self {
        Self::Database {
            name: name.into(),
            database_id: None,
            read,
            write,
        }
    }
}

/// A database as writes and reads carry it below the edge: the id keys WAL
/// entries, buffers and files (a name can be reused after a delete, an id
/// never is); the name is for logs and for peers of older releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbRef<'a> {
    pub id: DbId,
    pub name: &'a str,
}

/// A token as stored: only its SHA-256 hash, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: u64,
    pub hash: String,
    pub permissions: Vec<Permission>,
    #[serde(default)]
    pub description: String,
    pub created_at_ns: i64,
    #[serde(default)]
    pub expires_at_ns: Option<i64>,
}

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
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    CreateDatabase {
        id: DbId,
        name: String,
    },
    CreateTable {
        database: DbId,
        id: TableId,
        name: String,
    },
    AddColumns {
        database: DbId,
        table: TableId,
        columns: Vec<ColumnDef>,
    },
    CreateToken(TokenRecord),
    /// Points older than `retention_ns` are refused and dropped by whole days.
    SetRetention {
        database: DbId,
        retention_ns: Option<i64>,
    },
    /// Soft delete: the name is free at once, the data is purged after a grace.
    DeleteDatabase {
        database: DbId,
        at_ns: i64,
    },
    /// The objects of a deleted database are gone.
    PurgeDatabase {
        database: DbId,
    },
    RevokeToken {
        id: u64,
    },
    /// The database's own quotas; `None` leaves the server-wide one.
    SetLimits {
        database: DbId,
        max_tables: Option<usize>,
        max_columns: Option<usize>,
        /// Written only when set, so a release before series quotas reads the op.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_series: Option<usize>,
    },
}

impl Op {
    /// The lowest format version that reads this op.
    fn version(&self) -> u32 {
        match self {
            Self::CreateDatabase { .. }
            | Self::CreateTable { .. }
            | Self::AddColumns { .. }
            | Self::CreateToken(_) => FIRST_VERSION,
            Self::SetRetention { .. }
            | Self::DeleteDatabase { .. }
            | Self::PurgeDatabase { .. }
            | Self::RevokeToken { .. }
            | Self::SetLimits { .. } => LIFECYCLE_VERSION,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct LogEntry {
    format_version: u32,
    ops: Vec<Op>,
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
/// Written by [`Catalog::checkpoint_files`] with `Create` under the next
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
    /// out of `removed` (see [`Catalog::checkpoint_files`]).
    pruned_before_ns: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointLog {
    next_entry: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    covered_segment: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub id: TableId,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    index: HashMap<String, usize>,
}

impl Table {
    pub fn column_type(&self, name: &str) -> Option<ColumnType> {
        self.index.get(name).map(|&i| self.columns[i].ty)
    }
}

#[derive(Debug, Clone)]
pub struct Database {
    pub id: DbId,
    pub name: String,
    tables: BTreeMap<TableId, Arc<Table>>,
    table_ids: HashMap<String, TableId>,
    /// Points older than now minus this are refused, hidden and dropped.
    pub retention_ns: Option<i64>,
    /// When it was (soft) deleted: hidden by name, purged after a grace.
    pub deleted_at_ns: Option<i64>,
    /// Its own quotas of tables and of columns per table (`time` included),
    /// instead of the server's.
    pub max_tables: Option<usize>,
    pub max_columns: Option<usize>,
    /// Its own series quota, instead of the server's.
    pub max_series: Option<usize>,
}

impl Database {
    /// Its id and name, as writes and reads carry them.
    pub fn key(&self) -> DbRef<'_> {
        DbRef {
            id: self.id,
            name: &self.name,
        }
    }

    pub fn table(&self, name: &str) -> Option<&Arc<Table>> {
        self.table_ids.get(name).and_then(|id| self.tables.get(id))
    }

    pub fn table_by_id(&self, id: TableId) -> Option<&Arc<Table>> {
        self.tables.get(&id)
    }

    pub fn tables(&self) -> impl Iterator<Item = &Arc<Table>> {
        self.tables.values()
    }

    /// Its quotas: its own where set, else `server`'s.
    pub fn limits(&self, server: SchemaLimits) -> SchemaLimits {
        SchemaLimits {
            max_tables: self.max_tables.unwrap_or(server.max_tables),
            max_columns: self.max_columns.unwrap_or(server.max_columns),
            max_series: self.max_series.unwrap_or(server.max_series),
        }
    }

    /// The oldest time the retention period keeps, at `now_ns`.
    pub fn retention_cutoff(&self, now_ns: i64) -> Option<i64> {
        self.retention_ns.map(|r| now_ns.saturating_sub(r))
    }
}

impl SchemaLookup for Database {
    fn column_type(&self, table: &str, column: &str) -> Option<ColumnType> {
        self.table(table).and_then(|t| t.column_type(column))
    }

    fn table_count(&self) -> usize {
        self.tables.len()
    }

    fn column_count(&self, table: &str) -> Option<usize> {
        self.table(table).map(|t| table_columns(t).count())
    }
}

/// An immutable view of the shared log; replaced whole on every change.
#[derive(Debug, Clone, Default)]
pub struct CatalogState {
    /// Number of the next shared log entry.
    next_entry: u64,
    databases: BTreeMap<DbId, Arc<Database>>,
    database_ids: HashMap<String, DbId>,
    /// Ids are never reused, even after a purge (objects live under them).
    last_database_id: DbId,
    tokens: HashMap<String, Arc<TokenRecord>>,
    /// Token ids are never reused either: a revoked id names one token only.
    last_token_id: u64,
    /// Names of purged databases, so that rows still buffered for one are
    /// known to be dropped data, not a broken catalog.
    purged_names: HashSet<String>,
}

impl CatalogState {
    pub fn database(&self, name: &str) -> Option<&Arc<Database>> {
        self.database_ids
            .get(name)
            .and_then(|id| self.databases.get(id))
    }

    pub fn database_by_id(&self, id: DbId) -> Option<&Arc<Database>> {
        self.databases.get(&id)
    }

    /// The live databases, in creation order.
    pub fn databases(&self) -> impl Iterator<Item = &Arc<Database>> {
        self.databases
            .values()
            .filter(|d| d.deleted_at_ns.is_none())
    }

    /// Whether a database of this name was deleted (and none live has it).
    pub fn was_deleted(&self, name: &str) -> bool {
        self.database(name).is_none()
            && (self.purged_names.contains(name)
                || self.deleted_databases().any(|d| d.name == name))
    }

    /// The database of this id if it is live (not deleted).
    pub fn live_database_by_id(&self, id: DbId) -> Option<&Arc<Database>> {
        self.databases
            .get(&id)
            .filter(|d| d.deleted_at_ns.is_none())
    }

    /// Whether the database of this id existed and was deleted (or purged
    /// since: ids are never reused, so an id this state has given out but no
    /// longer holds is a purged one). Its buffered rows are dropped data.
    pub fn is_dropped(&self, id: DbId) -> bool {
        match self.databases.get(&id) {
            Some(db) => db.deleted_at_ns.is_some(),
            None => id != 0 && id <= self.last_database_id,
        }
    }

    /// Deleted databases not purged yet.
    pub fn deleted_databases(&self) -> impl Iterator<Item = &Arc<Database>> {
        self.databases
            .values()
            .filter(|d| d.deleted_at_ns.is_some())
    }

    /// Every token record, by id.
    pub fn tokens(&self) -> Vec<Arc<TokenRecord>> {
        let mut tokens: Vec<_> = self.tokens.values().cloned().collect();
        tokens.sort_by_key(|t| t.id);
        tokens
    }

    /// The token whose hash is `hash` (hex SHA-256).
    pub fn token(&self, hash: &str) -> Option<&Arc<TokenRecord>> {
        self.tokens.get(hash)
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::CreateDatabase { id, name } => {
                self.database_ids.insert(name.clone(), id);
                self.last_database_id = self.last_database_id.max(id);
                let db = Database {
                    id,
                    name,
                    tables: BTreeMap::new(),
                    table_ids: HashMap::new(),
                    retention_ns: None,
                    deleted_at_ns: None,
                    max_tables: None,
                    max_columns: None,
                    max_series: None,
                };
                self.databases.insert(id, Arc::new(db));
            }
            Op::SetRetention {
                database,
                retention_ns,
            } => {
                if let Some(db) = self.databases.get_mut(&database) {
                    Arc::make_mut(db).retention_ns = retention_ns;
                }
            }
            Op::DeleteDatabase { database, at_ns } => {
                if let Some(db) = self.databases.get_mut(&database) {
                    let db = Arc::make_mut(db);
                    db.deleted_at_ns = Some(at_ns);
                    if self.database_ids.get(&db.name) == Some(&database) {
                        self.database_ids.remove(&db.name);
                    }
                }
            }
            Op::PurgeDatabase { database } => {
                if let Some(db) = self.databases.remove(&database) {
                    self.purged_names.insert(db.name.clone());
                }
            }
            Op::RevokeToken { id } => {
                self.tokens.retain(|_, t| t.id != id);
            }
            Op::SetLimits {
                database,
                max_tables,
                max_columns,
                max_series,
            } => {
                if let Some(db) = self.databases.get_mut(&database) {
                    let db = Arc::make_mut(db);
                    db.max_tables = max_tables;
                    db.max_columns = max_columns;
                    db.max_series = max_series;
                }
            }
            Op::CreateTable { database, id, name } => {
                if let Some(db) = self.databases.get_mut(&database) {
                    let db = Arc::make_mut(db);
                    db.table_ids.insert(name.clone(), id);
                    let table = Table {
                        id,
                        name,
                        columns: Vec::new(),
                        index: HashMap::new(),
                    };
                    db.tables.insert(id, Arc::new(table));
                }
            }
            Op::AddColumns {
                database,
                table,
                columns,
            } => {
                let table = self
                    .databases
                    .get_mut(&database)
                    .and_then(|db| Arc::make_mut(db).tables.get_mut(&table));
                if let Some(table) = table {
                    let table = Arc::make_mut(table);
                    for c in columns {
                        if !table.index.contains_key(&c.name) {
                            table.index.insert(c.name.clone(), table.columns.len());
                            table.columns.push(c);
                        }
                    }
                }
            }
            Op::CreateToken(mut t) => {
                self.bind_permissions(&mut t);
                self.last_token_id = self.last_token_id.max(t.id);
                self.tokens.insert(t.hash.clone(), Arc::new(t));
            }
        }
    }
}

impl CatalogState {
    /// Gives a permission stored without a database id (by a release before
    /// ids were stored) the id of the live database of its name at this point
    /// of the log: every release creates a token's databases in an entry
    /// before the token's, so that is the database the token was made for.
    /// A name with no live database here stays unbound and grants nothing.
    fn bind_permissions(&self, token: &mut TokenRecord) {
        for p in &mut token.permissions {
            if let Permission::Database {
                name,
                database_id: id @ None,
                ..
            } = p
            {
                *id = self.database_ids.get(name.as_str()).copied();
            }
        }
    }
}

/// Per-database quotas, checked when a write would add tables, columns or series.
#[derive(Debug, Clone, Copy)]
pub struct SchemaLimits {
    pub max_tables: usize,
    /// Columns of a table, `time` included.
    pub max_columns: usize,
    /// Series (see [`crate::series`]).
    pub max_series: usize,
}

impl SchemaLimits {
    pub const UNLIMITED: Self = Self {
        max_tables: usize::MAX,
        max_columns: usize::MAX,
        max_series: usize::MAX,
    };
}

/// The columns one write needs in one table, in the write's order.
pub struct TableColumns<'a> {
    pub table: &'a str,
    pub columns: Vec<(&'a str, ColumnType)>,
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

#[derive(Debug)]
pub struct Catalog {
    store: Store,
    /// The shared log of schema changes and tokens.
    log: AppendLog,
    /// The files checkpoints, numbered as a log of their own.
    checkpoints: AppendLog,
    state: RwLock<Arc<CatalogState>>,
    /// Serialises this process's commits; other processes are handled by `Create`.
    commit: tokio::sync::Mutex<()>,
    files: Mutex<FilesState>,
}

/// The files log of one ingester (or of another writer: the lifecycle, the
/// compactor).
fn files_log(store: &Store, ingester: &str) -> AppendLog {
    AppendLog::new(store.clone(), format!("catalog/files/{ingester}")).with_suffix(".json")
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
    /// Reads the whole catalog from the store.
    /// The object store the catalog lives on.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub async fn load(store: Store) -> Result<Arc<Self>, CatalogError> {
        let catalog = Self {
            log: AppendLog::new(store.clone(), "catalog/log").with_suffix(".json"),
            checkpoints: AppendLog::new(store.clone(), "catalog/files-checkpoint")
                .with_suffix(".json"),
            store,
            state: RwLock::new(Arc::new(CatalogState::default())),
            commit: tokio::sync::Mutex::new(()),
            files: Mutex::new(FilesState::default()),
        };
        catalog.refresh().await?;
        catalog.load_files().await?;
        Ok(Arc::new(catalog))
    }

    pub fn state(&self) -> Arc<CatalogState> {
        Arc::clone(&self.state.read())
    }

    /// Applies the shared log entries written since the last look, by any process.
    pub async fn refresh(&self) -> Result<Arc<CatalogState>, CatalogError> {
        let current = self.state();
        let mut next = current.next_entry;
        let mut new_ops = Vec::new();
        for (n, bytes) in self.log.read_from(next).await? {
            let entry: LogEntry = decode(&self.log.path(n), &bytes)?;
            new_ops.extend(entry.ops);
            next = n + 1;
        }
        if next == current.next_entry {
            return Ok(current);
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
        Ok(Arc::clone(&guard))
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
            let appended = self
                .log
                .create(state.next_entry, Bytes::from(bytes))
                .await?;
            if appended == Appended::Taken {
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

    /// Creates a database if it does not exist; returns its id.
    pub async fn create_database(&self, name: &str) -> Result<DbId, CatalogError> {
        let state = self
            .commit(|s| {
                if s.database(name).is_some() {
                    return Ok(vec![]);
                }
                Ok(vec![Op::CreateDatabase {
                    id: s.last_database_id + 1,
                    name: name.to_string(),
                }])
            })
            .await?;
        Ok(state
            .database(name)
            .map(|d| d.id)
            .expect("database just created"))
    }

    /// Makes sure every table and column of a write exists with the write's types,
    /// adding what is new in one entry. A type that differs from the catalog's is a
    /// conflict (another writer may have fixed it first).
    pub async fn ensure_schema(
        &self,
        database: &str,
        tables: &[TableColumns<'_>],
        limits: SchemaLimits,
    ) -> Result<Arc<Database>, CatalogError> {
        let mut state = self.state();
        if state.database(database).is_none() {
            state = self.refresh().await?;
        }
        let id = state
            .database(database)
            .map(|d| d.id)
            .ok_or_else(|| CatalogError::DatabaseNotFound(database.to_string()))?;
        let db = DbRef { id, name: database };
        self.ensure_schema_of(db, tables, limits).await
    }

    /// [`Self::ensure_schema`] of the database with this id: a write checked
    /// against one database never adds columns to another that took its name
    /// meanwhile; a deleted database is not found.
    pub async fn ensure_schema_of(
        &self,
        database: DbRef<'_>,
        tables: &[TableColumns<'_>],
        limits: SchemaLimits,
    ) -> Result<Arc<Database>, CatalogError> {
        let not_found = || CatalogError::DatabaseNotFound(database.name.to_string());
        let state = self
            .commit(|s| {
                let db = s.live_database_by_id(database.id).ok_or_else(not_found)?;
                let limits = db.limits(limits);
                let mut ops = Vec::new();
                let mut next_table = db.tables.keys().next_back().map_or(1, |id| id + 1);
                for t in tables {
                    let existing = db.table(t.table);
                    let table_id = match existing {
                        Some(table) => table.id,
                        None => {
                            let current = (next_table - 1) as usize;
                            if db.tables.len() + ops.len() >= limits.max_tables {
                                return Err(CatalogError::LimitExceeded {
                                    what: format!("tables in database \"{}\"", db.name),
                                    limit: limits.max_tables,
                                    current: current.min(db.tables.len()),
                                    adding: format!("table \"{}\"", t.table),
                                });
                            }
                            let id = next_table;
                            next_table += 1;
                            ops.push(Op::CreateTable {
                                database: db.id,
                                id,
                                name: t.table.to_string(),
                            });
                            id
                        }
                    };
                    let mut new_columns = Vec::new();
                    for &(name, ty) in &t.columns {
                        match existing.and_then(|table| table.column_type(name)) {
                            Some(existing) if existing == ty => {}
                            Some(existing) => {
                                return Err(CatalogError::Conflict {
                                    table: t.table.to_string(),
                                    column: name.to_string(),
                                    existing,
                                    new: ty,
                                });
                            }
                            None => new_columns.push(ColumnDef {
                                name: name.to_string(),
                                ty,
                            }),
                        }
                    }
                    let current = existing.map_or(0, |table| table.columns.len());
                    if current + new_columns.len() > limits.max_columns {
                        return Err(CatalogError::LimitExceeded {
                            what: format!("columns in table \"{}\"", t.table),
                            limit: limits.max_columns,
                            current,
                            adding: format!("{} new columns", new_columns.len()),
                        });
                    }
                    if !new_columns.is_empty() {
                        // Keep tags first and time last, as InfluxDB 3 orders columns.
                        new_columns.sort_by_key(|c| match c.ty {
                            ColumnType::Tag => 0,
                            ColumnType::Time => 2,
                            _ => 1,
                        });
                        ops.push(Op::AddColumns {
                            database: db.id,
                            table: table_id,
                            columns: new_columns,
                        });
                    }
                }
                Ok(ops)
            })
            .await?;
        state
            .live_database_by_id(database.id)
            .cloned()
            .ok_or_else(not_found)
    }

    /// Stores a new token record; also creates the databases it names, and
    /// binds each permission to its database's id.
    pub async fn create_token(&self, mut record: TokenRecord) -> Result<TokenRecord, CatalogError> {
        for p in &mut record.permissions {
            if let Permission::Database {
                name, database_id, ..
            } = p
            {
                *database_id = Some(self.create_database(name).await?);
            }
        }
        let state = self
            .commit(|s| {
                record.id = s.last_token_id + 1;
                Ok(vec![Op::CreateToken(record.clone())])
            })
            .await?;
        Ok((**state.token(&record.hash).expect("token just stored")).clone())
    }

    /// Creates a database that must not exist yet, with its retention period.
    pub async fn create_database_strict(
        &self,
        name: &str,
        retention_ns: Option<i64>,
    ) -> Result<DbId, CatalogError> {
        let state = self
            .commit(|s| {
                if s.database(name).is_some() {
                    return Err(CatalogError::DatabaseExists(name.to_string()));
                }
                let id = s.last_database_id + 1;
                let mut ops = vec![Op::CreateDatabase {
                    id,
                    name: name.to_string(),
                }];
                if retention_ns.is_some() {
                    ops.push(Op::SetRetention {
                        database: id,
                        retention_ns,
                    });
                }
                Ok(ops)
            })
            .await?;
        Ok(state
            .database(name)
            .map(|d| d.id)
            .expect("database just created"))
    }

    /// Changes one setting of the live database `name`: `change` gives the op
    /// for its current state, or `None` when nothing is to change.
    async fn alter_database(
        &self,
        name: &str,
        change: impl Fn(&Database) -> Option<Op>,
    ) -> Result<Arc<Database>, CatalogError> {
        let state = self
            .commit(|s| {
                let db = s
                    .database(name)
                    .ok_or_else(|| CatalogError::DatabaseNotFound(name.to_string()))?;
                Ok(change(db).into_iter().collect())
            })
            .await?;
        state
            .database(name)
            .cloned()
            .ok_or_else(|| CatalogError::DatabaseNotFound(name.to_string()))
    }

    /// Sets (or, with `None`, clears) a database's retention period.
    pub async fn set_retention(
        &self,
        name: &str,
        retention_ns: Option<i64>,
    ) -> Result<Arc<Database>, CatalogError> {
        self.alter_database(name, |db| {
            (db.retention_ns != retention_ns).then_some(Op::SetRetention {
                database: db.id,
                retention_ns,
            })
        })
        .await
    }

    /// Sets a database's own quotas (`None`: the server's).
    pub async fn set_limits(
        &self,
        name: &str,
        max_tables: Option<usize>,
        max_columns: Option<usize>,
        max_series: Option<usize>,
    ) -> Result<Arc<Database>, CatalogError> {
        let wanted = (max_tables, max_columns, max_series);
        self.alter_database(name, |db| {
            ((db.max_tables, db.max_columns, db.max_series) != wanted).then_some(Op::SetLimits {
                database: db.id,
                max_tables,
                max_columns,
                max_series,
            })
        })
        .await
    }

    /// Soft-deletes a database: writes and queries no longer find it, its
    /// name may be reused at once; its data goes at [`Self::purge_database`].
    pub async fn delete_database(&self, name: &str, now_ns: i64) -> Result<DbId, CatalogError> {
        let mut deleted = 0;
        self.commit(|s| {
            let db = s
                .database(name)
                .ok_or_else(|| CatalogError::DatabaseNotFound(name.to_string()))?;
            deleted = db.id;
            Ok(vec![Op::DeleteDatabase {
                database: db.id,
                at_ns: now_ns,
            }])
        })
        .await?;
        Ok(deleted)
    }

    /// Forgets a deleted database whose objects are gone.
    pub async fn purge_database(&self, id: DbId) -> Result<(), CatalogError> {
        self.commit(|s| {
            Ok(match s.databases.get(&id) {
                Some(db) if db.deleted_at_ns.is_some() => vec![Op::PurgeDatabase { database: id }],
                _ => vec![],
            })
        })
        .await?;
        Ok(())
    }

    /// Revokes the token named `name` (its description) or with id `name`.
    pub async fn revoke_token(&self, name: &str) -> Result<TokenRecord, CatalogError> {
        let mut revoked = None;
        self.commit(|s| {
            let record = s
                .tokens
                .values()
                .find(|t| t.description == name || t.id.to_string() == name)
                .ok_or_else(|| CatalogError::TokenNotFound(name.to_string()))?;
            revoked = Some((**record).clone());
            Ok(vec![Op::RevokeToken { id: record.id }])
        })
        .await?;
        revoked.ok_or_else(|| CatalogError::TokenNotFound(name.to_string()))
    }

    /// Builds the files state from the newest checkpoint (if any) and the
    /// log entries after it.
    async fn load_files(&self) -> Result<(), CatalogError> {
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
                *self.files.lock() = fresh.into_inner();
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
        let seen = self.files.lock().checkpoint;
        let newest = self.newest_checkpoint_number().await?;
        if newest <= seen {
            return Ok(false);
        }
        let Some((n, c)) = self.newest_checkpoint().await? else {
            return Ok(false);
        };
        let mut files = self.files.lock();
        if files.behind(&c) {
            return Ok(true);
        }
        if files.checkpoint < Some(n) {
            files.passed(n, &c);
        }
        Ok(false)
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
        let files = self.files.lock();
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
        let position = || self.files.lock().logs.get(ingester_id).map_or(0, |l| l.0);
        let position = &position;
        loop {
            // Taken: read the entries written meanwhile and try after them.
            let taken = |_| async move {
                self.refresh_files_of(ingester_id).await?;
                Ok::<_, CatalogError>(position())
            };
            let n = log.append(position(), |_| bytes.clone(), taken).await?;
            // A state behind a checkpoint may put an entry at a number
            // the checkpoint folded in and deleted: nobody reads that
            // again, so the entry goes on at the log's real end.
            if self.checkpoint_covers(ingester_id, n).await? {
                self.reload_files().await?;
                continue;
            }
            self.files.lock().apply(n, entry);
            return Ok(());
        }
    }

    /// Whether the newest checkpoint folded in entry `n` of a log.
    async fn checkpoint_covers(&self, ingester_id: &str, n: u64) -> Result<bool, CatalogError> {
        let seen = self.files.lock().checkpoint;
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
        self.read_log(&self.files, ingester_id).await?;
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
        self.files.lock().logs.get(ingester_id).and_then(|l| l.1)
    }

    /// The highest write sequence registered files hold, as far as the files
    /// logs read so far tell (0 for files registered by earlier builds).
    pub fn max_sequence(&self) -> u64 {
        self.files.lock().max_sequence
    }

    /// Every registered Parquet file.
    pub fn files(&self) -> Vec<ParquetFile> {
        self.files.lock().files.clone()
    }

    /// Reads the file registrations other processes made since the last look,
    /// so a querier sees snapshots taken after it started, including the logs
    /// of ingesters it has not seen before.
    pub async fn refresh_file_logs(&self) -> Result<(), CatalogError> {
        self.read_logs(&self.files).await?;
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
            let files = self.files.lock();
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
            let mut files = self.files.lock();
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

/// The Arrow column order of a catalog table: its columns as created, `time` last.
pub fn table_columns(table: &Table) -> impl Iterator<Item = (&str, ColumnType)> {
    let time = std::iter::once((TIME_COLUMN, ColumnType::Time));
    table
        .columns
        .iter()
        .filter(|c| c.ty != ColumnType::Time)
        .map(|c| (c.name.as_str(), c.ty))
        .chain(time)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        *stale.files.lock() = FilesState::default();
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
