//! Every bad input gets a 4xx JSON error naming the field, and changes nothing.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

/// Everything a bad request could have changed.
async fn snapshot(app: &TestApp) -> Value {
    app.status("queues&interests&workers&counters&failedQueue")
        .await
}

#[tokio::test]
async fn bad_publishes_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let before = snapshot(&app).await;

    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"publisher": "x"}), "missing_field", "data"),
        (json!({"data": [1, 2]}), "invalid_field", "data"),
        (json!({"data": "text"}), "invalid_field", "data"),
        (
            json!({"data": {}, "scope": "some"}),
            "invalid_field",
            "scope",
        ),
        (
            json!({"data": {}, "runAt": "tomorrow"}),
            "invalid_field",
            "runAt",
        ),
        (json!({"data": {}, "runAt": -5}), "invalid_field", "runAt"),
        (
            json!({"data": {}, "priority": 101}),
            "invalid_field",
            "priority",
        ),
        (
            json!({"data": {}, "priority": "soonish"}),
            "invalid_field",
            "priority",
        ),
        (
            json!({"data": {}, "maxAttempts": 0}),
            "invalid_field",
            "maxAttempts",
        ),
        (json!({"data": {}, "ttr": 1.5}), "invalid_field", "ttr"),
        (
            json!({"data": {}, "singularlyRun": "yes"}),
            "invalid_field",
            "singularlyRun",
        ),
        (
            json!({"data": {}, "publisher": 7}),
            "invalid_field",
            "publisher",
        ),
        (
            json!({"data": {}, "singlarlyRun": true}),
            "unknown_field",
            "singlarlyRun",
        ),
        (
            json!([{"data": {}}, {"data": 5}]),
            "invalid_field",
            "[1].data",
        ),
        (json!([{"data": {}}, 3]), "invalid_field", "[1]"),
        (json!([]), "invalid_field", "[]"),
    ];
    for (body, code, field) in cases {
        app.publish(body.clone())
            .await
            .error(400, code, Some(field));
    }

    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn malformed_json_and_wrong_bodies_are_refused() {
    let app = spawn_app().await;
    app.raw(Method::PUT, "/task", "{\"data\": ")
        .await
        .error(400, "malformed_json", None);
    app.raw(Method::PUT, "/task", "42")
        .await
        .error(400, "invalid_body", None);
    app.raw(Method::PUT, "/worker", "[\"a\"]")
        .await
        .error(400, "invalid_body", None);
    app.raw(Method::PUT, "/task?data=%7B%7D", "[{\"data\": {}}]")
        .await
        .error(400, "invalid_body", None);
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let app = spawn_app_with(|s| s.limits.max_body_bytes = 1024).await;
    app.put_interest("q", json!("*")).await.ok();
    let big = "x".repeat(2000);
    app.publish(json!({"data": {"big": big}}))
        .await
        .error(413, "payload_too_large", None);
    assert_eq!(app.queue("q").await["ready"], 0);
}

#[tokio::test]
async fn a_batch_over_the_limit_is_refused_whole() {
    let app = spawn_app_with(|s| s.limits.max_batch = 3).await;
    app.put_interest("q", json!("*")).await.ok();
    let batch: Vec<Value> = (0..4).map(|n| json!({"data": {"n": n}})).collect();
    app.publish(Value::Array(batch))
        .await
        .error(413, "batch_too_large", None);
    assert_eq!(app.queue("q").await["ready"], 0);
}

