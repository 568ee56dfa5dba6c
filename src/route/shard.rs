//! Spreading a table's rows over ingesters by a stable hash of their series.
//!
//! A series is (database, table, tag set). Each (tag, value) pair is hashed on its
//! own and the pairs are summed, so the hash is that of a set: tag order does not
//! matter, null tags add nothing (a tag column added later does not move the series
//! that lack it), and every router puts a series on the same ingester. FNV-1a and
//! a fixed mix keep it stable across processes and releases, unlike `DefaultHasher`.

use arrow::array::{Array, AsArray, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::Int32Type;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::schema::ColumnType;

#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    const START: Self = Self(0xcbf2_9ce4_8422_2325);

    fn bytes(mut self, bytes: &[u8]) -> Self {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }
}

/// Spreads the bits of a sum of pair hashes (a finaliser, as in splitmix64).
fn mix(mut h: u64) -> u64 {
    h ^= h >> 31;
    h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 29)
}

/// The shard (0..shards) of every row of `batch`.
pub fn row_shards(database: &str, table: &str, batch: &RecordBatch, shards: usize) -> Vec<usize> {
    let base = Fnv::START
        .bytes(database.as_bytes())
        .bytes(&[0xff])
        .bytes(table.as_bytes())
        .0;
    let mut sums = vec![0u64; batch.num_rows()];
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if ColumnType::from_arrow_field(field) != Some(ColumnType::Tag) {
            continue;
        }
        let name = Fnv::START.bytes(field.name().as_bytes());
        if let Some(dict) = column.as_dictionary_opt::<Int32Type>() {
            // Hash each distinct value once, then look rows up by key.
            let values = dict.values().as_string::<i32>();
            let value_hashes: Vec<u64> = (0..values.len())
                .map(|i| name.bytes(&[0]).bytes(values.value(i).as_bytes()).0)
                .collect();
            for (row, key) in dict.keys().iter().enumerate() {
                if let Some(k) = key {
                    sums[row] = sums[row].wrapping_add(value_hashes[k as usize]);
                }
            }
        } else if let Some(strings) = column.as_string_opt::<i32>() {
            for (row, v) in strings.iter().enumerate() {
                if let Some(v) = v {
                    sums[row] = sums[row].wrapping_add(name.bytes(&[0]).bytes(v.as_bytes()).0);
                }
            }
        }
    }
    sums.into_iter()
        .map(|sum| (mix(base ^ mix(sum)) % shards as u64) as usize)
        .collect()
}

/// Splits a batch into one part per shard that has rows, keeping row order.
pub fn split(
    database: &str,
    table: &str,
    batch: &RecordBatch,
    shards: usize,
) -> Result<Vec<(usize, RecordBatch)>, ArrowError> {
    if shards <= 1 || batch.num_rows() == 0 {
        return Ok(vec![(0, batch.clone())]);
    }
    let rows = row_shards(database, table, batch, shards);
    if rows.iter().all(|&s| s == rows[0]) {
        return Ok(vec![(rows[0], batch.clone())]);
    }
    let mut per_shard: Vec<Vec<u32>> = vec![Vec::new(); shards];
    for (row, &s) in rows.iter().enumerate() {
        per_shard[s].push(row as u32);
    }
    per_shard
        .into_iter()
        .enumerate()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(shard, rows)| {
            let idx = UInt32Array::from(rows);
            let columns = batch
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), &idx, None))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((shard, RecordBatch::try_new(batch.schema(), columns)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{EmptySchema, ParseOptions, Precision, parse_lines};

    fn batch(body: &str) -> RecordBatch {
        let mut p = parse_lines(
            body.as_bytes(),
            &ParseOptions::new(Precision::Nanosecond, 0),
            &EmptySchema,
        );
        p.tables.remove(0).batch
    }

    #[test]
    fn a_series_always_lands_on_the_same_shard() {
        let body: String = (0..200)
            .map(|i| format!("cpu,host=h{},dc=d{} v={i} {i}\n", i % 20, i % 3))
            .collect();
        let b = batch(&body);
        let shards = row_shards("db", "cpu", &b, 3);
        // Same series ⇒ same shard, whatever the tag order in the line.
        for (row, i) in (0..200).enumerate() {
            let first = (0..200)
                .find(|j| j % 20 == i % 20 && j % 3 == i % 3)
                .unwrap();
            assert_eq!(shards[row], shards[first]);
        }
        let reordered = batch("cpu,dc=d1,host=h1 v=1 1\n");
        let same = batch("cpu,host=h1,dc=d1 v=2 2\n");
        assert_eq!(
            row_shards("db", "cpu", &reordered, 3),
            row_shards("db", "cpu", &same, 3)
        );
        // All three shards get rows: one busy table uses every ingester.
        for s in 0..3 {
            assert!(shards.contains(&s), "shard {s} unused");
        }
        let parts = split("db", "cpu", &b, 3).unwrap();
        assert_eq!(parts.iter().map(|(_, p)| p.num_rows()).sum::<usize>(), 200);
        // A different database is a different series.
        assert_ne!(
            row_shards("db", "cpu", &b, 1000),
            row_shards("db2", "cpu", &b, 1000)
        );
    }
}
