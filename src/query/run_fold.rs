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
//! A key computed from dictionary columns only (a tag, as SQL's `GROUP BY
//! host` has it) is not computed per row: neighbours with the same
//! dictionary keys there have the same key, so runs are found from the
//! dictionaries' integer keys and the expression is evaluated once per run.
//! Other keys (`date_bin(…, time)`, InfluxQL's `coalesce(host, '')`, which
//! DataFusion computes on strings cast from the tag) are computed for every
//! row and compared with their neighbours.
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

use arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::kernels::boolean::or;
use arrow::compute::kernels::cmp::distinct;
use arrow::compute::{take, take_record_batch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::EmitTo;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_expr_common::physical_expr::is_volatile;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{
    AggregateExec, AggregateMode, PhysicalGroupBy, aggregate_expressions, evaluate_many,
};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
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
            match expr.downcast_ref::<Column>() {
                Some(c) => matches!(
                    input_schema.fields().get(c.index()).map(|f| f.data_type()),
                    Some(
                        DataType::Dictionary(_, _)
                            | DataType::Utf8
                            | DataType::Utf8View
                            | DataType::LargeUtf8
                    )
                ),
                None => true,
            }
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
    /// The fold doing the work of the partial `aggregate`, over its input.
    pub fn try_new(aggregate: &AggregateExec) -> Result<Self> {
        Self::with_input(
            Arc::clone(aggregate.input()),
            aggregate.group_expr().clone(),
            aggregate.aggr_expr().to_vec(),
            aggregate.filter_expr().to_vec(),
            aggregate.schema(),
        )
    }

    fn with_input(
        input: Arc<dyn ExecutionPlan>,
        group_by: PhysicalGroupBy,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
        schema: SchemaRef,
    ) -> Result<Self> {
        let arguments = aggregate_expressions(&aggregates, &AggregateMode::Partial, 0)?;
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
        write!(
            f,
            "RunFoldExec: gby=[{}], aggr=[{}]",
            keys.join(", "),
            aggregates.join(", ")
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
    /// The dictionary columns the key is computed from, when it reads no
    /// other column: rows with equal dictionary keys there have equal
    /// group keys. `None`: the key is computed for every row and compared.
    tags: Option<Vec<usize>>,
}

impl Key {
    fn of(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Self {
        let columns: Vec<usize> = collect_columns(expr).iter().map(|c| c.index()).collect();
        let tags = columns
            .iter()
            .all(|&c| {
                matches!(
                    schema.fields().get(c).map(|f| f.data_type()),
                    Some(DataType::Dictionary(_, _))
                )
            })
            .then_some(columns);
        Self {
            expr: Arc::clone(expr),
            tags,
        }
    }
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
        let mut mark = |column: &dyn arrow::array::Array| -> Result<()> {
            let changed = distinct(&column.slice(1, rows - 1), &column.slice(0, rows - 1))?;
            changes = Some(match changes.take() {
                Some(c) => or(&c, &changed)?,
                None => changed,
            });
            Ok(())
        };
        let mut computed: Vec<Option<ArrayRef>> = Vec::with_capacity(self.keys.len());
        for key in self.keys.iter() {
            match &key.tags {
                Some(tags) => {
                    for &t in tags {
                        let column = batch.column(t);
                        match column.as_any_dictionary_opt() {
                            Some(dictionary) => mark(dictionary.keys())?,
                            None => mark(column.as_ref())?,
                        }
                    }
                    computed.push(None);
                }
                None => {
                    let values = key.expr.evaluate(batch)?.into_array(rows)?;
                    mark(values.as_ref())?;
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
        // The keys of tags only are computed on the runs' first rows.
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

#[cfg(test)]
mod tests;
