//! Everything a write request goes through short of the network: the query
//! string of each API version, the `Content-Encoding` header, gzip inflation
//! within a limit, and the parser, on arbitrary input. Errors are fine (they
//! become 4xx answers); panics are not.

#![no_main]

use std::io::Write;

use http::{HeaderMap, HeaderValue, header};
use inflow::edge::body::{Encoding, content_encoding, gunzip};
use inflow::edge::{v1::V1Params, v2::V2Params, v3::V3Params};
use inflow::lineproto::{EmptySchema, ParseOptions, Precision, parse_lines};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Request<'a> {
    query: Option<&'a str>,
    content_encoding: Option<&'a [u8]>,
    /// Gzip the body here first, so that inflation sees valid streams too.
    compress: bool,
    /// The decompressed-size limit, small enough to be hit.
    limit: u16,
    body: &'a [u8],
}

fuzz_target!(|r: Request<'_>| {
    let precision = [
        V2Params::parse(r.query).map(|p| p.precision),
        V1Params::parse(r.query).map(|p| p.precision),
        V3Params::parse(r.query).map(|p| p.precision),
    ]
    .into_iter()
    .find_map(Result::ok)
    .unwrap_or(Precision::Nanosecond);

    let mut headers = HeaderMap::new();
    if let Some(value) = r.content_encoding.and_then(|v| HeaderValue::from_bytes(v).ok()) {
        headers.insert(header::CONTENT_ENCODING, value);
    }
    let Ok(encoding) = content_encoding(&headers) else {
        return;
    };
    let compressed;
    let body: &[u8] = if r.compress {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(r.body).unwrap();
        compressed = e.finish().unwrap();
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
});
