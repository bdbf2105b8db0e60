//! Batches over HTTP: `PUT /batch`, its totals in `GET /status?batch=`, its
//! callback published once with the totals, a batch kept open for more,
//! bad input, and a kill -9 while batches end.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{completing_worker, spawn_app, Api, ChildServer, TestApp};

async fn put_batch(api: &Api, body: Value) -> Value {
    api.send(Method::PUT, "/batch", Some(body)).await.ok()
}

async fn batch(app: &TestApp, id: &str) -> Value {
    app.status(&format!("batch={id}")).await["batch"].clone()
}

#[tokio::test]
async fn a_batch_publishes_its_callback_once_with_its_totals() {
    let app = spawn_app().await;
    app.put_interest("work", json!({"job": ".*"})).await.ok();
    app.put_interest("reports", json!({"summary": ".*"}))
        .await
        .ok();
    let answer = put_batch(
        &app,
        json!({
            "batch": "nightly-1",
            "tasks": [
                {"data": {"job": "a"}},
                {"data": {"job": "b"}},
                {"data": {"job": "c"}, "maxAttempts": 1},
            ],
            "onComplete": {"data": {"summary": "nightly"}, "priority": "high"},
        }),
    )
    .await;
    assert_eq!(answer["batch"], "nightly-1");
    assert_eq!(answer["published"].as_array().unwrap().len(), 3);
    let b = batch(&app, "nightly-1").await;
    assert_eq!(b["totals"]["ready"], 3);
    assert_eq!(b["ended"], false);
    let w = app.register(&["work"]).await;
    let mut claimed = app.claim_n(&w, 3).await;
    assert!(claimed.iter().all(|t| t["batch"] == "nightly-1"));
    let last = claimed.pop().unwrap();
    for t in &claimed {
        let job = t["data"]["job"].as_str().unwrap();
        let state = if job == "c" { "fail" } else { "complete" };
        app.update(&w, t, state, json!({})).await.ok();
    }
    assert_eq!(
        app.queue("reports").await["ready"],
        0,
        "one copy still runs"
    );
    let job = last["data"]["job"].as_str().unwrap();
    let state = if job == "c" { "fail" } else { "complete" };
    app.update(&w, &last, state, json!({})).await.ok();
    // The report that ended the batch published its callback.
    let r = app.register(&["reports"]).await;
    let callback = app.claim(&r).await;
    assert_eq!(callback["data"]["summary"], "nightly");
    assert_eq!(callback["priority"], 10);
    let totals = &callback["data"]["batch"]["totals"];
    assert_eq!(
        (&totals["completed"], &totals["failed"]),
        (&json!(2), &json!(1)),
        "{callback}"
    );
    assert_eq!(callback["data"]["batch"]["id"], "nightly-1");
    assert_eq!(callback["data"]["batch"]["copies"], 3);
    let b = batch(&app, "nightly-1").await;
    assert_eq!(b["ended"], true);
    assert_eq!(b["callback"], callback["publishId"]);
    // Ticks go on; nothing more is published.
    app.advance(60.0).await;
    app.advance(60.0).await;
    assert!(app.claim(&r).await.is_null());
    assert_eq!(app.status("counters").await["counters"]["published"], 4);
}

