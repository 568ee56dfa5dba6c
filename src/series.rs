//! Series cardinality: which series each database has, for its series quota.
//!
//! A series is a table and a tag set; its id hashes both
//! ([`crate::series_hash::series_id`]), the same way the router spreads rows
//! ([`crate::route::shard`]). A write checks
//! each line's series against what the database has ([`SeriesLookup`]): a line
//! that would add a series past the quota is refused, naming the limit and the
//! count, and adds nothing ([`Admission`]). Before its rows are sent, a write
//! commits the series it adds to the database's series log.
//!
//! The log is `<db>/series/<seq>` on the object store, appended with
//! create-only puts as the catalog is. A router whose view is behind finds its
//! slot taken, reads what it missed and checks again, so two routers never
//! admit more than the quota between them ([`DbSeries::commit`]).
//!
//! Series are kept by day, the partition of their points: an entry records a
//! series new to the database or to a day, and a series whose last day is
//! older than the retention period no longer counts, since its data is gone.
//! Every [`CHECKPOINT_EVERY`] entries the writer of an entry also writes the
//! whole live set as `checkpoint-<seq>` and deletes what the checkpoint before
//! it covered, so loading reads one checkpoint and a short tail.

use std::collections::HashMap as StdHashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path;
use prost::Message;
use tokio::sync::oneshot;

use crate::catalog::DbId;
use crate::lineproto::SeriesQuota;
use crate::proto::{FORMAT_VERSION, SeriesLog};
use crate::store::{AppendLog, Appended, Put, Store, StoreError};

type HashMap<K, V> = StdHashMap<K, V, ahash::RandomState>;

pub const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// Log entries between two checkpoints.
pub const CHECKPOINT_EVERY: u64 = 128;

/// Commits that find their slot taken before giving up.
const MAX_RACES: usize = 8;

/// How old a checkpoint must be before the entries it covers are deleted.
pub const DELETE_GRACE: Duration = Duration::from_secs(300);

/// The day (since the Unix epoch) a point at `time_ns` belongs to.
pub fn day_of(time_ns: i64) -> i32 {
    // Every i64 of nanoseconds is within ±106,752 days.
    time_ns.div_euclid(DAY_NS) as i32
}

/// The first nanosecond after `day`.
fn end_of(day: i32) -> i64 {
    (i64::from(day) + 1).saturating_mul(DAY_NS)
}

/// What a write asks of the series a database has.
pub trait SeriesLookup {
    /// The last day `series` has points in, if the database has it.
    fn last_day(&self, series: u64) -> Option<i32>;
    /// Series the database has.
    fn count(&self) -> usize;
    /// Most series it may have.
    fn limit(&self) -> usize;
}

/// A series a write adds to its database (`new`), or a later day it adds to
/// one the database has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesDay {
    pub series: u64,
    pub day: i32,
    pub new: bool,
}

/// The verdict on one line's series, to [`Admission::admit`] once the rest of
/// the line is accepted too.
#[derive(Debug, Clone, Copy)]
pub struct Checked {
    series: u64,
    day: i32,
    record: Record,
    /// Lines of this series before this time need no check.
    pub until_ns: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    Nothing,
    New,
    Day,
}

/// The series one write adds, checked line by line. Only admitted lines count,
/// so a refused line leaves room for a later one.
#[derive(Debug, Default)]
pub struct Admission {
    found: Vec<SeriesDay>,
    index: HashMap<u64, usize>,
    new: usize,
}

impl Admission {
    /// Whether a point of `series` at `time_ns` may be written.
    pub fn check(
        &self,
        lookup: &dyn SeriesLookup,
        series: u64,
        time_ns: i64,
    ) -> Result<Checked, SeriesQuota> {
        let day = day_of(time_ns);
        let checked = |record, last: i32| Checked {
            series,
            day,
            record,
            until_ns: end_of(last.max(day)),
        };
        if let Some(&i) = self.index.get(&series) {
            let have = self.found[i].day;
            let record = if day > have {
                Record::Day
            } else {
                Record::Nothing
            };
            return Ok(checked(record, have));
        }
        match lookup.last_day(series) {
            Some(last) if day <= last => Ok(checked(Record::Nothing, last)),
            Some(last) => Ok(checked(Record::Day, last)),
            None => {
                let current = lookup.count() + self.new;
                if current >= lookup.limit() {
                    return Err(SeriesQuota {
                        limit: lookup.limit(),
                        current,
                    });
                }
                Ok(checked(Record::New, day))
            }
        }
    }

