//! Every endpoint of the API, once: the table that mounts the routes, decides
//! who may call them, and generates `GET /openapi.json`, so that the three
//! cannot disagree.

use actix_web::http::Method;
use actix_web::web;
use serde_json::{json, Map, Value};

use super::{health, interest, metrics, queue, schedule, status, task, testing, worker};
use crate::auth::Role;

/// Who may call an endpoint when keys are configured. `admin` may call all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health checks, the API description).
    Open,
    /// Holders of one of these roles, or admin.
    Roles(&'static [Role]),
}

impl Access {
    pub fn allows(self, roles: &[Role]) -> bool {
        match self {
            Access::Open => true,
            Access::Roles(allowed) => roles
                .iter()
                .any(|r| *r == Role::Admin || allowed.contains(r)),
        }
    }
}

pub const ADMIN: Access = Access::Roles(&[]);
const PUBLISHER: Access = Access::Roles(&[Role::Publisher]);
const WORKER: Access = Access::Roles(&[Role::Worker]);

/// A parameter's JSON type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Integer,
    Number,
    Boolean,
    Object,
    Array,
    /// A string or an object (interests), or a number or a string (priority).
    Any,
}

/// One parameter, accepted in the JSON body or the query string.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub doc: &'static str,
}

const fn p(name: &'static str, kind: Kind, required: bool, doc: &'static str) -> Param {
    Param {
        name,
        kind,
        required,
        doc,
    }
}

/// One endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    pub params: &'static [Param],
    /// What an array body means, when the endpoint takes one.
    pub batch: Option<&'static str>,
    pub answer: &'static str,
    /// Mounted only with the manual test clock.
    pub testing_only: bool,
    pub handler: fn() -> actix_web::Route,
}

