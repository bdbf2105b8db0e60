//! Several interq nodes over one Couchbase bucket: real `interq serve`
//! processes, real HTTP. Runs when `INTERQ_COUCHBASE_CONNSTR` names a
//! cluster (README, Couchbase); otherwise each test says it is skipped.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::helpers::{couchbase_settings, Api, ChildServer, Load};

/// `n` nodes on the bucket, sharing one key prefix (their own cluster).
fn start_nodes(test: &str, n: usize) -> Option<(Vec<ChildServer>, Vec<tempfile::TempDir>)> {
    start_nodes_with(test, n, &[])
}

/// `start_nodes`, with more environment for every node.
fn start_nodes_with(
    test: &str,
    n: usize,
    extra: &[(&str, &str)],
) -> Option<(Vec<ChildServer>, Vec<tempfile::TempDir>)> {
    let settings = couchbase_settings(test)?;
    let timeout = settings.timeout_ms.to_string();
    let durability = serde_json::to_value(settings.durability).unwrap();
    let durability = durability.as_str().unwrap_or("none").to_owned();
    let env: Vec<(&str, &str)> = vec![
        ("INTERQ_STORE__KIND", "couchbase"),
        (
            "INTERQ_STORE__COUCHBASE__CONNECTION_STRING",
            &settings.connection_string,
        ),
        ("INTERQ_STORE__COUCHBASE__USERNAME", &settings.username),
        ("INTERQ_STORE__COUCHBASE__PASSWORD", &settings.password),
        ("INTERQ_STORE__COUCHBASE__BUCKET", &settings.bucket),
        ("INTERQ_STORE__COUCHBASE__KEY_PREFIX", &settings.key_prefix),
        ("INTERQ_STORE__COUCHBASE__TIMEOUT_MS", &timeout),
        ("INTERQ_STORE__COUCHBASE__DURABILITY", &durability),
    ];
    let env: Vec<(&str, &str)> = env.into_iter().chain(extra.iter().copied()).collect();
    let dirs: Vec<tempfile::TempDir> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = dirs
        .iter()
        .map(|d| ChildServer::start_with_env(d.path(), &env))
        .collect();
    Some((nodes, dirs))
}

/// Waits until every node but the first lists `queue`'s interests.
async fn known_everywhere(apis: &[Api], queue: &str) {
    within(Duration::from_secs(2), || async {
        let mut everywhere = true;
        for api in &apis[1..] {
            everywhere &= api.status("interests").await.to_string().contains(queue);
        }
        everywhere
    })
    .await;
}

