//! Properties of [`parse_lines`] over many inputs: random valid points read back
//! exactly, and the fuzz corpus replayed (CI does not fuzz, so the corpus the
//! fuzzer kept is checked on every test run).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::corners::{NOW, Point, Val, points};
use super::{EmptySchema, ParseOptions, ParsedBody, Precision, parse_lines};
use crate::schema::ColumnType;

const PRECISIONS: [Precision; 7] = [
    Precision::Nanosecond,
    Precision::Microsecond,
    Precision::Millisecond,
    Precision::Second,
    Precision::Minute,
    Precision::Hour,
    Precision::Auto,
];

/// xorshift64*: small, deterministic, good enough to pick cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.below(items.len())]
    }

    /// Any character, weighted towards the ones the grammar cares about.
    fn char(&mut self, newlines: bool) -> char {
        const SPECIAL: &[char] = &[
            ',', '=', ' ', '\\', '"', '#', '\t', '\r', 'é', '✓', '🦀', '\u{0}', '\u{7f}', 'i', 'u',
            't', 'f', '-', '.', '0', '9', 'e',
        ];
        match self.below(10) {
            0..=3 => *self.pick(SPECIAL),
            4 if newlines => '\n',
            5 => loop {
                // Any Unicode scalar value.
                if let Some(c) = char::from_u32(self.below(0x11_0000) as u32)
                    && (c != '\n' || newlines)
                {
                    break c;
                }
            },
            _ => (b'a' + self.below(26) as u8) as char,
        }
    }

    /// A non-empty name without `\n` (no escape yields a bare newline in a
    /// name: InfluxDB keeps a backslash before one), not ending in a
    /// backslash (refused, as InfluxDB 3 refuses it).
    fn name(&mut self) -> String {
        let max = if self.chance(5) { 200 } else { 8 };
        let len = 1 + self.below(max);
        let mut name: String = (0..len).map(|_| self.char(false)).collect();
        if name.ends_with('\\') {
            name.push('x');
        }
        name
    }

    fn string(&mut self) -> String {
        let max = if self.chance(5) { 300 } else { 12 };
        let len = self.below(max);
        (0..len).map(|_| self.char(true)).collect()
    }
}

/// Writes `name`, escaping the bytes in `special` and backslashes. A backslash
/// before a byte that needs no escape may be left bare (it is then literal).
fn escape(out: &mut String, name: &str, special: &[char], rng: &mut Rng) {
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let next = chars.peek();
            let bare_ok = next.is_some_and(|n| *n != '\\' && *n != '\n' && !special.contains(n));
            out.push_str(if bare_ok && rng.chance(50) {
                "\\"
            } else {
                "\\\\"
            });
        } else if special.contains(&c) {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
    }
}

const MEASUREMENT: &[char] = &[',', ' '];
const KEY: &[char] = &[',', '=', ' '];

/// A column set per table, so that types agree across the lines of a body.
struct Table {
    name: String,
    tags: Vec<String>,
    fields: Vec<(String, ColumnType)>,
}

fn table(rng: &mut Rng, n: usize) -> Table {
    // The prefix keeps names apart and the line from starting with a blank or
    // `#`, which would make it something else.
    let name = format!("t{n}{}", rng.name());
    let mut used = vec!["time".to_owned()];
    let mut unique = |rng: &mut Rng| loop {
        let key = rng.name();
        if !used.contains(&key) {
            used.push(key.clone());
            break key;
        }
    };
    let tags = (0..rng.below(4)).map(|_| unique(rng)).collect();
    let fields = (0..1 + rng.below(5))
        .map(|_| {
            let ty = *rng.pick(&[
                ColumnType::Float,
                ColumnType::Integer,
                ColumnType::UInteger,
                ColumnType::String,
                ColumnType::Boolean,
            ]);
            (unique(rng), ty)
        })
        .collect();
    Table { name, tags, fields }
}

fn float(rng: &mut Rng) -> (f64, String) {
    let v = match rng.below(4) {
        0 => f64::from_bits(rng.next()),
        1 => (rng.next() as i64 % 1_000_000) as f64 / 1000.0,
        2 => rng.next() as i64 as f64,
        _ => *rng.pick(&[
            0.0,
            -0.0,
            1.0,
            -1.5e-3,
            1e10,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
        ]),
    };
    let v = if v.is_finite() { v } else { 0.5 };
    let text = match rng.below(4) {
        0 => format!("{v}"),
        1 => format!("{v:?}"),
        2 => format!("{v:e}"),
        _ => format!("{v:E}"),
    };
    (v, text)
}

