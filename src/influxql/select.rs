//! `SELECT`: DataFusion plans the part that touches data — a scan of each
//! measurement with the time range and the `WHERE` predicates as filters (so
//! the table prunes files and row groups as for SQL). Aggregates it can
//! compute (`pushdown`) it computes per series and window. Everything else
//! reads a projection of the columns the statement needs, sorted by series
//! and time, a series at a time, and InfluxQL's own semantics run over it:
//! windows by `GROUP BY time`, aggregates and selectors. Both end the same
//! way: `fill`, the columns' expressions, transformations, `LIMIT` and
//! `OFFSET` per series, `SLIMIT` and `SOFFSET` over them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampNanosecondType, UInt64Type};
use chrono_tz::Tz;
use datafusion::common::TableReference;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::logical_expr::{Expr as DfExpr, ident, lit};
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;

use super::ast::{
    BinaryOp, Dimension, Expr, FUNCTIONS, Fill, MeasurementName, Number, Select, Source, VarType,
};
use super::eval::{self, Columns, TimeBounds};
use super::result::{Series, Value, answer_bytes, zone_offset};
use super::{Context, InfluxqlError};
use crate::catalog::{Table, table_columns};
use crate::schema::{ColumnType, TIME_COLUMN};

mod pushdown;

/// Windows one series may produce: a guard against `fill` over a range far
/// larger than the interval.
const MAX_WINDOWS: i64 = 1_000_000;

/// What a held row costs beyond its values, and what a value costs (its
/// enum; strings count their length below the estimate's precision).
const ROW_BYTES: usize = std::mem::size_of::<Row>();
const VALUE_BYTES: usize = std::mem::size_of::<Value>();

pub async fn select(ctx: &Context<'_>, s: &Select) -> Result<Vec<Series>, InfluxqlError> {
    if let Some(answer) = super::last::select(ctx, s).await? {
        return Ok(answer);
    }
    select_with(ctx, s, true).await
}

/// `SELECT`, with aggregates computed by DataFusion where they can be
/// (`pushdown`) or every statement on the row path (what the tests compare
/// the former with).
async fn select_with(
    ctx: &Context<'_>,
    s: &Select,
    pushdown: bool,
) -> Result<Vec<Series>, InfluxqlError> {
    let named = s.from.iter().find_map(|f| f.database.as_deref());
    let db = ctx.database(named).await?;
    // A retention policy other than the default is its own database, as
    // `/write?rp=` stores it.
    let rp = s
        .from
        .iter()
        .find_map(|f| f.retention_policy.as_deref())
        .filter(|rp| *rp != "autogen");
    let (database, session) = match rp {
        None => ctx.querier.session(db).await?,
        Some(rp) => {
            if ctx.querier.database(db).await.is_err() {
                return Err(InfluxqlError::DatabaseNotFound(db.to_string()));
            }
            let with_rp = format!("{db}/{rp}");
            ctx.database(Some(&with_rp)).await?;
            match ctx.querier.session(&with_rp).await {
                Err(crate::query::QueryError::DatabaseNotFound(_)) => {
                    return Err(InfluxqlError::RetentionPolicyNotFound(rp.to_string()));
                }
                other => other?,
            }
        }
    };
    let tables = measurements(&s.from, database.tables().cloned().collect())?;
    if tables.is_empty() {
        return Ok(vec![]);
    }
    let plan = Plan::new(s, &tables, ctx.now)?;
    let mut series = Vec::new();
    // What a statement holds counts against the query memory pool, as
    // DataFusion's own operators do: past it the statement fails (503)
    // instead of the process running out of memory.
    let memory =
        MemoryConsumer::new("influxql select").register(&session.runtime_env().memory_pool);
    for table in &tables {
        let columns: Columns = table_columns(table)
            .map(|(n, t)| (n.to_string(), t))
            .collect();
        let pushed = match plan.pushdown(&columns).filter(|_| pushdown) {
            Some(pushdown) => {
                plan.aggregate_in_datafusion(&session, table, &columns, &pushdown, &memory)
                    .await?
            }
            None => None,
        };
        let table_series = match pushed {
            Some(table_series) => {
                tracing::debug!(table = %table.name, "InfluxQL aggregates computed by DataFusion");
                table_series
            }
            None => plan.scan(&session, table, &columns, &memory).await?,
        };
        series.extend(table_series);
    }
    // 1.x orders series by time too: descending reverses them.
    if s.order_desc {
        series.reverse();
    }
    let skip = s.soffset.unwrap_or(0) as usize;
    let take = s.slimit.map_or(usize::MAX, |n| n as usize);
    Ok(series.into_iter().skip(skip).take(take).collect())
}

