//! Keys and roles on every route, TLS, metrics, health, the OpenAPI
//! description, graceful shutdown, and the command line's help.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use interq::auth::new_key;
use interq::client::{Client, ClientOptions, Publish};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{interq_binary, spawn_app, spawn_app_with, ChildServer, Load};

/// Every route of the API and who may call it, written out here rather than
/// read from the route table, so that the table is checked against it.
const ROUTES: &[(&str, &str, &str)] = &[
    ("PUT", "/task", "publisher"),
    ("PUT", "/batch", "publisher"),
    ("GET", "/task", "worker"),
    ("POST", "/task", "worker"),
    ("DELETE", "/task", "publisher"),
    ("POST", "/task/log", "worker"),
    ("GET", "/task/log", "admin"),
    ("PUT", "/worker", "worker"),
    ("DELETE", "/worker", "worker"),
    ("PUT", "/interest", "admin"),
    ("POST", "/interest/try", "admin"),
    ("DELETE", "/interest", "admin"),
    ("PUT", "/queue", "admin"),
    ("DELETE", "/queue", "admin"),
    ("PUT", "/schedule", "admin"),
    ("DELETE", "/schedule", "admin"),
    ("GET", "/status", "admin"),
    ("GET", "/tasks", "admin"),
    ("POST", "/retry", "admin"),
    ("POST", "/tasks", "admin"),
    ("GET", "/metrics", "admin"),
    ("GET", "/healthz", "open"),
    ("GET", "/readyz", "open"),
    ("GET", "/openapi.json", "open"),
];

struct Keys {
    admin: String,
    publisher: String,
    worker: String,
    viewer: String,
}

