//! Point identity (DESIGN.md §2), shared by snapshots and queries.
//!
//! Rows with the same tag set (a missing tag is null) and time are one point.
//! Each field of the point takes the value of the latest write that set it,
//! "latest" by write sequence and, among equal sequences, by row order (the
//! order within one write). Tags and time are the key, so they are equal in
//! every version of a point.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, UInt32Array, UInt64Array};
use arrow::compute::take;
use arrow::datatypes::Schema;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

use crate::schema::{ColumnType, TIME_COLUMN};

/// One row per point, sorted by (tags, time).
#[derive(Debug)]
pub struct Deduped {
    pub batch: RecordBatch,
    /// Per row: the latest sequence among the rows folded into it.
    pub sequences: UInt64Array,
}

/// The key columns of a schema whose fields carry `inflow.column` metadata: the
/// tags, then `time`.
pub fn key_columns_by_kind(schema: &Schema) -> Vec<usize> {
    let tags = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| ColumnType::from_arrow_field(f) == Some(ColumnType::Tag))
        .map(|(i, _)| i);
    tags.chain(schema.index_of(TIME_COLUMN).ok()).collect()
}

/// Folds the rows of `batch` that are the same point. `key` holds the indexes
/// of the tag columns and `time`; every other column is a field. `sequences`
/// gives each row's write sequence.
pub fn dedup(
    batch: &RecordBatch,
    key: &[usize],
    sequences: &UInt64Array,
) -> Result<Deduped, ArrowError> {
    let schema = batch.schema();
    let converter = RowConverter::new(
        key.iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect(),
    )?;
    let key_columns: Vec<ArrayRef> = key.iter().map(|&i| Arc::clone(batch.column(i))).collect();
    let rows = converter.convert_columns(&key_columns)?;
    let seq = sequences.values();

    // Rows of equal key and sequence keep their order (the order within a write).
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        let (i, j) = (a as usize, b as usize);
        rows.row(i)
            .cmp(&rows.row(j))
            .then(seq[i].cmp(&seq[j]))
            .then(a.cmp(&b))
    });

    let mut runs: Vec<(usize, usize)> = Vec::with_capacity(order.len());
    let mut start = 0;
    for i in 1..=order.len() {
        if i == order.len() || rows.row(order[i] as usize) != rows.row(order[start] as usize) {
            runs.push((start, i));
            start = i;
        }
    }

    let columns = batch
        .columns()
        .iter()
        .enumerate()
        .map(|(i, col)| {
            let pick = pick_rows(&order, &runs, col, !key.contains(&i));
            take(col.as_ref(), &pick, None)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let last: UInt32Array = runs.iter().map(|&(_, e)| order[e - 1]).collect();
    let sequences = take(sequences, &last, None)?;
    let sequences = sequences
        .as_any()
        .downcast_ref::<UInt64Array>()
        .cloned()
        .ok_or_else(|| ArrowError::ComputeError("sequences are not u64".into()))?;
    Ok(Deduped {
        batch: RecordBatch::try_new(schema, columns)?,
        sequences,
    })
}

/// For each run: a key column takes its first row; a field takes the last row
/// where it is not null (or the last row, null, if none sets it).
fn pick_rows(order: &[u32], runs: &[(usize, usize)], col: &ArrayRef, field: bool) -> UInt32Array {
    runs.iter()
        .map(|&(s, e)| {
            let run = &order[s..e];
            if field {
                run.iter()
                    .rev()
                    .find(|&&r| col.is_valid(r as usize))
                    .or(run.last())
                    .copied()
            } else {
                Some(run[0])
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, TimestampNanosecondArray};

    #[test]
    fn the_latest_sequence_wins_per_field_whatever_the_row_order() {
        let batch = RecordBatch::try_from_iter([
            (
                "host",
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("a"),
                    None,
                    Some("a"),
                ])) as ArrayRef,
            ),
            (
                "x",
                Arc::new(Int64Array::from(vec![Some(3), Some(1), Some(9), None])) as ArrayRef,
            ),
            (
                "y",
                Arc::new(Int64Array::from(vec![None, Some(1), None, Some(4)])) as ArrayRef,
            ),
            (
                "time",
                Arc::new(TimestampNanosecondArray::from(vec![5, 5, 5, 5])) as ArrayRef,
            ),
        ])
        .unwrap();
        // Row 0 (seq 3) is newer than row 1 (seq 1) although it comes first;
        // row 3 (seq 4) sets only y.
        let seqs = UInt64Array::from(vec![3, 1, 2, 4]);
        let d = dedup(&batch, &[0, 3], &seqs).unwrap();
        assert_eq!(d.batch.num_rows(), 2, "null host is its own point");
        let x = d
            .batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let y = d
            .batch
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        // Nulls sort first: (null, 5) then (a, 5).
        assert_eq!(x.iter().collect::<Vec<_>>(), vec![Some(9), Some(3)]);
        assert_eq!(y.iter().collect::<Vec<_>>(), vec![None, Some(4)]);
        assert_eq!(d.sequences.values().to_vec(), vec![2, 4]);
    }
}
