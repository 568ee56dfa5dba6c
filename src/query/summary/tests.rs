use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Float64Type;

use crate::catalog::{Catalog, SchemaLimits, TableColumns};
use crate::ingester::read::TimeRange;
use crate::query::Querier;
use crate::query::summary::FileSummaries;
use crate::testing::{Buffered, COLUMNS, catalog_with_table, chunk, persist};

const ALL: TimeRange = TimeRange {
    min: None,
    max: None,
};

fn range(min: Option<i64>, max: Option<i64>) -> TimeRange {
    TimeRange { min, max }
}

/// Each series' (host, last time, value) of field `f`, for those with one.
async fn last(querier: &Querier, f: &str, range: TimeRange) -> Vec<(String, i64, f64)> {
    let db = querier.database("db").await.unwrap();
    let table = db.table("m").unwrap();
    let summaries = querier.summaries().unwrap();
    let last = summaries
        .last(&db, table, range, &[f.to_string()])
        .await
        .unwrap();
    let hosts = last.series.batch.column(0).as_string::<i32>();
    let field = &last.fields[0];
    let Some(values) = field.values.as_primitive_opt::<Float64Type>() else {
        assert!(field.time.iter().all(Option::is_none), "{field:?}");
        return vec![];
    };
    (0..hosts.len())
        .filter_map(|i| field.time[i].map(|t| (hosts.value(i).to_string(), t, values.value(i))))
        .collect()
}

async fn hosts(querier: &Querier, range: TimeRange) -> Vec<String> {
    let db = querier.database("db").await.unwrap();
    let table = db.table("m").unwrap();
    let series = querier
        .summaries()
        .unwrap()
        .series(&db, table, range)
        .await
        .unwrap();
    let column = series.batch.column(0).as_string::<i32>();
    column.iter().map(|h| h.unwrap_or("").to_string()).collect()
}

fn row(host: &str, t: i64, v: f64) -> (String, i64, f64) {
    (host.to_string(), t, v)
}

/// A file, a failover's file with a newer version of one of its points, and
/// buffered versions older and newer than the files': per series and field
/// the value at the latest time wins, the latest write among its versions.
async fn folded_querier(dir: &std::path::Path, cache_bytes: usize) -> Querier {
    let (store, catalog) = catalog_with_table(dir).await;
    let first = chunk(
        5,
        &[
            ("a", Some(1.0), Some(1.0), 10),
            ("a", Some(3.0), None, 30),
            ("b", Some(5.0), None, 20),
        ],
    );
    persist(&catalog, &store, "i1", 1, first).await;
    let failover = chunk(7, &[("a", Some(2.0), None, 30)]);
    persist(&catalog, &store, "i2", 1, failover).await;
    let buffered = vec![
        chunk(8, &[("b", None, Some(9.0), 20), ("c", Some(7.0), None, 40)]),
        chunk(6, &[("a", None, Some(4.0), 30)]),
        // Older than the file's version of b@20: the file's x stays.
        chunk(4, &[("b", Some(6.0), None, 20)]),
    ];
    // A querier in another process: it finds the files by itself.
    let reader = Catalog::load(store.clone()).await.unwrap();
    Querier::new(reader, store, Arc::new(Buffered(buffered))).with_cache_bytes(cache_bytes)
}

#[tokio::test]
async fn last_values_fold_versions_across_files_and_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let querier = folded_querier(dir.path(), 1 << 20).await;
    let x = last(&querier, "x", ALL).await;
    assert_eq!(x, [row("a", 30, 2.0), row("b", 20, 5.0), row("c", 40, 7.0)]);
    let y = last(&querier, "y", ALL).await;
    assert_eq!(y, [row("a", 30, 4.0), row("b", 20, 9.0)]);
    // Both files are cached now and serve the next query.
    let cache = querier.summaries().unwrap().cache;
    assert_eq!(cache.usage().1, 2);
    assert_eq!(last(&querier, "x", ALL).await, x);

    // An end before the first file's last time: that file is read for the
    // range (a's last x is then its first point), the other is cached.
    let early = last(&querier, "x", range(None, Some(25))).await;
    assert_eq!(early, [row("a", 10, 1.0), row("b", 20, 5.0)]);
    assert_eq!(
        last(&querier, "y", range(None, Some(25))).await,
        [row("a", 10, 1.0), row("b", 20, 9.0)]
    );
    // A start after a series' last value: none for it in that file.
    let late = last(&querier, "x", range(Some(25), None)).await;
    assert_eq!(late, [row("a", 30, 2.0), row("c", 40, 7.0)]);
    assert_eq!(last(&querier, "x", range(Some(41), None)).await, []);
    // Not a field: no values.
    assert_eq!(last(&querier, "host", ALL).await, []);
}

