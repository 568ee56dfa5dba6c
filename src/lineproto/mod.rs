//! Line protocol → one Arrow [`RecordBatch`](arrow::record_batch::RecordBatch) per
//! measurement, plus an error per bad line.
//!
//! ```text
//! body bytes ──► line splitter ──► parse::parse_line ──► batch::Tables ──► ParsedBody
//!                (next '\n')        (tokens, borrowed)    (validate, then   (tables,
//!                                                          append)           errors)
//! ```
//!
//! # Grammar
//!
//! `measurement[,tag=value…] field=value[,field=value…] [timestamp]`, one point a
//! line. Lines end at `\n`; a `\r` before it is dropped; the last line needs no
//! newline. Blank lines and lines whose first non-blank byte is `#` are skipped,
//! but every line counts for line numbers. One or more spaces separate the
//! sections; trailing spaces are allowed.
//!
//! - Escapes: in the measurement `\,` `\ ` and `\\`; in tag keys, tag values and
//!   field keys `\,` `\=` `\ ` and `\\` (as InfluxDB 3 reads them). A backslash
//!   before any other byte is kept as it is. `=` needs no escape in a measurement
//!   or a tag value. A backslash right before the `\n` in a name escapes the
//!   newline as InfluxDB 3 does: both are kept in the name and the line goes on
//!   (before `\r\n`, or at the end of the body, it is an error: "line ends with
//!   a backslash").
//! - Field values: float (`1`, `-1.5`, `1e3`, `1.`, `.5`, `1E10`; never NaN or
//!   infinity), integer `1i` (i64), unsigned `1u` (u64), string `"…"` (with `\"`
//!   and `\\`; other backslashes are kept), boolean `t T true True TRUE f F false
//!   False FALSE`.
//! - Timestamp: a signed 64-bit integer in the request's [`Precision`], converted
//!   to ns with checked arithmetic; absent → [`ParseOptions::default_time_ns`].
//! - A tag named `time` is an error; a field named `time` is dropped and the
//!   rest of the line written, unless it was the only field (an error). Both as
//!   InfluxDB 3 (`core/mutable_batch_lp`, `write_line`), with InfluxDB 1.x's
//!   messages.
//! - Size limits ([`ParseOptions`]): line length, and the length of each name,
//!   tag value and string value (64 KiB each by default, as InfluxDB 3).
//!
//! ## Where we knowingly differ from InfluxDB 3's parser
//!
//! We accept a few things that `influxdb_line_protocol` rejects, since the
//! intent is clear and rejecting loses data: lines ending in `\r\n` (it reads
//! the `\r` as content), floats written `1.` or `.5` (as the Go parser of
//! InfluxDB 1.x/2.x), and trailing spaces after a field set with no timestamp.
//! We reject values that overflow `f64` (it stores infinity).
//!
//! # Newlines inside string values
//!
//! InfluxDB accepts a raw newline inside a quoted string field value. The splitter
//! finds the next `\n` with a fast search and hands that physical line to the
//! parser; only when the string scanner reaches the end of the line inside an
//! open quote does it extend the line to the next `\n` and carry on. Lines
//! without an open quote (nearly all) are therefore scanned once for the `\n`
//! and once to parse, and quotes in measurements or tags, which are ordinary
//! characters there, never extend a line. Every `\n` consumed this way still
//! counts as a line for the line numbers of later errors, and an error's column
//! is counted from the start of the line where the point began. If the quote is
//! never closed before the body ends, the point is rejected and parsing resumes
//! on the physical line after the one where it began, so one stray quote costs
//! one line rather than the rest of the body.
//!
//! # Errors and duplicates
//!
//! Errors are per line: a bad line is reported with its line and column and
//! skipped, the other lines still go in. A line is parsed completely and checked
//! against the columns already fixed for its table — by the [`LineCheck`]
//! (the catalog), else by earlier lines of the same body — before anything is
//! appended, so a rejected line leaves no trace.
//!
//! A tag key repeated in one line is an error. A field key repeated in one line
//! keeps the last value, unless the occurrences have different types (an error).
//! This is what InfluxDB 3 does: `core/mutable_batch_lp/src/lib.rs` in
//! influxdata/influxdb (`LinesConverter::write_lp` docs and `write_line`) keeps
//! the last occurrence of a duplicate field "to maintain parity with TSM" and
//! rejects a line whose duplicates differ in type; duplicate tags are always an
//! error there. The column keeps the position where the field first appeared.
//!
//! # Arrow mapping
//!
//! One table per measurement, columns in order of first appearance with `time`
//! last: tags `Dictionary(Int32, Utf8)`, fields `Float64`, `Int64`, `UInt64`,
//! `Utf8` or `Boolean`, `time` a non-null `Timestamp(Nanosecond)`. Fields come
//! from [`ColumnType::arrow_field`], so each carries its `inflow.column` kind.
//! A column missing from a row is null.
//!
//! # Body encoding
//!
//! The body is checked as UTF-8 once up front. If it is not valid, the lines
//! around each invalid byte are rejected one by one ("invalid UTF-8") and the
//! valid stretches in between are parsed as usual.

