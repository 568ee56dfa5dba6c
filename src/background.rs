//! CPU work that can wait: a snapshot's merge and Parquet encoding, and a
//! compaction's merge.
//!
//! It runs on a thread of its own, off the async runtime (whose workers must
//! stay free to answer writes: pinned to one core, tokio has one worker), at
//! a lower scheduling priority (`nice` [`NICE`]), so on a busy core a write's
//! parse and WAL commit preempt it instead of sharing the core with it. Under
//! overload it still gets about a tenth of the core (the weight of nice 10
//! against nice 0), so the buffer keeps draining.

use tokio::sync::oneshot;

/// The niceness of background threads (0 is normal, 19 the lowest).
pub const NICE: i32 = 10;

/// Runs `f` on a new background thread and waits for its result. A panic in
/// `f` is resumed in the caller, as `spawn_blocking`'s join error would be.
pub async fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("inflow-background".into())
        .spawn(move || {
            lower_priority();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(result);
        })
        .expect("the OS starts a thread (as tokio's blocking pool would)");
    match rx.await {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => unreachable!("the background thread always sends its result"),
    }
}

/// The calling thread's nice value (on Linux it belongs to the thread, and
/// `who = 0` names the caller).
fn nice() -> i32 {
    // SAFETY: getpriority takes plain integers and touches no memory of ours.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

/// Lowers the calling thread's priority to [`NICE`], never raising it. A
/// failure only leaves the thread at its priority.
fn lower_priority() {
    let target = nice().max(NICE);
    // SAFETY: as for getpriority.
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, target) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn work_runs_at_a_lower_priority_and_returns_its_result() {
        let ours = nice();
        assert_eq!(run(nice).await, ours.max(NICE));
        assert_eq!(nice(), ours, "the caller's priority is untouched");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    #[should_panic(expected = "boom")]
    async fn a_panic_reaches_the_caller() {
        run(|| panic!("boom")).await
    }
}
