//! Fairness groups over HTTP: a publish's `group` and a queue's `group`
//! capture, the queue's group settings and their bad input, the groups in
//! status, and a group limit that holds under load.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn a_copy_has_its_publishers_group_or_its_queues_capture() {
    let app = spawn_app().await;
    app.put_interest("plain", json!("*")).await.ok();
    app.put_interest("tenants", json!({"tenant": "^(?P<group>[a-z]+)-"}))
        .await
        .ok();
    let published = app
        .publish(json!({"data": {"tenant": "acme-1"}, "group": "batch-7"}))
        .await
        .ok();
    let mut groups: HashMap<String, Value> = HashMap::new();
    for c in published["copies"].as_array().unwrap() {
        let task = app
            .status(&format!("task={}", c["taskId"].as_str().unwrap()))
            .await["task"]
            .clone();
        groups.insert(c["queue"].as_str().unwrap().into(), task["group"].clone());
    }
    assert_eq!(groups["plain"], "batch-7", "the publisher's");
    assert_eq!(groups["tenants"], "acme", "the capture, for its queue");
    // A claim hands the group to the worker.
    let w = app.register(&["tenants"]).await;
    assert_eq!(app.claim(&w).await["group"], "acme");
    // No capture and no group: none.
    let plain = app.publish_data(json!({"x": 1})).await;
    let id = plain["copies"][0]["taskId"].as_str().unwrap().to_owned();
    let task = app.status(&format!("task={id}")).await["task"].clone();
    assert!(task.get("group").is_none(), "{task}");
}

#[tokio::test]
async fn a_bad_group_is_refused_naming_the_field_and_nothing_is_stored() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let long = "g".repeat(129);
    for bad in [
        json!(""),
        json!(long),
        json!(7),
        json!("a\u{7}b"),
        json!(["a"]),
    ] {
        app.publish(json!({"data": {"n": 1}, "group": bad}))
            .await
            .error(400, "invalid_field", Some("group"));
    }
    app.publish(json!({"data": {"n": 1}, "group": "g".repeat(128)}))
        .await
        .ok();
    // In a batch, the item is named and none of the batch is stored.
    app.publish(json!([{"data": {"n": 2}, "group": "ok"}, {"data": {"n": 3}, "group": ""}]))
        .await
        .error(400, "invalid_field", Some("[1].group"));
    assert_eq!(app.queue("q").await["ready"], 1);
}

#[tokio::test]
async fn group_settings_are_set_cleared_and_checked() {
    let app = spawn_app().await;
    let put = |body: Value| {
        let api = app.api.clone();
        async move { api.send(Method::PUT, "/queue", Some(body)).await }
    };
    let set = put(json!({
        "queue": "q",
        "groupMaxRunning": 2,
        "groupRateLimit": 0.5,
        "strictPriority": true,
        "groups": {"vip": {"maxRunning": 10, "weight": 4}, "slow": {"rateLimit": 0.1}},
    }))
    .await
    .ok();
    let want = json!({
        "groupMaxRunning": 2,
        "groupRateLimit": 0.5,
        "strictPriority": true,
        "groups": {"slow": {"rateLimit": 0.1}, "vip": {"maxRunning": 10, "weight": 4}},
        "paused": false,
    });
    assert_eq!(set["settings"], want);
    let bad: &[(Value, &str)] = &[
        (json!({"groupMaxRunning": 0}), "groupMaxRunning"),
        (json!({"groupMaxRunning": -1}), "groupMaxRunning"),
        (json!({"groupMaxRunning": 1.5}), "groupMaxRunning"),
        (json!({"groupMaxRunning": "two"}), "groupMaxRunning"),
        (json!({"groupRateLimit": 0}), "groupRateLimit"),
        (json!({"groupRateLimit": -3}), "groupRateLimit"),
        (json!({"strictPriority": "maybe"}), "strictPriority"),
        (json!({"groups": []}), "groups"),
        (json!({"groups": {"": {"weight": 2}}}), "groups"),
        (json!({"groups": {"vip": 3}}), "groups.vip"),
        (
            json!({"groups": {"vip": {"weight": 0}}}),
            "groups.vip.weight",
        ),
        (
            json!({"groups": {"vip": {"weight": 1001}}}),
            "groups.vip.weight",
        ),
        (
            json!({"groups": {"vip": {"maxRunning": 0}}}),
            "groups.vip.maxRunning",
        ),
        (
            json!({"groups": {"vip": {"rateLimit": 0}}}),
            "groups.vip.rateLimit",
        ),
        (json!({"groups": {"vip": {"burst": 1}}}), "groups.vip.burst"),
    ];
    for (fields, field) in bad {
        let mut body = fields.clone();
        body["queue"] = json!("q");
        let answer = put(body).await;
        let code = if field.ends_with("burst") {
            "unknown_field"
        } else {
            "invalid_field"
        };
        answer.error(400, code, Some(field));
    }
    let status = app.status("queue=q").await;
    assert_eq!(
        status["settings"], want,
        "the refused changes changed nothing"
    );
    // `null` clears; a group's `null` removes its own settings.
    let cleared = put(json!({"queue": "q", "groupMaxRunning": null, "groups": {"slow": null}}))
        .await
        .ok();
    assert!(cleared["settings"].get("groupMaxRunning").is_none());
    assert_eq!(
        cleared["settings"]["groups"],
        json!({"vip": {"maxRunning": 10, "weight": 4}})
    );
}

