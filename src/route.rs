//! Routing: stamps each write with a sequence, picks the ingester for each table's
//! batch, and sends it over a long-lived Flight `DoPut` stream, waiting for its ack.
//!
//! One stream per ingester is shared by every request: a write is its schema,
//! dictionaries and record batch, queued as one unit so writes never interleave,
//! with a `WriteBatch` in the batch's `app_metadata`. A task reads the acks and
//! wakes the waiting writer. A broken stream fails its waiting writes (the client
//! gets a 503 and retries) and is reopened by the next write.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};
use arrow::record_batch::RecordBatch;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightData, FlightDescriptor};
use futures::StreamExt;
use parking_lot::Mutex;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use crate::ingester::flight::MAX_MESSAGE_BYTES;
use crate::lineproto::TableBatch;
use crate::proto::refusal::Reason;
use crate::proto::{FORMAT_VERSION, WriteAck, WriteBatch, write_ack};

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
}

/// A hybrid logical clock: wall-clock nanoseconds, but strictly increasing.
#[derive(Debug, Default)]
pub struct HybridClock {
    last: AtomicU64,
}

impl HybridClock {
    pub fn next(&self) -> u64 {
        let now = crate::auth::now_ns().max(0) as u64;
        let prev = self
            .last
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or_default();
        now.max(prev + 1)
    }
}

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

/// The client side of one ingester.
pub struct IngesterClient {
    addr: String,
    cluster_token: Arc<str>,
    ack_timeout: Duration,
    stream: tokio::sync::Mutex<Option<Arc<PutStream>>>,
    next_write_id: AtomicU64,
}

impl IngesterClient {
    pub fn new(addr: String, cluster_token: Arc<str>, ack_timeout: Duration) -> Self {
        Self {
            addr,
            cluster_token,
            ack_timeout,
            stream: tokio::sync::Mutex::new(None),
            next_write_id: AtomicU64::new(1),
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
        let stream = Arc::new(self.connect().await?);
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

        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let (p, c, addr) = (Arc::clone(&pending), Arc::clone(&closed), self.addr.clone());
        tokio::spawn(async move {
            let end = loop {
                match acks.message().await {
                    Ok(Some(result)) => match WriteAck::decode(result.app_metadata) {
                        Ok(ack) => {
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

    /// Sends one table's batch and waits until the ingester has made it durable.
    pub async fn write(
        &self,
        database: &str,
        table: &str,
        sequence: u64,
        batch: &RecordBatch,
        no_sync: bool,
    ) -> Result<(), RouteError> {
        let write_id = self.next_write_id.fetch_add(1, Ordering::Relaxed);
        let meta = WriteBatch {
            format_version: FORMAT_VERSION,
            database: database.to_string(),
            table: table.to_string(),
            write_id,
            sequence,
            no_sync,
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

/// Sends writes to the ingesters.
pub struct Router {
    ingesters: Vec<IngesterClient>,
    clock: HybridClock,
}

impl Router {
    pub fn new(ingesters: Vec<IngesterClient>) -> Self {
        Self {
            ingesters,
            clock: HybridClock::default(),
        }
    }

    /// Writes every table of a request with one sequence stamp, concurrently;
    /// succeeds only when every part is durable.
    pub async fn write(
        &self,
        database: &str,
        tables: &[TableBatch],
        no_sync: bool,
    ) -> Result<(), RouteError> {
        if self.ingesters.is_empty() {
            return Err(RouteError::NoIngesters);
        }
        let sequence = self.clock.next();
        let parts = tables.iter().map(|t| {
            let ingester = &self.ingesters[self.pick(database, &t.table)];
            ingester.write(database, &t.table, sequence, &t.batch, no_sync)
        });
        for result in futures::future::join_all(parts).await {
            result?;
        }
        Ok(())
    }

    /// A stable choice of ingester per (database, table).
    fn pick(&self, database: &str, table: &str) -> usize {
        let mut h = Fnv::default();
        h.write(database.as_bytes());
        h.write(&[0xff]);
        h.write(table.as_bytes());
        (h.0 % self.ingesters.len() as u64) as usize
    }

    pub async fn close(&self) {
        for i in &self.ingesters {
            i.close().await;
        }
    }
}

/// FNV-1a: stable across processes and releases, unlike `DefaultHasher`.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let err = client.write("db", "t", 1, &batch, false).await.unwrap_err();
        assert!(matches!(err, RouteError::Unavailable { .. }), "{err}");
        let status = crate::error::Error::from(err).status();
        assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE);
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
}
