//! `/interest`: which tasks a queue wants.

use serde_json::json;

use super::call::{json, Answer, Call};
use super::error::ApiError;
use super::params::{Body, Params};

/// `PUT /interest`: replaces a queue's interests, creating the queue. An
/// array of `{queue, interests}` replaces several at once (one rebuild of the
/// matcher; nothing is stored unless every item is valid).
pub async fn set(call: Call, body: Body) -> Answer {
    let state = &call.state;
    match body {
        Body::Params(p) => {
            let (queue, interests) = parse_interest(&p)?;
            let replay = replay_of(&p, &call)?;
            let normalized = state
                .broker
                .set_interests(queue.clone(), &interests)
                .await?;
            let detail = Some(normalized.to_string());
            call.audit("set_interests", queue.as_str(), detail).await?;
            let mut answer = json!({"queue": queue, "interests": normalized});
            if let Some(secs) = replay {
                answer["replayed"] = json!(state.broker.replay(&queue, secs).await?);
            }
            json(&answer)
        }
        Body::Batch(items) => {
            let mut replays = Vec::new();
            let updates = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let p = Params::item(i, item)?;
                    replays.push(replay_of(&p, &call)?);
                    parse_interest(&p)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let queues: Vec<_> = updates.iter().map(|(q, _)| q.clone()).collect();
            let normalized = state.broker.set_many_interests(updates).await?;
            // One entry for the batch: a thousand queues set at once are one
            // change.
            let names: Vec<&str> = queues.iter().take(10).map(|q| q.as_str()).collect();
            let more = queues.len().saturating_sub(names.len());
            let detail = match more {
                0 => names.join(", "),
                n => format!("{}, and {n} more", names.join(", ")),
            };
            let target = format!("{} queues", queues.len());
            call.audit("set_interests", &target, Some(detail)).await?;
            let mut answer = Vec::with_capacity(queues.len());
            for ((queue, interests), replay) in queues.into_iter().zip(normalized).zip(replays) {
                let mut one = json!({"queue": queue, "interests": interests});
                if let Some(secs) = replay {
                    one["replayed"] = json!(state.broker.replay(&queue, secs).await?);
                }
                answer.push(one);
            }
            json(&answer)
        }
    }
}

/// `replay`: the publish log's last so many seconds to copy in.
fn replay_of(p: &Params, call: &Call) -> Result<Option<u64>, ApiError> {
    let keep = call.state.settings.tasks.replay_keep_secs;
    if p.get("replay").is_some() && keep == 0 {
        return Err(p.invalid(
            "replay",
            "the publish log is off here (tasks.replay_keep_secs is 0)",
        ));
    }
    p.integer("replay", 1, keep.max(1))
}

fn parse_interest(p: &Params) -> Result<(crate::model::QueueName, serde_json::Value), ApiError> {
    p.only(&["queue", "interests", "replay"])?;
    let queue = p.required("queue", p.queue("queue")?)?;
    let interests = p.required("interests", p.json("interests")?)?;
    Ok((queue, interests))
}

/// `DELETE /interest`: the queue stops receiving tasks; its tasks stay.
pub async fn delete(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    p.only(&["queue"])?;
    let queue = p.required("queue", p.queue("queue")?)?;
    call.state.broker.delete_interests(&queue).await?;
    call.audit("remove_interests", queue.as_str(), None).await?;
    json(&json!({"queue": queue, "deleted": true}))
}

/// `POST /interest/try`: which queues a task with this data would reach
/// now, by which field and pattern; nothing is published.
pub async fn try_task(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    p.only(&["data"])?;
    let data = p.required("data", p.object("data")?)?;
    let queues: Vec<_> = call
        .state
        .broker
        .try_task(&data)
        .into_iter()
        .map(|r| {
            json!({
                "queue": r.queue,
                "fields": r.fields.iter().map(|(field, pattern, value)| {
                    json!({"field": field, "pattern": pattern, "value": value})
                }).collect::<Vec<_>>(),
                "unrouted": r.unrouted,
            })
        })
        .collect();
    json(&json!({ "queues": queues }))
}
