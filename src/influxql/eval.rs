//! Expressions: `WHERE` conditions as DataFusion expressions, the time range
//! they bound, and InfluxQL arithmetic on result values.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::logical_expr::{Expr as DfExpr, Operator, binary_expr, ident, lit};
use datafusion::prelude::{cast, when};
use datafusion::scalar::ScalarValue;

use super::InfluxqlError;
use super::ast::{BinaryOp, Expr, VarType};
use super::result::Value;
use crate::schema::{ColumnType, TIME_COLUMN};

/// Inclusive bounds on `time`, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBounds {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

/// Splits a condition into the bounds its time comparisons set and the rest.
/// As in 1.x, a time comparison bounds the whole statement wherever it
/// stands: `host = 'a' OR host = 'b' AND time < X` bounds both hosts by X.
pub fn split_time(
    condition: Option<&Expr>,
    now: i64,
) -> Result<(TimeBounds, Option<Expr>), InfluxqlError> {
    let mut bounds = TimeBounds {
        start: None,
        end: None,
    };
    let rest = match condition {
        Some(c) => strip_time(c, now, &mut bounds)?,
        None => None,
    };
    Ok((bounds, rest))
}

fn strip_time(e: &Expr, now: i64, bounds: &mut TimeBounds) -> Result<Option<Expr>, InfluxqlError> {
    if let Expr::Binary {
        op: op @ (BinaryOp::And | BinaryOp::Or),
        lhs,
        rhs,
    } = e
    {
        let l = strip_time(lhs, now, bounds)?;
        let r = strip_time(rhs, now, bounds)?;
        return Ok(match (l, r) {
            (Some(l), Some(r)) => Some(Expr::Binary {
                op: *op,
                lhs: Box::new(l),
                rhs: Box::new(r),
            }),
            (one, None) | (None, one) => one,
        });
    }
    let Some((op, t)) = time_comparison(e, now)? else {
        return Ok(Some(e.clone()));
    };
    let (lo, hi) = match op {
        BinaryOp::Gt => (t.checked_add(1), None),
        BinaryOp::GtEq => (Some(t), None),
        BinaryOp::Lt => (None, t.checked_sub(1)),
        BinaryOp::LtEq => (None, Some(t)),
        _ => (Some(t), Some(t)),
    };
    if let Some(lo) = lo {
        bounds.start = Some(bounds.start.map_or(lo, |s| s.max(lo)));
    }
    if let Some(hi) = hi {
        bounds.end = Some(bounds.end.map_or(hi, |e| e.min(hi)));
    }
    Ok(None)
}

fn is_time(e: &Expr) -> bool {
    matches!(e, Expr::VarRef { name, .. } if name.eq_ignore_ascii_case(TIME_COLUMN))
}

/// `time <op> literal` (either way round) as (op with time on the left, ns).
fn time_comparison(e: &Expr, now: i64) -> Result<Option<(BinaryOp, i64)>, InfluxqlError> {
    let Expr::Binary { op, lhs, rhs } = e else {
        return Ok(None);
    };
    let (op, other) = if is_time(lhs) {
        (*op, rhs)
    } else if is_time(rhs) {
        let flipped = match op {
            BinaryOp::Gt => BinaryOp::Lt,
            BinaryOp::GtEq => BinaryOp::LtEq,
            BinaryOp::Lt => BinaryOp::Gt,
            BinaryOp::LtEq => BinaryOp::GtEq,
            other => *other,
        };
        (flipped, lhs)
    } else {
        return Ok(None);
    };
    if !matches!(
        op,
        BinaryOp::Gt | BinaryOp::GtEq | BinaryOp::Lt | BinaryOp::LtEq | BinaryOp::Eq
    ) {
        return Err(InfluxqlError::Invalid(
            "invalid operation on time: use =, <, <=, > or >=".into(),
        ));
    }
    Ok(Some((op, time_value(other, now)?)))
}

/// A time literal: RFC3339 or date string, epoch integer (ns), duration,
/// `now()`, and sums and differences of those.
pub fn time_value(e: &Expr, now: i64) -> Result<i64, InfluxqlError> {
    let overflow = || InfluxqlError::Invalid("time overflows".into());
    match e {
        Expr::Integer(i) | Expr::Duration(i) => Ok(*i),
        Expr::Float(f) => Ok(*f as i64),
        Expr::String(s) => parse_time_string(s),
        Expr::Call { name, args } if name == "now" && args.is_empty() => Ok(now),
        Expr::Binary {
            op: BinaryOp::Add,
            lhs,
            rhs,
        } => time_value(lhs, now)?
            .checked_add(time_value(rhs, now)?)
            .ok_or_else(overflow),
        Expr::Binary {
            op: BinaryOp::Sub,
            lhs,
            rhs,
        } => time_value(lhs, now)?
            .checked_sub(time_value(rhs, now)?)
            .ok_or_else(overflow),
        _ => Err(InfluxqlError::Invalid(
            "invalid time condition: compare time with a time literal, an epoch or now()".into(),
        )),
    }
}

