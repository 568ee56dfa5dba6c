//! Data that is durable in the WAL but not yet in Parquet.
//!
//! Chunks are kept per table in the order their WAL segments committed. A snapshot
//! takes every chunk up to a segment, and the chunks are dropped only after the
//! Parquet files that hold them are registered in the catalog.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayData, MutableArrayData, make_array};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::catalog::DbId;

/// One write's batch for one table, as committed in a WAL segment.
#[derive(Debug)]
pub struct Chunk {
    pub segment: u64,
    /// The router's hybrid-logical-clock stamp: orders writes of the same point.
    pub sequence: u64,
    pub batch: RecordBatch,
    /// Measured once, outside the buffer's lock: walking every column of
    /// thousands of chunks there held up WAL commits during a snapshot.
    bytes: usize,
}

impl Chunk {
    pub fn new(segment: u64, sequence: u64, batch: RecordBatch) -> Self {
        let bytes = batch_bytes(&batch);
        Self {
            segment,
            sequence,
            batch,
            bytes,
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
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
/// the gRPC message's allocation (copying only misaligned columns), and its
/// dictionaries share that of the dictionary message, which tonic cut from the
/// same receive buffer as its neighbours: keeping the batch would keep all of
/// that, several times what the batch holds. Takes the batch so it is dropped
/// now, not when the caller's write is finally acknowledged.
pub fn compact(batch: RecordBatch) -> RecordBatch {
    let columns = batch
        .columns()
        .iter()
        .map(|c| match copy(&c.to_data()) {
            Ok(data) => make_array(data),
            Err(_) => Arc::clone(c),
        })
        .collect();
    RecordBatch::try_new(batch.schema(), columns).expect("same schema, same lengths")
}

/// Copies an array's buffers, and a dictionary's values too (a plain copy would
/// share them).
fn copy(data: &ArrayData) -> Result<ArrayData, ArrowError> {
    let mut copied = MutableArrayData::new(vec![data], false, data.len());
    copied.try_extend(0, 0, data.len())?;
    let copied = copied.freeze();
    match data.data_type() {
        DataType::Dictionary(..) => {
            let values = copy(&data.child_data()[0])?;
            copied.into_builder().child_data(vec![values]).build()
        }
        _ => Ok(copied),
    }
}

/// (database id, table name). By id: a name may pass to a new database once
/// the old one is deleted, and the old one's rows must not follow it. Tables
/// cannot be deleted, so within a database their names are ids enough.
pub type TableKey = (DbId, Arc<str>);

#[derive(Debug, Default)]
pub struct Buffer {
    tables: HashMap<TableKey, Vec<Arc<Chunk>>>,
    bytes: usize,
    /// Bytes per segment, so a snapshot can cut the buffer into slices.
    segments: BTreeMap<u64, usize>,
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
        let mut bytes = 0;
        for (key, chunk) in chunks {
            bytes += chunk.bytes();
            self.tables.entry(key).or_default().push(Arc::new(chunk));
        }
        self.bytes += bytes;
        *self.segments.entry(segment).or_default() += bytes;
        self.last_segment = self.last_segment.max(Some(segment));
    }

    /// The last segment up to which the buffer holds at most `max_bytes`, or
    /// the first segment if that alone holds more; `None` when empty.
    pub fn cut(&self, max_bytes: usize) -> Option<u64> {
        let mut total = 0;
        let mut cut = None;
        for (&segment, &bytes) in &self.segments {
            total += bytes;
            if total > max_bytes && cut.is_some() {
                break;
            }
            cut = Some(segment);
        }
        cut
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

    /// Every chunk of one table, in commit order (for queries).
    pub fn table_chunks(&self, key: &TableKey) -> Vec<Arc<Chunk>> {
        self.tables.get(key).cloned().unwrap_or_default()
    }

    /// Takes out what a registered snapshot covers, and returns it: freeing
    /// hundreds of megabytes takes long enough that the caller should do it
    /// after letting go of the buffer's lock, which every WAL commit takes.
    #[must_use = "the chunks are freed where they are dropped"]
    pub fn remove_up_to(&mut self, segment: u64) -> Vec<Arc<Chunk>> {
        let mut removed = Vec::new();
        self.tables.retain(|_, chunks| {
            let (gone, kept) = std::mem::take(chunks)
                .into_iter()
                .partition(|c| c.segment <= segment);
            *chunks = kept;
            removed.extend::<Vec<_>>(gone);
            !chunks.is_empty()
        });
        self.bytes -= removed.iter().map(|c| c.bytes()).sum::<usize>();
        self.segments = self.segments.split_off(&(segment + 1));
        removed
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
        Chunk::new(segment, segment, batch)
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
        let copy = compact(slice.clone());
        assert_eq!(copy, slice);
        let (kept, whole) = (copy.get_array_memory_size(), slice.get_array_memory_size());
        assert!(kept < 200 && whole > 8000, "{kept} vs {whole}");
    }

    #[test]
    fn compact_copies_dictionary_values_too() {
        use arrow::array::{Array, DictionaryArray, StringArray};
        use arrow::datatypes::Int32Type;
        let values: StringArray = (0..100).map(|i| Some(format!("host-{i}"))).collect();
        let dict =
            DictionaryArray::<Int32Type>::try_new(vec![3, 1, 3].into(), Arc::new(values)).unwrap();
        let batch = RecordBatch::try_from_iter([("host", Arc::new(dict) as _)]).unwrap();
        let copy = compact(batch.clone());
        assert_eq!(copy, batch);
        let (a, b) = (batch.column(0).to_data(), copy.column(0).to_data());
        let ptr = |d: &ArrayData| d.child_data()[0].buffers()[1].as_ptr();
        assert_ne!(ptr(&a), ptr(&b), "values copied, not shared");
        assert_ne!(
            a.buffers()[0].as_ptr(),
            b.buffers()[0].as_ptr(),
            "keys copied"
        );
    }

    #[test]
    fn snapshot_takes_and_drops_only_covered_segments() {
        let key: TableKey = (1, "t".into());
        let mut b = Buffer::default();
        b.insert_segment(1, [(key.clone(), chunk(1))]);
        b.insert_segment(2, [(key.clone(), chunk(2))]);
        assert_eq!(b.last_segment(), Some(2));
        let taken = b.chunks_up_to(1);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].1.len(), 1);
        let before = b.bytes();
        let _ = b.remove_up_to(1);
        assert!(b.bytes() < before && b.bytes() > 0);
        let _ = b.remove_up_to(2);
        assert_eq!(b.bytes(), 0);
        assert!(b.is_empty());
    }

    #[test]
    fn a_cut_holds_at_most_the_bytes_asked_for_but_never_nothing() {
        let key: TableKey = (1, "t".into());
        let other: TableKey = (1, "u".into());
        let mut b = Buffer::default();
        assert_eq!(b.cut(100), None);
        // 16 bytes per chunk; segment 2 holds two tables' chunks.
        b.insert_segment(1, [(key.clone(), chunk(1))]);
        b.insert_segment(2, [(key.clone(), chunk(2)), (other, chunk(2))]);
        b.insert_segment(3, [(key.clone(), chunk(3))]);
        assert_eq!(b.cut(8), Some(1), "the first segment even if larger");
        assert_eq!(b.cut(16), Some(1));
        assert_eq!(b.cut(47), Some(1));
        assert_eq!(b.cut(48), Some(2));
        assert_eq!(b.cut(1 << 20), Some(3));
        let _ = b.remove_up_to(2);
        assert_eq!(b.cut(8), Some(3));
        let _ = b.remove_up_to(3);
        assert_eq!(b.cut(8), None);
    }
}
