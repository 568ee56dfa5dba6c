//! InfluxQL's own aggregates and selectors over a window's points (`mean`,
//! `median`, `percentile`, `first`, …), as the row path computes them: what
//! the select list calls ([`Call`], [`Func`]) and what a call gives in a
//! window ([`Picked`]).
//!
//! Apart from the row path that feeds it because it is 1.x's arithmetic
//! alone: no plan, no windows, no I/O.

use super::scan::Row;
use crate::influxql::InfluxqlError;
use crate::influxql::ast::BinaryOp;
use crate::influxql::eval;
use crate::influxql::result::Value;

/// An aggregate or selector call in the select list.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Call {
    pub(super) func: Func,
    /// Index into the referenced columns.
    pub(super) column: usize,
    /// `count(distinct(x))`.
    pub(super) distinct: bool,
    /// `percentile`'s N.
    pub(super) percentile: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Func {
    Mean,
    Median,
    Sum,
    Count,
    Min,
    Max,
    First,
    Last,
    Spread,
    Stddev,
    Percentile,
    Distinct,
}

impl Func {
    pub(super) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "mean" => Self::Mean,
            "median" => Self::Median,
            "sum" => Self::Sum,
            "count" => Self::Count,
            "min" => Self::Min,
            "max" => Self::Max,
            "first" => Self::First,
            "last" => Self::Last,
            "spread" => Self::Spread,
            "stddev" => Self::Stddev,
            "percentile" => Self::Percentile,
            "distinct" => Self::Distinct,
            _ => return None,
        })
    }

    /// Selectors pick a point, whose time and other columns they can carry.
    pub(super) fn is_selector(self) -> bool {
        matches!(
            self,
            Self::Min | Self::Max | Self::First | Self::Last | Self::Percentile
        )
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Median => "median",
            Self::Sum => "sum",
            Self::Count => "count",
            Self::Min => "min",
            Self::Max => "max",
            Self::First => "first",
            Self::Last => "last",
            Self::Spread => "spread",
            Self::Stddev => "stddev",
            Self::Percentile => "percentile",
            Self::Distinct => "distinct",
        }
    }

    /// Whether the function takes values of this kind (1.x refuses the rest).
    fn accepts(self, v: &Value) -> bool {
        match v {
            Value::Float(_) | Value::Integer(_) | Value::Unsigned(_) => true,
            Value::String(_) | Value::Boolean(_) => matches!(
                self,
                Self::Count | Self::First | Self::Last | Self::Distinct
            ),
            Value::Null | Value::Time(_) => false,
        }
    }
}

/// An aggregate's value in one window; a selector's also names its point.
#[derive(Debug, Clone)]
pub(super) struct Picked {
    pub(super) value: Value,
    pub(super) time: Option<i64>,
    pub(super) row: Option<usize>,
}

