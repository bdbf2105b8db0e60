//! The one place where errors become HTTP responses:
//! `{"error": {"code": "...", "message": "..."}}`, 4xx for the caller's
//! mistakes (naming the field at fault), 5xx for ours.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::broker::BrokerError;
use crate::store::StoreError;

/// An error answer: a status, a stable snake_case code and a message for
/// people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// A field has a value of the wrong type or out of range.
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("`{field}`: {why}"),
        )
    }

    pub fn missing(field: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "missing_field",
            format!("`{field}` is required"),
        )
    }

    pub fn unknown_field(field: &str, allowed: &[&str]) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unknown_field",
            format!(
                "`{field}` is not a parameter here; expected one of: {}",
                allowed.join(", ")
            ),
        )
    }

    pub fn malformed_json(why: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {why}"),
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is over the limit of {limit} bytes"),
        )
    }

    /// A key limited to some queues named another.
    pub fn queue_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "queue_not_allowed", message)
    }

    /// A key whose roles the operation does not take; `what` names it
    /// (`PUT /task`, or `publish` on the line protocol).
    pub fn forbidden(roles: &[crate::auth::Role], what: &str) -> Self {
        let held: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("a key of role {} may not call {what}", held.join(", ")),
        )
    }

    /// A handler that panicked: logged with what it said, answered 500.
    /// `what` panicked; the answer says the server failed `answering`.
    pub fn panicked(panic: &(dyn std::any::Any + Send), what: &str, answering: &str) -> Self {
        let said = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(panic = %said, "{what} panicked");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("the server failed while answering this {answering}"),
        )
    }

    /// `unrouted` for item `index` of the array `field` (`tasks` of a batch).
    pub fn unrouted_in(field: &str, index: usize) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unrouted",
            format!("`{field}[{index}].requireRoute`: no queue's interests want this task; nothing was stored"),
        )
    }

    /// A publish with `requireRoute` that no queue's interests want; `item`:
    /// its place in a batch.
    pub fn unrouted(item: Option<usize>) -> Self {
        let field = match item {
            Some(i) => format!("[{i}].requireRoute"),
            None => "requireRoute".to_owned(),
        };
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unrouted",
            format!("`{field}`: no queue's interests want this task; nothing was stored"),
        )
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        use StatusCode as S;
        match e {
            BrokerError::UnknownWorker(id) => Self::not_found(
                "unknown_worker",
                format!("`workerId`: worker {id} is not registered (register with PUT /worker)"),
            ),
            BrokerError::UnknownTask(id) => Self::not_found(
                "unknown_task",
                format!("`taskId`: task {id} does not exist"),
            ),
            BrokerError::UnknownKey(k) => {
                Self::not_found("unknown_key", format!("`key`: no task has the key `{k}`"))
            }
            BrokerError::UnknownSchedule(name) => Self::not_found(
                "unknown_schedule",
                format!("`name`: no schedule is called `{name}`"),
            ),
            BrokerError::UnknownBatch(id) => Self::not_found(
                "unknown_batch",
                format!("`batch`: no batch is called `{id}` (or it ended long enough ago to be swept)"),
            ),
            BrokerError::UnknownDependency(why) => Self::invalid("dependsOn", why),
            BrokerError::BatchClosed(id) => Self::new(
                S::CONFLICT,
                "batch_closed",
                format!("`batch`: batch `{id}` is closed: it takes no more tasks (open one with `more: true` to add to it later)"),
            ),
            BrokerError::InvalidSchedule { field, message }
            | BrokerError::InvalidSetting { field, message } => Self::invalid(field, message),
            BrokerError::UnknownQueue(q) => Self::not_found(
                "unknown_queue",
                format!("`queue`: queue `{q}` does not exist"),
            ),
            BrokerError::NotRunning { task, state } => Self::new(
                S::CONFLICT,
                "task_not_running",
                format!("`taskId`: task {task} is {state}, not running"),
            ),
            BrokerError::WrongState {
                task,
                state,
                wanted,
                action,
            } => Self::new(
                S::CONFLICT,
                "wrong_state",
                format!("`taskId`: task {task} is {state}; only {wanted} tasks can be {action}"),
            ),
            BrokerError::NotLeaseHolder { task } => Self::new(
                S::CONFLICT,
                "not_lease_holder",
                format!("`workerId`: task {task} is leased to another worker"),
            ),
            BrokerError::Interest(e) => Self::new(
                S::BAD_REQUEST,
                "invalid_interest",
                match e.field() {
                    Some(field) => format!("`interests.{field}`: {e}"),
                    None => format!("`interests`: {e}"),
                },
            ),
            BrokerError::Matcher(e) => Self::new(
                S::BAD_REQUEST,
                "invalid_interest",
                format!("`interests.{}`: {e}", e.field),
            ),
            BrokerError::TooManyCopies(_) => {
                Self::new(S::BAD_REQUEST, "too_many_copies", format!("`scope`: {e}"))
            }
            BrokerError::Throttled { retry_after_ms } => Self::new(
                S::TOO_MANY_REQUESTS,
                "too_soon",
                format!("`taskId`: this task's log took an append moments ago; send again in {retry_after_ms} ms, with what came since"),
            ),
            BrokerError::Unrouted { .. } => Self::unrouted(None),
            BrokerError::ShuttingDown => Self::new(
                S::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the service is shutting down; retry on another node or later",
            ),
            BrokerError::Store(e) => {
                // The cause goes to the log; the client gets what it can act
                // on: whether to wait, retry elsewhere, or call an operator.
                tracing::error!(error = %e, "store error");
                match &e {
                    StoreError::Full(_) => Self::new(
                        S::INSUFFICIENT_STORAGE,
                        "store_full",
                        "the store's disk is full: the change was not stored; retry once space is freed",
                    ),
                    StoreError::Unavailable(_) => Self::new(
                        S::SERVICE_UNAVAILABLE,
                        "store_unavailable",
                        "the store could not make the change durable; it was not acknowledged: retry",
                    ),
                    StoreError::Corrupt(_)
                    | StoreError::UnknownTask(_)
                    | StoreError::NotRunning { .. }
                    | StoreError::NotLeaseHolder { .. }
                    | StoreError::Throttled { .. }
                    | StoreError::BatchClosed(_)
                    | StoreError::UnknownDependency(_)
                    | StoreError::WrongState { .. } => Self::new(
                        S::INTERNAL_SERVER_ERROR,
                        "store_error",
                        "the store could not complete the request",
                    ),
                }
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .json(json!({"error": {"code": self.code, "message": self.message}}))
    }
}
