//! `GET|POST /query`: InfluxDB 1.x's query API, as Grafana's InfluxQL data
//! source, Chronograf, the `influx` shell and the v1 client libraries call it.
//!
//! Parameters come from the query string and, on POST, a form body: `q`,
//! `db`, `rp`, `epoch`, `chunked`, `chunk_size`, `pretty`, and `u`/`p`.
//! Credentials: `Authorization: Token|Bearer`, Basic with the token as the
//! password, or `p`. A query that does not parse is 400 with v1's
//! `{"error"}`; a statement that fails has its `error` in a 200 answer, as in
//! 1.x — except when data could not be read (503): never a partial answer.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use futures::{FutureExt, StreamExt};

use super::error::{Error, V1Error};
use super::frontend::QueryFrontend;
use crate::auth::Principal;
use crate::influxql::Context;
use crate::influxql::ast::{Query, Statement};
use crate::influxql::result::{self, StatementResult, TimeFormat};
use crate::query::limits::Producer;

/// 1.x's default rows per chunk.
const DEFAULT_CHUNK_SIZE: usize = result::CHUNK_ROWS;

pub fn routes(frontend: Arc<QueryFrontend>) -> Router {
    Router::new()
        .route("/query", get(query_get).post(query_post))
        .with_state(frontend)
}

async fn query_get(
    State(frontend): State<Arc<QueryFrontend>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, V1Error> {
    let params = params(query.as_deref(), None)?;
    Ok(run(frontend, &headers, params).await?)
}

async fn query_post(
    State(frontend): State<Arc<QueryFrontend>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, V1Error> {
    let (body, _held) = frontend.bodies.read(&headers, body).await?;
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let params = params(query.as_deref(), form.then_some(&body[..]))?;
    Ok(run(Arc::clone(&frontend), &headers, params).await?)
}

/// The query string's parameters, overridden by the form body's.
fn params(query: Option<&str>, form: Option<&[u8]>) -> Result<HashMap<String, String>, Error> {
    let mut params: HashMap<String, String> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| Error::InvalidQueryString(e.to_string()))?;
    if let Some(body) = form {
        let from_body: HashMap<String, String> = serde_urlencoded::from_bytes(body)
            .map_err(|e| Error::InvalidQueryString(format!("invalid form body: {e}")))?;
        params.extend(from_body);
    }
    Ok(params)
}

/// One `/query` request, parsed and authenticated.
struct Request {
    frontend: Arc<QueryFrontend>,
    principal: Principal,
    database: Option<String>,
    query: Query,
    time: TimeFormat,
    chunked: bool,
    chunk_size: usize,
    pretty: bool,
    now: i64,
}

async fn run(
    frontend: Arc<QueryFrontend>,
    headers: &HeaderMap,
    params: HashMap<String, String>,
) -> Result<Response, Error> {
    let get = |k: &str| params.get(k).map(String::as_str);
    let principal = frontend
        .auth
        .authenticate_v1(headers.get(header::AUTHORIZATION), get("p"))
        .await?;
    let q = get("q")
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| Error::InvalidQuery("missing required parameter \"q\"".into()))?;
    let time = TimeFormat::from_epoch(get("epoch")).ok_or_else(|| {
        Error::InvalidQueryString(format!(
            "invalid epoch {:?}: use ns, u, ms, s, m or h",
            get("epoch").unwrap_or_default()
        ))
    })?;
    // As in 1.x, a chunk size that is not a positive number is the default.
    let chunk_size = get("chunk_size")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_CHUNK_SIZE);
    // A retention policy other than the default is its own database, as
    // `/write` maps it.
    let database = match (get("db").filter(|d| !d.is_empty()), get("rp")) {
        (Some(db), Some(rp)) if !rp.is_empty() && rp != "autogen" => Some(format!("{db}/{rp}")),
        (db, _) => db.map(str::to_string),
    };
    let query = crate::influxql::parse(q)?;
    let ticket = frontend.querier.admit().await?;
    let request = Request {
        principal,
        database,
        query,
        time,
        chunked: get("chunked") == Some("true"),
        chunk_size,
        pretty: get("pretty") == Some("true"),
        now: frontend.querier.clock().now_ns(),
        frontend,
    };
    let (producer, mut answer) = ticket.handover(Error::from);
    tokio::spawn(request.answer(producer));
    // The first piece decides the status: a request that fails before any
    // answer was written gets its own (403, 503, 504), never a 200 cut short.
    let first = match answer.next().await {
        Some(Ok(first)) => first,
        Some(Err(e)) => return Err(e),
        None => return Err(Error::Internal("the query ended without an answer".into())),
    };
    let body = futures::stream::once(async { Ok::<_, Error>(first) }).chain(answer);
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

