//! The Rust client against the real server, over the whole API.

use std::time::Duration;

use interq::client::{Client, ClientError, Publish};
use interq::model::TaskState;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_client_covers_the_task_lifecycle() {
    let app = spawn_app().await;
    let interq = Client::new(&app.base).unwrap();
    assert_eq!(
        interq
            .set_interests("q", json!({"kind": "^a"}))
            .await
            .unwrap(),
        json!({"kind": "^a"})
    );
    let one = interq
        .publish(
            &Publish::new(json!({"kind": "a1"}))
                .publisher("t")
                .priority(5)
                .ttr(60),
        )
        .await
        .unwrap();
    assert_eq!(one.queues.len(), 1);
    let batch = interq
        .publish_batch(&[
            Publish::new(json!({"kind": "a2"})),
            Publish::new(json!({"kind": "b"})),
            Publish::new(json!({"kind": "a3"})).max_attempts(1),
        ])
        .await
        .unwrap();
    assert_eq!(
        batch.iter().map(|p| p.copies.len()).collect::<Vec<_>>(),
        [1, 0, 1]
    );
    let worker = interq.register(&["q"]).await.unwrap();

    let first = interq.claim(worker, None).await.unwrap().expect("a task");
    assert_eq!(
        (first.data["kind"].as_str(), first.priority.0, first.ttr),
        (Some("a1"), 5, 60)
    );
    let beat = interq
        .progress(worker, first.task_id, Some(json!(50)))
        .await
        .unwrap();
    assert_eq!(beat.progress, Some(json!(50)));
    let done = interq
        .complete(worker, first.task_id, Some(json!({"ok": true})))
        .await
        .unwrap();
    assert_eq!(
        (done.state, done.output),
        (TaskState::Completed, Some(json!({"ok": true})))
    );

    let rest = interq
        .claim_many(worker, 10, Some(Duration::from_millis(10)))
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    let failed = interq.fail(worker, rest[1].task_id, "nope").await.unwrap();
    assert_eq!(failed.state, TaskState::Failed);
    let results = interq
        .complete_many(worker, &[rest[0].task_id, rest[1].task_id])
        .await
        .unwrap();
    assert!(results[0].is_ok());
    assert_eq!(
        results[1].as_ref().unwrap_err().code(),
        Some("task_not_running")
    );

    let counts = interq.queue("q").await.unwrap();
    assert_eq!((counts.ready, counts.failed), (0, 1));
    let lineage = interq.task(one.task_id).await.unwrap();
    assert_eq!(lineage["copies"][0]["state"], "completed");
    assert_eq!(
        interq.status(&[("counters", "")]).await.unwrap()["counters"]["discarded"],
        1
    );
    interq.deregister(worker).await.unwrap();
    assert_eq!(interq.delete_queue("q").await.unwrap(), 1);
}

#[tokio::test]
async fn the_client_reports_api_errors_with_their_code() {
    let app = spawn_app().await;
    let interq = Client::new(&app.base).unwrap();
    let err = interq
        .set_interests("q", json!({"f": "("}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("invalid_interest"));
    assert!(matches!(err, ClientError::Api { status: 400, .. }));
    let ghost = interq::model::WorkerId::new();
    assert_eq!(
        interq.claim(ghost, None).await.unwrap_err().code(),
        Some("unknown_worker")
    );
    assert!(matches!(
        Client::new("localhost:7700"),
        Err(ClientError::BadUrl(_))
    ));
    let nobody = Client::new("http://127.0.0.1:9").unwrap();
    assert!(matches!(
        nobody.register(&["q"]).await,
        Err(ClientError::Transport(_))
    ));
}
