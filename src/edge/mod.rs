//! The edge: HTTP (axum) and gRPC on one port, serving the write endpoints,
//! Flight (queries, producer writes), health and ping.
//!
//! Every handler returns `crate::error::Error` on failure, so every error, even
//! for unknown paths and methods, is the same JSON shape. Each response carries an
//! `X-Request-Id` (the client's, echoed, or a new one).

pub mod body;
pub mod flight;
pub mod v1;
pub mod v2;
pub mod v3;
pub mod write;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::Service;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::auth::Authorizer;
use crate::catalog::{Catalog, SchemaLimits};
use crate::error::Error;
use crate::query::frontend::QueryFrontend;
use crate::route::Router as IngestRouter;
use crate::series::SeriesRegistry;
use crate::store::Store;
use body::Limits;

/// What every edge handler shares.
pub struct Edge {
    pub auth: Arc<Authorizer>,
    pub catalog: Arc<Catalog>,
    /// Every database's series, for the series quota.
    pub series: SeriesRegistry,
    pub router: Arc<IngestRouter>,
    pub limits: Limits,
    /// Set at shutdown: `/ready` fails so load balancers stop sending.
    pub stopping: AtomicBool,
    /// One permit per write request in flight (`Limits::max_concurrent_writes`).
    pub write_slots: tokio::sync::Semaphore,
}

impl Edge {
    /// The server-wide quotas, for databases without their own.
    pub fn server_limits(&self) -> SchemaLimits {
        SchemaLimits {
            max_tables: self.limits.max_tables_per_database,
            max_columns: self.limits.max_columns_per_table,
            max_series: self.limits.max_series_per_database,
        }
    }

    /// Waits for a write slot, or gives up with 503 + `Retry-After`.
    pub async fn write_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Error> {
        match tokio::time::timeout(self.limits.write_queue_timeout, self.write_slots.acquire())
            .await
        {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(Error::Unavailable(format!(
                "{} writes in flight and none finished within {:?}; retry later",
                self.limits.max_concurrent_writes, self.limits.write_queue_timeout
            ))),
        }
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn app(edge: Arc<Edge>) -> Router {
    app_with(edge, Router::new())
}

/// The write routes plus `extra` (the query routes, in the one-process mode).
fn app_with(edge: Arc<Edge>, extra: Router) -> Router {
    let admin = crate::admin::routes(Arc::clone(&edge.auth), Arc::clone(&edge.catalog));
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
/// unknown paths and methods, request ids, and request metrics.
fn finish(router: Router) -> Router {
    router
        .fallback(|| async { Error::PathNotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Upper-cases a method sent in lower case: the seed's own example is
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
        .route("/metrics", get(crate::metrics::handler))
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
    check_ready(&edge.stopping, edge.catalog.store()).await?;
    if !edge.router.any_ingester_allowed() {
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
    crate::query::http::routes(Arc::clone(&query)).merge(crate::influxql::http::routes(query))
}

async fn ping() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let version = HeaderValue::from_static(env!("CARGO_PKG_VERSION"));
    r.headers_mut().insert("x-influxdb-version", version);
    r.headers_mut()
        .insert("x-influxdb-build", HeaderValue::from_static("inflow"));
    r
}

/// One port for both: gRPC (by `content-type: application/grpc`) goes to Flight,
/// everything else to the HTTP routes. Dispatching here, in front of both, keeps
/// tonic's own fallback from clashing with axum's.
#[derive(Clone)]
pub struct EdgeService {
    http: Router,
    grpc: FlightServiceServer<flight::EdgeFlight>,
}

impl EdgeService {
    /// A router's edge: writes only.
    pub fn new(edge: Arc<Edge>) -> Self {
        Self::with_query(edge, None)
    }

    /// Writes, and queries too when `query` is given (the one-process mode).
    pub fn with_query(edge: Arc<Edge>, query: Option<Arc<QueryFrontend>>) -> Self {
        let extra = query.clone().map(query_routes).unwrap_or_default();
        Self {
            http: app_with(Arc::clone(&edge), extra),
            grpc: flight::EdgeFlight::server(Some(edge), query),
        }
    }

    /// A querier's edge: queries over Flight, health and readiness over HTTP.
    pub fn querier(query: Arc<QueryFrontend>, stopping: Arc<AtomicBool>, store: Store) -> Self {
        let http = finish(ops_app_routes(stopping, store).merge(query_routes(Arc::clone(&query))));
        Self {
            http,
            grpc: flight::EdgeFlight::server(None, Some(query)),
        }
    }
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
            Box::pin(async move {
                let response = grpc.call(request).await?;
                Ok(response.map(axum::body::Body::new))
            })
        } else {
            let mut http = self.http.clone();
            let request = normalize_method(request);
            Box::pin(async move { http.call(request).await })
        }
    }
}

/// A bound HTTP (and gRPC) listener, with TLS when a certificate was given.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// How long a client may take for its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `service` on `listener` (HTTP/1.1 and HTTP/2, TLS if configured)
/// until `shutdown`, then gives open connections `grace` to finish.
pub async fn serve<S>(
    listener: Listener,
    service: S,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    S: Service<
            http::Request<hyper::body::Incoming>,
            Response = Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            conn = listener.tcp.accept() => match conn {
                Ok(c) => c,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(service.clone());
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let tls = listener.tls.clone();
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
                Some(tls) => {
                    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream));
                    let stream = match handshake.await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(?grace, "connections still open after the shutdown deadline");
    }
}
