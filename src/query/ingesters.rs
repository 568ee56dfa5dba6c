//! Asking the ingesters for their buffered rows: a Flight `DoGet` per ingester
//! with a `ReadBuffer` ticket and the cluster token. Every ingester must answer:
//! one that cannot be reached fails the query (`UNAVAILABLE`), because its
//! buffer may hold acknowledged points that are in no file yet, unless the WAL
//! leases show that every WAL not yet in Parquet belongs to an ingester that
//! answered (see [`super::unreachable`]): a querier stops refusing queries once
//! a dead ingester's WAL has been taken over, or a stopped one released it.
//!
//! Each answer names the ingester (a metadata entry, absent from ingesters of
//! earlier releases), which is remembered by address for the refusal's message.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use arrow_flight::Ticket;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use futures::{TryStreamExt, future::join_all};
use parking_lot::{Mutex, RwLock};
use prost::Message;
use tonic::transport::{Channel, Endpoint};

use super::QueryError;
use super::unreachable::{Unreachable, WalLeases, decide};
use crate::catalog::DbRef;
use crate::ingester::flight::{INGESTER_ID_HEADER, MAX_MESSAGE_BYTES};
use crate::ingester::read::BufferFilter;
use crate::lease::Leases;
use crate::metrics::{Via, metrics};
use crate::proto::{FORMAT_VERSION, ReadBuffer, TagFilter};

/// Where buffered (not yet persisted) rows come from; a trait so tests can
/// stand in for ingesters.
#[tonic::async_trait]
pub trait BufferSource: Send + Sync + std::fmt::Debug {
    /// The buffered rows of the table that `filter` keeps (at least: an
    /// ingester may send more), each batch with the hidden sequence column;
    /// an error if any ingester cannot answer.
    async fn fetch(
        &self,
        database: DbRef<'_>,
        table: &str,
        filter: &BufferFilter,
    ) -> Result<Vec<RecordBatch>, QueryError>;
}

/// The ingesters over Flight, by address (a static list or what DNS resolves).
#[derive(Debug)]
pub struct FlightIngesters {
    addrs: RwLock<Vec<String>>,
    cluster_token: Arc<str>,
    timeout: Duration,
    channels: Mutex<HashMap<String, Channel>>,
    /// The id each address last answered with; absent if it never answered
    /// or its last answer did not say (an ingester of an earlier release).
    ids: Mutex<HashMap<String, String>>,
    /// The WAL leases, for leaving out unreachable ingesters whose WAL is in
    /// Parquet; `None` refuses every query an ingester misses.
    wal_leases: Option<WalLeases>,
    /// What each address last was to a query, so each change is logged once.
    reach: Mutex<HashMap<String, Reach>>,
}

/// What an ingester address was to the last query that asked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Answered,
    /// Unreachable, and left out: every WAL not in Parquet answered.
    LeftOut,
    /// Unreachable, and the query refused.
    Refused,
}

/// Why an address gave no rows.
enum Failure {
    /// No answer at all: the leases decide whether it may be left out.
    Unreachable(String),
    /// The ingester answered with an error: it is there, and the query fails.
    Answered(QueryError),
}

impl FlightIngesters {
    pub fn new(addrs: Vec<String>, cluster_token: Arc<str>, timeout: Duration) -> Self {
        for addr in &addrs {
            metrics().querier_knows(addr);
        }
        Self {
            addrs: RwLock::new(addrs),
            cluster_token,
            timeout,
            channels: Mutex::new(HashMap::new()),
            ids: Mutex::new(HashMap::new()),
            wal_leases: None,
            reach: Mutex::new(HashMap::new()),
        }
    }

    /// Lets queries leave out unreachable ingesters when the WAL `leases`
    /// show nothing unpersisted can be behind them (a querier's setting; a
    /// process with an ingester of its own needs none).
    pub fn with_wal_leases(mut self, leases: Leases) -> Self {
        self.wal_leases = Some(WalLeases::new(leases));
        self
    }

