//! Search fields: a queue that keeps fields of its copies' data in memory
//! answers searches on them as a search that reads every payload does.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_in, spawn_app_with, TestApp};

/// The ids a search lists, in its order.
async fn found(app: &TestApp, query: &str) -> Vec<String> {
    let listed = app
        .send(
            Method::GET,
            &format!("/tasks?state=ready&queue=q&limit=1000&{query}"),
            None,
        )
        .await
        .ok();
    listed
        .as_array()
        .unwrap_or_else(|| panic!("{query}: {listed}"))
        .iter()
        .map(|t| t["data"]["n"].to_string())
        .collect()
}

/// Whether a copy's data passes a search, as the test reads it.
type Keep = Box<dyn Fn(&Value) -> bool>;

/// The `n` of every published copy whose data passes `keep`.
fn expected(published: &[Value], keep: impl Fn(&Value) -> bool) -> Vec<String> {
    published
        .iter()
        .filter(|d| keep(d))
        .map(|d| d["n"].to_string())
        .collect()
}

fn data_of(n: u64) -> Value {
    let mut d = json!({"n": n, "email": format!("user-{n}@x.org"), "order": {"id": n % 7}});
    match n % 5 {
        // Missing, not a scalar, too long to keep: each still searched right.
        0 => {
            d.as_object_mut().unwrap().remove("email");
        }
        1 => d["order"] = json!([n]),
        2 => d["email"] = json!(format!("user-{n}@x.org{}", "-".repeat(300))),
        _ => {}
    }
    d
}

#[tokio::test]
async fn a_search_on_search_fields_finds_what_reading_every_payload_finds() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let mut published = Vec::new();
    // Copies published before the queue kept any field.
    for n in 0..40 {
        published.push(data_of(n));
        app.publish_data(data_of(n)).await;
    }
    let set = app
        .send(
            Method::PUT,
            "/queue",
            Some(json!({"queue": "q", "searchFields": ["email", "order.id", "plan"]})),
        )
        .await
        .ok();
    assert_eq!(
        set["settings"]["searchFields"],
        json!(["email", "order.id", "plan"])
    );
    for n in 40..100 {
        published.push(data_of(n));
        app.publish_data(data_of(n)).await;
    }
    let email = |d: &Value| d["email"].as_str().map(str::to_owned);
    let searches: Vec<(&str, Keep)> = vec![
        (
            "data=email=user-1*",
            Box::new(move |d| email(d).is_some_and(|e| e.starts_with("user-1"))),
        ),
        (
            "data=email=*@x.org",
            Box::new(move |d| email(d).is_some_and(|e| e.ends_with("@x.org"))),
        ),
        (
            "data=email=user-7*-",
            Box::new(move |d| {
                email(d).is_some_and(|e| e.starts_with("user-7") && e.ends_with('-'))
            }),
        ),
        ("data=order.id=3", Box::new(|d| d["order"]["id"] == 3)),
        (
            "data=order.id=*",
            Box::new(|d| d["order"]["id"].is_number()),
        ),
        ("data=plan=*", Box::new(|_| false)),
        // One condition on a kept field and one on a field that is not.
        (
            "data=%5B%22order.id%3D2%22%2C%22n%3D*3%22%5D",
            Box::new(|d| d["order"]["id"] == 2 && d["n"].to_string().ends_with('3')),
        ),
    ];
    for (query, keep) in &searches {
        assert_eq!(
            found(&app, query).await,
            expected(&published, keep),
            "{query}"
        );
    }

    // The fields are kept in each copy's record: a restart answers the same.
    let dir = app.stop().await;
    let app = spawn_app_in(dir, |_| {}).await;
    for (query, keep) in &searches {
        assert_eq!(
            found(&app, query).await,
            expected(&published, keep),
            "{query} after a restart"
        );
    }

    // Dropping the fields changes what copies published later keep, not
    // what any search finds.
    app.send(
        Method::PUT,
        "/queue",
        Some(json!({"queue": "q", "searchFields": null})),
    )
    .await
    .ok();
    assert_eq!(
        app.status("queue=q").await["settings"].get("searchFields"),
        None
    );
    for n in 100..110 {
        published.push(data_of(n));
        app.publish_data(data_of(n)).await;
    }
    for (query, keep) in &searches {
        assert_eq!(
            found(&app, query).await,
            expected(&published, keep),
            "{query} after dropping"
        );
    }
}

#[tokio::test]
async fn bad_search_fields_are_refused_by_field_and_change_nothing() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.send(
        Method::PUT,
        "/queue",
        Some(json!({"queue": "q", "searchFields": ["email"]})),
    )
    .await
    .ok();
    let nine: Vec<String> = (0..9).map(|i| format!("f{i}")).collect();
    for bad in [
        json!(nine),
        json!(["a..b"]),
        json!(["a", "a"]),
        json!(["ok", 3]),
        json!({"email": true}),
        json!(7),
        json!(["x".repeat(201)]),
    ] {
        let why = app
            .send(
                Method::PUT,
                "/queue",
                Some(json!({"queue": "q", "searchFields": bad})),
            )
            .await
            .error(400, "invalid_field", Some("searchFields"));
        assert!(!why.is_empty(), "{bad}");
        assert_eq!(
            app.status("queue=q").await["settings"]["searchFields"],
            json!(["email"]),
            "{bad} changed nothing"
        );
    }
    // A form's comma-separated text is a list.
    let set = app
        .send(
            Method::PUT,
            "/queue?queue=q&searchFields=email,%20order.id",
            None,
        )
        .await
        .ok();
    assert_eq!(
        set["settings"]["searchFields"],
        json!(["email", "order.id"])
    );
}

