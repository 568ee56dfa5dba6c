//! A streaming fold of point versions, for sources whose time ranges overlap.
//!
//! Its input is one partition sorted by the point key (tags, then `time`) and
//! then by write sequence, as `SortPreservingMergeExec` yields it from files
//! and buffers that are each sorted that way. Rows with the same key are
//! versions of one point and arrive next to each other: each field takes the
//! value of the last version that set it (the latest sequence), the key is
//! the same in all of them. It holds one input batch and the run of versions
//! that may continue into the next, so memory does not grow with the rows
//! (IOx's `DeduplicateExec` does the same; this one also folds per field,
//! since a write may set some fields of a point and leave the others).

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::partition;
use arrow::compute::{concat_batches, take};
use arrow::error::ArrowError;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::{LexOrdering, OrderingRequirements};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    Partitioning, PlanProperties,
};
use futures::StreamExt;

/// Folds runs of rows with equal `key` columns into one row each.
#[derive(Debug)]
pub struct DedupExec {
    input: Arc<dyn ExecutionPlan>,
    /// Indexes of the tag columns and `time`.
    key: Arc<[usize]>,
    /// The key then the sequence: what the input must be sorted by.
    ordering: LexOrdering,
    properties: Arc<PlanProperties>,
}

impl DedupExec {
    /// `input` must have one partition sorted by `ordering`: `key` then
    /// the write sequence.
    pub fn new(input: Arc<dyn ExecutionPlan>, key: Vec<usize>, ordering: LexOrdering) -> Self {
        let properties = PlanProperties::new(
            input.equivalence_properties().clone(),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            input,
            key: key.into(),
            ordering,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for DedupExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DedupExec: key={:?}", self.key)
    }
}

impl ExecutionPlan for DedupExec {
    fn name(&self) -> &str {
        "DedupExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    /// One sorted stream, so the optimizer never drops the merge below.
    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        vec![Some(self.ordering.clone().into())]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let child = super::only_child("DedupExec", children)?;
        Ok(Arc::new(Self::new(
            child,
            self.key.to_vec(),
            self.ordering.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "DedupExec has one partition, asked for {partition}"
            )));
        }
        let input = self.input.execute(0, context)?;
        let schema = input.schema();
        let fold = Fold {
            key: Arc::clone(&self.key),
            carried: None,
        };
        let stream = futures::stream::unfold(
            (input, fold, false),
            |(mut input, mut fold, done)| async move {
                if done {
                    return None;
                }
                loop {
                    match input.next().await {
                        Some(Ok(batch)) => match fold.push(batch) {
                            Ok(Some(out)) => return Some((Ok(out), (input, fold, false))),
                            Ok(None) => continue,
                            Err(e) => return Some((Err(e.into()), (input, fold, true))),
                        },
                        Some(Err(e)) => return Some((Err(e), (input, fold, true))),
                        None => {
                            return match fold.finish() {
                                Ok(Some(out)) => Some((Ok(out), (input, fold, true))),
                                Ok(None) => None,
                                Err(e) => Some((Err(e.into()), (input, fold, true))),
                            };
                        }
                    }
                }
            },
        );
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// The fold's state between batches: the last run of the previous batch,
/// which the next one may continue.
struct Fold {
    key: Arc<[usize]>,
    carried: Option<RecordBatch>,
}

impl Fold {
    /// Folds every run of `batch` but the last, which waits for the next.
    fn push(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>, ArrowError> {
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let batch = match self.carried.take() {
            Some(carried) => concat_batches(&batch.schema(), [&carried, &batch])?,
            None => batch,
        };
        let runs = runs(&batch, &self.key)?;
        let Some((last, complete)) = runs.split_last() else {
            return Ok(None);
        };
        self.carried = Some(batch.slice(last.start, last.len()));
        if complete.is_empty() {
            return Ok(None);
        }
        let done = batch.slice(0, last.start);
        fold(&done, complete).map(Some)
    }

    /// Folds what was carried: the input has ended.
    fn finish(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        let Some(batch) = self.carried.take() else {
            return Ok(None);
        };
        let runs = runs(&batch, &self.key)?;
        fold(&batch, &runs).map(Some)
    }
}

/// The ranges of consecutive rows with equal key (nulls equal nulls).
fn runs(batch: &RecordBatch, key: &[usize]) -> Result<Vec<std::ops::Range<usize>>, ArrowError> {
    let columns: Vec<ArrayRef> = key.iter().map(|&k| Arc::clone(batch.column(k))).collect();
    if columns.is_empty() {
        return Ok(std::iter::once(0..batch.num_rows()).collect());
    }
    Ok(partition(&columns)?.ranges())
}

/// One row per run: per column, the run's last non-null value (the key
/// columns are equal throughout a run, so they come out the same).
fn fold(batch: &RecordBatch, runs: &[std::ops::Range<usize>]) -> Result<RecordBatch, ArrowError> {
    if runs.len() == batch.num_rows() {
        return Ok(batch.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .map(|column| {
            let picks: UInt32Array = runs
                .iter()
                .map(|run| {
                    let last = (run.start..run.end)
                        .rev()
                        .find(|&i| column.is_valid(i))
                        .unwrap_or(run.end - 1);
                    last as u32
                })
                .collect();
            take(column.as_ref(), &picks, None)
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(batch.schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Float64Array, StringArray, TimestampNanosecondArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Float64Type, Schema, TimeUnit};
    use datafusion::datasource::memory::MemorySourceConfig;
    use futures::TryStreamExt;

    /// host, time, x, y, sequence
    type Row<'a> = (&'a str, i64, Option<f64>, Option<f64>, u64);

    fn batch(rows: &[Row]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", DataType::Utf8, true),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                false,
            ),
            Field::new("x", DataType::Float64, true),
            Field::new("y", DataType::Float64, true),
            Field::new("seq", DataType::UInt64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(TimestampNanosecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
                Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2))),
                Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.3))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.4))),
            ],
        )
        .unwrap()
    }

    async fn run(batches: Vec<RecordBatch>) -> Vec<(String, i64, Option<f64>, Option<f64>)> {
        let schema = batches[0].schema();
        let input = MemorySourceConfig::try_new_exec(&[batches], schema, None).unwrap();
        let options = arrow::compute::SortOptions::default();
        let by = [("host", 0), ("time", 1), ("seq", 4)].map(|(name, i)| {
            datafusion::physical_expr::PhysicalSortExpr::new(
                Arc::new(datafusion::physical_expr::expressions::Column::new(name, i)) as _,
                options,
            )
        });
        let plan = DedupExec::new(input, vec![0, 1], LexOrdering::new(by).unwrap());
        let out: Vec<RecordBatch> = plan
            .execute(0, Arc::new(TaskContext::default()))
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let mut rows = Vec::new();
        for b in out {
            let host = b.column(0).as_string::<i32>();
            let time = b
                .column(1)
                .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
            let x = b.column(2).as_primitive::<Float64Type>();
            let y = b.column(3).as_primitive::<Float64Type>();
            for i in 0..b.num_rows() {
                rows.push((
                    host.value(i).to_string(),
                    time.value(i),
                    x.is_valid(i).then(|| x.value(i)),
                    y.is_valid(i).then(|| y.value(i)),
                ));
            }
        }
        rows
    }

    /// Each field takes its latest non-null version; runs that cross batch
    /// boundaries (even three batches) fold as one; distinct points pass.
    #[tokio::test]
    async fn versions_fold_per_field_across_batches() {
        let batches = vec![
            batch(&[
                ("a", 1, Some(1.0), Some(1.0), 1),
                ("a", 2, Some(2.0), None, 1),
                ("a", 2, None, Some(5.0), 3),
            ]),
            batch(&[("a", 2, Some(7.0), None, 4)]),
            batch(&[("a", 2, None, None, 5), ("b", 2, Some(3.0), None, 1)]),
            batch(&[("b", 3, Some(4.0), None, 1), ("b", 3, Some(6.0), None, 2)]),
        ];
        let rows = run(batches).await;
        assert_eq!(
            rows,
            vec![
                ("a".into(), 1, Some(1.0), Some(1.0)),
                ("a".into(), 2, Some(7.0), Some(5.0)),
                ("b".into(), 2, Some(3.0), None),
                ("b".into(), 3, Some(6.0), None),
            ]
        );
    }

    #[tokio::test]
    async fn unique_rows_pass_unchanged() {
        let rows = run(vec![
            batch(&[("a", 1, Some(1.0), None, 1), ("a", 2, None, Some(2.0), 1)]),
            batch(&[]),
            batch(&[("b", 1, Some(3.0), None, 9)]),
        ])
        .await;
        assert_eq!(
            rows,
            vec![
                ("a".into(), 1, Some(1.0), None),
                ("a".into(), 2, None, Some(2.0)),
                ("b".into(), 1, Some(3.0), None),
            ]
        );
    }
}
