//! The parser's expressions: precedence climbing over InfluxQL's operators,
//! literals, variable references and calls, with the depth limits that keep
//! hostile input from overflowing a stack.
//!
//! Apart from the statements ([`super::statements`]) because expressions
//! recurse, and the limits on that recursion (`MAX_DEPTH`,
//! [`MAX_EXPR_DEPTH`]) are all enforced here.

use super::{MAX_DEPTH, MAX_EXPR_DEPTH, PResult, Parser};
use crate::influxql::ast::{BinaryOp, Expr, FUNCTIONS, VarType};
use crate::influxql::lexer::{Tok, Token};

impl Parser<'_> {
    pub(super) fn expr(&mut self) -> PResult<Expr> {
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
    pub(super) fn args(&mut self) -> PResult<Vec<Expr>> {
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

    /// `*`, `*::field` or `*::tag`; the caller has seen the `*`.
    pub(super) fn wildcard(&mut self) -> PResult<Expr> {
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

/// The binary operator a token stands for, with its precedence.
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

pub(super) fn op_text(op: BinaryOp) -> &'static str {
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
pub(super) fn comparison_in(e: &Expr) -> Option<BinaryOp> {
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
