//! Starts the real server and talks to it over real HTTP.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::Duration;

use interq::config::{LogSettings, Settings};
use interq::startup::{Application, ShutdownHandle};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Logs only when `TEST_LOG` is set, so test output stays quiet.
fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        interq::client::install_tls_provider();
        if std::env::var_os("TEST_LOG").is_some() {
            interq::telemetry::init(&LogSettings {
                filter: "debug".into(),
                ..LogSettings::default()
            });
        }
    });
}

/// Settings for a test server: a random port, its own data directory, a
/// manual clock.
pub fn test_settings(data_dir: &Path) -> Settings {
    let mut s = Settings {
        listen: "127.0.0.1:0".into(),
        data_dir: data_dir.to_path_buf(),
        ..Settings::default()
    };
    s.testing.manual_clock = true;
    // Time moves only when a test moves it, and each move ticks.
    s.tasks.tick_ms = 3_600_000;
    // Tests move the clock by hours; workers should outlive that unless a
    // test is about idle workers.
    s.workers.stale_after_secs = 86_400;
    s.workers.idle_timeout_secs = 7 * 86_400;
    s
}

/// Typed requests to a server at `base`.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

/// A running server in this process.
pub struct TestApp {
    pub api: Api,
    /// `interq://127.0.0.1:<port>` when the line protocol is on.
    pub line: Option<String>,
    pub dir: tempfile::TempDir,
    shutdown: ShutdownHandle,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl std::ops::Deref for TestApp {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_in(tempfile::tempdir().expect("a temporary directory"), tweak).await
}

/// A server on an existing data directory (to restart on it).
pub async fn spawn_app_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    init_logs();
    let mut settings = test_settings(dir.path());
    tweak(&mut settings);
    let app = Application::build(settings).await.expect("the app builds");
    serve(app, dir)
}

/// A server over `store` (a node of a cluster whose bucket is in memory,
/// say), with a data directory of its own for the rest.
pub async fn spawn_app_over(
    store: std::sync::Arc<dyn interq::store::Store>,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    init_logs();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut settings = test_settings(dir.path());
    tweak(&mut settings);
    let app = Application::build_over(settings, store)
        .await
        .expect("the app builds");
    serve(app, dir)
}

fn serve(app: Application, dir: tempfile::TempDir) -> TestApp {
    let base = format!("http://127.0.0.1:{}", app.port());
    let line = app.line_port().map(|p| format!("interq://127.0.0.1:{p}"));
    let shutdown = app.handle();
    let running = tokio::spawn(app.run_until_stopped());
    TestApp {
        api: Api {
            base,
            client: reqwest::Client::new(),
        },
        line,
        dir,
        shutdown,
        running,
    }
}

/// An answer: status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// Asserts a 200 and returns the body.
    pub fn ok(self) -> Value {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "unexpected answer: {}",
            self.body
        );
        self.body
    }

    /// Asserts an error answer with `status` and `code`, whose message names
    /// `field` (when given); returns the message.
    pub fn error(self, status: u16, code: &str, field: Option<&str>) -> String {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected answer: {}",
            self.body
        );
        assert_eq!(
            self.body["error"]["code"], code,
            "unexpected answer: {}",
            self.body
        );
        let message = self.body["error"]["message"]
            .as_str()
            .expect("a message")
            .to_owned();
        if let Some(field) = field {
            assert!(
                message.contains(&format!("`{field}")),
                "`{field}` not named in: {message}"
            );
        }
        message
    }
}

