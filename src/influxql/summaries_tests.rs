//! The statements the file summaries answer give the same bytes as the scan
//! path: each runs on a querier with summaries and on one without (over the
//! same files and buffers), and a few answers are checked outright.

use std::sync::Arc;

use arrow::array::TimestampNanosecondArray;
use arrow::array::{BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};

use super::ast::Statement;
use super::result::{self, TimeFormat};
use super::{Context, parse, run};
use crate::auth::Principal;
use crate::catalog::{Catalog, SchemaLimits, TableColumns};
use crate::ingester::buffer::Chunk;
use crate::query::Querier;
use crate::schema::{ColumnType, arrow_schema};
use crate::store::Store;
use crate::testing::{Buffered, persist};

const COLUMNS: [(&str, ColumnType); 7] = [
    ("host", ColumnType::Tag),
    ("region", ColumnType::Tag),
    ("x", ColumnType::Float),
    ("n", ColumnType::Integer),
    ("s", ColumnType::String),
    ("b", ColumnType::Boolean),
    ("time", ColumnType::Time),
];

/// `now()` for every statement.
const NOW: i64 = 50;

#[derive(Clone, Copy, Default)]
struct P {
    host: &'static str,
    region: Option<&'static str>,
    x: Option<f64>,
    n: Option<i64>,
    s: Option<&'static str>,
    b: Option<bool>,
    t: i64,
}

