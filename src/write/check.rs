//! What the parser asks about each line, answered from the catalog's schema
//! and the database's series: the parser itself knows neither.

use std::sync::Arc;

use bytes::Bytes;

use super::WriteError;
use crate::catalog::Database;
use crate::lineproto::{LineCheck, ParseOptions, ParsedBody, SeriesQuota, parse_lines};
use crate::schema::ColumnType;
use crate::series::{DbSeries, LineAdmission, SeriesDay};

/// Parses on a blocking thread, checking each line's series against the
/// database's (held, shared, while it parses); also the series and days the
/// accepted lines add.
pub(super) async fn parse(
    text: Bytes,
    opts: &ParseOptions,
    db: &Arc<Database>,
    series: &Arc<DbSeries>,
) -> Result<(ParsedBody, Vec<SeriesDay>), WriteError> {
    let (opts, db, series) = (opts.clone(), Arc::clone(db), Arc::clone(series));
    tokio::task::spawn_blocking(move || {
        let live = series.live().blocking_read();
        let check = WriteCheck {
            db: &db,
            series: LineAdmission::new(&*live),
        };
        let parsed = parse_lines(&text, &opts, &check);
        (parsed, check.series.into_found())
    })
    .await
    .map_err(|source| WriteError::Task {
        what: "parser",
        source,
    })
}

/// The catalog's schema and the database's series, as the parser sees them.
struct WriteCheck<'a> {
    db: &'a Database,
    series: LineAdmission<'a>,
}

impl LineCheck for WriteCheck<'_> {
    fn column_type(&self, table: &str, column: &str) -> Option<ColumnType> {
        self.db.column_type(table, column)
    }

    fn table_count(&self) -> usize {
        self.db.table_count()
    }

    fn column_count(&self, table: &str) -> Option<usize> {
        self.db.column_count(table)
    }

    fn counts_series(&self) -> bool {
        true
    }

    fn check_series(&self, series: u64, time_ns: i64) -> Result<i64, SeriesQuota> {
        self.series.check(series, time_ns)
    }

    fn admit_series(&self, series: u64) {
        self.series.admit(series)
    }
}
