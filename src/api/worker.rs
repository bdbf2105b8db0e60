//! `/worker`: register (PUT) and remove (DELETE) workers.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use super::params::Params;
use super::AppState;

/// Most queues one worker may take from.
const MAX_QUEUES: usize = 100;

/// `PUT /worker`: registers a worker on queues in priority order.
pub async fn register_worker(
    state: web::Data<AppState>,
    req: HttpRequest,
    p: Params,
) -> Result<HttpResponse, ApiError> {
    p.only(&["queues", "name"])?;
    // Without a name, where it called from is the best the server knows.
    let name = match p.string("name")? {
        Some(n) if !n.is_empty() && n.len() <= 128 && !n.chars().any(char::is_control) => n,
        Some(_) => {
            return Err(ApiError::invalid(
                "name",
                "a worker name is 1 to 128 bytes without control characters",
            ))
        }
        None => req
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into()),
    };
    let queues = p.required("queues", p.queues("queues")?)?;
    if queues.is_empty() || queues.len() > MAX_QUEUES {
        return Err(ApiError::invalid(
            "queues",
            format!("must name 1 to {MAX_QUEUES} queues"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = queues.iter().find(|q| !seen.insert(*q)) {
        return Err(ApiError::invalid("queues", format!("names `{dup}` twice")));
    }
    let caller = super::caller(&req);
    if let Some(c) = &caller {
        if let Some((i, q)) = queues
            .iter()
            .enumerate()
            .find(|(_, q)| !c.allows(q.as_str()))
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "queue_not_allowed",
                format!("`queues[{i}]`: this key may not use queue `{q}`"),
            ));
        }
    }
    let owner = caller.map(|c| c.key);
    let record = state.broker.register_worker(queues, name, owner).await?;
    Ok(HttpResponse::Ok()
        .json(json!({"workerId": record.worker_id, "name": record.name, "queues": record.queues})))
}

/// `DELETE /worker`: removes one worker, or every worker of a queue. Their
/// running tasks go back to their queues.
pub async fn delete_worker(
    state: web::Data<AppState>,
    req: HttpRequest,
    p: Params,
) -> Result<HttpResponse, ApiError> {
    p.only(&["workerId", "queue"])?;
    let deleted = match (p.worker_id("workerId")?, p.queue("queue")?) {
        (Some(w), None) => {
            super::task::may_act_for(&state, &req, w).await?;
            state.broker.delete_worker(w).await?;
            vec![w]
        }
        // Other keys' workers go with it: an admin's call.
        (None, Some(_)) if !super::is_admin(&req) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "`queue`: removing every worker of a queue needs an admin key",
            ))
        }
        (None, Some(q)) => state.broker.delete_workers_of(&q).await?,
        _ => {
            return Err(ApiError::invalid(
                "workerId",
                "give exactly one of `workerId` and `queue`",
            ))
        }
    };
    Ok(HttpResponse::Ok().json(json!({"deleted": deleted})))
}
