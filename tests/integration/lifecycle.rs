//! Claiming, leases, completion, failure, retries, workers.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn the_readme_walk_through_works() {
    let app = spawn_app().await;
    app.put_interest("emails", json!({"email": "^.*evan.*"}))
        .await
        .ok();
    app.put_interest("points", json!({"action": "^userCreated$"}))
        .await
        .ok();
    app.publish(json!({"publisher": "signup", "data": {"action": "userCreated", "email": "evan@example.com"}}))
        .await
        .ok();
    let worker = app.register(&["emails", "points"]).await;

    let task = app.claim(&worker).await;
    assert_eq!(
        (
            task["queue"].as_str(),
            task["state"].as_str(),
            task["attempt"].as_u64()
        ),
        (Some("emails"), Some("running"), Some(1))
    );
    assert_eq!(task["data"]["email"], "evan@example.com");
    let done = app.update(&worker, &task, "complete", json!({})).await.ok();
    assert_eq!(done["state"], "completed");
    // The worker has the data: the answer to a report leaves it out.
    assert!(done.get("data").is_none(), "{done}");

    let status = app.status("queue=points&counters").await;
    assert_eq!(
        status["queue"],
        json!({"name": "points", "ready": 1, "scheduled": 0, "running": 0, "failed": 0, "blocked": 0})
    );
    assert_eq!(status["counters"]["completed"], 1);
    assert_eq!(status["counters"]["routed"], 2);
    // The completed copy stays visible in the recent history.
    let kept = app
        .status(&format!("task={}", task["taskId"].as_str().unwrap()))
        .await;
    assert_eq!(kept["task"]["state"], "completed");
}

#[tokio::test]
async fn a_worker_takes_its_own_queue_first_then_its_queues_in_order() {
    let app = spawn_app().await;
    app.put_interest("low", json!({"to": "low"})).await.ok();
    app.put_interest("high", json!({"to": "high"})).await.ok();
    let worker = app.register(&["high", "low"]).await;
    app.publish_data(json!({"to": "low"})).await;
    app.publish_data(json!({"to": "high"})).await;
    app.publish(json!({"data": {"to": "low", "mine": true}, "scope": "all"}))
        .await
        .ok();

    let order: Vec<_> = app
        .claim_n(&worker, 3)
        .await
        .iter()
        .map(|t| t["data"].clone())
        .collect();

    assert_eq!(
        order,
        [
            json!({"to": "low", "mine": true}),
            json!({"to": "high"}),
            json!({"to": "low"})
        ]
    );
}

#[tokio::test]
async fn claim_answers_null_when_empty_and_an_array_with_count() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let worker = app.register(&["q"]).await;
    assert!(app.claim(&worker).await.is_null());
    assert_eq!(app.claim_n(&worker, 5).await.len(), 0);
    for n in 0..3 {
        app.publish_data(json!({"n": n})).await;
    }
    assert_eq!(app.claim_n(&worker, 2).await.len(), 2);
    assert_eq!(app.claim_n(&worker, 2).await.len(), 1);
}

#[tokio::test]
async fn an_expired_lease_puts_the_task_back_with_its_attempt_counted() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.publish(json!({"data": {"n": 1}, "ttr": 30})).await.ok();
    let (slow, other) = (app.register(&["q"]).await, app.register(&["q"]).await);

    let task = app.claim(&slow).await;
    assert_eq!(
        task["leaseUntil"].as_f64().unwrap() - task["startedAt"].as_f64().unwrap(),
        30.0
    );
    app.advance(29.0).await;
    assert!(app.claim(&other).await.is_null());
    app.advance(1.0).await;

    let again = app.claim(&other).await;
    assert_eq!(again["taskId"], task["taskId"]);
    assert_eq!(again["attempt"], 2);
    // The first worker's lease is gone: its late answer is refused.
    app.update(&slow, &task, "complete", json!({})).await.error(
        409,
        "not_lease_holder",
        Some("workerId"),
    );
    assert_eq!(app.status("counters").await["counters"]["leaseExpired"], 1);
}

