//! `GET /openapi.json`: the route table as an OpenAPI 3 document, with the
//! parameters described as the handlers check them (types, ranges, formats,
//! what goes with what) and the answers' schemas, so that a client can be
//! generated from it and a schema-driven fuzzer's valid cases are valid.
//! The limits in it come from this server's settings.

use serde_json::{json, Map, Value};

use super::routes::{endpoints, Access, Endpoint, Param};
use crate::config::Settings;
use crate::model::MAX_QUEUE_NAME_LEN;

/// The document this server serves; routes only mounted with the testing
/// clock are in it only then.
pub fn document(settings: &Settings, testing: bool) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for e in endpoints().iter().filter(|e| testing || !e.testing_only) {
        let entry = paths.entry(e.path.to_owned()).or_insert_with(|| json!({}));
        entry[e.method.to_ascii_lowercase()] = operation(e, settings);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "interq",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A pub/sub, interest-routing job queue. Every route takes its parameters as a JSON body or as query-string fields (JSON values as JSON text); this document describes the body for PUT, POST and DELETE and the query for GET.",
        },
        "security": [{"bearer": []}, {"basic": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic", "description": "the key as the password; the user name is ignored"},
            },
            "schemas": components(),
        },
        "paths": paths,
    })
}

fn operation(e: &Endpoint, settings: &Settings) -> Value {
    let error = json!({"description": "the caller's mistake, naming the field", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut responses = json!({
        "200": {"description": e.summary, "content": {"application/json": {"schema": (e.answer)(settings)}}},
        "4XX": error,
        "5XX": {"description": "the server's own failure, or a store that cannot take the change now (503, 507)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
    });
    if e.path == "/metrics" {
        responses["200"] = json!({"description": e.summary, "content": {"text/plain": {"schema": {"type": "string"}}}});
    }
    if (e.method, e.path) == ("GET", "/task/log") {
        responses["200"]["content"]["text/event-stream"] = json!({"schema": {"type": "string", "description": "with `follow`: `log` and `end` events"}});
    }
    if e.path == "/readyz" {
        responses["503"] = json!({"description": "not ready", "content": {"application/json": {"schema": (e.answer)(settings)}}});
    }
    let mut op = json!({
        "summary": e.summary,
        "operationId": format!("{} {}", e.method, e.path),
        "responses": responses,
    });
    match e.access {
        Access::Open => op["security"] = json!([]),
        Access::Roles(roles) => {
            let viewer = (roles.is_empty() && e.method == "GET").then_some("viewer");
            let names: Vec<&str> = roles
                .iter()
                .map(|r| r.as_str())
                .chain(["admin"])
                .chain(viewer)
                .collect();
            op["description"] = Value::String(format!("Roles: {}.", names.join(", ")));
        }
    }
    if !e.params.is_empty() {
        if e.method == "GET" {
            op["parameters"] = e
                .params
                .iter()
                .map(|p| json!({"name": p.name, "in": "query", "required": p.required, "description": p.doc, "schema": query_schema(p, settings)}))
                .collect();
        } else {
            let object = match e.body {
                Some(body) => body(settings),
                None => object_of(e.params, settings),
            };
            let body = match e.batch {
                Some(doc) => json!({"oneOf": [object, {
                    "type": "array",
                    "description": doc,
                    "items": object,
                    "minItems": 1,
                    "maxItems": settings.limits.max_batch,
                }]}),
                None => object,
            };
            op["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": body}}});
        }
    }
    if let Some(links) = links(e) {
        op["responses"]["200"]["links"] = links;
    }
    op
}

/// How the answer of one call feeds the next, for clients and for stateful
/// fuzzing: a registration's worker claims, a claim's task is reported on.
fn links(e: &Endpoint) -> Option<Value> {
    match (e.method, e.path) {
        ("PUT", "/worker") => Some(json!({
            "Claim": {"operationId": "GET /task", "parameters": {"workerId": "$response.body#/workerId"}},
        })),
        ("GET", "/task") => Some(json!({
            "Report": {"operationId": "POST /task", "requestBody": {"workerId": "$request.query.workerId", "taskId": "$response.body#/taskId", "state": "complete"}},
        })),
        ("PUT", "/task") => Some(json!({
            "Status": {"operationId": "GET /status", "parameters": {"task": "$response.body#/taskId"}},
        })),
        _ => None,
    }
}

fn query_schema(p: &Param, settings: &Settings) -> Value {
    (p.schema)(settings)
}

