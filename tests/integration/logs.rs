//! `/task/log`: appends by the worker holding a task, reads, following as
//! server-sent events, bounds, bad input, keys, restarts.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_in, spawn_app_with, Api, ChildServer};

/// A running copy on `queue`, claimed by a new worker: (worker, task).
async fn running(api: &Api, queue: &str) -> (String, Value) {
    api.put_interest(queue, json!("*")).await.ok();
    let worker = api.register(&[queue]).await;
    api.publish_data(json!({"for": queue})).await;
    let task = api.claim(&worker).await;
    assert_eq!(task["state"], "running", "{task}");
    (worker, task)
}

async fn append(api: &Api, worker: &str, task: &Value, text: &str) -> crate::helpers::Answer {
    api.send(
        Method::POST,
        "/task/log",
        Some(json!({"workerId": worker, "taskId": task["taskId"], "text": text})),
    )
    .await
}

async fn read(api: &Api, task: &Value, query: &str) -> crate::helpers::Answer {
    let id = task["taskId"].as_str().unwrap();
    api.send(Method::GET, &format!("/task/log?taskId={id}{query}"), None)
        .await
}

#[tokio::test]
async fn a_workers_appends_are_read_back_whole_and_from_an_offset() {
    let app = spawn_app_with(|s| s.tasks.log_every_ms = 0).await;
    let (worker, task) = running(&app, "build").await;
    let first = append(&app, &worker, &task, "compiling…\n").await.ok();
    assert_eq!(first["total"], "compiling…\n".len());
    append(&app, &worker, &task, "done\n").await.ok();
    let log = read(&app, &task, "").await.ok();
    assert_eq!(log["text"], "compiling…\ndone\n");
    assert_eq!(log["state"], "running");
    assert_eq!(log["queue"], "build");
    assert_eq!(
        (log["start"].as_u64(), log["offset"].as_u64()),
        (Some(0), Some(0))
    );
    let total = log["total"].as_u64().unwrap();
    assert_eq!(log["next"].as_u64(), Some(total));
    // From the middle of `…` (3 bytes at 9): the read begins after it.
    let cut = read(&app, &task, "&offset=10").await.ok();
    assert_eq!(cut["offset"], 12);
    assert_eq!(cut["text"], "\ndone\n");
    let nothing = read(&app, &task, &format!("&offset={total}")).await.ok();
    assert_eq!(
        (nothing["text"].as_str(), nothing["next"].as_u64()),
        (Some(""), Some(total))
    );
    // The log stays with the copy once it ended; appends do not.
    app.update(&worker, &task, "complete", json!({})).await.ok();
    append(&app, &worker, &task, "late")
        .await
        .error(409, "task_not_running", Some("taskId"));
    let kept = read(&app, &task, "").await.ok();
    assert_eq!(
        (kept["state"].as_str(), kept["text"].as_str()),
        (Some("completed"), Some("compiling…\ndone\n"))
    );
    // `interq task`'s source: the status of a copy, and its log.
    let status = app
        .status(&format!("task={}", task["taskId"].as_str().unwrap()))
        .await;
    assert_eq!(status["task"]["state"], "completed");
}

