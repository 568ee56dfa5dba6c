//! Combining the summaries of a table's sources (its files, the buffered
//! rows) into what a query asks: the series with points in a time range, or
//! each series' last value per field in it.

use std::collections::{HashMap as StdHashMap, HashSet as StdHashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, new_null_array};
use arrow::compute::interleave;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;

use super::file::FileSummary;
use crate::ingester::read::TimeRange;

type HashMap<K, V> = StdHashMap<K, V, ahash::RandomState>;
type HashSet<K> = StdHashSet<K, ahash::RandomState>;

/// A table's series as one query sees them.
#[derive(Debug)]
pub struct TableSeries {
    /// The table's tags, in catalog order.
    pub tags: Vec<String>,
    /// One row per series: a nullable `Utf8` column per tag (null where the
    /// series lacks it), rows sorted by tag set (tags in `tags` order, a
    /// missing tag first, values by bytes): the order the scan's folded rows
    /// have.
    pub batch: RecordBatch,
}

/// The last value of some fields per series.
#[derive(Debug)]
pub struct LastValues {
    /// The series with a value of some field in the range.
    pub series: TableSeries,
    /// Per requested field, aligned with `series`' rows.
    pub fields: Vec<FieldValues>,
}

#[derive(Debug)]
pub struct FieldValues {
    /// The time of each series' last value; `None` where it has none.
    pub time: Vec<Option<i64>>,
    /// The values, null where `time` is `None`.
    pub values: ArrayRef,
}

type Key<'a> = Vec<Option<&'a str>>;

/// A series' best value of a field so far: its (time, sequence), and where
/// it is (source, row).
#[derive(Debug, Clone, Copy)]
struct Pick {
    time: i64,
    sequence: u64,
    source: usize,
    row: usize,
}

/// For each source, its series' values of `tags` (or where it lacks a tag,
/// `None`).
fn tag_columns<'a>(source: &'a FileSummary, tags: &[String]) -> Vec<Option<&'a StringArray>> {
    tags.iter()
        .map(|t| {
            source
                .tags
                .iter()
                .position(|x| x == t)
                .map(|i| &source.tag_values[i])
        })
        .collect()
}

fn key<'a>(columns: &[Option<&'a StringArray>], row: usize) -> Key<'a> {
    columns
        .iter()
        .map(|c| c.and_then(|c| c.is_valid(row).then(|| c.value(row))))
        .collect()
}

fn batch(tags: &[String], keys: &[Key<'_>]) -> Result<TableSeries, ArrowError> {
    let fields: Vec<Field> = tags
        .iter()
        .map(|t| Field::new(t, DataType::Utf8, true))
        .collect();
    let columns: Vec<ArrayRef> = (0..tags.len())
        .map(|t| Arc::new(keys.iter().map(|k| k[t]).collect::<StringArray>()) as ArrayRef)
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(keys.len()));
    let batch = RecordBatch::try_new_with_options(schema, columns, &options)?;
    Ok(TableSeries {
        tags: tags.to_vec(),
        batch,
    })
}

/// The series with points in `range` in some source. Per source a series
/// counts when its [first, last] time there overlaps the range: one with
/// points before and after the range but none inside counts too.
pub fn series(
    sources: &[Arc<FileSummary>],
    tags: &[String],
    range: TimeRange,
) -> Result<TableSeries, ArrowError> {
    let mut seen: HashSet<Key<'_>> = HashSet::default();
    for source in sources {
        let columns = tag_columns(source, tags);
        for row in 0..source.series_count() {
            if range.overlaps(source.min_time[row], source.max_time[row]) {
                seen.insert(key(&columns, row));
            }
        }
    }
    let mut keys: Vec<Key<'_>> = seen.into_iter().collect();
    keys.sort_unstable();
    batch(tags, &keys)
}

/// Per series and field, the value whose (time, sequence) is greatest among
/// the sources' last values in `range`: the value the scan's fold leaves at
/// the series' latest point with that field. Every source must be exact for
/// the range's end (its last values no later than it).
pub fn last(
    sources: &[Arc<FileSummary>],
    tags: &[String],
    fields: &[(String, DataType)],
    range: TimeRange,
) -> Result<LastValues, ArrowError> {
    let mut index: HashMap<Key<'_>, usize> = HashMap::default();
    let mut keys: Vec<Key<'_>> = Vec::new();
    // Per field, per series: the best so far.
    let mut best: Vec<Vec<Option<Pick>>> = vec![Vec::new(); fields.len()];
    for (s, source) in sources.iter().enumerate() {
        let columns = tag_columns(source, tags);
        let own: Vec<Option<&super::file::FieldLast>> = fields
            .iter()
            .map(|(name, ty)| source.field(name).filter(|f| f.values.data_type() == ty))
            .collect();
        if own.iter().all(Option::is_none) {
            continue;
        }
        for row in 0..source.series_count() {
            let mut series = None;
            for (f, field) in own.iter().enumerate() {
                let Some(field) = field else { continue };
                if !field.values.is_valid(row) || !range.contains(field.time[row]) {
                    continue;
                }
                let i = *series.get_or_insert_with(|| {
                    let k = key(&columns, row);
                    *index.entry(k.clone()).or_insert_with(|| {
                        keys.push(k);
                        keys.len() - 1
                    })
                });
                let slots = &mut best[f];
                if slots.len() <= i {
                    slots.resize(i + 1, None);
                }
                let pick = Pick {
                    time: field.time[row],
                    sequence: field.sequence[row],
                    source: s,
                    row,
                };
                if slots[i].is_none_or(|b| (pick.time, pick.sequence) >= (b.time, b.sequence)) {
                    slots[i] = Some(pick);
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_unstable_by(|&a, &b| keys[a].cmp(&keys[b]));
    let sorted: Vec<Key<'_>> = order.iter().map(|&i| keys[i].clone()).collect();
    let mut out = Vec::with_capacity(fields.len());
    for (f, (name, ty)) in fields.iter().enumerate() {
        let null = new_null_array(ty, 1);
        let mut arrays: Vec<&dyn Array> = sources
            .iter()
            .map(|s| match s.field(name) {
                Some(field) if field.values.data_type() == ty => field.values.as_ref(),
                _ => null.as_ref(),
            })
            .collect();
        arrays.push(null.as_ref());
        let none = (sources.len(), 0);
        let mut picks = Vec::with_capacity(order.len());
        let mut time = Vec::with_capacity(order.len());
        for &i in &order {
            match best[f].get(i).copied().flatten() {
                Some(b) => {
                    picks.push((b.source, b.row));
                    time.push(Some(b.time));
                }
                None => {
                    picks.push(none);
                    time.push(None);
                }
            }
        }
        let values = interleave(&arrays, &picks)?;
        out.push(FieldValues { time, values });
    }
    Ok(LastValues {
        series: batch(tags, &sorted)?,
        fields: out,
    })
}
