//! Which unreachable ingesters a query may leave out, judged by the WAL leases.
//!
//! An ingester that does not answer may buffer acknowledged rows that are in
//! no Parquet file yet, so a query it misses fails (`UNAVAILABLE`). But every
//! acknowledged row is in the WAL of some prefix (an ingester id), and a
//! prefix's newest lease claim is released only once all its WAL
//! acknowledged is registered in Parquet: by the ingester itself on a clean
//! stop (it snapshots, then releases), or by the ingester that took its
//! expired lease over (it replays the WAL into Parquet, registers the files,
//! then releases). Writing to a released prefix again takes a new claim,
//! unreleased. So once every prefix with an unreleased newest claim belongs
//! to an ingester that answered this very query, each acknowledged row is in
//! an answer or in a file registered before the leases were read; the files
//! are listed after that (the order in the parent module), and the
//! unreachable addresses can be left out. Otherwise the query stays
//! `UNAVAILABLE`, naming a WAL not taken over yet: its lease is still held, or
//! expired but not yet claimed, or claimed by an ingester still replaying it.
//!
//! The rule needs no id for an unreachable address: an ingester that died
//! before this querier started, whose answer never said who it was, is left
//! out all the same once its WAL is persisted. The ids answers carry name the
//! ingester in the message, and tell when a cached reading of the leases is
//! contradicted by an ingester answering again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::lease::{LeaseError, Leases, Standing};

/// How long one reading of the leases serves queries, so a burst of queries
/// while an ingester is down lists the leases once a second, not once each.
const FRESH: Duration = Duration::from_secs(1);

/// At most this many WAL prefixes are named in a refusal.
const NAMED: usize = 3;

/// An ingester address that did not answer a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    pub addr: String,
    /// The id it answered with last, if it ever did.
    pub id: Option<String>,
    /// Why it did not answer (the transport's words).
    pub reason: String,
}

/// Whether a query may leave the `unreachable` ingesters out, given the ids
/// of the ingesters that `answered` it and every WAL lease's newest claim.
/// `Err` holds why not, for the `UNAVAILABLE` answer.
pub fn decide(
    unreachable: &[Unreachable],
    answered: &BTreeSet<String>,
    standings: &BTreeMap<String, Standing>,
) -> Result<(), String> {
    let pending: BTreeMap<&str, u64> = standings
        .iter()
        .filter(|(id, s)| !s.released && !answered.contains(*id))
        .map(|(id, s)| (id.as_str(), s.epoch))
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    let refuse = "refusing to answer with partial data";
    let known = unreachable.iter().find_map(|u| {
        let id = u.id.as_deref()?;
        pending.get(id).map(|epoch| (u, id, epoch))
    });
    if let Some((u, id, epoch)) = known {
        return Err(format!(
            "ingester {} (id {id}) is unreachable and its WAL has not been taken over yet \
             (lease epoch {epoch} not released): {}; {refuse}",
            u.addr, u.reason
        ));
    }
    let Some(u) = unreachable.first() else {
        return Ok(());
    };
    let who = match &u.id {
        Some(id) => format!("(id {id})"),
        None => "(id unknown: it has not answered this querier)".to_string(),
    };
    let mut named: Vec<&str> = pending.keys().copied().take(NAMED).collect();
    if pending.len() > NAMED {
        named.push("…");
    }
    Err(format!(
        "ingester {} {who} is unreachable: {}; the WAL of {} has not been taken over yet \
         and no ingester that answered holds it; {refuse}",
        u.addr,
        u.reason,
        named.join(", ")
    ))
}

/// The WAL leases as a querier reads them: listed at most once per [`FRESH`],
/// and read again sooner when an ingester the last reading had released (or
/// never claimed) answered since it was taken, having claimed a new epoch in
/// between. A reading is still reused for up to a second: an ingester that
/// restarts, takes writes and never answers this querier within that second
/// could be left out of a query. Reachable, it is never left out, as only
/// ingesters that fail to answer are judged.
#[derive(Debug)]
pub struct WalLeases {
    leases: Leases,
    cached: Mutex<Option<Reading>>,
    /// When each ingester id last answered a query.
    answered_at: Mutex<HashMap<String, Instant>>,
    /// One listing at a time: a burst of failing queries waits for it.
    listing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone)]
struct Reading {
    /// When the listing started: it may be as old as that.
    at: Instant,
    standings: Arc<BTreeMap<String, Standing>>,
}

impl WalLeases {
    pub fn new(leases: Leases) -> Self {
        Self {
            leases,
            cached: Mutex::new(None),
            answered_at: Mutex::new(HashMap::new()),
            listing: tokio::sync::Mutex::new(()),
        }
    }

    /// Notes that ingester `id` answered just now.
    pub fn answered(&self, id: &str) {
        let now = Instant::now();
        let mut at = self.answered_at.lock();
        match at.get_mut(id) {
            Some(t) => *t = now,
            None => {
                at.insert(id.to_string(), now);
            }
        }
    }

    /// The newest claim of every WAL prefix: a fresh enough reading, or a
    /// new listing.
    pub async fn standings(&self) -> Result<Arc<BTreeMap<String, Standing>>, LeaseError> {
        if let Some(s) = self.usable() {
            return Ok(s);
        }
        let _one = self.listing.lock().await;
        if let Some(s) = self.usable() {
            return Ok(s);
        }
        let at = Instant::now();
        let standings = Arc::new(self.leases.standings().await?);
        *self.cached.lock() = Some(Reading {
            at,
            standings: Arc::clone(&standings),
        });
        Ok(standings)
    }

