//! The edge: HTTP (axum) and gRPC on one port, serving the write endpoints,
//! Flight (queries, producer writes), health and ping.
//!
//! Every handler returns `crate::edge::error::Error` on failure, so every error, even
//! for unknown paths and methods, is the same JSON shape. Each response carries an
//! `X-Request-Id` (the client's, echoed, or a new one).

mod admin_http;
pub mod body;
pub mod error;
pub mod flight;
mod flight_sql;
pub mod frontend;
mod influxql_flight;
mod influxql_http;
mod metrics_http;
mod query_http;
pub mod server;
mod sql_info;
pub mod v1;
pub mod v2;
pub mod v3;
pub mod write;

pub use server::{ConnLimits, Listener, serve};

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::Service;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::auth::Authorizer;
use crate::edge::error::Error;
use crate::store::Store;
use crate::write::Writer;
use body::Limits;
use frontend::QueryFrontend;

/// What every edge handler shares.
pub struct Edge {
    pub auth: Arc<Authorizer>,
    /// The write service every write endpoint calls.
    pub writer: Arc<Writer>,
    /// What the edge reads of a request body.
    pub limits: Limits,
    /// Set at shutdown: `/ready` fails so load balancers stop sending.
    pub stopping: AtomicBool,
    /// One permit per byte of request bodies held (`Limits::max_buffered_body_bytes`).
    pub body_bytes: Arc<tokio::sync::Semaphore>,
}

