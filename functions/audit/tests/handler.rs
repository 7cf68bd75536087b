//! The audit handler fed the `events/` samples, against DynamoDB Local.

mod common;

use audit::Auditor;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ErrorMetadata;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::types::error::InternalServerError;
use aws_smithy_mocks::{RuleMode, mock};
use common::*;
use session_store::audit::AuditLog;
use session_testkit as testkit;

#[tokio::test]
async fn deletions_are_recorded_with_their_cause_and_a_fingerprint() {
    let (client, _) = testkit::client();
    let auditor = auditor(&client).await;
    for name in ["audit-user-delete", "audit-ttl-delete"] {
        assert!(
            run(&auditor, &event(name)).await.batch_item_failures.is_empty(),
            "{name}"
        );
    }
    let records = audit_records(&client, &auditor).await;
    let user = &records["c2e5b4f5e6a14b0f9d3a1e2f3a4b5c6d"];
    assert_eq!(
        (user["cause"].as_str(), user["subject"].as_str()),
        ("revoked", "user-42")
    );
    assert_eq!(user["deleted_at"], "1795341600");
    assert_eq!(user["retain_until"], (1795341600 + 90 * 86400).to_string());
    assert_eq!(user["session"].len(), 12, "a fingerprint, not the id");
    assert!(
        !user
            .values()
            .any(|v| v.contains("AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA"))
    );
    assert_eq!(records["d3f6c5a6f7b25c1a0e4b2f3a4b5c6d7e"]["cause"], "ttl");
}

#[tokio::test]
async fn poison_records_are_skipped_and_a_replayed_batch_writes_nothing_twice() {
    let (client, _) = testkit::client();
    let auditor = auditor(&client).await;
    let batch = event("audit-batch-with-poison");
    assert!(run(&auditor, &batch).await.batch_item_failures.is_empty());
    assert!(run(&auditor, &batch).await.batch_item_failures.is_empty(), "replayed");
    let records = audit_records(&client, &auditor).await;
    assert_eq!(records.len(), 2, "two deletions, two poison records: {records:?}");
    assert_eq!(records["e4a7d6b7a8c36d2b1f5c3a4b5c6d7e8f"]["cause"], "revoked");
    assert!(!records["e4a7d6b7a8c36d2b1f5c3a4b5c6d7e8f"].contains_key("subject"));
    assert_eq!(records["b7d0a9e0dbf69a5e4c8f6d7e8f9a0b1c"]["cause"], "expired");
}

#[tokio::test]
async fn a_failed_write_in_mid_batch_is_reported_by_its_sequence_number() {
    let batch = numbered_batch(5);
    let failing = batch.records[2].event_id.clone();
    let fail = mock!(Client::put_item)
        .match_requests(move |r| r.item().and_then(|i| i.get("event_id")).and_then(|v| v.as_s().ok()) == Some(&failing))
        .sequence()
        .error(|| {
            PutItemError::InternalServerError(
                InternalServerError::builder()
                    .message("boom")
                    .meta(ErrorMetadata::builder().code("InternalServerError").build())
                    .build(),
            )
        })
        .times(10)
        .build();
    let succeed = mock!(Client::put_item)
        .sequence()
        .output(|| PutItemOutput::builder().build())
        .times(10)
        .build();
    let client = testkit::mocked_client(
        RuleMode::MatchAny,
        &[&fail, &succeed],
        aws_sdk_dynamodb::config::retry::RetryConfig::disabled(),
    );
    let auditor = Auditor {
        log: AuditLog::new(client, "audit", 90),
    };
    let response = run(&auditor, &batch).await;
    assert_eq!(reported(&response), [batch.records[2].change.sequence_number.clone()]);
    assert_eq!(
        succeed.num_calls(),
        4,
        "the others were written (those after it are deduplicated on retry)"
    );
}
