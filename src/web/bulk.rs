//! Acting on a list's selection: the bar above every task list (its
//! actions, "all N matching"), and `POST /admin/bulk`, which hands the
//! selection to the broker's bulk actions.

use actix_web::{web, HttpRequest};

use super::pages::{bad, form_search, queue_field, see_other, task_id, Data, Form, Res};
use crate::api::caller_role;
use crate::api::tasks::MAX_SELECTED;
use crate::model::{Acted, BulkAction, QueueName, Selection, TaskState};

/// The selection bar of a list of copies in one state.
pub(super) struct BulkBar {
    /// The list's state, queue (when one) and search, as hidden fields.
    pub hidden: Vec<(&'static str, String)>,
    /// The actions this state takes: (value, label, whether it destroys).
    pub actions: Vec<(&'static str, &'static str, bool)>,
    pub can_move: bool,
    /// How many copies the list holds, when counted (a search is not).
    pub total: Option<u64>,
    pub back: String,
    /// The list is a queue's archive ("every task" is every archived one).
    pub archive: bool,
}

impl BulkBar {
    pub fn new(
        state: TaskState,
        queue: Option<&QueueName>,
        total: Option<u64>,
        back: &str,
    ) -> Self {
        let offered = [
            (BulkAction::Retry, "retry", "Retry", false),
            (BulkAction::RunNow, "runNow", "Run now", false),
            (BulkAction::Cancel, "cancel", "Cancel", true),
            (BulkAction::Remove, "remove", "Remove", true),
        ];
        let mut hidden = vec![("state", state.as_str().to_owned())];
        hidden.extend(queue.map(|q| ("queue", q.to_string())));
        Self {
            hidden,
            actions: offered
                .into_iter()
                .filter(|(a, ..)| a.takes(state))
                .map(|(_, value, label, danger)| (value, label, danger))
                .collect(),
            can_move: BulkAction::moves(state),
            total,
            back: back.to_owned(),
            archive: false,
        }
    }

    /// The bar of a queue's archive, which is not counted.
    pub fn in_archive(mut self) -> Self {
        self.hidden.push(("archived", "1".to_owned()));
        self.total = None;
        self.archive = true;
        self
    }
}

/// `POST /admin/bulk`: the copies ticked on a list (`id`, repeated) or,
/// with `scope=matching`, every copy the list holds (its `state`, `queue`
/// and search), retried, run now, cancelled, moved (`to`) or removed.
pub async fn act(req: HttpRequest, state: Data, body: web::Bytes) -> Res {
    let form = Form::read(&req, &body)?;
    let name = form.required("action")?;
    // The form always carries the move's field; only a move reads it.
    let to = match name {
        "move" => Some(QueueName::parse(form.required("to")?.trim()).map_err(|e| bad("to", e))?),
        _ => None,
    };
    let action = BulkAction::parse(name, to).map_err(|(field, why)| bad(field, why))?;
    let selection = match form.get("scope") {
        Some("matching") => {
            let listed = form.required("state")?;
            let listed = TaskState::parse(listed)
                .ok_or_else(|| bad("state", format!("`{listed}` is not a state")))?;
            if !action.takes(listed) {
                return Err(bad(
                    "action",
                    format!("`{}` takes {} tasks", action.name(), action.states()),
                ));
            }
            let queue = queue_field(&form)?;
            let filter = form_search(&body)?.filter;
            match (form.get("archived"), queue) {
                (Some("1"), Some(queue)) => Selection::Archived {
                    state: listed,
                    queue,
                    filter,
                },
                (Some("1"), None) => return Err(bad("queue", "an archive is a queue's")),
                (_, queue) => Selection::Matching {
                    state: listed,
                    queue,
                    filter,
                },
            }
        }
        Some("selected") | None => {
            let ids = form.all("id").map(task_id).collect::<Result<Vec<_>, _>>()?;
            if ids.is_empty() {
                return Err(bad("id", "select at least one task, or every one matching"));
            }
            if ids.len() > MAX_SELECTED {
                return Err(bad("id", format!("select at most {MAX_SELECTED} tasks")));
            }
            Selection::Ids(ids)
        }
        Some(other) => {
            return Err(bad(
                "scope",
                format!("is selected or matching, not `{other}`"),
            ))
        }
    };
    let acted = state
        .broker
        .act_on(selection, action.clone(), None, &caller_role(&req))
        .await?;
    Ok(see_other(form.back("/admin"), &told(&action, &acted)))
}

/// What the flash says a bulk action did.
fn told(action: &BulkAction, acted: &Acted) -> String {
    let n = acted.done.len();
    let mut said = match action {
        BulkAction::Retry => format!("{n} task(s) will run again"),
        BulkAction::RunNow => format!("{n} task(s) are ready now"),
        BulkAction::Cancel => format!("Cancelled {n} task(s)"),
        BulkAction::Move(to) => format!("Moved {n} task(s) to {to}"),
        BulkAction::Remove => format!("Removed {n} task(s)"),
    };
    if !acted.requested.is_empty() {
        said += &format!(
            "; {} running will stop at their next heartbeat",
            acted.requested.len()
        );
    }
    if acted.skipped > 0 {
        said += &format!("; {} skipped (not {})", acted.skipped, action.states());
    }
    said
}
