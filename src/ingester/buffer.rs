//! Data that is durable in the WAL but not yet in Parquet.
//!
//! Chunks are kept per table in the order their WAL segments committed. A snapshot
//! takes every chunk up to a segment, and the chunks are dropped only after the
//! Parquet files that hold them are registered in the catalog.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{MutableArrayData, make_array};
use arrow::record_batch::RecordBatch;

/// One write's batch for one table, as committed in a WAL segment.
#[derive(Debug)]
pub struct Chunk {
    pub segment: u64,
    /// The router's hybrid-logical-clock stamp: orders writes of the same point.
    pub sequence: u64,
    pub batch: RecordBatch,
}

impl Chunk {
    pub fn bytes(&self) -> usize {
        batch_bytes(&self.batch)
    }
}

/// Bytes of data a batch holds. Not `get_array_memory_size`: a batch decoded
/// from Flight or IPC has every column sliced from one message buffer, and that
/// counts the whole buffer once per column.
pub fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// A copy of `batch` in buffers of its own. A batch decoded from Flight shares
/// the gRPC message's allocation (and copies only its misaligned columns), so
/// keeping it would keep the whole message too: about twice what it holds.
pub fn compact(batch: &RecordBatch) -> RecordBatch {
    let columns = batch
        .columns()
        .iter()
        .map(|c| {
            let data = c.to_data();
            let mut copy = MutableArrayData::new(vec![&data], false, data.len());
            // Cannot overflow: the array being copied already fits its offsets.
            match copy.try_extend(0, 0, data.len()) {
                Ok(()) => make_array(copy.freeze()),
                Err(_) => Arc::clone(c),
            }
        })
        .collect();
    RecordBatch::try_new(batch.schema(), columns).expect("same schema, same lengths")
}

/// (database, table) names.
pub type TableKey = (Arc<str>, Arc<str>);

#[derive(Debug, Default)]
pub struct Buffer {
    tables: HashMap<TableKey, Vec<Arc<Chunk>>>,
    bytes: usize,
    /// The last WAL segment whose chunks are all here.
    last_segment: Option<u64>,
}

impl Buffer {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn last_segment(&self) -> Option<u64> {
        self.last_segment
    }

    /// Adds the chunks of one committed segment.
    pub fn insert_segment(
        &mut self,
        segment: u64,
        chunks: impl IntoIterator<Item = (TableKey, Chunk)>,
    ) {
        for (key, chunk) in chunks {
            self.bytes += chunk.bytes();
            self.tables.entry(key).or_default().push(Arc::new(chunk));
        }
        self.last_segment = self.last_segment.max(Some(segment));
    }

    /// Every chunk up to `segment`, per table, in commit order.
    pub fn chunks_up_to(&self, segment: u64) -> Vec<(TableKey, Vec<Arc<Chunk>>)> {
        self.tables
            .iter()
            .map(|(k, chunks)| {
                let taken: Vec<_> = chunks
                    .iter()
                    .filter(|c| c.segment <= segment)
                    .cloned()
                    .collect();
                (k.clone(), taken)
            })
            .filter(|(_, c)| !c.is_empty())
            .collect()
    }

    /// Drops what a registered snapshot covers.
    pub fn remove_up_to(&mut self, segment: u64) {
        let mut freed = 0;
        self.tables.retain(|_, chunks| {
            chunks.retain(|c| {
                let keep = c.segment > segment;
                if !keep {
                    freed += c.bytes();
                }
                keep
            });
            !chunks.is_empty()
        });
        self.bytes -= freed;
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    fn chunk(segment: u64) -> Chunk {
        let batch =
            RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2])) as _)])
                .unwrap();
        Chunk {
            segment,
            sequence: segment,
            batch,
        }
    }

    #[test]
    fn shared_buffers_are_counted_once() {
        let batch = chunk(1).batch;
        let encoded = crate::ingester::wal::encode_batch(&batch).unwrap();
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(encoded), None).unwrap();
        let decoded = reader.into_iter().next().unwrap().unwrap();
        assert_eq!(batch_bytes(&decoded), 16, "two i64 values");
    }

    #[test]
    fn compact_copies_only_the_slice_it_keeps() {
        let big = RecordBatch::try_from_iter([(
            "x",
            Arc::new(Int64Array::from((0..1000).collect::<Vec<i64>>())) as _,
        )])
        .unwrap();
        let slice = big.slice(10, 2);
        let copy = compact(&slice);
        assert_eq!(copy, slice);
        let (kept, whole) = (copy.get_array_memory_size(), slice.get_array_memory_size());
        assert!(kept < 200 && whole > 8000, "{kept} vs {whole}");
    }

    #[test]
    fn snapshot_takes_and_drops_only_covered_segments() {
        let key: TableKey = ("db".into(), "t".into());
        let mut b = Buffer::default();
        b.insert_segment(1, [(key.clone(), chunk(1))]);
        b.insert_segment(2, [(key.clone(), chunk(2))]);
        assert_eq!(b.last_segment(), Some(2));
        let taken = b.chunks_up_to(1);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].1.len(), 1);
        let before = b.bytes();
        b.remove_up_to(1);
        assert!(b.bytes() < before && b.bytes() > 0);
        b.remove_up_to(2);
        assert_eq!(b.bytes(), 0);
        assert!(b.is_empty());
    }
}
