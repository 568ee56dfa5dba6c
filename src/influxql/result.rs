//! What an InfluxQL statement answers, and its InfluxDB 1.x JSON encoding.
//!
//! The encoding is written by hand rather than through `serde_json::Value`
//! because 1.x's clients see Go's number formatting (`2`, not `2.0`; `1e+21`)
//! and times either as RFC3339 with trailing zeros trimmed or as integers in
//! the `epoch` unit the request asks for.

use std::fmt::Write;

use chrono::{DateTime, FixedOffset, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// Nanoseconds since the epoch: formatted by the request's `epoch`.
    Time(i64),
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    String(String),
    Boolean(bool),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::Float(f) => Some(f),
            Self::Integer(i) => Some(i as f64),
            Self::Unsigned(u) => Some(u as f64),
            _ => None,
        }
    }
}

/// One series of a statement's answer: a measurement and a tag set.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// `None` when the statement groups by no tag (the key is then absent).
    pub tags: Option<Vec<(String, String)>>,
    pub columns: Vec<String>,
    pub values: Vec<Vec<Value>>,
}

/// One statement's answer: its series, or the error that ended it.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementResult {
    pub statement_id: usize,
    pub series: Vec<Series>,
    pub error: Option<String>,
}

/// How times are written: RFC3339 (in `tz` when the statement set one) or an
/// integer count of a unit (`epoch=ms` → divisor 1_000_000).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeFormat {
    Rfc3339(Option<Tz>),
    Epoch(i64),
}

impl TimeFormat {
    /// The `epoch` query parameter: `ns`, `u`/`µ`, `ms`, `s`, `m`, `h`.
    pub fn from_epoch(epoch: Option<&str>) -> Option<Self> {
        Some(match epoch {
            None | Some("") => Self::Rfc3339(None),
            Some("ns" | "n") => Self::Epoch(1),
            Some("u" | "µ" | "us") => Self::Epoch(1_000),
            Some("ms") => Self::Epoch(1_000_000),
            Some("s") => Self::Epoch(1_000_000_000),
            Some("m") => Self::Epoch(60_000_000_000),
            Some("h") => Self::Epoch(3_600_000_000_000),
            Some(_) => return None,
        })
    }
}

/// Go's `time.RFC3339Nano`: fractional seconds with trailing zeros trimmed,
/// `Z` for UTC, else the zone's offset.
pub fn rfc3339(ns: i64, tz: Option<Tz>) -> String {
    let utc = DateTime::<Utc>::from_timestamp_nanos(ns);
    match tz {
        None => format_time(&utc.fixed_offset(), true),
        Some(tz) => {
            let local = utc.with_timezone(&tz);
            let offset = local.offset().fix();
            format_time(&local.with_timezone(&offset), offset.local_minus_utc() == 0)
        }
    }
}

fn format_time(t: &DateTime<FixedOffset>, zulu: bool) -> String {
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    if zulu {
        s.push('Z');
    } else {
        s.push_str(&t.format("%:z").to_string());
    }
    s
}

/// A float as Go's `encoding/json` writes it.
pub fn go_float(f: f64) -> String {
    if !f.is_finite() {
        // Go refuses these; 1.x clients never see them. `null` keeps the JSON valid.
        return "null".into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        }
    } else {
        format!("{f}")
    }
}

fn push_json_string(out: &mut String, s: &str) {
    // Serializing a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn push_value(out: &mut String, v: &Value, time: TimeFormat) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Time(ns) => match time {
            TimeFormat::Rfc3339(tz) => push_json_string(out, &rfc3339(*ns, tz)),
            TimeFormat::Epoch(unit) => {
                let _ = write!(out, "{}", ns.div_euclid(unit));
            }
        },
        Value::Float(f) => out.push_str(&go_float(*f)),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Unsigned(u) => {
            let _ = write!(out, "{u}");
        }
        Value::String(s) => push_json_string(out, s),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
    }
}

fn push_series(out: &mut String, s: &Series, time: TimeFormat, partial: bool) {
    // Go's `omitempty`: SHOW RETENTION POLICIES has no name.
    out.push('{');
    if !s.name.is_empty() {
        out.push_str("\"name\":");
        push_json_string(out, &s.name);
        out.push(',');
    }
    if let Some(tags) = &s.tags {
        out.push_str("\"tags\":{");
        for (i, (k, v)) in tags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(out, k);
            out.push(':');
            push_json_string(out, v);
        }
        out.push_str("},");
    }
    out.push_str("\"columns\":[");
    for (i, c) in s.columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(out, c);
    }
    out.push(']');
    if !s.values.is_empty() {
        out.push_str(",\"values\":[");
        for (i, row) in s.values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('[');
            for (j, v) in row.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                push_value(out, v, time);
            }
            out.push(']');
        }
        out.push(']');
    }
    if partial {
        out.push_str(",\"partial\":true");
    }
    out.push('}');
}

/// One statement's object inside `results`. `partial_series` says which
/// series continue in the next chunk; `partial` marks the statement.
pub fn push_result(
    out: &mut String,
    r: &StatementResult,
    time: TimeFormat,
    partial_series: impl Fn(usize, &Series) -> bool,
    partial: bool,
) {
    let _ = write!(out, "{{\"statement_id\":{}", r.statement_id);
    if !r.series.is_empty() {
        out.push_str(",\"series\":[");
        for (i, s) in r.series.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_series(out, s, time, partial_series(i, s));
        }
        out.push(']');
    }
    if partial {
        out.push_str(",\"partial\":true");
    }
    if let Some(e) = &r.error {
        out.push_str(",\"error\":");
        push_json_string(out, e);
    }
    out.push('}');
}

