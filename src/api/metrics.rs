//! `GET /metrics`: the Prometheus text format.

use actix_web::{web, HttpResponse};

use super::error::ApiError;
use super::AppState;
use crate::metrics::Sample;
use crate::model::WorkerState;

fn one(value: f64) -> Vec<Sample> {
    vec![Sample {
        labels: vec![],
        value,
    }]
}

pub async fn show_metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let broker = &state.broker;
    let queues = broker.queues().await?;
    let per_queue = |pick: fn(&crate::model::QueueCounts) -> u64| -> Vec<Sample> {
        queues
            .iter()
            .map(|(q, c)| Sample {
                labels: vec![("queue", q.to_string())],
                value: pick(c) as f64,
            })
            .collect()
    };
    let workers = broker.workers().await?;
    let by_state: Vec<Sample> = [
        WorkerState::Idle,
        WorkerState::Processing,
        WorkerState::Stale,
    ]
    .into_iter()
    .map(|s| Sample {
        labels: vec![(
            "state",
            serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        )],
        value: workers.iter().filter(|w| w.state == s).count() as f64,
    })
    .collect();
    let groups = broker.group_summary().await?;
    let group_samples = |pick: usize, reason: Option<&str>| -> Vec<Sample> {
        groups
            .iter()
            .map(|(q, counts)| {
                let mut labels = vec![("queue", q.to_string())];
                labels.extend(reason.map(|r| ("reason", r.to_owned())));
                Sample {
                    labels,
                    value: counts[pick] as f64,
                }
            })
            .collect()
    };
    let mut held = group_samples(1, Some("maxRunning"));
    held.extend(group_samples(2, Some("rateLimit")));
    let stats = broker.store().stats();
    let mut gauges = vec![
        (
            "interq_ready",
            "Copies ready to be claimed.",
            per_queue(|c| c.ready),
        ),
        (
            "interq_scheduled",
            "Copies waiting for their runAt.",
            per_queue(|c| c.scheduled),
        ),
        (
            "interq_running",
            "Copies claimed and running.",
            per_queue(|c| c.running),
        ),
        (
            "interq_failed",
            "Copies in the failed set.",
            per_queue(|c| c.failed),
        ),
        (
            "interq_blocked",
            "Copies waiting for their dependencies.",
            per_queue(|c| c.blocked),
        ),
        (
            "interq_groups",
            "Fairness groups with ready or running copies, by queue.",
            group_samples(0, None),
        ),
        (
            "interq_groups_held",
            "Groups whose ready copies a group limit holds back, by queue and limit.",
            held,
        ),
        ("interq_workers", "Registered workers by state.", by_state),
        (
            "interq_recent_publishes",
            "Publishes kept in memory for the console's interest preview.",
            one(broker.recent_publishes().0 as f64),
        ),
        (
            "interq_recent_publish_bytes",
            "Estimated bytes those hold (bounded).",
            one(broker.recent_publishes().1 as f64),
        ),
        (
            "interq_interest_queues",
            "Queues with interests.",
            one(broker.router_stats().queues as f64),
        ),
        (
            "interq_router_pending_changes",
            "Queues whose interests changed since the router was last compiled whole (compiled apart until then).",
            one(broker.router_stats().pending_changes as f64),
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory of this process.",
            one(crate::metrics::process::resident_bytes() as f64),
        ),
    ];
    if let Some(cluster) = &stats.cluster {
        gauges.extend([
            (
                "interq_cluster_members",
                "Live nodes of the cluster, as this node saw them at its last round of leases.",
                one(cluster.members.len() as f64),
            ),
            (
                "interq_partitions_owned",
                "Partitions this node holds a lease on.",
                one(cluster.owned.len() as f64),
            ),
            (
                "interq_partitions_unowned",
                "Partitions no node held a lease on at this node's last round.",
                one(cluster.unowned.len() as f64),
            ),
        ]);
    }
    let counters = broker.counters().await?;
    let totals_json = serde_json::to_value(counters).unwrap_or_default();
    let events: Vec<Sample> = totals_json
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| Sample {
                    labels: vec![("event", k.clone())],
                    value: v.as_f64().unwrap_or(0.0),
                })
                .collect()
        })
        .unwrap_or_default();
    let totals = [
        (
            "interq_events_total",
            "Totals since the data directory was made (published, routed, discarded, ...).",
            events,
        ),
        (
            "interq_store_commits_total",
            "Durable commits since start.",
            vec![Sample {
                labels: vec![],
                value: stats.commits as f64,
            }],
        ),
        (
            "interq_store_writes_total",
            "Records written by those commits.",
            vec![Sample {
                labels: vec![],
                value: stats.writes as f64,
            }],
        ),
        (
            "interq_router_compactions_total",
            "Times the router compiled every queue into a new base after changes.",
            one(broker.router_stats().compactions as f64),
        ),
        (
            "process_cpu_seconds_total",
            "CPU time this process used, user and system.",
            one(crate::metrics::process::cpu_seconds()),
        ),
    ];
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(broker.metrics().render(&gauges, &totals)))
}
