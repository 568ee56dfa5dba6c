//! One source's summary: its series (distinct tag sets) with their first and
//! last times, and per series per field the last value with its time and
//! write sequence. Built in one pass over the rows, whatever their order.

use std::collections::HashMap as StdHashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, new_empty_array};
use arrow::compute::partition;
use arrow::datatypes::{DataType, Int32Type, TimestampNanosecondType, UInt64Type};
use arrow::error::ArrowError;
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use object_store::ObjectStore;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;

use super::super::QueryError;
use crate::catalog::ParquetFile;
use crate::ingester::read::{TimeRange, filter_time};
use crate::parquet_files::StoreReader;
use crate::schema::{ColumnType, SEQUENCE_COLUMN};

type HashMap<K, V> = StdHashMap<K, V, ahash::RandomState>;

/// Rows decoded at once when a file is summarised.
const BATCH_ROWS: usize = 64 * 1024;

/// What one Parquet file (or one query's buffered rows) holds, per series.
#[derive(Debug)]
pub struct FileSummary {
    /// The tag columns the source has.
    pub tags: Vec<String>,
    /// Per tag (as `tags`), per series: its value, null where the series
    /// lacks the tag.
    pub tag_values: Vec<StringArray>,
    /// Per series: the earliest and latest time of its points.
    pub min_time: Vec<i64>,
    pub max_time: Vec<i64>,
    pub fields: Vec<FieldLast>,
    /// What this summary holds in memory, roughly: what the cache charges.
    pub bytes: usize,
}

/// One field's last value per series of a source.
#[derive(Debug)]
pub struct FieldLast {
    pub name: String,
    /// Per series: the time and write sequence of `values`' entry (unused
    /// where it is null).
    pub time: Vec<i64>,
    pub sequence: Vec<u64>,
    /// Per series: the value at its latest time, the latest write winning
    /// among versions of that point; null where the series never set it.
    pub values: ArrayRef,
}

impl FileSummary {
    pub fn series_count(&self) -> usize {
        self.min_time.len()
    }

    pub fn field(&self, name: &str) -> Option<&FieldLast> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Summarises a Parquet file: every column is read once, a batch at a
    /// time. With `range`, only its rows in the range (for a query whose
    /// bounds cut the file: such a summary is not cached).
    pub async fn read(
        store: Arc<dyn ObjectStore>,
        file: &ParquetFile,
        range: Option<TimeRange>,
    ) -> Result<Self, QueryError> {
        let unavailable = |e: &dyn std::fmt::Display| {
            QueryError::Unavailable(format!("reading {}: {e}", file.path))
        };
        let reader = StoreReader::new(store, file);
        let mut stream = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(|e| unavailable(&e))?
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| unavailable(&e))?;
        let mut builder = SummaryBuilder::default();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| unavailable(&e))?;
            let batch = match range {
                Some(range) => filter_time(&batch, range).map_err(internal)?,
                None => batch,
            };
            builder.add(&batch).map_err(internal)?;
        }
        builder.finish().map_err(internal)
    }
}

fn internal(e: ArrowError) -> QueryError {
    QueryError::Internal(format!("summarising rows: {e}"))
}

/// Accumulates batches (of any schemas: a column's kind comes from its Arrow
/// metadata, [`ColumnType::from_arrow_field`]) into a [`FileSummary`].
#[derive(Debug, Default)]
pub struct SummaryBuilder {
    tags: Vec<String>,
    /// A series' key: its (tag index, value) pairs, sorted; absent tags are
    /// simply not in it, so a tag first seen in a later batch changes no key.
    series: HashMap<Vec<(usize, String)>, usize>,
    keys: Vec<Vec<(usize, String)>>,
    min_time: Vec<i64>,
    max_time: Vec<i64>,
    fields: Vec<FieldBuilder>,
}

#[derive(Debug)]
struct FieldBuilder {
    name: String,
    data_type: DataType,
    /// Per series seen so far (shorter when later series have no value).
    best: Vec<Option<Best>>,
}

#[derive(Debug)]
struct Best {
    time: i64,
    sequence: u64,
    value: ScalarValue,
}

