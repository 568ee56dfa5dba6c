//! The schema part of the catalog: databases, their tables and column types,
//! their retention and quotas, as the shared log's ops build them.
//!
//! [`CatalogState`] is an immutable view, replaced whole by every change; the
//! `Catalog` methods here turn a request into ops, which
//! [`super::Catalog::commit`] appends to the shared log.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::tokens::TokenRecord;
use super::{Catalog, CatalogError, DbId, FIRST_VERSION, LIFECYCLE_VERSION, TableId};
use crate::schema::{ColumnType, TIME_COLUMN};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
}

/// A database as writes and reads carry it below the edge: the id keys WAL
/// entries, buffers and files (a name can be reused after a delete, an id
/// never is); the name is for logs and for peers of older releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbRef<'a> {
    pub id: DbId,
    pub name: &'a str,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Op {
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
    pub(super) fn version(&self) -> u32 {
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
pub(super) struct LogEntry {
    pub(super) format_version: u32,
    pub(super) ops: Vec<Op>,
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
    pub(super) tables: BTreeMap<TableId, Arc<Table>>,
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

/// An immutable view of the shared log; replaced whole on every change.
#[derive(Debug, Clone, Default)]
pub struct CatalogState {
    /// Number of the next shared log entry.
    pub(super) next_entry: u64,
    databases: BTreeMap<DbId, Arc<Database>>,
    pub(super) database_ids: HashMap<String, DbId>,
    /// Ids are never reused, even after a purge (objects live under them).
    last_database_id: DbId,
    pub(super) tokens: HashMap<String, Arc<TokenRecord>>,
    /// Token ids are never reused either: a revoked id names one token only.
    pub(super) last_token_id: u64,
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

    pub(super) fn apply(&mut self, op: Op) {
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

impl Catalog {
    /// Creates a database if it does not exist; returns its id.
    pub async fn create_database(&self, name: &str) -> Result<DbId, CatalogError> {
        self.create_database_with(name, None).await
    }

    /// [`Self::create_database`] with a retention period for a database it
    /// creates (one that exists keeps its own).
    pub async fn create_database_with(
        &self,
        name: &str,
        retention_ns: Option<i64>,
    ) -> Result<DbId, CatalogError> {
        self.create(name, retention_ns, false).await
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

    /// Creates a database that must not exist yet, with its retention period.
    pub async fn create_database_strict(
        &self,
        name: &str,
        retention_ns: Option<i64>,
    ) -> Result<DbId, CatalogError> {
        self.create(name, retention_ns, true).await
    }

    /// Creates `name` with its retention period in one entry; if it exists,
    /// that is an error when `must_be_new`, else nothing changes.
    async fn create(
        &self,
        name: &str,
        retention_ns: Option<i64>,
        must_be_new: bool,
    ) -> Result<DbId, CatalogError> {
        let state = self
            .commit(|s| {
                if s.database(name).is_some() {
                    return match must_be_new {
                        true => Err(CatalogError::DatabaseExists(name.to_string())),
                        false => Ok(vec![]),
                    };
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