fn parse_time_string(s: &str) -> Result<i64, InfluxqlError> {
    let nanos = |t: NaiveDateTime| t.and_utc().timestamp_nanos_opt();
    let parsed = DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .and_then(nanos)
        })
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .and_then(nanos)
        });
    parsed.ok_or_else(|| InfluxqlError::Invalid(format!("invalid time literal: '{s}'")))
}

/// How a name resolves in one measurement.
pub type Columns = HashMap<String, ColumnType>;

/// A condition (time comparisons left in it, e.g. under an `OR`, included) as
/// a DataFusion predicate over one measurement. A missing tag is the empty
/// string, as in 1.x; a missing field is null, so comparisons with it are false.
pub fn condition(e: &Expr, columns: &Columns, now: i64) -> Result<DfExpr, InfluxqlError> {
    Ok(match e {
        Expr::Binary { op, lhs, rhs } => match op {
            BinaryOp::And | BinaryOp::Or => {
                let (l, r) = (condition(lhs, columns, now)?, condition(rhs, columns, now)?);
                let op = if *op == BinaryOp::And {
                    Operator::And
                } else {
                    Operator::Or
                };
                binary_expr(l, op, r)
            }
            BinaryOp::Eq
            | BinaryOp::NotEq
            | BinaryOp::Lt
            | BinaryOp::LtEq
            | BinaryOp::Gt
            | BinaryOp::GtEq
            | BinaryOp::RegexMatch
            | BinaryOp::RegexNotMatch => comparison(*op, lhs, rhs, columns, now)?,
            _ => {
                return Err(InfluxqlError::Invalid(
                    "invalid condition: expected a comparison".into(),
                ));
            }
        },
        Expr::Boolean(b) => lit(*b),
        _ => {
            return Err(InfluxqlError::Invalid(
                "invalid condition: expected a comparison".into(),
            ));
        }
    })
}

fn df_operator(op: BinaryOp) -> Operator {
    match op {
        BinaryOp::Add => Operator::Plus,
        BinaryOp::Sub => Operator::Minus,
        BinaryOp::Mul => Operator::Multiply,
        BinaryOp::Div => Operator::Divide,
        BinaryOp::Mod => Operator::Modulo,
        BinaryOp::BitAnd => Operator::BitwiseAnd,
        BinaryOp::BitOr => Operator::BitwiseOr,
        BinaryOp::BitXor => Operator::BitwiseXor,
        BinaryOp::Eq => Operator::Eq,
        BinaryOp::NotEq => Operator::NotEq,
        BinaryOp::Lt => Operator::Lt,
        BinaryOp::LtEq => Operator::LtEq,
        BinaryOp::Gt => Operator::Gt,
        BinaryOp::GtEq => Operator::GtEq,
        BinaryOp::RegexMatch => Operator::RegexMatch,
        BinaryOp::RegexNotMatch => Operator::RegexNotMatch,
        BinaryOp::And => Operator::And,
        BinaryOp::Or => Operator::Or,
    }
}

fn comparison(
    op: BinaryOp,
    lhs: &Expr,
    rhs: &Expr,
    columns: &Columns,
    now: i64,
) -> Result<DfExpr, InfluxqlError> {
    if is_time(lhs) || is_time(rhs) {
        let (op, t) = time_comparison(
            &Expr::Binary {
                op,
                lhs: Box::new(lhs.clone()),
                rhs: Box::new(rhs.clone()),
            },
            now,
        )?
        .ok_or_else(|| InfluxqlError::Invalid("invalid time condition".into()))?;
        let time = lit(ScalarValue::TimestampNanosecond(Some(t), None));
        return Ok(binary_expr(ident(TIME_COLUMN), df_operator(op), time));
    }
    if let Some(plain) = plain_tag_comparison(op, lhs, rhs, columns) {
        return Ok(plain);
    }
    let textual = matches!(lhs, Expr::String(_) | Expr::Regex(_))
        || matches!(rhs, Expr::String(_) | Expr::Regex(_));
    let l = operand(lhs, columns, textual)?;
    let r = operand(rhs, columns, textual)?;
    match (l, r) {
        (Some(l), Some(r)) => Ok(binary_expr(l, df_operator(op), r)),
        // A comparison with a field that does not exist matches nothing.
        _ => Ok(lit(false)),
    }
}