impl Api {
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("the server answers");
        let status = resp.status();
        let text = resp.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        Answer { status, body }
    }

    pub async fn raw(&self, method: Method, path: &str, body: &'static str) -> Answer {
        let resp = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the server answers");
        let status = resp.status();
        let text = resp.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        Answer { status, body }
    }

    pub async fn put_interest(&self, queue: &str, interests: Value) -> Answer {
        self.send(
            Method::PUT,
            "/interest",
            Some(json!({"queue": queue, "interests": interests})),
        )
        .await
    }

    pub async fn publish(&self, task: Value) -> Answer {
        self.send(Method::PUT, "/task", Some(task)).await
    }

    /// Publishes `data` and returns the answer's body.
    pub async fn publish_data(&self, data: Value) -> Value {
        self.publish(json!({"publisher": "tests", "data": data}))
            .await
            .ok()
    }

    pub async fn register(&self, queues: &[&str]) -> String {
        let body = self
            .send(Method::PUT, "/worker", Some(json!({"queues": queues})))
            .await
            .ok();
        body["workerId"].as_str().expect("a workerId").to_owned()
    }

    pub async fn claim(&self, worker: &str) -> Value {
        self.send(Method::GET, &format!("/task?workerId={worker}"), None)
            .await
            .ok()
    }

    pub async fn claim_n(&self, worker: &str, count: u32) -> Vec<Value> {
        let body = self
            .send(
                Method::GET,
                &format!("/task?workerId={worker}&count={count}"),
                None,
            )
            .await
            .ok();
        body.as_array().expect("an array").clone()
    }

    pub async fn update(&self, worker: &str, task: &Value, state: &str, extra: Value) -> Answer {
        let mut body = json!({"workerId": worker, "taskId": task["taskId"], "state": state});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        self.send(Method::POST, "/task", Some(body)).await
    }

    pub async fn status(&self, query: &str) -> Value {
        self.send(Method::GET, &format!("/status?{query}"), None)
            .await
            .ok()
    }

    pub async fn queue(&self, name: &str) -> Value {
        self.status(&format!("queue={name}")).await["queue"].clone()
    }

    /// A task's log as `GET /task/log` answers it.
    pub async fn task_log(&self, id: &str) -> Value {
        self.send(Method::GET, &format!("/task/log?taskId={id}"), None)
            .await
            .ok()
    }

    /// `GET /metrics`, as text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text")
    }

    /// Moves the manual clock and applies what is due.
    pub async fn advance(&self, secs: f64) {
        self.send(
            Method::POST,
            "/_testing/clock",
            Some(json!({"advance": secs})),
        )
        .await
        .ok();
    }
}

impl TestApp {
    pub async fn stop(self) -> tempfile::TempDir {
        self.shutdown.stop().await;
        self.running
            .await
            .expect("the server task")
            .expect("a clean stop");
        self.dir
    }
}

/// How a child that refused to start ended.
#[derive(Debug)]
pub struct Exited {
    pub status: std::process::ExitStatus,
    pub stderr: String,
}

/// A server in a child process, which a test can kill.
pub struct ChildServer {
    pub child: Child,
    pub base: String,
    /// `interq://127.0.0.1:<port>` when the line protocol is on.
    pub line: Option<String>,
    /// Every line it logged so far (JSON).
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

pub fn interq_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_interq"))
}

