//! `GET|POST /api/v3/query_sql`: InfluxDB 3's HTTP query API, for `curl` and
//! tools that do not speak Flight. Parameters `db`, `q` and `format` (`json`,
//! the default, `jsonl` or `csv`) in the query string, or as a JSON body on
//! POST. Errors are InfluxDB 3's `{"error"}` with the status of their kind: an
//! unreachable ingester is 503, never a partial answer.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt;
use serde::Deserialize;

use super::QueryError;
use super::frontend::QueryFrontend;
use crate::error::{Error, V3Error};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    JsonLines,
    Csv,
}

impl Format {
    fn parse(value: Option<&str>) -> Result<Self, Error> {
        match value.unwrap_or("json") {
            "json" => Ok(Self::Json),
            "jsonl" => Ok(Self::JsonLines),
            "csv" => Ok(Self::Csv),
            other => Err(Error::InvalidQueryString(format!(
                "unsupported format {other:?}: use json, jsonl or csv"
            ))),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::JsonLines => "application/jsonl",
            Self::Csv => "text/csv",
        }
    }

    fn encode(self, batches: &[RecordBatch]) -> Result<Vec<u8>, arrow::error::ArrowError> {
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        let mut out = Vec::new();
        match self {
            Self::Json => {
                let mut w = arrow::json::ArrayWriter::new(&mut out);
                w.write_batches(&refs)?;
                w.finish()?;
                if out.is_empty() {
                    out.extend_from_slice(b"[]");
                }
            }
            Self::JsonLines => {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
                w.write_batches(&refs)?;
                w.finish()?;
            }
            Self::Csv => {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for b in batches {
                    w.write(b)?;
                }
            }
        }
        Ok(out)
    }
}

pub fn routes(frontend: Arc<QueryFrontend>) -> Router {
    Router::new()
        .route("/api/v3/query_sql", get(query_get).post(query_post))
        .with_state(frontend)
}

async fn query_get(
    State(frontend): State<Arc<QueryFrontend>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, V3Error> {
    let params = Params::from_query(query.as_deref())?;
    Ok(run(&frontend, &headers, params).await?)
}

async fn query_post(
    State(frontend): State<Arc<QueryFrontend>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, V3Error> {
    let mut params = Params::from_query(query.as_deref())?;
    if !body.is_empty() {
        let from_body: Params = serde_json::from_slice(&body)
            .map_err(|e| Error::InvalidQuery(format!("invalid JSON body: {e}")))?;
        params = params.merge(from_body);
    }
    Ok(run(&frontend, &headers, params).await?)
}

async fn run(
    frontend: &QueryFrontend,
    headers: &HeaderMap,
    params: Params,
) -> Result<Response, Error> {
    let database = params
        .db
        .filter(|d| !d.is_empty())
        .ok_or(Error::MissingDb)?;
    let sql = params
        .q
        .filter(|q| !q.is_empty())
        .ok_or_else(|| Error::InvalidQuery("missing query: set the q parameter".into()))?;
    let format = Format::parse(params.format.as_deref())?;
    frontend
        .authorize(headers.get(header::AUTHORIZATION), &database)
        .await?;
    let planned = frontend.querier.plan(&database, &sql).await?;
    let batches: Vec<RecordBatch> = planned
        .execute()
        .await?
        .try_collect()
        .await
        .map_err(QueryError::from)?;
    let body = tokio::task::spawn_blocking(move || format.encode(&batches))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Internal(format!("encoding the result: {e}")))?;
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

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
        let text =
            |f: Format| String::from_utf8(f.encode(std::slice::from_ref(&batch)).unwrap()).unwrap();
        assert_eq!(text(Format::Json), r#"[{"host":"a","n":1},{"n":2}]"#);
        assert_eq!(
            text(Format::JsonLines),
            "{\"host\":\"a\",\"n\":1}\n{\"n\":2}\n"
        );
        assert_eq!(text(Format::Csv), "host,n\na,1\n,2\n");
        assert_eq!(Format::Json.encode(&[]).unwrap(), b"[]");
        assert!(Format::parse(Some("parquet")).is_err());
    }
}
