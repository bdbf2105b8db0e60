//! Publishing: routing through interests, fan-out, scope, batches, runAt,
//! priorities and the singular rules.

use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_task_fans_out_to_every_interested_queue() {
    let app = spawn_app().await;
    app.put_interest("emails", json!({"email": "^.*evan.*"}))
        .await
        .ok();
    app.put_interest("points", json!({"action": "^userCreated$"}))
        .await
        .ok();
    app.put_interest("billing", json!({"action": "^invoice"}))
        .await
        .ok();

    let published = app
        .publish_data(json!({"action": "userCreated", "email": "evan@example.com"}))
        .await;

    assert_eq!(published["queues"], json!(["emails", "points"]));
    let copies = published["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 2);
    assert_ne!(copies[0]["taskId"], copies[1]["taskId"]);
    assert_eq!(app.queue("emails").await["ready"], 1);
    assert_eq!(app.queue("points").await["ready"], 1);
    assert_eq!(app.queue("billing").await["ready"], 0);
    // Each copy carries the publish's id and the whole data.
    let lineage = app
        .status(&format!("task={}", published["taskId"].as_str().unwrap()))
        .await;
    let copies = lineage["task"]["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 2);
    assert!(copies.iter().all(|c| c["publishId"] == published["taskId"]));
    assert!(copies
        .iter()
        .all(|c| c["data"]["email"] == "evan@example.com"));
}

#[tokio::test]
async fn interests_match_or_wise_and_star_takes_everything() {
    let app = spawn_app().await;
    app.put_interest("either", json!({"email": "^.*", "userId": "^.*"}))
        .await
        .ok();
    app.put_interest("all", json!("*")).await.ok();

    assert_eq!(
        app.publish_data(json!({"userId": 7})).await["queues"],
        json!(["all", "either"])
    );
    assert_eq!(
        app.publish_data(json!({"email": "a", "userId": 1})).await["queues"],
        json!(["all", "either"])
    );
    assert_eq!(
        app.publish_data(json!({"other": 1})).await["queues"],
        json!(["all"])
    );
    // Two matching fields still make one copy.
    assert_eq!(app.queue("either").await["ready"], 2);
}

#[tokio::test]
async fn a_task_no_queue_wants_is_discarded_and_counted() {
    let app = spawn_app().await;
    app.put_interest("emails", json!({"email": "."})).await.ok();

    let published = app.publish_data(json!({"phone": "123"})).await;

    assert_eq!(published["queues"], json!([]));
    assert_eq!(published["copies"], json!([]));
    let counters = app.status("counters").await["counters"].clone();
    assert_eq!(counters["discarded"], 1);
    assert_eq!(counters["published"], 1);
    assert_eq!(counters["routed"], 0);
}

#[tokio::test]
async fn registering_interests_again_replaces_them() {
    let app = spawn_app().await;
    app.put_interest("q", json!({"a": "x"})).await.ok();
    app.put_interest("q", json!({"b": "x"})).await.ok();

    assert_eq!(
        app.publish_data(json!({"a": "x"})).await["queues"],
        json!([])
    );
    assert_eq!(
        app.publish_data(json!({"b": "x"})).await["queues"],
        json!(["q"])
    );
    assert_eq!(
        app.status("interests").await["interests"],
        json!({"q": {"b": "x"}})
    );
}

#[tokio::test]
async fn deleting_interests_stops_routing_but_keeps_tasks() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.publish_data(json!({"n": 1})).await;

    app.send(Method::DELETE, "/interest?queue=q", None)
        .await
        .ok();

    assert_eq!(app.publish_data(json!({"n": 2})).await["queues"], json!([]));
    assert_eq!(app.queue("q").await["ready"], 1);
    app.send(Method::DELETE, "/interest?queue=q", None)
        .await
        .error(404, "unknown_queue", Some("queue"));
}

#[tokio::test]
async fn scope_all_makes_one_copy_per_registered_worker() {
    let app = spawn_app().await;
    app.put_interest("cache", json!("*")).await.ok();
    app.put_interest("audit", json!({"kind": "purge"}))
        .await
        .ok();
    let w1 = app.register(&["cache"]).await;
    let w2 = app.register(&["cache", "audit"]).await;
    let w3 = app.register(&["other"]).await;

    let published = app
        .publish(json!({"data": {"kind": "purge"}, "scope": "all"}))
        .await
        .ok();

    let copies = published["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 2, "{published}");
    let targets: Vec<&str> = copies
        .iter()
        .map(|c| c["workerQueue"].as_str().unwrap())
        .collect();
    assert!(targets.contains(&w1.as_str()) && targets.contains(&w2.as_str()));
    // Each copy waits in its worker's own queue, not the shared one.
    assert_eq!(app.queue("cache").await["ready"], 2);
    let wq = app.status(&format!("workerQueue={w1}")).await;
    assert_eq!(wq["workerQueue"]["ready"], 1);
    assert_eq!(app.claim(&w1).await["data"]["kind"], "purge");
    assert!(app.claim(&w1).await.is_null());
    assert_eq!(app.claim(&w2).await["data"]["kind"], "purge");
    assert!(app.claim(&w3).await.is_null());
}

#[tokio::test]
async fn a_batch_publishes_every_task_in_order() {
    let app = spawn_app().await;
    app.put_interest("a", json!({"to": "^a$"})).await.ok();
    app.put_interest("b", json!({"to": "^b$"})).await.ok();

    let answers = app
        .publish(json!([
            {"data": {"to": "a"}},
            {"data": {"to": "b"}},
            {"data": {"to": "nobody"}},
        ]))
        .await
        .ok();

    let queues: Vec<_> = answers
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["queues"].clone())
        .collect();
    assert_eq!(queues, [json!(["a"]), json!(["b"]), json!([])]);
    let counters = app.status("counters").await["counters"].clone();
    assert_eq!(
        (
            counters["published"].as_u64(),
            counters["discarded"].as_u64()
        ),
        (Some(3), Some(1))
    );
}

#[tokio::test]
async fn a_future_run_at_waits_in_the_scheduled_set() {
    let app = spawn_app().await;
    app.put_interest("later", json!("*")).await.ok();
    let worker = app.register(&["later"]).await;
    let run_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;

    app.publish(json!({"data": {"n": 1}, "runAt": run_at}))
        .await
        .ok();

    assert_eq!(app.queue("later").await["scheduled"], 1);
    assert!(app.claim(&worker).await.is_null());
    app.advance(3700.0).await;
    assert_eq!(app.queue("later").await["ready"], 1);
    assert_eq!(app.claim(&worker).await["data"]["n"], 1);
}

#[tokio::test]
async fn a_past_run_at_is_ready_now() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.publish(json!({"data": {}, "runAt": 1000})).await.ok();
    assert_eq!(app.queue("q").await["ready"], 1);
}

