//! Every endpoint of the API, once: the table that mounts the routes, decides
//! who may call them, and generates `GET /openapi.json`, so that the three
//! cannot disagree.

use actix_web::http::Method;
use actix_web::web;
use serde_json::Value;

use super::call::OpFn;
use super::params::Body;
use super::{
    batch, health, interest, logs, metrics, queue, schedule, status, task, tasks, testing, worker,
};
use crate::auth::Role;
use crate::config::Settings;

/// Who may call an endpoint when keys are configured. `admin` may call all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health checks, the API description).
    Open,
    /// Holders of one of these roles, or admin.
    Roles(&'static [Role]),
}

impl Access {
    /// Whether a key with `roles` may call a route with this access by
    /// `method`. A viewer may read what only admins may: a `GET` of an
    /// admin route (no such route changes anything; a worker's claim is a
    /// worker's route, not an admin's).
    pub fn allows(self, roles: &[Role], method: &str) -> bool {
        match self {
            Access::Open => true,
            Access::Roles(allowed) => roles.iter().any(|r| {
                *r == Role::Admin
                    || allowed.contains(r)
                    || (*r == Role::Viewer && allowed.is_empty() && method == "GET")
            }),
        }
    }
}

pub const ADMIN: Access = Access::Roles(&[]);
const PUBLISHER: Access = Access::Roles(&[Role::Publisher]);
const WORKER: Access = Access::Roles(&[Role::Worker]);

/// Builds a parameter's JSON schema from the settings (limits vary).
pub type SchemaFn = fn(&Settings) -> Value;

/// One parameter: in the JSON body of a PUT, POST or DELETE, or in the
/// query string of a GET (the server takes either way for every route; the
/// document describes the usual one).
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub schema: SchemaFn,
    pub required: bool,
    pub doc: &'static str,
}

const fn p(name: &'static str, schema: SchemaFn, required: bool, doc: &'static str) -> Param {
    Param {
        name,
        schema,
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
    /// When the parameters combine only in some ways (exactly one of a few,
    /// some only with a given `state`): the body's schema, whole.
    pub body: Option<SchemaFn>,
    /// The schema of a 200 answer.
    pub answer: SchemaFn,
    /// Mounted only with the manual test clock.
    pub testing_only: bool,
    pub serve: Serve,
}

/// How an endpoint is served.
#[derive(Debug, Clone, Copy)]
pub enum Serve {
    /// An operation: over HTTP here, and under `name` over the pipelined
    /// protocol.
    Op { name: &'static str, run: OpFn },
    /// Over HTTP only (text, probes, the API's description).
    Http(fn() -> actix_web::Route),
    /// An operation that HTTP serves its own way too (a stream when asked):
    /// `http` over HTTP, `run` under `name` over the pipelined protocol.
    OpAndHttp {
        name: &'static str,
        run: OpFn,
        http: fn() -> actix_web::Route,
    },
}

impl Endpoint {
    /// Its name over the pipelined protocol, when it has one.
    pub fn op_name(&self) -> Option<&'static str> {
        self.op().map(|(name, _)| name)
    }

    /// Its name and operation over the pipelined protocol, when it has one.
    pub fn op(&self) -> Option<(&'static str, OpFn)> {
        match self.serve {
            Serve::Op { name, run } | Serve::OpAndHttp { name, run, .. } => Some((name, run)),
            Serve::Http(_) => None,
        }
    }

    fn route(&self) -> actix_web::Route {
        match self.serve {
            Serve::Op { run, .. } => {
                let method = Method::from_bytes(self.method.as_bytes()).expect("a method");
                web::method(method).to(move |req: actix_web::HttpRequest, body: Body| {
                    super::call::over_http(run, req, body)
                })
            }
            Serve::Http(route) | Serve::OpAndHttp { http: route, .. } => route(),
        }
    }
}

/// The endpoint served under an operation's name.
pub fn op(name: &str) -> Option<&'static Endpoint> {
    endpoints().iter().find(|e| e.op_name() == Some(name))
}

