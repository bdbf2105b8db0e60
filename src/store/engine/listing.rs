//! Listings of copies by state, walked a piece at a time.

use super::log::Log;
use super::meta::Meta;
use super::state::Mark;
use super::Engine;
use crate::model::{Page, QueueName, TaskState};

/// Index entries walked per hold of the lock: about 2.5 ms (on the
/// development VM), so that a deep page of a million copies never holds up
/// the claims and publishes that need the lock.
const PIECE: usize = 65_536;

impl<L: Log> Engine<L> {
    /// A page of copies in `state` (of `queue`, when given), in the order
    /// the state keeps them. A page costs its offset plus its length.
    pub(super) async fn list_metas(
        &self,
        queue: Option<&QueueName>,
        state: TaskState,
        page: Page,
    ) -> Vec<Meta> {
        let mut skip = page.offset;
        let mut metas: Vec<Meta> = Vec::with_capacity(page.limit.min(1000));
        let mut mark = Mark::Start;
        while mark != Mark::Done && metas.len() < page.limit {
            if mark != Mark::Start {
                // A pause, not a yield: std's mutex is not fair, and a thread
                // waiting for it would lose the race to an immediate re-lock
                // every time.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            let st = self.lock();
            let mut ids = Vec::new();
            let wanted = page.limit - metas.len();
            mark = st.walk(queue, state, &mark, PIECE, |id| {
                if skip > 0 {
                    skip -= 1;
                    return true;
                }
                ids.push(id);
                ids.len() < wanted
            });
            metas.extend(ids.iter().filter_map(|id| st.tasks.get(id).cloned()));
        }
        metas
    }
}