fn chunk(sequence: u64, points: &[P]) -> Arc<Chunk> {
    let tag =
        |values: StringArray| arrow::compute::cast(&values, &ColumnType::Tag.arrow_type()).unwrap();
    let batch = RecordBatch::try_new(
        arrow_schema(COLUMNS),
        vec![
            tag(points.iter().map(|p| Some(p.host)).collect()),
            tag(points.iter().map(|p| p.region).collect()),
            Arc::new(points.iter().map(|p| p.x).collect::<Float64Array>()),
            Arc::new(points.iter().map(|p| p.n).collect::<Int64Array>()),
            Arc::new(points.iter().map(|p| p.s).collect::<StringArray>()),
            Arc::new(points.iter().map(|p| p.b).collect::<BooleanArray>()),
            Arc::new(TimestampNanosecondArray::from(
                points.iter().map(|p| p.t).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    Arc::new(Chunk::new(sequence, sequence, batch))
}

/// Two queriers over the same files and buffers: with summaries, without.
async fn queriers(dir: &std::path::Path) -> (Querier, Querier) {
    let store = Store::local(dir).unwrap();
    let catalog = Catalog::load(store.clone()).await.unwrap();
    catalog.create_database("db").await.unwrap();
    let table = TableColumns {
        table: "m",
        columns: COLUMNS.to_vec(),
    };
    catalog
        .ensure_schema("db", &[table], SchemaLimits::UNLIMITED)
        .await
        .unwrap();
    let (r1, r2) = (Some("r1"), Some("r2"));
    let first = [
        P {
            host: "a",
            region: r1,
            x: Some(1.0),
            n: Some(1),
            s: Some("a10"),
            b: Some(true),
            t: 10,
        },
        P {
            host: "a",
            region: r1,
            x: Some(3.0),
            n: Some(3),
            t: 30,
            ..P::default()
        },
        P {
            host: "b",
            region: r1,
            x: Some(6.0),
            s: Some("b20"),
            t: 20,
            ..P::default()
        },
        // b's two regions share their last time: a tie under GROUP BY host.
        P {
            host: "b",
            region: r2,
            x: Some(5.0),
            n: Some(6),
            t: 20,
            ..P::default()
        },
        P {
            host: "e",
            x: Some(8.0),
            b: Some(false),
            t: 15,
            ..P::default()
        },
    ];
    persist(&catalog, &store, "i1", 1, chunk(3, &first)).await;
    // A failover's file with a newer version of a@30.
    let failover = [P {
        host: "a",
        region: r1,
        x: Some(2.0),
        t: 30,
        ..P::default()
    }];
    persist(&catalog, &store, "i2", 1, chunk(7, &failover)).await;
    let buffered = vec![
        chunk(
            9,
            &[
                P {
                    host: "c",
                    region: r2,
                    x: Some(7.0),
                    n: Some(7),
                    s: Some("c40"),
                    t: 40,
                    ..P::default()
                },
                // A newer version of a@30's n.
                P {
                    host: "a",
                    region: r1,
                    n: Some(33),
                    t: 30,
                    ..P::default()
                },
            ],
        ),
        // Older than the file's version of b/r1@20: the file's x stays.
        chunk(
            2,
            &[P {
                host: "b",
                region: r1,
                x: Some(4.0),
                t: 20,
                ..P::default()
            }],
        ),
    ];
    let with = Querier::new(
        Arc::clone(&catalog),
        store.clone(),
        Arc::new(Buffered(buffered.clone())),
    );
    let without = Querier::new(catalog, store, Arc::new(Buffered(buffered))).with_cache_bytes(0);
    (with, without)
}

async fn answer(querier: &Querier, text: &str) -> String {
    let principal = Principal::admin();
    let ctx = Context {
        querier,
        principal: &principal,
        database: Some("db"),
        now: NOW,
    };
    let query = parse(text).unwrap();
    match run(&ctx, &query).await {
        Ok(results) => result::encode(&results, |_| TimeFormat::Epoch(1)),
        Err(e) => format!("error: {e}"),
    }
}

/// Whether the summaries answer the `SELECT` (rather than the scan).
async fn from_summaries(querier: &Querier, text: &str) -> bool {
    let principal = Principal::admin();
    let ctx = Context {
        querier,
        principal: &principal,
        database: Some("db"),
        now: NOW,
    };
    let query = parse(text).unwrap();
    let Statement::Select(s) = &query.statements[0] else {
        panic!("not a SELECT: {text}");
    };
    super::last::select(&ctx, s).await.unwrap().is_some()
}

#[tokio::test]
async fn last_from_summaries_is_the_scans_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (with, without) = queriers(dir.path()).await;
    let fast = [
        "SELECT last(x) FROM m",
        "SELECT last(x) FROM m GROUP BY host",
        "SELECT last(x) FROM m GROUP BY *",
        "SELECT last(x) FROM m GROUP BY region",
        "SELECT last(x) FROM m GROUP BY /reg/",
        "SELECT last(*) FROM m",
        "SELECT last(*) FROM m GROUP BY host",
        "SELECT last(*) FROM m GROUP BY *",
        "SELECT last(x), last(n) FROM m GROUP BY host",
        "SELECT last(x) AS v, last(x), last(x) FROM m GROUP BY host",
        "SELECT last(s), last(b) FROM m GROUP BY host, region",
        "SELECT last(n) FROM m GROUP BY host",
        "SELECT last(\"x\") FROM \"m\" GROUP BY \"host\"",
        "SELECT last(x::field) FROM db.autogen.m GROUP BY host",
        "SELECT last(x) FROM m WHERE host = 'a' GROUP BY host",
        "SELECT last(x) FROM m WHERE host = 'a' OR region = 'r2' GROUP BY host",
        "SELECT last(x) FROM m WHERE region =~ /1/ GROUP BY host",
        "SELECT last(x) FROM m WHERE region !~ /1/ GROUP BY host",
        "SELECT last(x) FROM m WHERE region = '' GROUP BY host",
        "SELECT last(x) FROM m WHERE nosuch = '' GROUP BY host",
        "SELECT last(x) FROM m WHERE time > 15 GROUP BY host",
        "SELECT last(x) FROM m WHERE time > now() - 25ns GROUP BY host",
        "SELECT last(x), last(n) FROM m WHERE time > 15 GROUP BY host",
        "SELECT last(x) FROM m WHERE time >= 0 AND time < 25 GROUP BY host",
        "SELECT last(*) FROM m WHERE time >= 0 AND time <= 20 GROUP BY *",
        "SELECT last(x) FROM m WHERE time > 100 GROUP BY host",
        "SELECT last(x) FROM m WHERE time > 30 AND time < 20 GROUP BY host",
        "SELECT last(x) FROM m WHERE host = 'a' AND time < 25",
        "SELECT last(x) FROM m GROUP BY host ORDER BY time DESC",
        "SELECT last(x) FROM m GROUP BY host LIMIT 1",
        "SELECT last(x) FROM m GROUP BY host LIMIT 1 OFFSET 1",
        "SELECT last(x) FROM m GROUP BY host SLIMIT 2 SOFFSET 1",
        "SELECT last(x) FROM m GROUP BY host fill(none)",
        "SELECT last(x), last(s) FROM m GROUP BY host fill(null)",
        "SELECT last(nosuch) FROM m GROUP BY host",
        "SELECT last(nosuch), last(x) FROM m GROUP BY host",
        "SELECT last(host) FROM m GROUP BY host",
        "SELECT last(x) FROM m GROUP BY nosuch",
        "SELECT last(x) FROM m GROUP BY host, nosuch",
    ];
    let scanned = [
        "SELECT last(x) FROM m WHERE x > 1 GROUP BY host",
        "SELECT last(x) + 1 FROM m GROUP BY host",
        "SELECT last(x), first(x) FROM m GROUP BY host",
        "SELECT last(x) FROM m WHERE time > 0 GROUP BY time(10ns)",
        "SELECT last(x) FROM m GROUP BY host fill(0)",
        "SELECT last(x) FROM m, m2 GROUP BY host",
        "SELECT last(x) FROM /m/ GROUP BY host",
        "SELECT last(x) FROM nosuch",
        "SELECT last(x) FROM m GROUP BY host tz('Europe/Paris')",
        "SELECT last(x) FROM m WHERE host = 1 GROUP BY host",
        "SELECT last(x) FROM db.rp.m",
    ];
    let mut differ = Vec::new();
    for text in fast {
        assert!(
            from_summaries(&with, text).await,
            "not from summaries: {text}"
        );
        let (a, b) = (answer(&with, text).await, answer(&without, text).await);
        if a != b {
            differ.push(text);
        }
    }
    assert!(differ.is_empty(), "{differ:?}");
    for text in scanned {
        assert!(!from_summaries(&with, text).await, "from summaries: {text}");
        let (a, b) = (answer(&with, text).await, answer(&without, text).await);
        assert_eq!(a, b, "{text}");
    }
    // The answers themselves: a's x from the failover's newer file, its n
    // from the buffer's newer version; b's tie at 20 (regions r1 and r2)
    // goes to the larger value, r1's 6, as in the scan path.
    assert_eq!(
        answer(&with, "SELECT last(x) FROM m GROUP BY host").await,
        r#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"host":"a"},"columns":["time","last"],"values":[[30,2]]},{"name":"m","tags":{"host":"b"},"columns":["time","last"],"values":[[20,6]]},{"name":"m","tags":{"host":"c"},"columns":["time","last"],"values":[[40,7]]},{"name":"m","tags":{"host":"e"},"columns":["time","last"],"values":[[15,8]]}]}]}"#
    );
    assert_eq!(
        answer(&with, "SELECT last(x), last(n), last(s) FROM m WHERE time > 5 AND time < 35 GROUP BY host, region").await,
        r#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"host":"a","region":"r1"},"columns":["time","last","last_1","last_2"],"values":[[6,2,33,"a10"]]},{"name":"m","tags":{"host":"b","region":"r1"},"columns":["time","last","last_1","last_2"],"values":[[6,6,null,"b20"]]},{"name":"m","tags":{"host":"b","region":"r2"},"columns":["time","last","last_1","last_2"],"values":[[6,5,6,null]]},{"name":"m","tags":{"host":"e","region":""},"columns":["time","last","last_1","last_2"],"values":[[6,8,null,null]]}]}]}"#
    );
}

#[tokio::test]
async fn show_from_summaries_is_the_scans_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (with, without) = queriers(dir.path()).await;
    let statements = [
        "SHOW TAG VALUES WITH KEY = host",
        "SHOW TAG VALUES FROM m WITH KEY IN (host, region)",
        "SHOW TAG VALUES FROM m WITH KEY = host WHERE region = 'r1'",
        "SHOW TAG VALUES FROM m WITH KEY = region WHERE host =~ /[ab]/",
        "SHOW TAG VALUES FROM m WITH KEY = host WHERE region = ''",
        "SHOW TAG VALUES FROM m WITH KEY = host WHERE time > 35",
        "SHOW TAG VALUES FROM m WITH KEY = host WHERE time > now() - 35ns AND region = 'r1'",
        "SHOW TAG VALUES FROM m WITH KEY = host WHERE time > 100",
        "SHOW TAG VALUES FROM m WITH KEY = host LIMIT 2 OFFSET 1",
        "SHOW TAG VALUES FROM m WITH KEY = host WHERE x > 5",
        "SHOW TAG VALUES FROM m WITH KEY = host WHERE s = 'b20' OR host = 'e'",
        "SHOW TAG KEYS",
        "SHOW TAG KEYS WHERE host = 'e'",
        "SHOW TAG KEYS WHERE time > 35",
        "SHOW TAG KEYS WHERE time > 100",
        "SHOW MEASUREMENTS WHERE host = 'zz'",
        "SHOW MEASUREMENTS WHERE host = 'a'",
        "SHOW MEASUREMENTS WHERE time > 100",
        "SHOW SERIES",
        "SHOW SERIES FROM m WHERE region = 'r1'",
        "SHOW SERIES WHERE region != 'r1' LIMIT 2 OFFSET 1",
        "SHOW SERIES FROM m WHERE time > 35",
        "SHOW SERIES FROM m WHERE n > 5",
        "SHOW SERIES FROM nosuch",
    ];
    for text in statements {
        let (a, b) = (answer(&with, text).await, answer(&without, text).await);
        assert_eq!(a, b, "{text}");
    }
    assert_eq!(
        answer(&with, "SHOW SERIES").await,
        r#"{"results":[{"statement_id":0,"series":[{"columns":["key"],"values":[["m,host=a,region=r1"],["m,host=b,region=r1"],["m,host=b,region=r2"],["m,host=c,region=r2"],["m,host=e"]]}]}]}"#
    );
    assert_eq!(
        answer(&with, "SHOW TAG VALUES WITH KEY = host WHERE time > 25").await,
        r#"{"results":[{"statement_id":0,"series":[{"name":"m","columns":["key","value"],"values":[["host","a"],["host","c"]]}]}]}"#
    );
}

/// `SHOW SERIES` escapes keys as line protocol does, as 1.x shows them.
#[test]
fn series_keys_are_escaped() {
    let batch = RecordBatch::try_from_iter([
        ("k=y", Arc::new(StringArray::from(vec![Some("a b")])) as _),
        ("host", Arc::new(StringArray::from(vec![Some("h,1")])) as _),
        ("zone", Arc::new(StringArray::from(vec![None::<&str>])) as _),
    ])
    .unwrap();
    assert_eq!(
        super::show::series_keys("disk io", &batch),
        [r"disk\ io,host=h\,1,k\=y=a\ b"]
    );
}

/// How long the two dashboard questions take with and without summaries on
/// 1,000 series × 2,000 points (10 files, the last 10 points of each series
/// buffered): run with
/// `cargo test --lib measure_summaries -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_summaries() {
    use std::time::{Duration, Instant};

    use arrow::array::StringDictionaryBuilder;
    use arrow::datatypes::Int32Type;

    const SERIES: usize = 1_000;
    const POINTS: i64 = 2_000;
    const FILES: i64 = 10;
    const STEP: i64 = 10_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(dir.path()).unwrap();
    let catalog = Catalog::load(store.clone()).await.unwrap();
    catalog.create_database("db").await.unwrap();
    let table = TableColumns {
        table: "m",
        columns: crate::testing::COLUMNS.to_vec(),
    };
    catalog
        .ensure_schema("db", &[table], SchemaLimits::UNLIMITED)
        .await
        .unwrap();
    let start = 1_735_689_600_000_000_000;
    let points = |from: i64, to: i64, sequence: u64| {
        let mut host = StringDictionaryBuilder::<Int32Type>::new();
        let (mut x, mut y, mut time) = (vec![], vec![], vec![]);
        for s in 0..SERIES {
            for p in from..to {
                host.append_value(format!("host_{s:04}"));
                x.push((s as i64 * 7919 + p * 104_729) as f64 % 1000.0);
                y.push(p as f64);
                time.push(start + p * STEP);
            }
        }
        let batch = RecordBatch::try_new(
            arrow_schema(crate::testing::COLUMNS),
            vec![
                Arc::new(host.finish()),
                Arc::new(Float64Array::from(x)),
                Arc::new(Float64Array::from(y)),
                Arc::new(TimestampNanosecondArray::from(time)),
            ],
        )
        .unwrap();
        Arc::new(Chunk::new(sequence, sequence, batch))
    };
    const BUFFERED: i64 = 10;
    let per_file = (POINTS - BUFFERED) / FILES;
    for f in 0..FILES {
        let chunk = points(f * per_file, (f + 1) * per_file, f as u64 + 1);
        persist(&catalog, &store, "i1", f as u64 + 1, chunk).await;
    }
    let buffered = vec![points(FILES * per_file, POINTS, FILES as u64 + 1)];
    let with = Querier::new(
        Arc::clone(&catalog),
        store.clone(),
        Arc::new(Buffered(buffered.clone())),
    );
    let without = Querier::new(catalog, store, Arc::new(Buffered(buffered))).with_cache_bytes(0);
    let statements = [
        "SHOW TAG VALUES FROM m WITH KEY = host",
        "SELECT last(x) FROM m GROUP BY host",
    ];
    for text in statements {
        let started = Instant::now();
        let scanned = answer(&without, text).await;
        let scan = started.elapsed();
        let started = Instant::now();
        let first = answer(&with, text).await;
        let cold = started.elapsed();
        let mut warm: Vec<Duration> = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            assert_eq!(answer(&with, text).await, scanned, "{text}");
            warm.push(started.elapsed());
        }
        warm.sort();
        assert_eq!(first, scanned, "{text}");
        println!(
            "{text}: scan {scan:.1?}, summaries first {cold:.1?}, then median {:.1?} ({:.0}× faster than the scan)",
            warm[2],
            scan.as_secs_f64() / warm[2].as_secs_f64()
        );
    }
}