use super::openapi as s;

const PUBLISH: &[Param] = &[
    p("data", s::object, true, "the task: any JSON object; interests match its fields"),
    p("publisher", s::text, false, "who publishes (a name for status and logs)"),
    p("runAt", s::unix_time, false, "unix seconds before which the task does not run"),
    p("scope", s::scope, false, "`any` (default): one copy per interested queue; `all`: one per worker of an interested queue"),
    p("singularlyEnqueue", s::singular_enqueue, false, "true: no copy when an identical task already waits in the queue; \"replace\": the new one replaces it"),
    p("singularlyRun", s::boolean, false, "not claimed while an identical task runs in the queue"),
    p("priority", s::priority, false, "-100..100, or urgent, high, normal, low, bulk; higher runs first"),
    p("maxAttempts", s::max_attempts, false, "attempts before the failed set"),
    p("ttr", s::ttr, false, "seconds a claim may run before its lease runs out"),
    p("key", s::key, false, "the caller's name for the task (1-256 bytes): find it, stop it; the singular rules compare it"),
    p("group", s::group, false, "its fairness group (1-128 bytes, a tenant or customer): claims in a queue take turns between groups, and a queue may limit each group"),
    p("expireAt", s::unix_time, false, "unix seconds after which a copy not yet claimed is dropped (expired); not with `ttl`"),
    p("ttl", s::ttl, false, "seconds from now after which a copy not yet claimed is dropped; not with `expireAt`"),
    p("requireRoute", s::boolean, false, "refuse the publish (422 `unrouted`, nothing stored) when no queue's interests want the task"),
    p("publishOutput", s::boolean, false, "a copy that completes with an object as its output has the output published as a new task (its `parent` the copy), which does the same, up to `tasks.max_output_depth` steps"),
    p("dependsOn", s::dependencies, false, "task ids, publish ids or {\"key\": K}: the copies wait `blocked` until every one has completed"),
    p("dependencyFailed", s::dependency_failed, false, "`cancel` (default): a dependency that fails for good, is cancelled or expires cancels the task; `run`: it counts as met"),
];
const BATCH: &[Param] = &[
    p("tasks", s::batch_tasks, true, "the tasks (each as PUT /task takes it), published in one commit; an empty list closes a batch opened with `more`"),
    p("batch", s::batch_id, false, "its id (1-128 bytes); one is made when none is given; a batch still open for more takes more tasks under it"),
    p("onComplete", s::batch_callback, false, "a task (as PUT /task takes it) published once, when every copy of the batch has ended, with the batch's totals in its data's `batch`"),
    p("more", s::boolean, false, "more tasks will join it (a later PUT /batch of the same id): it does not end before one comes without `more`"),
];
const CLAIM: &[Param] = &[
    p("workerId", s::uuid, true, "the claiming worker"),
    p(
        "count",
        s::claim_count,
        false,
        "claim up to this many; the answer is then an array",
    ),
    p("wait", s::wait, false, "seconds to long-poll for a task"),
];
const LOG_APPEND: &[Param] = &[
    p("workerId", s::uuid, true, "the worker holding the lease"),
    p("taskId", s::uuid, true, "the task copy"),
    p(
        "text",
        s::log_text,
        true,
        "what the command wrote since the last append",
    ),
];

const LOG_READ: &[Param] = &[
    p("taskId", s::uuid, true, "the task copy"),
    p(
        "offset",
        s::log_offset,
        false,
        "read from this byte on (a previous answer's `next`); default: the first kept",
    ),
    p(
        "follow",
        s::flag,
        false,
        "stream the log as server-sent events until the copy ends (HTTP only)",
    ),
];

