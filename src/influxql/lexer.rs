//! The InfluxQL lexer: the tokens, the tokenizer, and the positioned error
//! that it and the parser report.
//!
//! It knows characters, not grammar, so it stands apart from the parser; but
//! the parser drives it, a token at a time, because InfluxQL's `/` is
//! ambiguous: it is a regex delimiter only where a regex may appear (after
//! `=~`, in `FROM`, in `GROUP BY`, …) and division everywhere else, so the
//! parser asks for [`Lexer::regex`] where the grammar allows one.

/// A syntax error, positioned like InfluxDB 1.x does it (1-based line, and
/// char counted in characters within that line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at line {line}, char {char}")]
pub struct ParseError {
    pub message: String,
    pub line: usize,
    pub char: usize,
}

/// InfluxDB 1.x's reserved words (plus the `AND`/`OR` operators). `time`,
/// `fill`, `tz`, `now`, `true` and `false` are deliberately not here: they are
/// ordinary identifiers that the parser recognises by context.
const KEYWORDS: &[&str] = &[
    "ALL",
    "ALTER",
    "AND",
    "ANY",
    "AS",
    "ASC",
    "BEGIN",
    "BY",
    "CREATE",
    "CONTINUOUS",
    "DATABASE",
    "DATABASES",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DESTINATIONS",
    "DIAGNOSTICS",
    "DISTINCT",
    "DROP",
    "DURATION",
    "END",
    "EVERY",
    "EXPLAIN",
    "FIELD",
    "FOR",
    "FROM",
    "GRANT",
    "GRANTS",
    "GROUP",
    "GROUPS",
    "IN",
    "INF",
    "INSERT",
    "INTO",
    "KEY",
    "KEYS",
    "KILL",
    "LIMIT",
    "MEASUREMENT",
    "MEASUREMENTS",
    "NAME",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "PASSWORD",
    "POLICY",
    "POLICIES",
    "PRIVILEGES",
    "QUERIES",
    "QUERY",
    "READ",
    "REPLICATION",
    "RESAMPLE",
    "RETENTION",
    "REVOKE",
    "SELECT",
    "SERIES",
    "SET",
    "SHOW",
    "SHARD",
    "SHARDS",
    "SLIMIT",
    "SOFFSET",
    "STATS",
    "SUBSCRIPTION",
    "SUBSCRIPTIONS",
    "TAG",
    "TO",
    "USER",
    "USERS",
    "VALUES",
    "WHERE",
    "WITH",
    "WRITE",
];

/// Operators and punctuation, longest first so that the lexer can take the
/// first prefix that matches.
const SYMBOLS: &[&str] = &[
    "!=", "!~", "<>", "<=", ">=", "=~", "::", "+", "-", "*", "/", "%", "&", "|", "^", "=", "<",
    ">", "(", ")", ",", ";", ".", ":",
];

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// An unquoted identifier that is not a keyword.
    Ident(String),
    /// A double-quoted identifier, unescaped; never a keyword.
    QuotedIdent(String),
    /// A reserved word, in upper case.
    Keyword(&'static str),
    /// Digits only; sign and range are the parser's business.
    Integer(String),
    /// A decimal number (`1.5`, `.5`, `1.`).
    Number(String),
    /// Digits followed by unit letters (`1h30m`); validated when parsed.
    Duration(String),
    /// A single-quoted string, unescaped.
    Str(String),
    /// `/…/`, lexed only on the parser's request; `\/` unescaped.
    Regex(String),
    Sym(&'static str),
    /// A character that starts no token; reported as "found X" by the parser.
    Illegal(String),
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub(super) tok: Tok,
    /// Byte offsets into the source.
    pub(super) start: usize,
    pub(super) end: usize,
}

impl Token {
    /// How 1.x names a token in "found X": literals by their text, keywords
    /// and symbols by their spelling.
    pub(super) fn describe(&self) -> String {
        match &self.tok {
            Tok::Ident(s)
            | Tok::QuotedIdent(s)
            | Tok::Integer(s)
            | Tok::Number(s)
            | Tok::Duration(s)
            | Tok::Str(s)
            | Tok::Regex(s)
            | Tok::Illegal(s) => s.clone(),
            Tok::Keyword(k) => (*k).to_string(),
            Tok::Sym(s) => (*s).to_string(),
            Tok::Eof => "EOF".to_string(),
        }
    }

    pub(super) fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.tok, Tok::Keyword(k) if k == kw)
    }

    pub(super) fn is_sym(&self, sym: &str) -> bool {
        matches!(self.tok, Tok::Sym(s) if s == sym)
    }

    /// An unquoted identifier spelled `word` in any case (`fill`, `time`, …).
    pub(super) fn is_word(&self, word: &str) -> bool {
        matches!(&self.tok, Tok::Ident(s) if s.eq_ignore_ascii_case(word))
    }
}

/// Builds an error at a byte offset, converting it to 1.x's line/char.
pub(super) fn error_at(src: &str, offset: usize, message: impl Into<String>) -> ParseError {
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let char = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    ParseError {
        message: message.into(),
        line,
        char,
    }
}

