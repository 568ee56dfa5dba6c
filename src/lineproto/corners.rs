//! One test per corner of the grammar, through the whole of [`parse_lines`].
//!
//! "InfluxDB 3" below means the parser in influxdata/influxdb
//! `core/influxdb_line_protocol/src/lib.rs` and the row writer in
//! `core/mutable_batch_lp/src/lib.rs`; each comment says what they do for the
//! case and whether we match (we do unless it says otherwise, and the module
//! docs list the deviations).

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, DictionaryArray};
use arrow::datatypes::{
    DataType, Float64Type, Int32Type, Int64Type, TimestampNanosecondType, UInt64Type,
};

use super::{EmptySchema, LineError, ParseOptions, ParsedBody, Precision, parse_lines};

pub(super) const NOW: i64 = 1_700_000_000_000_000_000;

/// A field value as read back from a batch (floats compared by bits).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val {
    F(u64),
    I(i64),
    U(u64),
    S(String),
    B(bool),
}

pub(super) fn f(v: f64) -> Val {
    Val::F(v.to_bits())
}

pub(super) fn s(v: &str) -> Val {
    Val::S(v.to_owned())
}

/// One row of a batch: its table, non-null tags and fields, and time.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Point {
    pub table: String,
    pub tags: BTreeMap<String, String>,
    pub fields: BTreeMap<String, Val>,
    pub time: i64,
}

/// Every row of every table, table by table.
pub(super) fn points(p: &ParsedBody) -> Vec<Point> {
    let mut out = Vec::new();
    for t in &p.tables {
        let batch = &t.batch;
        let schema = batch.schema();
        let n = batch.num_columns();
        let time = batch
            .column(n - 1)
            .as_primitive::<TimestampNanosecondType>();
        for row in 0..batch.num_rows() {
            let mut point = Point {
                table: t.table.clone(),
                tags: BTreeMap::new(),
                fields: BTreeMap::new(),
                time: time.value(row),
            };
            for c in 0..n - 1 {
                let col = batch.column(c);
                if col.is_null(row) {
                    continue;
                }
                let name = schema.field(c).name().clone();
                match col.data_type() {
                    DataType::Dictionary(..) => {
                        let dict = col
                            .as_any()
                            .downcast_ref::<DictionaryArray<Int32Type>>()
                            .expect("tags are Dictionary(Int32, Utf8)");
                        let key = dict.keys().value(row) as usize;
                        let value = dict.values().as_string::<i32>().value(key);
                        point.tags.insert(name, value.to_owned());
                    }
                    DataType::Float64 => {
                        let v = col.as_primitive::<Float64Type>().value(row);
                        point.fields.insert(name, f(v));
                    }
                    DataType::Int64 => {
                        let v = col.as_primitive::<Int64Type>().value(row);
                        point.fields.insert(name, Val::I(v));
                    }
                    DataType::UInt64 => {
                        let v = col.as_primitive::<UInt64Type>().value(row);
                        point.fields.insert(name, Val::U(v));
                    }
                    DataType::Utf8 => {
                        let v = col.as_string::<i32>().value(row);
                        point.fields.insert(name, s(v));
                    }
                    DataType::Boolean => {
                        point
                            .fields
                            .insert(name, Val::B(col.as_boolean().value(row)));
                    }
                    other => panic!("unexpected column type {other}"),
                }
            }
            out.push(point);
        }
    }
    out
}

fn opts() -> ParseOptions {
    ParseOptions::new(Precision::Nanosecond, NOW)
}

fn parse_with(body: &str, opts: &ParseOptions) -> ParsedBody {
    parse_lines(body.as_bytes(), opts, &EmptySchema)
}

/// The one point of a one-line body, or its error as "column: message".
fn one(line: &str) -> Result<Point, String> {
    one_with(line, &opts())
}

