//! The parser's statements: `SHOW …`, `CREATE DATABASE` and `SELECT` with its
//! clauses (fields, sources, `GROUP BY`, `fill`, `ORDER BY`, `LIMIT`, `tz`).
//!
//! Apart from the expressions ([`super::expr`]): a statement reads keywords
//! and clauses in a fixed order and never recurses, so the depth limits and
//! operator precedence stay out of it.

use super::expr::{comparison_in, op_text};
use super::{PResult, Parser};
use crate::influxql::ast::{
    Dimension, Expr, Field, Fill, MeasurementMatch, MeasurementName, Number, Select, Source,
    Statement, TagKeyMatch, VarType,
};
use crate::influxql::lexer::{Tok, Token};

/// The first tokens of every statement 1.x knows, in 1.x's order.
const STATEMENT_STARTS: &[&str] = &[
    "SELECT", "DELETE", "SHOW", "CREATE", "DROP", "EXPLAIN", "GRANT", "REVOKE", "ALTER", "SET",
    "KILL",
];

impl Parser<'_> {
    pub(super) fn statement(&mut self) -> PResult<Statement> {
        let t = self.next()?;
        match t.tok {
            Tok::Keyword("SELECT") => Ok(Statement::Select(Box::new(self.select()?))),
            Tok::Keyword("SHOW") => self.show(),
            Tok::Keyword("CREATE") => self.create(),
            Tok::Keyword(kw) if STATEMENT_STARTS.contains(&kw) => Err(self.unsupported(&t, kw)),
            _ => Err(self.unexpected(&t, STATEMENT_STARTS)),
        }
    }

    fn create(&mut self) -> PResult<Statement> {
        let t = self.next()?;
        let what = match t.tok {
            Tok::Keyword("DATABASE") => {
                let name = self.ident()?;
                let next = self.peek()?.clone();
                if next.is_keyword("WITH") {
                    return Err(self.unsupported(&next, "CREATE DATABASE WITH"));
                }
                return Ok(Statement::CreateDatabase { name });
            }
            Tok::Keyword("CONTINUOUS") => "CREATE CONTINUOUS QUERY",
            Tok::Keyword("USER") => "CREATE USER",
            Tok::Keyword("RETENTION") => "CREATE RETENTION POLICY",
            Tok::Keyword("SUBSCRIPTION") => "CREATE SUBSCRIPTION",
            _ => {
                return Err(self.unexpected(
                    &t,
                    &[
                        "CONTINUOUS",
                        "DATABASE",
                        "USER",
                        "RETENTION",
                        "SUBSCRIPTION",
                    ],
                ));
            }
        };
        Err(self.unsupported(&t, what))
    }

    fn show(&mut self) -> PResult<Statement> {
        let t = self.next()?;
        let what = match t.tok {
            Tok::Keyword("DATABASES") => return Ok(Statement::ShowDatabases),
            Tok::Keyword("RETENTION") => {
                self.expect_keyword("POLICIES")?;
                let on = self.on_clause()?;
                return Ok(Statement::ShowRetentionPolicies { on });
            }
            Tok::Keyword("MEASUREMENTS") => return self.show_measurements(),
            Tok::Keyword("TAG") => {
                let t = self.next()?;
                return match t.tok {
                    Tok::Keyword("KEYS") => self.show_tag_keys(),
                    Tok::Keyword("VALUES") => {
                        let n = self.peek()?.clone();
                        if n.is_word("cardinality") || n.is_word("exact") {
                            return Err(self.unsupported(&n, "SHOW TAG VALUES CARDINALITY"));
                        }
                        self.show_tag_values()
                    }
                    Tok::Keyword("KEY") => Err(self.unsupported(&t, "SHOW TAG KEY CARDINALITY")),
                    _ => Err(self.unexpected(&t, &["KEY", "KEYS", "VALUES"])),
                };
            }
            Tok::Keyword("FIELD") => {
                let t = self.next()?;
                return match t.tok {
                    Tok::Keyword("KEYS") => self.show_field_keys(),
                    Tok::Keyword("KEY") => Err(self.unsupported(&t, "SHOW FIELD KEY CARDINALITY")),
                    _ => Err(self.unexpected(&t, &["KEY", "KEYS"])),
                };
            }
            Tok::Keyword("CONTINUOUS") => "SHOW CONTINUOUS QUERIES",
            Tok::Keyword("MEASUREMENT") => "SHOW MEASUREMENT CARDINALITY",
            Tok::Keyword("SHARD") => "SHOW SHARD GROUPS",
            Tok::Keyword("SERIES") => {
                let n = self.peek()?.clone();
                if n.is_word("cardinality") || n.is_word("exact") {
                    return Err(self.unsupported(&n, "SHOW SERIES CARDINALITY"));
                }
                return self.show_series();
            }
            Tok::Keyword("DIAGNOSTICS") => "SHOW DIAGNOSTICS",
            Tok::Keyword("GRANTS") => "SHOW GRANTS",
            Tok::Keyword("QUERIES") => "SHOW QUERIES",
            Tok::Keyword("SHARDS") => "SHOW SHARDS",
            Tok::Keyword("STATS") => "SHOW STATS",
            Tok::Keyword("SUBSCRIPTIONS") => "SHOW SUBSCRIPTIONS",
            Tok::Keyword("USERS") => "SHOW USERS",
            _ => {
                return Err(self.unexpected(
                    &t,
                    &[
                        "CONTINUOUS",
                        "DATABASES",
                        "DIAGNOSTICS",
                        "FIELD",
                        "GRANTS",
                        "MEASUREMENT",
                        "MEASUREMENTS",
                        "QUERIES",
                        "RETENTION",
                        "SERIES",
                        "SHARD",
                        "SHARDS",
                        "STATS",
                        "SUBSCRIPTIONS",
                        "TAG",
                        "USERS",
                    ],
                ));
            }
        };
        Err(self.unsupported(&t, what))
    }

    fn show_measurements(&mut self) -> PResult<Statement> {
        // 1.x also takes `ON *` and `ON db.rp` here; inflow answers one
        // database at a time.
        let on = if self.eat_keyword("ON")? {
            let t = self.peek()?.clone();
            if t.is_sym("*") {
                return Err(self.unsupported(&t, "SHOW MEASUREMENTS ON *"));
            }
            let db = self.ident()?;
            let t = self.peek()?.clone();
            if t.is_sym(".") {
                return Err(self.unsupported(&t, "SHOW MEASUREMENTS ON db.rp"));
            }
            Some(db)
        } else {
            None
        };
        let mut with_measurement = None;
        if self.eat_keyword("WITH")? {
            self.expect_keyword("MEASUREMENT")?;
            let op = self.next()?;
            with_measurement = Some(match op.tok {
                Tok::Sym("=") => MeasurementMatch::Equal(self.ident()?),
                Tok::Sym("!=" | "<>") => MeasurementMatch::NotEqual(self.ident()?),
                Tok::Sym("=~") => MeasurementMatch::Regex(self.expect_regex()?),
                Tok::Sym("!~") => MeasurementMatch::NotRegex(self.expect_regex()?),
                _ => return Err(self.unexpected(&op, &["=", "!=", "=~", "!~"])),
            });
        }
        let condition = self.where_clause()?;
        self.refuse_clauses(&["ORDER"])?;
        let limit = self.optional_count("LIMIT")?;
        let offset = self.optional_count("OFFSET")?;
        Ok(Statement::ShowMeasurements {
            on,
            with_measurement,
            condition,
            limit,
            offset,
        })
    }

    /// `ON db` and `FROM sources`, shared by the SHOW … KEYS/VALUES statements.
    fn show_on_from(&mut self) -> PResult<(Option<String>, Vec<Source>)> {
        let on = self.on_clause()?;
        let from = if self.eat_keyword("FROM")? {
            self.sources(false)?
        } else {
            Vec::new()
        };
        Ok((on, from))
    }

    fn show_tag_keys(&mut self) -> PResult<Statement> {
        let (on, from) = self.show_on_from()?;
        let condition = self.where_clause()?;
        self.refuse_clauses(&["ORDER"])?;
        let limit = self.optional_count("LIMIT")?;
        let offset = self.optional_count("OFFSET")?;
        self.refuse_clauses(&["SLIMIT", "SOFFSET"])?;
        Ok(Statement::ShowTagKeys {
            on,
            from,
            condition,
            limit,
            offset,
        })
    }

    fn show_tag_values(&mut self) -> PResult<Statement> {
        let (on, from) = self.show_on_from()?;
        self.expect_keyword("WITH")?;
        self.expect_keyword("KEY")?;
        let op = self.next()?;
        let key = match op.tok {
            Tok::Sym("=") => TagKeyMatch::Equal(self.ident()?),
            Tok::Sym("!=" | "<>") => TagKeyMatch::NotEqual(self.ident()?),
            Tok::Sym("=~") => TagKeyMatch::Regex(self.expect_regex()?),
            Tok::Sym("!~") => TagKeyMatch::NotRegex(self.expect_regex()?),
            Tok::Keyword("IN") => {
                self.expect_sym("(")?;
                let mut keys = vec![self.ident()?];
                while self.eat_sym(",")? {
                    keys.push(self.ident()?);
                }
                self.expect_sym(")")?;
                TagKeyMatch::In(keys)
            }
            _ => return Err(self.unexpected(&op, &["IN", "=", "=~"])),
        };
        let condition = self.where_clause()?;
        self.refuse_clauses(&["ORDER"])?;
        let limit = self.optional_count("LIMIT")?;
        let offset = self.optional_count("OFFSET")?;
        Ok(Statement::ShowTagValues {
            on,
            from,
            key,
            condition,
            limit,
            offset,
        })
    }

    fn show_series(&mut self) -> PResult<Statement> {
        let (on, from) = self.show_on_from()?;
        let condition = self.where_clause()?;
        self.refuse_clauses(&["ORDER"])?;
        let limit = self.optional_count("LIMIT")?;
        let offset = self.optional_count("OFFSET")?;
        Ok(Statement::ShowSeries {
            on,
            from,
            condition,
            limit,
            offset,
        })
    }

    fn show_field_keys(&mut self) -> PResult<Statement> {
        let (on, from) = self.show_on_from()?;
        self.refuse_clauses(&["ORDER"])?;
        let limit = self.optional_count("LIMIT")?;
        let offset = self.optional_count("OFFSET")?;
        Ok(Statement::ShowFieldKeys {
            on,
            from,
            limit,
            offset,
        })
    }

    // -----------------------------------------------------------------------
    // SELECT
    // -----------------------------------------------------------------------

    fn select(&mut self) -> PResult<Select> {
        let fields = self.fields()?;
        let t = self.peek()?.clone();
        if t.is_keyword("INTO") {
            return Err(self.unsupported(&t, "INTO"));
        }
        self.expect_keyword("FROM")?;
        let from = self.sources(true)?;
        let condition = self.where_clause()?;
        let group_by = if self.eat_keyword("GROUP")? {
            self.expect_keyword("BY")?;
            self.dimensions()?
        } else {
            Vec::new()
        };
        let fill = self.fill()?;
        let order_desc = self.order_by()?;
        let limit = self.optional_count("LIMIT")?;
        let offset = self.optional_count("OFFSET")?;
        let slimit = self.optional_count("SLIMIT")?;
        let soffset = self.optional_count("SOFFSET")?;
        let tz = self.tz()?;
        Ok(Select {
            fields,
            from,
            condition,
            group_by,
            fill,
            order_desc,
            limit,
            offset,
            slimit,
            soffset,
            tz,
        })
    }

    fn fields(&mut self) -> PResult<Vec<Field>> {
        let mut fields = Vec::new();
        loop {
            let start = self.peek()?.start;
            let expr = if self.peek()?.is_sym("*") {
                self.wildcard()?
            } else if let Some(t) = self.try_regex()? {
                // `SELECT /usage/ FROM m`: every field and tag the regex matches.
                let Tok::Regex(re) = t.tok else {
                    unreachable!("try_regex returns regex tokens")
                };
                Expr::Regex(re)
            } else {
                self.expr()?
            };
            // 1.x refuses conditions in the select list at the field's start.
            if let Some(op) = comparison_in(&expr) {
                return Err(self.err_at(
                    start,
                    format!(
                        "invalid operator {} in SELECT clause; operator is intended for WHERE clause",
                        op_text(op)
                    ),
                ));
            }
            let alias = if self.eat_keyword("AS")? {
                Some(self.ident()?)
            } else {
                None
            };
            fields.push(Field { expr, alias });
            if !self.eat_sym(",")? {
                return Ok(fields);
            }
        }
    }

    fn sources(&mut self, allow_subquery: bool) -> PResult<Vec<Source>> {
        let mut sources = vec![self.source(allow_subquery)?];
        while self.eat_sym(",")? {
            sources.push(self.source(allow_subquery)?);
        }
        Ok(sources)
    }

    /// `m`, `rp.m`, `db.rp.m`, `db..m`, `/re/`, `rp./re/`, `db.rp./re/`.
    fn source(&mut self, allow_subquery: bool) -> PResult<Source> {
        if let Some(Token {
            tok: Tok::Regex(re),
            ..
        }) = self.try_regex()?
        {
            return Ok(Source {
                database: None,
                retention_policy: None,
                name: MeasurementName::Regex(re),
            });
        }
        let t = self.peek()?.clone();
        if allow_subquery && t.is_sym("(") {
            return Err(self.unsupported(&t, "subquery"));
        }
        let mut segments = vec![self.ident()?];
        let mut regex = None;
        while self.adjacent_sym(".")? {
            self.next()?;
            let rest = self.lex.rest();
            if rest.starts_with('/') {
                match self.try_regex()? {
                    Some(Token {
                        tok: Tok::Regex(re),
                        ..
                    }) => regex = Some(re),
                    _ => {
                        let t = self.next()?;
                        return Err(self.unexpected(&t, &["identifier"]));
                    }
                }
                break;
            } else if rest.starts_with('.') {
                segments.push(String::new());
                continue;
            }
            segments.push(self.ident()?);
        }
        let max = if regex.is_some() { 2 } else { 3 };
        if segments.len() > max {
            return Err(self.err_at(
                t.start,
                format!("too many segments in {}", segments.join(".")),
            ));
        }
        let some = |s: String| (!s.is_empty()).then_some(s);
        let mut it = segments.into_iter();
        let (database, retention_policy, name) = match regex {
            Some(re) => {
                let (db, rp) = match (it.next(), it.next()) {
                    (Some(rp), None) => (None, some(rp)),
                    (db, rp) => (db.and_then(some), rp.and_then(some)),
                };
                (db, rp, MeasurementName::Regex(re))
            }
            None => {
                let all: Vec<String> = it.collect();
                match <[String; 3]>::try_from(all) {
                    Ok([db, rp, m]) => (some(db), some(rp), MeasurementName::Name(m)),
                    Err(mut all) => {
                        let m = all.pop().unwrap_or_default();
                        let rp = all.pop().and_then(some);
                        (None, rp, MeasurementName::Name(m))
                    }
                }
            }
        };
        Ok(Source {
            database,
            retention_policy,
            name,
        })
    }

    fn dimensions(&mut self) -> PResult<Vec<Dimension>> {
        let mut dims = vec![self.dimension()?];
        while self.eat_sym(",")? {
            dims.push(self.dimension()?);
        }
        Ok(dims)
    }

    fn dimension(&mut self) -> PResult<Dimension> {
        if let Some(Token {
            tok: Tok::Regex(re),
            ..
        }) = self.try_regex()?
        {
            return Ok(Dimension::Regex(re));
        }
        let t = self.peek()?.clone();
        if t.is_sym("*") {
            self.next()?;
            return Ok(Dimension::Wildcard);
        }
        if matches!(&t.tok, Tok::Ident(s) | Tok::QuotedIdent(s) if s.eq_ignore_ascii_case("time")) {
            self.next()?;
            if self.adjacent_sym("(")? {
                self.next()?;
                let args = self.args()?;
                return self.time_dimension(&t, args);
            }
            if self.adjacent_sym("::")? || self.adjacent_sym(".")? {
                return Err(self.err_tok(&t, "only time and tag dimensions allowed"));
            }
            return Err(self.err_tok(&t, "time() is a function and expects at least one argument"));
        }
        match self.expr()? {
            Expr::VarRef {
                name,
                data_type: None | Some(VarType::Tag),
            } => Ok(Dimension::Tag(name)),
            _ => Err(self.err_tok(&t, "only time and tag dimensions allowed")),
        }
    }

    fn time_dimension(&self, t: &Token, args: Vec<Expr>) -> PResult<Dimension> {
        let mut args = args.into_iter();
        let interval = match args.next() {
            // 1.x takes `time(0s)` as no time grouping.
            Some(Expr::Duration(d)) if d >= 0 => d,
            Some(Expr::Duration(_)) => {
                return Err(self.err_tok(t, "time dimension must have a positive duration"));
            }
            Some(_) => return Err(self.err_tok(t, "time dimension must have duration argument")),
            None => {
                return Err(self.err_tok(t, "time dimension expected 1 or 2 arguments"));
            }
        };
        let offset = match args.next() {
            None => None,
            Some(Expr::Duration(d)) => Some(d),
            Some(_) => return Err(self.err_tok(t, "time dimension offset must be a duration")),
        };
        if args.next().is_some() {
            return Err(self.err_tok(t, "time dimension expected 1 or 2 arguments"));
        }
        Ok(Dimension::Time { interval, offset })
    }

    /// `fill(null|none|previous|linear|<number>)`, optional.
    fn fill(&mut self) -> PResult<Option<Fill>> {
        let t = self.peek()?.clone();
        if !t.is_word("fill") {
            return Ok(None);
        }
        self.next()?;
        if !self.adjacent_sym("(")? {
            return Err(self.err_tok(&t, "fill must be a function call"));
        }
        self.next()?;
        let args = self.args()?;
        let [arg] = <[Expr; 1]>::try_from(args).map_err(|_| {
            self.err_tok(
                &t,
                "fill requires an argument, e.g.: 0, null, none, previous, linear",
            )
        })?;
        let fill = match arg {
            Expr::VarRef {
                name,
                data_type: None,
            } => match name.to_ascii_lowercase().as_str() {
                "null" => Fill::Null,
                "none" => Fill::None,
                "previous" => Fill::Previous,
                "linear" => Fill::Linear,
                _ => return Err(self.err_tok(&t, "expected number argument in fill()")),
            },
            Expr::Integer(n) => Fill::Value(Number::Integer(n)),
            Expr::Float(f) => Fill::Value(Number::Float(f)),
            _ => return Err(self.err_tok(&t, "expected number argument in fill()")),
        };
        Ok(Some(fill))
    }

    /// `ORDER BY time [ASC|DESC]` (or a bare `ORDER BY ASC|DESC`); returns
    /// whether the order is descending.
    fn order_by(&mut self) -> PResult<bool> {
        if !self.eat_keyword("ORDER")? {
            return Ok(false);
        }
        self.expect_keyword("BY")?;
        let t = self.next()?;
        let desc = match &t.tok {
            Tok::Keyword("ASC") => false,
            Tok::Keyword("DESC") => true,
            Tok::Ident(name) | Tok::QuotedIdent(name) => {
                if !name.eq_ignore_ascii_case("time") {
                    return Err(self.err_tok(&t, "only ORDER BY time supported at this time"));
                }
                if self.eat_keyword("DESC")? {
                    true
                } else {
                    self.eat_keyword("ASC")?;
                    false
                }
            }
            _ => return Err(self.unexpected(&t, &["identifier", "ASC", "DESC"])),
        };
        let comma = self.peek()?.clone();
        if comma.is_sym(",") {
            return Err(self.err_tok(&comma, "only ORDER BY time supported at this time"));
        }
        Ok(desc)
    }

    /// `tz('Zone/Name')`, optional. The name is checked by the planner.
    fn tz(&mut self) -> PResult<Option<String>> {
        let t = self.peek()?.clone();
        if !t.is_word("tz") {
            return Ok(None);
        }
        self.next()?;
        if !self.adjacent_sym("(")? {
            return Err(self.err_tok(&t, "tz must be a function call"));
        }
        self.next()?;
        let args = self.args()?;
        match <[Expr; 1]>::try_from(args) {
            Ok([Expr::String(zone)]) => Ok(Some(zone)),
            Ok(_) => Err(self.err_tok(&t, "expected string argument in tz()")),
            Err(_) => Err(self.err_tok(&t, "tz requires exactly one argument")),
        }
    }
}
