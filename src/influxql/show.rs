//! `SHOW …` and `CREATE DATABASE`: answered from the catalog, and from the
//! data (through DataFusion) where a `WHERE` clause or tag values need it.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::common::TableReference;
use datafusion::logical_expr::{col, ident};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;

use super::ast::{Expr, MeasurementMatch, Source, Statement, TagKeyMatch};
use super::eval::{self, Columns};
use super::result::{Series, Value};
use super::select::{measurements, regex, value_at};
use super::{Context, InfluxqlError};
use crate::catalog::{Table, table_columns};
use crate::schema::ColumnType;

pub async fn create_database(ctx: &Context<'_>, name: &str) -> Result<Vec<Series>, InfluxqlError> {
    if !ctx.principal.is_admin() {
        return Err(InfluxqlError::Forbidden(
            "CREATE DATABASE needs an operator (admin) token".into(),
        ));
    }
    ctx.querier
        .catalog()
        .create_database(name)
        .await
        .map_err(crate::query::QueryError::from)?;
    Ok(vec![])
}

pub async fn show(ctx: &Context<'_>, statement: &Statement) -> Result<Vec<Series>, InfluxqlError> {
    match statement {
        Statement::ShowDatabases => show_databases(ctx).await,
        Statement::ShowRetentionPolicies { on } => {
            let db = ctx.database(on.as_deref()).await?;
            ctx.querier.database(db).await?;
            Ok(vec![single(
                "",
                &[
                    "name",
                    "duration",
                    "shardGroupDuration",
                    "replicaN",
                    "default",
                ],
                vec![vec![
                    Value::String("autogen".into()),
                    Value::String("0s".into()),
                    Value::String("168h0m0s".into()),
                    Value::Integer(1),
                    Value::Boolean(true),
                ]],
            )])
        }
        Statement::ShowMeasurements {
            on,
            with_measurement,
            condition,
            limit,
            offset,
        } => {
            let (tables, session) = tables(ctx, on.as_deref(), None).await?;
            let mut names = Vec::new();
            for t in tables {
                if !measurement_matches(with_measurement.as_ref(), &t.name)? {
                    continue;
                }
                if let Some(c) = condition
                    && !any_row(ctx, &session, &t, c).await?
                {
                    continue;
                }
                names.push(vec![Value::String(t.name.clone())]);
            }
            let names = page(names, *limit, *offset);
            Ok(if names.is_empty() {
                vec![]
            } else {
                vec![single("measurements", &["name"], names)]
            })
        }
        Statement::ShowTagKeys {
            on,
            from,
            condition,
            limit,
            offset,
        } => {
            let (tables, session) = tables(ctx, on.as_deref(), Some(from)).await?;
            let mut out = Vec::new();
            for t in tables {
                let mut keys = tags(&t);
                if let Some(c) = condition {
                    keys = present_tags(ctx, &session, &t, &keys, c).await?;
                }
                let rows = page(
                    keys.into_iter().map(|k| vec![Value::String(k)]).collect(),
                    *limit,
                    *offset,
                );
                if !rows.is_empty() {
                    out.push(single(&t.name, &["tagKey"], rows));
                }
            }
            Ok(out)
        }
        Statement::ShowTagValues {
            on,
            from,
            key,
            condition,
            limit,
            offset,
        } => {
            let (tables, session) = tables(ctx, on.as_deref(), Some(from)).await?;
            let mut out = Vec::new();
            for t in tables {
                let mut rows = Vec::new();
                for k in tags(&t) {
                    if !key_matches(key, &k)? {
                        continue;
                    }
                    for v in tag_values(ctx, &session, &t, &k, condition.as_ref()).await? {
                        rows.push(vec![Value::String(k.clone()), Value::String(v)]);
                    }
                }
                let rows = page(rows, *limit, *offset);
                if !rows.is_empty() {
                    out.push(single(&t.name, &["key", "value"], rows));
                }
            }
            Ok(out)
        }
        Statement::ShowFieldKeys {
            on,
            from,
            limit,
            offset,
        } => {
            let (tables, _) = tables(ctx, on.as_deref(), Some(from)).await?;
            let mut out = Vec::new();
            for t in tables {
                let mut fields: Vec<(String, &str)> = table_columns(&t)
                    .filter(|(_, ty)| ty.is_field())
                    .map(|(n, ty)| (n.to_string(), ty.as_str()))
                    .collect();
                fields.sort();
                let rows = fields
                    .into_iter()
                    .map(|(n, ty)| vec![Value::String(n), Value::String(ty.to_string())])
                    .collect();
                let rows = page(rows, *limit, *offset);
                if !rows.is_empty() {
                    out.push(single(&t.name, &["fieldKey", "fieldType"], rows));
                }
            }
            Ok(out)
        }
        Statement::Select(_) | Statement::CreateDatabase { .. } => {
            Err(InfluxqlError::Invalid("not a SHOW statement".into()))
        }
    }
}

async fn show_databases(ctx: &Context<'_>) -> Result<Vec<Series>, InfluxqlError> {
    let state = ctx
        .querier
        .catalog()
        .refresh()
        .await
        .map_err(crate::query::QueryError::from)?;
    // In creation order, as 1.x lists them.
    let names: Vec<String> = state
        .databases()
        .filter(|d| ctx.principal.can_read(d))
        .map(|d| d.name.clone())
        .collect();
    let rows: Vec<Vec<Value>> = names.into_iter().map(|n| vec![Value::String(n)]).collect();
    Ok(vec![single("databases", &["name"], rows)])
}

