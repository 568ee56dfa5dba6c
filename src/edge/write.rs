//! The part of a line-protocol write that is HTTP's, shared by v1, v2 and
//! v3: permission on the name, the body read within its limits, a write slot,
//! load shed, `Content-Encoding` undone; then [`crate::write::Writer`] does
//! the rest. Each endpoint's own module reads its parameters.

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;

use super::Edge;
use super::body::{Encoding, content_encoding, gunzip, read_body};
use crate::auth::Principal;
use crate::edge::error::Error;
use crate::lineproto::ParseOptions;
use crate::metrics::stage;
use crate::write::{WriteError, WriteMode};

/// A request's query string, decoded; the first value of a repeated key wins.
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub fn parse(query: Option<&str>) -> Result<Self, Error> {
        serde_urlencoded::from_str(query.unwrap_or_default())
            .map(Self)
            .map_err(|e| Error::InvalidQueryString(e.to_string()))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Checks the request's permission, reads its body within the limits, then
/// decodes it and hands it to the writer.
pub async fn write_request(
    edge: &Edge,
    principal: &Principal,
    database: &str,
    headers: &HeaderMap,
    body: Body,
    opts: ParseOptions,
    mode: WriteMode,
) -> Result<(), Error> {
    if !principal.may_write(database) {
        return Err(WriteError::Forbidden(database.to_string()).into());
    }
    let encoding = content_encoding(headers)?;
    let db = edge.writer.database_for_write(principal, database).await?;
    // The slot is taken once the body is here: a client that stalls mid-body
    // holds only its own connection, not a slot every tenant shares.
    let read = read_body(headers, body, &edge.limits, &edge.body_bytes);
    let (body, _held) = stage("read", read).await?;
    let _slot = edge.writer.slot().await?;
    // Shed before decoding; the body was read, so the connection stays usable.
    if !mode.dry_run {
        edge.writer.shed()?;
    }
    let text = decode(encoding, body, edge.limits.max_decompressed_bytes).await?;
    Ok(edge.writer.write_lp(db, text, opts, mode).await?)
}

/// Undoes the body's `Content-Encoding` on a blocking thread, within
/// `max_decompressed` bytes.
async fn decode(encoding: Encoding, body: Bytes, max_decompressed: usize) -> Result<Bytes, Error> {
    stage(
        "decode",
        tokio::task::spawn_blocking(move || match encoding {
            Encoding::Gzip => gunzip(&body, max_decompressed),
            Encoding::Identity if body.len() > max_decompressed => {
                Err(Error::DecompressedTooLarge {
                    limit: max_decompressed,
                })
            }
            Encoding::Identity => Ok(body),
        }),
    )
    .await
    .map_err(|e| Error::Internal(format!("decompression task failed: {e}")))?
}
