//! Reading a measurement for the row path: the DataFusion scan with the time
//! range and the `WHERE` condition as filters (so the table prunes files and
//! row groups), projected to the series key and the referenced columns,
//! sorted by series and time, and cut into series held one at a time, what
//! they hold counted against the query memory pool.
//!
//! Apart because it is the part that touches DataFusion and Arrow; the
//! DataFusion aggregates (`pushdown`) filter and key series the same way.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampNanosecondType, UInt64Type};
use datafusion::common::TableReference;
use datafusion::execution::memory_pool::MemoryReservation;
use datafusion::logical_expr::{Expr as DfExpr, ident, lit};
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;

use super::plan::Plan;
use super::regex;
use crate::catalog::{Table, table_columns};
use crate::influxql::InfluxqlError;
use crate::influxql::ast::{Dimension, VarType};
use crate::influxql::eval::{self, Columns};
use crate::influxql::result::{Series, Value, answer_bytes};
use crate::schema::{ColumnType, TIME_COLUMN};

/// A point as the statement sees it: its time and the referenced columns.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) time: i64,
    pub(super) values: Vec<Value>,
}

/// What a held row costs beyond its values, and what a value costs (its
/// enum; strings count their length below the estimate's precision).
const ROW_BYTES: usize = std::mem::size_of::<Row>();
const VALUE_BYTES: usize = std::mem::size_of::<Value>();

/// A group tag's part of a series key: a missing tag is the empty string,
/// as in 1.x.
pub(super) fn tag_key(name: &str, columns: &Columns) -> DfExpr {
    match columns.get(name) {
        Some(ColumnType::Tag) => {
            datafusion::functions::core::expr_fn::coalesce(vec![ident(name), lit("")])
        }
        _ => lit(""),
    }
}