#[tokio::test]
async fn failures_retry_with_backoff_then_land_in_the_failed_set() {
    let app = spawn_app_with(|s| {
        s.tasks.retry_base_secs = 10.0;
        s.tasks.retry_jitter = 0.0;
    })
    .await;
    app.put_interest("q", json!("*")).await.ok();
    app.publish(json!({"data": {"n": 1}, "maxAttempts": 3}))
        .await
        .ok();
    let worker = app.register(&["q"]).await;

    // Attempt 1 fails: back in 10 s.
    let task = app.claim(&worker).await;
    let failed = app
        .update(&worker, &task, "fail", json!({"failReason": "smtp down"}))
        .await
        .ok();
    assert_eq!(
        (failed["state"].as_str(), failed["failReason"].as_str()),
        (Some("scheduled"), Some("smtp down"))
    );
    app.advance(9.0).await;
    assert!(app.claim(&worker).await.is_null());
    app.advance(1.0).await;
    // Attempt 2 fails: back in 20 s.
    let task = app.claim(&worker).await;
    assert_eq!(task["attempt"], 2);
    app.update(&worker, &task, "fail", json!({})).await.ok();
    app.advance(19.0).await;
    assert!(app.claim(&worker).await.is_null());
    app.advance(1.0).await;
    // Attempt 3 is the last.
    let task = app.claim(&worker).await;
    assert_eq!(task["attempt"], 3);
    let last = app
        .update(&worker, &task, "fail", json!({"failReason": "still down"}))
        .await
        .ok();
    assert_eq!(last["state"], "failed");

    let status = app.status("failedQueue&queue=q&counters").await;
    let failed = status["failedQueue"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["failReason"], "still down");
    assert_eq!(status["queue"]["failed"], 1);
    assert_eq!(
        (
            status["counters"]["retried"].as_u64(),
            status["counters"]["failed"].as_u64()
        ),
        (Some(2), Some(1))
    );
    app.advance(3600.0).await;
    assert!(
        app.claim(&worker).await.is_null(),
        "a failed task is not retried"
    );
}

#[tokio::test]
async fn re_enqueue_puts_the_task_back_after_complete_or_fail() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.publish_data(json!({"n": 1})).await;
    let worker = app.register(&["q"]).await;

    let task = app.claim(&worker).await;
    assert_eq!(
        app.update(&worker, &task, "complete", json!({"reEnqueue": true}))
            .await
            .ok()["state"],
        "ready"
    );
    let task = app.claim(&worker).await;
    assert_eq!(
        app.update(&worker, &task, "fail", json!({"reEnqueue": true}))
            .await
            .ok()["state"],
        "ready"
    );
    assert_eq!(app.claim(&worker).await["attempt"], 3);
}

#[tokio::test]
async fn only_the_lease_holder_may_update_and_only_a_running_task() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.publish_data(json!({"n": 1})).await;
    let (holder, stranger) = (app.register(&["q"]).await, app.register(&["q"]).await);
    let task = app.claim(&holder).await;

    app.update(&stranger, &task, "complete", json!({}))
        .await
        .error(409, "not_lease_holder", Some("workerId"));
    app.update(&holder, &task, "complete", json!({})).await.ok();
    app.update(&holder, &task, "complete", json!({}))
        .await
        .error(409, "task_not_running", Some("taskId"));
    let unknown = json!({"taskId": "01900000-0000-7000-8000-000000000000"});
    app.update(&holder, &unknown, "complete", json!({}))
        .await
        .error(404, "unknown_task", Some("taskId"));
}

#[tokio::test]
async fn deleting_a_worker_puts_its_running_tasks_back() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.publish_data(json!({"n": 1})).await;
    let (leaving, staying) = (app.register(&["q"]).await, app.register(&["q"]).await);
    let task = app.claim(&leaving).await;

    let deleted = app
        .send(Method::DELETE, &format!("/worker?workerId={leaving}"), None)
        .await
        .ok();

    assert_eq!(deleted["deleted"], json!([leaving]));
    assert_eq!(app.claim(&staying).await["taskId"], task["taskId"]);
    app.send(Method::GET, &format!("/task?workerId={leaving}"), None)
        .await
        .error(404, "unknown_worker", Some("workerId"));
}

