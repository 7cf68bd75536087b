//! Records read from DynamoDB Local's own stream (DescribeStream, GetShardIterator,
//! GetRecords) after real deletions: through the store, a sweep and TTL.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_lambda_events::event::dynamodb::Event;
use common::*;
use local_triggers::streams::DynamoDbLocal;
use serde_json::json;
use session_store::schema::TableSpec;
use session_store::sweep::SweepOptions;
use session_store::{Config, DynamoStore, NewSession, Subject, Timestamp};
use session_testkit as testkit;

/// Every record on the table's stream so far, as Lambda's DynamoDB event source
/// delivers them, read as `scripts/run`'s local triggers read it (which mends
/// DynamoDB Local's untyped empty maps in stream images).
fn stream_batch(endpoint: &str, store: &DynamoStore) -> Event {
    let records = DynamoDbLocal::new(endpoint)
        .read_all(&store.config().table_name)
        .unwrap();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// The sessions table of `template.yaml` without its indexes.
async fn table_without_indexes(client: &aws_sdk_dynamodb::Client) -> String {
    let mut spec = TableSpec::sessions().unwrap();
    spec.indexes.clear();
    spec.attributes
        .retain(|a| a.attribute_name() == session_store::item::attr::HANDLE);
    let name = format!("sessions-no-indexes-{}", std::process::id());
    assert!(spec.create(client, &name).await.unwrap());
    name
}

#[tokio::test]
async fn deletions_through_the_api_the_sweeper_and_ttl_are_audited_once_each() {
    // An instance of its own: DynamoDB Local's TTL lags far behind when other tests' tables share it.
    let endpoint = testkit::private_endpoint();
    let client = aws_sdk_dynamodb::Client::from_conf(testkit::local_config_at(&endpoint).build());
    let store = DynamoStore::new(client.clone(), testkit::fresh_config(&client).await);
    let auditor = auditor(&client).await;
    let now = Timestamp::now();
    let alice = Subject::parse("alice").unwrap();
    let owned = || NewSession {
        subject: Some(alice.clone()),
        ..Default::default()
    };

    // The device a session was on reaches its deletion's record.
    let laptop = session_store::Device::new(
        Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        Some("203.0.113.7".into()),
        Some("Work laptop".into()),
    )
    .unwrap();
    let on_laptop = NewSession {
        device: Some(laptop.clone()),
        ..owned()
    };
    let logged_out = store.create(on_laptop, None, now).await.unwrap();
    store.delete(&logged_out.id).await.unwrap();
    let rotated = store.create(owned(), None, now).await.unwrap();
    let successor = store.rotate(&rotated.id, true, None, None, now).await.unwrap();
    let kept = store.create(owned(), None, now).await.unwrap();
    let elsewhere = store.create(owned(), None, now).await.unwrap();
    assert_eq!(
        store.revoke_subject(&alice, Some(&kept.id), now).await.unwrap(),
        2,
        "the successor and `elsewhere`"
    );
    // Expired ten minutes ago in real time: the audit compares the expiry with the stream
    // record's time, which DynamoDB Local rounds down to the minute.
    let idle = NewSession {
        idle_timeout_seconds: Some(60),
        ..Default::default()
    };
    let swept = store.create(idle, None, Timestamp(now.0 - 660)).await.unwrap();
    assert_eq!(store.sweep(&SweepOptions::at(now)).await.unwrap().deleted, 1);
    // Already past its expiry in real time, so TTL removes it. DynamoDB Local (2026-05-28 build)
    // leaves items like this one in a table with indexes, as the sessions table has, for
    // minutes; so this one lives in the same table without its indexes (same key, stream and TTL).
    let ttl_store = DynamoStore::new(client.clone(), Config::for_table(table_without_indexes(&client).await));
    let long_ago = Timestamp(now.0 - 3600);
    let short = NewSession {
        idle_timeout_seconds: Some(10),
        ..Default::default()
    };
    let timed_out = ttl_store.create(short, None, long_ago).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while testkit::raw_item(&ttl_store, &timed_out.id).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "DynamoDB Local's TTL did not remove the item within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let mut batch = stream_batch(&endpoint, &store);
    batch.records.extend(stream_batch(&endpoint, &ttl_store).records);
    assert!(run(&auditor, &batch).await.batch_item_failures.is_empty());
    assert!(
        run(&auditor, &batch).await.batch_item_failures.is_empty(),
        "the same batch again"
    );
    let records = audit_records(&client, &auditor).await;
    let causes: HashMap<String, String> = records
        .values()
        .map(|r| (r["session"].clone(), r["cause"].clone()))
        .collect();
    let expected = HashMap::from([
        (logged_out.id.fingerprint(), "revoked".to_string()),
        (rotated.id.fingerprint(), "revoked".to_string()),
        (successor.id.fingerprint(), "revoked".to_string()),
        (elsewhere.id.fingerprint(), "revoked".to_string()),
        (swept.id.fingerprint(), "expired".to_string()),
        (timed_out.id.fingerprint(), "ttl".to_string()),
    ]);
    assert_eq!(causes, expected);
    assert_eq!(records.len(), expected.len(), "one record per deletion, replay or not");
    let deletions = batch
        .records
        .iter()
        .filter(|r| r.event_name != "INSERT" && r.event_name != "MODIFY")
        .count();
    assert_eq!(deletions, expected.len(), "the stream carried exactly these deletions");
    let alices = auditor.log.by_subject("alice").await.unwrap();
    let devices: HashMap<String, Option<session_store::Device>> =
        alices.into_iter().map(|r| (r.session, r.device)).collect();
    assert_eq!(devices[&logged_out.id.fingerprint()], Some(laptop));
    assert_eq!(
        devices[&elsewhere.id.fingerprint()],
        None,
        "no device given, none recorded"
    );
}
