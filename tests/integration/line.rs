//! The pipelined line protocol: the real server on a random port, spoken to
//! over raw TCP (and through the Rust client).

use std::collections::HashMap;
use std::time::Duration;

use interq::client::{Client, ClientError, ClientOptions, Publish};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app_with, ChildServer, TestApp};

/// One raw connection: lines out, answers in.
struct Line {
    rd: BufReader<tokio::net::tcp::OwnedReadHalf>,
    wr: tokio::net::tcp::OwnedWriteHalf,
    /// Answers read while looking for another.
    early: HashMap<String, Value>,
}

impl Line {
    async fn connect(url: &str) -> Self {
        let addr = url.strip_prefix("interq://").expect("a line URL");
        let (rd, wr) = TcpStream::connect(addr).await.unwrap().into_split();
        Self {
            rd: BufReader::new(rd),
            wr,
            early: HashMap::new(),
        }
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.wr.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, call: Value) {
        let mut line = serde_json::to_vec(&call).unwrap();
        line.push(b'\n');
        self.send_raw(&line).await;
    }

    /// The next answer line, whichever call it answers.
    async fn next(&mut self) -> Value {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(20), self.rd.read_line(&mut line))
            .await
            .expect("an answer within 20 s")
            .unwrap();
        assert!(n > 0, "the server closed the connection");
        assert!(line.ends_with('\n'), "an answer is one whole line: {line}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Whether the server closes the connection (whatever it sent last).
    async fn closed(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), self.rd.read_to_end(&mut rest))
            .await
            .is_ok()
    }

    /// The answer to the call with `id`.
    async fn answer(&mut self, id: &Value) -> Value {
        let key = id.to_string();
        if let Some(a) = self.early.remove(&key) {
            return a;
        }
        loop {
            let a = self.next().await;
            if a["id"] == *id {
                return a;
            }
            self.early.insert(a["id"].to_string(), a);
        }
    }

    /// Calls `op` and returns its `ok`, asserting there is one.
    async fn ok(&mut self, op: &str, args: Value) -> Value {
        let a = self.call(op, args).await;
        assert!(a.get("error").is_none(), "{op} failed: {a}");
        a["ok"].clone()
    }

    /// Calls `op` and returns its error, asserting there is one.
    async fn error(&mut self, op: &str, args: Value, status: u16, code: &str) -> String {
        let a = self.call(op, args).await;
        assert_eq!(a["error"]["status"], status, "{op}: {a}");
        assert_eq!(a["error"]["code"], code, "{op}: {a}");
        a["error"]["message"].as_str().unwrap().to_owned()
    }

    async fn call(&mut self, op: &str, args: Value) -> Value {
        let id = json!(format!("{op}-{}", fastrand::u64(..)));
        self.send(json!({"id": id, "op": op, "args": args})).await;
        self.answer(&id).await
    }
}

async fn line_app(tweak: impl FnOnce(&mut interq::config::Settings)) -> (TestApp, String) {
    let app = spawn_app_with(|s| {
        s.line.listen = Some("127.0.0.1:0".into());
        tweak(s);
    })
    .await;
    let url = app.line.clone().expect("the line protocol is on");
    (app, url)
}

#[tokio::test]
async fn the_line_protocol_is_off_unless_listen_is_set() {
    let app = spawn_app_with(|_| {}).await;
    assert!(app.line.is_none());
}

