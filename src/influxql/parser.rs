//! A hand-written InfluxQL recursive-descent parser, over [`super::lexer`]'s
//! tokens.
//!
//! It follows InfluxDB 1.x's grammar and error messages (`found X, expected
//! Y at line L, char C`) so clients and users see what they are used to, but it
//! only produces the subset of statements `super::ast` can represent: every
//! other valid InfluxQL construct is refused with "`<what>` is not supported"
//! at the offending token, so nothing unanswerable reaches the planner.

use super::ast::{Expr, Query};
use super::lexer::{Lexer, Tok, Token, error_at};

pub use super::lexer::ParseError;

mod expr;
mod statements;

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influxql::ast::{
        BinaryOp, Dimension, Field, Fill, MeasurementMatch, MeasurementName, Number, Select,
        Source, Statement, TagKeyMatch, VarType,
    };

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
