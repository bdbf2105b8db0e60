//! Single records beside the copies: interests, workers, queue settings,
//! schedules, the audit log and the throughput chart's samples. Each change is applied to the state by the
//! same `ops::apply` that start-up and other nodes use.

use super::log::Log;
use super::ops::{self, audit_op, sample_op, Op};
use super::state::State;
use super::Engine;
use crate::model::{AuditEntry, Counters};
use crate::store::{StoreError, AUDIT_KEPT};

impl<L: Log> Engine<L> {
    /// Records one change of a record durably. Returns whether the record
    /// `existed` before.
    pub(super) async fn record(
        &self,
        op: Op,
        existed: impl FnOnce(&State) -> bool + Send,
    ) -> Result<bool, StoreError> {
        self.change(|st, out| {
            let existed = existed(st);
            ops::apply(st, &op)?;
            out.push(op);
            Ok(existed)
        })
        .await
    }
}

/// Samples are kept at every time for this long...
pub const SAMPLES_FINE_MS: u64 = 3_600_000;
/// ...then one a minute (those on the minute) for this long.
pub const SAMPLES_KEPT_MS: u64 = 86_400_000;
const MINUTE_MS: u64 = 60_000;

impl State {
    /// Stores the totals sampled at `at` (a time on the sampling grid),
    /// unless another node sampled that time first; thins out the old
    /// ones. False when it was there already.
    pub fn put_sample(&mut self, at: u64, counters: Counters, ops: &mut Vec<Op>) -> bool {
        if self.samples.contains_key(&at) {
            return false;
        }
        let fine_from = at.saturating_sub(SAMPLES_FINE_MS);
        let kept_from = at.saturating_sub(SAMPLES_KEPT_MS);
        let old: Vec<u64> = self
            .samples
            .range(..fine_from)
            .map(|(t, _)| *t)
            .filter(|t| *t < kept_from || t % MINUTE_MS != 0)
            .collect();
        for t in old {
            self.samples.remove(&t);
            ops.push(Op::DeleteSample(t));
        }
        ops.push(sample_op(at, &counters));
        self.samples.insert(at, counters);
        true
    }

    /// Appends to the audit log; only the last [`AUDIT_KEPT`] entries stay.
    pub fn append_audit(&mut self, entry: AuditEntry, ops: &mut Vec<Op>) {
        let next = self.audit.back().map_or(1, |(n, _)| n + 1);
        ops.push(audit_op(next, &entry));
        self.audit.push_back((next, entry));
        while self.audit.len() > AUDIT_KEPT {
            if let Some((old, _)) = self.audit.pop_front() {
                ops.push(Op::DeleteAudit(old));
            }
        }
    }
}
