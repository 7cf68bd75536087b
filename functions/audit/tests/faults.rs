//! The audit function under faults DynamoDB Local cannot produce: throttled writes and
//! an invocation killed mid-batch. Every deletion ends up recorded exactly once.

mod common;

use std::collections::BTreeSet;

use audit::Auditor;
use common::*;
use lambda_runtime::{Context, LambdaEvent};
use session_store::audit::AuditLog;
use session_testkit::{self as testkit, Faults};

/// An auditor on a fresh audit table, and one on the same table whose writes meet `faults`.
async fn auditors(faults: &Faults) -> (Auditor, Auditor, aws_sdk_dynamodb::Client) {
    let (client, _) = testkit::client();
    let plain = auditor(&client).await;
    let faulty = Auditor::new(AuditLog::new(testkit::faulty_client(faults), plain.log.table(), 90));
    (plain, faulty, client)
}

async fn recorded(client: &aws_sdk_dynamodb::Client, auditor: &Auditor) -> BTreeSet<String> {
    audit_records(client, auditor).await.into_keys().collect()
}

fn event_ids(range: std::ops::Range<usize>) -> BTreeSet<String> {
    range.map(|i| format!("event-{i}")).collect()
}

#[tokio::test]
async fn a_throttled_write_is_reported_and_the_retry_from_it_loses_and_doubles_nothing() {
    let faults = Faults::default();
    let (plain, faulty, client) = auditors(&faults).await;
    let batch = numbered_batch(5);
    faults.throttle("PutItem", "event-2", u32::MAX);

    let response = run(&faulty, &batch).await;
    assert_eq!(reported(&response), [batch.records[2].change.sequence_number.clone()]);
    assert!(faults.throttled() >= 3, "the SDK retried: {}", faults.throttled());
    let mut written = event_ids(0..5);
    written.remove("event-2");
    assert_eq!(recorded(&client, &plain).await, written);

    // Lambda retries from the reported record; the throttling has passed.
    faults.clear();
    let mut retry = batch.clone();
    retry.records.drain(..2);
    assert!(run(&faulty, &retry).await.batch_item_failures.is_empty());
    let records = audit_records(&client, &plain).await;
    assert_eq!(records.keys().cloned().collect::<BTreeSet<_>>(), event_ids(0..5));
    assert!(records.values().all(|r| r["cause"] == "revoked"));
}

#[tokio::test]
async fn an_invocation_killed_mid_batch_is_finished_by_the_redelivered_batch() {
    let faults = Faults::default();
    let (plain, faulty, client) = auditors(&faults).await;
    let batch = numbered_batch(8);
    faults.stall("PutItem", "event-5");

    let killed = tokio::time::timeout(std::time::Duration::from_secs(3), run(&faulty, &batch)).await;
    assert!(killed.is_err(), "the invocation was killed, not finished");
    let partial = recorded(&client, &plain).await;
    assert!(!partial.contains("event-5"), "{partial:?}");

    // Lambda delivers the whole batch again, and a duplicate delivery may follow.
    faults.clear();
    for _ in 0..2 {
        assert!(run(&faulty, &batch).await.batch_item_failures.is_empty());
        assert_eq!(recorded(&client, &plain).await, event_ids(0..8));
    }
}

#[tokio::test]
async fn a_permanent_failure_fails_the_invocation_so_the_errors_alarm_fires() {
    let faults = Faults::default();
    let (plain, faulty, client) = auditors(&faults).await;
    let batch = numbered_batch(4);
    // A denied write: retrying from the record cannot help; reporting it as a
    // partial failure would let the function look healthy while nothing is audited.
    faults.fail("PutItem", "event-1", u32::MAX, 400, "AccessDeniedException");
    let invocation = || audit::handle(&faulty, LambdaEvent::new(batch.clone(), Context::default()));
    let err = invocation().await.expect_err("a denied write fails the invocation");
    assert!(err.to_string().contains("PutItem"), "{err}");
    // Lambda retries the whole batch; once the permission is fixed, each deletion is recorded once.
    faults.clear();
    assert!(invocation().await.unwrap().batch_item_failures.is_empty());
    assert_eq!(recorded(&client, &plain).await, event_ids(0..4));

    // The audit table missing (a wrong AUDIT_TABLE): the same.
    let nowhere = Auditor::new(AuditLog::new(
        client.clone(),
        format!("{}-missing", plain.log.table()),
        90,
    ));
    assert!(
        audit::handle(&nowhere, LambdaEvent::new(batch.clone(), Context::default()))
            .await
            .is_err()
    );
}
