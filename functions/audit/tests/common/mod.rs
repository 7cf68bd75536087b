//! Shared helpers: an auditor on a fresh DynamoDB Local audit table, events, and the table's contents.

#![allow(dead_code)]

use std::collections::HashMap;

use audit::Auditor;
use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodb::Client;
use lambda_runtime::{Context, LambdaEvent};
use session_store::audit::AuditLog;
use session_testkit::{self as testkit, repo_root};

/// An auditor on a fresh audit table made from `template.yaml`.
pub async fn auditor(client: &Client) -> Auditor {
    let table = testkit::fresh_table(client, "AuditTable").await;
    Auditor::new(AuditLog::new(client.clone(), table, 90))
}

/// The sample event `events/{name}.json`.
pub fn event(name: &str) -> Event {
    let text = std::fs::read_to_string(repo_root().join(format!("events/{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A batch of `n` deletions (`audit-user-delete`'s record), with event ids
/// `event-0`, `event-1`, ... and ascending sequence numbers.
pub fn numbered_batch(n: usize) -> Event {
    let mut batch = event("audit-user-delete");
    let template = batch.records[0].clone();
    batch.records = (0..n)
        .map(|i| {
            let mut record = template.clone();
            record.event_id = format!("event-{i}");
            record.change.sequence_number = Some(format!("2000000000000000000{i:02}"));
            record
        })
        .collect();
    batch
}

/// Runs the handler on a batch.
pub async fn run(auditor: &Auditor, batch: &Event) -> DynamoDbEventResponse {
    audit::handle(auditor, LambdaEvent::new(batch.clone(), Context::default()))
        .await
        .unwrap()
}

/// The sequence numbers a response reports as failed.
pub fn reported(response: &DynamoDbEventResponse) -> Vec<Option<String>> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// Every audit record, as event id -> (attribute -> string or number text).
pub async fn audit_records(client: &Client, auditor: &Auditor) -> HashMap<String, HashMap<String, String>> {
    let mut records = HashMap::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(auditor.log.table())
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        for item in page.items() {
            let fields: HashMap<String, String> = item
                .iter()
                .map(|(k, v)| (k.clone(), v.as_s().or_else(|_| v.as_n()).cloned().unwrap_or_default()))
                .collect();
            records.insert(fields["event_id"].clone(), fields);
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            return records;
        }
    }
}
