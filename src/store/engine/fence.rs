//! What stands between a failed commit and the next change: the state in
//! memory may hold what the log refused, so nothing more is changed until it
//! has been read back whole. Changes enter shared; the read-back takes the
//! gate alone, so it never overlaps a change. While the cause lasts (a full
//! disk, an unreachable database) changes are refused at once with its
//! error, and the read-back is tried again with a growing pause.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{RwLock, RwLockReadGuard};

use crate::store::StoreError;

/// The first pause after a failed read-back; it doubles up to `MAX_PAUSE`
/// while read-backs succeed and the commits after them fail again (a disk
/// still full: reading the state back each time costs), and up to
/// `MAX_FAILED_PAUSE` while the read-backs themselves fail (a database that
/// does not answer fails them at their first call, which costs little), so
/// that a node serves again soon after its database does.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(5);
const MAX_FAILED_PAUSE: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
pub(super) struct Fence {
    gate: RwLock<()>,
    poisoned: AtomicBool,
    /// Failed since the last commit that succeeded: the pause between
    /// read-backs keeps growing until one does.
    recovering: AtomicBool,
    retry: Mutex<Retry>,
}

#[derive(Debug, Default)]
struct Retry {
    /// Why changes are refused now.
    cause: Option<StoreError>,
    /// No read-back is tried before this.
    not_before: Option<Instant>,
    pause: Duration,
}

impl Retry {
    fn wait_longer(&mut self, most: Duration) {
        self.pause = (self.pause * 2).clamp(FIRST_PAUSE, most);
        self.not_before = Some(Instant::now() + self.pause);
    }
}

impl Fence {
    /// Lets a change in: at once while the state is sound; after a failed
    /// commit, once `reload` has read it back (or with the error that keeps
    /// it from being read back).
    pub async fn enter<'a, F, Fut>(
        &'a self,
        reload: F,
    ) -> Result<RwLockReadGuard<'a, ()>, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), StoreError>>,
    {
        loop {
            if !self.poisoned.load(Ordering::Acquire) {
                let entered = self.gate.read().await;
                if !self.poisoned.load(Ordering::Acquire) {
                    return Ok(entered);
                }
            }
            if let Some(cause) = self.refusal() {
                return Err(cause);
            }
            let alone = self.gate.write().await;
            if !self.poisoned.load(Ordering::Acquire) {
                continue;
            }
            if let Some(cause) = self.refusal() {
                return Err(cause);
            }
            match reload().await {
                Ok(()) => {
                    let mut retry = self.lock_retry();
                    retry.cause = None;
                    retry.not_before = None;
                    self.poisoned.store(false, Ordering::Release);
                    tracing::info!("the store's state was read back; changes are taken again");
                }
                Err(e) => {
                    let mut retry = self.lock_retry();
                    retry.wait_longer(MAX_FAILED_PAUSE);
                    retry.cause = Some(e.clone());
                    tracing::warn!(error = %e, retry_in_ms = retry.pause.as_millis() as u64, "the store cannot be read back yet");
                    return Err(e);
                }
            }
            drop(alone);
        }
    }

    /// A commit failed: no change until the state is read back. A failure
    /// soon after a read-back (the disk is still full) waits longer before
    /// the next one.
    pub fn poison(&self, cause: &StoreError) {
        let mut retry = self.lock_retry();
        if self.poisoned.load(Ordering::Acquire) {
            // The same failure, met by another change of the same write (a
            // group commit fails every change in it): not a second one.
            return;
        }
        if self.recovering.swap(true, Ordering::AcqRel) {
            retry.wait_longer(MAX_PAUSE);
        }
        tracing::error!(error = %cause, retry_in_ms = retry.pause.as_millis() as u64, "a change could not be stored; changes are refused until the state is read back");
        retry.cause = Some(cause.clone());
        self.poisoned.store(true, Ordering::Release);
    }

    /// A commit succeeded: the next failure starts its pauses afresh.
    pub fn succeeded(&self) {
        if self.recovering.load(Ordering::Acquire) && self.recovering.swap(false, Ordering::AcqRel)
        {
            self.lock_retry().pause = Duration::ZERO;
        }
    }

    /// The error to refuse a change with, while a read-back must wait.
    fn refusal(&self) -> Option<StoreError> {
        let retry = self.lock_retry();
        match retry.not_before {
            Some(at) if Instant::now() < at => retry.cause.clone(),
            _ => None,
        }
    }

    fn lock_retry(&self) -> std::sync::MutexGuard<'_, Retry> {
        self.retry.lock().unwrap_or_else(|e| e.into_inner())
    }
}