#[tokio::test]
async fn every_operation_works_over_the_line_protocol() {
    let (app, url) = line_app(|_| {}).await;
    let mut l = Line::connect(&url).await;

    assert_eq!(l.ok("ping", Value::Null).await, json!({"pong": true}));
    let set = l
        .ok(
            "setInterests",
            json!({"queue": "emails", "interests": {"to": "@x\\.com$"}}),
        )
        .await;
    assert_eq!(set["interests"], json!({"to": "@x\\.com$"}));
    l.ok("setQueue", json!({"queue": "emails", "maxRunning": 5}))
        .await;
    let published = l
        .ok("publish", json!({"data": {"to": "a@x.com"}, "key": "k1"}))
        .await;
    assert_eq!(published["queues"], json!(["emails"]));
    let batch = l
        .ok(
            "publish",
            json!([{"data": {"to": "b@x.com"}}, {"data": {"to": "c@y.com"}}]),
        )
        .await;
    assert_eq!(batch[0]["queues"], json!(["emails"]));
    assert_eq!(batch[1]["queues"], json!([]));

    let worker = l
        .ok("register", json!({"queues": ["emails"], "name": "w"}))
        .await;
    let worker = worker["workerId"].clone();
    let claimed = l.ok("claim", json!({"workerId": worker, "count": 5})).await;
    assert_eq!(claimed.as_array().unwrap().len(), 2, "{claimed}");
    let (first, second) = (&claimed[0], &claimed[1]);
    let progress = l
        .ok(
            "report",
            json!({"workerId": worker, "taskId": first["taskId"], "state": "progress", "progress": 50}),
        )
        .await;
    assert_eq!(progress["state"], "running");
    let done = l
        .ok(
            "report",
            json!({"workerId": worker, "taskId": first["taskId"], "state": "complete", "output": {"sent": true}}),
        )
        .await;
    assert_eq!(done["state"], "completed");
    let failed = l
        .ok(
            "report",
            json!({"workerId": worker, "taskId": second["taskId"], "state": "fail", "failReason": "smtp"}),
        )
        .await;
    assert_eq!(
        (failed["attempt"].clone(), failed["state"].clone()),
        (json!(1), json!("scheduled")),
        "{failed}"
    );

    let status = l
        .ok("status", json!({"queue": "emails", "counters": true}))
        .await;
    assert_eq!(status["queue"]["running"], 0, "{status}");
    assert_eq!(status["settings"]["maxRunning"], 5, "{status}");
    assert!(status["counters"]["completed"].as_u64() >= Some(1));
    let by_key = l.ok("status", json!({"key": "k1"})).await;
    assert_eq!(by_key["key"][0]["state"], "completed");

    l.ok("publish", json!({"data": {"to": "d@x.com"}, "key": "k2"}))
        .await;
    let cancelled = l.ok("cancel", json!({"key": "k2"})).await;
    assert_eq!(
        cancelled["cancelled"].as_array().map(Vec::len),
        Some(1),
        "{cancelled}"
    );

    let schedule = l
        .ok(
            "setSchedule",
            json!({"name": "nightly", "cron": "0 3 * * *", "task": {"data": {"to": "n@x.com"}}}),
        )
        .await;
    assert_eq!(schedule["name"], "nightly");
    l.ok("advanceClock", json!({"advance": 1})).await;
    l.ok("deleteSchedule", json!({"name": "nightly"})).await;
    l.ok("deregister", json!({"workerId": worker})).await;
    l.ok("deleteInterests", json!({"queue": "emails"})).await;
    l.ok("deleteQueue", json!({"queue": "emails"})).await;

    // What the line protocol changed, HTTP sees.
    let over_http = app.status("interests").await;
    assert_eq!(over_http["interests"], json!({}), "{over_http}");
}

#[tokio::test]
async fn refusals_are_the_http_apis_own() {
    let (app, url) = line_app(|_| {}).await;
    let mut l = Line::connect(&url).await;
    let cases = [
        ("publish", json!({"data": 5}), "PUT"),
        ("publish", json!({"data": {}, "priority": "soon"}), "PUT"),
        ("publish", json!({"data": {}, "colour": "red"}), "PUT"),
        ("claim", json!({"workerId": "not-a-uuid"}), "GET"),
        ("setInterests", json!({"queue": "q"}), "PUT"),
    ];
    for (op, args, method) in cases {
        let a = l.call(op, args.clone()).await;
        let path = match op {
            "publish" | "claim" => "/task",
            _ => "/interest",
        };
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        // GET takes its parameters as JSON in the body too.
        let http = app.send(method, path, Some(args.clone())).await;
        assert_eq!(
            a["error"]["status"],
            http.status.as_u16(),
            "{op} {args}: {a} vs {}",
            http.body
        );
        assert_eq!(
            a["error"]["code"], http.body["error"]["code"],
            "{op} {args}"
        );
        assert_eq!(
            a["error"]["message"], http.body["error"]["message"],
            "{op} {args}"
        );
    }
    // A refused call changed nothing.
    assert_eq!(app.status("counters").await["counters"]["published"], 0);
}

