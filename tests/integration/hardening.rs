//! Inputs that broke interq when tried as a hostile or unlucky user would,
//! each kept as the test that failed before its fix.

use reqwest::Method;
use serde_json::{json, Value};

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
    let text = app.metrics().await;
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

/// A raw HTTP/1.1 connection, to send what no polite client would.
struct Raw(tokio::net::TcpStream);

impl Raw {
    async fn open(base: &str) -> Self {
        let addr = base.trim_start_matches("http://");
        Raw(tokio::net::TcpStream::connect(addr).await.unwrap())
    }

    async fn send(&mut self, bytes: &str) {
        use tokio::io::AsyncWriteExt;
        self.0.write_all(bytes.as_bytes()).await.unwrap();
    }

    /// The status line of the next answer, within `limit`.
    async fn status(&mut self, limit: std::time::Duration) -> String {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(limit, self.0.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        text.lines().next().unwrap_or_default().to_owned()
    }

    async fn get(&mut self, path: &str) -> String {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
            .await;
        self.status(std::time::Duration::from_secs(5)).await
    }
}

#[tokio::test]
async fn a_body_that_trickles_is_cut_off_and_answered() {
    let app = crate::helpers::spawn_app_with(|s| s.limits.body_timeout_secs = 1.0).await;
    let mut raw = Raw::open(&app.base).await;
    raw.send("PUT /task HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"data\"")
        .await;
    let started = std::time::Instant::now();
    let line = raw.status(std::time::Duration::from_secs(5)).await;
    assert!(line.contains("408"), "{line}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
}

#[tokio::test]
async fn connections_past_a_cap_are_refused_with_an_answer_and_probes_still_answered() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.limits.max_connections_per_client = 5;
        s.limits.header_timeout_secs = 60.0;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut c = Raw::open(&app.base).await;
        assert!(c.get("/healthz").await.contains("200"));
        held.push(c);
    }
    let mut over = Raw::open(&app.base).await;
    let line = over.get("/status").await;
    assert!(line.contains("429"), "{line}");
    let mut probe = Raw::open(&app.base).await;
    assert!(probe.get("/healthz").await.contains("200"));
    let mut probe = Raw::open(&app.base).await;
    assert!(probe.get("/readyz").await.contains("200"));
    drop(held);
    drop(over);
    drop(probe);
    // Room again once they close.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut fresh = Raw::open(&app.base).await;
    assert!(fresh.get("/status").await.contains("200"));