#[tokio::test]
async fn deleting_the_workers_of_a_queue_removes_only_those() {
    let app = spawn_app().await;
    let (a1, a2, b) = (
        app.register(&["a"]).await,
        app.register(&["b", "a"]).await,
        app.register(&["b"]).await,
    );

    let deleted = app.send(Method::DELETE, "/worker?queue=a", None).await.ok();

    let mut ids: Vec<String> = deleted["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut expected = vec![a1, a2];
    expected.sort();
    assert_eq!(ids, expected);
    let workers = app.status("workers").await["workers"].clone();
    assert_eq!(workers.as_array().unwrap().len(), 1);
    assert_eq!(workers[0]["workerId"], b.as_str());
}

#[tokio::test]
async fn workers_go_stale_then_idle_ones_are_removed() {
    let app = spawn_app_with(|s| {
        s.workers.stale_after_secs = 60;
        s.workers.idle_timeout_secs = 600;
        s.tasks.ttr_secs = 3600;
    })
    .await;
    app.put_interest("q", json!("*")).await.ok();
    app.publish_data(json!({"n": 1})).await;
    let idle = app.register(&["q"]).await;
    let busy = app.register(&["q"]).await;
    let task = app.claim(&busy).await;
    let state_of = |workers: &serde_json::Value, id: &str| {
        workers
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["workerId"] == id)
            .map(|w| w["state"].clone())
    };

    let workers = app.status("workers").await["workers"].clone();
    assert_eq!(state_of(&workers, &idle), Some(json!("IDLE")));
    assert_eq!(state_of(&workers, &busy), Some(json!("PROCESSING")));
    assert_eq!(
        workers
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["workerId"] == busy.as_str())
            .unwrap()["running"],
        json!([task["taskId"]])
    );

    app.advance(61.0).await;
    let workers = app.status("workers").await["workers"].clone();
    assert_eq!(state_of(&workers, &idle), Some(json!("STALE")));

    app.advance(600.0).await;
    let workers = app.status("workers").await["workers"].clone();
    assert_eq!(
        state_of(&workers, &idle),
        None,
        "the idle worker is removed"
    );
    assert_eq!(
        state_of(&workers, &busy),
        Some(json!("STALE")),
        "a worker holding a task is kept"
    );
    // Its task is not lost: the lease brings it back, then the worker goes.
    app.advance(3600.0).await;
    let workers = app.status("workers").await["workers"].clone();
    assert_eq!(state_of(&workers, &busy), None);
    assert_eq!(app.queue("q").await["ready"], 1);
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_a_task_arrives() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let worker = app.register(&["q"]).await;
    let url = format!("{}/task?workerId={worker}&wait=20", app.base);
    let client = app.client.clone();
    let started = Instant::now();
    let poll = tokio::spawn(async move {
        client
            .get(url)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !poll.is_finished(),
        "the poll waits while the queue is empty"
    );

    app.publish_data(json!({"n": 42})).await;

    let task = poll.await.unwrap();
    assert_eq!(task["data"]["n"], 42);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken, not timed out"
    );
}

