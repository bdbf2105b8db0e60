//! Dependencies over HTTP: `dependsOn` by id, publish id and key across
//! queues; `blocked` in status and counts; what a failed dependency does
//! (cancel, or run anyway), down a chain; bad input; 10,000 dependencies
//! and 10,000 dependants; kill -9 while dependencies complete.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{completing_worker, spawn_app, Api, ChildServer, TestApp};

async fn publish(api: &Api, body: Value) -> Value {
    api.publish(body).await.ok()
}

/// The id of a publish's first copy.
fn copy_of(published: &Value) -> String {
    published["copies"][0]["taskId"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn state(app: &TestApp, id: &str) -> Value {
    app.status(&format!("task={id}")).await["task"].clone()
}

#[tokio::test]
async fn a_task_waits_in_blocked_until_every_dependency_completes() {
    let app = spawn_app().await;
    for q in ["a", "b", "c"] {
        app.put_interest(q, json!({"step": format!("^{q}$")}))
            .await
            .ok();
    }
    let a = publish(&app, json!({"data": {"step": "a"}})).await;
    let b = publish(&app, json!({"data": {"step": "b"}, "key": "build-7"})).await;
    // By a publish's id (every copy of it) and by key.
    let c = publish(
        &app,
        json!({"data": {"step": "c"}, "dependsOn": [a["taskId"], {"key": "build-7"}]}),
    )
    .await;
    let c_id = copy_of(&c);
    let t = state(&app, &c_id).await;
    assert_eq!(t["state"], "blocked");
    assert_eq!(
        t["heldBy"], "it waits for 2 of its 2 dependencies to complete",
        "{t}"
    );
    assert_eq!(
        t["dependsOn"],
        json!([copy_of(&a), copy_of(&b)]),
        "the copies they named"
    );
    assert_eq!(app.queue("c").await["blocked"], 1);
    let w = app.register(&["a", "b", "c"]).await;
    // Not claimed while blocked: the worker gets a and b.
    let first = app.claim(&w).await;
    let second = app.claim(&w).await;
    assert!(app.claim(&w).await.is_null(), "c is blocked");
    app.update(&w, &first, "complete", json!({})).await.ok();
    assert_eq!(
        state(&app, &c_id).await["state"],
        "blocked",
        "one still runs"
    );
    app.update(&w, &second, "complete", json!({})).await.ok();
    let t = state(&app, &c_id).await;
    assert_eq!(t["state"], "ready", "{t}");
    assert!(t["history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event"] == "unblocked"));
    // The dependency lists what waited for it.
    let a_view = state(&app, &copy_of(&a)).await;
    assert_eq!(a_view["dependants"][0]["taskId"], c_id.as_str());
    assert_eq!(app.claim(&w).await["taskId"], c_id.as_str());
    // A dependency already completed is met at once.
    let d = publish(
        &app,
        json!({"data": {"step": "c"}, "dependsOn": [copy_of(&a)]}),
    )
    .await;
    assert_eq!(state(&app, &copy_of(&d)).await["state"], "ready");
}

#[tokio::test]
async fn a_failed_dependency_cancels_down_the_chain_unless_asked_to_run() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let root = publish(&app, json!({"data": {"n": 0}, "maxAttempts": 1})).await;
    let mid = publish(
        &app,
        json!({"data": {"n": 1}, "dependsOn": [root["taskId"]]}),
    )
    .await;
    let leaf = publish(
        &app,
        json!({"data": {"n": 2}, "dependsOn": [mid["taskId"]]}),
    )
    .await;
    let brave = publish(
        &app,
        json!({"data": {"n": 3}, "dependsOn": [root["taskId"]], "dependencyFailed": "run"}),
    )
    .await;
    let w = app.register(&["q"]).await;
    let t = app.claim(&w).await;
    assert_eq!(t["data"]["n"], 0);
    app.update(&w, &t, "fail", json!({"failReason": "broken"}))
        .await
        .ok();
    let mid = state(&app, &copy_of(&mid)).await;
    assert_eq!(mid["state"], "cancelled");
    assert!(
        mid["failReason"].as_str().unwrap().contains("ended failed"),
        "{mid}"
    );
    let leaf = state(&app, &copy_of(&leaf)).await;
    assert_eq!(leaf["state"], "cancelled", "down the chain");
    assert!(leaf["failReason"]
        .as_str()
        .unwrap()
        .contains("ended cancelled"));
    assert_eq!(state(&app, &copy_of(&brave)).await["state"], "ready");
    // Published after the failure: cancelled at once, or run.
    let late = publish(
        &app,
        json!({"data": {"n": 4}, "dependsOn": [root["taskId"]]}),
    )
    .await;
    assert_eq!(state(&app, &copy_of(&late)).await["state"], "cancelled");
    let counters = app.status("counters").await["counters"].clone();
    assert_eq!(counters["cancelled"], 3, "{counters}");
    // Cancelling a blocked copy ends it at once, like any waiting copy.
    let gate = publish(&app, json!({"data": {"n": 5}})).await;
    let held = publish(
        &app,
        json!({"data": {"n": 6}, "dependsOn": [gate["taskId"]]}),
    )
    .await;
    app.send(
        Method::DELETE,
        "/task",
        Some(json!({"taskId": copy_of(&held)})),
    )
    .await
    .ok();
    assert_eq!(state(&app, &copy_of(&held)).await["state"], "cancelled");
}

