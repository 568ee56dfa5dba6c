//! The Prometheus endpoint and the middleware that counts every HTTP request:
//! the transport side of [`crate::metrics`], which only keeps the registry.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::Error;
use crate::metrics::metrics;

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
    let response = next.run(request).await;
    let status = response.status();
    metrics()
        .http_requests
        .with_label_values(&[endpoint.as_str(), status.as_str()])
        .inc();
    if let Some(api) = write_api(&endpoint) {
        observe_write(api, status, started.elapsed());
    }
    response
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
