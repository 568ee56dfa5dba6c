//! Bytes → tokens for one line of line protocol.
//!
//! [`parse_line`] reads one logical line into a reusable [`Line`]: keys and values
//! borrow from the body (`Cow::Borrowed`) unless an escape had to be removed, so a
//! line without escapes allocates nothing once the scratch vectors have grown.
//! Every failure is a [`Fault`]: the byte offset of the problem within the line
//! and a [`Problem`] that is only formatted if the caller keeps it.
//!
//! The caller finds the end of the physical line (the next `\n`) before calling.
//! A quoted string field value may run past it: the string scanner then extends
//! the line to the following `\n` (see [`Cursor::extend`]), so only a line that
//! really has an open quote pays for it.

use std::borrow::Cow;

use super::number::{Digits, NumberError, fast_float, number, signed};
pub(crate) use super::problem::{Fault, Problem};
use super::scan;
use crate::schema::{ColumnType, TIME_COLUMN, is_reserved};

/// A field value as written in the line, already converted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldValue<'a> {
    Float(f64),
    Integer(i64),
    UInteger(u64),
    String(Cow<'a, str>),
    Boolean(bool),
}

impl FieldValue<'_> {
    pub(crate) fn column_type(&self) -> ColumnType {
        match self {
            Self::Float(_) => ColumnType::Float,
            Self::Integer(_) => ColumnType::Integer,
            Self::UInteger(_) => ColumnType::UInteger,
            Self::String(_) => ColumnType::String,
            Self::Boolean(_) => ColumnType::Boolean,
        }
    }
}

/// One `key=value` of the tag set; `at` is the key's byte offset in the line.
#[derive(Debug)]
pub(crate) struct Tag<'a> {
    pub key: Cow<'a, str>,
    pub value: Cow<'a, str>,
    pub at: usize,
}

/// One `key=value` of the field set; `at` is the key's byte offset in the line.
#[derive(Debug)]
pub(crate) struct Field<'a> {
    pub key: Cow<'a, str>,
    pub value: FieldValue<'a>,
    pub at: usize,
}

/// The tokens of one line. Reused from line to line: [`parse_line`] clears it.
#[derive(Debug, Default)]
pub(crate) struct Line<'a> {
    pub measurement: Cow<'a, str>,
    pub tags: Vec<Tag<'a>>,
    pub fields: Vec<Field<'a>>,
    /// The timestamp as written (in the request's precision) and its offset.
    pub timestamp: Option<(i64, usize)>,
}

impl Line<'_> {
    fn clear(&mut self) {
        self.measurement = Cow::Borrowed("");
        self.tags.clear();
        self.fields.clear();
        self.timestamp = None;
    }
}

/// Byte classes: which bytes end a token in which part of the line.
const MEASUREMENT: u8 = 1;
const KEY: u8 = 2;
const TAG_VALUE: u8 = 4;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b',' as usize] = MEASUREMENT | KEY | TAG_VALUE;
    t[b' ' as usize] = MEASUREMENT | KEY | TAG_VALUE;
    t[b'\\' as usize] = MEASUREMENT | KEY | TAG_VALUE;
    t[b'=' as usize] = KEY;
    t
};

/// Index of the next `\n` at or after `from`, or `text.len()`.
#[inline]
pub(crate) fn find_newline(text: &str, from: usize) -> usize {
    scan::find_byte(text.as_bytes(), from, text.len(), b'\n')
}

/// The bytes that end a token of class `stop` (see [`CLASS`]), for
/// [`scan::find_any`].
#[inline]
const fn stop_set(stop: u8) -> [u8; 4] {
    match stop {
        KEY => *b", =\\",
        _ => *b", \\\\", // MEASUREMENT, TAG_VALUE
    }
}

/// The end of a line's content: `end` (a `\n` or the end of the body) less a `\r`
/// just before it.
pub(crate) fn content_end(bytes: &[u8], start: usize, end: usize) -> usize {
    if end > start && bytes[end - 1] == b'\r' {
        end - 1
    } else {
        end
    }
}

/// The size limits of [`super::ParseOptions`] that the parser enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Longest line in bytes (a string value may extend it over several).
    pub line: usize,
    /// Longest measurement, tag key, tag value or field key, unescaped.
    pub name: usize,
    /// Longest string field value, unescaped.
    pub string: usize,
}

