//! InfluxQL: InfluxDB 1.x's query language, for Grafana, Chronograf, the `influx`
//! shell and the v1 client libraries, over `/query` and the Flight ticket.
//!
//! ```text
//!  text ─► lexer ─► parser (positions in errors) ─► ast::Statement
//!            SHOW …      ─► show: the catalog; the file summaries for tag
//!                           values and series (DataFusion when a WHERE
//!                           clause needs fields)
//!            SELECT last(…) … GROUP BY tags ─► last: the file summaries
//!            SELECT …    ─► select: DataFusion scans and filters the
//!                           deduplicated rows (time range and predicates pushed
//!                           to the table, so files are pruned as for SQL) and
//!                           either aggregates them per series and window
//!                           (mean, sum, count, min, max, first, last, spread)
//!                           or sorts them by series and time for InfluxQL's
//!                           own windows, aggregates and selectors, a series
//!                           at a time; fill, arithmetic and transformations
//!                           run over either
//!  result::Series ─► v1 JSON (edge::influxql_http) or Arrow (edge::influxql_flight)
//! ```

pub mod ast;
mod eval;
mod last;
mod lexer;
mod matching;
pub mod parser;
pub mod result;
mod select;
mod show;
#[cfg(test)]
mod summaries_tests;

use datafusion::execution::memory_pool::MemoryReservation;

use crate::auth::Principal;
use crate::query::{Querier, QueryError};
use ast::Statement;
use result::{Series, StatementResult};

/// Why a statement failed. Parse errors fail the whole request (HTTP 400); the
/// others end one statement, whose `error` says why.
#[derive(Debug, thiserror::Error)]
pub enum InfluxqlError {
    #[error("error parsing query: {0}")]
    Parse(#[from] parser::ParseError),
    /// A statement that parses but names something that cannot exist (a time
    /// zone); 1.x reports these as parse errors without a position.
    #[error("error parsing query: {0}")]
    Syntax(String),
    /// Valid InfluxQL this server does not answer.
    #[error("{0}")]
    NotSupported(String),
    /// A statement that cannot be answered as written (1.x's wording).
    #[error("{0}")]
    Invalid(String),
    #[error("database name required")]
    DatabaseRequired,
    #[error("database not found: {0}")]
    DatabaseNotFound(String),
    #[error("retention policy not found: {0}")]
    RetentionPolicyNotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Query(QueryError),
}

impl InfluxqlError {
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            Self::Parse(_) | Self::Syntax(_) | Self::Invalid(_) | Self::DatabaseRequired => {
                ErrorKind::Invalid
            }
            Self::RetentionPolicyNotFound(_) | Self::DatabaseNotFound(_) => ErrorKind::NotFound,
            Self::NotSupported(_) => ErrorKind::NotImplemented,
            Self::Forbidden(_) => ErrorKind::Forbidden,
            Self::Query(q) => q.kind(),
        }
    }
}

impl From<QueryError> for InfluxqlError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::DatabaseNotFound(db) => Self::DatabaseNotFound(db),
            other => Self::Query(other),
        }
    }
}

impl From<datafusion::error::DataFusionError> for InfluxqlError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        QueryError::from(e).into()
    }
}

/// What every statement of one request runs with.
pub struct Context<'a> {
    pub querier: &'a Querier,
    pub principal: &'a Principal,
    /// The request's `db` parameter: the database of statements that name none.
    pub database: Option<&'a str>,
    /// `now()`, fixed for the whole request.
    pub now: i64,
}

impl Context<'_> {
    /// The database a statement reads (its own `ON`/qualified name first),
    /// which the token must be allowed to read.
    async fn database<'b>(&'b self, named: Option<&'b str>) -> Result<&'b str, InfluxqlError> {
        let db = named
            .or(self.database)
            .filter(|d| !d.is_empty())
            .ok_or(InfluxqlError::DatabaseRequired)?;
        let forbidden = || {
            InfluxqlError::Forbidden(format!(
                "token does not have read permission on database \"{db}\""
            ))
        };
        if !self.principal.may_read(db) {
            return Err(forbidden());
        }
        if self.principal.is_admin() {
            return Ok(db);
        }
        // By id: a token for a deleted database of this name does not read
        // the one that took it.
        let state = self.querier.catalog().refresh().await;
        let state = state.map_err(crate::query::QueryError::from)?;
        if !self.principal.can_read_in(&state, db) {
            return Err(forbidden());
        }
        Ok(db)
    }
}

