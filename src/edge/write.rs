//! The write pipeline every write endpoint (v1, v2, v3) shares once it has
//! authenticated the request and read its parameters:
//!
//! bounded body → gzip → line protocol into Arrow (against the catalog's types)
//! → schema commit → ingesters. Each endpoint's own module says what differs.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampNanosecondType;
use arrow::record_batch::RecordBatch;
use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;
use tracing::Instrument;

use super::Edge;
use super::body::{Encoding, Limits, content_encoding, gunzip, read_body};

use crate::auth::Principal;
use crate::catalog::{Database, TableColumns, table_columns};
use crate::error::Error;
use crate::lineproto::{ParseOptions, ParsedBody, SchemaLookup, TableBatch, parse_lines};
use crate::metrics::stage;
use crate::schema::TIME_COLUMN;
use crate::schema::{ColumnType, arrow_schema, project};
use crate::series::{
    Admission, Committed, DbSeries, Live, SeriesError, SeriesLookup, day_of, series_id, tag_sums,
};

/// The refusal of a write to `database` by a token that may not write it.
pub fn write_forbidden(database: &str) -> Error {
    Error::Forbidden(format!(
        "token does not have write permission on database \"{database}\""
    ))
}

/// The database to write to: created on first write for an admin token, else
/// 404; then the token must grant it by id (a token for an earlier database
/// of this name does not reach it). Callers check
/// [`Principal::may_write`] on the name first.
pub async fn database_for_write(
    edge: &Edge,
    principal: &Principal,
    name: &str,
) -> Result<Arc<Database>, Error> {
    let db = resolve_for_write(edge, principal, name).await?;
    if !principal.can_write(&db) {
        return Err(write_forbidden(name));
    }
    Ok(db)
}

async fn resolve_for_write(
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
    if !principal.may_write(database) {
        return Err(write_forbidden(database));
    }
    let encoding = content_encoding(headers)?;
    let db = database_for_write(edge, principal, database).await?;
    // The slot is taken once the body is here: a client that stalls mid-body
    // holds only its own connection, not a slot every tenant shares.
    let read = read_body(headers, body, &edge.limits, &edge.body_bytes);
    let (body, _held) = stage("read", read).await?;
    let _slot = edge.write_slot().await?;
    // Shed before decoding; the body was read, so the connection stays usable.
    if let Some(full) = edge.router.all_full().filter(|_| !mode.dry_run) {
        return Err(full.into());
    }
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
    let quotas = db.limits(edge.server_limits());
    opts.max_tables = quotas.max_tables;
    opts.max_table_columns = quotas.max_columns;
    let series = series_of(edge, &db, opts.min_time_ns).await?;
    let text = stage(
        "decode",
        tokio::task::spawn_blocking(move || match encoding {
            Encoding::Gzip => gunzip(&body, max_decompressed),
            Encoding::Identity if body.len() > max_decompressed => {
                Err(Error::DecompressedTooLarge {
                    limit: max_decompressed,
                })
            }
            Encoding::Identity => Ok(body),
        }),
    )
    .await
    .map_err(|e| Error::Internal(format!("decompression task failed: {e}")))??;

    let metrics = crate::metrics::metrics();
    metrics.line_bytes.inc_by(text.len() as u64);
    // Parsed again only when other writes took the series quota meanwhile.
    let mut races = 0;
    let parsed = loop {
        let parsed = stage("parse", parse(text.clone(), &opts, &db, &series)).await?;
        let refused = parsed.is_empty() || (parsed.error_count > 0 && !mode.accept_partial);
        if refused || mode.dry_run {
            break parsed;
        }
        let committed = stage("commit", async {
            let tables = commit_schema(edge, &db, parsed.tables).await?;
            Ok::<_, Error>((tables, series.commit(&parsed.series).await?))
        });
        let (tables, committed) = committed.await?;
        if committed == Committed::OverQuota {
            races += 1;
            if races < MAX_QUOTA_RACES {
                continue;
            }
            return Err(SeriesError::Contended(db.id).into());
        }
        let span = tracing::info_span!("write", database = %db.name, lines = parsed.lines);
        let routed = edge.router.write(db.key(), &tables, mode.no_sync);
        stage("ingest", routed.instrument(span)).await?;
        metrics.lines.inc_by(parsed.lines as u64);
        // Its tables went to the ingesters; its line errors are answered below.
        break ParsedBody {
            tables: Vec::new(),
            ..parsed
        };
    };
    metrics.rejected_lines.inc_by(parsed.error_count as u64);
    if parsed.is_empty() && parsed.error_count == 0 {
        return Err(Error::EmptyBody);
    }
    if parsed.error_count > 0 {
        let written = !(parsed.is_empty() || !mode.accept_partial || mode.dry_run);
        return Err(Error::LineErrors {
            errors: parsed.errors,
            total: parsed.error_count,
            written,
        });
    }
    Ok(())
}

