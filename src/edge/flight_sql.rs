//! Flight SQL (what ADBC, JDBC and Grafana's Flight SQL source speak):
//! statements, prepared statements and the metadata commands.
//!
//! Statement and prepared-statement handles are self-contained (database and
//! SQL, as JSON), so any querier replica can run a ticket another one issued and
//! there is no server-side state to leak or expire. The database comes from the
//! `database` (or `bucket`, `bucket-name`, `iox-namespace-name`) gRPC header.

use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, Command, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandStatementQuery,
    ProstMessageExt, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc,
    Ticket,
};
use bytes::Bytes;
use prost::Message;
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::error::Error;
use super::frontend::{FlightStream, QueryFrontend, database_header, encode_batches};
use super::sql_info::sql_info;
use crate::query::table::query_schema;
use crate::query::{CATALOG_NAME, SCHEMA_NAME};

const CREATE_PREPARED_STATEMENT: &str = "CreatePreparedStatement";
const CLOSE_PREPARED_STATEMENT: &str = "ClosePreparedStatement";
const TABLE_TYPE: &str = "BASE TABLE";

/// A statement or prepared statement: everything needed to run it.
#[derive(Debug, Serialize, Deserialize)]
struct Handle {
    database: String,
    sql: String,
}

impl Handle {
    fn encode(&self) -> Bytes {
        serde_json::to_vec(self).unwrap_or_default().into()
    }

    fn decode(bytes: &[u8]) -> Result<Self, Status> {
        serde_json::from_slice(bytes)
            .map_err(|e| Status::invalid_argument(format!("unknown statement handle: {e}")))
    }
}

fn grpc(e: Error) -> Status {
    e.to_grpc()
}

fn decode_command(bytes: &[u8]) -> Result<Command, Status> {
    let any = Any::decode(bytes)
        .map_err(|e| Status::invalid_argument(format!("not a Flight SQL command: {e}")))?;
    Command::try_from(any).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn schema_bytes(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

/// A FlightInfo with one endpoint whose ticket is `ticket`.
fn flight_info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor))
}

/// `GetFlightInfo`: plans statements (for their schema) and points every
/// command at a ticket that `DoGet` serves.
pub async fn get_flight_info(
    frontend: &QueryFrontend,
    request: Request<FlightDescriptor>,
) -> Result<FlightInfo, Status> {
    let metadata = request.metadata().clone();
    let descriptor = request.into_inner();
    let command = decode_command(&descriptor.cmd)?;
    match command {
        Command::CommandStatementQuery(CommandStatementQuery { query, .. }) => {
            let handle = Handle {
                database: database_header(&metadata).map_err(grpc)?,
                sql: query,
            };
            let planned = frontend
                .plan(&metadata, &handle.database, &handle.sql)
                .await
                .map_err(grpc)?;
            let ticket = TicketStatementQuery {
                statement_handle: handle.encode(),
            };
            flight_info(
                &planned.schema(),
                ticket.as_any().encode_to_vec(),
                descriptor,
            )
        }
        Command::CommandPreparedStatementQuery(cmd) => {
            let handle = Handle::decode(&cmd.prepared_statement_handle)?;
            let planned = frontend
                .plan(&metadata, &handle.database, &handle.sql)
                .await
                .map_err(grpc)?;
            flight_info(&planned.schema(), cmd.as_any().encode_to_vec(), descriptor)
        }
        Command::CommandGetCatalogs(cmd) => {
            let schema = cmd.into_builder().schema();
            flight_info(&schema, cmd.as_any().encode_to_vec(), descriptor)
        }
        Command::CommandGetDbSchemas(cmd) => {
            let schema = cmd.clone().into_builder().schema();
            flight_info(&schema, cmd.as_any().encode_to_vec(), descriptor)
        }
        Command::CommandGetTables(cmd) => {
            let schema = cmd.clone().into_builder().schema();
            flight_info(&schema, cmd.as_any().encode_to_vec(), descriptor)
        }
        Command::CommandGetTableTypes(cmd) => {
            let schema = cmd.into_builder().schema();
            flight_info(&schema, cmd.as_any().encode_to_vec(), descriptor)
        }
        Command::CommandGetSqlInfo(cmd) => {
            let info = sql_info()?;
            let schema = cmd.clone().into_builder(&info).schema();
            flight_info(&schema, cmd.as_any().encode_to_vec(), descriptor)
        }
        other => Err(Status::unimplemented(format!(
            "Flight SQL command {} is not supported",
            other.type_url()
        ))),
    }
}

/// `DoGet` of a Flight SQL ticket.
pub async fn do_get(
    frontend: &QueryFrontend,
    request: Request<Ticket>,
) -> Result<FlightStream, Status> {
    let metadata = request.metadata().clone();
    let command = decode_command(&request.get_ref().ticket)?;
    match command {
        Command::TicketStatementQuery(t) => run(frontend, &metadata, &t.statement_handle).await,
        Command::CommandPreparedStatementQuery(c) => {
            run(frontend, &metadata, &c.prepared_statement_handle).await
        }
        Command::CommandGetCatalogs(cmd) => get_catalogs(frontend, &metadata, cmd).await,
        Command::CommandGetDbSchemas(cmd) => get_db_schemas(frontend, &metadata, cmd).await,
        Command::CommandGetTables(cmd) => get_tables(frontend, &metadata, cmd).await,
        Command::CommandGetTableTypes(cmd) => get_table_types(cmd),
        Command::CommandGetSqlInfo(cmd) => get_sql_info(cmd),
        other => Err(Status::unimplemented(format!(
            "Flight SQL ticket {} is not supported",
            other.type_url()
        ))),
    }
}

