//! A plan node that keeps a scan's memory counted for as long as its rows are.
//!
//! A table scan folds the ingesters' buffered rows before DataFusion reads
//! them, and counts them against the query memory pool. `TableProvider::scan`
//! returns as soon as the rows are in place, but they live on in the streams
//! that read them; were the reservation released with `scan`, N queries could
//! each hold up to the pool's limit. So the reservation rides with the plan
//! and with every stream it starts, and is released when the last of them is
//! dropped.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::memory_pool::MemoryReservation;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

/// `input`, holding `memory` until it and every stream it started are dropped.
#[derive(Debug)]
pub struct Held {
    input: Arc<dyn ExecutionPlan>,
    memory: Arc<MemoryReservation>,
}

impl Held {
    pub fn new(input: Arc<dyn ExecutionPlan>, memory: Arc<MemoryReservation>) -> Self {
        Self { input, memory }
    }
}

impl DisplayAs for Held {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeldScan: bytes={}", self.memory.size())
    }
}

impl ExecutionPlan for Held {
    fn name(&self) -> &str {
        "HeldScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
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
        let child = super::only_child("HeldScan", children)?;
        Ok(Arc::new(Self::new(child, Arc::clone(&self.memory))))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let stream = self.input.execute(partition, context)?;
        let schema = stream.schema();
        let memory = Arc::clone(&self.memory);
        let held = stream.map(move |batch| {
            let _ = &memory;
            batch
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, held)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryConsumer, MemoryPool};

    #[tokio::test]
    async fn memory_is_released_when_the_last_stream_is_dropped() {
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1 << 20));
        let memory = Arc::new(MemoryConsumer::new("scan").register(&pool));
        memory.try_grow(1000).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .unwrap();
        let input = MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None).unwrap();
        let plan = Arc::new(Held::new(input, memory));
        let mut stream = plan.execute(0, Arc::new(TaskContext::default())).unwrap();
        drop(plan);
        assert_eq!(pool.reserved(), 1000, "held while a stream reads the rows");
        assert_eq!(stream.next().await.unwrap().unwrap().num_rows(), 1);
        drop(stream);
        assert_eq!(pool.reserved(), 0, "released with the last stream");
    }
}
