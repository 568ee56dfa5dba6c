//! `POST /api/v2/write`: the InfluxDB v2 write contract as InfluxDB Clustered
//! documents it. Good lines of a body with bad ones are written,
//! then the bad ones reported as `{"code":"invalid","line":N,"message":…}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};

use super::Edge;
use super::write::{QueryParams, write_request};
use crate::edge::error::Error;
use crate::lineproto::{ParseOptions, Precision};
use crate::write::WriteMode;

/// The v2 query parameters that matter; `org`, `orgID` and unknown ones are ignored.
#[derive(Debug, PartialEq)]
pub struct V2Params {
    pub bucket: String,
    pub precision: Precision,
    pub dry_run: bool,
}

impl V2Params {
    /// Validates in InfluxDB Clustered's order: precision (a deserialisation
    /// error there), then bucket. `org` is never checked: Telegraf always
    /// sends it, empty when configured as the InfluxDB 3 guides say, and drops
    /// a batch answered 400.
    pub fn parse(query: Option<&str>) -> Result<Self, Error> {
        let query = QueryParams::parse(query)?;
        let get = |k: &str| query.get(k);
        let precision = match get("precision") {
            None => Precision::Nanosecond,
            Some(p) => v2_precision(p).ok_or_else(|| Error::InvalidPrecision(p.to_string()))?,
        };
        let bucket = get("bucket")
            .filter(|b| !b.is_empty())
            .ok_or(Error::MissingBucket)?;
        let dry_run = get("dry_run").is_some_and(|v| v == "true");
        Ok(Self {
            bucket: bucket.to_string(),
            precision,
            dry_run,
        })
    }
}

fn v2_precision(p: &str) -> Option<Precision> {
    Some(match p {
        "ns" => Precision::Nanosecond,
        "us" => Precision::Microsecond,
        "ms" => Precision::Millisecond,
        "s" => Precision::Second,
        "m" => Precision::Minute,
        "h" => Precision::Hour,
        _ => return None,
    })
}

pub async fn write(
    State(edge): State<Arc<Edge>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, Error> {
    let received_ns = edge.writer.clock().now_ns();
    let principal = edge
        .auth
        .authenticate(headers.get(header::AUTHORIZATION))
        .await?;
    let params = V2Params::parse(query.as_deref())?;
    let opts = ParseOptions::new(params.precision, received_ns);
    let mode = WriteMode {
        dry_run: params.dry_run,
        ..WriteMode::DEFAULT
    };
    write_request(
        &edge,
        &principal,
        &params.bucket,
        &headers,
        body,
        opts,
        mode,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_follow_clustered() {
        let p = V2Params::parse(Some("bucket=db&precision=s&org=x&orgID=1")).unwrap();
        assert_eq!(
            p,
            V2Params {
                bucket: "db".into(),
                precision: Precision::Second,
                dry_run: false
            }
        );
        assert_eq!(V2Params::parse(Some("bucket=a%2Fb")).unwrap().bucket, "a/b");
        assert!(matches!(
            V2Params::parse(Some("precision=s")),
            Err(Error::MissingBucket)
        ));
        assert!(matches!(
            V2Params::parse(Some("bucket=")),
            Err(Error::MissingBucket)
        ));
        assert!(matches!(V2Params::parse(None), Err(Error::MissingBucket)));
        for org in [
            "bucket=a&org=",
            "org=&bucket=a",
            "bucket=a&org=x",
            "bucket=a",
        ] {
            assert_eq!(V2Params::parse(Some(org)).unwrap().bucket, "a", "{org}");
        }
        assert!(
            matches!(V2Params::parse(Some("bucket=a&precision=u")), Err(Error::InvalidPrecision(p)) if p == "u")
        );
        for (p, m) in [
            ("ns", 1),
            ("us", 1_000),
            ("ms", 1_000_000),
            ("s", 1_000_000_000),
            ("m", 60_000_000_000),
            ("h", 3_600_000_000_000),
        ] {
            let got = V2Params::parse(Some(&format!("bucket=a&precision={p}"))).unwrap();
            assert_eq!(got.precision.multiplier(), m);
        }
    }
}