mod batch;
#[cfg(test)]
mod corners;
mod number;
mod parse;
mod problem;
#[cfg(test)]
mod props;
mod scan;

use std::fmt;

pub use crate::schema::ColumnType;

use batch::{Quotas, Tables};
use parse::{Fault, Line, Problem};
pub use problem::Reason;

/// The unit of the timestamps in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Nanosecond,
    Microsecond,
    Millisecond,
    Second,
    Minute,
    Hour,
    /// InfluxDB 3's `precision=auto`: each timestamp's unit is guessed from its
    /// magnitude (below 5e9 seconds, 5e12 milliseconds, 5e15 microseconds, else
    /// nanoseconds), as `influxdb3_write` does.
    Auto,
}

impl Precision {
    /// Nanoseconds per unit (1 for `Auto`, whose unit is per timestamp).
    pub fn multiplier(self) -> i64 {
        match self {
            Self::Nanosecond | Self::Auto => 1,
            Self::Microsecond => 1_000,
            Self::Millisecond => 1_000_000,
            Self::Second => 1_000_000_000,
            Self::Minute => 60 * 1_000_000_000,
            Self::Hour => 3_600 * 1_000_000_000,
        }
    }

    /// A timestamp in this precision as nanoseconds; `None` on overflow.
    pub fn to_nanos(self, value: i64) -> Option<i64> {
        let unit = match self {
            Self::Auto => match value.unsigned_abs() {
                v if v < 5_000_000_000 => Self::Second,
                v if v < 5_000_000_000_000 => Self::Millisecond,
                v if v < 5_000_000_000_000_000 => Self::Microsecond,
                _ => Self::Nanosecond,
            },
            fixed => fixed,
        };
        value.checked_mul(unit.multiplier())
    }
}

/// Column types already fixed for a table (by the catalog). The parser rejects
/// lines whose columns conflict with these.
pub trait LineCheck {
    /// The type the database fixed for `column` of `table`, if any.
    fn column_type(&self, table: &str, column: &str) -> Option<ColumnType>;

    /// Tables the database has (for its table quota).
    fn table_count(&self) -> usize {
        0
    }

    /// Columns table `table` has, `time` included; `None` if it does not exist.
    fn column_count(&self, _table: &str) -> Option<usize> {
        None
    }

    /// Whether the database counts series (its series quota); if not, the
    /// parser does not hash them.
    fn counts_series(&self) -> bool {
        false
    }

    /// May a point of series `series` (its [`crate::series_hash::series_id`])
    /// at `time_ns` be written? `Ok` holds the time before which later points
    /// of the series need not be asked about again.
    fn check_series(&self, _series: u64, _time_ns: i64) -> Result<i64, SeriesQuota> {
        Ok(i64::MAX)
    }

