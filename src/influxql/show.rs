//! `SHOW …` and `CREATE DATABASE`: answered from the catalog, and where a
//! `WHERE` clause or tag values need the data, from the series that match it
//! ([`super::matching`]: the file summaries, or a scan).

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use datafusion::prelude::SessionContext;

use super::ast::{MeasurementMatch, Source, Statement, TagKeyMatch};
use super::matching;
use super::result::{Series, Value};
use super::select::{measurements, regex};
use super::{Context, InfluxqlError};
use crate::catalog::{Database, Table, table_columns};
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
            let (db, tables, session) = tables(ctx, on.as_deref(), None).await?;
            let mut names = Vec::new();
            for t in tables {
                if !measurement_matches(with_measurement.as_ref(), &t.name)? {
                    continue;
                }
                if let Some(c) = condition
                    && matching::series(ctx, &session, &db, &t, Some(c))
                        .await?
                        .num_rows()
                        == 0
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
            let (db, tables, session) = tables(ctx, on.as_deref(), Some(from)).await?;
            let mut out = Vec::new();
            for t in tables {
                let mut keys = tags(&t);
                if let Some(c) = condition {
                    let series = matching::series(ctx, &session, &db, &t, Some(c)).await?;
                    keys.retain(|k| !tag_values(&series, k).is_empty());
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
            let (db, tables, session) = tables(ctx, on.as_deref(), Some(from)).await?;
            let mut out = Vec::new();
            for t in tables {
                let mut keys = Vec::new();
                for k in tags(&t) {
                    if key_matches(key, &k)? {
                        keys.push(k);
                    }
                }
                if keys.is_empty() {
                    continue;
                }
                let series = matching::series(ctx, &session, &db, &t, condition.as_ref()).await?;
                let mut rows = Vec::new();
                for k in keys {
                    for v in tag_values(&series, &k) {
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
            let (_, tables, _) = tables(ctx, on.as_deref(), Some(from)).await?;
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
        Statement::ShowSeries {
            on,
            from,
            condition,
            limit,
            offset,
        } => {
            let (db, tables, session) = tables(ctx, on.as_deref(), Some(from)).await?;
            let mut keys = Vec::new();
            for t in tables {
                let series = matching::series(ctx, &session, &db, &t, condition.as_ref()).await?;
                let mut own = series_keys(&t.name, &series);
                own.sort();
                keys.extend(own.into_iter().map(|k| vec![Value::String(k)]));
            }
            let keys = page(keys, *limit, *offset);
            Ok(if keys.is_empty() {
                vec![]
            } else {
                vec![single("", &["key"], keys)]
            })
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

/// The database, its tables (those `FROM` names, else all) by name, and a
/// DataFusion session over them.
async fn tables(
    ctx: &Context<'_>,
    on: Option<&str>,
    from: Option<&Vec<Source>>,
) -> Result<(Arc<Database>, Vec<Arc<Table>>, SessionContext), InfluxqlError> {
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
    Ok((database, tables, session))
}

fn tags(table: &Table) -> Vec<String> {
    let mut tags: Vec<String> = table_columns(table)
        .filter(|(_, t)| *t == ColumnType::Tag)
        .map(|(n, _)| n.to_string())
        .collect();
    tags.sort();
    tags
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

/// The distinct values of tag `key` among `series` (one row per series, a
/// column per tag), sorted.
fn tag_values(series: &RecordBatch, key: &str) -> Vec<String> {
    let Some(column) = series
        .column_by_name(key)
        .and_then(|c| c.as_string_opt::<i32>())
    else {
        return vec![];
    };
    let values: BTreeSet<&str> = column.iter().flatten().collect();
    values.into_iter().map(str::to_string).collect()
}

/// Each series' key as 1.x's `SHOW SERIES` writes it: the measurement, then
/// its tags by name, escaped as line protocol escapes them.
pub(super) fn series_keys(measurement: &str, series: &RecordBatch) -> Vec<String> {
    let mut tags: Vec<(&str, &StringArray)> = series
        .schema_ref()
        .fields()
        .iter()
        .zip(series.columns())
        .filter_map(|(f, c)| Some((f.name().as_str(), c.as_string_opt::<i32>()?)))
        .collect();
    tags.sort_by(|a, b| a.0.cmp(b.0));
    (0..series.num_rows())
        .map(|row| {
            let mut key = escape(measurement, &[',', ' ']);
            for (name, values) in &tags {
                if values.is_valid(row) {
                    key.push(',');
                    key.push_str(&escape(name, &[',', '=', ' ']));
                    key.push('=');
                    key.push_str(&escape(values.value(row), &[',', '=', ' ']));
                }
            }
            key
        })
        .collect()
}

fn escape(s: &str, special: &[char]) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
