//! `SELECT`: DataFusion plans the part that touches data — a scan of each
//! measurement with the time range and the `WHERE` predicates as filters (so
//! the table prunes files and row groups as for SQL). Aggregates it can
//! compute (`pushdown`) it computes per series and window. Everything else
//! reads a projection of the columns the statement needs, sorted by series
//! and time, a series at a time, and InfluxQL's own semantics run over it:
//! windows by `GROUP BY time`, aggregates and selectors. Both end the same
//! way: `fill`, the columns' expressions, transformations, `LIMIT` and
//! `OFFSET` per series, `SLIMIT` and `SOFFSET` over them.
//!
//! The parts: [`plan`] (what the statement needs, checked before reading),
//! [`fields`] (the select list over the measurements' columns), [`scan`]
//! (reading a measurement, a series at a time), [`rows`] (a series' answer
//! on the row path), [`aggregate`] (InfluxQL's aggregates and selectors),
//! [`windows`] (`GROUP BY time` and `fill`), [`transform`]
//! (`derivative` and the like) and [`pushdown`] (aggregates in DataFusion).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::execution::memory_pool::MemoryConsumer;

use super::ast::{MeasurementName, Select, Source};
use super::eval::Columns;
use super::result::Series;
use super::{Context, InfluxqlError};
use crate::catalog::{Table, table_columns};

mod aggregate;
mod fields;
mod plan;
mod pushdown;
mod rows;
mod scan;
mod transform;
mod windows;

pub use fields::unique_name;
pub use scan::value_at;

use plan::Plan;

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