#[tokio::test]
async fn bad_lines_are_answered_and_the_connection_goes_on() {
    let (_app, url) = line_app(|_| {}).await;
    let mut l = Line::connect(&url).await;
    let bad: &[(&[u8], u16, &str)] = &[
        (b"this is not json\n", 400, "malformed_json"),
        (b"[1, 2]\n", 400, "invalid_body"),
        (b"{\"id\": 1, \"op\": \"ping\"\n", 400, "malformed_json"),
        (b"{\"id\": 2}\n", 400, "missing_field"),
        (b"{\"id\": 3, \"op\": 7}\n", 400, "invalid_field"),
        (
            b"{\"id\": 4, \"op\": \"ping\", \"key\": \"x\"}\n",
            400,
            "unknown_field",
        ),
        (
            b"{\"id\": {\"a\": 1}, \"op\": \"ping\"}\n",
            400,
            "invalid_field",
        ),
        (b"{\"id\": 5, \"op\": \"fly\"}\n", 404, "unknown_op"),
        (
            b"{\"id\": 6, \"op\": \"publish\", \"args\": 5}\n",
            400,
            "invalid_field",
        ),
        (
            b"{\"id\": 7, \"op\": \"claim\", \"args\": [1]}\n",
            400,
            "invalid_body",
        ),
        (b"\xff\xfe\n", 400, "malformed_json"),
    ];
    for (line, status, code) in bad {
        l.send_raw(line).await;
        let a = l.next().await;
        assert_eq!(
            a["error"]["status"],
            *status,
            "{}: {a}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(
            a["error"]["code"],
            *code,
            "{}: {a}",
            String::from_utf8_lossy(line)
        );
    }
    // The id is echoed whenever it could be read.
    l.send_raw(b"{\"id\": \"x\", \"op\": \"fly\"}\n").await;
    assert_eq!(l.next().await["id"], "x");
    // Blank lines and CRLF endings are fine.
    l.send_raw(b"\n\r\n   \n{\"id\": 9, \"op\": \"ping\"}\r\n")
        .await;
    assert_eq!(l.next().await, json!({"id": 9, "ok": {"pong": true}}));
    // Operations of the test clock only exist with it; HTTP-only routes are
    // not operations.
    l.send_raw(b"{\"id\": 10, \"op\": \"metrics\"}\n").await;
    assert_eq!(l.next().await["error"]["code"], "unknown_op");
}

#[tokio::test]
async fn an_oversize_line_is_refused_and_skipped_to_its_end() {
    let (_app, url) = line_app(|s| s.line.max_line_bytes = 4096).await;
    let mut l = Line::connect(&url).await;
    // One long line sent in pieces, the newline long after the limit.
    let pad = "x".repeat(3000);
    l.send_raw(
        format!("{{\"id\": 1, \"op\": \"publish\", \"args\": {{\"data\": {{\"a\": \"{pad}")
            .as_bytes(),
    )
    .await;
    l.send_raw(pad.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    l.send_raw(pad.as_bytes()).await;
    l.send_raw(format!("{pad}\"}}}}}}\n{{\"id\": 2, \"op\": \"ping\"}}\n").as_bytes())
        .await;
    let refused = l.next().await;
    assert_eq!(refused["error"]["status"], 413, "{refused}");
    assert_eq!(refused["error"]["code"], "line_too_long");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("line.max_line_bytes"));
    // Nothing of the long line was taken for a call; the next one is.
    assert_eq!(l.next().await, json!({"id": 2, "ok": {"pong": true}}));
    let status = l.ok("status", json!({"counters": true})).await;
    assert_eq!(status["counters"]["published"], 0);
    // Just under the limit is a line like any other.
    let fits = "y".repeat(3900);
    let ok = l.ok("publish", json!({"data": {"a": fits}})).await;
    assert!(ok["taskId"].is_string());
}

