//! Restart and crash: a real `interq serve` child process over one data
//! directory.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{Api, ChildServer, Load};

/// What must come back after a restart (worker liveness aside, which starts
/// afresh).
async fn durable_view(api: &Api) -> Value {
    let mut s = api
        .status("queues&interests&workers&counters&failedQueue")
        .await;
    for w in s["workers"].as_array_mut().unwrap() {
        let w = w.as_object_mut().unwrap();
        w.remove("lastSeen");
        w.remove("state");
    }
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_restores_every_kind_of_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(dir.path());
    let api = server.api();
    api.put_interest("mail", json!({"email": "@"})).await.ok();
    api.put_interest("numbers", json!({"n": "."})).await.ok();
    let worker = api.register(&["mail", "numbers"]).await;
    // A running task, a completed one, a failed one, ready ones and a
    // scheduled one.
    api.publish(json!({"data": {"email": "run@x"}, "ttr": 3600}))
        .await
        .ok();
    let running = api.claim(&worker).await;
    api.publish(json!({"data": {"email": "done@x"}})).await.ok();
    let done = api.claim(&worker).await;
    api.update(&worker, &done, "complete", json!({})).await.ok();
    api.publish(json!({"data": {"email": "bad@x"}, "maxAttempts": 1}))
        .await
        .ok();
    let failing = api.claim(&worker).await;
    api.update(&worker, &failing, "fail", json!({"failReason": "bounced"}))
        .await
        .ok();
    let in_an_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let scheduled = api
        .publish(json!({"data": {"n": 1}, "runAt": in_an_hour}))
        .await
        .ok();
    api.publish(json!({"data": {"n": 2}, "singularlyEnqueue": true}))
        .await
        .ok();
    let before = durable_view(&api).await;
    assert_eq!(before["failedQueue"].as_array().unwrap().len(), 1);

    let status = server.terminate();
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    let server = ChildServer::start(dir.path());
    let api = server.api();

    assert_eq!(durable_view(&api).await, before);
    let task = |id: &Value| format!("task={}", id.as_str().unwrap());
    assert_eq!(
        api.status(&task(&running["taskId"])).await["task"]["state"],
        "running"
    );
    assert_eq!(
        api.status(&task(&done["taskId"])).await["task"]["state"],
        "completed"
    );
    let copies = api.status(&task(&scheduled["taskId"])).await["task"]["copies"].clone();
    assert_eq!(copies[0]["state"], "scheduled");
    // The indexes work, not just the records: the worker can go on.
    api.update(&worker, &running, "complete", json!({}))
        .await
        .ok();
    let dup = api
        .publish(json!({"data": {"n": 2}, "singularlyEnqueue": true}))
        .await
        .ok();
    assert_eq!(dup["copies"][0]["existing"], true);
    let next = api.claim(&worker).await;
    assert_eq!(next["data"], json!({"n": 2}));
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_under_load_loses_no_acknowledged_publish() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(dir.path());
    let api = server.api();
    api.put_interest("a", json!("*")).await.ok();
    api.put_interest("b", json!({"n": "7$"})).await.ok();

    let load = Load::start(&api, 8, true);
    // Let the load build up, then pull the plug mid-stream.
    load.until(2_000).await;
    server.kill_9();
    let acknowledged = load.stop().await;
    assert!(
        acknowledged.len() >= 500,
        "the load ran ({} acknowledged)",
        acknowledged.len()
    );

    let server = ChildServer::start(dir.path());
    let api = server.api();
    let ready = api.queue("a").await["ready"].as_u64().unwrap();
    assert!(
        ready >= acknowledged.len() as u64,
        "{ready} ready < {} acknowledged",
        acknowledged.len()
    );
    for id in &acknowledged {
        let answer = api
            .send(Method::GET, &format!("/status?task={id}"), None)
            .await
            .ok();
        let copies = answer["task"]["copies"].as_array().expect("copies");
        assert!(
            copies.iter().any(|c| c["queue"] == "a"),
            "publish {id} lost its copy"
        );
    }
    // The totals are stored with the copies they count: every publish
    // reached `a`, and the copies in `b` are counted too.
    let counters = api.status("counters").await["counters"].clone();
    let in_b = api.queue("b").await["ready"].as_u64().unwrap();
    assert_eq!(counters["published"].as_u64().unwrap(), ready, "{counters}");
    assert_eq!(
        counters["routed"].as_u64().unwrap(),
        ready + in_b,
        "{counters}"
    );
    assert!(counters["published"].as_u64().unwrap() >= acknowledged.len() as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_keeps_archived_logs_and_removals_from_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("INTERQ_TASKS__HISTORY", "1"),
        ("INTERQ_TASKS__LOG_EVERY_MS", "0"),
    ];
    let server = ChildServer::start_with_env(dir.path(), &env);
    let api = server.api();
    api.put_interest("q", json!("*")).await.ok();
    let worker = api.register(&["q"]).await;
    let done = crate::search::run_with_logs(&api, &worker, 0..4).await;
    let removed = json!({"action": "remove", "taskIds": [done[1]]});
    let acted = api.send(Method::POST, "/tasks", Some(removed)).await.ok();
    assert_eq!(acted["done"], 1, "{acted}");
    // No checkpoint at exit: the archive's changes come back from the log.
    server.kill_9();
    let server = ChildServer::start_with_env(dir.path(), &env);
    let api = server.api();
    for (i, id) in done.iter().enumerate() {
        let answer = api
            .send(Method::GET, &format!("/task/log?taskId={id}"), None)
            .await;
        if i == 1 {
            answer.error(404, "unknown_task", None);
        } else {
            let log = answer.ok();
            assert_eq!(log["text"], format!("output {i}\n"), "task {i}: {log}");
        }
    }
    assert_eq!(
        crate::search::listed(&api).await,
        [done[2].clone(), done[0].clone()]
    );
}