const PUBLISH: &[Param] = &[
    p("data", Kind::Object, true, "the task: any JSON object; interests match its fields"),
    p("publisher", Kind::String, false, "who publishes (a name for status and logs)"),
    p("runAt", Kind::Number, false, "unix seconds before which the task does not run"),
    p("scope", Kind::String, false, "`any` (default): one copy per interested queue; `all`: one per worker of an interested queue"),
    p("singularlyEnqueue", Kind::Any, false, "true: no copy when an identical task already waits in the queue; \"replace\": the new one replaces it"),
    p("singularlyRun", Kind::Boolean, false, "not claimed while an identical task runs in the queue"),
    p("priority", Kind::Any, false, "-100..100, or urgent, high, normal, low, bulk; higher runs first"),
    p("maxAttempts", Kind::Integer, false, "attempts before the failed set"),
    p("ttr", Kind::Integer, false, "seconds a claim may run before its lease runs out"),
    p("key", Kind::String, false, "the caller's name for the task (1-256 bytes): find it, stop it; the singular rules compare it"),
    p("expireAt", Kind::Number, false, "unix seconds after which a copy not yet claimed is dropped (expired)"),
    p("ttl", Kind::Number, false, "seconds from now after which a copy not yet claimed is dropped"),
];
const CLAIM: &[Param] = &[
    p("workerId", Kind::String, true, "the claiming worker"),
    p(
        "count",
        Kind::Integer,
        false,
        "claim up to this many; the answer is then an array",
    ),
    p(
        "wait",
        Kind::Number,
        false,
        "seconds to long-poll for a task",
    ),
];
const REPORT: &[Param] = &[
    p(
        "workerId",
        Kind::String,
        true,
        "the worker holding the lease",
    ),
    p("taskId", Kind::String, true, "the task copy"),
    p(
        "state",
        Kind::String,
        true,
        "`complete`, `fail` or `progress`",
    ),
    p("failReason", Kind::String, false, "with `fail`"),
    p(
        "reEnqueue",
        Kind::Boolean,
        false,
        "with `complete` or `fail`: back to its queue now",
    ),
    p(
        "output",
        Kind::Any,
        false,
        "with `complete`: any JSON kept with the task",
    ),
    p(
        "progress",
        Kind::Any,
        false,
        "with `progress`: a number 0-100 or an object",
    ),
];
const WORKER_OR_QUEUE: &[Param] = &[
    p(
        "workerId",
        Kind::String,
        false,
        "one worker (give this or `queue`)",
    ),
    p(
        "queue",
        Kind::String,
        false,
        "every one of a queue (give this or `workerId`)",
    ),
];
const QUEUE: &[Param] = &[p("queue", Kind::String, true, "the queue")];
const QUEUE_SETTINGS: &[Param] = &[
    p("queue", Kind::String, true, "the queue"),
    p(
        "maxRunning",
        Kind::Integer,
        false,
        "most copies running at once across all workers; null clears",
    ),
    p(
        "rateLimit",
        Kind::Number,
        false,
        "most claims per second; null clears",
    ),
    p(
        "paused",
        Kind::Boolean,
        false,
        "a paused queue takes tasks and hands none out",
    ),
];
const SCHEDULE: &[Param] = &[
    p(
        "name",
        Kind::String,
        true,
        "the schedule's name (queue-name characters); H in cron fields hashes it",
    ),
    p(
        "cron",
        Kind::String,
        false,
        "5 fields, or 6 with seconds first; H, H/n, H(a-b) spread schedules",
    ),
    p(
        "timezone",
        Kind::String,
        false,
        "with cron: an IANA time zone (default UTC)",
    ),
    p("every", Kind::Integer, false, "seconds between firings"),
    p("at", Kind::Number, false, "unix seconds: fire once"),
    p(
        "task",
        Kind::Object,
        true,
        "the parameters of PUT /task (no runAt or expireAt; ttl allowed)",
    ),
];
const SCHEDULE_NAME: &[Param] = &[p("name", Kind::String, true, "the schedule")];
const STOP: &[Param] = &[
    p(
        "taskId",
        Kind::String,
        false,
        "stop one copy, or every copy of a publish",
    ),
    p("key", Kind::String, false, "stop every task with this key"),
    p(
        "workerId",
        Kind::String,
        false,
        "admin: remove a worker's own queue and running tasks",
    ),
    p(
        "queue",
        Kind::String,
        false,
        "admin: remove every task of a queue",
    ),
];
const REGISTER: &[Param] = &[p(
    "queues",
    Kind::Array,
    true,
    "queue names, in the order to take from them",
)];
const INTEREST: &[Param] = &[
    p("queue", Kind::String, true, "the queue"),
    p(
        "interests",
        Kind::Any,
        true,
        "\"*\" or an object of field path to regular expression",
    ),
];
const ADVANCE: &[Param] = &[p(
    "advance",
    Kind::Number,
    true,
    "seconds to move it forward",
)];
const STATUS: &[Param] = &[
    p("queue", Kind::String, false, "one queue's counts"),
    p("queues", Kind::Boolean, false, "every queue and its counts"),
    p(
        "workerQueue",
        Kind::String,
        false,
        "a worker's own queue length, or every worker's",
    ),
    p("interests", Kind::Boolean, false, "every queue's interests"),
    p(
        "workers",
        Kind::Boolean,
        false,
        "every worker, its state and tasks",
    ),
    p(
        "failedQueue",
        Kind::String,
        false,
        "the failed set (of one queue, when named)",
    ),
    p(
        "task",
        Kind::String,
        false,
        "one copy, or every copy of a publish",
    ),
    p(
        "counters",
        Kind::Boolean,
        false,
        "totals since the data directory was made",
    ),
    p(
        "store",
        Kind::Boolean,
        false,
        "commit statistics of the store",
    ),
    p("offset", Kind::Integer, false, "for `failedQueue`"),
    p("limit", Kind::Integer, false, "for `failedQueue`"),
];

/// The API, in the order it is documented: built once, read on every
/// request by the guard.
pub fn endpoints() -> &'static [Endpoint] {
    static ENDPOINTS: std::sync::LazyLock<Vec<Endpoint>> = std::sync::LazyLock::new(table);
    &ENDPOINTS
}