/// How far one call to [`parse_line`] got.
#[derive(Debug)]
pub(crate) struct Scanned<'a> {
    /// Where the next line starts (after this line's `\n`, or the body's end).
    pub next: usize,
    /// `\n`s inside this line (in string values, or escaped), each a line.
    pub extra_newlines: usize,
    pub result: Result<(), Fault<'a>>,
}

/// The end of the series (measurement and tag set) of the line whose content
/// is `bytes[from..limit]`: its first space not escaped by a backslash. `None`
/// if there is none before `limit`.
#[inline]
pub(crate) fn series_end(text: &str, from: usize, limit: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = from;
    loop {
        let space = scan::find_byte(bytes, at, limit, b' ');
        if space == limit {
            return None;
        }
        let backslashes = bytes[from..space]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if backslashes % 2 == 0 {
            return Some(space);
        }
        at = space + 1;
    }
}

/// Reads the line starting at `start` (its first non-blank byte at `from`) whose
/// physical end is `end` (the `\n` or the body's end) into `out`. With
/// `fields_at`, the series (up to that offset, see [`series_end`]) is known
/// already and skipped: `out` gets no measurement and no tags.
pub(crate) fn parse_line<'a>(
    text: &'a str,
    start: usize,
    from: usize,
    end: usize,
    limits: Limits,
    fields_at: Option<usize>,
    out: &mut Line<'a>,
) -> Scanned<'a> {
    out.clear();
    let bytes = text.as_bytes();
    let mut cur = Cursor {
        text,
        bytes,
        start,
        pos: from,
        limit: content_end(bytes, start, end),
        end,
        extra_newlines: 0,
        limits,
    };
    let result = match fields_at {
        Some(at) => {
            cur.pos = at;
            cur.after_series(out)
        }
        None => cur.line(out),
    };
    Scanned {
        next: (cur.end + 1).min(text.len()),
        extra_newlines: cur.extra_newlines,
        result,
    }
}

struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    /// Start of the line (columns are counted from here).
    start: usize,
    pos: usize,
    /// End of the line's content: before the `\r\n` / `\n`, or the body's end.
    limit: usize,
    /// Index of the `\n` ending the line, or the body's length.
    end: usize,
    extra_newlines: usize,
    limits: Limits,
}

impl<'a> Cursor<'a> {
    fn fault(&self, at: usize, problem: Problem<'a>) -> Fault<'a> {
        Fault {
            at: at - self.start,
            problem,
        }
    }

    fn peek(&self) -> Option<u8> {
        (self.pos < self.limit).then(|| self.bytes[self.pos])
    }

    fn skip_spaces(&mut self) {
        while self.pos < self.limit && self.bytes[self.pos] == b' ' {
            self.pos += 1;
        }
    }

    /// A measurement, tag key, tag value or field key over the name limit.
    #[cold]
    fn name_too_long(
        &self,
        at: usize,
        what: &'static str,
        key: Option<Cow<'a, str>>,
        len: usize,
    ) -> Fault<'a> {
        self.fault(
            at,
            Problem::TooLong {
                what,
                key,
                len,
                limit: self.limits.name,
                option: "max_tag_bytes",
            },
        )
    }