async fn protected_app() -> (crate::helpers::TestApp, Keys) {
    let (admin, admin_hash) = new_key();
    let (publisher, publisher_hash) = new_key();
    let (worker, worker_hash) = new_key();
    let (viewer, viewer_hash) = new_key();
    let app = spawn_app_with(|s| {
        s.auth.admin = vec![admin_hash.to_string()];
        s.auth.publisher = vec![publisher_hash.to_string()];
        s.auth.worker = vec![worker_hash.to_string()];
        s.auth.viewer = vec![viewer_hash.to_string()];
    })
    .await;
    (
        app,
        Keys {
            admin,
            publisher,
            worker,
            viewer,
        },
    )
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    auth: Option<String>,
) -> StatusCode {
    let mut req = client.request(
        Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{base}{path}"),
    );
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn every_route_checks_the_key_and_its_role() {
    let (app, keys) = protected_app().await;
    let roles = [
        ("admin", &keys.admin),
        ("publisher", &keys.publisher),
        ("worker", &keys.worker),
        ("viewer", &keys.viewer),
    ];
    for &(method, path, who) in ROUTES {
        let none = call(&app.client, &app.base, method, path, None).await;
        let wrong = call(
            &app.client,
            &app.base,
            method,
            path,
            Some("Bearer iq_not_a_key".into()),
        )
        .await;
        if who == "open" {
            assert!(none.is_success(), "{method} {path} is open: {none}");
            continue;
        }
        assert_eq!(
            none,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a key"
        );
        assert_eq!(
            wrong,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with a wrong key"
        );
        for (role, key) in roles {
            let status = call(
                &app.client,
                &app.base,
                method,
                path,
                Some(format!("Bearer {key}")),
            )
            .await;
            // A viewer reads what an admin may: the admin routes' GETs.
            let reads = role == "viewer" && who == "admin" && method == "GET";
            if role == "admin" || role == who || reads {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{method} {path} as {role}: {status}"
                );
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} as {role}");
            }
        }
    }
    // Unknown paths are the admin's too: strangers learn nothing.
    assert_eq!(
        call(&app.client, &app.base, "GET", "/nowhere", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(
            &app.client,
            &app.base,
            "GET",
            "/nowhere",
            Some(format!("Bearer {}", keys.admin))
        )
        .await,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_viewer_sees_the_site_and_the_line_protocol_but_changes_nothing() {
    let (app, keys) = protected_app().await;
    let as_viewer = Some(format!("Bearer {}", keys.viewer));
    for path in ["/admin", "/admin/queues", "/admin/failed", "/admin/audit"] {
        let status = call(&app.client, &app.base, "GET", path, as_viewer.clone()).await;
        assert_eq!(status, StatusCode::OK, "GET {path} as viewer");
    }
    let status = call(
        &app.client,
        &app.base,
        "POST",
        "/admin/failed/retry-all",
        as_viewer.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an action as viewer");
    // Its pages show no actions (the site's stylesheet hides its forms),
    // and say so; an admin's show them.
    let page = |key: String| {
        let (client, url) = (app.client.clone(), format!("{}/admin/failed", app.base));
        async move {
            let res = client
                .get(url)
                .header("Authorization", format!("Bearer {key}"))
                .send()
                .await
                .unwrap();
            res.text().await.unwrap()
        }
    };
    let seen = page(keys.viewer.clone()).await;
    assert!(
        seen.contains(r#"<body class="read-only">"#) && seen.contains(", read only"),
        "{seen}"
    );
    assert!(!page(keys.admin.clone()).await.contains("read-only"));
    // The worker's claim is a GET, but not an admin's read.
    let status = call(
        &app.client,
        &app.base,
        "GET",
        "/task?workerId=01a23bb1-4cbc-74e1-ab77-9d59061b0000",
        as_viewer,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a claim as viewer");
    // The document says who may call each route.
    let doc = app.send(Method::GET, "/openapi.json", None).await.ok();
    let status_op = doc["paths"]["/status"]["get"]["description"]
        .as_str()
        .unwrap();
    assert!(status_op.contains("viewer"), "{status_op}");
    let publish_op = doc["paths"]["/task"]["put"]["description"]
        .as_str()
        .unwrap();
    assert!(!publish_op.contains("viewer"), "{publish_op}");
}

#[tokio::test]
async fn publishers_stop_their_tasks_but_only_admins_empty_a_queue() {
    let (app, keys) = protected_app().await;
    let delete = |query: &str, key: &str| {
        app.client
            .delete(format!("{}/task?{query}", app.base))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(
        delete("queue=q", &keys.publisher).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        delete("key=build-1", &keys.publisher)
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        delete("queue=q", &keys.admin).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn refusals_say_why_and_basic_auth_carries_the_key_too() {
    let (app, keys) = protected_app().await;
    let resp = app
        .client
        .get(format!("{}/status", app.base))
        .send()
        .await
        .unwrap();
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("Basic"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let forbidden: Value = app
        .client
        .get(format!("{}/status", app.base))
        .bearer_auth(&keys.worker)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(forbidden["error"]["code"], "forbidden");
    let status = app
        .client
        .get(format!("{}/status", app.base))
        .basic_auth("anyone", Some(&keys.admin))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn each_role_does_its_part_through_the_client() {
    let (app, keys) = protected_app().await;
    let as_role = |key: &str| {
        Client::with_options(
            &app.base,
            ClientOptions {
                key: Some(key.to_owned()),
                ca_pem: None,
            },
        )
        .unwrap()
    };
    let (admin, publisher, worker) = (
        as_role(&keys.admin),
        as_role(&keys.publisher),
        as_role(&keys.worker),
    );
    admin.set_interests("q", json!("*")).await.unwrap();
    publisher
        .publish(&Publish::new(json!({"n": 1})))
        .await
        .unwrap();
    let w = worker.register(&["q"]).await.unwrap();
    let task = worker.claim(w, None).await.unwrap().expect("a task");
    worker.complete(w, task.task_id, None).await.unwrap();
    assert_eq!(
        publisher
            .set_interests("q", json!("*"))
            .await
            .unwrap_err()
            .code(),
        Some("forbidden")
    );
    assert_eq!(admin.queue("q").await.unwrap().ready, 0);
}

#[tokio::test]
async fn tls_serves_with_a_generated_certificate() {
    let cert = crate::helpers::TestCert::new();
    let app = spawn_app_with(|s| cert.serve(s)).await;
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let https = format!("https://localhost:{port}");

    let trusted = cert.client(&https);
    trusted.set_interests("q", json!("*")).await.unwrap();
    let published = trusted
        .publish(&Publish::new(json!({"over": "tls"})))
        .await
        .unwrap();
    assert_eq!(published.queues.len(), 1);

    let untrusting = Client::new(&https).unwrap();
    assert!(
        untrusting.status(&[]).await.is_err(),
        "an unknown certificate is refused"
    );
    assert!(
        app.client
            .get(format!("http://localhost:{port}/healthz"))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true),
        "plain HTTP gets nothing"
    );
}

#[tokio::test]
async fn settings_refuse_half_a_tls_setup_and_plain_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("interq.toml");
    std::fs::write(&file, "[tls]\ncert_path = \"/x.pem\"\n").unwrap();
    let err = interq::config::Settings::load(Some(&file), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tls.cert_path and tls.key_path go together"),
        "{err}"
    );
    std::fs::write(&file, "[auth]\nadmin = [\"hunter2\"]\n").unwrap();
    let err = interq::config::Settings::load(Some(&file), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("auth.admin[0]"), "{err}");
}

#[tokio::test]
async fn metrics_count_by_queue_and_gauge_the_present() {
    let app = spawn_app().await;
    app.put_interest("mail", json!({"to": "."})).await.ok();
    app.put_interest("audit", json!("*")).await.ok();
    app.publish_data(json!({"to": "a"})).await;
    app.publish_data(json!({"to": "b"})).await;
    app.publish_data(json!({"other": 1})).await;
    let worker = app.register(&["mail"]).await;
    let t1 = app.claim(&worker).await;
    app.advance(2.0).await;
    app.update(&worker, &t1, "complete", json!({})).await.ok();
    let t2 = app.claim(&worker).await;
    app.update(&worker, &t2, "fail", json!({})).await.ok();

    let text = app.metrics().await;

    for line in [
        "interq_queue_routed_total{queue=\"audit\"} 3",
        "interq_queue_routed_total{queue=\"mail\"} 2",
        "interq_queue_completed_total{queue=\"mail\"} 1",
        "interq_queue_retried_total{queue=\"mail\"} 1",
        "interq_ready{queue=\"audit\"} 3",
        "interq_scheduled{queue=\"mail\"} 1",
        "interq_workers{state=\"IDLE\"} 1",
        "interq_events_total{event=\"published\"} 3",
        "interq_publish_seconds_count 3",
        "interq_wait_seconds_count 2",
        "interq_run_seconds_count 2",
        "interq_run_seconds_bucket{le=\"10\"} 2",
        "interq_run_seconds_bucket{le=\"1\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    assert_eq!(
        app.send(Method::GET, "/healthz", None).await.ok(),
        json!({"status": "ok"})
    );
    assert_eq!(
        app.send(Method::GET, "/readyz", None).await.ok(),
        json!({"status": "ready"})
    );
}

#[tokio::test]
async fn the_openapi_document_covers_exactly_the_routes_served() {
    let app = spawn_app().await;
    let doc = app.send(Method::GET, "/openapi.json", None).await.ok();
    assert_eq!(doc["openapi"], "3.0.3");
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    for &(method, path, _) in ROUTES {
        assert!(
            documented.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} is not documented"
        );
    }
    // Everything documented is served (the testing clock too, on this server).
    for (method, path) in &documented {
        let status = call(&app.client, &app.base, method, path, None).await;
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} documented but {status}"
        );
    }
    assert_eq!(
        documented.len(),
        ROUTES.len() + 1,
        "only the routes above and /_testing/clock"
    );
    assert!(
        doc["paths"]["/task"]["put"]["requestBody"]["content"]["application/json"]["schema"]
            ["oneOf"]
            .is_array(),
        "a batch is documented"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_loses_nothing_ends_long_polls_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(dir.path());
    let api = server.api();
    api.put_interest("q", json!("*")).await.ok();
    let worker = api.register(&["other"]).await;
    let poll = {
        let (client, url) = (
            api.client.clone(),
            format!("{}/task?workerId={worker}&wait=30", api.base),
        );
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = client.get(url).send().await.unwrap();
            (
                answer.status(),
                answer.text().await.unwrap(),
                started.elapsed(),
            )
        })
    };
    let load = Load::start(&api, 6, false);
    load.until(500).await;

    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    let acknowledged = load.stop().await;

    assert!(status.success(), "exit status {status}");
    let (poll_status, poll_body, waited) = poll.await.unwrap();
    assert_eq!(
        (poll_status, poll_body.as_str()),
        (StatusCode::OK, "null"),
        "the long poll is answered empty"
    );
    assert!(
        waited < Duration::from_secs(15),
        "not left to wait out its 30 s"
    );
    let server = ChildServer::start(dir.path());
    let api = server.api();
    assert!(api.queue("q").await["ready"].as_u64().unwrap() >= acknowledged.len() as u64);
    for id in &acknowledged {
        let answer = api
            .send(Method::GET, &format!("/status?task={id}"), None)
            .await
            .ok();
        assert_eq!(
            answer["task"]["copies"][0]["queue"], "q",
            "publish {id} lost"
        );
    }
}

#[test]
fn the_command_line_explains_itself() {
    let run = |args: &[&str]| {
        let out = Command::new(interq_binary()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(run(&["--version"]).starts_with("interq "));
    let help = run(&["--help"]);
    for verb in ["serve", "worker", "bench", "key"] {
        assert!(help.contains(verb), "{verb} missing from --help");
    }
    assert!(run(&["serve", "--help"]).contains("--data-dir"));
    assert!(run(&["worker", "--help"]).contains("--allow-task-command"));
    assert!(run(&["bench", "--help"]).contains("--publish-batch"));
    let key = run(&["key", "new", "--role", "publisher"]);
    assert!(
        key.contains("key:  iq_") && key.contains("hash: sha256:"),
        "{key}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_have_a_line_per_request_and_never_a_payload_or_key() {
    let (key, hash) = new_key();
    let dir = tempfile::tempdir().unwrap();
    let hash_text = hash.to_string();
    let server = ChildServer::start_with_env(dir.path(), &[("INTERQ_AUTH__ADMIN", &hash_text)]);
    let interq = Client::with_options(
        &server.base,
        ClientOptions {
            key: Some(key.clone()),
            ca_pem: None,
        },
    )
    .unwrap();
    interq.set_interests("q", json!("*")).await.unwrap();
    interq
        .publish(&Publish::new(json!({"card": "4111-secret-payload"})))
        .await
        .unwrap();
    let status = tokio::task::spawn_blocking({
        let logs = Arc::clone(&server.logs);
        move || {
            let s = server.terminate();
            (s, logs)
        }
    })
    .await
    .unwrap();
    let logs = status.1.lock().unwrap().join("\n");
    assert!(status.0.success());
    assert!(
        logs.contains("\"route\":\"/task\"") && logs.contains("\"status\":200"),
        "{logs}"
    );
    assert!(
        !logs.contains("4111-secret-payload"),
        "a payload was logged"
    );
    assert!(
        !logs.contains(&key) && !logs.contains(&hash.to_string()),
        "a credential was logged"
    );
    assert!(!logs.contains("no keys are configured"), "auth is on here");
}

#[tokio::test(flavor = "multi_thread")]
async fn variables_that_name_no_setting_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    // Set by `interq worker` for its commands, by users for the bench, and
    // for the Couchbase tests: none of them is a setting.
    let server = ChildServer::start_with_env(
        dir.path(),
        &[
            ("INTERQ_TASK_ID", "x"),
            ("INTERQ_KEY", "iq_abc"),
            ("INTERQ_COUCHBASE_CONNSTR", "couchbase://nowhere"),
            ("INTERQ_TASKS__TTR_SECS", "77"),
        ],
    );
    let api = server.api();
    api.put_interest("q", json!("*")).await.ok();
    let published = api.publish_data(json!({"a": 1})).await;
    let id = published["copies"][0]["taskId"].as_str().unwrap();
    let task = api.status(&format!("task={id}")).await;
    assert_eq!(
        task["task"]["ttr"], 77,
        "a setting still comes from its variable"
    );
}

/// The server's log lines of `target` (JSON format), as values.
fn logged(logs: &std::sync::Mutex<Vec<String>>, target: &str) -> Vec<Value> {
    logs.lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == target)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_tells_what_became_of_tasks_with_the_request_lines_turned_down() {
    use crate::helpers::ChildServer;
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start_with_env(
        dir.path(),
        &[
            ("RUST_LOG", "info,interq::access=warn"),
            ("INTERQ_TASKS__RETRY_BASE_SECS", "0.1"),
            ("INTERQ_TASKS__RETRY_JITTER", "0"),
        ],
    );
    let api = server.api();
    api.put_interest("q", json!({"a": "."})).await.ok();
    // Reaches no queue.
    let nobody = api
        .publish(json!({"data": {"b": 1}, "publisher": "p1"}))
        .await
        .ok();
    // Fails once (retried), then is abandoned on its last attempt.
    api.publish(json!({"data": {"a": 1}, "maxAttempts": 2, "ttr": 1}))
        .await
        .ok();
    let worker = api.register(&["q"]).await;
    let first = api.claim(&worker).await;
    api.update(
        &worker,
        &first,
        "fail",
        json!({"failReason": "smtp down\nmore"}),
    )
    .await
    .ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let again = loop {
        let t = api.claim(&worker).await;
        if !t.is_null() {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "the retry never came");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(again["taskId"], first["taskId"]);
    // Left to its lease, which runs out on the last attempt.
    let id = first["taskId"].as_str().unwrap().to_owned();
    loop {
        let t = api.status(&format!("task={id}")).await;
        if t["task"]["state"] == "failed" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never ran out: {t}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Fails on its only attempt.
    let once = api
        .publish(json!({"data": {"a": 3}, "maxAttempts": 1}))
        .await
        .ok();
    let claimed = api.claim(&worker).await;
    assert_eq!(claimed["taskId"], once["copies"][0]["taskId"]);
    api.update(
        &worker,
        &claimed,
        "fail",
        json!({"failReason": "bad input"}),
    )
    .await
    .ok();
    // A worker removed while it runs a copy.
    let held = api.publish(json!({"data": {"a": 2}})).await.ok();
    let other = api.register(&["q"]).await;
    api.claim(&other).await;
    api.send(Method::DELETE, "/worker", Some(json!({"workerId": other})))
        .await
        .ok();

    let logs = std::sync::Arc::clone(&server.logs);
    tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    let tasks = logged(&logs, "interq::tasks");
    let find = |message: &str| -> Value {
        tasks
            .iter()
            .find(|v| {
                v["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
            })
            .unwrap_or_else(|| panic!("no {message:?} in {tasks:#?}"))
            .clone()
    };
    let discarded = find("publish reached no queue");
    assert_eq!(discarded["level"], "INFO");
    assert_eq!(discarded["fields"]["publish"], nobody["taskId"]);
    assert_eq!(discarded["fields"]["publisher"], "p1");
    let retried = find("copy failed; it will be retried");
    assert_eq!(retried["fields"]["task"], id);
    assert_eq!(retried["fields"]["queue"], "q");
    assert_eq!(retried["fields"]["reason"], "smtp down\nmore");
    let gone = find("copy failed for good: lease expired on its last attempt");
    assert_eq!(gone["level"], "WARN");
    assert_eq!(
        (
            gone["fields"]["task"].clone(),
            gone["fields"]["worker"].clone()
        ),
        (json!(id), json!(worker))
    );
    let removed = find("worker removed: its copy goes back");
    assert_eq!(removed["fields"]["task"], held["copies"][0]["taskId"]);
    assert_eq!(removed["fields"]["worker"], json!(other));
    let failed = tasks
        .iter()
        .find(|v| v["fields"]["message"] == "copy failed for good")
        .unwrap_or_else(|| panic!("no failure by report in {tasks:#?}"));
    assert_eq!(failed["level"], "WARN");
    assert_eq!(failed["fields"]["task"], once["copies"][0]["taskId"]);
    assert_eq!(failed["fields"]["reason"], "bad input");
    // The per-request lines were turned down, and only they.
    assert!(logged(&logs, "interq::access").is_empty());
}

#[tokio::test]
async fn the_openapi_document_describes_every_part_of_a_status_answer() {
    let app = spawn_app().await;
    let doc = app.send(Method::GET, "/openapi.json", None).await.ok();
    let status = &doc["paths"]["/status"]["get"];
    let answer = &status["responses"]["200"]["content"]["application/json"]["schema"]["properties"];
    // Every parameter that adds a part of the answer has that part described.
    for p in status["parameters"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        if matches!(name, "offset" | "limit") {
            continue;
        }
        assert!(
            answer.get(name).is_some(),
            "the part {name} is not described"
        );
    }
    for part in ["counters", "settings", "store"] {
        assert!(answer.get(part).is_some(), "{part}");
    }
    for schema in ["Task", "QueueCounts", "Worker", "Error"] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "{schema}"
        );
    }
    // And the worker's states are those the server shows.
    app.register(&["q"]).await;
    let shown = app.status("workers").await;
    let states = &doc["components"]["schemas"]["Worker"]["properties"]["state"]["enum"];
    assert!(
        states
            .as_array()
            .unwrap()
            .contains(&shown["workers"][0]["state"]),
        "{shown} not in {states}"
    );
}
