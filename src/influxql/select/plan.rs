//! Planning a `SELECT`: the select list's calls and references numbered
//! once for all the statement's measurements, transformations split off,
//! and 1.x's rules for what a statement may combine checked before any data
//! is read.
//!
//! Apart from the scan and the row path because it is everything the
//! statement decides before it reads a row; they only read the [`Plan`].

use std::collections::HashMap;
use std::sync::Arc;

use chrono_tz::Tz;

use super::aggregate::{Call, Func};
use super::fields::{expand, grouped_tags, union_columns, unique_name};
use super::transform::Transform;
use crate::catalog::Table;
use crate::influxql::InfluxqlError;
use crate::influxql::ast::{Dimension, Expr, FUNCTIONS, Select, VarType};
use crate::influxql::eval::{self, TimeBounds};
use crate::schema::TIME_COLUMN;

/// An output column: its expression, with calls numbered into `Plan::calls`.
#[derive(Debug, Clone)]
pub(super) struct Column {
    pub(super) expr: Expr,
    pub(super) name: String,
}

/// What the statement needs, worked out once for all its measurements.
pub(super) struct Plan<'a> {
    pub(super) select: &'a Select,
    pub(super) columns: Vec<Column>,
    /// Every name the columns reference, with its `::type` restriction.
    pub(super) refs: Vec<(String, Option<VarType>)>,
    pub(super) calls: Vec<Call>,
    /// Transformations of columns (`derivative(mean(x), 1m)`), applied to a
    /// series' rows once they are computed.
    pub(super) transforms: Vec<Transform>,
    pub(super) aggregate: bool,
    pub(super) bounds: TimeBounds,
    pub(super) condition: Option<Expr>,
    /// `GROUP BY time(interval, offset)`.
    pub(super) window: Option<(i64, i64)>,
    pub(super) tz: Option<Tz>,
    pub(super) now: i64,
}

impl<'a> Plan<'a> {
    pub(super) fn new(
        select: &'a Select,
        tables: &[Arc<Table>],
        now: i64,
    ) -> Result<Self, InfluxqlError> {
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

    pub(super) fn column_names(&self) -> Vec<String> {
        std::iter::once(TIME_COLUMN.to_string())
            .chain(self.columns.iter().map(|c| c.name.clone()))
            .collect()
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

pub(super) fn has_bare_ref(e: &Expr) -> bool {
    match e {
        Expr::VarRef { .. } => true,
        Expr::Binary { lhs, rhs, .. } => has_bare_ref(lhs) || has_bare_ref(rhs),
        Expr::Negate(inner) => has_bare_ref(inner),
        _ => false,
    }
}
