//! Administration: databases (create with a retention period, list, update,
//! soft delete), tokens (create with an expiry, list, revoke) and tables, over
//! HTTP with an operator token (`edge::admin_http`) in InfluxDB 3's `/api/v3/configure/…` shapes,
//! and the same operations for the CLI working offline on `--data-dir`.
//!
//! | method and path | body or query | answer |
//! | --- | --- | --- |
//! | `GET /api/v3/configure/database` | | `[{"iox::database","retention_period","retention_period_ns","max_tables","max_columns_per_table","max_series"}]` |
//! | `POST /api/v3/configure/database` | `{"db","retention_period"?,"max_tables"?,"max_columns_per_table"?,"max_series"?}` | 200, 409 if it exists |
//! | `PUT /api/v3/configure/database` | the same; what is absent stays (`"none"` clears the retention, a quota of 0 returns to the server's) | 200 |
//! | `DELETE /api/v3/configure/database?db=` | | 200 (soft; purged after `--purge-grace`) |
//! | `GET /api/v3/configure/table?db=` | | `[{"table_name","columns":[{"name","type"}]}]` |
//! | `GET /api/v3/configure/token` | | `[{"id","name","permissions","created_at","expires_at"}]` |
//! | `POST /api/v3/configure/token` | `{"token_name","permissions":[{"resource_type":"db","resource_identifier":[…],"actions":["read","write"]}],"expiry_secs"?}` | 201 `{"id","name","token",…}` |
//! | `POST /api/v3/configure/token/admin` | `{"token_name","expiry_secs"?}` | 201, an operator token |
//! | `DELETE /api/v3/configure/token?token_name=` | | 200 |

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::new_token_record;
use crate::catalog::{Catalog, CatalogError, Database, Permission, TokenRecord, table_columns};
use crate::clock::Clock;
use crate::error::ErrorKind;

pub mod client;

/// Why an administrative operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A name, retention period or permission that cannot be used as given.
    #[error("{0}")]
    Invalid(String),
    #[error("database \"{0}\" not found")]
    DatabaseNotFound(String),
    #[error("token \"{0}\" already exists")]
    TokenExists(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl AdminError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid(_) => ErrorKind::Invalid,
            Self::DatabaseNotFound(_) => ErrorKind::NotFound,
            Self::TokenExists(_) => ErrorKind::AlreadyExists,
            Self::Catalog(e) => e.kind(),
        }
    }
}

/// A retention period as users write it: `30d`, `1h`, `2w`; `none` (or an
/// empty value) for none.
pub fn parse_retention(text: &str) -> Result<Option<i64>, AdminError> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("none") || text.eq_ignore_ascii_case("inf") {
        return Ok(None);
    }
    let d = humantime::parse_duration(text).map_err(|e| {
        AdminError::Invalid(format!(
            "invalid retention period {text:?}: {e} (use e.g. 30d, 12h or none)"
        ))
    })?;
    if d.is_zero() {
        return Err(AdminError::Invalid(
            "retention period must be positive (or none)".into(),
        ));
    }
    Ok(Some(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)))
}

/// A retention period as shown: in the largest unit that divides it
/// (`30d`, `36h`, `90m`), or `none`.
pub fn format_retention(ns: Option<i64>) -> String {
    const UNITS: [(i64, &str); 5] = [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1, "ns"),
    ];
    match ns {
        None => "none".into(),
        Some(ns) => {
            let (unit, suffix) = UNITS
                .into_iter()
                .find(|(unit, _)| ns % unit == 0)
                .unwrap_or((1, "ns"));
            format!("{}{suffix}", ns / unit)
        }
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct DatabaseInfo {
    #[serde(rename = "iox::database")]
    pub name: String,
    pub retention_period: String,
    pub retention_period_ns: Option<i64>,
    /// The database's own quotas; `null`: the server's.
    pub max_tables: Option<usize>,
    pub max_columns_per_table: Option<usize>,
    pub max_series: Option<usize>,
}

impl DatabaseInfo {
    pub fn of(db: &Database) -> Self {
        Self {
            name: db.name.clone(),
            retention_period: format_retention(db.retention_ns),
            retention_period_ns: db.retention_ns,
            max_tables: db.max_tables,
            max_columns_per_table: db.max_columns,
            max_series: db.max_series,
        }
    }
}

/// What creating or updating a database sets. On an update, what is absent
/// stays as it is; a quota of 0 returns to the server's.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatabaseSettings {
    /// `30d`, `12h`, or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tables: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_columns_per_table: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_series: Option<usize>,
}

