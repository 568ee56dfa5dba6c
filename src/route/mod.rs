//! Routing: stamps each write with a sequence, spreads each table's rows over the
//! ingesters by a stable hash of their series, and waits until every part is
//! durable on as many ingesters as `--write-replicas` asks.
//!
//! ```text
//!  request ─► sequence (HLC) ─► per table: rows split by hash(db, table, tag set)
//!                                   │ part for shard k
//!                                   ▼
//!               ingesters k, k+1, … (ring order), skipping open breakers,
//!               until `replicas` of them acknowledged ─► all parts ok ─► 204
//! ```
//!
//! A part whose ingester fails or times out goes to the next healthy one; a part
//! that no ingester takes fails the request with 503, and the client retries the
//! whole request (harmless: same points, same fields).

pub mod client;
pub mod shard;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use parking_lot::RwLock;

pub use client::{IngesterClient, encode_write};

use crate::catalog::DbRef;
use crate::clock::{Clock, SystemClock};
use crate::lineproto::TableBatch;
use crate::metrics::{Via, metrics};
use crate::proto::refusal::Reason;

#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    #[error("ingester {ingester} unavailable: {reason}")]
    Unavailable { ingester: String, reason: String },
    #[error("ingester {ingester} did not acknowledge within {timeout:?}")]
    Timeout { ingester: String, timeout: Duration },
    #[error("ingester {ingester} refused the write: {message}")]
    Refused {
        ingester: String,
        reason: Reason,
        message: String,
    },
    #[error("encoding a batch for Flight: {0}")]
    Encode(String),
    #[error("no ingester configured")]
    NoIngesters,
    /// Fewer ingesters known (DNS discovery) than acknowledgements asked.
    #[error(
        "--write-replicas is {replicas} but only {known} ingesters are known: writes wait for more"
    )]
    TooFewIngesters { replicas: usize, known: usize },
    #[error("every ingester's buffer is full; shed before decoding the body")]
    Saturated,
}

impl RouteError {
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            // The ingester found our own batch malformed: our bug, not the client's.
            Self::Refused {
                reason: Reason::Invalid | Reason::Unspecified,
                ..
            }
            | Self::Encode(_) => ErrorKind::Internal,
            Self::Refused {
                reason: Reason::BufferFull | Reason::Storage | Reason::ShuttingDown | Reason::Fenced,
                ..
            }
            | Self::Unavailable { .. }
            | Self::Timeout { .. }
            | Self::NoIngesters
            | Self::TooFewIngesters { .. }
            | Self::Saturated => ErrorKind::Unavailable,
        }
    }
}

/// Where a clock reads the wall time, in nanoseconds since the Unix epoch.
/// Injected so that a test can set a router's clock back.
pub type WallClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A hybrid logical clock: wall-clock nanoseconds, but strictly increasing and
/// above every sequence observed. Routers observe the highest sequence each
/// ingester holds (told when a stream opens and in every ack), so a router
/// whose clock is behind, or was set back across a restart, starts above
/// what the WAL and the catalog hold. The receiving side is the ingester's
/// (`Ingester::write` keeps a write at least one above all it holds), so an
/// overwrite sent after another was acknowledged wins whichever router
/// stamped it.
pub struct HybridClock {
    last: AtomicU64,
    wall: WallClock,
}

impl Default for HybridClock {
    fn default() -> Self {
        Self::with_wall(Arc::new(|| SystemClock.now_ns().max(0) as u64))
    }
}

impl std::fmt::Debug for HybridClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridClock")
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl HybridClock {
    pub fn with_wall(wall: WallClock) -> Self {
        Self {
            last: AtomicU64::new(0),
            wall,
        }
    }

    /// The system clock moved by `secs` (the hidden `--test-clock-offset-secs`).
    pub fn offset_by(secs: i64) -> Self {
        let offset = secs.saturating_mul(1_000_000_000);
        Self::with_wall(Arc::new(move || {
            SystemClock.now_ns().saturating_add(offset).max(0) as u64
        }))
    }

    /// Takes in a sequence stamped elsewhere (the highest an ingester
    /// holds): every later stamp is above it, whatever the wall clock says.
    pub fn observe(&self, sequence: u64) {
        self.last.fetch_max(sequence, Ordering::AcqRel);
    }

    pub fn next(&self) -> u64 {
        let now = (self.wall)();
        let prev = self
            .last
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or_default();
        now.max(prev + 1)
    }
}

