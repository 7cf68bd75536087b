//! Writes whose response is lost after DynamoDB committed them (injected below the
//! SDK: DynamoDB Local carries the request out, the SDK sees a 500 and retries).
//! DynamoDB Local never loses a response; real networks do. The retry fails its own
//! condition, and the store must take that for the success it was: no second
//! session, no false 412, no 404 for a rotation that happened.

use session_store::{DataPatch, DynamoStore, IdempotencyKey, NewSession, SessionData, Subject, Timestamp};
use session_testkit::{self as testkit, Faults};

async fn store(faults: &Faults) -> DynamoStore {
    let (plain, _) = testkit::store(|_| {}).await;
    DynamoStore::new(testkit::faulty_client(faults), plain.config().clone())
}

/// A new session owned by `subject` (written in a transaction, with its membership).
fn owned_by(subject: &Subject) -> NewSession {
    NewSession {
        subject: Some(subject.clone()),
        ..Default::default()
    }
}

/// Items in `table` (test only: a Scan).
async fn count(store: &DynamoStore, table: &str) -> usize {
    let out = store
        .client()
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.items().len()
}

#[tokio::test]
async fn a_create_whose_response_was_lost_makes_one_session() {
    let faults = Faults::default();
    let store = store(&faults).await;
    let now = Timestamp::now();
    faults.lose_response("PutItem", "", 1);
    let created = store.create(NewSession::default(), None, now).await.unwrap();
    assert_eq!(faults.lost(), 1, "the first attempt's response was lost");
    assert_eq!(store.get(&created.id, now).await.unwrap(), created.session);
    assert_eq!(count(&store, &store.config().table_name).await, 1, "no second session");

    // An owned one is a transaction: the same, with its one membership.
    faults.lose_response("TransactWriteItems", "", 1);
    let alice = Subject::parse("alice").unwrap();
    let owned = owned_by(&alice);
    let created = store.create(owned, None, now).await.unwrap();
    assert_eq!(faults.lost(), 2);
    assert_eq!(store.get(&created.id, now).await.unwrap(), created.session);
    assert_eq!(count(&store, &store.config().table_name).await, 2);
    assert_eq!(count(&store, &store.config().registry_table).await, 1, "one membership");
}

