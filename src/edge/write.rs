//! The write pipeline every write endpoint (v1, v2, v3) shares once it has
//! authenticated the request and read its parameters:
//!
//! bounded body → gzip → line protocol into Arrow (against the catalog's types)
//! → schema commit → ingesters. Each endpoint's own module says what differs.

use std::sync::Arc;

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;
use tracing::Instrument;

use super::Edge;
use super::body::{Encoding, content_encoding, gunzip, read_body};

use crate::auth::Principal;
use crate::catalog::{Database, SchemaLimits, TableColumns, table_columns};
use crate::error::Error;
use crate::lineproto::{ParseOptions, ParsedBody, TableBatch, parse_lines};
use crate::schema::{ColumnType, arrow_schema, project};

/// The database to write to: created on first write for an admin token, else 404.
pub async fn database_for_write(
    edge: &Edge,
    principal: &Principal,
    name: &str,
) -> Result<Arc<Database>, Error> {
    if let Some(db) = edge.catalog.state().database(name) {
        return Ok(Arc::clone(db));
    }
    if let Some(db) = edge.catalog.refresh().await?.database(name) {
        return Ok(Arc::clone(db));
    }
    if !principal.is_admin() {
        return Err(Error::DatabaseNotFound(name.to_string()));
    }
    edge.catalog.create_database(name).await?;
    edge.catalog
        .state()
        .database(name)
        .cloned()
        .ok_or_else(|| Error::Internal(format!("database \"{name}\" vanished after creation")))
}

/// A request's query string, decoded; the first value of a repeated key wins.
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub fn parse(query: Option<&str>) -> Result<Self, Error> {
        serde_urlencoded::from_str(query.unwrap_or_default())
            .map(Self)
            .map_err(|e| Error::InvalidQueryString(e.to_string()))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// How a write endpoint wants bad lines and durability handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteMode {
    /// Write the good lines of a body that has bad ones (v1, v2; v3's default).
    pub accept_partial: bool,
    /// Acknowledge before the WAL is durable (v3 `no_sync=true`).
    pub no_sync: bool,
    /// Parse and check against the catalog, answer as a write would, write nothing.
    pub dry_run: bool,
}

impl WriteMode {
    pub const DEFAULT: Self = Self {
        accept_partial: true,
        no_sync: false,
        dry_run: false,
    };
}

/// Checks the request's permission, reads its body within the limits, then
/// decodes, parses and writes it.
pub async fn write_request(
    edge: &Edge,
    principal: &Principal,
    database: &str,
    headers: &HeaderMap,
    body: Body,
    opts: ParseOptions,
    mode: WriteMode,
) -> Result<(), Error> {
    if !principal.can_write(database) {
        return Err(Error::Forbidden(format!(
            "token does not have write permission on database \"{database}\""
        )));
    }
    let encoding = content_encoding(headers)?;
    let db = database_for_write(edge, principal, database).await?;
    let _slot = edge.write_slot().await?;
    let body = read_body(headers, body, edge.limits.max_request_bytes).await?;
    write_lines(edge, db, encoding, body, opts, mode).await
}

/// Decodes, parses and writes a body that was read already.
pub async fn write_lines(
    edge: &Edge,
    db: Arc<Database>,
    encoding: Encoding,
    body: Bytes,
    opts: ParseOptions,
    mode: WriteMode,
) -> Result<(), Error> {
    let max_decompressed = edge.limits.max_decompressed_bytes;
    let mut opts = opts;
    opts.max_line_bytes = edge.limits.max_line_bytes;
    opts.max_columns_per_table = edge.limits.max_columns_per_table;
    opts.max_tag_bytes = edge.limits.max_tag_bytes;
    opts.max_string_bytes = edge.limits.max_string_bytes;
    opts.min_time_ns = db.retention_cutoff(opts.default_time_ns);
    let quotas = db.limits(SchemaLimits {
        max_tables: edge.limits.max_tables_per_database,
        max_columns: edge.limits.max_columns_per_table,
    });
    opts.max_tables = quotas.max_tables;
    opts.max_table_columns = quotas.max_columns;
    let lookup = Arc::clone(&db);
    let (parsed, text_bytes): (ParsedBody, usize) = tokio::task::spawn_blocking(move || {
        let text = match encoding {
            Encoding::Gzip => gunzip(&body, max_decompressed)?,
            Encoding::Identity if body.len() > max_decompressed => {
                return Err(Error::DecompressedTooLarge {
                    limit: max_decompressed,
                });
            }
            Encoding::Identity => body,
        };
        Ok((parse_lines(&text, &opts, lookup.as_ref()), text.len()))
    })
    .await
    .map_err(|e| Error::Internal(format!("parser task failed: {e}")))??;

    let metrics = crate::metrics::metrics();
    metrics.line_bytes.inc_by(text_bytes as u64);
    metrics.rejected_lines.inc_by(parsed.error_count as u64);
    if parsed.is_empty() {
        return Err(match parsed.error_count {
            0 => Error::EmptyBody,
            total => Error::LineErrors {
                errors: parsed.errors,
                total,
                written: false,
            },
        });
    }
    if parsed.error_count > 0 && !mode.accept_partial {
        return Err(Error::LineErrors {
            errors: parsed.errors,
            total: parsed.error_count,
            written: false,
        });
    }
    if !mode.dry_run {
        let tables = commit_schema(edge, &db.name, parsed.tables).await?;
        let span = tracing::info_span!("write", database = %db.name, lines = parsed.lines);
        let routed = edge.router.write(&db.name, &tables, mode.no_sync);
        routed.instrument(span).await?;
        metrics.lines.inc_by(parsed.lines as u64);
    }
    if parsed.error_count > 0 {
        return Err(Error::LineErrors {
            errors: parsed.errors,
            total: parsed.error_count,
            written: !mode.dry_run,
        });
    }
    Ok(())
}

/// Adds new tables and columns to the catalog, then lays every batch out in the
/// catalog's column order (columns it lacks are null).
pub async fn commit_schema(
    edge: &Edge,
    database: &str,
    tables: Vec<TableBatch>,
) -> Result<Vec<TableBatch>, Error> {
    let schemas: Vec<_> = tables.iter().map(|t| t.batch.schema()).collect();
    let wanted: Vec<TableColumns<'_>> = tables
        .iter()
        .zip(&schemas)
        .map(|(t, schema)| TableColumns {
            table: &t.table,
            columns: schema
                .fields()
                .iter()
                .filter_map(|f| ColumnType::from_arrow_field(f).map(|ty| (f.name().as_str(), ty)))
                .collect(),
        })
        .collect();
    let limits = SchemaLimits {
        max_tables: edge.limits.max_tables_per_database,
        max_columns: edge.limits.max_columns_per_table,
    };
    let db = edge
        .catalog
        .ensure_schema(database, &wanted, limits)
        .await?;
    drop(wanted);
    tables
        .into_iter()
        .map(|t| {
            let table = db.table(&t.table).ok_or_else(|| {
                Error::Internal(format!("table \"{}\" missing after schema commit", t.table))
            })?;
            let schema = arrow_schema(table_columns(table));
            let batch = project(&t.batch, &schema).map_err(|e| Error::Internal(e.to_string()))?;
            Ok(TableBatch {
                table: t.table,
                batch,
            })
        })
        .collect()
}