/// An object of these parameters, no others. An optional one may be
/// `null`, which the server reads as absent.
fn object_of(params: &[Param], settings: &Settings) -> Value {
    let properties: Map<String, Value> = params
        .iter()
        .map(|p| {
            let mut schema = (p.schema)(settings);
            if let Some(fields) = schema.as_object_mut() {
                fields.insert("description".into(), Value::String(p.doc.to_owned()));
                if !p.required {
                    fields.insert("nullable".into(), Value::Bool(true));
                }
            }
            (p.name.to_owned(), schema)
        })
        .collect();
    let required: Vec<&str> = params
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name)
        .collect();
    let mut object =
        json!({"type": "object", "properties": properties, "additionalProperties": false});
    if !required.is_empty() {
        object["required"] = json!(required);
    }
    object
}

fn components() -> Value {
    json!({
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "stable, snake_case"},
                    "message": {"type": "string", "description": "for people; names the field at fault"},
                },
            }},
        },
        "Task": task_schema(true),
        "QueueCounts": {
            "type": "object",
            "required": ["name", "ready", "scheduled", "running", "failed"],
            "properties": {
                "name": {"type": "string"},
                "ready": {"type": "integer", "minimum": 0},
                "scheduled": {"type": "integer", "minimum": 0},
                "running": {"type": "integer", "minimum": 0},
                "failed": {"type": "integer", "minimum": 0},
                "blocked": {"type": "integer", "minimum": 0, "description": "waiting for their dependencies"},
            },
        },
        "Worker": {
            "type": "object",
            "required": ["workerId", "name", "queues", "state", "running", "registeredAt", "lastSeen"],
            "properties": {
                "workerId": {"type": "string", "format": "uuid"},
                "name": {"type": "string"},
                "queues": {"type": "array", "items": {"type": "string"}},
                "weights": {"type": "array", "items": {"type": "integer", "minimum": 1}, "description": "each queue's weight, in `queues`' order, when weighted"},
                "state": {"type": "string", "enum": ["IDLE", "PROCESSING", "STALE"]},
                "running": {"type": "array", "items": {"type": "string", "format": "uuid"}},
                "registeredAt": {"type": "number"},
                "lastSeen": {"type": "number"},
                "owner": {"type": "string", "description": "the key that registered it, when auth is on"},
            },
        },
        "TaskReport": task_schema(false),
        "CopyRef": {
            "type": "object",
            "required": ["queue", "taskId"],
            "properties": {
                "queue": {"type": "string"},
                "taskId": {"type": "string", "format": "uuid"},
                "workerQueue": {"type": "string", "format": "uuid"},
                "existing": {"type": "boolean"},
                "replaced": {"type": "string", "format": "uuid"},
            },
        },
        "Published": {
            "type": "object",
            "required": ["taskId", "queues", "copies"],
            "properties": {
                "taskId": {"type": "string", "format": "uuid", "description": "the publish's id; every copy carries it as publishId"},
                "queues": {"type": "array", "items": {"type": "string"}},
                "copies": {"type": "array", "items": {"$ref": "#/components/schemas/CopyRef"}},
            },
        },
    })
}

