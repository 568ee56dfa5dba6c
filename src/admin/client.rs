//! Where the CLI's administration commands act: a running server's
//! `/api/v3/configure/…` API (`--host`, `http://` or `https://` with
//! `--tls-ca`, operator token from `INFLOW_TOKEN`), through the CLI's one
//! client (`remote`), or, with no host, the catalog under `--data-dir`
//! directly (the server may be stopped; a running one sees the change within
//! its catalog refresh).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;

use super::{Admin, DatabaseInfo, DatabaseSettings, NewToken, TableInfo, TokenInfo};
use crate::catalog::{Catalog, Permission};
use crate::remote::Remote;
use crate::store::Store;

#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// A running server's HTTP address, e.g. http://127.0.0.1:8086; without
    /// it the command works on `--data-dir`.
    #[arg(long, env = "INFLOW_HOST")]
    pub host: Option<String>,
    /// Operator token for `--host`.
    #[arg(long, env = "INFLOW_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A PEM file of CA certificates to trust for an `https://` host, besides
    /// the system's (e.g. the CA that signed the server's `--tls-cert`).
    #[arg(long, env = "INFLOW_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Local object store root of the server (offline mode).
    #[arg(long, env = "INFLOW_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

pub enum Target {
    Local(Arc<Catalog>),
    Remote(Remote),
}

impl Target {
    pub async fn open(args: TargetArgs) -> Result<Self, String> {
        match args.host {
            Some(host) => {
                let token = args
                    .token
                    .filter(|t| !t.is_empty())
                    .ok_or("--host needs an operator token: set INFLOW_TOKEN or --token")?;
                Remote::connect(&host, Some(token), args.tls_ca.as_deref())
                    .map(Self::Remote)
                    .map_err(|e| e.to_string())
            }
            None => {
                // A server makes `catalog/` on its first start; without it
                // this is not a server's data directory (a typo, a wrong
                // mount), and opening it would create an empty catalog.
                if !args.data_dir.join("catalog").is_dir() {
                    return Err(format!(
                        "no inflow catalog under {}: give the --data-dir a server uses \
                         (it makes one on its first start), or --host to reach a running server",
                        args.data_dir.display()
                    ));
                }
                let store = Store::local(&args.data_dir).map_err(|e| e.to_string())?;
                let catalog = Catalog::load(store).await.map_err(|e| e.to_string())?;
                Ok(Self::Local(catalog))
            }
        }
    }

    fn local(catalog: &Catalog) -> Admin<'_> {
        Admin {
            catalog,
            clock: &crate::clock::SystemClock,
        }
    }

    pub async fn databases(&self) -> Result<Vec<DatabaseInfo>, String> {
        match self {
            Self::Local(c) => Self::local(c).databases().await.map_err(|e| e.to_string()),
            Self::Remote(_) => self.call("GET", "/api/v3/configure/database", None).await,
        }
    }

    pub async fn create_database(
        &self,
        name: &str,
        settings: &DatabaseSettings,
    ) -> Result<(), String> {
        match self {
            Self::Local(c) => Self::local(c)
                .create_database(name, settings)
                .await
                .map_err(|e| e.to_string()),
            Self::Remote(_) => {
                let body = database_body(name, settings);
                self.call_empty("POST", "/api/v3/configure/database", Some(body))
                    .await
            }
        }
    }

    pub async fn update_database(
        &self,
        name: &str,
        settings: &DatabaseSettings,
    ) -> Result<(), String> {
        match self {
            Self::Local(c) => Self::local(c)
                .update_database(name, settings)
                .await
                .map_err(|e| e.to_string()),
            Self::Remote(_) => {
                let body = database_body(name, settings);
                self.call_empty("PUT", "/api/v3/configure/database", Some(body))
                    .await
            }
        }
    }

    pub async fn delete_database(&self, name: &str) -> Result<(), String> {
        match self {
            Self::Local(c) => Self::local(c)
                .delete_database(name)
                .await
                .map_err(|e| e.to_string()),
            Self::Remote(_) => {
                let path = format!("/api/v3/configure/database?{}", query(&[("db", name)]));
                self.call_empty("DELETE", &path, None).await
            }
        }
    }

    pub async fn tables(&self, database: &str) -> Result<Vec<TableInfo>, String> {
        match self {
            Self::Local(c) => Self::local(c)
                .tables(database)
                .await
                .map_err(|e| e.to_string()),
            Self::Remote(_) => {
                let path = format!("/api/v3/configure/table?{}", query(&[("db", database)]));
                self.call("GET", &path, None).await
            }
        }
    }

    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, String> {
        match self {
            Self::Local(c) => Self::local(c).tokens().await.map_err(|e| e.to_string()),
            Self::Remote(_) => self.call("GET", "/api/v3/configure/token", None).await,
        }
    }

    pub async fn create_token(
        &self,
        name: &str,
        permissions: Vec<Permission>,
        expiry: Option<Duration>,
    ) -> Result<NewToken, String> {
        match self {
            Self::Local(c) => Self::local(c)
                .create_token(name, permissions, expiry)
                .await
                .map_err(|e| e.to_string()),
            Self::Remote(_) => {
                let expiry_secs = expiry.map(|e| e.as_secs());
                if permissions.contains(&Permission::Admin) {
                    let body = serde_json::json!({"token_name": name, "expiry_secs": expiry_secs});
                    return self
                        .call("POST", "/api/v3/configure/token/admin", Some(body))
                        .await;
                }
                let grants: Vec<serde_json::Value> = permissions
                    .iter()
                    .filter_map(|p| match p {
                        Permission::Database {
                            name, read, write, ..
                        } => {
                            let actions: Vec<&str> = [(*read, "read"), (*write, "write")]
                                .into_iter()
                                .filter(|(on, _)| *on)
                                .map(|(_, a)| a)
                                .collect();
                            Some(serde_json::json!({
                                "resource_type": "db",
                                "resource_identifier": [name],
                                "actions": actions,
                            }))
                        }
                        Permission::Admin => None,
                    })
                    .collect();
                let body = serde_json::json!({
                    "token_name": name,
                    "permissions": grants,
                    "expiry_secs": expiry_secs,
                });
                self.call("POST", "/api/v3/configure/token", Some(body))
                    .await
            }
        }
    }

    pub async fn revoke_token(&self, name: &str) -> Result<(), String> {
        match self {
            Self::Local(c) => Self::local(c)
                .revoke_token(name)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Self::Remote(_) => {
                let path = format!("/api/v3/configure/token?{}", query(&[("token_name", name)]));
                self.call_empty("DELETE", &path, None).await
            }
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, String> {
        let bytes = self.send(method, path, body).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("unexpected answer from the server: {e}"))
    }

    async fn call_empty(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(), String> {
        self.send(method, path, body).await.map(|_| ())
    }

    /// One request; a non-2xx answer is an error with the server's message.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<bytes::Bytes, String> {
        let Self::Remote(remote) = self else {
            return Err("not a remote target".into());
        };
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        remote
            .json(method, path, body)
            .await
            .map_err(|e| e.to_string())
    }
}

/// `{"db", …settings}` as the API takes it.
fn database_body(name: &str, settings: &DatabaseSettings) -> serde_json::Value {
    let mut body = serde_json::to_value(settings).unwrap_or_default();
    if let Some(map) = body.as_object_mut() {
        map.insert("db".into(), name.into());
    }
    body
}

fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}
