//! The select list as the measurements make it: wildcards (`*`, `*::tag`,
//! `f(*)`) and regexes expanded over their columns, bare references
//! resolved to tags or fields, and repeated output names numbered as 1.x
//! names them (`name_1`).
//!
//! Apart from the plan because it reads only the catalog's columns, and
//! `last()` from the file summaries names its columns with it too.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::regex;
use crate::catalog::{Table, table_columns};
use crate::influxql::InfluxqlError;
use crate::influxql::ast::{Dimension, Expr, Field, VarType};
use crate::schema::{ColumnType, TIME_COLUMN};

/// `name`, or `name_1`, `name_2`… when taken: how 1.x names repeated
/// columns.
pub fn unique_name(seen: &mut HashMap<String, usize>, base: String) -> String {
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
pub(super) fn union_columns(tables: &[Arc<Table>]) -> BTreeMap<String, ColumnType> {
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

pub(super) fn grouped_tags(
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
pub(super) fn expand(
    fields: &[Field],
    union: &BTreeMap<String, ColumnType>,
    grouped: &[String],
) -> Vec<Field> {
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
                        out.push(Field {
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
                    out.push(Field {
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
                            out.push(Field {
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
        .map(|f| Field {
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