/// Waits until `check` holds, at most `limit`; returns how long it took.
async fn within<F, Fut>(limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Claims and completes until `total` tasks were done across `apis`, from
/// one worker per node; returns how often each task's `n` was completed.
async fn drain(apis: &[Api], queue: &str, total: usize) -> BTreeMap<u64, u32> {
    let done = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let workers: Vec<_> = apis
        .iter()
        .cloned()
        .map(|api| {
            let done = std::sync::Arc::clone(&done);
            let queue = queue.to_owned();
            tokio::spawn(async move {
                let worker = api.register(&[&queue]).await;
                let started = Instant::now();
                while done.lock().unwrap().values().sum::<u32>() < total as u32 {
                    assert!(
                        started.elapsed() < Duration::from_secs(120),
                        "drain stalled"
                    );
                    let claimed = api
                        .send(
                            Method::GET,
                            &format!("/task?workerId={worker}&count=10&wait=1"),
                            None,
                        )
                        .await
                        .ok();
                    for task in claimed.as_array().unwrap() {
                        api.update(&worker, task, "complete", json!({})).await.ok();
                        // Probes (n = -1) count under u64::MAX.
                        let n = task["data"]["n"].as_u64().unwrap_or(u64::MAX);
                        *done.lock().unwrap().entry(n).or_insert(0) += 1;
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let counts = done.lock().unwrap().clone();
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_interests_and_complete_every_task_once() {
    // Time moves only when the test moves it, on every node: publishing
    // one at a time through a debug build on a loaded machine takes longer
    // than any fixed window.
    let Some((nodes, _dirs)) = start_nodes_with(
        "the three-node test",
        3,
        &[("INTERQ_TESTING__MANUAL_CLOCK", "true")],
    ) else {
        return;
    };
    let apis: Vec<Api> = nodes.iter().map(ChildServer::api).collect();
    apis[0]
        .put_interest("jobs", json!({"kind": "^job$"}))
        .await
        .ok();
    // The interest set on node 0 routes on the other nodes within 2 s.
    let took = within(Duration::from_secs(2), || async {
        let mut everywhere = true;
        for api in &apis[1..] {
            let p = api
                .publish(json!({"data": {"kind": "job", "n": -1}}))
                .await
                .ok();
            everywhere &= p["queues"] == json!(["jobs"]);
        }
        everywhere
    })
    .await;
    eprintln!("an interest set on node 0 routed on every node after {took:?}");
    // The probes that did route are part of the work.
    let probes = apis[0].queue("jobs").await["ready"].as_u64().unwrap() as usize;
    let total = 300;
    // A third of them scheduled a minute ahead: whichever node sees them
    // due makes them ready, once.
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 60.0;
    for n in 0..total {
        let api = &apis[n % 3];
        let mut task = json!({"data": {"kind": "job", "n": n}});
        if n % 3 == 1 {
            task["runAt"] = json!(soon);
        }
        let p = api.publish(task).await.ok();
        if p["queues"] != json!(["jobs"]) {
            let known = api.status("interests").await;
            let logs = nodes[n % 3].logs.lock().unwrap().join("\n");
            let notable: Vec<&str> = logs
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("interests"))
                .collect();
            panic!(
                "node {} did not route task {n}: {p}; it knows {known}; its notable logs:\n{}",
                n % 3,
                notable.join("\n")
            );
        }
    }
    let waiting = apis[2].queue("jobs").await;
    assert_eq!(
        waiting["scheduled"].as_u64().unwrap(),
        total as u64 / 3,
        "{waiting}"
    );
    for api in &apis {
        api.advance(61.0).await;
    }
    let counts = drain(&apis, "jobs", total + probes).await;
    let probes_done = counts.get(&u64::MAX).copied().unwrap_or(0) as usize;
    assert_eq!(probes_done, probes, "each probe once");
    assert_eq!(
        counts.len() - usize::from(probes > 0),
        total,
        "every task was completed"
    );
    assert!(
        counts.iter().all(|(&n, &c)| n == u64::MAX || c == 1),
        "each exactly once: {counts:?}"
    );
    for api in &apis {
        let status = api.status("").await;
        assert_eq!(
            status["counters"]["completed"],
            (total + probes) as u64,
            "every node counts all"
        );
        assert_eq!(api.queue("jobs").await["ready"], 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_load_loses_no_acknowledged_task() {
    let Some((mut nodes, _dirs)) = start_nodes("the kill -9 test", 3) else {
        return;
    };
    let apis: Vec<Api> = nodes.iter().map(ChildServer::api).collect();
    apis[0].put_interest("all", json!("*")).await.ok();
    known_everywhere(&apis, "all").await;
    // A worker of node 1 holds a lease when node 1 dies.
    let w = apis[1].register(&["all"]).await;
    apis[1]
        .publish(json!({"data": {"held": true}, "key": "held", "ttr": 1}))
        .await
        .ok();
    let held = apis[1].claim(&w).await;
    assert_eq!(held["key"], "held");
    let loads: Vec<Load> = apis.iter().map(|api| Load::start(api, 2, false)).collect();
    loads[1].until(40).await;
    nodes.remove(1).kill_9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut acknowledged = HashSet::new();
    for load in loads {
        acknowledged.extend(load.stop().await);
    }
    eprintln!(
        "{} publishes acknowledged around the kill",
        acknowledged.len()
    );
    let survivors = [apis[0].clone(), apis[2].clone()];
    // Its lease ran out on a node that is gone; another node takes it back.
    let took = within(Duration::from_secs(10), || async {
        let found = survivors[0].status("key=held").await;
        found["key"][0]["state"] == "ready"
    })
    .await;
    eprintln!("the dead node's lease was found ready again after {took:?} of looking");
    // Every acknowledged publish is there, on both surviving nodes.
    for api in &survivors {
        for id in &acknowledged {
            let found = api
                .send(Method::GET, &format!("/status?task={id}"), None)
                .await;
            assert_eq!(found.status, 200, "publish {id} lost: {}", found.body);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_singular_run_lock_holds_across_nodes() {
    let Some((nodes, _dirs)) = start_nodes("the run-lock test", 2) else {
        return;
    };
    let apis: Vec<Api> = nodes.iter().map(ChildServer::api).collect();
    apis[0].put_interest("deploy", json!("*")).await.ok();
    known_everywhere(&apis, "deploy").await;
    // An enqueue lock taken on node 0 folds a twin published on node 1.
    let first = apis[0]
        .publish(json!({"data": {"app": "db"}, "singularlyEnqueue": true}))
        .await
        .ok();
    let twin = apis[1]
        .publish(json!({"data": {"app": "db"}, "singularlyEnqueue": true}))
        .await
        .ok();
    assert_eq!(twin["copies"][0]["existing"], true, "{twin}");
    assert_eq!(twin["copies"][0]["taskId"], first["copies"][0]["taskId"]);
    let w = apis[1].register(&["deploy"]).await;
    let only = apis[1].claim(&w).await;
    assert_eq!(only["taskId"], first["copies"][0]["taskId"]);
    apis[1].update(&w, &only, "complete", json!({})).await.ok();
    for _ in 0..2 {
        apis[0]
            .publish(json!({"data": {"app": "web"}, "singularlyRun": true}))
            .await
            .ok();
    }
    let w0 = apis[0].register(&["deploy"]).await;
    let w1 = apis[1].register(&["deploy"]).await;
    let first = apis[0].claim(&w0).await;
    assert!(first["taskId"].is_string());
    // Node 1 knows the twin runs on node 0: nothing for its worker.
    let nothing = apis[1]
        .send(Method::GET, &format!("/task?workerId={w1}&wait=1"), None)
        .await
        .ok();
    assert!(nothing.is_null(), "the twin must wait: {nothing}");
    apis[0]
        .update(&w0, &first, "complete", json!({}))
        .await
        .ok();
    let second = apis[1]
        .send(Method::GET, &format!("/task?workerId={w1}&wait=3"), None)
        .await
        .ok();
    assert!(
        second["taskId"].is_string(),
        "the twin runs once the first is done"
    );
    assert_ne!(second["taskId"], first["taskId"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_limits_hold_across_nodes() {
    let Some((nodes, _dirs)) = start_nodes("the group-limit test", 2) else {
        return;
    };
    let apis: Vec<Api> = nodes.iter().map(ChildServer::api).collect();
    apis[0].put_interest("tenants", json!("*")).await.ok();
    known_everywhere(&apis, "tenants").await;
    apis[0]
        .send(
            Method::PUT,
            "/queue",
            Some(json!({"queue": "tenants", "groupMaxRunning": 1, "groups": {"slow": {"rateLimit": 0.5}}})),
        )
        .await
        .ok();
    let batch: Vec<serde_json::Value> = (0..4)
        .flat_map(|i| {
            [
                json!({"data": {"i": i}, "group": "acme"}),
                json!({"data": {"i": i}, "group": "slow"}),
            ]
        })
        .collect();
    apis[1].publish(serde_json::Value::Array(batch)).await.ok();
    let w0 = apis[0].register(&["tenants"]).await;
    let w1 = apis[1].register(&["tenants"]).await;
    let first = apis[0].claim_n(&w0, 10).await;
    assert_eq!(first.len(), 2, "one of each group: {first:?}");
    // Node 1 sees both groups at their limits: one running, and slow's one
    // claim in two seconds made.
    let nothing = apis[1]
        .send(
            Method::GET,
            &format!("/task?workerId={w1}&count=10&wait=1"),
            None,
        )
        .await
        .ok();
    assert_eq!(nothing, json!([]), "held on the other node too");
    for t in &first {
        apis[0].update(&w0, t, "complete", json!({})).await.ok();
    }
    let next = apis[1]
        .send(
            Method::GET,
            &format!("/task?workerId={w1}&count=10&wait=3"),
            None,
        )
        .await
        .ok();
    let groups: Vec<&str> = next
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["group"].as_str().unwrap())
        .collect();
    assert_eq!(
        groups,
        ["acme"],
        "slow waits out its rate on node 1 as well"
    );
}

#[tokio::test]
async fn a_wrong_bucket_or_password_fails_within_the_timeout() {
    use interq::store::couchbase::CouchbaseStore;
    use interq::store::engine::Retention;
    let Some(mut settings) = couchbase_settings("the Couchbase timeout test") else {
        return;
    };
    settings.timeout_ms = 2_000;
    type Change = fn(&mut interq::store::couchbase::CouchbaseSettings);
    let unknown_bucket: Change = |s| s.bucket = "no-such-bucket".into();
    let wrong_password: Change = |s| s.password = "not-the-password".into();
    for (what, change) in [
        ("an unknown bucket", unknown_bucket),
        ("a wrong password", wrong_password),
    ] {
        let mut wrong = settings.clone();
        change(&mut wrong);
        let started = Instant::now();
        let opened = CouchbaseStore::open_couchbase(wrong, Retention::default()).await;
        let took = started.elapsed();
        let err = opened.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("couchbase"), "{what}: {err}");
        assert!(took < Duration::from_secs(8), "{what} took {took:?}");
        eprintln!("{what}: refused after {took:?}: {err}");
    }
}

#[tokio::test]
async fn a_lock_left_by_a_dead_node_is_taken_over_after_its_lease() {
    use couchbase::authenticator::PasswordAuthenticator;
    use couchbase::cluster::Cluster;
    use couchbase::options::cluster_options::ClusterOptions;
    use interq::store::couchbase::CouchbaseStore;
    use interq::store::engine::Retention;
    use interq::store::Store;
    let Some(settings) = couchbase_settings("the Couchbase lock test") else {
        return;
    };
    let store = CouchbaseStore::open_couchbase(settings.clone(), Retention::default())
        .await
        .expect("open");
    // A node that died left the lock behind, which the bucket expires 2 s
    // from now.
    let cluster = Cluster::connect(
        &settings.connection_string,
        ClusterOptions::new(
            PasswordAuthenticator::new(&settings.username, &settings.password).into(),
        ),
    )
    .await
    .expect("connect");
    let collection = cluster.bucket(&settings.bucket).default_collection();
    // The first call opens the bucket, which takes a while.
    let _ = collection.get("warm-up", None).await;
    let ghost = json!({"node": "ghost"});
    let expiring =
        couchbase::options::kv_options::UpsertOptions::new().expiry(Duration::from_secs(2));
    collection
        .upsert(format!("{}lock", settings.key_prefix), ghost, expiring)
        .await
        .expect("plant the lock");
    let started = Instant::now();
    store
        .enqueue(
            Vec::new(),
            interq::model::Counters {
                published: 1,
                ..Default::default()
            },
        )
        .await
        .expect("a change after the lease");
    let waited = started.elapsed();
    // The bucket's expiry is to the second.
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "waited {waited:?} for a lock expiring in 2 s"
    );
    assert_eq!(store.counters().await.unwrap().published, 1);
    eprintln!("a dead node's lock was taken over after {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_appended_on_one_node_is_followed_on_another() {
    let Some((nodes, _dirs)) = start_nodes_with(
        "the cross-node log test",
        2,
        &[("INTERQ_TASKS__LOG_EVERY_MS", "0")],
    ) else {
        return;
    };
    let apis: Vec<Api> = nodes.iter().map(ChildServer::api).collect();
    apis[0].put_interest("build", json!("*")).await.ok();
    known_everywhere(&apis, "build").await;
    apis[0].publish(json!({"data": {"n": 1}})).await.ok();
    let w = apis[0].register(&["build"]).await;
    let task = apis[0].claim(&w).await;
    let id = task["taskId"].as_str().unwrap().to_owned();
    let append = |text: &str| {
        apis[0].send(
            Method::POST,
            "/task/log",
            Some(json!({"workerId": w, "taskId": id, "text": text})),
        )
    };
    append("from node 0\n").await.ok();
    // Node 1 follows what node 0 takes: its poll finds it.
    let mut resp = apis[1]
        .client
        .get(format!("{}/task/log?taskId={id}&follow=true", apis[1].base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let reading = tokio::spawn(async move {
        let mut got = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            got.push_str(&String::from_utf8_lossy(&chunk));
            if got.contains("event: end") {
                break;
            }
        }
        got
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    append("still node 0\n").await.ok();
    tokio::time::sleep(Duration::from_millis(700)).await;
    apis[0].update(&w, &task, "complete", json!({})).await.ok();
    let got = tokio::time::timeout(Duration::from_secs(15), reading)
        .await
        .expect("node 1's stream ends once the task does")
        .unwrap();
    assert!(got.contains(r#""text":"from node 0\n""#), "{got}");
    assert!(got.contains(r#""text":"still node 0\n""#), "{got}");
    assert!(got.contains(r#"{"state":"completed","total":25}"#), "{got}");
    let read = apis[1]
        .send(Method::GET, &format!("/task/log?taskId={id}"), None)
        .await
        .ok();
    assert_eq!(read["text"], "from node 0\nstill node 0\n");
}