#[tokio::test]
async fn a_long_poll_ends_empty_when_its_wait_is_over() {
    let app = spawn_app().await;
    let worker = app.register(&["q"]).await;
    let started = Instant::now();
    let answer = app
        .send(
            Method::GET,
            &format!("/task?workerId={worker}&wait=0.3"),
            None,
        )
        .await
        .ok();
    assert!(answer.is_null());
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn deleting_tasks_by_queue_and_by_worker() {
    let app = spawn_app().await;
    app.put_interest("a", json!("*")).await.ok();
    app.put_interest("b", json!("*")).await.ok();
    let worker = app.register(&["b"]).await;
    app.publish_data(json!({"n": 1})).await;
    app.publish(json!({"data": {"n": 2}, "scope": "all"}))
        .await
        .ok();

    let by_queue = app.send(Method::DELETE, "/task?queue=a", None).await.ok();
    assert_eq!(by_queue["deleted"], 1);
    assert_eq!(app.queue("a").await["ready"], 0);
    let by_worker = app
        .send(Method::DELETE, &format!("/task?workerId={worker}"), None)
        .await
        .ok();
    assert_eq!(by_worker["deleted"], 1);
    assert_eq!(app.queue("b").await["ready"], 1);
}

#[tokio::test]
async fn deleting_a_queue_removes_its_interests_and_tasks() {
    let app = spawn_app().await;
    app.put_interest("gone", json!("*")).await.ok();
    app.put_interest("kept", json!("*")).await.ok();
    app.publish_data(json!({"n": 1})).await;

    let deleted = app
        .send(Method::DELETE, "/queue?queue=gone", None)
        .await
        .ok();

    assert_eq!(deleted["deletedTasks"], 1);
    let queues: Vec<_> = app.status("queues").await["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].clone())
        .collect();
    assert_eq!(queues, [json!("kept")]);
    assert_eq!(
        app.publish_data(json!({"n": 2})).await["queues"],
        json!(["kept"])
    );
    app.send(Method::DELETE, "/queue?queue=gone", None)
        .await
        .error(404, "unknown_queue", Some("queue"));
}

#[tokio::test]
async fn progress_extends_the_lease_and_output_is_kept() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.publish(json!({"data": {"n": 1}, "ttr": 60})).await.ok();
    let worker = app.register(&["q"]).await;
    let task = app.claim(&worker).await;

    app.advance(50.0).await;
    let beat = app
        .update(&worker, &task, "progress", json!({"progress": 40}))
        .await
        .ok();
    assert_eq!(beat["progress"], 40);
    app.advance(50.0).await;
    assert_eq!(
        app.queue("q").await["running"],
        1,
        "the heartbeat moved the lease"
    );
    app.update(
        &worker,
        &task,
        "progress",
        json!({"progress": {"step": "upload"}}),
    )
    .await
    .ok();
    let done = app
        .update(&worker, &task, "complete", json!({"output": {"sent": 3}}))
        .await
        .ok();

    assert_eq!(done["output"], json!({"sent": 3}));
    assert_eq!(done["progress"], json!({"step": "upload"}));
    let kept = app
        .status(&format!("task={}", task["taskId"].as_str().unwrap()))
        .await;
    assert_eq!(kept["task"]["output"], json!({"sent": 3}));
}

#[tokio::test]
async fn misplaced_report_fields_are_refused() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.publish_data(json!({"n": 1})).await;
    let worker = app.register(&["q"]).await;
    let task = app.claim(&worker).await;

    app.update(&worker, &task, "fail", json!({"output": 1}))
        .await
        .error(400, "invalid_field", Some("output"));
    app.update(&worker, &task, "complete", json!({"failReason": "x"}))
        .await
        .error(400, "invalid_field", Some("failReason"));
    app.update(&worker, &task, "progress", json!({"progress": 101}))
        .await
        .error(400, "invalid_field", Some("progress"));
    app.update(&worker, &task, "progress", json!({"progress": "half"}))
        .await
        .error(400, "invalid_field", Some("progress"));
    app.update(&worker, &task, "progress", json!({"reEnqueue": true}))
        .await
        .error(400, "invalid_field", Some("reEnqueue"));
    assert_eq!(app.queue("q").await["running"], 1);
}

#[tokio::test]
async fn a_batch_of_updates_answers_each_item() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    for n in 0..3 {
        app.publish_data(json!({"n": n})).await;
    }
    let worker = app.register(&["q"]).await;
    let tasks = app.claim_n(&worker, 3).await;
    let update = |t: &serde_json::Value, state: &str| json!({"workerId": worker, "taskId": t["taskId"], "state": state});

    let answers = app
        .send(
            Method::POST,
            "/task",
            Some(json!([
                update(&tasks[0], "complete"),
                update(&tasks[1], "fail"),
                update(&tasks[0], "complete")
            ])),
        )
        .await
        .ok();

    assert_eq!(answers[0]["task"]["state"], "completed");
    assert_eq!(answers[1]["task"]["state"], "scheduled");
    assert_eq!(answers[2]["error"]["code"], "task_not_running");
    // A malformed item refuses the whole batch before anything is applied.
    app.send(
        Method::POST,
        "/task",
        Some(json!([update(&tasks[2], "complete"), {"workerId": worker}])),
    )
    .await
    .error(400, "missing_field", Some("[1].taskId"));
    assert_eq!(app.queue("q").await["running"], 1);
}

