//! Single records beside the copies: interests, workers, queue settings,
//! schedules and the audit log. Each change is applied to the state by the
//! same `ops::apply` that start-up and other nodes use.

use super::log::Log;
use super::ops::{self, audit_op, Op};
use super::state::State;
use super::Engine;
use crate::model::AuditEntry;
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

impl State {
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