impl SummaryBuilder {
    /// Adds the rows of `batch`. Rows come in runs of one series (files are
    /// sorted by tags, then time); each run is looked up once.
    pub fn add(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let schema = batch.schema();
        let mut tags = Vec::new();
        let mut fields = Vec::new();
        let mut time = None;
        let mut sequence = None;
        for (i, f) in schema.fields().iter().enumerate() {
            if f.name() == SEQUENCE_COLUMN {
                sequence = batch.column(i).as_primitive_opt::<UInt64Type>();
                continue;
            }
            match ColumnType::from_arrow_field(f) {
                Some(ColumnType::Time) => {
                    time = batch
                        .column(i)
                        .as_primitive_opt::<TimestampNanosecondType>()
                }
                Some(ColumnType::Tag) => tags.push((self.tag_index(f.name()), i)),
                Some(t) if t.is_field() => {
                    fields.push((self.field_index(f.name(), f.data_type()), i))
                }
                _ => {}
            }
        }
        let time = time
            .ok_or_else(|| ArrowError::SchemaError("rows without a nanosecond time".into()))?
            .values();
        // Rows written before sequences were stored count as oldest.
        let sequence_at = |row: usize| match sequence {
            Some(s) if s.is_valid(row) => s.value(row),
            _ => 0,
        };
        let runs: Vec<Range<usize>> = if tags.is_empty() {
            std::iter::once(0..rows).collect()
        } else {
            let columns: Vec<ArrayRef> = tags
                .iter()
                .map(|&(_, c)| Arc::clone(batch.column(c)))
                .collect();
            partition(&columns)?.ranges()
        };
        for run in runs {
            let mut key: Vec<(usize, String)> = tags
                .iter()
                .filter_map(|&(t, c)| {
                    string_at(batch.column(c).as_ref(), run.start).map(|v| (t, v.to_string()))
                })
                .collect();
            key.sort_unstable();
            let series = self.series_index(key);
            let times = &time[run.clone()];
            let sorted = times.windows(2).all(|w| w[0] <= w[1]);
            let (min, max) = if sorted {
                (times[0], times[times.len() - 1])
            } else {
                let min = times.iter().copied().min().unwrap_or(i64::MAX);
                (min, times.iter().copied().max().unwrap_or(i64::MIN))
            };
            self.min_time[series] = self.min_time[series].min(min);
            self.max_time[series] = self.max_time[series].max(max);
            for &(f, c) in &fields {
                let column = batch.column(c);
                let Some(row) = last_row(column.as_ref(), time, &sequence_at, run.clone(), sorted)
                else {
                    continue;
                };
                let candidate = (time[row], sequence_at(row));
                let best = &mut self.fields[f].best;
                if best.len() <= series {
                    best.resize_with(series + 1, || None);
                }
                // Equal time and sequence: the later row, as the fold takes it.
                if best[series]
                    .as_ref()
                    .is_none_or(|b| candidate >= (b.time, b.sequence))
                {
                    best[series] = Some(Best {
                        time: candidate.0,
                        sequence: candidate.1,
                        value: ScalarValue::try_from_array(column, row)?,
                    });
                }
            }
        }
        Ok(())
    }

    fn tag_index(&mut self, name: &str) -> usize {
        match self.tags.iter().position(|t| t == name) {
            Some(i) => i,
            None => {
                self.tags.push(name.to_string());
                self.tags.len() - 1
            }
        }
    }

