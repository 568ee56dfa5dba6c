//! Tokens and permissions, shared by every HTTP and gRPC entry point.
//!
//! Tokens are random, shown once, and stored only as SHA-256 hashes in the catalog.
//! A presented token is hashed and looked up; the final comparison of hashes is in
//! constant time. The operator (admin) token comes from the environment, a file, or
//! is generated on first start into a 0600 file in the data directory. Tokens made
//! by another process (`inflow token create`) are found by re-reading the catalog
//! when a token is unknown: that costs one read of the next log entry number.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use http::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::catalog::{Catalog, CatalogState, Database, DbId, Permission, TokenRecord};
use crate::clock::SharedClock;

/// Prefix of every token this service makes, so they are recognisable in a leak scan.
pub const TOKEN_PREFIX: &str = "inflow_";

/// Name of the generated operator token file inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Why a request was not authenticated. Logged, never returned to the client.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no Authorization header")]
    Missing,
    #[error("malformed Authorization header")]
    Malformed,
    #[error("unsupported Authorization scheme")]
    UnknownScheme,
    #[error("empty token")]
    Empty,
    #[error("unknown token")]
    UnknownToken,
    #[error("expired token")]
    Expired,
    #[error("catalog unavailable for token lookup")]
    Catalog,
}

impl AuthError {
    /// Every reason is "not authenticated" to the client; the reason is logged.
    pub fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::Unauthenticated
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error("reading admin token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing admin token file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("admin token file {0} is empty")]
    Empty(PathBuf),
}

/// Who made a request, and what they may do.
#[derive(Debug, Clone)]
pub struct Principal {
    admin: bool,
    permissions: Vec<Permission>,
}

impl Principal {
    pub fn admin() -> Self {
        Self {
            admin: true,
            permissions: vec![],
        }
    }

    pub fn is_admin(&self) -> bool {
        self.admin || self.permissions.contains(&Permission::Admin)
    }

    /// Whether the token names `database` with write permission: checked
    /// before the database is looked up, so a token learns nothing about
    /// databases it was never given. [`Self::can_write`] decides.
    pub fn may_write(&self, database: &str) -> bool {
        self.is_admin() || self.names(database, |write, _| write)
    }

    /// [`Self::may_write`] for reading.
    pub fn may_read(&self, database: &str) -> bool {
        self.is_admin() || self.names(database, |_, read| read)
    }

    /// Whether the token may write to this database: by id, so a token made
    /// for a deleted database of the same name does not reach it.
    pub fn can_write(&self, database: &Database) -> bool {
        self.is_admin() || self.grants(database.id, |write, _| write)
    }

    /// Whether the token may read this database, by id.
    pub fn can_read(&self, database: &Database) -> bool {
        self.is_admin() || self.grants(database.id, |_, read| read)
    }

    /// [`Self::can_read`] of the live database named `database` in `state`;
    /// with no such database, [`Self::may_read`] (the caller then answers
    /// that it does not exist).
    pub fn can_read_in(&self, state: &CatalogState, database: &str) -> bool {
        match state.database(database) {
            Some(db) => self.can_read(db),
            None => self.may_read(database),
        }
    }

    fn names(&self, database: &str, action: impl Fn(bool, bool) -> bool) -> bool {
        self.permissions.iter().any(|p| {
            matches!(p, Permission::Database { name, read, write, .. }
                if name == database && action(*write, *read))
        })
    }

    fn grants(&self, id: DbId, action: impl Fn(bool, bool) -> bool) -> bool {
        self.permissions.iter().any(|p| {
            matches!(p, Permission::Database { database_id: Some(granted), read, write, .. }
                if *granted == id && action(*write, *read))
        })
    }
}

/// A new random token: the prefix and 32 random bytes, base64url.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Extracts the token from `Token T` or `Bearer T` (schemes are case-insensitive).
pub fn token_from_header(value: Option<&HeaderValue>) -> Result<&str, AuthError> {
    let value = value.ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    if !(scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer")) {
        return Err(AuthError::UnknownScheme);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Empty);
    }
    Ok(token)
}