    /// Counts a line checked by [`Self::check`] and then accepted.
    pub fn admit(&mut self, c: Checked) {
        match c.record {
            Record::Nothing => {}
            Record::Day => match self.index.get(&c.series) {
                Some(&i) => self.found[i].day = self.found[i].day.max(c.day),
                None => self.push(c, false),
            },
            Record::New => {
                self.new += 1;
                self.push(c, true);
            }
        }
    }

    fn push(&mut self, c: Checked, new: bool) {
        self.index.insert(c.series, self.found.len());
        self.found.push(SeriesDay {
            series: c.series,
            day: c.day,
            new,
        });
    }

    pub fn into_found(self) -> Vec<SeriesDay> {
        self.found
    }
}

/// An [`Admission`] asked line by line through a shared reference, as the
/// parser's check trait asks it: [`Self::check`] a line's series, then
/// [`Self::admit`] it once the rest of the line is accepted too.
pub struct LineAdmission<'a> {
    lookup: &'a dyn SeriesLookup,
    admission: std::cell::RefCell<Admission>,
    /// The verdict of the last check, for the admit that follows it.
    last: std::cell::Cell<Option<Checked>>,
}

impl<'a> LineAdmission<'a> {
    pub fn new(lookup: &'a dyn SeriesLookup) -> Self {
        Self {
            lookup,
            admission: Default::default(),
            last: Default::default(),
        }
    }

    /// Whether a point of `series` at `time_ns` may be written; `Ok` holds
    /// the time before which later points of the series need no check.
    pub fn check(&self, series: u64, time_ns: i64) -> Result<i64, SeriesQuota> {
        let checked = self
            .admission
            .borrow()
            .check(self.lookup, series, time_ns)?;
        self.last.set(Some(checked));
        Ok(checked.until_ns)
    }

    /// Counts the line [`Self::check`] was last asked about.
    pub fn admit(&self, series: u64) {
        if let Some(c) = self.last.take().filter(|c| c.series == series) {
            self.admission.borrow_mut().admit(c);
        }
    }

    pub fn into_found(self) -> Vec<SeriesDay> {
        self.admission.into_inner().into_found()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error("series log: {0}")]
    Store(#[from] StoreError),
    #[error("series log object {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(
        "series log object {path} has format version {version}; this build reads up to {FORMAT_VERSION}"
    )]
    UnsupportedVersion { path: String, version: u32 },
    #[error("the series log of database {0} kept changing under this write; retry")]
    Contended(DbId),
    /// The group commit this write was part of failed (the reason is shared).
    #[error("{0}")]
    Failed(String),
}

impl SeriesError {
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            Self::Store(_) | Self::Contended(_) | Self::Failed(_) => ErrorKind::Unavailable,
            Self::Corrupt { .. } | Self::UnsupportedVersion { .. } => ErrorKind::Internal,
        }
    }
}

/// The series every database has, loaded on first use.
pub struct SeriesRegistry {
    store: Store,
    databases: parking_lot::Mutex<HashMap<DbId, Arc<DbSeries>>>,
    delete_grace: Duration,
}

impl SeriesRegistry {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            databases: Default::default(),
            delete_grace: DELETE_GRACE,
        }
    }

    /// With another [`DELETE_GRACE`] (tests).
    pub fn with_delete_grace(mut self, grace: Duration) -> Self {
        self.delete_grace = grace;
        self
    }

    /// Database `db`'s series, read from the object store the first time.
    pub async fn database(&self, db: DbId) -> Result<Arc<DbSeries>, SeriesError> {
        let series =
            Arc::clone(self.databases.lock().entry(db).or_insert_with(|| {
                Arc::new(DbSeries::new(self.store.clone(), db, self.delete_grace))
            }));
        series.ensure_loaded().await?;
        Ok(series)
    }
}

/// The live series of one database: series → the last day it has points in.
#[derive(Debug)]
pub struct Live {
    last_day: HashMap<u64, i32>,
    /// Series whose last day is before this one no longer count (retention).
    cutoff_day: i32,
    limit: usize,
}

impl Live {
    fn new() -> Self {
        Self {
            last_day: HashMap::default(),
            cutoff_day: i32::MIN,
            limit: usize::MAX,
        }
    }