#[tokio::test]
async fn pages_follow_a_cursor_whatever_happens_to_the_copy_it_names() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    for n in 0..250 {
        app.publish_data(json!({"n": n, "odd": n % 2 == 1})).await;
    }
    let page = |after: String, extra: &'static str| {
        let app = &app;
        async move {
            let listed = app
                .send(
                    Method::GET,
                    &format!("/tasks?state=ready&queue=q&limit=100&after={after}{extra}"),
                    None,
                )
                .await
                .ok();
            listed
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["taskId"].as_str().unwrap().to_owned(),
                        t["data"]["n"].as_u64().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let start = "00000000-0000-0000-0000-000000000000".to_owned();
    let first = page(start.clone(), "").await;
    assert_eq!(
        first.iter().map(|t| t.1).collect::<Vec<_>>(),
        (0..100).collect::<Vec<_>>()
    );
    // The copy the cursor names is claimed (it leaves the list) before the
    // next page is asked for: the page goes on after it all the same.
    let worker = app.register(&["q"]).await;
    let claimed = app.claim_n(&worker, 100).await;
    assert_eq!(claimed.len(), 100);
    let mut seen = Vec::new();
    let mut after = first.last().unwrap().0.clone();
    loop {
        let next = page(after.clone(), "").await;
        seen.extend(next.iter().map(|t| t.1));
        match next.last() {
            Some(last) if next.len() == 100 => after = last.0.clone(),
            _ => break,
        }
    }
    assert_eq!(seen, (100..250).collect::<Vec<_>>());
    // With a search, the cursor goes on through its matches.
    let odd = page(start, "&data=odd=true").await;
    assert_eq!(odd.first().map(|t| t.1), Some(101));
    let more = page(odd.last().unwrap().0.clone(), "&data=odd=true").await;
    assert_eq!(more.len(), 75 - odd.len());
    assert!(more
        .iter()
        .all(|t| t.1 % 2 == 1 && t.1 > odd.last().unwrap().1));

    app.send(Method::GET, "/tasks?state=ready&after=nope", None)
        .await
        .error(400, "invalid_field", Some("after"));
}

#[tokio::test]
async fn the_archive_is_listed_newest_first_by_cursor_and_bad_queries_are_refused() {
    let app = spawn_app_with(|s| s.tasks.history = 2).await;
    app.put_interest("q", json!("*")).await.ok();
    let worker = app.register(&["q"]).await;
    let mut done = Vec::new();
    for n in 0..6 {
        app.publish_data(json!({"n": n})).await;
        let task = app.claim(&worker).await;
        app.update(&worker, &task, "complete", json!({})).await.ok();
        done.push(task["taskId"].as_str().expect("an id").to_owned());
    }
    let ids = |listed: Value| -> Vec<String> {
        listed
            .as_array()
            .unwrap_or_else(|| panic!("{listed}"))
            .iter()
            .map(|t| t["taskId"].as_str().expect("an id").to_owned())
            .collect()
    };
    let page = |query: String| {
        let app = &app;
        async move {
            app.send(Method::GET, &format!("/tasks?{query}"), None)
                .await
        }
    };
    let base = "state=completed&queue=q&archived=true";
    let listed = page(format!("{base}&limit=2")).await.ok();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["archived"] == true),
        "{listed}"
    );
    let first = ids(listed);
    assert_eq!(first, [done[3].clone(), done[2].clone()]);
    let rest = ids(page(format!("{base}&before={}", first[1])).await.ok());
    assert_eq!(rest, [done[1].clone(), done[0].clone()]);
    let n1 = ids(page(format!("{base}&data=n%3D1")).await.ok());
    assert_eq!(n1, [done[1].clone()]);
    // Back by the first id of a page: the nearest newer ones, newest first.
    let back = ids(page(format!("{base}&limit=2&after={}", done[0])).await.ok());
    assert_eq!(back, [done[2].clone(), done[1].clone()]);
    let newest = ids(page(format!("{base}&after={}", done[2])).await.ok());
    assert_eq!(newest, [done[3].clone()]);
    // An archived copy's page is found by its id, and says so.
    let oldest = app.status(&format!("task={}", done[0])).await;
    assert_eq!(oldest["task"]["state"], "completed", "{oldest}");
    assert_eq!(oldest["task"]["archived"], true, "{oldest}");
    let newest = app.status(&format!("task={}", done[5])).await;
    assert!(newest["task"].get("archived").is_none(), "{newest}");
    assert_eq!(oldest["task"]["data"]["n"], 0);
    for (query, field) in [
        ("state=completed&archived=true".to_owned(), "queue!"),
        ("state=ready&queue=q&archived=true".to_owned(), "state"),
        (format!("{base}&offset=2"), "offset"),
        (format!("{base}&after={}", done[5]), "after"),
        (
            format!("{base}&after={}&before={}", done[0], done[3]),
            "after",
        ),
        (format!("{base}&before={}", done[5]), "before"),
        (format!("{base}&before=nonsense"), "before"),
        (
            format!("state=completed&queue=q&before={}", done[0]),
            "before",
        ),
        (
            "state=completed&queue=q&archived=perhaps".to_owned(),
            "archived",
        ),
    ] {
        let (code, field) = match field.strip_suffix('!') {
            Some(f) => ("missing_field", f),
            None => ("invalid_field", field),
        };
        let why = page(query.clone()).await.error(400, code, Some(field));
        assert!(!why.is_empty(), "{query}");
    }
}