fn table() -> Vec<Endpoint> {
    vec![
        Endpoint {
            method: "PUT",
            path: "/task",
            access: PUBLISHER,
            summary:
                "Publish a task: route it through interests, copy it into each interested queue",
            params: PUBLISH,
            batch: Some("an array of tasks, published in one commit"),
            answer: "{taskId, queues, copies: [{queue, taskId}]}, or an array of them",
            testing_only: false,
            handler: || web::put().to(task::publish_task),
        },
        Endpoint {
            method: "GET",
            path: "/task",
            access: WORKER,
            summary: "Claim the next task (a lease of ttr seconds)",
            params: CLAIM,
            batch: None,
            answer: "the task, or null; with count, an array",
            testing_only: false,
            handler: || web::get().to(task::claim_task),
        },
        Endpoint {
            method: "POST",
            path: "/task",
            access: WORKER,
            summary: "Complete, fail or report progress on a claimed task",
            params: REPORT,
            batch: Some("an array of updates, applied in order"),
            answer: "the task without its data and history; for an array, [{task} or {error}] per item",
            testing_only: false,
            handler: || web::post().to(task::update_task),
        },
        Endpoint {
            method: "DELETE",
            path: "/task",
            access: PUBLISHER,
            summary: "Stop a task by id or key (waiting copies cancelled, running ones flagged); or, as admin, remove every task of a worker or queue",
            params: STOP,
            batch: None,
            answer: "{cancelled, cancelRequested, untouched}, or {deleted}",
            testing_only: false,
            handler: || web::delete().to(task::delete_tasks),
        },
        Endpoint {
            method: "PUT",
            path: "/worker",
            access: WORKER,
            summary: "Register a worker on queues, in priority order",
            params: REGISTER,
            batch: None,
            answer: "{workerId, queues}",
            testing_only: false,
            handler: || web::put().to(worker::register_worker),
        },
        Endpoint {
            method: "DELETE",
            path: "/worker",
            access: WORKER,
            summary: "Remove a worker (or every worker of a queue); its running tasks go back",
            params: WORKER_OR_QUEUE,
            batch: None,
            answer: "{deleted: [workerId]}",
            testing_only: false,
            handler: || web::delete().to(worker::delete_worker),
        },
        Endpoint {
            method: "PUT",
            path: "/interest",
            access: ADMIN,
            summary: "Set a queue's interests (creating the queue)",
            params: INTEREST,
            batch: Some("an array of {queue, interests}, set together"),
            answer: "{queue, interests}, or an array of them",
            testing_only: false,
            handler: || web::put().to(interest::create_interest),
        },
        Endpoint {
            method: "DELETE",
            path: "/interest",
            access: ADMIN,
            summary: "Remove a queue's interests (its tasks stay)",
            params: QUEUE,
            batch: None,
            answer: "{queue, deleted}",
            testing_only: false,
            handler: || web::delete().to(interest::delete_interest),
        },
        Endpoint {
            method: "PUT",
            path: "/queue",
            access: ADMIN,
            summary: "Set a queue's limits: maxRunning, rateLimit, paused (null clears one)",
            params: QUEUE_SETTINGS,
            batch: None,
            answer: "{queue, settings}",
            testing_only: false,
            handler: || web::put().to(queue::update_queue),
        },
        Endpoint {
            method: "DELETE",
            path: "/queue",
            access: ADMIN,
            summary: "Remove a queue: its interests and every task in it",
            params: QUEUE,
            batch: None,
            answer: "{queue, deletedTasks}",
            testing_only: false,
            handler: || web::delete().to(queue::delete_queue),
        },
        Endpoint {
            method: "PUT",
            path: "/schedule",
            access: ADMIN,
            summary: "Create or replace a named schedule: a cron, an interval or a one-off time, and the task to publish",
            params: SCHEDULE,
            batch: None,
            answer: "{name, spec, nextRun, lastRun, task}",
            testing_only: false,
            handler: || web::put().to(schedule::set_schedule),
        },
        Endpoint {
            method: "DELETE",
            path: "/schedule",
            access: ADMIN,
            summary: "Stop a schedule",
            params: SCHEDULE_NAME,
            batch: None,
            answer: "{name, deleted}",
            testing_only: false,
            handler: || web::delete().to(schedule::delete_schedule),
        },
        Endpoint {
            method: "GET",
            path: "/status",
            access: ADMIN,
            summary: "Inspect queues, workers, interests, tasks and counters",
            params: STATUS,
            batch: None,
            answer: "one key per parameter asked",
            testing_only: false,
            handler: || web::get().to(status::show_status),
        },
        Endpoint {
            method: "GET",
            path: "/metrics",
            access: ADMIN,
            summary: "Metrics in the Prometheus text format",
            params: &[],
            batch: None,
            answer: "text/plain; version=0.0.4",
            testing_only: false,
            handler: || web::get().to(metrics::show_metrics),
        },
        Endpoint {
            method: "GET",
            path: "/healthz",
            access: Access::Open,
            summary: "The process is alive",
            params: &[],
            batch: None,
            answer: "{status: ok}",
            testing_only: false,
            handler: || web::get().to(health::healthz),
        },
        Endpoint {
            method: "GET",
            path: "/readyz",
            access: Access::Open,
            summary: "The store is reachable and work is accepted (503 otherwise)",
            params: &[],
            batch: None,
            answer: "{status: ready}",
            testing_only: false,
            handler: || web::get().to(health::readyz),
        },
        Endpoint {
            method: "GET",
            path: "/openapi.json",
            access: Access::Open,
            summary: "This description of the API (OpenAPI 3)",
            params: &[],
            batch: None,
            answer: "an OpenAPI 3.0 document",
            testing_only: false,
            handler: || web::get().to(health::openapi),
        },
        Endpoint {
            method: "POST",
            path: "/_testing/clock",
            access: ADMIN,
            summary: "Move the manual clock (only with testing.manual_clock)",
            params: ADVANCE,
            batch: None,
            answer: "{now}",
            testing_only: true,
            handler: || web::post().to(testing::advance_clock),
        },
    ]
}