    fn apply(&mut self, log: &SeriesLog) {
        for (&series, &day) in log.series.iter().zip(&log.days) {
            if day < self.cutoff_day {
                continue;
            }
            let last = self.last_day.entry(series).or_insert(day);
            *last = (*last).max(day);
        }
    }

    fn to_log(&self) -> SeriesLog {
        let (series, days) = self.last_day.iter().map(|(&s, &d)| (s, d)).unzip();
        SeriesLog {
            format_version: FORMAT_VERSION,
            series,
            days,
        }
    }

    /// The entry that adds what a group of writes found and the database
    /// lacks, and whether each write fits the quota: in the order they came,
    /// each counting the series of those before it that fit.
    fn plan(&self, group: &[Waiting]) -> (SeriesLog, Vec<bool>) {
        let mut added: HashMap<u64, i32> = HashMap::default();
        let mut added_new = 0;
        let mut fits = Vec::with_capacity(group.len());
        let mut mine = Vec::new();
        for w in group {
            mine.clear();
            let mut new = 0;
            for f in &w.found {
                let last = self.last_day(f.series).max(added.get(&f.series).copied());
                if last.is_some_and(|last| f.day <= last) {
                    continue;
                }
                new += usize::from(last.is_none());
                mine.push((f.series, f.day));
            }
            let fit = new == 0 || self.count() + added_new + new <= self.limit;
            if fit {
                added_new += new;
                for &(series, day) in &mine {
                    let last = added.entry(series).or_insert(day);
                    *last = (*last).max(day);
                }
            }
            fits.push(fit);
        }
        let (series, days) = added.into_iter().unzip();
        let entry = SeriesLog {
            format_version: FORMAT_VERSION,
            series,
            days,
        };
        (entry, fits)
    }
}

impl SeriesLookup for Live {
    fn last_day(&self, series: u64) -> Option<i32> {
        self.last_day.get(&series).copied()
    }

    fn count(&self) -> usize {
        self.last_day.len()
    }

    fn limit(&self) -> usize {
        self.limit
    }
}

/// How a commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// The log has every series of the write.
    Done,
    /// Others added series since the write was checked, and with them its
    /// series no longer fit: check the write again.
    OverQuota,
}

/// Where this process is in a database's log.
#[derive(Debug, Default)]
struct LogPos {
    loaded: bool,
    /// The slot of the next entry.
    next: u64,
    /// The newest checkpoint this process knows.
    checkpoint: Option<u64>,
    /// When `next` was last seen free (see [`DbSeries::follows_log`]).
    synced: Option<Instant>,
}

/// A write waiting for its series to be in the log.
#[derive(Debug)]
struct Waiting {
    found: Vec<SeriesDay>,
    done: oneshot::Sender<Result<Committed, String>>,
}

#[derive(Debug)]
pub struct DbSeries {
    store: Store,
    db: DbId,
    /// The log's entries, `<db>/series/<seq>`, appended create-only.
    entries: AppendLog,
    /// Its checkpoints, `<db>/series/checkpoint-<seq>`, beside the entries.
    checkpoints: AppendLog,
    delete_grace: Duration,
    live: tokio::sync::RwLock<Live>,
    /// Held while reading or appending the log: one writer per process.
    log: tokio::sync::Mutex<LogPos>,
    /// The log was read once.
    loaded: std::sync::atomic::AtomicBool,
    /// Writes waiting for the log; whoever holds `log` next appends them all
    /// in one entry (a group commit), so concurrent writes share a put.
    waiting: parking_lot::Mutex<Vec<Waiting>>,
}

impl DbSeries {
    fn new(store: Store, db: DbId, delete_grace: Duration) -> Self {
        let entries = AppendLog::new(store.clone(), format!("{db}/series"));
        Self {
            checkpoints: entries.clone().with_prefix("checkpoint-"),
            entries,
            store,
            db,
            delete_grace,
            live: tokio::sync::RwLock::new(Live::new()),
            log: Default::default(),
            loaded: Default::default(),
            waiting: Default::default(),
        }
    }

    fn dir(&self) -> Path {
        Path::from(format!("{}/series", self.db))
    }

    fn entry(&self, seq: u64) -> Path {
        self.entries.path(seq)
    }