/// A group tag's part of a series key: a missing tag is the empty string,
/// as in 1.x.
fn tag_key(name: &str, columns: &Columns) -> DfExpr {
    match columns.get(name) {
        Some(ColumnType::Tag) => {
            datafusion::functions::core::expr_fn::coalesce(vec![ident(name), lit("")])
        }
        _ => lit(""),
    }
}

/// The tables `FROM` names (regexes matched against every table), each once,
/// by name.
pub fn measurements(
    from: &[Source],
    tables: Vec<Arc<Table>>,
) -> Result<Vec<Arc<Table>>, InfluxqlError> {
    let mut out: BTreeMap<String, Arc<Table>> = BTreeMap::new();
    for source in from {
        match &source.name {
            MeasurementName::Name(name) => {
                if let Some(t) = tables.iter().find(|t| &t.name == name) {
                    out.insert(name.clone(), Arc::clone(t));
                }
            }
            MeasurementName::Regex(re) => {
                let re = regex(re)?;
                for t in tables.iter().filter(|t| re.is_match(&t.name)) {
                    out.insert(t.name.clone(), Arc::clone(t));
                }
            }
        }
    }
    Ok(out.into_values().collect())
}

pub fn regex(source: &str) -> Result<regex::Regex, InfluxqlError> {
    regex::Regex::new(source)
        .map_err(|e| InfluxqlError::Invalid(format!("invalid regular expression /{source}/: {e}")))
}

/// A point as the statement sees it: its time and the referenced columns.
#[derive(Debug, Clone)]
struct Row {
    time: i64,
    values: Vec<Value>,
}

/// An aggregate or selector call in the select list.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    func: Func,
    /// Index into the referenced columns.
    column: usize,
    /// `count(distinct(x))`.
    distinct: bool,
    /// `percentile`'s N.
    percentile: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
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
    fn parse(name: &str) -> Option<Self> {
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
    fn is_selector(self) -> bool {
        matches!(
            self,
            Self::Min | Self::Max | Self::First | Self::Last | Self::Percentile
        )
    }

    fn name(self) -> &'static str {
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

/// An output column: its expression, with calls numbered into `Plan::calls`.
#[derive(Debug, Clone)]
struct Column {
    expr: Expr,
    name: String,
}

/// What the statement needs, worked out once for all its measurements.
struct Plan<'a> {
    select: &'a Select,
    columns: Vec<Column>,
    /// Every name the columns reference, with its `::type` restriction.
    refs: Vec<(String, Option<VarType>)>,
    calls: Vec<Call>,
    /// Transformations of columns (`derivative(mean(x), 1m)`), applied to a
    /// series' rows once they are computed.
    transforms: Vec<Transform>,
    aggregate: bool,
    bounds: TimeBounds,
    condition: Option<Expr>,
    /// `GROUP BY time(interval, offset)`.
    window: Option<(i64, i64)>,
    tz: Option<Tz>,
    now: i64,
}