/// Mounts every endpoint; a known path with another method answers 405.
pub fn mount(cfg: &mut web::ServiceConfig, testing: bool) {
    let all = endpoints();
    let mut paths: Vec<&str> = Vec::new();
    for e in all {
        if !paths.contains(&e.path) && (testing || !e.testing_only) {
            paths.push(e.path);
        }
    }
    for path in paths {
        let mut resource = web::resource(path);
        for e in all.iter().filter(|e| e.path == path) {
            resource = resource.route((e.handler)());
        }
        cfg.service(resource.default_service(web::to(super::method_not_allowed)));
    }
}

/// Who may call `method path`. Paths outside the table (the management site,
/// unknown paths) are the admin's.
pub fn access_of(method: &Method, path: &str) -> Access {
    endpoints()
        .iter()
        .find(|e| e.path == path && e.method == method.as_str())
        .map_or(ADMIN, |e| e.access)
}

fn schema(kind: Kind) -> Value {
    match kind {
        Kind::String => json!({"type": "string"}),
        Kind::Integer => json!({"type": "integer"}),
        Kind::Number => json!({"type": "number"}),
        Kind::Boolean => json!({"type": "boolean"}),
        Kind::Object => json!({"type": "object"}),
        Kind::Array => json!({"type": "array", "items": {"type": "string"}}),
        Kind::Any => json!({}),
    }
}

/// The OpenAPI 3 document of the API.
pub fn openapi() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for e in endpoints() {
        let mut op = json!({
            "summary": e.summary,
            "operationId": format!("{} {}", e.method, e.path),
            "responses": {
                "200": {"description": e.answer},
                "4XX": {"description": "the caller's mistake, naming the field", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "5XX": {"description": "the server's own failure", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        if e.access == Access::Open {
            op["security"] = json!([]);
        } else {
            let roles = match e.access {
                Access::Roles(r) => r
                    .iter()
                    .map(|r| r.as_str())
                    .chain(["admin"])
                    .collect::<Vec<_>>()
                    .join(", "),
                Access::Open => String::new(),
            };
            op["description"] = Value::String(format!("Roles: {roles}."));
        }
        if !e.params.is_empty() {
            op["parameters"] = e
                .params
                .iter()
                .map(|p| json!({"name": p.name, "in": "query", "required": false, "description": p.doc, "schema": schema(p.kind)}))
                .collect();
            let properties: Map<String, Value> = e
                .params
                .iter()
                .map(|p| {
                    let mut s = schema(p.kind);
                    s["description"] = Value::String(p.doc.to_owned());
                    (p.name.to_owned(), s)
                })
                .collect();
            let required: Vec<&str> = e
                .params
                .iter()
                .filter(|p| p.required)
                .map(|p| p.name)
                .collect();
            let object = json!({"type": "object", "properties": properties, "required": required});
            let body = match e.batch {
                Some(doc) => {
                    json!({"oneOf": [object, {"type": "array", "items": object, "description": doc}]})
                }
                None => object,
            };
            if e.method != "GET" {
                op["requestBody"] =
                    json!({"required": false, "content": {"application/json": {"schema": body}}});
            }
        }
        let entry = paths.entry(e.path.to_owned()).or_insert_with(|| json!({}));
        entry[e.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "interq",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A pub/sub, interest-routing job queue. Parameters may come as a JSON body or as query-string fields (JSON values as JSON text).",
        },
        "security": [{"bearer": []}, {"basic": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic", "description": "the key as the password; the user name is ignored"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
                },
            },
        },
        "paths": paths,
    })
}