#[tokio::test]
async fn a_line_begun_must_end_in_time() {
    let (_app, url) = line_app(|s| s.limits.body_timeout_secs = 0.5).await;
    let mut l = Line::connect(&url).await;
    l.send_raw(b"{\"id\": 1, \"op\": \"pi").await;
    let a = l.next().await;
    assert_eq!(a["error"]["code"], "line_timeout", "{a}");
    assert!(
        l.closed().await,
        "the connection closes after a line timeout"
    );
}

#[tokio::test]
async fn keys_and_roles_hold_over_the_line_protocol() {
    use interq::auth::new_key;
    use interq::config::KeyConfig;
    let (admin, admin_hash) = new_key();
    let (publisher, publisher_hash) = new_key();
    let (worker, worker_hash) = new_key();
    let (mailer, mailer_hash) = new_key();
    let (viewer, viewer_hash) = new_key();
    let (_app, url) = line_app(|s| {
        s.auth.viewer = vec![viewer_hash.to_string()];
        s.auth.admin = vec![admin_hash.to_string()];
        s.auth.publisher = vec![publisher_hash.to_string()];
        s.auth.worker = vec![worker_hash.to_string()];
        s.auth.keys = vec![KeyConfig {
            role: Some(interq::auth::Role::Publisher),
            roles: vec![],
            hash: mailer_hash.to_string(),
            label: Some("mailer".into()),
            queues: Some(vec!["emails".into()]),
        }];
    })
    .await;
    let mut l = Line::connect(&url).await;
    // Ping needs no key; everything else does.
    l.ok("ping", Value::Null).await;
    let m = l.error("status", json!({}), 401, "unauthorized").await;
    assert!(m.contains("auth"), "{m}");
    l.error("auth", json!({"key": "wrong"}), 401, "unauthorized")
        .await;
    l.error("auth", json!({}), 400, "missing_field").await;
    l.error("status", json!({}), 401, "unauthorized").await;

    let who = l.ok("auth", json!({"key": worker})).await;
    assert_eq!(who["roles"], json!(["worker"]));
    let m = l
        .error("publish", json!({"data": {}}), 403, "forbidden")
        .await;
    assert!(m.contains("publish"), "{m}");
    l.error(
        "setInterests",
        json!({"queue": "q", "interests": "*"}),
        403,
        "forbidden",
    )
    .await;

    // A viewer reads what an admin reads, and changes nothing.
    let who = l.ok("auth", json!({"key": viewer})).await;
    assert_eq!(who["roles"], json!(["viewer"]));
    l.ok("status", json!({"counters": true})).await;
    l.ok("listTasks", json!({"state": "ready"})).await;
    l.error(
        "setInterests",
        json!({"queue": "q", "interests": "*"}),
        403,
        "forbidden",
    )
    .await;
    l.error("publish", json!({"data": {}}), 403, "forbidden")
        .await;

    l.ok("auth", json!({"key": admin})).await;
    l.ok("setInterests", json!({"queue": "emails", "interests": "*"}))
        .await;
    l.ok("setInterests", json!({"queue": "audit", "interests": "*"}))
        .await;

    l.ok("auth", json!({"key": publisher})).await;
    let p = l.ok("publish", json!({"data": {"n": 1}})).await;
    assert_eq!(p["queues"], json!(["audit", "emails"]));
    // A key narrowed to queues publishes only into those.
    l.ok("auth", json!({"key": mailer})).await;
    let p = l.ok("publish", json!({"data": {"n": 2}})).await;
    assert_eq!(p["queues"], json!(["emails"]));
    // A failed attempt drops the key the connection had.
    l.error("auth", json!({"key": "wrong"}), 401, "unauthorized")
        .await;
    l.error("publish", json!({"data": {}}), 401, "unauthorized")
        .await;

    // The Rust client presents its key on connecting.
    let client = Client::with_options(
        &url,
        ClientOptions {
            key: Some(publisher.clone()),
            ca_pem: None,
        },
    )
    .unwrap();
    client
        .publish(&Publish::new(json!({"n": 3})))
        .await
        .unwrap();
    let bad = Client::with_options(
        &url,
        ClientOptions {
            key: Some("wrong".into()),
            ca_pem: None,
        },
    )
    .unwrap();
    let err = bad.publish(&Publish::new(json!({}))).await.unwrap_err();
    assert!(matches!(err, ClientError::Api { status: 401, .. }), "{err}");
}