impl Request {
    /// Runs the statements and hands the answer over piece by piece. Chunked,
    /// each statement's chunks are written as soon as it has run; otherwise
    /// every statement runs first (one that fails the request fails it
    /// whole), then the answer is written a statement at a time. Each
    /// statement's rows count against the query memory pool until written.
    async fn answer(self, out: Producer<Bytes, Error>) {
        let ctx = Context {
            querier: &self.frontend.querier,
            principal: &self.principal,
            database: self.database.as_deref(),
            now: self.now,
        };
        let mut memory = self.frontend.querier.reservation("influxql answer");
        let mut results = Vec::new();
        let mut failed = false;
        for (statement_id, statement) in self.query.statements.iter().enumerate() {
            let (series, error) = if failed {
                (vec![], Some("not executed".to_string()))
            } else {
                let run = crate::influxql::execute_counted(&ctx, statement, &mut memory);
                match out.within(run.map(Ok)).await {
                    Ok(Ok(series)) => (series, None),
                    Ok(Err(e)) if e.fails_request() => {
                        out.send(Err(Error::from(e))).await;
                        return;
                    }
                    Ok(Err(e)) => {
                        failed = true;
                        (vec![], Some(e.to_string()))
                    }
                    Err(e) => {
                        out.send(Err(Error::from(e))).await;
                        return;
                    }
                }
            };
            let r = StatementResult {
                statement_id,
                series,
                error,
            };
            if self.chunked {
                if !self.send_chunks(&out, &r).await {
                    return;
                }
                memory.shrink(result::answer_bytes(&r.series));
            } else {
                results.push(r);
            }
        }
        if self.chunked {
            return;
        }
        if self.pretty {
            let text = pretty(&result::encode(&results, |id| self.time_for(id)));
            out.send(Ok(Bytes::from(text))).await;
            return;
        }
        // `{"results":[` … `]}`, one statement at a time.
        let last = results.len().saturating_sub(1);
        for (i, r) in results.iter().enumerate() {
            let mut piece = String::new();
            if i == 0 {
                piece.push_str("{\"results\":[");
            } else {
                piece.push(',');
            }
            result::push_statement(&mut piece, r, self.time_for(r.statement_id));
            if i == last {
                piece.push_str("]}");
            }
            if !out.send(Ok(Bytes::from(piece))).await {
                return;
            }
        }
        if results.is_empty() {
            out.send(Ok(Bytes::from_static(b"{\"results\":[]}"))).await;
        }
    }

    /// 1.x streams SELECT answers in chunks of `chunk_size` rows; SHOW
    /// answers whole. False when the reader is gone or the deadline passed.
    async fn send_chunks(&self, out: &Producer<Bytes, Error>, r: &StatementResult) -> bool {
        let select = matches!(
            self.query.statements.get(r.statement_id),
            Some(Statement::Select(_))
        );
        let size = if select { self.chunk_size } else { usize::MAX };
        for line in result::chunk_lines(r, self.time_for(r.statement_id), size) {
            if !out.send(Ok(Bytes::from(line))).await {
                return false;
            }
        }
        true
    }

    /// A statement's own time zone shapes its RFC3339 times.
    fn time_for(&self, id: usize) -> TimeFormat {
        match (self.time, self.query.statements.get(id)) {
            (TimeFormat::Rfc3339(None), Some(Statement::Select(s))) => {
                s.tz.as_deref()
                    .and_then(|tz| tz.parse().ok())
                    .map_or(self.time, |tz| TimeFormat::Rfc3339(Some(tz)))
            }
            _ => self.time,
        }
    }
}

fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| json.to_string())
}
