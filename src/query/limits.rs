//! What bounds a query besides its memory: how many run at once, and how long
//! one may run (PostgreSQL's `statement_timeout`, InfluxDB 1.x's
//! `query-timeout`).
//!
//! A query takes a [`Ticket`] before it plans ([`Admission::admit`]); excess
//! queries wait up to the queue timeout and are then refused as busy. The
//! ticket holds its slot until the answer is handed over or dropped, and its
//! deadline covers planning, scanning and the reader: [`Ticket::bounded`]
//! runs the result stream in a task of its own behind a channel of one batch,
//! so a reader that stops reading stops the query (backpressure, nothing
//! piles up), and at the deadline the query is dropped (cancelling
//! DataFusion's work) and the reader gets the timeout error, even if it never
//! polls again.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{FutureExt, Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

use super::QueryError;

/// The querier's flags of `inflow serve`, passed whole to
/// [`super::Querier::configured`].
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct QueryConfig {
    /// For queriers: how long to wait for an ingester's buffered rows before the
    /// query fails with UNAVAILABLE (never a partial answer).
    #[arg(long = "query-ingester-timeout", id = "query_ingester_timeout", env = "INFLOW_QUERY_INGESTER_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    pub ingester_timeout: Duration,
    /// For queriers: memory all running queries may hold between them; a query
    /// that needs more fails with RESOURCE_EXHAUSTED.
    #[arg(long = "query-memory-bytes", id = "query_memory_bytes", env = "INFLOW_QUERY_MEMORY_BYTES", default_value_t = 1 << 30)]
    pub memory_bytes: usize,
    /// For queriers: bytes of per-file summaries (series, last values) kept
    /// between queries, so `SHOW TAG VALUES`, `SHOW SERIES`, … and InfluxQL's
    /// `last()` by tag are answered without a scan; least recently used go
    /// first. 0 turns them off (every answer comes from a scan).
    #[arg(long = "query-cache-bytes", id = "query_cache_bytes", env = "INFLOW_QUERY_CACHE_BYTES", default_value_t = super::summary::DEFAULT_CACHE_BYTES)]
    pub cache_bytes: usize,
    #[command(flatten)]
    pub limits: QueryLimits,
}

/// The limits every query is held to, each set by a `--query-…` flag.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct QueryLimits {
    /// For queriers: queries running at once; more wait up to
    /// `--query-queue-timeout`, then get 503 with `Retry-After`.
    #[arg(
        long = "max-concurrent-queries",
        env = "INFLOW_MAX_CONCURRENT_QUERIES",
        default_value_t = 16
    )]
    pub max_concurrent: usize,
    /// For queriers: how long a query waits for one of the
    /// `--max-concurrent-queries` slots.
    #[arg(long = "query-queue-timeout", id = "query_queue_timeout", env = "INFLOW_QUERY_QUEUE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "30s")]
    pub queue_timeout: Duration,
    /// For queriers: how long one query may run, from admission to the last
    /// row handed to its reader; past it the query is cancelled and answered
    /// with a timeout error (HTTP 504, gRPC DEADLINE_EXCEEDED).
    #[arg(long = "query-timeout", id = "query_timeout", env = "INFLOW_QUERY_TIMEOUT", value_parser = humantime::parse_duration, default_value = "5m")]
    pub timeout: Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_concurrent: 16,
            queue_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(300),
        }
    }
}

/// Hands out query slots.
#[derive(Debug)]
pub struct Admission {
    limits: QueryLimits,
    slots: Arc<Semaphore>,
}

impl Admission {
    pub fn new(limits: QueryLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            limits,
        }
    }

    pub fn limits(&self) -> QueryLimits {
        self.limits
    }

    /// Waits for a slot, at most the queue timeout; the deadline starts now.
    pub async fn admit(&self) -> Result<Ticket, QueryError> {
        let slot = Arc::clone(&self.slots).acquire_owned();
        match tokio::time::timeout(self.limits.queue_timeout, slot).await {
            Ok(Ok(permit)) => Ok(Ticket {
                _permit: permit,
                deadline: Instant::now() + self.limits.timeout,
                timeout: self.limits.timeout,
            }),
            Ok(Err(_)) | Err(_) => Err(QueryError::Busy(format!(
                "{} queries are running and none finished within {:?} \
                 (--max-concurrent-queries); retry later",
                self.limits.max_concurrent, self.limits.queue_timeout
            ))),
        }
    }
}

/// One admitted query: its slot and its deadline.
#[derive(Debug)]
pub struct Ticket {
    /// Held, not read: the slot is free again when the ticket is dropped.
    _permit: OwnedSemaphorePermit,
    deadline: Instant,
    timeout: Duration,
}

impl Ticket {
    /// Runs `work` (planning, a statement) within the deadline.
    pub async fn within<T, E>(&self, work: impl Future<Output = Result<T, E>>) -> Result<T, E>
    where
        E: From<QueryError>,
    {
        match tokio::time::timeout_at(self.deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(timed_out(self.timeout).into()),
        }
    }

    /// A channel of one item from the query's producer to its reader; the
    /// producer holds the slot. `wrap` turns the timeout into the reader's
    /// error type.
    pub fn handover<T, E>(self, wrap: fn(QueryError) -> E) -> (Producer<T, E>, Handover<T, E>) {
        let (tx, rx) = mpsc::channel(1);
        let failure = Arc::new(Mutex::new(None));
        let producer = Producer {
            tx,
            failure: Arc::clone(&failure),
            ticket: self,
        };
        let handover = Handover {
            rx,
            failure,
            wrap,
            done: false,
        };
        (producer, handover)
    }

