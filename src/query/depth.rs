//! A bound on how deeply an SQL statement's expressions can nest, checked on
//! its tokens before anything builds a tree.
//!
//! sqlparser's recursion limit (`sql_parser.recursion_limit`, 50) counts
//! parentheses, subqueries and prefix operators, but it builds a chain of
//! infix operators (`v=1 OR v=1 OR …`, `1+1+…`, `a::int::int…`) and of set
//! operations (`… UNION …`) in a loop, left-deep and uncounted. Everything
//! after it recurses once per level: DataFusion's planner, optimizer and
//! physical expressions, and `Drop` of the syntax tree, which runs even when
//! parsing fails further on (a trailing syntax error, a second statement). A
//! 100,000-term `OR` overflows the stack and aborts the process, so the check
//! has to come before the parser, on the token stream, which sqlparser's
//! tokenizer produces without recursion.
//!
//! The bound: inside one comma-separated item, the tree is at most as deep as
//! the item has operator tokens, plus the depth of its deepest parenthesized
//! group. Every token that is not an operand (identifier, literal) or
//! punctuation counts as an operator, keywords included, so the bound can
//! only err high: `a = 1 AND b = 2` counts 3 for a tree 2 deep. Set operations
//! and joins count for their whole group (commas do not separate them).

use datafusion::common::config::Dialect;
use datafusion::sql::sqlparser::dialect::dialect_from_str;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// How many operators may nest in one SQL expression, by the bound above.
///
/// DataFusion recurses once per level with large frames in a debug build;
/// 256 keeps planning and `Drop` within a 2 MiB stack (tokio's and the test
/// harness's default) with a wide margin, while a real dashboard's `WHERE`
/// stays far below it (a long list of alternatives is `IN (…)`, one level).
pub const MAX_SQL_EXPR_DEPTH: usize = 256;

/// Why a statement is refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expression is nested too deeply: more than {MAX_SQL_EXPR_DEPTH} levels of operators \
     (write a long list of alternatives as IN (…))"
)]
pub struct TooDeep;

/// Refuses `sql` if an expression in it may nest deeper than
/// [`MAX_SQL_EXPR_DEPTH`]. Text that does not tokenize passes: the parser
/// reports it without building a tree.
pub fn check(sql: &str, dialect: Dialect) -> Result<(), TooDeep> {
    let Some(dialect) = dialect_from_str(dialect) else {
        return Ok(());
    };
    let Ok(tokens) = Tokenizer::new(dialect.as_ref(), sql).tokenize() else {
        return Ok(());
    };
    check_tokens(&tokens)
}

/// One parenthesized (or bracketed) group being read.
#[derive(Default)]
struct Group {
    /// Set operations and joins in the group.
    chained: usize,
    /// Operators in the current comma-separated item.
    operators: usize,
    /// The deepest closed subgroup of the current item.
    deepest_child: usize,
    /// The deepest finished item (operators and subgroups).
    deepest_item: usize,
}

impl Group {
    /// The bound for the group as read so far.
    fn depth(&self) -> usize {
        self.chained + self.deepest_item.max(self.operators + self.deepest_child)
    }
}

fn check_tokens(tokens: &[Token]) -> Result<(), TooDeep> {
    let mut groups = vec![Group::default()];
    for token in tokens {
        let Some(group) = groups.last_mut() else {
            return Ok(());
        };
        match token {
            Token::Whitespace(_) | Token::Period | Token::EOF => {}
            Token::LParen | Token::LBracket | Token::LBrace => {
                groups.push(Group::default());
                if groups.len() > MAX_SQL_EXPR_DEPTH {
                    return Err(TooDeep);
                }
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                // An unmatched closer is the parser's to report.
                if groups.len() > 1
                    && let Some(closed) = groups.pop()
                    && let Some(parent) = groups.last_mut()
                {
                    parent.deepest_child = parent.deepest_child.max(closed.depth() + 1);
                }
            }
            Token::Comma => {
                group.deepest_item = group
                    .deepest_item
                    .max(group.operators + group.deepest_child);
                group.operators = 0;
                group.deepest_child = 0;
            }
            Token::SemiColon => *group = Group::default(),
            Token::Word(w) if w.quote_style.is_some() || w.keyword == Keyword::NoKeyword => {}
            Token::Word(w)
                if matches!(
                    w.keyword,
                    Keyword::UNION
                        | Keyword::EXCEPT
                        | Keyword::INTERSECT
                        | Keyword::MINUS
                        | Keyword::JOIN
                ) =>
            {
                group.chained += 1
            }
            t if is_literal(t) => {}
            _ => group.operators += 1,
        }
        // Every group's bound is a lower bound of the statement's, so the
        // innermost one can refuse early; closing groups carry theirs up.
        if groups
            .last()
            .is_some_and(|g| g.depth() > MAX_SQL_EXPR_DEPTH)
        {
            return Err(TooDeep);
        }
    }
    // Groups left open (a syntax error) still count.
    let mut depth = 0;
    for (i, g) in groups.iter().rev().enumerate() {
        let inner = if i == 0 { 0 } else { depth + 1 };
        depth = g.chained + g.deepest_item.max(g.operators + g.deepest_child.max(inner));
    }
    if depth > MAX_SQL_EXPR_DEPTH {
        return Err(TooDeep);
    }
    Ok(())
}

