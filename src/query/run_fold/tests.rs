use std::sync::Arc;

use arrow::array::{DictionaryArray, Float64Array, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, TimeUnit};
use arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::{collect, displayable};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::*;

const S: i64 = 1_000_000_000;

/// `host` (a tag), `time` and `x`: host `h`'s point `i` at `i`·10 s, `x`
/// missing on every seventh, the hosts one after the other, split in
/// batches of `batch` rows.
fn partition(hosts: &[u32], points: i64, batch: usize) -> Vec<RecordBatch> {
    let schema = schema();
    let mut host = Vec::new();
    let mut time = Vec::new();
    let mut x = Vec::new();
    for &h in hosts {
        for i in 0..points {
            host.push(format!("h{h}"));
            time.push(i * 10 * S);
            x.push((i % 7 != 3).then(|| f64::from(h) * 100.0 + (i % 13) as f64));
        }
    }
    let host: DictionaryArray<Int32Type> = host.iter().map(|h| Some(h.as_str())).collect();
    let all = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(host),
            Arc::new(TimestampNanosecondArray::from(time)),
            Arc::new(Float64Array::from(x)),
        ],
    )
    .unwrap();
    (0..all.num_rows())
        .step_by(batch)
        .map(|s| all.slice(s, batch.min(all.num_rows() - s)))
        .collect()
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "host",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        ),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        ),
        Field::new("x", DataType::Float64, true),
    ]))
}

/// A two-partition session over `partitions`, with or without the rule.
fn session(partitions: Vec<Vec<RecordBatch>>, fold: bool) -> SessionContext {
    session_over(schema(), partitions, fold)
}

/// [`session`] over batches of `schema`.
fn session_over(
    schema: SchemaRef,
    partitions: Vec<Vec<RecordBatch>>,
    fold: bool,
) -> SessionContext {
    let config = SessionConfig::new().with_target_partitions(2);
    let mut builder = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features();
    if fold {
        builder = builder.with_physical_optimizer_rule(Arc::new(FoldRuns));
    }
    let ctx = SessionContext::new_with_state(builder.build());
    let table = MemTable::try_new(schema, partitions).unwrap();
    ctx.register_table("cpu", Arc::new(table)).unwrap();
    ctx
}

/// The physical plan of `sql`.
async fn plan(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
    ctx.sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap()
}

/// The answer as text, and the rows the folds emitted (None: no fold).
async fn answer(ctx: &SessionContext, sql: &str) -> (String, Option<usize>) {
    let plan = plan(ctx, sql).await;
    let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
    let text = pretty_format_batches(&batches).unwrap().to_string();
    let mut folded = None;
    let mut stack = vec![plan];
    while let Some(node) = stack.pop() {
        if node.name() == "RunFoldExec" {
            let rows = node.metrics().and_then(|m| m.output_rows()).unwrap_or(0);
            *folded.get_or_insert(0) += rows;
        }
        stack.extend(node.children().into_iter().cloned());
    }
    (text, folded)
}

const WINDOWED: &str = "SELECT host, date_bin(interval '60 seconds', time) AS w, \
    avg(x), sum(x), count(x), min(x), max(x), count(*), \
    first_value(x ORDER BY time) FILTER (WHERE x IS NOT NULL) AS f \
    FROM cpu GROUP BY host, w ORDER BY host, w";

/// Hosts sorted in each partition (as files are), batches cutting runs:
/// the answer is DataFusion's own, and the hash table sees a row per run
/// (a minute of a host: 6 points) instead of one per point.
#[tokio::test]
async fn runs_fold_before_hashing_with_the_same_answer() {
    let partitions = vec![partition(&[1, 2, 3], 120, 50), partition(&[4, 5], 120, 64)];
    let rows = 5 * 120;
    let (_, folded) = folded_as_datafusion(schema(), partitions, WINDOWED).await;
    // 20 minutes of 5 hosts is 100 runs, plus a few cut by batch ends.
    assert!((100..=120).contains(&folded), "{folded} of {rows} rows");
}

/// Rows in no order (a host's minute never two rows in a row) fold
/// nothing, and the answer is still DataFusion's.
#[tokio::test]
async fn rows_in_no_order_give_the_same_answer() {
    let mut shuffled = Vec::new();
    for b in partition(&[1, 2, 3, 4], 60, 240) {
        // Interleave the hosts: rows i, i+60, i+120, i+180, then i+1 ...
        let idx: UInt32Array = (0..60u32)
            .flat_map(|i| (0..4u32).map(move |h| h * 60 + i))
            .collect();
        let columns = b
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &idx, None).unwrap())
            .collect();
        shuffled.push(RecordBatch::try_new(b.schema(), columns).unwrap());
    }
    let partitions = vec![shuffled, partition(&[9], 30, 7)];
    let (_, folded) = folded_as_datafusion(schema(), partitions, WINDOWED).await;
    // One run per row of the shuffled hosts; host 9's 5 minutes, cut by
    // its batches' ends up to 4 times.
    assert!((245..=249).contains(&folded), "{folded}");
}