#[tokio::test]
async fn appends_are_refused_from_others_too_often_and_when_malformed() {
    let app = spawn_app_with(|s| {
        s.tasks.log_every_ms = 1000;
        s.limits.max_log_append_bytes = 100;
    })
    .await;
    let (worker, task) = running(&app, "a").await;
    let other = app.register(&["a"]).await;
    append(&app, &other, &task, "x")
        .await
        .error(409, "not_lease_holder", Some("workerId"));
    let unknown = json!({"taskId": "0190a3c8-0000-7000-8000-000000000000"});
    append(&app, &worker, &unknown, "x")
        .await
        .error(404, "unknown_task", Some("taskId"));
    append(&app, &worker, &task, "")
        .await
        .error(400, "invalid_field", Some("text"));
    append(&app, &worker, &task, &"y".repeat(101))
        .await
        .error(400, "invalid_field", Some("text"));
    for (body, code, field) in [
        (
            json!({"workerId": worker, "taskId": task["taskId"]}),
            "missing_field",
            "text",
        ),
        (
            json!({"workerId": worker, "taskId": task["taskId"], "text": 5}),
            "invalid_field",
            "text",
        ),
        (
            json!({"workerId": worker, "text": "x"}),
            "missing_field",
            "taskId",
        ),
        (
            json!({"taskId": task["taskId"], "text": "x"}),
            "missing_field",
            "workerId",
        ),
        (
            json!({"workerId": worker, "taskId": task["taskId"], "text": "x", "colour": 1}),
            "unknown_field",
            "colour",
        ),
    ] {
        app.send(Method::POST, "/task/log", Some(body))
            .await
            .error(400, code, Some(field));
    }
    // Nothing of the refused reached the log.
    assert_eq!(read(&app, &task, "").await.ok()["total"], 0);
    append(&app, &worker, &task, "one").await.ok();
    let soon = append(&app, &worker, &task, "two")
        .await
        .error(429, "too_soon", Some("taskId"));
    assert!(soon.contains("1000 ms"), "{soon}");
    app.advance(1.0).await;
    append(&app, &worker, &task, "two").await.ok();
    assert_eq!(read(&app, &task, "").await.ok()["text"], "onetwo");
    // Reads: bad offsets and unknown copies.
    read(&app, &task, "&offset=-1")
        .await
        .error(400, "invalid_field", Some("offset"));
    read(&app, &unknown, "")
        .await
        .error(404, "unknown_task", Some("taskId"));
    app.send(Method::GET, "/task/log", None)
        .await
        .error(400, "missing_field", Some("taskId"));
}

#[tokio::test]
async fn a_long_log_keeps_its_last_bytes_and_none_when_logs_are_off() {
    let app = spawn_app_with(|s| {
        s.tasks.log_every_ms = 0;
        s.tasks.log_kept_bytes = 40_000;
    })
    .await;
    let (worker, task) = running(&app, "a").await;
    let mut written = String::new();
    for i in 0..40 {
        let line = format!("{i:04} {}\n", "z".repeat(3000));
        written.push_str(&line);
        append(&app, &worker, &task, &line).await.ok();
    }
    let log = read(&app, &task, "").await.ok();
    let start = log["start"].as_u64().unwrap() as usize;
    assert!(start > 0, "the front was trimmed");
    // Whole 16 KiB pages, covering at least what is asked to be kept.
    assert_eq!(start % 16_384, 0);
    assert!(written.len() - start >= 40_000);
    assert_eq!(log["text"].as_str().unwrap(), &written[start..]);
    assert_eq!(log["total"], written.len());

    let off = spawn_app_with(|s| s.tasks.log_kept_bytes = 0).await;
    let (worker, task) = running(&off, "a").await;
    append(&off, &worker, &task, "x")
        .await
        .error(409, "logs_off", Some("text"));
}

/// Reads a server-sent event stream until it ends or `until` events came.
async fn events(resp: reqwest::Response, until: usize) -> Vec<(String, Value, Option<String>)> {
    let mut resp = resp;
    let mut buffer = String::new();
    let mut out = Vec::new();
    while out.len() < until {
        let Ok(Some(chunk)) = resp.chunk().await else {
            break;
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut name, mut data, mut id) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(v).expect("event data is JSON"));
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                }
            }
            if let (Some(name), Some(data)) = (name, data) {
                out.push((name, data, id));
            }
        }
    }
    out
}