/// The token of a v1 request: `Authorization: Token|Bearer T`, Basic with the
/// token as the password (any user name), or the `p` query parameter.
pub fn v1_token<'a>(
    header: Option<&'a HeaderValue>,
    password: Option<&'a str>,
) -> Result<String, AuthError> {
    if let Some(value) = header {
        let text = value.to_str().map_err(|_| AuthError::Malformed)?.trim();
        if let Some((scheme, encoded)) = text.split_once(' ')
            && scheme.eq_ignore_ascii_case("basic")
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| AuthError::Malformed)?;
            let decoded = String::from_utf8(decoded).map_err(|_| AuthError::Malformed)?;
            let (_, token) = decoded.split_once(':').ok_or(AuthError::Malformed)?;
            if token.is_empty() {
                return Err(AuthError::Empty);
            }
            return Ok(token.to_string());
        }
        return token_from_header(Some(value)).map(str::to_string);
    }
    match password {
        Some("") => Err(AuthError::Empty),
        Some(p) => Ok(p.to_string()),
        None => Err(AuthError::Missing),
    }
}

/// How long a token found in no catalog is refused from memory.
pub const UNKNOWN_TOKEN_TTL: Duration = Duration::from_secs(2);
/// Misses (tokens not in the catalog as known) reread it at most this often:
/// a reread is an object-store request, and random tokens cost a client
/// nothing.
pub const MISS_REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// Unknown tokens remembered at most; past it the expired ones are dropped,
/// and if all are live the memory starts over.
const UNKNOWN_TOKENS_KEPT: usize = 4096;

#[derive(Debug)]
pub struct Authorizer {
    admin_hash: [u8; 32],
    catalog: Arc<Catalog>,
    /// Hashes of tokens refused as unknown, with when.
    unknown: parking_lot::Mutex<HashMap<[u8; 32], Instant>>,
    /// When the last reread for a miss started; held while one waits or
    /// rereads, so concurrent misses share it.
    last_miss_refresh: tokio::sync::Mutex<Option<Instant>>,
    miss_refreshes: AtomicU64,
    /// Judges token expiry.
    clock: SharedClock,
    /// `--without-auth`: every request is the operator's (local development).
    open: bool,
}

impl Authorizer {
    pub fn new(admin_token: &str, catalog: Arc<Catalog>) -> Self {
        Self {
            admin_hash: hash_token(admin_token),
            catalog,
            unknown: Default::default(),
            last_miss_refresh: Default::default(),
            miss_refreshes: AtomicU64::new(0),
            clock: crate::clock::system(),
            open: false,
        }
    }

    /// An authorizer that lets every request in as the operator, with or
    /// without credentials (`--without-auth`, for local development only).
    pub fn without_auth(mut self) -> Self {
        self.open = true;
        self
    }

    /// This authorizer judging expiry by `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock of the process this authorizer serves.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// How often a miss has reread the catalog.
    pub fn miss_refreshes(&self) -> u64 {
        self.miss_refreshes.load(Ordering::Relaxed)
    }

    /// Authenticates the value of an `Authorization` header.
    pub async fn authenticate(&self, header: Option<&HeaderValue>) -> Result<Principal, AuthError> {
        if self.open {
            return Ok(Principal::admin());
        }
        let token = token_from_header(header)?;
        self.authenticate_token(token).await
    }

    /// Authenticates a v1 request: its `Authorization` header (`Token`,
    /// `Bearer` or `Basic`) or its `p` parameter (see [`v1_token`]).
    pub async fn authenticate_v1(
        &self,
        header: Option<&HeaderValue>,
        password: Option<&str>,
    ) -> Result<Principal, AuthError> {
        if self.open {
            return Ok(Principal::admin());
        }
        let token = v1_token(header, password)?;
        self.authenticate_token(&token).await
    }

    pub async fn authenticate_token(&self, token: &str) -> Result<Principal, AuthError> {
        let hash = hash_token(token);
        if bool::from(hash.ct_eq(&self.admin_hash)) {
            return Ok(Principal::admin());
        }
        let hex = hex::encode(hash);
        let record = match self.lookup(&hex) {
            Some(r) => r,
            None => self.lookup_missed(hash, &hex).await?,
        };
        if record
            .expires_at_ns
            .is_some_and(|expires| expires <= self.clock.now_ns())
        {
            return Err(AuthError::Expired);
        }
        Ok(Principal {
            admin: false,
            permissions: record.permissions.clone(),
        })
    }

