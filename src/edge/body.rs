//! Reading a request body within limits, and inflating gzip within limits.
//!
//! `Content-Length` is checked first but never trusted for allocation: the body is
//! counted frame by frame. Gzip is inflated through a reader capped at the limit
//! plus one byte, which catches both bombs and (via the decoder) truncation.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, header};
use http_body_util::BodyExt;

use crate::error::Error;

/// Every limit a write is held to, each set by a `--max-…` flag.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub max_decompressed_bytes: usize,
    pub max_line_bytes: usize,
    pub max_tables_per_database: usize,
    pub max_columns_per_table: usize,
    /// Series per database (`usize::MAX`: no limit).
    pub max_series_per_database: usize,
    pub max_tag_bytes: usize,
    pub max_string_bytes: usize,
    /// Write requests handled at once; more wait (their bodies unread) up to
    /// `write_queue_timeout`, then get 503. Each one in flight holds its body, the
    /// inflated text and its batches, so this bounds the edge's memory.
    pub max_concurrent_writes: usize,
    pub write_queue_timeout: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

/// The body's `Content-Encoding`: `gzip`, `identity` or none; anything else is 415.
pub fn content_encoding(headers: &HeaderMap) -> Result<Encoding, Error> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let text = value.to_str().map(str::trim).unwrap_or_default();
    if text.eq_ignore_ascii_case("gzip") || text.eq_ignore_ascii_case("x-gzip") {
        Ok(Encoding::Gzip)
    } else if text.is_empty() || text.eq_ignore_ascii_case("identity") {
        Ok(Encoding::Identity)
    } else {
        Err(Error::UnsupportedEncoding(
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ))
    }
}

/// Reads the whole body, refusing it as soon as it passes the limit. The 413 closes
/// the connection (see `Error::into_response`), since the rest of the body is unread.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Error> {
    let too_large = || Error::BodyTooLarge { limit };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        // A client that asked `Expect: 100-continue` has not sent the body yet; for
        // the others, read a bounded amount so the 413 is not lost to a reset.
        let expects = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !expects {
            drain(body, limit).await;
        }
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(declared.map_or(8 << 10, |n| n as usize));
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::BodyRead(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                drain(body, limit).await;
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Discards up to `budget` more bytes (or 2 s) of a body we refused.
async fn drain(mut body: Body, budget: usize) {
    let mut left = budget;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            if n >= left {
                break;
            }
            left -= n;
        }
    })
    .await;
}

/// Inflates a gzip body (also multi-member), at most `limit` bytes of output.
pub fn gunzip(compressed: &[u8], limit: usize) -> Result<Bytes, Error> {
    let decoder = flate2::read::MultiGzDecoder::new(compressed);
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    decoder
        .take((limit as u64).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Error::InvalidGzip(e.to_string()))?;
    if out.len() > limit {
        return Err(Error::DecompressedTooLarge { limit });
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_handles_members_bombs_and_truncation() {
        let mut two = gz(b"a,x=1 f=1\n");
        two.extend(gz(b"b,x=1 f=2\n"));
        assert_eq!(&gunzip(&two, 100).unwrap()[..], b"a,x=1 f=1\nb,x=1 f=2\n");

        let bomb = gz(&vec![b'a'; 1 << 20]);
        assert!(matches!(
            gunzip(&bomb, 1000),
            Err(Error::DecompressedTooLarge { limit: 1000 })
        ));
        assert_eq!(gunzip(&bomb, 1 << 20).unwrap().len(), 1 << 20);
        assert_eq!(gunzip(&bomb, usize::MAX).unwrap().len(), 1 << 20);

        let whole = gz(b"home,room=kitchen temp=72 1641024000\n");
        assert!(matches!(
            gunzip(&whole[..whole.len() - 6], 1000),
            Err(Error::InvalidGzip(_))
        ));
        assert!(matches!(
            gunzip(b"not gzip at all", 1000),
            Err(Error::InvalidGzip(_))
        ));
    }

    #[test]
    fn encodings() {
        let mut h = HeaderMap::new();
        assert_eq!(content_encoding(&h).unwrap(), Encoding::Identity);
        h.insert(header::CONTENT_ENCODING, "GZIP".parse().unwrap());
        assert_eq!(content_encoding(&h).unwrap(), Encoding::Gzip);
        h.insert(header::CONTENT_ENCODING, "identity".parse().unwrap());
        assert_eq!(content_encoding(&h).unwrap(), Encoding::Identity);
        h.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert!(matches!(content_encoding(&h), Err(Error::UnsupportedEncoding(e)) if e == "br"));
    }
}
