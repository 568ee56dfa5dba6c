//! Windows and `fill`: the windows of `GROUP BY time(interval, offset)`
//! (under `tz()` in local time), a series' rows split into them, and an
//! aggregate series' rows made from its calls' results per window, empty
//! windows filled.
//!
//! Apart because both paths end here: the row path's aggregates and
//! DataFusion's (`pushdown`) make their rows with [`Plan::window_rows`].

use super::aggregate::{Func, Picked};
use super::plan::Plan;
use super::rows::evaluate;
use super::scan::Row;
use crate::influxql::InfluxqlError;
use crate::influxql::ast::{Fill, Number};
use crate::influxql::result::{Value, zone_offset};

/// Windows one series may produce: a guard against `fill` over a range far
/// larger than the interval.
const MAX_WINDOWS: i64 = 1_000_000;

/// One window of a series: its start and the range of its rows.
pub(super) struct Window {
    pub(super) start: i64,
    pub(super) rows: std::ops::Range<usize>,
}

impl Plan<'_> {
    /// An aggregate series' rows from its calls' results per window (both in
    /// output order): `fill`, the lone selector's time and point, the
    /// columns' expressions over the calls. `aux` reads the row a selector
    /// picked.
    pub(super) fn window_rows<'r>(
        &self,
        starts: &[i64],
        results: &[Vec<Option<Picked>>],
        present: &[bool],
        aux: impl Fn(usize) -> &'r [Value],
    ) -> Vec<Vec<Value>> {
        // A series none of whose calls saw a value has no rows (fill or not).
        if results.iter().flatten().all(Option::is_none) {
            return vec![];
        }
        let fill = self.select.fill.unwrap_or(Fill::Null);
        let filled: Vec<Vec<Option<Value>>> = results
            .iter()
            .zip(&self.calls)
            .map(|(r, call)| {
                // A count of a field the measurement has is 0 in an empty
                // window; of one it lacks, null.
                let zero = call.func == Func::Count && present[call.column];
                fill_column(r, starts, fill, zero)
            })
            .collect();
        let single_selector =
            self.window.is_none() && self.calls.len() == 1 && self.calls[0].func.is_selector();
        let mut out = Vec::new();
        for (w, start) in starts.iter().enumerate() {
            if filled.iter().all(|c| c[w].is_none()) {
                continue;
            }
            let values: Vec<Value> = filled
                .iter()
                .map(|c| c[w].clone().unwrap_or(Value::Null))
                .collect();
            // A lone selector carries its point: its time (without GROUP BY
            // time) and the other columns asked for.
            let picked = if self.calls.len() == 1 {
                results[0][w].as_ref().and_then(|p| p.row)
            } else {
                None
            };
            let time = match (single_selector, &results[0][w]) {
                (true, Some(Picked { time: Some(t), .. })) => *t,
                _ => *start,
            };
            let aux: &[Value] = picked.map_or(&[], &aux);
            let row: Vec<Value> = std::iter::once(Value::Time(time))
                .chain(self.columns.iter().map(|c| evaluate(&c.expr, aux, &values)))
                .collect();
            out.push(row);
        }
        out
    }

    /// The windows of one series: every window of the time range under
    /// `GROUP BY time` (empty ones included, for `fill`), else one window
    /// starting at the range's start (the epoch when unbounded).
    pub(super) fn windows(&self, rows: &[Row]) -> Result<Vec<Window>, InfluxqlError> {
        let Some(first) = rows.first() else {
            return Ok(vec![]);
        };
        if self.window.is_none() {
            return Ok(vec![Window {
                start: self.bounds.start.unwrap_or(0),
                rows: 0..rows.len(),
            }]);
        }
        let mut out = Vec::new();
        let mut i = 0;
        for (start, next) in self.window_list(first.time)? {
            let from = i;
            while i < rows.len() && rows[i].time < next {
                i += 1;
            }
            out.push(Window {
                start,
                rows: from..i,
            });
        }
        Ok(out)
    }

    /// Under `GROUP BY time`, the windows (start, start of the next) from
    /// the statement's start (else the series' first time, `first`) to its
    /// end.
    pub(super) fn window_list(&self, first: i64) -> Result<Vec<(i64, i64)>, InfluxqlError> {
        let (Some((interval, offset)), Some(end)) = (self.window, self.end()) else {
            return Ok(vec![]);
        };
        let start = self.scan_start().unwrap_or(first);
        let mut t = self.window_start(start, interval, offset);
        let last = self.window_start(end, interval, offset);
        if last.saturating_sub(t) / interval > MAX_WINDOWS {
            return Err(InfluxqlError::Invalid(format!(
                "GROUP BY time({}ns) over this time range makes more than {MAX_WINDOWS} windows",
                interval
            )));
        }
        let mut out = Vec::new();
        while t <= last {
            let Some(after) = t.checked_add(interval) else {
                break;
            };
            let next = self.window_start(after, interval, offset).max(t + 1);
            out.push((t, next));
            t = next;
        }
        Ok(out)
    }

    /// The start of the window holding `t`: a multiple of the interval from the
    /// epoch plus the offset, in local time when `tz()` is set.
    /// Computed in i128 so that times near the ends of the range cannot
    /// overflow; the result is clamped to i64.
    pub(super) fn window_start(&self, t: i64, interval: i64, offset: i64) -> i64 {
        let clamp = |v: i128| v.clamp(i64::MIN.into(), i64::MAX.into()) as i64;
        let zone = i128::from(self.tz.map_or(0, |tz| zone_offset(tz, t)));
        let (interval, offset) = (i128::from(interval), i128::from(offset));
        let local = i128::from(t) - offset + zone;
        let start = local - local.rem_euclid(interval) + offset - zone;
        match self.tz {
            // Across a daylight-saving change the zone at the start differs.
            Some(tz) => {
                let moved = zone - i128::from(zone_offset(tz, clamp(start)));
                if moved != 0 && moved.abs() < interval {
                    clamp(start + moved)
                } else {
                    clamp(start)
                }
            }
            None => clamp(start),
        }
    }
}