/// One random valid line and the point it must give.
fn line(rng: &mut Rng, t: &Table, out: &mut String) -> Point {
    let mut point = Point {
        table: t.name.clone(),
        tags: BTreeMap::new(),
        fields: BTreeMap::new(),
        time: NOW,
    };
    escape(out, &t.name, MEASUREMENT, rng);
    for key in &t.tags {
        if rng.chance(30) {
            continue;
        }
        // Repeated values make repeated series, which take another path.
        let value = if rng.chance(70) {
            format!("v{}", rng.below(3))
        } else {
            rng.name()
        };
        out.push(',');
        escape(out, key, KEY, rng);
        out.push('=');
        escape(out, &value, KEY, rng);
        point.tags.insert(key.clone(), value);
    }
    out.push_str(if rng.chance(10) { "  " } else { " " });
    let first = rng.below(t.fields.len());
    for (i, (key, ty)) in t.fields.iter().enumerate() {
        if i != first && rng.chance(40) {
            continue;
        }
        if !point.fields.is_empty() {
            out.push(',');
        }
        escape(out, key, KEY, rng);
        out.push('=');
        let value = match ty {
            ColumnType::Float => {
                let (v, text) = float(rng);
                out.push_str(&text);
                Val::F(v.to_bits())
            }
            ColumnType::Integer => {
                let v = match rng.below(3) {
                    0 => *rng.pick(&[i64::MIN, i64::MAX, 0, -1]),
                    _ => rng.next() as i64 >> rng.below(64),
                };
                write!(out, "{v}i").unwrap();
                Val::I(v)
            }
            ColumnType::UInteger => {
                let v = match rng.below(3) {
                    0 => *rng.pick(&[u64::MAX, 0]),
                    _ => rng.next() >> rng.below(64),
                };
                write!(out, "{v}u").unwrap();
                Val::U(v)
            }
            ColumnType::String => {
                let v = rng.string();
                out.push('"');
                for c in v.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c => out.push(c),
                    }
                }
                out.push('"');
                Val::S(v)
            }
            _ => {
                let v = rng.chance(50);
                let spellings: &[&str] = if v {
                    &["t", "T", "true", "True", "TRUE"]
                } else {
                    &["f", "F", "false", "False", "FALSE"]
                };
                out.push_str(rng.pick::<&str>(spellings));
                Val::B(v)
            }
        };
        point.fields.insert(key.clone(), value);
    }
    if rng.chance(70) {
        let t = match rng.below(3) {
            0 => *rng.pick(&[i64::MIN, i64::MAX, 0, -1]),
            _ => rng.next() as i64 >> rng.below(64),
        };
        write!(out, " {t}").unwrap();
        point.time = t;
    }
    if rng.chance(10) {
        out.push_str("  ");
    }
    point
}

/// Random valid bodies of random points (any characters in names and strings,
/// every field type, with and without timestamps, `\n` or `\r\n`, comments and
/// blank lines between) parse back to exactly those points.
#[test]
fn random_valid_points_round_trip_exactly() {
    let mut rng = Rng(0x0ddb_1a5e_5ca1_ab1e);
    let opts = ParseOptions::new(Precision::Nanosecond, NOW);
    let mut cases = 0;
    for _ in 0..600 {
        let tables: Vec<Table> = (0..1 + rng.below(3)).map(|n| table(&mut rng, n)).collect();
        let mut body = String::new();
        let mut want: Vec<Vec<Point>> = (0..tables.len()).map(|_| Vec::new()).collect();
        let mut order = Vec::new();
        for _ in 0..1 + rng.below(12) {
            match rng.below(20) {
                0 => body.push_str("# a comment, \"quoted\n"),
                1 => body.push_str("  \n"),
                _ => {}
            }
            let t = rng.below(tables.len());
            want[t].push(line(&mut rng, &tables[t], &mut body));
            if !order.contains(&t) {
                order.push(t);
            }
            cases += 1;
            body.push_str(if rng.chance(20) { "\r\n" } else { "\n" });
        }
        if rng.chance(50) {
            body.pop();
            if body.ends_with('\r') {
                body.pop();
            }
        }
        let p = parse_lines(body.as_bytes(), &opts, &EmptySchema);
        assert_eq!(p.error_count, 0, "{:?}\n{body:?}", p.errors);
        let want: Vec<Point> = order.iter().flat_map(|&t| want[t].clone()).collect();
        let got = points(&p);
        assert_eq!(got.len(), want.len(), "{body:?}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{body:?}");
        }
    }
    assert!(cases > 3_000, "{cases}");
}

/// What must hold for any input, whatever it is.
pub(super) fn check_invariants(body: &[u8], opts: &ParseOptions, p: &ParsedBody) {
    let physical = body.iter().filter(|&&b| b == b'\n').count() + 1;
    let rows: usize = p.tables.iter().map(|t| t.batch.num_rows()).sum();
    assert_eq!(rows, p.lines);
    assert!(p.lines + p.error_count <= physical);
    assert!(p.errors.len() <= opts.max_errors.min(p.error_count));
    assert!(p.errors.windows(2).all(|w| w[0].line < w[1].line));
    for e in &p.errors {
        assert!(e.line >= 1 && e.line <= physical && e.column >= 1, "{e:?}");
        assert!(e.original.len() <= super::EXCERPT_BYTES);
        let caret = e.caret();
        assert!(caret.ends_with('^') && caret.starts_with(e.original.as_str()));
    }
    for t in &p.tables {
        assert!(t.batch.num_rows() > 0);
        assert!(t.batch.num_columns() <= opts.max_columns_per_table);
    }
}

fn replay(body: &[u8]) {
    for precision in PRECISIONS {
        let mut opts = ParseOptions::new(precision, NOW);
        let p = parse_lines(body, &opts, &EmptySchema);
        check_invariants(body, &opts, &p);
        opts.max_line_bytes = 16;
        opts.max_tag_bytes = 3;
        opts.max_string_bytes = 2;
        opts.max_columns_per_table = 3;
        opts.max_errors = 2;
        let p = parse_lines(body, &opts, &EmptySchema);
        check_invariants(body, &opts, &p);
    }
}

/// Every input the fuzzer kept (`fuzz/corpus/parse_lines/`), with each
/// precision and with tiny limits: no panic and the invariants hold.
#[test]
fn corpus_replays_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse_lines");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let body = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| replay(&body));
        assert!(result.is_ok(), "{} failed", path.display());
        files += 1;
    }
    assert!(files > 0, "no corpus in {}", dir.display());
}