impl<'a> Plan<'a> {
    fn new(select: &'a Select, tables: &[Arc<Table>], now: i64) -> Result<Self, InfluxqlError> {
        let (bounds, condition) = eval::split_time(select.condition.as_ref(), now)?;
        let tz = select
            .tz
            .as_deref()
            .map(|name| {
                name.parse::<Tz>()
                    .map_err(|_| InfluxqlError::Invalid(format!("unable to find time zone {name}")))
            })
            .transpose()?;
        let mut window = None;
        for d in &select.group_by {
            // `time(0s)` is no time grouping, as in 1.x.
            if let Dimension::Time { interval, offset } = d
                && *interval > 0
            {
                window = Some((*interval, offset.unwrap_or(0).rem_euclid(*interval)));
            }
        }
        let union = union_columns(tables);
        let grouped = grouped_tags(&select.group_by, &union)?;
        let mut plan = Self {
            select,
            columns: Vec::new(),
            refs: Vec::new(),
            calls: Vec::new(),
            transforms: Vec::new(),
            aggregate: false,
            bounds,
            condition,
            window,
            tz,
            now,
        };
        let fields = expand(&select.fields, &union, &grouped);
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut inner = Vec::with_capacity(fields.len());
        for (i, f) in fields.iter().enumerate() {
            let base = f
                .alias
                .clone()
                .unwrap_or_else(|| eval::column_name(&f.expr));
            let name = unique_name(&mut names, base);
            let (transform, expr) = Transform::split(&f.expr, i)?;
            plan.transforms.extend(transform);
            inner.push((name, expr));
        }
        plan.aggregate = inner.iter().any(|(_, e)| has_call(e));
        for (name, e) in inner {
            let expr = plan.number(&e, false)?;
            plan.columns.push(Column { expr, name });
        }
        plan.validate()?;
        Ok(plan)
    }

    /// Replaces calls by `Call{name: "#i"}` and references by `VarRef{"#i"}`
    /// indices, registering them.
    fn number(&mut self, e: &Expr, in_call: bool) -> Result<Expr, InfluxqlError> {
        Ok(match e {
            Expr::VarRef { name, data_type } => {
                let i = self.reference(name, *data_type);
                Expr::VarRef {
                    name: format!("#{i}"),
                    data_type: *data_type,
                }
            }
            Expr::Call { name, args } if name != "now" => {
                if in_call && name != "distinct" {
                    return Err(InfluxqlError::NotSupported(format!(
                        "{name}() inside another function is not supported"
                    )));
                }
                let func = Func::parse(name).ok_or_else(|| {
                    InfluxqlError::Invalid(format!("undefined function {name}()"))
                })?;
                if let Some(&(_, min, max)) = FUNCTIONS.iter().find(|(f, _, _)| f == name)
                    && !(min..=max).contains(&args.len())
                {
                    return Err(InfluxqlError::Invalid(format!(
                        "invalid number of arguments for {name}, expected {min}, got {}",
                        args.len()
                    )));
                }
                let call = self.call(func, args)?;
                let i = self.calls.len();
                self.calls.push(call);
                Expr::Call {
                    name: format!("#{i}"),
                    args: vec![],
                }
            }
            Expr::Binary { op, lhs, rhs } => Expr::Binary {
                op: *op,
                lhs: Box::new(self.number(lhs, in_call)?),
                rhs: Box::new(self.number(rhs, in_call)?),
            },
            Expr::Negate(inner) => Expr::Negate(Box::new(self.number(inner, in_call)?)),
            other => other.clone(),
        })
    }

    fn call(&mut self, func: Func, args: &[Expr]) -> Result<Call, InfluxqlError> {
        let invalid = |what: &str| InfluxqlError::Invalid(format!("{}(): {what}", func.name()));
        // An aggregate of a tag has no values (1.x answers nothing): the
        // reference is made to a field of that name, which does not exist.
        let field = |t: &Option<VarType>| match t {
            Some(VarType::Tag) => Some(VarType::Field),
            other => *other,
        };
        let (column, distinct) = match args.first() {
            Some(Expr::VarRef { name, data_type }) => {
                (self.reference(name, field(data_type)), false)
            }
            Some(Expr::Call { name, args }) if name == "distinct" && func == Func::Count => {
                match args.first() {
                    Some(Expr::VarRef { name, data_type }) => {
                        (self.reference(name, field(data_type)), true)
                    }
                    _ => return Err(invalid("expected a field in distinct()")),
                }
            }
            _ => return Err(invalid("expected field argument")),
        };
        let percentile = match (func, args.get(1)) {
            (Func::Percentile, Some(Expr::Integer(n))) => *n as f64,
            (Func::Percentile, Some(Expr::Float(n))) => *n,
            (Func::Percentile, _) => {
                return Err(InfluxqlError::Invalid(
                    "expected float argument in percentile()".into(),
                ));
            }
            _ => 0.0,
        };
        Ok(Call {
            func,
            column,
            distinct,
            percentile,
        })
    }

