//! Query latency over a generated corpus: `cpu` with 1,000 hosts, one point per
//! host per minute for one day (1.44 M points), 23 hours in hourly Parquet
//! snapshots and the last hour in an ingester buffer (the querier path, minus
//! the network hop). Each query is planned, run and collected; the median of
//! several runs is printed.
//!
//! The same questions are then asked in InfluxQL, as Grafana's InfluxQL data
//! source asks them, and timed the same way (planning, running, and shaping
//! the 1.x answer), so the two paths can be compared in one run.
//!
//! `cargo bench --bench query` runs the full corpus; under `cargo test` (no
//! `--bench` argument) a small corpus runs once, as a smoke test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Float64Array, RecordBatch, StringDictionaryBuilder, TimestampNanosecondArray};
use arrow::datatypes::Int32Type;
use futures::TryStreamExt;
use inflow::auth::Principal;
use inflow::catalog::{Catalog, DbRef, SchemaLimits, TableColumns};
use inflow::influxql;
use inflow::ingester::buffer::Chunk;
use inflow::ingester::read::{BufferFilter, buffered_batches};
use inflow::ingester::snapshot::{day_files, merge, target_schema};
use inflow::query::{BufferSource, Querier, QueryError};
use inflow::schema::{ColumnType, arrow_schema};
use inflow::store::{Put, Store};

/// 2025-01-01T00:00:00Z
const START_NS: i64 = 1_735_689_600_000_000_000;
const MINUTE_NS: i64 = 60_000_000_000;

#[derive(Debug)]
struct Buffered(Vec<Arc<Chunk>>);

#[tonic::async_trait]
impl BufferSource for Buffered {
    async fn fetch(
        &self,
        _: DbRef<'_>,
        _: &str,
        filter: &BufferFilter,
    ) -> Result<Vec<RecordBatch>, QueryError> {
        buffered_batches(&self.0, filter)
            .map(|(_, b)| b)
            .map_err(|e| QueryError::Internal(e.to_string()))
    }
}

const COLUMNS: [(&str, ColumnType); 6] = [
    ("hostname", ColumnType::Tag),
    ("region", ColumnType::Tag),
    ("usage_user", ColumnType::Float),
    ("usage_system", ColumnType::Float),
    ("usage_idle", ColumnType::Float),
    ("time", ColumnType::Time),
];

/// One hour of points: every host, every minute.
fn hour(hosts: usize, h: i64) -> RecordBatch {
    let mut hostname = StringDictionaryBuilder::<Int32Type>::new();
    let mut region = StringDictionaryBuilder::<Int32Type>::new();
    let (mut user, mut system, mut idle, mut time) = (vec![], vec![], vec![], vec![]);
    for m in 0..60 {
        for host in 0..hosts {
            hostname.append_value(format!("host_{host}"));
            region.append_value(format!("region_{}", host % 10));
            let x = ((host as i64 * 7919 + (h * 60 + m) * 104_729) % 1000) as f64 / 10.0;
            user.push(x);
            system.push(100.0 - x);
            idle.push(x / 2.0);
            time.push(START_NS + (h * 60 + m) * MINUTE_NS);
        }
    }
    RecordBatch::try_new(
        arrow_schema(COLUMNS),
        vec![
            Arc::new(hostname.finish()),
            Arc::new(region.finish()),
            Arc::new(Float64Array::from(user)),
            Arc::new(Float64Array::from(system)),
            Arc::new(Float64Array::from(idle)),
            Arc::new(TimestampNanosecondArray::from(time)),
        ],
    )
    .expect("corpus batch")
}

async fn corpus(dir: &std::path::Path, hosts: usize, hours: i64) -> Querier {
    let store = Store::local(dir).expect("store");
    let catalog = Catalog::load(store.clone()).await.expect("catalog");
    catalog.create_database("bench").await.expect("database");
    let db = catalog
        .ensure_schema(
            "bench",
            &[TableColumns {
                table: "cpu",
                columns: COLUMNS.to_vec(),
            }],
            SchemaLimits::UNLIMITED,
        )
        .await
        .expect("schema");
    let table = db.table("cpu").expect("table").clone();
    let mut buffered = Vec::new();
    for h in 0..hours {
        let chunk = Arc::new(Chunk::new(h as u64, h as u64 + 1, hour(hosts, h)));
        if h == hours - 1 {
            buffered.push(chunk);
            continue;
        }
        let schema = target_schema(
            inflow::catalog::table_columns(&table),
            &[Arc::clone(&chunk)],
        );
        let merged = merge(&schema, &[chunk]).expect("merge");
        let mut files = Vec::new();
        for f in day_files(&merged).expect("parquet") {
            let path = format!(
                "{}/{}/{}/bench-{h:05}.parquet",
                db.id, table.id, f.partition
            );
            store
                .put(&path.as_str().into(), f.bytes.clone(), Put::Overwrite)
                .await
                .expect("put");
            files.push(f.entry(path, db.id, table.id));
        }
        catalog
            .register_files("bench-ingester", h as u64, 0, files)
            .await
            .expect("register");
    }
    Querier::new(catalog, store, Arc::new(Buffered(buffered)))
}

