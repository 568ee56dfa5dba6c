//! Aggregates DataFusion computes. A statement whose calls are all `mean`,
//! `sum`, `count`, `min`, `max`, `first`, `last` or `spread` of fields has
//! DataFusion group the measurement's rows by series and window and compute
//! each call per group, so what InfluxQL's own machinery (`fill`, the
//! columns' arithmetic, transformations, `LIMIT`, `ORDER BY`) then holds is a
//! value per series and window, not a row per point: a day of a thousand
//! hosts is a few hundred thousand groups instead of millions of rows held in
//! memory.
//!
//! The answers are the row path's exactly: windows are `date_bin` with the
//! origin 1.x aligns them to (the epoch plus the offset, shifted by the
//! zone under `tz()` while its offset does not change over the statement's
//! range); `min` and `max` pick the earliest of equal values, and `first`
//! and `last`, among points of the group at the same time (series the group
//! merges), the larger value, as 1.x does under `GROUP BY time` (the row
//! path takes whichever its sort puts first); a lone selector without
//! `GROUP BY time` reports its point's time. What does not fit (other functions, `distinct`, a selector's other
//! columns, types 1.x refuses, a zone whose offset changes, times at the ends
//! of the range) stays on the row path.

use arrow::array::{Array, AsArray};
use arrow::datatypes::IntervalMonthDayNano;
use arrow::datatypes::TimestampNanosecondType;
use chrono_tz::Tz;
use datafusion::execution::memory_pool::MemoryReservation;
use datafusion::functions::expr_fn::date_bin;
use datafusion::functions_aggregate::expr_fn::{avg, count, max, min, sum};
use datafusion::functions_aggregate::first_last::first_value_udaf;
use datafusion::functions_aggregate::min_max::{max_udaf, min_udaf};
use datafusion::logical_expr::{Expr as DfExpr, ExprFunctionExt, ident, lit};
use datafusion::physical_plan::{displayable, execute_stream};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use futures::StreamExt;

use super::aggregate::{Func, Picked};
use super::plan::{Plan, has_bare_ref};
use super::scan::{str_at, tag_key, value_at};
use crate::catalog::Table;
use crate::influxql::InfluxqlError;
use crate::influxql::ast::BinaryOp;
use crate::influxql::eval::{self, Columns};
use crate::influxql::result::{Series, Value, zone_offset};
use crate::schema::{ColumnType, TIME_COLUMN};

/// How far apart the zone's offset is sampled when checking it does not
/// change over a statement's range: offsets last months between changes.
const ZONE_SAMPLE: i64 = 3_600_000_000_000;

/// The most samples taken (about 23 years of hours); a longer range under
/// `tz()` stays on the row path.
const MAX_ZONE_SAMPLES: i64 = 200_000;

/// How one call's value in a window is read from the aggregate's columns.
#[derive(Debug)]
enum Pushed {
    /// A field the measurement lacks (or a tag): no value in any window.
    Absent,
    /// `mean`, `sum`, `min`, `max`, `first`, `last`: null where the window
    /// had no value. `time`: the selected point's time, for a lone selector
    /// without `GROUP BY time`.
    Value { column: usize, time: Option<usize> },
    /// `count`: 0 where the window had no value.
    Count { column: usize },
    /// `spread`: the maximum less the minimum.
    Spread { min: usize, max: usize },
}

/// A statement's calls as DataFusion aggregates over one measurement.
pub(super) struct Pushdown {
    calls: Vec<Pushed>,
    aggregates: Vec<DfExpr>,
    /// The window start of a row, under `GROUP BY time`.
    window: Option<DfExpr>,
}

