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
    let auditor = Auditor::new(AuditLog::new(client, "audit", 90));
    let response = run(&auditor, &batch).await;
    assert_eq!(reported(&response), [batch.records[2].change.sequence_number.clone()]);
    assert_eq!(
        succeed.num_calls(),
        4,
        "the others were written (those after it are deduplicated on retry)"
    );
}

#[tokio::test]
async fn each_batch_writes_its_outcomes_and_stream_lag_as_one_emf_document() {
    use lambda_support::metrics::Metrics;
    use session_testkit::emf::{self, Captured};
    let (client, _) = testkit::client();
    let captured = Captured::default();
    let auditor = Auditor {
        metrics: Metrics::new("SessionService/test", "audit").with_sink(captured.sink()),
        ..auditor(&client).await
    };
    // Two deletions and two poison records, the oldest written to the stream 5 s ago.
    let text = std::fs::read_to_string(testkit::repo_root().join("events/audit-batch-with-poison.json")).unwrap();
    let mut batch: serde_json::Value = serde_json::from_str(&text).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (i, record) in batch["Records"].as_array_mut().unwrap().iter_mut().enumerate() {
        record["dynamodb"]["ApproximateCreationDateTime"] = serde_json::Value::from(now - 5 + i as u64);
    }
    let batch: aws_lambda_events::event::dynamodb::Event = serde_json::from_value(batch).unwrap();
    let by_function = [("Function", "audit")];
    for (run_number, (written, duplicates)) in [(2.0, 0.0), (0.0, 2.0)].into_iter().enumerate() {
        assert!(run(&auditor, &batch).await.batch_item_failures.is_empty());
        let documents = captured.take();
        assert_eq!(documents.len(), 1, "one document a batch: {documents:?}");
        let document = &documents[0];
        let value = |name| emf::value(document, name, &by_function);
        assert_eq!(
            value("AuditRecordsWritten"),
            Some(written),
            "run {run_number}: {document}"
        );
        assert_eq!(
            value("AuditDuplicates"),
            Some(duplicates),
            "run {run_number}: {document}"
        );
        assert_eq!(value("AuditSkipped"), Some(2.0), "run {run_number}: {document}");
        assert_eq!(value("DynamoDbThrottles"), Some(0.0), "{document}");
        let lag = value("StreamLag").expect("the batch's stream lag");
        assert!(
            (5_000.0..3_600_000.0).contains(&lag),
            "the oldest record's age: {lag} ms"
        );
    }
}