/// A task copy, as claims and status show it (`with_data`), or as the
/// answer to its worker's report.
fn task_schema(with_data: bool) -> Value {
    let mut required = vec![
        "taskId",
        "publishId",
        "queue",
        "publisher",
        "priority",
        "scope",
        "singularlyEnqueue",
        "singularlyRun",
        "state",
        "attempt",
        "maxAttempts",
        "ttr",
        "createdAt",
        "runAt",
    ];
    if with_data {
        required.push("data");
    }
    let uuid = json!({"type": "string", "format": "uuid"});
    let time = json!({"type": "number", "minimum": 0, "description": "unix seconds"});
    let mut properties = json!({
        "taskId": uuid, "publishId": uuid, "workerQueue": uuid, "workerId": uuid,
        "queue": {"type": "string"},
        "publisher": {"type": "string"},
        "priority": {"type": "integer", "minimum": -100, "maximum": 100},
        "scope": {"type": "string", "enum": ["any", "all"]},
        "singularlyEnqueue": {"type": "boolean"},
        "replaceWaiting": {"type": "boolean"},
        "singularlyRun": {"type": "boolean"},
        "state": {"type": "string", "enum": ["scheduled", "ready", "running", "completed", "failed", "cancelled", "expired", "blocked"]},
        "attempt": {"type": "integer", "minimum": 0},
        "maxAttempts": {"type": "integer", "minimum": 1},
        "ttr": {"type": "integer", "minimum": 1},
        "createdAt": time, "runAt": time, "expireAt": time, "leaseUntil": time,
        "startedAt": time, "finishedAt": time,
        "failReason": {"type": "string"},
        "progress": {},
        "output": {},
        "key": {"type": "string"},
        "cancelled": {"type": "boolean"},
        "history": {"type": "array", "items": {"type": "object", "required": ["at", "event"], "properties": {
            "at": time, "event": {"type": "string"}, "workerId": uuid, "detail": {"type": "string"},
        }}},
        "fingerprint": {"type": "string"},
        "archived": {"type": "boolean", "description": "read from the queue's archive (embedded store): finished, and out of memory"},
        "routedBy": {},
    });
    // Apart: one literal this long passes json!'s recursion limit.
    let workflow = json!({
        "group": {"type": "string"},
        "heldBy": {"type": "string"},
        "parent": {"type": "string", "format": "uuid", "description": "the copy whose output this task is"},
        "depth": {"type": "integer", "minimum": 1, "description": "outputs between it and a client's publish"},
        "publishOutput": {"type": "boolean"},
        "batch": {"type": "string"},
        "dependsOn": {"type": "array", "items": {}, "description": "the copies it waits for"},
        "runIfDependencyFailed": {"type": "boolean"},
        "dependants": {"type": "array", "description": "the kept copies that wait for it", "items": {"type": "object", "required": ["taskId", "queue", "state"], "properties": {
            "taskId": uuid, "queue": {"type": "string"}, "state": {"type": "string"},
        }}},
        "children": {"type": "array", "description": "the copies its output became", "items": {"type": "object", "required": ["taskId", "queue", "state"], "properties": {
            "taskId": uuid, "queue": {"type": "string"}, "state": {"type": "string"},
        }}},
    });
    if let (Some(all), Value::Object(more)) = (properties.as_object_mut(), workflow) {
        all.extend(more);
    }
    if with_data {
        properties["data"] = json!({"type": "object"});
    }
    json!({"type": "object", "required": required, "properties": properties})
}

// ----- parameters ------------------------------------------------------------

pub fn object(_: &Settings) -> Value {
    json!({"type": "object"})
}

pub fn any(_: &Settings) -> Value {
    json!({})
}

pub fn boolean(_: &Settings) -> Value {
    json!({"type": "boolean"})
}

/// A parameter whose presence asks for something (`?queues`).
pub fn flag(_: &Settings) -> Value {
    json!({"type": "boolean"})
}

pub fn uuid(_: &Settings) -> Value {
    json!({"type": "string", "format": "uuid"})
}

pub fn text(s: &Settings) -> Value {
    json!({"type": "string", "maxLength": s.limits.max_text_bytes, "pattern": "^[\\x20-\\x7e]*$"})
}

pub fn queue(_: &Settings) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": MAX_QUEUE_NAME_LEN, "pattern": "^[A-Za-z0-9_.:-]+$"})
}

pub fn key(_: &Settings) -> Value {
    key_schema()
}

fn key_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[\\x20-\\x7e]+$"})
}

pub fn unix_time(_: &Settings) -> Value {
    json!({"type": "number", "minimum": 0, "maximum": 9_999_999_999u64, "description": "unix seconds"})
}

pub fn scope(_: &Settings) -> Value {
    json!({"type": "string", "enum": ["any", "all"]})
}

pub fn singular_enqueue(_: &Settings) -> Value {
    json!({"oneOf": [{"type": "boolean"}, {"type": "string", "enum": ["replace"]}]})
}

pub fn priority(_: &Settings) -> Value {
    json!({"oneOf": [
        {"type": "integer", "minimum": -100, "maximum": 100},
        {"type": "string", "enum": ["urgent", "high", "normal", "low", "bulk"]},
    ]})
}

pub fn max_attempts(_: &Settings) -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": 1000})
}

pub fn ttr(s: &Settings) -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": s.tasks.max_ttr_secs})
}

pub fn ttl(_: &Settings) -> Value {
    json!({"type": "number", "exclusiveMinimum": true, "minimum": 0, "maximum": 1_000_000_000})
}

pub fn claim_count(s: &Settings) -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": s.limits.max_claim_count})
}

pub fn wait(s: &Settings) -> Value {
    json!({"type": "number", "minimum": 0, "maximum": s.limits.max_wait_secs})
}

pub fn report_state(_: &Settings) -> Value {
    json!({"type": "string", "enum": ["complete", "fail", "progress"]})
}