impl Plan<'_> {
    /// The statement as aggregates over a measurement with these columns, or
    /// `None` when it needs the row path.
    pub(super) fn pushdown(&self, columns: &Columns) -> Option<Pushdown> {
        if !self.aggregate || self.columns.iter().any(|c| has_bare_ref(&c.expr)) {
            return None;
        }
        let window = match self.window {
            Some((interval, offset)) => Some(self.window_expr(interval, offset)?),
            None => None,
        };
        let single_selector =
            self.window.is_none() && self.calls.len() == 1 && self.calls[0].func.is_selector();
        let time = || ident(TIME_COLUMN);
        let mut aggregates: Vec<DfExpr> = Vec::new();
        let mut add = |e: DfExpr| {
            aggregates.push(e.alias(format!("a{}", aggregates.len())));
            aggregates.len() - 1
        };
        let mut calls = Vec::with_capacity(self.calls.len());
        for call in &self.calls {
            if call.distinct {
                return None;
            }
            let (name, _) = &self.refs[call.column];
            let ty = match columns.get(name) {
                Some(t) if t.is_field() => *t,
                _ => {
                    calls.push(Pushed::Absent);
                    continue;
                }
            };
            // Types 1.x refuses stay where the refusal is made.
            let numeric = matches!(
                ty,
                ColumnType::Float | ColumnType::Integer | ColumnType::UInteger
            );
            let x = ident(name);
            let has_value = x.clone().is_not_null();
            let pushed = match call.func {
                Func::Mean if numeric => Pushed::Value {
                    column: add(avg(x)),
                    time: None,
                },
                Func::Sum if numeric => Pushed::Value {
                    column: add(sum(x)),
                    time: None,
                },
                Func::Count => Pushed::Count {
                    column: add(count(x)),
                },
                Func::Spread if numeric => Pushed::Spread {
                    min: add(min(x.clone())),
                    max: add(max(x)),
                },
                Func::Min | Func::Max if numeric => {
                    let ascending = call.func == Func::Min;
                    // The earliest of equal values.
                    let picked = first_value_udaf()
                        .call(vec![time()])
                        .order_by(vec![
                            x.clone().sort(ascending, false),
                            time().sort(true, false),
                        ])
                        .filter(has_value)
                        .build()
                        .ok()?;
                    let time = single_selector.then(|| add(picked));
                    let column = add(if ascending { min(x) } else { max(x) });
                    Pushed::Value { column, time }
                }
                Func::First | Func::Last => {
                    let first = call.func == Func::First;
                    // Of points at the same time, the larger value.
                    let value = first_value_udaf()
                        .call(vec![x.clone()])
                        .order_by(vec![time().sort(first, false), x.sort(false, false)])
                        .filter(has_value.clone())
                        .build()
                        .ok()?;
                    let at = if first { min_udaf() } else { max_udaf() }
                        .call(vec![time()])
                        .filter(has_value)
                        .build()
                        .ok()?;
                    let time = single_selector.then(|| add(at));
                    Pushed::Value {
                        column: add(value),
                        time,
                    }
                }
                _ => return None,
            };
            calls.push(pushed);
        }
        Some(Pushdown {
            calls,
            aggregates,
            window,
        })
    }

    /// A row's window start as `Plan::window_start` makes it, as `date_bin`:
    /// `None` under a `tz()` whose offset changes over the statement's range
    /// (or a range unbounded below, where that cannot be checked).
    fn window_expr(&self, interval: i64, offset: i64) -> Option<DfExpr> {
        let zone = match self.tz {
            None => 0,
            Some(tz) => self.fixed_zone(tz, interval)?,
        };
        // Any origin the windows are aligned to; this one lies in the first
        // interval after the epoch.
        let origin = (i128::from(offset) - i128::from(zone)).rem_euclid(i128::from(interval));
        let origin = i64::try_from(origin).ok()?;
        Some(date_bin(
            lit(ScalarValue::IntervalMonthDayNano(Some(
                IntervalMonthDayNano::new(0, 0, interval),
            ))),
            ident(TIME_COLUMN),
            lit(ScalarValue::TimestampNanosecond(Some(origin), None)),
        ))
    }

    /// The zone's offset when it is the same over the statement's windows
    /// (from a window before its start to one after its end), sampled hourly.
    fn fixed_zone(&self, tz: Tz, interval: i64) -> Option<i64> {
        let low = self.scan_start()?.checked_sub(interval)?;
        let high = self.end()?.checked_add(interval)?;
        if high.checked_sub(low)? / ZONE_SAMPLE > MAX_ZONE_SAMPLES {
            return None;
        }
        let zone = zone_offset(tz, low);
        let mut t = low;
        while t < high {
            t = t.saturating_add(ZONE_SAMPLE).min(high);
            if zone_offset(tz, t) != zone {
                return None;
            }
        }
        Some(zone)
    }

    /// The measurement's series, aggregated by DataFusion; `None` when a row
    /// lies where `date_bin` cannot place it (times within two windows of
    /// the range's ends), which the row path answers instead.
    pub(super) async fn aggregate_in_datafusion(
        &self,
        session: &SessionContext,
        table: &Table,
        columns: &Columns,
        pushdown: &Pushdown,
        memory: &MemoryReservation,
    ) -> Result<Option<Vec<Series>>, InfluxqlError> {
        // Calls on fields the measurement lacks have no value anywhere, and
        // a series without any value has no rows.
        if pushdown.aggregates.is_empty() {
            return Ok(Some(vec![]));
        }
        let group = self.group_tags(table);
        let mut keys: Vec<DfExpr> = group
            .iter()
            .enumerate()
            .map(|(i, g)| tag_key(g, columns).alias(format!("g{i}")))
            .collect();
        if let Some(window) = &pushdown.window {
            keys.push(window.clone().alias("w"));
        }
        let sort: Vec<_> = (0..keys.len())
            .map(|i| {
                let name = if i < group.len() {
                    format!("g{i}")
                } else {
                    "w".to_string()
                };
                ident(name).sort(true, true)
            })
            .collect();
        let mut frame = self
            .filtered(session, table, columns)
            .await?
            .aggregate(keys, pushdown.aggregates.clone())?;
        // Without keys the one group needs no order (and DataFusion refuses
        // an empty one).
        if !sort.is_empty() {
            frame = frame.sort(sort)?;
        }
        // A row per series and window: what the answer holds anyway.
        let plan = frame.create_physical_plan().await?;
        tracing::debug!(plan = %displayable(plan.as_ref()).indent(true), "InfluxQL aggregate");
        let mut stream = execute_stream(plan, session.task_ctx())?;
        let mut batches = Vec::new();
        let mut held = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            // Sorted output may be slices of one buffer: count what they hold.
            let size = crate::ingester::buffer::batch_bytes(&batch);
            memory.try_grow(size)?;
            held += size;
            batches.push(batch);
        }
        let windowed = pushdown.window.is_some();
        if windowed
            && batches
                .iter()
                .any(|b| b.column(group.len()).null_count() > 0)
        {
            memory.shrink(held);
            return Ok(None);
        }
        let present: Vec<bool> = self
            .refs
            .iter()
            .map(|(name, _)| columns.get(name).is_some_and(|t| t.is_field()))
            .collect();
        let first = group.len() + usize::from(windowed);
        let mut out = Vec::new();
        let mut key: Vec<String> = Vec::new();
        // The current series' windows: start, and each call's result.
        let mut windows: Vec<(i64, Vec<Option<Picked>>)> = Vec::new();
        for batch in &batches {
            let aggregates: Vec<_> = batch.columns()[first..].iter().collect();
            for row in 0..batch.num_rows() {
                let same = !windows.is_empty()
                    && (0..group.len()).all(|i| str_at(batch.column(i).as_ref(), row) == key[i]);
                if !same {
                    let values = self.pushed_rows(&windows, &present)?;
                    self.push_series(&table.name, &group, &key, values, memory, &mut out)?;
                    windows.clear();
                    key = (0..group.len())
                        .map(|i| str_at(batch.column(i).as_ref(), row).to_string())
                        .collect();
                }
                let start = match windowed {
                    true => batch
                        .column(group.len())
                        .as_primitive::<TimestampNanosecondType>()
                        .value(row),
                    false => self.bounds.start.unwrap_or(0),
                };
                let results = pushdown
                    .calls
                    .iter()
                    .map(|call| picked(call, &aggregates, row))
                    .collect();
                windows.push((start, results));
            }
        }
        let values = self.pushed_rows(&windows, &present)?;
        self.push_series(&table.name, &group, &key, values, memory, &mut out)?;
        drop(batches);
        memory.shrink(held);
        Ok(Some(out))
    }

    /// One series' rows from the windows DataFusion returned (those with
    /// rows, in time order): every window of the statement's range, empty
    /// ones filled.
    fn pushed_rows(
        &self,
        windows: &[(i64, Vec<Option<Picked>>)],
        present: &[bool],
    ) -> Result<Vec<Vec<Value>>, InfluxqlError> {
        let Some((first, _)) = windows.first() else {
            return Ok(vec![]);
        };
        let mut starts: Vec<i64> = match self.window {
            Some(_) => self
                .window_list(*first)?
                .into_iter()
                .map(|(s, _)| s)
                .collect(),
            None => vec![*first],
        };
        let mut results = vec![vec![None; starts.len()]; self.calls.len()];
        for (start, picked) in windows {
            // A window past the last the range can hold has no row, as on
            // the row path.
            let Ok(i) = starts.binary_search(start) else {
                continue;
            };
            for (call, p) in picked.iter().enumerate() {
                results[call][i] = p.clone();
            }
        }
        if self.select.order_desc {
            starts.reverse();
            for r in &mut results {
                r.reverse();
            }
        }
        let rows = self.window_rows(&starts, &results, present, |_| &[]);
        Ok(self.finish(rows))
    }
}