#[tokio::test]
async fn a_task_shows_its_history_and_why_it_was_routed() {
    let app = spawn_app_with(|s| {
        s.tasks.retry_base_secs = 5.0;
        s.tasks.retry_jitter = 0.0;
    })
    .await;
    app.put_interest("mail", json!({"email": "@example\\.com$"}))
        .await
        .ok();
    let published = app
        .publish(json!({"data": {"email": "ada@example.com"}, "ttr": 30}))
        .await
        .ok();
    let worker = app.register(&["mail"]).await;
    let task = app.claim(&worker).await;
    app.update(&worker, &task, "progress", json!({"progress": 30}))
        .await
        .ok();
    app.update(
        &worker,
        &task,
        "fail",
        json!({"failReason": "smtp timeout"}),
    )
    .await
    .ok();
    app.advance(5.0).await;
    let again = app.claim(&worker).await;
    app.advance(30.0).await; // its lease runs out
    let third = app.claim(&worker).await;
    app.update(&worker, &third, "complete", json!({"output": "sent"}))
        .await
        .ok();
    assert_eq!(again["taskId"], task["taskId"]);

    let view = app
        .status(&format!("task={}", published["taskId"].as_str().unwrap()))
        .await["task"]
        .clone();
    let copy = &view["copies"][0];
    let events: Vec<&str> = copy["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "claimed",
            "progress",
            "retrying",
            "due",
            "claimed",
            "requeued",
            "claimed",
            "completed"
        ]
    );
    assert_eq!(copy["history"][2]["detail"], "smtp timeout");
    assert_eq!(copy["history"][5]["detail"], "lease expired");
    assert_eq!(copy["history"][0]["workerId"], worker.as_str());
    assert_eq!(
        copy["routedBy"],
        json!([{"field": "email", "pattern": "@example\\.com$", "value": "ada@example.com"}])
    );
    assert_eq!(
        (copy["state"].as_str(), copy["output"].as_str()),
        (Some("completed"), Some("sent"))
    );
}

#[tokio::test]
async fn the_sweep_removes_finished_tasks_after_their_retention() {
    let app = spawn_app_with(|s| {
        s.tasks.keep_finished_secs = 3600;
        s.tasks.keep_failed_secs = 7200;
        s.tasks.max_attempts = 1;
        // Without the archive, which would keep the swept copy (see
        // tests/integration/archive.rs).
        s.tasks.archive_secs = 0;
    })
    .await;
    app.put_interest("q", json!("*")).await.ok();
    app.publish_data(json!({"n": 1})).await;
    app.publish_data(json!({"n": 2})).await;
    let worker = app.register(&["q"]).await;
    let done = app.claim(&worker).await;
    app.update(&worker, &done, "complete", json!({})).await.ok();
    let failed = app.claim(&worker).await;
    app.update(&worker, &failed, "fail", json!({})).await.ok();
    let exists = |t: &serde_json::Value| {
        let id = t["taskId"].as_str().unwrap().to_owned();
        let app = &app;
        async move {
            app.send(Method::GET, &format!("/status?task={id}"), None)
                .await
                .status
                .is_success()
        }
    };

    app.advance(3601.0).await;
    assert!(
        !exists(&done).await,
        "the completed task is swept after an hour"
    );
    assert!(exists(&failed).await, "the failed one is kept longer");
    app.advance(3600.0).await;
    assert!(!exists(&failed).await);
    assert_eq!(app.queue("q").await["failed"], 0);
}