    fn line(&mut self, out: &mut Line<'a>) -> Result<(), Fault<'a>> {
        // Measurement.
        let at = self.pos;
        out.measurement = self.ident(MEASUREMENT, MEASUREMENT)?;
        if out.measurement.is_empty() {
            return Err(self.fault(at, Problem::MissingMeasurement));
        }
        if out.measurement.len() > self.limits.name {
            return Err(self.name_too_long(at, "measurement", None, out.measurement.len()));
        }

        // Tag set.
        if self.peek() == Some(b',') {
            self.pos += 1;
            self.tags(out)?;
        }
        self.after_series(out)
    }

    /// The rest of the line after the series.
    #[inline]
    fn after_series(&mut self, out: &mut Line<'a>) -> Result<(), Fault<'a>> {
        // At least one space, then the field set.
        if self.peek() != Some(b' ') {
            return Err(self.fault(self.pos, Problem::MissingFieldSet));
        }
        self.skip_spaces();
        if self.pos == self.limit {
            return Err(self.fault(self.pos, Problem::MissingFieldSet));
        }
        if self.fields(out)? {
            self.timestamp(out)?;
        }
        Ok(())
    }

    /// After the `,` that follows the measurement; stops on the space before the
    /// field set.
    fn tags(&mut self, out: &mut Line<'a>) -> Result<(), Fault<'a>> {
        loop {
            let at = self.pos;
            let key = self.ident(KEY, KEY)?;
            if key.is_empty() {
                return Err(self.fault(at, Problem::MissingTagKey));
            }
            if key.len() > self.limits.name {
                let len = key.len();
                return Err(self.name_too_long(at, "tag key", None, len));
            }
            if self.peek() != Some(b'=') {
                return Err(self.fault(self.pos, Problem::TagWithoutEquals(key)));
            }
            if key == TIME_COLUMN {
                let m = out.measurement.clone();
                return Err(self.fault(at, Problem::TimeTag(m)));
            }
            if is_reserved(&key) {
                return Err(self.fault(at, Problem::ReservedName(key)));
            }
            self.pos += 1;
            let value_at = self.pos;
            // `=` does not end a tag value, but `\=` is still unescaped in one.
            let value = self.ident(TAG_VALUE, KEY)?;
            if value.is_empty() {
                return Err(self.fault(value_at, Problem::EmptyTagValue(key)));
            }
            if value.len() > self.limits.name {
                let len = value.len();
                return Err(self.name_too_long(value_at, "value of tag", Some(key), len));
            }
            out.tags.push(Tag {
                key,
                value,
                at: at - self.start,
            });
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(_) => return Ok(()), // a space: `ident` stops only on `,` or ` `
                None => return Err(self.fault(self.pos, Problem::MissingFieldSet)),
            }
        }
    }

    /// Reads the field set; returns whether a space (and so maybe a timestamp)
    /// follows it. A field named `time` is dropped, as InfluxDB does (see the
    /// module docs); a line with no other field is an error.
    fn fields(&mut self, out: &mut Line<'a>) -> Result<bool, Fault<'a>> {
        let mut time_at = None;
        loop {
            let at = self.pos;
            let key = self.ident(KEY, KEY)?;
            if key.is_empty() {
                return Err(self.fault(at, Problem::MissingFieldKey));
            }
            if key.len() > self.limits.name {
                let len = key.len();
                return Err(self.name_too_long(at, "field key", None, len));
            }
            if self.peek() != Some(b'=') {
                return Err(self.fault(self.pos, Problem::FieldWithoutEquals(key)));
            }
            if is_reserved(&key) {
                return Err(self.fault(at, Problem::ReservedName(key)));
            }
            self.pos += 1;
            // The common float, written straight into the line.
            if let Some(&(b'0'..=b'9' | b'-' | b'.')) = self.bytes.get(self.pos)
                && self.pos < self.limit
                && key != TIME_COLUMN
                && let Some((v, end)) = fast_float(self.bytes, self.pos, self.limit)
            {
                self.pos = end;
                out.fields.push(Field {
                    key,
                    value: FieldValue::Float(v),
                    at: at - self.start,
                });
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        continue;
                    }
                    Some(_) => return Ok(true), // a space: `fast_float` stops on `,` or ` `
                    None => return Ok(false),
                }
            }
            let (value, key) = self.field_value(key)?;
            let more = match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    None
                }
                Some(b' ') => Some(true),
                None => Some(false),
                // Only a string value can be followed by something else.
                Some(_) => return Err(self.fault(self.pos, Problem::AfterString(key))),
            };
            if key == TIME_COLUMN {
                time_at.get_or_insert(at);
            } else {
                out.fields.push(Field {
                    key,
                    value,
                    at: at - self.start,
                });
            }
            if let Some(more) = more {
                if out.fields.is_empty()
                    && let Some(at) = time_at
                {
                    let m = out.measurement.clone();
                    return Err(self.fault(at, Problem::TimeOnlyField(m)));
                }
                return Ok(more);
            }
        }
    }

    fn timestamp(&mut self, out: &mut Line<'a>) -> Result<(), Fault<'a>> {
        self.skip_spaces();
        if self.pos == self.limit {
            return Ok(()); // trailing spaces only
        }
        let at = self.pos;
        while self.pos < self.limit && self.bytes[self.pos] != b' ' {
            self.pos += 1;
        }
        let raw = &self.text[at..self.pos];
        let Digits::Value(value) = signed(raw.as_bytes()) else {
            return Err(self.fault(at, Problem::InvalidTimestamp(raw)));
        };
        out.timestamp = Some((value, at - self.start));
        self.skip_spaces();
        if self.pos < self.limit {
            let rest = &self.text[self.pos..self.limit];
            return Err(self.fault(self.pos, Problem::TrailingText(rest)));
        }
        Ok(())
    }

    /// Reads a measurement, key or tag value up to a byte of class `stop`,
    /// removing a backslash before a byte of class `escapable` (or before
    /// another backslash). A backslash before anything else is kept.
    #[inline]
    fn ident(&mut self, stop: u8, escapable: u8) -> Result<Cow<'a, str>, Fault<'a>> {
        let begin = self.pos;
        let bytes = self.bytes;
        let limit = self.limit;
        let pos = scan::find_any(bytes, begin, limit, stop_set(stop));
        if pos == limit || bytes[pos] != b'\\' {
            self.pos = pos;
            return Ok(Cow::Borrowed(&self.text[begin..pos]));
        }
        self.ident_escaped(begin, pos, stop, escapable)
    }

    /// The rare path of [`Self::ident`]: `pos` is on a backslash.
    #[cold]
    fn ident_escaped(
        &mut self,
        begin: usize,
        mut pos: usize,
        stop: u8,
        escapable: u8,
    ) -> Result<Cow<'a, str>, Fault<'a>> {
        let bytes = self.bytes;
        let mut owned = String::new();
        let mut segment = begin;
        while pos < self.limit && bytes[pos] == b'\\' {
            if pos + 1 == self.limit {
                // A backslash before the `\n` (not `\r\n`) escapes it, as in
                // InfluxDB: both stay in the name and the line goes on.
                if self.limit == self.end && self.extend() {
                    pos += 2;
                } else {
                    return Err(self.fault(pos, Problem::TrailingBackslash));
                }
            } else if bytes[pos + 1] == b'\\' || CLASS[bytes[pos + 1] as usize] & escapable != 0 {
                // Drop the backslash; the escaped byte starts the next segment.
                owned.push_str(&self.text[segment..pos]);
                segment = pos + 1;
                pos += 2;
            } else {
                pos += 1; // a literal backslash
            }
            pos = scan::find_any(bytes, pos, self.limit, stop_set(stop));
        }
        owned.push_str(&self.text[segment..pos]);
        if owned.ends_with('\\') {
            return Err(self.fault(begin, Problem::EndsWithBackslash));
        }
        self.pos = pos;
        Ok(Cow::Owned(owned))
    }

    /// Reads the value after `key=`. Gives the key back (errors and the caller
    /// both need it and it may be owned).
    #[inline]
    fn field_value(
        &mut self,
        key: Cow<'a, str>,
    ) -> Result<(FieldValue<'a>, Cow<'a, str>), Fault<'a>> {
        let at = self.pos;
        let Some(first) = self.peek() else {
            return Err(self.fault(at, Problem::MissingFieldValue(key)));
        };
        if first == b'"' {
            return match self.string() {
                Ok(s) if s.len() > self.limits.string => {
                    let len = s.len();
                    Err(self.string_too_long(at, key, len))
                }
                Ok(s) => Ok((FieldValue::String(s), key)),
                Err(problem_at) => Err(self.fault(problem_at, Problem::UnterminatedString(key))),
            };
        }
        if matches!(first, b'0'..=b'9' | b'-' | b'.')
            && let Some((v, end)) = fast_float(self.bytes, at, self.limit)
        {
            self.pos = end;
            return Ok((FieldValue::Float(v), key));
        }
        let pos = scan::find_any(self.bytes, at, self.limit, *b", , ");
        self.pos = pos;
        let raw = &self.text[at..pos];
        let value = match first {
            b'0'..=b'9' | b'-' | b'.' => number(raw),
            b't' | b'T' | b'f' | b'F' => match raw {
                "t" | "T" | "true" | "True" | "TRUE" => Ok(FieldValue::Boolean(true)),
                "f" | "F" | "false" | "False" | "FALSE" => Ok(FieldValue::Boolean(false)),
                _ => Err(NumberError::Invalid("boolean")),
            },
            b',' | b' ' => return Err(self.fault(at, Problem::MissingFieldValue(key))),
            _ => Err(NumberError::Invalid("field")),
        };
        match value {
            Ok(v) => Ok((v, key)),
            Err(NumberError::Invalid(kind)) => Err(self.fault(
                at,
                Problem::InvalidValue {
                    kind,
                    value: raw,
                    key,
                },
            )),
            Err(NumberError::OutOfRange(kind)) => Err(self.fault(
                at,
                Problem::OutOfRange {
                    kind,
                    value: raw,
                    key,
                },
            )),
        }
    }

    #[cold]
    fn string_too_long(&self, at: usize, key: Cow<'a, str>, len: usize) -> Fault<'a> {
        self.fault(
            at,
            Problem::TooLong {
                what: "string value of field",
                key: Some(key),
                len,
                limit: self.limits.string,
                option: "max_string_bytes",
            },
        )
    }

    /// Reads a quoted string starting on its `"`. `\"` and `\\` are unescaped;
    /// any other backslash is kept. A raw newline inside the quotes is part of
    /// the value: the line is extended to the next `\n`. On failure returns the
    /// offset of the opening quote, with the line reset to where it ended when
    /// the string began, so that parsing resumes on the next physical line.
    fn string(&mut self) -> Result<Cow<'a, str>, usize> {
        let quote = self.pos;
        let (first_limit, first_end, first_extra) = (self.limit, self.end, self.extra_newlines);
        let bytes = self.bytes;
        let mut pos = quote + 1;
        let mut segment = pos;
        let mut owned: Option<String> = None;
        loop {
            pos = scan::find_any(bytes, pos, self.limit, *b"\"\\\"\\");
            if pos == self.limit {
                if self.extend() {
                    continue;
                }
                self.limit = first_limit;
                self.end = first_end;
                self.extra_newlines = first_extra;
                self.pos = first_limit;
                return Err(quote);
            }
            if bytes[pos] == b'"' {
                self.pos = pos + 1;
                let tail = &self.text[segment..pos];
                return Ok(match owned {
                    Some(mut s) => {
                        s.push_str(tail);
                        Cow::Owned(s)
                    }
                    None => Cow::Borrowed(tail),
                });
            }
            // A backslash.
            match bytes.get(pos + 1) {
                Some(b'"' | b'\\') if pos + 1 < self.limit => {
                    owned
                        .get_or_insert_with(String::new)
                        .push_str(&self.text[segment..pos]);
                    segment = pos + 1;
                    pos += 2;
                }
                _ => pos += 1,
            }
        }
    }

    /// Makes the next physical line part of this one (we are inside a string).
    /// False at the end of the body or if the line would become too long.
    fn extend(&mut self) -> bool {
        if self.end >= self.bytes.len() {
            return false;
        }
        let end = find_newline(self.text, self.end + 1);
        let limit = content_end(self.bytes, self.end + 1, end);
        if limit - self.start > self.limits.line {
            return false;
        }
        self.end = end;
        self.limit = limit;
        self.extra_newlines += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::number::unsigned;
    use super::*;

    const LIMITS: Limits = Limits {
        line: 1 << 20,
        name: 1 << 16,
        string: 1 << 16,
    };

    fn parse(s: &str) -> Result<Line<'_>, Fault<'_>> {
        let mut line = Line::default();
        let end = find_newline(s, 0);
        let scanned = parse_line(s, 0, 0, end, LIMITS, None, &mut line);
        scanned.result.map(|()| line)
    }

    fn field(s: &str) -> FieldValue<'_> {
        let line = parse(s).unwrap_or_else(|e| panic!("{s}: {}", e.problem));
        assert_eq!(line.fields.len(), 1, "{s}");
        line.fields.into_iter().next().unwrap().value
    }

    fn fault(s: &str) -> (usize, String) {
        let f = parse(s).expect_err(s);
        (f.at + 1, f.problem.to_string())
    }

    #[test]
    fn tokens_of_a_full_line() {
        let body = "cpu,host=a,region=west usage=1.5,n=3i,u=4u,s=\"x\",b=t 17";
        let line = parse(body).unwrap();
        assert_eq!(line.measurement, "cpu");
        let tags: Vec<_> = line
            .tags
            .iter()
            .map(|t| (&*t.key, &*t.value, t.at))
            .collect();
        assert_eq!(tags, [("host", "a", 4), ("region", "west", 11)]);
        let fields: Vec<_> = line.fields.iter().map(|f| (&*f.key, &f.value)).collect();
        assert_eq!(
            fields,
            [
                ("usage", &FieldValue::Float(1.5)),
                ("n", &FieldValue::Integer(3)),
                ("u", &FieldValue::UInteger(4)),
                ("s", &FieldValue::String("x".into())),
                ("b", &FieldValue::Boolean(true)),
            ]
        );
        assert_eq!(line.timestamp, Some((17, body.len() - 2)));
    }

    /// A name or tag value that ends in a backslash once unescaped is
    /// refused, as InfluxDB 3's parser does (`EndsWithBackslash`, for the Go
    /// parser's sake); one with a backslash inside is kept.
    #[test]
    fn names_ending_in_a_backslash_are_refused() {
        for line in [
            r"m\\,t=v f=1",
            r"m,t\\=v f=1",
            r"m,t=v\\ f=1",
            r"m,t=v\\,u=w f=1",
            r"m f\\=1",
        ] {
            let fault = parse(line).map(|_| ()).unwrap_err();
            assert_eq!(fault.problem, Problem::EndsWithBackslash, "{line}");
        }
        let line = parse(r"m\\x,t=v\\w f\\y=1").unwrap();
        assert_eq!(line.measurement, r"m\x");
        assert_eq!(line.tags[0].value, r"v\w");
        assert_eq!(line.fields[0].key, r"f\y");
        assert_eq!(
            Problem::EndsWithBackslash.to_string(),
            "Measurements, tag keys and values, and field keys may not end with a backslash"
        );
    }

    #[test]
    fn unescaped_tokens_are_borrowed() {
        let line = parse("m,t=v f=\"s\"").unwrap();
        assert!(matches!(line.measurement, Cow::Borrowed(_)));
        assert!(matches!(line.tags[0].key, Cow::Borrowed(_)));
        assert!(matches!(line.tags[0].value, Cow::Borrowed(_)));
        assert!(matches!(line.fields[0].key, Cow::Borrowed(_)));
        assert!(matches!(
            line.fields[0].value,
            FieldValue::String(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn floats() {
        for (s, v) in [
            ("1", 1.0),
            ("-1.5", -1.5),
            ("1e3", 1e3),
            ("1E10", 1e10),
            ("1.5e-3", 1.5e-3),
            ("1e+2", 100.0),
            ("1.", 1.0),
            (".5", 0.5),
            ("-.5", -0.5),
            ("0.1", 0.1),
            ("000.25", 0.25),
            ("123456789012345678901234567890", 1.2345678901234568e29),
            ("3.14159265358979323846", std::f64::consts::PI),
            ("-0", -0.0),
        ] {
            assert_eq!(field(&format!("m f={s}")), FieldValue::Float(v), "{s}");
        }
        for s in [
            "nan", "NaN", "inf", "-inf", "+1", "1.2.3", "1e", "-", ".", "1x", "e5", "0x10",
        ] {
            let (col, msg) = fault(&format!("m f={s}"));
            assert_eq!(col, 5, "{s}");
            assert!(msg.starts_with("invalid "), "{s}: {msg}");
        }
        assert_eq!(
            fault("m usage=1.2.3").1,
            "invalid float value \"1.2.3\" for field \"usage\""
        );
        assert_eq!(
            fault("m f=1e400").1,
            "float value \"1e400\" for field \"f\" is out of range"
        );
    }

    #[test]
    fn fast_float_agrees_with_std() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let int = x % 1_000_000;
            let frac = (x >> 20) % 1_000_000_000;
            let s = format!("{int}.{frac:09}");
            assert_eq!(
                fast_float(s.as_bytes(), 0, s.len()).map(|(v, _)| v),
                Some(s.parse::<f64>().unwrap()),
                "{s}"
            );
            // Any digits, any point, any sign: when it answers, it is exact.
            let len = 1 + (x % 24) as usize;
            let mut digits: Vec<u8> = (0..len)
                .map(|i| b'0' + ((x >> (i % 60)) % 10) as u8)
                .collect();
            if x & 1 == 1 {
                let at = (x >> 7) as usize % (len + 1);
                digits.insert(at, b'.');
            }
            if x & 2 == 2 {
                digits.insert(0, b'-');
            }
            let s = String::from_utf8(digits).unwrap();
            let std = s.parse::<f64>().ok();
            let end = s.len();
            let mut with_tail = s.clone();
            with_tail.push_str(",x=1");
            for text in [&s, &with_tail] {
                if let Some((v, at)) = fast_float(text.as_bytes(), 0, text.len()) {
                    assert_eq!(Some(v.to_bits()), std.map(f64::to_bits), "{text}");
                    assert_eq!(at, end, "{text}");
                } else {
                    assert!(len > 15 || std.is_none(), "{text}");
                }
            }
        }
        assert_eq!(fast_float(b"1.5e3", 0, 5), None);
        assert_eq!(fast_float(b"12i", 0, 3), None);
        assert_eq!(fast_float(b"1.2.3", 0, 5), None);
        assert_eq!(fast_float(b"1.5 7", 0, 5), Some((1.5, 3)));
    }

    #[test]
    fn one_pass_integers_agree_with_std() {
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "00000000000000000000000001",
            "-00000000000000000000009223372036854775808",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "1000000000000000000",
            "",
            "-",
            "+1",
            "1a",
            "a1",
            "--1",
            "1 ",
            "١",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push((x >> (x % 64)).to_string());
            cases.push(format!("-{}", x >> (x % 61)));
        }
        for case in &cases {
            let b = case.as_bytes();
            let want_u = case.parse::<u64>().ok();
            let got_u = match unsigned(b) {
                Digits::Value(v) => Some(v),
                _ => None,
            };
            if !case.starts_with('+') {
                assert_eq!(got_u, want_u, "{case:?}");
            }
            let want_i = case.parse::<i64>().ok().filter(|_| !case.starts_with('+'));
            let got_i = match signed(b) {
                Digits::Value(v) => Some(v),
                _ => None,
            };
            assert_eq!(got_i, want_i, "{case:?}");
            let digits = case.strip_prefix('-').unwrap_or(case);
            let well_formed = !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit());
            assert_eq!(
                matches!(signed(b), Digits::Invalid),
                !well_formed,
                "{case:?}"
            );
        }
    }

    #[test]
    fn integers_and_unsigned() {
        assert_eq!(field("m f=1i"), FieldValue::Integer(1));
        assert_eq!(field("m f=-0i"), FieldValue::Integer(0));
        assert_eq!(
            field("m f=9223372036854775807i"),
            FieldValue::Integer(i64::MAX)
        );
        assert_eq!(
            field("m f=-9223372036854775808i"),
            FieldValue::Integer(i64::MIN)
        );
        assert_eq!(
            fault("m f=9223372036854775808i").1,
            "integer value \"9223372036854775808i\" for field \"f\" is out of range"
        );
        assert!(
            fault("m f=-9223372036854775809i")
                .1
                .contains("out of range")
        );
        assert_eq!(
            field("m f=18446744073709551615u"),
            FieldValue::UInteger(u64::MAX)
        );
        assert!(
            fault("m f=18446744073709551616u")
                .1
                .contains("out of range")
        );
        for s in ["-1u", "1.5i", "i", "--1i", "1ii", "+1i", "u"] {
            assert!(fault(&format!("m f={s}")).1.starts_with("invalid"), "{s}");
        }
    }

    #[test]
    fn booleans() {
        for s in ["t", "T", "true", "True", "TRUE"] {
            assert_eq!(field(&format!("m f={s}")), FieldValue::Boolean(true), "{s}");
        }
        for s in ["f", "F", "false", "False", "FALSE"] {
            assert_eq!(
                field(&format!("m f={s}")),
                FieldValue::Boolean(false),
                "{s}"
            );
        }
        for s in ["tRUE", "yes", "truee", "fa"] {
            assert!(fault(&format!("m f={s}")).1.starts_with("invalid"), "{s}");
        }
        assert_eq!(
            fault("m f=tRUE").1,
            "invalid boolean value \"tRUE\" for field \"f\""
        );
    }

    #[test]
    fn strings() {
        assert_eq!(field(r#"m f="""#), FieldValue::String("".into()));
        assert_eq!(
            field(r#"m f="a b,c=d""#),
            FieldValue::String("a b,c=d".into())
        );
        assert_eq!(
            field(r#"m f="say \"hi\"""#),
            FieldValue::String("say \"hi\"".into())
        );
        assert_eq!(
            field(r#"m f="back\\slash""#),
            FieldValue::String("back\\slash".into())
        );
        assert_eq!(
            field(r#"m f="keep\nthis""#),
            FieldValue::String("keep\\nthis".into())
        );
        assert_eq!(
            field(r#"m f="ends\\""#),
            FieldValue::String("ends\\".into())
        );
        assert_eq!(field(r#"m f="\"""#), FieldValue::String("\"".into()));
        assert_eq!(
            field("m f=\"héllo ✓\""),
            FieldValue::String("héllo ✓".into())
        );
        assert_eq!(
            fault(r#"m f="open"#),
            (5, "unterminated string value for field \"f\"".into())
        );
        assert_eq!(
            fault(r#"m f="a"b"#),
            (
                8,
                "unexpected text after the string value of field \"f\"".into()
            )
        );
    }

    #[test]
    fn string_spanning_lines_extends_the_line() {
        let body = "m s=\"one\ntwo\r\nthree\",x=1 5\nnext f=1";
        let mut line = Line::default();
        let end = find_newline(body, 0);
        let scanned = parse_line(body, 0, 0, end, LIMITS, None, &mut line);
        scanned.result.unwrap();
        assert_eq!(scanned.extra_newlines, 2);
        assert_eq!(&body[scanned.next..], "next f=1");
        assert_eq!(
            line.fields[0].value,
            FieldValue::String("one\ntwo\r\nthree".into())
        );
        assert_eq!(line.timestamp.map(|t| t.0), Some(5));
    }

    #[test]
    fn unterminated_string_resumes_on_the_next_physical_line() {
        let body = "m s=\"open\nnext f=1";
        let mut line = Line::default();
        let scanned = parse_line(body, 0, 0, find_newline(body, 0), LIMITS, None, &mut line);
        assert!(scanned.result.is_err());
        assert_eq!(scanned.extra_newlines, 0);
        assert_eq!(&body[scanned.next..], "next f=1");
    }

    #[test]
    fn escapes() {
        let line = parse(r"m\,e\ a\=s\x,t\,k\=e\ y=t\,v\=a\ l\\z f\,k\=e\ y=1").unwrap();
        assert_eq!(line.measurement, r"m,e a\=s\x");
        assert_eq!(line.tags[0].key, "t,k=e y");
        assert_eq!(line.tags[0].value, r"t,v=a l\z");
        assert_eq!(line.fields[0].key, "f,k=e y");
        // `=` needs no escape in a measurement or a tag value.
        let line = parse("a=b,t=x=y f=1").unwrap();
        assert_eq!(line.measurement, "a=b");
        assert_eq!(line.tags[0].value, "x=y");
        // A backslash before another byte is literal, also before UTF-8.
        let line = parse(r"m,t=a\bé\é f=1").unwrap();
        assert_eq!(line.tags[0].value, r"a\bé\é");
        assert_eq!(fault(r"m,t=a\"), (6, "line ends with a backslash".into()));
    }

    #[test]
    fn structural_errors_and_columns() {
        assert_eq!(fault(",t=1 f=1"), (1, "missing measurement".into()));
        assert_eq!(fault("m"), (2, "missing field set".into()));
        assert_eq!(fault("m "), (3, "missing field set".into()));
        assert_eq!(fault("m,t=1"), (6, "missing field set".into()));
        assert_eq!(fault("m,t=1 "), (7, "missing field set".into()));
        assert_eq!(fault("m, f=1"), (3, "missing tag key".into()));
        assert_eq!(fault("m,=v f=1"), (3, "missing tag key".into()));
        assert_eq!(
            fault("m,tag f=1"),
            (6, "tag \"tag\" has no '=' and value".into())
        );
        assert_eq!(fault("m,t= f=1"), (5, "empty value for tag \"t\"".into()));
        assert_eq!(
            fault("m,t=,u=1 f=1"),
            (5, "empty value for tag \"t\"".into())
        );
        assert_eq!(fault("m =1"), (3, "missing field key".into()));
        assert_eq!(fault("m f=1,"), (7, "missing field key".into()));
        assert_eq!(fault("m f"), (4, "field \"f\" has no '=' and value".into()));
        assert_eq!(fault("m f="), (5, "missing value for field \"f\"".into()));
        assert_eq!(
            fault("m f=,g=1"),
            (5, "missing value for field \"f\"".into())
        );
        assert_eq!(
            fault("m f=abc"),
            (5, "invalid field value \"abc\" for field \"f\"".into())
        );
        assert_eq!(
            fault("m,time=1 f=1"),
            (
                3,
                "input tag \"time\" on measurement \"m\" is invalid".into()
            )
        );
        assert_eq!(
            fault("m time=1"),
            (
                3,
                "invalid field name: input field \"time\" on measurement \"m\" is invalid".into()
            )
        );
        assert_eq!(fault("m f=1 12x"), (7, "invalid timestamp \"12x\"".into()));
        assert_eq!(fault("m f=1 -"), (7, "invalid timestamp \"-\"".into()));
        assert_eq!(
            fault("m f=1 99999999999999999999"),
            (7, "invalid timestamp \"99999999999999999999\"".into())
        );
        assert_eq!(
            fault("m f=1 12 13"),
            (10, "unexpected text after timestamp: \"13\"".into())
        );
    }

    #[test]
    fn spaces_between_sections_and_after_the_end() {
        let line = parse("m,t=1   f=1   -5   ").unwrap();
        assert_eq!(line.timestamp.map(|t| t.0), Some(-5));
        let line = parse("m f=1   ").unwrap();
        assert_eq!(line.timestamp, None);
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let v = "x".repeat(200);
        let msg = fault(&format!("m f={v}")).1;
        assert!(msg.len() < 120, "{msg}");
        assert!(msg.contains('…'));
    }
}