/// One call's result in one group.
fn picked(call: &Pushed, aggregates: &[&arrow::array::ArrayRef], row: usize) -> Option<Picked> {
    let at = |column: usize| value_at(aggregates[column].as_ref(), row);
    let plain = |value: Value| {
        Some(Picked {
            value,
            time: None,
            row: None,
        })
    };
    match *call {
        Pushed::Absent => None,
        Pushed::Count { column } => match at(column) {
            Value::Integer(0) | Value::Null => None,
            count => plain(count),
        },
        Pushed::Spread { min, max } => match (at(min), at(max)) {
            (Value::Null, _) | (_, Value::Null) => None,
            (min, max) => plain(eval::arithmetic(BinaryOp::Sub, &max, &min)),
        },
        Pushed::Value { column, time } => match at(column) {
            Value::Null => None,
            value => Some(Picked {
                value,
                time: time.and_then(|t| match at(t) {
                    Value::Time(t) => Some(t),
                    _ => None,
                }),
                row: None,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::Principal;
    use crate::catalog::table_columns;
    use crate::influxql::Context;
    use crate::influxql::ast::Statement;
    use crate::influxql::parse;
    use crate::influxql::select::{measurements, select_with};
    use crate::query::Querier;
    use crate::testing::{Buffered, catalog_with_table, chunk, persist};

    const S: i64 = 1_000_000_000;

    /// Hosts `a`, `b`, `c` every 7, 11 and 13 s from -50 s to 300 s, each
    /// time its own (no two hosts at one time), `x` missing on some points and
    /// `y` on others, `c` silent from 100 s to 160 s; half of it persisted,
    /// half in the ingester's buffer.
    async fn querier(dir: &std::path::Path) -> Querier {
        let mut rows = Vec::new();
        for (host, step, shift) in [("a", 7, 0), ("b", 11, 1), ("c", 13, 2)] {
            let mut t = -50 * S + shift * S / 3;
            let mut i = 0;
            while t < 300 * S {
                if !(host == "c" && (100 * S..160 * S).contains(&t)) {
                    let x = (i % 5 != 4).then(|| ((i * 37 + step) % 101) as f64 / 4.0);
                    let y = (i % 3 != 1).then(|| 1000.0 - (i * 13 % 17) as f64);
                    rows.push((host, x, y, t));
                }
                t += step * S;
                i += 1;
            }
        }
        rows.sort_by_key(|r| r.3);
        let (older, newer) = rows.split_at(rows.len() / 2);
        let (store, catalog) = catalog_with_table(dir).await;
        persist(&catalog, &store, "i1", 1, chunk(1, older)).await;
        Querier::new(catalog, store, Arc::new(Buffered(vec![chunk(2, newer)])))
    }

    async fn run(querier: &Querier, text: &str, pushdown: bool) -> (bool, Vec<Series>) {
        let query = parse(text).unwrap();
        let Statement::Select(s) = &query.statements[0] else {
            panic!("{text} is not a SELECT");
        };
        let principal = Principal::admin();
        let ctx = Context {
            querier,
            principal: &principal,
            database: Some("db"),
            now: 400 * S,
        };
        let (database, _) = querier.session("db").await.unwrap();
        let tables = measurements(&s.from, database.tables().cloned().collect()).unwrap();
        let columns: Columns = table_columns(&tables[0])
            .map(|(n, t)| (n.to_string(), t))
            .collect();
        let pushed = Plan::new(s, &tables, ctx.now)
            .unwrap()
            .pushdown(&columns)
            .is_some();
        let series = select_with(&ctx, s, pushdown)
            .await
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        (pushed, series)
    }

    /// Floats as the compared answers allow: DataFusion may add a window's
    /// values in another order.
    fn same(a: &[Series], b: &[Series]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(a, b)| {
                (&a.name, &a.tags, &a.columns, a.values.len())
                    == (&b.name, &b.tags, &b.columns, b.values.len())
                    && a.values
                        .iter()
                        .flatten()
                        .zip(b.values.iter().flatten())
                        .all(|(x, y)| match (x, y) {
                            (Value::Float(x), Value::Float(y)) => {
                                (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
                            }
                            _ => x == y,
                        })
            })
    }

    /// Every shape DataFusion aggregates answers as the row path does.
    #[tokio::test]
    async fn aggregates_in_datafusion_answer_as_the_row_path() {
        let dir = tempfile::tempdir().unwrap();
        let querier = querier(dir.path()).await;
        let range = "time >= 0s AND time < 200s";
        let all = "mean(x), sum(x), count(x), min(x), max(x), first(x), last(x), spread(x)";
        let statements = [
            format!("SELECT {all} FROM m WHERE {range} GROUP BY time(30s)"),
            format!("SELECT {all} FROM m WHERE {range} GROUP BY time(30s, 7s), host fill(0)"),
            format!("SELECT {all} FROM m WHERE {range} GROUP BY time(20s, -3s), * fill(none)"),
            format!(
                "SELECT mean(x), count(y) FROM m WHERE {range} GROUP BY time(10s), host \
                 fill(previous) ORDER BY time DESC LIMIT 4 OFFSET 1"
            ),
            format!(
                "SELECT mean(y), last(x) FROM m WHERE {range} GROUP BY time(10s), host fill(linear)"
            ),
            format!("SELECT count(y) FROM m WHERE {range} AND host = 'c' GROUP BY time(10s)"),
            format!(
                "SELECT count(y), mean(x) FROM m WHERE {range} AND host != 'a' GROUP BY time(15s) fill(-1)"
            ),
            format!("SELECT {all} FROM m WHERE {range} AND host =~ /[ab]/ GROUP BY host"),
            format!("SELECT {all} FROM m"),
            "SELECT max(x) FROM m".into(),
            "SELECT min(y) FROM m GROUP BY host".into(),
            "SELECT first(x) FROM m WHERE host = 'b'".into(),
            "SELECT last(y) FROM m WHERE time < 100s GROUP BY host".into(),
            "SELECT mean(x) * 2 + mean(y), spread(y) / count(y) FROM m GROUP BY host".into(),
            format!("SELECT derivative(mean(x), 10s) FROM m WHERE {range} GROUP BY time(30s)"),
            format!(
                "SELECT difference(max(y)) FROM m WHERE {range} GROUP BY time(30s), host fill(0)"
            ),
            // Unbounded below: each series' windows start at its first point.
            "SELECT mean(x), count(x) FROM m WHERE time < 100s GROUP BY time(25s), host".into(),
            "SELECT mean(x) FROM m WHERE time < 100s AND x > 20 GROUP BY time(25s, 5s)".into(),
            // A zone whose offset (+05:30) is not a multiple of the interval.
            format!(
                "SELECT mean(x), first(y) FROM m WHERE {range} GROUP BY time(7s), host tz('Asia/Kolkata')"
            ),
            format!("SELECT sum(y) FROM m WHERE {range} GROUP BY time(1m) tz('America/New_York')"),
            format!(
                "SELECT mean(x) FROM m WHERE {range} GROUP BY time(30s), host SLIMIT 1 SOFFSET 1"
            ),
            // Fields the measurement lacks.
            format!("SELECT mean(x), count(nosuch) FROM m WHERE {range} GROUP BY time(30s)"),
            format!("SELECT mean(nosuch) FROM m WHERE {range} GROUP BY time(30s)"),
            format!("SELECT count(host) FROM m WHERE {range}"),
            format!("SELECT mean(x) FROM m WHERE {range} AND host = 'nosuch' GROUP BY time(30s)"),
        ];
        for text in &statements {
            let (pushed, rows_path) = run(&querier, text, false).await;
            assert!(pushed, "{text} is not aggregated in DataFusion");
            let (_, datafusion) = run(&querier, text, true).await;
            assert!(
                same(&datafusion, &rows_path),
                "{text}\nDataFusion: {datafusion:?}\nrows: {rows_path:?}"
            );
            let nothing = text.contains("mean(nosuch)")
                || text.contains("count(host)")
                || text.contains("'nosuch'");
            assert_eq!(datafusion.is_empty(), nothing, "{text}: {datafusion:?}");
        }
    }

    /// What DataFusion does not aggregate stays on the row path.
    #[tokio::test]
    async fn other_statements_stay_on_the_row_path() {
        let dir = tempfile::tempdir().unwrap();
        let querier = querier(dir.path()).await;
        for text in [
            "SELECT x FROM m",
            "SELECT median(x) FROM m GROUP BY time(30s)",
            "SELECT percentile(x, 90) FROM m",
            "SELECT count(distinct(x)) FROM m",
            "SELECT distinct(x) FROM m",
            "SELECT max(x), host FROM m",
            "SELECT stddev(x) FROM m",
            "SELECT derivative(x) FROM m",
            // Unbounded below, under a zone: its offset cannot be checked.
            "SELECT mean(x) FROM m GROUP BY time(1m) tz('Asia/Kolkata')",
        ] {
            let (pushed, _) = run(&querier, text, true).await;
            assert!(!pushed, "{text}");
        }
    }

    /// Of points at the same time, `first` and `last` pick the larger value
    /// (1.x's reducers); a lone selector reports its point's time.
    #[tokio::test]
    async fn ties_and_a_lone_selectors_time() {
        let dir = tempfile::tempdir().unwrap();
        let (store, catalog) = catalog_with_table(dir.path()).await;
        let rows = [
            ("a", Some(1.0), Some(9.0), 10 * S),
            ("b", Some(5.0), Some(9.0), 10 * S),
            ("c", Some(3.0), None, 10 * S),
            ("a", Some(7.0), Some(2.0), 50 * S),
            ("b", Some(9.0), None, 50 * S),
            ("c", Some(8.0), Some(4.0), 50 * S),
        ];
        persist(&catalog, &store, "i1", 1, chunk(1, &rows)).await;
        let querier = Querier::new(catalog, store, Arc::new(Buffered(vec![])));
        let values = |series: &[Series]| series[0].values.clone();
        let text = "SELECT first(x), last(x), max(y), min(y) FROM m WHERE time >= 0s AND time < 100s GROUP BY time(100s)";
        let (pushed, series) = run(&querier, text, true).await;
        assert!(pushed);
        assert_eq!(
            values(&series),
            [vec![
                Value::Time(0),
                Value::Float(5.0),
                Value::Float(9.0),
                Value::Float(9.0),
                Value::Float(2.0)
            ]]
        );
        for (text, time, value) in [
            ("SELECT max(y) FROM m", 10, 9.0),
            ("SELECT min(x) FROM m", 10, 1.0),
            ("SELECT last(y) FROM m", 50, 4.0),
            ("SELECT first(y) FROM m WHERE time > 20s", 50, 4.0),
        ] {
            let (pushed, series) = run(&querier, text, true).await;
            assert!(pushed);
            assert_eq!(
                values(&series),
                [vec![Value::Time(time * S), Value::Float(value)]],
                "{text}"
            );
        }
    }

    /// A tag compared with a literal reaches the table scan as a filter on
    /// the plain column (which statistics prune by), with the series key's
    /// `coalesce` only in the grouping.
    #[tokio::test]
    async fn tag_filters_reach_the_scan_on_the_plain_column() {
        let dir = tempfile::tempdir().unwrap();
        let querier = querier(dir.path()).await;
        let query = parse(
            "SELECT mean(x) FROM m WHERE host = 'b' AND time >= 0s AND time < 100s \
             GROUP BY time(10s), host",
        )
        .unwrap();
        let Statement::Select(s) = &query.statements[0] else {
            unreachable!()
        };
        let (database, session) = querier.session("db").await.unwrap();
        let tables = measurements(&s.from, database.tables().cloned().collect()).unwrap();
        let columns: Columns = table_columns(&tables[0])
            .map(|(n, t)| (n.to_string(), t))
            .collect();
        let plan = Plan::new(s, &tables, 400 * S).unwrap();
        let optimized = plan
            .filtered(&session, &tables[0], &columns)
            .await
            .unwrap()
            .into_optimized_plan()
            .unwrap()
            .display_indent()
            .to_string();
        let scan = optimized
            .lines()
            .find(|l| l.contains("TableScan"))
            .unwrap_or_default();
        assert!(scan.contains("m.host = Utf8(\"b\")"), "{optimized}");
        assert!(!optimized.contains("coalesce"), "{optimized}");
    }

    /// A point at the very start of time, where `date_bin` cannot place it:
    /// the row path answers (here: too many windows to the end of the range).
    #[tokio::test]
    async fn times_date_bin_cannot_place_take_the_row_path() {
        let dir = tempfile::tempdir().unwrap();
        let (store, catalog) = catalog_with_table(dir.path()).await;
        let rows = [
            ("a", Some(1.0), None, i64::MIN + 5),
            ("a", Some(2.0), None, 10 * S),
        ];
        persist(&catalog, &store, "i1", 1, chunk(1, &rows)).await;
        let querier = Querier::new(catalog, store, Arc::new(Buffered(vec![])));
        let query = parse("SELECT mean(x) FROM m WHERE time < 20s GROUP BY time(1h)").unwrap();
        let Statement::Select(s) = &query.statements[0] else {
            unreachable!()
        };
        let principal = Principal::admin();
        let ctx = Context {
            querier: &querier,
            principal: &principal,
            database: Some("db"),
            now: 400 * S,
        };
        let err = select_with(&ctx, s, true).await.unwrap_err();
        assert!(
            err.to_string().contains("makes more than 1000000 windows"),
            "{err}"
        );
        // Bounded to where date_bin works, DataFusion answers.
        let query = parse("SELECT mean(x) FROM m WHERE time > 0s AND time < 20s GROUP BY time(1h)")
            .unwrap();
        let Statement::Select(s) = &query.statements[0] else {
            unreachable!()
        };
        let series = select_with(&ctx, s, true).await.unwrap();
        assert_eq!(series[0].values, [vec![Value::Time(0), Value::Float(2.0)]]);
    }
}
