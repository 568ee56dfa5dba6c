//! "Last value per series", the question dashboards repeat every few seconds:
//! `SELECT last(f)[, last(g) …] | last(*) FROM m [WHERE tag predicates and
//! time bounds] [GROUP BY tags | /re/ | *]`, answered from the file summaries
//! ([`crate::query::summary`]) instead of a scan of every point in range.
//!
//! [`select`] answers `None` for any statement of another shape (another
//! function, arithmetic, a predicate on a field, `GROUP BY time`, `fill` with
//! a value, `tz()`, several measurements, a retention policy, an error to
//! report), and the scan answers it. What it answers is what the scan path
//! answers, byte for byte: the tests run statements both ways.
//!
//! Per group (the series of the `GROUP BY` tags), each `last(f)` is the value
//! at the latest time any of the group's series has `f` in range; a lone
//! `last()` shows that time, several show the range's start (the epoch when
//! unbounded), as the scan path does (and 1.x, but for calls all of one
//! field). Two series of a group with a value at the same latest time: the
//! larger value wins, as in the scan path's DataFusion aggregate (1.6's pick
//! among such ties follows no rule this could copy).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use datafusion::common::DFSchema;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::prelude::SessionContext;

use super::ast::{Dimension, Expr, Fill, MeasurementName, Select, VarType};
use super::eval::{self, Columns};
use super::result::{Series, Value};
use super::select::{regex, unique_name, value_at};
use super::{Context, InfluxqlError};
use crate::catalog::{Table, table_columns};
use crate::ingester::read::TimeRange;
use crate::schema::{ColumnType, TIME_COLUMN};

/// The statement's answer from the summaries, or `None` when it is not one
/// they answer (the scan then does).
pub async fn select(ctx: &Context<'_>, s: &Select) -> Result<Option<Vec<Series>>, InfluxqlError> {
    let Some(summaries) = ctx.querier.summaries() else {
        return Ok(None);
    };
    let Some(measurement) = shape(s) else {
        return Ok(None);
    };
    let named = s.from.iter().find_map(|f| f.database.as_deref());
    let db = ctx.database(named).await?;
    let Ok(database) = ctx.querier.database(db).await else {
        return Ok(None);
    };
    let Some(table) = database.table(measurement).cloned() else {
        return Ok(None);
    };
    let Some(plan) = LastPlan::new(s, &table, ctx.now) else {
        return Ok(None);
    };
    let last = summaries
        .last(&database, &table, plan.range, &plan.fields)
        .await?;
    let Some(mask) = plan.matching(&last.series.batch) else {
        return Ok(None);
    };
    let tags = &last.series.batch;
    let group_columns: Vec<Option<&arrow::array::StringArray>> = plan
        .group
        .iter()
        .map(|g| {
            tags.column_by_name(g)
                .and_then(|c| c.as_string_opt::<i32>())
        })
        .collect();
    // Between series of a group with values at the same latest time, the
    // larger value wins, as in DataFusion's `last_value(f ORDER BY time, f)`.
    let order = arrow::compute::SortOptions::default();
    let compare = last
        .fields
        .iter()
        .map(|v| arrow::array::make_comparator(v.values.as_ref(), v.values.as_ref(), order))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| InfluxqlError::Query(crate::query::QueryError::Internal(e.to_string())))?;
    // Per group, per field: (time, row) of its latest value.
    let mut groups: BTreeMap<Vec<String>, Vec<Option<(i64, usize)>>> = BTreeMap::new();
    for (row, keep) in mask.iter().enumerate() {
        if !keep {
            continue;
        }
        let key: Vec<String> = group_columns
            .iter()
            .map(|c| match c {
                Some(c) if c.is_valid(row) => c.value(row).to_string(),
                _ => String::new(),
            })
            .collect();
        let picks = groups
            .entry(key)
            .or_insert_with(|| vec![None; plan.fields.len()]);
        for (f, values) in last.fields.iter().enumerate() {
            if let Some(t) = values.time[row]
                && picks[f]
                    .is_none_or(|(best, at)| t > best || (t == best && compare[f](row, at).is_ge()))
            {
                picks[f] = Some((t, row));
            }
        }
    }
    let columns: Vec<String> = std::iter::once(TIME_COLUMN.to_string())
        .chain(plan.columns.iter().map(|(name, _)| name.clone()))
        .collect();
    let mut series = Vec::new();
    for (key, picks) in groups {
        let picked: Vec<Option<(i64, usize)>> =
            plan.columns.iter().map(|&(_, f)| picks[f]).collect();
        if picked.iter().all(Option::is_none) {
            continue;
        }
        let time = match picked.as_slice() {
            [Some((t, _))] => *t,
            _ => plan.range.min.unwrap_or(0),
        };
        let row: Vec<Value> = std::iter::once(Value::Time(time))
            .chain(plan.columns.iter().zip(&picked).map(|(&(_, f), p)| {
                p.map_or(Value::Null, |(_, row)| {
                    value_at(last.fields[f].values.as_ref(), row)
                })
            }))
            .collect();
        let values: Vec<Vec<Value>> = std::iter::once(row)
            .skip(s.offset.unwrap_or(0) as usize)
            .take(s.limit.map_or(usize::MAX, |n| n as usize))
            .collect();
        if values.is_empty() {
            continue;
        }
        series.push(Series {
            name: table.name.clone(),
            tags: (!plan.group.is_empty()).then(|| plan.group.iter().cloned().zip(key).collect()),
            columns: columns.clone(),
            values,
        });
    }
    if s.order_desc {
        series.reverse();
    }
    let skip = s.soffset.unwrap_or(0) as usize;
    let take = s.slimit.map_or(usize::MAX, |n| n as usize);
    Ok(Some(series.into_iter().skip(skip).take(take).collect()))
}

