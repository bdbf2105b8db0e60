//! Named schedules: intervals, cron with time zones and H, one-offs, the
//! catch-up rule, restarts.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_in, TestApp};

async fn now(app: &TestApp) -> f64 {
    app.send(Method::POST, "/_testing/clock", Some(json!({"advance": 0})))
        .await
        .ok()["now"]
        .as_f64()
        .unwrap()
}

async fn schedule(app: &TestApp, body: Value) -> Value {
    app.send(Method::PUT, "/schedule", Some(body)).await.ok()
}

async fn ready(app: &TestApp, queue: &str) -> u64 {
    app.queue(queue).await["ready"].as_u64().unwrap()
}

#[tokio::test]
async fn an_interval_fires_through_the_normal_route_and_catches_up_once() {
    let app = spawn_app().await;
    app.put_interest("reports", json!({"kind": "report"}))
        .await
        .ok();
    app.put_interest("audit", json!("*")).await.ok();
    schedule(&app, json!({"name": "hourly-report", "every": 60, "task": {"data": {"kind": "report"}, "priority": "high"}})).await;

    app.advance(59.0).await;
    assert_eq!(ready(&app, "reports").await, 0);
    app.advance(1.0).await;
    assert_eq!(
        (ready(&app, "reports").await, ready(&app, "audit").await),
        (1, 1),
        "fanned out"
    );
    app.advance(60.0).await;
    assert_eq!(ready(&app, "reports").await, 2);
    // Ten periods missed: one firing, not ten.
    app.advance(600.0).await;
    assert_eq!(ready(&app, "reports").await, 3);
    let listed = app.status("schedules").await["schedules"][0].clone();
    assert_eq!(listed["name"], "hourly-report");
    assert!(
        listed["nextRun"].as_f64().unwrap() > now(&app).await,
        "the next due time is ahead"
    );
    let worker = app.register(&["reports"]).await;
    assert_eq!(app.claim(&worker).await["priority"], 10);
}

#[tokio::test]
async fn a_cron_fires_at_its_due_times() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let s = schedule(&app, json!({"name": "top-of-hour", "cron": "0 * * * *", "timezone": "Asia/Kolkata", "task": {"data": {"n": 1}}})).await;
    let next = s["nextRun"].as_f64().unwrap();
    // Kolkata is UTC+5:30: its "minute 0" is half past in UTC.
    assert_eq!((next as u64) % 3600, 1800, "{next}");
    let t = now(&app).await;

    app.advance(next - t - 1.0).await;
    assert_eq!(ready(&app, "q").await, 0);
    app.advance(1.0).await;
    assert_eq!(ready(&app, "q").await, 1);
    app.advance(5.0 * 3600.0).await;
    assert_eq!(ready(&app, "q").await, 2, "five hours missed, one firing");
}

#[tokio::test]
async fn h_spreads_schedules_but_keeps_each_in_place() {
    let app = spawn_app().await;
    let mut minutes = std::collections::HashSet::new();
    for i in 0..8 {
        let name = format!("nightly-{i}");
        let first = schedule(
            &app,
            json!({"name": name, "cron": "H 2 * * *", "task": {"data": {}}}),
        )
        .await;
        let again = schedule(
            &app,
            json!({"name": name, "cron": "H 2 * * *", "task": {"data": {}}}),
        )
        .await;
        assert_eq!(
            first["nextRun"], again["nextRun"],
            "the same name, the same minute"
        );
        let next = first["nextRun"].as_f64().unwrap() as u64;
        assert_eq!(next % 86_400 / 3600, 2, "within the 2 o'clock hour (UTC)");
        minutes.insert(next % 3600 / 60);
    }
    assert!(minutes.len() > 1, "spread over the hour: {minutes:?}");
}

#[tokio::test]
async fn a_one_off_is_replaceable_and_fires_once() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let t = now(&app).await;
    schedule(
        &app,
        json!({"name": "frozen-build", "at": t + 100.0, "task": {"data": {"build": 1}}}),
    )
    .await;
    schedule(
        &app,
        json!({"name": "frozen-build", "at": t + 50.0, "task": {"data": {"build": 2}}}),
    )
    .await;

    app.advance(50.0).await;
    app.advance(100.0).await;

    assert_eq!(ready(&app, "q").await, 1);
    let worker = app.register(&["q"]).await;
    assert_eq!(
        app.claim(&worker).await["data"]["build"],
        2,
        "the replacement ran"
    );
    let listed = app.status("schedules").await["schedules"][0].clone();
    assert!(listed["nextRun"].is_null());
    assert_eq!(listed["lastRun"].as_f64().unwrap(), t + 50.0);
    app.send(Method::DELETE, "/schedule?name=frozen-build", None)
        .await
        .ok();
    assert_eq!(app.status("schedules").await["schedules"], json!([]));
}

