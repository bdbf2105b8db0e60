//! Inputs that broke interq when tried as a hostile or unlucky user would,
//! each kept as the test that failed before its fix.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_app, ChildServer};

#[tokio::test]
async fn a_made_up_copy_id_of_a_real_publish_is_unknown() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let published = app.publish_data(json!({"a": 1})).await;
    let real = published["copies"][0]["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Same publish, a copy index no copy has.
    let made_up = format!("{}00ff", &real[..real.len() - 4]);
    assert_ne!(made_up, real);
    app.send(Method::GET, &format!("/status?task={made_up}"), None)
        .await
        .error(404, "unknown_task", Some("taskId"));
    // The copy and its publish are found as before.
    let copy = app.status(&format!("task={real}")).await;
    assert_eq!(copy["task"]["taskId"], real.as_str());
    let publish = published["taskId"].as_str().unwrap();
    let all = app.status(&format!("task={publish}")).await;
    assert_eq!(all["task"]["copies"][0]["taskId"], real.as_str());
}

#[tokio::test]
async fn an_empty_data_object_is_data_and_comes_back_as_published() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.publish(json!({"data": {}})).await.ok();
    let worker = app.register(&["q"]).await;
    let task = app.claim(&worker).await;
    assert_eq!(task["data"], json!({}), "{task}");
    let listed = app
        .status(&format!("task={}", task["taskId"].as_str().unwrap()))
        .await;
    assert_eq!(listed["task"]["data"], json!({}));
    // A report's answer leaves the data out: the worker has it.
    let done = app.update(&worker, &task, "complete", json!({})).await.ok();
    assert!(done.get("data").is_none(), "{done}");
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_come_from_interq_toml_never_a_file_named_interq() {
    let cwd = tempfile::tempdir().unwrap();
    // As in the directory holding the binary: a file named `interq` that
    // is not TOML.
    std::fs::write(cwd.path().join("interq"), [0x7f, b'E', b'L', b'F', 0, 1, 2]).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = ChildServer::start_in(cwd.path(), data.path());
    server.api().send(Method::GET, "/healthz", None).await.ok();
    drop(server);
    // `interq.toml` beside it is read.
    std::fs::write(
        cwd.path().join("interq.toml"),
        "[tasks]\nttr_secs = \"soon\"\n",
    )
    .unwrap();
    let out = ChildServer::run_to_exit_in(cwd.path(), data.path(), &[]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("ttr_secs"), "{}", out.stderr);
}

/// A gauge's value in `/metrics`.
async fn gauge(app: &crate::helpers::Api, name: &str) -> f64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn what_the_console_remembers_of_recent_publishes_is_bounded_by_bytes() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    // Large tasks are not remembered at all.
    let big = "x".repeat(1 << 20);
    for n in 0..8 {
        app.publish(json!({"data": {"n": n, "blob": big}}))
            .await
            .ok();
    }
    assert_eq!(gauge(&app, "interq_recent_publishes").await, 0.0);
    // Many middling ones: the oldest go once 16 MiB are held.
    let middling = "y".repeat(50 << 10);
    for batch in 0..20 {
        let tasks: Vec<_> = (0..20)
            .map(|n| json!({"data": {"n": batch * 20 + n, "blob": middling}}))
            .collect();
        app.publish(json!(tasks)).await.ok();
    }
    let kept = gauge(&app, "interq_recent_publishes").await;
    let bytes = gauge(&app, "interq_recent_publish_bytes").await;
    assert!(bytes <= (16 << 20) as f64, "{bytes} bytes");
    assert!(bytes > (15 << 20) as f64, "{bytes} bytes");
    assert!(kept < 400.0 && kept > 250.0, "{kept} kept");
    // A task of a hundred thousand fields is not walked whole, nor kept.
    let wide: serde_json::Map<String, serde_json::Value> =
        (0..100_000).map(|i| (format!("f{i}"), json!(i))).collect();
    app.publish(json!({"data": wide})).await.ok();
    assert_eq!(gauge(&app, "interq_recent_publishes").await, kept);
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_never_carry_a_query_string_and_cannot_be_forged() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start_with_env(dir.path(), &[("INTERQ_LOG__FORMAT", "human")]);
    let api = server.api();
    api.put_interest("q", json!("*")).await.ok();
    let secret = "%7B%22password%22%3A%22hunter2%22%7D";
    api.send(Method::PUT, &format!("/task?data={secret}"), None)
        .await
        .ok();
    let forged = "x\n2026-12-02T00:00:00.000000Z  INFO interq: forged line";
    api.send(Method::PUT, "/task", Some(json!({"data": {}, forged: 1})))
        .await
        .error(400, "unknown_field", None);
    api.send(
        Method::PUT,
        "/worker",
        Some(json!({"queues": ["q"], "name": "w\u{1b}[2J"})),
    )
    .await
    .error(400, "invalid_field", Some("name"));
    let logs = std::sync::Arc::clone(&server.logs);
    tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    let logs = logs.lock().unwrap().join("\n");
    assert!(
        !logs.contains("hunter2"),
        "a payload in the query was logged:\n{logs}"
    );
    assert!(!logs.contains("password"), "{logs}");
    assert!(
        !logs.lines().any(|l| l.starts_with("2026-12-02T00:00:00")),
        "a client forged a log line:\n{logs}"
    );
    assert!(
        logs.contains("route=/task")
            && logs.contains("status=400")
            && logs.contains("code=unknown_field"),
        "{logs}"
    );
}
