//! The one error type every endpoint returns, and the one table from an
//! [`ErrorKind`] to an HTTP status and a gRPC code.
//!
//! Handlers never build error responses themselves: they return [`Error`].
//! Domain errors ride inside it whole (their `source` chain kept) and say their
//! own kind; the transport's own failures (a body too large, a missing
//! parameter) are variants here. Every match is exhaustive on purpose, so a new
//! variant or kind does not compile until someone picks its status. Messages
//! never echo request headers (they hold tokens).

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::admin::AdminError;
use crate::auth::AuthError;
use crate::catalog::CatalogError;
use crate::error::ErrorKind;
use crate::influxql::InfluxqlError;
use crate::lineproto::LineError;
use crate::query::QueryError;
use crate::route::RouteError;
use crate::series::SeriesError;
use crate::write::WriteError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Missing, malformed or unknown credentials. The reason is logged, not returned.
    #[error("unauthorized access")]
    Unauthenticated(#[source] AuthError),

    #[error("{0}")]
    Forbidden(String),

    #[error("missing bucket value")]
    MissingBucket,

    /// The text is InfluxDB Clustered's, written out by hand as InfluxDB's documentation shows it
    /// (it lists four precisions although `m` and `h` are accepted too).
    #[error(
        "failed to deserialize org/bucket/precision in request: unknown variant `{0}`, expected one of `s`, `ms`, `us`, `ns`"
    )]
    InvalidPrecision(String),

    /// v1 and v3: the `db` parameter is missing or empty.
    #[error("database is required: set the db query parameter")]
    MissingDb,

    #[error("invalid precision {0:?}: use n, ns, u, us, ms, s, m or h")]
    InvalidV1Precision(String),

    #[error("invalid precision {0:?}: use auto, nanosecond, microsecond, millisecond or second")]
    InvalidV3Precision(String),

    #[error("invalid query string: {0}")]
    InvalidQueryString(String),

    #[error("unsupported Content-Encoding {0:?}: use gzip or identity")]
    UnsupportedEncoding(String),

    #[error("request body too large: it exceeds the limit of {limit} bytes (--max-request-bytes)")]
    BodyTooLarge { limit: usize },

    #[error(
        "decompressed request body too large: it exceeds the limit of {limit} bytes (--max-decompressed-bytes)"
    )]
    DecompressedTooLarge { limit: usize },

    #[error("invalid gzip request body: {0}")]
    InvalidGzip(String),

    #[error("error reading request body: {0}")]
    BodyRead(String),

    /// The bodies being received hold all the memory set aside for them.
    #[error(
        "request bodies being received hold all of the {limit} bytes set aside for them (--max-buffered-body-bytes); retry later"
    )]
    BodyBufferFull { limit: usize },

    /// The body stopped arriving, or came too slowly; the reason names the flag.
    #[error("request body timed out: {0}")]
    BodyTimeout(String),

    #[error("invalid Flight data: {0}")]
    InvalidFlightData(String),

    #[error("no line protocol in request body")]
    EmptyBody,

    /// Some lines were rejected; the others were written unless `written` is false.
    #[error("{}", line_errors_message(errors, *total))]
    LineErrors {
        errors: Vec<LineError>,
        total: usize,
        written: bool,
    },

    /// A per-database quota (tables, columns) would be exceeded.
    #[error("{0}")]
    LimitExceeded(String),

    #[error("database \"{0}\" not found")]
    DatabaseNotFound(String),

    #[error("{0}")]
    Unavailable(String),

    /// A query that does not parse or plan: DataFusion's message.
    #[error("{0}")]
    InvalidQuery(String),

    #[error("path not found")]
    PathNotFound,

    #[error("method not allowed")]
    MethodNotAllowed,

    #[error("internal error: {0}")]
    Internal(String),

    #[error("{}", catalog_message(.0))]
    Catalog(#[source] CatalogError),

    #[error(transparent)]
    Series(#[from] SeriesError),

    #[error(transparent)]
    Route(#[from] RouteError),

    #[error(transparent)]
    Query(#[from] QueryError),

    #[error("{}", influxql_message(.0))]
    Influxql(#[source] InfluxqlError),

    #[error(transparent)]
    Admin(AdminError),

    #[error(transparent)]
    Write(WriteError),
}

/// The catalog's storage failing is named as such to clients.
fn catalog_message(e: &CatalogError) -> String {
    match e {
        CatalogError::Store(_) => format!("catalog unavailable: {e}"),
        _ => e.to_string(),
    }
}

/// InfluxQL's database errors in the words of the other endpoints.
fn influxql_message(e: &InfluxqlError) -> String {
    match e {
        InfluxqlError::DatabaseNotFound(name) => format!("database \"{name}\" not found"),
        _ => e.to_string(),
    }
}

/// How long clients should wait before retrying a 503.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The one table: what each kind of failure is in HTTP and in gRPC.
pub fn status_of(kind: ErrorKind) -> (StatusCode, tonic::Code) {
    use tonic::Code;
    match kind {
        ErrorKind::Invalid => (StatusCode::BAD_REQUEST, Code::InvalidArgument),
        ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, Code::Unauthenticated),
        ErrorKind::Forbidden => (StatusCode::FORBIDDEN, Code::PermissionDenied),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, Code::NotFound),
        ErrorKind::AlreadyExists => (StatusCode::CONFLICT, Code::AlreadyExists),
        ErrorKind::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, Code::Unimplemented),
        ErrorKind::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, Code::ResourceExhausted),
        ErrorKind::UnsupportedEncoding => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, Code::InvalidArgument)
        }
        ErrorKind::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, Code::DeadlineExceeded),
        ErrorKind::LimitExceeded => (StatusCode::UNPROCESSABLE_ENTITY, Code::FailedPrecondition),
        ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable),
        ErrorKind::ResourcesExhausted => (StatusCode::SERVICE_UNAVAILABLE, Code::ResourceExhausted),
        // The server gave up on its own work in time: not the client's
        // request timing out (408), and not worth an immediate retry (503).
        ErrorKind::TimedOut => (StatusCode::GATEWAY_TIMEOUT, Code::DeadlineExceeded),
        ErrorKind::NotImplemented => (StatusCode::NOT_IMPLEMENTED, Code::Unimplemented),
        ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, Code::Internal),
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Unauthenticated(e) => e.kind(),
            Self::Forbidden(_) => ErrorKind::Forbidden,
            Self::MissingBucket
            | Self::InvalidPrecision(_)
            | Self::MissingDb
            | Self::InvalidV1Precision(_)
            | Self::InvalidV3Precision(_)
            | Self::InvalidQueryString(_)
            | Self::InvalidGzip(_)
            | Self::BodyRead(_)
            | Self::EmptyBody
            | Self::InvalidFlightData(_)
            | Self::InvalidQuery(_)
            | Self::LineErrors { .. } => ErrorKind::Invalid,
            Self::UnsupportedEncoding(_) => ErrorKind::UnsupportedEncoding,
            Self::BodyTimeout(_) => ErrorKind::RequestTimeout,
            Self::BodyTooLarge { .. } | Self::DecompressedTooLarge { .. } => ErrorKind::TooLarge,
            Self::LimitExceeded(_) => ErrorKind::LimitExceeded,
            Self::DatabaseNotFound(_) | Self::PathNotFound => ErrorKind::NotFound,
            Self::MethodNotAllowed => ErrorKind::MethodNotAllowed,
            Self::Unavailable(_) | Self::BodyBufferFull { .. } => ErrorKind::Unavailable,
            Self::Internal(_) => ErrorKind::Internal,
            Self::Catalog(e) => e.kind(),
            Self::Series(e) => e.kind(),
            Self::Route(e) => e.kind(),
            Self::Query(e) => e.kind(),
            Self::Influxql(e) => e.kind(),
            Self::Admin(e) => e.kind(),
            Self::Write(e) => e.kind(),
        }
    }

    pub fn status(&self) -> StatusCode {
        status_of(self.kind()).0
    }

    /// The InfluxDB v2 error `code` for this status.
    pub fn v2_code(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            // v2's codes have no timeout: the request was incomplete.
            StatusCode::BAD_REQUEST | StatusCode::REQUEST_TIMEOUT => "invalid",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported media type",
            StatusCode::PAYLOAD_TOO_LARGE => "request too large",
            StatusCode::NOT_FOUND => "not found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::UNPROCESSABLE_ENTITY => "unprocessable entity",
            StatusCode::METHOD_NOT_ALLOWED => "method not allowed",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::NOT_IMPLEMENTED => "not implemented",
            StatusCode::GATEWAY_TIMEOUT => "timeout",
            _ => "internal error",
        }
    }

    pub fn to_grpc(&self) -> tonic::Status {
        tonic::Status::new(status_of(self.kind()).1, self.to_string())
    }
}

