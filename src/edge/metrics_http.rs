//! The Prometheus endpoint and the middleware that counts every HTTP request:
//! the transport side of [`crate::metrics`], which only keeps the registry.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::error::Error;
use crate::metrics::{QueryKind, QueryOutcome, QueryTimer, Transport, metrics};

/// `GET /metrics`.
pub async fn handler() -> Response {
    match metrics().render() {
        Ok(text) => {
            let mut r = text.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        Err(e) => Error::Internal(format!("metrics: {e}")).into_response(),
    }
}

/// Middleware counting every HTTP request by its route (the pattern, not the
/// path, so unknown paths do not grow the label set) and status.
pub async fn track(request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let started = Instant::now();
    let query = query_kind(&endpoint).map(|kind| QueryTimer::start(kind, Transport::Http));
    let response = next.run(request).await;
    let status = response.status();
    metrics()
        .http_requests
        .with_label_values(&[endpoint.as_str(), status.as_str()])
        .inc();
    if let Some(api) = write_api(&endpoint) {
        observe_write(api, status, started.elapsed());
    }
    match query {
        Some(timer) if status.is_success() => response.map(|body| {
            Body::new(QueryBody {
                body,
                timer: Some(timer),
            })
        }),
        Some(timer) => {
            timer.finish(outcome_of_status(status));
            response
        }
        None => response,
    }
}

/// The query language a route answers, if it is a query route.
fn query_kind(endpoint: &str) -> Option<QueryKind> {
    match endpoint {
        "/api/v3/query_sql" => Some(QueryKind::Sql),
        "/query" | "/api/v3/query_influxql" => Some(QueryKind::InfluxQl),
        _ => None,
    }
}

/// A refused query's outcome by its status.
fn outcome_of_status(status: StatusCode) -> QueryOutcome {
    match status.as_u16() {
        200..=299 => QueryOutcome::Ok,
        // nginx's "client closed request"; not sent by inflow, kept for proxies.
        499 => QueryOutcome::Cancelled,
        400..=499 => QueryOutcome::ClientError,
        _ => QueryOutcome::ServerError,
    }
}

/// A query's answer, which stops its timer at its last byte: `ok` if it
/// ended (its stream, or the last frame of a body known whole),
/// `server_error` if it broke off, `cancelled` if the client went away first
/// (the body is dropped unfinished).
struct QueryBody {
    body: Body,
    timer: Option<QueryTimer>,
}

impl HttpBody for QueryBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        let outcome = match &frame {
            Poll::Ready(None) => Some(QueryOutcome::Ok),
            Poll::Ready(Some(Err(_))) => Some(QueryOutcome::ServerError),
            // A body known whole ends with its last frame: hyper polls no
            // further once `is_end_stream` says so.
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => Some(QueryOutcome::Ok),
            _ => None,
        };
        if let Some(outcome) = outcome
            && let Some(timer) = this.timer.take()
        {
            timer.finish(outcome);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The write API a route belongs to, if it is a write route.
fn write_api(endpoint: &str) -> Option<&'static str> {
    match endpoint {
        "/write" => Some("v1"),
        "/api/v2/write" => Some("v2"),
        "/api/v3/write_lp" => Some("v3"),
        _ => None,
    }
}

/// Records a write request's latency under its API and status.
fn observe_write(api: &str, status: StatusCode, took: Duration) {
    metrics()
        .write_duration
        .with_label_values(&[api, status.as_str()])
        .observe(took.as_secs_f64());
}
