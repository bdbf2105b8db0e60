//! `interq worker` as a real child process, running real commands, against
//! the real server.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{interq_binary, spawn_app, spawn_app_in, spawn_app_with, TestApp};

/// A running `interq worker`.
struct WorkerProcess(Child);

impl WorkerProcess {
    fn start(app: &TestApp, flags: &[&str], command: &[&str]) -> Self {
        Self::start_at(&app.base, flags, command)
    }

    fn start_at(url: &str, flags: &[&str], command: &[&str]) -> Self {
        let mut cmd = Command::new(interq_binary());
        cmd.args(["worker", "--url", url, "--queue", "q"])
            .args(flags)
            .arg("--")
            .args(command)
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        Self(cmd.spawn().expect("start interq worker"))
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the worker to exit; its exit status.
    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the worker did not exit within {within:?}");
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls the task until `done` holds for it, for at most 20 s.
async fn wait_for_task(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let task = app.status(&format!("task={id}")).await["task"].clone();
        if done(&task) {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "the task never got there: {task}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn publish(app: &TestApp, body: Value) -> String {
    let published = app.publish(body).await.ok();
    published["copies"][0]["taskId"]
        .as_str()
        .expect("one copy")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_completes_its_task_with_output_and_sees_the_task() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let id = publish(
        &app,
        json!({"data": {"name": "ada", "n": 3, "deep": {"x": 1}}}),
    )
    .await;
    let script = r#"input=$(cat); echo "$INTERQ_TASK_ID $INTERQ_QUEUE $INTERQ_ATTEMPT $INTERQ_DATA_NAME $INTERQ_DATA_N [$INTERQ_DATA_DEEP]"; echo "$input""#;
    let _worker = WorkerProcess::start(&app, &[], &["sh", "-c", script]);

    let task = wait_for_task(&app, &id, |t| t["state"] == "completed").await;

    let output = task["output"].as_str().expect("output is the stdout tail");
    let mut lines = output.lines();
    assert_eq!(lines.next().unwrap(), format!("{id} q 1 ada 3 []"));
    let input: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(input, json!({"name": "ada", "n": 3, "deep": {"x": 1}}));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_may_speak_the_line_protocol() {
    let app = spawn_app_with(|s| s.line.listen = Some("127.0.0.1:0".into())).await;
    app.put_interest("q", json!("*")).await.ok();
    let ok = publish(&app, json!({"data": {"n": 1}})).await;
    let bad = publish(&app, json!({"data": {"n": 2}, "maxAttempts": 1})).await;
    let url = app.line.clone().unwrap();
    let _worker = WorkerProcess::start_at(
        &url,
        &["--concurrency", "2"],
        &[
            "sh",
            "-c",
            r#"echo "n=$INTERQ_DATA_N"; test "$INTERQ_DATA_N" = 1"#,
        ],
    );
    let done = wait_for_task(&app, &ok, |t| t["state"] == "completed").await;
    assert_eq!(done["output"], "n=1\n");
    let failed = wait_for_task(&app, &bad, |t| t["state"] == "failed").await;
    assert!(
        failed["failReason"].as_str().unwrap().contains("exit"),
        "{failed}"
    );
    // It registered over that connection, and shows as any worker does.
    let workers = app.status("workers").await["workers"].clone();
    assert_eq!(workers.as_array().map(Vec::len), Some(1), "{workers}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_command_fails_its_task_and_the_retry_runs_it_again() {
    let app = spawn_app_with(|s| {
        s.tasks.retry_base_secs = 10.0;
        s.tasks.retry_jitter = 0.0;
    })
    .await;
    app.put_interest("q", json!("*")).await.ok();
    let id = publish(&app, json!({"data": {}, "maxAttempts": 2})).await;
    let _worker = WorkerProcess::start(
        &app,
        &[],
        &[
            "sh",
            "-c",
            r#"echo "broken on $INTERQ_ATTEMPT" >&2; exit 3"#,
        ],
    );

    let first = wait_for_task(&app, &id, |t| t["state"] == "scheduled").await;
    assert_eq!(first["failReason"], "exit code 3: broken on 1");
    app.advance(10.0).await;
    let last = wait_for_task(&app, &id, |t| t["state"] == "failed").await;
    assert_eq!(last["failReason"], "exit code 3: broken on 2");
    assert_eq!(last["attempt"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_over_its_time_is_killed_with_its_process_group() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let dir = tempfile::tempdir().unwrap();
    let late = dir.path().join("late");
    let id = publish(&app, json!({"data": {}, "ttr": 1, "maxAttempts": 1})).await;
    // A grandchild that would leave a mark after 2 s, and a long sleep.
    let script = format!("(sleep 2; touch {}) & sleep 30", late.display());
    let _worker = WorkerProcess::start(&app, &[], &["sh", "-c", &script]);

    let task = wait_for_task(&app, &id, |t| t["state"] == "failed").await;

    assert!(
        task["failReason"]
            .as_str()
            .unwrap()
            .starts_with("timed out after 1 s"),
        "{task}"
    );
    // Outlive the grandchild's 2 s: the whole group died with the command.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!late.exists(), "the process group was killed");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_runs_that_many_commands_at_once() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(publish(&app, json!({"data": {"n": n}, "maxAttempts": 1})).await);
    }
    // Each command waits until all three have started: one at a time, they
    // would time out and fail.
    let script = format!(
        "touch {d}/$INTERQ_TASK_ID; for i in $(seq 100); do [ $(ls {d} | wc -l) -ge 3 ] && exit 0; sleep 0.05; done; exit 1",
        d = dir.path().display()
    );
    let _worker = WorkerProcess::start(&app, &["--concurrency", "3"], &["sh", "-c", &script]);

    for id in &ids {
        let task = wait_for_task(&app, id, |t| {
            matches!(t["state"].as_str(), Some("completed" | "failed"))
        })
        .await;
        assert_eq!(task["state"], "completed", "{task}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_running_command_finish_then_deregisters() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let id = publish(&app, json!({"data": {}})).await;
    let script = format!("touch {}; sleep 1; echo finished", started.display());
    let mut worker = WorkerProcess::start(&app, &["--grace", "20"], &["sh", "-c", &script]);
    wait_for_file(&started).await;

    worker.signal("-TERM");

    assert!(worker.wait_exit(Duration::from_secs(20)).success());
    let task = app.status(&format!("task={id}")).await["task"].clone();
    assert_eq!(
        (task["state"].as_str(), task["output"].as_str()),
        (Some("completed"), Some("finished\n"))
    );
    assert_eq!(app.status("workers").await["workers"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_past_the_grace_time_fails_the_task_rather_than_losing_it() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let id = publish(&app, json!({"data": {}, "maxAttempts": 1})).await;
    let script = format!("touch {}; sleep 30", started.display());
    let mut worker = WorkerProcess::start(&app, &["--grace", "0.2"], &["sh", "-c", &script]);
    wait_for_file(&started).await;

    worker.signal("-TERM");

    assert!(worker.wait_exit(Duration::from_secs(20)).success());
    let task = app.status(&format!("task={id}")).await["task"].clone();
    assert_eq!(task["state"], "failed", "{task}");
    assert!(task["failReason"]
        .as_str()
        .unwrap()
        .starts_with("worker shutting down"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_with_9_loses_its_task_only_until_the_lease_ends() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let id = publish(&app, json!({"data": {}, "ttr": 30})).await;
    let script = format!("touch {}; sleep 3", started.display());
    let mut worker = WorkerProcess::start(&app, &[], &["sh", "-c", &script]);
    wait_for_file(&started).await;

    worker.signal("-KILL");
    worker.wait_exit(Duration::from_secs(10));
    assert_eq!(
        app.status(&format!("task={id}")).await["task"]["state"],
        "running"
    );
    app.advance(30.0).await;

    let task = app.status(&format!("task={id}")).await["task"].clone();
    assert_eq!(
        (task["state"].as_str(), task["attempt"].as_u64()),
        (Some("ready"), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_may_carry_its_own_command_only_where_allowed() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let own =
        json!({"data": {"command": ["sh", "-c", "echo $GREETING"], "env": {"GREETING": "hi"}}});

    let id = publish(&app, own.clone()).await;
    let mut allowed = WorkerProcess::start(&app, &["--allow-task-command"], &[]);
    let task = wait_for_task(&app, &id, |t| t["state"] == "completed").await;
    assert_eq!(task["output"], "hi\n");
    // Stopped, not killed: a killed worker's pending long poll could still
    // take the next task, which would then wait out its lease.
    allowed.signal("-TERM");
    assert!(allowed.wait_exit(Duration::from_secs(20)).success());

    let id = publish(&app, own).await;
    let _fixed = WorkerProcess::start(&app, &[], &["echo", "fixed"]);
    let task = wait_for_task(&app, &id, |t| t["state"] == "completed").await;
    assert_eq!(task["output"], "fixed\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_that_cannot_start_fails_its_task() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    // A worker's own command is checked before it starts (below); a task's
    // own command can only fail when it is run.
    let id = publish(
        &app,
        json!({"data": {"command": ["/nonexistent/program"]}, "maxAttempts": 1}),
    )
    .await;
    let _worker = WorkerProcess::start(&app, &["--allow-task-command"], &[]);
    let task = wait_for_task(&app, &id, |t| t["state"] == "failed").await;
    assert!(
        task["failReason"]
            .as_str()
            .unwrap()
            .starts_with("cannot start `/nonexistent/program`"),
        "{task}"
    );
}

#[test]
fn a_worker_without_a_command_refuses_to_start() {
    let out = Command::new(interq_binary())
        .args(["worker", "--url", "http://127.0.0.1:9", "--queue", "q"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("give a command after `--`"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigint_exits_at_once() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    publish(&app, json!({"data": {}})).await;
    let script = format!("touch {}; sleep 30", started.display());
    let mut worker = WorkerProcess::start(&app, &["--grace", "60"], &["sh", "-c", &script]);
    wait_for_file(&started).await;

    worker.signal("-INT");
    // Still draining: the grace time is a minute.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        worker.0.try_wait().unwrap().is_none(),
        "the first SIGINT drains"
    );
    worker.signal("-INT");

    let status = worker.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(130));
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_keep_a_long_command_leased() {
    // The real clock, ticking often: a 1 s lease would run out three times
    // over during this 3 s command without heartbeats.
    let app = spawn_app_with(|s| {
        s.testing.manual_clock = false;
        s.tasks.tick_ms = 50;
    })
    .await;
    app.put_interest("q", json!("*")).await.ok();
    let id = publish(&app, json!({"data": {}, "ttr": 1})).await;
    let _worker = WorkerProcess::start(
        &app,
        &["--timeout", "20", "--heartbeat", "0.2"],
        &["sh", "-c", "sleep 3; echo done"],
    );

    let task = wait_for_task(&app, &id, |t| t["state"] == "completed").await;

    assert_eq!(
        (task["attempt"].as_u64(), task["output"].as_str()),
        (Some(1), Some("done\n")),
        "never redelivered"
    );
    assert_eq!(app.status("counters").await["counters"]["leaseExpired"], 0);
}

/// The workers the server knows: (id, name).
async fn workers(app: &TestApp) -> Vec<(String, String)> {
    app.status("workers").await["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["workerId"].as_str().unwrap().to_owned(),
                w["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn wait_for_workers(
    app: &TestApp,
    done: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = workers(app).await;
        if done(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the workers never got there: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A worker started with its standard error kept, to read its log.
fn start_logged(
    url: &str,
    flags: &[&str],
    command: &[&str],
    env: &[(&str, &str)],
) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut cmd = Command::new(interq_binary());
    cmd.arg("worker");
    if !url.is_empty() {
        cmd.args(["--url", url]);
    }
    let mut child = cmd
        .args(["--queue", "q"])
        .args(flags)
        .arg("--")
        .args(command)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start interq worker");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// Reads the log until a line holds every one of `words`; every line read.
fn log_until(rx: &std::sync::mpsc::Receiver<String>, words: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let hit = words.iter().all(|w| line.contains(w));
                seen.push(line);
                if hit {
                    return seen;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    panic!("no log line with {words:?} in:\n{}", seen.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_the_server_forgot_registers_again_under_its_name() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let (mut child, log) = start_logged(
        &app.base,
        &["--name", "w1"],
        &["sh", "-c", "cat >/dev/null; echo ok"],
        &[],
    );
    let first = wait_for_workers(&app, |w| w.iter().any(|(_, n)| n == "w1")).await;
    let old = first[0].0.clone();
    // Removed as an operator would from the console (or the server's idle
    // sweep would): its claim in flight learns it is unknown.
    app.send(
        reqwest::Method::DELETE,
        "/worker",
        Some(json!({"workerId": old})),
    )
    .await
    .ok();
    let again = wait_for_workers(&app, |w| w.len() == 1 && w[0].0 != old).await;
    assert_eq!(again[0].1, "w1", "the same name: {again:?}");
    log_until(&log, &["registered again", &old]);
    // And it works as before.
    let id = publish(&app, json!({"data": {}})).await;
    wait_for_task(&app, &id, |t| t["state"] == "completed").await;
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_waits_for_a_server_that_starts_late_unless_told_not_to() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    // Failing fast: a clear error and a non-zero exit.
    let out = Command::new(interq_binary())
        .args([
            "worker",
            "--url",
            &url,
            "--queue",
            "q",
            "--fail-fast",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach interq"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (mut child, log) = start_logged(
        &url,
        &["--name", "late"],
        &["sh", "-c", "cat >/dev/null"],
        &[],
    );
    log_until(&log, &["waiting for interq"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "it waits, it does not exit"
    );
    let app = spawn_app_with(|s| s.listen = format!("127.0.0.1:{port}")).await;
    app.put_interest("q", json!("*")).await.ok();
    wait_for_workers(&app, |w| w.iter().any(|(_, n)| n == "late")).await;
    let id = publish(&app, json!({"data": {}})).await;
    wait_for_task(&app, &id, |t| t["state"] == "completed").await;
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_refuses_to_start_on_its_own_mistakes() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let not_executable = dir.path().join("script.sh");
    std::fs::write(&not_executable, "#!/bin/sh\ntrue\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--url".into(),
                app.base.clone(),
                "--".into(),
                "no-such-command-here".into(),
            ],
            "not found on PATH",
        ),
        (
            vec![
                "--url".into(),
                app.base.clone(),
                "--".into(),
                "/no/such/file".into(),
            ],
            "does not exist",
        ),
        (
            vec![
                "--url".into(),
                app.base.clone(),
                "--".into(),
                not_executable.display().to_string(),
            ],
            "not an executable file",
        ),
        (
            vec![
                "--url".into(),
                "ftp://nowhere".into(),
                "--".into(),
                "true".into(),
            ],
            "not an http(s) URL",
        ),
        (
            vec![
                "--url".into(),
                app.base.clone(),
                "--queue".into(),
                "bad name!".into(),
                "--".into(),
                "true".into(),
            ],
            "queue",
        ),
    ];
    for (args, says) in cases {
        let out = Command::new(interq_binary())
            .args(["worker", "--queue", "q"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // None of them registered.
    assert!(workers(&app).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_logs_what_became_of_each_task_and_warns_of_a_queue_nobody_routes_to() {
    let app = spawn_app().await;
    // INTERQ_URL stands for --url.
    let (mut child, log) = start_logged(
        "",
        &["--queue", "nobody"],
        &[
            "sh",
            "-c",
            r#"cat >/dev/null; if [ "$INTERQ_DATA_OK" = yes ]; then echo fine; else echo "broken pipe" >&2; echo more >&2; exit 3; fi"#,
        ],
        &[("INTERQ_URL", &app.base)],
    );
    log_until(&log, &["no interests", "nobody"]);
    app.put_interest("q", json!("*")).await.ok();
    let ok = publish(&app, json!({"data": {"ok": "yes"}})).await;
    log_until(&log, &["task completed", &ok, "duration_ms="]);
    let bad = publish(&app, json!({"data": {"ok": "no"}, "maxAttempts": 1})).await;
    let lines = log_until(&log, &["task failed", &bad, "exit code 3"]);
    let failed = lines.last().unwrap();
    assert!(
        failed.contains("broken pipe") && !failed.contains("more"),
        "the reason's first line: {failed}"
    );
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    log_until(&log, &["worker stopped", "completed=1", "failed=1"]);
    let _ = child.wait();
}

#[tokio::test]
async fn requests_say_which_client_sent_them() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let head = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        let _ = s
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            )
            .await;
        String::from_utf8_lossy(&buf[..n]).to_lowercase()
    });
    let client = interq::client::Client::new(&url).unwrap();
    let _ = client.status(&[]).await;
    let head = head.await.unwrap();
    assert!(
        head.contains(&format!("user-agent: interq/{}", env!("CARGO_PKG_VERSION"))),
        "{head}"
    );
}

/// Polls a task's log until `want` is in it, for at most 20 s; the log.
async fn wait_for_log(app: &TestApp, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = app.task_log(id).await;
        if log["text"].as_str().is_some_and(|t| t.contains(want)) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "`{want}` never reached the log: {log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_commands_output_reaches_its_log_as_it_comes_and_across_a_restart() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = move |s: &mut interq::config::Settings| {
        s.listen = format!("127.0.0.1:{port}");
        s.tasks.log_every_ms = 0;
    };
    let app = spawn_app_with(settings).await;
    app.put_interest("q", json!("*")).await.ok();
    let gate = tempfile::tempdir().unwrap();
    let (a, b) = (gate.path().join("a"), gate.path().join("b"));
    let script = format!(
        "cat >/dev/null; echo one; echo oops >&2; \
         while [ ! -e {a} ]; do sleep 0.05; done; echo two; \
         while [ ! -e {b} ]; do sleep 0.05; done; echo three",
        a = a.display(),
        b = b.display()
    );
    let _worker = WorkerProcess::start(&app, &["--log-every", "0.2"], &["sh", "-c", &script]);
    let id = publish(&app, json!({"data": {}})).await;
    // While the command runs, its first lines are in the log already.
    let log = wait_for_log(&app, &id, "oops").await;
    assert_eq!(log["state"], "running");
    assert!(log["text"].as_str().unwrap().contains("one\n"), "{log}");

    // The server goes away; the command writes meanwhile; the worker sends
    // it once the server is back.
    let dir = app.stop().await;
    std::fs::write(&a, "").unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let app = spawn_app_in(dir, settings).await;
    let log = wait_for_log(&app, &id, "two").await;
    assert_eq!(log["state"], "running");
    std::fs::write(&b, "").unwrap();
    let task = wait_for_task(&app, &id, |t| t["state"] == "completed").await;
    let log = app.task_log(&id).await;
    // All of it, once each, in order; the output holds stdout alone.
    let text = log["text"].as_str().unwrap();
    assert_eq!(text.matches("one\n").count(), 1, "{text}");
    assert!(text.ends_with("two\nthree\n"), "{text}");
    assert_eq!(task["output"], "one\ntwo\nthree\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn weights_register_the_worker_weighted_and_bad_ones_refuse_to_start() {
    let app = spawn_app().await;
    let _worker = WorkerProcess::start(&app, &["--queue", "low", "--weight", "q=4"], &["true"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let weights = loop {
        let workers = app.status("workers").await["workers"].clone();
        if let Some(w) = workers.as_array().unwrap().first() {
            break w["weights"].clone();
        }
        assert!(Instant::now() < deadline, "the worker registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(weights, json!([4, 1]), "q weighs 4, low 1");
    for (flag, says) in [
        ("q", "QUEUE=N"),
        ("other=2", "no --queue"),
        ("q=0", "1 to 1000"),
    ] {
        let out = Command::new(interq_binary())
            .args([
                "worker", "--url", &app.base, "--queue", "q", "--weight", flag, "--", "true",
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{flag}: {err}");
    }
}
