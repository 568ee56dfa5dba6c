//! One catalog table as DataFusion sees it: its rows are the Parquet files the
//! catalog registers plus the ingesters' buffered rows, one row per point.
//!
//! `scan` reads the buffered rows first, then lists the files (the order that
//! makes a snapshot in between harmless, see [`super`]), and returns a
//! streaming plan over both ([`super::scan`]): files are read by DataFusion's
//! Parquet reader, pruned by file time range, row-group and page statistics,
//! and versions of a point are folded only where sources overlap in time.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{col, lit};

use super::QueryError;
use super::ingesters::BufferSource;
use super::scan::{self, ScanInput, distinct_files, fold_buffered, with_sequence};
use crate::catalog::{Catalog, Database, ParquetFile, Table, table_columns};
use crate::clock::SharedClock;
use crate::ingester::buffer::batch_bytes;
use crate::ingester::read::{BufferFilter, TimeRange};
use crate::schema::{ColumnType, TIME_COLUMN};
use crate::store::Store;

/// Where a table's rows come from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub catalog: Arc<Catalog>,
    pub store: Store,
    pub ingesters: Arc<dyn BufferSource>,
    /// Places the retention period's start.
    pub clock: SharedClock,
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

    /// The table's registered files that may hold rows in `range`, each once.
    fn files(&self, range: TimeRange) -> Vec<ParquetFile> {
        distinct_files(
            self.sources
                .catalog
                .files()
                .into_iter()
                .filter(|f| f.database == self.database.id && f.table == self.table.id)
                .filter(|f| range.overlaps(f.min_time, f.max_time)),
        )
    }

    /// What a scan reads: the projection, the key, and the filters as
    /// predicates to prune by (all of them, and those on the key alone).
    fn scan_input(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
        retention_cutoff: Option<i64>,
        range: TimeRange,
    ) -> datafusion::error::Result<ScanInput> {
        let with_seq = with_sequence(&self.schema);
        let key = self.key_columns();
        let key_names: HashSet<&str> = key
            .iter()
            .map(|&k| self.schema.field(k).name().as_str())
            .collect();
        let mut all = Vec::new();
        let mut on_key = Vec::new();
        for f in filters.iter().filter(|f| !f.is_volatile()) {
            let f = unqualified(f.clone())?;
            if f.column_refs()
                .iter()
                .all(|c| key_names.contains(c.name.as_str()))
            {
                on_key.push(f.clone());
            }
            all.push(f);
        }
        if let Some(cutoff) = retention_cutoff {
            let since =
                col(TIME_COLUMN).gt_eq(lit(ScalarValue::TimestampNanosecond(Some(cutoff), None)));
            all.push(since.clone());
            on_key.push(since);
        }
        let df_schema = DFSchema::try_from(with_seq.as_ref().clone())?;
        let physical = |exprs: Vec<Expr>| {
            conjunction(exprs)
                .map(|e| state.create_physical_expr(e, &df_schema))
                .transpose()
        };
        Ok(ScanInput {
            projection: projection
                .cloned()
                .unwrap_or_else(|| (0..self.schema.fields().len()).collect()),
            predicate: physical(all)?,
            key_predicate: physical(on_key)?,
            with_seq,
            key,
            retention_cutoff,
            range,
            limit,
        })
    }

    /// What the ingesters need send: the rows in `range` whose tags the
    /// filters pin to values (`host = 'a'`, `host IN ('a', 'b')`), with the
    /// projected fields only. A smaller answer to move and fold; the filters
    /// still apply above the scan.
    fn buffer_filter(
        &self,
        range: TimeRange,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
    ) -> BufferFilter {
        let is_tag = |name: &str| self.table.column_type(name) == Some(ColumnType::Tag);
        let tags = filters
            .iter()
            .flat_map(|f| split_conjunction(f))
            .filter_map(pinned_tag)
            .filter(|(tag, _)| is_tag(tag))
            .collect();
        let fields = projection.map(|p| {
            p.iter()
                .map(|&i| self.schema.field(i).name())
                .filter(|n| self.table.column_type(n).is_some_and(|t| t.is_field()))
                .cloned()
                .collect()
        });
        BufferFilter {
            range,
            tags,
            fields,
        }
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
        let cutoff = self.database.retention_cutoff(self.sources.clock.now_ns());
        if let Some(cutoff) = cutoff {
            range.min = Some(range.min.map_or(cutoff, |m| m.max(cutoff)));
        }
        let input = self.scan_input(state, projection, filters, limit, cutoff, range)?;
        let memory = Arc::new(
            MemoryConsumer::new(format!("buffered rows of {}", self.table.name))
                .register(&state.runtime_env().memory_pool),
        );
        let buffered = self
            .sources
            .ingesters
            .fetch(
                self.database.key(),
                &self.table.name,
                &self.buffer_filter(range, projection, filters),
            )
            .await
            .map_err(external)?;
        // Counted by the bytes each batch's slices hold: decoded from Flight,
        // every column shares one message buffer.
        memory.try_grow(buffered.iter().map(batch_bytes).sum())?;
        let (with_seq, key) = (Arc::clone(&input.with_seq), input.key.clone());
        let buffer = tokio::task::spawn_blocking(move || fold_buffered(&with_seq, &key, buffered))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
        // What stays held is the folded rows, until the plan's last stream
        // is dropped.
        memory.resize(buffer.as_ref().map_or(0, |b| batch_bytes(&b.batch)));
        self.sources
            .catalog
            .refresh_file_logs()
            .await
            .map_err(|e| external(e.into()))?;
        let files = self.files(range);
        scan::plan(state, &input, files, buffer, memory)
    }
}

fn external(e: QueryError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
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

/// `column = 'value'` (either way round) or `column IN ('a', …)`: the column
/// and the values it must take.
fn pinned_tag(expr: &Expr) -> Option<(String, Vec<String>)> {
    let string = |e: &Expr| match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(v))
            | ScalarValue::LargeUtf8(Some(v))
            | ScalarValue::Utf8View(Some(v)),
            _,
        ) => Some(v.clone()),
        _ => None,
    };
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), v) | (v, Expr::Column(c)) => Some((c.name.clone(), vec![string(v)?])),
            _ => None,
        },
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) => match expr.as_ref() {
            Expr::Column(c) => Some((
                c.name.clone(),
                list.iter().map(string).collect::<Option<Vec<_>>>()?,
            )),
            _ => None,
        },
        _ => None,
    }
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
}
