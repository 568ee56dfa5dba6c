//! Reading a request body within limits, and inflating gzip within limits.
//!
//! `Content-Length` is checked first but never trusted for allocation: the body is
//! counted frame by frame. Gzip is inflated through a reader capped at the limit
//! plus one byte, which catches both bombs and (via the decoder) truncation.

use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, header};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::edge::error::Error;

/// Every limit a write is held to, each set by a `--max-…` flag.
/// How request bodies are read: the body flags of `inflow serve`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Limits {
    /// Largest request body accepted, in bytes (413 above it).
    #[arg(long, env = "INFLOW_MAX_REQUEST_BYTES", default_value_t = 10 << 20)]
    pub max_request_bytes: usize,
    /// Largest body after gzip inflation, in bytes (413 above it).
    #[arg(long, env = "INFLOW_MAX_DECOMPRESSED_BYTES", default_value_t = 10 << 20)]
    pub max_decompressed_bytes: usize,
    /// Longest gap between two pieces of a request body (408 and the connection
    /// closed past it); also the grace before --http-body-min-rate applies.
    #[arg(long = "http-body-read-timeout", id = "http_body_read_timeout", env = "INFLOW_HTTP_BODY_READ_TIMEOUT", value_parser = humantime::parse_duration, default_value = "30s")]
    pub body_read_timeout: Duration,
    /// Slowest average rate, in bytes a second, a write's body may arrive at
    /// once --http-body-read-timeout has passed (408 below it). 0: no minimum.
    #[arg(
        long = "http-body-min-rate",
        env = "INFLOW_HTTP_BODY_MIN_RATE",
        default_value_t = 1024
    )]
    pub body_min_rate: usize,
    /// Most bytes of write request bodies the edge holds at once, from their
    /// first byte until their write is done; a body that would pass it gets
    /// 503 + Retry-After at once. Bounds the memory of slow uploads.
    #[arg(long, env = "INFLOW_MAX_BUFFERED_BODY_BYTES", default_value_t = 512 << 20)]
    pub max_buffered_body_bytes: usize,
}

impl Limits {
    /// A budget of `max_buffered_body_bytes` permits (at most what a
    /// semaphore holds), shared by the bodies one process reads.
    pub fn budget(&self) -> Arc<Semaphore> {
        let permits = self.max_buffered_body_bytes.min(Semaphore::MAX_PERMITS);
        Arc::new(Semaphore::new(permits))
    }

    /// When the next piece of a body that started at `start` and has brought
    /// `received` bytes so far must have arrived, for the minimum rate.
    fn rate_deadline(
        &self,
        start: tokio::time::Instant,
        received: usize,
    ) -> Option<tokio::time::Instant> {
        if self.body_min_rate == 0 {
            return None;
        }
        let earned = Duration::from_secs_f64(received as f64 / self.body_min_rate as f64);
        Some(start + self.body_read_timeout + earned)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

/// The body's `Content-Encoding`: `gzip`, `identity` or none; anything else is 415.
pub fn content_encoding(headers: &HeaderMap) -> Result<Encoding, Error> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let text = value.to_str().map(str::trim).unwrap_or_default();
    if text.eq_ignore_ascii_case("gzip") || text.eq_ignore_ascii_case("x-gzip") {
        Ok(Encoding::Gzip)
    } else if text.is_empty() || text.eq_ignore_ascii_case("identity") {
        Ok(Encoding::Identity)
    } else {
        Err(Error::UnsupportedEncoding(
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ))
    }
}

/// The body reader of the endpoints that are not writes (SQL and InfluxQL
/// queries, administration): the same limits, timeouts and byte budget as
/// writes, so a client gets the JSON 413/408/503 in the endpoint's shape,
/// never a plain-text rejection, and slow or huge bodies are bounded alike.
#[derive(Debug, Clone)]
pub struct BodyReader {
    limits: Limits,
    budget: Arc<Semaphore>,
}

impl BodyReader {
    pub fn new(limits: Limits, budget: Arc<Semaphore>) -> Self {
        Self { limits, budget }
    }