/// A tag compared with a literal, on the plain column, when a missing tag
/// (the empty string in 1.x) would not satisfy the comparison: the null a
/// missing tag reads as is then as false as the empty string, and Parquet
/// statistics and DataFusion's pruning can use `host = 'a'`, which they cannot
/// use through the `coalesce(host, '')` a missing tag needs otherwise.
/// `None` when the empty string matters (`host = ''`, `host != 'a'`,
/// `host =~ /.*/`) or the comparison is not of a tag with a literal.
fn plain_tag_comparison(op: BinaryOp, lhs: &Expr, rhs: &Expr, columns: &Columns) -> Option<DfExpr> {
    let tag = |e: &Expr| match e {
        Expr::VarRef {
            name,
            data_type: None | Some(VarType::Tag),
        } if columns.get(name) == Some(&ColumnType::Tag) => Some(name.clone()),
        _ => None,
    };
    // The comparison with the tag on the left.
    let (name, op, literal) = match (tag(lhs), tag(rhs)) {
        (Some(name), None) => (name, op, rhs),
        (None, Some(name)) => {
            let flipped = match op {
                BinaryOp::Lt => BinaryOp::Gt,
                BinaryOp::LtEq => BinaryOp::GtEq,
                BinaryOp::Gt => BinaryOp::Lt,
                BinaryOp::GtEq => BinaryOp::LtEq,
                BinaryOp::Eq | BinaryOp::NotEq => op,
                // `/re/ =~ host` is not how a regex comparison is written.
                _ => return None,
            };
            (name, flipped, lhs)
        }
        _ => return None,
    };
    let empty_matches = match (op, literal) {
        (BinaryOp::Eq, Expr::String(s)) => s.is_empty(),
        (BinaryOp::NotEq, Expr::String(s)) => !s.is_empty(),
        (BinaryOp::Lt, Expr::String(s)) => !s.is_empty(),
        (BinaryOp::LtEq, Expr::String(_)) => true,
        (BinaryOp::Gt, Expr::String(_)) => false,
        (BinaryOp::GtEq, Expr::String(s)) => s.is_empty(),
        // An invalid regex keeps its error where the coalesced form reports it.
        (BinaryOp::RegexMatch, Expr::Regex(r)) => {
            regex::Regex::new(r).map_or(true, |re| re.is_match(""))
        }
        (BinaryOp::RegexNotMatch, Expr::Regex(r)) => {
            regex::Regex::new(r).map_or(true, |re| !re.is_match(""))
        }
        _ => return None,
    };
    if empty_matches {
        return None;
    }
    let value = match literal {
        Expr::String(s) | Expr::Regex(s) => lit(s.as_str()),
        _ => return None,
    };
    Some(binary_expr(ident(name), df_operator(op), value))
}

/// One side of a comparison; `None` for a missing field.
fn operand(e: &Expr, columns: &Columns, textual: bool) -> Result<Option<DfExpr>, InfluxqlError> {
    Ok(Some(match e {
        Expr::VarRef { name, data_type } => match (columns.get(name), data_type) {
            (Some(ColumnType::Tag), None | Some(VarType::Tag)) => {
                datafusion::functions::core::expr_fn::coalesce(vec![ident(name), lit("")])
            }
            (Some(t), None | Some(VarType::Field)) if t.is_field() => ident(name),
            (Some(t), Some(VarType::Float)) if t.is_field() => {
                cast(ident(name), arrow::datatypes::DataType::Float64)
            }
            (Some(t), Some(_)) if t.is_field() => ident(name),
            // A missing tag is the empty string; a missing field is null.
            _ if textual => lit(""),
            _ => return Ok(None),
        },
        Expr::String(s) => lit(s.as_str()),
        Expr::Regex(r) => lit(r.as_str()),
        Expr::Integer(i) => lit(*i),
        Expr::Float(f) => lit(*f),
        Expr::Boolean(b) => lit(*b),
        Expr::Duration(d) => lit(*d),
        Expr::Negate(inner) => match operand(inner, columns, textual)? {
            Some(x) => DfExpr::Negative(Box::new(x)),
            None => return Ok(None),
        },
        Expr::Binary { op, lhs, rhs } if is_arithmetic(*op) => {
            let (Some(l), Some(r)) = (
                operand(lhs, columns, textual)?,
                operand(rhs, columns, textual)?,
            ) else {
                return Ok(None);
            };
            // InfluxQL divides as floats, whatever the operands.
            if *op == BinaryOp::Div {
                let f = arrow::datatypes::DataType::Float64;
                when(cast(r.clone(), f.clone()).eq(lit(0.0)), lit(0.0))
                    .otherwise(cast(l, f.clone()) / cast(r, f))?
            } else {
                binary_expr(l, df_operator(*op), r)
            }
        }
        _ => {
            return Err(InfluxqlError::Invalid(format!(
                "invalid condition operand: {e:?}"
            )));
        }
    }))
}

