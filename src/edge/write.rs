//! `POST /api/v2/write`: the InfluxDB v2 write contract (DESIGN.md §2).
//!
//! auth → parameters → permission → encoding → bounded body → gzip → line protocol
//! into Arrow (against the catalog's types) → schema commit → ingesters → 204.
//! Good lines of a body with bad ones are written, then the bad ones reported.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;

use super::Edge;
use super::body::{Encoding, content_encoding, gunzip, read_body};
use crate::auth::Principal;
use crate::catalog::{Database, TableColumns, table_columns};
use crate::error::{Error, line_errors};
use crate::lineproto::{ParseOptions, ParsedBody, Precision, TableBatch, parse_lines};
use crate::schema::{ColumnType, arrow_schema, project};

/// The v2 query parameters that matter; `orgID` and unknown ones are ignored.
#[derive(Debug, PartialEq)]
pub struct V2Params {
    pub bucket: String,
    pub precision: Precision,
}

impl V2Params {
    /// Validates in InfluxDB Clustered's order: precision (a deserialisation
    /// error there), then org, then bucket.
    pub fn parse(query: Option<&str>) -> Result<Self, Error> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
            .map_err(|e| Error::InvalidQueryString(e.to_string()))?;
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let precision = match get("precision") {
            None => Precision::Nanosecond,
            Some(p) => v2_precision(p).ok_or_else(|| Error::InvalidPrecision(p.to_string()))?,
        };
        if get("org").is_some_and(str::is_empty) {
            return Err(Error::EmptyOrg);
        }
        let bucket = get("bucket")
            .filter(|b| !b.is_empty())
            .ok_or(Error::MissingBucket)?;
        Ok(Self {
            bucket: bucket.to_string(),
            precision,
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

pub async fn v2(
    State(edge): State<Arc<Edge>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, Error> {
    let received_ns = crate::auth::now_ns();
    let principal = edge
        .auth
        .authenticate(headers.get(header::AUTHORIZATION))
        .await?;
    let params = V2Params::parse(query.as_deref())?;
    if !principal.can_write(&params.bucket) {
        return Err(Error::Forbidden(format!(
            "token does not have write permission on database \"{}\"",
            params.bucket
        )));
    }
    let encoding = content_encoding(&headers)?;
    let db = database_for_write(&edge, &principal, &params.bucket).await?;
    let body = read_body(&headers, body, edge.limits.max_request_bytes).await?;
    let opts = ParseOptions::new(params.precision, received_ns);
    write_lines(&edge, db, encoding, body, opts).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The database to write to: created on first write for an admin token, else 404.
pub async fn database_for_write(
    edge: &Edge,
    principal: &Principal,
    name: &str,
) -> Result<Arc<Database>, Error> {
    if let Some(db) = edge.catalog.state().database(name) {
        return Ok(Arc::clone(db));
    }
    if let Some(db) = edge.catalog.refresh().await?.database(name) {
        return Ok(Arc::clone(db));
    }
    if !principal.is_admin() {
        return Err(Error::DatabaseNotFound(name.to_string()));
    }
    edge.catalog.create_database(name).await?;
    edge.catalog
        .state()
        .database(name)
        .cloned()
        .ok_or_else(|| Error::Internal(format!("database \"{name}\" vanished after creation")))
}

/// Decodes, parses and writes a body; shared by every write endpoint.
pub async fn write_lines(
    edge: &Edge,
    db: Arc<Database>,
    encoding: Encoding,
    body: Bytes,
    opts: ParseOptions,
) -> Result<(), Error> {
    let max_decompressed = edge.limits.max_decompressed_bytes;
    let lookup = Arc::clone(&db);
    let parsed: ParsedBody = tokio::task::spawn_blocking(move || {
        let text = match encoding {
            Encoding::Gzip => gunzip(&body, max_decompressed)?,
            Encoding::Identity if body.len() > max_decompressed => {
                return Err(Error::DecompressedTooLarge {
                    limit: max_decompressed,
                });
            }
            Encoding::Identity => body,
        };
        Ok(parse_lines(&text, &opts, lookup.as_ref()))
    })
    .await
    .map_err(|e| Error::Internal(format!("parser task failed: {e}")))??;

    if parsed.is_empty() {
        return Err(match parsed.error_count {
            0 => Error::EmptyBody,
            n => line_errors(&parsed.errors, n),
        });
    }
    let tables = commit_schema(edge, &db.name, parsed.tables).await?;
    edge.router.write(&db.name, &tables).await?;
    if parsed.error_count > 0 {
        return Err(line_errors(&parsed.errors, parsed.error_count));
    }
    Ok(())
}

/// Adds new tables and columns to the catalog, then lays every batch out in the
/// catalog's column order (columns it lacks are null).
pub async fn commit_schema(
    edge: &Edge,
    database: &str,
    tables: Vec<TableBatch>,
) -> Result<Vec<TableBatch>, Error> {
    let schemas: Vec<_> = tables.iter().map(|t| t.batch.schema()).collect();
    let wanted: Vec<TableColumns<'_>> = tables
        .iter()
        .zip(&schemas)
        .map(|(t, schema)| TableColumns {
            table: &t.table,
            columns: schema
                .fields()
                .iter()
                .filter_map(|f| ColumnType::from_arrow_field(f).map(|ty| (f.name().as_str(), ty)))
                .collect(),
        })
        .collect();
    let db = edge.catalog.ensure_schema(database, &wanted).await?;
    drop(wanted);
    tables
        .into_iter()
        .map(|t| {
            let table = db.table(&t.table).ok_or_else(|| {
                Error::Internal(format!("table \"{}\" missing after schema commit", t.table))
            })?;
            let schema = arrow_schema(table_columns(table));
            let batch = project(&t.batch, &schema).map_err(|e| Error::Internal(e.to_string()))?;
            Ok(TableBatch {
                table: t.table,
                batch,
            })
        })
        .collect()
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
                precision: Precision::Second
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
        assert!(matches!(
            V2Params::parse(Some("bucket=a&org=")),
            Err(Error::EmptyOrg)
        ));
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