impl ChildServer {
    /// Starts `interq serve` on a random port over `data_dir` and waits until
    /// it serves.
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with_env(data_dir, &[])
    }

    /// `start`, with extra environment variables for this child only.
    pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn(Self::command(data_dir, env, &[]))
    }

    /// `start`, with more arguments to `interq serve`.
    pub fn start_with_args(data_dir: &Path, args: &[&str]) -> Self {
        Self::spawn(Self::command(data_dir, &[], args))
    }

    /// `start`, under a limit on the size of any file it writes
    /// (`RLIMIT_FSIZE`): past it writes fail as on a full disk. SIGXFSZ is
    /// ignored, as a server under such a limit should be run.
    pub fn start_limited(data_dir: &Path, file_bytes: u64) -> Self {
        Self::start_under(data_dir, &format!("--fsize={file_bytes}:unlimited"), &[])
    }

    /// `start`, under `prlimit`'s `limits` (`--nofile=300:300`, ...), with
    /// SIGXFSZ ignored.
    pub fn start_under(data_dir: &Path, limits: &str, env: &[(&str, &str)]) -> Self {
        let plain = Self::command(data_dir, env, &[]);
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "trap '' XFSZ; exec prlimit {limits} -- \"$0\" \"$@\""
            ))
            .arg(plain.get_program())
            .args(plain.get_args());
        for (k, v) in plain.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        Self::spawn(cmd)
    }

    /// `start`, from the working directory `cwd`.
    pub fn start_in(cwd: &Path, data_dir: &Path) -> Self {
        let mut cmd = Self::command(data_dir, &[], &[]);
        cmd.current_dir(cwd);
        Self::spawn(cmd)
    }

    /// Runs `interq serve` expecting it to refuse to start; its exit status
    /// and standard error.
    pub fn run_to_exit(data_dir: &Path, args: &[&str]) -> Exited {
        Self::exited(Self::command(data_dir, &[], args))
    }

    /// `run_to_exit`, from the working directory `cwd`.
    pub fn run_to_exit_in(cwd: &Path, data_dir: &Path, args: &[&str]) -> Exited {
        let mut cmd = Self::command(data_dir, &[], args);
        cmd.current_dir(cwd);
        Self::exited(cmd)
    }

    fn exited(mut cmd: Command) -> Exited {
        let out = cmd.output().expect("run interq");
        Exited {
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn command(data_dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut cmd = Command::new(interq_binary());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("CHILD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("INTERQ_LOG__FORMAT", "json")
            .envs(
                env.iter()
                    .copied()
                    .filter(|(k, _)| matches!(*k, "INTERQ_LOG__FORMAT" | "RUST_LOG")),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().expect("start interq");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut line_port = None;
        let port = loop {
            let Some(line) = lines.next() else {
                panic!(
                    "interq exited before serving:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            };
            let line = line.expect("read stderr");
            logs.lock().unwrap().push(line.clone());
            match serde_json::from_str::<Value>(&line) {
                Ok(v) if v["fields"]["message"] == "interq is serving" => {
                    line_port = v["fields"]["line_port"].as_u64();
                    break v["fields"]["port"].as_u64().expect("a port");
                }
                Ok(_) => {}
                // The human format: `... interq is serving ... port=N ...`.
                Err(_) if line.contains("interq is serving") => {
                    let port = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("port="))
                        .expect("a port");
                    break port.parse().expect("a port number");
                }
                Err(_) => {}
            }
        };
        // Keep draining its log, so that it never blocks on a full pipe.
        let kept = std::sync::Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            line: line_port.map(|p| format!("interq://127.0.0.1:{p}")),
            logs,
        }
    }

    pub fn api(&self) -> Api {
        interq::client::install_tls_provider();
        Api {
            base: self.base.clone(),
            client: reqwest::Client::new(),
        }
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("interq did not stop within 10 s of SIGTERM");
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill_9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishers under load against `api`: each publishes until stopped (at most
/// 20,000 requests, and not past its first refused or failed request), every
/// second one in batches of 10 when `batches`. Keeps the ids of every publish
/// that was acknowledged.
pub struct Load {
    pub acknowledged: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(api: &Api, clients: u64, batches: bool) -> Self {
        use std::sync::atomic::Ordering;
        let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients = (0..clients)
            .map(|c| {
                let (api, acknowledged, stop) = (api.clone(), acknowledged.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while n < 20_000 && !stop.load(Ordering::Relaxed) {
                        let body = if batches && c % 2 == 0 {
                            Value::Array(
                                (0..10)
                                    .map(|i| json!({"data": {"c": c, "n": n * 10 + i}}))
                                    .collect(),
                            )
                        } else {
                            json!({"data": {"c": c, "n": n}})
                        };
                        let Ok(resp) = api
                            .client
                            .put(format!("{}/task", api.base))
                            .json(&body)
                            .send()
                            .await
                        else {
                            return;
                        };
                        if !resp.status().is_success() {
                            return;
                        }
                        let Ok(answer) = resp.json::<Value>().await else {
                            return;
                        };
                        let ids: Vec<String> = match answer {
                            Value::Array(items) => items
                                .iter()
                                .map(|a| a["taskId"].as_str().unwrap().to_owned())
                                .collect(),
                            one => vec![one["taskId"].as_str().unwrap().to_owned()],
                        };
                        acknowledged.lock().unwrap().extend(ids);
                        n += 1;
                    }
                })
            })
            .collect();
        Self {
            acknowledged,
            stop,
            clients,
        }
    }

    /// Waits (at most 5 s) until `n` publishes were acknowledged.
    pub async fn until(&self, n: usize) {
        for _ in 0..500 {
            if self.acknowledged.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops every publisher; the ids acknowledged.
    pub async fn stop(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in self.clients {
            c.await.unwrap();
        }
        let ids = self.acknowledged.lock().unwrap().clone();
        ids
    }
}

/// The Couchbase cluster the Couchbase tests run against, from
/// `INTERQ_COUCHBASE_CONNSTR` (and `_USER`, `_PASSWORD`, `_BUCKET`), with a
/// key prefix of its own, so that tests share a bucket without meeting.
/// Without the variable: `None`, after saying that the test is skipped.
#[cfg(feature = "couchbase")]
pub fn couchbase_settings(test: &str) -> Option<interq::store::couchbase::CouchbaseSettings> {
    let Ok(connection_string) = std::env::var("INTERQ_COUCHBASE_CONNSTR") else {
        eprintln!(
            "skipped {test}: INTERQ_COUCHBASE_CONNSTR is not set (see README, Couchbase tests)"
        );
        return None;
    };
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    Some(interq::store::couchbase::CouchbaseSettings {
        connection_string,
        username: var("INTERQ_COUCHBASE_USER", "Administrator"),
        password: var("INTERQ_COUCHBASE_PASSWORD", "password"),
        bucket: var("INTERQ_COUCHBASE_BUCKET", "default"),
        scope: "_default".into(),
        collection: "_default".into(),
        key_prefix: format!("test-{}::", uuid::Uuid::new_v4().simple()),
        timeout_ms: 10_000,
        durability: match std::env::var("INTERQ_COUCHBASE_DURABILITY").as_deref() {
            Ok("majority") => interq::store::couchbase::Durability::Majority,
            _ => interq::store::couchbase::Durability::None,
        },
        ..Default::default()
    })
}

/// A self-signed certificate for `localhost`, written as PEM files into a
/// directory of its own, and how to trust it.
pub struct TestCert {
    pub dir: tempfile::TempDir,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// The certificate, for a client to trust.
    pub pem: String,
}

impl TestCert {
    pub fn new() -> Self {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        Self {
            dir,
            cert_path,
            key_path,
            pem: cert.cert.pem(),
        }
    }

    /// Serves TLS with it.
    pub fn serve(&self, settings: &mut Settings) {
        settings.tls.cert_path = Some(self.cert_path.clone());
        settings.tls.key_path = Some(self.key_path.clone());
    }

    /// A client for `url` that trusts it.
    pub fn client(&self, url: &str) -> interq::client::Client {
        interq::client::Client::with_options(
            url,
            interq::client::ClientOptions {
                key: None,
                ca_pem: Some(self.pem.clone().into_bytes()),
            },
        )
        .unwrap()
    }
}

/// Runs the `sh` blocks of a Markdown page of the repository (`path`), in
/// order and in one shell as a reader would paste them, against a server at
/// `base` (as `$INTERQ`); asserts it has `expected` blocks and that they
/// all succeed. Returns the JSON lines each block printed.
pub async fn run_page(path: &str, base: &str, expected: usize) -> Vec<Vec<Value>> {
    let page = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .expect("the page");
    let blocks = shell_blocks(&page);
    assert_eq!(blocks.len(), expected, "the examples of {path}");
    // Each block's output is kept apart.
    let mut script = String::from("set -eu\n");
    for (i, b) in blocks.iter().enumerate() {
        script.push_str(&format!("echo '=== block {i}'\n"));
        for line in b.lines() {
            script.push_str(line);
            // curl prints no newline after a JSON answer.
            script.push_str(if line.trim_start().starts_with("curl") {
                "\necho\n"
            } else {
                "\n"
            });
        }
    }
    let base = base.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("INTERQ", base)
            .output()
            .expect("sh runs")
    })
    .await
    .expect("the page's shell");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{path} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .split("=== block ")
        .skip(1)
        .map(|b| {
            b.lines()
                .skip(1)
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
                .collect()
        })
        .collect()
}

/// The `sh` blocks of a Markdown page, in order.
fn shell_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), l) => {
                block.push_str(l);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// A worker that claims `count` copies at a time and completes them in one
/// report, over plain requests, until the server stops answering (a kill
/// ends it without a panic); `done` counts the copies it completed.
pub fn completing_worker(
    api: &Api,
    worker: &str,
    count: usize,
    done: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    let (api, worker) = (api.clone(), worker.to_owned());
    tokio::spawn(async move {
        let claim = format!("{}/task?workerId={worker}&count={count}", api.base);
        let report = format!("{}/task", api.base);
        loop {
            let Ok(answer) = api.client.get(&claim).send().await else {
                return;
            };
            let Ok(Value::Array(tasks)) = answer.json::<Value>().await else {
                return;
            };
            let reports: Vec<Value> = tasks
                .iter()
                .map(|t| json!({"workerId": worker, "taskId": t["taskId"], "state": "complete"}))
                .collect();
            match api.client.post(&report).json(&reports).send().await {
                Ok(r) if r.status() == 200 => {}
                _ => return,
            }
            done.fetch_add(reports.len(), std::sync::atomic::Ordering::SeqCst);
        }
    })
}

/// `n` servers in this process, each a node of one cluster over `bucket`
/// (in memory) with `partitions` partitions, taking part in the leases as
/// nodes in service do.
pub async fn spawn_cluster(
    bucket: &std::sync::Arc<interq::store::couchbase::MemoryBucket>,
    n: usize,
    partitions: u32,
) -> Vec<TestApp> {
    spawn_cluster_with(bucket, n, partitions, |_| {}).await
}

/// `spawn_cluster`, with each node's settings tweaked.
pub async fn spawn_cluster_with(
    bucket: &std::sync::Arc<interq::store::couchbase::MemoryBucket>,
    n: usize,
    partitions: u32,
    tweak: impl Fn(&mut Settings),
) -> Vec<TestApp> {
    use interq::store::couchbase::CouchbaseSettings;
    use interq::store::engine::{Engine, Retention};
    let settings = CouchbaseSettings {
        partitions,
        ..CouchbaseSettings::default()
    };
    let mut apps = Vec::new();
    for _ in 0..n {
        let store = Engine::join_shared(
            std::sync::Arc::clone(bucket),
            settings.clone(),
            Retention::default(),
        )
        .await
        .expect("a node over the bucket");
        apps.push(spawn_app_over(std::sync::Arc::new(store), &tweak).await);
    }
    apps
}

/// Waits until the nodes own these many partitions each (sorted), as their
/// `/status?store` says, and every node's view of the others agrees.
pub async fn until_spread(apps: &[&Api], shares: &[usize]) {
    let started = std::time::Instant::now();
    loop {
        let mut owned = Vec::new();
        let mut agreed = true;
        for api in apps {
            let cluster = &api.status("store").await["store"]["cluster"];
            owned.push(cluster["owned"].as_array().map_or(0, Vec::len));
            let seen: Vec<usize> = cluster["members"]
                .as_array()
                .map(|ms| {
                    ms.iter()
                        .map(|m| m["partitions"].as_array().map_or(0, Vec::len))
                        .collect()
                })
                .unwrap_or_default();
            let mut seen_sorted = seen.clone();
            seen_sorted.sort();
            agreed &= seen_sorted == shares;
        }
        owned.sort();
        if owned == shares && agreed {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "partitions owned {owned:?}, wanted {shares:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
