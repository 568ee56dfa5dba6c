//! Rejected lines, made visible to the operator and not only to the client
//! (influxdata/influxdb#27497): counted by database and reason, and logged
//! with the database, line number, column and reason, at most once a second
//! for the whole process, so a client sending garbage cannot flood the log.
//! The token is never logged (it is not in a line error).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::lineproto::{ParsedBody, Reason};
use crate::metrics::metrics;

/// The second (since the epoch) of the last rejected-line log, and the bad
/// lines not logged since.
static LAST_LOG_SECOND: AtomicU64 = AtomicU64::new(0);
static NOT_LOGGED: AtomicU64 = AtomicU64::new(0);

/// Counts the bad lines of `parsed` under `database`, and logs the first
/// one unless a line was logged in the second of `now_ns` already.
pub(super) fn record(database: &str, parsed: &ParsedBody, now_ns: i64) {
    if parsed.error_count == 0 {
        return;
    }
    let counter = &metrics().rejected_lines;
    for reason in Reason::ALL {
        let n = parsed.rejected[reason as usize];
        if n > 0 {
            counter
                .with_label_values(&[database, reason.as_str()])
                .inc_by(n as u64);
        }
    }
    let second = u64::try_from(now_ns / 1_000_000_000).unwrap_or(0);
    let last = LAST_LOG_SECOND.load(Ordering::Relaxed);
    let first = parsed.errors.first();
    let claimed = second > last
        && LAST_LOG_SECOND
            .compare_exchange(last, second, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
    match first {
        Some(e) if claimed => {
            let not_logged = NOT_LOGGED.swap(0, Ordering::AcqRel);
            tracing::warn!(
                database,
                line = e.line,
                column = e.column,
                reason = e.reason.as_str(),
                error = %e.message,
                lines_in_request = parsed.error_count,
                not_logged_before = not_logged,
                "line rejected"
            );
        }
        _ => {
            NOT_LOGGED.fetch_add(parsed.error_count as u64, Ordering::Relaxed);
        }
    }
}
