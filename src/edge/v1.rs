//! `POST /write`: the InfluxDB 1.x write API (Telegraf's `outputs.influxdb`,
//! Grafana agents, old client libraries), through the same pipeline.
//!
//! The database is `db`, or `db/rp` for a retention policy other than the default
//! (InfluxDB 3's mapping of DBRP to a database). Credentials come as
//! `Authorization: Token|Bearer`, Basic with the token as password, or `p=` in the
//! query. Errors are v1's `{"error": …}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};

use super::Edge;
use super::write::{QueryParams, write_request};
use crate::edge::error::{Error, V1Error};
use crate::lineproto::{ParseOptions, Precision};
use crate::write::WriteMode;

#[derive(Debug, PartialEq)]
pub struct V1Params {
    pub database: String,
    pub precision: Precision,
    pub password: Option<String>,
    pub dry_run: bool,
}

impl V1Params {
    pub fn parse(query: Option<&str>) -> Result<Self, Error> {
        let query = QueryParams::parse(query)?;
        let get = |k: &str| query.get(k);
        let precision = match get("precision") {
            None | Some("") => Precision::Nanosecond,
            Some(p) => v1_precision(p).ok_or_else(|| Error::InvalidV1Precision(p.to_string()))?,
        };
        let db = get("db")
            .filter(|d| !d.is_empty())
            .ok_or(Error::MissingDb)?;
        let database = match get("rp") {
            None | Some("") | Some("autogen") => db.to_string(),
            Some(rp) => format!("{db}/{rp}"),
        };
        let password = get("p").map(str::to_string);
        let dry_run = get("dry_run").is_some_and(|v| v == "true");
        Ok(Self {
            database,
            precision,
            password,
            dry_run,
        })
    }
}

fn v1_precision(p: &str) -> Option<Precision> {
    Some(match p {
        "n" | "ns" => Precision::Nanosecond,
        "u" | "us" | "µ" => Precision::Microsecond,
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
) -> Result<StatusCode, V1Error> {
    let received_ns = edge.writer.clock().now_ns();
    // Credentials may be in the query, so read it first, but judge them first.
    let params = V1Params::parse(query.as_deref());
    let password = params.as_ref().ok().and_then(|p| p.password.as_deref());
    let principal = edge
        .auth
        .authenticate_v1(headers.get(header::AUTHORIZATION), password)
        .await
        .map_err(Error::from)?;
    let params = params?;
    let opts = ParseOptions::new(params.precision, received_ns);
    let mode = WriteMode {
        dry_run: params.dry_run,
        ..WriteMode::DEFAULT
    };
    write_request(
        &edge,
        &principal,
        &params.database,
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
    fn params_map_rp_and_precisions() {
        let p = V1Params::parse(Some("db=telegraf&rp=autogen&precision=u&u=me&p=tok")).unwrap();
        assert_eq!(
            p,
            V1Params {
                database: "telegraf".into(),
                precision: Precision::Microsecond,
                password: Some("tok".into()),
                dry_run: false
            }
        );
        assert_eq!(
            V1Params::parse(Some("db=a&rp=weekly")).unwrap().database,
            "a/weekly"
        );
        assert!(matches!(
            V1Params::parse(Some("rp=x")),
            Err(Error::MissingDb)
        ));
        assert!(
            matches!(V1Params::parse(Some("db=a&precision=x")), Err(Error::InvalidV1Precision(p)) if p == "x")
        );
        assert_eq!(
            V1Params::parse(Some("db=a&precision=n")).unwrap().precision,
            Precision::Nanosecond
        );
    }
}