    /// The line just checked with [`Self::check_series`] was accepted whole.
    fn admit_series(&self, _series: u64) {}
}

/// A line would add a series past the database's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesQuota {
    pub limit: usize,
    /// Series the database has plus those the body added before this line.
    pub current: usize,
}

/// No known tables (tests, new databases).
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptySchema;

impl LineCheck for EmptySchema {
    fn column_type(&self, _table: &str, _column: &str) -> Option<ColumnType> {
        None
    }
}

/// How to read one request body.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    pub precision: Precision,
    /// Time for lines without a timestamp, in ns: one instant for the whole request.
    pub default_time_ns: i64,
    /// Longest accepted line in bytes (default 1 MiB); longer lines are a line error.
    pub max_line_bytes: usize,
    /// Most columns (tags + fields + time) a table may have in one request
    /// (default 1000); a line that would add more is a line error.
    pub max_columns_per_table: usize,
    /// Most errors kept with details; the rest are only counted (default 100).
    pub max_errors: usize,
    /// Longest tag key or tag value in bytes after unescaping (default 64 KiB,
    /// InfluxDB 3's limit). As in InfluxDB, where one limit covers every name,
    /// it also bounds measurement names and field keys. Longer is a line error.
    pub max_tag_bytes: usize,
    /// Longest string field value in bytes after unescaping (default 64 KiB, as
    /// InfluxDB 3). Longer is a line error.
    pub max_string_bytes: usize,
    /// Points older than this (ns) are a line error: the database's retention
    /// period would drop them, so they are refused rather than lost.
    pub min_time_ns: Option<i64>,
    /// The database's quotas, counted with what it has already: a line that
    /// would add a table past `max_tables`, or a column past
    /// `max_table_columns` (`time` included), is a line error. Rejected lines
    /// add nothing, so they do not count.
    pub max_tables: usize,
    pub max_table_columns: usize,
}

impl ParseOptions {
    pub fn new(precision: Precision, default_time_ns: i64) -> Self {
        Self {
            precision,
            default_time_ns,
            max_line_bytes: 1 << 20,
            max_columns_per_table: 1000,
            max_errors: 100,
            max_tag_bytes: INFLUXDB_STRING_LIMIT,
            max_string_bytes: INFLUXDB_STRING_LIMIT,
            min_time_ns: None,
            max_tables: usize::MAX,
            max_table_columns: usize::MAX,
        }
    }

    fn limits(&self) -> parse::Limits {
        parse::Limits {
            line: self.max_line_bytes,
            name: self.max_tag_bytes,
            string: self.max_string_bytes,
        }
    }
}

/// InfluxDB 3's `STRING_LENGTH_LIMIT_IN_BYTES` (`influxdb_line_protocol`): the
/// longest measurement, tag key, tag value, field key or string value it takes.
const INFLUXDB_STRING_LIMIT: usize = 64 << 10;

/// Why one line of the body was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based, counting every line of the body, blank and comment lines included.
    pub line: usize,
    /// 1-based byte column within that line where the problem is.
    pub column: usize,
    /// The reason, e.g. `invalid float value "1.2.3" for field "usage"`.
    pub message: String,
    /// Its kind, for metrics and logs.
    pub reason: Reason,
    /// The line as sent, cut to [`EXCERPT_BYTES`] (InfluxDB 3's `original_line`).
    pub original: String,
}

/// Longest excerpt of a bad line kept in its error.
pub const EXCERPT_BYTES: usize = 256;

fn excerpt(line: &str) -> String {
    let mut end = line.len().min(EXCERPT_BYTES);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_string()
}