pub fn progress(s: &Settings) -> Value {
    json!({"oneOf": [
        {"type": "number", "minimum": 0, "maximum": 100},
        {"type": "object", "maxProperties": 16, "description": format!("at most {} bytes of JSON", s.limits.max_text_bytes)},
    ]})
}

pub fn max_running(_: &Settings) -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": 1_000_000, "nullable": true})
}

pub fn rate_limit(_: &Settings) -> Value {
    json!({"type": "number", "exclusiveMinimum": true, "minimum": 0, "maximum": 1_000_000, "nullable": true})
}

pub fn cron(_: &Settings) -> Value {
    json!({"type": "string", "minLength": 9, "maxLength": 256, "example": "*/5 * * * *"})
}

pub fn timezone(_: &Settings) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 64, "example": "Europe/Paris"})
}

pub fn every(_: &Settings) -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": 10 * 365 * 86_400})
}

pub fn worker_queues(_: &Settings) -> Value {
    json!({"type": "array", "minItems": 1, "maxItems": 100, "uniqueItems": true, "items": queue(&Settings::default())})
}

pub fn worker_name(_: &Settings) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[\\x20-\\x7e]+$"})
}

pub fn interests(s: &Settings) -> Value {
    // A pattern is described in words rather than as a tree of nested
    // alternatives: the fuzzer's schema walk falls over on one that deep.
    let fields = json!({
        "type": "object",
        "minProperties": 1,
        "maxProperties": s.limits.max_interest_fields,
        "description": "field path (keys joined by `.`, `\\.` for a dot in a key) to what must hold there: a regular expression (a string), one operator ({\"prefix\": s}, {\"suffix\": s}, {\"equalsIgnoreCase\": s}, {\"anythingBut\": [values]}, {\"numeric\": [op, n] or [op, n, op, n], \"strings\"?: bool}, {\"exists\": bool}, {\"cidr\": \"10.0.0.0/8\"}), or a list of 1 to 64 of them, any of which may match",
        "additionalProperties": {"example": "^user\\."},
        "propertyNames": {"minLength": 1, "maxLength": 256, "pattern": "^[A-Za-z0-9_]+(\\.[A-Za-z0-9_]+)*$"},
    });
    json!({"oneOf": [
        {"type": "string", "enum": ["*", "unrouted"], "description": "`*`: every task; `unrouted`: every task no other queue's interests take"},
        fields.clone(),
        {"type": "array", "minItems": 1, "maxItems": s.limits.max_interest_fields, "items": fields, "description": "rules, any of which may match; each an object of fields that must all match"},
    ]})
}

pub fn advance(_: &Settings) -> Value {
    json!({"type": "number", "minimum": 0, "maximum": 1e9})
}

pub fn offset(_: &Settings) -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": u32::MAX})
}

pub fn list_state(_: &Settings) -> Value {
    json!({"type": "string", "enum": super::tasks::STATES})
}

pub fn retry_body(s: &Settings) -> Value {
    exactly_one(
        endpoint("POST", "/retry"),
        s,
        &[],
        &[&["taskId"], &["queue"], &["all"]],
    )
}

pub fn retry_answer(_: &Settings) -> Value {
    json!({"type": "object", "required": ["retried"], "properties": {
        "retried": {"type": "array", "items": {"type": "string", "format": "uuid"}},
    }})
}

pub fn bulk_action(_: &Settings) -> Value {
    json!({"type": "string", "enum": crate::model::BulkAction::NAMES})
}

pub fn task_ids(_: &Settings) -> Value {
    json!({"type": "array", "minItems": 1, "maxItems": super::tasks::MAX_SELECTED,
        "items": {"type": "string", "format": "uuid"}})
}

pub fn act_body(s: &Settings) -> Value {
    let with = |first: &'static str| -> Vec<&'static str> {
        [first, "state"]
            .into_iter()
            .chain(super::tasks::FILTERS)
            .collect()
    };
    let (mut queue, all) = (with("queue"), with("all"));
    queue.push("archived");
    exactly_one(
        endpoint("POST", "/tasks"),
        s,
        &["action", "to"],
        &[&["taskIds"], &queue, &all],
    )
}

pub fn act_answer(_: &Settings) -> Value {
    json!({"type": "object", "required": ["action", "done", "requested", "skipped"], "properties": {
        "action": {"type": "string", "enum": crate::model::BulkAction::NAMES},
        "done": {"type": "integer", "description": "copies retried, cancelled, made ready, moved or removed"},
        "requested": {"type": "integer", "description": "running copies asked to stop (cancel)"},
        "skipped": {"type": "integer", "description": "copies the action does not take (unknown, or in another state)"},
    }})
}