#[tokio::test]
async fn a_due_time_passed_while_stopped_fires_once_after_the_restart() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.put_interest("c", json!({"cron": "."})).await.ok();
    schedule(&app, json!({"name": "minutely", "every": 60, "task": {"data": {"n": 1}, "key": "tick", "ttl": 3600}})).await;
    // Due half an hour from now, so that it falls after the first ten
    // minutes below whatever the time of day.
    let minute = ((now(&app).await / 60.0) as u64 + 30) % 60;
    let hourly = schedule(
        &app,
        json!({"name": "hourly", "cron": format!("{minute} * * * *"), "task": {"data": {"cron": "yes"}}}),
    )
    .await;
    let dir = app.stop().await;

    let app = spawn_app_in(dir, |_| {}).await;
    let to_cron = hourly["nextRun"].as_f64().unwrap() - now(&app).await;
    app.advance(600.0).await;

    assert_eq!(
        ready(&app, "q").await,
        1,
        "the interval fired once for ten missed minutes"
    );
    let first = app.status("key=tick").await["key"][0].clone();
    assert_eq!(
        first["expireAt"].as_f64().unwrap() - first["createdAt"].as_f64().unwrap(),
        3600.0,
        "ttl counts from each firing"
    );
    app.advance((to_cron - 600.0).max(0.0) + 3.0 * 3600.0).await;
    assert_eq!(
        ready(&app, "c").await,
        1,
        "the cron fired once for its missed hours"
    );
    // In q: the interval's second firing and the cron's copy; the first
    // firing expired unclaimed.
    assert_eq!(ready(&app, "q").await, 2);
    let status = app.status("schedules&counters").await;
    assert_eq!(status["counters"]["expired"], 1);
    for s in status["schedules"].as_array().unwrap() {
        assert!(
            s["lastRun"].as_f64().is_some(),
            "{} fired after the restart",
            s["name"]
        );
    }
}

#[tokio::test]
async fn bad_schedules_are_refused() {
    let app = spawn_app().await;
    let put = |body| app.send(Method::PUT, "/schedule", Some(body));
    let task = json!({"data": {}});
    put(json!({"name": "s", "cron": "* * * * *", "every": 5, "task": task}))
        .await
        .error(400, "invalid_field", Some("cron"));
    put(json!({"name": "s", "task": task}))
        .await
        .error(400, "invalid_field", Some("cron"));
    put(json!({"name": "s", "cron": "61 * * * *", "task": task}))
        .await
        .error(400, "invalid_field", Some("cron"));
    put(json!({"name": "s", "cron": "* * *", "task": task}))
        .await
        .error(400, "invalid_field", Some("cron"));
    put(json!({"name": "s", "cron": "* * * * *", "timezone": "Nowhere/Else", "task": task}))
        .await
        .error(400, "invalid_field", Some("timezone"));
    put(json!({"name": "s", "every": 0, "task": task}))
        .await
        .error(400, "invalid_field", Some("every"));
    put(json!({"name": "s", "every": 5, "timezone": "UTC", "task": task}))
        .await
        .error(400, "invalid_field", Some("timezone"));
    put(json!({"name": "a b", "every": 5, "task": task}))
        .await
        .error(400, "invalid_field", Some("name"));
    put(json!({"name": "s", "every": 5}))
        .await
        .error(400, "missing_field", Some("task"));
    put(json!({"name": "s", "every": 5, "task": {"priority": 1}}))
        .await
        .error(400, "missing_field", Some("task.data"));
    put(json!({"name": "s", "every": 5, "task": {"data": {}, "runAt": 5}}))
        .await
        .error(400, "invalid_field", Some("task"));
    app.send(Method::DELETE, "/schedule?name=ghost", None)
        .await
        .error(404, "unknown_schedule", Some("name"));
    assert_eq!(app.status("schedules").await["schedules"], json!([]));
}

#[tokio::test]
async fn a_paused_schedule_does_not_fire_and_resumes_from_its_next_due_time() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    schedule(
        &app,
        json!({"name": "tick", "every": 60, "task": {"data": {"n": 1}}}),
    )
    .await;
    app.advance(60.0).await;
    assert_eq!(ready(&app, "q").await, 1);
    let paused = schedule(&app, json!({"name": "tick", "paused": true})).await;
    assert_eq!(paused["paused"], true);
    app.advance(600.0).await;
    assert_eq!(ready(&app, "q").await, 1, "paused: no firing, none made up");
    let listed = app.status("schedules").await["schedules"][0].clone();
    assert_eq!(
        (listed["name"].as_str(), listed["paused"].as_bool()),
        (Some("tick"), Some(true))
    );
    let resumed = schedule(&app, json!({"name": "tick", "paused": false})).await;
    let at = now(&app).await;
    let next = resumed["nextRun"].as_f64().unwrap();
    assert!(
        next > at && next <= at + 60.0,
        "next due after the resume: {resumed}"
    );
    app.advance(60.0).await;
    assert_eq!(ready(&app, "q").await, 2);

    // Created paused: it waits for a resume; a one-off missed while paused
    // fires at the next tick after it.
    let at = now(&app).await + 10.0;
    schedule(
        &app,
        json!({"name": "once", "at": at, "paused": true, "task": {"data": {"n": 2}}}),
    )
    .await;
    app.advance(30.0).await;
    assert_eq!(ready(&app, "q").await, 2);
    schedule(&app, json!({"name": "once", "paused": false})).await;
    app.advance(1.0).await;
    assert_eq!(ready(&app, "q").await, 3);

    // Bad pauses change nothing.
    app.send(
        Method::PUT,
        "/schedule",
        Some(json!({"name": "nope", "paused": true})),
    )
    .await
    .error(404, "unknown_schedule", None);
    app.send(
        Method::PUT,
        "/schedule",
        Some(json!({"name": "tick", "paused": "yes"})),
    )
    .await
    .error(400, "invalid_field", Some("paused"));
    app.send(
        Method::PUT,
        "/schedule",
        Some(json!({"name": "tick", "every": 5, "paused": true})),
    )
    .await
    .error(400, "missing_field", Some("task"));
    let listed = app.status("schedules").await["schedules"].clone();
    let tick = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "tick")
        .unwrap();
    assert_eq!(
        (tick["paused"].as_bool(), &tick["spec"]),
        (Some(false), &json!({"every": {"secs": 60}}))
    );
}
