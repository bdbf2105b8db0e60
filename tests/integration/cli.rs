//! The operator's commands (`interq status`, `tasks`, `retry` …) as a real
//! child process against the real server, and the routes they stand on.

use std::process::{Command, Output, Stdio};

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{interq_binary, spawn_app, spawn_app_with, TestApp};

/// Runs `interq <args>` against `app`; its output.
fn interq(app: &TestApp, args: &[&str]) -> Output {
    interq_with(args, &[("INTERQ_URL", &app.base)], None)
}

fn interq_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut child = Command::new(interq_binary())
        .args(args)
        .env_remove("INTERQ_URL")
        .env_remove("INTERQ_KEY")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Its `--json` answer.
fn json_of(app: &TestApp, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let text = stdout(&interq(app, &args));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts a failure with `code` whose message says `says`.
fn fails(out: &Output, code: i32, says: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(says), "{says:?} not in: {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operator_command_answers_for_people_and_for_scripts() {
    let app = spawn_app().await;
    let set = json_of(
        &app,
        &["interests", "emails", "--set", r#"{"to": "@x\\.com$"}"#],
    );
    assert_eq!(set["interests"], json!({"to": "@x\\.com$"}));
    let shown = json_of(&app, &["interests"]);
    assert_eq!(shown, json!({"emails": {"to": "@x\\.com$"}}));
    assert!(stdout(&interq(&app, &["interests", "emails"])).contains("emails"));

    // Publish: data as an argument, or on standard input.
    let one = json_of(
        &app,
        &[
            "publish",
            r#"{"to": "a@x.com"}"#,
            "--priority",
            "high",
            "--task-key",
            "k1",
            "--max-attempts",
            "1",
        ],
    );
    assert_eq!(one["queues"], json!(["emails"]));
    let out = interq_with(
        &["publish"],
        &[("INTERQ_URL", &app.base)],
        Some(r#"{"to": "b@x.com"}"#),
    );
    assert!(stdout(&out).contains("to emails"));
    let nowhere = stdout(&interq(&app, &["publish", r#"{"to": "c@y.com"}"#]));
    assert!(nowhere.contains("no queue"), "{nowhere}");

    let queues = json_of(&app, &["queues"]);
    assert_eq!(queues[0]["ready"], 2, "{queues}");
    let table = stdout(&interq(&app, &["queues"]));
    assert!(table.starts_with("QUEUE"), "{table}");
    assert!(
        table.lines().nth(1).unwrap().starts_with("emails"),
        "{table}"
    );
    let status = json_of(&app, &["status"]);
    assert_eq!(status["counters"]["published"], 3);
    assert!(stdout(&interq(&app, &["status"])).contains("workers: 0"));

    let ready = json_of(&app, &["tasks", "--queue", "emails"]);
    assert_eq!(ready.as_array().unwrap().len(), 2);
    // Priority first.
    assert_eq!(ready[0]["key"], "k1");
    let listed = stdout(&interq(&app, &["tasks", "--queue", "emails"]));
    assert!(
        listed.contains("k1") && listed.contains("ready"),
        "{listed}"
    );

    // A worker takes the first and fails it for good; retry brings it back.
    let worker = app.register(&["emails"]).await;
    let workers = json_of(&app, &["workers"]);
    assert_eq!(workers[0]["workerId"], json!(worker));
    let claimed = app.claim(&worker).await;
    app.update(
        &worker,
        &claimed,
        "fail",
        json!({"failReason": "smtp\nsecond line"}),
    )
    .await
    .ok();
    let failed = json_of(&app, &["tasks", "--state", "failed"]);
    assert_eq!(failed[0]["taskId"], claimed["taskId"]);
    let failed_table = stdout(&interq(&app, &["tasks", "--state", "failed"]));
    assert!(
        failed_table.contains("smtp") && !failed_table.contains("second line"),
        "{failed_table}"
    );
    let id = claimed["taskId"].as_str().unwrap();
    let task = json_of(&app, &["task", id]);
    assert_eq!(task["state"], "failed");
    let record = stdout(&interq(&app, &["task", id]));
    assert!(
        record.contains("history:") && record.contains("failed"),
        "{record}"
    );
    let retried = json_of(&app, &["retry", id]);
    assert_eq!(retried["retried"], json!([id]));
    assert_eq!(app.queue("emails").await["ready"], 2);

    // Pause and resume.
    let paused = json_of(&app, &["pause", "emails"]);
    assert_eq!(paused["settings"]["paused"], true);
    assert!(
        app.claim(&worker).await.is_null(),
        "a paused queue hands out nothing"
    );
    assert!(stdout(&interq(&app, &["resume", "emails"])).contains("hands out tasks"));
    assert!(!app.claim(&worker).await.is_null());

    // Cancel by key.
    let cancelled = json_of(&app, &["cancel", "--task-key", "k1"]);
    assert!(cancelled.get("cancelled").is_some(), "{cancelled}");

    // Schedules.
    app.send(
        Method::PUT,
        "/schedule",
        Some(json!({"name": "nightly", "cron": "0 3 * * *", "task": {"data": {"to": "n@x.com"}}})),
    )
    .await
    .ok();
    let schedules = json_of(&app, &["schedules"]);
    assert_eq!(schedules[0]["name"], "nightly");
    assert!(stdout(&interq(&app, &["schedules"])).contains("nightly"));
    // A publish's group.
    let grouped = json_of(
        &app,
        &["publish", r#"{"to": "g@x.com"}"#, "--group", "tenant-1"],
    );
    let copy = grouped["copies"][0]["taskId"].as_str().unwrap().to_owned();
    assert_eq!(
        app.status(&format!("task={copy}")).await["task"]["group"],
        "tenant-1"
    );
    // A publish whose outputs go on (docs/workflows.md).
    let flowing = json_of(
        &app,
        &["publish", r#"{"to": "f@x.com"}"#, "--publish-output"],
    );
    let copy = flowing["copies"][0]["taskId"].as_str().unwrap().to_owned();
    assert_eq!(
        app.status(&format!("task={copy}")).await["task"]["publishOutput"],
        true
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_say_whose_mistake_it_was() {
    let app = spawn_app().await;
    // The command line: 2.
    fails(&interq(&app, &["publish", "not json"]), 2, "not JSON");
    fails(&interq(&app, &["publish", "[1, 2]"]), 2, "JSON object");
    fails(&interq(&app, &["task", "nope"]), 2, "not a task id");
    fails(&interq(&app, &["retry"]), 2, "--all");
    fails(&interq(&app, &["cancel"]), 2, "--task-key");
    fails(
        &interq(&app, &["interests", "q", "--set", "{"]),
        2,
        "not JSON",
    );
    fails(
        &interq(&app, &["status", "--url", "ftp://x"]),
        2,
        "not an http(s) URL",
    );
    // interq refused: 1, with its message.
    fails(
        &interq(&app, &["task", "01a2383c-426f-77df-87f5-82d4b2be0000"]),
        1,
        "unknown_task",
    );
    fails(&interq(&app, &["tasks", "--state", "bogus"]), 1, "`state`");
    fails(
        &interq(&app, &["interests", "q", "--set", "5"]),
        1,
        "`interests`",
    );
    fails(&interq(&app, &["pause", "bad name!"]), 1, "`queue`");
    fails(&interq(&app, &["interests", "nobody"]), 1, "no interests");
    // Unreachable: 3.
    fails(
        &interq_with(&["status"], &[("INTERQ_URL", "http://127.0.0.1:1")], None),
        3,
        "cannot reach interq",
    );
    // Nothing changed.
    assert_eq!(app.status("counters").await["counters"]["published"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_commands_present_the_key_from_the_environment() {
    let (admin, hash) = interq::auth::new_key();
    let app = spawn_app_with(|s| s.auth.admin = vec![hash.to_string()]).await;
    fails(&interq(&app, &["queues"]), 1, "401");
    let out = interq_with(
        &["queues", "--json"],
        &[("INTERQ_URL", &app.base), ("INTERQ_KEY", &admin)],
        None,
    );
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&out)).unwrap(),
        json!([])
    );
    // And over the line protocol.
    let app = spawn_app_with(|s| {
        s.auth.admin = vec![hash.to_string()];
        s.line.listen = Some("127.0.0.1:0".into());
    })
    .await;
    let line = app.line.clone().unwrap();
    let out = interq_with(
        &["interests", "q", "--set", "\"*\"", "--json"],
        &[("INTERQ_URL", &line), ("INTERQ_KEY", &admin)],
        None,
    );
    assert!(stdout(&out).contains("\"q\""));
    let out = interq_with(
        &["interests", "--json"],
        &[("INTERQ_URL", &app.base), ("INTERQ_KEY", &admin)],
        None,
    );
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&out)).unwrap(),
        json!({"q": "*"})
    );
}

#[tokio::test]
async fn task_lists_and_retries_check_their_parameters() {
    let app = spawn_app().await;
    let list = |q: &'static str| app.send(Method::GET, q, None);
    list("/tasks")
        .await
        .error(400, "missing_field", Some("state"));
    list("/tasks?state=done")
        .await
        .error(400, "invalid_field", Some("state"));
    list("/tasks?state=ready&limit=0")
        .await
        .error(400, "invalid_field", Some("limit"));
    list("/tasks?state=ready&queue=a%20b")
        .await
        .error(400, "invalid_field", Some("queue"));
    list("/tasks?state=ready&colour=red")
        .await
        .error(400, "unknown_field", Some("colour"));
    assert_eq!(list("/tasks?state=ready").await.ok(), json!([]));
    let retry = |body: Value| app.send(Method::POST, "/retry", Some(body));
    retry(json!({}))
        .await
        .error(400, "missing_field", Some("taskId"));
    retry(json!({"taskId": "x"}))
        .await
        .error(400, "invalid_field", Some("taskId"));
    retry(json!({"queue": "q", "all": true}))
        .await
        .error(400, "invalid_field", Some("taskId"));
    retry(json!({"taskId": "01a2383c-426f-77df-87f5-82d4b2be0000"}))
        .await
        .error(404, "unknown_task", Some("taskId"));
    assert_eq!(
        retry(json!({"all": true})).await.ok(),
        json!({"retried": []})
    );

    // Paging, and a queue's failed copies retried at once.
    app.put_interest("q", json!("*")).await.ok();
    let worker = app.register(&["q"]).await;
    for i in 0..5 {
        app.publish(json!({"data": {"i": i}, "maxAttempts": 1}))
            .await
            .ok();
    }
    for t in app.claim_n(&worker, 5).await {
        app.update(&worker, &t, "fail", json!({})).await.ok();
    }
    let page = list("/tasks?state=failed&queue=q&offset=1&limit=2")
        .await
        .ok();
    assert_eq!(page.as_array().unwrap().len(), 2);
    let retried = retry(json!({"queue": "q"})).await.ok();
    assert_eq!(retried["retried"].as_array().unwrap().len(), 5);
    assert_eq!(app.queue("q").await["ready"], 5);
}

#[tokio::test]
async fn a_key_limited_to_queues_lists_and_retries_only_those() {
    use interq::config::KeyConfig;
    let (key, hash) = interq::auth::new_key();
    let app = spawn_app_with(|s| {
        s.auth.keys = vec![KeyConfig {
            role: Some(interq::auth::Role::Admin),
            roles: vec![],
            hash: hash.to_string(),
            label: Some("ops".into()),
            queues: Some(vec!["mine".into()]),
        }];
    })
    .await;
    let call = |method: Method, path: &str, body: Value| {
        app.client
            .request(method, format!("{}{path}", app.base))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(
            call(Method::GET, "/tasks?state=ready&queue=mine", json!({}))
                .await
                .unwrap()
        ),
        200
    );
    assert_eq!(
        status(
            call(Method::GET, "/tasks?state=ready&queue=other", json!({}))
                .await
                .unwrap()
        ),
        403
    );
    assert_eq!(
        status(
            call(Method::GET, "/tasks?state=ready", json!({}))
                .await
                .unwrap()
        ),
        403
    );
    assert_eq!(
        status(
            call(Method::POST, "/retry", json!({"queue": "mine"}))
                .await
                .unwrap()
        ),
        200
    );
    assert_eq!(
        status(
            call(Method::POST, "/retry", json!({"queue": "other"}))
                .await
                .unwrap()
        ),
        403
    );
    assert_eq!(
        status(
            call(Method::POST, "/retry", json!({"all": true}))
                .await
                .unwrap()
        ),
        403
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tasks_log_is_shown_read_and_followed_to_its_end() {
    let app = spawn_app_with(|s| s.tasks.log_every_ms = 0).await;
    app.put_interest("q", json!("*")).await.ok();
    let worker = app.register(&["q"]).await;
    app.publish_data(json!({"n": 1})).await;
    let task = app.claim(&worker).await;
    let id = task["taskId"].as_str().unwrap().to_owned();
    let append = |text: &str| {
        app.send(
            Method::POST,
            "/task/log",
            Some(json!({"workerId": worker, "taskId": id, "text": text})),
        )
    };
    append("step 1\nstep 2\n").await.ok();
    assert_eq!(stdout(&interq(&app, &["log", &id])), "step 1\nstep 2\n");
    assert_eq!(
        stdout(&interq(&app, &["log", &id, "--offset", "7"])),
        "step 2\n"
    );
    let shown = stdout(&interq(&app, &["task", &id]));
    assert!(shown.contains("log (14 bytes kept"), "{shown}");
    assert!(shown.contains("  step 2\n"), "{shown}");
    let record = json_of(&app, &["task", &id]);
    assert_eq!(record["log"]["text"], "step 1\nstep 2\n");
    let read = json_of(&app, &["log", &id]);
    assert_eq!(read["next"], 14);

    // Following: what comes while it runs, then the end, then the exit code.
    let bin = interq_binary();
    let base = app.base.clone();
    let follow_id = id.clone();
    let following = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(["log", &follow_id, "--follow"])
            .env("INTERQ_URL", base)
            .output()
            .unwrap()
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    append("step 3\n").await.ok();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app.update(&worker, &task, "complete", json!({})).await.ok();
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), following)
        .await
        .expect("follow ends with the task")
        .unwrap();
    assert_eq!(stdout(&out), "step 1\nstep 2\nstep 3\n");

    // A task that failed for good: exit 4; --json gives a line per piece.
    app.publish(json!({"data": {"n": 2}, "maxAttempts": 1}))
        .await
        .ok();
    let second = app.claim(&worker).await;
    let second_id = second["taskId"].as_str().unwrap();
    app.send(
        Method::POST,
        "/task/log",
        Some(json!({"workerId": worker, "taskId": second_id, "text": "boom\n"})),
    )
    .await
    .ok();
    app.update(&worker, &second, "fail", json!({"failReason": "no"}))
        .await
        .ok();
    let out = interq(&app, &["log", second_id, "--follow", "--json"]);
    fails(&out, 4, "ended failed");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            json!({"text": "boom\n"}),
            json!({"end": {"state": "failed", "total": 5}})
        ]
    );
    // Bad input: an id that is none, a task that is not there.
    fails(&interq(&app, &["log", "nope"]), 2, "not a task id");
    fails(
        &interq(&app, &["log", "0190a3c8-0000-7000-8000-000000000000", "-f"]),
        1,
        "does not exist",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn task_lists_search_by_key_publisher_reason_time_and_data() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    // Copies are told apart by their email.
    let published = |body: Value| {
        let app = &app;
        async move {
            let email = body["data"]["email"].clone();
            app.publish(body).await.ok();
            email
        }
    };
    let evan = published(json!({"data": {"email": "evan@x.org", "order": {"id": 42}}, "key": "order-42", "publisher": "shop", "maxAttempts": 1})).await;
    let eve = published(json!({"data": {"email": "eve@y.org", "order": {"id": 7}}, "publisher": "shop", "maxAttempts": 1})).await;
    let bob = published(
        json!({"data": {"email": "bob@x.org"}, "publisher": "billing", "maxAttempts": 1}),
    )
    .await;
    let list = |q: String| {
        let app = &app;
        async move {
            let page = app.send(Method::GET, &q, None).await.ok();
            page.as_array()
                .unwrap()
                .iter()
                .map(|t| t["data"]["email"].clone())
                .collect::<Vec<_>>()
        }
    };
    let ready = "/tasks?state=ready&queue=q";
    assert_eq!(
        list(format!("{ready}&key=order-42")).await,
        vec![evan.clone()]
    );
    assert_eq!(
        list(format!("{ready}&publisher=shop")).await,
        [evan.clone(), eve.clone()]
    );
    assert_eq!(
        list(format!("{ready}&data=email%3D*%40x.org")).await,
        [evan.clone(), bob.clone()]
    );
    assert_eq!(
        list(format!("{ready}&data=order.id%3D42")).await,
        vec![evan.clone()]
    );
    // Several conditions: a JSON object (or list) in the query, or a body.
    let both = r#"{"email":"e*","order.id":"7"}"#;
    assert_eq!(
        list(format!("{ready}&data={}", urlencode(both))).await,
        vec![eve.clone()]
    );
    assert_eq!(
        list(format!("{ready}&since=2000-01-01&until=2999-01-01"))
            .await
            .len(),
        3
    );
    assert!(list(format!("{ready}&until=2000-01-01T00:00"))
        .await
        .is_empty());

    // Bad searches name their field and list nothing.
    let bad = |q: &'static str, field: &'static str| {
        let app = &app;
        async move {
            app.send(Method::GET, &format!("{ready}&{q}"), None)
                .await
                .error(400, "invalid_field", Some(field));
        }
    };
    bad("data=email", "data").await;
    bad("data=a..b%3D1", "data").await;
    bad("data=%7B%22a%22%3A1%7D", "data").await;
    bad("data=%5B1%5D", "data").await;
    bad("since=soon", "since").await;
    bad("since=20&until=10", "until").await;
    bad("key=", "key").await;
    bad("reason=", "reason").await;
    bad(
        Box::leak(format!("publisher={}", "p".repeat(300)).into_boxed_str()),
        "publisher",
    )
    .await;
    let many: Vec<String> = (0..17).map(|i| format!("f{i}=x")).collect();
    app.send(
        Method::GET,
        &format!("{ready}&data={}", urlencode(&json!(many).to_string())),
        None,
    )
    .await
    .error(400, "invalid_field", Some("data"));

    // By failure reason, from the command line too.
    let worker = app.register(&["q"]).await;
    let claimed = app.claim_n(&worker, 3).await;
    for (t, reason) in claimed
        .iter()
        .zip(["Exit code 3: boom", "timed out", "exit code 1"])
    {
        app.update(&worker, t, "fail", json!({"failReason": reason}))
            .await
            .ok();
    }
    let failed = json_of(
        &app,
        &["tasks", "--state", "failed", "--reason", "EXIT CODE"],
    );
    assert_eq!(failed.as_array().unwrap().len(), 2, "{failed}");
    let found = json_of(
        &app,
        &[
            "tasks",
            "--state",
            "failed",
            "--data",
            "email=*@x.org",
            "--data",
            "order.id=42",
        ],
    );
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["data"]["email"], evan);
    // Paging by a cursor: the copies published after the one named.
    let after = json_of(
        &app,
        &[
            "tasks",
            "--state",
            "failed",
            "--after",
            found[0]["taskId"].as_str().unwrap(),
        ],
    );
    let emails: Vec<&Value> = after
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["data"]["email"])
        .collect();
    assert_eq!(emails, [&eve, &bob], "{after}");
    fails(
        &interq(&app, &["tasks", "--state", "failed", "--after", "page-2"]),
        1,
        "`after`",
    );
    let by_key = stdout(&interq(
        &app,
        &["tasks", "--state", "failed", "--task-key", "order-42"],
    ));
    assert!(by_key.contains("order-42"), "{by_key}");
    fails(
        &interq(&app, &["tasks", "--state", "failed", "--data", "email"]),
        1,
        "field=pattern",
    );
    fails(
        &interq(&app, &["tasks", "--since", "next tuesday"]),
        1,
        "`since`",
    );

    // Retry what a search matches, from the API and the command line.
    let retry = |body: Value| app.send(Method::POST, "/retry", Some(body));
    retry(json!({"reason": "exit"}))
        .await
        .error(400, "missing_field", Some("queue"));
    retry(json!({"taskId": "01a2383c-426f-77df-87f5-82d4b2be0000", "reason": "exit"}))
        .await
        .error(400, "invalid_field", Some("taskId"));
    retry(json!({"all": true, "data": "nope"}))
        .await
        .error(400, "invalid_field", Some("data"));
    assert_eq!(app.queue("q").await["failed"], 3, "refusals change nothing");
    let retried = retry(json!({"queue": "q", "reason": "timed out"}))
        .await
        .ok();
    assert_eq!(retried["retried"].as_array().unwrap().len(), 1);
    assert_eq!(app.queue("q").await["failed"], 2);
    let out = json_of(
        &app,
        &[
            "retry",
            "--all",
            "--reason",
            "exit code",
            "--data",
            "email=evan*",
        ],
    );
    assert_eq!(out["retried"].as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(app.queue("q").await["failed"], 1);
    fails(
        &interq(
            &app,
            &[
                "retry",
                "01a2383c-426f-77df-87f5-82d4b2be0000",
                "--reason",
                "x",
            ],
        ),
        2,
        "not one task",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_is_tried_against_the_interests_from_the_api_and_the_command_line() {
    let app = spawn_app().await;
    app.put_interest("emails", json!({"to": "@x\\.org$"}))
        .await
        .ok();
    app.put_interest("audit", json!("*")).await.ok();
    app.put_interest("lost", json!("unrouted")).await.ok();
    let tried = app
        .send(
            Method::POST,
            "/interest/try",
            Some(json!({"data": {"to": "a@x.org"}})),
        )
        .await
        .ok();
    let mut queues: Vec<Value> = tried["queues"].as_array().unwrap().clone();
    queues.sort_by_key(|r| r["queue"].as_str().unwrap().to_owned());
    assert_eq!(
        queues,
        [
            json!({"queue": "audit", "fields": [], "unrouted": false}),
            json!({"queue": "emails", "fields": [{"field": "to", "pattern": "@x\\.org$", "value": "a@x.org"}], "unrouted": false}),
        ]
    );
    assert_eq!(
        app.status("").await["counters"]["published"],
        0,
        "nothing published"
    );
    let out = stdout(&interq(
        &app,
        &["interests", "--try", r#"{"to": "a@x.org"}"#],
    ));
    assert!(
        out.contains("emails") && out.contains("to = a@x.org (matches @x\\.org$)"),
        "{out}"
    );
    assert!(out.contains("every task"), "{out}");
    let one = json_of(
        &app,
        &["interests", "emails", "--try", r#"{"to": "b@y.org"}"#],
    );
    assert_eq!(one, json!({"queues": []}));
    app.put_interest("audit", json!({"kind": "^audit$"}))
        .await
        .ok();
    let lost = stdout(&interq(
        &app,
        &["interests", "--try", r#"{"to": "b@y.org"}"#],
    ));
    assert!(lost.contains("lost") && lost.contains("unrouted"), "{lost}");

    let tried = |body: Value| app.send(Method::POST, "/interest/try", Some(body));
    tried(json!({}))
        .await
        .error(400, "missing_field", Some("data"));
    tried(json!({"data": [1]}))
        .await
        .error(400, "invalid_field", Some("data"));
    tried(json!({"data": {}, "queue": "x"}))
        .await
        .error(400, "unknown_field", Some("queue"));
    fails(
        &interq(&app, &["interests", "--try", "{"]),
        2,
        "--try is not JSON",
    );
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).unwrap()[1..].to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_by_search_takes_every_match_a_step_at_a_time() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let worker = app.register(&["q"]).await;
    // More matches than one step of a bulk action (1,000).
    let n = 2_500;
    for start in (0..n).step_by(500) {
        let batch: Vec<Value> = (start..start + 500)
            .map(|i| json!({"data": {"i": i, "even": i % 2 == 0}, "maxAttempts": 1}))
            .collect();
        app.send(Method::PUT, "/task", Some(Value::Array(batch)))
            .await
            .ok();
        let claimed = app.claim_n(&worker, 500).await;
        let reports: Vec<Value> = claimed
            .iter()
            .map(|t| json!({"workerId": worker, "taskId": t["taskId"], "state": "fail", "failReason": "boom"}))
            .collect();
        app.send(Method::POST, "/task", Some(Value::Array(reports)))
            .await
            .ok();
    }
    assert_eq!(app.queue("q").await["failed"], n);
    let retried = app
        .send(
            Method::POST,
            "/retry",
            Some(json!({"queue": "q", "data": "even=true"})),
        )
        .await
        .ok();
    let ids = retried["retried"].as_array().unwrap();
    assert_eq!(ids.len(), 1_250);
    let mut unique: Vec<&str> = ids.iter().map(|v| v.as_str().unwrap()).collect();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 1_250, "none twice");
    assert_eq!(app.queue("q").await["failed"], 1_250);
    assert_eq!(app.queue("q").await["ready"], 1_250);
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_batches_and_a_search_by_group_from_the_command_line() {
    let app = spawn_app().await;
    app.put_interest("tenants", json!("*")).await.ok();
    app.send(
        reqwest::Method::PUT,
        "/queue",
        Some(json!({"queue": "tenants", "groupMaxRunning": 1})),
    )
    .await
    .ok();
    for (g, n) in [("acme", 3), ("globex", 1)] {
        for i in 0..n {
            app.publish(json!({"data": {"i": i}, "group": g}))
                .await
                .ok();
        }
    }
    let w = app.register(&["tenants"]).await;
    app.claim_n(&w, 10).await;
    let groups = stdout(&interq(&app, &["groups", "tenants"]));
    let acme = groups
        .lines()
        .find(|l| l.starts_with("acme"))
        .expect("acme's line");
    assert!(
        acme.split_whitespace().collect::<Vec<_>>() == ["acme", "2", "1", "maxRunning"],
        "{groups}"
    );
    assert!(
        groups.contains("2 groups with ready or running copies"),
        "{groups}"
    );
    assert_eq!(
        json_of(&app, &["groups", "tenants", "--limit", "1"])["groups"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A search by group, from the API and the command line.
    let listed = json_of(&app, &["tasks", "--queue", "tenants", "--group", "acme"]);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["group"] == "acme"));
    app.send(reqwest::Method::GET, "/tasks?state=ready&group=", None)
        .await
        .error(400, "invalid_field", Some("group"));
    // A batch.
    app.send(
        reqwest::Method::PUT,
        "/batch",
        Some(json!({"batch": "nightly", "tasks": [{"data": {"x": 1}}], "onComplete": {"data": {"done": 1}}})),
    )
    .await
    .ok();
    let batch = stdout(&interq(&app, &["batch", "nightly"]));
    assert!(
        batch.starts_with("batch nightly (running), 1 copies"),
        "{batch}"
    );
    assert!(
        batch.contains("callback: published when the batch ends"),
        "{batch}"
    );
    assert_eq!(json_of(&app, &["batch", "nightly"])["totals"]["ready"], 1);
    fails(&interq(&app, &["batch", "nope"]), 1, "no batch is called");
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_actions_from_the_command_line() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let mut ids = Vec::new();
    for n in 0..4 {
        let p = app
            .publish(json!({"data": {"n": n, "even": n % 2 == 0}}))
            .await
            .ok();
        ids.push(p["copies"][0]["taskId"].as_str().unwrap().to_owned());
    }
    let out = stdout(&interq(&app, &["act", "cancel", &ids[0], &ids[1]]));
    assert_eq!(out, "cancel: 2 task(s)\n");
    let moved = json_of(
        &app,
        &[
            "act",
            "move",
            "--to",
            "evens",
            "--queue",
            "q",
            "--state",
            "ready",
            "--data",
            "even=true",
        ],
    );
    assert_eq!(
        (moved["done"].as_u64(), moved["skipped"].as_u64()),
        (Some(1), Some(0)),
        "{moved}"
    );
    assert_eq!(app.queue("evens").await["ready"], 1);
    let out = stdout(&interq(
        &app,
        &["act", "remove", "--all", "--state", "ready"],
    ));
    assert_eq!(out, "remove: 2 task(s)\n");
    let out = stdout(&interq(&app, &["act", "retry", &ids[0]]));
    assert_eq!(out, "retry: 0 task(s), 1 skipped\n");
    fails(&interq(&app, &["act", "cancel"]), 2, "--queue");
    fails(
        &interq(&app, &["act", "cancel", &ids[0], "--state", "ready"]),
        2,
        "--state",
    );
    fails(&interq(&app, &["act", "explode", &ids[0]]), 1, "action");
    fails(&interq(&app, &["act", "move", &ids[0]]), 1, "`to`");
    fails(
        &interq(&app, &["act", "cancel", "--queue", "q"]),
        1,
        "state",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_archive_is_listed_and_removed_from_from_the_command_line() {
    let app = spawn_app_with(|s| s.tasks.history = 1).await;
    app.put_interest("q", json!("*")).await.ok();
    let worker = app.register(&["q"]).await;
    let mut done = Vec::new();
    for n in 0..5 {
        app.publish_data(json!({"n": n})).await;
        let task = app.claim(&worker).await;
        app.update(&worker, &task, "complete", json!({})).await.ok();
        done.push(task["taskId"].as_str().unwrap().to_owned());
    }
    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|t| t["taskId"].as_str().unwrap().to_owned())
            .collect()
    };
    let archive = [
        "tasks",
        "--queue",
        "q",
        "--state",
        "completed",
        "--archived",
    ];
    let page = |extra: &[&str]| {
        let args: Vec<&str> = archive.iter().chain(extra).copied().collect();
        ids(json_of(&app, &args))
    };
    // Newest first, 4 of 5 (one is in memory), paged by the last id.
    let first = page(&["--limit", "2"]);
    assert_eq!(first, [done[3].clone(), done[2].clone()]);
    assert_eq!(
        page(&["--before", &first[1]]),
        [done[1].clone(), done[0].clone()]
    );
    assert_eq!(
        page(&["--after", &done[0], "--limit", "2"]),
        [done[2].clone(), done[1].clone()],
        "the page newer than the oldest"
    );
    let listed = stdout(&interq(&app, &archive));
    assert!(
        listed.contains(&done[0]) && !listed.contains(&done[4]),
        "{listed}"
    );
    let remove = |state: &str, data: &[&str]| {
        let args = [
            "act",
            "remove",
            "--queue",
            "q",
            "--state",
            state,
            "--archived",
        ];
        interq(&app, &[&args[..], data].concat())
    };
    let removed = stdout(&remove("completed", &["--data", "n=1"]));
    assert_eq!(removed, "remove: 1 task(s)\n");
    assert_eq!(
        page(&[]),
        [done[3].clone(), done[2].clone(), done[0].clone()]
    );
    fails(
        &interq(&app, &["tasks", "--state", "completed", "--archived"]),
        2,
        "--queue",
    );
    fails(
        &interq(&app, &["tasks", "--queue", "q", "--before", &done[0]]),
        2,
        "--archived",
    );
    fails(
        &interq(&app, &[&archive[..], &["--offset", "1"]].concat()),
        2,
        "--offset",
    );
    fails(&remove("failed", &[]), 1, "archived");
}