    let app = crate::helpers::spawn_app_with(|s| s.limits.max_connections = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = Raw::open(&app.base).await;
        assert!(c.get("/healthz").await.contains("200"));
        held.push(c);
    }
    let mut over = Raw::open(&app.base).await;
    let line = over.get("/status").await;
    assert!(line.contains("503"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_clients_cannot_take_every_file_descriptor() {
    // A server allowed 300 open files, and more trickling clients than that.
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start_under(
        dir.path(),
        "--nofile=300:300",
        &[("INTERQ_LIMITS__BODY_TIMEOUT_SECS", "3")],
    );
    let mut attackers = Vec::new();
    let started = std::time::Instant::now();
    for i in 0..400 {
        let Ok(Ok(conn)) = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            tokio::net::TcpStream::connect(server.base.trim_start_matches("http://")),
        )
        .await
        else {
            panic!("connection {i} was not accepted within 500 ms");
        };
        let mut c = Raw(conn);
        c.send("PUT /task HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n{")
            .await;
        attackers.push(c);
        if i % 50 == 49 {
            let probe_started = std::time::Instant::now();
            let mut probe = Raw::open(&server.base).await;
            assert!(probe.get("/healthz").await.contains("200"));
            assert!(
                probe_started.elapsed() < std::time::Duration::from_secs(1),
                "the probe waited {:?}",
                probe_started.elapsed()
            );
        }
    }
    eprintln!(
        "400 trickling connections opened in {:?}",
        started.elapsed()
    );
    // Every one of them was answered: refused at once past the cap, or cut
    // off at the body's deadline.
    let mut codes = std::collections::BTreeMap::new();
    for c in attackers.iter_mut() {
        let line = c.status(std::time::Duration::from_secs(10)).await;
        let code = line
            .split_whitespace()
            .nth(1)
            .unwrap_or("closed")
            .to_owned();
        *codes.entry(code).or_insert(0) += 1;
    }
    eprintln!("the trickling connections were answered: {codes:?}");
    assert!(
        codes.keys().all(|c| c == "408" || c == "503" || c == "429"),
        "{codes:?}"
    );
}

/// Requests with one key.
fn with_key(app: &crate::helpers::TestApp, key: &str) -> crate::helpers::Api {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().unwrap(),
    );
    crate::helpers::Api {
        base: app.base.clone(),
        client: reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap(),
    }
}

#[tokio::test]
async fn a_worker_key_acts_only_for_its_own_workers_and_queues() {
    use interq::auth::new_key;
    use interq::config::KeyConfig;
    let (admin, admin_hash) = new_key();
    let (mine, mine_hash) = new_key();
    let (other, other_hash) = new_key();
    let (mailer, mailer_hash) = new_key();
    let app = crate::helpers::spawn_app_with(|s| {
        s.auth.admin = vec![admin_hash.to_string()];
        s.auth.worker = vec![mine_hash.to_string(), other_hash.to_string()];
        s.auth.keys = vec![KeyConfig {
            role: Some(interq::auth::Role::Worker),
            roles: vec![],
            hash: mailer_hash.to_string(),
            label: Some("mailer".into()),
            queues: Some(vec!["emails.*".into()]),
        }];
    })
    .await;
    let (admin, mine, other, mailer) = (
        with_key(&app, &admin),
        with_key(&app, &mine),
        with_key(&app, &other),
        with_key(&app, &mailer),
    );
    admin.put_interest("jobs", json!("*")).await.ok();
    admin.publish(json!({"data": {"n": 1}})).await.ok();
    let w = mine.register(&["jobs"]).await;
    let task = mine.claim(&w).await;
    assert_eq!(task["data"]["n"], 1);
    // Another worker key may not claim, report or remove for it.
    other
        .send(Method::GET, &format!("/task?workerId={w}"), None)
        .await
        .error(403, "not_your_worker", Some("workerId"));
    other.update(&w, &task, "complete", json!({})).await.error(
        403,
        "not_your_worker",
        Some("workerId"),
    );
    other
        .send(Method::DELETE, &format!("/worker?workerId={w}"), None)
        .await
        .error(403, "not_your_worker", Some("workerId"));
    // Nor remove every worker of its queue: that is an admin's.
    other
        .send(Method::DELETE, "/worker?queue=jobs", None)
        .await
        .error(403, "forbidden", Some("queue"));
    let still = admin
        .status(&format!("task={}", task["taskId"].as_str().unwrap()))
        .await;
    assert_eq!(still["task"]["state"], "running");
    assert_eq!(still["task"]["workerId"], w.as_str());
    mine.update(&w, &task, "complete", json!({})).await.ok();
    // A key limited to queues registers only on those.
    mailer
        .send(
            Method::PUT,
            "/worker",
            Some(json!({"queues": ["emails.eu", "billing"]})),
        )
        .await
        .error(403, "queue_not_allowed", Some("queues[1]"));
    mailer.register(&["emails.eu"]).await;
    let workers = admin.status("workers").await;
    let owners: Vec<&str> = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["owner"].as_str())
        .collect();
    assert!(owners.contains(&"mailer"), "{workers}");
    // An admin may act for any worker.
    admin
        .send(Method::DELETE, "/worker?queue=jobs", None)
        .await
        .ok();
}