    /// A token the catalog as known does not have: refused from memory if it
    /// was refused lately, else looked up again after a reread of the catalog
    /// that started after this request arrived (so a token made a moment ago
    /// by the CLI is found). Rereads are one at a time and at most one per
    /// `MISS_REFRESH_INTERVAL`; every miss that arrived before one started
    /// is answered by it, so a flood of unknown tokens costs about ten
    /// rereads a second, not one each.
    async fn lookup_missed(
        &self,
        hash: [u8; 32],
        hex: &str,
    ) -> Result<Arc<TokenRecord>, AuthError> {
        let arrived = Instant::now();
        if self
            .unknown
            .lock()
            .get(&hash)
            .is_some_and(|at| arrived.duration_since(*at) < UNKNOWN_TOKEN_TTL)
        {
            return Err(AuthError::UnknownToken);
        }
        let mut last = self.last_miss_refresh.lock().await;
        let covered = last.is_some_and(|started| started >= arrived);
        if !covered {
            if let Some(started) = *last {
                tokio::time::sleep_until((started + MISS_REFRESH_INTERVAL).into()).await;
            }
            self.miss_refreshes.fetch_add(1, Ordering::Relaxed);
            *last = Some(Instant::now());
            self.catalog
                .refresh()
                .await
                .map_err(|_| AuthError::Catalog)?;
        }
        drop(last);
        if let Some(record) = self.lookup(hex) {
            return Ok(record);
        }
        let mut unknown = self.unknown.lock();
        if unknown.len() >= UNKNOWN_TOKENS_KEPT {
            unknown.retain(|_, at| at.elapsed() < UNKNOWN_TOKEN_TTL);
            if unknown.len() >= UNKNOWN_TOKENS_KEPT {
                unknown.clear();
            }
        }
        unknown.insert(hash, Instant::now());
        Err(AuthError::UnknownToken)
    }

    fn lookup(&self, hex: &str) -> Option<Arc<TokenRecord>> {
        let state = self.catalog.state();
        let record = state.token(hex)?;
        // The map lookup is by hash; compare the stored hash in constant time too.
        bool::from(record.hash.as_bytes().ct_eq(hex.as_bytes())).then(|| Arc::clone(record))
    }
}

/// Where the operator token came from, for the start-up message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTokenSource {
    Env,
    File(PathBuf),
    Generated(PathBuf),
}

/// The environment variables that give the operator token, first wins:
/// `INFLOW_TOKEN` is the one the CLI reads too (so one variable serves
/// both); `INFLOW_ADMIN_TOKEN` is its older name, still read.
pub const TOKEN_VARIABLES: [&str; 2] = ["INFLOW_TOKEN", "INFLOW_ADMIN_TOKEN"];

/// Resolves the operator token: the environment ([`TOKEN_VARIABLES`]), else `--admin-token-file`, else
/// the file in the data directory, generated with mode 0600 if it does not exist.
pub fn admin_token(
    env_value: Option<String>,
    file: Option<&Path>,
    data_dir: &Path,
) -> Result<(String, AdminTokenSource), AdminTokenError> {
    if let Some(v) = env_value.filter(|v| !v.trim().is_empty()) {
        return Ok((v.trim().to_string(), AdminTokenSource::Env));
    }
    let read = |path: &Path| -> Result<String, AdminTokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| AdminTokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(AdminTokenError::Empty(path.to_path_buf()));
        }
        Ok(token.to_string())
    };
    if let Some(path) = file {
        return Ok((read(path)?, AdminTokenSource::File(path.to_path_buf())));
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    if path.exists() {
        return Ok((read(&path)?, AdminTokenSource::File(path)));
    }
    let token = generate_token();
    write_private(&path, &token).map_err(|source| AdminTokenError::Write {
        path: path.clone(),
        source,
    })?;
    Ok((token, AdminTokenSource::Generated(path)))
}

