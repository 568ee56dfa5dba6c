//! The ingester's Arrow Flight endpoint: long-lived `DoPut` streams of batches.
//!
//! Each record batch carries a protobuf `WriteBatch` in its `app_metadata`. Writes
//! on one stream are handled concurrently (so they share WAL commits) and each is
//! answered by one `PutResult` whose `app_metadata` is a `WriteAck`, in whatever
//! order they become durable. A gRPC status ends the stream only for faults of the
//! stream itself (bad auth, undecodable data).
//!
//! `DoGet` serves queriers: the buffered (not yet persisted) rows of one table,
//! with their write sequences, so a point is queryable as soon as it is acked,
//! and the ingester's id in the answer's metadata ([`INGESTER_ID_HEADER`]).

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::read::{BufferFilter, TimeRange, buffered_batches};
use super::{Ingester, Refused};

use crate::catalog::{DbId, DbRef};
use crate::proto::refusal::Reason;
use crate::proto::{FORMAT_VERSION, ReadBuffer, Refusal, WriteAck, WriteBatch, write_ack};

/// The `DoGet` answer's metadata entry naming the ingester that answered, so a
/// querier can tell later, should this address stop answering, whose WAL
/// lease says whether its rows are persisted. Queriers of earlier releases
/// ignore it; a querier must not count on it from ingesters of earlier ones.
pub const INGESTER_ID_HEADER: &str = "x-inflow-ingester-id";

/// Largest gRPC message the ingester accepts: one write of the largest request.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub struct IngesterFlight {
    ingester: Arc<Ingester>,
    cluster_token: Arc<str>,
}

impl IngesterFlight {
    pub fn new(ingester: Arc<Ingester>, cluster_token: Arc<str>) -> Self {
        Self {
            ingester,
            cluster_token,
        }
    }

    pub fn into_server(self) -> FlightServiceServer<Self> {
        FlightServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn check_cluster_token<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if bool::from(presented.as_bytes().ct_eq(self.cluster_token.as_bytes())) {
            Ok(())
        } else {
            Err(Status::unauthenticated(
                "ingesters accept writes only with the cluster token",
            ))
        }
    }
}

fn ack(write_id: u64, outcome: Result<u64, Refused>, max_sequence: u64) -> PutResult {
    let outcome = match outcome {
        Ok(segment) => write_ack::Outcome::WalSegment(segment),
        Err(r) => write_ack::Outcome::Refused(Refusal {
            reason: r.reason as i32,
            message: r.message,
        }),
    };
    put_result(WriteAck {
        format_version: FORMAT_VERSION,
        write_id,
        outcome: Some(outcome),
        max_sequence,
    })
}

/// The first message of a `DoPut` stream: no write's, only the highest
/// sequence held, which the router observes before it stamps a write.
fn hello(max_sequence: u64) -> PutResult {
    put_result(WriteAck {
        format_version: FORMAT_VERSION,
        write_id: 0,
        outcome: None,
        max_sequence,
    })
}

fn put_result(msg: WriteAck) -> PutResult {
    PutResult {
        app_metadata: msg.encode_to_vec().into(),
    }
}

/// The database id a write belongs to: its own, or from a router of a
/// release that sends names only, the live database's of that name.
async fn database_id(ingester: &Ingester, meta: &WriteBatch) -> Result<DbId, Refused> {
    if meta.database_id != 0 {
        return Ok(meta.database_id);
    }
    ingester.database_id(&meta.database).await.ok_or_else(|| {
        let why = format!("database \"{}\" not found", meta.database);
        Refused::new(Reason::Invalid, why)
    })
}

fn unimplemented<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "{what} is not served by an ingester"
    )))
}