    fn reference(&mut self, name: &str, data_type: Option<VarType>) -> usize {
        let key = (name.to_string(), data_type);
        match self.refs.iter().position(|r| *r == key) {
            Some(i) => i,
            None => {
                self.refs.push(key);
                self.refs.len() - 1
            }
        }
    }

    /// 1.x's rules for what an aggregate statement may combine.
    fn validate(&self) -> Result<(), InfluxqlError> {
        if self.columns.is_empty() {
            return Err(InfluxqlError::Invalid(
                "at least 1 non-time field must be queried".into(),
            ));
        }
        if !self.transforms.is_empty() {
            if self.transforms.len() != self.columns.len() {
                return Err(InfluxqlError::NotSupported(
                    "mixing transformations (derivative, difference, …) with other columns is not supported"
                        .into(),
                ));
            }
            let name = self.transforms[0].func.name();
            match (self.aggregate, self.window) {
                (true, None) => {
                    return Err(InfluxqlError::Invalid(format!(
                        "{name} aggregate requires a GROUP BY interval"
                    )));
                }
                (false, Some(_)) => {
                    return Err(InfluxqlError::Invalid(format!(
                        "aggregate function required inside the call to {name}"
                    )));
                }
                _ => {}
            }
        }
        if !self.aggregate {
            if self.window.is_some() {
                return Err(InfluxqlError::Invalid(
                    "GROUP BY requires at least one aggregate function".into(),
                ));
            }
            return Ok(());
        }
        let distinct = self.calls.iter().any(|c| c.func == Func::Distinct);
        if distinct && self.calls.len() > 1 {
            return Err(InfluxqlError::Invalid(
                "aggregate function distinct() cannot be combined with other functions or fields"
                    .into(),
            ));
        }
        let bare = self.columns.iter().any(|c| has_bare_ref(&c.expr));
        if bare && !(self.calls.len() == 1 && self.calls[0].func.is_selector()) {
            return Err(InfluxqlError::Invalid(
                "mixing aggregate and non-aggregate queries is not supported".into(),
            ));
        }
        Ok(())
    }

    fn column_names(&self) -> Vec<String> {
        std::iter::once(TIME_COLUMN.to_string())
            .chain(self.columns.iter().map(|c| c.name.clone()))
            .collect()
    }