/// Writes a file readable only by its owner, created exclusively.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Builds the record for a new token created at `now_ns`; the caller shows
/// `token` once.
pub fn new_token_record(
    permissions: Vec<Permission>,
    description: String,
    now_ns: i64,
) -> (String, TokenRecord) {
    let token = generate_token();
    let record = TokenRecord {
        id: 0,
        hash: hex::encode(hash_token(&token)),
        permissions,
        description,
        created_at_ns: now_ns,
        expires_at_ns: None,
    };
    (token, record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::store::Store;

    #[test]
    fn both_schemes_and_their_failures() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(token_from_header(Some(&h("Token abc"))).unwrap(), "abc");
        assert_eq!(token_from_header(Some(&h("Bearer abc"))).unwrap(), "abc");
        assert_eq!(token_from_header(Some(&h("bearer  abc "))).unwrap(), "abc");
        assert!(matches!(token_from_header(None), Err(AuthError::Missing)));
        assert!(matches!(
            token_from_header(Some(&h("Basic abc"))),
            Err(AuthError::UnknownScheme)
        ));
        assert!(matches!(
            token_from_header(Some(&h("Token"))),
            Err(AuthError::Malformed)
        ));
        assert!(matches!(
            token_from_header(Some(&h("Token  "))),
            Err(AuthError::Malformed)
        ));
    }

    #[test]
    fn v1_credentials() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("user:tok")
        );
        assert_eq!(v1_token(Some(&h(&basic)), None).unwrap(), "tok");
        assert_eq!(
            v1_token(Some(&h("Token tok")), Some("other")).unwrap(),
            "tok"
        );
        assert_eq!(v1_token(None, Some("tok")).unwrap(), "tok");
        assert!(matches!(v1_token(None, None), Err(AuthError::Missing)));
        assert!(matches!(v1_token(None, Some("")), Err(AuthError::Empty)));
        assert!(matches!(
            v1_token(Some(&h("Basic !!!")), None),
            Err(AuthError::Malformed)
        ));
    }

    #[tokio::test]
    async fn tokens_are_stored_as_hashes_and_scoped() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::load(Store::local(dir.path()).unwrap())
            .await
            .unwrap();
        let auth = Authorizer::new("admin-secret", Arc::clone(&catalog));
        assert!(
            auth.authenticate_token("admin-secret")
                .await
                .unwrap()
                .is_admin()
        );

        let perm = Permission::database("db", false, true);
        let (token, record) = new_token_record(vec![perm], String::new(), SystemClock.now_ns());
        catalog.create_token(record).await.unwrap();
        let p = auth.authenticate_token(&token).await.unwrap();
        let db = catalog.state().database("db").cloned().unwrap();
        assert!(p.can_write(&db) && !p.can_read(&db) && !p.is_admin());
        assert!(p.may_write("db") && !p.may_read("db") && !p.may_write("other"));
        assert!(matches!(
            auth.authenticate_token("inflow_nope").await,
            Err(AuthError::UnknownToken)
        ));

        let on_disk = walk(dir.path());
        assert!(
            !on_disk.contains(&token),
            "the token itself must never be stored"
        );
        assert!(on_disk.contains(&hex::encode(hash_token(&token))));
    }

    /// A flood of unknown tokens does not become a flood of catalog reads
    /// (one object-store read each, before): misses that arrive together
    /// share a reread, rereads are at most one per `MISS_REFRESH_INTERVAL`,
    /// and a token refused lately is refused from memory. A token another
    /// process made a moment ago is still found at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_tokens_do_not_each_reread_the_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        let catalog = Catalog::load(store.clone()).await.unwrap();
        let auth = Arc::new(Authorizer::new("admin-secret", Arc::clone(&catalog)));
        let started = std::time::Instant::now();
        let flood = (0..200).map(|i| {
            let auth = Arc::clone(&auth);
            tokio::spawn(async move { auth.authenticate_token(&format!("inflow_nope{i}")).await })
        });
        for r in futures::future::join_all(flood).await {
            assert!(matches!(r.unwrap(), Err(AuthError::UnknownToken)));
        }
        let intervals = started.elapsed().as_nanos() / MISS_REFRESH_INTERVAL.as_nanos() + 1;
        let refreshes = auth.miss_refreshes();
        assert!(
            u128::from(refreshes) <= intervals,
            "{refreshes} catalog rereads for 200 unknown tokens in {:?}",
            started.elapsed()
        );
        // The same unknown token again: no reread at all.
        let before = auth.miss_refreshes();
        for _ in 0..50 {
            assert!(auth.authenticate_token("inflow_nope7").await.is_err());
        }
        assert_eq!(auth.miss_refreshes(), before);

        // Right after a miss, a token another process made is found.
        assert!(auth.authenticate_token("inflow_other").await.is_err());
        let other = Catalog::load(store).await.unwrap();
        let perm = Permission::database("db", true, false);
        let (token, record) = new_token_record(vec![perm], String::new(), SystemClock.now_ns());
        other.create_token(record).await.unwrap();
        let found = auth.authenticate_token(&token).await.unwrap();
        let db = catalog.state().database("db").cloned().unwrap();
        assert!(found.can_read(&db));
    }

    /// A token made for `x` keeps reaching that database only: once it is
    /// deleted and `x` created again, the name still matches (so the answer
    /// is 403, not 404) but the new database is out of its reach.
    #[tokio::test]
    async fn a_token_reaches_only_the_database_it_was_made_for() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::load(Store::local(dir.path()).unwrap())
            .await
            .unwrap();
        let auth = Authorizer::new("admin-secret", Arc::clone(&catalog));
        let perm = Permission::database("x", true, true);
        let (token, record) = new_token_record(vec![perm], "old".into(), SystemClock.now_ns());
        catalog.create_token(record).await.unwrap();
        let old = catalog.state().database("x").cloned().unwrap();
        catalog.delete_database("x", 1).await.unwrap();
        catalog.create_database_strict("x", None).await.unwrap();
        let new = catalog.state().database("x").cloned().unwrap();
        assert_ne!(old.id, new.id);
        let p = auth.authenticate_token(&token).await.unwrap();
        assert!(p.can_read(&old) && p.can_write(&old));
        assert!(!p.can_read(&new) && !p.can_write(&new));
        assert!(!p.can_read_in(&catalog.state(), "x"));
        assert!(p.may_read("x") && p.may_write("x"));
    }

    /// Expiry is judged by the clock the authorizer is given: the same token
    /// passes a second before it expires and is refused at the instant.
    #[tokio::test]
    async fn expiry_follows_the_injected_clock() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::load(Store::local(dir.path()).unwrap())
            .await
            .unwrap();
        let clock = crate::clock::FixedClock::at(1_000_000_000_000);
        let auth = Authorizer::new("admin-secret", Arc::clone(&catalog)).with_clock(clock.clone());
        let perm = Permission::database("x", true, true);
        let (token, mut record) = new_token_record(vec![perm], "t".into(), clock.now_ns());
        record.expires_at_ns = Some(clock.now_ns() + 60_000_000_000);
        catalog.create_token(record).await.unwrap();
        clock.set(1_000_000_000_000 + 59_000_000_000);
        assert!(auth.authenticate_token(&token).await.is_ok());
        clock.set(1_000_000_000_000 + 60_000_000_000);
        assert!(matches!(
            auth.authenticate_token(&token).await,
            Err(AuthError::Expired)
        ));
    }

    /// Tokens stored by a release before permissions carried ids name their
    /// database only: each is bound to the database of that name when it was
    /// made, so a token from before a delete does not reach the database
    /// created afterwards, and one from after does.
    #[tokio::test]
    async fn a_token_stored_by_name_is_bound_to_the_database_it_was_made_for() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("catalog/log");
        std::fs::create_dir_all(&log).unwrap();
        let token_op = |id: u64, token: &str| {
            format!(
                r#"{{"op":"create_token","id":{id},"hash":"{}","permissions":[{{"kind":"database","name":"x","read":true,"write":true}}],"created_at_ns":1}}"#,
                hex::encode(hash_token(token))
            )
        };
        let entries = [
            r#"{"op":"create_database","id":1,"name":"x"}"#.to_string(),
            token_op(1, "before"),
            r#"{"op":"delete_database","database":1,"at_ns":2}"#.to_string(),
            r#"{"op":"create_database","id":2,"name":"x"}"#.to_string(),
            token_op(2, "after"),
        ];
        for (n, op) in entries.iter().enumerate() {
            let version = if op.contains("delete_database") { 2 } else { 1 };
            let entry = format!(r#"{{"format_version":{version},"ops":[{op}]}}"#);
            std::fs::write(log.join(format!("{n:020}.json")), entry).unwrap();
        }
        let catalog = Catalog::load(Store::local(dir.path()).unwrap())
            .await
            .unwrap();
        let auth = Authorizer::new("admin-secret", Arc::clone(&catalog));
        let state = catalog.state();
        let (old, new) = (
            state.database_by_id(1).unwrap(),
            state.database("x").unwrap(),
        );
        assert_eq!(new.id, 2);
        let before = auth.authenticate_token("before").await.unwrap();
        assert!(before.can_read(old) && !before.can_read(new) && !before.can_write(new));
        let after = auth.authenticate_token("after").await.unwrap();
        assert!(after.can_read(new) && after.can_write(new) && !after.can_read(old));
    }

    #[test]
    fn generated_admin_token_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (t1, src) = admin_token(None, None, dir.path()).unwrap();
        let path = dir.path().join(ADMIN_TOKEN_FILE);
        assert_eq!(src, AdminTokenSource::Generated(path.clone()));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (t2, _) = admin_token(None, None, dir.path()).unwrap();
        assert_eq!(t1, t2);
        let (t3, src) = admin_token(Some("from-env".into()), None, dir.path()).unwrap();
        assert_eq!((t3.as_str(), src), ("from-env", AdminTokenSource::Env));
    }

    fn walk(dir: &Path) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.push_str(&walk(&p));
            } else {
                out.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
            }
        }
        out
    }
}
