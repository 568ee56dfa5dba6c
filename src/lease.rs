//! Who may write a WAL prefix: one lease per ingester id, with epochs and fencing.
//!
//! At the top of the crate, below the ingester (WAL leases) and the compactor
//! (its own lease), so neither imports the other for it.
//!
//! ```text
//! catalog/leases/<id>/<epoch:020>.claim     Create  {"owner": ...}: first claimant of an epoch wins
//! catalog/leases/<id>/<epoch:020>.beat      Overwrite, by the holder, every ttl/3
//! catalog/leases/<id>/<epoch:020>.released  Create, by the holder when it is done
//! catalog/clock/<id>                        Overwrite: how a process reads the store's clock
//! ```
//!
//! The newest claim is the lease. It is alive while its last claim or beat is at
//! most `ttl` old, measured against a clock object just written (the object
//! store's time, never a local clock). When it is released or expired, anyone
//! may claim the next epoch; if it expired, the new holder first *fences* the
//! prefix by writing an empty segment at its next free segment number with
//! `PutMode::Create`. Every earlier holder, if only paused, then fails its next
//! commit (the number is taken) and must stop acknowledging. The numbers are one
//! namespace for all epochs: a claimant may die between its claim and its fence,
//! so the holder still writing can be older than the epoch the next claimant
//! finds unreleased.
//! Fencing, not the clock, is what makes this safe: a late heartbeat can at worst
//! delay a takeover. The fence itself is written by the WAL
//! (`ingester::wal::fence`); leases of other kinds (the compactor's) need none.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::store::{AppendLog, Appended, Put, Store, StoreError};

const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease storage: {0}")]
    Store(#[from] StoreError),
    #[error("lease claim {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Claim {
    format_version: u32,
    owner: String,
}

/// The newest claim on a prefix, as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub epoch: u64,
    pub owner: String,
    /// Store time of the last claim or heartbeat.
    pub last_seen: DateTime<Utc>,
    pub released: bool,
}

/// Where the newest claim on a prefix stands, without its owner: what one
/// listing of every prefix tells (see [`Leases::standings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub epoch: u64,
    pub released: bool,
}

/// What a successful claim found before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimed {
    pub epoch: u64,
    /// The previous epoch, when it ended without a release and must be fenced.
    pub unreleased: Option<u64>,
}

/// Leases as seen by one process (`me`), which claims and heartbeats in its name.
#[derive(Debug, Clone)]
pub struct Leases {
    store: Store,
    /// Where the leases live: WAL leases under `catalog/leases`; other kinds
    /// (the compactor's) elsewhere, so WAL takeover never sees them.
    root: &'static str,
    me: String,
    ttl: Duration,
}

/// A running [`Leases::keep_alive`]; dropping it stops the heartbeats.
#[derive(Debug)]
pub struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The root of the WAL leases.
pub const WAL_LEASES: &str = "catalog/leases";

fn dir_in(root: &str, prefix: &str) -> Path {
    Path::from(format!("{root}/{prefix}"))
}

/// The objects of one kind of `prefix`'s lease, one per epoch: a claim is
/// an entry of this create-only log, so one claimant wins each epoch.
fn objects_in(store: &Store, root: &str, prefix: &str, kind: Kind) -> AppendLog {
    AppendLog::new(store.clone(), format!("{root}/{prefix}")).with_suffix(kind.suffix())
}

/// The kinds of lease object.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Claim,
    Beat,
    Released,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Self::Claim => ".claim",
            Self::Beat => ".beat",
            Self::Released => ".released",
        }
    }
}

impl Leases {
    pub fn new(store: Store, me: impl Into<String>, ttl: Duration) -> Self {
        Self::under(store, WAL_LEASES, me, ttl)
    }

    /// Leases under another root than the WAL's.
    pub fn under(store: Store, root: &'static str, me: impl Into<String>, ttl: Duration) -> Self {
        Self {
            store,
            root,
            me: me.into(),
            ttl,
        }
    }

    fn dir(&self, prefix: &str) -> Path {
        dir_in(self.root, prefix)
    }

    fn objects(&self, prefix: &str, kind: Kind) -> AppendLog {
        objects_in(&self.store, self.root, prefix, kind)
    }