#[tokio::test]
async fn following_streams_each_append_then_the_end() {
    let app = spawn_app_with(|s| s.tasks.log_every_ms = 0).await;
    let (worker, task) = running(&app, "a").await;
    append(&app, &worker, &task, "before\n").await.ok();
    let id = task["taskId"].as_str().unwrap().to_owned();
    let url = format!("{}/task/log?taskId={id}&follow=true", app.base);
    let resp = app.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let reading = tokio::spawn(events(resp, 2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&app, &worker, &task, "during\n").await.ok();
    let got = tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .expect("each append is streamed")
        .unwrap();
    let names: Vec<&str> = got.iter().map(|(n, ..)| n.as_str()).collect();
    assert_eq!(names, ["log", "log"], "{got:?}");
    assert_eq!(got[0].1["text"], "before\n");
    assert_eq!(got[1].1["text"], "during\n");
    assert_eq!(got[1].2.as_deref(), Some("14"), "the id is the next offset");

    // A failed attempt that will be retried is no end: the copy waits to run
    // again (maxAttempts is 5 by default), and the stream stays open.
    let open = tokio::spawn(events(app.client.get(&url).send().await.unwrap(), 10));
    app.update(&worker, &task, "fail", json!({"failReason": "no"}))
        .await
        .ok();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!open.is_finished(), "the stream waits for the next attempt");
    open.abort();

    // Resuming from the last id: only what came after; the end once the
    // copy ends for good.
    let again = app.register(&["a"]).await;
    app.advance(3600.0).await;
    let retry = app.claim(&again).await;
    assert_eq!(retry["taskId"], task["taskId"]);
    append(&app, &again, &retry, "attempt 2\n").await.ok();
    let resp = app
        .client
        .get(format!("{}/task/log?taskId={id}&follow=1", app.base))
        .header("Last-Event-ID", "14")
        .send()
        .await
        .unwrap();
    let reading = tokio::spawn(events(resp, 10));
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.update(&again, &retry, "complete", json!({})).await.ok();
    let got = tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .expect("the stream ends")
        .unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0].0.as_str(), got[0].1["text"].as_str()),
        ("log", Some("attempt 2\n"))
    );
    assert_eq!(got[1].0, "end");
    assert_eq!(got[1].1, json!({"state": "completed", "total": 24}));

    // Following an ended copy gives what is kept, then the end, at once.
    let resp = app.client.get(&url).send().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), events(resp, 10))
        .await
        .unwrap();
    let names: Vec<&str> = got.iter().map(|(n, ..)| n.as_str()).collect();
    assert_eq!(names, ["log", "end"]);
    // An unknown copy is a 404 before any stream.
    app.send(
        Method::GET,
        "/task/log?taskId=0190a3c8-0000-7000-8000-000000000000&follow=true",
        None,
    )
    .await
    .error(404, "unknown_task", Some("taskId"));
}

