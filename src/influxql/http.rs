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
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Context;
use super::result::{self, TimeFormat};
use crate::auth::v1_token;
use crate::error::{Error, V1Error};
use crate::query::frontend::QueryFrontend;

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
    Ok(run(&frontend, &headers, params).await?)
}

async fn query_post(
    State(frontend): State<Arc<QueryFrontend>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, V1Error> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let params = params(query.as_deref(), form.then_some(&body[..]))?;
    Ok(run(&frontend, &headers, params).await?)
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

async fn run(
    frontend: &QueryFrontend,
    headers: &HeaderMap,
    params: HashMap<String, String>,
) -> Result<Response, Error> {
    let get = |k: &str| params.get(k).map(String::as_str);
    let token = v1_token(headers.get(header::AUTHORIZATION), get("p"))?;
    let principal = frontend.auth.authenticate_token(&token).await?;
    let q = get("q")
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| Error::InvalidQuery("missing required parameter \"q\"".into()))?;
    let time = TimeFormat::from_epoch(get("epoch")).ok_or_else(|| {
        Error::InvalidQueryString(format!(
            "invalid epoch {:?}: use ns, u, ms, s, m or h",
            get("epoch").unwrap_or_default()
        ))
    })?;
    let chunked = get("chunked") == Some("true");
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
    let ctx = Context {
        querier: &frontend.querier,
        principal: &principal,
        database: database.as_deref(),
        now: crate::auth::now_ns(),
    };
    let query = super::parse(q)?;
    let results = super::run(&ctx, &query).await?;
    // A statement's own time zone shapes its RFC3339 times.
    let time_for = |id: usize| match (time, query.statements.get(id)) {
        (TimeFormat::Rfc3339(None), Some(super::ast::Statement::Select(s))) => {
            s.tz.as_deref()
                .and_then(|tz| tz.parse().ok())
                .map_or(time, |tz| TimeFormat::Rfc3339(Some(tz)))
        }
        _ => time,
    };
    let body = if chunked {
        results
            .iter()
            .map(|r| {
                // 1.x streams SELECT answers in chunks; SHOW answers whole.
                let select = matches!(
                    query.statements.get(r.statement_id),
                    Some(super::ast::Statement::Select(_))
                );
                let size = if select { chunk_size } else { usize::MAX };
                result::encode_chunked(std::slice::from_ref(r), time_for(r.statement_id), size)
            })
            .collect::<String>()
    } else {
        let out = result::encode(&results, time_for);
        if get("pretty") == Some("true") {
            pretty(&out)
        } else {
            out
        }
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        "x-influxdb-version",
        HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
    );
    Ok(response)
}

fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| json.to_string())
}
