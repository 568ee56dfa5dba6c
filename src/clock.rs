//! Wall-clock time, injected: components that judge time (token expiry,
//! retention cutoffs, timestamps for lines without one, lifecycle and
//! compaction rounds) read it from a [`Clock`] they are given, so a test can
//! set it instead of waiting for it.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Where a component reads the time.
pub trait Clock: Send + Sync + Debug {
    /// Nanoseconds since the Unix epoch.
    fn now_ns(&self) -> i64;
}

/// A clock shared by the components of one process.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> i64 {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
    }
}

/// The system's clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that says what it was set to (tests).
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    pub fn at(ns: i64) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(ns)))
    }

    pub fn set(&self, ns: i64) {
        self.0.store(ns, Ordering::Release);
    }
}

impl Clock for FixedClock {
    fn now_ns(&self) -> i64 {
        self.0.load(Ordering::Acquire)
    }
}