pub fn task_list_answer(_: &Settings) -> Value {
    json!({"type": "array", "items": {"$ref": "#/components/schemas/Task"}})
}

pub fn page_limit(_: &Settings) -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": 1000})
}

/// A schedule's task: the parameters of `PUT /task`, when it does not run
/// at a time of its own.
pub fn scheduled_task(s: &Settings) -> Value {
    let mut task = publish_object(s);
    if let Some(props) = task["properties"].as_object_mut() {
        props.remove("runAt");
        props.remove("expireAt");
    }
    task
}

fn publish_object(s: &Settings) -> Value {
    let e = endpoints()
        .iter()
        .find(|e| e.method == "PUT" && e.path == "/task")
        .expect("PUT /task is in the table");
    object_of(e.params, s)
}

// ----- bodies whose parameters combine only some ways -----------------------

/// An object of `base` plus exactly one of `choices` (each a parameter name).
fn exactly_one(e: &Endpoint, s: &Settings, base: &[&str], choices: &[&[&str]]) -> Value {
    let pick = |names: &[&str]| -> Vec<Param> {
        e.params
            .iter()
            .filter(|p| names.contains(&p.name))
            .copied()
            .collect()
    };
    let variants: Vec<Value> = choices
        .iter()
        .map(|choice| {
            let mut names: Vec<&str> = base.to_vec();
            names.extend_from_slice(choice);
            let mut object = object_of(&pick(&names), s);
            let mut required: Vec<&str> = base
                .iter()
                .copied()
                .filter(|n| e.params.iter().any(|p| p.name == *n && p.required))
                .collect();
            required.push(choice[0]);
            object["required"] = json!(required);
            object
        })
        .collect();
    json!({"oneOf": variants})
}

fn endpoint(method: &str, path: &str) -> &'static Endpoint {
    endpoints()
        .iter()
        .find(|e| e.method == method && e.path == path)
        .expect("an endpoint of the table")
}

/// `POST /task`: what goes with each `state`.
pub fn report_body(s: &Settings) -> Value {
    let e = endpoint("POST", "/task");
    let with = |state: &str, extra: &[&str]| {
        let mut names = vec!["workerId", "taskId", "state"];
        names.extend_from_slice(extra);
        let params: Vec<Param> = e
            .params
            .iter()
            .filter(|p| names.contains(&p.name))
            .copied()
            .collect();
        let mut object = object_of(&params, s);
        object["properties"]["state"] = json!({"type": "string", "enum": [state]});
        object
    };
    json!({"oneOf": [
        with("complete", &["reEnqueue", "output"]),
        with("fail", &["reEnqueue", "failReason"]),
        with("progress", &["progress"]),
    ]})
}

/// `DELETE /task`: exactly one of its parameters.
pub fn stop_body(s: &Settings) -> Value {
    exactly_one(
        endpoint("DELETE", "/task"),
        s,
        &[],
        &[&["taskId"], &["key"], &["workerId"], &["queue"]],
    )
}

/// `DELETE /worker`: one worker, or every worker of a queue.
pub fn worker_delete_body(s: &Settings) -> Value {
    exactly_one(
        endpoint("DELETE", "/worker"),
        s,
        &[],
        &[&["workerId"], &["queue"]],
    )
}

/// `PUT /schedule`: a name, a task, and exactly one of cron (with its
/// time zone), every and at.
pub fn schedule_body(s: &Settings) -> Value {
    let mut body = exactly_one(
        endpoint("PUT", "/schedule"),
        s,
        &["name", "task", "paused"],
        &[&["cron", "timezone"], &["every"], &["at"]],
    );
    // Each spec's variant needs its task; pausing or resuming needs neither.
    let variants = body["oneOf"].as_array_mut().expect("variants");
    for v in variants.iter_mut() {
        v["required"]
            .as_array_mut()
            .expect("required")
            .push(json!("task"));
    }
    let mut pause = object_of(
        &endpoint("PUT", "/schedule")
            .params
            .iter()
            .filter(|p| p.name == "name" || p.name == "paused")
            .copied()
            .collect::<Vec<_>>(),
        s,
    );
    pause["required"] = json!(["name", "paused"]);
    variants.push(pause);
    body
}

// ----- answers ---------------------------------------------------------------

pub fn published_answer(_: &Settings) -> Value {
    json!({"oneOf": [
        {"$ref": "#/components/schemas/Published"},
        {"type": "array", "items": {"$ref": "#/components/schemas/Published"}},
    ]})
}

