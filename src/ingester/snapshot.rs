//! Turns buffered chunks of one table into Parquet files, one per day.
//!
//! Rows are sorted by (tags, time) and deduplicated by point identity (see
//! [`crate::dedup`]). Each file also holds the hidden [`SEQUENCE_COLUMN`], the
//! latest write sequence of each row, which queries use to order versions of a
//! point found in several files (after a failover) and in ingester buffers.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, TimestampNanosecondArray, UInt32Array, UInt64Array};
use arrow::compute::take;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;

use super::buffer::Chunk;
use crate::catalog::{DbId, ParquetFile, TableId};
use crate::dedup::{dedup, key_columns_by_kind};
use crate::parquet_files::writer_properties;
use crate::schema::{ColumnType, TIME_COLUMN, project, sequence_field};

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
}

/// One day of a table, ready to be written.
#[derive(Debug)]
pub struct DayFile {
    /// `yyyy-mm-dd`
    pub partition: String,
    pub bytes: Bytes,
    pub rows: u64,
    pub min_time: i64,
    pub max_time: i64,
}

impl DayFile {
    /// Its catalog entry, once written at `path`.
    pub fn entry(&self, path: String, database: DbId, table: TableId) -> ParquetFile {
        ParquetFile {
            path,
            database,
            table,
            partition: self.partition.clone(),
            min_time: self.min_time,
            max_time: self.max_time,
            rows: self.rows,
            size_bytes: self.bytes.len() as u64,
        }
    }
}

/// The schema every chunk is widened to: the catalog's columns, then any a chunk
/// has that the catalog view lacks, `time` last.
pub fn target_schema<'a>(
    catalog_columns: impl IntoIterator<Item = (&'a str, ColumnType)>,
    chunks: &[Arc<Chunk>],
) -> SchemaRef {
    let mut fields: Vec<arrow::datatypes::Field> = catalog_columns
        .into_iter()
        .filter(|(n, _)| *n != TIME_COLUMN)
        .map(|(n, t)| t.arrow_field(n))
        .collect();
    for chunk in chunks {
        for f in chunk.batch.schema().fields() {
            if f.name() != TIME_COLUMN && !fields.iter().any(|x| x.name() == f.name()) {
                fields.push(f.as_ref().clone());
            }
        }
    }
    fields.push(ColumnType::Time.arrow_field(TIME_COLUMN));
    Arc::new(Schema::new(fields))
}

/// Splits a table's chunks, ordered by write sequence, into runs of at most
/// `max_bytes` each (a single larger chunk is a run of its own).
pub fn groups(mut chunks: Vec<Arc<Chunk>>, max_bytes: usize) -> Vec<Vec<Arc<Chunk>>> {
    // Stable: chunks of equal sequence keep their commit order.
    chunks.sort_by_key(|c| c.sequence);
    let mut out: Vec<Vec<Arc<Chunk>>> = Vec::new();
    let mut bytes = 0;
    for chunk in chunks {
        let size = chunk.bytes();
        match out.last_mut() {
            Some(group) if bytes + size <= max_bytes => group.push(chunk),
            _ => {
                bytes = 0;
                out.push(vec![chunk]);
            }
        }
        bytes += size;
    }
    out
}

/// Merges chunks into one deduplicated batch sorted by (tags, time), with the
/// hidden [`SEQUENCE_COLUMN`] last: each row's latest write sequence, so that a
/// query can order this file's rows against other files and buffers.
pub fn merge(schema: &SchemaRef, chunks: &[Arc<Chunk>]) -> Result<RecordBatch, SnapshotError> {
    let mut ordered: Vec<&Arc<Chunk>> = chunks.iter().collect();
    // Stable: chunks of equal sequence keep their commit order.
    ordered.sort_by_key(|c| c.sequence);
    let widened = ordered
        .iter()
        .map(|c| project(&c.batch, schema))
        .collect::<Result<Vec<_>, _>>()?;
    let sequences: Vec<UInt64Array> = ordered
        .iter()
        .map(|c| std::iter::repeat_n(c.sequence, c.batch.num_rows()).collect())
        .collect();
    let deduped = dedup(schema, &widened, &key_columns_by_kind(schema), &sequences)?;
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(sequence_field());
    let mut columns = deduped.batch.columns().to_vec();
    columns.push(Arc::new(deduped.sequences));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Splits a merged batch by day and encodes each day as Parquet.
pub fn day_files(batch: &RecordBatch) -> Result<Vec<DayFile>, SnapshotError> {
    let time = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| ArrowError::SchemaError("batch has no nanosecond time column".into()))?;
    let mut days: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    for (row, t) in time.values().iter().enumerate() {
        days.entry(t.div_euclid(NANOS_PER_DAY))
            .or_default()
            .push(row as u32);
    }
    let single = days.len() == 1;
    days.into_iter()
        .map(|(day, rows)| {
            let part = if single {
                batch.clone()
            } else {
                let idx = UInt32Array::from(rows);
                let columns = batch
                    .columns()
                    .iter()
                    .map(|c| take(c.as_ref(), &idx, None))
                    .collect::<Result<Vec<_>, _>>()?;
                RecordBatch::try_new(batch.schema(), columns)?
            };
            encode_day(day, &part)
        })
        .collect()
}

