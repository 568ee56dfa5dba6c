//! `POST /api/v3/write_lp`: InfluxDB 3's write endpoint, through the same pipeline.
//!
//! `precision=auto|nanosecond|microsecond|millisecond|second` (auto guesses each
//! timestamp's unit from its magnitude), `accept_partial` (default true; false
//! writes nothing when any line is bad), `no_sync` (acknowledge before the WAL is
//! durable). Errors are InfluxDB 3's `{"error", "data": [{"original_line",
//! "line_number", "error_message"}]}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};

use super::Edge;
use super::write::{QueryParams, write_request};
use crate::edge::error::{Error, V3Error};
use crate::lineproto::{ParseOptions, Precision};
use crate::write::WriteMode;

#[derive(Debug, PartialEq)]
pub struct V3Params {
    pub database: String,
    pub precision: Precision,
    pub mode: WriteMode,
}

fn flag(value: Option<&str>, name: &str, default: bool) -> Result<bool, Error> {
    match value {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(Error::InvalidQueryString(format!(
            "{name} must be true or false, not {v:?}"
        ))),
    }
}

impl V3Params {
    pub fn parse(query: Option<&str>) -> Result<Self, Error> {
        let query = QueryParams::parse(query)?;
        let get = |k: &str| query.get(k);
        let database = get("db")
            .filter(|d| !d.is_empty())
            .ok_or(Error::MissingDb)?
            .to_string();
        let precision = match get("precision") {
            None | Some("auto") => Precision::Auto,
            Some("nanosecond") => Precision::Nanosecond,
            Some("microsecond") => Precision::Microsecond,
            Some("millisecond") => Precision::Millisecond,
            Some("second") => Precision::Second,
            Some(p) => return Err(Error::InvalidV3Precision(p.to_string())),
        };
        let mode = WriteMode {
            accept_partial: flag(get("accept_partial"), "accept_partial", true)?,
            no_sync: flag(get("no_sync"), "no_sync", false)?,
            dry_run: flag(get("dry_run"), "dry_run", false)?,
        };
        Ok(Self {
            database,
            precision,
            mode,
        })
    }
}

pub async fn write(
    State(edge): State<Arc<Edge>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, V3Error> {
    let received_ns = edge.writer.clock().now_ns();
    let principal = edge
        .auth
        .authenticate(headers.get(header::AUTHORIZATION))
        .await
        .map_err(Error::from)?;
    let params = V3Params::parse(query.as_deref())?;
    let opts = ParseOptions::new(params.precision, received_ns);
    write_request(
        &edge,
        &principal,
        &params.database,
        &headers,
        body,
        opts,
        params.mode,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_have_influxdb3_defaults() {
        let p = V3Params::parse(Some("db=x")).unwrap();
        assert_eq!(p.precision, Precision::Auto);
        assert_eq!(p.mode, WriteMode::DEFAULT);
        let p = V3Params::parse(Some(
            "db=x&precision=second&accept_partial=false&no_sync=true",
        ))
        .unwrap();
        assert_eq!(p.precision, Precision::Second);
        assert!(!p.mode.accept_partial && p.mode.no_sync && !p.mode.dry_run);
        assert!(matches!(
            V3Params::parse(Some("db=x&precision=s")),
            Err(Error::InvalidV3Precision(_))
        ));
        assert!(matches!(
            V3Params::parse(Some("db=x&no_sync=yes")),
            Err(Error::InvalidQueryString(_))
        ));
        assert!(matches!(
            V3Params::parse(Some("precision=second")),
            Err(Error::MissingDb)
        ));
    }
}