#[tokio::test]
async fn a_conditional_write_whose_response_was_lost_is_no_false_412_and_applies_once() {
    let faults = Faults::default();
    let store = store(&faults).await;
    let now = Timestamp::now();
    let s = store.create(NewSession::default(), None, now).await.unwrap();
    faults.lose_response("PutItem", "", 1);
    let data = SessionData::from_json(r#"{"cart":[1]}"#).unwrap();
    let replaced = store.replace(&s.id, data.clone(), None, Some(&[1]), now).await.unwrap();
    assert_eq!(faults.lost(), 1);
    assert_eq!((replaced.version, &replaced.data), (2, &data));

    faults.lose_response("PutItem", "", 1);
    let patch: DataPatch = serde_json::from_str(r#"{"theme":"dark"}"#).unwrap();
    let merged = store.merge(&s.id, patch, None, now).await.unwrap();
    assert_eq!(faults.lost(), 2);
    assert_eq!(merged.version, 3, "the retried merge was applied once");
    assert_eq!(store.get(&s.id, now).await.unwrap(), merged);
}

#[tokio::test]
async fn a_rotation_whose_response_was_lost_leaves_exactly_its_successor() {
    let faults = Faults::default();
    let store = store(&faults).await;
    let now = Timestamp::now();
    let alice = Subject::parse("alice").unwrap();
    let owned = owned_by(&alice);
    let old = store.create(owned, None, now).await.unwrap();
    faults.lose_response("TransactWriteItems", "", 1);
    let new = store.rotate(&old.id, true, None, None, now).await.unwrap();
    assert_eq!(faults.lost(), 1);
    assert_eq!(store.get(&new.id, now).await.unwrap(), new.session);
    assert!(store.get(&old.id, now).await.is_err());
    assert_eq!(count(&store, &store.config().table_name).await, 1);
    let listed = store.list_by_subject(&alice, 10, None, now).await.unwrap();
    assert_eq!(listed.sessions.len(), 1);
}

#[tokio::test]
async fn idempotency_keys_replay_the_same_session_and_refuse_another_request() {
    let faults = Faults::default();
    let store = store(&faults).await;
    let now = Timestamp::now();
    let key = IdempotencyKey::new("8e03978e-40d5-43e8-bc93-6894a57f9324", "create", b"{}").unwrap();
    let first = store.create(NewSession::default(), Some(&key), now).await.unwrap();
    let again = store.create(NewSession::default(), Some(&key), now).await.unwrap();
    assert_eq!(again.id, first.id, "a retry gets the same id");
    assert_eq!(
        count(&store, &store.config().table_name).await,
        1,
        "and creates nothing"
    );
    let other_body = IdempotencyKey::new("8e03978e-40d5-43e8-bc93-6894a57f9324", "create", b"{\"data\":{}}").unwrap();
    assert!(matches!(
        store.create(NewSession::default(), Some(&other_body), now).await,
        Err(session_store::StoreError::IdempotencyMismatch)
    ));

    // A client retry of a rotation after its response was lost: the old id is gone,
    // the record answers with the same new id.
    let rotate_key = IdempotencyKey::new("0f6b7c1e-rotate-retry-key-0001", "rotate", b"{}").unwrap();
    let rotated = store
        .rotate(&first.id, true, None, Some(&rotate_key), now)
        .await
        .unwrap();
    let retried = store
        .rotate(&first.id, true, None, Some(&rotate_key), now)
        .await
        .unwrap();
    assert_eq!(retried.id, rotated.id);
    assert_eq!(count(&store, &store.config().table_name).await, 1);
    let without_key = store.rotate(&first.id, true, None, None, now).await;
    assert!(matches!(without_key, Err(session_store::StoreError::NotFound)));
}

#[tokio::test]
async fn a_transaction_retried_past_its_client_token_is_recognised_by_its_write_token() {
    // DynamoDB answers a retry that carries the first attempt's ClientRequestToken
    // from the first attempt (for ten minutes). Without it the retry is judged by
    // its conditions, which the committed first attempt now fails: the store must
    // tell its own write from a collision or a concurrent rotation.
    let faults = Faults::default();
    faults.forget_client_tokens();
    let store = store(&faults).await;
    let now = Timestamp::now();
    let alice = Subject::parse("alice").unwrap();
    let owned = owned_by(&alice);
    faults.lose_response("TransactWriteItems", "", 1);
    let created = store.create(owned, None, now).await.unwrap();
    assert_eq!(faults.lost(), 1);
    assert_eq!(store.get(&created.id, now).await.unwrap(), created.session);

    faults.lose_response("TransactWriteItems", "", 1);
    let rotated = store.rotate(&created.id, true, None, None, now).await.unwrap();
    assert_eq!(faults.lost(), 2);
    assert_eq!(store.get(&rotated.id, now).await.unwrap(), rotated.session);
    assert_eq!(
        count(&store, &store.config().table_name).await,
        1,
        "exactly the successor"
    );
    assert_eq!(
        count(&store, &store.config().registry_table).await,
        1,
        "its one membership"
    );

    // A keyed create: on the retry its record's put fails its condition too; the
    // write token says the record is this request's own.
    let keyed = IdempotencyKey::new("6d1f0c8a-7b2e-4c55-9e0a-3f4b5c6d7e8f", "create", b"{}").unwrap();
    faults.lose_response("TransactWriteItems", "", 1);
    let first = store.create(NewSession::default(), Some(&keyed), now).await.unwrap();
    assert_eq!(faults.lost(), 3);
    assert_eq!(count(&store, &store.config().table_name).await, 2);
    let again = store.create(NewSession::default(), Some(&keyed), now).await.unwrap();
    assert_eq!(again.id, first.id, "the record answers a client's retry");
}

#[tokio::test]
async fn an_expired_idempotency_record_answers_no_longer() {
    let store = store(&Faults::default()).await;
    let now = Timestamp::now();
    let key = IdempotencyKey::new("3c9e1f5a-0d7b-4e2c-8a6f-1b2c3d4e5f60", "create", b"{}").unwrap();
    let first = store.create(NewSession::default(), Some(&key), now).await.unwrap();
    let later = Timestamp(now.0 + i64::from(session_store::registry::IDEMPOTENCY_SECONDS) + 1);
    // DynamoDB's TTL may not have removed the record yet; the store ignores it.
    let second = store.create(NewSession::default(), Some(&key), later).await.unwrap();
    assert_ne!(second.id, first.id, "a new session, not a replay of the expired record");
    assert_eq!(store.get(&second.id, later).await.unwrap(), second.session);
    let again = store.create(NewSession::default(), Some(&key), later).await.unwrap();
    assert_eq!(again.id, second.id, "and the new record answers from now on");
}
