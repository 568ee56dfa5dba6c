//! A grouped aggregate's first stage over runs of rows instead of rows.
//!
//! Files are sorted by (tags, time), so the rows of one group of a dashboard
//! question ("host_42, 10:20 to 10:30") arrive next to each other: 60 rows
//! of a 10 s series in a 10 minute window. DataFusion's partial aggregate
//! still hashes and looks up every one of them; for "all hosts, mean per
//! 10 m by host, last day" that was 8.64 M lookups into a table of 145 k
//! groups, two thirds of the question's time. DataFusion's own ordered
//! aggregation does not apply: it needs the group keys to be a prefix of an
//! order the plan declares, and `(host, window)` over files sorted by
//! `(cpu, host, rack, region, time)` never is (nor is a partition reading
//! several files, which declares no order at all).
//!
//! [`FoldRuns`] rewrites each partial `AggregateExec` whose aggregates have
//! group accumulators into [`RunFoldExec`] under a `PartialReduce` stage:
//!
//! ```text
//!  AggregateExec Partial            AggregateExec PartialReduce  (hashes runs' states)
//!    input                 ─►         RunFoldExec                 (a state per run)
//!                                       input
//! ```
//!
//! `RunFoldExec` finds the runs of equal group keys in each batch by
//! comparing neighbours (no hashing) and feeds each aggregate's own
//! `GroupsAccumulator` with the run number as group index, so its output is
//! the partial states DataFusion's partial stage would emit, a row per run
//! instead of per group. `PartialReduce` then merges the runs of a group as
//! the final stage merges partitions.
//!
//! Most keys are not computed per row, only on each run's first row:
//! - A key computed from string columns only (a tag: SQL's `GROUP BY host`,
//!   InfluxQL's `coalesce(host, '')`): neighbours with the same strings
//!   there have the same key, so runs are found by comparing those columns
//!   (a dictionary's integer keys, where a column is one), not the key.
//! - A window, `date_bin(interval, time, origin)` with a fixed interval: a
//!   row stays in its neighbour's window while its time lies in that
//!   window's `[start, end)`, two comparisons; the window's bounds are
//!   computed again (one division) only where a run ends. `date_bin` itself
//!   gives each run's value.
//! - Other keys are computed for every row and compared with their
//!   neighbours.
//!
//! A projection right under the aggregate is read through: DataFusion
//! computes a key's shared parts there (`CAST(host AS Utf8View)` for
//! InfluxQL's tag keys, which the `CASE` of `coalesce` uses twice) for
//! every row, which the fold needs only per run, so the fold evaluates the
//! projection's expressions itself, over the projection's input.
//!
//! Exact whatever the order: a run is part of one group, and a group split
//! over several runs (rows apart, a run cut by a batch's end) is merged by
//! the stages above, as a group's states from several partitions always
//! are. Order only decides how many rows reach the hash table. Rows in no
//! useful order (a key that changes every row) make `RunFoldExec` emit a
//! state per row, which `PartialReduce` hashes as the partial stage did:
//! the price is the neighbour comparison and the states' arrays.

use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, RecordBatch,
    TimestampNanosecondArray, UInt32Array,
};
use arrow::compute::kernels::boolean::or;
use arrow::compute::kernels::cmp::distinct;
use arrow::compute::{take, take_record_batch};
use arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit, TimestampNanosecondType};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::EmitTo;
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::projection::update_expr;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_expr_common::physical_expr::is_volatile;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{
    AggregateExec, AggregateMode, PhysicalGroupBy, aggregate_expressions, evaluate_many,
};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, InputOrderMode,
    Partitioning, PlanProperties,
};
use futures::StreamExt;

/// The physical optimizer rule putting [`RunFoldExec`] under partial
/// aggregates (appended after DataFusion's own rules).
#[derive(Debug, Default)]
pub struct FoldRuns;