#[tokio::test]
async fn higher_priority_first_then_first_in_first_out() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let worker = app.register(&["q"]).await;
    for (n, priority) in [
        (1, json!("low")),
        (2, json!(0)),
        (3, json!("urgent")),
        (4, json!(0)),
        (5, json!(20)),
    ] {
        app.publish(json!({"data": {"n": n}, "priority": priority}))
            .await
            .ok();
    }

    let mut order = Vec::new();
    for _ in 0..5 {
        order.push(app.claim(&worker).await["data"]["n"].as_u64().unwrap());
    }

    assert_eq!(order, [3, 5, 2, 4, 1]);
}

#[tokio::test]
async fn singularly_enqueue_keeps_one_identical_task_waiting() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let task = json!({"data": {"job": "rebuild", "id": 1}, "singularlyEnqueue": true});

    let first = app.publish(task.clone()).await.ok();
    let second = app.publish(task.clone()).await.ok();
    let different = app
        .publish(json!({"data": {"job": "rebuild", "id": 2}, "singularlyEnqueue": true}))
        .await
        .ok();

    assert_eq!(second["copies"][0]["taskId"], first["copies"][0]["taskId"]);
    assert_eq!(second["copies"][0]["existing"], true);
    assert_ne!(
        different["copies"][0]["taskId"],
        first["copies"][0]["taskId"]
    );
    assert_eq!(app.queue("q").await["ready"], 2);
    assert_eq!(app.status("counters").await["counters"]["deduplicated"], 1);

    // Once it runs, an identical task may wait again.
    let worker = app.register(&["q"]).await;
    app.claim(&worker).await;
    let third = app.publish(task).await.ok();
    assert_ne!(third["copies"][0]["taskId"], first["copies"][0]["taskId"]);
}