    /// The cached reading, unless it is older than [`FRESH`] or an ingester
    /// answered after it was taken although it had that ingester's lease
    /// released or unclaimed.
    fn usable(&self) -> Option<Arc<BTreeMap<String, Standing>>> {
        let reading = self.cached.lock().clone()?;
        if reading.at.elapsed() >= FRESH {
            return None;
        }
        let contradicted = self.answered_at.lock().iter().any(|(id, at)| {
            *at >= reading.at && reading.standings.get(id).is_none_or(|s| s.released)
        });
        (!contradicted).then_some(reading.standings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn standing(epoch: u64, released: bool) -> Standing {
        Standing { epoch, released }
    }

    fn gone(addr: &str, id: Option<&str>) -> Unreachable {
        Unreachable {
            addr: addr.to_string(),
            id: id.map(str::to_string),
            reason: "tcp connect error".to_string(),
        }
    }

    fn ids(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_released_lease_lets_its_unreachable_ingester_be_left_out() {
        let standings = BTreeMap::from([
            ("ing-0".to_string(), standing(1, false)),
            ("ing-1".to_string(), standing(2, true)),
        ]);
        let down = [gone("10.0.0.2:8082", Some("ing-1"))];
        assert_eq!(decide(&down, &ids(&["ing-0"]), &standings), Ok(()));
    }

    #[test]
    fn a_held_or_expired_unclaimed_lease_keeps_the_query_unavailable() {
        // Held by ing-1 itself (alive but unreachable), or expired and not
        // yet claimed by anyone: the newest claim is unreleased either way;
        // likewise when another ingester claimed it and is still replaying.
        let standings = BTreeMap::from([
            ("ing-0".to_string(), standing(1, false)),
            ("ing-1".to_string(), standing(1, false)),
        ]);
        let down = [gone("10.0.0.2:8082", Some("ing-1"))];
        assert_eq!(
            decide(&down, &ids(&["ing-0"]), &standings),
            Err(
                "ingester 10.0.0.2:8082 (id ing-1) is unreachable and its WAL has not been \
                 taken over yet (lease epoch 1 not released): tcp connect error; refusing to \
                 answer with partial data"
                    .to_string()
            )
        );
    }

    #[test]
    fn an_unknown_id_is_unavailable_while_any_wal_is_unaccounted_for() {
        let standings = BTreeMap::from([
            ("ing-0".to_string(), standing(1, false)),
            ("ing-1".to_string(), standing(3, false)),
            ("ing-2".to_string(), standing(2, true)),
        ]);
        let down = [gone("10.0.0.9:8082", None)];
        assert_eq!(
            decide(&down, &ids(&["ing-0"]), &standings),
            Err(
                "ingester 10.0.0.9:8082 (id unknown: it has not answered this querier) is \
                 unreachable: tcp connect error; the WAL of ing-1 has not been taken over yet \
                 and no ingester that answered holds it; refusing to answer with partial data"
                    .to_string()
            )
        );
        // Once ing-1 answers (it was alive, behind another address), nothing
        // unpersisted can be behind the unknown one.
        assert_eq!(decide(&down, &ids(&["ing-0", "ing-1"]), &standings), Ok(()));
    }

    #[test]
    fn an_unreachable_id_that_answered_at_another_address_is_left_out() {
        // `localhost` resolving to 127.0.0.1 and ::1, one ingester behind both.
        let standings = BTreeMap::from([("ing-0".to_string(), standing(1, false))]);
        let down = [gone("[::1]:8082", Some("ing-0"))];
        assert_eq!(decide(&down, &ids(&["ing-0"]), &standings), Ok(()));
    }

    /// A reading serves for a second, unless an ingester it had released
    /// answers after it was taken: then the leases are listed again.
    #[tokio::test]
    async fn a_reading_is_reused_until_an_ingester_contradicts_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        let ttl = Duration::from_secs(60);
        let ing1 = Leases::new(store.clone(), "ing-1", ttl);
        ing1.try_claim("ing-1").await.unwrap().unwrap();
        ing1.release("ing-1", 1).await.unwrap();
        let wal = WalLeases::new(Leases::new(store, "querier", ttl));
        let first = wal.standings().await.unwrap();
        assert_eq!(first.get("ing-1"), Some(&standing(1, true)));
        // ing-1 restarts (epoch 2): the cached reading does not know yet...
        ing1.try_claim("ing-1").await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&wal.standings().await.unwrap(), &first));
        // ...until ing-1 answers a query, which tells it is back.
        wal.answered("ing-1");
        let second = wal.standings().await.unwrap();
        assert_eq!(second.get("ing-1"), Some(&standing(2, false)));
        // A held lease answering is no contradiction: the reading stays.
        wal.answered("ing-1");
        assert!(Arc::ptr_eq(&wal.standings().await.unwrap(), &second));
        // And a reading older than a second is not used.
        tokio::time::sleep(FRESH).await;
        assert!(!Arc::ptr_eq(&wal.standings().await.unwrap(), &second));
    }
}
