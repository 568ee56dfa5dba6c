//! What an ingester answers a querier: the buffered rows of one table, laid out
//! in one schema (the union of its chunks' columns, `time` last) plus the hidden
//! sequence column, so the querier can deduplicate them against Parquet files.

use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray, TimestampNanosecondArray, UInt64Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::buffer::Chunk;
use super::snapshot::target_schema;
use crate::schema::{ColumnType, TIME_COLUMN, project, sequence_field};

/// Inclusive time bounds in nanoseconds; `None` is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub min: Option<i64>,
    pub max: Option<i64>,
}

impl TimeRange {
    pub fn contains(&self, t: i64) -> bool {
        self.min.is_none_or(|m| t >= m) && self.max.is_none_or(|m| t <= m)
    }

    /// Whether `[min, max]` overlaps this range.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        self.min.is_none_or(|m| max >= m) && self.max.is_none_or(|m| min <= m)
    }

    pub fn is_unbounded(&self) -> bool {
        self.min.is_none() && self.max.is_none()
    }
}

/// Which buffered rows a querier wants: a time range, tag values, fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BufferFilter {
    pub range: TimeRange,
    /// Rows whose tag equals one of the values, for every entry.
    pub tags: Vec<(String, Vec<String>)>,
    /// The fields to send; `None`: all (tags and time always come).
    pub fields: Option<Vec<String>>,
}

impl BufferFilter {
    pub fn range(range: TimeRange) -> Self {
        Self {
            range,
            ..Self::default()
        }
    }
}

/// The chunks' rows that `filter` keeps, one batch per chunk, all in one
/// schema with the sequence column last. Returns that schema too (for an
/// empty answer).
pub fn buffered_batches(
    chunks: &[Arc<Chunk>],
    filter: &BufferFilter,
) -> Result<(SchemaRef, Vec<RecordBatch>), ArrowError> {
    let all = target_schema([], chunks);
    let mut fields: Vec<Field> = all
        .fields()
        .iter()
        .filter(
            |f| match (&filter.fields, ColumnType::from_arrow_field(f)) {
                (Some(wanted), Some(t)) if t.is_field() => wanted.iter().any(|w| w == f.name()),
                _ => true,
            },
        )
        .map(|f| f.as_ref().clone())
        .collect();
    let schema = Arc::new(Schema::new(fields.clone()));
    fields.push(sequence_field());
    let out = Arc::new(Schema::new(fields));
    let mut batches = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let batch = filter_time(&project(&chunk.batch, &schema)?, filter.range)?;
        let batch = filter_tags(&batch, &filter.tags)?;
        if batch.num_rows() == 0 {
            continue;
        }
        let seq = UInt64Array::from(vec![chunk.sequence; batch.num_rows()]);
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(seq));
        batches.push(RecordBatch::try_new(Arc::clone(&out), columns)?);
    }
    Ok((out, batches))
}

/// The rows of `batch` whose tags match every filter (a missing tag matches
/// none: it is null).
fn filter_tags(
    batch: &RecordBatch,
    tags: &[(String, Vec<String>)],
) -> Result<RecordBatch, ArrowError> {
    let mut keep: Option<BooleanArray> = None;
    for (tag, values) in tags {
        let Some(column) = batch.column_by_name(tag) else {
            return Ok(batch.slice(0, 0));
        };
        let strings = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8)?;
        let strings = strings.as_string::<i32>();
        let matches: BooleanArray = strings
            .iter()
            .map(|v| Some(v.is_some_and(|v| values.iter().any(|w| w == v))))
            .collect();
        keep = Some(match keep {
            Some(k) => arrow::compute::and(&k, &matches)?,
            None => matches,
        });
    }
    match keep {
        Some(k) => filter_record_batch(batch, &k),
        None => Ok(batch.clone()),
    }
}

/// The rows of `batch` whose time is in `range`.
pub fn filter_time(batch: &RecordBatch, range: TimeRange) -> Result<RecordBatch, ArrowError> {
    if range.is_unbounded() {
        return Ok(batch.clone());
    }
    let time = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| ArrowError::SchemaError("batch has no nanosecond time column".into()))?;
    let keep: BooleanArray = time
        .values()
        .iter()
        .map(|&t| Some(range.contains(t)))
        .collect();
    filter_record_batch(batch, &keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{SEQUENCE_COLUMN, arrow_schema};
    use arrow::array::{Array, Float64Array};

    fn chunk(sequence: u64, with_y: bool, times: Vec<i64>) -> Arc<Chunk> {
        let mut cols = vec![("x", ColumnType::Float)];
        if with_y {
            cols.push(("y", ColumnType::Float));
        }
        cols.push(("time", ColumnType::Time));
        let n = times.len();
        let mut arrays: Vec<arrow::array::ArrayRef> =
            vec![Arc::new(Float64Array::from(vec![1.0; n]))];
        if with_y {
            arrays.push(Arc::new(Float64Array::from(vec![2.0; n])));
        }
        arrays.push(Arc::new(TimestampNanosecondArray::from(times)));
        let batch = RecordBatch::try_new(arrow_schema(cols), arrays).unwrap();
        Arc::new(Chunk::new(sequence, sequence, batch))
    }

    #[test]
    fn chunks_share_one_schema_and_carry_their_sequence() {
        let chunks = vec![chunk(7, false, vec![1, 50]), chunk(9, true, vec![2, 3])];
        let range = TimeRange {
            min: Some(2),
            max: Some(10),
        };
        let (schema, batches) = buffered_batches(&chunks, &BufferFilter::range(range)).unwrap();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, vec!["x", "y", "time", SEQUENCE_COLUMN]);
        assert_eq!(batches.len(), 1, "the first chunk has no row in range");
        let b = &batches[0];
        assert_eq!(b.num_rows(), 2);
        let seq = b.column(3).as_any().downcast_ref::<UInt64Array>().unwrap();
        assert_eq!(seq.values().to_vec(), vec![9, 9]);
        assert_eq!(b.column(1).null_count(), 0);
    }

    /// Tag filters keep the rows whose tag is one of the values (a chunk
    /// without the tag has none); a field list drops the other fields.
    #[test]
    fn tags_and_fields_narrow_what_is_sent() {
        let rows = [("a", Some(1.0), Some(2.0), 1), ("b", Some(3.0), None, 2)];
        let chunks = vec![crate::testing::chunk(4, &rows), chunk(5, true, vec![3])];
        let filter = BufferFilter {
            range: TimeRange::default(),
            tags: vec![("host".into(), vec!["b".into(), "c".into()])],
            fields: Some(vec!["x".into()]),
        };
        let (schema, batches) = buffered_batches(&chunks, &filter).unwrap();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, vec!["host", "x", "time", SEQUENCE_COLUMN]);
        assert_eq!(batches.len(), 1, "the chunk without `host` matches nothing");
        let b = &batches[0];
        assert_eq!(b.num_rows(), 1);
        let x = b.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(x.value(0), 3.0);
    }
}
