//! The HTTP/1.1 + HTTP/2 server under every role's HTTP port (TLS optional),
//! hardened against slow and idle clients.
//!
//! - `--max-connections`: one semaphore permit per open connection, taken
//!   *before* `accept`. At the limit the accept loop stops, so new clients wait
//!   in the kernel's listen backlog (and are refused by the kernel once it is
//!   full) instead of costing a file descriptor and a task each. This is what
//!   tokio's mini-redis and tower's `ConcurrencyLimit` do; closing surplus
//!   connections at once would only make well-behaved clients retry in a loop.
//! - `--http-header-read-timeout`: hyper's own header timer (it needs a timer,
//!   which hyper-util's builder lacks by default). Hyper also runs it while an
//!   HTTP/1 connection waits for its next request, so it bounds keep-alive
//!   idleness too.
//! - `--http-idle-timeout`: a connection with no request in flight for this
//!   long is shut down gracefully (HTTP/2: GOAWAY). Hyper has no such timer
//!   for HTTP/2, where a client can otherwise keep a connection forever.
//! - HTTP/2 keep-alive pings drop peers that no longer answer.
//! - Request bodies: see [`super::body`] (a per-frame timeout and a minimum rate).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::{Service, ServiceExt};

/// What the server serves: the edge's HTTP and gRPC service, cloned per
/// connection.
pub trait HttpService:
    Service<
        http::Request<hyper::body::Incoming>,
        Response = Response,
        Error = std::convert::Infallible,
    > + Clone
    + Send
    + 'static
{
}

impl<S> HttpService for S where
    S: Service<
            http::Request<hyper::body::Incoming>,
            Response = Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static
{
}

/// A bound HTTP (and gRPC) listener, with TLS when a certificate was given.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// How long a client may take for its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings: sent after this long without a frame from the peer...
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// ...and the connection is closed if the ping is not answered within this.
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// How the server treats connections (the `--http-…` and `--max-connections` flags).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ConnLimits {
    /// Most HTTP (and gRPC) connections open at once on the HTTP port; past it
    /// the server stops accepting and new clients wait in the listen backlog.
    /// The server raises its open-file limit to the hard limit at start and
    /// warns when this does not fit under it.
    #[arg(long, env = "INFLOW_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// How long a client may take to send a request's headers; an HTTP/1
    /// connection waiting for its next request is closed after this too.
    #[arg(long = "http-header-read-timeout", id = "http_header_read_timeout", env = "INFLOW_HTTP_HEADER_READ_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// (gracefully; for HTTP/2 with GOAWAY).
    #[arg(long = "http-idle-timeout", id = "http_idle_timeout", env = "INFLOW_HTTP_IDLE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "60s")]
    pub idle_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves `service` on `listener` (HTTP/1.1 and HTTP/2, TLS if configured)
/// until `shutdown`, then gives open connections `grace` to finish.
pub async fn serve<S>(
    listener: Listener,
    service: S,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    S: HttpService,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // At the limit, stop accepting: clients wait in the listen backlog.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
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
        let service = service.clone();
        let builder = builder.clone();
        let tls = listener.tls.clone();
        let stopped = stopped.clone();
        let idle = limits.idle_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let served = match tls {
                None => serve_connection(&builder, stream, service, idle, stopped).await,
                Some(tls) => {
                    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream));
                    match handshake.await {
                        Ok(Ok(s)) => serve_connection(&builder, s, service, idle, stopped).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a slot until it ends: all slots back means all closed.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(?grace, "connections still open after the shutdown deadline");
    }
}

/// Serves one connection until it ends, shutting it down gracefully when it
/// has been idle for `idle` or the server stops.
async fn serve_connection<IO, S>(
    builder: &auto::Builder<TokioExecutor>,
    io: IO,
    service: S,
    idle: Duration,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: HttpService,
    S::Future: Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let service = Tracked {
        inner: service,
        activity: Arc::clone(&activity),
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => return served,
            () = activity.idle_for(idle), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = stopped.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Requests in flight on one connection, and since when it has had none.
struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `epoch` when the last request ended.
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// Resolves once no request has been in flight for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            if self.in_flight.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(idle).await;
                continue;
            }
            let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
            let deadline = self.epoch + since + idle;
            if Instant::now() >= deadline {
                // A request may have started between the two loads.
                if self.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                continue;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// One request in flight, until its response body is done (or dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = u64::try_from(self.0.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since_ms.fetch_max(now, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The service of one connection: counts its requests in flight.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> hyper::service::Service<http::Request<hyper::body::Incoming>> for Tracked<S>
where
    S: HttpService,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Self::Error>> + Send>>;

    fn call(&self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let in_flight = self.activity.start();
        let inner = self.inner.clone();
        Box::pin(async move {
            let response = inner.oneshot(request).await?;
            Ok(response.map(|body| {
                Body::new(TrackedBody {
                    inner: body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// A response body that keeps its request counted as in flight until it ends.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