impl Edge {
    /// The reader of the bodies of queries and administration, sharing the
    /// writes' limits and budget.
    pub fn body_reader(&self) -> body::BodyReader {
        body::BodyReader::new(self.limits, Arc::clone(&self.body_bytes))
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn app(edge: Arc<Edge>) -> Router {
    app_with(edge, Router::new())
}

/// The write routes plus `extra` (the query routes, in the one-process mode).
fn app_with(edge: Arc<Edge>, extra: Router) -> Router {
    let admin = admin_http::routes(
        Arc::clone(&edge.auth),
        Arc::clone(edge.writer.catalog()),
        edge.body_reader(),
    );
    let router = Router::new()
        .route("/api/v2/write", post(v2::write))
        .route("/write", post(v1::write))
        .route("/api/v3/write_lp", post(v3::write))
        .route("/ready", get(ready))
        .with_state(edge)
        .merge(ops_routes())
        .merge(admin)
        .merge(extra);
    finish(router)
}

/// What every role's HTTP service has around its routes: JSON errors for
/// unknown paths and methods, request ids, request metrics, and InfluxDB's
/// response headers.
fn finish(router: Router) -> Router {
    router
        .fallback(|| async { Error::PathNotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(axum::middleware::from_fn(metrics_http::track))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(axum::middleware::from_fn(influxdb_headers))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// `Request-Id` as InfluxDB 1.x and 2.x name it, beside `X-Request-Id`.
const INFLUX_REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

/// The headers InfluxDB puts on every response, which v1 clients and
/// Chronograf read: `X-Influxdb-Version`, and the request id also as
/// `Request-Id`.
async fn influxdb_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Some(id) = headers.get(REQUEST_ID).cloned() {
        headers.insert(INFLUX_REQUEST_ID, id);
    }
    headers
        .entry("x-influxdb-version")
        .or_insert(HeaderValue::from_static(env!("CARGO_PKG_VERSION")));
    response
}

/// Upper-cases a method sent in lower case: InfluxDB's own documentation example is
/// `curl --request post`, which sends the literal method `post`, and InfluxDB
/// accepts it. Methods are case-sensitive in HTTP, so routing would otherwise 405.
pub fn normalize_method<B>(mut request: http::Request<B>) -> http::Request<B> {
    let method = request.method().as_str();
    if method.bytes().any(|b| b.is_ascii_lowercase())
        && let Ok(upper) = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
    {
        *request.method_mut() = upper;
    }
    request
}

/// Routes every role serves: health, ping and metrics.
fn ops_routes() -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ping", get(ping).head(ping))
        .route("/metrics", get(metrics_http::handler))
}

/// The HTTP service of roles without an edge (ingesters): health, ping,
/// metrics, and readiness.
pub fn ops_app(stopping: Arc<AtomicBool>, store: Store) -> Router {
    finish(ops_app_routes(stopping, store))
}

fn ops_app_routes(stopping: Arc<AtomicBool>, store: Store) -> Router {
    let ready = move || {
        let (stopping, store) = (Arc::clone(&stopping), store.clone());
        async move {
            check_ready(&stopping, &store).await?;
            Ok::<_, Error>(ready_body())
        }
    };
    ops_routes().route("/ready", get(ready))
}

/// How long `/ready` waits for the object store before calling it unreachable.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Ready: not shutting down, and the object store answers.
async fn check_ready(stopping: &AtomicBool, store: &Store) -> Result<(), Error> {
    if stopping.load(std::sync::atomic::Ordering::Acquire) {
        return Err(Error::Unavailable("shutting down".into()));
    }
    match tokio::time::timeout(STORE_PROBE_TIMEOUT, store.reachable()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::Unavailable(format!("object store unreachable: {e}"))),
        Err(_) => Err(Error::Unavailable(format!(
            "object store did not answer within {STORE_PROBE_TIMEOUT:?}"
        ))),
    }
}

fn ready_body() -> Response {
    axum::Json(serde_json::json!({"status": "ready"})).into_response()
}

/// A router's readiness also needs some ingester taking writes.
async fn ready(
    axum::extract::State(edge): axum::extract::State<Arc<Edge>>,
) -> Result<Response, Error> {
    check_ready(&edge.stopping, edge.writer.catalog().store()).await?;
    if !edge.writer.router().any_ingester_allowed() {
        return Err(Error::Unavailable("no ingester is taking writes".into()));
    }
    Ok(ready_body())
}

/// The v2 `/health` body.
async fn health() -> Response {
    let body = serde_json::json!({
        "name": "inflow",
        "message": "ready for writes",
        "status": "pass",
        "checks": [],
        "version": env!("CARGO_PKG_VERSION"),
        "commit": "",
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// The HTTP query APIs: InfluxDB 3's SQL and 1.x's InfluxQL `/query`.
fn query_routes(query: Arc<QueryFrontend>) -> Router {
    query_http::routes(Arc::clone(&query)).merge(influxql_http::routes(query))
}

async fn ping() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert("x-influxdb-build", HeaderValue::from_static("inflow"));
    r
}

/// One port for both: gRPC (by `content-type: application/grpc`) goes to Flight,
/// everything else to the HTTP routes. Dispatching here, in front of both, keeps
/// tonic's own fallback from clashing with axum's.
///
/// gRPC calls are authenticated here, from their `authorization` metadata,
/// before tonic decodes a message: an unknown client cannot make the server
/// read a large message. HTTP request bodies get a per-frame read timeout.
#[derive(Clone)]
pub struct EdgeService {
    http: Router,
    grpc: FlightServiceServer<flight::EdgeFlight>,
    auth: Arc<Authorizer>,
    body_read_timeout: Duration,
}

impl EdgeService {
    /// A router's edge: writes only.
    pub fn new(edge: Arc<Edge>) -> Self {
        Self::with_query(edge, None)
    }

    /// Writes, and queries too when `query` is given (the one-process mode).
    pub fn with_query(edge: Arc<Edge>, query: Option<Arc<QueryFrontend>>) -> Self {
        let extra = query.clone().map(query_routes).unwrap_or_default();
        let limits = edge.limits;
        Self {
            http: app_with(Arc::clone(&edge), extra),
            auth: Arc::clone(&edge.auth),
            grpc: flight::EdgeFlight::server(Some(edge), query, limits.max_request_bytes),
            body_read_timeout: limits.body_read_timeout,
        }
    }

    /// A querier's edge: queries over Flight, health and readiness over HTTP.
    /// `limits` gives the largest gRPC message and the body read timeout.
    pub fn querier(
        query: Arc<QueryFrontend>,
        stopping: Arc<AtomicBool>,
        store: Store,
        limits: &Limits,
    ) -> Self {
        let http = finish(ops_app_routes(stopping, store).merge(query_routes(Arc::clone(&query))));
        Self {
            http,
            auth: Arc::clone(&query.auth),
            grpc: flight::EdgeFlight::server(None, Some(query), limits.max_request_bytes),
            body_read_timeout: limits.body_read_timeout,
        }
    }
}

/// Flight's `Handshake` carries its own credentials (in its messages), so it
/// is not authenticated from metadata.
const HANDSHAKE_PATH: &str = "/arrow.flight.protocol.FlightService/Handshake";

/// Authenticates a gRPC call from its `authorization` metadata (an HTTP/2
/// header) and hands the principal on in the request's extensions.
async fn authenticate_grpc<B>(
    auth: &Authorizer,
    mut request: http::Request<B>,
) -> Result<http::Request<B>, tonic::Status> {
    if request.uri().path() == HANDSHAKE_PATH {
        return Ok(request);
    }
    let principal = auth
        .authenticate(request.headers().get(http::header::AUTHORIZATION))
        .await
        .map_err(|e| Error::from(e).to_grpc())?;
    request.extensions_mut().insert(principal);
    Ok(request)
}

impl Service<http::Request<hyper::body::Incoming>> for EdgeService {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let is_grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if is_grpc {
            let mut grpc = self.grpc.clone();
            let auth = Arc::clone(&self.auth);
            Box::pin(async move {
                let request = match authenticate_grpc(&auth, request).await {
                    Ok(r) => r,
                    Err(status) => return Ok(status.into_http()),
                };
                let response = grpc.call(request).await?;
                Ok(response.map(axum::body::Body::new))
            })
        } else {
            let mut http = self.http.clone();
            let timeout = self.body_read_timeout;
            // A body that stops arriving fails its read (see `body::read_body`).
            let request = normalize_method(request)
                .map(|b| axum::body::Body::new(body::StallTimeout::new(timeout, b)));
            Box::pin(async move { http.call(request).await })
        }
    }
}
