//! One catalog table as DataFusion sees it: its rows are the Parquet files the
//! catalog registers plus the ingesters' buffered rows, one row per point.
//!
//! A scan gathers and deduplicates the rows that may match, then hands them to
//! a `MemTable`. Files are pruned before they are read: by the catalog's time
//! range, then by their row groups' statistics (tags and time) against the
//! query's key predicates, fetching only the footer and the column chunks of
//! the row groups kept. What the scan holds is counted against the query
//! memory pool, so a query too large fails with `ResourcesExhausted` instead
//! of taking the process down, and stays counted until the last stream reading
//! the folded rows is dropped ([`Held`]). It is not streaming: the rows that survive
//! pruning are in memory at once. Where this should go next: merge per series
//! across the sources (files are sorted by tags and time already).

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, UInt64Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, UInt64Type};
use bytes::Bytes;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::pruning::{PruningPredicate, PruningPredicateBuilder};
use datafusion::physical_plan::ExecutionPlan;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryFutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader, RowGroupMetaData};

use super::QueryError;
use super::held::Held;
use super::ingesters::BufferSource;
use crate::catalog::{Catalog, Database, ParquetFile, Table, table_columns};
use crate::dedup::dedup;
use crate::ingester::read::{TimeRange, filter_time};
use crate::schema::{ColumnType, SEQUENCE_COLUMN, TIME_COLUMN, project};
use crate::store::Store;

/// Files read at once per scan.
const PARALLEL_FILE_READS: usize = 8;

/// Where a table's rows come from.
#[derive(Debug)]
pub struct Sources {
    pub catalog: Arc<Catalog>,
    pub store: Store,
    pub ingesters: Arc<dyn BufferSource>,
}

