//! The row path's answer for one series, from its points: raw rows, or
//! InfluxQL's own aggregates per window (`distinct` a row per value), then
//! transformations, `OFFSET` and `LIMIT` ([`Plan::finish`], which the
//! DataFusion aggregates share).
//!
//! Apart from the scan because it is pure: it takes the held rows of one
//! series and never sees DataFusion.

use super::aggregate::{Call, Func, Picked, aggregate};
use super::plan::Plan;
use super::scan::Row;
use super::windows::Window;
use crate::influxql::InfluxqlError;
use crate::influxql::ast::{BinaryOp, Expr, VarType};
use crate::influxql::eval;
use crate::influxql::result::Value;

impl Plan<'_> {
    /// One series' output rows, in output order (none for no rows).
    /// `present` says which referenced fields the measurement has.
    pub(super) fn series_rows(
        &self,
        rows: &[Row],
        present: &[bool],
    ) -> Result<Vec<Vec<Value>>, InfluxqlError> {
        if rows.is_empty() {
            return Ok(vec![]);
        }
        let out = if self.aggregate {
            self.aggregate_rows(rows, present)?
        } else {
            let mut out = self.raw_rows(rows);
            if self.select.order_desc {
                out.reverse();
            }
            out
        };
        Ok(self.finish(out))
    }

    /// A series' rows after its transformations, `OFFSET` and `LIMIT`.
    pub(super) fn finish(&self, out: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
        let out = if self.transforms.is_empty() {
            out
        } else {
            self.transform(out)
        };
        let skip = self.select.offset.unwrap_or(0) as usize;
        let take = self.select.limit.map_or(usize::MAX, |n| n as usize);
        out.into_iter().skip(skip).take(take).collect()
    }

    /// Raw points: a point appears when any field the statement references
    /// has a value in it (its expressions may still be null).
    fn raw_rows(&self, rows: &[Row]) -> Vec<Vec<Value>> {
        let fields: Vec<usize> = self
            .refs
            .iter()
            .enumerate()
            .filter(|(_, (_, t))| *t != Some(VarType::Tag))
            .map(|(i, _)| i)
            .collect();
        rows.iter()
            .filter(|row| fields.iter().any(|&i| !row.values[i].is_null()))
            .map(|row| {
                std::iter::once(Value::Time(row.time))
                    .chain(
                        self.columns
                            .iter()
                            .map(|c| evaluate(&c.expr, &row.values, &[])),
                    )
                    .collect()
            })
            .collect()
    }

    fn aggregate_rows(
        &self,
        rows: &[Row],
        present: &[bool],
    ) -> Result<Vec<Vec<Value>>, InfluxqlError> {
        let mut windows = self.windows(rows)?;
        // Output order first: `fill(previous)` repeats the previous row shown.
        if self.select.order_desc {
            windows.reverse();
        }
        // Per call, per window: the result (None when the window had no value).
        let mut results: Vec<Vec<Option<Picked>>> = Vec::with_capacity(self.calls.len());
        for call in &self.calls {
            let mut per_window = Vec::with_capacity(windows.len());
            for w in &windows {
                per_window.push(aggregate(call, &rows[w.rows.clone()], w.rows.start)?);
            }
            results.push(per_window);
        }
        if let Some(Call {
            func: Func::Distinct,
            ..
        }) = self.calls.first()
        {
            if results.iter().flatten().all(Option::is_none) {
                return Ok(vec![]);
            }
            return Ok(self.distinct_rows(rows, &windows));
        }
        let starts: Vec<i64> = windows.iter().map(|w| w.start).collect();
        Ok(self.window_rows(&starts, &results, present, |i| {
            rows.get(i).map_or(&[], |r| r.values.as_slice())
        }))
    }

    /// `distinct(x)`: a row per distinct value and window.
    fn distinct_rows(&self, rows: &[Row], windows: &[Window]) -> Vec<Vec<Value>> {
        let column = self.calls[0].column;
        let mut out = Vec::new();
        for w in windows {
            let mut seen: Vec<Value> = Vec::new();
            for row in &rows[w.rows.clone()] {
                let v = &row.values[column];
                if !v.is_null() && !seen.contains(v) {
                    seen.push(v.clone());
                }
            }
            for v in seen {
                let row: Vec<Value> = std::iter::once(Value::Time(w.start))
                    .chain(
                        self.columns
                            .iter()
                            .map(|c| evaluate(&c.expr, &[], std::slice::from_ref(&v))),
                    )
                    .collect();
                out.push(row);
            }
        }
        out
    }
}

/// A column's value: calls read `calls` (their results in this row), bare
/// references read the point (`refs`).
pub(super) fn evaluate(e: &Expr, refs: &[Value], calls: &[Value]) -> Value {
    let index = |name: &str| name.strip_prefix('#').and_then(|i| i.parse::<usize>().ok());
    match e {
        Expr::VarRef { name, .. } => index(name)
            .and_then(|i| refs.get(i))
            .cloned()
            .unwrap_or(Value::Null),
        Expr::Call { name, .. } => index(name)
            .and_then(|i| calls.get(i))
            .cloned()
            .unwrap_or(Value::Null),
        Expr::Binary { op, lhs, rhs } => eval::arithmetic(
            *op,
            &evaluate(lhs, refs, calls),
            &evaluate(rhs, refs, calls),
        ),
        Expr::Negate(inner) => eval::arithmetic(
            BinaryOp::Mul,
            &Value::Integer(-1),
            &evaluate(inner, refs, calls),
        ),
        Expr::Integer(i) => Value::Integer(*i),
        Expr::Float(f) => Value::Float(*f),
        Expr::Boolean(b) => Value::Boolean(*b),
        Expr::String(s) => Value::String(s.clone()),
        _ => Value::Null,
    }
}