pub fn claim_answer(_: &Settings) -> Value {
    json!({"oneOf": [
        {"$ref": "#/components/schemas/Task"},
        {"type": "array", "items": {"$ref": "#/components/schemas/Task"}},
    ], "nullable": true, "description": "the task, or null when there is none; with count, an array"})
}

pub fn log_text(s: &Settings) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": s.limits.max_log_append_bytes})
}

pub fn log_offset(_: &Settings) -> Value {
    json!({"type": "integer", "minimum": 0})
}

pub fn log_appended_answer(_: &Settings) -> Value {
    json!({"type": "object", "required": ["taskId", "total"], "properties": {
        "taskId": {"type": "string", "format": "uuid"},
        "total": {"type": "integer", "minimum": 0, "description": "bytes ever written to the log"},
    }})
}

pub fn task_log_answer(_: &Settings) -> Value {
    json!({"type": "object", "required": ["taskId", "queue", "state", "start", "offset", "next", "total", "text"], "properties": {
        "taskId": {"type": "string", "format": "uuid"},
        "queue": {"type": "string"},
        "state": {"type": "string", "enum": ["scheduled", "ready", "running", "completed", "failed", "cancelled", "expired", "blocked"]},
        "start": {"type": "integer", "minimum": 0, "description": "offset of the first byte still kept"},
        "offset": {"type": "integer", "minimum": 0, "description": "where `text` begins"},
        "next": {"type": "integer", "minimum": 0, "description": "where `text` ends: the offset to read on from"},
        "total": {"type": "integer", "minimum": 0, "description": "bytes ever written"},
        "text": {"type": "string"},
    }, "description": "with `follow`, a text/event-stream instead: `log` events ({offset, start, text}, id: the next offset) and one `end` event ({state, total})"})
}

pub fn report_answer(_: &Settings) -> Value {
    json!({"oneOf": [
        {"$ref": "#/components/schemas/TaskReport"},
        {"type": "array", "items": {"type": "object", "properties": {
            "task": {"$ref": "#/components/schemas/TaskReport"},
            "error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
        }}},
    ]})
}

pub fn stop_answer(_: &Settings) -> Value {
    let ids = json!({"type": "array", "items": {"type": "string", "format": "uuid"}});
    json!({"oneOf": [
        {"type": "object", "required": ["cancelled", "cancelRequested", "untouched"], "properties": {"cancelled": ids, "cancelRequested": ids, "untouched": ids}},
        {"type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "integer", "minimum": 0}}},
    ]})
}

pub fn registered_answer(_: &Settings) -> Value {
    json!({"type": "object", "required": ["workerId", "name", "queues"], "properties": {
        "workerId": {"type": "string", "format": "uuid"},
        "name": {"type": "string"},
        "queues": {"type": "array", "items": {"type": "string"}},
        "weights": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
    }})
}

pub fn worker_weights(_: &Settings) -> Value {
    json!({"type": "object", "description": "queue -> weight", "additionalProperties": {"type": "integer", "minimum": 1, "maximum": 1000}})
}

pub fn deleted_workers_answer(_: &Settings) -> Value {
    json!({"type": "object", "required": ["deleted"], "properties": {
        "deleted": {"type": "array", "items": {"type": "string", "format": "uuid"}},
    }})
}

pub fn replay_secs(s: &Settings) -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": s.tasks.replay_keep_secs.max(1)})
}

pub fn interest_answer(_: &Settings) -> Value {
    let one = json!({"type": "object", "required": ["queue", "interests"], "properties": {"queue": {"type": "string"}, "interests": {}, "replayed": {"type": "integer"}}});
    json!({"oneOf": [one, {"type": "array", "items": one}]})
}

pub fn try_task_answer(_: &Settings) -> Value {
    json!({"type": "object", "required": ["queues"], "properties": {"queues": {"type": "array", "items": {
    "type": "object", "required": ["queue", "fields", "unrouted"], "properties": {
        "queue": {"type": "string"},
        "fields": {"type": "array", "items": {"type": "object", "required": ["field", "pattern", "value"], "properties": {
            "field": {"type": "string"}, "pattern": {"type": "string"}, "value": {"type": "string"},
        }}},
        "unrouted": {"type": "boolean", "description": "reached because no other queue's interests want it"},
    }}}}})
}

pub fn interest_deleted_answer(_: &Settings) -> Value {
    json!({"type": "object", "required": ["queue"], "properties": {"queue": {"type": "string"}, "deleted": {"type": "boolean"}, "deletedTasks": {"type": "integer", "minimum": 0}}})
}