pub fn is_arithmetic(op: BinaryOp) -> bool {
    matches!(
        op,
        BinaryOp::Add
            | BinaryOp::Sub
            | BinaryOp::Mul
            | BinaryOp::Div
            | BinaryOp::Mod
            | BinaryOp::BitAnd
            | BinaryOp::BitOr
            | BinaryOp::BitXor
    )
}

/// InfluxQL arithmetic on two values: integers stay integers except under
/// `/`, which is always float; anything with a null is null; division by zero
/// is 0, as in 1.x.
pub fn arithmetic(op: BinaryOp, l: &Value, r: &Value) -> Value {
    use Value::{Boolean, Float, Integer, Null, Unsigned};
    match (l, r) {
        (Integer(a), Integer(b)) => match op {
            BinaryOp::Add => Integer(a.wrapping_add(*b)),
            BinaryOp::Sub => Integer(a.wrapping_sub(*b)),
            BinaryOp::Mul => Integer(a.wrapping_mul(*b)),
            BinaryOp::Div if *b == 0 => Float(0.0),
            BinaryOp::Div => Float(*a as f64 / *b as f64),
            BinaryOp::Mod if *b == 0 => Integer(0),
            BinaryOp::Mod => Integer(a.wrapping_rem(*b)),
            BinaryOp::BitAnd => Integer(a & b),
            BinaryOp::BitOr => Integer(a | b),
            BinaryOp::BitXor => Integer(a ^ b),
            _ => Null,
        },
        (Unsigned(a), Unsigned(b)) => match op {
            BinaryOp::Add => Unsigned(a.wrapping_add(*b)),
            BinaryOp::Sub => Unsigned(a.wrapping_sub(*b)),
            BinaryOp::Mul => Unsigned(a.wrapping_mul(*b)),
            BinaryOp::Div if *b == 0 => Float(0.0),
            BinaryOp::Div => Float(*a as f64 / *b as f64),
            BinaryOp::Mod if *b == 0 => Unsigned(0),
            BinaryOp::Mod => Unsigned(a % b),
            BinaryOp::BitAnd => Unsigned(a & b),
            BinaryOp::BitOr => Unsigned(a | b),
            BinaryOp::BitXor => Unsigned(a ^ b),
            _ => Null,
        },
        (Boolean(a), Boolean(b)) => match op {
            BinaryOp::BitAnd => Boolean(a & b),
            BinaryOp::BitOr => Boolean(a | b),
            BinaryOp::BitXor => Boolean(a ^ b),
            _ => Null,
        },
        _ => match (l.as_f64(), r.as_f64()) {
            (Some(a), Some(b)) => match op {
                BinaryOp::Add => Float(a + b),
                BinaryOp::Sub => Float(a - b),
                BinaryOp::Mul => Float(a * b),
                BinaryOp::Div if b == 0.0 => Float(0.0),
                BinaryOp::Div => Float(a / b),
                BinaryOp::Mod if b == 0.0 => Float(0.0),
                BinaryOp::Mod => Float(a % b),
                _ => Null,
            },
            _ => Null,
        },
    }
}

/// A column's name as 1.x derives it: a reference's or call's name; for
/// arithmetic, the names of its references and calls joined by `_`.
pub fn column_name(e: &Expr) -> String {
    let mut names = Vec::new();
    collect_names(e, &mut names);
    names.join("_")
}