impl PhysicalOptimizerRule for FoldRuns {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            Ok(match fold_runs(aggregate)? {
                Some(folded) => Transformed::yes(folded),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "fold_runs"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `PartialReduce` over [`RunFoldExec`] in place of a partial `aggregate`,
/// or `None` when it is not a plain grouped partial aggregate.
fn fold_runs(aggregate: &AggregateExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let group_by = aggregate.group_expr();
    let input_schema = aggregate.input().schema();
    let foldable = *aggregate.mode() == AggregateMode::Partial
        && group_by.is_single()
        && !group_by.expr().is_empty()
        && aggregate.limit_options().is_none()
        && *aggregate.input_order_mode() == InputOrderMode::Linear
        && !group_by.expr().iter().any(|(e, _)| is_volatile(e))
        && aggregate
            .aggr_expr()
            .iter()
            .all(|a| a.groups_accumulator_supported() && !a.is_distinct())
        // A bare column that is not a string (`time`, a numeric field) is a
        // key that changes on most rows: runs of one, nothing to fold. A
        // string is a tag, or a tag's value computed below the aggregate.
        && group_by.expr().iter().all(|(expr, _)| {
            expr.downcast_ref::<Column>()
                .is_none_or(|c| is_string(&input_schema, c.index()))
        });
    if !foldable {
        return Ok(None);
    }
    let fold = Arc::new(RunFoldExec::try_new(aggregate)?);
    let reduce = AggregateExec::try_new(
        AggregateMode::PartialReduce,
        group_by.as_final(),
        aggregate.aggr_expr().to_vec(),
        vec![None; aggregate.aggr_expr().len()],
        fold,
        aggregate.input_schema(),
    )?;
    Ok(Some(Arc::new(reduce)))
}

/// A partial aggregate's output (group keys, then each aggregate's state)
/// with a row per run of equal keys in each input batch.
#[derive(Debug)]
pub struct RunFoldExec {
    input: Arc<dyn ExecutionPlan>,
    group_by: PhysicalGroupBy,
    /// How each group key's runs are found.
    keys: Arc<[Key]>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Each aggregate's arguments (with its ordering columns), on the input.
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl RunFoldExec {
    /// The fold doing the work of the partial `aggregate`, over its input,
    /// or over that input's input when it is a projection (see the module
    /// doc).
    pub fn try_new(aggregate: &AggregateExec) -> Result<Self> {
        let mut input = Arc::clone(aggregate.input());
        let mut group_by = aggregate.group_expr().clone();
        let mut arguments =
            aggregate_expressions(aggregate.aggr_expr(), &AggregateMode::Partial, 0)?;
        let mut filters = aggregate.filter_expr().to_vec();
        if let Some(projection) = input.downcast_ref::<ProjectionExec>() {
            let exprs = projection.expr();
            let through = |e: &Arc<dyn PhysicalExpr>| update_expr(e, exprs, true);
            let keys: Option<Vec<_>> = group_by
                .expr()
                .iter()
                .map(|(e, name)| Ok(through(e)?.map(|e| (e, name.clone()))))
                .collect::<Result<_>>()?;
            let args: Option<Vec<Vec<_>>> = arguments
                .iter()
                .map(|a| a.iter().map(through).collect::<Result<Option<Vec<_>>>>())
                .collect::<Result<Option<_>>>()?;
            let filtered: Option<Vec<Option<_>>> = filters
                .iter()
                .map(|f| match f {
                    Some(f) => Ok(through(f)?.map(Some)),
                    None => Ok(Some(None)),
                })
                .collect::<Result<Option<_>>>()?;
            let volatile = exprs.iter().any(|p| is_volatile(&p.expr));
            if let (Some(keys), Some(args), Some(filtered), false) =
                (keys, args, filtered, volatile)
            {
                group_by = PhysicalGroupBy::new_single(keys);
                arguments = args;
                filters = filtered;
                input = Arc::clone(projection.input());
            }
        }
        Self::with_input(
            input,
            group_by,
            aggregate.aggr_expr().to_vec(),
            arguments,
            filters,
            aggregate.schema(),
        )
    }

    fn with_input(
        input: Arc<dyn ExecutionPlan>,
        group_by: PhysicalGroupBy,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
        filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
        schema: SchemaRef,
    ) -> Result<Self> {
        let keys = group_by
            .expr()
            .iter()
            .map(|(e, _)| Key::of(e, &input.schema()))
            .collect();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Incremental,
            input.boundedness(),
        );
        Ok(Self {
            input,
            group_by,
            keys,
            aggregates,
            arguments,
            filters,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DisplayAs for RunFoldExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self
            .group_by
            .expr()
            .iter()
            .map(|(_, name)| name.as_str())
            .collect();
        let aggregates: Vec<&str> = self.aggregates.iter().map(|a| a.name()).collect();
        let runs: Vec<&str> = self
            .keys
            .iter()
            .map(|k| match k.runs {
                Runs::Tags(_) => "tags",
                Runs::Window { .. } => "window",
                Runs::Values => "values",
            })
            .collect();
        write!(
            f,
            "RunFoldExec: gby=[{}], aggr=[{}], runs=[{}]",
            keys.join(", "),
            aggregates.join(", "),
            runs.join(", ")
        )
    }
}

impl ExecutionPlan for RunFoldExec {
    fn name(&self) -> &str {
        "RunFoldExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let exprs = self
            .group_by
            .expr()
            .iter()
            .map(|(e, _)| e)
            .chain(self.arguments.iter().flatten())
            .chain(self.filters.iter().flatten());
        for expr in exprs {
            if f(expr)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let child = super::only_child("RunFoldExec", children)?;
        Ok(Arc::new(Self::with_input(
            child,
            self.group_by.clone(),
            self.aggregates.clone(),
            self.arguments.clone(),
            self.filters.clone(),
            self.schema(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let fold = Fold {
            keys: Arc::clone(&self.keys),
            aggregates: self.aggregates.clone(),
            arguments: self.arguments.clone(),
            filters: self.filters.clone(),
            schema: self.schema(),
            metrics: BaselineMetrics::new(&self.metrics, partition),
        };
        let stream = input.filter_map(move |batch| {
            let out = batch.and_then(|b| fold.batch(&b)).transpose();
            std::future::ready(out)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// A group key, and how its runs are found.
#[derive(Debug)]
struct Key {
    expr: Arc<dyn PhysicalExpr>,
    runs: Runs,
}

/// How a key's runs are found.
#[derive(Debug)]
enum Runs {
    /// The key reads these string (or dictionary) columns and no other:
    /// rows with equal values there have equal group keys.
    Tags(Vec<usize>),
    /// `date_bin` of a nanosecond timestamp column over a fixed `stride`
    /// (nanoseconds, positive) from `origin`.
    Window {
        time: usize,
        stride: i128,
        origin: i128,
    },
    /// The key is computed for every row and compared.
    Values,
}

impl Key {
    fn of(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Self {
        let columns: Vec<usize> = collect_columns(expr).iter().map(|c| c.index()).collect();
        // Equal strings are equal bytes, so any (non-volatile) key of them
        // is equal too; not so for floats (-0.0 and 0.0 compare equal).
        let runs = if columns.iter().all(|&c| is_string(schema, c)) {
            Runs::Tags(columns)
        } else {
            window(expr, schema).unwrap_or(Runs::Values)
        };
        Self {
            expr: Arc::clone(expr),
            runs,
        }
    }
}

/// Whether column `c` of `schema` holds strings, or a dictionary (whose
/// neighbours compare by their integer keys).
fn is_string(schema: &Schema, c: usize) -> bool {
    matches!(
        schema.fields().get(c).map(|f| f.data_type()),
        Some(
            DataType::Dictionary(_, _) | DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
        )
    )
}

/// `Runs::Window` for `date_bin(stride, time[, origin])` with a literal
/// stride of days and nanoseconds (months vary in length) and a literal
/// origin, over a nanosecond timestamp column.
fn window(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<Runs> {
    let call = expr.downcast_ref::<ScalarFunctionExpr>()?;
    if call.name() != "date_bin" {
        return None;
    }
    let literal = |i: usize| {
        call.args()
            .get(i)
            .and_then(|a| a.downcast_ref::<Literal>())
            .map(Literal::value)
    };
    const NANOS_PER_DAY: i128 = 86_400_000_000_000;
    let stride = match literal(0)? {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            i128::from(v.days) * NANOS_PER_DAY + i128::from(v.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            i128::from(v.days) * NANOS_PER_DAY + i128::from(v.milliseconds) * 1_000_000
        }
        _ => return None,
    };
    let time = call.args().get(1)?.downcast_ref::<Column>()?.index();
    if !matches!(
        schema.fields().get(time).map(|f| f.data_type()),
        Some(DataType::Timestamp(TimeUnit::Nanosecond, _))
    ) {
        return None;
    }
    let origin = match call.args().len() {
        2 => 0,
        3 => match literal(2)? {
            ScalarValue::TimestampNanosecond(Some(origin), _) => i128::from(*origin),
            _ => return None,
        },
        _ => return None,
    };
    (stride > 0).then_some(Runs::Window {
        time,
        stride,
        origin,
    })
}

/// Where each row's window differs from the row before's (row i + 1 at i):
/// a row in its neighbour's `[start, end)` is in the same window; bounds
/// are computed (floor division, as `date_bin`) only where a run starts.
/// Null times are a window of their own.
fn window_changes(times: &TimestampNanosecondArray, stride: i128, origin: i128) -> BooleanArray {
    let rows = times.len();
    let mut changes = BooleanBufferBuilder::new(rows.saturating_sub(1));
    let values = times.values();
    let mut previous: Option<(i128, i128)> = None;
    for (i, &t) in values.iter().enumerate() {
        let now = match times.is_valid(i) {
            true => {
                let t = i128::from(t);
                match previous {
                    Some((start, end)) if start <= t && t < end => previous,
                    _ => {
                        let start = origin + (t - origin).div_euclid(stride) * stride;
                        Some((start, start + stride))
                    }
                }
            }
            false => None,
        };
        if i > 0 {
            changes.append(now != previous);
        }
        previous = now;
    }
    BooleanArray::new(changes.finish(), None)
}

/// What one partition's stream folds with.
struct Fold {
    keys: Arc<[Key]>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    schema: SchemaRef,
    metrics: BaselineMetrics,
}

impl Fold {
    /// A row per run of equal keys in `batch`: the keys, then each
    /// aggregate's partial state over the run. `None` for an empty batch.
    fn batch(&self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(None);
        }
        let timer = self.metrics.elapsed_compute().timer();
        // Where a row's key differs from the row before's (row i + 1 at i).
        let mut changes: Option<BooleanArray> = None;
        let mark = |changes: &mut Option<BooleanArray>, column: &dyn Array| {
            let changed = distinct(&column.slice(1, rows - 1), &column.slice(0, rows - 1))?;
            merge(changes, changed)
        };
        let mut computed: Vec<Option<ArrayRef>> = Vec::with_capacity(self.keys.len());
        for key in self.keys.iter() {
            match &key.runs {
                Runs::Tags(tags) => {
                    for &t in tags {
                        let column = batch.column(t);
                        match column.as_any_dictionary_opt() {
                            Some(dictionary) => mark(&mut changes, dictionary.keys())?,
                            None => mark(&mut changes, column.as_ref())?,
                        }
                    }
                    computed.push(None);
                }
                Runs::Window {
                    time,
                    stride,
                    origin,
                } => {
                    let times = batch
                        .column(*time)
                        .as_primitive::<TimestampNanosecondType>();
                    merge(&mut changes, window_changes(times, *stride, *origin))?;
                    computed.push(None);
                }
                Runs::Values => {
                    let values = key.expr.evaluate(batch)?.into_array(rows)?;
                    mark(&mut changes, values.as_ref())?;
                    computed.push(Some(values));
                }
            }
        }
        let mut starts = vec![0u32];
        if let Some(changes) = &changes {
            starts.extend(changes.values().set_indices().map(|i| i as u32 + 1));
        }
        let runs = starts.len();
        let mut run_of_row = Vec::with_capacity(rows);
        for (run, window) in starts.windows(2).enumerate() {
            run_of_row.extend(std::iter::repeat_n(run, (window[1] - window[0]) as usize));
        }
        run_of_row.extend(std::iter::repeat_n(
            runs - 1,
            rows - starts[runs - 1] as usize,
        ));
        let starts = UInt32Array::from(starts);
        // Keys not computed per row are computed on the runs' first rows.
        let firsts = match computed.iter().any(Option::is_none) {
            true => take_record_batch(batch, &starts)?,
            false => RecordBatch::new_empty(batch.schema()),
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (key, values) in self.keys.iter().zip(computed) {
            columns.push(match values {
                Some(values) => take(values.as_ref(), &starts, None)?,
                None => key.expr.evaluate(&firsts)?.into_array(runs)?,
            });
        }
        let arguments = evaluate_many(&self.arguments, batch)?;
        for ((aggregate, values), filter) in
            self.aggregates.iter().zip(&arguments).zip(&self.filters)
        {
            let filter = match filter {
                Some(f) => Some(f.evaluate(batch)?.into_array(rows)?),
                None => None,
            };
            let filter: Option<&BooleanArray> = filter.as_ref().map(|f| f.as_boolean());
            let mut accumulator = aggregate.create_groups_accumulator()?;
            accumulator.update_batch(values, &run_of_row, filter, runs)?;
            columns.extend(accumulator.state(EmitTo::All)?);
        }
        let out = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        timer.done();
        self.metrics.record_output(out.num_rows());
        Ok(Some(out))
    }
}

/// `changes` or'ed with `changed` (or `changed`, the first).
fn merge(changes: &mut Option<BooleanArray>, changed: BooleanArray) -> Result<()> {
    *changes = Some(match changes.take() {
        Some(c) => or(&c, &changed)?,
        None => changed,
    });
    Ok(())
}

#[cfg(test)]
mod tests;