#[tokio::test]
async fn singularly_run_holds_a_twin_until_the_first_ends() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let task = json!({"data": {"job": "deploy"}, "singularlyRun": true});
    app.publish(task.clone()).await.ok();
    app.publish(task).await.ok();
    let (w1, w2) = (app.register(&["q"]).await, app.register(&["q"]).await);

    let first = app.claim(&w1).await;
    assert!(app.claim(&w2).await.is_null(), "the twin must wait");
    app.update(&w1, &first, "complete", json!({})).await.ok();

    let twin = app.claim(&w2).await;
    assert_eq!(twin["data"]["job"], "deploy");
    assert_ne!(twin["taskId"], first["taskId"]);
}

#[tokio::test]
async fn interests_of_many_queues_are_set_in_one_request_or_not_at_all() {
    let app = spawn_app().await;
    let answer = app
        .send(
            Method::PUT,
            "/interest",
            Some(json!([
                {"queue": "a", "interests": {"to": "^a$"}},
                {"queue": "b", "interests": "*"},
            ])),
        )
        .await
        .ok();
    assert_eq!(answer[1], json!({"queue": "b", "interests": "*"}));
    assert_eq!(
        app.publish_data(json!({"to": "a"})).await["queues"],
        json!(["a", "b"])
    );

    app.send(
        Method::PUT,
        "/interest",
        Some(json!([
            {"queue": "c", "interests": "*"},
            {"queue": "d", "interests": {"to": "("}},
        ])),
    )
    .await
    .error(400, "invalid_interest", Some("interests.to"));
    assert_eq!(
        app.status("interests").await["interests"],
        json!({"a": {"to": "^a$"}, "b": "*"})
    );
}