/// The schema users see: tags as strings, fields with their types, `time` as a
/// timestamp without time zone (what InfluxDB 3 returns), in catalog order.
pub fn query_schema(table: &Table) -> SchemaRef {
    let fields: Vec<Field> = table_columns(table)
        .map(|(name, ty)| match ty {
            ColumnType::Tag => Field::new(name, DataType::Utf8, true),
            ColumnType::Time => {
                Field::new(name, DataType::Timestamp(TimeUnit::Nanosecond, None), false)
            }
            field => Field::new(name, field.arrow_type(), true),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

#[derive(Debug)]
pub struct InflowTable {
    database: Arc<Database>,
    table: Arc<Table>,
    schema: SchemaRef,
    sources: Arc<Sources>,
}

impl InflowTable {
    pub fn new(database: Arc<Database>, table: Arc<Table>, sources: &Arc<Sources>) -> Self {
        Self {
            schema: query_schema(&table),
            database,
            table,
            sources: Arc::clone(sources),
        }
    }

    /// The table's points in `range`: ingesters first, then the catalog's files.
    /// Only the key and the `scan.columns` are read and folded (a field does
    /// not affect another field's value); the others come back null.
    async fn gather(
        &self,
        range: TimeRange,
        scan: ScanColumns,
        memory: Arc<MemoryReservation>,
    ) -> Result<RecordBatch, QueryError> {
        let buffered = self
            .sources
            .ingesters
            .fetch(self.database.key(), &self.table.name, range)
            .await?;
        count(&memory, &buffered)?;
        self.sources.catalog.refresh_file_logs().await?;
        let files = self.files(range);
        let store = self.sources.store.object_store();
        let ScanColumns {
            reduced,
            key,
            predicate,
            pruning,
        } = scan;
        let names: Arc<Vec<String>> = Arc::new(
            reduced
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .chain([SEQUENCE_COLUMN.to_string()])
                .collect(),
        );
        let persisted: Vec<Vec<RecordBatch>> = futures::stream::iter(files)
            .map(|file| {
                let read = FileRead {
                    store: Arc::clone(&store),
                    range,
                    columns: Arc::clone(&names),
                    pruning: pruning.clone(),
                    memory: Arc::clone(&memory),
                };
                read.batches(file)
            })
            .buffer_unordered(PARALLEL_FILE_READS)
            .try_collect()
            .await?;
        let full = Arc::clone(&self.schema);
        tokio::task::spawn_blocking(move || {
            let all = persisted.into_iter().flatten().chain(buffered);
            let points = points(&reduced, &key, predicate.as_deref(), all.collect(), &memory)?;
            project(&points, &full).map_err(internal)
        })
        .await
        .map_err(|e| QueryError::Internal(e.to_string()))?
    }

    /// The table's registered files that may hold rows in `range`, each once.
    fn files(&self, range: TimeRange) -> Vec<ParquetFile> {
        let mut seen = HashSet::new();
        self.sources
            .catalog
            .files()
            .into_iter()
            .filter(|f| f.database == self.database.id && f.table == self.table.id)
            .filter(|f| range.overlaps(f.min_time, f.max_time))
            .filter(|f| seen.insert(f.path.clone()))
            .collect()
    }

    /// What a scan reads: the key and the projected columns, and the filters
    /// that use only key columns (tags, time). Those can be applied before the
    /// versions of a point are folded, since every version has the same key.
    fn scan_columns(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
    ) -> datafusion::error::Result<ScanColumns> {
        let key = self.key_columns();
        let mut columns: Vec<usize> = match projection {
            Some(p) => key.iter().chain(p).copied().collect(),
            None => (0..self.schema.fields().len()).collect(),
        };
        columns.sort_unstable();
        columns.dedup();
        let reduced = Arc::new(self.schema.project(&columns)?);
        let key_names: HashSet<&str> = key
            .iter()
            .map(|&k| self.schema.field(k).name().as_str())
            .collect();
        let on_key = filters
            .iter()
            .filter(|f| {
                !f.is_volatile()
                    && f.column_refs()
                        .iter()
                        .all(|c| key_names.contains(c.name.as_str()))
            })
            .map(|f| unqualified(f.clone()))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let predicate = match conjunction(on_key) {
            Some(p) => Some(
                state.create_physical_expr(p, &DFSchema::try_from(reduced.as_ref().clone())?)?,
            ),
            None => None,
        };
        // A predicate statistics cannot decide (e.g. a regex) prunes nothing.
        let pruning = predicate.as_ref().and_then(|p| {
            PruningPredicateBuilder::new()
                .with_file_schema(Arc::clone(&reduced))
                .build(Arc::clone(p))
        });
        let key = key
            .iter()
            .filter_map(|k| columns.iter().position(|c| c == k))
            .collect();
        Ok(ScanColumns {
            reduced,
            key,
            predicate,
            pruning,
        })
    }

    /// Indexes of the tags and `time` in the query schema: a point's identity.
    fn key_columns(&self) -> Vec<usize> {
        table_columns(&self.table)
            .enumerate()
            .filter(|(_, (_, ty))| matches!(ty, ColumnType::Tag | ColumnType::Time))
            .map(|(i, _)| i)
            .collect()
    }
}

#[tonic::async_trait]
impl TableProvider for InflowTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Every filter is offered back as inexact: DataFusion still applies it,
    /// and the scan uses time bounds among them to skip files and rows.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let mut range = time_range(filters);
        // Points past the retention period are gone for queries at once, before
        // their day is dropped.
        if let Some(cutoff) = self.database.retention_cutoff(crate::auth::now_ns()) {
            range.min = Some(range.min.map_or(cutoff, |m| m.max(cutoff)));
        }
        let columns = self.scan_columns(state, projection, filters)?;
        let memory = Arc::new(
            MemoryConsumer::new(format!("scan of {}", self.table.name))
                .register(&state.runtime_env().memory_pool),
        );
        let batch = self
            .gather(range, columns, Arc::clone(&memory))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        // What stays held is the folded rows, until the query's last reader
        // of them is gone (not when this function returns).
        memory.resize(batch.get_array_memory_size());
        let config = state.config();
        let partitions = split(&batch, config.target_partitions(), config.batch_size());
        drop(batch);
        let table = MemTable::try_new(Arc::clone(&self.schema), partitions)?;
        let plan = table.scan(state, projection, filters, limit).await?;
        Ok(Arc::new(Held::new(plan, memory)))
    }
}

/// The columns a scan reads and folds; see [`InflowTable::scan_columns`].
struct ScanColumns {
    /// The table schema restricted to the key and the projected columns.
    reduced: SchemaRef,
    /// The key columns' indexes in `reduced`.
    key: Vec<usize>,
    /// Filters on key columns only, bound to `reduced`.
    predicate: Option<Arc<dyn PhysicalExpr>>,
    /// The same filters, rewritten to decide on min/max statistics.
    pruning: Option<Arc<PruningPredicate>>,
}

/// The expression with its columns unqualified, to bind to a plain schema.
fn unqualified(expr: Expr) -> datafusion::error::Result<Expr> {
    expr.transform(|e| match e {
        Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
            c.name,
        )))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// Splits a batch into `n` partitions of contiguous rows, so the plan runs on
/// every core, each a list of zero-copy slices of at most `batch_size` rows
/// (so what reads them, an HTTP answer's encoder too, takes a batch at a time).
fn split(batch: &RecordBatch, n: usize, batch_size: usize) -> Vec<Vec<RecordBatch>> {
    let rows = batch.num_rows();
    let per = rows.div_ceil(n.max(1)).max(1);
    let batch_size = batch_size.max(1);
    let mut partitions: Vec<Vec<RecordBatch>> = (0..rows)
        .step_by(per)
        .map(|start| {
            let end = (start + per).min(rows);
            (start..end)
                .step_by(batch_size)
                .map(|s| batch.slice(s, batch_size.min(end - s)))
                .collect()
        })
        .collect();
    if partitions.is_empty() {
        partitions.push(vec![]);
    }
    partitions
}

/// How a scan reads its files.
struct FileRead {
    store: Arc<dyn ObjectStore>,
    range: TimeRange,
    /// The columns to decode (those a file lacks come back null later).
    columns: Arc<Vec<String>>,
    pruning: Option<Arc<PruningPredicate>>,
    memory: Arc<MemoryReservation>,
}

impl FileRead {
    /// The rows of `file` in the time range, from the row groups whose
    /// statistics may match: the footer first, then only those column chunks.
    async fn batches(self, file: ParquetFile) -> Result<Vec<RecordBatch>, QueryError> {
        let unavailable = |e: &dyn std::fmt::Display| {
            QueryError::Unavailable(format!("reading {}: {e}", file.path))
        };
        let reader = StoreReader::new(Arc::clone(&self.store), &file);
        let builder = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(|e| unavailable(&e))?;
        let row_groups = self.row_groups(builder.metadata(), builder.schema());
        if row_groups.is_empty() {
            return Ok(vec![]);
        }
        let mask = ProjectionMask::columns(
            builder.parquet_schema(),
            self.columns.iter().map(String::as_str),
        );
        let mut stream = builder
            .with_row_groups(row_groups)
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| unavailable(&e))?;
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| unavailable(&e))?;
            let batch = filter_time(&batch, self.range).map_err(internal)?;
            if batch.num_rows() > 0 {
                count(&self.memory, std::slice::from_ref(&batch))?;
                batches.push(batch);
            }
        }
        Ok(batches)
    }

    /// The row groups the pruning predicate cannot rule out.
    fn row_groups(&self, metadata: &ParquetMetaData, schema: &SchemaRef) -> Vec<usize> {
        let all = 0..metadata.num_row_groups();
        let Some(pruning) = &self.pruning else {
            return all.collect();
        };
        let statistics = RowGroupStatistics { metadata, schema };
        match pruning.prune(&statistics) {
            Ok(keep) => all.filter(|&i| keep[i]).collect(),
            Err(_) => all.collect(),
        }
    }
}