/// A queue's settings, as `PUT /queue` and `GET /status?queue=` answer them.
fn settings_schema() -> Value {
    let limits = json!({
        "maxRunning": {"type": "integer", "minimum": 1},
        "rateLimit": {"type": "number", "exclusiveMinimum": true, "minimum": 0},
    });
    let mut group = limits.clone();
    group["weight"] = json!({"type": "integer", "minimum": 1, "maximum": 1000});
    let mut all = limits;
    for (k, v) in [
        ("paused", json!({"type": "boolean"})),
        ("groupMaxRunning", json!({"type": "integer", "minimum": 1})),
        (
            "groupRateLimit",
            json!({"type": "number", "exclusiveMinimum": true, "minimum": 0}),
        ),
        ("strictPriority", json!({"type": "boolean"})),
        ("publishOutput", json!({"type": "boolean"})),
        (
            "searchFields",
            json!({"type": "array", "maxItems": crate::model::MAX_SEARCH_FIELDS, "items": {"type": "string"}, "description": "dotted fields of data that copies published from now on keep in memory, so that a search on them reads no payloads"}),
        ),
        (
            "groups",
            json!({"type": "object", "description": "single groups' own limits and weights", "additionalProperties": {"type": "object", "properties": group}}),
        ),
    ] {
        all[k] = v;
    }
    json!({"type": "object", "properties": all})
}

pub fn queue_settings_answer(_: &Settings) -> Value {
    json!({"type": "object", "required": ["queue", "settings"], "properties": {
        "queue": {"type": "string"},
        "settings": settings_schema(),
    }})
}

pub fn group_max_running(_: &Settings) -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": 1_000_000, "nullable": true})
}

pub fn group_rate_limit(_: &Settings) -> Value {
    json!({"type": "number", "exclusiveMinimum": true, "minimum": 0, "maximum": 1e6, "nullable": true})
}

pub fn group_overrides(_: &Settings) -> Value {
    json!({"type": "object", "description": "group name -> its own settings, or null to remove them", "additionalProperties": {
        "type": "object", "nullable": true, "properties": {
            "maxRunning": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
            "rateLimit": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "maximum": 1e6},
            "weight": {"type": "integer", "minimum": 1, "maximum": 1000},
        },
    }})
}

pub fn group(_: &Settings) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": crate::model::MAX_GROUP_BYTES})
}

pub fn queue_deleted_answer(s: &Settings) -> Value {
    interest_deleted_answer(s)
}

pub fn schedule_answer(_: &Settings) -> Value {
    json!({"type": "object", "required": ["name", "spec", "task"], "properties": {
        "name": {"type": "string"},
        "spec": {"type": "object"},
        "nextRun": {"type": "number", "nullable": true},
        "lastRun": {"type": "number", "nullable": true},
        "paused": {"type": "boolean"},
        "task": {"type": "object"},
    }})
}

pub fn schedule_deleted_answer(_: &Settings) -> Value {
    json!({"type": "object", "required": ["name", "deleted"], "properties": {"name": {"type": "string"}, "deleted": {"type": "boolean"}}})
}