/// `fill`, per column: windows without a value become null, stay out (`none`),
/// repeat the previous value, interpolate, or take a number.
fn fill_column(
    values: &[Option<Picked>],
    starts: &[i64],
    fill: Fill,
    count_zero: bool,
) -> Vec<Option<Value>> {
    let known: Vec<Option<Value>> = values
        .iter()
        .map(|p| p.as_ref().map(|p| p.value.clone()))
        .collect();
    // A fill number takes the column's type: 1.x truncates -1.5 to -1 for an
    // integer aggregate.
    let integer = known
        .iter()
        .flatten()
        .any(|v| matches!(v, Value::Integer(_)));
    match fill {
        Fill::None => known,
        Fill::Null => known
            .into_iter()
            .map(|v| {
                Some(v.unwrap_or(if count_zero {
                    Value::Integer(0)
                } else {
                    Value::Null
                }))
            })
            .collect(),
        Fill::Value(n) => known
            .into_iter()
            .map(|v| {
                Some(v.unwrap_or(match n {
                    Number::Integer(i) => Value::Integer(i),
                    Number::Float(f) if integer => Value::Integer(f as i64),
                    Number::Float(f) => Value::Float(f),
                }))
            })
            .collect(),
        Fill::Previous => {
            let mut last = Value::Null;
            known
                .into_iter()
                .map(|v| {
                    if let Some(v) = &v
                        && !v.is_null()
                    {
                        last = v.clone();
                    }
                    Some(v.unwrap_or_else(|| last.clone()))
                })
                .collect()
        }
        Fill::Linear => {
            let mut out: Vec<Option<Value>> = known.clone();
            let points: Vec<usize> = (0..known.len()).filter(|&i| known[i].is_some()).collect();
            for pair in points.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                let (Some(va), Some(vb)) = (&known[a], &known[b]) else {
                    continue;
                };
                for (i, slot) in out.iter_mut().enumerate().take(b).skip(a + 1) {
                    *slot = Some(interpolate(va, vb, starts[a], starts[b], starts[i]));
                }
            }
            out.into_iter()
                .map(|v| Some(v.unwrap_or(Value::Null)))
                .collect()
        }
    }
}

fn interpolate(a: &Value, b: &Value, ta: i64, tb: i64, t: i64) -> Value {
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => {
            let step = (i128::from(*y) - i128::from(*x)) * i128::from(t - ta) / i128::from(tb - ta);
            Value::Integer((i128::from(*x) + step) as i64)
        }
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => Value::Float(x + (y - x) * (t - ta) as f64 / (tb - ta) as f64),
            _ => Value::Null,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picked(v: Option<f64>) -> Option<Picked> {
        v.map(|f| Picked {
            value: Value::Float(f),
            time: None,
            row: None,
        })
    }

    #[test]
    fn fills() {
        let values = [picked(Some(1.0)), None, None, picked(Some(4.0)), None];
        let starts = [0, 10, 20, 30, 40];
        let f = |fill| fill_column(&values, &starts, fill, false);
        let some = |v: f64| Some(Value::Float(v));
        assert_eq!(
            f(Fill::Linear),
            vec![
                some(1.0),
                some(2.0),
                some(3.0),
                some(4.0),
                Some(Value::Null)
            ]
        );
        assert_eq!(
            f(Fill::Previous),
            vec![some(1.0), some(1.0), some(1.0), some(4.0), some(4.0)]
        );
        assert_eq!(f(Fill::None)[1], None);
        assert_eq!(f(Fill::Null)[1], Some(Value::Null));
        assert_eq!(
            f(Fill::Value(Number::Integer(0)))[1],
            Some(Value::Integer(0))
        );
    }
}