impl RouteError {
    /// Whether another ingester might take the write.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable { .. } | Self::Timeout { .. } => true,
            Self::Refused { reason, .. } => {
                matches!(
                    reason,
                    Reason::BufferFull | Reason::ShuttingDown | Reason::Storage | Reason::Fenced
                )
            }
            Self::Encode(_)
            | Self::NoIngesters
            | Self::TooFewIngesters { .. }
            | Self::Saturated => false,
        }
    }

    /// Alive but overloaded: not a reason to open its breaker.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Self::Refused {
                reason: Reason::BufferFull,
                ..
            }
        )
    }
}

/// What the router asks of one ingester. [`IngesterClient`] speaks Flight to
/// a real one; a test puts its own behind the same trait, so routing (the
/// ring, failover, replicas, shedding) is tested without sockets.
pub trait IngesterLink: Send + Sync {
    /// Its address: the ring is sorted by it.
    fn addr(&self) -> &str;
    /// Hears from the ingester once (its highest sequence) before the first write.
    fn greet(&self) -> BoxFuture<'_, ()>;
    /// The highest sequence the ingester said it holds.
    fn max_sequence(&self) -> u64;
    /// Sends one table's part and waits until the ingester made it durable.
    fn write<'a>(
        &'a self,
        database: DbRef<'a>,
        table: &'a str,
        sequence: u64,
        batch: &'a RecordBatch,
        no_sync: bool,
    ) -> BoxFuture<'a, Result<(), RouteError>>;
    /// Whether its circuit breaker lets writes through (else it is tried last).
    fn allows(&self) -> bool;
    /// Whether it refused a write for a full buffer just now.
    fn is_full(&self) -> bool;
    fn close(&self) -> BoxFuture<'_, ()>;
}

type Ingesters = Arc<Vec<Arc<dyn IngesterLink>>>;

/// Sends writes to the ingesters.
pub struct Router {
    /// Sorted by address, so every router has the same ring; replaced whole when
    /// discovery finds a different set.
    ingesters: RwLock<Ingesters>,
    replicas: usize,
    clock: HybridClock,
}

impl Router {
    /// `replicas`: how many ingesters must acknowledge each part (at most all).
    pub fn new(mut ingesters: Vec<Arc<dyn IngesterLink>>, replicas: usize) -> Self {
        ingesters.sort_by(|a, b| a.addr().cmp(b.addr()));
        Self {
            ingesters: RwLock::new(Arc::new(ingesters)),
            replicas: replicas.max(1),
            clock: HybridClock::default(),
        }
    }

    /// This router stamping writes by `clock` instead of the system's.
    pub fn with_clock(mut self, clock: HybridClock) -> Self {
        self.clock = clock;
        self
    }

    fn ingesters(&self) -> Ingesters {
        Arc::clone(&self.ingesters.read())
    }

    /// Replaces the ingester set (DNS discovery), keeping the clients, streams
    /// and breakers of addresses that stay.
    pub fn set_ingesters(
        &self,
        mut addrs: Vec<String>,
        new_client: impl Fn(String) -> Arc<dyn IngesterLink>,
    ) {
        addrs.sort();
        addrs.dedup();
        let current = self.ingesters();
        if current
            .iter()
            .map(|c| c.addr())
            .eq(addrs.iter().map(String::as_str))
        {
            return;
        }
        let next: Vec<Arc<dyn IngesterLink>> = addrs
            .into_iter()
            .map(|a| {
                current
                    .iter()
                    .find(|c| c.addr() == a)
                    .cloned()
                    .unwrap_or_else(|| new_client(a))
            })
            .collect();
        tracing::info!(ingesters = ?next.iter().map(|c| c.addr()).collect::<Vec<_>>(), "ingester set changed");
        for gone in current
            .iter()
            .filter(|c| !next.iter().any(|n| n.addr() == c.addr()))
        {
            metrics().forget_ingester(Via::Router, gone.addr());
        }
        *self.ingesters.write() = Arc::new(next);
    }