#[tokio::test]
async fn series_in_a_range_count_by_their_span_per_source() {
    let dir = tempfile::tempdir().unwrap();
    let querier = folded_querier(dir.path(), 1 << 20).await;
    assert_eq!(hosts(&querier, ALL).await, ["a", "b", "c"]);
    assert_eq!(hosts(&querier, range(Some(35), None)).await, ["c"]);
    assert_eq!(hosts(&querier, range(None, Some(15))).await, ["a"]);
    // The documented approximation: a has points at 10 and 30 in the first
    // file and none in [15, 18], yet its span there overlaps the range.
    assert_eq!(hosts(&querier, range(Some(15), Some(18))).await, ["a"]);
    assert_eq!(
        hosts(&querier, range(Some(41), None)).await,
        Vec::<String>::new()
    );
}

/// A cache too small for any summary still answers: each query summarises
/// the files it needs and keeps nothing.
#[tokio::test]
async fn a_tiny_cache_answers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let querier = folded_querier(dir.path(), 1).await;
    for _ in 0..2 {
        assert_eq!(
            last(&querier, "x", ALL).await,
            [row("a", 30, 2.0), row("b", 20, 5.0), row("c", 40, 7.0)]
        );
        assert_eq!(hosts(&querier, ALL).await, ["a", "b", "c"]);
    }
    assert_eq!(querier.summaries().unwrap().cache.usage(), (0, 0));
}

/// A database deleted and made again under its name has a new id: the old
/// one's files (still registered until purged) are not its rows.
#[tokio::test]
async fn a_recreated_database_does_not_see_the_old_files() {
    let dir = tempfile::tempdir().unwrap();
    let (store, catalog) = catalog_with_table(dir.path()).await;
    persist(
        &catalog,
        &store,
        "i1",
        1,
        chunk(1, &[("old", Some(1.0), None, 10)]),
    )
    .await;
    let querier = Querier::new(
        Arc::clone(&catalog),
        store.clone(),
        Arc::new(Buffered(vec![])),
    );
    assert_eq!(hosts(&querier, ALL).await, ["old"]);
    catalog.delete_database("db", 0).await.unwrap();
    catalog.create_database("db").await.unwrap();
    let table = TableColumns {
        table: "m",
        columns: COLUMNS.to_vec(),
    };
    catalog
        .ensure_schema("db", &[table], SchemaLimits::UNLIMITED)
        .await
        .unwrap();
    persist(
        &catalog,
        &store,
        "i1",
        2,
        chunk(2, &[("new", Some(2.0), None, 10)]),
    )
    .await;
    assert_eq!(hosts(&querier, ALL).await, ["new"]);
    assert_eq!(last(&querier, "x", ALL).await, [row("new", 10, 2.0)]);
}

/// Points past the retention period are gone for these answers too.
#[tokio::test]
async fn retention_bounds_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let (store, catalog) = catalog_with_table(dir.path()).await;
    let now = crate::clock::system().now_ns();
    let hour = 3_600_000_000_000;
    let rows = chunk(
        1,
        &[
            ("gone", Some(1.0), None, now - 3 * hour),
            ("kept", Some(2.0), None, now - 3 * hour),
            ("kept", Some(3.0), None, now - hour / 2),
        ],
    );
    persist(&catalog, &store, "i1", 1, rows).await;
    let buffered = chunk(2, &[("gone", Some(4.0), None, now - 2 * hour)]);
    catalog.set_retention("db", Some(hour)).await.unwrap();
    let querier = Querier::new(catalog, store, Arc::new(Buffered(vec![buffered])));
    assert_eq!(hosts(&querier, ALL).await, ["kept"]);
    assert_eq!(
        last(&querier, "x", ALL).await,
        [row("kept", now - hour / 2, 3.0)]
    );
}

/// Warming summarises the files before any query asks, within half the
/// budget.
#[tokio::test]
async fn warming_summarises_files_before_queries_ask() {
    let dir = tempfile::tempdir().unwrap();
    let querier = folded_querier(dir.path(), 1 << 20).await;
    let summaries = querier.summaries().unwrap();
    assert_eq!(
        super::warm(summaries.cache, summaries.sources)
            .await
            .unwrap(),
        2
    );
    assert_eq!(summaries.cache.usage().1, 2);
    // Nothing fits in half of one byte: warming stops before it reads.
    let tiny = FileSummaries::new(1);
    assert_eq!(super::warm(&tiny, summaries.sources).await.unwrap(), 0);
}