/// The v2 error body: `{"code","message"}`, plus `line` for rejected lines.
#[derive(Serialize)]
struct V2Body<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
}

/// The error body shapes of the three write APIs; the status is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// v2 (InfluxDB Clustered): `{"code","message"}`, plus `"line"` for bad lines.
    V2,
    /// v1: `{"error"}`.
    V1,
    /// InfluxDB 3: `{"error"}`, plus `"data"` listing bad lines.
    V3,
}

impl Error {
    pub fn into_response_shaped(self, shape: Shape) -> Response {
        let status = self.status();
        match &self {
            Self::Unauthenticated(reason) => tracing::info!(%reason, "request not authenticated"),
            _ if self.kind() == ErrorKind::Internal => {
                tracing::error!(error = %self, "internal error")
            }
            // Shed load is expected under overload: one line per 503 would flood the log.
            _ => tracing::debug!(error = %self, %status, "request rejected"),
        }
        let body = match shape {
            Shape::V2 => {
                let line = match &self {
                    Self::LineErrors { errors, .. } => errors.first().map(|e| e.line),
                    _ => None,
                };
                serde_json::to_value(V2Body {
                    code: self.v2_code(),
                    message: self.to_string(),
                    line,
                })
            }
            Shape::V1 => Ok(serde_json::json!({ "error": self.to_string() })),
            Shape::V3 => Ok(match &self {
                Self::LineErrors {
                    errors, written, ..
                } => {
                    let data: Vec<_> = errors
                        .iter()
                        .map(|e| {
                            serde_json::json!({
                                "original_line": e.original,
                                "line_number": e.line,
                                "error_message": format!("column {}: {}", e.column, e.message),
                            })
                        })
                        .collect();
                    // InfluxDB 3's texts for the two outcomes.
                    let error = if *written {
                        "partial write of line protocol occurred"
                    } else {
                        "parsing failed for write_lp endpoint"
                    };
                    serde_json::json!({ "error": error, "data": data })
                }
                _ => serde_json::json!({ "error": self.to_string() }),
            }),
        }
        .unwrap_or_else(|_| serde_json::json!({ "error": "unserializable error" }));
        let mut response = (status, axum::Json(body)).into_response();
        let unread = matches!(
            self,
            Self::BodyTooLarge { .. } | Self::BodyTimeout(_) | Self::BodyBufferFull { .. }
        );
        if unread || status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read: the connection cannot be reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(RETRY_AFTER.as_secs()),
            );
        }
        response
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.into_response_shaped(Shape::V2)
    }
}

