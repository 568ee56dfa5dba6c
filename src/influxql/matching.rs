//! The series (tag sets) of a measurement that a `SHOW` statement's `WHERE`
//! clause matches: from the file summaries ([`crate::query::summary`]) when
//! the clause is on tags and time only, else from a scan of the points.
//!
//! Time bounds count: a series matches when it has points in the range (with
//! the summaries: when its first and last time in some file or in the
//! buffers overlap the range). 1.x is coarser (a series matches when its
//! shard group overlaps the range, a week by default).

use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch, RecordBatchOptions};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::TableReference;
use datafusion::logical_expr::{Expr as DfExpr, ident, lit};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use super::ast::Expr;
use super::eval::{self, Columns};
use super::{Context, InfluxqlError};
use crate::catalog::{Database, Table, table_columns};
use crate::ingester::read::TimeRange;
use crate::schema::{ColumnType, TIME_COLUMN};

/// One row per series of `table` that `condition` matches: a `Utf8` column
/// per tag of the table, named for it, null where the series lacks it.
pub async fn series(
    ctx: &Context<'_>,
    session: &SessionContext,
    db: &Database,
    table: &Table,
    condition: Option<&Expr>,
) -> Result<RecordBatch, InfluxqlError> {
    let columns: Columns = table_columns(table)
        .map(|(n, t)| (n.to_string(), t))
        .collect();
    let (bounds, rest) = eval::split_time(condition, ctx.now)?;
    let range = TimeRange {
        min: bounds.start,
        max: bounds.end,
    };
    let predicate = rest
        .map(|r| eval::condition(&r, &columns, ctx.now))
        .transpose()?;
    let on_tags = predicate.as_ref().is_none_or(|p| {
        p.column_refs()
            .iter()
            .all(|c| columns.get(&c.name) == Some(&ColumnType::Tag))
    });
    if on_tags && let Some(summaries) = ctx.querier.summaries() {
        let series = summaries.series(db, table, range).await?;
        if let Some(mask) = super::last::matching(predicate.as_ref(), &series.batch) {
            let mask = BooleanArray::from(mask);
            return filter_record_batch(&series.batch, &mask)
                .map_err(|e| crate::query::QueryError::Internal(e.to_string()).into());
        }
    }
    scan(session, table, range, predicate).await
}

/// The same from the points: the distinct tag sets of those in range that
/// match.
async fn scan(
    session: &SessionContext,
    table: &Table,
    range: TimeRange,
    predicate: Option<DfExpr>,
) -> Result<RecordBatch, InfluxqlError> {
    let tags: Vec<&str> = table_columns(table)
        .filter(|(_, t)| *t == ColumnType::Tag)
        .map(|(n, _)| n)
        .collect();
    let schema = Arc::new(Schema::new(
        tags.iter()
            .map(|t| Field::new(*t, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let time = |ns: i64| lit(ScalarValue::TimestampNanosecond(Some(ns), None));
    let mut frame = session
        .table(TableReference::bare(table.name.as_str()))
        .await?;
    if let Some(min) = range.min {
        frame = frame.filter(ident(TIME_COLUMN).gt_eq(time(min)))?;
    }
    if let Some(max) = range.max {
        frame = frame.filter(ident(TIME_COLUMN).lt_eq(time(max)))?;
    }
    if let Some(p) = predicate {
        frame = frame.filter(p)?;
    }
    let internal = |e: arrow::error::ArrowError| -> InfluxqlError {
        crate::query::QueryError::Internal(e.to_string()).into()
    };
    if tags.is_empty() {
        // A measurement without tags has one series, if it has points.
        let any = frame.limit(0, Some(1))?.count().await?;
        let options = RecordBatchOptions::new().with_row_count(Some(any.min(1)));
        return RecordBatch::try_new_with_options(schema, vec![], &options).map_err(internal);
    }
    let batches = frame
        .select(tags.iter().map(|t| ident(*t)).collect::<Vec<_>>())?
        .distinct()?
        .collect()
        .await?;
    let batches = batches
        .iter()
        .map(|b| {
            let columns = b
                .columns()
                .iter()
                .map(|c| arrow::compute::cast(c, &DataType::Utf8))
                .collect::<Result<Vec<_>, _>>()?;
            RecordBatch::try_new(Arc::clone(&schema), columns)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(internal)?;
    concat_batches(&schema, &batches).map_err(internal)
}