const REPORT: &[Param] = &[
    p("workerId", s::uuid, true, "the worker holding the lease"),
    p("taskId", s::uuid, true, "the task copy"),
    p(
        "state",
        s::report_state,
        true,
        "`complete`, `fail` or `progress`",
    ),
    p("failReason", s::text, false, "with `fail`"),
    p(
        "reEnqueue",
        s::boolean,
        false,
        "with `complete` or `fail`: back to its queue now",
    ),
    p(
        "output",
        s::any,
        false,
        "with `complete`: any JSON kept with the task",
    ),
    p(
        "progress",
        s::progress,
        false,
        "with `progress`: a number 0-100 or an object",
    ),
];
const WORKER_OR_QUEUE: &[Param] = &[
    p(
        "workerId",
        s::uuid,
        false,
        "one worker (give this or `queue`)",
    ),
    p(
        "queue",
        s::queue,
        false,
        "as admin, every worker of a queue (give this or `workerId`)",
    ),
];
const QUEUE: &[Param] = &[p("queue", s::queue, true, "the queue")];
const QUEUE_SETTINGS: &[Param] = &[
    p("queue", s::queue, true, "the queue"),
    p(
        "maxRunning",
        s::max_running,
        false,
        "most copies running at once across all workers; null clears",
    ),
    p(
        "rateLimit",
        s::rate_limit,
        false,
        "most claims per second; null clears",
    ),
    p(
        "paused",
        s::boolean,
        false,
        "a paused queue takes tasks and hands none out",
    ),
    p(
        "groupMaxRunning",
        s::group_max_running,
        false,
        "most copies of one fairness group running at once (1: each group in order); null clears",
    ),
    p(
        "groupRateLimit",
        s::group_rate_limit,
        false,
        "most claims per second of one group, across nodes; null clears",
    ),
    p(
        "strictPriority",
        s::boolean,
        false,
        "claims take the highest priority among the groups' next copies first (default: groups take turns whatever their priorities)",
    ),
    p(
        "groups",
        s::group_overrides,
        false,
        "single groups' own maxRunning, rateLimit and weight (turns per turn of a weight-1 group); null removes a group's",
    ),
    p(
        "publishOutput",
        s::boolean,
        false,
        "a copy that completes here with an object as its output has the output published as a new task (its `parent` the copy)",
    ),
];
const SCHEDULE: &[Param] = &[
    p(
        "name",
        s::queue,
        true,
        "the schedule's name (queue-name characters); H in cron fields hashes it",
    ),
    p(
        "cron",
        s::cron,
        false,
        "5 fields, or 6 with seconds first; H, H/n, H(a-b) spread schedules",
    ),
    p(
        "timezone",
        s::timezone,
        false,
        "with cron: an IANA time zone (default UTC)",
    ),
    p("every", s::every, false, "seconds between firings"),
    p("at", s::unix_time, false, "unix seconds: fire once"),
    p(
        "task",
        s::scheduled_task,
        false,
        "the parameters of PUT /task (no runAt or expireAt; ttl allowed); required but to pause or resume",
    ),
    p(
        "paused",
        s::boolean,
        false,
        "with a spec and task: create it paused; alone with name: pause (true) or resume (false) the schedule as it is, from its next due time after now",
    ),
];
const SCHEDULE_NAME: &[Param] = &[p("name", s::queue, true, "the schedule")];
const STOP: &[Param] = &[
    p(
        "taskId",
        s::uuid,
        false,
        "stop one copy, or every copy of a publish",
    ),
    p("key", s::key, false, "stop every task with this key"),
    p(
        "workerId",
        s::uuid,
        false,
        "admin: remove a worker's own queue and running tasks",
    ),
    p(
        "queue",
        s::queue,
        false,
        "admin: remove every task of a queue",
    ),
];
const REGISTER: &[Param] = &[
    p(
        "queues",
        s::worker_queues,
        true,
        "queue names, in the order to take from them",
    ),
    p(
        "weights",
        s::worker_weights,
        false,
        "queue -> weight 1-1000 (1 if left out): each claim first tries a queue chosen in proportion, so that later queues are never starved; without, the order is strict",
    ),
    p(
        "name",
        s::worker_name,
        false,
        "a name for people (default: the caller's address)",
    ),
];
const INTEREST: &[Param] = &[
    p("queue", s::queue, true, "the queue"),
    p(
        "interests",
        s::interests,
        true,
        "\"*\" or an object of field path to regular expression",
    ),
    p(
        "replay",
        s::replay_secs,
        false,
        "seconds: copy in the publishes of that long ago to now (up to tasks.replay_keep_secs) that these interests want and that have no copy in the queue yet; the answer says how many in `replayed`",
    ),
];
const TRY_TASK: &[Param] = &[p(
    "data",
    s::object,
    true,
    "a task's data, as a publish would give it",
)];
const ADVANCE: &[Param] = &[p("advance", s::advance, true, "seconds to move it forward")];
const TASK_LIST: &[Param] = &[
    p(
        "state",
        s::list_state,
        true,
        "ready, scheduled, running, failed, completed, cancelled or expired",
    ),
    p(
        "queue",
        s::queue,
        false,
        "one queue's copies (all queues' without it)",
    ),
    p("offset", s::offset, false, "copies to skip"),
    p(
        "limit",
        s::page_limit,
        false,
        "copies in the page (100 by default)",
    ),
    p("key", s::key, false, "only copies published with this key"),
    p(
        "publisher",
        s::text,
        false,
        "only copies from this publisher",
    ),
    p("group", s::group, false, "only copies of this fairness group"),
    p(
        "reason",
        s::text,
        false,
        "only copies whose failure reason holds this text, in any case",
    ),
    p(
        "since",
        s::unix_time,
        false,
        "only copies published at or after (Unix seconds, or a UTC date and time)",
    ),
    p(
        "until",
        s::unix_time,
        false,
        "only copies published before (Unix seconds, or a UTC date and time)",
    ),
    p(
        "data",
        s::text,
        false,
        "only copies whose data field matches: `field=pattern`, a dotted path and text with `*` for any run (in a JSON body also an object of fields and patterns, or a list)",
    ),
    p(
        "after",
        s::uuid,
        false,
        "only copies published after this one: the last id of a page is the next page's cursor, which costs what the first does (the list is then in publish order)",
    ),
    p(
        "archived",
        s::boolean,
        false,
        "true: the queue's archive of completed, cancelled or expired copies (embedded store), newest finish first; needs `queue`; paged by `before` (the next page) or `after` (the page before), not `offset`",
    ),
    p(
        "before",
        s::uuid,
        false,
        "with `archived`: only copies archived before this one (the last id of a page is the next page's cursor; with `archived`, `after` is the first id of a page and gives the page before it)",
    ),
];
const RETRY: &[Param] = &[
    p("taskId", s::uuid, false, "one failed copy"),
    p("queue", s::queue, false, "every failed copy of a queue"),
    p("all", s::boolean, false, "true: every failed copy"),
    p("key", s::key, false, "with `queue` or `all`: only copies with this key"),
    p("publisher", s::text, false, "with `queue` or `all`: only copies from this publisher"),
    p("group", s::group, false, "with `queue` or `all`: only copies of this fairness group"),
    p("reason", s::text, false, "with `queue` or `all`: only copies whose failure reason holds this text"),
    p("since", s::unix_time, false, "with `queue` or `all`: only copies published at or after"),
    p("until", s::unix_time, false, "with `queue` or `all`: only copies published before"),
    p("data", s::text, false, "with `queue` or `all`: only copies whose data matches (`field=pattern`, as for `GET /tasks`)"),
    p("after", s::uuid, false, "with `queue` or `all`: only copies published after this one"),
];
const ACT: &[Param] = &[
    p("action", s::bulk_action, true, "retry (failed copies), cancel (waiting and running ones), runNow (scheduled ones), move (waiting and failed ones, to `to`), remove (any)"),
    p("to", s::queue, false, "with `move`: the queue the copies move to, each as a new publish of one copy; the originals end `cancelled`, naming it"),
    p("taskIds", s::task_ids, false, "the copies selected"),
    p("queue", s::queue, false, "every copy of a queue in `state` that matches the search"),
    p("all", s::boolean, false, "true: every copy in `state` that matches the search"),
    p("state", s::list_state, false, "with `queue` or `all`: the state of the copies taken (retry: failed, runNow: scheduled by default)"),
    p("key", s::key, false, "with `queue` or `all`: only copies with this key"),
    p("publisher", s::text, false, "with `queue` or `all`: only copies from this publisher"),
    p("group", s::group, false, "with `queue` or `all`: only copies of this fairness group"),
    p("reason", s::text, false, "with `queue` or `all`: only copies whose failure reason holds this text"),
    p("since", s::unix_time, false, "with `queue` or `all`: only copies published at or after"),
    p("until", s::unix_time, false, "with `queue` or `all`: only copies published before (and always only those published before the call)"),
    p("data", s::text, false, "with `queue` or `all`: only copies whose data matches (`field=pattern`, as for `GET /tasks`)"),
    p("after", s::uuid, false, "with `queue` or `all`: only copies published after this one"),
    p("archived", s::boolean, false, "with `queue`, `action: remove` and a finished `state`: the copies of the queue's archive that match the search (archived copies selected by `taskIds` are found without it)"),
];
const STATUS: &[Param] = &[
    p("queue", s::queue, false, "one queue's counts"),
    p("queues", s::flag, false, "every queue and its counts"),
    p(
        "workerQueue",
        s::text,
        false,
        "a worker's own queue length (a worker id), or every worker's (empty)",
    ),
    p("interests", s::flag, false, "every queue's interests"),
    p(
        "workers",
        s::flag,
        false,
        "every worker, its state and tasks",
    ),
    p(
        "failedQueue",
        s::text,
        false,
        "the failed set (of one queue, when named)",
    ),
    p(
        "failedReasons",
        s::text,
        false,
        "the failed copies' distinct reasons (first lines), with counts, most first (of one queue, when named)",
    ),
    p(
        "task",
        s::uuid,
        false,
        "one copy, or every copy of a publish",
    ),
    p("key", s::key, false, "every copy published with this key"),
    p("batch", s::batch_id, false, "a batch: its totals, whether it ended, its callback"),
    p(
        "groups",
        s::queue,
        false,
        "a queue's fairness groups with ready or running copies, the most ready first (`limit` of them, 100 by default)",
    ),
    p("schedules", s::flag, false, "every named schedule"),
    p("locks", s::flag, false, "the singular locks held now: kind (enqueue or run), queue, the holder's taskId, key and workerId, identity, and for a run lock the twins waiting"),
    p(
        "counters",
        s::flag,
        false,
        "totals since the data directory was made",
    ),
    p("store", s::flag, false, "commit statistics of the store"),
    p("offset", s::offset, false, "for `failedQueue`"),
    p("limit", s::page_limit, false, "for `failedQueue` and `groups`"),
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
            body: None,
            answer: s::published_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "publish",
                run: |c, b| Box::pin(task::publish(c, b)),
            },
        },
        Endpoint {
            method: "PUT",
            path: "/batch",
            access: PUBLISHER,
            summary: "Publish tasks as one batch: counted together, with a callback task once every copy has ended",
            params: BATCH,
            batch: None,
            body: None,
            answer: s::batch_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "publishBatch",
                run: |c, b| Box::pin(batch::publish(c, b)),
            },
        },
        Endpoint {
            method: "GET",
            path: "/task",
            access: WORKER,
            summary: "Claim the next task (a lease of ttr seconds)",
            params: CLAIM,
            batch: None,
            body: None,
            answer: s::claim_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "claim",
                run: |c, b| Box::pin(task::claim(c, b)),
            },
        },
        Endpoint {
            method: "POST",
            path: "/task",
            access: WORKER,
            summary: "Complete, fail or report progress on a claimed task",
            params: REPORT,
            batch: Some("an array of updates, applied in order"),
            body: Some(s::report_body),
            answer: s::report_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "report",
                run: |c, b| Box::pin(task::report(c, b)),
            },
        },
        Endpoint {
            method: "POST",
            path: "/task/log",
            access: WORKER,
            summary: "Add what a claimed task's command wrote to its log",
            params: LOG_APPEND,
            batch: None,
            body: None,
            answer: s::log_appended_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "appendLog",
                run: |c, b| Box::pin(logs::append(c, b)),
            },
        },
        Endpoint {
            method: "GET",
            path: "/task/log",
            access: ADMIN,
            summary: "A task's log, or with `follow` a stream of it until the task ends",
            params: LOG_READ,
            batch: None,
            body: None,
            answer: s::task_log_answer,
            testing_only: false,
            serve: Serve::OpAndHttp {
                name: "taskLog",
                run: |c, b| Box::pin(logs::read(c, b)),
                http: || actix_web::web::get().to(logs::read_over_http),
            },
        },
        Endpoint {
            method: "DELETE",
            path: "/task",
            access: PUBLISHER,
            summary: "Stop a task by id or key (waiting copies cancelled, running ones flagged); or, as admin, remove every task of a worker or queue",
            params: STOP,
            batch: None,
            body: Some(s::stop_body),
            answer: s::stop_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "cancel",
                run: |c, b| Box::pin(task::cancel(c, b)),
            },
        },
        Endpoint {
            method: "PUT",
            path: "/worker",
            access: WORKER,
            summary: "Register a worker on queues, in priority order",
            params: REGISTER,
            batch: None,
            body: None,
            answer: s::registered_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "register",
                run: |c, b| Box::pin(worker::register(c, b)),
            },
        },
        Endpoint {
            method: "DELETE",
            path: "/worker",
            access: WORKER,
            summary: "Remove a worker (or every worker of a queue); its running tasks go back",
            params: WORKER_OR_QUEUE,
            batch: None,
            body: Some(s::worker_delete_body),
            answer: s::deleted_workers_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "deregister",
                run: |c, b| Box::pin(worker::deregister(c, b)),
            },
        },
        Endpoint {
            method: "PUT",
            path: "/interest",
            access: ADMIN,
            summary: "Set a queue's interests (creating the queue)",
            params: INTEREST,
            batch: Some("an array of {queue, interests}, set together"),
            body: None,
            answer: s::interest_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "setInterests",
                run: |c, b| Box::pin(interest::set(c, b)),
            },
        },
        Endpoint {
            method: "POST",
            path: "/interest/try",
            access: ADMIN,
            summary: "Which queues a task would reach now, and by which field and pattern (nothing is published)",
            params: TRY_TASK,
            batch: None,
            body: None,
            answer: s::try_task_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "tryTask",
                run: |c, b| Box::pin(interest::try_task(c, b)),
            },
        },
        Endpoint {
            method: "DELETE",
            path: "/interest",
            access: ADMIN,
            summary: "Remove a queue's interests (its tasks stay)",
            params: QUEUE,
            batch: None,
            body: None,
            answer: s::interest_deleted_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "deleteInterests",
                run: |c, b| Box::pin(interest::delete(c, b)),
            },
        },
        Endpoint {
            method: "PUT",
            path: "/queue",
            access: ADMIN,
            summary: "Set a queue's limits: maxRunning, rateLimit, paused (null clears one)",
            params: QUEUE_SETTINGS,
            batch: None,
            body: None,
            answer: s::queue_settings_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "setQueue",
                run: |c, b| Box::pin(queue::update(c, b)),
            },
        },
        Endpoint {
            method: "DELETE",
            path: "/queue",
            access: ADMIN,
            summary: "Remove a queue: its interests and every task in it",
            params: QUEUE,
            batch: None,
            body: None,
            answer: s::queue_deleted_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "deleteQueue",
                run: |c, b| Box::pin(queue::delete(c, b)),
            },
        },
        Endpoint {
            method: "PUT",
            path: "/schedule",
            access: ADMIN,
            summary: "Create or replace a named schedule: a cron, an interval or a one-off time, and the task to publish",
            params: SCHEDULE,
            batch: None,
            body: Some(s::schedule_body),
            answer: s::schedule_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "setSchedule",
                run: |c, b| Box::pin(schedule::set(c, b)),
            },
        },
        Endpoint {
            method: "DELETE",
            path: "/schedule",
            access: ADMIN,
            summary: "Stop a schedule",
            params: SCHEDULE_NAME,
            batch: None,
            body: None,
            answer: s::schedule_deleted_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "deleteSchedule",
                run: |c, b| Box::pin(schedule::delete(c, b)),
            },
        },
        Endpoint {
            method: "GET",
            path: "/status",
            access: ADMIN,
            summary: "Inspect queues, workers, interests, tasks and counters",
            params: STATUS,
            batch: None,
            body: None,
            answer: s::status_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "status",
                run: |c, b| Box::pin(status::show(c, b)),
            },
        },
        Endpoint {
            method: "GET",
            path: "/tasks",
            access: ADMIN,
            summary: "List copies in one state, of one queue or all, a page at a time",
            params: TASK_LIST,
            batch: None,
            body: None,
            answer: s::task_list_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "listTasks",
                run: |c, b| Box::pin(tasks::list(c, b)),
            },
        },
        Endpoint {
            method: "POST",
            path: "/retry",
            access: ADMIN,
            summary: "Give failed copies a fresh set of attempts: one, a queue's, or all",
            params: RETRY,
            batch: None,
            body: Some(s::retry_body),
            answer: s::retry_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "retry",
                run: |c, b| Box::pin(tasks::retry(c, b)),
            },
        },
        Endpoint {
            method: "POST",
            path: "/tasks",
            access: ADMIN,
            summary: "Act on many copies: retry, cancel, run now, move or remove a selection, or every copy in a state that matches a search, a thousand a step",
            params: ACT,
            batch: None,
            body: Some(s::act_body),
            answer: s::act_answer,
            testing_only: false,
            serve: Serve::Op {
                name: "actOnTasks",
                run: |c, b| Box::pin(tasks::act(c, b)),
            },
        },
        Endpoint {
            method: "GET",
            path: "/metrics",
            access: ADMIN,
            summary: "Metrics in the Prometheus text format",
            params: &[],
            batch: None,
            body: None,
            answer: s::metrics_answer,
            testing_only: false,
            serve: Serve::Http(|| web::get().to(metrics::show_metrics)),
        },
        Endpoint {
            method: "GET",
            path: "/healthz",
            access: Access::Open,
            summary: "The process is alive",
            params: &[],
            batch: None,
            body: None,
            answer: s::health_answer,
            testing_only: false,
            serve: Serve::Http(|| web::get().to(health::healthz)),
        },
        Endpoint {
            method: "GET",
            path: "/readyz",
            access: Access::Open,
            summary: "The store is reachable and work is accepted (503 otherwise)",
            params: &[],
            batch: None,
            body: None,
            answer: s::health_answer,
            testing_only: false,
            serve: Serve::Http(|| web::get().to(health::readyz)),
        },
        Endpoint {
            method: "GET",
            path: "/openapi.json",
            access: Access::Open,
            summary: "This description of the API (OpenAPI 3)",
            params: &[],
            batch: None,
            body: None,
            answer: s::document_answer,
            testing_only: false,
            serve: Serve::Http(|| web::get().to(health::openapi)),
        },
        Endpoint {
            method: "POST",
            path: "/_testing/clock",
            access: ADMIN,
            summary: "Move the manual clock (only with testing.manual_clock)",
            params: ADVANCE,
            batch: None,
            body: None,
            answer: s::clock_answer,
            testing_only: true,
            serve: Serve::Op {
                name: "advanceClock",
                run: |c, b| Box::pin(testing::advance_clock(c, b)),
            },
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
            resource = resource.route(e.route());
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