/// Counts `batches` against the query memory pool.
fn count(memory: &MemoryReservation, batches: &[RecordBatch]) -> Result<(), QueryError> {
    let bytes = batches.iter().map(RecordBatch::get_array_memory_size).sum();
    memory.try_grow(bytes).map_err(QueryError::from)
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

/// A file's row-group statistics as the pruning predicate asks for them, by
/// column name; types come from the file's Arrow schema (dictionary tags
/// yield their string values).
struct RowGroupStatistics<'a> {
    metadata: &'a ParquetMetaData,
    schema: &'a SchemaRef,
}

impl RowGroupStatistics<'_> {
    fn converter(&self, column: &Column) -> Option<StatisticsConverter<'_>> {
        StatisticsConverter::try_new(
            &column.name,
            self.schema,
            self.metadata.file_metadata().schema_descr(),
        )
        .ok()
    }

    fn row_groups(&self) -> impl Iterator<Item = &RowGroupMetaData> {
        self.metadata.row_groups().iter()
    }
}

impl PruningStatistics for RowGroupStatistics<'_> {
    fn min_values(&self, column: &Column) -> Option<arrow::array::ArrayRef> {
        self.converter(column)?
            .row_group_mins(self.row_groups())
            .ok()
    }

    fn max_values(&self, column: &Column) -> Option<arrow::array::ArrayRef> {
        self.converter(column)?
            .row_group_maxes(self.row_groups())
            .ok()
    }

    fn num_containers(&self) -> usize {
        self.metadata.num_row_groups()
    }

    fn null_counts(&self, column: &Column) -> Option<arrow::array::ArrayRef> {
        let counts = self
            .converter(column)?
            .row_group_null_counts(self.row_groups());
        counts.ok().map(|c| Arc::new(c) as _)
    }

    fn row_counts(&self) -> Option<arrow::array::ArrayRef> {
        let rows: UInt64Array = self
            .row_groups()
            .map(|r| Some(r.num_rows() as u64))
            .collect();
        Some(Arc::new(rows))
    }

    fn contained(
        &self,
        _column: &Column,
        _values: &HashSet<ScalarValue>,
    ) -> Option<arrow::array::BooleanArray> {
        None
    }
}