#[tokio::test]
async fn bad_dependencies_are_refused_naming_the_field_and_change_nothing() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let unknown = "01a23bb1-4cbc-74e1-ab77-9d59061b0000";
    let many: Vec<Value> = (0..10_001).map(|_| json!(unknown)).collect();
    for (deps, field) in [
        (json!("x"), "dependsOn"),
        (json!([]), "dependsOn"),
        (json!(many), "dependsOn"),
        (json!(["not-an-id"]), "dependsOn[0]"),
        (json!([7]), "dependsOn[0]"),
        (json!([{"key": ""}]), "dependsOn[0].key"),
        (json!([{"key": "k", "more": 1}]), "dependsOn[0]"),
        (json!([unknown]), "dependsOn"),
        (json!([{"key": "nobody-has-it"}]), "dependsOn"),
    ] {
        app.publish(json!({"data": {"n": 1}, "dependsOn": deps}))
            .await
            .error(400, "invalid_field", Some(field));
    }
    app.publish(
        json!({"data": {"n": 1}, "dependsOn": [{"key": "k"}], "dependencyFailed": "maybe"}),
    )
    .await
    .error(400, "invalid_field", Some("dependencyFailed"));
    // In a batch, one unknown dependency stores none of the batch.
    app.publish(json!([{"data": {"n": 2}}, {"data": {"n": 3}, "dependsOn": [unknown]}]))
        .await
        .error(400, "invalid_field", Some("dependsOn"));
    assert_eq!(app.queue("q").await["ready"], 0);
    assert_eq!(app.status("counters").await["counters"]["published"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_dependencies_and_ten_thousand_dependants() {
    const N: usize = 10_000;
    let app = spawn_app().await;
    app.put_interest("deps", json!({"role": "^dep$"}))
        .await
        .ok();
    app.put_interest("fan", json!({"role": "^fan$"})).await.ok();
    app.put_interest("join", json!({"role": "^join$"}))
        .await
        .ok();
    app.put_interest("root", json!({"role": "^root$"}))
        .await
        .ok();
    // One task waits for 10,000.
    let mut deps = Vec::with_capacity(N);
    for chunk in 0..N / 1000 {
        let tasks: Vec<Value> = (0..1000)
            .map(|i| json!({"data": {"role": "dep", "n": chunk * 1000 + i}}))
            .collect();
        let published = app.publish(json!(tasks)).await.ok();
        deps.extend(
            published
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["taskId"].clone()),
        );
    }
    let join = publish(&app, json!({"data": {"role": "join"}, "dependsOn": deps})).await;
    // 10,000 wait for one.
    let root = publish(&app, json!({"data": {"role": "root"}})).await;
    for _ in 0..N / 1000 {
        let tasks: Vec<Value> = (0..1000)
            .map(|_| json!({"data": {"role": "fan"}, "dependsOn": [root["taskId"]]}))
            .collect();
        app.publish(json!(tasks)).await.ok();
    }
    assert_eq!(app.queue("fan").await["blocked"], N as u64);
    let w = app.register(&["deps", "root"]).await;
    let mut done = 0;
    loop {
        let claimed = app.claim_n(&w, 1000).await;
        if claimed.is_empty() {
            break;
        }
        let reports: Vec<Value> = claimed
            .iter()
            .map(|t| json!({"workerId": w, "taskId": t["taskId"], "state": "complete"}))
            .collect();
        done += reports.len();
        app.send(Method::POST, "/task", Some(json!(reports)))
            .await
            .ok();
    }
    assert_eq!(done, N + 1);
    assert_eq!(app.queue("fan").await["ready"], N as u64, "all released");
    assert_eq!(app.queue("fan").await["blocked"], 0);
    assert_eq!(state(&app, &copy_of(&join)).await["state"], "ready");
}

/// Dependencies complete while the server is killed: after the restart no
/// dependant is left blocked on a completed dependency, none runs before
/// its dependency completed, and the rest are released as theirs complete.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_while_dependencies_complete_loses_and_doubles_nothing() {
    const PAIRS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(dir.path());
    let api = server.api();
    api.put_interest("first", json!({"role": "^first$"}))
        .await
        .ok();
    api.put_interest("then", json!({"role": "^then$"}))
        .await
        .ok();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for i in 0..PAIRS {
        let first = publish(&api, json!({"data": {"role": "first", "n": i}})).await;
        let then = publish(
            &api,
            json!({"data": {"role": "then", "n": i}, "dependsOn": [first["taskId"]]}),
        )
        .await;
        pairs.push((copy_of(&first), copy_of(&then)));
    }
    let worker = api.register(&["first"]).await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let run = completing_worker(&api, &worker, 10, done.clone());
    while done.load(std::sync::atomic::Ordering::SeqCst) < PAIRS / 2 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    server.kill_9();
    let _ = run.await;
    let server =
        ChildServer::start_with_env(dir.path(), &[("INTERQ_TESTING__MANUAL_CLOCK", "true")]);
    let api = server.api();
    let mut states: HashMap<&str, usize> = HashMap::new();
    for (first, then) in &pairs {
        // Completed copies past the kept history (100 a queue) are gone.
        let f = api
            .send(Method::GET, &format!("/status?task={first}"), None)
            .await;
        let f = match f.status.as_u16() {
            404 => json!("completed"),
            _ => f.body["task"]["state"].clone(),
        };
        let t = api.status(&format!("task={then}")).await["task"]["state"].clone();
        match (f.as_str().unwrap(), t.as_str().unwrap()) {
            ("completed", "ready") => *states.entry("released").or_default() += 1,
            ("ready" | "running", "blocked") => *states.entry("waiting").or_default() += 1,
            other => panic!("{first} and {then} are {other:?}"),
        }
    }
    assert!(
        states.get("released").copied().unwrap_or(0) >= PAIRS / 2,
        "{states:?}"
    );
    // The rest complete after the restart (a running one's lease ends
    // first), and each releases its dependant.
    api.advance(301.0).await;
    let worker = api.register(&["first"]).await;
    loop {
        let claimed = api.claim_n(&worker, 100).await;
        if claimed.is_empty() {
            break;
        }
        for t in &claimed {
            api.update(&worker, t, "complete", json!({})).await.ok();
        }
    }
    assert_eq!(api.queue("then").await["ready"], PAIRS as u64);
    assert_eq!(api.queue("then").await["blocked"], 0);
}

#[tokio::test]
async fn the_console_shows_what_a_task_waits_for_and_what_waits_for_it() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let a = publish(&app, json!({"data": {"n": 1}})).await;
    let b = publish(&app, json!({"data": {"n": 2}})).await;
    let c = publish(
        &app,
        json!({"data": {"n": 3}, "dependsOn": [a["taskId"], b["taskId"]]}),
    )
    .await;
    let mut site = crate::admin::Site::new(&app);
    let page = site.get(&format!("/admin/tasks/{}", copy_of(&c))).await;
    let html = page.html();
    assert!(
        html.contains("Waits for (2; cancelled if one fails)"),
        "{html}"
    );
    assert!(html.contains(&format!("href=\"/admin/tasks/{}\"", copy_of(&a))));
    let page = site.get(&format!("/admin/tasks/{}", copy_of(&a))).await;
    assert!(page.html().contains("Wait for it (1)"), "{}", page.html());
    let page = site.get("/admin/queues/q?state=blocked").await;
    assert!(
        page.html().contains(&copy_of(&c)),
        "the blocked tab lists it"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "interq_blocked{queue=\"q\"} 1"),
        "{metrics}"
    );
}