    fn checkpoint(&self, seq: u64) -> Path {
        self.checkpoints.path(seq)
    }

    /// The live set, for a write's check; held (shared) while the write parses.
    pub fn live(&self) -> &tokio::sync::RwLock<Live> {
        &self.live
    }

    /// Sets the quota and the retention: series last written before
    /// `cutoff_day` stop counting (and are forgotten).
    pub async fn prepare(&self, limit: usize, cutoff_day: Option<i32>) {
        let cutoff = cutoff_day.unwrap_or(i32::MIN);
        {
            let live = self.live.read().await;
            if live.limit == limit && live.cutoff_day >= cutoff {
                return;
            }
        }
        let mut live = self.live.write().await;
        live.limit = limit;
        if cutoff > live.cutoff_day {
            live.cutoff_day = cutoff;
            live.last_day.retain(|_, day| *day >= cutoff);
        }
    }

    /// Loads the log the first time; after that, never waits for the log
    /// (a write adding no series must not queue behind one that does).
    async fn ensure_loaded(&self) -> Result<(), SeriesError> {
        if self.loaded.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        let mut log = self.log.lock().await;
        if !log.loaded {
            self.load(&mut log).await?;
        }
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Reads the newest checkpoint and the entries after it. An object that
    /// vanishes meanwhile was covered by a newer checkpoint: start again.
    async fn load(&self, log: &mut LogPos) -> Result<(), SeriesError> {
        'attempt: for _ in 0..MAX_RACES {
            let listed = Instant::now();
            let mut checkpoint = None;
            let mut entries = Vec::new();
            for meta in self.store.list(&self.dir()).await? {
                let name = meta.location.filename().unwrap_or_default();
                match name.strip_prefix("checkpoint-") {
                    Some(seq) => checkpoint = checkpoint.max(seq.parse::<u64>().ok()),
                    None => entries.extend(name.parse::<u64>().ok()),
                }
            }
            let mut state = Live::new();
            {
                let live = self.live.read().await;
                (state.cutoff_day, state.limit) = (live.cutoff_day, live.limit);
            }
            if let Some(seq) = checkpoint {
                match self.read(&self.checkpoint(seq)).await {
                    Ok(all) => state.apply(&all),
                    Err(SeriesError::Store(StoreError::NotFound(_))) => continue 'attempt,
                    Err(e) => return Err(e),
                }
            }
            let mut next = checkpoint.map_or(0, |c| c + 1);
            entries.sort_unstable();
            entries.retain(|&s| s >= next);
            for seq in entries {
                if seq != next {
                    break; // a gap: a put after it raced the listing
                }
                match self.read(&self.entry(seq)).await {
                    Ok(entry) => state.apply(&entry),
                    Err(SeriesError::Store(StoreError::NotFound(_))) => continue 'attempt,
                    Err(e) => return Err(e),
                }
                next += 1;
            }
            *self.live.write().await = state;
            *log = LogPos {
                loaded: true,
                next,
                checkpoint,
                synced: Some(listed),
            };
            return Ok(());
        }
        Err(SeriesError::Contended(self.db))
    }

    async fn read(&self, path: &Path) -> Result<SeriesLog, SeriesError> {
        let bytes = self.store.get(path).await?;
        let corrupt = |reason: String| SeriesError::Corrupt {
            path: path.to_string(),
            reason,
        };
        let log = SeriesLog::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
        if log.format_version > FORMAT_VERSION {
            return Err(SeriesError::UnsupportedVersion {
                path: path.to_string(),
                version: log.format_version,
            });
        }
        if log.series.len() != log.days.len() {
            return Err(corrupt(format!(
                "{} series but {} days",
                log.series.len(),
                log.days.len()
            )));
        }
        Ok(log)
    }

