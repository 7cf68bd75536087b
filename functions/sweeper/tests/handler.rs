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
    let sweeper = Sweeper { store, clock };

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
        store: DynamoStore::new(testkit::faulty_client(&faults), plain.config().clone()),
        clock: clock.clone(),
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
        store: DynamoStore::new(plain.client().clone(), config),
        clock,
    };
    assert!(handle(&nowhere, invocation(event("sweeper-scheduled"))).await.is_err());
}