    /// The whole body, and its share of the budget (held while it lives).
    pub async fn read(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Bytes, SemaphorePermit<'_>), Error> {
        read_body(headers, body, &self.limits, &self.budget).await
    }
}

/// Reads the whole body, refusing it as soon as it passes the limit, or with
/// 408 when it stops arriving (a gap longer than `body_read_timeout`, enforced
/// by the [`StallTimeout`] the edge puts around every HTTP body) or arrives slower
/// than `body_min_rate`.
///
/// Each byte received takes a permit of `budget` (`max_buffered_body_bytes`),
/// returned with the body: the caller holds it until the write is done. When
/// the budget is spent the body is refused at once with 503 rather than wait,
/// so the bodies of many slow clients cannot exhaust memory. The 413, 408 and
/// that 503 close the connection (see `Error::into_response`), since the rest
/// of the body is unread.
pub async fn read_body<'a>(
    headers: &HeaderMap,
    body: Body,
    limits: &Limits,
    budget: &'a Semaphore,
) -> Result<(Bytes, SemaphorePermit<'a>), Error> {
    let full = || Error::BodyBufferFull {
        limit: limits.max_buffered_body_bytes,
    };
    let mut held = budget.try_acquire_many(0).map_err(|_| full())?;
    let limit = limits.max_request_bytes;
    let too_large = || Error::BodyTooLarge { limit };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        // A client that asked `Expect: 100-continue` has not sent the body yet; for
        // the others, read a bounded amount so the 413 is not lost to a reset.
        let expects = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !expects {
            drain(body, limit).await;
        }
        return Err(too_large());
    }
    // Content-Length is a claim: the buffer grows with what arrives.
    let mut buf = BytesMut::with_capacity(declared.map_or(8 << 10, |n| n as usize).min(1 << 20));
    let mut body = body;
    let start = tokio::time::Instant::now();
    loop {
        let next = body.frame();
        let frame = match limits.rate_deadline(start, buf.len()) {
            None => next.await,
            Some(deadline) => match tokio::time::timeout_at(deadline, next).await {
                Ok(frame) => frame,
                Err(_) => {
                    return Err(Error::BodyTimeout(format!(
                        "it arrived slower than {} bytes a second (--http-body-min-rate)",
                        limits.body_min_rate
                    )));
                }
            },
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| body_error(e, limits))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                drain(body, limit).await;
                return Err(too_large());
            }
            let n = u32::try_from(data.len()).map_err(|_| too_large())?;
            held.merge(budget.try_acquire_many(n).map_err(|_| full())?);
            buf.extend_from_slice(&data);
        }
    }
    Ok((buf.freeze(), held))
}

/// A body that failed to arrive: a 408 when it stalled, else a 400.
fn body_error(e: axum::Error, limits: &Limits) -> Error {
    let inner = e.into_inner();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
    while let Some(e) = source {
        if e.is::<Stalled>() {
            return Error::BodyTimeout(format!(
                "no data for {:?} (--http-body-read-timeout)",
                limits.body_read_timeout
            ));
        }
        source = e.source();
    }
    Error::BodyRead(inner.to_string())
}

/// A request body that fails with [`Stalled`] when no frame arrives for
/// `timeout` while it is being read (the timer runs only while the reader
/// waits, so a handler that reads late is not penalised). tower-http's
/// `TimeoutBody` does the same; that feature would rebuild the object-store
/// stack, which shares tower-http.
pub struct StallTimeout<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> StallTimeout<B> {
    pub fn new(timeout: Duration, inner: B) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
        }
    }
}

/// No piece of a request body arrived within the body read timeout.
#[derive(Debug, thiserror::Error)]
#[error("no request body data within the read timeout")]
pub struct Stalled;

impl<B> HttpBody for StallTimeout<B>
where
    B: HttpBody + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.sleep = None;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let timeout = this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Stalled)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Discards up to `budget` more bytes (or 2 s) of a body we refused.
async fn drain(mut body: Body, budget: usize) {
    let mut left = budget;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            if n >= left {
                break;
            }
            left -= n;
        }
    })
    .await;
}

