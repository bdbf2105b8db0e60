//! `/worker`: register (PUT) and remove (DELETE) workers.

use actix_web::http::StatusCode;
use serde_json::json;

use super::call::{json, Answer, Call};
use super::error::ApiError;
use super::params::{Body, Params};
use crate::model::QueueName;

/// Most queues one worker may take from.
const MAX_QUEUES: usize = 100;

/// `PUT /worker`: registers a worker on queues in priority order.
pub async fn register(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    p.only(&["queues", "weights", "name"])?;
    // Without a name, where it called from is the best the server knows.
    let name = match p.string("name")? {
        Some(n) if !n.is_empty() && n.len() <= 128 && !n.chars().any(char::is_control) => n,
        Some(_) => {
            return Err(ApiError::invalid(
                "name",
                "a worker name is 1 to 128 bytes without control characters",
            ))
        }
        None => call
            .peer
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
    if let Some(c) = &call.caller {
        if let Some((i, q)) = queues
            .iter()
            .enumerate()
            .find(|(_, q)| !c.allows(q.as_str()))
        {
            return Err(ApiError::queue_not_allowed(format!(
                "`queues[{i}]`: this key may not use queue `{q}`"
            )));
        }
    }
    let weights = weights(&p, &queues)?;
    let owner = call.caller.as_ref().map(|c| c.key.clone());
    let record = call
        .state
        .broker
        .register_worker(queues, weights, name, owner)
        .await?;
    let mut answer =
        json!({"workerId": record.worker_id, "name": record.name, "queues": record.queues});
    if !record.weights.is_empty() {
        answer["weights"] = json!(record
            .queues
            .iter()
            .zip(&record.weights)
            .map(|(q, w)| (q.to_string(), json!(w)))
            .collect::<serde_json::Map<String, serde_json::Value>>());
    }
    json(&answer)
}

/// `DELETE /worker`: removes one worker, or every worker of a queue. Their
/// running tasks go back to their queues.
pub async fn deregister(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    let broker = &call.state.broker;
    p.only(&["workerId", "queue"])?;
    let deleted = match (p.worker_id("workerId")?, p.queue("queue")?) {
        (Some(w), None) => {
            call.may_act_for(w).await?;
            broker.delete_worker(w).await?;
            vec![w]
        }
        // Other keys' workers go with it: an admin's call.
        (None, Some(_)) if !call.is_admin() => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "`queue`: removing every worker of a queue needs an admin key",
            ))
        }
        (None, Some(q)) => broker.delete_workers_of(&q).await?,
        _ => {
            return Err(ApiError::invalid(
                "workerId",
                "give exactly one of `workerId` and `queue`",
            ))
        }
    };
    json(&json!({"deleted": deleted}))
}

/// `weights`: an object from the worker's queues to whole numbers 1 to
/// 1000; a queue left out weighs 1. Returned in `queues`' order (empty
/// without weights).
fn weights(p: &Params, queues: &[QueueName]) -> Result<Vec<u32>, ApiError> {
    let Some(given) = p.object("weights")? else {
        return Ok(Vec::new());
    };
    if let Some(other) = given
        .keys()
        .find(|k| !queues.iter().any(|q| q.as_str() == *k))
    {
        return Err(p.invalid(
            "weights",
            format!("names `{other}`, which is not one of the worker's queues"),
        ));
    }
    let own = p.nested("weights")?.expect("an object, read above");
    queues
        .iter()
        .map(|q| Ok(own.integer(q.as_str(), 1, 1000)?.unwrap_or(1) as u32))
        .collect()
}