pub(super) struct Lexer<'a> {
    pub(super) src: &'a str,
    /// Byte offset of the next character; always on a char boundary.
    pub(super) pos: usize,
}

impl<'a> Lexer<'a> {
    pub(super) fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek_char(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn err(&self, offset: usize, message: impl Into<String>) -> ParseError {
        error_at(self.src, offset, message)
    }

    /// Skips whitespace, `-- …` line comments and `/* … */` block comments.
    fn skip_trivia(&mut self) -> Result<(), ParseError> {
        loop {
            match self.peek_char() {
                Some(' ' | '\t' | '\n' | '\r') => {
                    self.bump();
                }
                Some('-') if self.peek_second() == Some('-') => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                Some('/') if self.peek_second() == Some('*') => {
                    let start = self.pos;
                    match self.rest().get(2..).and_then(|r| r.find("*/")) {
                        Some(i) => self.pos += 2 + i + 2,
                        None => return Err(self.err(start, "unterminated comment")),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    pub(super) fn next_token(&mut self) -> Result<Token, ParseError> {
        self.skip_trivia()?;
        let start = self.pos;
        let Some(c) = self.peek_char() else {
            return Ok(Token {
                tok: Tok::Eof,
                start,
                end: start,
            });
        };
        let tok = if c.is_ascii_alphabetic() || c == '_' {
            self.ident_or_keyword()
        } else if c.is_ascii_digit()
            || (c == '.' && self.peek_second().is_some_and(|d| d.is_ascii_digit()))
        {
            self.number()
        } else if c == '"' {
            Tok::QuotedIdent(self.quoted('"')?)
        } else if c == '\'' {
            Tok::Str(self.quoted('\'')?)
        } else if let Some(sym) = SYMBOLS.iter().find(|s| self.rest().starts_with(**s)) {
            self.pos += sym.len();
            Tok::Sym(sym)
        } else {
            self.bump();
            Tok::Illegal(c.to_string())
        };
        Ok(Token {
            tok,
            start,
            end: self.pos,
        })
    }

    fn ident_or_keyword(&mut self) -> Tok {
        let start = self.pos;
        while self
            .peek_char()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.bump();
        }
        let word = &self.src[start..self.pos];
        match KEYWORDS.iter().find(|k| k.eq_ignore_ascii_case(word)) {
            Some(k) => Tok::Keyword(k),
            None => Tok::Ident(word.to_string()),
        }
    }

    /// Integers, decimals and durations, as 1.x's scanner splits them: digits
    /// followed directly by a letter make a duration (so `1e3` is an invalid
    /// duration, as in 1.x), a `.` makes a decimal.
    fn number(&mut self) -> Tok {
        let start = self.pos;
        let is_unit = |c: char| c.is_ascii_alphabetic() || c == 'µ';
        while self.peek_char().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        if self.peek_char() == Some('.') {
            self.bump();
            while self.peek_char().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
            return Tok::Number(self.src[start..self.pos].to_string());
        }
        if self.peek_char().is_some_and(is_unit) {
            while self.peek_char().is_some_and(is_unit) {
                self.bump();
            }
            while self
                .peek_char()
                .is_some_and(|c| is_unit(c) || c.is_ascii_digit())
            {
                self.bump();
            }
            return Tok::Duration(self.src[start..self.pos].to_string());
        }
        Tok::Integer(self.src[start..self.pos].to_string())
    }

    /// A `'string'` or `"identifier"` with 1.x's escapes (`\n \\ \' \"`).
    fn quoted(&mut self, quote: char) -> Result<String, ParseError> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None | Some('\n') => return Err(self.err(start, "bad string")),
                Some(c) if c == quote => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('n') => out.push('\n'),
                    Some(c @ ('\\' | '\'' | '"')) => out.push(c),
                    Some(c) => return Err(self.err(at, format!("bad escape: \\{c}"))),
                    None => return Err(self.err(start, "bad string")),
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// Lexes a `/regex/` if the next non-blank character is `/`; `\/` becomes
    /// `/`, every other escape is kept as written (it is regex syntax).
    pub(super) fn regex(&mut self) -> Result<Option<Token>, ParseError> {
        self.skip_trivia()?;
        if self.peek_char() != Some('/') {
            return Ok(None);
        }
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => return Err(self.err(start, "bad regex")),
                Some('/') => break,
                Some('\\') => match self.bump() {
                    Some('/') => out.push('/'),
                    Some('\n') | None => return Err(self.err(start, "bad regex")),
                    Some(c) => {
                        out.push('\\');
                        out.push(c);
                    }
                },
                Some(c) => out.push(c),
            }
        }
        // 1.x compiles regexes while parsing: a bad one is a parse error here.
        if let Err(e) = regex::Regex::new(&out) {
            let reason = match e {
                regex::Error::Syntax(text) => text.lines().last().unwrap_or_default().to_string(),
                other => other.to_string(),
            };
            return Err(self.err(start, format!("error parsing regexp: {}", reason.trim())));
        }
        Ok(Some(Token {
            tok: Tok::Regex(out),
            start,
            end: self.pos,
        }))
    }
}
