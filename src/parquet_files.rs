//! Parquet as inflow writes and reads it on the object store: the writer
//! properties that snapshots and compaction share, and a reader of a
//! registered file by byte ranges.
//!
//! Below both the ingester (which writes snapshots) and the compactor and
//! querier (which read files and write merged ones), so that none of them
//! imports another for these.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;

use crate::catalog::ParquetFile;

/// Rows per Parquet row group, the unit a query prunes by statistics.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Rows per data page at most: a day of one series at 10 s is 8,640 rows, so
/// a query on one series reads about two pages of each column.
pub const PAGE_ROWS: usize = 8 * 1024;

/// How snapshots and compaction write Parquet. Rows are sorted by tags, so a
/// row group, and within it a page, covers a narrow range of series: their
/// min/max statistics (row groups in the footer, pages in the page index,
/// which is written by default) let a query on a few series skip the others.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .build()
}

/// A Parquet file on the object store, read by byte ranges. Its size comes
/// from the catalog, so the footer is one bounded range request.
pub struct StoreReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl StoreReader {
    pub fn new(store: Arc<dyn ObjectStore>, file: &ParquetFile) -> Self {
        Self {
            store,
            path: file.path.as_str().into(),
            size: file.size_bytes,
        }
    }
}

fn parquet_error(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.store
            .get_range(&self.path, range)
            .map_err(parquet_error)
            .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(parquet_error)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let size = self.size;
        async move {
            let metadata = ParquetMetaDataReader::new()
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
