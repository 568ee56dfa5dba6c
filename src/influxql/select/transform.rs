//! Transformations of a column over a series' rows (`derivative`,
//! `difference`, `cumulative_sum`, `moving_average`, `elapsed`, …): split
//! from the select list when the plan is made, applied to a series' rows
//! once they are computed.
//!
//! Apart because they run after either path, over output rows rather than
//! points.

use super::plan::Plan;
use crate::influxql::InfluxqlError;
use crate::influxql::ast::{BinaryOp, Expr, FUNCTIONS};
use crate::influxql::eval;
use crate::influxql::result::Value;

/// A transformation of one column over a series' rows.
#[derive(Debug, Clone)]
pub(super) struct Transform {
    pub(super) func: TransformFunc,
    column: usize,
    /// `derivative`'s and `elapsed`'s unit (ns), `moving_average`'s N.
    arg: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TransformFunc {
    Derivative,
    NonNegativeDerivative,
    Difference,
    NonNegativeDifference,
    CumulativeSum,
    MovingAverage,
    Elapsed,
}

impl TransformFunc {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "derivative" => Self::Derivative,
            "non_negative_derivative" => Self::NonNegativeDerivative,
            "difference" => Self::Difference,
            "non_negative_difference" => Self::NonNegativeDifference,
            "cumulative_sum" => Self::CumulativeSum,
            "moving_average" => Self::MovingAverage,
            "elapsed" => Self::Elapsed,
            _ => return None,
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Derivative => "derivative",
            Self::NonNegativeDerivative => "non_negative_derivative",
            Self::Difference => "difference",
            Self::NonNegativeDifference => "non_negative_difference",
            Self::CumulativeSum => "cumulative_sum",
            Self::MovingAverage => "moving_average",
            Self::Elapsed => "elapsed",
        }
    }
}

impl Transform {
    /// A select-list item that is a transformation: the transformation, and
    /// the expression it transforms (which becomes the column's).
    pub(super) fn split(e: &Expr, column: usize) -> Result<(Option<Self>, Expr), InfluxqlError> {
        let Expr::Call { name, args } = e else {
            return Ok((None, e.clone()));
        };
        let Some(func) = TransformFunc::parse(name) else {
            return Ok((None, e.clone()));
        };
        if let Some(&(_, min, max)) = FUNCTIONS.iter().find(|(f, _, _)| f == name)
            && !(min..=max).contains(&args.len())
        {
            return Err(InfluxqlError::Invalid(format!(
                "invalid number of arguments for {name}, expected {min}, got {}",
                args.len()
            )));
        }
        let arg = match (func, args.get(1)) {
            (_, None) => None,
            (TransformFunc::MovingAverage, Some(Expr::Integer(n))) if *n > 1 => Some(*n),
            (TransformFunc::MovingAverage, Some(_)) => {
                return Err(InfluxqlError::Invalid(
                    "moving_average window must be greater than 1".into(),
                ));
            }
            (_, Some(Expr::Duration(d))) if *d > 0 => Some(*d),
            (_, Some(_)) => {
                return Err(InfluxqlError::Invalid(format!(
                    "second argument to {name} must be a duration"
                )));
            }
        };
        let inner = args[0].clone();
        if !matches!(inner, Expr::VarRef { .. } | Expr::Call { .. }) {
            return Err(InfluxqlError::Invalid(format!(
                "expected field or aggregate argument in {name}()"
            )));
        }
        Ok((Some(Self { func, column, arg }), inner))
    }

    /// The transformed value for each row (`None`: no output at that row).
    /// Rows without a value are skipped, as 1.x skips them.
    fn apply(&self, rows: &[Vec<Value>], column: usize, default_unit: i64) -> Vec<Option<Value>> {
        let mut out = vec![None; rows.len()];
        let points: Vec<(usize, i64, &Value)> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, row)| match (&row[0], &row[column]) {
                (_, v) if v.is_null() => None,
                (Value::Time(t), v) => Some((i, *t, v)),
                _ => None,
            })
            .collect();
        let unit = self.arg.unwrap_or(match self.func {
            TransformFunc::Elapsed => 1,
            _ => default_unit,
        });
        match self.func {
            TransformFunc::CumulativeSum => {
                let mut sum = Value::Null;
                for (i, _, v) in &points {
                    sum = if sum.is_null() {
                        (*v).clone()
                    } else {
                        eval::arithmetic(BinaryOp::Add, &sum, v)
                    };
                    out[*i] = Some(sum.clone());
                }
            }
            TransformFunc::MovingAverage => {
                let n = self.arg.unwrap_or(2) as usize;
                for w in points.windows(n) {
                    let values: Vec<f64> = w.iter().filter_map(|(_, _, v)| v.as_f64()).collect();
                    let (i, _, _) = w[n - 1];
                    out[i] = Some(Value::Float(values.iter().sum::<f64>() / n as f64));
                }
            }
            _ => {
                for pair in points.windows(2) {
                    let ((_, t0, v0), (i, t1, v1)) = (pair[0], pair[1]);
                    let value = match self.func {
                        TransformFunc::Difference | TransformFunc::NonNegativeDifference => {
                            eval::arithmetic(BinaryOp::Sub, v1, v0)
                        }
                        TransformFunc::Elapsed => Value::Integer(t1.saturating_sub(t0) / unit),
                        _ => match (v0.as_f64(), v1.as_f64()) {
                            (Some(a), Some(b)) if t1 > t0 => {
                                let dt = t1.saturating_sub(t0) as f64;
                                Value::Float((b - a) / (dt / unit as f64))
                            }
                            _ => continue,
                        },
                    };
                    let negative = value.as_f64().is_some_and(|f| f < 0.0);
                    let non_negative = matches!(
                        self.func,
                        TransformFunc::NonNegativeDifference | TransformFunc::NonNegativeDerivative
                    );
                    if !(non_negative && negative) {
                        out[i] = Some(value);
                    }
                }
            }
        }
        out
    }
}

impl Plan<'_> {
    /// Applies every column's transformation over the series' rows; a row
    /// stays where some transformation gave a value.
    pub(super) fn transform(&self, rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
        let unit = self.window.map_or(1_000_000_000, |(interval, _)| interval);
        let outputs: Vec<Vec<Option<Value>>> = self
            .transforms
            .iter()
            .map(|t| t.apply(&rows, t.column + 1, unit))
            .collect();
        // Windows read only as the value before the first are not shown.
        let first = match (self.bounds.start, self.window) {
            (Some(start), Some((interval, offset))) => self.window_start(start, interval, offset),
            _ => i64::MIN,
        };
        rows.iter()
            .enumerate()
            .filter(|(_, row)| matches!(row[0], Value::Time(t) if t >= first))
            .filter(|(i, _)| outputs.iter().any(|o| o[*i].is_some()))
            .map(|(i, row)| {
                std::iter::once(row[0].clone())
                    .chain(outputs.iter().map(|o| o[i].clone().unwrap_or(Value::Null)))
                    .collect()
            })
            .collect()
    }
}
