//! Point identity (table, tag set, time: a later write replaces the fields it
//! carries), shared by snapshots and compaction.
//!
//! Rows with the same tag set (a missing tag is null) and time are one point.
//! Each field of the point takes the value of the latest write that set it,
//! "latest" by write sequence and, among equal sequences, by row order (the
//! order within one write). Tags and time are the key, so they are equal in
//! every version of a point.
//!
//! Output is sorted as the row format sorts (tags in schema order, then time;
//! nulls first, strings by bytes), since the compactor merges files by their
//! `arrow::row` keys. It gets there without comparing rows: each tag's
//! distinct values are ranked once, each distinct tag set once, and rows are
//! then placed by series rank and sorted by time within their series, where
//! they mostly arrive in order already.

use std::collections::HashMap as StdHashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int32Array, PrimitiveArray, StringArray, UInt64Array,
};
use arrow::buffer::ScalarBuffer;
use arrow::compute::{cast, interleave};
use arrow::datatypes::{DataType, Int32Type, Schema, SchemaRef, TimestampNanosecondType};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::schema::{ColumnType, TIME_COLUMN};

type HashMap<K, V> = StdHashMap<K, V, ahash::RandomState>;

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

/// Folds the rows of `batches` (all of `schema`, taken in order as if
/// concatenated) that are the same point. `key` holds the indexes of the tag
/// columns and `time`; every other column is a field. `sequences` gives each
/// batch's rows their write sequences.
pub fn dedup(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    key: &[usize],
    sequences: &[UInt64Array],
) -> Result<Deduped, ArrowError> {
    if batches.len() != sequences.len()
        || batches
            .iter()
            .zip(sequences)
            .any(|(b, s)| b.num_rows() != s.len() || b.num_columns() != schema.fields().len())
    {
        return Err(ArrowError::InvalidArgumentError(
            "dedup: batches and sequences do not match".into(),
        ));
    }
    if batches.is_empty() {
        return Ok(Deduped {
            batch: RecordBatch::new_empty(Arc::clone(schema)),
            sequences: UInt64Array::from(Vec::<u64>::new()),
        });
    }
    let time = schema
        .index_of(TIME_COLUMN)
        .ok()
        .filter(|t| key.contains(t));
    let tag_columns: Vec<usize> = key.iter().copied().filter(|&c| Some(c) != time).collect();
    if let Some(t) = time
        && !matches!(
            schema.field(t).data_type(),
            DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, _)
        )
    {
        return Err(ArrowError::InvalidArgumentError(
            "dedup: time is not in nanoseconds".into(),
        ));
    }
    let tags = tag_columns
        .iter()
        .map(|&c| RankedTag::new(batches, c))
        .collect::<Result<Vec<_>, _>>()?;
    let series = series_ranks(&tags, batches);
    let (entries, starts) = sorted_entries(batches, &series, time, sequences);
    let runs = point_runs(&entries, &starts);
    let firsts: Vec<(usize, usize)> = runs.iter().map(|&(s, _)| entries[s].source()).collect();

    let mut columns = Vec::with_capacity(schema.fields().len());
    for (c, field) in schema.fields().iter().enumerate() {
        // Tags are ranked in key order, which need not be column order.
        let tag = tag_columns.iter().position(|&t| t == c).map(|i| &tags[i]);
        let column: ArrayRef = if let Some(tag) = tag {
            let keys = tag.keys(&runs, &entries);
            let dict = DictionaryArray::try_new(keys, Arc::clone(&tag.values) as ArrayRef)?;
            cast_to(Arc::new(dict), field.data_type())?
        } else if Some(c) == time {
            let values: ScalarBuffer<i64> = runs.iter().map(|&(s, _)| entries[s].time).collect();
            let time = PrimitiveArray::<TimestampNanosecondType>::new(values, None);
            cast_to(Arc::new(time), field.data_type())?
        } else {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            let picks = field_picks(&runs, &entries, &arrays);
            interleave(&arrays, picks.as_deref().unwrap_or(&firsts))?
        };
        columns.push(column);
    }
    let sequences: UInt64Array = runs.iter().map(|&(_, e)| entries[e - 1].seq).collect();
    let batch = RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(runs.len())),
    )?;
    Ok(Deduped { batch, sequences })
}

fn cast_to(array: ArrayRef, to: &DataType) -> Result<ArrayRef, ArrowError> {
    if array.data_type() == to {
        Ok(array)
    } else {
        cast(&array, to)
    }
}