    /// The tags that key this measurement's series, in name order.
    fn group_tags(&self, table: &Table) -> Vec<String> {
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
    async fn filtered(
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
    async fn scan(
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
    fn push_series(
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
    fn scan_start(&self) -> Option<i64> {
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
    fn end(&self) -> Option<i64> {
        match (self.bounds.end, self.window) {
            (Some(end), _) => Some(end),
            (None, Some(_)) => Some(self.now),
            (None, None) => None,
        }
    }

    /// One series' output rows, in output order (none for no rows).
    /// `present` says which referenced fields the measurement has.
    fn series_rows(
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
    fn finish(&self, out: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
        let out = if self.transforms.is_empty() {
            out
        } else {
            self.transform(out)
        };
        let skip = self.select.offset.unwrap_or(0) as usize;
        let take = self.select.limit.map_or(usize::MAX, |n| n as usize);
        out.into_iter().skip(skip).take(take).collect()
    }

    /// Applies every column's transformation over the series' rows; a row
    /// stays where some transformation gave a value.
    fn transform(&self, rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
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

    /// An aggregate series' rows from its calls' results per window (both in
    /// output order): `fill`, the lone selector's time and point, the
    /// columns' expressions over the calls. `aux` reads the row a selector
    /// picked.
    fn window_rows<'r>(
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

    /// The windows of one series: every window of the time range under
    /// `GROUP BY time` (empty ones included, for `fill`), else one window
    /// starting at the range's start (the epoch when unbounded).
    fn windows(&self, rows: &[Row]) -> Result<Vec<Window>, InfluxqlError> {
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
    fn window_list(&self, first: i64) -> Result<Vec<(i64, i64)>, InfluxqlError> {
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
    fn window_start(&self, t: i64, interval: i64, offset: i64) -> i64 {
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

/// A transformation of one column over a series' rows.
#[derive(Debug, Clone)]
struct Transform {
    func: TransformFunc,
    column: usize,
    /// `derivative`'s and `elapsed`'s unit (ns), `moving_average`'s N.
    arg: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransformFunc {
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

    fn name(self) -> &'static str {
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
    fn split(e: &Expr, column: usize) -> Result<(Option<Self>, Expr), InfluxqlError> {
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

struct Window {
    start: i64,
    rows: std::ops::Range<usize>,
}

/// An aggregate's value in one window; a selector's also names its point.
#[derive(Debug, Clone)]
struct Picked {
    value: Value,
    time: Option<i64>,
    row: Option<usize>,
}

fn aggregate(call: &Call, rows: &[Row], base: usize) -> Result<Option<Picked>, InfluxqlError> {
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

/// A column's value: calls read `calls` (their results in this row), bare
/// references read the point (`refs`).
fn evaluate(e: &Expr, refs: &[Value], calls: &[Value]) -> Value {
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

fn has_call(e: &Expr) -> bool {
    match e {
        Expr::Call { name, .. } => name != "now",
        Expr::Binary { lhs, rhs, .. } => has_call(lhs) || has_call(rhs),
        Expr::Negate(inner) => has_call(inner),
        _ => false,
    }
}

fn has_bare_ref(e: &Expr) -> bool {
    match e {
        Expr::VarRef { .. } => true,
        Expr::Binary { lhs, rhs, .. } => has_bare_ref(lhs) || has_bare_ref(rhs),
        Expr::Negate(inner) => has_bare_ref(inner),
        _ => false,
    }
}

/// `name`, or `name_1`, `name_2`… when taken: how 1.x names repeated
/// columns.
pub(super) fn unique_name(seen: &mut HashMap<String, usize>, base: String) -> String {
    let Some(&used) = seen.get(&base) else {
        seen.insert(base.clone(), 0);
        return base;
    };
    let mut n = used;
    let name = loop {
        n += 1;
        let candidate = format!("{base}_{n}");
        if !seen.contains_key(&candidate) {
            break candidate;
        }
    };
    seen.insert(base, n);
    seen.insert(name.clone(), 0);
    name
}

/// Every column of the measurements, by name; a name that is a tag in one
/// and a field in another is taken as a field.
fn union_columns(tables: &[Arc<Table>]) -> BTreeMap<String, ColumnType> {
    let mut out = BTreeMap::new();
    for t in tables {
        for (name, ty) in table_columns(t) {
            if ty == ColumnType::Time {
                continue;
            }
            let entry = out.entry(name.to_string()).or_insert(ty);
            if ty.is_field() {
                *entry = ty;
            }
        }
    }
    out
}

fn grouped_tags(
    dims: &[Dimension],
    union: &BTreeMap<String, ColumnType>,
) -> Result<Vec<String>, InfluxqlError> {
    let tags = union
        .iter()
        .filter(|(_, t)| **t == ColumnType::Tag)
        .map(|(n, _)| n);
    let mut out = Vec::new();
    for d in dims {
        match d {
            Dimension::Tag(t) => out.push(t.clone()),
            Dimension::Wildcard => out.extend(tags.clone().cloned()),
            Dimension::Regex(re) => {
                let re = regex(re)?;
                out.extend(tags.clone().filter(|t| re.is_match(t)).cloned());
            }
            Dimension::Time { .. } => {}
        }
    }
    Ok(out)
}

/// The select list with wildcards expanded: `*` to every field and tag not
/// grouped by (in name order), `*::field`, `*::tag`, and `f(*)` to `f` of
/// every field it accepts, named `f_field`.
fn expand(
    fields: &[super::ast::Field],
    union: &BTreeMap<String, ColumnType>,
    grouped: &[String],
) -> Vec<super::ast::Field> {
    let var = |name: &str, ty: ColumnType| Expr::VarRef {
        name: name.to_string(),
        data_type: Some(if ty == ColumnType::Tag {
            VarType::Tag
        } else {
            VarType::Field
        }),
    };
    let mut out = Vec::new();
    for f in fields {
        match &f.expr {
            Expr::Wildcard(kind) => {
                for (name, ty) in union {
                    let wanted = match kind {
                        None => !(*ty == ColumnType::Tag && grouped.contains(name)),
                        Some(VarType::Tag) => *ty == ColumnType::Tag,
                        Some(_) => ty.is_field(),
                    };
                    if wanted {
                        out.push(super::ast::Field {
                            expr: var(name, *ty),
                            alias: None,
                        });
                    }
                }
            }
            Expr::Call { name, args } if matches!(args.first(), Some(Expr::Wildcard(_))) => {
                let numeric_only =
                    !matches!(name.as_str(), "count" | "first" | "last" | "distinct");
                for (field, ty) in union.iter().filter(|(_, t)| t.is_field()) {
                    if numeric_only
                        && !matches!(
                            ty,
                            ColumnType::Float | ColumnType::Integer | ColumnType::UInteger
                        )
                    {
                        continue;
                    }
                    let mut args = args.clone();
                    args[0] = var(field, *ty);
                    out.push(super::ast::Field {
                        expr: Expr::Call {
                            name: name.clone(),
                            args,
                        },
                        alias: Some(format!("{name}_{field}")),
                    });
                }
            }
            Expr::Regex(re) => {
                // Checked by the parser.
                if let Ok(re) = regex(re) {
                    for (name, ty) in union {
                        if re.is_match(name) && !(*ty == ColumnType::Tag && grouped.contains(name))
                        {
                            out.push(super::ast::Field {
                                expr: var(name, *ty),
                                alias: None,
                            });
                        }
                    }
                }
            }
            // `time` is always the first column.
            Expr::VarRef { name, .. } if name.eq_ignore_ascii_case(TIME_COLUMN) => {}
            _ => out.push(f.clone()),
        }
    }
    // Bare references resolve to tags or fields as the measurements have them.
    out.into_iter()
        .map(|f| super::ast::Field {
            expr: resolve(&f.expr, union),
            alias: f.alias,
        })
        .collect()
}

/// Marks each bare reference `::tag` or `::field` by what it is.
fn resolve(e: &Expr, union: &BTreeMap<String, ColumnType>) -> Expr {
    match e {
        Expr::VarRef {
            name,
            data_type: None,
        } => Expr::VarRef {
            name: name.clone(),
            data_type: union.get(name).map(|t| {
                if *t == ColumnType::Tag {
                    VarType::Tag
                } else {
                    VarType::Field
                }
            }),
        },
        Expr::Call { name, args } => Expr::Call {
            name: name.clone(),
            args: args.iter().map(|a| resolve(a, union)).collect(),
        },
        Expr::Binary { op, lhs, rhs } => Expr::Binary {
            op: *op,
            lhs: Box::new(resolve(lhs, union)),
            rhs: Box::new(resolve(rhs, union)),
        },
        Expr::Negate(inner) => Expr::Negate(Box::new(resolve(inner, union))),
        other => other.clone(),
    }
}

/// A string column's value (a series key's part: coalesced, never null).
fn str_at(array: &dyn Array, i: usize) -> &str {
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