#[tokio::test]
async fn a_publisher_limited_to_queues_reaches_and_stops_only_those() {
    use interq::auth::new_key;
    use interq::config::KeyConfig;
    let (admin, admin_hash) = new_key();
    let (tenant, tenant_hash) = new_key();
    let app = crate::helpers::spawn_app_with(|s| {
        s.auth.admin = vec![admin_hash.to_string()];
        s.auth.keys = vec![KeyConfig {
            role: Some(interq::auth::Role::Publisher),
            roles: vec![],
            hash: tenant_hash.to_string(),
            label: Some("tenant-a".into()),
            queues: Some(vec!["a.*".into()]),
        }];
    })
    .await;
    let (admin, tenant) = (with_key(&app, &admin), with_key(&app, &tenant));
    admin.put_interest("a.jobs", json!("*")).await.ok();
    admin.put_interest("b.jobs", json!("*")).await.ok();
    let p = tenant
        .publish(json!({"data": {"x": 1}, "key": "k1"}))
        .await
        .ok();
    assert_eq!(p["queues"], json!(["a.jobs"]), "{p}");
    // The admin's publish with the same key reaches both queues.
    admin
        .publish(json!({"data": {"x": 2}, "key": "k1"}))
        .await
        .ok();
    let stopped = tenant.send(Method::DELETE, "/task?key=k1", None).await.ok();
    assert_eq!(
        stopped["cancelled"].as_array().unwrap().len(),
        2,
        "{stopped}"
    );
    assert_eq!(admin.queue("b.jobs").await["ready"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_that_would_stall_routing_are_refused_and_long_values_stall_nothing() {
    let app = spawn_app().await;
    // Counted repetitions of wide classes: each alone made a long value
    // slow to route, two hundred of them took seconds.
    let hostile: Vec<_> = (0..200)
        .map(|i| json!({"queue": format!("h{i}"), "interests": {"body": format!("[a-z ]{{{}}}q[a-z ]{{{}}}[0-9]", 100 + i, 200 + i)}}))
        .collect();
    let refused = app
        .send(Method::PUT, "/interest", Some(json!(hostile)))
        .await
        .error(400, "invalid_interest", Some("interests.body"));
    assert!(
        refused.contains("queue `h0`") && refused.contains("too complex"),
        "{refused}"
    );
    assert_eq!(
        app.status("interests").await["interests"],
        json!({}),
        "nothing stored"
    );
    // As heavy as is accepted, two hundred times over.
    let heavy: Vec<_> = (0..200)
        .map(|i| json!({"queue": format!("w{i}"), "interests": {"body": format!("(\\w+\\s+){{{}}}z", 5 + i % 4)}}))
        .collect();
    app.send(Method::PUT, "/interest", Some(json!(heavy)))
        .await
        .ok();
    let text: String = (0..20_000)
        .map(|i| {
            if i % 6 == 5 {
                ' '
            } else {
                (b'a' + (i * 7 % 26) as u8) as char
            }
        })
        .collect();
    let publisher = {
        let api = app.api.clone();
        tokio::spawn(async move {
            let mut slowest = std::time::Duration::ZERO;
            for n in 0..10 {
                let started = std::time::Instant::now();
                api.publish(json!({"data": {"n": n, "body": format!("{n}{text}")}}))
                    .await
                    .ok();
                slowest = slowest.max(started.elapsed());
            }
            slowest
        })
    };
    let mut status_slowest = std::time::Duration::ZERO;
    while !publisher.is_finished() {
        let started = std::time::Instant::now();
        app.status("counters").await;
        status_slowest = status_slowest.max(started.elapsed());
    }
    let publish_slowest = publisher.await.unwrap();
    eprintln!("slowest publish of a 20,000-character value: {publish_slowest:?}; slowest status meanwhile: {status_slowest:?}");
    assert!(publish_slowest < std::time::Duration::from_secs(3));
    assert!(status_slowest < std::time::Duration::from_millis(500));
}

#[tokio::test]
async fn the_api_document_describes_what_the_server_checks_and_only_what_it_serves() {
    let app = crate::helpers::spawn_app_with(|s| s.testing.manual_clock = false).await;
    let doc = app.send(Method::GET, "/openapi.json", None).await.ok();
    assert!(
        doc["paths"].get("/_testing/clock").is_none(),
        "a testing route is listed"
    );
    let claim = &doc["paths"]["/task"]["get"]["parameters"];
    let worker = claim
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "workerId")
        .unwrap();
    assert_eq!(worker["required"], true);
    assert_eq!(worker["schema"]["format"], "uuid");
    let count = claim
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "count")
        .unwrap();
    assert_eq!(count["schema"]["maximum"], 1000);
    let publish = &doc["paths"]["/task"]["put"]["requestBody"]["content"]["application/json"]
        ["schema"]["oneOf"][0];
    assert_eq!(publish["required"], json!(["data"]));
    assert_eq!(
        publish["properties"]["priority"]["oneOf"][0]["maximum"],
        100
    );
    let answer =
        &doc["paths"]["/task"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(answer["nullable"], true);
    assert!(doc["components"]["schemas"]["Task"]["required"]
        .as_array()
        .unwrap()
        .contains(&json!("data")));
    // A known path with another method names the ones it takes.
    let resp = app
        .client
        .patch(format!("{}/task", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "PUT, GET, POST, DELETE");
}

#[tokio::test]
async fn interests_over_their_cost_budget_are_refused_naming_the_costliest_field() {
    let app = spawn_app().await;
    // Each alternative is accepted alone; eight of them in one queue are
    // more than one queue may make every publish pay for.
    let heavy: Vec<Value> = (0..8)
        .map(|i| json!(format!("(\\w+\\s+){{4}}z{i}")))
        .collect();
    let refused = app
        .put_interest("greedy", json!({"id": "^x$", "body": heavy}))
        .await
        .error(400, "invalid_interest", Some("interests.body"));
    assert!(
        refused.contains("queue `greedy`") && refused.contains("over the limit of 16384"),
        "{refused}"
    );
    assert_eq!(app.status("interests").await["interests"], json!({}));
    // Literals cost one each: the most fields and alternatives allowed fit.
    let fields: serde_json::Map<String, Value> = (0..32)
        .map(|f| {
            let alternatives: Vec<Value> = (0..64).map(|i| json!(format!("^v{f}-{i}$"))).collect();
            (format!("f{f}"), json!(alternatives))
        })
        .collect();
    app.put_interest("wide", Value::Object(fields)).await.ok();
    assert_eq!(
        app.publish_data(json!({"f7": "v7-63"})).await["queues"],
        json!(["wide"])
    );
}
