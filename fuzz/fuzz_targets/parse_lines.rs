//! The line protocol parser on arbitrary bytes.
//!
//! The first byte picks the precision (low 3 bits, `Auto` included) and, if its
//! top bit is set, tiny limits; the rest is the body. Besides not panicking,
//! the result must be consistent: one row per accepted line, errors in line
//! order and within the body, at most `max_errors` of them kept.

#![no_main]

use inflow::lineproto::{EmptySchema, EXCERPT_BYTES, ParseOptions, Precision, parse_lines};
use libfuzzer_sys::fuzz_target;

const PRECISIONS: [Precision; 7] = [
    Precision::Nanosecond,
    Precision::Microsecond,
    Precision::Millisecond,
    Precision::Second,
    Precision::Minute,
    Precision::Hour,
    Precision::Auto,
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let precision = PRECISIONS[usize::from(mode & 7) % PRECISIONS.len()];
    let mut opts = ParseOptions::new(precision, 1_700_000_000_000_000_000);
    if mode & 0x80 != 0 {
        opts.max_line_bytes = 1 + usize::from((mode >> 3) & 15) * 4;
        opts.max_tag_bytes = usize::from((mode >> 3) & 3) + 1;
        opts.max_string_bytes = usize::from((mode >> 5) & 3);
        opts.max_columns_per_table = 2 + usize::from((mode >> 4) & 3);
        opts.max_errors = usize::from((mode >> 3) & 3);
    }
    let p = parse_lines(body, &opts, &EmptySchema);

    let physical = body.iter().filter(|&&b| b == b'\n').count() + 1;
    let rows: usize = p.tables.iter().map(|t| t.batch.num_rows()).sum();
    assert_eq!(rows, p.lines);
    assert!(p.lines + p.error_count <= physical);
    assert!(p.errors.len() <= opts.max_errors.min(p.error_count));
    assert!(p.errors.windows(2).all(|w| w[0].line < w[1].line));
    for e in &p.errors {
        assert!(e.line >= 1 && e.line <= physical && e.column >= 1, "{e:?}");
        assert!(e.original.len() <= EXCERPT_BYTES);
        assert!(e.caret().starts_with(e.original.as_str()));
    }
    for t in &p.tables {
        assert!(t.batch.num_rows() > 0);
        assert!(t.batch.num_columns() <= opts.max_columns_per_table);
    }
});