    /// The object store's current time: the modification time of an object
    /// written just now.
    pub async fn store_now(&self) -> Result<DateTime<Utc>, LeaseError> {
        let path = Path::from(format!("catalog/clock/{}", self.me));
        self.store.put(&path, Bytes::new(), Put::Overwrite).await?;
        Ok(self.store.head(&path).await?.last_modified)
    }

    /// The newest claim on `prefix`, if it was ever claimed.
    pub async fn view(&self, prefix: &str) -> Result<Option<View>, LeaseError> {
        let objects = self.store.list(&self.dir(prefix)).await?;
        let parsed = objects.iter().filter_map(|m| {
            let name = m.location.filename()?;
            let (epoch, kind) = name.split_once('.')?;
            Some((epoch.parse::<u64>().ok()?, kind, m))
        });
        let Some(epoch) = parsed
            .clone()
            .filter(|(_, kind, _)| *kind == "claim")
            .map(|(e, _, _)| e)
            .max()
        else {
            return Ok(None);
        };
        let mut last_seen = DateTime::<Utc>::MIN_UTC;
        let mut released = false;
        for (_, kind, meta) in parsed.filter(|(e, _, _)| *e == epoch) {
            match kind {
                "claim" | "beat" => last_seen = last_seen.max(meta.last_modified),
                "released" => released = true,
                _ => {}
            }
        }
        let path = self.objects(prefix, Kind::Claim).path(epoch);
        let bytes = self.store.get(&path).await?;
        let claim: Claim = serde_json::from_slice(&bytes).map_err(|e| LeaseError::Corrupt {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Some(View {
            epoch,
            owner: claim.owner,
            last_seen,
            released,
        }))
    }

    /// Whether the lease may be claimed now: released, or silent for over `ttl`.
    pub async fn is_free(&self, view: &View) -> Result<bool, LeaseError> {
        if view.released {
            return Ok(true);
        }
        let now = self.store_now().await?;
        Ok(now.signed_duration_since(view.last_seen) > chrono_ttl(self.ttl))
    }

    /// Claims the next epoch of `prefix` if its lease is free now; `None` if it
    /// is held, or another claimant won the race.
    pub async fn try_claim(&self, prefix: &str) -> Result<Option<Claimed>, LeaseError> {
        let view = self.view(prefix).await?;
        let (epoch, unreleased) = match &view {
            None => (1, None),
            Some(v) if self.is_free(v).await? => (v.epoch + 1, (!v.released).then_some(v.epoch)),
            Some(_) => return Ok(None),
        };
        self.claim(prefix, epoch, unreleased).await
    }

    /// Claims the next epoch without waiting for the current holder to expire:
    /// only for a process that knows no other can hold `prefix` (it holds the
    /// local data directory's lock).
    pub async fn claim_exclusive(&self, prefix: &str) -> Result<Option<Claimed>, LeaseError> {
        let (epoch, unreleased) = match self.view(prefix).await? {
            None => (1, None),
            Some(v) => (v.epoch + 1, (!v.released).then_some(v.epoch)),
        };
        self.claim(prefix, epoch, unreleased).await
    }

    async fn claim(
        &self,
        prefix: &str,
        epoch: u64,
        unreleased: Option<u64>,
    ) -> Result<Option<Claimed>, LeaseError> {
        let claim = Claim {
            format_version: FORMAT_VERSION,
            owner: self.me.clone(),
        };
        let bytes = Bytes::from(serde_json::to_vec(&claim).expect("claims serialize"));
        match self
            .objects(prefix, Kind::Claim)
            .create(epoch, bytes)
            .await?
        {
            Appended::Written => Ok(Some(Claimed { epoch, unreleased })),
            Appended::Taken => Ok(None),
        }
    }

    /// Claims `prefix`, waiting for its current holder to release it or expire.
    pub async fn acquire(&self, prefix: &str) -> Result<Claimed, LeaseError> {
        let mut said = false;
        loop {
            if let Some(claimed) = self.try_claim(prefix).await? {
                return Ok(claimed);
            }
            if !said {
                tracing::info!(
                    prefix,
                    ttl = ?self.ttl,
                    "WAL lease held by another process; waiting for it to be released or expire"
                );
                said = true;
            }
            tokio::time::sleep(self.ttl / 4).await;
        }
    }

    /// Renews a held lease. Returns false, without renewing, when a newer epoch
    /// was claimed: the lease is lost and the holder is fenced or about to be.
    pub async fn beat(&self, prefix: &str, epoch: u64) -> Result<bool, LeaseError> {
        match self.view(prefix).await? {
            Some(v) if v.epoch == epoch && v.owner == self.me && !v.released => {}
            _ => return Ok(false),
        }
        self.store
            .put(
                &self.objects(prefix, Kind::Beat).path(epoch),
                Bytes::new(),
                Put::Overwrite,
            )
            .await?;
        Ok(true)
    }

    /// Renews `epoch` of `prefix` every ttl/3 until the returned guard is
    /// dropped or the lease is found lost: for work done under a claim (a
    /// takeover, a replay, a compaction) that may outlast the ttl.
    pub fn keep_alive(&self, prefix: &str, epoch: u64) -> Heartbeat {
        let (leases, prefix) = (self.clone(), prefix.to_string());
        Heartbeat(tokio::spawn(async move {
            loop {
                tokio::time::sleep(leases.ttl / 3).await;
                match leases.beat(&prefix, epoch).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(error = %e, prefix, "lease heartbeat failed"),
                }
            }
        }))
    }