    fn field_index(&mut self, name: &str, data_type: &DataType) -> usize {
        match self.fields.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.fields.push(FieldBuilder {
                    name: name.to_string(),
                    data_type: data_type.clone(),
                    best: Vec::new(),
                });
                self.fields.len() - 1
            }
        }
    }

    fn series_index(&mut self, key: Vec<(usize, String)>) -> usize {
        if let Some(&i) = self.series.get(&key) {
            return i;
        }
        let i = self.keys.len();
        self.series.insert(key.clone(), i);
        self.keys.push(key);
        self.min_time.push(i64::MAX);
        self.max_time.push(i64::MIN);
        i
    }

    pub fn finish(self) -> Result<FileSummary, ArrowError> {
        let n = self.keys.len();
        let tag_values: Vec<StringArray> = (0..self.tags.len())
            .map(|t| {
                self.keys
                    .iter()
                    .map(|k| k.iter().find(|(i, _)| *i == t).map(|(_, v)| v.as_str()))
                    .collect()
            })
            .collect();
        let mut fields = Vec::with_capacity(self.fields.len());
        for f in self.fields {
            let mut time = vec![i64::MIN; n];
            let mut sequence = vec![0; n];
            let null = ScalarValue::try_from(&f.data_type)?;
            let mut values = Vec::with_capacity(n);
            for (i, best) in f.best.into_iter().enumerate() {
                match best {
                    Some(b) => {
                        time[i] = b.time;
                        sequence[i] = b.sequence;
                        values.push(b.value);
                    }
                    None => values.push(null.clone()),
                }
            }
            values.resize(n, null);
            let values = if n == 0 {
                new_empty_array(&f.data_type)
            } else {
                ScalarValue::iter_to_array(values)
                    .map_err(|e| ArrowError::from_external_error(Box::new(e)))?
            };
            fields.push(FieldLast {
                name: f.name,
                time,
                sequence,
                values,
            });
        }
        let word = std::mem::size_of::<i64>();
        let bytes = std::mem::size_of::<FileSummary>()
            + self.tags.iter().map(|t| t.len() + 24).sum::<usize>()
            + tag_values
                .iter()
                .map(Array::get_array_memory_size)
                .sum::<usize>()
            + 2 * word * n
            + fields
                .iter()
                .map(|f| {
                    std::mem::size_of::<FieldLast>()
                        + f.name.len()
                        + 2 * word * n
                        + f.values.get_array_memory_size()
                })
                .sum::<usize>();
        Ok(FileSummary {
            tags: self.tags,
            tag_values,
            min_time: self.min_time,
            max_time: self.max_time,
            fields,
            bytes,
        })
    }
}

/// The row of `run` holding `column`'s last value: the latest time with a
/// value, the latest sequence among versions at that time, the later row
/// among equal sequences. Sorted runs are searched from their end.
fn last_row(
    column: &dyn Array,
    time: &[i64],
    sequence_at: &dyn Fn(usize) -> u64,
    run: Range<usize>,
    sorted: bool,
) -> Option<usize> {
    if column.null_count() == column.len() {
        return None;
    }
    let mut found: Option<usize> = None;
    if sorted {
        for row in run.rev() {
            if let Some(f) = found {
                if time[row] < time[f] {
                    break;
                }
                if column.is_valid(row) && sequence_at(row) > sequence_at(f) {
                    found = Some(row);
                }
            } else if column.is_valid(row) {
                found = Some(row);
            }
        }
    } else {
        for row in run {
            if !column.is_valid(row) {
                continue;
            }
            if found.is_none_or(|f| (time[row], sequence_at(row)) >= (time[f], sequence_at(f))) {
                found = Some(row);
            }
        }
    }
    found
}

/// A tag's value at `row`: tags are dictionaries of strings in files and
/// buffers; plain strings are accepted too.
fn string_at(array: &dyn Array, row: usize) -> Option<&str> {
    if array.is_null(row) {
        return None;
    }
    match array.data_type() {
        DataType::Dictionary(key, _) if **key == DataType::Int32 => {
            let dict = array.as_dictionary::<Int32Type>();
            let k = usize::try_from(dict.keys().value(row)).ok()?;
            let values = dict.values();
            if values.is_null(k) {
                return None;
            }
            match values.data_type() {
                DataType::Utf8 => Some(values.as_string::<i32>().value(k)),
                DataType::LargeUtf8 => Some(values.as_string::<i64>().value(k)),
                DataType::Utf8View => Some(values.as_string_view().value(k)),
                _ => None,
            }
        }
        DataType::Utf8 => Some(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(row)),
        DataType::Utf8View => Some(array.as_string_view().value(row)),
        _ => None,
    }
}
