//! Administration: databases (create with a retention period, list, update,
//! soft delete), tokens (create with an expiry, list, revoke) and tables, over
//! HTTP with an operator token in InfluxDB 3's `/api/v3/configure/…` shapes,
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

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::auth::{Authorizer, new_token_record, now_ns};
use crate::catalog::{Catalog, Database, Permission, TokenRecord, table_columns};
use crate::error::{Error, V3Error};

pub mod client;

/// A retention period as users write it: `30d`, `1h`, `2w`; `none` (or an
/// empty value) for none.
pub fn parse_retention(text: &str) -> Result<Option<i64>, Error> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("none") || text.eq_ignore_ascii_case("inf") {
        return Ok(None);
    }
    let d = humantime::parse_duration(text).map_err(|e| {
        Error::InvalidQuery(format!(
            "invalid retention period {text:?}: {e} (use e.g. 30d, 12h or none)"
        ))
    })?;
    if d.is_zero() {
        return Err(Error::InvalidQuery(
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
}

impl Admin<'_> {
    pub async fn databases(&self) -> Result<Vec<DatabaseInfo>, Error> {
        let state = self.catalog.refresh().await?;
        Ok(state.databases().map(|d| DatabaseInfo::of(d)).collect())
    }

    pub async fn create_database(
        &self,
        name: &str,
        settings: &DatabaseSettings,
    ) -> Result<(), Error> {
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
    ) -> Result<(), Error> {
        let state = self.catalog.refresh().await?;
        let db = state
            .database(name)
            .ok_or_else(|| Error::DatabaseNotFound(name.to_string()))?;
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

    pub async fn delete_database(&self, name: &str) -> Result<(), Error> {
        self.catalog.delete_database(name, now_ns()).await?;
        Ok(())
    }

    pub async fn tables(&self, database: &str) -> Result<Vec<TableInfo>, Error> {
        let state = self.catalog.refresh().await?;
        let db = state
            .database(database)
            .ok_or_else(|| Error::DatabaseNotFound(database.to_string()))?;
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

    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, Error> {
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
    ) -> Result<NewToken, Error> {
        if name.trim().is_empty() {
            return Err(Error::InvalidQuery("token_name must not be empty".into()));
        }
        let state = self.catalog.refresh().await?;
        if state.tokens().iter().any(|t| t.description == name) {
            return Err(Error::AlreadyExists(format!(
                "token \"{name}\" already exists"
            )));
        }
        let (token, mut record) = new_token_record(permissions, name.to_string());
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

    pub async fn revoke_token(&self, name: &str) -> Result<TokenInfo, Error> {
        let record = self.catalog.revoke_token(name).await?;
        Ok(TokenInfo::of(&record))
    }
}

/// Database names as InfluxDB 3 allows them: letters, digits, `_`, `-`, `/`
/// (v1's `db/rp`), at most 64 bytes.
fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidQuery(format!(
            "invalid database name {name:?}: use at most 64 letters, digits, _, - or /"
        )))
    }
}

struct AdminState {
    auth: Arc<Authorizer>,
    catalog: Arc<Catalog>,
}

pub fn routes(auth: Arc<Authorizer>, catalog: Arc<Catalog>) -> Router {
    Router::new()
        .route(
            "/api/v3/configure/database",
            get(list_databases)
                .post(create_database)
                .put(update_database)
                .delete(delete_database),
        )
        .route("/api/v3/configure/table", get(list_tables))
        .route(
            "/api/v3/configure/token",
            get(list_tokens).post(create_token).delete(revoke_token),
        )
        .route("/api/v3/configure/token/admin", post(create_admin_token))
        .with_state(Arc::new(AdminState { auth, catalog }))
}

impl AdminState {
    /// Only an operator token administers.
    async fn admin(&self, headers: &HeaderMap) -> Result<Admin<'_>, Error> {
        let principal = self
            .auth
            .authenticate(headers.get(header::AUTHORIZATION))
            .await?;
        if !principal.is_admin() {
            return Err(Error::Forbidden(
                "administration needs an operator (admin) token".into(),
            ));
        }
        Ok(Admin {
            catalog: &self.catalog,
        })
    }
}