    /// Replaces the set (DNS discovery).
    pub fn set_addrs(&self, mut addrs: Vec<String>) {
        addrs.sort();
        addrs.dedup();
        let mut current = self.addrs.write();
        if *current != addrs {
            tracing::info!(ingesters = ?addrs, "querier's ingester set changed");
            for gone in current.iter().filter(|a| !addrs.contains(a)) {
                metrics().forget_ingester(Via::Querier, gone);
            }
            for addr in &addrs {
                metrics().querier_knows(addr);
            }
            // An address that comes back may be another ingester's.
            self.ids.lock().retain(|a, _| addrs.contains(a));
            self.reach.lock().retain(|a, _| addrs.contains(a));
            *current = addrs;
        }
    }

    /// Drops the connections, so an ingester stopping in the same process is
    /// not kept waiting for them to close.
    pub fn close(&self) {
        self.channels.lock().clear();
    }

    /// A channel per address, connected lazily and reused.
    fn channel(&self, addr: &str) -> Result<Channel, QueryError> {
        if let Some(c) = self.channels.lock().get(addr) {
            return Ok(c.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| unavailable(addr, e))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(self.timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        self.channels
            .lock()
            .insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// One ingester's rows, and the id it answered with (if it said).
    async fn fetch_one(
        &self,
        addr: &str,
        ticket: Ticket,
    ) -> Result<(Option<String>, Vec<RecordBatch>), Failure> {
        let channel = self.channel(addr).map_err(Failure::Answered)?;
        let mut client =
            FlightServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let mut request = tonic::Request::new(ticket);
        let bearer = format!("Bearer {}", self.cluster_token)
            .parse()
            .map_err(|_| {
                Failure::Answered(QueryError::Internal(
                    "cluster token is not a header value".into(),
                ))
            })?;
        request.metadata_mut().insert("authorization", bearer);
        let read = async {
            let response = client.do_get(request).await?;
            let id = response
                .metadata()
                .get(INGESTER_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let stream = response.into_inner();
            let batches =
                FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from))
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(|e| match e {
                        FlightError::Tonic(status) => *status,
                        other => tonic::Status::internal(other.to_string()),
                    })?;
            Ok::<_, tonic::Status>((id, batches))
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(status)) if no_answer(&status) => {
                Err(Failure::Unreachable(status.message().to_string()))
            }
            Ok(Err(status)) => Err(Failure::Answered(unavailable(addr, status.message()))),
            Err(_) => Err(Failure::Unreachable(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// Records that `addr` answered as `id`.
    fn answered(&self, addr: &str, id: Option<&str>) {
        match id {
            Some(id) => {
                let mut ids = self.ids.lock();
                if ids.get(addr).map(String::as_str) != Some(id) {
                    ids.insert(addr.to_string(), id.to_string());
                }
                if let Some(leases) = &self.wal_leases {
                    leases.answered(id);
                }
            }
            None => {
                self.ids.lock().remove(addr);
            }
        }
        self.note(addr, Reach::Answered, "");
    }

    /// Logs once when what `addr` is to queries changes (not its first answer).
    fn note(&self, addr: &str, now: Reach, why: &str) {
        metrics().set_reachable(Via::Querier, addr, now == Reach::Answered);
        let before = self.reach.lock().insert(addr.to_string(), now);
        if before == Some(now) || (before.is_none() && now == Reach::Answered) {
            return;
        }
        let id = self.ids.lock().get(addr).cloned();
        let id = id.as_deref().unwrap_or("unknown");
        match now {
            Reach::Answered => tracing::info!(addr, id, "ingester answers queries again"),
            Reach::LeftOut => tracing::info!(
                addr,
                id,
                why,
                "ingester unreachable, but every WAL not yet in Parquet belongs to an \
                 ingester that answered: queries leave it out"
            ),
            Reach::Refused => tracing::info!(
                addr,
                id,
                why,
                "ingester unreachable and a WAL is not in Parquet yet: queries answer UNAVAILABLE"
            ),
        }
    }

    /// Whether the `unreachable` addresses may be left out of a query that
    /// the ingesters `answered` (their ids); the leases are read now, after
    /// every fetch, and the caller lists the files after this returns.
    async fn judge(
        &self,
        unreachable: Vec<Unreachable>,
        answered: &BTreeSet<String>,
    ) -> Result<(), QueryError> {
        let Some(first) = unreachable.first() else {
            return Ok(());
        };
        let Some(leases) = &self.wal_leases else {
            return Err(unavailable(&first.addr, &first.reason));
        };
        let verdict = match leases.standings().await {
            Ok(standings) => decide(&unreachable, answered, &standings),
            Err(e) => Err(format!(
                "ingester {} is unreachable ({}) and the WAL leases could not be read: {e}; \
                 refusing to answer with partial data",
                first.addr, first.reason
            )),
        };
        match verdict {
            Ok(()) => {
                for u in &unreachable {
                    self.note(&u.addr, Reach::LeftOut, &u.reason);
                    metrics()
                        .skipped_ingesters
                        .with_label_values(&[u.addr.as_str()])
                        .inc();
                }
                Ok(())
            }
            Err(why) => {
                for u in &unreachable {
                    self.note(&u.addr, Reach::Refused, &why);
                }
                Err(QueryError::Unavailable(why))
            }
        }
    }
}

/// Whether a failed `DoGet` got no answer from the ingester at all (it could
/// not be reached, the connection broke, or it ran out of time), rather than
/// one that refused the request.
fn no_answer(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

fn unavailable(addr: &str, reason: impl std::fmt::Display) -> QueryError {
    QueryError::Unavailable(format!(
        "ingester {addr} unavailable: {reason}; refusing to answer with partial data"
    ))
}

#[tonic::async_trait]
impl BufferSource for FlightIngesters {
    async fn fetch(
        &self,
        database: DbRef<'_>,
        table: &str,
        filter: &BufferFilter,
    ) -> Result<Vec<RecordBatch>, QueryError> {
        let ticket = ReadBuffer {
            format_version: FORMAT_VERSION,
            database: database.name.to_string(),
            database_id: database.id,
            table: table.to_string(),
            min_time: filter.range.min,
            max_time: filter.range.max,
            tags: filter
                .tags
                .iter()
                .map(|(tag, values)| TagFilter {
                    tag: tag.clone(),
                    values: values.clone(),
                })
                .collect(),
            fields: filter.fields.clone().unwrap_or_default(),
        };
        let ticket = Ticket::new(ticket.encode_to_vec());
        let addrs = self.addrs.read().clone();
        let answers = join_all(addrs.iter().map(|a| self.fetch_one(a, ticket.clone()))).await;
        let (mut batches, mut answered, mut unreachable) =
            (Vec::new(), BTreeSet::new(), Vec::new());
        let mut refused = None;
        // Every answer is noted, even when the query fails: a cached reading
        // of the leases must learn who answered.
        for (addr, answer) in addrs.iter().zip(answers) {
            match answer {
                Ok((id, rows)) => {
                    self.answered(addr, id.as_deref());
                    answered.extend(id);
                    batches.extend(rows);
                }
                Err(Failure::Answered(e)) => {
                    refused.get_or_insert(e);
                }
                Err(Failure::Unreachable(reason)) => unreachable.push(Unreachable {
                    addr: addr.clone(),
                    id: self.ids.lock().get(addr).cloned(),
                    reason,
                }),
            }
        }
        if let Some(e) = refused {
            return Err(e);
        }
        self.judge(unreachable, &answered).await?;
        Ok(batches)
    }
}

/// The ingester of this process (`serve` with every role in one process):
/// its buffer read in place, the rows a Flight `DoGet` would send, without
/// the loopback hop (about a third of a small query's time).
pub struct LocalIngester(pub Arc<crate::ingester::Ingester>);

impl std::fmt::Debug for LocalIngester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalIngester")
    }
}

#[tonic::async_trait]
impl BufferSource for LocalIngester {
    async fn fetch(
        &self,
        database: DbRef<'_>,
        table: &str,
        filter: &BufferFilter,
    ) -> Result<Vec<RecordBatch>, QueryError> {
        let chunks = self.0.buffered_chunks(database.id, table);
        let filter = filter.clone();
        tokio::task::spawn_blocking(move || {
            crate::ingester::read::buffered_batches(&chunks, &filter)
        })
        .await
        .map_err(|e| QueryError::Internal(e.to_string()))?
        .map(|(_, batches)| batches)
        .map_err(|e| QueryError::Internal(format!("reading the buffer: {e}")))
    }
}