/// A database's own quotas: tables, columns per table, series.
type Quotas = (Option<usize>, Option<usize>, Option<usize>);

impl DatabaseSettings {
    fn quotas(&self, db: Option<&Database>) -> Option<Quotas> {
        if self.max_tables.is_none()
            && self.max_columns_per_table.is_none()
            && self.max_series.is_none()
        {
            return None;
        }
        let pick = |new: Option<usize>, old: Option<usize>| match new {
            Some(0) => None,
            Some(n) => Some(n),
            None => old,
        };
        Some((
            pick(self.max_tables, db.and_then(|d| d.max_tables)),
            pick(self.max_columns_per_table, db.and_then(|d| d.max_columns)),
            pick(self.max_series, db.and_then(|d| d.max_series)),
        ))
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TableInfo {
    pub table_name: String,
    pub columns: Vec<ColumnInfo>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TokenInfo {
    pub id: u64,
    pub name: String,
    /// `admin`, or `db:NAME:read,write`-style entries.
    pub permissions: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl TokenInfo {
    pub fn of(t: &TokenRecord) -> Self {
        let permissions = t
            .permissions
            .iter()
            .map(|p| match p {
                Permission::Admin => "admin".to_string(),
                Permission::Database {
                    name, read, write, ..
                } => {
                    let actions: Vec<&str> = [(*read, "read"), (*write, "write")]
                        .into_iter()
                        .filter(|(on, _)| *on)
                        .map(|(_, a)| a)
                        .collect();
                    format!("db:{name}:{}", actions.join(","))
                }
            })
            .collect();
        Self {
            id: t.id,
            name: t.description.clone(),
            permissions,
            created_at: rfc3339(t.created_at_ns),
            expires_at: t.expires_at_ns.map(rfc3339),
        }
    }
}

/// A new token as shown once: the secret itself and its record.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct NewToken {
    pub id: u64,
    pub name: String,
    pub token: String,
    pub permissions: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
}

/// The operations, on a catalog; HTTP and the offline CLI both call these.
pub struct Admin<'a> {
    pub catalog: &'a Catalog,
    /// Stamps deletions and new tokens.
    pub clock: &'a dyn Clock,
}

impl Admin<'_> {
    pub async fn databases(&self) -> Result<Vec<DatabaseInfo>, AdminError> {
        let state = self.catalog.refresh().await?;
        Ok(state.databases().map(|d| DatabaseInfo::of(d)).collect())
    }

    pub async fn create_database(
        &self,
        name: &str,
        settings: &DatabaseSettings,
    ) -> Result<(), AdminError> {
        check_name(name)?;
        let retention = parse_retention(settings.retention_period.as_deref().unwrap_or_default())?;
        self.catalog.create_database_strict(name, retention).await?;
        if let Some((tables, columns, series)) = settings.quotas(None) {
            self.catalog
                .set_limits(name, tables, columns, series)
                .await?;
        }
        Ok(())
    }

    pub async fn update_database(
        &self,
        name: &str,
        settings: &DatabaseSettings,
    ) -> Result<(), AdminError> {
        let state = self.catalog.refresh().await?;
        let db = state
            .database(name)
            .ok_or_else(|| AdminError::DatabaseNotFound(name.to_string()))?;
        if let Some(retention) = &settings.retention_period {
            self.catalog
                .set_retention(name, parse_retention(retention)?)
                .await?;
        }
        if let Some((tables, columns, series)) = settings.quotas(Some(db)) {
            self.catalog
                .set_limits(name, tables, columns, series)
                .await?;
        }
        Ok(())
    }

    pub async fn delete_database(&self, name: &str) -> Result<(), AdminError> {
        self.catalog
            .delete_database(name, self.clock.now_ns())
            .await?;
        Ok(())
    }

    pub async fn tables(&self, database: &str) -> Result<Vec<TableInfo>, AdminError> {
        let state = self.catalog.refresh().await?;
        let db = state
            .database(database)
            .ok_or_else(|| AdminError::DatabaseNotFound(database.to_string()))?;
        Ok(db
            .tables()
            .map(|t| TableInfo {
                table_name: t.name.clone(),
                columns: table_columns(t)
                    .map(|(name, ty)| ColumnInfo {
                        name: name.to_string(),
                        ty: ty.as_str().to_string(),
                    })
                    .collect(),
            })
            .collect())
    }

    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, AdminError> {
        let state = self.catalog.refresh().await?;
        Ok(state.tokens().iter().map(|t| TokenInfo::of(t)).collect())
    }

    /// Creates a token; `expiry` from now. The databases it names are created
    /// if missing (a token for a database about to be written is common).
    pub async fn create_token(
        &self,
        name: &str,
        permissions: Vec<Permission>,
        expiry: Option<Duration>,
    ) -> Result<NewToken, AdminError> {
        if name.trim().is_empty() {
            return Err(AdminError::Invalid("token_name must not be empty".into()));
        }
        let state = self.catalog.refresh().await?;
        if state.tokens().iter().any(|t| t.description == name) {
            return Err(AdminError::TokenExists(name.to_string()));
        }
        let (token, mut record) =
            new_token_record(permissions, name.to_string(), self.clock.now_ns());
        record.expires_at_ns = expiry.map(|e| {
            record
                .created_at_ns
                .saturating_add(i64::try_from(e.as_nanos()).unwrap_or(i64::MAX))
        });
        let record = self.catalog.create_token(record).await?;
        let info = TokenInfo::of(&record);
        Ok(NewToken {
            id: info.id,
            name: info.name,
            token,
            permissions: info.permissions,
            created_at: info.created_at,
            expires_at: info.expires_at,
        })
    }

    pub async fn revoke_token(&self, name: &str) -> Result<TokenInfo, AdminError> {
        let record = self.catalog.revoke_token(name).await?;
        Ok(TokenInfo::of(&record))
    }
}

/// Database names as InfluxDB 3 allows them: letters, digits, `_`, `-`, `/`
/// (v1's `db/rp`), at most 64 bytes.
fn check_name(name: &str) -> Result<(), AdminError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/'));
    if ok {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "invalid database name {name:?}: use at most 64 letters, digits, _, - or /"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_periods() {
        assert_eq!(parse_retention("none").unwrap(), None);
        assert_eq!(parse_retention("").unwrap(), None);
        assert_eq!(
            parse_retention("30d").unwrap(),
            Some(30 * 86_400_000_000_000)
        );
        assert_eq!(parse_retention("1h").unwrap(), Some(3_600_000_000_000));
        assert!(parse_retention("0s").is_err());
        assert!(parse_retention("soon").is_err());
        assert_eq!(format_retention(Some(3_600_000_000_000)), "1h");
        assert_eq!(format_retention(Some(30 * 86_400_000_000_000)), "30d");
        assert_eq!(format_retention(Some(90 * 60_000_000_000)), "90m");
        assert_eq!(format_retention(None), "none");
        assert!(check_name("db/rp").is_ok());
        assert!(check_name("bad name").is_err());
        assert!(check_name("").is_err());
    }
}