    /// The result stream, run in a task of its own within the deadline; the
    /// slot is held until that task ends. See the module doc.
    pub fn bounded(self, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
        let schema = stream.schema();
        let (producer, handover) =
            self.handover(|e: QueryError| DataFusionError::External(Box::new(e)));
        tokio::spawn(async move {
            let mut stream = stream;
            loop {
                let item = match producer.within(stream.next().map(Ok)).await {
                    Ok(Some(item)) => item,
                    Ok(None) => break,
                    Err(e) => {
                        producer.fail(e);
                        break;
                    }
                };
                if !producer.send(item).await {
                    break;
                }
            }
            // The stream first (it holds DataFusion's work), then the slot.
            drop(stream);
            drop(producer);
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, handover))
    }
}

/// The producing side of [`Ticket::handover`].
pub struct Producer<T, E> {
    tx: mpsc::Sender<Result<T, E>>,
    failure: Arc<Mutex<Option<QueryError>>>,
    ticket: Ticket,
}

impl<T, E> Producer<T, E> {
    /// Runs `work` within the query's deadline.
    pub async fn within<R>(
        &self,
        work: impl Future<Output = Result<R, QueryError>>,
    ) -> Result<R, QueryError> {
        self.ticket.within(work).await
    }

    /// Hands `item` over once the reader has taken the one before, within the
    /// deadline. False when the producer should stop: the item was an error,
    /// the reader is gone, or the deadline passed (the reader then ends with
    /// the timeout error).
    pub async fn send(&self, item: Result<T, E>) -> bool {
        let last = item.is_err();
        match tokio::time::timeout_at(self.ticket.deadline, self.tx.send(item)).await {
            Ok(Ok(())) => !last,
            Ok(Err(_)) => false,
            Err(_) => {
                self.fail(timed_out(self.ticket.timeout));
                false
            }
        }
    }

    /// Ends the reader's stream with `error` after what it was handed.
    pub fn fail(&self, error: QueryError) {
        *self.failure.lock() = Some(error);
    }
}

/// The error of a query past its deadline.
pub fn timed_out(timeout: Duration) -> QueryError {
    QueryError::TimedOut(format!(
        "query-timeout limit exceeded: the query ran longer than {} (--query-timeout)",
        humantime::format_duration(timeout)
    ))
}

/// The reader's side of [`Ticket::handover`]: the items, then the error that
/// cut the query if one did (so a cut answer never looks complete).
pub struct Handover<T, E> {
    rx: mpsc::Receiver<Result<T, E>>,
    failure: Arc<Mutex<Option<QueryError>>>,
    wrap: fn(QueryError) -> E,
    done: bool,
}

impl<T, E> Stream for Handover<T, E> {
    type Item = Result<T, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(None) => {
                self.done = true;
                let failure = self.failure.lock().take();
                Poll::Ready(failure.map(|e| Err((self.wrap)(e))))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    fn limits(max: usize, queue_ms: u64, timeout_ms: u64) -> QueryLimits {
        QueryLimits {
            max_concurrent: max,
            queue_timeout: Duration::from_millis(queue_ms),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    /// An endless stream of one-row batches, counting what was produced.
    fn endless(produced: Arc<std::sync::atomic::AtomicUsize>) -> SendableRecordBatchStream {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let s = Arc::clone(&schema);
        let batches = futures::stream::iter(0..).map(move |i| {
            produced.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(
                RecordBatch::try_new(Arc::clone(&s), vec![Arc::new(Int64Array::from(vec![i]))])
                    .unwrap(),
            )
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, batches))
    }

    #[tokio::test]
    async fn excess_queries_wait_then_are_refused_and_slots_come_back() {
        let admission = Admission::new(limits(1, 50, 60_000));
        let first = admission.admit().await.unwrap();
        let second = admission.admit().await;
        assert!(
            matches!(&second, Err(QueryError::Busy(m)) if m.contains("--max-concurrent-queries")),
            "{second:?}"
        );
        // A finished (dropped) answer frees its slot.
        let produced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut stream = first.bounded(endless(produced));
        assert!(stream.next().await.unwrap().is_ok());
        drop(stream);
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(t) = admission.admit().await {
                    return t;
                }
            }
        })
        .await
        .expect("the slot came back");
    }

    #[tokio::test]
    async fn a_reader_that_stops_reading_stops_the_query_and_then_times_out() {
        let admission = Admission::new(limits(1, 10, 300));
        let produced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut stream = admission
            .admit()
            .await
            .unwrap()
            .bounded(endless(Arc::clone(&produced)));
        assert!(stream.next().await.unwrap().is_ok());
        tokio::time::sleep(Duration::from_millis(100)).await;
        // One batch handed over, one in the channel, one waiting to be sent.
        let held = produced.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            held <= 4,
            "the query ran ahead of its reader: {held} batches"
        );
        // Past the deadline the slot is free although the reader never polled.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(admission.admit().await.is_ok());
        // The reader then gets what was queued, then the timeout, then the end.
        let mut last = None;
        while let Some(item) = stream.next().await {
            last = Some(item);
        }
        let error = last.unwrap().unwrap_err();
        assert!(
            error.to_string().contains("query-timeout limit exceeded"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn planning_past_the_deadline_is_cut() {
        let admission = Admission::new(limits(1, 10, 50));
        let ticket = admission.admit().await.unwrap();
        let slow = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, QueryError>(())
        };
        let started = std::time::Instant::now();
        assert!(matches!(
            ticket.within(slow).await,
            Err(QueryError::TimedOut(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