#[tokio::test]
async fn bad_interests_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    app.put_interest("q", json!({"email": "x"})).await.ok();
    let before = snapshot(&app).await;

    let message = app
        .put_interest("q", json!({"email": "(unclosed"}))
        .await
        .error(400, "invalid_interest", Some("interests.email"));
    assert!(message.contains("unclosed group"), "{message}");
    app.put_interest("q", json!({"": "x"})).await.error(
        400,
        "invalid_interest",
        Some("interests."),
    );
    app.put_interest("q", json!({"a..b": "x"})).await.error(
        400,
        "invalid_interest",
        Some("interests.a..b"),
    );
    app.put_interest("q", json!({"a": 5})).await.error(
        400,
        "invalid_interest",
        Some("interests.a"),
    );
    app.put_interest("q", json!(["a"]))
        .await
        .error(400, "invalid_interest", Some("interests"));
    app.put_interest("q", json!({}))
        .await
        .error(400, "invalid_interest", Some("interests"));
    app.put_interest("q", json!({"a": "x".repeat(2000)}))
        .await
        .error(400, "invalid_interest", Some("interests.a"));
    let many: serde_json::Map<String, Value> =
        (0..40).map(|i| (format!("f{i}"), json!("x"))).collect();
    app.put_interest("q", Value::Object(many)).await.error(
        400,
        "invalid_interest",
        Some("interests"),
    );
    app.put_interest("", json!("*"))
        .await
        .error(400, "invalid_field", Some("queue"));
    app.put_interest(&"q".repeat(129), json!("*"))
        .await
        .error(400, "invalid_field", Some("queue"));
    app.put_interest("has space", json!("*"))
        .await
        .error(400, "invalid_field", Some("queue"));
    app.send(Method::PUT, "/interest", Some(json!({"queue": "q"})))
        .await
        .error(400, "missing_field", Some("interests"));

    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn bad_worker_and_task_parameters_are_refused() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.publish_data(json!({"n": 1})).await;
    let worker = app.register(&["q"]).await;
    let before = snapshot(&app).await;

    app.send(Method::PUT, "/worker", Some(json!({})))
        .await
        .error(400, "missing_field", Some("queues"));
    app.send(Method::PUT, "/worker", Some(json!({"queues": []})))
        .await
        .error(400, "invalid_field", Some("queues"));
    app.send(Method::PUT, "/worker", Some(json!({"queues": "q"})))
        .await
        .error(400, "invalid_field", Some("queues"));
    app.send(Method::PUT, "/worker", Some(json!({"queues": ["q", 1]})))
        .await
        .error(400, "invalid_field", Some("queues[1]"));
    app.send(Method::PUT, "/worker", Some(json!({"queues": ["q", "q"]})))
        .await
        .error(400, "invalid_field", Some("queues"));
    app.send(Method::GET, "/task", None)
        .await
        .error(400, "missing_field", Some("workerId"));
    app.send(Method::GET, "/task?workerId=nope", None)
        .await
        .error(400, "invalid_field", Some("workerId"));
    app.send(
        Method::GET,
        "/task?workerId=01900000-0000-7000-8000-000000000000",
        None,
    )
    .await
    .error(404, "unknown_worker", Some("workerId"));
    app.send(
        Method::GET,
        &format!("/task?workerId={worker}&count=0"),
        None,
    )
    .await
    .error(400, "invalid_field", Some("count"));
    app.send(
        Method::GET,
        &format!("/task?workerId={worker}&wait=999"),
        None,
    )
    .await
    .error(400, "invalid_field", Some("wait"));
    let task = json!({"taskId": "01900000-0000-7000-8000-000000000000"});
    app.update(&worker, &task, "done", json!({}))
        .await
        .error(400, "invalid_field", Some("state"));
    app.send(
        Method::POST,
        "/task",
        Some(json!({"workerId": worker, "state": "complete"})),
    )
    .await
    .error(400, "missing_field", Some("taskId"));
    app.send(Method::DELETE, "/task", None)
        .await
        .error(400, "invalid_field", Some("workerId"));
    app.send(
        Method::DELETE,
        "/worker?workerId=01900000-0000-7000-8000-000000000000",
        None,
    )
    .await
    .error(404, "unknown_worker", Some("workerId"));
    app.send(
        Method::GET,
        "/status?task=01900000-0000-7000-8000-000000000000",
        None,
    )
    .await
    .error(404, "unknown_task", Some("taskId"));
    app.send(Method::GET, "/status?queus", None)
        .await
        .error(400, "unknown_field", Some("queus"));

    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = spawn_app().await;
    app.send(Method::GET, "/nowhere", None)
        .await
        .error(404, "not_found", None);
    app.send(Method::PATCH, "/task", None)
        .await
        .error(405, "method_not_allowed", None);
    app.send(Method::POST, "/_testing/nothing", None)
        .await
        .error(404, "not_found", None);
}

#[tokio::test]
async fn the_test_clock_is_not_mounted_in_normal_service() {
    let app = spawn_app_with(|s| s.testing.manual_clock = false).await;
    app.send(Method::POST, "/_testing/clock", Some(json!({"advance": 1})))
        .await
        .error(404, "not_found", None);
}