#[tokio::test]
async fn a_batch_kept_open_for_more_ends_when_it_is_closed() {
    let app = spawn_app().await;
    app.put_interest("work", json!({"job": ".*"})).await.ok();
    app.put_interest("reports", json!({"summary": ".*"}))
        .await
        .ok();
    let first = put_batch(
        &app,
        json!({"tasks": [{"data": {"job": "1"}}], "more": true,
               "onComplete": {"data": {"summary": "import"}}}),
    )
    .await;
    let id = first["batch"].as_str().expect("a made id").to_owned();
    let w = app.register(&["work"]).await;
    let t = app.claim(&w).await;
    app.update(&w, &t, "complete", json!({})).await.ok();
    assert_eq!(batch(&app, &id).await["ended"], false, "more may come");
    put_batch(
        &app,
        json!({"batch": id, "tasks": [{"data": {"job": "2"}}], "more": true}),
    )
    .await;
    let t = app.claim(&w).await;
    app.update(&w, &t, "complete", json!({})).await.ok();
    // Closed with no more tasks: it ends, and the callback given first
    // stands.
    put_batch(&app, json!({"batch": id, "tasks": []})).await;
    let b = batch(&app, &id).await;
    assert_eq!(b["ended"], true);
    assert_eq!(b["totals"]["completed"], 2);
    let r = app.register(&["reports"]).await;
    assert_eq!(app.claim(&r).await["data"]["summary"], "import");
    // Closed: it takes no more, and nothing is stored.
    app.send(
        Method::PUT,
        "/batch",
        Some(json!({"batch": id, "tasks": [{"data": {"job": "3"}}]})),
    )
    .await
    .error(409, "batch_closed", Some("batch"));
    assert_eq!(app.queue("work").await["ready"], 0);
}

#[tokio::test]
async fn bad_batches_are_refused_naming_the_field_and_change_nothing() {
    let app = spawn_app().await;
    app.put_interest("work", json!("*")).await.ok();
    let long = "b".repeat(129);
    let cases = [
        (json!({"tasks": [{"data": {}}], "batch": ""}), "batch"),
        (json!({"tasks": [{"data": {}}], "batch": long}), "batch"),
        (
            json!({"tasks": [{"data": {}}], "batch": "a\u{1}b"}),
            "batch",
        ),
        (json!({"tasks": [{"data": {}}], "batch": 7}), "batch"),
        (json!({"batch": "x"}), "tasks"),
        (json!({"tasks": {"data": {}}}), "tasks"),
        (json!({"tasks": [{"data": {}}, 3]}), "tasks[1]"),
        (
            json!({"tasks": [{"data": {}}, {"nodata": 1}]}),
            "tasks[1].nodata",
        ),
        (json!({"tasks": [{"data": {}}, {}]}), "tasks[1].data"),
        (json!({"tasks": [{"data": {}}], "more": "yes"}), "more"),
        (json!({"tasks": [], "onComplete": 1}), "onComplete"),
        (
            json!({"tasks": [], "onComplete": {"data": {}, "scope": "all"}}),
            "onComplete.scope",
        ),
        (
            json!({"tasks": [], "onComplete": {"data": {}, "requireRoute": true}}),
            "onComplete.requireRoute",
        ),
    ];
    for (body, field) in cases {
        let answer = app.send(Method::PUT, "/batch", Some(body.clone())).await;
        let code = answer.body["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(
            code == "invalid_field" || code == "unknown_field" || code == "missing_field",
            "{body}: {}",
            answer.body
        );
        answer.error(400, &code, Some(field));
    }
    let too_many: Vec<Value> = (0..1001).map(|i| json!({"data": {"n": i}})).collect();
    app.send(Method::PUT, "/batch", Some(json!({"tasks": too_many})))
        .await
        .error(413, "batch_too_large", None);
    assert_eq!(app.queue("work").await["ready"], 0);
    assert_eq!(app.status("counters").await["counters"]["published"], 0);
    app.send(Method::GET, "/status?batch=never", None)
        .await
        .error(404, "unknown_batch", Some("batch"));
}