    /// Writes every table of a request with one sequence stamp; each table's rows
    /// are split by series over the ingesters and the parts sent concurrently.
    /// Succeeds only when every part is durable on `replicas` ingesters.
    pub async fn write(
        &self,
        database: DbRef<'_>,
        tables: &[TableBatch],
        no_sync: bool,
    ) -> Result<(), RouteError> {
        let ingesters = self.ingesters();
        if ingesters.is_empty() {
            return Err(RouteError::NoIngesters);
        }
        if ingesters.len() < self.replicas {
            return Err(RouteError::TooFewIngesters {
                replicas: self.replicas,
                known: ingesters.len(),
            });
        }
        // A new router (or a new ingester) is heard from once before it
        // stamps: it starts above what the WAL and the catalog hold.
        futures::future::join_all(ingesters.iter().map(|i| i.greet())).await;
        if let Some(held) = ingesters.iter().map(|i| i.max_sequence()).max() {
            self.clock.observe(held);
        }
        let sequence = self.clock.next();
        let mut parts = Vec::new();
        for t in tables {
            let split = shard::split(database.name, &t.table, &t.batch, ingesters.len())
                .map_err(|e| RouteError::Encode(e.to_string()))?;
            for (shard, batch) in split {
                parts.push(self.write_part(
                    &ingesters, shard, database, &t.table, sequence, batch, no_sync,
                ));
            }
        }
        for result in futures::future::join_all(parts).await {
            result?;
        }
        Ok(())
    }