/// An [`Error`] answered in the v1 shape.
#[derive(Debug)]
pub struct V1Error(pub Error);

/// An [`Error`] answered in the InfluxDB 3 shape.
#[derive(Debug)]
pub struct V3Error(pub Error);

/// `?` on a domain error in a v1 or v3 handler: through [`Error`].
macro_rules! shaped_from {
    ($($error:ty),*) => {$(
        impl From<$error> for V1Error {
            fn from(e: $error) -> Self {
                Self(e.into())
            }
        }

        impl From<$error> for V3Error {
            fn from(e: $error) -> Self {
                Self(e.into())
            }
        }
    )*};
}

shaped_from!(Error, AdminError, QueryError, WriteError);

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        self.0.into_response_shaped(Shape::V1)
    }
}

impl IntoResponse for V3Error {
    fn into_response(self) -> Response {
        self.0.into_response_shaped(Shape::V3)
    }
}

impl From<AuthError> for Error {
    fn from(e: AuthError) -> Self {
        Self::Unauthenticated(e)
    }
}

impl From<CatalogError> for Error {
    fn from(e: CatalogError) -> Self {
        Self::Catalog(e)
    }
}

impl From<InfluxqlError> for Error {
    fn from(e: InfluxqlError) -> Self {
        match e {
            // The other endpoints' words for the same mistake.
            InfluxqlError::DatabaseRequired => Self::MissingDb,
            e => Self::Influxql(e),
        }
    }
}