/// Runs one statement.
pub async fn execute(
    ctx: &Context<'_>,
    statement: &Statement,
) -> Result<Vec<Series>, InfluxqlError> {
    match statement {
        Statement::Select(s) => select::select(ctx, s).await,
        Statement::CreateDatabase { name } => show::create_database(ctx, name).await,
        other => show::show(ctx, other).await,
    }
}

/// Runs one statement and charges its answer to `memory` (the query memory
/// pool), where it stays until the caller writes it and shrinks the charge.
pub async fn execute_counted(
    ctx: &Context<'_>,
    statement: &Statement,
    memory: &mut MemoryReservation,
) -> Result<Vec<Series>, InfluxqlError> {
    let series = execute(ctx, statement).await?;
    memory
        .try_grow(result::answer_bytes(&series))
        .map_err(QueryError::from)?;
    Ok(series)
}

impl InfluxqlError {
    /// Data that could not be read fails the whole request (503), never one
    /// statement of an otherwise successful answer; so does a token that may
    /// not read the database (403).
    pub fn fails_request(&self) -> bool {
        matches!(
            self,
            Self::Forbidden(_)
                | Self::Query(
                    QueryError::Unavailable(_)
                        | QueryError::ResourcesExhausted(_)
                        | QueryError::Busy(_)
                        | QueryError::TimedOut(_)
                        | QueryError::Internal(_)
                )
        )
    }
}

/// Parses a request's statements and checks what the grammar cannot (time
/// zone names), so that nothing runs when any statement is invalid.
pub fn parse(text: &str) -> Result<ast::Query, InfluxqlError> {
    let query = parser::parse_query(text.trim())?;
    for statement in &query.statements {
        if let Statement::Select(s) = statement
            && let Some(tz) = &s.tz
            && tz.parse::<chrono_tz::Tz>().is_err()
        {
            return Err(InfluxqlError::Syntax(format!(
                "unable to find time zone {tz}"
            )));
        }
    }
    Ok(query)
}

/// Runs the statements in order. A statement's error ends the request there,
/// as in 1.x: the statements after it answer "not executed".
pub async fn run(
    ctx: &Context<'_>,
    query: &ast::Query,
) -> Result<Vec<StatementResult>, InfluxqlError> {
    let mut results = Vec::with_capacity(query.statements.len());
    let mut failed = false;
    for (statement_id, statement) in query.statements.iter().enumerate() {
        let (series, error) = if failed {
            (vec![], Some("not executed".to_string()))
        } else {
            match execute(ctx, statement).await {
                Ok(series) => (series, None),
                Err(e) if e.fails_request() => return Err(e),
                Err(e) => {
                    failed = true;
                    (vec![], Some(e.to_string()))
                }
            }
        };
        results.push(StatementResult {
            statement_id,
            series,
            error,
        });
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{on_small_stack, querier_with_one_row};

    /// Every walk after parsing (time bounds, DataFusion's planner and
    /// optimizer, evaluation, `Drop`) recurses once per level: a statement at
    /// the parser's limit, in its select list and its condition, answers on a
    /// 2 MiB stack (about 670 levels overflow it in a debug build).
    #[test]
    fn a_statement_at_the_depth_limit_runs_on_a_small_stack() {
        on_small_stack(|| async {
            let dir = tempfile::tempdir().unwrap();
            let querier = querier_with_one_row(dir.path()).await;
            let limit = parser::MAX_EXPR_DEPTH;
            let text = format!(
                "SELECT x{} FROM m WHERE {}",
                "+x".repeat(limit),
                vec!["x = 1"; limit].join(" OR ")
            );
            let query = parse(&text).unwrap();
            let principal = Principal::admin();
            let ctx = Context {
                querier: &querier,
                principal: &principal,
                database: Some("db"),
                now: 0,
            };
            let results = run(&ctx, &query).await.unwrap();
            assert_eq!(results[0].error, None);
            let values = &results[0].series[0].values;
            assert_eq!(
                values,
                &[vec![
                    result::Value::Time(10),
                    result::Value::Float((limit + 1) as f64)
                ]]
            );
        });
    }
}
