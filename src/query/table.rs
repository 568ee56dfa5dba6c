//! One catalog table as DataFusion sees it: its rows are the Parquet files the
//! catalog registers plus the ingesters' buffered rows, one row per point.
//!
//! A scan gathers and deduplicates the rows in the query's time range, then
//! hands them to a `MemTable`. That is simple and exact; it holds the table's
//! rows in range in memory at once. Where this should become streaming: merge
//! per series across time-sorted sources (the files are sorted by tags and
//! time already) instead of one sort of everything.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, UInt64Array};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, UInt64Type};
use bytes::Bytes;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::QueryError;
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
    async fn gather(&self, range: TimeRange, scan: ScanColumns) -> Result<RecordBatch, QueryError> {
        let buffered = self
            .sources
            .ingesters
            .fetch(&self.database.name, &self.table.name, range)
            .await?;
        self.sources.catalog.refresh_file_logs().await?;
        let files = self.files(range);
        let store = self.sources.store.clone();
        let ScanColumns {
            reduced,
            key,
            predicate,
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
            .map(|f| read_parquet(store.clone(), f, range, Arc::clone(&names)))
            .buffer_unordered(PARALLEL_FILE_READS)
            .try_collect()
            .await?;
        let full = Arc::clone(&self.schema);
        tokio::task::spawn_blocking(move || {
            let all = persisted.into_iter().flatten().chain(buffered);
            let points = points(&reduced, &key, predicate.as_deref(), all.collect())?;
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
        let key = key
            .iter()
            .filter_map(|k| columns.iter().position(|c| c == k))
            .collect();
        Ok(ScanColumns {
            reduced,
            key,
            predicate,
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
        let range = time_range(filters);
        let columns = self.scan_columns(state, projection, filters)?;
        let batch = self
            .gather(range, columns)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let partitions = split(&batch, state.config().target_partitions());
        let table = MemTable::try_new(Arc::clone(&self.schema), partitions)?;
        table.scan(state, projection, filters, limit).await
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
/// every core.
fn split(batch: &RecordBatch, n: usize) -> Vec<Vec<RecordBatch>> {
    let n = n.max(1);
    let per = batch.num_rows().div_ceil(n).max(1);
    let mut partitions: Vec<Vec<RecordBatch>> = (0..batch.num_rows())
        .step_by(per)
        .map(|start| vec![batch.slice(start, per.min(batch.num_rows() - start))])
        .collect();
    if partitions.is_empty() {
        partitions.push(vec![]);
    }
    partitions
}

/// Reads one Parquet file's rows in `range`.
async fn read_parquet(
    store: Store,
    file: ParquetFile,
    range: TimeRange,
    columns: Arc<Vec<String>>,
) -> Result<Vec<RecordBatch>, QueryError> {
    let bytes = store
        .get(&file.path.as_str().into())
        .await
        .map_err(|e| QueryError::Unavailable(format!("reading {}: {e}", file.path)))?;
    tokio::task::spawn_blocking(move || decode_parquet(&file.path, bytes, range, &columns))
        .await
        .map_err(|e| QueryError::Internal(e.to_string()))?
}

/// Decodes the named columns (those the file has) of the rows in `range`.
fn decode_parquet(
    path: &str,
    bytes: Bytes,
    range: TimeRange,
    columns: &[String],
) -> Result<Vec<RecordBatch>, QueryError> {
    let corrupt =
        |e: &dyn std::fmt::Display| QueryError::Internal(format!("Parquet file {path}: {e}"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| corrupt(&e))?;
    let mask =
        ProjectionMask::columns(builder.parquet_schema(), columns.iter().map(String::as_str));
    let reader = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| corrupt(&e))?;
    reader
        .map(|batch| {
            let batch = batch.map_err(|e| corrupt(&e))?;
            filter_time(&batch, range).map_err(|e| corrupt(&e))
        })
        .filter(|b| !matches!(b, Ok(b) if b.num_rows() == 0))
        .collect()
}

/// Lays every batch out in `schema` (plus its sequence), folds the versions of
/// each point, and drops the sequence.
fn points(
    schema: &SchemaRef,
    key: &[usize],
    predicate: Option<&dyn PhysicalExpr>,
    batches: Vec<RecordBatch>,
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
    let all = concat_batches(&with_seq, &projected).map_err(internal)?;
    let seq_index = schema.fields().len();
    let sequences = sequences(all.column(seq_index).as_primitive::<UInt64Type>());
    let mut data = all;
    data.remove_column(seq_index);
    let deduped = dedup(&data, key, &sequences).map_err(internal)?;
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

    #[test]
    fn split_keeps_every_row_once() {
        let batch = RecordBatch::try_from_iter([(
            "x",
            Arc::new(UInt64Array::from((0..10).collect::<Vec<u64>>())) as _,
        )])
        .unwrap();
        let parts = split(&batch, 3);
        let rows: Vec<usize> = parts.iter().map(|p| p[0].num_rows()).collect();
        assert_eq!(rows, vec![4, 4, 2]);
        assert_eq!(split(&batch.slice(0, 0), 2).len(), 1);
    }
}