/// Batches end while the server is killed: after the restart, every
/// batch's callback is published exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_while_batches_end_loses_and_doubles_no_callback() {
    const BATCHES: usize = 40;
    const EACH: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(dir.path());
    let api = server.api();
    api.put_interest("work", json!({"job": ".*"})).await.ok();
    api.put_interest("reports", json!({"summary": ".*"}))
        .await
        .ok();
    for b in 0..BATCHES {
        let tasks: Vec<Value> = (0..EACH)
            .map(|i| json!({"data": {"job": format!("{b}-{i}")}}))
            .collect();
        put_batch(
            &api,
            json!({"batch": format!("b{b}"), "tasks": tasks,
                   "onComplete": {"data": {"summary": b}}}),
        )
        .await;
    }
    // Workers complete copies as fast as they can; the plug is pulled
    // part of the way through.
    let worker = api.register(&["work"]).await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let runs: Vec<_> = (0..4)
        .map(|_| completing_worker(&api, &worker, 5, done.clone()))
        .collect();
    while done.load(std::sync::atomic::Ordering::SeqCst) < BATCHES * EACH / 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill_9();
    for r in runs {
        let _ = r.await;
    }
    // Restarted, the rest of the work is done (copies that were running
    // come back when their lease ends: the clock is moved past it).
    let server =
        ChildServer::start_with_env(dir.path(), &[("INTERQ_TESTING__MANUAL_CLOCK", "true")]);
    let api = server.api();
    let worker = api.register(&["work"]).await;
    let reporter = api.register(&["reports"]).await;
    let mut callbacks: HashMap<String, usize> = HashMap::new();
    for round in 0..50 {
        let tasks = api.claim_n(&worker, 100).await;
        for t in &tasks {
            api.update(&worker, t, "complete", json!({})).await.ok();
        }
        loop {
            let got = api.claim_n(&reporter, 100).await;
            if got.is_empty() {
                break;
            }
            for c in &got {
                let id = c["data"]["batch"]["id"].as_str().unwrap().to_owned();
                *callbacks.entry(id).or_default() += 1;
                api.update(&reporter, c, "complete", json!({})).await.ok();
            }
        }
        if callbacks.len() == BATCHES {
            break;
        }
        if tasks.is_empty() {
            // Leases of copies that were running at the kill run out (ttr
            // 300 s), within the workers' idle time (600 s).
            api.advance(301.0).await;
        }
        assert!(round < 49, "batches never ended: {callbacks:?}");
    }
    assert_eq!(
        callbacks.len(),
        BATCHES,
        "every batch's callback: {callbacks:?}"
    );
    assert!(
        callbacks.values().all(|&n| n == 1),
        "each once: {callbacks:?}"
    );
    for b in 0..BATCHES {
        let status = api.status(&format!("batch=b{b}")).await["batch"].clone();
        assert_eq!(status["ended"], true);
        assert_eq!(status["totals"]["completed"], EACH as u64, "{status}");
    }
}

#[tokio::test]
async fn the_console_shows_a_batch_and_links_its_copies_to_it() {
    let app = spawn_app().await;
    app.put_interest("work", json!({"job": ".*"})).await.ok();
    put_batch(
        &app,
        json!({"batch": "weekly report", "tasks": [{"data": {"job": "1"}}, {"data": {"job": "2"}}],
               "onComplete": {"data": {"summary": "weekly"}}}),
    )
    .await;
    let w = app.register(&["work"]).await;
    let t = app.claim(&w).await;
    app.update(&w, &t, "complete", json!({})).await.ok();
    let mut site = crate::admin::Site::new(&app);
    let page = site.get("/admin/batches/weekly%20report").await;
    let html = page.html();
    assert!(html.contains("<code>weekly report</code>"), "{html}");
    assert!(
        html.contains(r#"<td data-state="completed">1</td>"#),
        "{html}"
    );
    assert!(html.contains(r#"<td data-state="ready">1</td>"#), "{html}");
    assert!(html.contains("published when the batch ends"));
    assert!(html.contains("What it publishes when it ends") && html.contains("summary"));
    let task = site
        .get(&format!("/admin/tasks/{}", t["taskId"].as_str().unwrap()))
        .await;
    assert!(task
        .html()
        .contains(r#"In batch <a href="/admin/batches/weekly%20report">"#));
    site.get("/admin/batches/nope").await.error(404, "batch");
}
