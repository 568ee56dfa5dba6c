//! The WAL of a one-process server on a local directory: segments appended to
//! one file at a time, rather than a file each.
//!
//! A segment as a file of its own costs a commit two cache flushes and three
//! directory changes (temp file, `fdatasync`, link, unlink, directory fsync);
//! an append costs one `fdatasync`. Only a process that holds the data
//! directory's lock writes this way (`IngesterConfig::exclusive`): nothing
//! else can write its prefix, so it needs no fence. Everything else reads
//! these files as it reads segment objects: replay, takeover, `lease::fence`
//! (for the numbers they hold) and the deletion of covered segments.
//!
//! A file is the object `wal/<id>/<first segment>.log`; each record is
//! `[length u32][crc32 u32][segment u64][WalSegment protobuf]`, little-endian,
//! the checksum over the segment number and the body. A run starts a new file
//! and rolls to another at [`ROLL_BYTES`], so a file's segments all come
//! before the next file's first. A record is acknowledged only after the
//! `fdatasync` that follows it, so a crash can only leave the last record of a
//! file torn: replay drops it. A bad record with data after it is corruption,
//! refused by name like a corrupt segment object.

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
const HEADER: usize = 16;
const SUFFIX: &str = ".log";

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

/// The first segment of a log file's object path, if it is one.
pub fn first_segment(path: &Path) -> Option<u64> {
    path.filename()?.strip_suffix(SUFFIX)?.parse().ok()
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
    record.extend_from_slice(&checksum(segment, body).to_le_bytes());
    record.extend_from_slice(&segment.to_le_bytes());
    record.extend_from_slice(body);
    record
}

fn checksum(segment: u64, body: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&segment.to_le_bytes());
    crc.update(body);
    crc.finalize()
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// The records of one log file, in order, without a torn last one.
pub fn read(path: &Path, file: &Bytes) -> Result<Vec<Record>, LogError> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < file.len() {
        let rest = &file[at..];
        // Appended but never written back: the size reached the disk before
        // the data did (a crash of the machine, not of the process).
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        if rest.len() < HEADER {
            break; // torn inside the header
        }
        let len = u32_at(rest, 0) as usize;
        let Some(end) = (HEADER + len <= rest.len()).then_some(HEADER + len) else {
            break; // torn inside the body
        };
        let segment = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
        let body = file.slice(at + HEADER..at + end);
        if checksum(segment, &body) != u32_at(rest, 4) {
            if end == rest.len() {
                break; // the last record, torn
            }
            return Err(LogError::Corrupt {
                path: path.to_string(),
                offset: at,
                reason: "checksum mismatch in a record that is not the last",
            });
        }
        records.push(Record { segment, body });
        at += end;
    }
    Ok(records)
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
        // 56 bytes a record: a file takes two before it reaches 100.
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
        let path = Path::from("wal/i/00000000000000000001.log");
        let mut good = encode(1, b"first");
        good.extend(encode(2, b"second"));
        let next = encode(3, b"third, never acknowledged");
        let mut bad_crc = next.clone();
        *bad_crc.last_mut().unwrap() ^= 1;
        let tails: [&[u8]; 5] = [
            &next[..HEADER - 3],
            &next[..next.len() - 1],
            &[0; 40],
            &bad_crc,
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
        let path = Path::from("wal/i/00000000000000000001.log");
        let mut file = encode(1, b"first");
        let second = file.len();
        file.extend(encode(2, b"second"));
        file[second + HEADER] ^= 1;
        file.extend(encode(3, b"third"));
        let err = read(&path, &Bytes::from(file)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "WAL log {path} is corrupt at byte {second}: \
                 checksum mismatch in a record that is not the last"
            )
        );
    }

    /// A retry of a failed append may find the file it was starting: it holds
    /// nothing acknowledged, and is started again.
    #[tokio::test]
    async fn a_new_file_replaces_one_of_the_same_first_segment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("wal/i")).unwrap();
        let torn = encode(9, b"torn");
        std::fs::write(
            dir.path().join("wal/i/00000000000000000009.log"),
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