fn is_literal(t: &Token) -> bool {
    matches!(
        t,
        Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::Placeholder(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(sql: &str) -> Result<(), TooDeep> {
        check(sql, Dialect::Generic)
    }

    fn chain(op: &str, term: &str, terms: usize) -> String {
        vec![term; terms].join(op)
    }

    /// The statements that overflowed the stack before the check, and the
    /// shapes that spread a chain over parentheses or set operations.
    #[test]
    fn long_chains_are_refused_before_parsing() {
        let or = format!("SELECT v FROM m WHERE {}", chain(" OR ", "v=1", 100_000));
        assert_eq!(bound(&or), Err(TooDeep));
        assert_eq!(
            bound(&format!("SELECT {}", chain("+", "1", 50_000))),
            Err(TooDeep)
        );
        // A syntax error after the chain: the parser would drop the tree.
        assert_eq!(
            bound(&format!("SELECT {} FROM", chain("+", "1", 5_000))),
            Err(TooDeep)
        );
        let casts = format!("SELECT 1{}", "::int".repeat(300));
        assert_eq!(bound(&casts), Err(TooDeep));
        // 6 levels of 50 operators: the tree is 300 deep.
        let nested = (0..6).fold("v".to_string(), |e, _| format!("({e}){}", "+v".repeat(50)));
        assert_eq!(bound(&format!("SELECT {nested}")), Err(TooDeep));
        let unions = format!("SELECT 1, 2{}", " UNION ALL SELECT 1, 2".repeat(300));
        assert_eq!(bound(&unions), Err(TooDeep));
        let parens = format!("SELECT {}1{}", "(".repeat(300), ")".repeat(300));
        assert_eq!(bound(&parens), Err(TooDeep));
        let unclosed = format!("SELECT {}", "(1+1+1+1+1".repeat(60));
        assert_eq!(bound(&unclosed), Err(TooDeep));
    }

    /// Wide is fine: long lists, many items, many statements, and a chain
    /// of 200 terms.
    #[test]
    fn wide_statements_pass() {
        let values: Vec<String> = (0..20_000).map(|i| format!("'h{i}'")).collect();
        let in_list = format!("SELECT * FROM m WHERE host IN ({})", values.join(", "));
        assert_eq!(bound(&in_list), Ok(()));
        let items: Vec<String> = (0..5_000).map(|i| format!("a + b * {i} AS c{i}")).collect();
        assert_eq!(
            bound(&format!("SELECT {} FROM m", items.join(", "))),
            Ok(())
        );
        assert_eq!(bound(&format!("SELECT {}", chain("+", "1", 200))), Ok(()));
        let statements = format!("SELECT {};", chain("+", "1", 200)).repeat(50);
        assert_eq!(bound(&statements), Ok(()));
        let balanced = (0..10).fold("v".to_string(), |e, _| format!("({e}) + ({e})"));
        assert_eq!(bound(&format!("SELECT {balanced} FROM m")), Ok(()));
        let typical = "SELECT date_bin(INTERVAL '1 minute', time) AS t, host, avg(usage) \
            FROM cpu WHERE time >= now() - INTERVAL '1 hour' AND host IN ('a', 'b') \
            AND \"region\" = 'us' OR region IS NULL GROUP BY 1, 2 ORDER BY 1 DESC LIMIT 10";
        assert_eq!(bound(typical), Ok(()));
        // Quoted keywords are names, not operators.
        let quoted = format!("SELECT {} FROM m", chain("+", "\"OR\"", 200));
        assert_eq!(bound(&quoted), Ok(()));
        assert_eq!(bound("SELECT ))) ((( 'unterminated"), Ok(()));
    }
}
