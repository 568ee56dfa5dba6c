//! The lease side of an ingester: claiming its own WAL prefix at start, the
//! heartbeat that keeps the claim, claiming it again after a fence, and the
//! takeover of a prefix whose holder's lease expired (fence it, replay its
//! uncovered WAL into Parquet, register the files in its files log, release).
//!
//! Apart from the write path because it runs on the lease's clock (every
//! ttl/3), and because it is the one place where one ingester acts on another's
//! prefix.

use std::sync::Arc;

use super::buffer::Buffer;
use super::persist::persist;
use super::wal::log_file::LogWriter;
use super::wal::replay::replay;
use super::wal::{self, Position};
use super::{Ingester, IngesterConfig, IngesterError, max_sequence_of};
use crate::catalog::Catalog;
use crate::lease::{Claimed, Leases};
use crate::metrics::metrics;
use crate::store::Store;

impl Ingester {
    /// Every ttl/3, the pace of the lease's renewals and checks.
    fn lease_ticks(&self) -> tokio::time::Interval {
        let mut tick = tokio::time::interval(self.config.lease_ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    }

    /// Renews the lease every ttl/3. A task of its own: a takeover or a
    /// reclaim can take longer than the ttl, and must not let the lease lapse.
    pub(super) async fn heartbeat_loop(self: Arc<Self>) {
        let mut tick = self.lease_ticks();
        loop {
            tick.tick().await;
            if self.is_stopping() {
                return;
            }
            if self.wal.is_fenced() {
                continue; // reclaim() renews its new claim itself
            }
            let epoch = self.wal.epoch();
            match self.leases.beat(&self.config.id, epoch).await {
                Ok(true) => {}
                // A reclaim may have moved to a newer epoch of ours meanwhile.
                Ok(false) if self.wal.epoch() != epoch => {}
                Ok(false) => {
                    tracing::warn!(epoch, "WAL lease taken by another ingester: fenced");
                    metrics()
                        .lease_fenced
                        .with_label_values(&[self.config.id.as_str()])
                        .inc();
                    self.wal.mark_fenced();
                }
                Err(e) => tracing::warn!(error = %e, "WAL lease heartbeat failed"),
            }
        }
    }

    /// Claims the lease again after losing it, and takes over the WAL of
    /// ingesters whose lease expired.
    pub(super) async fn lease_loop(self: Arc<Self>) {
        let mut tick = self.lease_ticks();
        loop {
            tick.tick().await;
            if self.is_stopping() {
                return;
            }
            if self.wal.is_fenced() {
                if let Err(e) = self.reclaim().await {
                    tracing::warn!(error = %e, "claiming the WAL lease again failed; will retry");
                }
                continue;
            }
            if let Err(e) = self.take_over_expired().await {
                tracing::warn!(error = %e, "taking over an expired WAL lease failed; will retry");
            }
        }
    }

    /// After a fence: waits for the lease, then starts a new epoch from what the
    /// WAL and the catalog hold. Whatever the buffer had was committed before
    /// the fence, so the ingester that took over has it.
    async fn reclaim(&self) -> Result<(), IngesterError> {
        let _no_snapshot = self.snapshot_lock.lock().await;
        let mut position = self.wal.hold().await;
        let (claimed, buffer) =
            claim_own(&self.config, &self.leases, &self.store, &self.catalog).await?;
        let (epoch, next) = (claimed.epoch, claimed.next);
        self.observe_sequence(max_sequence_of(&buffer));
        *self.buffer.lock() = buffer;
        self.wal.resume(&mut position, claimed);
        tracing::info!(epoch, next_segment = next, "WAL lease claimed again");
        Ok(())
    }

    async fn take_over_expired(&self) -> Result<(), IngesterError> {
        for prefix in self.leases.prefixes().await? {
            // Checked under the lock: shutdown sets `stopping`, then takes it.
            let _running = self.takeover_lock.lock().await;
            if self.is_stopping() {
                return Ok(());
            }
            if prefix == self.config.id {
                continue;
            }
            let Some(view) = self.leases.view(&prefix).await? else {
                continue;
            };
            if view.released || !self.leases.is_free(&view).await? {
                continue;
            }
            let Some(claimed) = self.leases.try_claim(&prefix).await? else {
                continue;
            };
            tracing::warn!(
                prefix,
                previous_owner = view.owner,
                epoch = claimed.epoch,
                "WAL lease expired: taking over"
            );
            let heartbeat = self.leases.keep_alive(&prefix, claimed.epoch);
            let done = self.take_over(&prefix, claimed).await;
            drop(heartbeat);
            let outcome = if done.is_ok() { "ok" } else { "error" };
            metrics()
                .lease_takeovers
                .with_label_values(&[self.config.id.as_str(), outcome])
                .inc();
            let files = done?;
            self.leases.release(&prefix, claimed.epoch).await?;
            tracing::info!(prefix, files, "took over WAL and released its lease");
        }
        Ok(())
    }

    /// Fences the dead holder of `prefix`, and moves its uncovered WAL into Parquet
    /// registered in that prefix's files log.
    async fn take_over(&self, prefix: &str, claimed: Claimed) -> Result<usize, IngesterError> {
        self.catalog.refresh_files_of(prefix).await?;
        let covered = self.catalog.covered_segment(prefix);
        let fence = match claimed.unreleased {
            Some(_) => Some(
                wal::fence(&self.store, prefix, claimed.epoch, &self.config.id, covered).await?,
            ),
            None => None,
        };
        let (buffer, _) = replay(prefix, &self.store, &self.catalog).await?;
        let Some(last) = buffer.last_segment().max(fence) else {
            return Ok(0);
        };
        let max_sequence = max_sequence_of(&buffer);
        self.observe_sequence(max_sequence);
        let files = persist(
            &self.store,
            &self.catalog,
            (prefix, claimed.epoch),
            last,
            buffer.chunks_up_to(last),
        )
        .await?;
        let n = files.len();
        (self.catalog)
            .register_files(prefix, last, max_sequence, files)
            .await?;
        // Its holder is gone: its newest log file is written no more.
        wal::delete_covered(&self.store, prefix, last, false).await?;
        Ok(n)
    }
}

/// Claims this ingester's own WAL prefix (waiting for a previous holder unless
/// `exclusive`), fences the epoch it ended without a release, and replays what
/// no snapshot covers. Returns where commits go next, and the buffer.
pub(super) async fn claim_own(
    config: &IngesterConfig,
    leases: &Leases,
    store: &Store,
    catalog: &Catalog,
) -> Result<(Position, Buffer), IngesterError> {
    let id = config.id.as_str();
    let claimed = if config.exclusive {
        loop {
            if let Some(c) = leases.claim_exclusive(id).await? {
                break c;
            }
        }
    } else {
        leases.acquire(id).await?
    };
    // The replay can outlast the ttl; the caller's heartbeats start after it.
    let _renewed = leases.keep_alive(id, claimed.epoch);
    catalog.refresh_files_of(id).await?;
    // An exclusive claimant knows the previous holder is dead: nothing to fence.
    if let Some(old) = claimed.unreleased.filter(|_| !config.exclusive) {
        let covered = catalog.covered_segment(id);
        let at = wal::fence(store, id, claimed.epoch, id, covered).await?;
        tracing::info!(
            old_epoch = old,
            fence_segment = at,
            "fenced the previous run's WAL"
        );
    }
    leases.prune(id, claimed.epoch).await?;
    let (buffer, next) = replay(id, store, catalog).await?;
    // Appending needs a file of our own, which only the data directory's lock
    // guarantees (see `wal::log_file`).
    let log = match (config.exclusive, store.local_files()) {
        (true, Some(files)) => Some(LogWriter::new(files, id)),
        _ => None,
    };
    tracing::info!(
        epoch = claimed.epoch,
        next_segment = next,
        log = log.is_some(),
        "WAL lease claimed"
    );
    Ok((Position::new(claimed.epoch, next, log), buffer))
}