/// A tag column across batches: each row's rank among the column's distinct
/// values in byte order, 0 for null (nulls sort first, as in the row format).
struct RankedTag {
    /// Per batch, per row.
    ranks: Vec<Vec<u32>>,
    /// The distinct values in rank order: rank `r` is `values[r - 1]`.
    values: Arc<StringArray>,
}

const NULL_RANK: u32 = 0;

impl RankedTag {
    fn new(batches: &[RecordBatch], column: usize) -> Result<Self, ArrowError> {
        let as_dict = ColumnType::Tag.arrow_type();
        let arrays = batches
            .iter()
            .map(|b| cast_to(Arc::clone(b.column(column)), &as_dict))
            .collect::<Result<Vec<_>, _>>()?;
        let dicts: Vec<&DictionaryArray<Int32Type>> = arrays
            .iter()
            .map(|a| a.as_dictionary::<Int32Type>())
            .collect();

        // Distinct values, numbered as first seen; per dictionary entry, its number.
        let mut ids: HashMap<&str, u32> = HashMap::default();
        let mut entry_ids: Vec<Vec<Option<u32>>> = Vec::with_capacity(dicts.len());
        for dict in &dicts {
            let values = dict.values().as_string_opt::<i32>().ok_or_else(|| {
                ArrowError::InvalidArgumentError("tag dictionary values are not Utf8".into())
            })?;
            let of_entry = values
                .iter()
                .map(|v| {
                    v.map(|s| {
                        let next = ids.len() as u32;
                        *ids.entry(s).or_insert(next)
                    })
                })
                .collect();
            entry_ids.push(of_entry);
        }

        let (in_order, rank_of_id) = ranked(ids);
        let values = StringArray::from_iter_values(in_order);

        let ranks = dicts
            .iter()
            .zip(&entry_ids)
            .map(|(dict, of_entry)| {
                let rank_of_entry: Vec<u32> = of_entry
                    .iter()
                    .map(|id| id.map_or(NULL_RANK, |id| rank_of_id[id as usize] + 1))
                    .collect();
                let rank = |k: i32| rank_of_entry.get(k as usize).copied().unwrap_or(NULL_RANK);
                let keys = dict.keys();
                match keys.nulls().filter(|n| n.null_count() > 0) {
                    None => keys.values().iter().map(|&k| rank(k)).collect(),
                    Some(nulls) => keys
                        .values()
                        .iter()
                        .zip(nulls.iter())
                        .map(|(&k, valid)| if valid { rank(k) } else { NULL_RANK })
                        .collect(),
                }
            })
            .collect();
        Ok(Self {
            ranks,
            values: Arc::new(values),
        })
    }

    /// The output keys: per run, its first row's value (tags are equal
    /// within a run).
    fn keys(&self, runs: &[(usize, usize)], entries: &[Entry]) -> Int32Array {
        runs.iter()
            .map(|&(s, _)| {
                let e = &entries[s];
                match self.ranks[e.batch as usize][e.row as usize] {
                    NULL_RANK => None,
                    r => Some(r as i32 - 1),
                }
            })
            .collect()
    }
}

/// Per batch, per row: the rank of its tag set among the distinct tag sets,
/// ordered tag by tag.
fn series_ranks(tags: &[RankedTag], batches: &[RecordBatch]) -> Vec<Vec<u32>> {
    if let [only] = tags {
        return only.ranks.clone();
    }
    let mut ids: HashMap<Box<[u32]>, u32> = HashMap::default();
    let mut tuple = vec![0u32; tags.len()];
    let row_ids: Vec<Vec<u32>> = batches
        .iter()
        .enumerate()
        .map(|(b, batch)| {
            (0..batch.num_rows())
                .map(|row| {
                    for (slot, tag) in tuple.iter_mut().zip(tags) {
                        *slot = tag.ranks[b][row];
                    }
                    match ids.get(tuple.as_slice()) {
                        Some(&id) => id,
                        None => {
                            let id = ids.len() as u32;
                            ids.insert(tuple.clone().into_boxed_slice(), id);
                            id
                        }
                    }
                })
                .collect()
        })
        .collect();
    let (_, rank_of_id) = ranked(ids);
    row_ids
        .into_iter()
        .map(|ids| ids.into_iter().map(|id| rank_of_id[id as usize]).collect())
        .collect()
}