impl Plan<'_> {
    /// The tags that key this measurement's series, in name order.
    pub(super) fn group_tags(&self, table: &Table) -> Vec<String> {
        let tags: Vec<&str> = table_columns(table)
            .filter(|(_, t)| *t == ColumnType::Tag)
            .map(|(n, _)| n)
            .collect();
        let mut out: Vec<String> = Vec::new();
        for d in &self.select.group_by {
            match d {
                Dimension::Tag(name) => out.push(name.clone()),
                Dimension::Wildcard => out.extend(tags.iter().map(|t| t.to_string())),
                Dimension::Regex(re) => {
                    // Checked when the plan was made.
                    if let Ok(re) = regex(re) {
                        out.extend(
                            tags.iter()
                                .filter(|t| re.is_match(t))
                                .map(|t| t.to_string()),
                        );
                    }
                }
                Dimension::Time { .. } => {}
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The measurement's rows in range (the time range and the `WHERE`
    /// condition as filters, so the table prunes by them).
    pub(super) async fn filtered(
        &self,
        session: &SessionContext,
        table: &Table,
        columns: &Columns,
    ) -> Result<DataFrame, InfluxqlError> {
        let mut frame = session
            .table(TableReference::bare(table.name.as_str()))
            .await?;
        let time = |ns: i64| lit(ScalarValue::TimestampNanosecond(Some(ns), None));
        if let Some(start) = self.scan_start() {
            frame = frame.filter(ident(TIME_COLUMN).gt_eq(time(start)))?;
        }
        if let Some(end) = self.end() {
            frame = frame.filter(ident(TIME_COLUMN).lt_eq(time(end)))?;
        }
        if let Some(condition) = &self.condition {
            frame = frame.filter(eval::condition(condition, columns, self.now)?)?;
        }
        Ok(frame)
    }

    /// A measurement's series as the statement answers them, from its rows
    /// in series and time order. A series' rows are held (and counted in
    /// `memory`) only until the next series starts: then its answer is made
    /// and they are let go.
    pub(super) async fn scan(
        &self,
        session: &SessionContext,
        table: &Table,
        columns: &Columns,
        memory: &MemoryReservation,
    ) -> Result<Vec<Series>, InfluxqlError> {
        let group = self.group_tags(table);
        let frame = self.filtered(session, table, columns).await?;
        let mut projection: Vec<DfExpr> = group
            .iter()
            .enumerate()
            .map(|(i, g)| tag_key(g, columns).alias(format!("g{i}")))
            .collect();
        projection.push(ident(TIME_COLUMN));
        for (i, (name, ty)) in self.refs.iter().enumerate() {
            let expr = match (columns.get(name), ty) {
                (Some(ColumnType::Tag), None | Some(VarType::Tag)) => ident(name),
                (Some(t), None | Some(VarType::Field)) if t.is_field() => ident(name),
                (
                    Some(t),
                    Some(VarType::Float | VarType::Integer | VarType::String | VarType::Boolean),
                ) if t.is_field() => ident(name),
                _ => lit(ScalarValue::Null),
            };
            projection.push(expr.alias(format!("r{i}")));
        }
        let present: Vec<bool> = self
            .refs
            .iter()
            .map(|(name, _)| columns.get(name).is_some_and(|t| t.is_field()))
            .collect();
        let mut sort: Vec<_> = (0..group.len())
            .map(|i| ident(format!("g{i}")).sort(true, true))
            .collect();
        sort.push(ident(TIME_COLUMN).sort(true, true));
        let frame = frame.select(projection)?.sort(sort)?;
        let mut stream = frame.execute_stream().await?;
        let mut out = Vec::new();
        let mut key: Vec<String> = Vec::new();
        let mut rows: Vec<Row> = Vec::new();
        let mut held = 0;
        let refs = self.refs.len();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let keys: Vec<_> = (0..group.len()).map(|i| batch.column(i)).collect();
            let time = batch
                .column(group.len())
                .as_primitive::<TimestampNanosecondType>();
            let values: Vec<_> = (0..refs)
                .map(|i| batch.column(group.len() + 1 + i))
                .collect();
            let mut added = 0;
            for row in 0..batch.num_rows() {
                let same = !rows.is_empty()
                    && keys
                        .iter()
                        .zip(&key)
                        .all(|(k, held)| str_at(k.as_ref(), row) == held);
                if !same {
                    memory.try_grow(added)?;
                    added = 0;
                    let values = self.series_rows(&rows, &present)?;
                    self.push_series(&table.name, &group, &key, values, memory, &mut out)?;
                    memory.shrink(held);
                    held = 0;
                    rows.clear();
                    key = keys
                        .iter()
                        .map(|k| str_at(k.as_ref(), row).to_string())
                        .collect();
                }
                rows.push(Row {
                    time: time.value(row),
                    values: values.iter().map(|c| value_at(c.as_ref(), row)).collect(),
                });
                added += ROW_BYTES + refs * VALUE_BYTES;
                held += ROW_BYTES + refs * VALUE_BYTES;
            }
            memory.try_grow(added)?;
        }
        let values = self.series_rows(&rows, &present)?;
        self.push_series(&table.name, &group, &key, values, memory, &mut out)?;
        memory.shrink(held);
        Ok(out)
    }

    /// Adds a series' answer (when it has rows), counted in `memory`.
    pub(super) fn push_series(
        &self,
        name: &str,
        group: &[String],
        key: &[String],
        values: Vec<Vec<Value>>,
        memory: &MemoryReservation,
        out: &mut Vec<Series>,
    ) -> Result<(), InfluxqlError> {
        if values.is_empty() {
            return Ok(());
        }
        let tags =
            (!group.is_empty()).then(|| group.iter().cloned().zip(key.iter().cloned()).collect());
        let series = Series {
            name: name.to_string(),
            tags,
            columns: self.column_names(),
            values,
        };
        memory.try_grow(answer_bytes(std::slice::from_ref(&series)))?;
        out.push(series);
        Ok(())
    }

    /// The first time read: the statement's lower bound, one window earlier
    /// when a transformation of windows needs the value before the first (as
    /// 1.x reads it, so `difference(mean(x))` has a first row).
    pub(super) fn scan_start(&self) -> Option<i64> {
        let start = self.bounds.start?;
        match self.window {
            Some((interval, _)) if !self.transforms.is_empty() => {
                Some(start.saturating_sub(interval))
            }
            _ => Some(start),
        }
    }

    /// The last time the statement covers: its own bound, else `now()` when it
    /// groups by time (1.x's default).
    pub(super) fn end(&self) -> Option<i64> {
        match (self.bounds.end, self.window) {
            (Some(end), _) => Some(end),
            (None, Some(_)) => Some(self.now),
            (None, None) => None,
        }
    }
}

/// A string column's value (a series key's part: coalesced, never null).
pub(super) fn str_at(array: &dyn Array, i: usize) -> &str {
    if array.is_null(i) {
        return "";
    }
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(i),
        DataType::LargeUtf8 => array.as_string::<i64>().value(i),
        DataType::Utf8View => array.as_string_view().value(i),
        _ => "",
    }
}

pub fn value_at(array: &dyn Array, i: usize) -> Value {
    if array.is_null(i) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Float64 => Value::Float(array.as_primitive::<Float64Type>().value(i)),
        DataType::Int64 => Value::Integer(array.as_primitive::<Int64Type>().value(i)),
        DataType::UInt64 => Value::Unsigned(array.as_primitive::<UInt64Type>().value(i)),
        DataType::Boolean => Value::Boolean(array.as_boolean().value(i)),
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Value::String(array.as_string_view().value(i).to_string()),
        DataType::Timestamp(_, _) => {
            Value::Time(array.as_primitive::<TimestampNanosecondType>().value(i))
        }
        _ => Value::Null,
    }
}
