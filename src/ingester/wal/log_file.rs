//! The WAL of a one-process server on a local directory: segments appended to
//! one file at a time, rather than a file each.
//!
//! A segment as a file of its own costs a commit two cache flushes and three
//! directory changes (temp file, `fdatasync`, link, unlink, directory fsync);
//! an append costs one `fdatasync`. Only a process that holds the data
//! directory's lock writes this way (`IngesterConfig::exclusive`): nothing
//! else can write its prefix, so it needs no fence. Everything else reads
//! these files as it reads segment objects: replay, takeover, [`super::fence`]
//! (for the numbers they hold) and the deletion of covered segments.
//!
//! A file is the object `wal/<id>/<first segment>.log2`; each record is
//! `[length u32][segment u64][body crc32 u32][header crc32 u32][WalSegment
//! protobuf]`, little-endian, the header checksum over the 16 bytes before
//! it. A run starts a new file and rolls to another at [`ROLL_BYTES`], so a
//! file's segments all come before the next file's first, and within a file
//! each record's segment is one more than the one before it (a failed append
//! starts a new file). A record is acknowledged only after the `fdatasync`
//! that follows it, so a crash can only leave the last record of a file torn:
//! replay drops it. A bad record with data after it is corruption, refused by
//! file and byte offset like a corrupt segment object: a bit flip in a
//! length must not pass for a torn tail and drop the acknowledged records
//! after it.
//!
//! Earlier builds wrote `<first segment>.log` files whose records were
//! `[length u32][crc32 u32][segment u64][body]`, the checksum over the segment
//! number and the body but not the length; such files (left by a run killed
//! before an upgrade) are still read, by their name. For them a length that
//! runs past the end is taken for a torn tail only if no intact record of
//! the next segment number follows.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use parking_lot::Mutex;

use crate::store::{LocalFiles, Store, StoreError};

/// Where a file ends and the next begins; bounds the WAL kept after a
/// snapshot, as a file is deleted only when every segment in it is covered.
pub const ROLL_BYTES: u64 = 64 << 20;
const HEADER: usize = 20;
const SUFFIX: &str = ".log2";
/// The files of earlier builds, whose headers had no checksum of their own.
const SUFFIX_V1: &str = ".log";
const HEADER_V1: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("WAL log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("WAL log {path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: String,
        offset: usize,
        reason: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "WAL log {0} could not be cut back after a failed append; \
         commits are refused until the ingester restarts"
    )]
    Poisoned(PathBuf),
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> LogError {
    let path = path.to_path_buf();
    move |source| LogError::Io { path, source }
}

/// The object path of the log file whose first segment is `first`.
pub fn file_path(ingester_id: &str, first: u64) -> Path {
    Path::from(format!("wal/{ingester_id}/{first:020}{SUFFIX}"))
}

/// The record layout of a log file, told by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Before the header had a checksum of its own.
    V1,
    V2,
}

fn name_of(path: &Path) -> Option<(u64, Format)> {
    let name = path.filename()?;
    let (first, format) = match name.strip_suffix(SUFFIX) {
        Some(first) => (first, Format::V2),
        None => (name.strip_suffix(SUFFIX_V1)?, Format::V1),
    };
    Some((first.parse().ok()?, format))
}

/// The first segment of a log file's object path, if it is one (of either
/// format).
pub fn first_segment(path: &Path) -> Option<u64> {
    name_of(path).map(|(first, _)| first)
}

/// One segment read back from a log file.
#[derive(Debug, PartialEq)]
pub struct Record {
    pub segment: u64,
    pub body: Bytes,
}