pub fn status_answer(_: &Settings) -> Value {
    let count = json!({"type": "integer", "minimum": 0});
    let tasks = json!({"type": "array", "items": {"$ref": "#/components/schemas/Task"}});
    json!({
        "type": "object",
        "description": "one key per parameter asked; with none, queues, workers (a count) and counters",
        "properties": {
            "queue": {"$ref": "#/components/schemas/QueueCounts"},
            "settings": settings_schema(),
            "groups": {"type": "object", "required": ["queue", "total", "groups"], "properties": {
                "queue": {"type": "string"},
                "total": count,
                "groups": {"type": "array", "items": {"type": "object", "required": ["group", "ready", "running"], "properties": {
                    "group": {"type": "string"},
                    "ready": count,
                    "running": count,
                    "held": {"type": "string", "enum": ["maxRunning", "rateLimit"]},
                    "heldUntil": {"type": "number"},
                }}},
            }},
            "queues": {"type": "array", "items": {"$ref": "#/components/schemas/QueueCounts"}},
            "workerQueue": {"type": "object", "description": "copies waiting in each worker's own queue", "additionalProperties": count},
            "interests": {"type": "object", "description": "each queue's interests", "additionalProperties": {}},
            "workers": {"oneOf": [
                {"type": "array", "items": {"$ref": "#/components/schemas/Worker"}},
                {"type": "integer", "minimum": 0, "description": "with no parameter: how many"},
            ]},
            "failedQueue": tasks,
            "failedReasons": {"type": "array", "items": {"type": "object", "required": ["reason", "count"], "properties": {
                "reason": {"type": "string", "description": "the first line of a failure reason (empty: none given)"},
                "count": count,
            }}},
            "task": {"oneOf": [
                {"$ref": "#/components/schemas/Task"},
                {"type": "object", "required": ["publishId", "copies"], "description": "a publish's id: every copy it made", "properties": {
                    "publishId": {"type": "string", "format": "uuid"},
                    "copies": tasks,
                }},
            ]},
            "key": tasks,
            "schedules": {"type": "array", "items": {"type": "object", "required": ["name", "spec", "task"], "properties": {
                "name": {"type": "string"},
                "spec": {"type": "object"},
                "nextRun": {"type": "number", "nullable": true},
                "lastRun": {"type": "number", "nullable": true},
                "task": {"type": "object"},
            }}},
            "locks": {"type": "array", "items": {"type": "object", "required": ["kind", "queue", "taskId", "identity", "waiting"], "properties": {
                "kind": {"type": "string", "enum": ["enqueue", "run"]},
                "queue": {"type": "string"},
                "taskId": {"type": "string", "format": "uuid", "description": "the copy holding it"},
                "workerId": {"type": "string", "format": "uuid", "description": "a run lock's: the worker running the holder"},
                "identity": {"type": "string", "description": "what twins are compared by"},
                "key": {"type": "string", "description": "the holder's key"},
                "waiting": {"type": "integer", "description": "a run lock's twins waiting for it"},
            }}},
            "counters": {"type": "object", "required": ["published", "routed", "completed", "failed"], "additionalProperties": count},
            "store": {"type": "object", "required": ["commits", "writes"], "properties": {"commits": count, "writes": count}},
            "batch": batch_view(),
        },
    })
}

fn batch_view() -> Value {
    let count = json!({"type": "integer", "minimum": 0});
    let totals: serde_json::Map<String, Value> = crate::model::BatchTotals::default()
        .by_state()
        .iter()
        .map(|(k, _)| (k.to_string(), count.clone()))
        .collect();
    json!({"type": "object", "required": ["id", "createdAt", "totals", "copies", "ended"], "properties": {
        "id": {"type": "string"},
        "createdAt": {"type": "number", "minimum": 0},
        "totals": {"type": "object", "properties": totals},
        "copies": count,
        "ended": {"type": "boolean"},
        "openForMore": {"type": "boolean"},
        "onComplete": {"type": "object"},
        "endedAt": {"type": "number", "minimum": 0},
        "callback": {"type": "string", "format": "uuid", "description": "the publish the callback became"},
    }})
}

pub fn dependencies(_: &Settings) -> Value {
    json!({"type": "array", "minItems": 1, "maxItems": crate::model::MAX_DEPENDENCIES, "items": {"oneOf": [
        {"type": "string", "format": "uuid"},
        {"type": "object", "required": ["key"], "additionalProperties": false, "properties": {"key": key_schema()}},
    ]}})
}

pub fn dependency_failed(_: &Settings) -> Value {
    json!({"type": "string", "enum": ["cancel", "run"]})
}

pub fn batch_id(_: &Settings) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": crate::model::MAX_BATCH_ID_BYTES, "pattern": "^[\\x20-\\x7e]+$"})
}

pub fn batch_tasks(s: &Settings) -> Value {
    json!({"type": "array", "maxItems": s.limits.max_batch, "items": publish_object(s)})
}

pub fn batch_callback(s: &Settings) -> Value {
    let mut task = publish_object(s);
    if let Some(props) = task["properties"].as_object_mut() {
        props.remove("requireRoute");
        props.insert("scope".into(), json!({"type": "string", "enum": ["any"]}));
    }
    task
}

pub fn batch_answer(s: &Settings) -> Value {
    json!({"type": "object", "required": ["batch", "published"], "properties": {
        "batch": batch_id(s),
        "published": {"type": "array", "items": {"$ref": "#/components/schemas/Published"}},
    }})
}

pub fn metrics_answer(_: &Settings) -> Value {
    json!({"type": "string"})
}

pub fn health_answer(_: &Settings) -> Value {
    json!({"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}})
}

pub fn document_answer(_: &Settings) -> Value {
    json!({"type": "object"})
}

pub fn clock_answer(_: &Settings) -> Value {
    json!({"type": "object", "required": ["now"], "properties": {"now": {"type": "number"}}})
}