/// The one measurement of a statement of the answered shape.
fn shape(s: &Select) -> Option<&str> {
    let [source] = s.from.as_slice() else {
        return None;
    };
    let MeasurementName::Name(measurement) = &source.name else {
        return None;
    };
    let default_rp = source
        .retention_policy
        .as_deref()
        .is_none_or(|rp| rp == "autogen");
    let by_tags = s
        .group_by
        .iter()
        .all(|d| !matches!(d, Dimension::Time { .. }));
    let fill = matches!(s.fill, None | Some(Fill::Null | Fill::None));
    let lasts = !s.fields.is_empty() && s.fields.iter().all(|f| last_argument(&f.expr).is_some());
    (default_rp && by_tags && fill && s.tz.is_none() && lasts).then_some(measurement)
}

/// `last(x)`, `last(x::field)` → `Some(Some(x))`; `last(*)` → `Some(None)`.
fn last_argument(e: &Expr) -> Option<Option<&str>> {
    let Expr::Call { name, args } = e else {
        return None;
    };
    if name != "last" {
        return None;
    }
    match args.as_slice() {
        [Expr::Wildcard(None)] => Some(None),
        [
            Expr::VarRef {
                name,
                data_type: None | Some(VarType::Field),
            },
        ] if !name.eq_ignore_ascii_case(TIME_COLUMN) => Some(Some(name)),
        _ => None,
    }
}

/// What the answer needs, worked out from the statement and the table.
struct LastPlan {
    /// Output columns after `time`: name, index into `fields`.
    columns: Vec<(String, usize)>,
    /// The distinct fields asked for (names that are no field of the table
    /// have no values).
    fields: Vec<String>,
    range: TimeRange,
    /// The `WHERE` clause without its time bounds, on tags only.
    predicate: Option<datafusion::logical_expr::Expr>,
    /// The tags that key the output series, in name order.
    group: Vec<String>,
}

