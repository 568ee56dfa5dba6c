//! Arrow Flight on the edge's port: queries (the InfluxDB 3 JSON ticket and
//! Flight SQL, see `crate::query`) and, for internal producers that already have
//! Arrow, writes.
//!
//! `DoPut` with a token in `authorization` metadata; the descriptor's `path` is
//! `[database, table]`. Columns are told apart by Arrow field metadata
//! (`inflow.column = tag|field|time`), or without it: dictionary/Utf8 columns are
//! tags and the `time` timestamp is time. Each batch goes through the same schema
//! check and durable write as an HTTP write, and is answered by one `PutResult`
//! (a `WriteAck` naming the batch's position in the stream) once durable.

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Edge;
use super::flight_sql;
use super::frontend::QueryFrontend;
use crate::auth::Principal;
use crate::edge::error::Error;
use crate::ingester::flight::MAX_MESSAGE_BYTES;
use crate::metrics::{QueryKind, QueryOutcome, QueryTimer, Transport, metrics};
use crate::proto::{FORMAT_VERSION, WriteAck, write_ack};
use crate::query::ticket::{self, InfluxTicket, Language};
use crate::write::{WriteError, normalize_producer_batch};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Flight on the edge's port. A router has `edge` (writes), a querier `query`,
/// the one-process mode both; what a role lacks answers `UNIMPLEMENTED`.
pub struct EdgeFlight {
    edge: Option<Arc<Edge>>,
    query: Option<Arc<QueryFrontend>>,
    /// The largest message a client may send (`--max-request-bytes`).
    max_message_bytes: usize,
}

impl EdgeFlight {
    /// Messages from clients larger than `max_message_bytes` are refused
    /// from their length prefix, before they are read.
    pub fn server(
        edge: Option<Arc<Edge>>,
        query: Option<Arc<QueryFrontend>>,
        max_message_bytes: usize,
    ) -> FlightServiceServer<Self> {
        FlightServiceServer::new(Self {
            edge,
            query,
            max_message_bytes,
        })
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn query(&self) -> Result<&QueryFrontend, Status> {
        self.query.as_deref().ok_or_else(|| {
            Status::unimplemented("queries are served by the querier role, not by a router")
        })
    }

    fn edge(&self) -> Result<&Arc<Edge>, Status> {
        self.edge.as_ref().ok_or_else(|| {
            Status::unimplemented("writes are served by the router role, not by a querier")
        })
    }
}

/// A `DoPut` stream that failed: tonic's refusal of a message over the
/// decoding limit (its only `OUT_OF_RANGE`) names our flag.
fn stream_error(e: FlightError, limit: usize) -> Status {
    match e {
        FlightError::Tonic(s) if s.code() == tonic::Code::OutOfRange => {
            Error::BodyTooLarge { limit }.to_grpc()
        }
        e => Status::invalid_argument(format!("bad Flight data: {e}")),
    }
}

/// A query's Flight answer, which stops its timer at its end: `ok`, or the
/// outcome of the status it broke off with; dropped unfinished (the client
/// cancelled), the timer counts it as cancelled.
fn timed(stream: BoxStream<FlightData>, timer: QueryTimer) -> BoxStream<FlightData> {
    let timed = futures::stream::unfold(
        (stream, Some(timer)),
        |(mut stream, mut timer)| async move {
            let next = stream.next().await;
            let outcome = match &next {
                None => Some(QueryOutcome::Ok),
                Some(Err(status)) => Some(outcome_of_code(status.code())),
                Some(Ok(_)) => None,
            };
            if let Some(outcome) = outcome
                && let Some(t) = timer.take()
            {
                t.finish(outcome);
            }
            next.map(|item| (item, (stream, timer)))
        },
    );
    Box::pin(timed)
}

/// A query's outcome by the gRPC code it failed with.
fn outcome_of_code(code: tonic::Code) -> QueryOutcome {
    use tonic::Code;
    match code {
        Code::Ok => QueryOutcome::Ok,
        Code::Cancelled => QueryOutcome::Cancelled,
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented => QueryOutcome::ClientError,
        _ => QueryOutcome::ServerError,
    }
}

fn ack(write_id: u64) -> PutResult {
    let msg = WriteAck {
        format_version: FORMAT_VERSION,
        write_id,
        outcome: Some(write_ack::Outcome::WalSegment(0)),
        max_sequence: 0,
    };
    PutResult {
        app_metadata: msg.encode_to_vec().into(),
    }
}

fn unimplemented<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "{what} is not served here yet"
    )))
}