/// Rows 1.x puts in one chunk of its own, chunked answer or not.
pub const CHUNK_ROWS: usize = 10_000;

/// The whole answer, not chunked. A series longer than a chunk is marked
/// `partial` anyway, as 1.x does (it merges its internal chunks but keeps
/// the flag).
pub fn encode(results: &[StatementResult], time: impl Fn(usize) -> TimeFormat) -> String {
    let mut out = String::from("{\"results\":[");
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_statement(&mut out, r, time(r.statement_id));
    }
    out.push_str("]}");
    out
}

/// One statement's object of a whole (not chunked) answer.
pub fn push_statement(out: &mut String, r: &StatementResult, time: TimeFormat) {
    let long = |_: usize, s: &Series| s.values.len() > CHUNK_ROWS;
    push_result(out, r, time, long, false);
}

/// What a statement's answer holds in memory, about: what the query memory
/// pool is charged for it until it is written.
pub fn answer_bytes(series: &[Series]) -> usize {
    series
        .iter()
        .map(|s| {
            std::mem::size_of::<Series>()
                + s.values.len() * std::mem::size_of::<Vec<Value>>()
                + s.values.iter().map(|r| r.len()).sum::<usize>() * std::mem::size_of::<Value>()
        })
        .sum()
}

/// The chunked answer: one `{"results":[…]}` line per chunk of at most
/// `chunk_size` rows, as 1.x streams it. A series cut between chunks is
/// marked `partial` in all but its last chunk, a statement in all but its last.
pub fn encode_chunked(results: &[StatementResult], time: TimeFormat, chunk_size: usize) -> String {
    results
        .iter()
        .flat_map(|r| chunk_lines(r, time, chunk_size))
        .collect()
}

/// One statement's lines of a chunked answer, made one at a time.
pub fn chunk_lines(
    r: &StatementResult,
    time: TimeFormat,
    chunk_size: usize,
) -> impl Iterator<Item = String> + '_ {
    let chunk_size = chunk_size.max(1);
    let line = move |r: &StatementResult, partial_series: bool, partial: bool| {
        let mut out = String::from("{\"results\":[");
        push_result(&mut out, r, time, |_, _| partial_series, partial);
        out.push_str("]}\n");
        out
    };
    let whole = r.series.is_empty().then(|| line(r, false, false));
    let last_series = r.series.len().saturating_sub(1);
    let pieces = r.series.iter().enumerate().flat_map(move |(i, s)| {
        let rows: Vec<&[Vec<Value>]> = if s.values.is_empty() {
            vec![&[]]
        } else {
            s.values.chunks(chunk_size).collect()
        };
        let last_piece = rows.len() - 1;
        rows.into_iter().enumerate().map(move |(j, rows)| {
            let piece = StatementResult {
                statement_id: r.statement_id,
                series: vec![Series {
                    name: s.name.clone(),
                    tags: s.tags.clone(),
                    columns: s.columns.clone(),
                    values: rows.to_vec(),
                }],
                error: None,
            };
            let more_rows = j < last_piece;
            line(&piece, more_rows, more_rows || i < last_series)
        })
    });
    whole.into_iter().chain(pieces)
}

/// A time zone's offset from UTC at `ns`, in nanoseconds.
pub fn zone_offset(tz: Tz, ns: i64) -> i64 {
    let utc = DateTime::<Utc>::from_timestamp_nanos(ns);
    i64::from(
        tz.offset_from_utc_datetime(&utc.naive_utc())
            .fix()
            .local_minus_utc(),
    ) * 1_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_go_writes_them() {
        assert_eq!(go_float(2.0), "2");
        assert_eq!(go_float(-0.5), "-0.5");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(1.5e-7), "1.5e-7");
        assert_eq!(go_float(123456.789), "123456.789");
        assert_eq!(go_float(0.0), "0");
    }

    #[test]
    fn times_trim_trailing_zeros_and_follow_tz() {
        assert_eq!(rfc3339(0, None), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1_672_617_600_500_000_000, None),
            "2023-01-02T00:00:00.5Z"
        );
        let ny: Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            rfc3339(1_672_617_600_000_000_000, Some(ny)),
            "2023-01-01T19:00:00-05:00"
        );
        assert_eq!(
            zone_offset(ny, 1_672_617_600_000_000_000),
            -5 * 3_600_000_000_000
        );
    }

    #[test]
    fn json_shape_and_chunks() {
        let r = StatementResult {
            statement_id: 0,
            series: vec![Series {
                name: "cpu".into(),
                tags: Some(vec![("host".into(), "a".into())]),
                columns: vec!["time".into(), "mean".into()],
                values: vec![
                    vec![Value::Time(60_000_000_000), Value::Float(1.0)],
                    vec![Value::Time(120_000_000_000), Value::Null],
                ],
            }],
            error: None,
        };
        assert_eq!(
            encode(std::slice::from_ref(&r), |_| TimeFormat::Epoch(
                1_000_000_000
            )),
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"a"},"columns":["time","mean"],"values":[[60,1],[120,null]]}]}]}"#
        );
        let chunks = encode_chunked(&[r], TimeFormat::Rfc3339(None), 1);
        let lines: Vec<&str> = chunks.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].ends_with(
                r#""values":[["1970-01-01T00:01:00Z",1]],"partial":true}],"partial":true}]}"#
            ),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].ends_with(r#""values":[["1970-01-01T00:02:00Z",null]]}]}]}"#),
            "{}",
            lines[1]
        );
        let empty = StatementResult {
            statement_id: 1,
            series: vec![],
            error: Some("boom".into()),
        };
        assert_eq!(
            encode(&[empty], |_| TimeFormat::Rfc3339(None)),
            r#"{"results":[{"statement_id":1,"error":"boom"}]}"#
        );
    }
}
