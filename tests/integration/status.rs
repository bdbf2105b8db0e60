//! `GET /status` and its parameters, and parameters given as a query string.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::spawn_app;

#[tokio::test]
async fn status_answers_each_parameter_under_its_own_key() {
    let app = spawn_app().await;
    app.put_interest("mail", json!({"email": "@"})).await.ok();
    app.put_interest("all", json!("*")).await.ok();
    let worker = app.register(&["mail"]).await;
    let published = app.publish_data(json!({"email": "a@b"})).await;
    // Reaches `all` (no worker there) and `mail` (one worker: one copy).
    app.publish(json!({"data": {"email": "c@d"}, "scope": "all"}))
        .await
        .ok();

    let s = app
        .status(&format!(
            "queue=mail&queues&workerQueue={worker}&interests&workers&failedQueue&counters"
        ))
        .await;

    assert_eq!(
        s["queue"],
        json!({"name": "mail", "ready": 2, "scheduled": 0, "running": 0, "failed": 0, "blocked": 0})
    );
    assert_eq!(
        s["queues"],
        json!([
            {"name": "all", "ready": 1, "scheduled": 0, "running": 0, "failed": 0, "blocked": 0},
            {"name": "mail", "ready": 2, "scheduled": 0, "running": 0, "failed": 0, "blocked": 0},
        ])
    );
    assert_eq!(s["workerQueue"], json!({"workerId": worker, "ready": 1}));
    assert_eq!(s["interests"], json!({"all": "*", "mail": {"email": "@"}}));
    assert_eq!(s["workers"][0]["workerId"], worker.as_str());
    assert_eq!(s["workers"][0]["queues"], json!(["mail"]));
    assert_eq!(s["workers"][0]["state"], "IDLE");
    assert_eq!(s["failedQueue"], json!([]));
    assert_eq!(s["counters"]["published"], 2);
    assert_eq!(s["counters"]["routed"], 3);

    let copy_id = published["copies"][0]["taskId"].as_str().unwrap();
    let one = app.status(&format!("task={copy_id}")).await;
    assert_eq!(one["task"]["taskId"], copy_id);
    assert_eq!(one["task"]["state"], "ready");
    assert_eq!(
        app.status("workerQueue").await["workerQueue"],
        json!({worker: 1})
    );
}

#[tokio::test]
async fn status_without_parameters_is_a_summary() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.register(&["q"]).await;
    let s = app.status("").await;
    assert_eq!(s["queues"][0]["name"], "q");
    assert_eq!(s["workers"], 1);
    assert!(s["counters"].is_object());
}

#[tokio::test]
async fn every_route_takes_query_string_parameters_too() {
    let app = spawn_app().await;
    let interests = "%7B%22action%22%3A%22%5EuserCreated%24%22%7D"; // {"action":"^userCreated$"}
    app.send(
        Method::PUT,
        &format!("/interest?queue=points&interests={interests}"),
        None,
    )
    .await
    .ok();
    app.send(Method::PUT, "/interest?queue=all&interests=*", None)
        .await
        .ok();
    let published = app
        .send(Method::PUT, "/task?publisher=q&data=%7B%22action%22%3A%22userCreated%22%7D&singularlyEnqueue=true&priority=high", None)
        .await
        .ok();
    assert_eq!(published["queues"], json!(["all", "points"]));
    let worker = app
        .send(Method::PUT, "/worker?queues=points,all", None)
        .await
        .ok()["workerId"]
        .as_str()
        .unwrap()
        .to_owned();
    let task = app
        .send(Method::GET, &format!("/task?workerId={worker}"), None)
        .await
        .ok();
    assert_eq!(
        (
            task["queue"].as_str(),
            task["priority"].as_i64(),
            task["singularlyEnqueue"].as_bool()
        ),
        (Some("points"), Some(10), Some(true))
    );
    let done = app
        .send(
            Method::POST,
            &format!(
                "/task?workerId={worker}&taskId={}&state=fail&failReason=nope&reEnqueue=true",
                task["taskId"].as_str().unwrap()
            ),
            None,
        )
        .await
        .ok();
    assert_eq!(done["state"], "ready");
    app.send(Method::DELETE, "/queue?queue=all", None)
        .await
        .ok();
    app.send(Method::DELETE, &format!("/worker?workerId={worker}"), None)
        .await
        .ok();
}

#[tokio::test]
async fn only_singular_tasks_show_a_fingerprint() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let plain = app.publish_data(json!({"n": 1})).await;
    let single = app
        .publish(json!({"data": {"n": 2}, "singularlyRun": true}))
        .await
        .ok();
    let task = |p: &Value| p["copies"][0]["taskId"].as_str().unwrap().to_owned();
    let plain = app.status(&format!("task={}", task(&plain))).await;
    assert!(plain["task"].get("fingerprint").is_none(), "{plain}");
    let single = app.status(&format!("task={}", task(&single))).await;
    let fp = single["task"]["fingerprint"].as_str().unwrap();
    assert_eq!(fp.len(), 32);
    assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
}