    /// Adds what `found` has that the log lacks. Checks the quota again
    /// against everything the log has by then, and the writes committed with
    /// this one, in the order they came.
    pub async fn commit(self: &Arc<Self>, found: &[SeriesDay]) -> Result<Committed, SeriesError> {
        if found.is_empty() {
            return Ok(Committed::Done);
        }
        let (done, result) = oneshot::channel();
        self.waiting.lock().push(Waiting {
            found: found.to_vec(),
            done,
        });
        // In a task of its own, so a write whose client goes away does not
        // cancel the commit of the others in its group.
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut log = me.log.lock().await;
            let group = std::mem::take(&mut *me.waiting.lock());
            if !group.is_empty() {
                me.commit_group(&mut log, group).await;
            }
        });
        result
            .await
            .map_err(|_| SeriesError::Failed("the series log writer stopped".into()))?
            .map_err(SeriesError::Failed)
    }

    async fn commit_group(&self, log: &mut LogPos, group: Vec<Waiting>) {
        let outcome = async {
            for _ in 0..MAX_RACES {
                let (entry, fits) = self.live.read().await.plan(&group);
                if entry.series.is_empty() {
                    return Ok(fits);
                }
                let stale = log
                    .synced
                    .is_none_or(|t| t.elapsed() >= self.delete_grace / 5);
                if stale && !self.follows_log(log).await? {
                    self.load(log).await?;
                    continue;
                }
                let (seq, before) = (log.next, Instant::now());
                let bytes = Bytes::from(entry.encode_to_vec());
                match self.entries.create(seq, bytes).await? {
                    Appended::Written => {
                        self.live.write().await.apply(&entry);
                        log.next += 1;
                        log.synced = Some(before);
                        if seq - log.checkpoint.unwrap_or(0) >= CHECKPOINT_EVERY {
                            self.write_checkpoint(log, seq).await?;
                        }
                        return Ok(fits);
                    }
                    // Someone else's entry: take it in and try the next slot
                    // (a put there costs no more than asking whether it is free).
                    Appended::Taken => match self.read(&self.entry(seq)).await {
                        Ok(theirs) => {
                            self.live.write().await.apply(&theirs);
                            log.next += 1;
                        }
                        Err(SeriesError::Store(StoreError::NotFound(_))) => self.load(log).await?,
                        Err(e) => return Err(e),
                    },
                }
            }
            Err(SeriesError::Contended(self.db))
        }
        .await;
        match outcome {
            Ok(fits) => {
                for (w, fit) in group.into_iter().zip(fits) {
                    let committed = if fit {
                        Committed::Done
                    } else {
                        Committed::OverQuota
                    };
                    let _ = w.done.send(Ok(committed));
                }
            }
            Err(e) => {
                for w in group {
                    let _ = w.done.send(Err(e.to_string()));
                }
            }
        }
    }

    /// Whether the slot `log.next` follows the log: the entry before it still
    /// exists. Once a checkpoint has freed that entry, this process's view is
    /// behind, and a put there would land in a slot no reader looks at. A
    /// process that saw its slot free less than a fifth of the delete grace
    /// ago need not ask: entries are deleted only once a checkpoint covering
    /// them is older than that grace.
    async fn follows_log(&self, log: &LogPos) -> Result<bool, SeriesError> {
        let head = match log.next.checked_sub(1) {
            Some(prev) => self.store.head(&self.entry(prev)).await.map(|_| ()),
            // The very first entry: nothing may exist yet.
            None => match self.store.list(&self.dir()).await?.is_empty() {
                true => Ok(()),
                false => return Ok(false),
            },
        };
        match head {
            Ok(()) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the live set as of entry `seq`. Then deletes, in one request
    /// where the store allows, what the newest checkpoint older than the
    /// delete grace covers: the entries up to it, and it and older ones.
    async fn write_checkpoint(&self, log: &mut LogPos, seq: u64) -> Result<(), SeriesError> {
        let all = self.live.read().await.to_log();
        let bytes = Bytes::from(all.encode_to_vec());
        self.store
            .put(&self.checkpoint(seq), bytes, Put::Overwrite)
            .await?;
        log.checkpoint = Some(seq);
        let listed = self.store.list(&self.dir()).await?;
        let now = chrono::Utc::now();
        let grace = chrono::Duration::from_std(self.delete_grace).unwrap_or(chrono::Duration::MAX);
        let named = |meta: &object_store::ObjectMeta| {
            let name = meta.location.filename().unwrap_or_default();
            match name.strip_prefix("checkpoint-") {
                Some(c) => c.parse::<u64>().ok().map(|c| (true, c)),
                None => name.parse::<u64>().ok().map(|e| (false, e)),
            }
        };
        let cover = listed
            .iter()
            .filter(|m| now - m.last_modified >= grace)
            .filter_map(|m| named(m).filter(|&(check, c)| check && c < seq))
            .map(|(_, c)| c)
            .max();
        let Some(cover) = cover else {
            return Ok(());
        };
        let old: Vec<Path> = listed
            .into_iter()
            .filter(|m| named(m).is_some_and(|(_, n)| n <= cover))
            .map(|m| m.location)
            .collect();
        Ok(self.store.delete_many(old).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &std::path::Path) -> Store {
        Store::local(dir).unwrap()
    }

    fn day(series: u64, day: i32) -> SeriesDay {
        SeriesDay {
            series,
            day,
            new: true,
        }
    }

    /// Admits `series` (all at day 10) one by one as a write would.
    async fn write(db: &Arc<DbSeries>, series: &[u64]) -> Result<Vec<u64>, SeriesQuota> {
        let mut admission = Admission::default();
        let mut admitted = Vec::new();
        {
            let live = db.live().read().await;
            for &s in series {
                let c = admission.check(&*live, s, 10 * DAY_NS)?;
                admission.admit(c);
                admitted.push(s);
            }
        }
        assert_eq!(
            db.commit(&admission.into_found()).await.unwrap(),
            Committed::Done
        );
        Ok(admitted)
    }

    #[test]
    fn refused_lines_leave_room_and_known_series_need_no_room() {
        let mut live = Live::new();
        live.limit = 2;
        live.apply(&SeriesLog {
            format_version: 1,
            series: vec![1],
            days: vec![10],
        });
        let mut a = Admission::default();
        let at = |d: i64| d * DAY_NS + 5;
        a.admit(a.check(&live, 2, at(10)).unwrap());
        // Full: a third series is refused, with the count so far.
        assert_eq!(
            a.check(&live, 3, at(10)).unwrap_err(),
            SeriesQuota {
                limit: 2,
                current: 2
            }
        );
        // Known series still pass; a later day of one is recorded, not counted.
        assert_eq!(a.check(&live, 1, at(10)).unwrap().until_ns, at(11) - 5);
        a.admit(a.check(&live, 1, at(12)).unwrap());
        a.admit(a.check(&live, 2, at(11)).unwrap());
        assert_eq!(
            a.into_found(),
            [
                day(2, 11),
                SeriesDay {
                    series: 1,
                    day: 12,
                    new: false
                }
            ]
        );
        // A check that is not admitted counts for nothing.
        let b = Admission::default();
        b.check(&live, 7, at(10)).unwrap();
        assert_eq!(b.into_found(), []);
    }

    #[tokio::test]
    async fn two_routers_never_admit_more_than_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        let a = SeriesRegistry::new(store(dir.path()));
        let b = SeriesRegistry::new(store(dir.path()));
        let (da, db) = (a.database(1).await.unwrap(), b.database(1).await.unwrap());
        da.prepare(3, None).await;
        db.prepare(3, None).await;
        write(&da, &[1, 2]).await.unwrap();
        // b has not seen a's entry: its check passes, its commit must not.
        let mut admission = Admission::default();
        {
            let live = db.live().read().await;
            for s in [3, 4] {
                admission.admit(admission.check(&*live, s, 10 * DAY_NS).unwrap());
            }
        }
        let found = admission.into_found();
        assert_eq!(db.commit(&found).await.unwrap(), Committed::OverQuota);
        // Checked again against what b now knows, one of them fits.
        assert_eq!(
            write(&db, &[3, 4]).await.unwrap_err(),
            SeriesQuota {
                limit: 3,
                current: 3
            }
        );
        write(&db, &[3]).await.unwrap();
        assert_eq!(db.live().read().await.count(), 3);
        // Known series commit nothing.
        write(&da, &[1, 2]).await.unwrap();
        assert_eq!(a.database(1).await.unwrap().live().read().await.count(), 2);
        let fresh = SeriesRegistry::new(store(dir.path()));
        assert_eq!(
            fresh.database(1).await.unwrap().live().read().await.count(),
            3
        );
    }

    #[tokio::test]
    async fn checkpoints_bound_the_log_and_load_the_same_set() {
        let dir = tempfile::tempdir().unwrap();
        let registry = || SeriesRegistry::new(store(dir.path())).with_delete_grace(Duration::ZERO);
        let a = registry();
        let da = a.database(4).await.unwrap();
        // A second router that loads now and then falls far behind.
        let b = registry();
        let db = b.database(4).await.unwrap();
        let entries = 3 * CHECKPOINT_EVERY + 5;
        for s in 0..entries {
            write(&da, &[s]).await.unwrap();
        }
        let names: Vec<String> = da
            .store
            .list(&da.dir())
            .await
            .unwrap()
            .iter()
            .map(|m| m.location.filename().unwrap().to_string())
            .collect();
        // The newest checkpoint, and the entries since the one before it.
        let checkpoints: Vec<_> = names.iter().filter(|n| n.starts_with("check")).collect();
        assert_eq!(
            checkpoints,
            [&format!("checkpoint-{:020}", 3 * CHECKPOINT_EVERY)]
        );
        assert_eq!(
            names.len() as u64,
            1 + (entries - 2 * CHECKPOINT_EVERY - 1),
            "{names:?}"
        );
        let fresh = SeriesRegistry::new(store(dir.path()));
        let loaded = fresh.database(4).await.unwrap();
        assert_eq!(loaded.live().read().await.count() as u64, entries);
        // The router that fell behind notices its slot was freed, reloads,
        // and appends after the end.
        write(&db, &[u64::MAX]).await.unwrap();
        assert_eq!(db.live().read().await.count() as u64, entries + 1);
        let fresh = SeriesRegistry::new(store(dir.path()));
        let loaded = fresh.database(4).await.unwrap();
        assert_eq!(loaded.live().read().await.count() as u64, entries + 1);
    }

    /// Concurrent writes share one entry; in the order they came, those that
    /// no longer fit are told so, and the others are committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_an_entry_within_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        let reg = SeriesRegistry::new(store(dir.path()));
        let db = reg.database(3).await.unwrap();
        db.prepare(5, None).await;
        let commits = (0..20u64).map(|i| {
            let db = Arc::clone(&db);
            // Each write adds series i and i + 1: neighbours overlap.
            tokio::spawn(async move { db.commit(&[day(i, 10), day(i + 1, 10)]).await })
        });
        let outcomes = futures::future::try_join_all(commits).await.unwrap();
        let done = outcomes
            .iter()
            .filter(|o| *o.as_ref().unwrap() == Committed::Done)
            .count();
        let live = db.live().read().await;
        assert!((4..=5).contains(&live.count()), "{}", live.count());
        assert!(done >= 2, "{outcomes:?}");
        // Fewer entries than writes: they were grouped.
        let entries = db.store.list(&db.dir()).await.unwrap().len();
        assert!(entries <= done, "{entries} entries for {done} writes");
        drop(live);
        let again = SeriesRegistry::new(store(dir.path()));
        let loaded = again.database(3).await.unwrap();
        assert_eq!(
            loaded.live().read().await.count(),
            db.live().read().await.count()
        );
    }

    #[tokio::test]
    async fn series_past_retention_stop_counting() {
        let dir = tempfile::tempdir().unwrap();
        let reg = SeriesRegistry::new(store(dir.path()));
        let db = reg.database(2).await.unwrap();
        db.prepare(2, None).await;
        let found = [day(1, 10), day(2, 12)];
        assert_eq!(db.commit(&found).await.unwrap(), Committed::Done);
        assert_eq!(db.live().read().await.count(), 2);
        // Day 10's data is gone: series 1 no longer counts, so 3 fits.
        db.prepare(2, Some(11)).await;
        assert_eq!(db.live().read().await.count(), 1);
        assert_eq!(db.live().read().await.last_day(1), None);
        let found = [day(3, 12)];
        assert_eq!(db.commit(&found).await.unwrap(), Committed::Done);
        // Loading skips what retention dropped, too.
        let again = SeriesRegistry::new(store(dir.path()));
        let db = again.database(2).await.unwrap();
        db.prepare(2, Some(11)).await;
        let live = db.live().read().await;
        assert_eq!((live.count(), live.last_day(1)), (2, None));
    }

    #[tokio::test]
    async fn a_future_format_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let log = SeriesLog {
            format_version: FORMAT_VERSION + 1,
            ..Default::default()
        };
        s.put(
            &Path::from("9/series/00000000000000000000"),
            Bytes::from(log.encode_to_vec()),
            Put::Create,
        )
        .await
        .unwrap();
        let err = SeriesRegistry::new(s).database(9).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "series log object 9/series/00000000000000000000 has format version {}; this build reads up to {FORMAT_VERSION}",
                FORMAT_VERSION + 1
            )
        );
    }
}