/// The ids `q`'s archive lists.
pub(crate) async fn listed(app: &crate::helpers::Api) -> Vec<String> {
    let page = app
        .send(
            Method::GET,
            "/tasks?state=completed&queue=q&archived=true",
            None,
        )
        .await
        .ok();
    page.as_array()
        .expect("a list")
        .iter()
        .map(|t| t["taskId"].as_str().expect("an id").to_owned())
        .collect()
}

/// Runs one task a copy in `q` per `n`, each writing `output n` to its log
/// before it completes; their ids, in order.
pub(crate) async fn run_with_logs(
    app: &crate::helpers::Api,
    worker: &str,
    n: std::ops::Range<u32>,
) -> Vec<String> {
    let mut done = Vec::new();
    for n in n {
        app.publish_data(json!({"n": n})).await;
        let task = app.claim(worker).await;
        let text = format!("output {n}\n");
        app.send(
            Method::POST,
            "/task/log",
            Some(json!({"workerId": worker, "taskId": task["taskId"], "text": text})),
        )
        .await
        .ok();
        app.update(worker, &task, "complete", json!({})).await.ok();
        done.push(task["taskId"].as_str().expect("an id").to_owned());
    }
    done
}

#[tokio::test]
async fn archived_copies_keep_their_logs_and_are_removed_by_id_or_by_search() {
    let app = spawn_app_with(|s| {
        s.tasks.history = 2;
        s.tasks.log_every_ms = 0;
    })
    .await;
    app.put_interest("q", json!("*")).await.ok();
    let worker = app.register(&["q"]).await;
    let done = run_with_logs(&app, &worker, 0..6).await;
    assert_eq!(listed(&app).await, [3, 2, 1, 0].map(|i| done[i].clone()));
    let log = app.task_log(&done[0]).await;
    assert_eq!(
        (log["text"].as_str(), log["state"].as_str()),
        (Some("output 0\n"), Some("completed"))
    );

    // Bad requests change nothing.
    let by_search = |extra: Value| {
        let mut body =
            json!({"action": "remove", "queue": "q", "state": "completed", "archived": true});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for (body, field) in [
        (by_search(json!({"state": "failed"})), "archived"),
        (by_search(json!({"action": "retry"})), "state"),
        (by_search(json!({"archived": "perhaps"})), "archived"),
        (
            json!({"action": "remove", "all": true, "state": "completed", "archived": true}),
            "archived",
        ),
        (
            json!({"action": "remove", "taskIds": [done[0]], "archived": true}),
            "archived",
        ),
    ] {
        let why = app
            .send(Method::POST, "/tasks", Some(body.clone()))
            .await
            .error(400, "invalid_field", Some(field));
        assert!(!why.is_empty(), "{body}");
    }
    assert_eq!(listed(&app).await.len(), 4);

    // By id, as a selection, and by a search of the archive.
    let one = json!({"action": "remove", "taskIds": [done[0]]});
    let acted = app.send(Method::POST, "/tasks", Some(one)).await.ok();
    assert_eq!(
        (acted["done"].as_u64(), acted["skipped"].as_u64()),
        (Some(1), Some(0))
    );
    let acted = app
        .send(
            Method::POST,
            "/tasks",
            Some(by_search(json!({"data": "n=2"}))),
        )
        .await
        .ok();
    assert_eq!(acted["done"], 1, "{acted}");
    assert_eq!(listed(&app).await, [3, 1].map(|i| done[i].clone()));
    for gone in [&done[0], &done[2]] {
        app.send(Method::GET, &format!("/status?task={gone}"), None)
            .await
            .error(404, "unknown_task", None);
        app.send(Method::GET, &format!("/task/log?taskId={gone}"), None)
            .await
            .error(404, "unknown_task", None);
    }
    // Every archived copy of the queue, a page of the archive at a time.
    let acted = app
        .send(Method::POST, "/tasks", Some(by_search(json!({}))))
        .await
        .ok();
    assert_eq!(acted["done"], 2, "{acted}");
    assert!(listed(&app).await.is_empty());
    let hot = app
        .send(Method::GET, "/tasks?state=completed&queue=q", None)
        .await
        .ok();
    assert_eq!(
        hot.as_array().map(Vec::len),
        Some(2),
        "memory's copies stay"
    );
}