fn collect_names(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::VarRef { name, .. } => out.push(name.clone()),
        Expr::Call { name, .. } => out.push(name.clone()),
        Expr::Binary { lhs, rhs, .. } => {
            collect_names(lhs, out);
            collect_names(rhs, out);
        }
        Expr::Negate(inner) => collect_names(inner, out),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str) -> Box<Expr> {
        Box::new(Expr::VarRef {
            name: name.into(),
            data_type: None,
        })
    }

    fn bin(op: BinaryOp, lhs: Box<Expr>, rhs: Box<Expr>) -> Expr {
        Expr::Binary { op, lhs, rhs }
    }

    #[test]
    fn time_bounds_come_out_of_the_and_chain() {
        let now = 10_000;
        let cond = bin(
            BinaryOp::And,
            Box::new(bin(
                BinaryOp::GtEq,
                var("time"),
                Box::new(Expr::Binary {
                    op: BinaryOp::Sub,
                    lhs: Box::new(Expr::Call {
                        name: "now".into(),
                        args: vec![],
                    }),
                    rhs: Box::new(Expr::Duration(1000)),
                }),
            )),
            Box::new(bin(
                BinaryOp::And,
                Box::new(bin(
                    BinaryOp::Eq,
                    var("host"),
                    Box::new(Expr::String("a".into())),
                )),
                Box::new(bin(
                    BinaryOp::Gt,
                    Box::new(Expr::String("1970-01-01T00:00:00.000009Z".into())),
                    var("time"),
                )),
            )),
        );
        let (bounds, rest) = split_time(Some(&cond), now).unwrap();
        assert_eq!(
            bounds,
            TimeBounds {
                start: Some(9_000),
                end: Some(8_999)
            }
        );
        assert_eq!(
            rest,
            Some(bin(
                BinaryOp::Eq,
                var("host"),
                Box::new(Expr::String("a".into()))
            ))
        );
        assert!(parse_time_string("2023-01-02").is_ok());
        assert!(parse_time_string("yesterday").is_err());
    }

    /// A tag compared with a literal the empty string cannot satisfy is a
    /// comparison of the plain column (which statistics prune by); where a
    /// missing tag would match, the column is read as `coalesce(tag, '')`.
    #[test]
    fn tag_comparisons_coalesce_only_where_the_empty_string_matches() {
        let columns: Columns = [
            ("host".to_string(), ColumnType::Tag),
            ("v".to_string(), ColumnType::Float),
        ]
        .into_iter()
        .collect();
        let string = |s: &str| Box::new(Expr::String(s.into()));
        let re = |s: &str| Box::new(Expr::Regex(s.into()));
        let planned = |e: Expr| condition(&e, &columns, 0).unwrap().to_string();
        let plain = [
            (
                bin(BinaryOp::Eq, var("host"), string("a")),
                "host = Utf8(\"a\")",
            ),
            (
                bin(BinaryOp::Eq, string("a"), var("host")),
                "host = Utf8(\"a\")",
            ),
            (
                bin(BinaryOp::Gt, var("host"), string("")),
                "host > Utf8(\"\")",
            ),
            (
                bin(BinaryOp::Lt, string("a"), var("host")),
                "host > Utf8(\"a\")",
            ),
            (
                bin(BinaryOp::GtEq, var("host"), string("a")),
                "host >= Utf8(\"a\")",
            ),
            (
                bin(BinaryOp::RegexMatch, var("host"), re("^h[12]$")),
                "host ~ Utf8(\"^h[12]$\")",
            ),
            (
                bin(BinaryOp::RegexNotMatch, var("host"), re(".*")),
                "host !~ Utf8(\".*\")",
            ),
        ];
        for (e, expected) in plain {
            assert_eq!(planned(e), expected);
        }
        let coalesced = [
            bin(BinaryOp::Eq, var("host"), string("")),
            bin(BinaryOp::NotEq, var("host"), string("a")),
            bin(BinaryOp::Lt, var("host"), string("a")),
            bin(BinaryOp::LtEq, var("host"), string("")),
            bin(BinaryOp::RegexMatch, var("host"), re("a*")),
            bin(BinaryOp::RegexNotMatch, var("host"), re("^h")),
        ];
        for e in coalesced {
            let text = planned(e);
            assert!(text.contains("coalesce(host, Utf8(\"\"))"), "{text}");
        }
        // Fields and missing tags are as they were.
        assert_eq!(
            planned(bin(BinaryOp::Eq, var("v"), Box::new(Expr::Integer(1)))),
            "v = Int64(1)"
        );
        assert_eq!(
            planned(bin(BinaryOp::Eq, var("nosuch"), string("a"))),
            "Utf8(\"\") = Utf8(\"a\")"
        );
    }

    #[test]
    fn arithmetic_and_names_follow_1x() {
        assert_eq!(
            arithmetic(BinaryOp::Div, &Value::Integer(3), &Value::Integer(2)),
            Value::Float(1.5)
        );
        assert_eq!(
            arithmetic(BinaryOp::Add, &Value::Integer(3), &Value::Float(0.5)),
            Value::Float(3.5)
        );
        assert_eq!(
            arithmetic(BinaryOp::Mul, &Value::Null, &Value::Float(0.5)),
            Value::Null
        );
        let e = bin(
            BinaryOp::Add,
            Box::new(bin(BinaryOp::Mul, var("a"), Box::new(Expr::Integer(2)))),
            var("b"),
        );
        assert_eq!(column_name(&e), "a_b");
    }
}