/// Null keys are a group of their own, as in DataFusion's aggregate.
#[tokio::test]
async fn null_keys_fold_as_a_group() {
    let host: DictionaryArray<Int32Type> = vec![None, None, Some("a"), None, Some("a")]
        .into_iter()
        .collect();
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(host),
            Arc::new(TimestampNanosecondArray::from(vec![
                0,
                S,
                2 * S,
                3 * S,
                4 * S,
            ])),
            Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0, 5.0])),
        ],
    )
    .unwrap();
    let sql = "SELECT host, sum(x), count(*) FROM cpu GROUP BY host ORDER BY host";
    let partitions = vec![vec![batch.clone()], vec![batch]];
    let (got, folded) = folded_as_datafusion(schema(), partitions, sql).await;
    // The null host's row: 1 + 2 + 4 in each partition.
    let null_row = got.lines().any(|l| {
        let cells: Vec<&str> = l.split('|').map(str::trim).collect();
        cells == ["", "", "14.0", "6", ""]
    });
    assert!(null_row, "{got}");
    assert_eq!(folded, 8);
}

/// What the rule leaves alone: no keys, a bare key that is not a string.
#[tokio::test]
async fn aggregates_without_runs_are_left_alone() {
    let partitions = vec![partition(&[1, 2], 30, 16), partition(&[3], 30, 16)];
    let ctx = session(partitions, true);
    for sql in [
        "SELECT sum(x) FROM cpu",
        "SELECT time, sum(x) FROM cpu GROUP BY time",
        "SELECT x, count(*) FROM cpu GROUP BY x",
    ] {
        let (_, folded) = answer(&ctx, sql).await;
        assert_eq!(folded, None, "{sql}");
    }
    let text = explain(&ctx, "SELECT host, sum(x) FROM cpu GROUP BY host").await;
    assert!(text.contains("mode=PartialReduce"), "{text}");
    assert!(
        text.contains("RunFoldExec: gby=[host], aggr=[sum(cpu.x)], runs=[tags]"),
        "{text}"
    );
}

/// Every querier's session folds runs, after DataFusion's rules.
#[test]
fn the_base_session_folds_runs_last() {
    let runtime = Arc::new(datafusion::execution::runtime_env::RuntimeEnv::default());
    let rules = crate::query::session::BaseSession::new(runtime).physical_rules();
    assert_eq!(
        rules.last().map(String::as_str),
        Some("fold_runs"),
        "{rules:?}"
    );
}

/// The answer with the rule, asserted equal to DataFusion's own without
/// it (where nothing folds), and the rows the folds emitted.
async fn folded_as_datafusion(
    schema: SchemaRef,
    partitions: Vec<Vec<RecordBatch>>,
    sql: &str,
) -> (String, usize) {
    let unfolded = session_over(Arc::clone(&schema), partitions.clone(), false);
    let (expected, none) = answer(&unfolded, sql).await;
    assert_eq!(none, None, "without the rule nothing folds");
    let (got, folded) = answer(&session_over(schema, partitions, true), sql).await;
    assert_eq!(got, expected, "{sql}");
    (got, folded.expect("the plan folds runs"))
}

/// The plan's text.
async fn explain(ctx: &SessionContext, sql: &str) -> String {
    displayable(plan(ctx, sql).await.as_ref())
        .indent(true)
        .to_string()
}

/// A tag and a window find their runs without computing the key per row,
/// also through a projection DataFusion puts under the aggregate for a
/// part the keys share (as it does for InfluxQL's tag keys).
#[tokio::test]
async fn tags_and_windows_find_runs_without_computing_keys() {
    let partitions = vec![partition(&[1, 2, 3], 120, 50), partition(&[4, 5], 120, 64)];
    let ctx = session(partitions.clone(), true);
    let text = explain(&ctx, WINDOWED).await;
    assert!(text.contains("runs=[tags, window]"), "{text}");
    let shared = "SELECT coalesce(host, '') || '-a' AS a, coalesce(host, '') || '-b' AS b, \
        date_bin(interval '5 minutes', time, TIMESTAMP '1970-01-01T00:00:07Z') AS w, \
        avg(x), count(x) FROM cpu GROUP BY a, b, w ORDER BY a, b, w";
    let without = explain(&session(partitions.clone(), false), shared).await;
    assert!(without.contains("__common_expr"), "{without}");
    let text = explain(&ctx, shared).await;
    assert!(text.contains("runs=[tags, tags, window]"), "{text}");
    let under = text
        .lines()
        .skip_while(|l| !l.contains("RunFoldExec"))
        .nth(1)
        .unwrap_or_default();
    assert!(under.contains("DataSourceExec"), "{text}");
    let (_, folded) = folded_as_datafusion(schema(), partitions, shared).await;
    // 20 minutes of 5 hosts in 5 minute windows from :07 is 25 runs, plus
    // a few cut by batch ends.
    assert!((25..=40).contains(&folded), "{folded}");
}