#[tokio::test]
async fn over_the_line_protocol_logs_are_appended_and_read_but_not_followed() {
    let app = spawn_app_with(|s| {
        s.tasks.log_every_ms = 0;
        s.line.listen = Some("127.0.0.1:0".into());
    })
    .await;
    let (worker, task) = running(&app, "a").await;
    let line = interq::client::Client::new(app.line.as_deref().unwrap()).unwrap();
    let id: interq::model::TaskId = task["taskId"].as_str().unwrap().parse().unwrap();
    let w: interq::model::WorkerId = worker.parse().unwrap();
    assert_eq!(line.append_log(w, id, "over the line\n").await.unwrap(), 14);
    let log = line.task_log(id, None).await.unwrap();
    assert_eq!(log["text"], "over the line\n");
    let err = line
        .call("taskLog", &json!({"taskId": id, "follow": true}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("invalid_field"));
    assert!(err.to_string().contains("`follow`"), "{err}");
}

#[tokio::test]
async fn keys_decide_who_appends_and_who_reads() {
    use interq::auth::new_key;
    let (admin, admin_hash) = new_key();
    let (worker_key, worker_hash) = new_key();
    let (publisher, publisher_hash) = new_key();
    let app = spawn_app_with(|s| {
        s.tasks.log_every_ms = 0;
        s.auth.admin = vec![admin_hash.to_string()];
        s.auth.worker = vec![worker_hash.to_string()];
        s.auth.publisher = vec![publisher_hash.to_string()];
    })
    .await;
    let call = |key: &str, method: Method, path: String, body: Option<Value>| {
        let mut req = app
            .client
            .request(method, format!("{}{path}", app.base))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
    };
    call(
        &admin,
        Method::PUT,
        "/interest".into(),
        Some(json!({"queue": "a", "interests": "*"})),
    )
    .await
    .unwrap();
    let reg: Value = call(
        &worker_key,
        Method::PUT,
        "/worker".into(),
        Some(json!({"queues": ["a"]})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let worker = reg["workerId"].as_str().unwrap().to_owned();
    call(
        &publisher,
        Method::PUT,
        "/task".into(),
        Some(json!({"data": {}})),
    )
    .await
    .unwrap();
    let task: Value = call(
        &worker_key,
        Method::GET,
        format!("/task?workerId={worker}"),
        None,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let body = json!({"workerId": worker, "taskId": task["taskId"], "text": "hi"});
    let by_publisher = call(
        &publisher,
        Method::POST,
        "/task/log".into(),
        Some(body.clone()),
    )
    .await
    .unwrap();
    assert_eq!(by_publisher.status(), 403);
    let by_worker = call(&worker_key, Method::POST, "/task/log".into(), Some(body))
        .await
        .unwrap();
    assert_eq!(by_worker.status(), 200);
    let path = format!("/task/log?taskId={}", task["taskId"].as_str().unwrap());
    for key in [&publisher, &worker_key] {
        let refused = call(key, Method::GET, path.clone(), None).await.unwrap();
        assert_eq!(refused.status(), 403);
    }
    let follow = call(&publisher, Method::GET, format!("{path}&follow=true"), None)
        .await
        .unwrap();
    assert_eq!(
        follow.status(),
        403,
        "following needs the same key as reading"
    );
    let read: Value = call(&admin, Method::GET, path, None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["text"], "hi");
}

#[tokio::test]
async fn a_log_outlives_a_restart_and_goes_with_its_copy() {
    // Without the archive, which would keep the copy and its log.
    let app = spawn_app_with(|s| {
        s.tasks.log_every_ms = 0;
        s.tasks.history = 1;
        s.tasks.archive_secs = 0;
    })
    .await;
    let (worker, first) = running(&app, "a").await;
    append(&app, &worker, &first, "first\n").await.ok();
    let dir = app.stop().await;
    let app = spawn_app_in(dir, |s| {
        s.tasks.log_every_ms = 0;
        s.tasks.history = 1;
        s.tasks.archive_secs = 0;
    })
    .await;
    assert_eq!(read(&app, &first, "").await.ok()["text"], "first\n");
    app.update(&worker, &first, "complete", json!({}))
        .await
        .ok();
    app.publish_data(json!({"n": 2})).await;
    let second = app.claim(&worker).await;
    append(&app, &worker, &second, "second\n").await.ok();
    app.update(&worker, &second, "complete", json!({}))
        .await
        .ok();
    // A history of one: the first copy went, its log with it.
    read(&app, &first, "")
        .await
        .error(404, "unknown_task", Some("taskId"));
    assert_eq!(read(&app, &second, "").await.ok()["text"], "second\n");
}

#[tokio::test]
async fn a_kill_9_keeps_every_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start_with_env(dir.path(), &[("INTERQ_TASKS__LOG_EVERY_MS", "0")]);
    let api = server.api();
    let (worker, task) = running(&api, "a").await;
    let mut written = String::new();
    for i in 0..50 {
        let line = format!("line {i}\n");
        append(&api, &worker, &task, &line).await.ok();
        written.push_str(&line);
    }
    server.kill_9();
    let server = ChildServer::start(dir.path());
    let api = server.api();
    let log = read(&api, &task, "").await.ok();
    assert_eq!(log["text"].as_str(), Some(written.as_str()));
    // Appends go on where the log ended.
    append(&api, &worker, &task, "after\n").await.ok();
    assert_eq!(
        read(&api, &task, "").await.ok()["total"],
        written.len() + "after\n".len()
    );
}
