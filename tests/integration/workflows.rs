//! Workflows over HTTP: a completed copy's output published on as a task
//! (`publishOutput` on a publish or a queue), its lineage both ways, the
//! depth that ends a loop, what does not go on, and bad input.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{run_page, spawn_app, spawn_app_in, spawn_app_with, TestApp};

/// Claims the next copy of `queue` with a new worker and completes it with
/// `output`; returns the copy as claimed.
async fn complete_next(app: &TestApp, queue: &str, output: Value) -> Value {
    let w = app.register(&[queue]).await;
    let t = app.claim(&w).await;
    assert!(t.is_object(), "{queue} has a ready copy");
    app.update(&w, &t, "complete", json!({"output": output}))
        .await
        .ok();
    t
}

async fn task(app: &TestApp, id: &Value) -> Value {
    app.status(&format!("task={}", id.as_str().unwrap())).await["task"].clone()
}

#[tokio::test]
async fn an_output_goes_on_as_a_task_through_the_interests_carrying_its_parent() {
    let app = spawn_app().await;
    app.put_interest("charge", json!({"type": "^order$"}))
        .await
        .ok();
    for q in ["email", "ship"] {
        app.put_interest(q, json!({"stage": "^charged$"}))
            .await
            .ok();
    }
    app.publish(
        json!({"data": {"type": "order", "id": 42}, "publishOutput": true, "priority": "high"}),
    )
    .await
    .ok();
    let charge = complete_next(&app, "charge", json!({"stage": "charged", "id": 42})).await;
    // Both stages have the output, as one publish of two copies.
    let email = app.claim(&app.register(&["email"]).await).await;
    let ship_worker = app.register(&["ship"]).await;
    let ship = app.claim(&ship_worker).await;
    assert_eq!(email["data"], json!({"stage": "charged", "id": 42}));
    assert_eq!(email["publishId"], ship["publishId"]);
    for child in [&email, &ship] {
        assert_eq!(child["parent"], charge["taskId"]);
        assert_eq!(child["depth"], 1);
        assert_eq!(child["publishOutput"], true, "the publish's option goes on");
        assert_eq!(child["priority"], charge["priority"]);
        assert_eq!(child["publisher"], charge["publisher"]);
    }
    // The parent names its children.
    let parent = task(&app, &charge["taskId"]).await;
    assert_eq!(parent["state"], "completed");
    assert_eq!(parent["output"], json!({"stage": "charged", "id": 42}));
    let mut children: Vec<&str> = parent["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|c| c["queue"].as_str().unwrap())
        .collect();
    children.sort();
    assert_eq!(children, ["email", "ship"]);
    // An output that is not an object does not go on; one that no queue
    // wants is discarded and counted, as any publish.
    let before = app.status("counters").await["counters"].clone();
    app.update(
        &ship_worker,
        &ship,
        "complete",
        json!({"output": "shipped"}),
    )
    .await
    .ok();
    let after = app.status("counters").await["counters"].clone();
    assert_eq!(after["published"], before["published"]);
    app.update(
        email["workerId"].as_str().unwrap(),
        &email,
        "complete",
        json!({"output": {"stage": "emailed"}}),
    )
    .await
    .ok();
    let last = app.status("counters").await["counters"].clone();
    assert_eq!(last["published"], after["published"].as_u64().unwrap() + 1);
    assert_eq!(last["discarded"], after["discarded"].as_u64().unwrap() + 1);
    assert!(task(&app, &email["taskId"]).await.get("children").is_none());
}

#[tokio::test]
async fn the_console_shows_a_tasks_parent_and_what_its_output_became() {
    let app = spawn_app().await;
    app.put_interest("first", json!({"step": "^1$"})).await.ok();
    app.put_interest("second", json!({"step": "^2$"}))
        .await
        .ok();
    app.publish(json!({"data": {"step": "1"}, "publishOutput": true}))
        .await
        .ok();
    let first = complete_next(&app, "first", json!({"step": "2"})).await;
    let child = task(&app, &first["taskId"]).await["children"][0]["taskId"].clone();
    let (first, child) = (first["taskId"].as_str().unwrap(), child.as_str().unwrap());
    let mut site = crate::admin::Site::new(&app);
    let page = site.get(&format!("/admin/tasks/{first}")).await;
    let html = page.html();
    assert!(html.contains("Made from its output"), "{html}");
    assert!(html.contains(&format!("href=\"/admin/tasks/{child}\"")));
    assert!(html.contains("is published on as a task"));
    let page = site.get(&format!("/admin/tasks/{child}")).await;
    let html = page.html();
    assert!(
        html.contains(&format!(
            "Made from the output of <a href=\"/admin/tasks/{first}\"><code>{first}</code></a> (completed), 1 step from"
        )),
        "{html}"
    );
    // A task outside any workflow has no such section.
    let plain = app.publish_data(json!({"step": "2"})).await;
    let plain = plain["copies"][0]["taskId"].as_str().unwrap().to_owned();
    let page = site.get(&format!("/admin/tasks/{plain}")).await;
    assert!(!page.html().contains("workflow-h"));
}

#[tokio::test]
async fn a_queues_setting_publishes_its_outputs_and_does_not_pass_on() {
    let app = spawn_app().await;
    app.put_interest("resize", json!({"image": ".*"}))
        .await
        .ok();
    app.put_interest("index", json!({"resized": ".*"}))
        .await
        .ok();
    app.put_interest("archive", json!({"indexed": ".*"}))
        .await
        .ok();
    let set = app
        .send(
            Method::PUT,
            "/queue",
            Some(json!({"queue": "resize", "publishOutput": true})),
        )
        .await
        .ok();
    assert_eq!(set["settings"]["publishOutput"], true);
    app.publish_data(json!({"image": "a.png"})).await;
    let resize = complete_next(&app, "resize", json!({"resized": "a-small.png"})).await;
    assert!(resize.get("publishOutput").is_none());
    let index = complete_next(&app, "index", json!({"indexed": "a"})).await;
    assert_eq!(index["parent"], resize["taskId"]);
    assert!(
        index.get("publishOutput").is_none(),
        "a queue's setting is its own"
    );
    // `index` does not publish its outputs: nothing reached `archive`.
    assert_eq!(app.queue("archive").await["ready"], 0);
    // The setting is cleared by false.
    app.send(
        Method::PUT,
        "/queue",
        Some(json!({"queue": "resize", "publishOutput": false})),
    )
    .await
    .ok();
    app.publish_data(json!({"image": "b.png"})).await;
    complete_next(&app, "resize", json!({"resized": "b-small.png"})).await;
    assert_eq!(app.queue("index").await["ready"], 0);
}

#[tokio::test]
async fn a_loop_of_outputs_ends_at_the_depth_limit_with_a_reason() {
    let app = spawn_app_with(|s| s.tasks.max_output_depth = 3).await;
    app.put_interest("loop", json!({"n": ".*"})).await.ok();
    app.send(
        Method::PUT,
        "/queue",
        Some(json!({"queue": "loop", "publishOutput": true})),
    )
    .await
    .ok();
    app.publish_data(json!({"n": "0"})).await;
    let mut depths = Vec::new();
    let mut last = Value::Null;
    for i in 1..=4 {
        last = complete_next(&app, "loop", json!({"n": i.to_string()})).await;
        depths.push(last["depth"].as_u64().unwrap_or(0));
    }
    assert_eq!(depths, [0, 1, 2, 3]);
    // The fourth's output would be 4 deep: it failed for good, with no retry
    // (a retry would make the same output), and nothing more was made.
    let failed = task(&app, &last["taskId"]).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let reason = failed["failReason"].as_str().unwrap();
    assert!(reason.contains("max_output_depth"), "{reason}");
    assert_eq!(app.queue("loop").await["ready"], 0);
    assert_eq!(app.queue("loop").await["scheduled"], 0);
}

#[tokio::test]
async fn what_does_not_go_on_a_requeue_a_stop_and_a_failure() {
    let app = spawn_app().await;
    app.put_interest("work", json!({"job": ".*"})).await.ok();
    app.put_interest("next", json!({"done": ".*"})).await.ok();
    for _ in 0..3 {
        app.publish(json!({"data": {"job": "x"}, "publishOutput": true}))
            .await
            .ok();
    }
    let w = app.register(&["work"]).await;
    // Completed and put back (re-enqueue): the copy did not end.
    let t = app.claim(&w).await;
    app.update(
        &w,
        &t,
        "complete",
        json!({"output": {"done": "1"}, "reEnqueue": true}),
    )
    .await
    .ok();
    // Asked to stop while it ran: its output is not wanted.
    let stopped = app.claim(&w).await;
    app.send(
        Method::DELETE,
        "/task",
        Some(json!({"taskId": stopped["taskId"]})),
    )
    .await
    .ok();
    app.update(&w, &stopped, "complete", json!({"output": {"done": "2"}}))
        .await
        .ok();
    // A failure has no output to publish.
    let third = app.claim(&w).await;
    app.update(&w, &third, "fail", json!({"failReason": "no"}))
        .await
        .ok();
    assert_eq!(app.queue("next").await["ready"], 0);
}

#[tokio::test]
async fn an_output_and_its_parents_end_are_kept_together_across_a_restart() {
    let app = spawn_app().await;
    app.put_interest("a", json!({"step": "^a$"})).await.ok();
    app.put_interest("b", json!({"step": "^b$"})).await.ok();
    app.publish(json!({"data": {"step": "a"}, "publishOutput": true}))
        .await
        .ok();
    let a = complete_next(&app, "a", json!({"step": "b"})).await;
    let dir = app.stop().await;
    let app = spawn_app_in(dir, |_| {}).await;
    let parent = task(&app, &a["taskId"]).await;
    assert_eq!(parent["state"], "completed");
    let child_id = parent["children"][0]["taskId"].clone();
    let child = task(&app, &child_id).await;
    assert_eq!(child["parent"], a["taskId"]);
    assert_eq!(child["state"], "ready");
    let b = complete_next(&app, "b", json!({"step": "c"})).await;
    assert_eq!(b["taskId"], child_id);
    assert_eq!(b["depth"], 1);
}

#[tokio::test]
async fn a_bad_publish_output_is_refused_naming_the_field() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    for bad in [json!("yes"), json!(1), json!({})] {
        app.publish(json!({"data": {"n": 1}, "publishOutput": bad}))
            .await
            .error(400, "invalid_field", Some("publishOutput"));
        app.send(
            Method::PUT,
            "/queue",
            Some(json!({"queue": "q", "publishOutput": bad})),
        )
        .await
        .error(400, "invalid_field", Some("publishOutput"));
    }
    // Only outputs make a parent: a publisher cannot name one.
    app.publish(json!({"data": {"n": 1}, "parent": "x"}))
        .await
        .error(400, "unknown_field", Some("parent"));
    assert_eq!(app.queue("q").await["ready"], 0);
    let settings = app.status("queue=q").await;
    assert!(
        settings["queue"].get("publishOutput").is_none(),
        "{settings}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_workflows_page_runs_as_written() {
    let app = spawn_app().await;
    let out = run_page("docs/workflows.md", &app.base, 6).await;
    assert_eq!(out[1][0]["batch"], "order-42");
    // The charge's status names what its output became.
    let charge = &out[2][1]["task"];
    assert_eq!(charge["state"], "completed");
    let mut children: Vec<&str> = charge["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|c| c["queue"].as_str().unwrap())
        .collect();
    children.sort();
    assert_eq!(children, ["email", "ship"]);
    // Each next step was made from the charge, with its result as data, in
    // the order's batch.
    let steps: Vec<&Value> = out[3].iter().filter(|v| v.get("data").is_some()).collect();
    assert_eq!(steps.len(), 2, "{:?}", out[3]);
    for s in steps {
        assert_eq!(s["parent"], charge["taskId"]);
        assert_eq!(s["data"], json!({"charged": "yes", "order": 42}));
        assert_eq!(s["batch"], "order-42");
    }
    // Once both were done, the summary came, with the batch's totals.
    let summary = &out[4][0];
    assert_eq!(summary["queue"], "summary");
    assert_eq!(summary["data"]["summary"], "order 42");
    assert_eq!(summary["data"]["batch"]["copies"], 3);
    assert_eq!(summary["data"]["batch"]["totals"]["completed"], 3);
    let batch = &out[4][1]["batch"];
    assert_eq!(batch["ended"], true);
    assert_eq!(batch["callback"], summary["publishId"]);
    let counters = &out[5][0]["counters"];
    assert_eq!(counters["published"], 3);
    assert_eq!(counters["completed"], 3);
    assert_eq!(counters["discarded"], 0);
}
