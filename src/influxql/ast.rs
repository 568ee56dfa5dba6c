//! The InfluxQL statements inflow answers, as the parser produces them.
//!
//! Only what the planner can answer exactly is representable: the parser
//! refuses everything else (`INTO`, subqueries, `SHOW SERIES CARDINALITY`, …) with its
//! position, so an unsupported statement never reaches planning.

/// Nanoseconds, InfluxQL's duration unit (`1h`, `90s`, `1h30m`).
pub type Duration = i64;

/// One request's statements, separated by `;`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    Select(Box<Select>),
    /// `CREATE DATABASE name` (no `WITH …` clauses).
    CreateDatabase {
        name: String,
    },
    ShowDatabases,
    /// `SHOW RETENTION POLICIES [ON db]`.
    ShowRetentionPolicies {
        on: Option<String>,
    },
    /// `SHOW MEASUREMENTS [ON db] [WITH MEASUREMENT = m | =~ /re/] [WHERE …]
    /// [LIMIT n] [OFFSET n]`.
    ShowMeasurements {
        on: Option<String>,
        with_measurement: Option<MeasurementMatch>,
        condition: Option<Expr>,
        limit: Option<u64>,
        offset: Option<u64>,
    },
    /// `SHOW TAG KEYS [ON db] [FROM …] [WHERE …] [LIMIT n] [OFFSET n]`.
    ShowTagKeys {
        on: Option<String>,
        from: Vec<Source>,
        condition: Option<Expr>,
        limit: Option<u64>,
        offset: Option<u64>,
    },
    /// `SHOW TAG VALUES [ON db] [FROM …] WITH KEY … [WHERE …] [LIMIT n] [OFFSET n]`.
    ShowTagValues {
        on: Option<String>,
        from: Vec<Source>,
        key: TagKeyMatch,
        condition: Option<Expr>,
        limit: Option<u64>,
        offset: Option<u64>,
    },
    /// `SHOW SERIES [ON db] [FROM …] [WHERE …] [LIMIT n] [OFFSET n]`.
    ShowSeries {
        on: Option<String>,
        from: Vec<Source>,
        condition: Option<Expr>,
        limit: Option<u64>,
        offset: Option<u64>,
    },
    /// `SHOW FIELD KEYS [ON db] [FROM …] [LIMIT n] [OFFSET n]`.
    ShowFieldKeys {
        on: Option<String>,
        from: Vec<Source>,
        limit: Option<u64>,
        offset: Option<u64>,
    },
}

/// `WITH MEASUREMENT = name` or `=~ /re/` (also `!=`, `!~`).
#[derive(Debug, Clone, PartialEq)]
pub enum MeasurementMatch {
    Equal(String),
    NotEqual(String),
    Regex(String),
    NotRegex(String),
}

/// `WITH KEY = "k"`, `!= "k"`, `IN ("a", "b")`, `=~ /re/`, `!~ /re/`.
#[derive(Debug, Clone, PartialEq)]
pub enum TagKeyMatch {
    Equal(String),
    NotEqual(String),
    In(Vec<String>),
    Regex(String),
    NotRegex(String),
}

/// A `FROM` item: `m`, `"m"`, `db.rp.m`, `db..m`, `/re/`, `db.rp./re/`.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub database: Option<String>,
    pub retention_policy: Option<String>,
    pub name: MeasurementName,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MeasurementName {
    Name(String),
    /// The regex's source text, between the slashes, unescaped (`\/` → `/`).
    Regex(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    pub fields: Vec<Field>,
    pub from: Vec<Source>,
    pub condition: Option<Expr>,
    pub group_by: Vec<Dimension>,
    /// `None` when the statement has no `fill(…)`.
    pub fill: Option<Fill>,
    /// `ORDER BY time DESC`; `ORDER BY time [ASC]` is the default.
    pub order_desc: bool,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    pub slimit: Option<u64>,
    pub soffset: Option<u64>,
    /// `tz('America/New_York')`: the IANA name as written.
    pub tz: Option<String>,
}

/// One item of the select list.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub expr: Expr,
    pub alias: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Dimension {
    /// `time(interval[, offset])`; the offset may be negative.
    Time {
        interval: Duration,
        offset: Option<Duration>,
    },
    /// A tag key (quoted or not).
    Tag(String),
    /// `/re/`: every tag key the regex matches.
    Regex(String),
    /// `*`: every tag key.
    Wildcard,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    Null,
    None,
    Previous,
    Linear,
    Value(Number),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Integer(i64),
    Float(f64),
}

/// `::field`, `::tag`, `::float`, …: a cast or a restriction on a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarType {
    Field,
    Tag,
    Float,
    Integer,
    String,
    Boolean,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A field, a tag or `time`, with an optional `::type`.
    VarRef {
        name: String,
        data_type: Option<VarType>,
    },
    /// `*` or `*::field` / `*::tag` in a select list or as a call's argument.
    Wildcard(Option<VarType>),
    /// A function call: the name lower-cased (`mean`, `now`, …). The parser
    /// only produces the functions `FUNCTIONS` lists, with their arity checked.
    Call {
        name: String,
        args: Vec<Expr>,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `-x`: unary minus on an expression that is not a literal (literals are
    /// folded: `-1` is `Integer(-1)`).
    Negate(Box<Expr>),
    Integer(i64),
    Float(f64),
    /// A single-quoted string (also how RFC3339 times are written).
    String(String),
    Boolean(bool),
    /// `1h`, `10ms`, `1672617600000ms`: nanoseconds.
    Duration(Duration),
    /// `/re/`, unescaped (`\/` → `/`).
    Regex(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    BitAnd,
    BitOr,
    BitXor,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    /// `=~`
    RegexMatch,
    /// `!~`
    RegexNotMatch,
    And,
    Or,
}

/// The functions the parser accepts, with their argument counts (min, max).
/// Everything else is refused at its position: "function X is not supported".
pub const FUNCTIONS: [(&str, usize, usize); 20] = [
    ("mean", 1, 1),
    ("median", 1, 1),
    ("sum", 1, 1),
    ("count", 1, 1),
    ("min", 1, 1),
    ("max", 1, 1),
    ("first", 1, 1),
    ("last", 1, 1),
    ("spread", 1, 1),
    ("stddev", 1, 1),
    ("percentile", 2, 2),
    ("distinct", 1, 1),
    ("now", 0, 0),
    // Transformations: over the points of a series, or over its windows'
    // aggregates (the second argument is the unit, or moving_average's N).
    ("derivative", 1, 2),
    ("non_negative_derivative", 1, 2),
    ("difference", 1, 1),
    ("non_negative_difference", 1, 1),
    ("cumulative_sum", 1, 1),
    ("moving_average", 2, 2),
    ("elapsed", 1, 2),
];