fn single(name: &str, columns: &[&str], values: Vec<Vec<Value>>) -> Series {
    Series {
        name: name.to_string(),
        tags: None,
        columns: columns.iter().map(|c| c.to_string()).collect(),
        values,
    }
}

fn page(rows: Vec<Vec<Value>>, limit: Option<u64>, offset: Option<u64>) -> Vec<Vec<Value>> {
    rows.into_iter()
        .skip(offset.unwrap_or(0) as usize)
        .take(limit.map_or(usize::MAX, |n| n as usize))
        .collect()
}

/// The database's tables (those `FROM` names, else all), by name, and a
/// DataFusion session over them.
async fn tables(
    ctx: &Context<'_>,
    on: Option<&str>,
    from: Option<&Vec<Source>>,
) -> Result<(Vec<Arc<Table>>, SessionContext), InfluxqlError> {
    let named = from.and_then(|f| f.iter().find_map(|s| s.database.as_deref()));
    let db = ctx.database(on.or(named)).await?;
    let (database, session) = ctx.querier.session(db).await?;
    let all: Vec<Arc<Table>> = database.tables().cloned().collect();
    let tables = match from {
        Some(sources) if !sources.is_empty() => measurements(sources, all)?,
        _ => {
            let mut all = all;
            all.sort_by(|a, b| a.name.cmp(&b.name));
            all
        }
    };
    Ok((tables, session))
}

fn tags(table: &Table) -> Vec<String> {
    let mut tags: Vec<String> = table_columns(table)
        .filter(|(_, t)| *t == ColumnType::Tag)
        .map(|(n, _)| n.to_string())
        .collect();
    tags.sort();
    tags
}

fn columns(table: &Table) -> Columns {
    table_columns(table)
        .map(|(n, t)| (n.to_string(), t))
        .collect()
}

fn measurement_matches(m: Option<&MeasurementMatch>, name: &str) -> Result<bool, InfluxqlError> {
    Ok(match m {
        None => true,
        Some(MeasurementMatch::Equal(n)) => n == name,
        Some(MeasurementMatch::NotEqual(n)) => n != name,
        Some(MeasurementMatch::Regex(re)) => regex(re)?.is_match(name),
        Some(MeasurementMatch::NotRegex(re)) => !regex(re)?.is_match(name),
    })
}

fn key_matches(m: &TagKeyMatch, key: &str) -> Result<bool, InfluxqlError> {
    Ok(match m {
        TagKeyMatch::Equal(k) => k == key,
        TagKeyMatch::NotEqual(k) => k != key,
        TagKeyMatch::In(keys) => keys.iter().any(|k| k == key),
        TagKeyMatch::Regex(re) => regex(re)?.is_match(key),
        TagKeyMatch::NotRegex(re) => !regex(re)?.is_match(key),
    })
}

/// Whether any point of the table matches the condition (time bounds in a
/// `SHOW` are ignored, as 1.x ignores them).
async fn any_row(
    ctx: &Context<'_>,
    session: &SessionContext,
    table: &Table,
    condition: &Expr,
) -> Result<bool, InfluxqlError> {
    let (_, rest) = eval::split_time(Some(condition), ctx.now)?;
    let Some(rest) = rest else { return Ok(true) };
    let frame = session
        .table(TableReference::bare(table.name.as_str()))
        .await?
        .filter(eval::condition(&rest, &columns(table), ctx.now)?)?
        .limit(0, Some(1))?;
    let batches: Vec<RecordBatch> = frame.execute_stream().await?.try_collect().await?;
    Ok(batches.iter().any(|b| b.num_rows() > 0))
}

/// The tag keys with a value in some point that matches the condition.
async fn present_tags(
    ctx: &Context<'_>,
    session: &SessionContext,
    table: &Table,
    keys: &[String],
    condition: &Expr,
) -> Result<Vec<String>, InfluxqlError> {
    let mut out = Vec::new();
    for k in keys {
        if !tag_values(ctx, session, table, k, Some(condition))
            .await?
            .is_empty()
        {
            out.push(k.clone());
        }
    }
    Ok(out)
}

/// The distinct values of tag `key` among points matching the condition, sorted.
async fn tag_values(
    ctx: &Context<'_>,
    session: &SessionContext,
    table: &Table,
    key: &str,
    condition: Option<&Expr>,
) -> Result<Vec<String>, InfluxqlError> {
    let mut frame = session
        .table(TableReference::bare(table.name.as_str()))
        .await?
        .filter(ident(key).is_not_null())?;
    if let Some(c) = condition {
        let (_, rest) = eval::split_time(Some(c), ctx.now)?;
        if let Some(rest) = rest {
            frame = frame.filter(eval::condition(&rest, &columns(table), ctx.now)?)?;
        }
    }
    let frame = frame
        .select(vec![ident(key).alias("v")])?
        .distinct()?
        .sort(vec![col("v").sort(true, true)])?;
    let batches: Vec<RecordBatch> = frame.execute_stream().await?.try_collect().await?;
    let mut values = BTreeSet::new();
    for b in &batches {
        for i in 0..b.num_rows() {
            if let Value::String(s) = value_at(b.column(0).as_ref(), i) {
                values.insert(s);
            }
        }
    }
    Ok(values.into_iter().collect())
}
