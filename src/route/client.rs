//! The client side of one ingester: a long-lived Flight `DoPut` stream, and a
//! circuit breaker that keeps the router from waiting on an ingester that is down.
//!
//! One stream per ingester is shared by every request: a write is its schema,
//! dictionaries and record batch, queued as one unit so writes never interleave,
//! with a `WriteBatch` in the batch's `app_metadata`. A task reads the acks and
//! wakes the waiting writer. A broken stream fails its waiting writes and is
//! reopened by the next write.
//!
//! Every ack, and a first message the ingester sends when a stream opens,
//! carries the highest write sequence the ingester holds: the router's clock
//! observes it (see [`super::HybridClock`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};
use arrow::record_batch::RecordBatch;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightData, FlightDescriptor};
use futures::StreamExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use super::RouteError;
use crate::catalog::DbRef;
use crate::ingester::flight::MAX_MESSAGE_BYTES;
use crate::metrics::{Via, metrics};
use crate::proto::refusal::Reason;
use crate::proto::{FORMAT_VERSION, WriteAck, WriteBatch, write_ack};

/// Encodes one write as Flight messages: schema, dictionaries, then the batch
/// carrying `meta`. Dictionaries are sent as such (tags stay dictionaries).
pub fn encode_write(batch: &RecordBatch, meta: &WriteBatch) -> Result<Vec<FlightData>, RouteError> {
    let options = IpcWriteOptions::default();
    let generator = IpcDataGenerator::default();
    let mut tracker = DictionaryTracker::new(false);
    let mut context = IpcWriteContext::default();
    let schema =
        generator.schema_to_bytes_with_dictionary_tracker(&batch.schema(), &mut tracker, &options);
    let (dictionaries, data) = generator
        .encode(batch, &mut tracker, &options, &mut context)
        .map_err(|e| RouteError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(dictionaries.len() + 2);
    out.push(FlightData::from(schema));
    out.extend(dictionaries.into_iter().map(FlightData::from));
    let mut data = FlightData::from(data);
    data.app_metadata = meta.encode_to_vec().into();
    out.push(data);
    Ok(out)
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<WriteAck>>>>;

struct PutStream {
    tx: mpsc::Sender<Vec<FlightData>>,
    pending: Pending,
    closed: Arc<AtomicBool>,
}

/// Keeps the router from waiting on an ingester that keeps failing: it opens
/// after a few consecutive failures, and once open for a while lets writes
/// through again to probe (a success closes it).
#[derive(Debug, Default)]
pub struct Breaker {
    failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
}

impl Breaker {
    const FAILURES_TO_OPEN: u32 = 3;
    const OPEN_FOR: Duration = Duration::from_secs(2);

    /// Whether writes should go to this ingester now.
    pub fn allows(&self) -> bool {
        self.open_until.lock().is_none_or(|t| Instant::now() >= t)
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        *self.open_until.lock() = None;
    }

    fn failure(&self) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= Self::FAILURES_TO_OPEN {
            *self.open_until.lock() = Some(Instant::now() + Self::OPEN_FOR);
        }
    }
}

/// How long a full-buffer refusal stands for the ingester: short, so that
/// writes probe again soon after a snapshot frees the buffer.
pub const FULL_FOR: Duration = Duration::from_millis(100);

/// How long a new stream waits for the ingester's opening state (the highest
/// sequence it holds). An ingester of the earlier release sends none: past
/// this the stream goes on without it, so routers may be upgraded first.
pub const OPENING_TIMEOUT: Duration = Duration::from_secs(2);

/// The client side of one ingester.
pub struct IngesterClient {
    pub breaker: Breaker,
    /// Until when this ingester is taken to be full, after it refused a write
    /// for its buffer; a success clears it.
    full_until: Mutex<Option<Instant>>,
    addr: String,
    cluster_token: Arc<str>,
    ack_timeout: Duration,
    stream: tokio::sync::Mutex<Option<Arc<PutStream>>>,
    next_write_id: AtomicU64,
    /// The highest write sequence the ingester said it holds.
    max_sequence: Arc<AtomicU64>,
    /// Whether a connection attempt ever ended: the router waits for the
    /// first before it stamps a write, never again.
    tried: AtomicBool,
}

impl IngesterClient {
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn new(addr: String, cluster_token: Arc<str>, ack_timeout: Duration) -> Self {
        Self {
            breaker: Breaker::default(),
            full_until: Mutex::new(None),
            addr,
            cluster_token,
            ack_timeout,
            stream: tokio::sync::Mutex::new(None),
            next_write_id: AtomicU64::new(1),
            max_sequence: Arc::default(),
            tried: AtomicBool::new(false),
        }
    }

    /// The highest write sequence the ingester reported holding.
    pub fn max_sequence(&self) -> u64 {
        self.max_sequence.load(Ordering::Acquire)
    }

    /// Opens the stream (and so hears the ingester's highest sequence) if no
    /// stream was ever tried; a failure is left to the writes that follow.
    pub async fn greet(&self) {
        if self.tried.load(Ordering::Acquire) {
            return;
        }
        let opened = self.stream().await;
        metrics().set_reachable(Via::Router, &self.addr, opened.is_ok());
        if let Err(e) = opened {
            tracing::debug!(ingester = %self.addr, error = %e, "first connection failed");
        }
    }

    fn unavailable(&self, reason: impl ToString) -> RouteError {
        RouteError::Unavailable {
            ingester: self.addr.clone(),
            reason: reason.to_string(),
        }
    }

    /// The open stream, or a new one if there is none or it broke.
    async fn stream(&self) -> Result<Arc<PutStream>, RouteError> {
        let mut guard = self.stream.lock().await;
        if let Some(s) = guard.as_ref().filter(|s| !s.closed.load(Ordering::Acquire)) {
            return Ok(Arc::clone(s));
        }
        // Bounded: a stopped (not dead) ingester accepts TCP but never answers.
        let stream = match tokio::time::timeout(self.ack_timeout, self.connect()).await {
            Ok(s) => Arc::new(s?),
            Err(_) => return Err(self.unavailable("connecting timed out")),
        };
        *guard = Some(Arc::clone(&stream));
        Ok(stream)
    }

    async fn connect(&self) -> Result<PutStream, RouteError> {
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr))
            .map_err(|e| self.unavailable(e))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = endpoint.connect().await.map_err(|e| self.unavailable(e))?;
        let mut client = FlightServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);

        let (tx, rx) = mpsc::channel::<Vec<FlightData>>(256);
        // The descriptor opens the stream; the ingester learns tables per batch.
        let open = FlightData {
            flight_descriptor: Some(FlightDescriptor::new_path(vec!["inflow-router".into()])),
            ..Default::default()
        };
        tx.send(vec![open]).await.map_err(|e| self.unavailable(e))?;
        let outbound = ReceiverStream::new(rx).flat_map(futures::stream::iter);
        let mut request = tonic::Request::new(outbound);
        let bearer = format!("Bearer {}", self.cluster_token)
            .parse()
            .map_err(|_| self.unavailable("cluster token is not a valid header value"))?;
        request.metadata_mut().insert("authorization", bearer);
        let mut acks = client
            .do_put(request)
            .await
            .map_err(|e| self.unavailable(e))?
            .into_inner();
        // The ingester's first message: what it holds, before any write of
        // ours is stamped. An ingester of the earlier release sends none (its
        // acks carry no state either); a late one is taken by the ack reader.
        match tokio::time::timeout(OPENING_TIMEOUT, acks.message()).await {
            Ok(Ok(Some(first))) => match WriteAck::decode(first.app_metadata) {
                Ok(ack) if ack.write_id == 0 && ack.outcome.is_none() => {
                    self.max_sequence
                        .fetch_max(ack.max_sequence, Ordering::AcqRel);
                }
                _ => {
                    return Err(
                        self.unavailable("the stream did not open with the ingester's state")
                    );
                }
            },
            Ok(Ok(None)) => return Err(self.unavailable("stream ended at once")),
            Ok(Err(status)) => return Err(self.unavailable(status)),
            Err(_) => tracing::warn!(
                ingester = %self.addr,
                "no opening state within {OPENING_TIMEOUT:?}: an ingester of an earlier release? \
                 Writing without it"
            ),
        }

        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let (p, c, addr) = (Arc::clone(&pending), Arc::clone(&closed), self.addr.clone());
        let max_sequence = Arc::clone(&self.max_sequence);
        tokio::spawn(async move {
            let end = loop {
                match acks.message().await {
                    Ok(Some(result)) => match WriteAck::decode(result.app_metadata) {
                        Ok(ack) => {
                            max_sequence.fetch_max(ack.max_sequence, Ordering::AcqRel);
                            if let Some(waiter) = p.lock().remove(&ack.write_id) {
                                let _ = waiter.send(ack);
                            }
                        }
                        Err(e) => break format!("undecodable ack: {e}"),
                    },
                    Ok(None) => break "stream ended".to_string(),
                    Err(status) => break status.to_string(),
                }
            };
            match end.as_str() {
                "stream ended" => tracing::debug!(ingester = %addr, "ingester stream ended"),
                _ => tracing::warn!(ingester = %addr, reason = %end, "ingester stream broke"),
            }
            c.store(true, Ordering::Release);
            // Dropping the senders fails every write still waiting on this stream.
            p.lock().clear();
        });
        Ok(PutStream {
            tx,
            pending,
            closed,
        })
    }

    /// Sends one table's batch and waits until the ingester has made it durable;
    /// the outcome feeds the breaker.
    pub async fn write(
        &self,
        database: DbRef<'_>,
        table: &str,
        sequence: u64,
        batch: &RecordBatch,
        no_sync: bool,
    ) -> Result<(), RouteError> {
        let result = self.send(database, table, sequence, batch, no_sync).await;
        // Busy or refusing a batch, the ingester answered: only a failure
        // the breaker counts is unreachable.
        let mut reachable = true;
        match &result {
            Ok(()) => {
                self.breaker.success();
                *self.full_until.lock() = None;
            }
            Err(e) if e.is_busy() => self.refused_full(),
            Err(e) if e.is_retryable() => {
                self.breaker.failure();
                reachable = false;
            }
            Err(_) => {}
        }
        metrics().set_reachable(Via::Router, &self.addr, reachable);
        result
    }

    /// Marks the ingester full for the next [`FULL_FOR`].
    pub(super) fn refused_full(&self) {
        *self.full_until.lock() = Some(Instant::now() + FULL_FOR);
    }

    /// Whether this ingester refused a write for a full buffer within the last
    /// [`FULL_FOR`], with no success since.
    pub fn is_full(&self) -> bool {
        self.full_until.lock().is_some_and(|t| Instant::now() < t)
    }

    async fn send(
        &self,
        database: DbRef<'_>,
        table: &str,
        sequence: u64,
        batch: &RecordBatch,
        no_sync: bool,
    ) -> Result<(), RouteError> {
        let write_id = self.next_write_id.fetch_add(1, Ordering::Relaxed);
        let meta = WriteBatch {
            format_version: FORMAT_VERSION,
            database: database.name.to_string(),
            database_id: database.id,
            table: table.to_string(),
            write_id,
            sequence,
            no_sync,
            traceparent: crate::telemetry::traceparent(),
        };
        let messages = encode_write(batch, &meta)?;
        let stream = self.stream().await?;
        let (done, ack) = oneshot::channel();
        stream.pending.lock().insert(write_id, done);
        if stream.tx.send(messages).await.is_err() {
            stream.pending.lock().remove(&write_id);
            return Err(self.unavailable("stream closed"));
        }
        let ack = match tokio::time::timeout(self.ack_timeout, ack).await {
            Ok(Ok(ack)) => ack,
            Ok(Err(_)) => return Err(self.unavailable("stream closed before the ack")),
            Err(_) => {
                stream.pending.lock().remove(&write_id);
                return Err(RouteError::Timeout {
                    ingester: self.addr.clone(),
                    timeout: self.ack_timeout,
                });
            }
        };
        match ack.outcome {
            Some(write_ack::Outcome::WalSegment(_)) => Ok(()),
            Some(write_ack::Outcome::Refused(r)) => Err(RouteError::Refused {
                ingester: self.addr.clone(),
                reason: Reason::try_from(r.reason).unwrap_or(Reason::Unspecified),
                message: r.message,
            }),
            None => Err(self.unavailable("ack without outcome")),
        }
    }

    /// Ends the stream so the ingester sees the end of its input.
    pub async fn close(&self) {
        self.stream.lock().await.take();
    }
}