impl LastPlan {
    fn new(s: &Select, table: &Table, now: i64) -> Option<Self> {
        let columns: Columns = table_columns(table)
            .map(|(n, t)| (n.to_string(), t))
            .collect();
        let tags: Vec<&str> = table_columns(table)
            .filter(|(_, t)| *t == ColumnType::Tag)
            .map(|(n, _)| n)
            .collect();
        let (bounds, rest) = eval::split_time(s.condition.as_ref(), now).ok()?;
        let predicate = match rest {
            Some(rest) => {
                let expr = eval::condition(&rest, &columns, now).ok()?;
                let on_tags = expr
                    .column_refs()
                    .iter()
                    .all(|c| columns.get(&c.name) == Some(&ColumnType::Tag));
                if !on_tags {
                    return None;
                }
                Some(expr)
            }
            None => None,
        };
        // The select list as the scan path expands and names it.
        let mut table_fields: Vec<&str> = table_columns(table)
            .filter(|(_, t)| t.is_field())
            .map(|(n, _)| n)
            .collect();
        table_fields.sort_unstable();
        let mut expanded: Vec<(String, String)> = Vec::new();
        for f in &s.fields {
            match last_argument(&f.expr)? {
                Some(field) => {
                    let name = f.alias.clone().unwrap_or_else(|| "last".to_string());
                    expanded.push((name, field.to_string()));
                }
                None => expanded.extend(
                    table_fields
                        .iter()
                        .map(|field| (format!("last_{field}"), field.to_string())),
                ),
            }
        }
        if expanded.is_empty() {
            return None;
        }
        let mut fields: Vec<String> = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(expanded.len());
        for (base, field) in expanded {
            let index = match fields.iter().position(|f| *f == field) {
                Some(i) => i,
                None => {
                    fields.push(field);
                    fields.len() - 1
                }
            };
            out.push((unique_name(&mut names, base), index));
        }
        let mut group: Vec<String> = Vec::new();
        for d in &s.group_by {
            match d {
                Dimension::Tag(name) => group.push(name.clone()),
                Dimension::Wildcard => group.extend(tags.iter().map(|t| t.to_string())),
                Dimension::Regex(re) => {
                    let re = regex(re).ok()?;
                    group.extend(
                        tags.iter()
                            .filter(|t| re.is_match(t))
                            .map(|t| t.to_string()),
                    );
                }
                Dimension::Time { .. } => return None,
            }
        }
        group.sort();
        group.dedup();
        Some(Self {
            columns: out,
            fields,
            range: TimeRange {
                min: bounds.start,
                max: bounds.end,
            },
            predicate,
            group,
        })
    }

    /// Which series (rows of `tags`) the `WHERE` clause keeps; `None` if it
    /// cannot be evaluated here (the scan path then reports why).
    fn matching(&self, tags: &RecordBatch) -> Option<Vec<bool>> {
        matching(self.predicate.as_ref(), tags)
    }
}

/// Evaluates a predicate on tags over one row per series; `None` when it
/// does not evaluate to booleans.
pub fn matching(
    predicate: Option<&datafusion::logical_expr::Expr>,
    tags: &RecordBatch,
) -> Option<Vec<bool>> {
    let rows = tags.num_rows();
    let Some(predicate) = predicate else {
        return Some(vec![true; rows]);
    };
    // Coerced and simplified as DataFusion's planner would (`coalesce`
    // only runs once rewritten).
    let schema = Arc::new(DFSchema::try_from(tags.schema().as_ref().clone()).ok()?);
    let context = SimplifyContext::builder()
        .with_schema(Arc::clone(&schema))
        .build();
    let simplifier = ExprSimplifier::new(context);
    let predicate = simplifier.coerce(predicate.clone(), &schema).ok()?;
    let predicate = simplifier.simplify(predicate).ok()?;
    let physical = SessionContext::new()
        .create_physical_expr(predicate, &schema)
        .ok()?;
    let value = physical.evaluate(tags).ok()?.into_array(rows).ok()?;
    let mask = value.as_boolean_opt()?;
    Some(
        (0..rows)
            .map(|i| mask.is_valid(i) && mask.value(i))
            .collect(),
    )
}