fn encode_day(day: i64, batch: &RecordBatch) -> Result<DayFile, SnapshotError> {
    let time = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| ArrowError::SchemaError("batch has no nanosecond time column".into()))?;
    let min_time = time.values().iter().copied().min().unwrap_or_default();
    let max_time = time.values().iter().copied().max().unwrap_or_default();
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(writer_properties()))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(DayFile {
        partition: partition_name(day),
        bytes: Bytes::from(buf),
        rows: batch.num_rows() as u64,
        min_time,
        max_time,
    })
}

/// `yyyy-mm-dd` of a day number since the epoch (proleptic Gregorian, UTC).
fn partition_name(day: i64) -> String {
    chrono::DateTime::from_timestamp(day * 86_400, 0)
        .map(|d| d.date_naive().to_string())
        .unwrap_or_else(|| format!("day{day}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{SEQUENCE_COLUMN, arrow_schema};
    use arrow::array::{Float64Array, Int64Array, StringDictionaryBuilder};
    use arrow::datatypes::Int32Type;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn chunk(
        sequence: u64,
        hosts: &[Option<&str>],
        temp: &[Option<f64>],
        n: &[Option<i64>],
        time: &[i64],
    ) -> Arc<Chunk> {
        let schema = arrow_schema([
            ("host", ColumnType::Tag),
            ("temp", ColumnType::Float),
            ("n", ColumnType::Integer),
            ("time", ColumnType::Time),
        ]);
        let mut tags = StringDictionaryBuilder::<Int32Type>::new();
        for h in hosts {
            tags.append_option(*h);
        }
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(tags.finish()),
                Arc::new(Float64Array::from(temp.to_vec())),
                Arc::new(Int64Array::from(n.to_vec())),
                Arc::new(TimestampNanosecondArray::from(time.to_vec())),
            ],
        )
        .unwrap();
        Arc::new(Chunk::new(sequence, sequence, batch))
    }

    #[test]
    fn groups_are_bounded_and_in_sequence_order() {
        let c = |seq| chunk(seq, &[Some("a")], &[Some(1.0)], &[Some(1)], &[1]);
        let size = c(0).bytes();
        let chunks = vec![c(5), c(1), c(4), c(2), c(3)];
        let seqs = |g: &Vec<Arc<Chunk>>| g.iter().map(|c| c.sequence).collect::<Vec<_>>();
        let groups = groups(chunks.clone(), 2 * size);
        assert_eq!(
            groups.iter().map(seqs).collect::<Vec<_>>(),
            vec![vec![1, 2], vec![3, 4], vec![5]]
        );
        // A limit below one chunk still takes every chunk, one per group.
        assert_eq!(groups_len(chunks, 1), 5);
    }

    fn groups_len(chunks: Vec<Arc<Chunk>>, max: usize) -> usize {
        groups(chunks, max).len()
    }

    #[test]
    fn later_writes_replace_only_the_fields_they_set() {
        // Written out of order on purpose: sequence decides, not arrival.
        let later = chunk(2, &[Some("a")], &[Some(2.0)], &[None], &[10]);
        let earlier = chunk(
            1,
            &[Some("a"), None, Some("a")],
            &[Some(1.0), Some(5.0), None],
            &[Some(7), None, Some(8)],
            &[10, 10, 20],
        );
        let chunks = vec![later, earlier];
        let schema = target_schema([], &chunks);
        let merged = merge(&schema, &chunks).unwrap();
        assert_eq!(
            merged.num_rows(),
            3,
            "a@10 folded, null host is its own series"
        );
        let temp = merged
            .column_by_name("temp")
            .unwrap()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        let n = merged
            .column_by_name("n")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        // Sorted by (host, time) with nulls first: (null,10), (a,10), (a,20).
        assert_eq!(
            temp.iter().collect::<Vec<_>>(),
            vec![Some(5.0), Some(2.0), None]
        );
        assert_eq!(n.iter().collect::<Vec<_>>(), vec![None, Some(7), Some(8)]);
        let seq = merged
            .column_by_name(SEQUENCE_COLUMN)
            .unwrap()
            .as_any()
            .downcast_ref::<UInt64Array>()
            .unwrap();
        assert_eq!(
            seq.values().to_vec(),
            vec![1, 2, 1],
            "latest write of each row"
        );
    }

    #[test]
    fn days_become_separate_parquet_files() {
        let c = chunk(
            1,
            &[Some("a"), Some("a")],
            &[Some(1.0), Some(2.0)],
            &[None, None],
            &[-1, NANOS_PER_DAY + 5],
        );
        let schema = target_schema([], std::slice::from_ref(&c));
        let merged = merge(&schema, &[c]).unwrap();
        let files = day_files(&merged).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.partition.as_str()).collect();
        assert_eq!(names, vec!["1969-12-31", "1970-01-02"]);
        assert_eq!(
            (files[1].min_time, files[1].max_time, files[1].rows),
            (NANOS_PER_DAY + 5, NANOS_PER_DAY + 5, 1)
        );
        let reader = ParquetRecordBatchReaderBuilder::try_new(files[0].bytes.clone())
            .unwrap()
            .build()
            .unwrap();
        let back: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(back[0].num_rows(), 1);
        assert_eq!(
            back[0].schema().field(0).data_type(),
            &ColumnType::Tag.arrow_type()
        );
    }
}
