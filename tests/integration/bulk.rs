//! Bulk actions (`POST /tasks`): a selection by id or every copy that
//! matches a search, retried, cancelled, run now, moved or removed.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Api};

async fn act(app: &Api, body: Value) -> Value {
    app.send(Method::POST, "/tasks", Some(body)).await.ok()
}

fn counts(answer: &Value) -> (u64, u64, u64) {
    let n = |f: &str| {
        answer[f]
            .as_u64()
            .unwrap_or_else(|| panic!("{f}: {answer}"))
    };
    (n("done"), n("requested"), n("skipped"))
}

async fn task(app: &Api, id: &str) -> Value {
    app.status(&format!("task={id}")).await["task"].clone()
}

async fn publish(app: &Api, task: Value) -> String {
    let p = app.publish(task).await.ok();
    p["copies"][0]["taskId"]
        .as_str()
        .expect("a copy")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_action_takes_the_selected_copies_it_can_and_skips_the_rest() {
    let app = spawn_app().await;
    app.put_interest("q", json!({"kind": "job"})).await.ok();
    app.put_interest("other", json!({"kind": "other"}))
        .await
        .ok();
    let job = |n: u32| json!({"data": {"kind": "job", "n": n}, "maxAttempts": 1});
    let running = publish(&app, job(0)).await;
    let failed = publish(&app, job(1)).await;
    let w = app.register(&["q"]).await;
    let claimed = app.claim_n(&w, 2).await;
    let by_id = |id: &str| claimed.iter().find(|t| t["taskId"] == id).unwrap().clone();
    app.update(&w, &by_id(&failed), "fail", json!({"failReason": "boom"}))
        .await
        .ok();
    let ready = publish(&app, job(2)).await;
    let ready2 = publish(&app, job(3)).await;
    let later = 4_000_000_000u64;
    let scheduled = publish(
        &app,
        json!({"data": {"kind": "job", "n": 4}, "runAt": later}),
    )
    .await;
    let unknown = "0190f5c4-1b2a-7cde-8f00-000000000000";

    // Cancel: a waiting copy at once, a running one through its worker; a
    // failed copy and an unknown id are skipped.
    let a = act(
        &app,
        json!({"action": "cancel", "taskIds": [ready, running, failed, unknown]}),
    )
    .await;
    assert_eq!(a["action"], "cancel");
    assert_eq!(counts(&a), (1, 1, 2), "{a}");
    assert_eq!(task(&app, &ready).await["state"], "cancelled");
    let r = task(&app, &running).await;
    assert_eq!(
        (r["state"].as_str(), r["cancelled"].as_bool()),
        (Some("running"), Some(true))
    );
    // Asked again, the flagged copy is skipped.
    let again = act(&app, json!({"action": "cancel", "taskIds": [running]})).await;
    assert_eq!(counts(&again), (0, 0, 1));

    // Run now: the scheduled copy only.
    let a = act(
        &app,
        json!({"action": "runNow", "taskIds": [scheduled, ready2]}),
    )
    .await;
    assert_eq!(counts(&a), (1, 0, 1));
    assert_eq!(task(&app, &scheduled).await["state"], "ready");

    // Retry: the failed copy, with fresh attempts.
    let a = act(
        &app,
        json!({"action": "retry", "taskIds": [failed, ready2]}),
    )
    .await;
    assert_eq!(counts(&a), (1, 0, 1));
    let f = task(&app, &failed).await;
    assert_eq!(
        (f["state"].as_str(), f["attempt"].as_u64()),
        (Some("ready"), Some(0))
    );

    // Move: a new copy in the other queue with the same data; the original
    // ends cancelled, naming it. A copy already there is skipped.
    let a = act(
        &app,
        json!({"action": "move", "to": "other", "taskIds": [ready2, running]}),
    )
    .await;
    assert_eq!(counts(&a), (1, 0, 1), "a running copy does not move: {a}");
    let old = task(&app, &ready2).await;
    assert_eq!(old["state"], "cancelled");
    let reason = old["failReason"].as_str().unwrap();
    let new_id = reason.strip_prefix("moved to other as ").expect(reason);
    let moved = task(&app, new_id).await;
    assert_eq!(
        (
            moved["queue"].as_str(),
            moved["state"].as_str(),
            &moved["data"]
        ),
        (
            Some("other"),
            Some("ready"),
            &json!({"kind": "job", "n": 3})
        )
    );
    assert_eq!(app.queue("other").await["ready"], 1);
    let back = act(
        &app,
        json!({"action": "move", "to": "other", "taskIds": [new_id]}),
    )
    .await;
    assert_eq!(counts(&back), (0, 0, 1));

    // Remove: any state.
    let a = act(
        &app,
        json!({"action": "remove", "taskIds": [new_id, scheduled, unknown]}),
    )
    .await;
    assert_eq!(counts(&a), (2, 0, 1));
    app.send(Method::GET, &format!("/status?task={new_id}"), None)
        .await
        .error(404, "unknown_task", None);
    assert_eq!(app.queue("other").await["ready"], 0);

    // Every action is in the audit log once.
    let mut site = crate::admin::Site::new(&app);
    let audit = site.get("/admin/audit").await.html().to_owned();
    for want in [
        "<td>cancel</td><td><code>4 selected task(s)</code></td><td><code class=\"clip\">1 task(s), 1 running asked to stop, 2 skipped</code>",
        "<td>run_now</td><td><code>2 selected task(s)</code>",
        "<td>move</td><td><code>2 selected task(s) to other</code>",
        "<td>remove</td><td><code>3 selected task(s)</code></td><td><code class=\"clip\">2 task(s), 1 skipped</code>",
    ] {
        assert!(audit.contains(want), "{want} in {audit}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_action_by_search_takes_every_match_in_steps_and_ends() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    // More matches than one step (1,000), and running copies a cancel only
    // flags, which stay where the search finds them.
    let n = 2_400;
    for start in (0..n).step_by(400) {
        let batch: Vec<Value> = (start..start + 400)
            .map(|i| json!({"data": {"i": i, "even": i % 2 == 0}, "key": format!("k{}", i % 3)}))
            .collect();
        app.send(Method::PUT, "/task", Some(Value::Array(batch)))
            .await
            .ok();
    }
    let w = app.register(&["q"]).await;
    let claimed = app.claim_n(&w, 1_000).await.len() + app.claim_n(&w, 200).await.len();
    assert_eq!(claimed, 1_200);
    let a = act(
        &app,
        json!({"action": "cancel", "queue": "q", "state": "running"}),
    )
    .await;
    assert_eq!(counts(&a), (0, 1_200, 0), "{a}");
    let again = act(
        &app,
        json!({"action": "cancel", "queue": "q", "state": "running"}),
    )
    .await;
    assert_eq!(
        counts(&again),
        (0, 0, 1_200),
        "flagged copies are stepped over"
    );

    // A search over every queue: the even ready ones move, in one call.
    let a = act(
        &app,
        json!({"action": "move", "to": "evens", "all": true, "state": "ready", "data": "even=true"}),
    )
    .await;
    assert_eq!(counts(&a), (600, 0, 0), "{a}");
    assert_eq!(app.queue("evens").await["ready"], 600);
    assert_eq!(app.queue("q").await["ready"], 600);
    // The moved copies (published now, in another queue) are not taken by
    // a second pass over every queue's ready copies with the same search.
    let a = act(
        &app,
        json!({"action": "remove", "all": true, "state": "ready", "key": "k1", "data": "even=true"}),
    )
    .await;
    assert_eq!(counts(&a).0, 200, "{a}");
    assert_eq!(app.queue("evens").await["ready"], 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bulk_actions_are_refused_by_field_and_change_nothing() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let id = publish(&app, json!({"data": {"n": 1}})).await;
    let many: Vec<String> = (0..1001).map(|_| id.clone()).collect();
    let refusals = [
        (json!({"taskIds": [id]}), "missing_field", "action"),
        (
            json!({"action": "explode", "taskIds": [id]}),
            "invalid_field",
            "action",
        ),
        (
            json!({"action": "move", "taskIds": [id]}),
            "invalid_field",
            "to",
        ),
        (
            json!({"action": "retry", "to": "x", "taskIds": [id]}),
            "invalid_field",
            "to",
        ),
        (
            json!({"action": "move", "to": "no way!", "taskIds": [id]}),
            "invalid_field",
            "to",
        ),
        (
            json!({"action": "cancel", "taskIds": []}),
            "invalid_field",
            "taskIds",
        ),
        (
            json!({"action": "cancel", "taskIds": [id, "nope"]}),
            "invalid_field",
            "taskIds[1]",
        ),
        (
            json!({"action": "cancel", "taskIds": id}),
            "invalid_field",
            "taskIds",
        ),
        (
            json!({"action": "cancel", "taskIds": many}),
            "invalid_field",
            "taskIds",
        ),
        (
            json!({"action": "cancel", "taskIds": [id], "state": "ready"}),
            "invalid_field",
            "state",
        ),
        (
            json!({"action": "cancel", "taskIds": [id], "queue": "q"}),
            "invalid_field",
            "taskIds",
        ),
        (
            json!({"action": "cancel", "queue": "q", "all": true, "state": "ready"}),
            "invalid_field",
            "taskIds",
        ),
        (json!({"action": "cancel"}), "missing_field", "taskIds"),
        (
            json!({"action": "cancel", "queue": "q"}),
            "missing_field",
            "state",
        ),
        (
            json!({"action": "cancel", "queue": "q", "state": "done"}),
            "invalid_field",
            "state",
        ),
        (
            json!({"action": "retry", "queue": "q", "state": "ready"}),
            "invalid_field",
            "state",
        ),
        (
            json!({"action": "runNow", "all": true, "state": "failed"}),
            "invalid_field",
            "state",
        ),
        (
            json!({"action": "move", "to": "x", "queue": "q", "state": "running"}),
            "invalid_field",
            "state",
        ),
        (
            json!({"action": "cancel", "queue": "q", "state": "ready", "data": "n"}),
            "invalid_field",
            "data",
        ),
        (
            json!({"action": "cancel", "queue": "q", "state": "ready", "since": "soon"}),
            "invalid_field",
            "since",
        ),
        (
            json!({"action": "cancel", "taskIds": [id], "colour": 1}),
            "unknown_field",
            "colour",
        ),
    ];
    for (body, code, field) in refusals {
        app.send(Method::POST, "/tasks", Some(body))
            .await
            .error(400, code, Some(field));
    }
    assert_eq!(task(&app, &id).await["state"], "ready", "nothing changed");
    assert_eq!(app.queue("q").await["ready"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_limited_to_queues_acts_only_within_them() {
    use interq::auth::new_key;
    use interq::config::KeyConfig;
    let (admin, admin_hash) = new_key();
    let (mailer, mailer_hash) = new_key();
    let app = crate::helpers::spawn_app_with(|s| {
        s.auth.admin = vec![admin_hash.to_string()];
        s.auth.keys = vec![KeyConfig {
            role: Some(interq::auth::Role::Admin),
            roles: vec![],
            hash: mailer_hash.to_string(),
            label: Some("mailer".into()),
            queues: Some(vec!["emails.*".into()]),
        }];
    })
    .await;
    let with_key = |key: &str| {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {key}").parse().unwrap(),
        );
        Api {
            base: app.base.clone(),
            client: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap(),
        }
    };
    let (admin, mailer) = (with_key(&admin), with_key(&mailer));
    admin
        .put_interest("emails.eu", json!({"to": "eu"}))
        .await
        .ok();
    admin
        .put_interest("billing", json!({"to": "billing"}))
        .await
        .ok();
    let mail = publish(&admin, json!({"data": {"to": "eu"}})).await;
    let bill = publish(&admin, json!({"data": {"to": "billing"}})).await;
    let a = act(
        &mailer,
        json!({"action": "cancel", "taskIds": [mail, bill]}),
    )
    .await;
    assert_eq!(counts(&a), (1, 0, 1), "billing is not the mailer's: {a}");
    assert_eq!(task(&admin, &bill).await["state"], "ready");
    mailer
        .send(
            Method::POST,
            "/tasks",
            Some(json!({"action": "remove", "all": true, "state": "ready"})),
        )
        .await
        .error(403, "queue_not_allowed", Some("queue"));
    mailer
        .send(
            Method::POST,
            "/tasks",
            Some(json!({"action": "remove", "queue": "billing", "state": "ready"})),
        )
        .await
        .error(403, "queue_not_allowed", Some("queue"));
    mailer
        .send(
            Method::POST,
            "/tasks",
            Some(json!({"action": "move", "to": "billing", "queue": "emails.eu", "state": "cancelled"})),
        )
        .await
        .error(403, "queue_not_allowed", Some("queue"));
    assert_eq!(task(&admin, &bill).await["state"], "ready");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_site_acts_on_ticked_rows_or_on_every_match() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(publish(&app, json!({"data": {"n": n, "even": n % 2 == 0}})).await);
    }
    let mut site = crate::admin::Site::new(&app);
    let html = site
        .get("/admin/queues/q?state=ready")
        .await
        .html()
        .to_owned();
    assert!(
        html.contains(r#"<form id="bulk" method="post" action="/admin/bulk""#)
            && html.contains(r#"value="cancel""#)
            && html.contains(r#"name="to""#)
            && !html.contains(r#"value="retry""#),
        "a ready list offers cancel, move and remove: {html}"
    );
    assert_eq!(html.matches(r#"form="bulk""#).count(), 5, "a box per row");
    assert!(html.contains("every task in this list (5)"));
    let back = "/admin/queues/q?state=ready&page=1";
    let to = site
        .post(
            "/admin/bulk",
            &[
                ("action", "cancel"),
                ("id", &ids[0]),
                ("id", &ids[1]),
                ("state", "ready"),
                ("queue", "q"),
                ("to", ""),
                ("back", back),
            ],
        )
        .await
        .redirect();
    assert_eq!(to, format!("{back}&done=Cancelled 2 task(s)"));
    assert_eq!(task(&app, &ids[1]).await["state"], "cancelled");
    // Every match of the list's search, ticked boxes or not.
    let to = site
        .post(
            "/admin/bulk",
            &[
                ("action", "move"),
                ("to", "evens"),
                ("scope", "matching"),
                ("state", "ready"),
                ("queue", "q"),
                ("data", "even=true"),
                ("id", &ids[3]),
                ("back", back),
            ],
        )
        .await
        .redirect();
    assert_eq!(to, format!("{back}&done=Moved 2 task(s) to evens"));
    assert_eq!(app.queue("evens").await["ready"], 2);
    assert_eq!(app.queue("q").await["ready"], 1, "only the odd one stays");
    let to = site
        .post(
            "/admin/bulk",
            &[("action", "remove"), ("id", &ids[0]), ("id", &ids[3])],
        )
        .await
        .redirect();
    assert!(to.ends_with("done=Removed 2 task(s)"), "{to}");
    let to = site
        .post("/admin/bulk", &[("action", "retry"), ("id", &ids[2])])
        .await
        .redirect();
    assert!(
        to.ends_with("done=0 task(s) will run again; 1 skipped (not failed)"),
        "{to}"
    );

    // Bad forms are refused by field and change nothing.
    let keep = publish(&app, json!({"data": {"n": 5}})).await;
    type Form<'a> = &'a [(&'a str, &'a str)];
    let bad: [(Form, u16, &str); 8] = [
        (&[("action", "cancel")], 400, "id"),
        (&[("action", "cancel"), ("id", "nope")], 400, "taskId"),
        (&[("action", "explode"), ("id", &keep)], 400, "action"),
        (&[("action", "move"), ("id", &keep), ("to", "")], 400, "to"),
        (
            &[("action", "move"), ("id", &keep), ("to", "no way!")],
            400,
            "to",
        ),
        (
            &[
                ("action", "retry"),
                ("scope", "matching"),
                ("state", "ready"),
            ],
            400,
            "action",
        ),
        (
            &[
                ("action", "cancel"),
                ("scope", "matching"),
                ("state", "done"),
            ],
            400,
            "state",
        ),
        (
            &[("action", "cancel"), ("scope", "some"), ("id", &keep)],
            400,
            "scope",
        ),
    ];
    for (form, status, field) in bad {
        site.post("/admin/bulk", form).await.error(status, field);
    }
    let refused = site
        .post_raw("/admin/bulk", &[("action", "remove"), ("id", &keep)])
        .await;
    assert_eq!(refused.status.as_u16(), 403, "no CSRF token");
    assert_eq!(task(&app, &keep).await["state"], "ready");

    // The failed and scheduled lists offer their own actions.
    app.send(
        Method::POST,
        "/tasks",
        Some(json!({"action": "remove", "queue": "q", "state": "ready"})),
    )
    .await
    .ok();
    publish(&app, json!({"data": {"n": 6}, "maxAttempts": 1})).await;
    publish(&app, json!({"data": {"n": 7}, "runAt": 4_000_000_000u64})).await;
    let w = app.register(&["q"]).await;
    let claimed = app.claim(&w).await;
    app.update(&w, &claimed, "fail", json!({})).await.ok();
    let failed = site.get("/admin/failed").await.html().to_owned();
    assert!(failed.contains(r#"value="retry""#) && !failed.contains(r#"value="runNow""#));
    let scheduled = site.get("/admin/scheduled").await.html().to_owned();
    assert!(scheduled.contains(r#"value="runNow""#) && !scheduled.contains(r#"value="retry""#));
}