    /// Sends one part to its shard's ingester and the ones after it in ring order,
    /// healthy ones first, until `replicas` have acknowledged it.
    #[allow(clippy::too_many_arguments)]
    async fn write_part(
        &self,
        ingesters: &[Arc<dyn IngesterLink>],
        shard: usize,
        database: DbRef<'_>,
        table: &str,
        sequence: u64,
        batch: RecordBatch,
        no_sync: bool,
    ) -> Result<(), RouteError> {
        let n = ingesters.len();
        let replicas = self.replicas;
        let ring = (0..n).map(|i| (shard + i) % n);
        let (healthy, tripped): (Vec<usize>, Vec<usize>) =
            ring.partition(|&i| ingesters[i].allows());
        let mut candidates = healthy.into_iter().chain(tripped);
        let mut acked = 0;
        let mut last_error = None;
        while acked < replicas {
            let round: Vec<usize> = candidates.by_ref().take(replicas - acked).collect();
            if round.is_empty() {
                return Err(last_error.unwrap_or(RouteError::NoIngesters));
            }
            let sends = round
                .iter()
                .map(|&i| ingesters[i].write(database, table, sequence, &batch, no_sync));
            for result in futures::future::join_all(sends).await {
                match result {
                    Ok(()) => acked += 1,
                    Err(e) if e.is_retryable() => {
                        // A full buffer is load, not a fault: under overload it
                        // would log on every request.
                        if e.is_busy() {
                            tracing::debug!(error = %e, "ingester busy: trying the next one");
                        } else {
                            tracing::warn!(error = %e, "write part failed over to the next ingester");
                            metrics().failovers.inc();
                        }
                        last_error = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// A refusal for a write not yet decoded, when every ingester has just
    /// refused one for a full buffer: under overload, decoding and parsing
    /// bodies only to shed them takes the CPU that snapshots need to drain
    /// the buffers. Lasts [`client::FULL_FOR`] after the last refusal.
    pub fn all_full(&self) -> Option<RouteError> {
        let ingesters = self.ingesters();
        let full = !ingesters.is_empty() && ingesters.iter().all(|i| i.is_full());
        full.then_some(RouteError::Saturated)
    }

    /// Whether any ingester is taking writes (for `/ready`).
    pub fn any_ingester_allowed(&self) -> bool {
        self.ingesters().iter().any(|i| i.allows())
    }

    pub async fn close(&self) {
        for i in self.ingesters().iter() {
            i.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: DbRef<'static> = DbRef { id: 1, name: "db" };

    #[tokio::test]
    async fn an_unreachable_ingester_is_unavailable_not_a_hang() {
        // Bind then drop: nothing listens on this port any more.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = IngesterClient::new(addr.to_string(), "t".into(), Duration::from_secs(1));
        let batch = RecordBatch::try_from_iter([(
            "x",
            std::sync::Arc::new(arrow::array::Int64Array::from(vec![1])) as arrow::array::ArrayRef,
        )])
        .unwrap();
        let err = client.write(DB, "t", 1, &batch, false).await.unwrap_err();
        assert!(matches!(err, RouteError::Unavailable { .. }), "{err}");
        assert_eq!(err.kind(), crate::error::ErrorKind::Unavailable);
        // Three failures open the breaker; the router then skips it.
        assert!(client.breaker.allows());
        for _ in 0..2 {
            let _ = client.write(DB, "t", 1, &batch, false).await;
        }
        assert!(!client.breaker.allows());
        let router = Router::new(vec![Arc::new(client)], 1);
        assert!(!router.any_ingester_allowed());
    }

    /// More replicas asked than ingesters known is a 503 naming the
    /// shortfall, not a write silently acknowledged by fewer.
    #[tokio::test]
    async fn more_replicas_than_ingesters_is_refused_naming_the_shortfall() {
        let clients = ["127.0.0.1:1", "127.0.0.1:2"].map(|a| {
            Arc::new(IngesterClient::new(
                a.into(),
                "t".into(),
                Duration::from_secs(1),
            )) as Arc<dyn IngesterLink>
        });
        let router = Router::new(clients.into(), 3);
        let batch = RecordBatch::try_from_iter([(
            "x",
            std::sync::Arc::new(arrow::array::Int64Array::from(vec![1])) as arrow::array::ArrayRef,
        )])
        .unwrap();
        let tables = [TableBatch {
            table: "t".into(),
            batch,
        }];
        let err = router.write(DB, &tables, false).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "--write-replicas is 3 but only 2 ingesters are known: writes wait for more"
        );
        assert_eq!(err.kind(), crate::error::ErrorKind::Unavailable);
    }

    /// Writes are shed before decoding only while every ingester has just
    /// refused one: one that may still take the part is tried.
    #[test]
    fn writes_are_shed_early_only_while_every_ingester_is_full() {
        let clients = ["127.0.0.1:1", "127.0.0.1:2"].map(|a| {
            Arc::new(IngesterClient::new(
                a.into(),
                "t".into(),
                Duration::from_secs(1),
            ))
        });
        let links = clients
            .iter()
            .map(|c| Arc::clone(c) as Arc<dyn IngesterLink>)
            .collect();
        let router = Router::new(links, 1);
        assert!(router.all_full().is_none());
        clients[0].refused_full();
        assert!(router.all_full().is_none(), "the other one may take it");
        clients[1].refused_full();
        clients[0].refused_full(); // fresh, however slow the machine
        assert!(matches!(router.all_full(), Some(RouteError::Saturated)));
        std::thread::sleep(client::FULL_FOR);
        assert!(router.all_full().is_none(), "old refusals: try them again");
        assert!(Router::new(Vec::new(), 1).all_full().is_none());
    }

    /// A clock set back (an injected wall clock, an hour behind the
    /// sequences the ingesters reported) stamps above what it observed, and
    /// follows the wall clock again once the wall is ahead.
    #[test]
    fn a_clock_behind_stamps_above_what_it_observed() {
        let wall = Arc::new(AtomicU64::new(1_000));
        let read = Arc::clone(&wall);
        let clock = HybridClock::with_wall(Arc::new(move || read.load(Ordering::Acquire)));
        assert_eq!(clock.next(), 1_000);
        let held = 1_000 + 3_600_000_000_000;
        clock.observe(held);
        assert_eq!(clock.next(), held + 1);
        assert_eq!(clock.next(), held + 2);
        clock.observe(5); // an older sequence moves nothing
        assert_eq!(clock.next(), held + 3);
        wall.store(held + 100, Ordering::Release);
        assert_eq!(clock.next(), held + 100);
    }

    #[test]
    fn clock_is_strictly_increasing() {
        let c = HybridClock::default();
        let mut last = 0;
        for _ in 0..10_000 {
            let n = c.next();
            assert!(n > last);
            last = n;
        }
    }

    /// An ingester in memory: answers from a script, records what it got.
    struct Fake {
        addr: String,
        down: bool,
        writes: parking_lot::Mutex<Vec<(String, u64, usize)>>,
    }

    impl Fake {
        fn new(addr: &str, down: bool) -> Arc<Self> {
            Arc::new(Self {
                addr: addr.into(),
                down,
                writes: Default::default(),
            })
        }

        fn rows(&self) -> usize {
            self.writes.lock().iter().map(|w| w.2).sum()
        }
    }

    impl IngesterLink for Fake {
        fn addr(&self) -> &str {
            &self.addr
        }
        fn greet(&self) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
        fn max_sequence(&self) -> u64 {
            7
        }
        fn write<'a>(
            &'a self,
            _: DbRef<'a>,
            table: &'a str,
            sequence: u64,
            batch: &'a RecordBatch,
            _: bool,
        ) -> BoxFuture<'a, Result<(), RouteError>> {
            Box::pin(async move {
                if self.down {
                    return Err(RouteError::Unavailable {
                        ingester: self.addr.clone(),
                        reason: "down".into(),
                    });
                }
                let row = (table.to_string(), sequence, batch.num_rows());
                self.writes.lock().push(row);
                Ok(())
            })
        }
        fn allows(&self) -> bool {
            true
        }
        fn is_full(&self) -> bool {
            false
        }
        fn close(&self) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    fn rows(n: i64) -> Vec<TableBatch> {
        let hosts: arrow::array::DictionaryArray<arrow::datatypes::Int32Type> = (0..n)
            .map(|i| format!("h{i}"))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect();
        let schema = crate::schema::arrow_schema([("host", crate::schema::ColumnType::Tag)]);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(hosts)]).unwrap();
        vec![TableBatch {
            table: "cpu".into(),
            batch,
        }]
    }

    /// Without sockets: rows spread over the ring by series, one stamp per
    /// request above what the ingesters hold, and a dead ingester's part
    /// taken by the next one on the ring.
    #[tokio::test]
    async fn parts_spread_by_series_and_fail_over_along_the_ring() {
        let (a, b, c) = (
            Fake::new("a", false),
            Fake::new("b", true),
            Fake::new("c", false),
        );
        let links: Vec<Arc<dyn IngesterLink>> = vec![c.clone(), a.clone(), b.clone()];
        let router = Router::new(links, 1);
        router.write(DB, &rows(300), false).await.unwrap();
        // All 300 rows landed, none on the dead one, on both live ones.
        assert_eq!(
            (a.rows(), b.rows(), c.rows()),
            (a.rows(), 0, 300 - a.rows())
        );
        assert!(a.rows() > 0 && c.rows() > 0, "{} / {}", a.rows(), c.rows());
        // One sequence for the whole request, above the ingesters' 7.
        let stamps: std::collections::BTreeSet<u64> = [&a, &c]
            .iter()
            .flat_map(|f| f.writes.lock().iter().map(|w| w.1).collect::<Vec<_>>())
            .collect();
        assert_eq!(stamps.len(), 1);
        assert!(*stamps.first().unwrap() > 7);
        // Two replicas: every part on both live ones; three cannot be had.
        let router = Router::new(vec![a.clone(), b.clone(), c.clone()], 2);
        let before = (a.rows(), c.rows());
        router.write(DB, &rows(10), false).await.unwrap();
        assert_eq!((a.rows() - before.0, c.rows() - before.1), (10, 10));
        let router = Router::new(vec![a.clone(), b.clone(), c.clone()], 3);
        let err = router.write(DB, &rows(10), false).await.unwrap_err();
        assert!(matches!(err, RouteError::Unavailable { .. }), "{err}");
    }
}