/// Inflates a gzip body (also multi-member), at most `limit` bytes of output.
pub fn gunzip(compressed: &[u8], limit: usize) -> Result<Bytes, Error> {
    let decoder = flate2::read::MultiGzDecoder::new(compressed);
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    decoder
        .take((limit as u64).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Error::InvalidGzip(e.to_string()))?;
    if out.len() > limit {
        return Err(Error::DecompressedTooLarge { limit });
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use futures::StreamExt;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_handles_members_bombs_and_truncation() {
        let mut two = gz(b"a,x=1 f=1\n");
        two.extend(gz(b"b,x=1 f=2\n"));
        assert_eq!(&gunzip(&two, 100).unwrap()[..], b"a,x=1 f=1\nb,x=1 f=2\n");

        let bomb = gz(&vec![b'a'; 1 << 20]);
        assert!(matches!(
            gunzip(&bomb, 1000),
            Err(Error::DecompressedTooLarge { limit: 1000 })
        ));
        assert_eq!(gunzip(&bomb, 1 << 20).unwrap().len(), 1 << 20);
        assert_eq!(gunzip(&bomb, usize::MAX).unwrap().len(), 1 << 20);

        let whole = gz(b"home,room=kitchen temp=72 1641024000\n");
        assert!(matches!(
            gunzip(&whole[..whole.len() - 6], 1000),
            Err(Error::InvalidGzip(_))
        ));
        assert!(matches!(
            gunzip(b"not gzip at all", 1000),
            Err(Error::InvalidGzip(_))
        ));
    }

    fn limits(read_timeout_ms: u64, min_rate: usize) -> Limits {
        Limits {
            max_request_bytes: 1 << 20,
            max_decompressed_bytes: 1 << 20,
            body_read_timeout: Duration::from_millis(read_timeout_ms),
            body_min_rate: min_rate,
            max_buffered_body_bytes: 1 << 30,
        }
    }

    fn budget() -> Semaphore {
        Semaphore::new(1 << 30)
    }

    /// A body of `chunks` pieces of `size` bytes, one every `every`, then
    /// (when `stall`) no end; wrapped as the edge wraps every HTTP body.
    fn paced(chunks: usize, size: usize, every: Duration, stall: bool, gap: Duration) -> Body {
        let pieces = futures::stream::iter(0..chunks).then(move |_| async move {
            tokio::time::sleep(every).await;
            Ok::<_, std::convert::Infallible>(Bytes::from(vec![b'a'; size]))
        });
        let stream: futures::stream::BoxStream<'static, _> = if stall {
            Box::pin(pieces.chain(futures::stream::pending()))
        } else {
            Box::pin(pieces)
        };
        Body::new(StallTimeout::new(gap, Body::from_stream(stream)))
    }

    #[tokio::test]
    async fn a_body_that_stops_is_a_timeout_naming_the_flag() {
        let l = limits(200, 0);
        let body = paced(2, 10, Duration::from_millis(10), true, l.body_read_timeout);
        let e = read_body(&HeaderMap::new(), body, &l, &budget())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::BodyTimeout(m) if m.contains("--http-body-read-timeout")),
            "{e}"
        );
        assert_eq!(e.status(), http::StatusCode::REQUEST_TIMEOUT);
    }

    #[tokio::test]
    async fn a_trickle_below_the_minimum_rate_is_cut_and_a_steady_body_is_read() {
        // 10 bytes every 20 ms: 500 B/s, under a minimum of 2,000 B/s once the
        // 100 ms grace has passed; no single gap is long.
        let l = limits(100, 2_000);
        let body = paced(
            100,
            10,
            Duration::from_millis(20),
            false,
            l.body_read_timeout,
        );
        let e = read_body(&HeaderMap::new(), body, &l, &budget())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::BodyTimeout(m) if m.contains("--http-body-min-rate")),
            "{e}"
        );
        // 1,000 bytes every 20 ms (50 kB/s) passes.
        let body = paced(
            20,
            1_000,
            Duration::from_millis(20),
            false,
            l.body_read_timeout,
        );
        assert_eq!(
            read_body(&HeaderMap::new(), body, &l, &budget())
                .await
                .unwrap()
                .0
                .len(),
            20_000
        );
    }

    #[tokio::test]
    async fn bodies_hold_their_bytes_of_the_budget_until_done() {
        let l = limits(1_000, 0);
        let budget = Semaphore::new(25);
        let body = || paced(2, 10, Duration::ZERO, false, l.body_read_timeout);
        let (first, held) = read_body(&HeaderMap::new(), body(), &l, &budget)
            .await
            .unwrap();
        assert_eq!(
            (first.len(), held.num_permits(), budget.available_permits()),
            (20, 20, 5)
        );
        let e = read_body(&HeaderMap::new(), body(), &l, &budget)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::BodyBufferFull { .. }), "{e}");
        assert_eq!(
            budget.available_permits(),
            5,
            "a refused body holds nothing"
        );
        drop(held);
        let (second, _held) = read_body(&HeaderMap::new(), body(), &l, &budget)
            .await
            .unwrap();
        assert_eq!(second.len(), 20);
    }

    #[test]
    fn encodings() {
        let mut h = HeaderMap::new();
        assert_eq!(content_encoding(&h).unwrap(), Encoding::Identity);
        h.insert(header::CONTENT_ENCODING, "GZIP".parse().unwrap());
        assert_eq!(content_encoding(&h).unwrap(), Encoding::Gzip);
        h.insert(header::CONTENT_ENCODING, "identity".parse().unwrap());
        assert_eq!(content_encoding(&h).unwrap(), Encoding::Identity);
        h.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert!(matches!(content_encoding(&h), Err(Error::UnsupportedEncoding(e)) if e == "br"));
    }
}
