//! Spreading a table's rows over ingesters by a stable hash of their series.
//!
//! A series is (database, table, tag set). Each (tag, value) pair is hashed on its
//! own and the pairs are summed, so the hash is that of a set: tag order does not
//! matter, null tags add nothing (a tag column added later does not move the series
//! that lack it), and every router puts a series on the same ingester. The hashes
//! are those of [`crate::series_hash`], stable across processes and releases.

use arrow::array::UInt32Array;
use arrow::compute::take;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::series_hash::{Fnv, mix, tag_sums};

/// The shard (0..shards) of every row of `batch`.
pub fn row_shards(database: &str, table: &str, batch: &RecordBatch, shards: usize) -> Vec<usize> {
    let base = Fnv::START
        .bytes(database.as_bytes())
        .bytes(&[0xff])
        .bytes(table.as_bytes())
        .0;
    tag_sums(batch)
        .into_iter()
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
