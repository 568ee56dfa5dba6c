//! `GET|POST /api/v3/query_sql` and `/api/v3/query_influxql`: InfluxDB 3's
//! HTTP query API, for `curl`, `inflow query` and tools that do not speak
//! Flight. Parameters `db`, `q` and `format` (`json`, the default, `jsonl`,
//! `csv` or `parquet`) in the query string, or as a JSON body on POST. InfluxQL answers one
//! table, as over Flight (`iox::measurement`, `time`, the grouping tags, the
//! columns). Errors are InfluxDB 3's `{"error"}` with the status of their
//! kind: an unreachable ingester is 503, never a partial answer.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use serde::Deserialize;

use super::error::{Error, V3Error};
use super::frontend::QueryFrontend;
use super::influxql_flight;
use crate::query::QueryError;

#[derive(Debug, Default, Deserialize)]
struct Params {
    db: Option<String>,
    q: Option<String>,
    format: Option<String>,
}

impl Params {
    fn from_query(query: Option<&str>) -> Result<Self, Error> {
        serde_urlencoded::from_str(query.unwrap_or_default())
            .map_err(|e| Error::InvalidQueryString(e.to_string()))
    }

    /// Values in the body win over the query string's.
    fn merge(self, body: Params) -> Self {
        Self {
            db: body.db.or(self.db),
            q: body.q.or(self.q),
            format: body.format.or(self.format),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Format {
    #[default]
    Json,
    JsonLines,
    Csv,
    /// One file, a row group per batch of the answer.
    Parquet,
}

impl Format {
    fn parse(value: Option<&str>) -> Result<Self, Error> {
        match value.unwrap_or("json") {
            "json" => Ok(Self::Json),
            "jsonl" => Ok(Self::JsonLines),
            "csv" => Ok(Self::Csv),
            "parquet" => Ok(Self::Parquet),
            other => Err(Error::InvalidQueryString(format!(
                "unsupported format {other:?}: use json, jsonl, csv or parquet"
            ))),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::JsonLines => "application/jsonl",
            Self::Csv => "text/csv",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// Encodes an answer batch by batch, so what is held is one batch's text
/// (Parquet: one row group, flushed and handed out per batch).
#[derive(Default)]
struct Encoder {
    format: Format,
    /// Rows were written (JSON: the array is open; CSV: the header is out).
    started: bool,
    parquet: Option<ArrowWriter<Vec<u8>>>,
}

impl Encoder {
    /// `schema`: the answer's, which a Parquet file states even with no rows.
    fn new(format: Format, schema: SchemaRef) -> Result<Self, Error> {
        let parquet = match format {
            Format::Parquet => Some(
                ArrowWriter::try_new(Vec::new(), schema, None)
                    .map_err(|e| Error::Internal(format!("encoding the result: {e}")))?,
            ),
            _ => None,
        };
        Ok(Self {
            format,
            started: false,
            parquet,
        })
    }

    /// What the Parquet writer has produced so far.
    fn drain(writer: &mut ArrowWriter<Vec<u8>>) -> Bytes {
        Bytes::from(std::mem::take(writer.inner_mut()))
    }

    /// The text of `batch`, continuing what came before.
    fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, ArrowError> {
        if batch.num_rows() == 0 {
            return Ok(Bytes::new());
        }
        let mut out = Vec::new();
        match self.format {
            Format::Json => {
                let mut lines = Vec::new();
                let mut w = arrow::json::LineDelimitedWriter::new(&mut lines);
                w.write(batch)?;
                w.finish()?;
                // Lines become array elements: `[` or `,` before each (a
                // newline inside a value is escaped, so each is one row).
                out.reserve(lines.len() + 1);
                for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    out.push(if self.started { b',' } else { b'[' });
                    out.extend_from_slice(line);
                    self.started = true;
                }
            }
            Format::JsonLines => {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
                w.write(batch)?;
                w.finish()?;
            }
            Format::Csv => {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(!self.started)
                    .build(&mut out);
                w.write(batch)?;
                self.started = true;
            }
            Format::Parquet => {
                if let Some(w) = &mut self.parquet {
                    w.write(batch)?;
                    w.flush()?;
                    return Ok(Self::drain(w));
                }
            }
        }
        Ok(Bytes::from(out))
    }

    /// What closes the answer.
    fn finish(&mut self) -> Result<Bytes, ArrowError> {
        Ok(match (self.format, self.started) {
            (Format::Json, true) => Bytes::from_static(b"]"),
            (Format::Json, false) => Bytes::from_static(b"[]"),
            (Format::Parquet, _) => match &mut self.parquet {
                Some(w) => {
                    w.finish()?;
                    Self::drain(w)
                }
                None => Bytes::new(),
            },
            _ => Bytes::new(),
        })
    }
}

pub fn routes(frontend: Arc<QueryFrontend>) -> Router {
    Router::new()
        .route("/api/v3/query_sql", language_routes(Language::Sql))
        .route(
            "/api/v3/query_influxql",
            language_routes(Language::Influxql),
        )
        .with_state(frontend)
}

/// The query language of an endpoint.
#[derive(Debug, Clone, Copy)]
enum Language {
    Sql,
    Influxql,
}

/// `GET` and `POST` of one language's endpoint.
fn language_routes(language: Language) -> MethodRouter<Arc<QueryFrontend>> {
    get(move |frontend, query, headers| query_get(language, frontend, query, headers)).post(
        move |frontend, query, headers, body| query_post(language, frontend, query, headers, body),
    )
}

async fn query_get(
    language: Language,
    State(frontend): State<Arc<QueryFrontend>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, V3Error> {
    let params = Params::from_query(query.as_deref())?;
    Ok(run(language, &frontend, &headers, params).await?)
}

async fn query_post(
    language: Language,
    State(frontend): State<Arc<QueryFrontend>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, V3Error> {
    let (body, _held) = frontend.bodies.read(&headers, body).await?;
    let mut params = Params::from_query(query.as_deref())?;
    if !body.is_empty() {
        let from_body: Params = serde_json::from_slice(&body)
            .map_err(|e| Error::InvalidQuery(format!("invalid JSON body: {e}")))?;
        params = params.merge(from_body);
    }
    Ok(run(language, &frontend, &headers, params).await?)
}

async fn run(
    language: Language,
    frontend: &QueryFrontend,
    headers: &HeaderMap,
    params: Params,
) -> Result<Response, Error> {
    let database = params.db.filter(|d| !d.is_empty());
    let text = params
        .q
        .filter(|q| !q.is_empty())
        .ok_or_else(|| Error::InvalidQuery("missing query: set the q parameter".into()))?;
    let format = Format::parse(params.format.as_deref())?;
    match language {
        Language::Sql => sql(frontend, headers, database, &text, format).await,
        Language::Influxql => influxql(frontend, headers, database, &text, format).await,
    }
}

/// An InfluxQL answer is one table, built whole (as over Flight): encoded at
/// once, with its slot and memory held until then.
async fn influxql(
    frontend: &QueryFrontend,
    headers: &HeaderMap,
    database: Option<String>,
    text: &str,
    format: Format,
) -> Result<Response, Error> {
    let header = headers.get(header::AUTHORIZATION);
    let answer = influxql_flight::answer(frontend, header, database.as_deref(), text).await?;
    let mut encoder = Encoder::new(format, answer.batch.schema())?;
    let mut text = encode(&mut encoder, answer.batch.clone()).await?.to_vec();
    text.extend_from_slice(&finish(&mut encoder)?);
    drop(answer);
    Ok(with_content_type(Body::from(text).into_response(), format))
}

fn with_content_type(mut response: Response, format: Format) -> Response {
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}

async fn sql(
    frontend: &QueryFrontend,
    headers: &HeaderMap,
    database: Option<String>,
    sql: &str,
    format: Format,
) -> Result<Response, Error> {
    let database = database.ok_or(Error::MissingDb)?;
    frontend
        .authorize(headers.get(header::AUTHORIZATION), &database)
        .await?;
    let (schema, mut batches) = frontend.execute(&database, sql).await?;
    // The first batch before the status: a query that fails at once (memory,
    // an unreachable ingester, the deadline) gets its own status, not a 200
    // cut short.
    let first = batches.next().await.transpose().map_err(QueryError::from)?;
    let mut encoder = Encoder::new(format, schema)?;
    let head = match first {
        Some(batch) => encode(&mut encoder, batch).await?,
        None => Bytes::new(),
    };
    let rest = futures::stream::unfold(
        (batches, encoder, false),
        |(mut batches, mut encoder, done)| async move {
            if done {
                return None;
            }
            match batches.next().await {
                Some(Ok(batch)) => {
                    let text = encode(&mut encoder, batch).await;
                    let stop = text.is_err();
                    Some((text, (batches, encoder, stop)))
                }
                // An error after the status was sent: the body is cut (the
                // connection is reset), so it never looks complete.
                Some(Err(e)) => {
                    let e = Error::from(QueryError::from(e));
                    tracing::info!(error = %e, "query failed while its answer was sent");
                    Some((Err(e), (batches, encoder, true)))
                }
                None => Some((finish(&mut encoder), (batches, encoder, true))),
            }
        },
    );
    let body = futures::stream::once(async { Ok::<_, Error>(head) }).chain(rest);
    Ok(with_content_type(
        Body::from_stream(body).into_response(),
        format,
    ))
}

fn finish(encoder: &mut Encoder) -> Result<Bytes, Error> {
    encoder
        .finish()
        .map_err(|e| Error::Internal(format!("encoding the result: {e}")))
}

/// Encodes one batch off the async threads (a batch of text is CPU work).
async fn encode(encoder: &mut Encoder, batch: RecordBatch) -> Result<Bytes, Error> {
    let mut moved = std::mem::take(encoder);
    let (moved, text) = tokio::task::spawn_blocking(move || {
        let text = moved.batch(&batch);
        (moved, text)
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?;
    *encoder = moved;
    text.map_err(|e| Error::Internal(format!("encoding the result: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn formats() {
        let batch = RecordBatch::try_from_iter([
            (
                "host",
                Arc::new(StringArray::from(vec![Some("a"), None])) as _,
            ),
            ("n", Arc::new(Int64Array::from(vec![1, 2])) as _),
        ])
        .unwrap();
        let bytes = |f: Format, batches: &[RecordBatch]| {
            let mut e = Encoder::new(f, batch.schema()).unwrap();
            let mut out = Vec::new();
            for b in batches {
                out.extend_from_slice(&e.batch(b).unwrap());
            }
            out.extend_from_slice(&e.finish().unwrap());
            out
        };
        let all = [batch.clone(), batch.slice(0, 0), batch.clone()];
        let text = |f: Format| String::from_utf8(bytes(f, &all)).unwrap();
        assert_eq!(
            text(Format::Json),
            r#"[{"host":"a","n":1},{"n":2},{"host":"a","n":1},{"n":2}]"#
        );
        assert_eq!(
            text(Format::JsonLines),
            "{\"host\":\"a\",\"n\":1}\n{\"n\":2}\n{\"host\":\"a\",\"n\":1}\n{\"n\":2}\n"
        );
        assert_eq!(text(Format::Csv), "host,n\na,1\n,2\na,1\n,2\n");
        assert_eq!(bytes(Format::Json, &[]), b"[]");
        assert_eq!(bytes(Format::Csv, &[]), b"");
        assert!(Format::parse(Some("arrow")).is_err());
        // Parquet: one file, a row group per batch with rows, the schema even
        // with none.
        let read = |file: Vec<u8>| {
            let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file)).unwrap();
            let groups = reader.metadata().num_row_groups();
            let batches: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
            (groups, batches)
        };
        let (groups, batches) = read(bytes(Format::Parquet, &all));
        assert_eq!(groups, 2);
        assert_eq!(
            arrow::compute::concat_batches(&batch.schema(), &batches).unwrap(),
            arrow::compute::concat_batches(&batch.schema(), [&batch, &batch]).unwrap()
        );
        let (groups, batches) = read(bytes(Format::Parquet, &[]));
        assert_eq!((groups, batches.len()), (0, 0));
    }
}