    /// Gives the lease up, so the next claimant need not wait for it to expire.
    pub async fn release(&self, prefix: &str, epoch: u64) -> Result<(), LeaseError> {
        // Taken: released already (a retry after a put that was done).
        let released = self.objects(prefix, Kind::Released);
        released.create(epoch, Bytes::new()).await?;
        Ok(())
    }

    /// Every prefix that has ever been claimed.
    pub async fn prefixes(&self) -> Result<Vec<String>, LeaseError> {
        let mut out: Vec<String> = self
            .store
            .list(&Path::from(self.root))
            .await?
            .iter()
            .filter_map(|m| {
                let depth = Path::from(self.root).parts().count();
                m.location
                    .parts()
                    .nth(depth)
                    .map(|p| p.as_ref().to_string())
            })
            .collect();
        out.dedup();
        Ok(out)
    }

    /// The newest claim of every prefix ever claimed, from one listing of
    /// the root: for a reader that needs no owner (a querier asking which
    /// WALs may still hold unpersisted rows).
    pub async fn standings(&self) -> Result<BTreeMap<String, Standing>, LeaseError> {
        let root = Path::from(self.root);
        let depth = root.parts().count();
        let mut out: BTreeMap<String, Standing> = BTreeMap::new();
        let mut released: BTreeSet<(String, u64)> = BTreeSet::new();
        for meta in self.store.list(&root).await? {
            let mut parts = meta.location.parts().skip(depth);
            let (Some(prefix), Some(name), None) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some((epoch, kind)) = name.as_ref().split_once('.') else {
                continue;
            };
            let Ok(epoch) = epoch.parse::<u64>() else {
                continue;
            };
            let prefix = prefix.as_ref().to_string();
            match kind {
                "claim" => {
                    let newest = out.entry(prefix).or_insert(Standing {
                        epoch,
                        released: false,
                    });
                    newest.epoch = newest.epoch.max(epoch);
                }
                "released" => {
                    released.insert((prefix, epoch));
                }
                _ => {}
            }
        }
        for (prefix, standing) in &mut out {
            standing.released = released.contains(&(prefix.clone(), standing.epoch));
        }
        Ok(out)
    }

    /// Deletes the lease objects of epochs before `epoch`, which nobody reads again.
    pub async fn prune(&self, prefix: &str, epoch: u64) -> Result<(), LeaseError> {
        for meta in self.store.list(&self.dir(prefix)).await? {
            let old = meta
                .location
                .filename()
                .and_then(|n| n.split_once('.'))
                .and_then(|(e, _)| e.parse::<u64>().ok())
                .is_some_and(|e| e < epoch);
            if old {
                self.store.delete(&meta.location).await?;
            }
        }
        Ok(())
    }
}