/// The database's series, with its quota and retention applied.
async fn series_of(
    edge: &Edge,
    db: &Database,
    retention_cutoff: Option<i64>,
) -> Result<Arc<DbSeries>, Error> {
    let series = edge.series.database(db.id).await?;
    let limit = db.limits(edge.server_limits()).max_series;
    series.prepare(limit, retention_cutoff.map(day_of)).await;
    Ok(series)
}

/// Times a write is parsed again because others took its series quota first.
const MAX_QUOTA_RACES: usize = 4;

/// Parses on a blocking thread, checking each line's series against the
/// database's (held, shared, while it parses).
async fn parse(
    text: Bytes,
    opts: &ParseOptions,
    db: &Arc<Database>,
    series: &Arc<DbSeries>,
) -> Result<ParsedBody, Error> {
    let (opts, db, series) = (opts.clone(), Arc::clone(db), Arc::clone(series));
    tokio::task::spawn_blocking(move || {
        let live = series.live().blocking_read();
        let lookup = WriteLookup {
            db: &db,
            series: &live,
        };
        parse_lines(&text, &opts, &lookup)
    })
    .await
    .map_err(|e| Error::Internal(format!("parser task failed: {e}")))
}

/// The catalog's schema and the database's series, as the parser sees them.
struct WriteLookup<'a> {
    db: &'a Database,
    series: &'a Live,
}

impl SchemaLookup for WriteLookup<'_> {
    fn column_type(&self, table: &str, column: &str) -> Option<ColumnType> {
        self.db.column_type(table, column)
    }

    fn table_count(&self) -> usize {
        self.db.table_count()
    }

    fn column_count(&self, table: &str) -> Option<usize> {
        self.db.column_count(table)
    }

    fn series(&self) -> Option<&dyn SeriesLookup> {
        Some(self.series)
    }
}

/// Writes a producer's batch (Flight `DoPut`) of one table, held to the same
/// limits as a line-protocol write: name and value sizes, the retention period,
/// the table and column quotas (at the schema commit), the series quota, and a
/// write slot. A batch is refused whole, naming its first row past a limit.
pub async fn write_batch(
    edge: &Edge,
    db: &Database,
    table: &str,
    batch: RecordBatch,
) -> Result<(), Error> {
    let cutoff = db.retention_cutoff(crate::auth::now_ns());
    check_batch(&edge.limits, table, &batch, cutoff)?;
    let _slot = edge.write_slot().await?;
    let series = series_of(edge, db, cutoff).await?;
    let times = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
        .ok_or_else(|| Error::InvalidFlightData("the batch has no nanosecond \"time\"".into()))?;
    let ids: Vec<u64> = tag_sums(&batch)
        .into_iter()
        .map(|sum| series_id(table, sum))
        .collect();
    for _ in 0..MAX_QUOTA_RACES {
        let found = {
            let live = series.live().read().await;
            let mut admission = Admission::default();
            // Rows of the series just checked, before its checked day, pass.
            let mut last = (0, i64::MIN);
            for (row, (&id, time)) in ids.iter().zip(times.values()).enumerate() {
                if id == last.0 && *time < last.1 {
                    continue;
                }
                let checked = admission.check(&*live, id, *time).map_err(|over| {
                    Error::LimitExceeded(format!(
                        "row {}: new series would exceed the database's limit of {} series (it has {})",
                        row + 1,
                        over.limit,
                        over.current
                    ))
                })?;
                last = (id, checked.until_ns);
                admission.admit(checked);
            }
            admission.into_found()
        };
        let table = TableBatch {
            table: table.to_string(),
            batch: batch.clone(),
        };
        let tables = commit_schema(edge, db, vec![table]).await?;
        if series.commit(&found).await? == Committed::Done {
            return Ok(edge.router.write(db.key(), &tables, false).await?);
        }
    }
    Err(SeriesError::Contended(db.id).into())
}

