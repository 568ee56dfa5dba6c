//! An [`ObjectStore`] that counts every call it passes on, by operation and
//! outcome, with its time (`inflow_object_store_*`). [`super::Store`] wraps
//! its store in it, so the catalog, the WAL, the snapshots, the compactor and
//! DataFusion's Parquet reads (through [`super::Store::object_store`]) are
//! all counted, whoever calls.

use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

use crate::metrics::{StoreOutcome, metrics};

/// See the module documentation.
#[derive(Debug)]
pub struct Instrumented {
    inner: Arc<dyn ObjectStore>,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }
}

impl fmt::Display for Instrumented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

/// The outcome label of a call's result.
pub fn outcome_of<T>(result: &Result<T>) -> StoreOutcome {
    match result {
        Ok(_) => StoreOutcome::Ok,
        Err(object_store::Error::NotFound { .. }) => StoreOutcome::NotFound,
        Err(object_store::Error::AlreadyExists { .. }) => StoreOutcome::AlreadyExists,
        Err(_) => StoreOutcome::Error,
    }
}

/// Runs one call and counts it.
async fn counted<T>(operation: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
    let started = Instant::now();
    let result = call.await;
    metrics().object_store_call(operation, outcome_of(&result), started.elapsed());
    result
}

#[async_trait]
impl ObjectStore for Instrumented {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        counted("put", self.inner.put_opts(location, payload, opts)).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        counted(
            "put_multipart",
            self.inner.put_multipart_opts(location, opts),
        )
        .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        // `head` and `get_range` of `ObjectStoreExt` come here too.
        let operation = match (options.head, &options.range) {
            (true, _) => "head",
            (false, Some(_)) => "get_range",
            (false, None) => "get",
        };
        counted(operation, self.inner.get_opts(location, options)).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        counted("get_ranges", self.inner.get_ranges(location, ranges)).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // `ObjectStoreExt::delete` comes here too, with one location.
        Box::pin(CountedStream::new(
            "delete",
            Count::EachItem,
            self.inner.delete_stream(locations),
        ))
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        Box::pin(CountedStream::new(
            "list",
            Count::Whole,
            self.inner.list(prefix),
        ))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let listed = self.inner.list_with_offset(prefix, offset);
        Box::pin(CountedStream::new("list", Count::Whole, listed))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        counted("list", self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        counted("copy", self.inner.copy_opts(from, to, options)).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        counted("rename", self.inner.rename_opts(from, to, options)).await
    }
}

/// How a streamed call is counted.
#[derive(Clone, Copy)]
enum Count {
    /// Once when it ends (or is dropped), as an error if any item failed
    /// with something other than not found: a listing is one call.
    Whole,
    /// Each item as a call of its own, timed from the item before: a delete
    /// of many objects is that many deletes (S3 sends them 1,000 a request).
    EachItem,
}

struct CountedStream<T> {
    operation: &'static str,
    count: Count,
    inner: BoxStream<'static, Result<T>>,
    started: Instant,
    outcome: StoreOutcome,
    counted: bool,
}

impl<T> CountedStream<T> {
    fn new(operation: &'static str, count: Count, inner: BoxStream<'static, Result<T>>) -> Self {
        Self {
            operation,
            count,
            inner,
            started: Instant::now(),
            outcome: StoreOutcome::Ok,
            // Nothing is left to count at the end of a stream counted by item.
            counted: matches!(count, Count::EachItem),
        }
    }

    fn count(&mut self) {
        if !std::mem::replace(&mut self.counted, true) {
            let took = self.started.elapsed();
            metrics().object_store_call(self.operation, self.outcome, took);
        }
    }
}

impl<T> Stream for CountedStream<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let next = this.inner.as_mut().poll_next(cx);
        match (&next, this.count) {
            (Poll::Ready(Some(item)), Count::EachItem) => {
                let took = std::mem::replace(&mut this.started, Instant::now()).elapsed();
                metrics().object_store_call(this.operation, outcome_of(item), took);
            }
            (Poll::Ready(Some(item)), Count::Whole) => match outcome_of(item) {
                StoreOutcome::Ok | StoreOutcome::NotFound => {}
                bad => this.outcome = bad,
            },
            (Poll::Ready(None), _) => this.count(),
            (Poll::Pending, _) => {}
        }
        next
    }
}

impl<T> Drop for CountedStream<T> {
    fn drop(&mut self) {
        self.count();
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutMode};

    use super::*;

    fn count(operation: &str, outcome: &str) -> u64 {
        metrics()
            .object_store_requests
            .with_label_values(&[operation, outcome])
            .get()
    }

    /// Counters are process-wide and tests run in parallel: each assertion
    /// is on a difference, and only this test uses these calls on
    /// `Instrumented`.
    #[tokio::test]
    async fn every_call_is_counted_by_operation_and_outcome() {
        let store = Instrumented::new(Arc::new(InMemory::new()));
        let path = Path::from("a/b");
        let calls = [
            ("put", "ok"),
            ("put", "already_exists"),
            ("get", "ok"),
            ("head", "not_found"),
            ("list", "ok"),
            ("delete", "ok"),
        ];
        let before = calls.map(|(operation, outcome)| count(operation, outcome));
        store.put(&path, Bytes::from("x").into()).await.unwrap();
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let taken = store.put_opts(&path, Bytes::from("y").into(), create).await;
        assert!(matches!(
            taken,
            Err(object_store::Error::AlreadyExists { .. })
        ));
        store.get(&path).await.unwrap();
        store.head(&Path::from("missing")).await.unwrap_err();
        let listed: Vec<_> = store
            .list(Some(&Path::from("a")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        store.delete(&path).await.unwrap();
        for ((operation, outcome), b) in calls.into_iter().zip(before) {
            let a = count(operation, outcome);
            assert!(a > b, "{operation} {outcome}: {b} -> {a}");
        }
    }
}