#[tokio::test]
async fn unclaimed_tasks_expire_and_are_counted() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let by_ttl = app.publish(json!({"data": {"n": 1}, "ttl": 60})).await.ok();
    let far = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 7200;
    app.publish(json!({"data": {"n": 2}, "expireAt": far}))
        .await
        .ok();

    app.advance(61.0).await;

    let status = app.status("queue=q&counters").await;
    assert_eq!(
        (
            status["queue"]["ready"].as_u64(),
            status["counters"]["expired"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let id = by_ttl["copies"][0]["taskId"].as_str().unwrap();
    assert_eq!(
        app.status(&format!("task={id}")).await["task"]["state"],
        "expired"
    );
    let worker = app.register(&["q"]).await;
    assert_eq!(app.claim(&worker).await["data"]["n"], 2);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("interq_events_total{event=\"expired\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn singularly_enqueue_replace_keeps_the_newest() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let first = app
        .publish(json!({"data": {"build": 1}, "key": "main", "singularlyEnqueue": "replace"}))
        .await
        .ok();
    let second = app
        .publish(json!({"data": {"build": 2}, "key": "main", "singularlyEnqueue": "replace"}))
        .await
        .ok();

    assert_eq!(
        second["copies"][0]["replaced"],
        first["copies"][0]["taskId"]
    );
    assert_eq!(app.queue("q").await["ready"], 1);
    let worker = app.register(&["q"]).await;
    let task = app.claim(&worker).await;
    assert_eq!(
        (
            task["data"]["build"].as_u64(),
            task["replaceWaiting"].as_bool()
        ),
        (Some(2), Some(true))
    );
    let old = app
        .status(&format!(
            "task={}",
            first["copies"][0]["taskId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(old["task"]["state"], "cancelled");
}

#[tokio::test]
async fn bad_expiry_and_singular_values_are_refused() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.publish(json!({"data": {}, "ttl": 0}))
        .await
        .error(400, "invalid_field", Some("ttl"));
    app.publish(json!({"data": {}, "ttl": 5, "expireAt": 9}))
        .await
        .error(400, "invalid_field", Some("ttl"));
    app.publish(json!({"data": {}, "expireAt": -1}))
        .await
        .error(400, "invalid_field", Some("expireAt"));
    app.publish(json!({"data": {}, "singularlyEnqueue": "maybe"}))
        .await
        .error(400, "invalid_field", Some("singularlyEnqueue"));
    assert_eq!(app.queue("q").await["ready"], 0);
}

#[tokio::test]
async fn an_unrouted_queue_keeps_what_no_interest_wants() {
    let app = spawn_app().await;
    app.put_interest("emails", json!({"to": "@"})).await.ok();
    // Before it exists, a task nobody wants is discarded.
    let gone = app.publish_data(json!({"kind": "lost"})).await;
    assert_eq!(gone["queues"], json!([]));
    let set = app.put_interest("nobody", json!("unrouted")).await.ok();
    assert_eq!(set["interests"], "unrouted");
    let wanted = app.publish_data(json!({"to": "a@b"})).await;
    assert_eq!(wanted["queues"], json!(["emails"]));
    let kept = app.publish_data(json!({"kind": "lost"})).await;
    assert_eq!(kept["queues"], json!(["nobody"]));
    let counters = app.status("counters").await["counters"].clone();
    assert_eq!(counters["discarded"], 1, "only the one before: {counters}");
    assert_eq!(app.queue("nobody").await["ready"], 1);
    let id = kept["copies"][0]["taskId"].as_str().unwrap();
    let task = app.status(&format!("task={id}")).await["task"].clone();
    assert_eq!(task["routedBy"], "unrouted");
    // The interests are shown as set, and a queue taking every task leaves
    // nothing unrouted.
    assert_eq!(
        app.status("interests").await["interests"]["nobody"],
        "unrouted"
    );
    app.put_interest("everything", json!("*")).await.ok();
    let all = app.publish_data(json!({"kind": "lost"})).await;
    assert_eq!(all["queues"], json!(["everything"]));
    // Other words are still refused, naming the queue.
    let refused = app.put_interest("x", json!("nowhere")).await.error(
        400,
        "invalid_interest",
        Some("interests"),
    );
    assert!(refused.contains("\"unrouted\""), "{refused}");
}

#[tokio::test]
async fn require_route_refuses_a_task_no_interest_wants_and_stores_nothing() {
    let app = spawn_app().await;
    app.put_interest("emails", json!({"to": "@"})).await.ok();
    app.put_interest("nobody", json!("unrouted")).await.ok();
    let ok = app
        .publish(json!({"data": {"to": "a@b"}, "requireRoute": true}))
        .await
        .ok();
    assert_eq!(ok["queues"], json!(["emails"]));
    // Only the unrouted queue would take it: that is no interest wanting it.
    let message = app
        .publish(json!({"data": {"kind": "x"}, "requireRoute": true}))
        .await
        .error(422, "unrouted", Some("requireRoute"));
    assert!(message.contains("nothing was stored"), "{message}");
    let batch = app
        .publish(json!([
            {"data": {"to": "c@d"}, "requireRoute": true},
            {"data": {"kind": "x"}, "requireRoute": true},
        ]))
        .await;
    batch.error(422, "unrouted", Some("[1].requireRoute"));
    let counters = app.status("counters").await["counters"].clone();
    assert_eq!(counters["published"], 1, "{counters}");
    assert_eq!(app.queue("emails").await["ready"], 1);
    assert_eq!(app.queue("nobody").await["ready"], 0);
    // Without it, the same task goes to the unrouted queue.
    let kept = app.publish_data(json!({"kind": "x"})).await;
    assert_eq!(kept["queues"], json!(["nobody"]));
    app.publish(json!({"data": {}, "requireRoute": "yes"}))
        .await
        .error(400, "invalid_field", Some("requireRoute"));
    app.send(
        Method::PUT,
        "/schedule",
        Some(json!({"name": "s", "every": 60, "task": {"data": {}, "requireRoute": true}})),
    )
    .await
    .error(400, "invalid_field", Some("task"));
}

#[tokio::test]
async fn operators_route_by_prefix_number_presence_and_network() {
    let app = spawn_app().await;
    let set = app
        .put_interest(
            "big-eu",
            json!({"region": [{"prefix": "eu-"}, "^uk$"], "amount": {"numeric": [">=", 100, "<", 1000]}}),
        )
        .await
        .ok();
    assert_eq!(
        set["interests"]["region"],
        json!([{"prefix": "eu-"}, "^uk$"]),
        "stored as registered"
    );
    app.put_interest("internal", json!({"ip": {"cidr": "10.0.0.0/8"}}))
        .await
        .ok();
    app.put_interest("untraced", json!({"traceId": {"exists": false}}))
        .await
        .ok();
    app.put_interest("not-test", json!({"env": {"anythingBut": ["test", "dev"]}}))
        .await
        .ok();
    app.put_interest("orders", json!({"type": {"equalsIgnoreCase": "ORDER"}}))
        .await
        .ok();
    for (data, want) in [
        (
            json!({"region": "eu-west", "traceId": "t"}),
            json!(["big-eu"]),
        ),
        (json!({"amount": 250, "traceId": "t"}), json!(["big-eu"])),
        (json!({"amount": 1000, "traceId": "t"}), json!([])),
        (json!({"amount": "250", "traceId": "t"}), json!([])),
        (
            json!({"ip": "10.2.3.4", "traceId": "t"}),
            json!(["internal"]),
        ),
        (json!({"ip": "192.168.0.1"}), json!(["untraced"])),
        (json!({"env": "prod", "traceId": "t"}), json!(["not-test"])),
        (json!({"env": "test", "traceId": "t"}), json!([])),
        (json!({"type": "Order", "traceId": "t"}), json!(["orders"])),
    ] {
        let got = app.publish_data(data.clone()).await;
        assert_eq!(got["queues"], want, "{data}");
    }
    // The task's record says which operator took it.
    let got = app
        .publish_data(json!({"region": "eu-north", "traceId": "t"}))
        .await;
    let id = got["copies"][0]["taskId"].as_str().unwrap();
    let task = app.status(&format!("task={id}")).await["task"].clone();
    assert_eq!(
        task["routedBy"],
        json!([{"field": "region", "pattern": "{\"prefix\":\"eu-\"}", "value": "eu-north"}])
    );
    // A bad operator is refused, naming the queue, the field and the
    // operator, and changes nothing.
    for (interests, says) in [
        (
            json!({"amount": {"numeric": [">", "lots"]}}),
            "operator `numeric`",
        ),
        (json!({"ip": {"cidr": "10.0.0.0/40"}}), "operator `cidr`"),
        (json!({"x": {"startsWith": "a"}}), "operator `startsWith`"),
        (json!({"x": []}), "a list of 1 to 64"),
    ] {
        let message = app.put_interest("big-eu", interests.clone()).await.error(
            400,
            "invalid_interest",
            Some("interests."),
        );
        assert!(message.contains("queue `big-eu`"), "{message}");
        assert!(message.contains(says), "{interests}: {message}");
    }
    let kept = app.status("interests").await["interests"]["big-eu"].clone();
    assert_eq!(kept["amount"], json!({"numeric": [">=", 100, "<", 1000]}));
}

#[tokio::test]
async fn a_rule_takes_a_task_only_when_all_its_fields_match() {
    let app = spawn_app().await;
    let rules = json!([
        {"type": "^order$", "amount": {"numeric": [">", 100]}},
        {"vip": {"exists": true}},
    ]);
    let set = app.put_interest("big-orders", rules.clone()).await.ok();
    assert_eq!(set["interests"], rules);
    for (data, want) in [
        (
            json!({"type": "order", "amount": 150}),
            json!(["big-orders"]),
        ),
        (json!({"type": "order", "amount": 50}), json!([])),
        (json!({"type": "refund", "amount": 150}), json!([])),
        (json!({"vip": "yes"}), json!(["big-orders"])),
    ] {
        assert_eq!(
            app.publish_data(data.clone()).await["queues"],
            want,
            "{data}"
        );
    }
    // Explained by every field of the rule that took it.
    let got = app
        .publish_data(json!({"type": "order", "amount": 500}))
        .await;
    let id = got["copies"][0]["taskId"].as_str().unwrap();
    let task = app.status(&format!("task={id}")).await["task"].clone();
    let fields: Vec<&str> = task["routedBy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["amount", "type"]);
    for bad in [json!([]), json!([{}]), json!([{"type": "order"}, "*"])] {
        app.put_interest("big-orders", bad)
            .await
            .error(400, "invalid_interest", Some("interests"));
    }
    assert_eq!(
        app.status("interests").await["interests"]["big-orders"],
        rules
    );
}

/// One metric's value from `/metrics`.
async fn metric(app: &crate::helpers::Api, name: &str) -> f64 {
    let text = app.metrics().await;
    interq::bench::metric(&text, name).unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test]
async fn interests_changed_one_at_a_time_past_compactions_route_as_last_set() {
    let app = spawn_app().await;
    // Which value of `n` each queue takes.
    let mut wants: std::collections::BTreeMap<String, u32> =
        (0..400).map(|i| (format!("q{i:04}"), i)).collect();
    let base: Vec<serde_json::Value> = wants
        .iter()
        .map(|(q, n)| json!({"queue": q, "interests": {"n": format!("^{n}$")}}))
        .collect();
    app.send(Method::PUT, "/interest", Some(json!(base)))
        .await
        .ok();
    let check = |wants: &std::collections::BTreeMap<String, u32>, n: u32| {
        let expected: Vec<&str> = wants
            .iter()
            .filter(|(_, v)| **v == n)
            .map(|(q, _)| q.as_str())
            .collect();
        json!(expected)
    };
    // More single changes than the router compiles apart, so compactions
    // run while changes go on: queues move to another value, go, arrive.
    // Four clients change queues of their own at once, so that changes
    // land while a compaction compiles.
    let mut clients = tokio::task::JoinSet::new();
    for stream in 0..4u32 {
        let api = crate::helpers::Api::clone(&*app);
        let mut mine: std::collections::BTreeMap<String, Option<u32>> = Default::default();
        clients.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(17 + stream as u64);
            // Every one of 300 queues once, then some again: more
            // queues than the router keeps apart from its base.
            for k in 0..350u32 {
                let queue = format!("q{:04}", (k * 7 % 300) * 4 + stream);
                let n = rng.u32(0..450);
                if k % 7 == 0 {
                    let gone = api
                        .send(Method::DELETE, &format!("/interest?queue={queue}"), None)
                        .await;
                    assert!(
                        gone.status.is_success() || gone.status == 404,
                        "{}",
                        gone.body
                    );
                    mine.insert(queue, None);
                } else {
                    api.put_interest(&queue, json!({"n": format!("^{n}$")}))
                        .await
                        .ok();
                    mine.insert(queue, Some(n));
                }
            }
            mine
        });
    }
    while let Some(mine) = clients.join_next().await {
        for (queue, n) in mine.unwrap() {
            match n {
                Some(n) => wants.insert(queue, n),
                None => wants.remove(&queue),
            };
        }
    }
    // The compactions ran and the router keeps what was set.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while metric(&app, "interq_router_compactions_total").await < 1.0 {
        assert!(std::time::Instant::now() < deadline, "no compaction ran");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        metric(&app, "interq_interest_queues").await,
        wants.len() as f64
    );
    for n in 0..450 {
        assert_eq!(
            app.publish_data(json!({"n": n})).await["queues"],
            check(&wants, n),
            "n = {n}"
        );
    }
    let listed = app.status("interests").await["interests"].clone();
    let listed: Vec<&String> = listed.as_object().unwrap().keys().collect();
    assert_eq!(listed, wants.keys().collect::<Vec<_>>());
}

#[tokio::test]
async fn a_capture_named_key_keys_that_queues_copies_for_the_singular_rules() {
    let app = spawn_app().await;
    app.put_interest("tenants", json!({"tenant": "^(?P<key>[a-z]+)-[0-9]+$"}))
        .await
        .ok();
    app.put_interest("audit", json!("*")).await.ok();
    let publish = |tenant: &str| json!({"data": {"tenant": tenant}, "singularlyEnqueue": true});
    let first = app.publish(publish("acme-1")).await.ok();
    // Another task of the same tenant: one waits per tenant in `tenants`,
    // while `audit`, keyed by the whole task, takes both.
    let second = app.publish(publish("acme-2")).await.ok();
    let other = app.publish(publish("globex-1")).await.ok();
    let copy = |answer: &serde_json::Value, queue: &str| {
        answer["copies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["queue"] == queue)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        copy(&second, "tenants")["taskId"],
        copy(&first, "tenants")["taskId"]
    );
    assert_eq!(copy(&second, "tenants")["existing"], true);
    assert_ne!(
        copy(&second, "audit")["taskId"],
        copy(&first, "audit")["taskId"]
    );
    assert_ne!(
        copy(&other, "tenants")["taskId"],
        copy(&first, "tenants")["taskId"]
    );
    assert_eq!(app.queue("tenants").await["ready"], 2);
    assert_eq!(app.queue("audit").await["ready"], 3);
    // The captured key is the copy's: found and stopped by it.
    let found = app.status("key=acme").await["key"].clone();
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["queue"], "tenants");
    // A publisher's own key stands where no capture takes it, and a
    // capture that is no valid key (empty) leaves it too.
    app.put_interest("maybe", json!({"code": "^(?P<key>[a-z]*)[0-9]+$"}))
        .await
        .ok();
    app.publish(json!({"data": {"code": "42"}, "key": "mine"}))
        .await
        .ok();
    let mine = app.status("key=mine").await["key"].clone();
    assert_eq!(mine.as_array().unwrap().len(), 2, "{mine}");
}

/// `PUT /interest` with `replay`.
async fn set_replaying(
    app: &crate::helpers::TestApp,
    queue: &str,
    interests: serde_json::Value,
    replay: serde_json::Value,
) -> crate::helpers::Answer {
    app.send(
        Method::PUT,
        "/interest",
        Some(json!({"queue": queue, "interests": interests, "replay": replay})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_interest_replays_recent_publishes_once_each_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = crate::helpers::spawn_app_in(dir, |_| {}).await;
    app.put_interest("orders", json!({"kind": "^order$"}))
        .await
        .ok();
    let publish = |task: serde_json::Value| {
        let app = &app;
        async move {
            app.publish(task).await.ok()["taskId"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let first = publish(json!({"data": {"kind": "order", "n": 1}})).await;
    publish(json!({"data": {"kind": "refund", "n": 2}})).await;
    publish(json!({"data": {"kind": "order", "n": 3}, "key": "k3", "priority": "high"})).await;
    // Everything of the last ten minutes, the discarded refund too.
    let answer = set_replaying(&app, "audit", json!("*"), json!(600))
        .await
        .ok();
    assert_eq!(answer["replayed"], 3, "{answer}");
    assert_eq!(app.queue("audit").await["ready"], 3);
    let w = app.register(&["audit"]).await;
    let copies = app.claim_n(&w, 10).await;
    let third = copies.iter().find(|t| t["data"]["n"] == 3).unwrap();
    assert_eq!(
        (third["key"].as_str(), third["priority"].as_i64()),
        (Some("k3"), Some(10)),
        "as published"
    );
    let one = copies.iter().find(|t| t["data"]["n"] == 1).unwrap();
    assert_eq!(one["publishId"], first, "a copy of the same publish");
    // Never twice into one queue: not again, nor after its copies ended.
    for t in &copies {
        app.update(&w, t, "complete", json!({})).await.ok();
    }
    assert_eq!(
        set_replaying(&app, "audit", json!("*"), json!(600))
            .await
            .ok()["replayed"],
        0
    );
    // A queue gets only what it has no copy of: orders had both orders.
    assert_eq!(
        set_replaying(&app, "orders", json!("*"), json!(600))
            .await
            .ok()["replayed"],
        1
    );
    let app = {
        let dir = app.stop().await;
        crate::helpers::spawn_app_in(dir, |_| {}).await
    };
    assert_eq!(
        set_replaying(&app, "audit", json!("*"), json!(600))
            .await
            .ok()["replayed"],
        0,
        "the log came back"
    );
    let refunds = set_replaying(&app, "refunds", json!({"kind": "^refund$"}), json!(600))
        .await
        .ok();
    assert_eq!(
        refunds["replayed"], 1,
        "a discarded publish's data is kept for the log"
    );
    // A window: only what is younger than it.
    app.advance(100.0).await;
    app.publish(json!({"data": {"kind": "late"}})).await.ok();
    assert_eq!(
        set_replaying(&app, "recent", json!("*"), json!(50))
            .await
            .ok()["replayed"],
        1
    );
    // Past the log's age, nothing is left to replay.
    app.advance(700.0).await;
    assert_eq!(
        set_replaying(&app, "latest", json!("*"), json!(600))
            .await
            .ok()["replayed"],
        0
    );
    // Bad replays are refused by name, and set nothing.
    for bad in [json!(0), json!(601), json!("soon"), json!(1.5)] {
        set_replaying(&app, "never", json!("*"), bad).await.error(
            400,
            "invalid_field",
            Some("replay"),
        );
    }
    assert!(app.status("interests").await["interests"]
        .get("never")
        .is_none());
    let off = crate::helpers::spawn_app_with(|s| s.tasks.replay_keep_secs = 0).await;
    let refused = off
        .send(
            Method::PUT,
            "/interest",
            Some(json!({"queue": "q", "interests": "*", "replay": 60})),
        )
        .await
        .error(400, "invalid_field", Some("replay"));
    assert!(refused.contains("publish log is off"), "{refused}");
}