#[tonic::async_trait]
impl FlightService for EdgeFlight {
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
        let edge = Arc::clone(self.edge()?);
        // Authenticated before the stream is read (see `EdgeService`).
        let principal = match request.extensions().get::<Principal>() {
            Some(p) => p.clone(),
            None => {
                let auth = request
                    .metadata()
                    .get("authorization")
                    .and_then(|v| http::HeaderValue::from_bytes(v.as_bytes()).ok());
                edge.auth
                    .authenticate(auth.as_ref())
                    .await
                    .map_err(|e| Error::from(e).to_grpc())?
            }
        };
        let mut input = request
            .into_inner()
            .map_err(|s| FlightError::Tonic(Box::new(s)));
        // The first message names [database, table]; it may also carry the schema.
        let first = input
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty DoPut stream"))?
            .map_err(|e| stream_error(e, self.max_message_bytes))?;
        let path = first
            .flight_descriptor
            .as_ref()
            .map(|d| d.path.clone())
            .unwrap_or_default();
        let [database, table]: [String; 2] = path.try_into().map_err(|_| {
            Status::invalid_argument("the FlightDescriptor path must be [database, table]")
        })?;
        let db = edge
            .writer
            .database_for_write(&principal, &database)
            .await
            .map_err(|e| Error::from(e).to_grpc())?;
        let first =
            futures::stream::iter([Ok(first)]).filter(|r: &Result<FlightData, FlightError>| {
                futures::future::ready(r.as_ref().is_ok_and(|d| !d.data_header.is_empty()))
            });
        let mut decoder = FlightDataDecoder::new(first.chain(input));
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let limit = self.max_message_bytes;
        tokio::spawn(async move {
            let mut write_id = 0;
            while let Some(item) = decoder.next().await {
                let decoded = match item {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = tx.send(Err(stream_error(e, limit))).await;
                        return;
                    }
                };
                let DecodedPayload::RecordBatch(batch) = decoded.payload else {
                    continue;
                };
                write_id += 1;
                let started = std::time::Instant::now();
                let result = async {
                    let batch = normalize_producer_batch(&batch)?;
                    edge.writer.write_batch(&db, &table, batch).await
                }
                .await;
                // Per batch, labelled with the HTTP status the same error
                // would have had, like the HTTP write APIs.
                let status = match &result {
                    Ok(()) => http::StatusCode::NO_CONTENT,
                    Err(e) => crate::edge::error::status_of(e.kind()).0,
                };
                metrics()
                    .write_duration
                    .with_label_values(&["flight", status.as_str()])
                    .observe(started.elapsed().as_secs_f64());
                let reply = result
                    .map(|()| ack(write_id))
                    .map_err(|e: WriteError| Error::from(e).to_grpc());
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    /// Flight's basic authentication (Grafana's Flight SQL source and JDBC with a
    /// username and password, pyarrow's `authenticate_basic_token`): Basic with
    /// the token as the password (any user name, as v1 takes it), or the token
    /// itself; the answer's `authorization` header is `Bearer <token>`, which the
    /// client then sends on every call. Nothing is kept between calls.
    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let auth = match (&self.query, &self.edge) {
            (Some(q), _) => &q.auth,
            (None, Some(e)) => &e.auth,
            (None, None) => return unimplemented("Handshake"),
        };
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| http::HeaderValue::from_bytes(v.as_bytes()).ok());
        // Without auth (`--without-auth`) anything passes, as on every other call.
        auth.authenticate_v1(header.as_ref(), None)
            .await
            .map_err(|e| Error::from(e).to_grpc())?;
        let answer = HandshakeResponse::default();
        let mut response: Response<Self::HandshakeStream> =
            Response::new(Box::pin(futures::stream::iter([Ok(answer)])));
        if let Ok(token) = crate::auth::v1_token(header.as_ref(), None) {
            let bearer = tonic::metadata::MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| Status::unauthenticated("the token is not a valid header value"))?;
            response.metadata_mut().insert("authorization", bearer);
        }
        Ok(response)
    }
    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        unimplemented("ListFlights")
    }
    /// Flight SQL: statements, prepared statements, metadata commands.
    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let info = flight_sql::get_flight_info(self.query()?, request).await?;
        Ok(Response::new(info))
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
    /// The InfluxDB 3 JSON ticket, or a Flight SQL ticket (protobuf `Any`).
    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let query = self.query()?;
        let mut timer = QueryTimer::start(QueryKind::Sql, Transport::Flight);
        let stream = async {
            if !ticket::is_json(&request.get_ref().ticket) {
                return flight_sql::do_get(query, request).await;
            }
            let t = InfluxTicket::parse(&request.get_ref().ticket)
                .map_err(|e| Error::from(e).to_grpc())?;
            let run = match t.language {
                Language::Sql => query.run(request.metadata(), &t.database, &t.sql).await,
                Language::InfluxQl => {
                    timer.set_kind(QueryKind::InfluxQl);
                    super::influxql_flight::run(query, request.metadata(), &t.database, &t.sql)
                        .await
                }
            };
            run.map_err(|e| e.to_grpc())
        }
        .await;
        match stream {
            Ok(stream) => Ok(Response::new(timed(stream, timer))),
            Err(status) => {
                timer.finish(outcome_of_code(status.code()));
                Err(status)
            }
        }
    }
    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unimplemented("DoExchange")
    }
    /// Flight SQL prepared statements.
    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let results = flight_sql::do_action(self.query()?, request).await?;
        Ok(Response::new(Box::pin(futures::stream::iter(
            results.into_iter().map(Ok),
        ))))
    }
    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        self.query()?;
        let actions = flight_sql::list_actions().into_iter().map(Ok);
        Ok(Response::new(Box::pin(futures::stream::iter(actions))))
    }
}