fn query_param(query: Option<&str>, key: &str) -> Result<String, Error> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| Error::InvalidQueryString(e.to_string()))?;
    pairs
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::InvalidQueryString(format!("missing query parameter {key:?}")))
}

fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, Error> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::InvalidQuery(format!("invalid JSON body: {e}")))
}

#[derive(Deserialize)]
struct DatabaseBody {
    db: String,
    #[serde(flatten)]
    settings: DatabaseSettings,
}

async fn list_databases(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
) -> Result<Json<Vec<DatabaseInfo>>, V3Error> {
    Ok(Json(s.admin(&headers).await?.databases().await?))
}

async fn create_database(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<StatusCode, V3Error> {
    let admin = s.admin(&headers).await?;
    let b: DatabaseBody = body(&bytes)?;
    admin.create_database(&b.db, &b.settings).await?;
    Ok(StatusCode::OK)
}

async fn update_database(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<StatusCode, V3Error> {
    let admin = s.admin(&headers).await?;
    let b: DatabaseBody = body(&bytes)?;
    admin.update_database(&b.db, &b.settings).await?;
    Ok(StatusCode::OK)
}

async fn delete_database(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<StatusCode, V3Error> {
    let admin = s.admin(&headers).await?;
    admin
        .delete_database(&query_param(query.as_deref(), "db")?)
        .await?;
    Ok(StatusCode::OK)
}

async fn list_tables(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<TableInfo>>, V3Error> {
    let admin = s.admin(&headers).await?;
    Ok(Json(
        admin.tables(&query_param(query.as_deref(), "db")?).await?,
    ))
}

async fn list_tokens(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
) -> Result<Json<Vec<TokenInfo>>, V3Error> {
    Ok(Json(s.admin(&headers).await?.tokens().await?))
}

#[derive(Deserialize)]
struct TokenBody {
    token_name: String,
    #[serde(default)]
    permissions: Vec<PermissionBody>,
    #[serde(default)]
    expiry_secs: Option<u64>,
}

#[derive(Deserialize)]
struct PermissionBody {
    resource_type: String,
    resource_identifier: Vec<String>,
    actions: Vec<String>,
}

fn permissions(body: Vec<PermissionBody>) -> Result<Vec<Permission>, Error> {
    let mut out = Vec::new();
    for p in body {
        if p.resource_type != "db" {
            return Err(Error::InvalidQuery(format!(
                "unsupported resource_type {:?}: use \"db\"",
                p.resource_type
            )));
        }
        let read = p.actions.iter().any(|a| a == "read");
        let write = p.actions.iter().any(|a| a == "write");
        if let Some(other) = p.actions.iter().find(|a| *a != "read" && *a != "write") {
            return Err(Error::InvalidQuery(format!(
                "unsupported action {other:?}: use \"read\" and/or \"write\""
            )));
        }
        for name in p.resource_identifier {
            out.push(Permission::database(name, read, write));
        }
    }
    if out.is_empty() {
        return Err(Error::InvalidQuery(
            "a token needs at least one permission".into(),
        ));
    }
    Ok(out)
}

async fn create_token(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, V3Error> {
    let admin = s.admin(&headers).await?;
    let b: TokenBody = body(&bytes)?;
    let perms = permissions(b.permissions)?;
    let token = admin
        .create_token(&b.token_name, perms, b.expiry_secs.map(Duration::from_secs))
        .await?;
    Ok((StatusCode::CREATED, Json(token)).into_response())
}

async fn create_admin_token(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, V3Error> {
    let admin = s.admin(&headers).await?;
    let b: TokenBody = body(&bytes)?;
    let token = admin
        .create_token(
            &b.token_name,
            vec![Permission::Admin],
            b.expiry_secs.map(Duration::from_secs),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(token)).into_response())
}

async fn revoke_token(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<StatusCode, V3Error> {
    let admin = s.admin(&headers).await?;
    admin
        .revoke_token(&query_param(query.as_deref(), "token_name")?)
        .await?;
    Ok(StatusCode::OK)
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
