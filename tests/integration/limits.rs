//! Per-queue limits: pause and resume, tasks running at once, claims per
//! second.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_paused_queue_takes_tasks_and_hands_none_out_until_resumed() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let paused = app
        .send(
            Method::PUT,
            "/queue",
            Some(json!({"queue": "q", "paused": true})),
        )
        .await
        .ok();
    assert_eq!(paused["settings"]["paused"], true);
    app.publish_data(json!({"n": 1})).await;
    let worker = app.register(&["q"]).await;
    assert!(app.claim(&worker).await.is_null());
    let status = app.status("queue=q").await;
    assert_eq!(
        (
            status["queue"]["ready"].as_u64(),
            status["settings"]["paused"].as_bool()
        ),
        (Some(1), Some(true))
    );

    // A long poll waiting on the paused queue is woken by the resume.
    let (client, url) = (
        app.client.clone(),
        format!("{}/task?workerId={worker}&wait=20", app.base),
    );
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
    app.send(Method::PUT, "/queue?queue=q&paused=false", None)
        .await
        .ok();
    let task = poll.await.unwrap();
    assert_eq!(task["data"]["n"], 1);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn max_running_bounds_a_queue_across_all_workers() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.send(
        Method::PUT,
        "/queue",
        Some(json!({"queue": "q", "maxRunning": 2})),
    )
    .await
    .ok();
    for n in 0..5 {
        app.publish_data(json!({"n": n})).await;
    }
    let workers = [
        app.register(&["q"]).await,
        app.register(&["q"]).await,
        app.register(&["q"]).await,
    ];
    let mut held = Vec::new();
    for w in &workers {
        held.extend(app.claim_n(w, 5).await.into_iter().map(|t| (w.clone(), t)));
    }
    assert_eq!(held.len(), 2, "two at once, whoever asks");
    let (w, t) = held.pop().unwrap();
    app.update(&w, &t, "complete", json!({})).await.ok();
    assert_eq!(
        app.claim_n(&workers[2], 5).await.len(),
        1,
        "one slot opened"
    );
    // Cleared, the rest go.
    app.send(
        Method::PUT,
        "/queue",
        Some(json!({"queue": "q", "maxRunning": null})),
    )
    .await
    .ok();
    assert_eq!(app.claim_n(&workers[2], 5).await.len(), 2);
    assert!(
        app.status("queue=q").await["settings"].is_null(),
        "no limits left"
    );
}

#[tokio::test]
async fn rate_limit_spaces_claims_by_the_clock() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.send(
        Method::PUT,
        "/queue",
        Some(json!({"queue": "q", "rateLimit": 4})),
    )
    .await
    .ok();
    for n in 0..20 {
        app.publish_data(json!({"n": n})).await;
    }
    let worker = app.register(&["q"]).await;
    assert_eq!(
        app.claim_n(&worker, 20).await.len(),
        4,
        "a second's worth at once"
    );
    assert_eq!(app.claim_n(&worker, 20).await.len(), 0);
    app.advance(0.5).await;
    assert_eq!(app.claim_n(&worker, 20).await.len(), 2);
    app.advance(10.0).await;
    assert_eq!(
        app.claim_n(&worker, 20).await.len(),
        4,
        "no more than the bucket holds"
    );
}

#[tokio::test]
async fn bad_queue_settings_are_refused() {
    let app = spawn_app().await;
    let put = |body| app.send(Method::PUT, "/queue", Some(body));
    put(json!({"queue": "q", "maxRunning": 0})).await.error(
        400,
        "invalid_field",
        Some("maxRunning"),
    );
    put(json!({"queue": "q", "rateLimit": -1})).await.error(
        400,
        "invalid_field",
        Some("rateLimit"),
    );
    put(json!({"queue": "q", "paused": "yes"}))
        .await
        .error(400, "invalid_field", Some("paused"));
    put(json!({"maxRunning": 1}))
        .await
        .error(400, "missing_field", Some("queue"));
    put(json!({"queue": "q", "max": 1}))
        .await
        .error(400, "unknown_field", Some("max"));
    assert!(app.status("queue=q").await["settings"].is_null());
}