/// Keys numbered `0..n` as first seen: the keys in order, and each number's
/// rank in that order.
fn ranked<K: Ord>(ids: HashMap<K, u32>) -> (Vec<K>, Vec<u32>) {
    let mut by_key: Vec<(K, u32)> = ids.into_iter().collect();
    by_key.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut rank_of_id = vec![0u32; by_key.len()];
    let keys = by_key
        .into_iter()
        .enumerate()
        .map(|(rank, (key, id))| {
            rank_of_id[id as usize] = rank as u32;
            key
        })
        .collect();
    (keys, rank_of_id)
}

/// A row's sort key after its series, and where it came from.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    time: i64,
    seq: u64,
    batch: u32,
    row: u32,
}

impl Entry {
    fn source(&self) -> (usize, usize) {
        (self.batch as usize, self.row as usize)
    }
}

/// Every row, ordered by (series, time, sequence, position): placed by series
/// rank in one counting pass, then sorted by (time, sequence) within each
/// series with a stable sort, which keeps position order among equals and
/// runs in about linear time on rows that are already in time order.
fn sorted_entries(
    batches: &[RecordBatch],
    series: &[Vec<u32>],
    time: Option<usize>,
    sequences: &[UInt64Array],
) -> (Vec<Entry>, Vec<usize>) {
    let groups = series.iter().flatten().max().map_or(0, |&m| m as usize + 1);
    let mut starts = vec![0usize; groups + 1];
    for &s in series.iter().flatten() {
        starts[s as usize + 1] += 1;
    }
    for g in 1..starts.len() {
        starts[g] += starts[g - 1];
    }
    let total = starts[groups];
    let mut next = starts.clone();
    let mut entries = vec![Entry::default(); total];
    for (b, batch) in batches.iter().enumerate() {
        let times = time.map(|t| batch.column(t).as_primitive::<TimestampNanosecondType>());
        let seqs = sequences[b].values();
        for (row, &s) in series[b].iter().enumerate() {
            let slot = &mut next[s as usize];
            entries[*slot] = Entry {
                time: times.map_or(0, |t| t.value(row)),
                seq: seqs[row],
                batch: b as u32,
                row: row as u32,
            };
            *slot += 1;
        }
    }
    for g in 0..groups {
        entries[starts[g]..starts[g + 1]].sort_by_key(|e| (e.time, e.seq));
    }
    (entries, starts)
}

/// Runs of entries that are one point: within a series (between two of
/// `starts`), entries of equal time.
fn point_runs(entries: &[Entry], starts: &[usize]) -> Vec<(usize, usize)> {
    let mut runs = Vec::with_capacity(entries.len());
    for group in starts.windows(2) {
        let (mut s, end) = (group[0], group[1]);
        for i in s + 1..=end {
            if i == end || entries[i].time != entries[s].time {
                runs.push((s, i));
                s = i;
            }
        }
    }
    runs
}

