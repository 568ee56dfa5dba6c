//! Asking the ingesters for their buffered rows: a Flight `DoGet` per ingester
//! with a `ReadBuffer` ticket and the cluster token. Every ingester must answer:
//! one that cannot be reached fails the query (`UNAVAILABLE`), because its
//! buffer may hold acknowledged points that are in no file yet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use arrow_flight::Ticket;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use futures::{TryStreamExt, future::try_join_all};
use parking_lot::{Mutex, RwLock};
use prost::Message;
use tonic::transport::{Channel, Endpoint};

use super::QueryError;
use crate::catalog::DbRef;
use crate::ingester::flight::MAX_MESSAGE_BYTES;
use crate::ingester::read::BufferFilter;
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
}

impl FlightIngesters {
    pub fn new(addrs: Vec<String>, cluster_token: Arc<str>, timeout: Duration) -> Self {
        Self {
            addrs: RwLock::new(addrs),
            cluster_token,
            timeout,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the set (DNS discovery).
    pub fn set_addrs(&self, mut addrs: Vec<String>) {
        addrs.sort();
        addrs.dedup();
        let mut current = self.addrs.write();
        if *current != addrs {
            tracing::info!(ingesters = ?addrs, "querier's ingester set changed");
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

    async fn fetch_one(&self, addr: &str, ticket: Ticket) -> Result<Vec<RecordBatch>, QueryError> {
        let mut client = FlightServiceClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let mut request = tonic::Request::new(ticket);
        let bearer = format!("Bearer {}", self.cluster_token)
            .parse()
            .map_err(|_| QueryError::Internal("cluster token is not a header value".into()))?;
        request.metadata_mut().insert("authorization", bearer);
        let read = async {
            let stream = client.do_get(request).await?.into_inner();
            FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from))
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| match e {
                    FlightError::Tonic(status) => *status,
                    other => tonic::Status::internal(other.to_string()),
                })
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(batches)) => Ok(batches),
            Ok(Err(status)) => Err(unavailable(addr, status.message())),
            Err(_) => Err(unavailable(
                addr,
                format!("no answer within {:?}", self.timeout),
            )),
        }
    }
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
        let answers = try_join_all(addrs.iter().map(|a| self.fetch_one(a, ticket.clone()))).await?;
        Ok(answers.into_iter().flatten().collect())
    }
}