/// The checks line protocol makes while parsing, made on a producer's batch
/// (already in the table layout): the lengths of names, tag values and string
/// values, and no time before the retention `cutoff`.
fn check_batch(
    limits: &Limits,
    table: &str,
    batch: &RecordBatch,
    cutoff: Option<i64>,
) -> Result<(), Error> {
    let bad = |m: String| Error::InvalidFlightData(m);
    let name_limit = limits.max_tag_bytes;
    if table.len() > name_limit {
        return Err(bad(format!(
            "table name is {} bytes, over the limit of {name_limit} (--max-tag-bytes)",
            table.len()
        )));
    }
    let schema = batch.schema();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name();
        if name.len() > name_limit {
            return Err(bad(format!(
                "column name is {} bytes, over the limit of {name_limit} (--max-tag-bytes)",
                name.len()
            )));
        }
        let (values, keys, what, limit, flag) = match ColumnType::from_arrow_field(field) {
            Some(ColumnType::Tag) => {
                let dict = column.as_any_dictionary_opt().ok_or_else(|| {
                    Error::Internal(format!("tag column \"{name}\" is not a dictionary"))
                })?;
                let keys = dict.normalized_keys();
                (
                    dict.values().clone(),
                    Some(keys),
                    "value of tag",
                    name_limit,
                    "--max-tag-bytes",
                )
            }
            Some(ColumnType::String) => (
                column.clone(),
                None,
                "string value of field",
                limits.max_string_bytes,
                "--max-string-bytes",
            ),
            Some(ColumnType::Time) => {
                if let (Some(min), Some(times)) =
                    (cutoff, column.as_primitive_opt::<TimestampNanosecondType>())
                    && let Some(row) = times.values().iter().position(|&t| t < min)
                {
                    return Err(bad(format!(
                        "row {}: timestamp {} is older than the database's retention period: points must be at or after {} ({min} ns)",
                        row + 1,
                        times.value(row),
                        chrono::DateTime::from_timestamp_nanos(min)
                            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                    )));
                }
                continue;
            }
            _ => continue,
        };
        let Some(strings) = values.as_string_opt::<i32>() else {
            continue;
        };
        let too_long = |row: usize, value: usize| {
            (strings.is_valid(value) && strings.value(value).len() > limit).then(|| {
                bad(format!(
                    "row {}: {what} \"{name}\" is {} bytes, over the limit of {limit} ({flag})",
                    row + 1,
                    strings.value(value).len()
                ))
            })
        };
        let found = match &keys {
            Some(keys) => keys
                .iter()
                .enumerate()
                .filter(|(row, _)| column.is_valid(*row))
                .find_map(|(row, &key)| too_long(row, key)),
            None => (0..strings.len()).find_map(|row| too_long(row, row)),
        };
        if let Some(e) = found {
            return Err(e);
        }
    }
    Ok(())
}

/// Adds new tables and columns to the catalog, then lays every batch out in the
/// catalog's column order (columns it lacks are null). By the database's id:
/// if it was deleted since the write looked it up, the write fails (404)
/// instead of adding its columns to another database of the same name.
pub async fn commit_schema(
    edge: &Edge,
    database: &Database,
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
    let limits = edge.server_limits();
    let db = edge
        .catalog
        .ensure_schema_of(database.key(), &wanted, limits)
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
