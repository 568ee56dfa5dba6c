//! The administration endpoints (`/api/v3/configure/…`, InfluxDB 3's shapes):
//! an operator token, the request read, and [`Admin`] called. The table of
//! paths is in [`crate::admin`].

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::body::BodyReader;
use super::error::{Error, V3Error};
use crate::admin::{Admin, DatabaseInfo, DatabaseSettings, TableInfo, TokenInfo};
use crate::auth::Authorizer;
use crate::catalog::{Catalog, Permission};

struct AdminState {
    auth: Arc<Authorizer>,
    catalog: Arc<Catalog>,
    bodies: BodyReader,
}

pub fn routes(auth: Arc<Authorizer>, catalog: Arc<Catalog>, bodies: BodyReader) -> Router {
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
        .with_state(Arc::new(AdminState {
            auth,
            catalog,
            bodies,
        }))
}

impl AdminState {
    /// Only an operator token administers.
    /// [`Self::admin`], then the JSON body read through the body reader
    /// (after the token: an unknown caller's body is not read).
    async fn admin_with_body<T: serde::de::DeserializeOwned>(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Admin<'_>, T), Error> {
        let admin = self.admin(headers).await?;
        let (bytes, _held) = self.bodies.read(headers, body).await?;
        let parsed = serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidQuery(format!("invalid JSON body: {e}")))?;
        Ok((admin, parsed))
    }

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
            clock: self.auth.clock().as_ref(),
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
    body: Body,
) -> Result<StatusCode, V3Error> {
    let (admin, b): (_, DatabaseBody) = s.admin_with_body(&headers, body).await?;
    admin.create_database(&b.db, &b.settings).await?;
    Ok(StatusCode::OK)
}

async fn update_database(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, V3Error> {
    let (admin, b): (_, DatabaseBody) = s.admin_with_body(&headers, body).await?;
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
    body: Body,
) -> Result<Response, V3Error> {
    let (admin, b): (_, TokenBody) = s.admin_with_body(&headers, body).await?;
    let perms = permissions(b.permissions)?;
    let token = admin
        .create_token(&b.token_name, perms, b.expiry_secs.map(Duration::from_secs))
        .await?;
    Ok((StatusCode::CREATED, Json(token)).into_response())
}

async fn create_admin_token(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, V3Error> {
    let (admin, b): (_, TokenBody) = s.admin_with_body(&headers, body).await?;
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
