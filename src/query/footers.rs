//! Parquet readers whose cached footer keeps the page index.
//!
//! DataFusion's `CachedParquetFileReaderFactory` caches each file's footer,
//! but its opener first asks for the footer *without* the page index, so
//! that is what the cache holds; the opener then loads and parses the page
//! index again for every file of every query that prunes pages. On a day's
//! compacted file (43 row groups, 15 columns) that reparse was most of a
//! one-host query's time (`parse_offset_index` on top of its profile).
//! These readers ask for the footer with the page index, so the cache keeps
//! it and the opener finds it loaded. The cache's bound
//! (`RuntimeEnv`'s file metadata cache) still holds.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::ObjectStore;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};

/// DataFusion's cached reader factory, asking for footers with their page
/// index.
pub struct IndexedFooters {
    inner: CachedParquetFileReaderFactory,
}

impl IndexedFooters {
    pub fn new(store: Arc<dyn ObjectStore>, cache: Arc<FileMetadataCache>) -> Self {
        Self {
            inner: CachedParquetFileReaderFactory::new(store, cache),
        }
    }
}

impl fmt::Debug for IndexedFooters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexedFooters").finish_non_exhaustive()
    }
}

impl ParquetFileReaderFactory for IndexedFooters {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::error::Result<Box<dyn AsyncFileReader + Send>> {
        let inner = self
            .inner
            .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(Box::new(IndexedReader { inner }))
    }
}

/// A reader that reads like DataFusion's but always wants the page index
/// with the footer.
struct IndexedReader {
    inner: Box<dyn AsyncFileReader + Send>,
}

impl AsyncFileReader for IndexedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.inner.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let options = options
            .cloned()
            .unwrap_or_default()
            .with_page_index_policy(PageIndexPolicy::Optional);
        async move { self.inner.get_metadata(Some(&options)).await }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use datafusion::datasource::physical_plan::parquet::metadata::CachedParquetMetaData;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStoreExt, PutPayload};
    use parquet::arrow::ArrowWriter;

    /// A file of 4 pages, with the page index parquet writes by default.
    async fn file(store: &Arc<dyn ObjectStore>) -> PartitionedFile {
        let batch = RecordBatch::try_from_iter([(
            "v",
            Arc::new(Int64Array::from_iter_values(0..4096)) as _,
        )])
        .unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_data_page_row_count_limit(1024)
            .set_write_batch_size(1024)
            .build();
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let size = bytes.len() as u64;
        store
            .put(&Path::from("f.parquet"), PutPayload::from(bytes))
            .await
            .unwrap();
        PartitionedFile::new("f.parquet", size)
    }

    /// What the footer cache holds for `f.parquet` after one reader asked
    /// for the footer without the page index, as DataFusion's opener does.
    async fn cached_after_a_skip(
        factory: &dyn ParquetFileReaderFactory,
        file: PartitionedFile,
        cache: &FileMetadataCache,
    ) -> Arc<ParquetMetaData> {
        let metrics = ExecutionPlanMetricsSet::new();
        let mut reader = factory.create_reader(0, file, None, &metrics).unwrap();
        let skip = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Skip);
        reader.get_metadata(Some(&skip)).await.unwrap();
        let entry = cache
            .get(&Path::from("f.parquet"))
            .expect("a cached footer");
        let cached = entry
            .file_metadata
            .as_any()
            .downcast_ref::<CachedParquetMetaData>()
            .expect("a Parquet footer");
        Arc::clone(cached.parquet_metadata())
    }

    /// The footer is cached with its page index, so the next query's opener
    /// does not load and parse it again; DataFusion's own factory caches the
    /// footer without it (why this module exists).
    #[tokio::test]
    async fn the_cached_footer_keeps_the_page_index() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let file = file(&store).await;

        let runtime = RuntimeEnvBuilder::new().build_arc().unwrap();
        let cache = runtime.cache_manager.get_file_metadata_cache();
        let ours = IndexedFooters::new(Arc::clone(&store), Arc::clone(&cache));
        let cached = cached_after_a_skip(&ours, file.clone(), cache.as_ref()).await;
        let offsets = cached.offset_index().expect("the offset index, cached");
        assert_eq!(offsets[0][0].page_locations().len(), 4);
        assert!(cached.column_index().is_some());

        let runtime = RuntimeEnvBuilder::new().build_arc().unwrap();
        let cache = runtime.cache_manager.get_file_metadata_cache();
        let theirs = CachedParquetFileReaderFactory::new(Arc::clone(&store), Arc::clone(&cache));
        let cached = cached_after_a_skip(&theirs, file, cache.as_ref()).await;
        assert!(cached.offset_index().is_none());
    }
}
