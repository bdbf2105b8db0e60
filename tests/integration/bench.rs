//! `interq bench` as a real child process.

use std::process::Command;

use serde_json::Value;

use crate::helpers::{interq_binary, spawn_app_with, ChildServer};

fn bench(args: &[&str]) -> Value {
    let out = Command::new(interq_binary())
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON report")
}

#[test]
fn bench_publishes_claims_and_reports_every_task() {
    let r = bench(&[
        "-N",
        "300",
        "-P",
        "4",
        "-W",
        "2",
        "-Q",
        "4",
        "-F",
        "2",
        "--publish-batch",
        "7",
        "--claim-batch",
        "5",
    ]);
    assert_eq!(r["errors"], 0);
    assert!(r["publishTasksPerSec"].as_f64().unwrap() > 0.0);
    // Four publishers of 75 tasks each, in batches of 7: 11 requests each.
    assert_eq!(
        r["publishLatency"]["count"],
        4 * 11,
        "one sample per request"
    );
    // Every routed copy was claimed once and completed: 300 tasks x fan-out 2.
    assert_eq!(r["publishToClaim"]["count"], 600);
    assert!(r["endToEndCopiesPerSec"].as_f64().unwrap() > 0.0);
    assert!(r["commits"].as_u64().unwrap() > 0);
    assert!(
        r["serverCpuSecs"].is_null(),
        "a server in the bench's own process has no CPU of its own"
    );
    assert!(r["clientCpuSecs"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_reports_the_cpu_of_a_server_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(dir.path());
    let r = bench(&[
        "--url",
        &server.base,
        "-N",
        "400",
        "-W",
        "2",
        "-Q",
        "2",
        "-F",
        "2",
    ]);
    assert_eq!(r["errors"], 0);
    let cpu = r["serverCpuSecs"].as_f64().expect("the server's CPU");
    assert!(cpu > 0.0, "{r}");
    let per_task = r["serverCpuUsPerTask"].as_f64().unwrap();
    let per_copy = r["serverCpuUsPerCopy"].as_f64().unwrap();
    assert!((per_task - cpu * 1e6 / 400.0).abs() < 1e-6 * per_task.max(1.0));
    // Every task reached two queues: a copy costs half a task.
    assert!((per_copy * 2.0 - per_task).abs() < 1e-6 * per_task.max(1.0));
    assert!(r["serverRssMib"].as_f64().unwrap() > 1.0);
    assert!(r["clientCpuSecs"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_drives_a_running_interq_and_leaves_its_tasks_there() {
    let app = spawn_app_with(|s| s.testing.manual_clock = false).await;
    let url = app.base.clone();
    let r = tokio::task::spawn_blocking(move || {
        bench(&["--url", &url, "-N", "50", "-W", "0", "--probe-disk"])
    })
    .await
    .unwrap();
    assert_eq!(r["errors"], 0);
    assert!(
        r["disk"].is_null(),
        "the disk of a remote interq is not probed"
    );
    assert_eq!(app.queue("bench-0").await["ready"], 50);
}

#[test]
fn bench_refuses_impossible_shapes() {
    let out = Command::new(interq_binary())
        .args(["bench", "-Q", "1", "-F", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--queues must be at least --fanout"));
}

#[test]
fn bench_speaks_the_line_protocol_in_process_and_to_a_server() {
    let r = bench(&["--protocol", "line", "-N", "300", "-P", "16", "-W", "2"]);
    assert_eq!(r["errors"], 0);
    assert!(r["url"].as_str().unwrap().starts_with("interq://"), "{r}");
    assert_eq!(r["publishToClaim"]["count"], 300);

    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start_with_env(dir.path(), &[("INTERQ_LINE__LISTEN", "127.0.0.1:0")]);
    let line = server.line.clone().unwrap();
    let r = bench(&[
        "--url",
        &line,
        "--metrics-url",
        &server.base,
        "-N",
        "200",
        "-W",
        "1",
    ]);
    assert_eq!(r["errors"], 0);
    assert!(r["serverCpuSecs"].as_f64().unwrap() > 0.0, "{r}");
    // Without an HTTP URL for its metrics, the server's CPU is not known.
    let r = bench(&["--url", &line, "-N", "50", "-W", "0"]);
    assert!(r["serverCpuSecs"].is_null(), "{r}");
    // A client that used no CPU tick before the run still reports its own.
    assert!(r["clientCpuSecs"].is_number(), "{r}");
    // The protocol and the URL must agree.
    let out = Command::new(interq_binary())
        .args(["bench", "--protocol", "line", "--url", &server.base])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("interq://"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_workers_may_write_a_log_for_each_task() {
    let app = spawn_app_with(|s| s.testing.manual_clock = false).await;
    let url = app.base.clone();
    let r = tokio::task::spawn_blocking(move || {
        bench(&["--url", &url, "-N", "40", "-W", "2", "--log-bytes", "500"])
    })
    .await
    .unwrap();
    assert_eq!(r["errors"], 0);
    assert_eq!(r["logBytes"], 500);
    let done = app
        .send(
            reqwest::Method::GET,
            "/tasks?state=completed&queue=bench-0&limit=5",
            None,
        )
        .await
        .ok();
    let done = done.as_array().unwrap();
    assert!(!done.is_empty());
    for t in done {
        let id = t["taskId"].as_str().unwrap();
        let log = app.task_log(id).await;
        assert_eq!(log["total"], 500, "{log}");
        assert!(log["text"]
            .as_str()
            .unwrap()
            .starts_with("building step 42: ok\n"));
    }
}

#[test]
fn bench_measures_quiet_groups_alone_and_behind_a_backlog() {
    let r = bench(&[
        "--scenario",
        "noisy-neighbour",
        "-W",
        "2",
        "--backlog",
        "3000",
        "--quiet-groups",
        "4",
        "--seconds",
        "1",
    ]);
    // Four groups at one task a second for a second, in each phase: every
    // quiet copy was claimed, none of the noisy group's in the first.
    for phase in ["alone", "withBacklog"] {
        assert_eq!(r[phase]["quietClaimed"], 4, "{phase}: {r}");
        assert!(r[phase]["quiet"]["p99Ms"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(r["alone"]["noisyClaimed"], 0);
    let noisy = r["withBacklog"]["noisyClaimed"].as_u64().unwrap();
    // A claim cut short by the end of the run is neither counted nor ready.
    let left = r["backlogLeft"].as_u64().unwrap();
    assert!(
        noisy > 0 && noisy + left <= 3000 && noisy + left >= 3000 - 2,
        "{r}"
    );
    assert!(r["p99Ratio"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_drains_one_batch_and_claims_its_callback() {
    let r = bench(&[
        "--scenario",
        "batch",
        "-N",
        "2500",
        "-W",
        "2",
        "--claim-batch",
        "100",
    ]);
    assert_eq!(r["tasks"], 2500);
    assert_eq!(r["completed"], 2500, "{r}");
    assert_eq!(r["ended"], true);
    assert!(r["drainPerSec"].as_f64().unwrap() > 0.0);
    assert!(r["callbackAfterLastReportMs"].as_f64().unwrap() >= 0.0);
}