fn chrono_ttl(ttl: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &std::path::Path) -> Store {
        Store::local(dir).unwrap()
    }

    #[tokio::test]
    async fn one_claimant_wins_each_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let a = Leases::new(store(dir.path()), "a", Duration::from_secs(60));
        let b = Leases::new(store(dir.path()), "b", Duration::from_secs(60));
        let first = a.try_claim("p").await.unwrap();
        assert_eq!(
            first,
            Some(Claimed {
                epoch: 1,
                unreleased: None
            })
        );
        // Held and fresh: nobody else gets it.
        assert_eq!(b.try_claim("p").await.unwrap(), None);
        let view = b.view("p").await.unwrap().unwrap();
        assert_eq!((view.epoch, view.owner.as_str()), (1, "a"));
        // Two claimants racing for the same epoch: Create lets one through.
        assert!(a.claim("q", 1, None).await.unwrap().is_some());
        assert!(b.claim("q", 1, None).await.unwrap().is_none());
        assert_eq!(a.prefixes().await.unwrap(), vec!["p", "q"]);
    }

    #[tokio::test]
    async fn a_released_lease_is_free_at_once_and_a_silent_one_after_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_millis(300);
        let a = Leases::new(store(dir.path()), "a", ttl);
        let b = Leases::new(store(dir.path()), "b", ttl);
        a.try_claim("p").await.unwrap().unwrap();
        a.release("p", 1).await.unwrap();
        assert_eq!(
            b.try_claim("p").await.unwrap(),
            Some(Claimed {
                epoch: 2,
                unreleased: None
            })
        );
        // b's lease is fresh; a heartbeat from a, who lost it, is refused.
        assert!(!a.beat("p", 1).await.unwrap());
        assert_eq!(a.try_claim("p").await.unwrap(), None);
        // Heartbeats keep it alive past the ttl...
        for _ in 0..4 {
            tokio::time::sleep(ttl / 3).await;
            assert!(b.beat("p", 2).await.unwrap());
        }
        assert_eq!(a.try_claim("p").await.unwrap(), None);
        // ...silence lets it expire, and the next claim must fence epoch 2.
        tokio::time::sleep(ttl + Duration::from_millis(100)).await;
        assert_eq!(
            a.try_claim("p").await.unwrap(),
            Some(Claimed {
                epoch: 3,
                unreleased: Some(2)
            })
        );
        assert!(!b.beat("p", 2).await.unwrap());
        a.prune("p", 3).await.unwrap();
        assert_eq!(a.view("p").await.unwrap().unwrap().epoch, 3);
        let left = store(dir.path()).list(&dir_path("p")).await.unwrap().len();
        assert_eq!(left, 1, "only epoch 3's claim remains");
    }

    /// One listing tells every prefix's newest epoch and whether it was
    /// released, as `view` tells one prefix's.
    #[tokio::test]
    async fn standings_agree_with_each_view() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_secs(60);
        let a = Leases::new(store(dir.path()), "a", ttl);
        let b = Leases::new(store(dir.path()), "b", ttl);
        assert!(a.standings().await.unwrap().is_empty());
        a.try_claim("p").await.unwrap().unwrap();
        a.release("p", 1).await.unwrap();
        b.try_claim("p").await.unwrap().unwrap(); // epoch 2, held
        b.try_claim("q").await.unwrap().unwrap();
        assert!(b.beat("q", 1).await.unwrap());
        b.release("q", 1).await.unwrap();
        let standings = a.standings().await.unwrap();
        assert_eq!(
            standings,
            BTreeMap::from([
                (
                    "p".to_string(),
                    Standing {
                        epoch: 2,
                        released: false
                    }
                ),
                (
                    "q".to_string(),
                    Standing {
                        epoch: 1,
                        released: true
                    }
                ),
            ])
        );
        for (prefix, standing) in &standings {
            let view = a.view(prefix).await.unwrap().unwrap();
            assert_eq!(
                (view.epoch, view.released),
                (standing.epoch, standing.released)
            );
        }
        // Leases under another root are not WAL leases.
        let other = Leases::under(store(dir.path()), "catalog/compactor", "c", ttl);
        other.try_claim("p").await.unwrap().unwrap();
        assert_eq!(a.standings().await.unwrap(), standings);
    }

    fn dir_path(prefix: &str) -> Path {
        dir_in(WAL_LEASES, prefix)
    }
}
