//! Wakes long-polling workers when a copy becomes ready in one of their lanes,
//! so that neither the server nor the worker polls in a loop.

use std::pin::Pin;
use std::sync::Arc;

use dashmap::DashMap;
use futures_util::future::select_all;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::model::Lane;

#[derive(Debug, Default)]
pub(crate) struct Wakers {
    lanes: DashMap<Lane, Arc<Notify>>,
}

impl Wakers {
    fn notify_of(&self, lane: &Lane) -> Arc<Notify> {
        if let Some(n) = self.lanes.get(lane) {
            return Arc::clone(&n);
        }
        Arc::clone(&self.lanes.entry(lane.clone()).or_default())
    }

    /// Wakes every worker waiting on `lane`; each then tries to claim.
    pub fn wake(&self, lane: &Lane) {
        if let Some(n) = self.lanes.get(lane) {
            n.notify_waiters();
        }
    }

    /// Wakes every waiting worker (after an operator's bulk change).
    pub fn wake_all(&self) {
        for n in self.lanes.iter() {
            n.notify_waiters();
        }
    }

    /// The notifiers of `lanes`, to wait on with [`arm`]. Take them
    /// before trying to claim, so that a copy made ready between the attempt
    /// and the wait is not missed.
    pub fn watch(&self, lanes: &[Lane]) -> Vec<Arc<Notify>> {
        lanes.iter().map(|l| self.notify_of(l)).collect()
    }

    pub fn forget(&self, lane: &Lane) {
        self.lanes.remove(lane);
    }
}

/// Futures that resolve at the next wake-up of each notifier, registered
/// now: a wake that comes before they are awaited is not lost.
pub(crate) fn arm(notifies: &[Arc<Notify>]) -> Vec<Pin<Box<Notified<'_>>>> {
    let mut waits: Vec<_> = notifies.iter().map(|n| Box::pin(n.notified())).collect();
    for w in &mut waits {
        w.as_mut().enable();
    }
    waits
}

/// Resolves when any armed future does (never, when there are none).
pub(crate) async fn any(waits: Vec<Pin<Box<Notified<'_>>>>) {
    if waits.is_empty() {
        return std::future::pending().await;
    }
    select_all(waits).await;
}