/// Lays every batch out in `schema` (plus its sequence), folds the versions of
/// each point, and drops the sequence.
fn points(
    schema: &SchemaRef,
    key: &[usize],
    predicate: Option<&dyn PhysicalExpr>,
    batches: Vec<RecordBatch>,
    memory: &MemoryReservation,
) -> Result<RecordBatch, QueryError> {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(SEQUENCE_COLUMN, DataType::UInt64, true));
    let with_seq = Arc::new(Schema::new(fields));
    let projected = batches
        .iter()
        .map(|b| {
            let b = project(b, &with_seq).map_err(internal)?;
            match predicate {
                Some(p) => keep_matching(&b, p),
                None => Ok(b),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    drop(batches);
    // The sources were counted as they were read; the fold adds a copy.
    count(memory, &projected)?;
    let seq_index = schema.fields().len();
    let mut sequences_of = Vec::with_capacity(projected.len());
    let mut data = Vec::with_capacity(projected.len());
    for mut batch in projected {
        sequences_of.push(sequences(
            batch.remove_column(seq_index).as_primitive::<UInt64Type>(),
        ));
        data.push(batch);
    }
    let deduped = dedup(schema, &data, key, &sequences_of).map_err(internal)?;
    Ok(deduped.batch)
}

/// The rows of `batch` for which `predicate` is true.
fn keep_matching(
    batch: &RecordBatch,
    predicate: &dyn PhysicalExpr,
) -> Result<RecordBatch, QueryError> {
    let value = predicate
        .evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(QueryError::from)?;
    let mask = value
        .as_boolean_opt()
        .ok_or_else(|| QueryError::Internal("a filter did not evaluate to booleans".into()))?;
    filter_record_batch(batch, mask).map_err(internal)
}

fn internal(e: arrow::error::ArrowError) -> QueryError {
    QueryError::Internal(e.to_string())
}

/// Files written before sequences were stored have none: they count as oldest.
fn sequences(column: &UInt64Array) -> UInt64Array {
    if column.null_count() == 0 {
        return column.clone();
    }
    column.iter().map(|s| Some(s.unwrap_or(0))).collect()
}

/// The inclusive time bounds the filters imply (conjunctions of comparisons of
/// `time` with timestamp literals); anything else leaves the range open.
pub fn time_range(filters: &[Expr]) -> TimeRange {
    let mut range = TimeRange::default();
    for expr in filters.iter().flat_map(|f| split_conjunction(f)) {
        match expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                match (left.as_ref(), right.as_ref()) {
                    (Expr::Column(c), Expr::Literal(v, _)) if c.name == TIME_COLUMN => {
                        bound(&mut range, *op, v)
                    }
                    (Expr::Literal(v, _), Expr::Column(c)) if c.name == TIME_COLUMN => {
                        if let Some(op) = op.swap() {
                            bound(&mut range, op, v)
                        }
                    }
                    _ => {}
                }
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                if let (Expr::Column(c), Expr::Literal(lo, _), Expr::Literal(hi, _)) =
                    (expr.as_ref(), low.as_ref(), high.as_ref())
                    && c.name == TIME_COLUMN
                {
                    bound(&mut range, Operator::GtEq, lo);
                    bound(&mut range, Operator::LtEq, hi);
                }
            }
            _ => {}
        }
    }
    range
}