#[tokio::test]
async fn many_calls_in_flight_on_one_connection_are_each_answered_once() {
    // A cap below the number sent: the rest wait unread, then run.
    let (app, url) = line_app(|s| s.line.max_in_flight = 16).await;
    app.put_interest("q", json!("*")).await.ok();
    let mut l = Line::connect(&url).await;
    let mut lines = Vec::new();
    for i in 0..500 {
        lines.extend_from_slice(
            format!(
                "{{\"id\": {i}, \"op\": \"publish\", \"args\": {{\"data\": {{\"i\": {i}}}}}}}\n"
            )
            .as_bytes(),
        );
    }
    // In one write: the server reads them as they come.
    l.send_raw(&lines).await;
    let mut seen = std::collections::BTreeSet::new();
    let mut tasks = std::collections::BTreeSet::new();
    for _ in 0..500 {
        let a = l.next().await;
        assert!(a.get("ok").is_some(), "{a}");
        assert!(
            seen.insert(a["id"].as_u64().unwrap()),
            "answered twice: {a}"
        );
        tasks.insert(a["ok"]["taskId"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen.len(), 500);
    assert_eq!(tasks.len(), 500);
    assert_eq!(app.queue("q").await["ready"], 500);

    // The Rust client shares one connection among many callers.
    let client = Client::new(&url).unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..200 {
        let c = client.clone();
        calls.spawn(async move { c.publish(&Publish::new(json!({"j": i}))).await });
    }
    while let Some(r) = calls.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(app.queue("q").await["ready"], 700);
}

#[tokio::test]
async fn set_up_calls_run_in_order_before_the_publishes_after_them() {
    let (app, url) = line_app(|_| {}).await;
    let mut l = Line::connect(&url).await;
    // Sent together: the interests are in place before the publish routes.
    l.send_raw(
        b"{\"id\": 1, \"op\": \"setInterests\", \"args\": {\"queue\": \"q\", \"interests\": \"*\"}}\n\
          {\"id\": 2, \"op\": \"publish\", \"args\": {\"data\": {}}}\n\
          {\"id\": 3, \"op\": \"deleteInterests\", \"args\": {\"queue\": \"q\"}}\n\
          {\"id\": 4, \"op\": \"publish\", \"args\": {\"data\": {}}}\n",
    )
    .await;
    assert_eq!(l.answer(&json!(2)).await["ok"]["queues"], json!(["q"]));
    assert_eq!(l.answer(&json!(4)).await["ok"]["queues"], json!([]));
    assert_eq!(app.queue("q").await["ready"], 1);
}

#[tokio::test]
async fn a_long_poll_claim_waits_without_holding_up_the_connection() {
    let (app, url) = line_app(|_| {}).await;
    app.put_interest("q", json!("*")).await.ok();
    let worker = app.register(&["q"]).await;
    let mut l = Line::connect(&url).await;
    l.send(json!({"id": "wait", "op": "claim", "args": {"workerId": worker, "wait": 20}}))
        .await;
    // Calls after it are answered while it waits, set-up too.
    assert_eq!(l.ok("ping", Value::Null).await, json!({"pong": true}));
    let started = std::time::Instant::now();
    l.ok("setQueue", json!({"queue": "q", "maxRunning": 10}))
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let published = l.ok("publish", json!({"data": {"n": 1}})).await;
    let claimed = l.answer(&json!("wait")).await;
    assert_eq!(
        claimed["ok"]["taskId"], published["copies"][0]["taskId"],
        "{claimed}"
    );
}

#[tokio::test]
async fn a_client_that_disconnects_with_calls_in_flight_takes_no_task_with_it() {
    let (app, url) = line_app(|_| {}).await;
    app.put_interest("q", json!("*")).await.ok();
    let worker = app.register(&["q"]).await;
    let mut l = Line::connect(&url).await;
    for i in 0..3 {
        l.send(json!({"id": i, "op": "claim", "args": {"workerId": worker, "wait": 30}}))
            .await;
    }
    l.send(json!({"id": "p", "op": "ping"})).await;
    assert_eq!(l.answer(&json!("p")).await["ok"]["pong"], true);
    drop(l);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A task published now is not leased to the claims of the client gone.
    let published = app.publish_data(json!({"n": 1})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let q = app.queue("q").await;
    assert_eq!(
        (q["ready"].clone(), q["running"].clone()),
        (json!(1), json!(0)),
        "{q}"
    );
    let other = app.register(&["q"]).await;
    assert_eq!(
        app.claim(&other).await["taskId"],
        published["copies"][0]["taskId"]
    );
    // And the server serves new connections as before.
    let mut again = Line::connect(&url).await;
    again.ok("ping", Value::Null).await;
}

#[tokio::test]
async fn a_client_that_closes_its_side_still_gets_its_answers() {
    let (app, url) = line_app(|_| {}).await;
    app.put_interest("q", json!("*")).await.ok();
    let mut l = Line::connect(&url).await;
    // As `nc -N` sends: the calls, then the end of its side.
    l.send_raw(b"{\"id\": 1, \"op\": \"publish\", \"args\": {\"data\": {}}}\n{\"id\": 2, \"op\": \"ping\"}")
        .await;
    l.wr.shutdown().await.unwrap();
    let mut got = vec![l.next().await, l.next().await];
    got.sort_by_key(|a| a["id"].as_u64());
    assert!(got[0]["ok"]["taskId"].is_string(), "{got:?}");
    assert_eq!(got[1]["ok"]["pong"], true, "the last line needs no newline");
    assert!(l.closed().await);
    assert_eq!(app.queue("q").await["ready"], 1);
}

#[tokio::test]
async fn past_the_connection_cap_a_line_client_is_told_why() {
    let (_app, url) = line_app(|s| {
        s.limits.max_connections = 1000;
        s.limits.max_connections_per_client = 2;
    })
    .await;
    let mut a = Line::connect(&url).await;
    let mut b = Line::connect(&url).await;
    a.ok("ping", Value::Null).await;
    b.ok("ping", Value::Null).await;
    let mut c = Line::connect(&url).await;
    let refused = c.next().await;
    assert_eq!(refused["error"]["status"], 429, "{refused}");
    assert_eq!(refused["error"]["code"], "too_many_connections");
    assert!(c.closed().await);
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut d = Line::connect(&url).await;
    d.ok("ping", Value::Null).await;
}

#[tokio::test]
async fn the_line_protocol_speaks_tls_when_the_server_does() {
    let cert = crate::helpers::TestCert::new();
    let (_app, url) = line_app(|s| cert.serve(s)).await;
    let port = url.rsplit(':').next().unwrap();
    let tls_url = format!("interqs://localhost:{port}");
    let trusted = cert.client(&tls_url);
    trusted.set_interests("q", json!("*")).await.unwrap();
    let published = trusted
        .publish(&Publish::new(json!({"a": 1})))
        .await
        .unwrap();
    assert_eq!(published.queues.len(), 1);
    // Without trusting the certificate, the client refuses the server.
    let untrusted = Client::new(&tls_url).unwrap();
    let err = untrusted.status(&[]).await.unwrap_err();
    assert!(matches!(err, ClientError::Tls(_)), "{err}");
    // Plain text to a TLS port gets no answer, only a closed connection.
    let mut plain = Line::connect(&url).await;
    plain.send_raw(b"{\"id\": 1, \"op\": \"ping\"}\n").await;
    assert!(plain.closed().await);
}

#[tokio::test]
async fn a_bad_line_url_is_refused_before_any_connection() {
    for url in [
        "interq://",
        "interq://host",
        "interq://host:notaport",
        "interq://:7701",
    ] {
        assert!(
            matches!(Client::new(url), Err(ClientError::BadUrl(_))),
            "{url}"
        );
    }
    // Nothing listens there: the call says so.
    let nobody = Client::new("interq://127.0.0.1:1").unwrap();
    let err = nobody.status(&[]).await.unwrap_err();
    assert!(matches!(err, ClientError::Connection(_)), "{err}");
}

#[tokio::test]
async fn stopping_the_server_answers_the_calls_in_flight() {
    let (app, url) = line_app(|_| {}).await;
    app.put_interest("q", json!("*")).await.ok();
    let worker = app.register(&["q"]).await;
    let mut l = Line::connect(&url).await;
    l.send(json!({"id": 1, "op": "claim", "args": {"workerId": worker, "wait": 30}}))
        .await;
    l.ok("ping", Value::Null).await;
    let stopping = tokio::spawn(app.stop());
    // The long poll is answered (no task), then the connection closes.
    let a = l.answer(&json!(1)).await;
    assert!(a["ok"].is_null() || a.get("error").is_some(), "{a}");
    assert!(l.closed().await);
    tokio::time::timeout(Duration::from_secs(20), stopping)
        .await
        .expect("the server stops")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_while_pipelining_loses_no_acknowledged_publish() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start_with_env(dir.path(), &[("INTERQ_LINE__LISTEN", "127.0.0.1:0")]);
    let url = server.line.clone().expect("the line port in the log");
    let api = server.api();
    api.put_interest("q", json!("*")).await.ok();
    let client = Client::new(&url).unwrap();
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut publishers = tokio::task::JoinSet::new();
    // 64 calls in flight on the one connection, some of them batches.
    for p in 0..64 {
        let (client, acked) = (client.clone(), std::sync::Arc::clone(&acknowledged));
        publishers.spawn(async move {
            for i in 0.. {
                let result = if p % 4 == 0 {
                    let batch: Vec<Publish> = (0..5)
                        .map(|k| Publish::new(json!({"p": p, "i": i, "k": k})))
                        .collect();
                    client
                        .publish_batch(&batch)
                        .await
                        .map(|ps| ps.into_iter().map(|p| p.task_id).collect::<Vec<_>>())
                } else {
                    client
                        .publish(&Publish::new(json!({"p": p, "i": i})))
                        .await
                        .map(|p| vec![p.task_id])
                };
                match result {
                    Ok(ids) => acked
                        .lock()
                        .unwrap()
                        .extend(ids.into_iter().map(|id| id.to_string())),
                    Err(_) => return,
                }
            }
        });
    }
    while acknowledged.lock().unwrap().len() < 3000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill_9();
    while publishers.join_next().await.is_some() {}
    let acked = acknowledged.lock().unwrap().clone();
    assert!(acked.len() >= 3000);

    let server = ChildServer::start(dir.path());
    let api = server.api();
    let ready = api.queue("q").await["ready"].as_u64().unwrap();
    assert!(
        ready >= acked.len() as u64,
        "{} acknowledged, {ready} ready after the restart",
        acked.len()
    );
    // Every acknowledged publish, by id (a sample across the run, and the
    // last ones, acknowledged just before the kill).
    let step = (acked.len() / 200).max(1);
    for id in acked
        .iter()
        .step_by(step)
        .chain(acked.iter().rev().take(50))
    {
        let task = api.status(&format!("task={id}")).await;
        assert!(
            task["task"]["copies"][0]["state"] == "ready",
            "acknowledged publish {id} lost: {task}"
        );
    }
}
