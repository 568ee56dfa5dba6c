//! What the Flight entry points share: authentication and read permission,
//! running a query, and encoding its result as a Flight stream.

use std::pin::Pin;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow_flight::FlightData;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use datafusion::execution::SendableRecordBatchStream;
use futures::{Stream, TryStreamExt};
use tonic::Status;
use tonic::metadata::MetadataMap;

use super::body::BodyReader;
use super::error::Error;
use crate::auth::Authorizer;
use crate::query::{Planned, Querier, QueryError};

pub type FlightStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// gRPC headers that name the database, as InfluxDB 3 and IOx accept them.
const DATABASE_HEADERS: [&str; 4] = ["database", "bucket", "bucket-name", "iox-namespace-name"];

#[derive(Debug)]
pub struct QueryFrontend {
    pub auth: Arc<Authorizer>,
    pub querier: Arc<Querier>,
    /// Reads the bodies of `POST` queries.
    pub bodies: BodyReader,
}

impl QueryFrontend {
    pub fn new(auth: Arc<Authorizer>, querier: Arc<Querier>, bodies: BodyReader) -> Self {
        Self {
            auth,
            querier,
            bodies,
        }
    }

    /// The token in `authorization` must have read permission on `database`.
    /// Permission is checked before existence, so a token learns nothing about
    /// databases it may not read.
    pub async fn authorize_read(
        &self,
        metadata: &MetadataMap,
        database: &str,
    ) -> Result<(), Error> {
        let header = metadata
            .get("authorization")
            .and_then(|v| http::HeaderValue::from_bytes(v.as_bytes()).ok());
        self.authorize(header.as_ref(), database).await
    }

    /// [`Self::authorize_read`] for an HTTP `Authorization` header.
    pub async fn authorize(
        &self,
        header: Option<&http::HeaderValue>,
        database: &str,
    ) -> Result<(), Error> {
        let principal = self.auth.authenticate(header).await?;
        let forbidden = || {
            Error::Forbidden(format!(
                "token does not have read permission on database \"{database}\""
            ))
        };
        if !principal.may_read(database) {
            return Err(forbidden());
        }
        if principal.is_admin() {
            return Ok(());
        }
        // By id, in the catalog as the query will read it: a token for a
        // deleted database of this name does not read the one that took it.
        let state = self
            .querier
            .catalog()
            .refresh()
            .await
            .map_err(QueryError::from)?;
        if !principal.can_read_in(&state, database) {
            return Err(forbidden());
        }
        Ok(())
    }

    /// Authorizes, then plans (no data read yet).
    pub async fn plan(
        &self,
        metadata: &MetadataMap,
        database: &str,
        sql: &str,
    ) -> Result<Planned, Error> {
        self.authorize_read(metadata, database).await?;
        Ok(self.querier.plan(database, sql).await?)
    }

    /// Authorizes, plans and runs; the result as a Flight stream.
    pub async fn run(
        &self,
        metadata: &MetadataMap,
        database: &str,
        sql: &str,
    ) -> Result<FlightStream, Error> {
        self.authorize_read(metadata, database).await?;
        let (schema, stream) = self.execute(database, sql).await?;
        Ok(encode(schema, stream))
    }

    /// Plans and runs `sql` (already authorized) within the query limits: a
    /// slot, the deadline from admission on, the reader's pace. The stream
    /// holds the slot until it ends or is dropped.
    pub async fn execute(
        &self,
        database: &str,
        sql: &str,
    ) -> Result<(SchemaRef, SendableRecordBatchStream), Error> {
        let started = std::time::Instant::now();
        let ticket = self.querier.admit().await?;
        let (schema, stream) = ticket
            .within(async {
                let planned = self.querier.plan(database, sql).await?;
                let schema = planned.schema();
                Ok::<_, QueryError>((schema, planned.execute().await?))
            })
            .await?;
        tracing::debug!(
            database,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "query planned and scanned"
        );
        Ok((schema, ticket.bounded(stream)))
    }
}

/// The database a Flight SQL request names in its headers.
pub fn database_header(metadata: &MetadataMap) -> Result<String, Error> {
    DATABASE_HEADERS
        .iter()
        .find_map(|h| metadata.get(*h).and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::InvalidQuery(
                "no database: set the \"database\" (or \"bucket\") gRPC header".into(),
            )
        })
}

/// Encodes record batches as Flight data; an error in the middle of the stream
/// keeps its status.
pub fn encode(schema: SchemaRef, stream: SendableRecordBatchStream) -> FlightStream {
    let batches = stream.map_err(|e| {
        let status = Error::from(QueryError::from(e)).to_grpc();
        FlightError::Tonic(Box::new(status))
    });
    let encoded = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(flight_status);
    Box::pin(encoded)
}

/// Encodes batches already in memory (metadata answers).
pub fn encode_batches(
    schema: SchemaRef,
    batches: Vec<arrow::record_batch::RecordBatch>,
) -> FlightStream {
    let encoded = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .map_err(flight_status);
    Box::pin(encoded)
}

fn flight_status(e: FlightError) -> Status {
    match e {
        FlightError::Tonic(status) => *status,
        other => Status::internal(other.to_string()),
    }
}