#[tonic::async_trait]
impl FlightService for IngesterFlight {
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
        self.check_cluster_token(&request)?;
        // A message with no IPC header only carries the descriptor that opened the
        // stream: nothing to decode.
        let stream = request
            .into_inner()
            .try_filter(|d| futures::future::ready(!d.data_header.is_empty()))
            .map_err(|s| FlightError::Tonic(Box::new(s)));
        let mut decoder = FlightDataDecoder::new(stream);
        let (tx, rx) = mpsc::channel::<Result<PutResult, Status>>(1024);
        let ingester = Arc::clone(&self.ingester);
        tx.send(Ok(hello(ingester.max_sequence())))
            .await
            .map_err(|_| Status::internal("the answer stream closed at once"))?;
        tokio::spawn(async move {
            while let Some(item) = decoder.next().await {
                let decoded = match item {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = tx
                            .send(Err(Status::invalid_argument(format!(
                                "bad Flight data: {e}"
                            ))))
                            .await;
                        return;
                    }
                };
                let meta = decoded.app_metadata();
                let DecodedPayload::RecordBatch(batch) = decoded.payload else {
                    continue;
                };
                let meta = match WriteBatch::decode(meta) {
                    Ok(m)
                        if m.format_version <= FORMAT_VERSION
                            && !m.database.is_empty()
                            && !m.table.is_empty() =>
                    {
                        m
                    }
                    Ok(m) => {
                        let why = format!(
                            "unsupported WriteBatch (version {}, database {:?}, table {:?})",
                            m.format_version, m.database, m.table
                        );
                        let _ = tx
                            .send(Ok(ack(
                                m.write_id,
                                Err(Refused::new(Reason::Invalid, why)),
                                ingester.max_sequence(),
                            )))
                            .await;
                        continue;
                    }
                    Err(e) => {
                        let _ = tx
                            .send(Err(Status::invalid_argument(format!(
                                "record batch without a WriteBatch: {e}"
                            ))))
                            .await;
                        return;
                    }
                };
                let ingester = Arc::clone(&ingester);
                let tx = tx.clone();
                let span = tracing::info_span!(
                    "ingester.write",
                    database = %meta.database,
                    table = %meta.table,
                    rows = batch.num_rows()
                );
                crate::telemetry::continue_trace(&span, &meta.traceparent);
                let write = async move {
                    let outcome = match database_id(&ingester, &meta).await {
                        Ok(id) => {
                            let database = DbRef {
                                id,
                                name: &meta.database,
                            };
                            let (table, sequence) = (&meta.table, meta.sequence);
                            (ingester.write(database, table, sequence, batch, meta.no_sync)).await
                        }
                        Err(refused) => Err(refused),
                    };
                    let max_sequence = ingester.max_sequence();
                    let _ = tx.send(Ok(ack(meta.write_id, outcome, max_sequence))).await;
                };
                tokio::spawn(write.instrument(span));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        unimplemented("Handshake")
    }
    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        unimplemented("ListFlights")
    }
    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        unimplemented("GetFlightInfo")
    }
    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unimplemented("PollFlightInfo")
    }
    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        unimplemented("GetSchema")
    }
    /// A querier asks for one table's buffered rows (ticket: a `ReadBuffer`).
    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        self.check_cluster_token(&request)?;
        let read = ReadBuffer::decode(request.get_ref().ticket.clone())
            .map_err(|e| Status::invalid_argument(format!("bad ReadBuffer ticket: {e}")))?;
        if read.format_version > FORMAT_VERSION {
            return Err(Status::invalid_argument(format!(
                "ReadBuffer format version {} is newer than this ingester's {FORMAT_VERSION}",
                read.format_version
            )));
        }
        // A querier of an older release names the database only.
        let database_id = match read.database_id {
            0 => self.ingester.database_id(&read.database).await.unwrap_or(0),
            id => id,
        };
        let chunks = self.ingester.buffered_chunks(database_id, &read.table);
        let filter = BufferFilter {
            range: TimeRange {
                min: read.min_time,
                max: read.max_time,
            },
            tags: read.tags.into_iter().map(|t| (t.tag, t.values)).collect(),
            fields: (!read.fields.is_empty()).then_some(read.fields),
        };
        let (schema, batches) =
            tokio::task::spawn_blocking(move || buffered_batches(&chunks, &filter))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| Status::internal(format!("reading the buffer: {e}")))?;
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::iter(batches.into_iter().map(Ok)))
            .map_err(|e| Status::internal(e.to_string()));
        let mut response = Response::new(Box::pin(stream) as Self::DoGetStream);
        // An id that is no header value goes unsaid: the querier then treats
        // this address as one it never identified.
        if let Ok(id) = self.ingester.id().parse() {
            response.metadata_mut().insert(INGESTER_ID_HEADER, id);
        }
        Ok(response)
    }
    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unimplemented("DoExchange")
    }
    async fn do_action(
        &self,
        _: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        unimplemented("DoAction")
    }
    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        unimplemented("ListActions")
    }
}