impl super::IngesterLink for IngesterClient {
    fn addr(&self) -> &str {
        IngesterClient::addr(self)
    }

    fn greet(&self) -> BoxFuture<'_, ()> {
        Box::pin(IngesterClient::greet(self))
    }

    fn max_sequence(&self) -> u64 {
        IngesterClient::max_sequence(self)
    }

    fn write<'a>(
        &'a self,
        database: DbRef<'a>,
        table: &'a str,
        sequence: u64,
        batch: &'a RecordBatch,
        no_sync: bool,
    ) -> BoxFuture<'a, Result<(), RouteError>> {
        Box::pin(IngesterClient::write(
            self, database, table, sequence, batch, no_sync,
        ))
    }

    fn allows(&self) -> bool {
        self.breaker.allows()
    }

    fn is_full(&self) -> bool {
        IngesterClient::is_full(self)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(IngesterClient::close(self))
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;

    use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
    use arrow_flight::{
        Action, ActionType, Criteria, Empty, FlightInfo, HandshakeRequest, HandshakeResponse,
        PollInfo, PutResult, SchemaResult, Ticket,
    };
    use futures::Stream;
    use tonic::{Request, Response, Status, Streaming};

    use super::*;

    type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

    /// An ingester of the release before the opening `WriteAck`: it answers
    /// each `WriteBatch` with an ack naming its WAL segment, and says nothing
    /// before the first one.
    struct EarlierIngester;

    #[tonic::async_trait]
    impl FlightService for EarlierIngester {
        type HandshakeStream = BoxStream<HandshakeResponse>;
        type ListFlightsStream = BoxStream<FlightInfo>;
        type DoGetStream = BoxStream<FlightData>;
        type DoPutStream = BoxStream<PutResult>;
        type DoExchangeStream = BoxStream<FlightData>;
        type DoActionStream = BoxStream<arrow_flight::Result>;
        type ListActionsStream = BoxStream<ActionType>;

        async fn do_put(
            &self,
            request: Request<Streaming<FlightData>>,
        ) -> Result<Response<Self::DoPutStream>, Status> {
            let acks = request.into_inner().filter_map(|data| async move {
                let data = data.ok()?;
                let batch = WriteBatch::decode(data.app_metadata).ok()?;
                (batch.write_id != 0).then(|| {
                    let ack = WriteAck {
                        format_version: 1,
                        write_id: batch.write_id,
                        outcome: Some(write_ack::Outcome::WalSegment(1)),
                        max_sequence: 0,
                    };
                    Ok(PutResult {
                        app_metadata: ack.encode_to_vec().into(),
                    })
                })
            });
            Ok(Response::new(Box::pin(acks)))
        }
        async fn handshake(
            &self,
            _: Request<Streaming<HandshakeRequest>>,
        ) -> Result<Response<Self::HandshakeStream>, Status> {
            Err(Status::unimplemented("Handshake"))
        }
        async fn list_flights(
            &self,
            _: Request<Criteria>,
        ) -> Result<Response<Self::ListFlightsStream>, Status> {
            Err(Status::unimplemented("ListFlights"))
        }
        async fn get_flight_info(
            &self,
            _: Request<FlightDescriptor>,
        ) -> Result<Response<FlightInfo>, Status> {
            Err(Status::unimplemented("GetFlightInfo"))
        }
        async fn poll_flight_info(
            &self,
            _: Request<FlightDescriptor>,
        ) -> Result<Response<PollInfo>, Status> {
            Err(Status::unimplemented("PollFlightInfo"))
        }
        async fn get_schema(
            &self,
            _: Request<FlightDescriptor>,
        ) -> Result<Response<SchemaResult>, Status> {
            Err(Status::unimplemented("GetSchema"))
        }
        async fn do_get(&self, _: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
            Err(Status::unimplemented("DoGet"))
        }
        async fn do_exchange(
            &self,
            _: Request<Streaming<FlightData>>,
        ) -> Result<Response<Self::DoExchangeStream>, Status> {
            Err(Status::unimplemented("DoExchange"))
        }
        async fn do_action(
            &self,
            _: Request<Action>,
        ) -> Result<Response<Self::DoActionStream>, Status> {
            Err(Status::unimplemented("DoAction"))
        }
        async fn list_actions(
            &self,
            _: Request<Empty>,
        ) -> Result<Response<Self::ListActionsStream>, Status> {
            Err(Status::unimplemented("ListActions"))
        }
    }

    /// Routers may be upgraded before ingesters (the chart rolls both at
    /// once): a router writes to an ingester that never sends the opening
    /// state, after waiting `OPENING_TIMEOUT` once per stream.
    #[tokio::test]
    async fn an_ingester_of_the_earlier_release_still_takes_writes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(FlightServiceServer::new(EarlierIngester))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let client = IngesterClient::new(addr.to_string(), "t".into(), Duration::from_secs(10));
        let batch = RecordBatch::try_from_iter([(
            "x",
            Arc::new(arrow::array::Int64Array::from(vec![1])) as arrow::array::ArrayRef,
        )])
        .unwrap();
        let db = DbRef { id: 1, name: "db" };
        let started = Instant::now();
        client.write(db, "t", 1, &batch, false).await.unwrap();
        assert!(started.elapsed() < OPENING_TIMEOUT + Duration::from_secs(5));
        // The stream is kept: the next write does not wait again.
        let started = Instant::now();
        client.write(db, "t", 2, &batch, false).await.unwrap();
        assert!(
            started.elapsed() < OPENING_TIMEOUT,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(client.max_sequence(), 0);
    }
}
