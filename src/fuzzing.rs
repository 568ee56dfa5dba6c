//! The bodies of the fuzz targets in `fuzz/fuzz_targets/`, kept in the crate
//! so that `cargo test` replays each kept corpus (`fuzz/corpus/<target>/`)
//! through exactly the code the fuzzer ran: CI does not fuzz, but an input
//! that once crashed a target stays a failing test until it is fixed.
//!
//! Built for the unit tests and with the `fuzzing` feature (which the fuzz
//! crate turns on); a release build does not contain it.

use std::io::Write;

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderValue, header};

use crate::edge::body::{Encoding, content_encoding, gunzip};
use crate::edge::{v1::V1Params, v2::V2Params, v3::V3Params};
use crate::influxql::ast::{Expr, Statement};
use crate::influxql::parser::{MAX_EXPR_DEPTH, parse_query};
use crate::lineproto::{EmptySchema, ParseOptions, Precision, parse_lines};

/// What `write_request` decodes its input into.
#[derive(Debug, Arbitrary)]
pub struct WriteRequest<'a> {
    pub query: Option<&'a str>,
    pub content_encoding: Option<&'a [u8]>,
    /// Gzip the body here first, so that inflation sees valid streams too.
    pub compress: bool,
    /// The decompressed-size limit, small enough to be hit.
    pub limit: u16,
    pub body: &'a [u8],
}

/// Everything a write request goes through short of the network: the query
/// string of each API version, the `Content-Encoding` header, gzip inflation
/// within a limit, and the parser. Errors are fine (they become 4xx
/// answers); panics are not.
pub fn write_request(r: WriteRequest<'_>) {
    let precision = [
        V2Params::parse(r.query).map(|p| p.precision),
        V1Params::parse(r.query).map(|p| p.precision),
        V3Params::parse(r.query).map(|p| p.precision),
    ]
    .into_iter()
    .find_map(Result::ok)
    .unwrap_or(Precision::Nanosecond);

    let mut headers = HeaderMap::new();
    if let Some(value) = r
        .content_encoding
        .and_then(|v| HeaderValue::from_bytes(v).ok())
    {
        headers.insert(header::CONTENT_ENCODING, value);
    }
    let Ok(encoding) = content_encoding(&headers) else {
        return;
    };
    let compressed;
    let body: &[u8] = if r.compress {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(r.body).expect("writing to a Vec");
        compressed = e.finish().expect("writing to a Vec");
        &compressed
    } else {
        r.body
    };
    let inflated;
    let body = match encoding {
        Encoding::Identity => body,
        Encoding::Gzip => match gunzip(body, usize::from(r.limit)) {
            Ok(b) => {
                assert!(b.len() <= usize::from(r.limit));
                inflated = b;
                &inflated[..]
            }
            Err(_) => return,
        },
    };
    let opts = ParseOptions::new(precision, 1_700_000_000_000_000_000);
    let p = parse_lines(body, &opts, &EmptySchema);
    let rows: usize = p.tables.iter().map(|t| t.batch.num_rows()).sum();
    assert_eq!(rows, p.lines);
}

/// The InfluxQL parser on arbitrary text (bytes made UTF-8 the lossy way, as
/// a form body would be refused otherwise): an error is positioned within the
/// text, and what parses is no deeper than [`MAX_EXPR_DEPTH`], so that no
/// walk of it afterwards can exhaust the stack.
pub fn influxql(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match parse_query(&text) {
        Ok(query) => {
            for statement in &query.statements {
                for e in expressions(statement) {
                    let depth = depth(e);
                    assert!(depth <= MAX_EXPR_DEPTH, "{depth} levels");
                }
            }
        }
        Err(e) => {
            let lines = text.split('\n').count();
            assert!(e.line >= 1 && e.line <= lines, "{e}");
            let chars = text
                .split('\n')
                .nth(e.line - 1)
                .unwrap_or("")
                .chars()
                .count();
            assert!(e.char >= 1 && e.char <= chars + 2, "{e}");
        }
    }
    // What `/query` runs: the parse plus its checks (time zone names).
    let _ = crate::influxql::parse(&text);
}

fn expressions(statement: &Statement) -> Vec<&Expr> {
    match statement {
        Statement::Select(s) => s
            .fields
            .iter()
            .map(|f| &f.expr)
            .chain(s.condition.as_ref())
            .collect(),
        Statement::ShowMeasurements { condition, .. }
        | Statement::ShowTagKeys { condition, .. }
        | Statement::ShowTagValues { condition, .. }
        | Statement::ShowSeries { condition, .. } => condition.iter().collect(),
        Statement::CreateDatabase { .. }
        | Statement::ShowDatabases
        | Statement::ShowRetentionPolicies { .. }
        | Statement::ShowFieldKeys { .. } => vec![],
    }
}

/// Operators on the longest path, as the parser counts them. Recursive on
/// purpose: a tree past the limit would overflow here, which is a crash the
/// fuzzer reports.
fn depth(e: &Expr) -> usize {
    match e {
        Expr::Binary { lhs, rhs, .. } => 1 + depth(lhs).max(depth(rhs)),
        Expr::Negate(e) => 1 + depth(e),
        Expr::Call { args, .. } => 1 + args.iter().map(depth).max().unwrap_or(0),
        Expr::VarRef { .. }
        | Expr::Wildcard(_)
        | Expr::Integer(_)
        | Expr::Float(_)
        | Expr::String(_)
        | Expr::Boolean(_)
        | Expr::Duration(_)
        | Expr::Regex(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use arbitrary::Unstructured;

    use super::*;

    /// The files of `fuzz/corpus/<target>/`, which must not be empty.
    fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let files: Vec<_> = entries
            .map(|e| {
                let path = e.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                (path, bytes)
            })
            .collect();
        assert!(!files.is_empty(), "no corpus in {}", dir.display());
        files
    }

    /// Each kept input, decoded as libfuzzer-sys decodes it
    /// (`arbitrary_take_rest`; inputs it cannot decode are skipped there too).
    #[test]
    fn write_request_corpus_replays() {
        let mut decoded = 0;
        for (path, bytes) in corpus("write_request") {
            let Ok(r) = WriteRequest::arbitrary_take_rest(Unstructured::new(&bytes)) else {
                continue;
            };
            decoded += 1;
            let result = std::panic::catch_unwind(|| write_request(r));
            assert!(result.is_ok(), "{} failed", path.display());
        }
        assert!(decoded > 0, "no input of the corpus decodes");
    }

    #[test]
    fn influxql_corpus_replays() {
        let mut parsed = 0;
        for (path, bytes) in corpus("influxql") {
            let result = std::panic::catch_unwind(|| influxql(&bytes));
            assert!(result.is_ok(), "{} failed", path.display());
            parsed += usize::from(parse_query(&String::from_utf8_lossy(&bytes)).is_ok());
        }
        // The seeds are real statements: most of them parse.
        assert!(parsed >= 20, "only {parsed} seeds parse");
    }
}