impl From<WriteError> for Error {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Lines {
                errors,
                total,
                written,
            } => Self::LineErrors {
                errors,
                total,
                written,
            },
            WriteError::InvalidBatch(m) => Self::InvalidFlightData(m),
            WriteError::Internal(m) => Self::Internal(m),
            WriteError::Catalog(e) => Self::Catalog(e),
            WriteError::Series(e) => Self::Series(e),
            WriteError::Route(e) => Self::Route(e),
            e => Self::Write(e),
        }
    }
}

impl From<AdminError> for Error {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Catalog(e) => Self::Catalog(e),
            e => Self::Admin(e),
        }
    }
}

/// One entry per rejected line, bounded: the rest are counted.
fn line_errors_message(errors: &[LineError], total: usize) -> String {
    let mut message = String::from("failed to parse line protocol: errors encountered on line(s):");
    for e in errors {
        message.push('\n');
        message.push_str(&e.to_string());
        // The line as sent, and a caret under the column.
        for excerpt_line in e.caret().lines() {
            message.push_str("\n    ");
            message.push_str(excerpt_line);
        }
    }
    if total > errors.len() {
        message.push_str(&format!("\n(and {} more errors)", total - errors.len()));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_examples_keep_their_exact_text() {
        assert_eq!(Error::MissingBucket.to_string(), "missing bucket value");
        assert_eq!(
            Error::InvalidPrecision("u".into()).to_string(),
            "failed to deserialize org/bucket/precision in request: unknown variant `u`, expected one of `s`, `ms`, `us`, `ns`"
        );
        assert_eq!(Error::MissingBucket.v2_code(), "invalid");
    }

    #[test]
    fn line_errors_name_line_column_reason_and_point_at_it() {
        let e = LineError {
            line: 2,
            column: 9,
            message: "bad value".into(),
            reason: crate::lineproto::Reason::InvalidValue,
            original: "m,t=b f=oops 2".into(),
        };
        let error = Error::LineErrors {
            errors: vec![e.clone(), e],
            total: 5,
            written: true,
        };
        assert_eq!(
            error.to_string(),
            "failed to parse line protocol: errors encountered on line(s):\n\
             line 2, column 9: bad value\n    m,t=b f=oops 2\n            ^\n\
             line 2, column 9: bad value\n    m,t=b f=oops 2\n            ^\n\
             (and 3 more errors)"
        );
    }

    #[test]
    fn unavailable_is_503_with_retry_after() {
        let r = Error::Unavailable("x".into()).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn query_errors_keep_their_kind() {
        let cases = [
            (
                QueryError::DatabaseNotFound("d".into()),
                tonic::Code::NotFound,
                404,
            ),
            (
                QueryError::TableNotFound {
                    database: "d".into(),
                    table: "t".into(),
                },
                tonic::Code::NotFound,
                404,
            ),
            (
                QueryError::Invalid("bad".into()),
                tonic::Code::InvalidArgument,
                400,
            ),
            (
                QueryError::NotImplemented("x".into()),
                tonic::Code::Unimplemented,
                501,
            ),
            (
                QueryError::Unavailable("x".into()),
                tonic::Code::Unavailable,
                503,
            ),
            (
                QueryError::ResourcesExhausted("x".into()),
                tonic::Code::ResourceExhausted,
                503,
            ),
        ];
        for (q, code, status) in cases {
            let e = Error::from(q);
            assert_eq!(
                (e.to_grpc().code(), e.status().as_u16()),
                (code, status),
                "{e}"
            );
        }
    }

    #[test]
    fn grpc_codes_follow_the_kind() {
        assert_eq!(
            Error::Forbidden("no".into()).to_grpc().code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            Error::Unauthenticated(AuthError::Missing).to_grpc().code(),
            tonic::Code::Unauthenticated
        );
    }
}