async fn run(querier: &Querier, sql: &str) -> (Duration, usize) {
    let started = Instant::now();
    let planned = querier.plan("bench", sql).await.expect("plans");
    let batches: Vec<RecordBatch> = planned
        .execute()
        .await
        .expect("runs")
        .try_collect()
        .await
        .expect("collects");
    (
        started.elapsed(),
        batches.iter().map(|b| b.num_rows()).sum(),
    )
}

async fn run_influxql(querier: &Querier, text: &str) -> (Duration, usize) {
    let started = Instant::now();
    let principal = Principal::admin();
    let ctx = influxql::Context {
        querier,
        principal: &principal,
        database: Some("bench"),
        now: inflow::clock::Clock::now_ns(&inflow::clock::SystemClock),
    };
    let query = influxql::parse(text).expect("parses");
    let results = influxql::run(&ctx, &query).await.expect("runs");
    let rows = results
        .iter()
        .inspect(|r| assert_eq!(r.error, None, "{text}"))
        .flat_map(|r| &r.series)
        .map(|s| s.values.len())
        .sum();
    (started.elapsed(), rows)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ts(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    chrono::DateTime::from_timestamp(secs, 0)
        .expect("in range")
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (hosts, hours, runs) = if full { (1000, 24, 7) } else { (20, 3, 1) };
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let querier = corpus(dir.path(), hosts, hours).await;
    let end = START_NS + hours * 60 * MINUTE_NS;
    println!(
        "corpus: {} points ({hosts} hosts × {} minutes), {} Parquet files + 1 buffered hour, built in {:.1?}",
        hosts as i64 * hours * 60,
        hours * 60,
        hours - 1,
        started.elapsed()
    );
    let bin = |from: i64| {
        format!(
            "SELECT date_bin(INTERVAL '1 minute', time) AS t, hostname, avg(usage_user) AS u \
             FROM cpu WHERE time >= '{}' AND time < '{}' GROUP BY 1, 2",
            ts(from),
            ts(end)
        )
    };
    let queries = [
        ("1m avg per host, last hour", bin(end - 60 * MINUTE_NS)),
        ("1m avg per host, whole day", bin(START_NS)),
        (
            "one host, whole day",
            "SELECT date_bin(INTERVAL '1 hour', time) AS t, avg(usage_user) AS u \
             FROM cpu WHERE hostname = 'host_7' GROUP BY 1"
                .to_string(),
        ),
        (
            "last point per host",
            "SELECT hostname, last_value(usage_user ORDER BY time) AS u, max(time) AS t \
             FROM cpu GROUP BY hostname"
                .to_string(),
        ),
    ];
    let mut sql_medians = Vec::new();
    for (name, sql) in &queries {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..runs {
            let (t, n) = run(&querier, sql).await;
            times.push(t);
            rows = n;
        }
        let m = median(times);
        sql_medians.push(m);
        println!("{name}: median {m:.1?} over {runs} runs ({rows} rows)");
        assert!(rows > 0, "{name} returned nothing");
    }

    let window = |from: i64| {
        format!(
            "SELECT mean(usage_user) FROM cpu WHERE time >= '{}Z' AND time < '{}Z' \
             GROUP BY time(1m), hostname fill(none)",
            ts(from),
            ts(end)
        )
    };
    let influxql_queries = [
        window(end - 60 * MINUTE_NS),
        window(START_NS),
        format!(
            "SELECT mean(usage_user) FROM cpu WHERE hostname = 'host_7' AND time >= '{}Z' \
             AND time < '{}Z' GROUP BY time(1h)",
            ts(START_NS),
            ts(end)
        ),
        "SELECT last(usage_user) FROM cpu GROUP BY hostname".to_string(),
    ];
    for (((name, _), text), sql_median) in queries.iter().zip(&influxql_queries).zip(&sql_medians) {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..runs {
            let (t, n) = run_influxql(&querier, text).await;
            times.push(t);
            rows = n;
        }
        let m = median(times);
        println!(
            "InfluxQL {name}: median {m:.1?} over {runs} runs ({rows} rows), {:.2}× the SQL median",
            m.as_secs_f64() / sql_median.as_secs_f64()
        );
        assert!(rows > 0, "InfluxQL {name} returned nothing");
    }
}
