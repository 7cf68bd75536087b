//! The sweeper handler fed the `events/` samples, against DynamoDB Local.

use std::sync::Arc;

use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use session_store::{DynamoStore, NewSession};
use session_testkit::{self as testkit, Faults, ManualClock, repo_root};
use sweeper::{Sweeper, handle};

fn event(name: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join(format!("events/{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn invocation(payload: Value) -> LambdaEvent<Value> {
    let mut context = Context::default();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    context.deadline = now_ms + 60_000;
    LambdaEvent::new(payload, context)
}

#[tokio::test]
async fn the_sample_events_dry_run_limit_and_sweep() {
    let (store, _) = testkit::store(|_| {}).await;
    let clock = Arc::new(ManualClock::new());
    let t0 = session_store::Clock::now(clock.as_ref());
    for _ in 0..3 {
        let short = NewSession {
            idle_timeout_seconds: Some(60),
            ..Default::default()
        };
        store.create(short, None, t0).await.unwrap();
    }
    store.create(NewSession::default(), None, t0).await.unwrap();
    clock.advance(61);
    let sweeper = Sweeper {
        clock,
        ..Sweeper::new(store)
    };

    let dry = handle(&sweeper, invocation(event("sweeper-dry-run"))).await.unwrap();
    assert_eq!((dry.dry_run, dry.deleted, dry.examined), (true, 3, 3), "{dry:?}");
    let limited = handle(&sweeper, invocation(serde_json::json!({"limit": 1})))
        .await
        .unwrap();
    assert_eq!((limited.deleted, limited.complete), (1, false), "{limited:?}");
    assert!(
        handle(&sweeper, invocation(event("sweeper-limit")))
            .await
            .unwrap()
            .complete
    );
    let scheduled = handle(&sweeper, invocation(event("sweeper-scheduled"))).await.unwrap();
    assert_eq!(
        (scheduled.deleted, scheduled.examined, scheduled.complete),
        (0, 0, true),
        "{scheduled:?}"
    );
    let summary = serde_json::to_value(&scheduled).unwrap();
    for field in [
        "examined",
        "deleted",
        "skipped_live",
        "buckets",
        "duration_ms",
        "consumed_read_units",
        "consumed_write_units",
    ] {
        assert!(summary.get(field).is_some(), "summary lacks {field}: {summary}");
    }
}

#[tokio::test]
async fn a_malformed_payload_fails_the_invocation() {
    let (store, _) = testkit::store(|_| {}).await;
    let sweeper = Sweeper::new(store);
    assert!(
        handle(&sweeper, invocation(serde_json::json!({"limit": "ten"})))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_permanent_failure_fails_the_invocation_and_throttling_does_not() {
    let (plain, _) = testkit::store(|_| {}).await;
    let clock = Arc::new(ManualClock::new());
    let t0 = session_store::Clock::now(clock.as_ref());
    let short = NewSession {
        idle_timeout_seconds: Some(60),
        ..Default::default()
    };
    plain.create(short, None, t0).await.unwrap();
    clock.advance(61);
    let faults = Faults::default();
    let sweeper = Sweeper {
        clock: clock.clone(),
        ..Sweeper::new(DynamoStore::new(
            testkit::faulty_client(&faults),
            plain.config().clone(),
        ))
    };
    // Throttling outlasting the backoff: the run stops early and says so; the next one finishes.
    faults.throttle("DeleteItem", "", u32::MAX);
    let throttled = handle(&sweeper, invocation(event("sweeper-scheduled"))).await.unwrap();
    assert_eq!((throttled.deleted, throttled.complete), (0, false), "{throttled:?}");
    // A denied delete: the invocation fails, so the sweeper's errors alarm fires.
    faults.clear();
    faults.fail("DeleteItem", "", u32::MAX, 400, "AccessDeniedException");
    assert!(handle(&sweeper, invocation(event("sweeper-scheduled"))).await.is_err());
    faults.clear();
    let swept = handle(&sweeper, invocation(event("sweeper-scheduled"))).await.unwrap();
    assert_eq!((swept.deleted, swept.complete), (1, true), "{swept:?}");

    // A wrong SESSIONS_TABLE: the same.
    let mut config = plain.config().clone();
    config.table_name = format!("{}-missing", config.table_name);
    let nowhere = Sweeper {
        clock,
        ..Sweeper::new(DynamoStore::new(plain.client().clone(), config))
    };
    assert!(handle(&nowhere, invocation(event("sweeper-scheduled"))).await.is_err());
}

#[tokio::test]
async fn each_run_writes_its_counts_duration_and_completeness_as_one_emf_document() {
    use lambda_support::metrics::Metrics;
    use session_testkit::emf::{self, Captured};
    let (plain, _) = testkit::store(|_| {}).await;
    let clock = Arc::new(ManualClock::new());
    let t0 = session_store::Clock::now(clock.as_ref());
    for idle in [60, 60, 60, 3600] {
        let session = NewSession {
            idle_timeout_seconds: Some(idle),
            ..Default::default()
        };
        plain.create(session, None, t0).await.unwrap();
    }
    clock.advance(61);
    let faults = Faults::default();
    let metrics = Metrics::new("SessionService/test", "sweeper");
    let counted = testkit::faulty_client_counted(&faults, &metrics);
    let captured = Captured::default();
    let sweeper = Sweeper {
        clock,
        metrics: metrics.with_sink(captured.sink()),
        ..Sweeper::new(DynamoStore::new(counted, plain.config().clone()))
    };
    let by_function = [("Function", "sweeper")];
    let single = |documents: Vec<Value>| {
        assert_eq!(documents.len(), 1, "one document a run: {documents:?}");
        documents.into_iter().next().unwrap()
    };

    // A dry run changes nothing and publishes no sweep counts.
    handle(&sweeper, invocation(event("sweeper-dry-run"))).await.unwrap();
    let dry = single(captured.take());
    assert_eq!(emf::value(&dry, "SweepDeleted", &by_function), None, "{dry}");
    assert_eq!(emf::value(&dry, "DynamoDbRetries", &by_function), Some(0.0), "{dry}");

    // Deletes throttled past the run's patience: an incomplete run, its throttles counted.
    faults.throttle("DeleteItem", "", u32::MAX);
    let throttled = handle(&sweeper, invocation(event("sweeper-scheduled"))).await.unwrap();
    let document = single(captured.take());
    assert_eq!(
        emf::value(&document, "SweepComplete", &by_function),
        Some(0.0),
        "{document}"
    );
    assert_eq!(emf::value(&document, "SweepDeleted", &by_function), Some(0.0));
    let throttles = emf::value(&document, "DynamoDbThrottles", &by_function).unwrap();
    assert_eq!(throttles, f64::from(faults.throttled()), "{document}");
    assert!(!throttled.complete);

    // The next run finishes: three examined and deleted, complete, with its duration.
    faults.clear();
    let swept = handle(&sweeper, invocation(event("sweeper-scheduled"))).await.unwrap();
    let document = single(captured.take());
    assert_eq!(
        emf::value(&document, "SweepExamined", &by_function),
        Some(3.0),
        "{document}"
    );
    assert_eq!(emf::value(&document, "SweepDeleted", &by_function), Some(3.0));
    assert_eq!(emf::value(&document, "SweepComplete", &by_function), Some(1.0));
    assert_eq!(
        emf::value(&document, "SweepDuration", &by_function),
        Some(swept.duration_ms as f64)
    );
    assert_eq!(emf::value(&document, "DynamoDbThrottles", &by_function), Some(0.0));

    // A run that fails (a denied delete) is not complete either.
    faults.fail("DeleteItem", "", u32::MAX, 400, "AccessDeniedException");
    plain
        .create(
            NewSession {
                idle_timeout_seconds: Some(60),
                ..Default::default()
            },
            None,
            t0,
        )
        .await
        .unwrap();
    assert!(handle(&sweeper, invocation(event("sweeper-scheduled"))).await.is_err());
    let failed = single(captured.take());
    assert_eq!(
        emf::value(&failed, "SweepComplete", &by_function),
        Some(0.0),
        "{failed}"
    );
}