fn encode(segment: u64, body: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(HEADER + body.len());
    record.extend_from_slice(&(body.len() as u32).to_le_bytes());
    record.extend_from_slice(&segment.to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    let header_crc = crc32fast::hash(&record[..HEADER - 4]);
    record.extend_from_slice(&header_crc.to_le_bytes());
    record.extend_from_slice(body);
    record
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// A record header whose own checksum holds.
struct Header {
    len: usize,
    segment: u64,
    body_crc: u32,
}

fn header_at(file: &[u8], at: usize) -> Option<Header> {
    let header = file.get(at..at + HEADER)?;
    (crc32fast::hash(&header[..HEADER - 4]) == u32_at(header, HEADER - 4)).then(|| Header {
        len: u32_at(header, 0) as usize,
        segment: u64_at(header, 4),
        body_crc: u32_at(header, 12),
    })
}

/// The records of one log file, in order, without a torn last one.
pub fn read(path: &Path, file: &Bytes) -> Result<Vec<Record>, LogError> {
    let Some((first, format)) = name_of(path) else {
        return Err(LogError::Corrupt {
            path: path.to_string(),
            offset: 0,
            reason: "not the name of a WAL log file",
        });
    };
    let read = match format {
        Format::V1 => read_v1(file, first),
        Format::V2 => read_v2(file),
    };
    let (records, torn) = read.map_err(|(offset, reason)| LogError::Corrupt {
        path: path.to_string(),
        offset,
        reason,
    })?;
    if let Some(offset) = torn {
        tracing::warn!(
            %path,
            offset,
            bytes = file.len() - offset,
            "WAL log ends in a torn record (a crash during its append): dropped"
        );
    }
    Ok(records)
}

/// Records, and the offset of a torn last record; or where and why the file
/// is corrupt.
type Read = Result<(Vec<Record>, Option<usize>), (usize, &'static str)>;

fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

fn read_v2(file: &Bytes) -> Read {
    let mut records: Vec<Record> = Vec::new();
    let mut at = 0;
    while at < file.len() {
        let rest = &file[at..];
        // Appended but never written back: the size reached the disk before
        // the data did (a crash of the machine, not of the process).
        if is_zero(rest) || rest.len() < HEADER {
            return Ok((records, Some(at)));
        }
        let Some(header) = header_at(file, at) else {
            // Its length cannot be trusted, so where it ends is unknown: it is
            // the last record only if no intact one comes after it.
            if header_follows(file, at + 1) {
                return Err((at, "bad header checksum in a record that is not the last"));
            }
            return Ok((records, Some(at)));
        };
        let end = HEADER + header.len;
        if end > rest.len() {
            return Ok((records, Some(at))); // torn inside the body
        }
        let body = file.slice(at + HEADER..at + end);
        if crc32fast::hash(&body) != header.body_crc {
            if is_zero(&rest[end..]) {
                return Ok((records, Some(at))); // the last record, torn
            }
            return Err((at, "bad checksum in a record that is not the last"));
        }
        records.push(Record {
            segment: header.segment,
            body,
        });
        at += end;
    }
    Ok((records, None))
}

fn checksum_v1(segment: u64, body: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&segment.to_le_bytes());
    crc.update(body);
    crc.finalize()
}

/// An intact record of the old format at `at`, and where it ends.
fn record_v1_at(file: &[u8], at: usize) -> Option<(u64, usize)> {
    let header = file.get(at..at + HEADER_V1)?;
    let end = at + HEADER_V1 + u32_at(header, 0) as usize;
    let segment = u64_at(header, 8);
    let body = file.get(at + HEADER_V1..end)?;
    (checksum_v1(segment, body) == u32_at(header, 4)).then_some((segment, end))
}

fn read_v1(file: &Bytes, first: u64) -> Read {
    let mut records: Vec<Record> = Vec::new();
    let mut at = 0;
    while at < file.len() {
        let rest = &file[at..];
        if is_zero(rest) || rest.len() < HEADER_V1 {
            return Ok((records, Some(at)));
        }
        let expected = first + records.len() as u64;
        let end = HEADER_V1 + u32_at(rest, 0) as usize;
        if end > rest.len() {
            // Torn inside the body, or a length no checksum covers gone bad.
            if record_v1_follows(file, at + 1, expected + 1) {
                return Err((at, "length runs past the records that follow it"));
            }
            return Ok((records, Some(at)));
        }
        match record_v1_at(file, at) {
            Some((segment, _)) => records.push(Record {
                segment,
                body: file.slice(at + HEADER_V1..at + end),
            }),
            None if end == rest.len() => return Ok((records, Some(at))),
            None => return Err((at, "checksum mismatch in a record that is not the last")),
        }
        at += end;
    }
    Ok((records, None))
}

/// Whether an intact record header starts anywhere from `from` on, its
/// record within the file: what follows a bad record that is not the last.
/// A false match takes a 32-bit checksum agreeing by chance, and errs towards
/// refusing the file, never towards dropping records.
fn header_follows(file: &[u8], from: usize) -> bool {
    (from..file.len().saturating_sub(HEADER - 1))
        .any(|at| header_at(file, at).is_some_and(|h| at + HEADER + h.len <= file.len()))
}

/// Whether an intact old-format record of segment `segment` starts anywhere
/// from `from` on. Segments in a file are consecutive, so the record after a
/// bad one has the next number: its bytes are found first, then the record
/// around them checked whole (a scan checking every offset would sum every
/// length it finds).
fn record_v1_follows(file: &[u8], from: usize, segment: u64) -> bool {
    let needle = segment.to_le_bytes();
    let Some(haystack) = file.get(from + 8..) else {
        return false;
    };
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .any(|(i, _)| record_v1_at(file, from + i).is_some())
}

/// The last segment the log file at `path` holds, if any.
pub async fn last_segment(store: &Store, path: &Path) -> Result<Option<u64>, LogError> {
    let bytes = store.get(path).await?;
    Ok(read(path, &bytes)?.last().map(|r| r.segment))
}

/// Appends segments to this run's log files. Cloned handles share one file.
#[derive(Debug, Clone)]
pub struct LogWriter {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    files: LocalFiles,
    ingester_id: String,
    roll_bytes: u64,
    open: Option<Open>,
    poisoned: Option<PathBuf>,
}

#[derive(Debug)]
struct Open {
    file: File,
    path: PathBuf,
    len: u64,
}

impl LogWriter {
    /// A writer for `wal/<ingester_id>` in a local data directory; its first
    /// append starts a new file.
    pub fn new(files: LocalFiles, ingester_id: &str) -> Self {
        Self::with_roll(files, ingester_id, ROLL_BYTES)
    }

    fn with_roll(files: LocalFiles, ingester_id: &str, roll_bytes: u64) -> Self {
        let state = State {
            files,
            ingester_id: ingester_id.to_string(),
            roll_bytes,
            open: None,
            poisoned: None,
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Appends segment `segment` (a `WalSegment`'s bytes) and returns once it
    /// is durable. Segments must come in increasing order.
    pub async fn append(&self, segment: u64, body: Bytes) -> Result<(), LogError> {
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || state.lock().append(segment, &body))
            .await
            .map_err(|e| LogError::Io {
                path: PathBuf::from("(append task)"),
                source: std::io::Error::other(e),
            })?
    }
}

impl State {
    fn append(&mut self, segment: u64, body: &[u8]) -> Result<(), LogError> {
        if let Some(path) = &self.poisoned {
            return Err(LogError::Poisoned(path.clone()));
        }
        if self.open.as_ref().is_none_or(|o| o.len >= self.roll_bytes) {
            self.open = Some(self.create(segment)?);
        }
        let open = self.open.as_mut().expect("a file was opened above");
        let record = encode(segment, body);
        let written = open
            .file
            .write_all_at(&record, open.len)
            .and_then(|()| open.file.sync_data());
        match written {
            Ok(()) => {
                open.len += record.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut the file back to its last good record, and go on in a new
                // file: after a failed fsync, what the page cache holds of this
                // one cannot be trusted. If even the cut fails, stop.
                let cut = open
                    .file
                    .set_len(open.len)
                    .and_then(|()| open.file.sync_data());
                if cut.is_err() {
                    self.poisoned = Some(open.path.clone());
                }
                let err = io(&open.path)(e);
                self.open = None;
                Err(err)
            }
        }
    }

    /// Creates the file for segments from `first` on, its name durable before
    /// any record in it is acknowledged. A file of that name can only exist if
    /// it holds no committed segment (those would have moved `first` past it
    /// at replay, or it is a retry after a failed append): it is emptied.
    fn create(&self, first: u64) -> Result<Open, LogError> {
        let location = file_path(&self.ingester_id, first);
        let (file, path) = self.files.create_appendable(&location)?;
        Ok(Open { file, path, len: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(root: &std::path::Path, roll: u64) -> LogWriter {
        let files = Store::local(root).unwrap().local_files().unwrap();
        LogWriter::with_roll(files, "i", roll)
    }

    /// The log files under `root`, by first segment, with their records.
    fn files(root: &std::path::Path) -> Vec<(u64, Vec<Record>)> {
        let mut names: Vec<_> = std::fs::read_dir(root.join("wal/i"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let path = Path::from(format!("wal/i/{name}"));
                let bytes = Bytes::from(std::fs::read(root.join("wal/i").join(&name)).unwrap());
                (first_segment(&path).unwrap(), read(&path, &bytes).unwrap())
            })
            .collect()
    }

    fn segments(records: &[Record]) -> Vec<u64> {
        records.iter().map(|r| r.segment).collect()
    }

    #[tokio::test]
    async fn appends_read_back_in_files_that_roll() {
        let dir = tempfile::tempdir().unwrap();
        let log = writer(dir.path(), 100);
        for segment in 3..8 {
            let body = Bytes::from(vec![segment as u8; 40]);
            log.append(segment, body).await.unwrap();
        }
        // 60 bytes a record: a file takes two before it reaches 100.
        let files = files(dir.path());
        let layout: Vec<_> = files.iter().map(|(f, r)| (*f, segments(r))).collect();
        assert_eq!(layout, vec![(3, vec![3, 4]), (5, vec![5, 6]), (7, vec![7])]);
        assert_eq!(files[2].1[0].body, Bytes::from(vec![7u8; 40]));
        assert_eq!(
            first_segment(&file_path("i", 7)),
            Some(7),
            "the writer's names are the object paths readers parse"
        );
        assert_eq!(
            first_segment(&Path::from("wal/i/00000000000000000007")),
            None
        );
    }

    /// What a kill -9 mid-append leaves (a short record), or a machine crash
    /// (a size with no data, or a checksum that fails on the last record), is
    /// dropped; the records before it are kept.
    #[test]
    fn a_torn_last_record_is_dropped() {
        let path = file_path("i", 1);
        let mut good = encode(1, b"first");
        good.extend(encode(2, b"second"));
        let next = encode(3, b"third, never acknowledged");
        let mut bad_crc = next.clone();
        *bad_crc.last_mut().unwrap() ^= 1;
        let mut bad_header = next.clone();
        bad_header[2] ^= 4;
        let mut zero_header = next.clone();
        zero_header[..HEADER].fill(0);
        let tails: [&[u8]; 7] = [
            &next[..HEADER - 3],
            &next[..next.len() - 1],
            &[0; 40],
            &bad_crc,
            &bad_header,
            &zero_header,
            &[],
        ];
        for tail in tails {
            let file = Bytes::from([good.as_slice(), tail].concat());
            let records = read(&path, &file).unwrap();
            assert_eq!(segments(&records), vec![1, 2], "tail {tail:?}");
            assert_eq!(records[1].body, Bytes::from_static(b"second"));
        }
    }

    #[test]
    fn a_bad_record_with_more_after_it_is_corruption() {
        let path = file_path("i", 1);
        let mut file = encode(1, b"first");
        let second = file.len();
        file.extend(encode(2, b"second"));
        file.extend(encode(3, b"third"));
        let cases = [
            (
                second + HEADER,
                "bad checksum in a record that is not the last",
            ),
            (
                second,
                "bad header checksum in a record that is not the last",
            ),
            (
                second + 9,
                "bad header checksum in a record that is not the last",
            ),
        ];
        for (at, reason) in cases {
            let mut damaged = file.clone();
            damaged[at] ^= 1;
            let err = read(&path, &Bytes::from(damaged)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("WAL log {path} is corrupt at byte {second}: {reason}")
            );
        }
    }

    /// The record format of earlier builds, for the files they left.
    fn encode_v1(segment: u64, body: &[u8]) -> Vec<u8> {
        let mut record = (body.len() as u32).to_le_bytes().to_vec();
        record.extend_from_slice(&checksum_v1(segment, body).to_le_bytes());
        record.extend_from_slice(&segment.to_le_bytes());
        record.extend_from_slice(body);
        record
    }

    /// A `.log` file of an earlier build (say, left by a kill before an
    /// upgrade) replays; its torn tail is dropped; a length gone bad in the
    /// middle is refused, not taken for a tear, as an intact record of the
    /// next segment follows it.
    #[test]
    fn files_of_the_earlier_format_are_still_read() {
        let path = Path::from("wal/i/00000000000000000007.log");
        assert_eq!(first_segment(&path), Some(7));
        let mut file = encode_v1(7, b"seven");
        let second = file.len();
        file.extend(encode_v1(8, b"eight"));
        let third = file.len();
        file.extend(encode_v1(9, b"nine"));
        let records = read(&path, &Bytes::from(file.clone())).unwrap();
        assert_eq!(segments(&records), [7, 8, 9]);
        assert_eq!(records[1].body, Bytes::from_static(b"eight"));

        let torn = Bytes::from(file[..file.len() - 2].to_vec());
        assert_eq!(segments(&read(&path, &torn).unwrap()), [7, 8]);
        let mut long = file.clone();
        long[third + 3] ^= 0x80;
        assert_eq!(segments(&read(&path, &Bytes::from(long)).unwrap()), [7, 8]);

        let mut damaged = file.clone();
        damaged[second + 3] ^= 0x80;
        let err = read(&path, &Bytes::from(damaged)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "WAL log {path} is corrupt at byte {second}: \
                 length runs past the records that follow it"
            )
        );
    }

    /// A log written by the writer, then damaged in a copy as a disk can damage
    /// it. A bad record with records after it names the file and its byte;
    /// only the last record may go silently, as a torn append.
    #[tokio::test]
    async fn a_damaged_record_is_refused_by_file_and_byte_unless_it_is_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let log = writer(dir.path(), ROLL_BYTES);
        for segment in 1..=5 {
            let body = Bytes::from(vec![segment as u8; 100]);
            log.append(segment, body).await.unwrap();
        }
        let mut names: Vec<_> = std::fs::read_dir(dir.path().join("wal/i"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let name = names.remove(0);
        let path = Path::from(format!("wal/i/{name}"));
        let file = std::fs::read(dir.path().join("wal/i").join(&name)).unwrap();
        let size = file.len() / 5; // every record the same size
        let damaged = |at: usize, bit: u8| {
            let mut copy = file.clone();
            copy[at] ^= bit;
            Bytes::from(copy)
        };
        assert_eq!(
            segments(&read(&path, &Bytes::from(file.clone())).unwrap()),
            [1, 2, 3, 4, 5]
        );

        // The third record: its length's top bit (now past the end of the
        // file), its length's lowest bit, a bit of its payload.
        let third = 2 * size;
        for (at, bit) in [(third + 3, 0x80), (third, 0x01), (third + size - 1, 0x01)] {
            let err = read(&path, &damaged(at, bit)).map(|r| segments(&r));
            let err = err.expect_err(&format!("bit {bit:#x} of byte {at}"));
            let named = format!("WAL log {path} is corrupt at byte {third}: ");
            assert!(err.to_string().starts_with(&named), "{err}");
        }

        // The last record damaged, or cut short: dropped as a torn append,
        // the four before it kept.
        let last = 4 * size;
        for (at, bit) in [(last + 3, 0x80), (last, 0x01), (last + size - 1, 0x01)] {
            let records = read(&path, &damaged(at, bit)).unwrap();
            assert_eq!(
                segments(&records),
                [1, 2, 3, 4],
                "bit {bit:#x} of byte {at}"
            );
        }
        for cut in [last + 7, last + size - 1] {
            let records = read(&path, &Bytes::from(file[..cut].to_vec())).unwrap();
            assert_eq!(segments(&records), [1, 2, 3, 4], "cut at {cut}");
            assert_eq!(records[3].body, Bytes::from(vec![4u8; 100]));
        }
    }

    /// A retry of a failed append may find the file it was starting: it holds
    /// nothing acknowledged, and is started again.
    #[tokio::test]
    async fn a_new_file_replaces_one_of_the_same_first_segment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("wal/i")).unwrap();
        let torn = encode(9, b"torn");
        std::fs::write(
            dir.path().join("wal/i/00000000000000000009.log2"),
            &torn[..10],
        )
        .unwrap();
        writer(dir.path(), ROLL_BYTES)
            .append(9, Bytes::from_static(b"again"))
            .await
            .unwrap();
        let files = files(dir.path());
        assert_eq!(files.len(), 1);
        assert_eq!(
            files[0].1,
            vec![Record {
                segment: 9,
                body: Bytes::from_static(b"again")
            }]
        );
    }
}