#[tokio::test]
async fn status_lists_a_queues_groups_and_which_are_held() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.send(
        Method::PUT,
        "/queue",
        Some(json!({"queue": "q", "groupMaxRunning": 1})),
    )
    .await
    .ok();
    let mut batch = Vec::new();
    for (g, n) in [("big", 5), ("mid", 3), ("one", 1)] {
        batch.extend((0..n).map(|i| json!({"data": {"i": i}, "group": g})));
    }
    app.publish(Value::Array(batch)).await.ok();
    let w = app.register(&["q"]).await;
    let claimed = app.claim_n(&w, 10).await;
    assert_eq!(claimed.len(), 3, "one per group");
    let groups = app.status("groups=q").await["groups"].clone();
    assert_eq!(groups["queue"], "q");
    assert_eq!(groups["total"], 3);
    let list = groups["groups"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|g| g["group"].as_str().unwrap()).collect();
    assert_eq!(names, ["big", "mid", "one"], "the most ready first");
    assert_eq!(list[0]["ready"], 4);
    assert_eq!(list[0]["running"], 1);
    assert_eq!(list[0]["held"], "maxRunning");
    assert!(list[2].get("held").is_none(), "nothing waits: {}", list[2]);
    // A ready copy says what holds it back.
    let big = app
        .send(Method::GET, "/tasks?queue=q&state=ready&limit=1000", None)
        .await
        .ok();
    let waiting = big
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["group"] == "big")
        .unwrap()["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    let view = app.status(&format!("task={waiting}")).await["task"].clone();
    assert_eq!(
        view["heldBy"],
        "its group big has 1 running, the most its queue allows the group (1)"
    );
    app.send(
        Method::PUT,
        "/queue",
        Some(json!({"queue": "q", "paused": true})),
    )
    .await
    .ok();
    let view = app.status(&format!("task={waiting}")).await["task"].clone();
    assert_eq!(view["heldBy"], "its queue is paused");
    app.send(
        Method::PUT,
        "/queue",
        Some(json!({"queue": "q", "paused": false})),
    )
    .await
    .ok();
    let top = app.status("groups=q&limit=1").await["groups"].clone();
    assert_eq!(top["groups"].as_array().unwrap().len(), 1);
    assert_eq!(top["total"], 3);
    app.send(Method::GET, "/status?groups=no%20such", None)
        .await
        .error(400, "invalid_field", Some("groups"));
    let metrics = app.metrics().await;
    for line in [
        "interq_groups{queue=\"q\"} 3",
        "interq_groups_held{queue=\"q\",reason=\"maxRunning\"} 2",
        "interq_groups_held{queue=\"q\",reason=\"rateLimit\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

/// Workers claim and complete as fast as they can while copies of many
/// groups wait. Each worker notes when a claim's answer came and when it
/// sent each copy's completion: the copy ran at least from the one to the
/// other (the server's own times are taken before each change waits its
/// turn, so they may order a claim before the completion it followed), and
/// no moment may see three such spans of a group.
#[tokio::test]
async fn a_group_limit_holds_at_every_moment_under_load() {
    let app = spawn_app_with(|s| {
        s.testing.manual_clock = false;
        s.tasks.history = 100_000;
    })
    .await;
    app.put_interest("q", json!("*")).await.ok();
    app.send(
        Method::PUT,
        "/queue",
        Some(json!({"queue": "q", "groupMaxRunning": 2})),
    )
    .await
    .ok();
    const GROUPS: usize = 8;
    const TASKS: usize = 400;
    let batch: Vec<Value> = (0..TASKS)
        .map(|i| json!({"data": {"i": i}, "group": format!("g{}", i % GROUPS)}))
        .collect();
    app.publish(Value::Array(batch)).await.ok();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = std::time::Instant::now();
    let mut workers = Vec::new();
    for n in 0..6u64 {
        let api = app.api.clone();
        let done = Arc::clone(&done);
        let w = app.register(&["q"]).await;
        workers.push(tokio::spawn(async move {
            let mut spans: Vec<(String, u128, u128)> = Vec::new();
            while done.load(std::sync::atomic::Ordering::SeqCst) < TASKS {
                let got = api
                    .send(
                        Method::GET,
                        &format!("/task?workerId={w}&count=3&wait=0.05"),
                        None,
                    )
                    .await
                    .ok();
                let claimed = t0.elapsed().as_micros();
                for t in got.as_array().unwrap() {
                    // Some work, of a length that differs between workers.
                    tokio::time::sleep(Duration::from_millis(
                        1 + (n * 3 + t["data"]["i"].as_u64().unwrap()) % 7,
                    ))
                    .await;
                    let sent = t0.elapsed().as_micros();
                    api.update(&w, t, "complete", json!({})).await.ok();
                    let group = t["group"].as_str().unwrap().to_owned();
                    spans.push((group, claimed, sent));
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            spans
        }));
    }
    let mut events: HashMap<String, Vec<(u128, i32)>> = HashMap::new();
    for w in workers {
        let spans = tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .expect("the load finishes")
            .unwrap();
        for (g, from, to) in spans {
            let e = events.entry(g).or_default();
            e.push((from, 1));
            e.push((to, -1));
        }
    }
    let seen: usize = events.values().map(|e| e.len() / 2).sum();
    assert_eq!(seen, TASKS, "every copy completed once");
    let completed = app.queue("q").await;
    assert_eq!(
        (completed["ready"].as_u64(), completed["running"].as_u64()),
        (Some(0), Some(0))
    );
    let mut busiest = 0;
    for (g, mut e) in events {
        // Ends first at equal times: the lenient reading.
        e.sort();
        let mut running = 0;
        for (_, step) in e {
            running += step;
            busiest = busiest.max(running);
            assert!(running <= 2, "group {g} had {running} running at once");
        }
    }
    assert_eq!(busiest, 2, "the limit was reached, so it was tested");
}

#[tokio::test]
async fn a_worker_with_weighted_queues_takes_from_each_in_proportion() {
    let app = spawn_app().await;
    for q in ["critical", "default", "low"] {
        app.put_interest(q, json!({"q": format!("^{q}$")}))
            .await
            .ok();
        let batch: Vec<Value> = (0..60).map(|i| json!({"data": {"q": q, "i": i}})).collect();
        app.publish(Value::Array(batch)).await.ok();
    }
    let registered = app
        .send(
            Method::PUT,
            "/worker",
            Some(json!({"queues": ["critical", "default", "low"], "weights": {"critical": 6, "default": 3}})),
        )
        .await
        .ok();
    assert_eq!(
        registered["weights"],
        json!({"critical": 6, "default": 3, "low": 1}),
        "a queue left out weighs 1"
    );
    let w = registered["workerId"].as_str().unwrap().to_owned();
    let mut taken: HashMap<String, usize> = HashMap::new();
    let mut first_ten = Vec::new();
    for i in 0..50 {
        let t = app.claim(&w).await;
        let q = t["queue"].as_str().unwrap().to_owned();
        if i < 10 {
            first_ten.push(q.clone());
        }
        *taken.entry(q).or_default() += 1;
    }
    assert_eq!(
        (taken["critical"], taken["default"], taken["low"]),
        (30, 15, 5),
        "6:3:1"
    );
    // Spread out, not one queue's turns all together.
    assert!(
        first_ten
            .windows(4)
            .all(|w| w.iter().any(|q| q != "critical")),
        "{first_ten:?}"
    );
    // An emptied queue's turns go to the others: every claim gets a task
    // while any queue has one (130 remain; critical's 30 go first).
    let mut rest: HashMap<String, usize> = HashMap::new();
    for _ in 0..130 {
        let t = app.claim(&w).await;
        *rest
            .entry(t["queue"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        (rest["critical"], rest["default"], rest["low"]),
        (30, 45, 55)
    );
    assert!(app.claim(&w).await.is_null());
    let workers = app.status("workers").await["workers"].clone();
    let me = workers
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["workerId"] == w.as_str())
        .unwrap()
        .clone();
    assert_eq!(me["weights"], json!([6, 3, 1]));
    for (weights, field) in [
        (json!({"other": 2}), "weights"),
        (json!({"critical": 0}), "weights.critical"),
        (json!({"critical": 1001}), "weights.critical"),
        (json!({"critical": "six"}), "weights.critical"),
        (json!([6, 3]), "weights"),
    ] {
        app.send(
            Method::PUT,
            "/worker",
            Some(json!({"queues": ["critical", "default"], "weights": weights})),
        )
        .await
        .error(400, "invalid_field", Some(field));
    }
}

#[tokio::test]
async fn task_lists_are_searched_by_group_in_the_api_and_the_console() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let acme = app
        .publish(json!({"data": {"n": 1}, "group": "acme"}))
        .await
        .ok();
    let globex = app
        .publish(json!({"data": {"n": 2}, "group": "globex"}))
        .await
        .ok();
    let (acme, globex) = (
        acme["copies"][0]["taskId"].as_str().unwrap().to_owned(),
        globex["copies"][0]["taskId"].as_str().unwrap().to_owned(),
    );
    let listed = app
        .send(Method::GET, "/tasks?state=ready&queue=q&group=acme", None)
        .await
        .ok();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [acme.as_str()]);
    app.send(
        Method::GET,
        &format!("/tasks?state=ready&group={}", "g".repeat(129)),
        None,
    )
    .await
    .error(400, "invalid_field", Some("group"));
    let mut site = crate::admin::Site::new(&app);
    let page = site.get("/admin/queues/q?state=ready&group=acme").await;
    let html = page.html();
    assert!(html.contains(&acme) && !html.contains(&globex), "{html}");
    assert!(
        html.contains(r#"name="group" value="acme""#),
        "the form keeps it"
    );
}
