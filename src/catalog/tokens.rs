//! The tokens part of the catalog: token records (only their hashes) and
//! what each may do, kept in the shared log beside the schema because a
//! permission names its database by id.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::schema::Op;
use super::{Catalog, CatalogError, CatalogState, DbId};

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

impl CatalogState {
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
}

impl CatalogState {
    /// Gives a permission stored without a database id (by a release before
    /// ids were stored) the id of the live database of its name at this point
    /// of the log: every release creates a token's databases in an entry
    /// before the token's, so that is the database the token was made for.
    /// A name with no live database here stays unbound and grants nothing.
    pub(super) fn bind_permissions(&self, token: &mut TokenRecord) {
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

impl Catalog {
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
}
