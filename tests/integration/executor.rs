//! Task keys and cancellation, and `docs/executor.md` run as written.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{interq_binary, run_page, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_key_finds_every_copy_in_every_queue_and_state() {
    let app = spawn_app().await;
    app.put_interest("a", json!("*")).await.ok();
    app.put_interest("b", json!("*")).await.ok();
    app.publish(json!({"data": {"n": 1}, "key": "build-1"}))
        .await
        .ok();
    app.publish(json!({"data": {"n": 2}, "key": "build-2"}))
        .await
        .ok();
    let worker = app.register(&["a"]).await;
    let claimed = app.claim(&worker).await;
    assert_eq!(claimed["key"], "build-1");

    let found = app.status("key=build-1").await["key"].clone();

    let seen: Vec<(String, String)> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["queue"].as_str().unwrap().to_owned(),
                t["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("a".into(), "running".into()), ("b".into(), "ready".into())]
    );
    assert_eq!(app.status("key=nobody").await["key"], json!([]));
}

#[tokio::test]
async fn stopping_a_waiting_task_cancels_it_for_good() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let ready = app
        .publish(json!({"data": {"n": 1}, "key": "k"}))
        .await
        .ok();
    let scheduled = app
        .publish(json!({"data": {"n": 2}, "key": "k", "runAt": later}))
        .await
        .ok();

    let answer = app.send(Method::DELETE, "/task?key=k", None).await.ok();

    assert_eq!(
        answer["cancelled"],
        json!([
            ready["copies"][0]["taskId"],
            scheduled["copies"][0]["taskId"]
        ])
    );
    assert_eq!(answer["cancelRequested"], json!([]));
    let status = app.status("queue=q&counters&failedQueue").await;
    assert_eq!(
        status["queue"],
        json!({"name": "q", "ready": 0, "scheduled": 0, "running": 0, "failed": 0, "blocked": 0})
    );
    assert_eq!(status["counters"]["cancelled"], 2);
    assert_eq!(status["failedQueue"], json!([]));
    app.advance(3600.0).await;
    let worker = app.register(&["q"]).await;
    assert!(app.claim(&worker).await.is_null(), "nothing comes back");
    let states: Vec<Value> = app.status("key=k").await["key"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].clone())
        .collect();
    assert_eq!(states, [json!("cancelled"), json!("cancelled")]);
    // By task id too: a copy, or a publish's every copy.
    let one = app.publish(json!({"data": {"n": 3}})).await.ok();
    let by_publish = app
        .send(
            Method::DELETE,
            &format!("/task?taskId={}", one["taskId"].as_str().unwrap()),
            None,
        )
        .await
        .ok();
    assert_eq!(by_publish["cancelled"], json!([one["copies"][0]["taskId"]]));
}

#[tokio::test]
async fn stopping_a_running_task_tells_its_worker_and_ends_it_cancelled() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.publish(json!({"data": {"n": 1}, "key": "k", "maxAttempts": 5}))
        .await
        .ok();
    let worker = app.register(&["q"]).await;
    let task = app.claim(&worker).await;

    let answer = app.send(Method::DELETE, "/task?key=k", None).await.ok();
    assert_eq!(answer["cancelRequested"], json!([task["taskId"]]));

    let beat = app.update(&worker, &task, "progress", json!({})).await.ok();
    assert_eq!(
        (beat["state"].as_str(), beat["cancelled"].as_bool()),
        (Some("running"), Some(true))
    );
    let ended = app
        .update(&worker, &task, "fail", json!({"failReason": "stopped"}))
        .await
        .ok();
    assert_eq!(
        ended["state"], "cancelled",
        "not retried, though attempts remain"
    );
    let status = app.status("failedQueue&counters").await;
    assert_eq!(status["failedQueue"], json!([]));
    assert_eq!(
        (
            status["counters"]["cancelled"].as_u64(),
            status["counters"]["retried"].as_u64()
        ),
        (Some(1), Some(0))
    );
}

#[tokio::test]
async fn singular_rules_compare_the_key_when_there_is_one() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let first = app
        .publish(json!({"data": {"build": 1}, "key": "job-a", "singularlyEnqueue": true}))
        .await
        .ok();
    let same_key = app
        .publish(json!({"data": {"build": 2}, "key": "job-a", "singularlyEnqueue": true}))
        .await
        .ok();
    let same_data = app
        .publish(json!({"data": {"build": 1}, "key": "job-b", "singularlyEnqueue": true}))
        .await
        .ok();
    assert_eq!(
        same_key["copies"][0]["existing"], true,
        "different data, same key: folded"
    );
    assert_eq!(
        same_key["copies"][0]["taskId"],
        first["copies"][0]["taskId"]
    );
    assert!(
        same_data["copies"][0]["existing"].is_null(),
        "same data, other key: kept"
    );

    app.publish(json!({"data": {"run": 1}, "key": "deploy", "singularlyRun": true}))
        .await
        .ok();
    app.publish(json!({"data": {"run": 2}, "key": "deploy", "singularlyRun": true}))
        .await
        .ok();
    let (w1, w2) = (app.register(&["q"]).await, app.register(&["q"]).await);
    let mut taken: Vec<Value> = app
        .claim_n(&w1, 10)
        .await
        .iter()
        .map(|t| t["data"].clone())
        .collect();
    taken.extend(app.claim_n(&w2, 10).await.iter().map(|t| t["data"].clone()));
    assert!(taken.contains(&json!({"run": 1})));
    assert!(
        !taken.contains(&json!({"run": 2})),
        "one deploy runs at a time: {taken:?}"
    );
}