async fn run(
    frontend: &QueryFrontend,
    metadata: &MetadataMap,
    handle: &[u8],
) -> Result<FlightStream, Status> {
    let handle = Handle::decode(handle)?;
    frontend
        .run(metadata, &handle.database, &handle.sql)
        .await
        .map_err(grpc)
}

/// Authorizes the header's database and returns it as the catalog has it.
async fn readable_database(
    frontend: &QueryFrontend,
    metadata: &MetadataMap,
) -> Result<Arc<crate::catalog::Database>, Status> {
    let database = database_header(metadata).map_err(grpc)?;
    frontend
        .authorize_read(metadata, &database)
        .await
        .map_err(grpc)?;
    frontend
        .querier
        .database(&database)
        .await
        .map_err(|e| grpc(e.into()))
}

async fn get_catalogs(
    frontend: &QueryFrontend,
    metadata: &MetadataMap,
    cmd: CommandGetCatalogs,
) -> Result<FlightStream, Status> {
    readable_database(frontend, metadata).await?;
    let mut builder = cmd.into_builder();
    builder.append(CATALOG_NAME);
    let schema = builder.schema();
    let batch = builder
        .build()
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok(encode_batches(schema, vec![batch]))
}

async fn get_db_schemas(
    frontend: &QueryFrontend,
    metadata: &MetadataMap,
    cmd: CommandGetDbSchemas,
) -> Result<FlightStream, Status> {
    readable_database(frontend, metadata).await?;
    let mut builder = cmd.into_builder();
    builder.append(CATALOG_NAME, SCHEMA_NAME);
    let schema = builder.schema();
    let batch = builder
        .build()
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok(encode_batches(schema, vec![batch]))
}

async fn get_tables(
    frontend: &QueryFrontend,
    metadata: &MetadataMap,
    cmd: CommandGetTables,
) -> Result<FlightStream, Status> {
    let db = readable_database(frontend, metadata).await?;
    let mut builder = cmd.into_builder();
    for table in db.tables() {
        builder
            .append(
                CATALOG_NAME,
                SCHEMA_NAME,
                &table.name,
                TABLE_TYPE,
                &query_schema(table),
            )
            .map_err(|e| Status::internal(e.to_string()))?;
    }
    let schema = builder.schema();
    let batch = builder
        .build()
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok(encode_batches(schema, vec![batch]))
}

fn get_table_types(cmd: CommandGetTableTypes) -> Result<FlightStream, Status> {
    let mut builder = cmd.into_builder();
    builder.append(TABLE_TYPE);
    let schema = builder.schema();
    let batch = builder
        .build()
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok(encode_batches(schema, vec![batch]))
}

fn get_sql_info(cmd: CommandGetSqlInfo) -> Result<FlightStream, Status> {
    let info = sql_info()?;
    let builder = cmd.into_builder(&info);
    let schema = builder.schema();
    let batch = builder
        .build()
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok(encode_batches(schema, vec![batch]))
}

/// `DoAction`: create and close prepared statements.
pub async fn do_action(
    frontend: &QueryFrontend,
    request: Request<Action>,
) -> Result<Vec<arrow_flight::Result>, Status> {
    let metadata = request.metadata().clone();
    let action = request.into_inner();
    let any = Any::decode(action.body.as_ref())
        .map_err(|e| Status::invalid_argument(format!("bad action body: {e}")))?;
    let bad = |what: &str| Status::invalid_argument(format!("action body is not {what}"));
    match action.r#type.as_str() {
        CREATE_PREPARED_STATEMENT => {
            let cmd: ActionCreatePreparedStatementRequest = any
                .unpack()
                .map_err(|e| Status::invalid_argument(e.to_string()))?
                .ok_or_else(|| bad("ActionCreatePreparedStatementRequest"))?;
            let handle = Handle {
                database: database_header(&metadata).map_err(grpc)?,
                sql: cmd.query,
            };
            let planned = frontend
                .plan(&metadata, &handle.database, &handle.sql)
                .await
                .map_err(grpc)?;
            let result = ActionCreatePreparedStatementResult {
                prepared_statement_handle: handle.encode(),
                dataset_schema: schema_bytes(&planned.schema())?,
                parameter_schema: Bytes::new(),
            };
            Ok(vec![arrow_flight::Result {
                body: result.as_any().encode_to_vec().into(),
            }])
        }
        CLOSE_PREPARED_STATEMENT => {
            // Handles hold no server state: nothing to release.
            let _: ActionClosePreparedStatementRequest = any
                .unpack()
                .map_err(|e| Status::invalid_argument(e.to_string()))?
                .ok_or_else(|| bad("ActionClosePreparedStatementRequest"))?;
            Ok(vec![])
        }
        other => Err(Status::unimplemented(format!(
            "action {other:?} is not supported"
        ))),
    }
}

pub fn list_actions() -> Vec<ActionType> {
    vec![
        ActionType {
            r#type: CREATE_PREPARED_STATEMENT.into(),
            description: "Creates a prepared statement (ActionCreatePreparedStatementRequest)"
                .into(),
        },
        ActionType {
            r#type: CLOSE_PREPARED_STATEMENT.into(),
            description: "Closes a prepared statement (ActionClosePreparedStatementRequest)".into(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_sql_info_builds() {
        let h = Handle {
            database: "db/rp".into(),
            sql: "SELECT 1".into(),
        };
        let back = Handle::decode(&h.encode()).unwrap();
        assert_eq!(
            (back.database.as_str(), back.sql.as_str()),
            ("db/rp", "SELECT 1")
        );
        assert!(Handle::decode(b"\x01\x02").is_err());
        assert!(sql_info().is_ok());
    }
}