fn one_with(line: &str, opts: &ParseOptions) -> Result<Point, String> {
    let p = parse_with(line, opts);
    match (p.errors.first(), points(&p).as_slice()) {
        (None, [point]) => Ok(point.clone()),
        (Some(e), []) => Err(format!("{}: {}", e.column, e.message)),
        (e, rows) => panic!("{line:?}: {e:?} and {} rows", rows.len()),
    }
}

fn err(line: &str) -> String {
    one(line).expect_err(line)
}

fn field(line: &str, key: &str) -> Val {
    let p = one(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    p.fields[key].clone()
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// --- Escapes -----------------------------------------------------------------

/// InfluxDB 3 unescapes `\,` `\ ` and `\\` in a measurement and keeps `\=`
/// (`measurement_allows_escaping_comma` / `_space` / `_backslash`); a bare `=`
/// is an ordinary character there (`parse_measurement_with_eq`).
#[test]
fn escapes_in_measurement() {
    let p = one(r"we\,ath\ er\\x\=y=z f=1").unwrap();
    assert_eq!(p.table, r"we,ath er\x\=y=z");
}

/// InfluxDB 3 unescapes `\,` `\=` `\ ` and `\\` in tag keys
/// (`tag_key_allows_escaping_*`).
#[test]
fn escapes_in_tag_keys() {
    let p = one(r"m,a\,b\=c\ d\\e=v f=1").unwrap();
    assert_eq!(p.tags, tags(&[(r"a,b=c d\e", "v")]));
}

/// InfluxDB 3 unescapes `\,` `\=` `\ ` and `\\` in tag values
/// (`tag_value_allows_escaping_*`); a bare `=` is ordinary in a value.
#[test]
fn escapes_in_tag_values() {
    let p = one(r"m,k=a\,b\=c\ d\\e=f f=1").unwrap();
    assert_eq!(p.tags, tags(&[("k", r"a,b=c d\e=f")]));
}

/// InfluxDB 3 unescapes `\,` `\=` `\ ` and `\\` in field keys
/// (`field_key_allows_escaping_*`).
#[test]
fn escapes_in_field_keys() {
    let p = one(r"m a\,b\=c\ d\\e=1").unwrap();
    assert_eq!(p.fields.keys().collect::<Vec<_>>(), [r"a,b=c d\e"]);
}

/// InfluxDB 3 keeps a backslash before any other character, and the character
/// (`*_allows_backslash_with_unknown_escape`: `\wea\ther` stays as it is).
#[test]
fn backslash_before_other_bytes_is_literal() {
    let p = one(r"\m\e,\t\a=\v\é \f\i=1").unwrap();
    assert_eq!(p.table, r"\m\e");
    assert_eq!(p.tags, tags(&[(r"\t\a", r"\v\é")]));
    assert!(p.fields.contains_key(r"\f\i"));
}

/// InfluxDB 3 rejects a name that ends in a backslash
/// (`*_disallows_ending_in_backslash`).
#[test]
fn trailing_backslash_is_an_error() {
    assert_eq!(err(r"m,t=a\"), "6: line ends with a backslash");
    assert_eq!(err(r"m\"), "2: line ends with a backslash");
}

/// InfluxDB 3's line splitter skips the byte after a backslash, so a `\n`
/// right after one does not end the line, and its name parsers keep the pair
/// as an unknown escape (`*_allows_literal_newline_as_unknown_escape`:
/// `weat\` + newline + `her` is the name `weat\` newline `her`). We do the
/// same in names; the escaped `\n` still counts for later line numbers.
/// (Where InfluxDB 3 then fails on the joined line, e.g. after a field value,
/// we reject only the first line.)
#[test]
fn backslash_newline_in_a_name_continues_the_line() {
    let p = parse_with("m,t=a\\\nb f=1 5\nm f=bad\nm\\\nx f=2", &opts());
    assert_eq!(p.lines, 2, "{:?}", p.errors);
    let rows = points(&p);
    assert_eq!(rows[0].tags, tags(&[("t", "a\\\nb")]));
    assert_eq!(rows[0].time, 5);
    assert_eq!(rows[1].table, "m\\\nx");
    let errors: Vec<String> = p.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        ["line 3, column 5: invalid field value \"bad\" for field \"f\""]
    );
    // Before `\r\n` or at the end of the body the backslash ends the line.
    let p = parse_with("m,t=a\\\r\nb f=1", &opts());
    assert_eq!(p.lines, 1);
    assert_eq!(
        p.errors[0].to_string(),
        "line 1, column 6: line ends with a backslash"
    );
    assert_eq!(err("m,t=a\\"), "6: line ends with a backslash");
}

// --- String values -------------------------------------------------------------

/// InfluxDB 3 unescapes `\"` in a string (`parse_string_values`).
#[test]
fn string_with_escaped_quote() {
    assert_eq!(field(r#"m s="say \"hi\"""#, "s"), s(r#"say "hi""#));
}

/// InfluxDB 3 unescapes `\\` and keeps any other backslash
/// (`parse_string_values`: `too hot\\\cold` is `too hot\\cold`).
#[test]
fn string_with_backslashes() {
    assert_eq!(field(r#"m s="too hot\\\cold""#, "s"), s(r"too hot\\cold"));
    assert_eq!(field(r#"m s="a\\""#, "s"), s(r"a\"));
    assert_eq!(field(r#"m s="\n""#, "s"), s(r"\n"));
}

/// InfluxDB 3 keeps a raw newline inside quotes as part of the value
/// (`test_split_lines`: the line goes on to the closing quote).
#[test]
fn string_with_raw_newline() {
    let p = parse_with("m s=\"a\nb\" 1\nm f=x", &opts());
    assert_eq!(points(&p)[0].fields["s"], s("a\nb"));
    assert_eq!(p.errors[0].line, 3);
}

/// Any UTF-8 is kept as it is.
#[test]
fn string_with_unicode() {
    assert_eq!(field("m s=\"héllo ✓ 🦀\"", "s"), s("héllo ✓ 🦀"));
    let p = one("mé,ключ=値 поле=\"🦀\"").unwrap();
    assert_eq!(p.table, "mé");
    assert_eq!(p.tags, tags(&[("ключ", "値")]));
    assert_eq!(p.fields["поле"], s("🦀"));
}

// --- Numbers -----------------------------------------------------------------

/// InfluxDB 3: a number without a suffix is a float
/// (`parse_single_field_float_no_decimal`).
#[test]
fn float_without_point() {
    assert_eq!(field("m v=1", "v"), f(1.0));
    assert_eq!(field("m v=-0", "v"), f(-0.0));
}

/// InfluxDB 3 rejects `1.` (its float needs a digit after the point); the Go
/// parser of InfluxDB 1.x/2.x accepts it. We accept it (see the module docs).
#[test]
fn float_with_trailing_point() {
    assert_eq!(field("m v=1.", "v"), f(1.0));
    assert_eq!(field("m v=-1.", "v"), f(-1.0));
}

/// InfluxDB 3 rejects `.5` (its float needs a digit first); the Go parser
/// accepts it. We accept it (see the module docs).
#[test]
fn float_with_leading_point() {
    assert_eq!(field("m v=.5", "v"), f(0.5));
    assert_eq!(field("m v=-.5", "v"), f(-0.5));
}

/// InfluxDB 3 takes exponents with `e`/`E` and an optional sign
/// (`parse_scientific_float`).
#[test]
fn float_with_exponent() {
    assert_eq!(field("m v=-1.5e-3", "v"), f(-1.5e-3));
    assert_eq!(field("m v=1E10", "v"), f(1e10));
    assert_eq!(field("m v=1.234456E+16", "v"), f(1.234456e16));
    assert_eq!(field("m v=1e-0", "v"), f(1.0));
    assert_eq!(
        err("m v=1e"),
        "5: invalid float value \"1e\" for field \"v\""
    );
}

/// InfluxDB 3 has no NaN or infinity literal. A float too large for `f64` it
/// stores as infinity (`parse_out_of_range_float`); we reject it.
#[test]
fn float_nan_and_infinity_are_rejected() {
    for v in ["NaN", "nan", "inf", "-inf", "Infinity", "+1"] {
        assert!(err(&format!("m v={v}")).starts_with("5: invalid"), "{v}");
    }
    assert_eq!(
        err("m v=1e309"),
        "5: float value \"1e309\" for field \"v\" is out of range"
    );
    let huge = format!("m v={}", "9".repeat(400));
    assert!(err(&huge).ends_with("is out of range"));
}

/// InfluxDB 3 parses `…i` as i64 and rejects what does not fit
/// (`parse_out_of_range_integer`).
#[test]
fn integer_limits_and_one_past() {
    assert_eq!(field("m v=9223372036854775807i", "v"), Val::I(i64::MAX));
    assert_eq!(field("m v=-9223372036854775808i", "v"), Val::I(i64::MIN));
    assert_eq!(
        err("m v=9223372036854775808i"),
        "5: integer value \"9223372036854775808i\" for field \"v\" is out of range"
    );
    assert_eq!(
        err("m v=-9223372036854775809i"),
        "5: integer value \"-9223372036854775809i\" for field \"v\" is out of range"
    );
}

/// InfluxDB 3 parses `…u` as u64, rejects what does not fit
/// (`parse_out_of_range_uinteger`) and a minus sign (`parse_negative_uinteger`).
#[test]
fn unsigned_limits_and_one_past() {
    assert_eq!(field("m v=0u", "v"), Val::U(0));
    assert_eq!(field("m v=18446744073709551615u", "v"), Val::U(u64::MAX));
    assert_eq!(
        err("m v=18446744073709551616u"),
        "5: unsigned value \"18446744073709551616u\" for field \"v\" is out of range"
    );
    assert_eq!(
        err("m v=-1u"),
        "5: invalid unsigned value \"-1u\" for field \"v\""
    );
}

/// InfluxDB 3 takes exactly `t T true True TRUE f F false False FALSE`
/// (`parse_bool_values`).
#[test]
fn every_boolean_spelling() {
    for (v, want) in [
        ("t", true),
        ("T", true),
        ("true", true),
        ("True", true),
        ("TRUE", true),
        ("f", false),
        ("F", false),
        ("false", false),
        ("False", false),
        ("FALSE", false),
    ] {
        assert_eq!(field(&format!("m v={v}"), "v"), Val::B(want), "{v}");
    }
    for v in ["tRue", "yes", "1b", "truE", "fals"] {
        assert!(err(&format!("m v={v}")).starts_with("5: invalid"), "{v}");
    }
}

// --- Timestamps --------------------------------------------------------------

/// InfluxDB 3 uses the request's time for a line without one
/// (`LinesConverter::default_time`).
#[test]
fn missing_timestamp_takes_the_default() {
    assert_eq!(one("m f=1").unwrap().time, NOW);
}

/// InfluxDB 3 accepts negative timestamps (`parse_negative_timestamp`).
#[test]
fn negative_timestamps() {
    assert_eq!(one("m f=1 -123").unwrap().time, -123);
    assert_eq!(one("m f=1 -9223372036854775808").unwrap().time, i64::MIN);
    let mut o = opts();
    o.precision = Precision::Second;
    assert_eq!(one_with("m f=1 -2", &o).unwrap().time, -2_000_000_000);
}

/// InfluxDB 3 rejects a timestamp that overflows i64 when scaled to ns
/// (`LineError::TimestampOverflow`) or as written (`parse_out_of_range_timestamp`).
#[test]
fn timestamp_out_of_range_for_the_precision() {
    let mut o = opts();
    o.precision = Precision::Second;
    assert_eq!(
        one_with("m f=1 9223372037", &o).unwrap_err(),
        "7: timestamp 9223372037 out of range for precision s"
    );
    assert_eq!(
        one_with("m f=1 9223372036", &o).unwrap().time,
        9_223_372_036_000_000_000
    );
    assert_eq!(
        err("m f=1 9223372036854775808"),
        "7: invalid timestamp \"9223372036854775808\""
    );
}

// --- Duplicates and reserved names ---------------------------------------------

/// InfluxDB 3 keeps the last of a repeated field and rejects repeats of
/// different types (`LinesConverter::write_lp` docs).
#[test]
fn duplicate_field_keys() {
    assert_eq!(field("m v=1,w=2,v=3", "v"), f(3.0));
    assert_eq!(
        err("m v=1i,v=2u"),
        "8: field \"v\" appears twice with different types (integer and unsigned)"
    );
}

/// InfluxDB 3 rejects a repeated tag, same value or not (`write_lp` docs).
#[test]
fn duplicate_tag_keys() {
    assert_eq!(err("m,a=1,a=1 f=1"), "7: duplicate tag \"a\"");
    assert_eq!(err("m,a=1,b=2,a=3 f=1"), "11: duplicate tag \"a\"");
}

/// InfluxDB 3 rejects a tag and a field of the same name (`write_lp` docs:
/// "same name for tag and field: TypeMismatch").
#[test]
fn tag_and_field_with_the_same_name() {
    assert_eq!(
        err("m,x=a x=1"),
        "7: field \"x\" is float but column \"x\" of table \"m\" is tag"
    );
}

/// InfluxDB 3 rejects a tag named `time` and drops a field named `time`,
/// writing the rest of the line; a line whose only field is `time` is an error
/// (`write_line`: `TimeTagNotAllowed`, `BogusTimeStrippedOut`,
/// `TimeWasOnlyField`, with InfluxDB 1.x's messages).
#[test]
fn time_as_a_key() {
    assert_eq!(
        err("m,time=1 f=1"),
        "3: input tag \"time\" on measurement \"m\" is invalid"
    );
    let p = one("m time=1,f=2,time=3i 7").unwrap();
    assert_eq!(p.fields, BTreeMap::from([("f".to_owned(), f(2.0))]));
    assert_eq!(p.time, 7);
    assert_eq!(
        err("m time=1"),
        "3: invalid field name: input field \"time\" on measurement \"m\" is invalid"
    );
    assert_eq!(
        err("m time=1,time=2 5"),
        "3: invalid field name: input field \"time\" on measurement \"m\" is invalid"
    );
    // The value of a dropped field is still checked.
    assert_eq!(
        err("m time=x,f=1"),
        "8: invalid field value \"x\" for field \"time\""
    );
}

/// Names beginning with `_inflow_` are the server's own columns (the hidden
/// write sequence is `_inflow_seq`): a line using one as a tag or field key is
/// refused by number, and its neighbours are written.
#[test]
fn internal_column_names_are_reserved() {
    assert_eq!(
        err("m _inflow_seq=1i 1"),
        "3: column name \"_inflow_seq\" is reserved (names beginning with \"_inflow_\" are the server's)"
    );
    assert_eq!(
        err("m,_inflow_x=a f=1 1"),
        "3: column name \"_inflow_x\" is reserved (names beginning with \"_inflow_\" are the server's)"
    );
    assert_eq!(
        err("m f=1,_inflow_seq=\"s\" 1"),
        "7: column name \"_inflow_seq\" is reserved (names beginning with \"_inflow_\" are the server's)"
    );
    // `\_` is no escape: `_inflow\_seq` is another name, the user's.
    assert!(one("m _inflow\\_seq=1 1").is_ok());
    // Other names with underscores, and the measurement, are the user's.
    assert!(one("_inflow_m,_inflowx=a _inflow=1,inflow_seq=2 1").is_ok());
}

// --- Empty parts ---------------------------------------------------------------

/// InfluxDB 3: "Invalid measurement was provided" (`parse_no_measurement`).
#[test]
fn empty_measurement() {
    assert_eq!(err(",t=1 f=1"), "1: missing measurement");
    // Leading blanks are skipped, so this is the measurement "f=1".
    assert_eq!(err(" f=1"), "5: missing field set");
}

/// InfluxDB 3: "Expected tag value" (`parse_tag_no_value`).
#[test]
fn empty_tag_value() {
    assert_eq!(err("m,t= f=1"), "5: empty value for tag \"t\"");
    assert_eq!(err("m,t=,u=1 f=1"), "5: empty value for tag \"t\"");
}

/// InfluxDB 3: "No fields were provided" (`parse_no_fields`).
#[test]
fn empty_field_set() {
    assert_eq!(err("m"), "2: missing field set");
    assert_eq!(err("m,t=1"), "6: missing field set");
    assert_eq!(err("m 1234"), "7: field \"1234\" has no '=' and value");
    assert_eq!(err("m f=1,"), "7: missing field key");
}

// --- Lines -------------------------------------------------------------------

/// InfluxDB 3 reads the `\r` of `\r\n` as content and rejects the line (as
/// InfluxDB always has). We drop it and accept the line (see the module docs).
#[test]
fn lines_ending_in_crlf() {
    let p = parse_with("m f=1 1\r\nm,t=a f=2\r\nm s=\"x\"\r\n", &opts());
    assert_eq!(p.error_count, 0, "{:?}", p.errors);
    let rows = points(&p);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1].tags, tags(&[("t", "a")]));
    assert_eq!(rows[2].fields["s"], s("x"));
    // A `\r` elsewhere is an ordinary byte.
    assert_eq!(one("m\r f=1").unwrap().table, "m\r");
}

/// InfluxDB 3 allows spaces between sections and after a timestamp
/// (`parse_multiple_whitespace_between_elements_is_allowed`), but reads trailing
/// spaces after a field set with no timestamp as unparsed content. We accept
/// those too (see the module docs).
#[test]
fn trailing_spaces() {
    assert_eq!(one("  m  a=1i  123  ").unwrap().time, 123);
    assert_eq!(one("m a=1i   ").unwrap().time, NOW);
    assert_eq!(one("m,t=1 a=1i \r\n").unwrap().time, NOW);
}

/// InfluxDB 3: the last line needs no newline (`parse_no_time` and others).
#[test]
fn no_final_newline() {
    let p = parse_with("m f=1\nm f=2", &opts());
    assert_eq!(p.lines, 2);
    let p = parse_with("m f=1\nm f=", &opts());
    assert_eq!(p.errors[0].line, 2);
}

/// InfluxDB 3 skips comment and blank lines (`parse_commented_lines_are_ignored`,
/// `parse_blank_lines_are_ignored`); a body of only those writes nothing and
/// reports nothing.
#[test]
fn only_comments() {
    for body in ["# a", "# a\n# b\n", "  # indented\n\t# tab\r\n\n", "#"] {
        let p = parse_with(body, &opts());
        assert_eq!((p.lines, p.error_count), (0, 0), "{body:?}");
        assert!(p.tables.is_empty());
    }
}

// --- Limits ------------------------------------------------------------------

/// InfluxDB 3 rejects a measurement, tag key, tag value or field key longer than
/// 64 KiB ("String is greater than 64KB", `test_large_tag_value` and the like)
/// and takes exactly 64 KiB.
#[test]
fn max_tag_bytes_defaults_to_influxdb_s_64_kib() {
    let o = opts();
    assert_eq!(o.max_tag_bytes, 65_536);
    let max = "a".repeat(65_536);
    let over = "a".repeat(65_537);
    assert!(one(&format!("m,t={max} f=1")).is_ok());
    assert_eq!(
        err(&format!("m,t={over} f=1")),
        "5: value of tag \"t\" is 65537 bytes, over the limit of 65536 (max_tag_bytes)"
    );
    assert!(err(&format!("m,{over}=v f=1")).starts_with("3: tag key is 65537 bytes"));
    assert!(err(&format!("{over} f=1")).starts_with("1: measurement is 65537 bytes"));
    assert!(err(&format!("m {over}=1")).starts_with("3: field key is 65537 bytes"));
    let key = "k".repeat(65_536);
    assert!(one(&format!("{max},{key}={max} {max}=1")).is_ok());
}

/// The limit counts bytes after unescaping, as InfluxDB 3 does.
#[test]
fn max_tag_bytes_counts_unescaped_bytes() {
    let mut o = opts();
    o.max_tag_bytes = 3;
    assert!(one_with(r"m,t=a\,b f=1", &o).is_ok());
    assert_eq!(
        one_with("m,t=é\\,b f=1", &o).unwrap_err(),
        "5: value of tag \"t\" is 4 bytes, over the limit of 3 (max_tag_bytes)"
    );
}

/// InfluxDB 3 rejects a string value longer than 64 KiB, unescaped
/// (`test_large_field_value`), and takes exactly 64 KiB.
#[test]
fn max_string_bytes_defaults_to_influxdb_s_64_kib() {
    assert_eq!(opts().max_string_bytes, 65_536);
    let max = "a".repeat(65_536);
    assert!(one(&format!("m s=\"{max}\"")).is_ok());
    assert!(one(&format!("m s=\"{}\\\"\"", &max[1..])).is_ok());
    assert_eq!(
        err(&format!("m s=\"{max}b\"")),
        "5: string value of field \"s\" is 65537 bytes, over the limit of 65536 (max_string_bytes)"
    );
    let mut o = opts();
    o.max_string_bytes = 2;
    assert!(one_with("m s=\"ab\"", &o).is_ok());
    assert!(one_with("m s=\"abc\"", &o).is_err());
}

// --- Error excerpts ----------------------------------------------------------

fn line_error(original: &str, column: usize) -> LineError {
    LineError {
        line: 1,
        column,
        message: "x".into(),
        reason: super::Reason::Syntax,
        original: original.into(),
    }
}

#[test]
fn caret_points_under_the_column() {
    let p = parse_with("m,t=b f=oops 2", &opts());
    assert_eq!(p.errors[0].caret(), "m,t=b f=oops 2\n        ^");
    assert_eq!(line_error("abc", 1).caret(), "abc\n^");
}

#[test]
fn caret_counts_characters_not_bytes() {
    // "é" and "✓" are 2 and 3 bytes: column 13 (bytes) is the 10th character.
    let p = parse_with("m,h=é,x=✓ f=bad", &opts());
    let e = &p.errors[0];
    assert_eq!(e.column, 16);
    assert_eq!(e.caret(), "m,h=é,x=✓ f=bad\n            ^");
    // A column inside a multibyte character points at that character.
    assert_eq!(line_error("aé", 3).caret(), "aé\n ^");
}

#[test]
fn caret_past_the_excerpt_points_at_its_end() {
    assert_eq!(line_error("m", 2).caret(), "m\n ^");
    assert_eq!(line_error("m f", 99).caret(), "m f\n   ^");
    assert_eq!(line_error("", 5).caret(), "\n^");
    let p = parse_with("m", &opts());
    assert_eq!(p.errors[0].caret(), "m\n ^");
}

#[test]
fn caret_keeps_tabs_so_the_caret_lines_up() {
    assert_eq!(line_error("a\tb c", 5).caret(), "a\tb c\n \t  ^");
}

#[test]
fn caret_of_a_long_line_uses_the_cut_excerpt() {
    let long = format!("m f={}", "x".repeat(400));
    let p = parse_with(&long, &opts());
    let caret = p.errors[0].caret();
    let (text, mark) = caret.split_once('\n').unwrap();
    assert_eq!(text.len(), super::EXCERPT_BYTES);
    assert_eq!(mark, "    ^");
}
