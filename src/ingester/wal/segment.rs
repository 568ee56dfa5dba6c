//! WAL segments: the Arrow IPC batches of one commit in one protobuf object, and their codec.
//!
//! A segment is one protobuf [`WalSegment`] object at
//! `wal/<ingester-id>/<segment>`, written with `PutMode::Create` so that two
//! writers, of any epochs, can never both commit the same number. Segment
//! numbers grow across epochs, so "covered up to segment S" is one number. A segment with no entries
//! is a fence (see [`super::fence`]): it is never written by a commit and never deleted.

use std::io::Cursor;
use std::sync::Arc;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use object_store::path::Path;
use prost::Message;

use crate::catalog::DbId;
use crate::proto::{FORMAT_VERSION, WalEntry, WalSegment};
use crate::store::{AppendLog, Store};

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("encoding a batch for the WAL: {0}")]
    Encode(#[source] arrow::error::ArrowError),
    #[error("WAL segment {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(
        "WAL segment {path} has format version {version}; this build reads up to {FORMAT_VERSION}"
    )]
    UnsupportedVersion { path: String, version: u32 },
}

pub fn prefix(ingester_id: &str) -> Path {
    Path::from(format!("wal/{ingester_id}"))
}

/// The segment objects of `ingester_id`'s prefix, `wal/<id>/<segment:020>`:
/// one namespace of numbers for every epoch, so a fence at a number blocks
/// whichever holder reaches it, not only the epoch the fencer thought was the
/// last. (Earlier builds wrote `wal/<id>/<epoch>/<segment>`; replay lists the
/// prefix recursively, so it reads those too.)
pub fn segments(store: &Store, ingester_id: &str) -> AppendLog {
    AppendLog::new(store.clone(), format!("wal/{ingester_id}"))
}

/// Whether a segment of this size could be a fence (a segment with no entries,
/// see [`super::fence`]); a segment holding a write is always larger.
pub fn may_be_fence(size: u64) -> bool {
    size < 256
}

/// One batch as it goes into a segment: already IPC-encoded by the caller's task.
#[derive(Debug, Clone)]
pub struct EncodedEntry {
    /// The catalog id: what the entry belongs to.
    pub database_id: DbId,
    /// The name, for a reader of an older release.
    pub database: Arc<str>,
    pub table: Arc<str>,
    pub sequence: u64,
    pub ipc: Bytes,
}

pub fn encode_batch(batch: &RecordBatch) -> Result<Bytes, WalError> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() + 1024);
    let mut writer = StreamWriter::try_new(&mut buf, &batch.schema()).map_err(WalError::Encode)?;
    writer.write(batch).map_err(WalError::Encode)?;
    writer.finish().map_err(WalError::Encode)?;
    drop(writer);
    Ok(Bytes::from(buf))
}

pub fn encode_segment(
    ingester_id: &str,
    epoch: u64,
    segment: u64,
    entries: &[EncodedEntry],
) -> Bytes {
    let msg = WalSegment {
        format_version: FORMAT_VERSION,
        ingester_id: ingester_id.to_string(),
        epoch,
        segment,
        entries: entries
            .iter()
            .map(|e| WalEntry {
                database_id: e.database_id,
                database: e.database.to_string(),
                table: e.table.to_string(),
                sequence: e.sequence,
                arrow_ipc: e.ipc.clone(),
            })
            .collect(),
    };
    Bytes::from(msg.encode_to_vec())
}

/// A decoded entry of a segment being replayed.
#[derive(Debug)]
pub struct ReplayedEntry {
    /// 0 in an entry of a release before ids were written: see `database`.
    pub database_id: DbId,
    pub database: String,
    pub table: String,
    pub sequence: u64,
    pub batches: Vec<RecordBatch>,
}

pub fn decode_segment(
    path: &Path,
    bytes: Bytes,
) -> Result<(WalSegment, Vec<ReplayedEntry>), WalError> {
    let corrupt = |reason: String| WalError::Corrupt {
        path: path.to_string(),
        reason,
    };
    let mut seg = WalSegment::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    if seg.format_version > FORMAT_VERSION {
        return Err(WalError::UnsupportedVersion {
            path: path.to_string(),
            version: seg.format_version,
        });
    }
    let mut out = Vec::with_capacity(seg.entries.len());
    for e in std::mem::take(&mut seg.entries) {
        let reader = StreamReader::try_new(Cursor::new(e.arrow_ipc), None)
            .map_err(|e| corrupt(e.to_string()))?;
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(e.to_string()))?;
        out.push(ReplayedEntry {
            database_id: e.database_id,
            database: e.database,
            table: e.table,
            sequence: e.sequence,
            batches,
        });
    }
    Ok((seg, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnType, arrow_schema};
    use arrow::array::{Float64Array, StringDictionaryBuilder, TimestampNanosecondArray};
    use arrow::datatypes::Int32Type;

    #[test]
    fn segment_round_trips_with_dictionary_tags() {
        let schema = arrow_schema([
            ("room", ColumnType::Tag),
            ("temp", ColumnType::Float),
            ("time", ColumnType::Time),
        ]);
        let mut tags = StringDictionaryBuilder::<Int32Type>::new();
        tags.append_value("kitchen");
        tags.append_null();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(tags.finish()),
                Arc::new(Float64Array::from(vec![Some(72.0), None])),
                Arc::new(TimestampNanosecondArray::from(vec![1, 2])),
            ],
        )
        .unwrap();
        let entry = EncodedEntry {
            database_id: 1,
            database: "db".into(),
            table: "home".into(),
            sequence: 42,
            ipc: encode_batch(&batch).unwrap(),
        };
        let store = Store::remote(Arc::new(object_store::memory::InMemory::new()));
        let path = segments(&store, "i").path(7);
        assert_eq!(path.to_string(), "wal/i/00000000000000000007");
        assert_eq!(segments(&store, "i").number(&path), Some(7));
        let bytes = encode_segment("i", 0, 7, &[entry]);
        let (seg, entries) = decode_segment(&path, bytes).unwrap();
        assert_eq!(
            (seg.segment, seg.epoch, seg.ingester_id.as_str()),
            (7, 0, "i")
        );
        assert_eq!(entries[0].sequence, 42);
        assert_eq!(
            (entries[0].database_id, entries[0].database.as_str()),
            (1, "db")
        );
        assert_eq!(entries[0].batches, vec![batch]);
    }

    /// A segment from a newer release is refused by name, not misread.
    #[test]
    fn future_versions_are_refused() {
        let seg = WalSegment {
            format_version: FORMAT_VERSION + 1,
            ingester_id: "i".into(),
            epoch: 0,
            segment: 3,
            entries: vec![],
        };
        let path = Path::from("wal/i/00000000000000000003");
        let err = decode_segment(&path, Bytes::from(seg.encode_to_vec())).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "WAL segment {path} has format version {}; this build reads up to {FORMAT_VERSION}",
                FORMAT_VERSION + 1
            )
        );
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let err = decode_segment(
            &Path::from("wal/i/00000000000000000001"),
            Bytes::from_static(b"\xff\xff\xff"),
        )
        .unwrap_err();
        assert!(matches!(err, WalError::Corrupt { .. }), "{err}");
    }
}