#[tokio::test]
async fn bad_keys_and_stops_are_refused() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let long = "k".repeat(257);
    app.publish(json!({"data": {}, "key": ""}))
        .await
        .error(400, "invalid_field", Some("key"));
    app.publish(json!({"data": {}, "key": long}))
        .await
        .error(400, "invalid_field", Some("key"));
    app.publish(json!({"data": {}, "key": "a\nb"}))
        .await
        .error(400, "invalid_field", Some("key"));
    app.publish(json!({"data": {}, "key": 7}))
        .await
        .error(400, "invalid_field", Some("key"));
    app.send(Method::GET, "/status?key=", None)
        .await
        .error(400, "invalid_field", Some("key"));
    app.send(Method::DELETE, "/task?key=nobody", None)
        .await
        .error(404, "unknown_key", Some("key"));
    app.send(
        Method::DELETE,
        "/task?taskId=01900000-0000-7000-8000-000000000000",
        None,
    )
    .await
    .error(404, "unknown_task", Some("taskId"));
    app.send(Method::DELETE, "/task?key=a&queue=q", None)
        .await
        .error(400, "invalid_field", Some("taskId"));
    assert_eq!(app.queue("q").await["ready"], 0);
}

#[tokio::test]
async fn workers_carry_a_name() {
    let app = spawn_app().await;
    app.send(
        Method::PUT,
        "/worker",
        Some(json!({"queues": ["q"], "name": "builder-7"})),
    )
    .await
    .ok();
    app.send(Method::PUT, "/worker", Some(json!({"queues": ["q"]})))
        .await
        .ok();
    let mut names: Vec<String> = app.status("workers").await["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names[1], "builder-7");
    assert!(
        names[0].starts_with("127.0.0.1:"),
        "the default is the caller's address: {}",
        names[0]
    );
    app.send(
        Method::PUT,
        "/worker",
        Some(json!({"queues": ["q"], "name": ""})),
    )
    .await
    .error(400, "invalid_field", Some("name"));
}

#[tokio::test(flavor = "multi_thread")]
async fn interq_worker_stops_a_cancelled_command() {
    let app = spawn_app_with(|s| s.testing.manual_clock = false).await;
    app.put_interest("q", json!("*")).await.ok();
    let dir = tempfile::tempdir().unwrap();
    let (started, stopped) = (dir.path().join("started"), dir.path().join("stopped"));
    let published = app
        .publish(json!({"data": {}, "key": "build-9"}))
        .await
        .ok();
    let id = published["copies"][0]["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    let script = format!(
        "trap 'touch {}; exit 1' TERM; touch {}; sleep 30 & wait",
        stopped.display(),
        started.display()
    );
    let mut worker = Command::new(interq_binary())
        .args([
            "worker",
            "--url",
            &app.base,
            "--queue",
            "q",
            "--name",
            "w9",
            "--heartbeat",
            "0.2",
            "--kill-after",
            "2",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the command never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    app.send(Method::DELETE, "/task?key=build-9", None)
        .await
        .ok();

    let task = loop {
        let t = app.status(&format!("task={id}")).await["task"].clone();
        if t["state"] != "running" {
            break t;
        }
        assert!(Instant::now() < deadline, "the task was never stopped: {t}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (task["state"].as_str(), task["cancelled"].as_bool()),
        (Some("cancelled"), Some(true))
    );
    assert!(stopped.exists(), "the command got SIGTERM");
    assert_eq!(app.status("workers").await["workers"][0]["name"], "w9");
    let _ = worker.kill();
    let _ = worker.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_executor_page_runs_as_written() {
    let app = spawn_app().await;
    let outputs = run_page("docs/executor.md", &app.base, 6).await;
    // Start twice: one waiting build.
    assert_eq!(outputs[1][1]["copies"][0]["existing"], true);
    // Status by key.
    assert_eq!(outputs[2][0]["key"].as_array().unwrap().len(), 1);
    // Stop while waiting.
    assert_eq!(outputs[3][0]["cancelled"].as_array().unwrap().len(), 1);
    // Stop while running: the heartbeat says so, the failure ends it cancelled.
    let running = &outputs[4];
    assert_eq!(
        running[1]["cancelRequested"].as_array().unwrap().len(),
        1,
        "{running:?}"
    );
    assert_eq!(running[2]["cancelled"], true);
    assert_eq!(running[3]["state"], "cancelled");
    assert_eq!(outputs[5][0]["counters"]["cancelled"], 2);
}