pub(super) fn aggregate(
    call: &Call,
    rows: &[Row],
    base: usize,
) -> Result<Option<Picked>, InfluxqlError> {
    let values: Vec<(usize, &Value)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (i, &r.values[call.column]))
        .filter(|(_, v)| !v.is_null())
        .collect();
    let Some(&(_, sample)) = values.first() else {
        return Ok(None);
    };
    if !call.func.accepts(sample) {
        return Err(InfluxqlError::Invalid(format!(
            "unsupported {} iterator type: {}",
            call.func.name(),
            type_name(sample)
        )));
    }
    let plain = |value: Value| {
        Some(Picked {
            value,
            time: None,
            row: None,
        })
    };
    let pick = |i: usize| {
        Some(Picked {
            value: values[i].1.clone(),
            time: Some(rows[values[i].0].time),
            row: Some(base + values[i].0),
        })
    };
    let floats = || {
        values
            .iter()
            .filter_map(|(_, v)| v.as_f64())
            .collect::<Vec<f64>>()
    };
    Ok(match call.func {
        Func::Count if call.distinct => {
            let mut distinct: Vec<&Value> = Vec::new();
            for (_, v) in &values {
                if !distinct.contains(v) {
                    distinct.push(v);
                }
            }
            plain(Value::Integer(distinct.len() as i64))
        }
        Func::Count => plain(Value::Integer(values.len() as i64)),
        Func::Sum => plain(sum(values.iter().map(|(_, v)| *v))),
        Func::Mean => {
            let f = floats();
            plain(Value::Float(f.iter().sum::<f64>() / f.len() as f64))
        }
        Func::Median => {
            let mut f = floats();
            f.sort_by(f64::total_cmp);
            let n = f.len();
            let m = if n % 2 == 1 {
                f[n / 2]
            } else {
                f[n / 2 - 1] + (f[n / 2] - f[n / 2 - 1]) / 2.0
            };
            plain(Value::Float(m))
        }
        Func::Stddev => {
            let f = floats();
            if f.len() < 2 {
                plain(Value::Null)
            } else {
                let mean = f.iter().sum::<f64>() / f.len() as f64;
                let var = f.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (f.len() - 1) as f64;
                plain(Value::Float(var.sqrt()))
            }
        }
        Func::Spread => {
            let min = values.iter().map(|(_, v)| *v).min_by(|a, b| compare(a, b));
            let max = values.iter().map(|(_, v)| *v).max_by(|a, b| compare(a, b));
            match (min, max) {
                (Some(min), Some(max)) => plain(eval::arithmetic(BinaryOp::Sub, max, min)),
                _ => None,
            }
        }
        Func::Min => {
            let mut best = 0;
            for i in 1..values.len() {
                if compare(values[i].1, values[best].1).is_lt() {
                    best = i;
                }
            }
            pick(best)
        }
        Func::Max => {
            let mut best = 0;
            for i in 1..values.len() {
                if compare(values[i].1, values[best].1).is_gt() {
                    best = i;
                }
            }
            pick(best)
        }
        Func::First => pick(0),
        Func::Last => pick(values.len() - 1),
        Func::Percentile => {
            let mut order: Vec<usize> = (0..values.len()).collect();
            order.sort_by(|&a, &b| compare(values[a].1, values[b].1));
            let rank = (order.len() as f64 * call.percentile / 100.0 + 0.5).floor() as i64 - 1;
            if rank < 0 || rank >= order.len() as i64 {
                None
            } else {
                pick(order[rank as usize])
            }
        }
        Func::Distinct => plain(sample.clone()),
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Float(_) => "float",
        Value::Integer(_) => "integer",
        Value::Unsigned(_) => "unsigned",
        Value::String(_) => "string",
        Value::Boolean(_) => "boolean",
        Value::Null | Value::Time(_) => "null",
    }
}

fn sum<'v>(values: impl Iterator<Item = &'v Value>) -> Value {
    values.fold(Value::Null, |acc, v| match acc {
        Value::Null => v.clone(),
        acc => eval::arithmetic(BinaryOp::Add, &acc, v),
    })
}

fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
        (Value::Unsigned(x), Value::Unsigned(y)) => x.cmp(y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Boolean(x), Value::Boolean(y)) => x.cmp(y),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => std::cmp::Ordering::Equal,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let rows: Vec<Row> = (1..=10)
            .map(|i| Row {
                time: i,
                values: vec![Value::Integer(i * 10)],
            })
            .collect();
        let call = |func, percentile| Call {
            func,
            column: 0,
            distinct: false,
            percentile,
        };
        let p = aggregate(&call(Func::Percentile, 90.0), &rows, 0)
            .unwrap()
            .unwrap();
        assert_eq!((p.value, p.time), (Value::Integer(90), Some(9)));
        let m = aggregate(&call(Func::Median, 0.0), &rows, 0)
            .unwrap()
            .unwrap();
        assert_eq!(m.value, Value::Float(55.0));
        let s = aggregate(&call(Func::Spread, 0.0), &rows, 0)
            .unwrap()
            .unwrap();
        assert_eq!(s.value, Value::Integer(90));
        let sum = aggregate(&call(Func::Sum, 0.0), &rows, 0).unwrap().unwrap();
        assert_eq!(sum.value, Value::Integer(550));
    }
}
