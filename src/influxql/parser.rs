//! A hand-written InfluxQL recursive-descent parser, over [`super::lexer`]'s
//! tokens.
//!
//! It follows InfluxDB 1.x's grammar and error messages (`found X, expected
//! Y at line L, char C`) so clients and users see what they are used to, but it
//! only produces the subset of statements `super::ast` can represent: every
//! other valid InfluxQL construct is refused with "`<what>` is not supported"
//! at the offending token, so nothing unanswerable reaches the planner.

use super::ast::{
    BinaryOp, Dimension, Expr, FUNCTIONS, Field, Fill, MeasurementMatch, MeasurementName, Number,
    Query, Select, Source, Statement, TagKeyMatch, VarType,
};
use super::lexer::{Lexer, Tok, Token, error_at};

pub use super::lexer::ParseError;

/// Parses one request's text: statements separated by `;`.
pub fn parse_query(text: &str) -> Result<Query, ParseError> {
    let mut parser = Parser::new(text);
    let mut statements = Vec::new();
    let mut after_semicolon = true;
    loop {
        let tok = parser.peek()?.clone();
        match tok.tok {
            Tok::Eof => return Ok(Query { statements }),
            Tok::Sym(";") => {
                parser.next()?;
                after_semicolon = true;
            }
            _ if !after_semicolon => return Err(parser.unexpected(&tok, &[";"])),
            _ => {
                statements.push(parser.statement()?);
                after_semicolon = false;
            }
        }
    }
}

/// Parses a duration literal (`1h30m`, `10ms`, `1672617600000ms`) to
/// nanoseconds, refusing (not wrapping) on overflow.
fn parse_duration(text: &str) -> Result<i64, String> {
    const INVALID: &str = "invalid duration";
    let mut total: i64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return Err(INVALID.to_string());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits == rest.len() {
            return Err(INVALID.to_string());
        }
        let (num, after) = rest.split_at(digits);
        let n: i64 = num.parse().map_err(|_| INVALID.to_string())?;
        let (unit_ns, unit_len): (i64, usize) = if after.starts_with("ns") {
            (1, 2)
        } else if after.starts_with("ms") {
            (1_000_000, 2)
        } else if after.starts_with('u') {
            (1_000, 1)
        } else if after.starts_with('µ') {
            (1_000, 'µ'.len_utf8())
        } else if after.starts_with('s') {
            (1_000_000_000, 1)
        } else if after.starts_with('m') {
            (60_000_000_000, 1)
        } else if after.starts_with('h') {
            (3_600_000_000_000, 1)
        } else if after.starts_with('d') {
            (86_400_000_000_000, 1)
        } else if after.starts_with('w') {
            (604_800_000_000_000, 1)
        } else {
            return Err(INVALID.to_string());
        };
        let (unit, tail) = after.split_at(unit_len);
        total = n
            .checked_mul(unit_ns)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| {
                format!("overflowed duration {n}{unit}: choose a smaller duration or INF")
            })?;
        rest = tail;
    }
    Ok(total)
}

// ---------------------------------------------------------------------------
// Parser: infrastructure
// ---------------------------------------------------------------------------

type PResult<T> = Result<T, ParseError>;

/// How deeply the parser may recurse into an expression (parentheses,
/// calls, signs), so that ten thousand `(` cannot overflow its stack.
const MAX_DEPTH: usize = 100;

/// How many operators (binary, unary minus, calls) may nest in one
/// expression's tree: `a OR b OR c` is 2 deep, `v = 1 OR v = 2` is 2 as well.
///
/// A left-deep chain such as `v=1 OR v=1 OR …` is parsed in a loop, so
/// [`MAX_DEPTH`] never sees it, but every walk of the tree afterwards
/// (evaluation, planning, DataFusion's optimizer, `Drop`) recurses once per
/// level: 100,000 terms overflow any thread's stack and abort the process.
/// Refusing past 256 levels keeps those walks within a 2 MiB stack (tokio's
/// and the test harness's default) in a debug build with a wide margin, while
/// real statements stay far below: a dashboard's multi-value variable of 100
/// hosts as `host = 'a' OR …` is 100 levels deep, and Grafana writes it as
/// one regex (1 level).
pub const MAX_EXPR_DEPTH: usize = 256;

/// The first tokens of every statement 1.x knows, in 1.x's order.
const STATEMENT_STARTS: &[&str] = &[
    "SELECT", "DELETE", "SHOW", "CREATE", "DROP", "EXPLAIN", "GRANT", "REVOKE", "ALTER", "SET",
    "KILL",
];

