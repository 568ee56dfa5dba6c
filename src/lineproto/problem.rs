//! Why a line was rejected ([`Problem`]) and where ([`Fault`]), with the
//! messages users see. Kept borrowed, so the errors past `max_errors` cost no
//! allocation.

use std::borrow::Cow;
use std::fmt;

use super::Precision;
use crate::schema::{ColumnType, RESERVED_PREFIX, TIME_COLUMN};

/// Why a line was rejected. Borrowed so that errors beyond `max_errors` cost no
/// allocation; [`fmt::Display`] writes the message users see.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Problem<'a> {
    MissingMeasurement,
    MissingFieldSet,
    MissingTagKey,
    TagWithoutEquals(Cow<'a, str>),
    EmptyTagValue(Cow<'a, str>),
    MissingFieldKey,
    FieldWithoutEquals(Cow<'a, str>),
    MissingFieldValue(Cow<'a, str>),
    /// `kind` is the type the value looked like ("float", "integer", …) or "field".
    InvalidValue {
        kind: &'static str,
        value: &'a str,
        key: Cow<'a, str>,
    },
    OutOfRange {
        kind: &'static str,
        value: &'a str,
        key: Cow<'a, str>,
    },
    UnterminatedString(Cow<'a, str>),
    AfterString(Cow<'a, str>),
    TrailingBackslash,
    /// A measurement, tag key, tag value or field key that ends in a
    /// backslash once unescaped (InfluxDB 3's `EndsWithBackslash`).
    EndsWithBackslash,
    /// A tag named `time` (on the measurement).
    TimeTag(Cow<'a, str>),
    /// A tag or field key the server uses for its own columns.
    ReservedName(Cow<'a, str>),
    /// A line whose only fields are named `time` (on the measurement).
    TimeOnlyField(Cow<'a, str>),
    /// A token longer than its limit: what it is (and its key), its length
    /// after unescaping, the limit and the option that sets it.
    TooLong {
        what: &'static str,
        key: Option<Cow<'a, str>>,
        len: usize,
        limit: usize,
        option: &'static str,
    },
    InvalidTimestamp(&'a str),
    TimestampOutOfRange {
        value: i64,
        precision: Precision,
    },
    /// Before the database's retention period: `min_ns` is the oldest time kept.
    OlderThanRetention {
        value: i64,
        min_ns: i64,
    },
    TrailingText(&'a str),
    DuplicateTag(Cow<'a, str>),
    DuplicateFieldTypes {
        key: Cow<'a, str>,
        first: ColumnType,
        second: ColumnType,
    },
    /// A column used with a type other than the one fixed for it.
    TypeConflict {
        name: Cow<'a, str>,
        new: ColumnType,
        existing: ColumnType,
        table: Cow<'a, str>,
    },
    LineTooLong(usize),
    /// The line's series would be one more than the database may have.
    SeriesQuota {
        limit: usize,
        current: usize,
    },
    TooManyColumns {
        table: Cow<'a, str>,
        limit: usize,
    },
    /// The line would add a table past the database's quota.
    TableQuota {
        table: Cow<'a, str>,
        limit: usize,
        current: usize,
    },
    /// The line would add a column past the table's quota.
    ColumnQuota {
        table: Cow<'a, str>,
        column: Cow<'a, str>,
        limit: usize,
        current: usize,
    },
    InvalidUtf8,
}

impl Problem<'_> {
    /// The kind of problem, from a small fixed set: a metric label and a
    /// log field (the message, with the client's text in it, is not).
    pub(crate) fn reason(&self) -> Reason {
        match self {
            Self::MissingMeasurement
            | Self::MissingFieldSet
            | Self::MissingTagKey
            | Self::TagWithoutEquals(_)
            | Self::EmptyTagValue(_)
            | Self::MissingFieldKey
            | Self::FieldWithoutEquals(_)
            | Self::MissingFieldValue(_)
            | Self::UnterminatedString(_)
            | Self::AfterString(_)
            | Self::TrailingBackslash
            | Self::EndsWithBackslash
            | Self::TrailingText(_)
            | Self::DuplicateTag(_)
            | Self::InvalidUtf8 => Reason::Syntax,
            Self::InvalidValue { .. } | Self::OutOfRange { .. } => Reason::InvalidValue,
            Self::TimeTag(_) | Self::ReservedName(_) | Self::TimeOnlyField(_) => {
                Reason::ReservedName
            }
            Self::TooLong { .. } | Self::LineTooLong(_) => Reason::TooLong,
            Self::InvalidTimestamp(_) | Self::TimestampOutOfRange { .. } => {
                Reason::InvalidTimestamp
            }
            Self::OlderThanRetention { .. } => Reason::Retention,
            Self::DuplicateFieldTypes { .. } | Self::TypeConflict { .. } => Reason::TypeConflict,
            Self::SeriesQuota { .. } => Reason::SeriesQuota,
            Self::TooManyColumns { .. } | Self::TableQuota { .. } | Self::ColumnQuota { .. } => {
                Reason::SchemaQuota
            }
        }
    }
}

/// Why lines are rejected, in few enough kinds to label a metric with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Not line protocol: a missing part, a bad escape, bytes that are not UTF-8.
    Syntax,
    /// A field value that does not parse or does not fit its type.
    InvalidValue,
    /// A field or tag whose type differs from the one fixed for its column.
    TypeConflict,
    /// A name the server keeps for itself (`time`, `_inflow_…`).
    ReservedName,
    /// A line, name or value past its length limit.
    TooLong,
    InvalidTimestamp,
    /// Older than the database's retention period.
    Retention,
    /// Past the database's table or column quota.
    SchemaQuota,
    /// Past the database's series quota.
    SeriesQuota,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::Syntax,
        Reason::InvalidValue,
        Reason::TypeConflict,
        Reason::ReservedName,
        Reason::TooLong,
        Reason::InvalidTimestamp,
        Reason::Retention,
        Reason::SchemaQuota,
        Reason::SeriesQuota,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Syntax => "syntax",
            Self::InvalidValue => "invalid_value",
            Self::TypeConflict => "type_conflict",
            Self::ReservedName => "reserved_name",
            Self::TooLong => "too_long",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::Retention => "retention",
            Self::SchemaQuota => "schema_quota",
            Self::SeriesQuota => "series_quota",
        }
    }
}

/// A problem and the 0-based byte offset within its line where it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fault<'a> {
    pub at: usize,
    pub problem: Problem<'a>,
}

/// User text in messages is cut to this many bytes (at a char boundary).
const SNIPPET_BYTES: usize = 64;

/// Writes user text quoted and escaped, truncated to [`SNIPPET_BYTES`].
struct Snip<'s>(&'s str);

impl fmt::Display for Snip<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s.len() <= SNIPPET_BYTES {
            return write!(f, "{s:?}");
        }
        let mut cut = SNIPPET_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        write!(f, "{:?}…", &s[..cut])
    }
}

fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::Nanosecond => "ns",
        Precision::Microsecond => "us",
        Precision::Millisecond => "ms",
        Precision::Second => "s",
        Precision::Minute => "m",
        Precision::Hour => "h",
        Precision::Auto => "auto",
    }
}

impl fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingMeasurement => f.write_str("missing measurement"),
            Self::MissingFieldSet => f.write_str("missing field set"),
            Self::MissingTagKey => f.write_str("missing tag key"),
            Self::TagWithoutEquals(k) => write!(f, "tag {} has no '=' and value", Snip(k)),
            Self::EmptyTagValue(k) => write!(f, "empty value for tag {}", Snip(k)),
            Self::MissingFieldKey => f.write_str("missing field key"),
            Self::FieldWithoutEquals(k) => write!(f, "field {} has no '=' and value", Snip(k)),
            Self::MissingFieldValue(k) => write!(f, "missing value for field {}", Snip(k)),
            Self::InvalidValue { kind, value, key } => {
                write!(
                    f,
                    "invalid {kind} value {} for field {}",
                    Snip(value),
                    Snip(key)
                )
            }
            Self::OutOfRange { kind, value, key } => write!(
                f,
                "{kind} value {} for field {} is out of range",
                Snip(value),
                Snip(key)
            ),
            Self::UnterminatedString(k) => {
                write!(f, "unterminated string value for field {}", Snip(k))
            }
            Self::AfterString(k) => write!(
                f,
                "unexpected text after the string value of field {}",
                Snip(k)
            ),
            Self::TrailingBackslash => f.write_str("line ends with a backslash"),
            // InfluxDB 3's words (kept for the Go parser's sake there).
            Self::EndsWithBackslash => f.write_str(
                "Measurements, tag keys and values, and field keys may not end with a backslash",
            ),
            Self::ReservedName(k) => write!(
                f,
                "column name {} is reserved (names beginning with \"{RESERVED_PREFIX}\" are the server's)",
                Snip(k)
            ),
            // InfluxDB 1.x's wording, which InfluxDB 3 keeps on purpose.
            Self::TimeTag(m) => write!(
                f,
                "input tag \"{TIME_COLUMN}\" on measurement {} is invalid",
                Snip(m)
            ),
            Self::TimeOnlyField(m) => write!(
                f,
                "invalid field name: input field \"{TIME_COLUMN}\" on measurement {} is invalid",
                Snip(m)
            ),
            Self::TooLong {
                what,
                key,
                len,
                limit,
                option,
            } => {
                f.write_str(what)?;
                if let Some(key) = key {
                    write!(f, " {}", Snip(key))?;
                }
                write!(f, " is {len} bytes, over the limit of {limit} ({option})")
            }
            Self::InvalidTimestamp(v) => write!(f, "invalid timestamp {}", Snip(v)),
            Self::TimestampOutOfRange { value, precision } => write!(
                f,
                "timestamp {value} out of range for precision {}",
                precision_name(*precision)
            ),
            Self::OlderThanRetention { value, min_ns } => write!(
                f,
                "timestamp {value} is older than the database's retention period: points must be at or after {} ({min_ns} ns)",
                chrono::DateTime::from_timestamp_nanos(*min_ns)
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ),
            Self::TrailingText(t) => write!(f, "unexpected text after timestamp: {}", Snip(t)),
            Self::DuplicateTag(k) => write!(f, "duplicate tag {}", Snip(k)),
            Self::DuplicateFieldTypes { key, first, second } => write!(
                f,
                "field {} appears twice with different types ({first} and {second})",
                Snip(key)
            ),
            Self::TypeConflict {
                name,
                new,
                existing,
                table,
            } => {
                if *new == ColumnType::Tag {
                    write!(
                        f,
                        "tag {name} conflicts with column {name} of table {}, a field of type {existing}",
                        Snip(table),
                        name = Snip(name)
                    )
                } else {
                    write!(
                        f,
                        "field {name} is {new} but column {name} of table {} is {existing}",
                        Snip(table),
                        name = Snip(name)
                    )
                }
            }
            Self::LineTooLong(limit) => write!(f, "line is longer than {limit} bytes"),
            Self::SeriesQuota { limit, current } => write!(
                f,
                "new series would exceed the database's limit of {limit} series (it has {current})"
            ),
            Self::TooManyColumns { table, limit } => write!(
                f,
                "table {} would have more than {limit} columns",
                Snip(table)
            ),
            Self::TableQuota {
                table,
                limit,
                current,
            } => write!(
                f,
                "table {} would exceed the database's limit of {limit} tables (it has {current})",
                Snip(table)
            ),
            Self::ColumnQuota {
                table,
                column,
                limit,
                current,
            } => write!(
                f,
                "column {} would exceed the limit of {limit} columns of table {} (it has {current}, time included)",
                Snip(column),
                Snip(table)
            ),
            Self::InvalidUtf8 => f.write_str("invalid UTF-8"),
        }
    }
}