/// `window_changes` marks exactly where `date_bin` itself gives a row a
/// value other than the row before's: exact bounds, times before the
/// origin, strides of days, nulls, times in no order.
#[test]
fn window_changes_are_where_date_bin_changes() {
    use datafusion::logical_expr::ColumnarValue;
    let d = 86_400 * S;
    let times = TimestampNanosecondArray::from(vec![
        Some(-2 * d - 1),
        Some(-2 * d),
        Some(-d - 7 * S),
        None,
        None,
        Some(-1),
        Some(0),
        Some(59 * S),
        Some(60 * S - 1),
        Some(60 * S),
        Some(7 * S),
        Some(7 * S - 1),
        None,
        Some(d + 6 * S),
        Some(d + 7 * S),
        Some(3 * d),
        Some(i64::MAX - 1),
        Some(i64::MIN + 1),
    ]);
    let date_bin = datafusion::functions::datetime::date_bin();
    for (stride, origin) in [
        (60 * S, 0),
        (60 * S, 7 * S),
        (60 * S, -7 * S),
        (d, 7 * S),
        (2 * d + 1, 3 * d),
        (1, 0),
    ] {
        // Where date_bin cannot place a row it fails; compare only rows it
        // places.
        let placeable: Vec<usize> = (0..times.len())
            .filter(|&i| {
                times.is_null(i) || {
                    let t = i128::from(times.value(i));
                    let start = i128::from(origin)
                        + (t - i128::from(origin)).div_euclid(i128::from(stride))
                            * i128::from(stride);
                    i64::try_from(start).is_ok() && i64::try_from(t - i128::from(origin)).is_ok()
                }
            })
            .collect();
        let rows = UInt32Array::from_iter_values(placeable.iter().map(|&i| i as u32));
        let times = take(&times, &rows, None).unwrap();
        let times = times.as_primitive::<TimestampNanosecondType>();
        let args = datafusion::logical_expr::ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Scalar(ScalarValue::IntervalMonthDayNano(Some(
                    arrow::datatypes::IntervalMonthDayNano::new(0, 0, stride),
                ))),
                ColumnarValue::Array(Arc::new(times.clone())),
                ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(Some(origin), None)),
            ],
            arg_fields: vec![
                Arc::new(Field::new(
                    "s",
                    DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano),
                    true,
                )),
                Arc::new(Field::new("t", times.data_type().clone(), true)),
                Arc::new(Field::new("o", times.data_type().clone(), true)),
            ],
            number_rows: times.len(),
            return_field: Arc::new(Field::new("w", times.data_type().clone(), true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        let bins = date_bin
            .invoke_with_args(args)
            .unwrap()
            .into_array(times.len())
            .unwrap();
        let n = bins.len();
        let expected = distinct(&bins.slice(1, n - 1), &bins.slice(0, n - 1)).unwrap();
        let got = window_changes(times, i128::from(stride), i128::from(origin));
        assert_eq!(got, expected, "stride {stride}, origin {origin}");
    }
}

/// A tag read as plain strings (as a table's query schema has tags): its
/// runs come from comparing the strings, and InfluxQL's key of it,
/// `coalesce(host, '')`, is computed only on the runs' first rows.
#[tokio::test]
async fn tags_as_strings_find_runs_by_their_strings() {
    let mut fields = schema().fields().to_vec();
    fields[0] = Arc::new(Field::new("host", DataType::Utf8, true));
    let strings = Arc::new(Schema::new(fields));
    let as_strings = |batches: Vec<RecordBatch>| -> Vec<RecordBatch> {
        batches
            .into_iter()
            .map(|b| {
                let host = arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
                let columns = vec![host, Arc::clone(b.column(1)), Arc::clone(b.column(2))];
                RecordBatch::try_new(Arc::clone(&strings), columns).unwrap()
            })
            .collect()
    };
    let partitions = vec![
        as_strings(partition(&[1, 2, 3], 120, 50)),
        as_strings(partition(&[4, 5], 120, 64)),
    ];
    let sql = "SELECT coalesce(host, '') AS g0, \
        date_bin(interval '10 minutes', time, TIMESTAMP '1970-01-01T00:00:00Z') AS w, \
        avg(x), count(x) FROM cpu GROUP BY g0, w ORDER BY g0, w";
    let ctx = session_over(Arc::clone(&strings), partitions.clone(), true);
    let text = explain(&ctx, sql).await;
    assert!(text.contains("runs=[tags, window]"), "{text}");
    let (_, folded) = folded_as_datafusion(strings, partitions, sql).await;
    // 20 minutes of 5 hosts in 10 minute windows is 10 runs, plus a few
    // cut by batch ends.
    assert!((10..=24).contains(&folded), "{folded}");
}