/// For a field: per run, the last row that sets it (or the run's last row, a
/// null, if none does). `None` when that is every run's first row, as when
/// no point was written twice.
fn field_picks(
    runs: &[(usize, usize)],
    entries: &[Entry],
    arrays: &[&dyn Array],
) -> Option<Vec<(usize, usize)>> {
    if runs.len() == entries.len() {
        return None;
    }
    Some(
        runs.iter()
            .map(|&(s, e)| {
                let run = &entries[s..e];
                run.iter()
                    .rev()
                    .find(|x| arrays[x.batch as usize].is_valid(x.row as usize))
                    .unwrap_or(&run[run.len() - 1])
                    .source()
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::arrow_schema;
    use arrow::array::{
        Float64Array, Int64Array, StringDictionaryBuilder, TimestampNanosecondArray,
    };
    use arrow::compute::{concat, concat_batches, take};
    use arrow::row::{RowConverter, SortField};

    fn tags(values: &[Option<&str>]) -> ArrayRef {
        let mut b = StringDictionaryBuilder::<Int32Type>::new();
        for v in values {
            b.append_option(*v);
        }
        Arc::new(b.finish())
    }

    #[test]
    fn the_latest_sequence_wins_per_field_whatever_the_row_order() {
        let schema = arrow_schema([
            ("host", ColumnType::Tag),
            ("x", ColumnType::Integer),
            ("y", ColumnType::Integer),
            ("time", ColumnType::Time),
        ]);
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                tags(&[Some("a"), Some("a"), None, Some("a")]),
                Arc::new(Int64Array::from(vec![Some(3), Some(1), Some(9), None])),
                Arc::new(Int64Array::from(vec![None, Some(1), None, Some(4)])),
                Arc::new(TimestampNanosecondArray::from(vec![5, 5, 5, 5])),
            ],
        )
        .unwrap();
        // Row 0 (seq 3) is newer than row 1 (seq 1) although it comes first;
        // row 3 (seq 4) sets only y.
        let seqs = UInt64Array::from(vec![3, 1, 2, 4]);
        let d = dedup(&schema, &[batch], &[0, 3], &[seqs]).unwrap();
        assert_eq!(d.batch.num_rows(), 2, "null host is its own point");
        let x = d
            .batch
            .column(1)
            .as_primitive::<arrow::datatypes::Int64Type>();
        let y = d
            .batch
            .column(2)
            .as_primitive::<arrow::datatypes::Int64Type>();
        // Nulls sort first: (null, 5) then (a, 5).
        assert_eq!(x.iter().collect::<Vec<_>>(), vec![Some(9), Some(3)]);
        assert_eq!(y.iter().collect::<Vec<_>>(), vec![None, Some(4)]);
        assert_eq!(d.sequences.values().to_vec(), vec![2, 4]);
    }

    /// Point identity as it was first written: concatenate, sort every row by
    /// its `arrow::row` key, then sequence, then position.
    fn by_row_format(
        schema: &SchemaRef,
        batches: &[RecordBatch],
        key: &[usize],
        seqs: &[UInt64Array],
    ) -> Deduped {
        let batch = concat_batches(schema, batches).unwrap();
        let seq_arrays: Vec<&dyn Array> = seqs.iter().map(|s| s as &dyn Array).collect();
        let seqs = concat(&seq_arrays).unwrap();
        let seq = seqs.as_primitive::<arrow::datatypes::UInt64Type>().values();
        let converter = RowConverter::new(
            key.iter()
                .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                .collect(),
        )
        .unwrap();
        let columns: Vec<ArrayRef> = key.iter().map(|&i| Arc::clone(batch.column(i))).collect();
        let rows = converter.convert_columns(&columns).unwrap();
        let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
        order.sort_by(|&a, &b| {
            let (i, j) = (a as usize, b as usize);
            rows.row(i).cmp(&rows.row(j)).then(seq[i].cmp(&seq[j]))
        });
        let mut runs = Vec::new();
        let mut start = 0;
        for i in 1..=order.len() {
            if i == order.len() || rows.row(order[i] as usize) != rows.row(order[start] as usize) {
                runs.push(&order[start..i]);
                start = i;
            }
        }
        let columns = batch
            .columns()
            .iter()
            .enumerate()
            .map(|(c, col)| {
                let pick: arrow::array::UInt32Array = runs
                    .iter()
                    .map(|run| {
                        if key.contains(&c) {
                            run[0]
                        } else {
                            *run.iter()
                                .rev()
                                .find(|&&r| col.is_valid(r as usize))
                                .unwrap_or(&run[run.len() - 1])
                        }
                    })
                    .collect();
                take(col.as_ref(), &pick, None).unwrap()
            })
            .collect();
        Deduped {
            batch: RecordBatch::try_new(Arc::clone(schema), columns).unwrap(),
            sequences: runs
                .iter()
                .map(|run| seq[run[run.len() - 1] as usize])
                .collect(),
        }
    }

    /// Tags as plain strings: dictionaries may differ where values do not.
    fn plain(batch: &RecordBatch) -> Vec<ArrayRef> {
        batch
            .columns()
            .iter()
            .map(|c| match c.data_type() {
                DataType::Dictionary(..) => cast(c, &DataType::Utf8).unwrap(),
                _ => Arc::clone(c),
            })
            .collect()
    }

    /// xorshift64*: deterministic cases without a dependency.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    #[test]
    fn ranks_order_and_fold_exactly_as_the_row_format_does() {
        let schema = arrow_schema([
            ("a", ColumnType::Tag),
            ("v", ColumnType::Float),
            ("b", ColumnType::Tag),
            ("n", ColumnType::Integer),
            ("c", ColumnType::Tag),
            ("s", ColumnType::String),
            ("time", ColumnType::Time),
        ]);
        // Prefixes, the empty string, non-ASCII and nulls: the orders where
        // byte order and a careless ranking could disagree.
        let words = [
            None,
            Some(""),
            Some("a"),
            Some("ab"),
            Some("b"),
            Some("é"),
            Some("Z"),
        ];
        let mut rng = Rng(0x5eed);
        for case in 0..200 {
            let mut batches = Vec::new();
            let mut seqs = Vec::new();
            // Every fourth case puts all rows in one or two series and two
            // times: long runs, where an unstable sort would show.
            let narrow = case % 4 == 0;
            let (kinds, times) = if narrow { (2, 2) } else { (7, 4) };
            for _ in 0..1 + rng.below(5) {
                let rows = rng.below(if narrow { 400 } else { 40 }) as usize;
                let tag = |rng: &mut Rng, k: u64| -> ArrayRef {
                    let v: Vec<_> = (0..rows).map(|_| words[rng.below(k) as usize]).collect();
                    tags(&v)
                };
                let (a, b, c) = (
                    tag(&mut rng, kinds),
                    tag(&mut rng, kinds.min(3)),
                    tag(&mut rng, 2),
                );
                let v: Float64Array = (0..rows)
                    .map(|_| (rng.below(3) > 0).then(|| rng.below(100) as f64))
                    .collect();
                let n: Int64Array = (0..rows)
                    .map(|_| (rng.below(3) > 0).then(|| rng.below(100) as i64))
                    .collect();
                let s: StringArray = (0..rows)
                    .map(|_| words[rng.below(words.len() as u64) as usize])
                    .collect();
                let time: TimestampNanosecondArray = (0..rows)
                    .map(|_| Some(rng.below(times) as i64 - 1))
                    .collect();
                batches.push(
                    RecordBatch::try_new(
                        Arc::clone(&schema),
                        vec![
                            a,
                            Arc::new(v),
                            b,
                            Arc::new(n),
                            c,
                            Arc::new(s),
                            Arc::new(time),
                        ],
                    )
                    .unwrap(),
                );
                seqs.push((0..rows).map(|_| rng.below(3)).collect::<UInt64Array>());
            }
            let key = key_columns_by_kind(&schema);
            let ours = dedup(&schema, &batches, &key, &seqs).unwrap();
            let want = by_row_format(&schema, &batches, &key, &seqs);
            assert_eq!(plain(&ours.batch), plain(&want.batch), "case {case}");
            assert_eq!(ours.sequences, want.sequences, "case {case}");
            assert_eq!(ours.batch.schema(), schema, "case {case}");

            // Tags keyed in another order than their columns: sorted by the key.
            let reversed = [key[2], key[1], key[0], key[3]];
            let ours = dedup(&schema, &batches, &reversed, &seqs).unwrap();
            let want_reversed = by_row_format(&schema, &batches, &reversed, &seqs);
            assert_eq!(
                plain(&ours.batch),
                plain(&want_reversed.batch),
                "case {case}, reversed key"
            );

            // As a query lays them out: tags and string fields both plain
            // Utf8, told apart only by the key.
            let as_query = Arc::new(Schema::new(
                schema
                    .fields()
                    .iter()
                    .map(|f| match f.data_type() {
                        DataType::Dictionary(..) => {
                            arrow::datatypes::Field::new(f.name(), DataType::Utf8, true)
                        }
                        _ => f.as_ref().clone(),
                    })
                    .collect::<Vec<_>>(),
            ));
            let batches: Vec<RecordBatch> = batches
                .iter()
                .map(|b| RecordBatch::try_new(Arc::clone(&as_query), plain(b)).unwrap())
                .collect();
            let ours = dedup(&as_query, &batches, &key, &seqs).unwrap();
            assert_eq!(ours.batch.columns(), plain(&want.batch), "case {case}");
            assert_eq!(ours.sequences, want.sequences, "case {case}");
        }
    }

    #[test]
    fn a_table_without_tags_or_rows_folds_by_time_alone() {
        let schema = arrow_schema([("v", ColumnType::Float), ("time", ColumnType::Time)]);
        let batch = |v: Vec<f64>, t: Vec<i64>| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Float64Array::from(v)),
                    Arc::new(TimestampNanosecondArray::from(t)),
                ],
            )
            .unwrap()
        };
        let batches = [
            batch(vec![1.0, 2.0], vec![7, 3]),
            batch(vec![], vec![]),
            batch(vec![9.0], vec![7]),
        ];
        let seqs = [
            UInt64Array::from(vec![1, 1]),
            UInt64Array::from(Vec::<u64>::new()),
            UInt64Array::from(vec![2]),
        ];
        let d = dedup(&schema, &batches, &[1], &seqs).unwrap();
        let v = d
            .batch
            .column(0)
            .as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!(v.values().to_vec(), vec![2.0, 9.0]);
        assert_eq!(d.sequences.values().to_vec(), vec![1, 2]);
        let none = dedup(&schema, &[], &[1], &[]).unwrap();
        assert_eq!(none.batch.num_rows(), 0);
    }
}