struct Parser<'a> {
    src: &'a str,
    lex: Lexer<'a>,
    /// One token of lookahead, lexed in the default (non-regex) mode.
    peeked: Option<Token>,
    /// End offset of the last consumed token, to detect adjacency (`f(`,
    /// `x::tag`, `db.m`) which 1.x requires.
    prev_end: usize,
    /// Current nesting of expressions, bounded so that hostile input such as
    /// ten thousand `(` cannot overflow the stack.
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            lex: Lexer { src, pos: 0 },
            peeked: None,
            prev_end: 0,
            depth: 0,
        }
    }

    fn peek(&mut self) -> PResult<&Token> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex.next_token()?);
        }
        match &self.peeked {
            Some(t) => Ok(t),
            None => Err(error_at(self.src, self.lex.pos, "internal lexer error")),
        }
    }

    fn next(&mut self) -> PResult<Token> {
        let tok = match self.peeked.take() {
            Some(t) => t,
            None => self.lex.next_token()?,
        };
        self.prev_end = tok.end;
        Ok(tok)
    }

    /// Lexes a regex at the current position if one starts there, dropping
    /// any lookahead lexed in the default mode (where `/` is division).
    fn try_regex(&mut self) -> PResult<Option<Token>> {
        if let Some(t) = self.peeked.take() {
            self.lex.pos = t.start;
        }
        let re = self.lex.regex()?;
        if let Some(t) = &re {
            self.prev_end = t.end;
        }
        Ok(re)
    }

    /// A regex that the grammar requires here (after `=~`, `!~`).
    fn expect_regex(&mut self) -> PResult<String> {
        match self.try_regex()? {
            Some(Token {
                tok: Tok::Regex(re),
                ..
            }) => Ok(re),
            _ => {
                let t = self.next()?;
                Err(self.unexpected(&t, &["regex"]))
            }
        }
    }

    fn err_at(&self, offset: usize, message: impl Into<String>) -> ParseError {
        error_at(self.src, offset, message)
    }

    /// An error positioned at a token; like 1.x, EOF is reported one
    /// character past the end of the text.
    fn err_tok(&self, tok: &Token, message: impl Into<String>) -> ParseError {
        let mut e = self.err_at(tok.start, message);
        if tok.tok == Tok::Eof {
            e.char += 1;
        }
        e
    }

    fn unexpected(&self, tok: &Token, expected: &[&str]) -> ParseError {
        self.err_tok(
            tok,
            format!("found {}, expected {}", tok.describe(), expected.join(", ")),
        )
    }

    fn unsupported(&self, tok: &Token, what: &str) -> ParseError {
        self.err_tok(tok, format!("{what} is not supported"))
    }

    fn peek_keyword(&mut self, kw: &str) -> PResult<bool> {
        Ok(self.peek()?.is_keyword(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> PResult<bool> {
        if self.peek_keyword(kw)? {
            self.next()?;
            return Ok(true);
        }
        Ok(false)
    }

    fn eat_sym(&mut self, sym: &str) -> PResult<bool> {
        if self.peek()?.is_sym(sym) {
            self.next()?;
            return Ok(true);
        }
        Ok(false)
    }

    fn expect_keyword(&mut self, kw: &str) -> PResult<Token> {
        let t = self.next()?;
        if t.is_keyword(kw) {
            Ok(t)
        } else {
            Err(self.unexpected(&t, &[kw]))
        }
    }

    fn expect_sym(&mut self, sym: &str) -> PResult<Token> {
        let t = self.next()?;
        if t.is_sym(sym) {
            Ok(t)
        } else {
            Err(self.unexpected(&t, &[sym]))
        }
    }

    /// Whether the next token is `sym` written directly after the previous
    /// token, with no blank in between.
    fn adjacent_sym(&mut self, sym: &str) -> PResult<bool> {
        let prev_end = self.prev_end;
        let t = self.peek()?;
        Ok(t.is_sym(sym) && t.start == prev_end)
    }

    fn ident(&mut self) -> PResult<String> {
        let t = self.next()?;
        match t.tok {
            Tok::Ident(s) | Tok::QuotedIdent(s) => Ok(s),
            _ => Err(self.unexpected(&t, &["identifier"])),
        }
    }

    /// `ON db`, optional.
    fn on_clause(&mut self) -> PResult<Option<String>> {
        if self.eat_keyword("ON")? {
            return Ok(Some(self.ident()?));
        }
        Ok(None)
    }

    fn where_clause(&mut self) -> PResult<Option<Expr>> {
        if self.eat_keyword("WHERE")? {
            return Ok(Some(self.expr()?));
        }
        Ok(None)
    }

    /// `KW n` where n is a non-negative integer, optional.
    fn optional_count(&mut self, kw: &str) -> PResult<Option<u64>> {
        if !self.eat_keyword(kw)? {
            return Ok(None);
        }
        let t = self.next()?;
        match &t.tok {
            Tok::Integer(digits) => match digits.parse::<i64>() {
                Ok(n) => Ok(Some(n.unsigned_abs())),
                Err(_) => Err(self.err_tok(&t, "unable to parse integer")),
            },
            _ => Err(self.unexpected(&t, &["integer"])),
        }
    }

    /// Refuses clauses 1.x accepts at this point of a SHOW statement but
    /// that inflow does not implement.
    fn refuse_clauses(&mut self, clauses: &[&str]) -> PResult<()> {
        let t = self.peek()?.clone();
        for kw in clauses {
            if t.is_keyword(kw) {
                let what = if *kw == "ORDER" { "ORDER BY" } else { kw };
                return Err(self.unsupported(&t, what));
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------
    // Statements
    // -----------------------------------------------------------------------

    fn statement(&mut self) -> PResult<Statement> {
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

    /// `*`, `*::field` or `*::tag`; the caller has seen the `*`.
    fn wildcard(&mut self) -> PResult<Expr> {
        self.next()?;
        if !self.adjacent_sym("::")? {
            return Ok(Expr::Wildcard(None));
        }
        self.next()?;
        let t = self.next()?;
        match t.tok {
            Tok::Keyword("FIELD") => Ok(Expr::Wildcard(Some(VarType::Field))),
            Tok::Keyword("TAG") => Ok(Expr::Wildcard(Some(VarType::Tag))),
            _ => Err(self.unexpected(&t, &["field", "tag"])),
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

    // -----------------------------------------------------------------------
    // Expressions
    // -----------------------------------------------------------------------

    fn expr(&mut self) -> PResult<Expr> {
        Ok(self.binary(1)?.0)
    }

    /// Precedence climbing over 1.x's levels: OR 1, AND 2, comparisons 4,
    /// `+ - | ^` 5, `* / % &` 6; all left-associative. Returns the
    /// expression with its depth in operators, refusing at the operator that
    /// would take it past [`MAX_EXPR_DEPTH`], before the tree grows further.
    fn binary(&mut self, min_prec: u8) -> PResult<(Expr, usize)> {
        let (mut lhs, mut depth) = self.unary()?;
        loop {
            let t = self.peek()?.clone();
            let Some((op, prec)) = binary_op(&t) else {
                return Ok((lhs, depth));
            };
            if prec < min_prec {
                return Ok((lhs, depth));
            }
            self.next()?;
            let (rhs, rhs_depth) = if matches!(op, BinaryOp::RegexMatch | BinaryOp::RegexNotMatch) {
                (Expr::Regex(self.expect_regex()?), 0)
            } else {
                self.binary(prec + 1)?
            };
            depth = self.operator_depth(&t, depth.max(rhs_depth))?;
            lhs = Expr::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
    }

    /// The depth of an operator over operands at most `below` deep, refused
    /// (at `at`) past [`MAX_EXPR_DEPTH`].
    fn operator_depth(&self, at: &Token, below: usize) -> PResult<usize> {
        if below >= MAX_EXPR_DEPTH {
            return Err(self.err_tok(
                at,
                format!(
                    "expression is nested too deeply: more than {MAX_EXPR_DEPTH} levels of operators"
                ),
            ));
        }
        Ok(below + 1)
    }

    fn unary(&mut self) -> PResult<(Expr, usize)> {
        if self.depth >= MAX_DEPTH {
            let t = self.peek()?.clone();
            return Err(self.err_tok(&t, "expression is nested too deeply"));
        }
        self.depth += 1;
        let e = self.unary_inner();
        self.depth -= 1;
        e
    }

    fn unary_inner(&mut self) -> PResult<(Expr, usize)> {
        let t = self.next()?;
        let leaf = match t.tok {
            Tok::Sym("(") => {
                let e = self.binary(1)?;
                self.expect_sym(")")?;
                return Ok(e);
            }
            Tok::Sym(sign @ ("-" | "+")) => return self.signed(sign == "-"),
            Tok::Ident(ref name) | Tok::QuotedIdent(ref name) => {
                let name = name.clone();
                if self.adjacent_sym("(")? {
                    return self.call(&t, &name);
                }
                if matches!(t.tok, Tok::Ident(_))
                    && !self.adjacent_sym(".")?
                    && !self.adjacent_sym("::")?
                {
                    if name.eq_ignore_ascii_case("true") {
                        return Ok((Expr::Boolean(true), 0));
                    }
                    if name.eq_ignore_ascii_case("false") {
                        return Ok((Expr::Boolean(false), 0));
                    }
                }
                self.var_ref(name)?
            }
            Tok::Keyword("DISTINCT") => return self.distinct(&t),
            Tok::Str(s) => Expr::String(s),
            Tok::Integer(_) | Tok::Number(_) | Tok::Duration(_) => self.number(&t, false)?,
            _ => return Err(self.unexpected(&t, &["identifier", "string", "number", "bool"])),
        };
        Ok((leaf, 0))
    }

    /// A unary sign: folded into a numeric literal (`-1`, `- 5m`), otherwise
    /// `Negate` (or nothing, for `+`).
    fn signed(&mut self, negative: bool) -> PResult<(Expr, usize)> {
        let t = self.peek()?.clone();
        match t.tok {
            Tok::Integer(_) | Tok::Number(_) | Tok::Duration(_) => {
                self.next()?;
                Ok((self.number(&t, negative)?, 0))
            }
            Tok::Sym("(") | Tok::Ident(_) | Tok::QuotedIdent(_) => {
                let (e, depth) = self.unary()?;
                Ok(if negative {
                    (Expr::Negate(Box::new(e)), self.operator_depth(&t, depth)?)
                } else {
                    (e, depth)
                })
            }
            _ => Err(self.unexpected(&t, &["identifier", "number", "duration", "("])),
        }
    }

    /// An integer, decimal or duration literal, negated when `negative`.
    fn number(&self, t: &Token, negative: bool) -> PResult<Expr> {
        let sign = if negative { "-" } else { "" };
        match &t.tok {
            Tok::Integer(digits) => format!("{sign}{digits}")
                .parse::<i64>()
                .map(Expr::Integer)
                .map_err(|_| self.err_tok(t, "unable to parse integer")),
            Tok::Number(text) => format!("{sign}{text}")
                .parse::<f64>()
                .map(Expr::Float)
                .map_err(|_| self.err_tok(t, "unable to parse number")),
            Tok::Duration(text) => {
                let d = parse_duration(text).map_err(|m| self.err_tok(t, m))?;
                Ok(Expr::Duration(if negative { -d } else { d }))
            }
            _ => Err(self.unexpected(t, &["number"])),
        }
    }

    /// `name`, `"name"`, `a.b` (joined with `.` as 1.x does), each with an
    /// optional `::type`; the first segment has been consumed.
    fn var_ref(&mut self, first: String) -> PResult<Expr> {
        let mut name = first;
        while self.adjacent_sym(".")? {
            self.next()?;
            name.push('.');
            name.push_str(&self.ident()?);
        }
        let mut data_type = None;
        if self.adjacent_sym("::")? {
            self.next()?;
            let t = self.next()?;
            let word = match &t.tok {
                Tok::Keyword(k) => k.to_ascii_lowercase(),
                Tok::Ident(s) => s.to_ascii_lowercase(),
                _ => String::new(),
            };
            data_type = Some(match word.as_str() {
                "field" => VarType::Field,
                "tag" => VarType::Tag,
                "float" => VarType::Float,
                "integer" => VarType::Integer,
                "string" => VarType::String,
                "boolean" => VarType::Boolean,
                "unsigned" => return Err(self.unsupported(&t, "type unsigned")),
                _ => {
                    return Err(self.unexpected(
                        &t,
                        &["float", "integer", "string", "boolean", "field", "tag"],
                    ));
                }
            });
        }
        Ok(Expr::VarRef { name, data_type })
    }

    /// `DISTINCT x` (1.x's shorthand for `distinct(x)`) or `DISTINCT(…)`.
    fn distinct(&mut self, t: &Token) -> PResult<(Expr, usize)> {
        if self.adjacent_sym("(")? {
            return self.call(t, "distinct");
        }
        let n = self.peek()?.clone();
        if n.start == self.prev_end {
            return Err(self.unexpected(&n, &["(", "identifier"]));
        }
        let name = self.ident()?;
        let call = Expr::Call {
            name: "distinct".to_string(),
            args: vec![Expr::VarRef {
                name,
                data_type: None,
            }],
        };
        Ok((call, 1))
    }

    /// A call; `name` is consumed and `(` is next. Functions 1.x has and we
    /// do not answer are refused here, at their name; names 1.x does not know
    /// and wrong argument counts are the planner's (1.x reports them per
    /// statement, not as parse errors).
    fn call(&mut self, name_tok: &Token, name: &str) -> PResult<(Expr, usize)> {
        let name = name.to_lowercase();
        if !FUNCTIONS.iter().any(|(f, _, _)| *f == name)
            && UNSUPPORTED_FUNCTIONS.contains(&name.as_str())
        {
            return Err(self.unsupported(name_tok, &format!("function {name}")));
        }
        self.next()?;
        let (args, depth) = self.args_with_depth()?;
        let depth = self.operator_depth(name_tok, depth)?;
        Ok((Expr::Call { name, args }, depth))
    }

    /// Call arguments after `(`, through the closing `)`: `*` or
    /// expressions.
    fn args(&mut self) -> PResult<Vec<Expr>> {
        Ok(self.args_with_depth()?.0)
    }

    /// [`Parser::args`] with the depth of the deepest argument.
    fn args_with_depth(&mut self) -> PResult<(Vec<Expr>, usize)> {
        let mut args = Vec::new();
        let mut depth = 0;
        if self.eat_sym(")")? {
            return Ok((args, depth));
        }
        loop {
            // 1.x accepts `mean(/re/)` (every matching field); inflow does
            // not, so say so instead of reading `/` as division.
            let arg = if let Some(re) = self.try_regex()? {
                return Err(self.unsupported(&re, "regex as function argument"));
            } else if self.peek()?.is_sym("*") {
                self.wildcard()?
            } else {
                let (arg, arg_depth) = self.binary(1)?;
                depth = depth.max(arg_depth);
                arg
            };
            args.push(arg);
            if self.eat_sym(",")? {
                continue;
            }
            let t = self.next()?;
            if t.is_sym(")") {
                return Ok((args, depth));
            }
            return Err(self.unexpected(&t, &[")"]));
        }
    }
}

/// The binary operator a token stands for, with its precedence.
/// InfluxDB 1.x's functions that inflow does not answer.
const UNSUPPORTED_FUNCTIONS: &[&str] = &[
    "integral",
    "mode",
    "bottom",
    "sample",
    "top",
    "holt_winters",
    "holt_winters_with_fit",
    "chande_momentum_oscillator",
    "exponential_moving_average",
    "double_exponential_moving_average",
    "kaufmans_efficiency_ratio",
    "kaufmans_adaptive_moving_average",
    "triple_exponential_moving_average",
    "triple_exponential_derivative",
    "relative_strength_index",
    "abs",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "atan2",
    "exp",
    "log",
    "ln",
    "log2",
    "log10",
    "sqrt",
    "pow",
    "floor",
    "ceil",
    "round",
];

fn binary_op(t: &Token) -> Option<(BinaryOp, u8)> {
    Some(match t.tok {
        Tok::Keyword("OR") => (BinaryOp::Or, 1),
        Tok::Keyword("AND") => (BinaryOp::And, 2),
        Tok::Sym("=") => (BinaryOp::Eq, 4),
        Tok::Sym("!=" | "<>") => (BinaryOp::NotEq, 4),
        Tok::Sym("<") => (BinaryOp::Lt, 4),
        Tok::Sym("<=") => (BinaryOp::LtEq, 4),
        Tok::Sym(">") => (BinaryOp::Gt, 4),
        Tok::Sym(">=") => (BinaryOp::GtEq, 4),
        Tok::Sym("=~") => (BinaryOp::RegexMatch, 4),
        Tok::Sym("!~") => (BinaryOp::RegexNotMatch, 4),
        Tok::Sym("+") => (BinaryOp::Add, 5),
        Tok::Sym("-") => (BinaryOp::Sub, 5),
        Tok::Sym("|") => (BinaryOp::BitOr, 5),
        Tok::Sym("^") => (BinaryOp::BitXor, 5),
        Tok::Sym("*") => (BinaryOp::Mul, 6),
        Tok::Sym("/") => (BinaryOp::Div, 6),
        Tok::Sym("%") => (BinaryOp::Mod, 6),
        Tok::Sym("&") => (BinaryOp::BitAnd, 6),
        _ => return None,
    })
}

fn op_text(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Mul => "*",
        BinaryOp::Div => "/",
        BinaryOp::Mod => "%",
        BinaryOp::BitAnd => "&",
        BinaryOp::BitOr => "|",
        BinaryOp::BitXor => "^",
        BinaryOp::Eq => "=",
        BinaryOp::NotEq => "!=",
        BinaryOp::Lt => "<",
        BinaryOp::LtEq => "<=",
        BinaryOp::Gt => ">",
        BinaryOp::GtEq => ">=",
        BinaryOp::RegexMatch => "=~",
        BinaryOp::RegexNotMatch => "!~",
        BinaryOp::And => "AND",
        BinaryOp::Or => "OR",
    }
}

/// The first comparison operator in a select-list expression, which 1.x
/// refuses ("operator is intended for WHERE clause").
fn comparison_in(e: &Expr) -> Option<BinaryOp> {
    match e {
        Expr::Binary { op, lhs, rhs } => match op {
            BinaryOp::Eq
            | BinaryOp::NotEq
            | BinaryOp::Lt
            | BinaryOp::LtEq
            | BinaryOp::Gt
            | BinaryOp::GtEq
            | BinaryOp::RegexMatch
            | BinaryOp::RegexNotMatch => Some(*op),
            _ => comparison_in(lhs).or_else(|| comparison_in(rhs)),
        },
        Expr::Call { args, .. } => args.iter().find_map(comparison_in),
        Expr::Negate(e) => comparison_in(e),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const MIN: i64 = 60 * S;
    const H: i64 = 60 * MIN;

    fn v(name: &str) -> Expr {
        Expr::VarRef {
            name: name.into(),
            data_type: None,
        }
    }

    fn vt(name: &str, t: VarType) -> Expr {
        Expr::VarRef {
            name: name.into(),
            data_type: Some(t),
        }
    }

    fn call(name: &str, args: Vec<Expr>) -> Expr {
        Expr::Call {
            name: name.into(),
            args,
        }
    }

    fn bin(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
        Expr::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        }
    }

    fn int(i: i64) -> Expr {
        Expr::Integer(i)
    }

    fn st(s: &str) -> Expr {
        Expr::String(s.into())
    }

    fn re(s: &str) -> Expr {
        Expr::Regex(s.into())
    }

    fn now() -> Expr {
        call("now", vec![])
    }

    fn f(expr: Expr) -> Field {
        Field { expr, alias: None }
    }

    fn m(name: &str) -> Source {
        Source {
            database: None,
            retention_policy: None,
            name: MeasurementName::Name(name.into()),
        }
    }

    fn src(db: Option<&str>, rp: Option<&str>, name: MeasurementName) -> Source {
        Source {
            database: db.map(Into::into),
            retention_policy: rp.map(Into::into),
            name,
        }
    }

    fn mre(s: &str) -> MeasurementName {
        MeasurementName::Regex(s.into())
    }

    /// A `SELECT fields FROM from` with every optional clause absent.
    fn sel(fields: Vec<Field>, from: Vec<Source>) -> Select {
        Select {
            fields,
            from,
            condition: None,
            group_by: vec![],
            fill: None,
            order_desc: false,
            limit: None,
            offset: None,
            slimit: None,
            soffset: None,
            tz: None,
        }
    }

    /// `SELECT v FROM m` plus whatever the closure sets.
    fn sel_v(edit: impl FnOnce(&mut Select)) -> Statement {
        let mut s = sel(vec![f(v("v"))], vec![m("m")]);
        edit(&mut s);
        Statement::Select(Box::new(s))
    }

    fn select(s: Select) -> Statement {
        Statement::Select(Box::new(s))
    }

    /// `SELECT <e> FROM m`.
    fn sel_expr(e: Expr) -> Statement {
        select(sel(vec![f(e)], vec![m("m")]))
    }

    /// `SELECT v FROM m WHERE <e>`.
    fn sel_where(e: Expr) -> Statement {
        sel_v(|s| s.condition = Some(e))
    }

    fn time_dim(interval: i64, offset: Option<i64>) -> Dimension {
        Dimension::Time { interval, offset }
    }

    fn show_measurements() -> Statement {
        Statement::ShowMeasurements {
            on: None,
            with_measurement: None,
            condition: None,
            limit: None,
            offset: None,
        }
    }

    fn show_tag_values(from: Vec<Source>, key: TagKeyMatch) -> Statement {
        Statement::ShowTagValues {
            on: None,
            from,
            key,
            condition: None,
            limit: None,
            offset: None,
        }
    }

    fn one(text: &str) -> Statement {
        match parse_query(text) {
            Ok(q) if q.statements.len() == 1 => {
                q.statements.into_iter().next().unwrap_or_else(|| {
                    panic!("{text}: no statement");
                })
            }
            other => panic!("{text}: expected one statement, got {other:?}"),
        }
    }

    #[test]
    fn valid_statements() {
        use BinaryOp::*;
        let grafana_where = bin(
            And,
            bin(
                And,
                bin(RegexMatch, v("host"), re("^(h1|h2)$")),
                bin(
                    GtEq,
                    v("time"),
                    Expr::Duration(1_672_617_600_000 * 1_000_000),
                ),
            ),
            bin(
                LtEq,
                v("time"),
                Expr::Duration(1_672_624_800_000 * 1_000_000),
            ),
        );
        let cases: Vec<(&str, Statement)> = vec![
            ("SELECT v FROM m", sel_v(|_| {})),
            (
                "select * from cpu",
                select(sel(vec![f(Expr::Wildcard(None))], vec![m("cpu")])),
            ),
            (
                "SELECT *::field, host::tag, *::TAG FROM m",
                select(sel(
                    vec![
                        f(Expr::Wildcard(Some(VarType::Field))),
                        f(vt("host", VarType::Tag)),
                        f(Expr::Wildcard(Some(VarType::Tag))),
                    ],
                    vec![m("m")],
                )),
            ),
            (
                r#"SELECT "value" AS v, mean(x) AS "my mean" FROM "cpu""#,
                select(sel(
                    vec![
                        Field {
                            expr: v("value"),
                            alias: Some("v".into()),
                        },
                        Field {
                            expr: call("mean", vec![v("x")]),
                            alias: Some("my mean".into()),
                        },
                    ],
                    vec![m("cpu")],
                )),
            ),
            (
                r#"SELECT mean("usage_idle") FROM "cpu" WHERE ("host" =~ /^(h1|h2)$/) AND time >= 1672617600000ms and time <= 1672624800000ms GROUP BY time(1m), "host" fill(null)"#,
                select(Select {
                    condition: Some(grafana_where),
                    group_by: vec![time_dim(MIN, None), Dimension::Tag("host".into())],
                    fill: Some(Fill::Null),
                    ..sel(vec![f(call("mean", vec![v("usage_idle")]))], vec![m("cpu")])
                }),
            ),
            (
                r#"SELECT mean("value") FROM "autogen"."cpu" WHERE time >= now() - 6h and time <= now() GROUP BY time(10s) fill(null)"#,
                select(Select {
                    condition: Some(bin(
                        And,
                        bin(GtEq, v("time"), bin(Sub, now(), Expr::Duration(6 * H))),
                        bin(LtEq, v("time"), now()),
                    )),
                    group_by: vec![time_dim(10 * S, None)],
                    fill: Some(Fill::Null),
                    ..sel(
                        vec![f(call("mean", vec![v("value")]))],
                        vec![src(
                            None,
                            Some("autogen"),
                            MeasurementName::Name("cpu".into()),
                        )],
                    )
                }),
            ),
            (
                "SELECT count(*) FROM m",
                sel_expr(call("count", vec![Expr::Wildcard(None)])),
            ),
            (
                "SELECT count(distinct(host)) FROM m",
                sel_expr(call("count", vec![call("distinct", vec![v("host")])])),
            ),
            (
                "SELECT DISTINCT host FROM m",
                sel_expr(call("distinct", vec![v("host")])),
            ),
            (
                "SELECT distinct(host) FROM m",
                sel_expr(call("distinct", vec![v("host")])),
            ),
            (
                "SELECT percentile(value, 95) FROM m",
                sel_expr(call("percentile", vec![v("value"), int(95)])),
            ),
            (
                "SELECT PERCENTILE(value, 99.9) FROM m",
                sel_expr(call("percentile", vec![v("value"), Expr::Float(99.9)])),
            ),
            (
                "SELECT Mean(v) FROM m",
                sel_expr(call("mean", vec![v("v")])),
            ),
            (
                "SELECT first(v), last(v), min(v), max(v), sum(v), spread(v), stddev(v), median(v) FROM m",
                select(sel(
                    [
                        "first", "last", "min", "max", "sum", "spread", "stddev", "median",
                    ]
                    .iter()
                    .map(|n| f(call(n, vec![v("v")])))
                    .collect(),
                    vec![m("m")],
                )),
            ),
            (
                "SELECT a + b * c - d FROM m",
                sel_expr(bin(Sub, bin(Add, v("a"), bin(Mul, v("b"), v("c"))), v("d"))),
            ),
            (
                "SELECT (a + b) * c FROM m",
                sel_expr(bin(Mul, bin(Add, v("a"), v("b")), v("c"))),
            ),
            (
                "SELECT a | b ^ c & d % e FROM m",
                sel_expr(bin(
                    BitXor,
                    bin(BitOr, v("a"), v("b")),
                    bin(Mod, bin(BitAnd, v("c"), v("d")), v("e")),
                )),
            ),
            ("SELECT a/2 FROM m", sel_expr(bin(Div, v("a"), int(2)))),
            (
                "SELECT -value, -1, - 5m, -1.5, +2, -(a) FROM m",
                select(sel(
                    vec![
                        f(Expr::Negate(Box::new(v("value")))),
                        f(int(-1)),
                        f(Expr::Duration(-5 * MIN)),
                        f(Expr::Float(-1.5)),
                        f(int(2)),
                        f(Expr::Negate(Box::new(v("a")))),
                    ],
                    vec![m("m")],
                )),
            ),
            ("SELECT a-1 FROM m", sel_expr(bin(Sub, v("a"), int(1)))),
            (
                r#"SELECT "cpu"."value", value::float, x::INTEGER, s::string, b::Boolean, y::field FROM m"#,
                select(sel(
                    vec![
                        f(v("cpu.value")),
                        f(vt("value", VarType::Float)),
                        f(vt("x", VarType::Integer)),
                        f(vt("s", VarType::String)),
                        f(vt("b", VarType::Boolean)),
                        f(vt("y", VarType::Field)),
                    ],
                    vec![m("m")],
                )),
            ),
            (
                r#"SELECT "select", time, fill, tz, now FROM "from""#,
                select(sel(
                    vec![
                        f(v("select")),
                        f(v("time")),
                        f(v("fill")),
                        f(v("tz")),
                        f(v("now")),
                    ],
                    vec![m("from")],
                )),
            ),
            (
                r#"SELECT "a \"q\" \\ b" FROM true"#,
                select(sel(vec![f(v(r#"a "q" \ b"#))], vec![m("true")])),
            ),
            (
                "SELECT v FROM m WHERE a = 1 OR b = 2 AND c != 3",
                sel_where(bin(
                    Or,
                    bin(Eq, v("a"), int(1)),
                    bin(And, bin(Eq, v("b"), int(2)), bin(NotEq, v("c"), int(3))),
                )),
            ),
            (
                r"SELECT v FROM m WHERE a <> 'x' AND b !~ /y\/z/",
                sel_where(bin(
                    And,
                    bin(NotEq, v("a"), st("x")),
                    bin(RegexNotMatch, v("b"), re("y/z")),
                )),
            ),
            (
                r"SELECT v FROM m WHERE host =~ /\d+\.example/",
                sel_where(bin(RegexMatch, v("host"), re(r"\d+\.example"))),
            ),
            (
                "SELECT v FROM m WHERE time > now() - 1h30m",
                sel_where(bin(
                    Gt,
                    v("time"),
                    bin(Sub, now(), Expr::Duration(90 * MIN)),
                )),
            ),
            (
                "SELECT v FROM m WHERE x < .5 AND y >= 1.",
                sel_where(bin(
                    And,
                    bin(Lt, v("x"), Expr::Float(0.5)),
                    bin(GtEq, v("y"), Expr::Float(1.0)),
                )),
            ),
            (
                r#"SELECT v FROM m WHERE "a b" = 'it\'s' AND t = true AND f = FALSE"#,
                sel_where(bin(
                    And,
                    bin(
                        And,
                        bin(Eq, v("a b"), st("it's")),
                        bin(Eq, v("t"), Expr::Boolean(true)),
                    ),
                    bin(Eq, v("f"), Expr::Boolean(false)),
                )),
            ),
            (
                r"SELECT v FROM m WHERE s = 'line\nbreak\\ µ'",
                sel_where(bin(Eq, v("s"), st("line\nbreak\\ µ"))),
            ),
            (
                "SELECT v FROM m WHERE time >= '2023-01-01T00:00:00Z'",
                sel_where(bin(GtEq, v("time"), st("2023-01-01T00:00:00Z"))),
            ),
            (
                "SELECT v FROM m WHERE x = -9223372036854775808",
                sel_where(bin(Eq, v("x"), int(i64::MIN))),
            ),
            (
                "SELECT v FROM m WHERE d = 1ns + 1u + 1µ + 1ms + 1s + 1w + 2d",
                sel_where(bin(
                    Eq,
                    v("d"),
                    [1_000, 1_000, 1_000_000, S, 7 * 24 * H, 2 * 24 * H]
                        .into_iter()
                        .fold(Expr::Duration(1), |acc, d| bin(Add, acc, Expr::Duration(d))),
                )),
            ),
            (
                "SELECT v FROM m WHERE a - 1 > 0 OR (b = 2)",
                sel_where(bin(
                    Or,
                    bin(Gt, bin(Sub, v("a"), int(1)), int(0)),
                    bin(Eq, v("b"), int(2)),
                )),
            ),
            (
                "SELECT v FROM db.rp.m, db..m, rp.m",
                sel_v(|s| {
                    s.from = vec![
                        src(Some("db"), Some("rp"), MeasurementName::Name("m".into())),
                        src(Some("db"), None, MeasurementName::Name("m".into())),
                        src(None, Some("rp"), MeasurementName::Name("m".into())),
                    ]
                }),
            ),
            (
                r#"SELECT v FROM "my db"."my rp"."my m""#,
                sel_v(|s| {
                    s.from = vec![src(
                        Some("my db"),
                        Some("my rp"),
                        MeasurementName::Name("my m".into()),
                    )]
                }),
            ),
            (
                r"SELECT v FROM /cpu.*/, db.rp./^c\/d/, rp./x/",
                sel_v(|s| {
                    s.from = vec![
                        src(None, None, mre("cpu.*")),
                        src(Some("db"), Some("rp"), mre("^c/d")),
                        src(None, Some("rp"), mre("x")),
                    ]
                }),
            ),
            (
                "SELECT v FROM m GROUP BY time(1h, -15m)",
                sel_v(|s| s.group_by = vec![time_dim(H, Some(-15 * MIN))]),
            ),
            (
                "SELECT v FROM m GROUP BY *",
                sel_v(|s| s.group_by = vec![Dimension::Wildcard]),
            ),
            (
                "SELECT v FROM m GROUP BY /reg/, host::tag, TIME(5m, 1m)",
                sel_v(|s| {
                    s.group_by = vec![
                        Dimension::Regex("reg".into()),
                        Dimension::Tag("host".into()),
                        time_dim(5 * MIN, Some(MIN)),
                    ]
                }),
            ),
            (
                "SELECT v FROM m GROUP BY host fill(none)",
                sel_v(|s| {
                    s.group_by = vec![Dimension::Tag("host".into())];
                    s.fill = Some(Fill::None);
                }),
            ),
            (
                "SELECT v FROM m fill(previous)",
                sel_v(|s| s.fill = Some(Fill::Previous)),
            ),
            (
                "SELECT v FROM m FILL(Linear)",
                sel_v(|s| s.fill = Some(Fill::Linear)),
            ),
            (
                "SELECT v FROM m fill(0)",
                sel_v(|s| s.fill = Some(Fill::Value(Number::Integer(0)))),
            ),
            (
                "SELECT v FROM m fill(-1.5)",
                sel_v(|s| s.fill = Some(Fill::Value(Number::Float(-1.5)))),
            ),
            (
                "SELECT v FROM m fill(NULL)",
                sel_v(|s| s.fill = Some(Fill::Null)),
            ),
            (
                "SELECT v FROM m ORDER BY time DESC",
                sel_v(|s| s.order_desc = true),
            ),
            (
                "SELECT v FROM m ORDER BY DESC",
                sel_v(|s| s.order_desc = true),
            ),
            ("SELECT v FROM m ORDER BY time ASC", sel_v(|_| {})),
            ("SELECT v FROM m order by time", sel_v(|_| {})),
            (
                "SELECT v FROM m LIMIT 10 OFFSET 5 SLIMIT 2 SOFFSET 1",
                sel_v(|s| {
                    s.limit = Some(10);
                    s.offset = Some(5);
                    s.slimit = Some(2);
                    s.soffset = Some(1);
                }),
            ),
            (
                "SELECT v FROM m tz('America/New_York')",
                sel_v(|s| s.tz = Some("America/New_York".into())),
            ),
            (
                "SELECT max(v) FROM m WHERE time > now() - 1d GROUP BY time(1w) fill(0) ORDER BY time DESC LIMIT 10 OFFSET 5 SLIMIT 2 SOFFSET 1 tz('Europe/Paris')",
                select(Select {
                    condition: Some(bin(Gt, v("time"), bin(Sub, now(), Expr::Duration(24 * H)))),
                    group_by: vec![time_dim(7 * 24 * H, None)],
                    fill: Some(Fill::Value(Number::Integer(0))),
                    order_desc: true,
                    limit: Some(10),
                    offset: Some(5),
                    slimit: Some(2),
                    soffset: Some(1),
                    tz: Some("Europe/Paris".into()),
                    ..sel(vec![f(call("max", vec![v("v")]))], vec![m("m")])
                }),
            ),
            (
                "SELECT /* block\ncomment */ v -- trailing\nFROM m -- end",
                sel_v(|_| {}),
            ),
            ("\tSELECT\nv\r\nFROM\nm ;", sel_v(|_| {})),
            (
                r#"CREATE DATABASE "my db""#,
                Statement::CreateDatabase {
                    name: "my db".into(),
                },
            ),
            (
                "create database mydb",
                Statement::CreateDatabase {
                    name: "mydb".into(),
                },
            ),
            ("SHOW DATABASES", Statement::ShowDatabases),
            (
                "show retention policies",
                Statement::ShowRetentionPolicies { on: None },
            ),
            (
                r#"SHOW RETENTION POLICIES on "telegraf""#,
                Statement::ShowRetentionPolicies {
                    on: Some("telegraf".into()),
                },
            ),
            ("SHOW MEASUREMENTS", show_measurements()),
            (
                "SHOW MEASUREMENTS WITH MEASUREMENT =~ /c/ LIMIT 100",
                Statement::ShowMeasurements {
                    on: None,
                    with_measurement: Some(MeasurementMatch::Regex("c".into())),
                    condition: None,
                    limit: Some(100),
                    offset: None,
                },
            ),
            (
                r#"SHOW MEASUREMENTS ON db WITH MEASUREMENT = "cpu" WHERE host = 'a' LIMIT 1 OFFSET 2"#,
                Statement::ShowMeasurements {
                    on: Some("db".into()),
                    with_measurement: Some(MeasurementMatch::Equal("cpu".into())),
                    condition: Some(bin(Eq, v("host"), st("a"))),
                    limit: Some(1),
                    offset: Some(2),
                },
            ),
            (
                "SHOW MEASUREMENTS WITH MEASUREMENT != cpu",
                show_measurements_with(MeasurementMatch::NotEqual("cpu".into())),
            ),
            (
                "SHOW MEASUREMENTS WITH MEASUREMENT !~ /x/",
                show_measurements_with(MeasurementMatch::NotRegex("x".into())),
            ),
            (
                "SHOW TAG KEYS",
                Statement::ShowTagKeys {
                    on: None,
                    from: vec![],
                    condition: None,
                    limit: None,
                    offset: None,
                },
            ),
            (
                r#"SHOW TAG KEYS FROM "cpu""#,
                Statement::ShowTagKeys {
                    on: None,
                    from: vec![m("cpu")],
                    condition: None,
                    limit: None,
                    offset: None,
                },
            ),
            (
                "SHOW TAG KEYS ON db FROM cpu, /mem/ WHERE host = 'a' LIMIT 1 OFFSET 2",
                Statement::ShowTagKeys {
                    on: Some("db".into()),
                    from: vec![m("cpu"), src(None, None, mre("mem"))],
                    condition: Some(bin(Eq, v("host"), st("a"))),
                    limit: Some(1),
                    offset: Some(2),
                },
            ),
            (
                "SHOW SERIES ON db FROM cpu, /mem/ WHERE host = 'a' LIMIT 1 OFFSET 2",
                Statement::ShowSeries {
                    on: Some("db".into()),
                    from: vec![m("cpu"), src(None, None, mre("mem"))],
                    condition: Some(bin(Eq, v("host"), st("a"))),
                    limit: Some(1),
                    offset: Some(2),
                },
            ),
            (
                "SHOW SERIES",
                Statement::ShowSeries {
                    on: None,
                    from: vec![],
                    condition: None,
                    limit: None,
                    offset: None,
                },
            ),
            (
                r#"SHOW TAG VALUES FROM "cpu" WITH KEY = "host" WHERE "region" = 'us' LIMIT 100"#,
                Statement::ShowTagValues {
                    on: None,
                    from: vec![m("cpu")],
                    key: TagKeyMatch::Equal("host".into()),
                    condition: Some(bin(Eq, v("region"), st("us"))),
                    limit: Some(100),
                    offset: None,
                },
            ),
            (
                "SHOW TAG VALUES WITH KEY = host",
                show_tag_values(vec![], TagKeyMatch::Equal("host".into())),
            ),
            (
                "SHOW TAG VALUES WITH KEY != host",
                show_tag_values(vec![], TagKeyMatch::NotEqual("host".into())),
            ),
            (
                "SHOW TAG VALUES WITH KEY =~ /h.*/",
                show_tag_values(vec![], TagKeyMatch::Regex("h.*".into())),
            ),
            (
                "SHOW TAG VALUES WITH KEY !~ /x/",
                show_tag_values(vec![], TagKeyMatch::NotRegex("x".into())),
            ),
            (
                r#"SHOW TAG VALUES WITH KEY IN ("a", b)"#,
                show_tag_values(vec![], TagKeyMatch::In(vec!["a".into(), "b".into()])),
            ),
            (
                r#"SHOW TAG VALUES ON db FROM /c/ WITH KEY = "host" OFFSET 3"#,
                Statement::ShowTagValues {
                    on: Some("db".into()),
                    from: vec![src(None, None, mre("c"))],
                    key: TagKeyMatch::Equal("host".into()),
                    condition: None,
                    limit: None,
                    offset: Some(3),
                },
            ),
            (
                "SHOW FIELD KEYS",
                Statement::ShowFieldKeys {
                    on: None,
                    from: vec![],
                    limit: None,
                    offset: None,
                },
            ),
            (
                r#"SHOW FIELD KEYS ON db FROM "cpu" LIMIT 5 OFFSET 1"#,
                Statement::ShowFieldKeys {
                    on: Some("db".into()),
                    from: vec![m("cpu")],
                    limit: Some(5),
                    offset: Some(1),
                },
            ),
        ];
        for (text, want) in &cases {
            assert_eq!(&one(text), want, "{text}");
        }
        assert!(cases.len() >= 60, "{} cases", cases.len());
    }

    fn show_measurements_with(with: MeasurementMatch) -> Statement {
        Statement::ShowMeasurements {
            on: None,
            with_measurement: Some(with),
            condition: None,
            limit: None,
            offset: None,
        }
    }

    #[test]
    fn multiple_statements() {
        let q = parse_query("SELECT v FROM m; SHOW DATABASES;").map(|q| q.statements);
        assert_eq!(q, Ok(vec![sel_v(|_| {}), Statement::ShowDatabases]));
        assert_eq!(parse_query(" ; ;; ").map(|q| q.statements), Ok(vec![]));
        assert_eq!(parse_query("").map(|q| q.statements), Ok(vec![]));
    }

    #[test]
    fn errors() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, usize, usize)] = &[
            ("BLAH", "found BLAH, expected SELECT, DELETE, SHOW, CREATE, DROP, EXPLAIN, GRANT, REVOKE, ALTER, SET, KILL", 1, 1),
            ("SELECT", "found EOF, expected identifier, string, number, bool", 1, 8),
            ("SELECT field1 X", "found X, expected FROM", 1, 15),
            ("SELECT field1 FROM \"series\" WHERE X +;", "found ;, expected identifier, string, number, bool", 1, 38),
            ("SELECT field1 FROM myseries GROUP", "found EOF, expected BY", 1, 35),
            ("SELECT field1 FROM myseries LIMIT", "found EOF, expected integer", 1, 35),
            ("SELECT field1 FROM myseries LIMIT 10.5", "found 10.5, expected integer", 1, 35),
            ("SELECT field1 FROM myseries ORDER BY", "found EOF, expected identifier, ASC, DESC", 1, 38),
            ("SELECT field1 FROM myseries ORDER BY 1", "found 1, expected identifier, ASC, DESC", 1, 38),
            ("SELECT field1 FROM myseries ORDER BY value", "only ORDER BY time supported at this time", 1, 38),
            ("SELECT field1 FROM myseries ORDER BY time, v", "only ORDER BY time supported at this time", 1, 42),
            ("SELECT field1 AS", "found EOF, expected identifier", 1, 18),
            ("SELECT field1 FROM 12", "found 12, expected identifier", 1, 20),
            ("SELECT 100000000000000000000 FROM myseries", "unable to parse integer", 1, 8),
            ("SELECT 10.5h FROM myseries", "found h, expected FROM", 1, 12),
            ("SELECT distinct FROM myseries", "found FROM, expected identifier", 1, 17),
            ("SELECT count(distinct) FROM myseries", "found ), expected (, identifier", 1, 22),
            ("SELECT field1 from myseries WHERE host =~ 'asd' LIMIT 1", "found asd, expected regex", 1, 43),
            ("SELECT value > 2 FROM cpu", "invalid operator > in SELECT clause; operator is intended for WHERE clause", 1, 8),
            ("SELECT mean(value) FROM cpu FILL + value", "fill must be a function call", 1, 29),
            ("SELECT v FROM m fill(foo)", "expected number argument in fill()", 1, 17),
            ("SELECT v FROM m fill()", "fill requires an argument, e.g.: 0, null, none, previous, linear", 1, 17),
            ("SELECT v FROM m tz(1)", "expected string argument in tz()", 1, 17),
            ("SHOW RETENTION", "found EOF, expected POLICIES", 1, 16),
            ("SHOW RETENTION POLICIES ON", "found EOF, expected identifier", 1, 28),
            ("CREATE DATABASE", "found EOF, expected identifier", 1, 17),
            ("CREATE FOO", "found FOO, expected CONTINUOUS, DATABASE, USER, RETENTION, SUBSCRIPTION", 1, 8),
            ("CREATE DATABASE db WITH DURATION 1d", "CREATE DATABASE WITH is not supported", 1, 20),
            ("CREATE DATABASE db foo", "found foo, expected ;", 1, 20),
            ("CREATE RETENTION POLICY rp ON db DURATION 1d REPLICATION 1", "CREATE RETENTION POLICY is not supported", 1, 8),
            ("SELECT v INTO m2 FROM m", "INTO is not supported", 1, 10),
            ("SELECT v FROM (SELECT v FROM m)", "subquery is not supported", 1, 15),
            ("SHOW SERIES CARDINALITY", "SHOW SERIES CARDINALITY is not supported", 1, 13),
            ("SHOW SERIES EXACT CARDINALITY", "SHOW SERIES CARDINALITY is not supported", 1, 13),
            ("SHOW TAG KEY CARDINALITY", "SHOW TAG KEY CARDINALITY is not supported", 1, 10),
            ("SHOW TAG VALUES CARDINALITY WITH KEY = host", "SHOW TAG VALUES CARDINALITY is not supported", 1, 17),
            ("SHOW FOO", "found FOO, expected CONTINUOUS, DATABASES, DIAGNOSTICS, FIELD, GRANTS, MEASUREMENT, MEASUREMENTS, QUERIES, RETENTION, SERIES, SHARD, SHARDS, STATS, SUBSCRIPTIONS, TAG, USERS", 1, 6),
            ("SHOW TAG VALUES FROM cpu", "found EOF, expected WITH", 1, 26),
            ("SHOW TAG VALUES WITH KEY host", "found host, expected IN, =, =~", 1, 26),
            ("SHOW TAG KEYS SLIMIT 1", "SLIMIT is not supported", 1, 15),
            ("SHOW MEASUREMENTS ORDER BY time", "ORDER BY is not supported", 1, 19),
            ("SHOW MEASUREMENTS ON *", "SHOW MEASUREMENTS ON * is not supported", 1, 22),
            ("SHOW MEASUREMENTS ON db.rp", "SHOW MEASUREMENTS ON db.rp is not supported", 1, 24),
            ("DROP DATABASE db", "DROP is not supported", 1, 1),
            ("delete FROM m", "DELETE is not supported", 1, 1),
            ("SELECT v FROM m; KILL QUERY 1", "KILL is not supported", 1, 18),
            ("EXPLAIN SELECT v FROM m", "EXPLAIN is not supported", 1, 1),
            ("SELECT holt_winters(v, 10, 4) FROM m", "function holt_winters is not supported", 1, 8),
            ("SELECT mean(/x/) FROM m", "regex as function argument is not supported", 1, 13),
            ("SELECT v FROM m WHERE x > TOP(v, 3)", "function top is not supported", 1, 27),
            ("SELECT v FROM m WHERE t > 1x", "invalid duration", 1, 27),
            ("SELECT v FROM m WHERE t > 1e3", "invalid duration", 1, 27),
            ("SELECT v FROM m WHERE t > 99999999999999999999s", "invalid duration", 1, 27),
            ("SELECT v FROM m WHERE t > 9223372036854775807s", "overflowed duration 9223372036854775807s: choose a smaller duration or INF", 1, 27),
            ("SELECT v\nFROM m\nWHERE x = 'abc", "bad string", 3, 11),
            ("SELECT v FROM m WHERE a = 'x\\q'", "bad escape: \\q", 1, 29),
            ("SELECT \"µ\" FROM m WHERE µ = 1", "found µ, expected identifier, string, number, bool", 1, 25),
            ("SELECT v FROM m SELECT", "found SELECT, expected ;", 1, 17),
            ("SELECT v FROM m GROUP BY time", "time() is a function and expects at least one argument", 1, 26),
            ("SELECT v FROM m GROUP BY time(x)", "time dimension must have duration argument", 1, 26),
            ("SELECT v FROM m GROUP BY a + 1", "only time and tag dimensions allowed", 1, 26),
            ("SELECT v FROM m LIMIT -1", "found -, expected integer", 1, 23),
            ("SELECT v FROM m /* unterminated", "unterminated comment", 1, 17),
            ("SELECT v FROM m WHERE a =~ /x", "bad regex", 1, 28),
            ("SELECT v FROM a.b.c.d", "too many segments in a.b.c.d", 1, 15),
            ("SELECT v::unsigned FROM m", "type unsigned is not supported", 1, 11),
            ("SELECT v::foo FROM m", "found foo, expected float, integer, string, boolean, field, tag", 1, 11),
            ("SELECT *::float FROM m", "found float, expected field, tag", 1, 11),
            ("SELECT - 'x' FROM m", "found x, expected identifier, number, duration, (", 1, 10),
        ];
        for &(text, message, line, char) in cases {
            let want = ParseError {
                message: message.into(),
                line,
                char,
            };
            assert_eq!(parse_query(text), Err(want), "{text}");
        }
        let e = parse_query("SELECT").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("found EOF, expected identifier, string, number, bool at line 1, char 8")
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!("SELECT {}v FROM m", "(".repeat(10_000));
        let err = parse_query(&text).err().map(|e| e.message);
        assert_eq!(err.as_deref(), Some("expression is nested too deeply"));
        let text = format!("SELECT {}1 FROM m", "-(".repeat(5_000));
        assert!(parse_query(&text).is_err());
    }

    /// Long left-deep chains never reach `MAX_DEPTH` (they parse in a loop);
    /// before the depth count, 100,000 `OR` terms or 50,000 `+` terms built a
    /// tree whose `Drop` overflowed the stack and aborted the process.
    #[test]
    fn long_operator_chains_are_an_error_not_a_crash() {
        let too_deep = format!(
            "expression is nested too deeply: more than {MAX_EXPR_DEPTH} levels of operators"
        );
        let or = format!(
            "SELECT v FROM m WHERE {}",
            vec!["v=1"; 100_000].join(" OR ")
        );
        let e = parse_query(&or).err().map(|e| e.message);
        assert_eq!(e.as_deref(), Some(too_deep.as_str()));
        let plus = format!("SELECT {} FROM m", vec!["1"; 50_000].join("+"));
        let e = parse_query(&plus).err().map(|e| e.message);
        assert_eq!(e.as_deref(), Some(too_deep.as_str()));

        // Exactly at the limit parses; one more operator is refused at it
        // ("SELECT v" is 8 characters, the n-th `+` is char 9 + 2(n - 1)).
        let at_limit = format!("SELECT v{} FROM m", "+v".repeat(MAX_EXPR_DEPTH));
        assert!(parse_query(&at_limit).is_ok());
        let past = format!("SELECT v{} FROM m", "+v".repeat(MAX_EXPR_DEPTH + 1));
        let want = ParseError {
            message: too_deep.clone(),
            line: 1,
            char: 9 + 2 * MAX_EXPR_DEPTH,
        };
        assert_eq!(parse_query(&past), Err(want));

        // Depth is the tree's: a chain on the right of `=`, inside calls and
        // under signs counts too; a wide (balanced) expression does not.
        let right = format!("SELECT v FROM m WHERE v = {}", vec!["1"; 300].join(" + "));
        assert!(parse_query(&right).is_err());
        let calls = format!("SELECT {}v{} FROM m", "mean(-".repeat(40), ")".repeat(40));
        assert!(parse_query(&calls).is_ok(), "80 levels");
        let in_call = format!("SELECT mean({}) FROM m", vec!["v"; 300].join("*"));
        assert!(parse_query(&in_call).is_err());
        let balanced = (0..10).fold("v".to_string(), |e, _| format!("({e}) + ({e})"));
        assert!(parse_query(&format!("SELECT {balanced} FROM m")).is_ok());
    }

    /// Every prefix and many one-character mutations of valid statements
    /// either parse or fail; none panics.
    #[test]
    fn never_panics() {
        let seeds = [
            r#"SELECT mean("usage_idle") FROM "cpu" WHERE ("host" =~ /^(h1|h2)$/) AND time >= 1672617600000ms and time <= 1672624800000ms GROUP BY time(1m), "host" fill(null)"#,
            "SELECT max(v) AS x, count(distinct(h)), -1.5, *::tag FROM db.rp./re\\/x/, db..m WHERE time > now() - 1µs GROUP BY time(1h, -15m), *, /x/ fill(-1) ORDER BY time DESC LIMIT 10 OFFSET 5 SLIMIT 2 SOFFSET 1 tz('Europe/Paris')",
            r#"SHOW TAG VALUES ON db FROM "cpu" WITH KEY IN ("a", b) WHERE "region" = 'u\'s' LIMIT 100 OFFSET 1; SHOW MEASUREMENTS WITH MEASUREMENT =~ /c/ LIMIT 100"#,
            "SHOW TAG KEYS ON db FROM cpu WHERE a = 1 LIMIT 1; SHOW FIELD KEYS; SHOW RETENTION POLICIES ON x; CREATE DATABASE y /* c */ -- d",
        ];
        let replacements = [
            "/",
            "\"",
            "'",
            "(",
            ")",
            "µ",
            "-",
            ".",
            "*",
            "\\",
            "0",
            "a",
            " ",
            ";",
            ":",
            "=~",
            "!",
            "\n",
            "9999999999999999999999",
            "/*",
            "é",
        ];
        let mut count = 0;
        for seed in seeds {
            let bounds: Vec<usize> = seed
                .char_indices()
                .map(|(i, _)| i)
                .chain([seed.len()])
                .collect();
            for &i in &bounds {
                let _ = parse_query(&seed[..i]);
                count += 1;
            }
            for w in bounds.windows(2) {
                let (a, b) = (w[0], w[1]);
                let _ = parse_query(&format!("{}{}", &seed[..a], &seed[b..]));
                for r in replacements {
                    let _ = parse_query(&format!("{}{r}{}", &seed[..a], &seed[b..]));
                    let _ = parse_query(&format!("{}{r}{}", &seed[..a], &seed[a..]));
                    count += 2;
                }
            }
            // Raw byte damage, made valid UTF-8 the lossy way.
            let bytes = seed.as_bytes();
            for i in 0..bytes.len() {
                for b in [0x00u8, 0x80, 0xb5, 0xc2, 0xff, b'/', b'"'] {
                    let mut damaged = bytes.to_vec();
                    damaged[i] = b;
                    let _ = parse_query(&String::from_utf8_lossy(&damaged));
                    count += 1;
                }
            }
        }
        assert!(count > 10_000, "{count} inputs");
    }
}
