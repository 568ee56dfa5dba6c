//! The summaries of Parquet files, by path, bounded by bytes and evicted
//! least recently used first. A file is summarised once however many queries
//! ask for it at the same time; the work runs in its own task, so a query
//! that gives up does not waste it, and at most a few files are summarised
//! at once (it reads and decodes whole files).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use object_store::ObjectStore;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::super::QueryError;
use super::file::FileSummary;
use crate::catalog::ParquetFile;

type Computing = Shared<BoxFuture<'static, Result<Arc<FileSummary>, QueryError>>>;

#[derive(Debug)]
pub struct FileSummaries {
    capacity: usize,
    state: Mutex<State>,
    permits: Semaphore,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Paths by last use: the first is evicted first.
    order: BTreeMap<u64, String>,
    tick: u64,
    bytes: usize,
    computing: HashMap<String, Computing>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("entries", &self.entries.len())
            .field("bytes", &self.bytes)
            .field("computing", &self.computing.len())
            .finish()
    }
}

struct Entry {
    summary: Arc<FileSummary>,
    used: u64,
}

impl State {
    fn touch(&mut self, path: &str) -> Option<Arc<FileSummary>> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(path)?;
        self.order.remove(&entry.used);
        entry.used = tick;
        self.order.insert(tick, path.to_string());
        Some(Arc::clone(&entry.summary))
    }

    /// Keeps `summary` if it fits in `capacity` at all, evicting the least
    /// recently used until it fits beside the rest.
    fn insert(&mut self, path: &str, summary: Arc<FileSummary>, capacity: usize) {
        if summary.bytes > capacity || self.entries.contains_key(path) {
            return;
        }
        while self.bytes + summary.bytes > capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.bytes -= e.summary.bytes;
            }
        }
        self.tick += 1;
        self.bytes += summary.bytes;
        self.order.insert(self.tick, path.to_string());
        self.entries.insert(
            path.to_string(),
            Entry {
                summary,
                used: self.tick,
            },
        );
    }
}

impl FileSummaries {
    /// A cache of at most `capacity` bytes of summaries.
    pub fn new(capacity: usize) -> Arc<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Arc::new(Self {
            capacity,
            state: Mutex::new(State::default()),
            permits: Semaphore::new(cores.min(8)),
        })
    }

    /// The most bytes of summaries kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held by the cached summaries, and how many there are.
    pub fn usage(&self) -> (usize, usize) {
        let state = self.state.lock();
        (state.bytes, state.entries.len())
    }

    /// The summary of `file`: cached, being computed for another query, or
    /// computed now (and cached if it fits).
    pub async fn get(
        self: &Arc<Self>,
        store: &Arc<dyn ObjectStore>,
        file: &ParquetFile,
    ) -> Result<Arc<FileSummary>, QueryError> {
        let computing = {
            let mut state = self.state.lock();
            if let Some(summary) = state.touch(&file.path) {
                return Ok(summary);
            }
            match state.computing.get(&file.path) {
                Some(c) => c.clone(),
                None => {
                    let c = self.compute(Arc::clone(store), file.clone());
                    state.computing.insert(file.path.clone(), c.clone());
                    c
                }
            }
        };
        computing.await
    }

    /// Summarises `file` in a task of its own; when done, the result is
    /// cached (if it fits) and the file is no longer being computed.
    fn compute(self: &Arc<Self>, store: Arc<dyn ObjectStore>, file: ParquetFile) -> Computing {
        let this = Arc::clone(self);
        let path = file.path.clone();
        let task = tokio::spawn(async move {
            let result = match this.permits.acquire().await {
                Ok(_permit) => FileSummary::read(store, &file, None).await.map(Arc::new),
                Err(e) => Err(QueryError::Internal(e.to_string())),
            };
            let mut state = this.state.lock();
            state.computing.remove(&file.path);
            if let Ok(summary) = &result {
                state.insert(&file.path, Arc::clone(summary), this.capacity);
            }
            result
        });
        let this = Arc::clone(self);
        async move {
            match task.await {
                Ok(result) => result,
                Err(e) => {
                    this.state.lock().computing.remove(&path);
                    Err(QueryError::Internal(format!("summarising {path}: {e}")))
                }
            }
        }
        .boxed()
        .shared()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(bytes: usize) -> Arc<FileSummary> {
        Arc::new(FileSummary {
            tags: vec![],
            tag_values: vec![],
            min_time: vec![],
            max_time: vec![],
            fields: vec![],
            bytes,
        })
    }

    #[test]
    fn evicts_the_least_recently_used_and_skips_what_cannot_fit() {
        let mut state = State::default();
        state.insert("a", summary(40), 100);
        state.insert("b", summary(40), 100);
        assert!(state.touch("a").is_some());
        // c needs room: b, used least recently, goes.
        state.insert("c", summary(40), 100);
        assert!(state.touch("b").is_none());
        assert!(state.touch("a").is_some() && state.touch("c").is_some());
        assert_eq!(state.bytes, 80);
        // Bigger than the whole cache: not kept, nothing evicted for it.
        state.insert("d", summary(101), 100);
        assert!(state.touch("d").is_none());
        assert_eq!((state.bytes, state.entries.len()), (80, 2));
        // Exactly the whole cache: everything else goes.
        state.insert("e", summary(100), 100);
        assert_eq!((state.bytes, state.entries.len()), (100, 1));
        assert_eq!(state.order.len(), 1);
    }
}