impl LineError {
    /// The excerpt with a caret under the column on a second line:
    ///
    /// ```text
    /// m,t=b f=oops 2
    ///         ^
    /// ```
    ///
    /// The caret is placed by characters, not bytes, so it lines up under
    /// multibyte text (tabs in the excerpt are repeated in the padding); a
    /// column past the excerpt points just after its end.
    pub fn caret(&self) -> String {
        let text = &self.original;
        let mut byte = self.column.saturating_sub(1).min(text.len());
        while !text.is_char_boundary(byte) {
            byte -= 1;
        }
        let pad: String = text[..byte]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!("{text}\n{pad}^")
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for LineError {}

/// The points of one measurement.
#[derive(Debug)]
pub struct TableBatch {
    pub table: String,
    pub batch: arrow::record_batch::RecordBatch,
}

/// Everything taken from one request body.
#[derive(Debug, Default)]
pub struct ParsedBody {
    /// One per measurement, in order of first appearance.
    pub tables: Vec<TableBatch>,
    /// At most `max_errors`, in line order.
    pub errors: Vec<LineError>,
    /// All bad lines.
    pub error_count: usize,
    /// Bad lines by [`Reason`] (indexed by `reason as usize`).
    pub rejected: [usize; Reason::ALL.len()],
    /// Points accepted.
    pub lines: usize,
    /// Field values accepted.
    pub fields: usize,
}

impl ParsedBody {
    /// No accepted points.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }
}

/// Parses a whole request body. Never fails as a whole: bad lines are reported
/// in [`ParsedBody::errors`] and the good ones are kept. See the module docs for
/// the grammar and the rules.
pub fn parse_lines(body: &[u8], opts: &ParseOptions, schema: &dyn LineCheck) -> ParsedBody {
    let mut run = Run {
        opts,
        schema,
        tables: Tables::new(
            opts.max_columns_per_table,
            Quotas {
                tables: opts.max_tables,
                columns: opts.max_table_columns,
            },
        ),
        out: ParsedBody::default(),
    };
    let mut rest = body;
    let mut line_no = 1;
    loop {
        match std::str::from_utf8(rest) {
            Ok(text) => {
                run.text(text, line_no);
                break;
            }
            Err(e) => {
                // Parse the lines before the one holding the bad byte, reject
                // that line, and go on after it.
                let bad = e.valid_up_to();
                let line_start = rest[..bad]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                let valid = std::str::from_utf8(&rest[..line_start])
                    .expect("a prefix of the valid part is valid UTF-8");
                run.text(valid, line_no);
                // Counted here, not taken from `text`: a line there that ends
                // in an escaped `\n` runs on into the empty line after the
                // last one, which is really the start of the bad line.
                line_no += valid.bytes().filter(|&b| b == b'\n').count();
                let line_end = rest[bad..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |i| bad + i);
                let line = &rest[line_start..line_end];
                let first = line.iter().position(|&b| b != b' ' && b != b'\t');
                if first.is_some_and(|i| line[i] != b'#') {
                    run.error(
                        line_no,
                        Fault {
                            at: bad - line_start,
                            problem: Problem::InvalidUtf8,
                        },
                        &String::from_utf8_lossy(line),
                    );
                }
                line_no += 1;
                if line_end == rest.len() {
                    break;
                }
                rest = &rest[line_end + 1..];
            }
        }
    }
    let Run {
        tables, mut out, ..
    } = run;
    out.tables = tables.finish();
    out
}

/// The state of one [`parse_lines`] call on a body that lives for `'b`.
struct Run<'o, 'b> {
    opts: &'o ParseOptions,
    schema: &'o dyn LineCheck,
    tables: Tables<'b>,
    out: ParsedBody,
}

impl<'b> Run<'_, 'b> {
    /// Parses valid UTF-8 text whose first line is number `line_no`; returns the
    /// number of the line after its last `\n`.
    fn text(&mut self, text: &'b str, mut line_no: usize) -> usize {
        let bytes = text.as_bytes();
        let mut line = Line::default();
        let limits = self.opts.limits();
        let mut start = 0;
        while start < bytes.len() {
            let end = parse::find_newline(text, start);
            let content_end = parse::content_end(bytes, start, end);
            let mut from = start;
            while from < content_end && matches!(bytes[from], b' ' | b'\t') {
                from += 1;
            }
            if from == content_end || bytes[from] == b'#' {
                start = end + 1;
                line_no += 1;
                continue;
            }
            if content_end - start > self.opts.max_line_bytes {
                let fault = Fault {
                    at: self.opts.max_line_bytes,
                    problem: Problem::LineTooLong(self.opts.max_line_bytes),
                };
                self.error(line_no, fault, &text[start..content_end]);
                start = end + 1;
                line_no += 1;
                continue;
            }

            // A line whose series was seen in an accepted line skips it.
            let series = parse::series_end(text, from, content_end);
            let cached = series.and_then(|e| self.tables.series(&text[from..e]));
            let scanned = parse::parse_line(
                text,
                start,
                from,
                end,
                limits,
                cached.and(series),
                &mut line,
            );
            let (mut next, mut extra) = (scanned.next, scanned.extra_newlines);
            let retry = match self.finish(&line, cached, scanned.result) {
                Ok(fields) => {
                    self.out.lines += 1;
                    self.out.fields += fields;
                    if let (None, Some(e)) = (cached, series) {
                        self.tables.remember(&text[from..e]);
                    }
                    false
                }
                Err(fault) if cached.is_none() => {
                    self.error(line_no, fault, &text[start..content_end]);
                    false
                }
                Err(_) => true,
            };
            if retry {
                // Parse the failed line in full, for an error that can name
                // its measurement (the same error otherwise).
                let scanned = parse::parse_line(text, start, from, end, limits, None, &mut line);
                (next, extra) = (scanned.next, scanned.extra_newlines);
                match self.finish(&line, None, scanned.result) {
                    Ok(fields) => {
                        self.out.lines += 1;
                        self.out.fields += fields;
                    }
                    Err(fault) => self.error(line_no, fault, &text[start..content_end]),
                }
            }
            start = next;
            line_no += 1 + extra;
        }
        line_no
    }

    /// Converts the timestamp and appends a parsed line.
    #[inline]
    fn finish<'l>(
        &mut self,
        line: &'l Line<'_>,
        series: Option<u32>,
        parsed: Result<(), Fault<'l>>,
    ) -> Result<usize, Fault<'l>> {
        parsed?;
        let time_ns = match line.timestamp {
            None => self.opts.default_time_ns,
            Some((value, at)) => {
                let ns = self.opts.precision.to_nanos(value).ok_or(Fault {
                    at,
                    problem: Problem::TimestampOutOfRange {
                        value,
                        precision: self.opts.precision,
                    },
                })?;
                if let Some(min) = self.opts.min_time_ns
                    && ns < min
                {
                    return Err(Fault {
                        at,
                        problem: Problem::OlderThanRetention { value, min_ns: min },
                    });
                }
                ns
            }
        };
        self.tables.append(line, series, time_ns, self.schema)
    }

    fn error(&mut self, line: usize, fault: Fault<'_>, source: &str) {
        self.out.error_count += 1;
        let reason = fault.problem.reason();
        self.out.rejected[reason as usize] += 1;
        if self.out.errors.len() < self.opts.max_errors {
            self.out.errors.push(LineError {
                line,
                column: fault.at + 1,
                reason,
                message: fault.problem.to_string(),
                original: excerpt(source),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, TimestampNanosecondType};

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn parse(body: &str) -> ParsedBody {
        parse_lines(
            body.as_bytes(),
            &ParseOptions::new(Precision::Nanosecond, NOW),
            &EmptySchema,
        )
    }

    fn times(p: &ParsedBody, table: usize) -> Vec<i64> {
        let batch = &p.tables[table].batch;
        let time = batch.column(batch.num_columns() - 1);
        time.as_primitive::<TimestampNanosecondType>()
            .values()
            .to_vec()
    }

    fn errors(p: &ParsedBody) -> Vec<String> {
        p.errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn auto_precision_guesses_by_magnitude() {
        let auto = Precision::Auto;
        assert_eq!(
            auto.to_nanos(1_641_024_000),
            Some(1_641_024_000_000_000_000)
        );
        assert_eq!(
            auto.to_nanos(1_641_024_000_123),
            Some(1_641_024_000_123_000_000)
        );
        assert_eq!(
            auto.to_nanos(1_641_024_000_123_456),
            Some(1_641_024_000_123_456_000)
        );
        assert_eq!(
            auto.to_nanos(1_641_024_000_123_456_789),
            Some(1_641_024_000_123_456_789)
        );
        assert_eq!(
            auto.to_nanos(-1_641_024_000),
            Some(-1_641_024_000_000_000_000)
        );
        assert_eq!(Precision::Hour.to_nanos(i64::MAX), None);
    }

    #[test]
    fn precision_multipliers() {
        assert_eq!(Precision::Nanosecond.multiplier(), 1);
        assert_eq!(Precision::Microsecond.multiplier(), 1_000);
        assert_eq!(Precision::Millisecond.multiplier(), 1_000_000);
        assert_eq!(Precision::Second.multiplier(), 1_000_000_000);
        assert_eq!(Precision::Minute.multiplier(), 60_000_000_000);
        assert_eq!(Precision::Hour.multiplier(), 3_600_000_000_000);
    }

    #[test]
    fn options_defaults() {
        let o = ParseOptions::new(Precision::Second, 7);
        assert_eq!(o.precision, Precision::Second);
        assert_eq!(o.default_time_ns, 7);
        assert_eq!(o.max_line_bytes, 1 << 20);
        assert_eq!(o.max_columns_per_table, 1000);
        assert_eq!(o.max_errors, 100);
    }

    #[test]
    fn each_precision_scales_and_overflow_is_a_line_error() {
        for (p, name) in [
            (Precision::Nanosecond, "ns"),
            (Precision::Microsecond, "us"),
            (Precision::Millisecond, "ms"),
            (Precision::Second, "s"),
            (Precision::Minute, "m"),
            (Precision::Hour, "h"),
        ] {
            let body = "m f=1 -3\nm f=1 9223372036854775807\nm f=1";
            let parsed = parse_lines(body.as_bytes(), &ParseOptions::new(p, NOW), &EmptySchema);
            let mut want = vec![-3 * p.multiplier()];
            if p == Precision::Nanosecond {
                want.push(i64::MAX);
                assert_eq!(parsed.error_count, 0);
            } else {
                assert_eq!(
                    errors(&parsed),
                    [format!(
                        "line 2, column 7: timestamp 9223372036854775807 out of range for precision {name}"
                    )]
                );
            }
            want.push(NOW);
            assert_eq!(times(&parsed, 0), want, "{p:?}");
        }
    }

    #[test]
    fn missing_timestamp_uses_the_default_and_negative_ones_are_kept() {
        let p = parse("m f=1\nm f=2 -1\nm f=3 -9223372036854775808\nm f=4 0");
        assert_eq!(times(&p, 0), [NOW, -1, i64::MIN, 0]);
    }

    #[test]
    fn comments_blank_lines_crlf_and_no_trailing_newline() {
        let body = "# header\r\n\r\n   \n  # indented comment\nm f=1 1\r\n\t\nm f=2 2\r\nm f=3 3";
        let p = parse(body);
        assert_eq!(p.error_count, 0, "{:?}", p.errors);
        assert_eq!(p.lines, 3);
        assert_eq!(times(&p, 0), [1, 2, 3]);
        let p = parse("m f=1 1\n");
        assert_eq!(p.lines, 1);
        let p = parse("m f=1 1\r\n");
        assert_eq!(p.lines, 1);
        // Leading blanks before a point are skipped too.
        let p = parse("  m f=1 1");
        assert_eq!(p.lines, 1);
    }

    #[test]
    fn only_comments_and_blank_lines_is_empty() {
        for body in ["", "\n\n", "# a\n# b", "  \r\n"] {
            let p = parse(body);
            assert!(p.is_empty(), "{body:?}");
            assert_eq!(p.error_count, 0);
            assert!(p.tables.is_empty());
        }
    }

    #[test]
    fn error_line_numbers_count_blank_and_comment_lines() {
        let body = "# c\n\nm f=1\nm f=x\n  \n# c\nm,t f=1\nm f=2";
        let p = parse(body);
        assert_eq!(p.lines, 2);
        assert_eq!(
            errors(&p),
            [
                "line 4, column 5: invalid field value \"x\" for field \"f\"",
                "line 7, column 4: tag \"t\" has no '=' and value",
            ]
        );
        assert_eq!(p.error_count, 2);
    }

    #[test]
    fn columns_are_bytes_from_the_line_start_including_leading_blanks() {
        let p = parse("  m f=1.2.3");
        assert_eq!(p.errors[0].column, 7);
        let p = parse("m,host=é f=é");
        assert_eq!(p.errors[0].column, 13);
    }

    #[test]
    fn strings_with_newlines_keep_line_numbers_right() {
        let body = "m s=\"a\nb\",n=1i 1\nm s=\"c\" 2\nm f=bad\n";
        let p = parse(body);
        assert_eq!(p.lines, 2);
        assert_eq!(
            errors(&p),
            ["line 4, column 5: invalid field value \"bad\" for field \"f\""]
        );
        let s = p.tables[0].batch.column(0).as_string::<i32>();
        assert_eq!(s.value(0), "a\nb");
        assert_eq!(s.value(1), "c");
    }

    #[test]
    fn an_unclosed_quote_costs_one_line() {
        let p = parse("m s=\"open\nm f=1\nm f=2");
        assert_eq!(p.lines, 2);
        assert_eq!(
            errors(&p),
            ["line 1, column 5: unterminated string value for field \"s\""]
        );
    }

    #[test]
    fn quotes_outside_field_values_are_ordinary() {
        let p = parse("m\"x,t=\"v f=1\nm\"x f=2");
        assert_eq!(p.error_count, 0, "{:?}", p.errors);
        assert_eq!(p.tables[0].table, "m\"x");
        assert_eq!(p.lines, 2);
    }

    #[test]
    fn max_errors_bounds_details_not_the_count() {
        let mut body = String::new();
        for i in 0..10 {
            body.push_str(&format!("m f=bad{i}\nm f={i}\n"));
        }
        let mut opts = ParseOptions::new(Precision::Nanosecond, NOW);
        opts.max_errors = 3;
        let p = parse_lines(body.as_bytes(), &opts, &EmptySchema);
        assert_eq!(p.error_count, 10);
        assert_eq!(p.lines, 10);
        let lines: Vec<usize> = p.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 3, 5]);
    }

    #[test]
    fn max_line_bytes() {
        let mut opts = ParseOptions::new(Precision::Nanosecond, NOW);
        opts.max_line_bytes = 10;
        let body = "m f=123456\nm f=1234567\r\nm s=\"12\n345\"\nm f=1";
        let p = parse_lines(body.as_bytes(), &opts, &EmptySchema);
        assert_eq!(p.lines, 2);
        assert_eq!(
            errors(&p),
            [
                "line 2, column 11: line is longer than 10 bytes",
                "line 3, column 5: unterminated string value for field \"s\"",
                "line 4, column 5: missing field set",
            ]
        );
    }

    #[test]
    fn invalid_utf8_rejects_only_its_line() {
        let mut body = b"m f=1\n# comment \xff\nm,t=\xfe\xff f=2\nm f=3\nm f=\"\xc3\"".to_vec();
        body.extend_from_slice(b"\nm f=4");
        let p = parse_lines(
            &body,
            &ParseOptions::new(Precision::Nanosecond, NOW),
            &EmptySchema,
        );
        assert_eq!(p.lines, 3);
        assert_eq!(
            errors(&p),
            [
                "line 3, column 5: invalid UTF-8",
                "line 5, column 6: invalid UTF-8"
            ]
        );
        let f = p.tables[0].batch.column(0).as_primitive::<Float64Type>();
        assert_eq!(f.values().to_vec(), [1.0, 3.0, 4.0]);
        assert_eq!(f.null_count(), 0);
    }

    /// Found by fuzzing: a line ending in an escaped `\n` right before a line
    /// with invalid UTF-8 made that line's number one too high.
    #[test]
    fn escaped_newline_before_invalid_utf8_keeps_line_numbers() {
        let body = b"m f=1\nm\\\nx\xff f=1\nm f=oops";
        let p = parse_lines(
            body,
            &ParseOptions::new(Precision::Nanosecond, NOW),
            &EmptySchema,
        );
        assert_eq!(
            errors(&p),
            [
                "line 2, column 4: missing field set",
                "line 3, column 2: invalid UTF-8",
                "line 4, column 5: invalid field value \"oops\" for field \"f\"",
            ]
        );
    }

    #[test]
    fn counts_lines_and_fields() {
        let p = parse("m a=1,b=2\nn c=3,c=4\nm a=x");
        assert_eq!(p.lines, 2);
        assert_eq!(p.fields, 3);
        assert_eq!(p.error_count, 1);
        assert!(!p.is_empty());
    }

    /// Random edits of valid lines: never a panic, errors in line order, and
    /// every point either accepted or reported.
    #[test]
    fn mutated_bodies_never_panic() {
        const SEED: &str = "cpu,host=a\\ b,r=w\\,x usage=1.5,n=-3i,u=4u,s=\"q\\\"\\\\\",b=T 1700000000\r\n\
                            # comment\n\
                            mem,host=a free=2e3,s=\"line\none\" -5\n\
                            \n\
                            disk,d=é used=.5,ok=false";
        const BYTES: &[u8] = b"\\,= \"\n\r#tiue-.0x\xff\xc3\xa9";
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let opts = ParseOptions::new(Precision::Second, NOW);
        let p = parse_lines(SEED.as_bytes(), &opts, &EmptySchema);
        assert_eq!((p.lines, p.error_count), (3, 0), "{:?}", p.errors);
        for _ in 0..5_000 {
            let mut body = SEED.as_bytes().to_vec();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % (body.len() + 1);
                let byte = BYTES[(next() as usize) % BYTES.len()];
                match next() % 3 {
                    0 => body.insert(at, byte),
                    1 if at < body.len() => body[at] = byte,
                    _ if at < body.len() => {
                        body.remove(at);
                    }
                    _ => {}
                }
            }
            let p = parse_lines(&body, &opts, &EmptySchema);
            let physical = body.iter().filter(|&&b| b == b'\n').count() + 1;
            assert!(
                p.lines + p.error_count <= physical,
                "{:?}",
                String::from_utf8_lossy(&body)
            );
            assert!(p.errors.windows(2).all(|w| w[0].line < w[1].line));
            assert!(p.errors.iter().all(|e| e.line <= physical && e.column >= 1));
            let rows: usize = p.tables.iter().map(|t| t.batch.num_rows()).sum();
            assert_eq!(rows, p.lines);
        }
    }

    #[test]
    fn line_error_display() {
        let e = LineError {
            line: 3,
            column: 17,
            message: "bad".into(),
            reason: Reason::Syntax,
            original: "m f=1".into(),
        };
        assert_eq!(e.to_string(), "line 3, column 17: bad");
    }
}
