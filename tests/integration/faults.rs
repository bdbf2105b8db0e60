//! Faults the machine causes: a full disk, a damaged or empty data file.
//! Real `interq serve` child processes over real HTTP.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{Api, ChildServer};

/// A data directory on a filesystem of its own, small enough to fill: a
/// tmpfs where the tests may mount one (they run as root on CI), else a
/// per-file size limit on the server process (`RLIMIT_FSIZE`), which fails
/// writes past it the same way a full disk does.
struct SmallDisk {
    dir: tempfile::TempDir,
    how: Limit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Tmpfs,
    FileSize(u64),
}

impl SmallDisk {
    fn new(mib: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        let how = if mounted {
            Limit::Tmpfs
        } else {
            eprintln!("cannot mount a tmpfs here: the full disk is a file size limit instead");
            Limit::FileSize(mib << 20)
        };
        Self { dir, how }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts `interq serve` on the small disk, with a write-ahead log of
    /// segments small enough for it.
    fn start(&self) -> ChildServer {
        let env = [
            ("INTERQ_STORE__WAL_SEGMENT_BYTES", "1048576"),
            ("INTERQ_STORE__CHECKPOINT_BYTES", "2097152"),
        ];
        match self.how {
            Limit::Tmpfs => ChildServer::start_with_env(&self.data_dir(), &env),
            Limit::FileSize(bytes) => ChildServer::start_under(
                &self.data_dir(),
                &format!("--fsize={bytes}:unlimited"),
                &env,
            ),
        }
    }

    /// Gives the server room again.
    fn grow(&self, server: &ChildServer, mib: u64) {
        let ok = match self.how {
            Limit::Tmpfs => Command::new("mount")
                .args(["-o", &format!("remount,size={mib}m")])
                .arg(self.dir.path())
                .status(),
            Limit::FileSize(_) => Command::new("prlimit")
                .args(["--pid", &server.child.id().to_string(), "--fsize=unlimited"])
                .status(),
        };
        assert!(ok.is_ok_and(|s| s.success()), "the disk grows");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if self.how == Limit::Tmpfs {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// An answer within `limit`, or a panic: no request may hang.
async fn answered(api: &Api, req: reqwest::RequestBuilder, limit: Duration) -> (StatusCode, Value) {
    let _ = api;
    let resp = tokio::time::timeout(limit, req.send())
        .await
        .unwrap_or_else(|_| panic!("no answer within {limit:?}"))
        .expect("the server answers");
    let status = resp.status();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

fn big_task(n: u64) -> Value {
    json!({"data": {"n": n, "blob": "x".repeat(8 << 10)}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_at_once_and_the_store_recovers_when_space_returns() {
    let disk = SmallDisk::new(24);
    let server = disk.start();
    let api = server.api();
    api.put_interest("big", json!("*")).await.ok();
    let worker = api.register(&["big"]).await;

    // Four publishers and a worker until the disk is full.
    let mut acknowledged: Vec<String> = Vec::new();
    let mut completed: Vec<String> = Vec::new();
    let mut full = None;
    let mut n = 0u64;
    let started = Instant::now();
    while full.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the disk never filled"
        );
        let sends: Vec<_> = (0..4)
            .map(|_| {
                n += 1;
                let req = api
                    .client
                    .put(format!("{}/task", api.base))
                    .json(&big_task(n));
                answered(&api, req, Duration::from_secs(10))
            })
            .collect();
        for (status, body) in futures_util::future::join_all(sends).await {
            match status {
                StatusCode::OK => acknowledged.push(body["taskId"].as_str().unwrap().to_owned()),
                _ => full = Some((status, body)),
            }
        }
        if n.is_multiple_of(40) {
            let claim = api
                .client
                .get(format!("{}/task?workerId={worker}&count=5", api.base));
            let (status, claimed) = answered(&api, claim, Duration::from_secs(10)).await;
            if status != StatusCode::OK {
                continue;
            }
            for t in claimed.as_array().unwrap() {
                let done = api
                    .client
                    .post(format!("{}/task", api.base))
                    .json(&json!({"workerId": worker, "taskId": t["taskId"], "state": "complete"}));
                if answered(&api, done, Duration::from_secs(10)).await.0 == StatusCode::OK {
                    completed.push(t["publishId"].as_str().unwrap().to_owned());
                }
            }
        }
    }
    let (status, body) = full.unwrap();
    assert_eq!(status.as_u16(), 507, "{body}");
    assert_eq!(body["error"]["code"], "store_full", "{body}");
    assert!(
        acknowledged.len() > 100,
        "{} publishes fit",
        acknowledged.len()
    );
    assert!(!completed.is_empty());
    eprintln!(
        "the disk filled after {} acknowledged publishes ({} completed)",
        acknowledged.len(),
        completed.len()
    );

    // While full: every write is refused at once, reads still answer.
    for _ in 0..3 {
        let at = Instant::now();
        let req = api
            .client
            .put(format!("{}/task", api.base))
            .json(&big_task(0));
        let (status, body) = answered(&api, req, Duration::from_secs(10)).await;
        assert_eq!(status.as_u16(), 507, "{body}");
        assert!(
            at.elapsed() < Duration::from_secs(1),
            "refused in {:?}",
            at.elapsed()
        );
    }
    let claim = api
        .client
        .get(format!("{}/task?workerId={worker}", api.base));
    let (status, body) = answered(&api, claim, Duration::from_secs(10)).await;
    assert_eq!(status.as_u16(), 507, "a claim is a write too: {body}");
    let (status, _) = answered(
        &api,
        api.client.get(format!("{}/readyz", api.base)),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = answered(
        &api,
        api.client.get(format!("{}/status", api.base)),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "reads answer");

    // SIGTERM stops it even now.
    server.terminate();
    // It starts on a full disk, and refuses writes.
    let server = disk.start();
    let api = server.api();
    let req = api
        .client
        .put(format!("{}/task", api.base))
        .json(&big_task(0));
    let (status, _) = answered(&api, req, Duration::from_secs(10)).await;
    assert_eq!(status.as_u16(), 507);

    // Room again: the store reopens by itself, and readiness follows.
    disk.grow(&server, 256);
    let at = Instant::now();
    loop {
        let (status, _) = answered(
            &api,
            api.client.get(format!("{}/readyz", api.base)),
            Duration::from_secs(10),
        )
        .await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            at.elapsed() < Duration::from_secs(20),
            "not ready again after {:?}",
            at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("ready again {:?} after the disk grew", at.elapsed());
    let more = api.publish(big_task(1)).await.ok();
    acknowledged.push(more["taskId"].as_str().unwrap().to_owned());

    // Nothing acknowledged was lost; nothing refused was stored.
    let server = {
        server.terminate();
        disk.start()
    };
    let api = server.api();
    check_acknowledged(&api, &acknowledged, &completed).await;
}

/// Every acknowledged publish is there; every acknowledged completion is
/// completed (or swept from the bounded history), none waits to run again.
async fn check_acknowledged(api: &Api, acknowledged: &[String], completed: &[String]) {
    let done: std::collections::HashSet<&String> = completed.iter().collect();
    for id in acknowledged {
        let answer = api
            .send(reqwest::Method::GET, &format!("/status?task={id}"), None)
            .await;
        if done.contains(id) {
            if answer.status == StatusCode::OK {
                let state = &answer.body["task"]["copies"][0]["state"];
                assert_eq!(state, "completed", "{id} was completed: {}", answer.body);
            }
            continue;
        }
        assert_eq!(answer.status, StatusCode::OK, "acknowledged {id} is gone");
        let state = answer.body["task"]["copies"][0]["state"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            ["ready", "running"].contains(&state.as_str()),
            "{id} is {state}"
        );
    }
}

/// The data file's path under a data directory.
fn data_file(dir: &Path) -> PathBuf {
    dir.join("interq.redb")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_data_file_is_refused_unless_asked_to_start_fresh() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(data_file(dir.path()), b"").unwrap();
    let out = ChildServer::run_to_exit(dir.path(), &[]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("is empty (0 bytes)"), "{}", out.stderr);
    assert!(out.stderr.contains("--start-fresh"), "{}", out.stderr);
    // Asked to: the empty file is set aside, and an empty store starts.
    let server = ChildServer::start_with_args(dir.path(), &["--start-fresh"]);
    server.api().publish(json!({"data": {}})).await.ok();
    drop(server);
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("damaged"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
}

/// Overwrites `len` bytes at the middle of a file with garbage.
fn damage_middle(path: &Path, len: usize) {
    use std::io::{Seek, SeekFrom, Write};
    let size = std::fs::metadata(path).unwrap().len();
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(size / 2)).unwrap();
    let garbage: Vec<u8> = (0..len).map(|i| (i * 7 + 13) as u8).collect();
    f.write_all(&garbage).unwrap();
    f.sync_all().unwrap();
}

/// A store of `n` tasks with payloads large enough to fill many pages.
async fn filled_store(dir: &Path, n: usize) {
    let server = ChildServer::start(dir);
    let api = server.api();
    api.put_interest("q", json!("*")).await.ok();
    for batch in 0..n / 100 {
        let tasks: Vec<Value> = (0..100)
            .map(|i| json!({"data": {"n": batch * 100 + i, "pad": "p".repeat(500)}}))
            .collect();
        api.publish(json!(tasks)).await.ok();
    }
    assert!(server.terminate().success());
    // The last changes reach the file at close only when the process gets
    // that far before it exits; a start folds the log into the file before
    // serving, so after one the payloads are surely there.
    assert!(ChildServer::start(dir).terminate().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_data_file_is_refused_at_start_unless_asked_to_start_fresh() {
    let dir = tempfile::tempdir().unwrap();
    filled_store(dir.path(), 2000).await;
    damage_middle(&data_file(dir.path()), 16 << 10);
    let out = ChildServer::run_to_exit(dir.path(), &[]);
    assert!(!out.status.success(), "it served a damaged store");
    assert!(out.stderr.contains("--start-fresh"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    // Damage only to payloads, which start-up does not otherwise read, is
    // found by the check too.
    let other = tempfile::tempdir().unwrap();
    filled_store(other.path(), 2000).await;
    damage_payloads(&data_file(other.path()));
    let out = ChildServer::run_to_exit(other.path(), &[]);
    assert!(
        !out.status.success(),
        "it served a store with damaged payloads"
    );
    assert!(out.stderr.contains("--start-fresh"), "{}", out.stderr);
    let server = ChildServer::start_with_args(dir.path(), &["--start-fresh"]);
    let status = server.api().status("queue=q").await;
    assert_eq!(status["queue"]["ready"], 0, "an empty store");
    drop(server);
    assert!(std::fs::read_dir(dir.path()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("damaged")));
}

/// Overwrites the bytes of stored payloads (runs of `p`) in the middle of
/// the file, leaving the copies' records whole.
fn damage_payloads(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let run = vec![b'p'; 400];
    // Past the middle when there is one there; the checkpoint may leave
    // the file's second half free space, with every payload before it.
    let middle = bytes.len() / 2;
    let find = |from: usize| {
        bytes[from..]
            .windows(run.len())
            .position(|w| w == run.as_slice())
            .map(|at| from + at)
    };
    let at = find(middle).or_else(|| find(0)).expect("a stored payload");
    for b in &mut bytes[at..at + 300] {
        *b = 0xFF;
    }
    std::fs::write(path, bytes).unwrap();
}

/// A terminated server closes its file itself, not only when its last
/// handle happens to be dropped on the way out: a file left open needs
/// repair at the next start, which then reads (and checks) all of it, and
/// refused a store whose unread payloads were damaged even when told not to
/// check.
#[tokio::test(flavor = "multi_thread")]
async fn a_terminated_server_leaves_its_file_closed_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..5 {
        let server = ChildServer::start(dir.path());
        let api = server.api();
        api.put_interest("q", json!("*")).await.ok();
        let tasks: Vec<Value> = (0..100).map(|i| json!({"data": {"n": i}})).collect();
        api.publish(json!(tasks)).await.ok();
        let worker = api.register(&["q"]).await;
        api.claim(&worker).await;
        assert!(server.terminate().success());
        let repaired = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&repaired);
        let db = redb::Database::builder()
            .set_repair_callback(move |_| seen.store(true, Ordering::SeqCst))
            .open(data_file(dir.path()))
            .expect("the file opens");
        drop(db);
        assert!(
            !repaired.load(Ordering::SeqCst),
            "round {round}: the file was left open and needed repair"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_that_meets_damage_hands_out_nothing_it_cannot_deliver() {
    let dir = tempfile::tempdir().unwrap();
    filled_store(dir.path(), 2000).await;
    damage_payloads(&data_file(dir.path()));
    // Told not to check: the damage is met by claims.
    let mut server =
        ChildServer::start_with_env(dir.path(), &[("INTERQ_STORE__CHECK_ON_OPEN", "false")]);
    let api = server.api();
    let worker = api.register(&["q"]).await;
    let mut delivered = 0;
    let mut refused = 0;
    for _ in 0..40 {
        let answer = api
            .send(
                reqwest::Method::GET,
                &format!("/task?workerId={worker}&count=100"),
                None,
            )
            .await;
        match answer.status.as_u16() {
            200 => {
                for t in answer.body.as_array().unwrap() {
                    assert!(t["data"]["pad"].is_string(), "{t}");
                    delivered += 1;
                }
            }
            500 | 503 => refused += 1,
            other => panic!("{other}: {}", answer.body),
        }
    }
    // Nothing is left running that its worker never received.
    let counts = api.status("queue=q").await["queue"].clone();
    assert_eq!(counts["running"], delivered, "{counts}");
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the process is alive"
    );
    eprintln!("delivered {delivered}, refused {refused} claims, {counts}");
    let logs = server.logs.lock().unwrap().join("\n");
    assert!(!logs.contains("panicked at"), "a request panicked:\n{logs}");
}