/// Narrows `range` by `time <op> value`.
fn bound(range: &mut TimeRange, op: Operator, value: &ScalarValue) {
    let Some(t) = nanos(value) else { return };
    let (min, max) = match op {
        Operator::Gt => (t.checked_add(1), None),
        Operator::GtEq => (Some(t), None),
        Operator::Lt => (None, t.checked_sub(1)),
        Operator::LtEq => (None, Some(t)),
        Operator::Eq => (Some(t), Some(t)),
        _ => (None, None),
    };
    if let Some(min) = min {
        range.min = Some(range.min.map_or(min, |m| m.max(min)));
    }
    if let Some(max) = max {
        range.max = Some(range.max.map_or(max, |m| m.min(max)));
    }
}

fn nanos(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(v: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(Some(v), None))
    }

    #[test]
    fn time_bounds_come_from_comparisons_and_between() {
        let f = col("time").gt_eq(ts(10)).and(col("time").lt(ts(20)));
        assert_eq!(
            time_range(&[f]),
            TimeRange {
                min: Some(10),
                max: Some(19)
            }
        );
        let f = ts(5).lt(col("time"));
        assert_eq!(time_range(&[f]).min, Some(6));
        let f = col("time").between(ts(1), ts(2));
        assert_eq!(
            time_range(&[f, col("host").eq(lit("a"))]),
            TimeRange {
                min: Some(1),
                max: Some(2)
            }
        );
        let either = col("time").gt(ts(1)).or(col("time").lt(ts(0)));
        assert_eq!(time_range(&[either]), TimeRange::default());
    }

    /// A file of 10 hosts × 100 points, sorted by host, 100 rows per row group:
    /// row group `i` holds host `h{i}` only.
    async fn sorted_file(dir: &std::path::Path) -> (Store, ParquetFile) {
        use arrow::array::{Float64Array, StringDictionaryBuilder, TimestampNanosecondArray};
        use arrow::datatypes::Int32Type;
        use parquet::arrow::ArrowWriter;
        use parquet::file::properties::WriterProperties;
        let mut host = StringDictionaryBuilder::<Int32Type>::new();
        let mut time = Vec::new();
        for h in 0..10 {
            for t in 0..100 {
                host.append_value(format!("h{h}"));
                time.push(t * 1_000 + h);
            }
        }
        let n = time.len();
        let batch = RecordBatch::try_from_iter([
            ("host", Arc::new(host.finish()) as _),
            ("usage", Arc::new(Float64Array::from(vec![1.5; n])) as _),
            ("time", Arc::new(TimestampNanosecondArray::from(time)) as _),
        ])
        .unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(100))
            .build();
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let store = Store::local(dir).unwrap();
        let file = ParquetFile {
            path: "f.parquet".into(),
            database: Default::default(),
            table: Default::default(),
            partition: "1970-01-01".into(),
            min_time: 0,
            max_time: 99_009,
            rows: n as u64,
            size_bytes: bytes.len() as u64,
        };
        let path = file.path.as_str().into();
        store
            .put(&path, bytes.into(), crate::store::Put::Overwrite)
            .await
            .unwrap();
        (store, file)
    }

    async fn read(
        store: &Store,
        file: &ParquetFile,
        predicate: Option<Expr>,
        memory: usize,
    ) -> Result<(Vec<usize>, usize), QueryError> {
        use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool};
        use datafusion::prelude::SessionContext;
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", DataType::Utf8, true),
            Field::new("usage", DataType::Float64, true),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                false,
            ),
        ]));
        let pruning = predicate.and_then(|p| {
            let ctx = SessionContext::new();
            let df_schema = DFSchema::try_from(schema.as_ref().clone()).unwrap();
            let physical = ctx.create_physical_expr(p, &df_schema).unwrap();
            let builder = PruningPredicateBuilder::new().with_file_schema(Arc::clone(&schema));
            builder.build(physical)
        });
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(memory));
        let read = FileRead {
            store: store.object_store(),
            range: TimeRange::default(),
            columns: Arc::new(vec!["host".into(), "usage".into(), "time".into()]),
            pruning,
            memory: Arc::new(MemoryConsumer::new("test").register(&pool)),
        };
        let reader = StoreReader {
            store: store.object_store(),
            path: file.path.as_str().into(),
            size: file.size_bytes,
        };
        let builder = ParquetRecordBatchStreamBuilder::new(reader).await.unwrap();
        let groups = read.row_groups(builder.metadata(), builder.schema());
        let rows = read.batches(file.clone()).await?;
        Ok((groups, rows.iter().map(RecordBatch::num_rows).sum()))
    }

    #[tokio::test]
    async fn row_group_statistics_prune_by_tag_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let (store, file) = sorted_file(dir.path()).await;
        let (all, rows) = read(&store, &file, None, usize::MAX).await.unwrap();
        assert_eq!((all.len(), rows), (10, 1000));

        let one = read(&store, &file, Some(col("host").eq(lit("h7"))), usize::MAX).await;
        assert_eq!(one.unwrap(), (vec![7], 100));
        let some = col("host").gt_eq(lit("h2")).and(col("host").lt(lit("h4")));
        assert_eq!(
            read(&store, &file, Some(some), usize::MAX).await.unwrap().0,
            vec![2, 3]
        );
        let none = read(&store, &file, Some(col("host").eq(lit("zz"))), usize::MAX).await;
        assert_eq!(none.unwrap(), (vec![], 0));
        // Times end in the host number: t % 1000 == h, so `time <= 3` holds
        // in hosts 0..=3 only (their first point).
        let early = read(&store, &file, Some(col("time").lt_eq(ts(3))), usize::MAX).await;
        assert_eq!(early.unwrap().0, vec![0, 1, 2, 3]);
        // Statistics cannot decide a regex: nothing is pruned, nothing lost.
        let regex = col("host").like(lit("h%"));
        assert_eq!(
            read(&store, &file, Some(regex), usize::MAX)
                .await
                .unwrap()
                .0
                .len(),
            10
        );

        let small = read(&store, &file, None, 1024).await;
        assert!(
            matches!(small, Err(QueryError::ResourcesExhausted(_))),
            "{small:?}"
        );
    }

    #[test]
    fn split_keeps_every_row_once() {
        let batch = RecordBatch::try_from_iter([(
            "x",
            Arc::new(UInt64Array::from((0..10).collect::<Vec<u64>>())) as _,
        )])
        .unwrap();
        let parts = split(&batch, 3, 100);
        let rows: Vec<usize> = parts.iter().map(|p| p[0].num_rows()).collect();
        assert_eq!(rows, vec![4, 4, 2]);
        assert_eq!(split(&batch.slice(0, 0), 2, 100).len(), 1);
        // Each partition in slices of at most the batch size, in order.
        let parts = split(&batch, 2, 2);
        let slices: Vec<Vec<u64>> = parts
            .iter()
            .map(|p| {
                p.iter()
                    .flat_map(|b| b.column(0).as_primitive::<UInt64Type>().values().to_vec())
                    .collect()
            })
            .collect();
        assert_eq!(slices, vec![vec![0, 1, 2, 3, 4], vec![5, 6, 7, 8, 9]]);
        let sizes: Vec<Vec<usize>> = parts
            .iter()
            .map(|p| p.iter().map(RecordBatch::num_rows).collect())
            .collect();
        assert_eq!(sizes, vec![vec![2, 2, 1], vec![2, 2, 1]]);
    }
}
