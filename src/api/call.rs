//! One call of an operation, whichever transport brought it: HTTP, or a
//! line of the pipelined protocol (`crate::line`). An operation reads its
//! parameters, acts for the caller and answers JSON already encoded, so
//! that both transports check, refuse and answer alike.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::future::BoxFuture;
use serde::Serialize;

use super::error::ApiError;
use super::params::Body;
use super::AppState;
use crate::auth::Caller;
use crate::model::{QueueFilter, WorkerId};

/// An operation's answer: its JSON text.
pub type Answer = Result<Vec<u8>, ApiError>;

/// An operation: parameters in, answer out.
pub type OpFn = fn(Call, Body) -> BoxFuture<'static, Answer>;

/// Who calls, and from where.
#[derive(Debug, Clone)]
pub struct Call {
    pub state: Arc<AppState>,
    /// Absent when auth is off: everyone may do everything.
    pub caller: Option<Caller>,
    pub peer: Option<SocketAddr>,
}

impl Call {
    /// The call an HTTP request makes, once the access check let it in.
    pub fn from_http(req: &HttpRequest) -> Self {
        let state = req
            .app_data::<web::Data<AppState>>()
            .expect("the API is mounted with its state")
            .clone()
            .into_inner();
        Self {
            state,
            caller: super::caller(req),
            peer: req.peer_addr(),
        }
    }

    /// Whether it may act as admin: always when auth is off.
    pub fn is_admin(&self) -> bool {
        !self.state.keys.enabled() || self.caller.as_ref().is_some_and(Caller::is_admin)
    }

    /// The queues its key is limited to, if it is.
    pub fn within(&self) -> Option<QueueFilter> {
        self.caller.as_ref().and_then(|c| c.queues.clone())
    }

    /// Who acted, for the audit log.
    pub fn role(&self) -> String {
        super::guard::role_of(self.caller.as_ref())
    }

    /// Records an admin's change in the audit log, beside the management
    /// site's own actions.
    pub async fn audit(
        &self,
        action: &str,
        target: &str,
        detail: Option<String>,
    ) -> Result<(), ApiError> {
        Ok(self
            .state
            .broker
            .audit_event(&self.role(), action, target, detail)
            .await?)
    }

    /// Refuses to act for a worker another key registered (admins may).
    pub async fn may_act_for(&self, worker: WorkerId) -> Result<(), ApiError> {
        let Some(caller) = &self.caller else {
            return Ok(());
        };
        if caller.is_admin() {
            return Ok(());
        }
        match self.state.broker.owner_of(worker).await? {
            // Registered while auth was off: no key owns it.
            None => Ok(()),
            Some(owner) if owner == caller.key => Ok(()),
            Some(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "not_your_worker",
                format!("`workerId`: worker {worker} was registered with another key"),
            )),
        }
    }
}

/// Encodes an answer.
pub fn json(value: &impl Serialize) -> Answer {
    serde_json::to_vec(value).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("the answer could not be encoded: {e}"),
        )
    })
}

/// Serves an operation over HTTP: 200 with its JSON, or its error.
pub async fn over_http(op: OpFn, req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    let answer = op(Call::from_http(&req), body).await?;
    Ok(HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(answer))
}
