//! The cap on a subject's live sessions (`SESSION_MAX_PER_SUBJECT`) against
//! DynamoDB Local: exact under 50 concurrent logins of one subject, for both
//! policies, race after race; the least recently active session is the one
//! evicted; rotations into a subject count as logins; a lowered cap is enforced
//! on sessions made before it; and a store without a cap spends nothing on it.

use std::collections::HashSet;

use futures::future::join_all;
use session_store::config::{CapPolicy, SubjectCap};
use session_store::registry::IdempotencyKey;
use session_store::{DynamoStore, Issued, NewSession, SessionId, StoreError, Subject, Timestamp};
use session_testkit::{self as testkit, RequestCounter};

/// Concurrent logins per race, the cap, and the races run.
const LOGINS: usize = 50;
const CAP: u32 = 5;
const RACES: usize = 4;

fn cap(max: u32, policy: CapPolicy) -> Option<SubjectCap> {
    Some(SubjectCap { max, policy })
}

async fn store(subject_cap: Option<SubjectCap>) -> (DynamoStore, RequestCounter) {
    testkit::store(|config| config.subject_cap = subject_cap).await
}

/// The same tables under another cap.
fn recapped(store: &DynamoStore, subject_cap: Option<SubjectCap>) -> DynamoStore {
    let mut config = store.config().clone();
    config.subject_cap = subject_cap;
    DynamoStore::new(store.client().clone(), config)
}

fn owned(subject: &Subject) -> NewSession {
    NewSession {
        subject: Some(subject.clone()),
        idle_timeout_seconds: Some(3600),
        ..Default::default()
    }
}

/// A login as a client makes it: retried while other logins of the subject
/// keep committing first (the API's 409 `conflict`).
async fn login(store: &DynamoStore, subject: &Subject, now: Timestamp) -> Result<Issued, StoreError> {
    for _ in 0..20 {
        match store.create(owned(subject), None, now).await {
            Err(StoreError::Contention { .. }) => continue,
            other => return other,
        }
    }
    panic!("a login kept losing to the others for 20 attempts of 3 s each");
}

/// Which of `ids` are live sessions now.
async fn live(store: &DynamoStore, ids: &[SessionId], now: Timestamp) -> Vec<SessionId> {
    let mut alive = Vec::new();
    for id in ids {
        match store.get(id, now).await {
            Ok(_) => alive.push(id.clone()),
            Err(StoreError::NotFound) => {}
            Err(e) => panic!("reading a session: {e}"),
        }
    }
    alive
}

/// The subject's live sessions as its listing shows them.
async fn listed(store: &DynamoStore, subject: &Subject, now: Timestamp) -> usize {
    store
        .list_by_subject(subject, 100, None, now)
        .await
        .unwrap()
        .sessions
        .len()
}

#[tokio::test]
async fn fifty_concurrent_logins_under_a_cap_of_five_leave_exactly_five_live_sessions_by_eviction() {
    let (store, _) = store(cap(CAP, CapPolicy::EvictOldest)).await;
    let now = Timestamp::now();
    for race in 0..RACES {
        let subject = Subject::parse(&format!("user-evict-{race}")).unwrap();
        let results = join_all((0..LOGINS).map(|_| login(&store, &subject, now))).await;
        let issued: Vec<Issued> = results
            .into_iter()
            .map(|r| r.expect("every login succeeds, evicting"))
            .collect();
        let evicted: u32 = issued.iter().map(|i| i.evicted).sum();
        let ids: Vec<SessionId> = issued.iter().map(|i| i.id.clone()).collect();
        assert_eq!(live(&store, &ids, now).await.len(), CAP as usize, "race {race}");
        assert_eq!(listed(&store, &subject, now).await, CAP as usize, "race {race}");
        // Each login past the fifth evicted exactly one session: none more, none twice.
        assert_eq!(evicted as usize, LOGINS - CAP as usize, "race {race}");
    }
}

#[tokio::test]
async fn fifty_concurrent_logins_under_a_cap_of_five_with_reject_admit_exactly_five() {
    let (store, _) = store(cap(CAP, CapPolicy::Reject)).await;
    let now = Timestamp::now();
    for race in 0..RACES {
        let subject = Subject::parse(&format!("user-reject-{race}")).unwrap();
        let results = join_all((0..LOGINS).map(|_| login(&store, &subject, now))).await;
        let mut admitted = Vec::new();
        let mut refused = 0;
        for result in results {
            match result {
                Ok(issued) => {
                    assert_eq!(issued.evicted, 0);
                    admitted.push(issued.id);
                }
                Err(StoreError::CapReached { max }) => {
                    assert_eq!(max, CAP);
                    refused += 1;
                }
                Err(e) => panic!("race {race}: a login failed otherwise: {e}"),
            }
        }
        assert_eq!(admitted.len(), CAP as usize, "race {race}");
        assert_eq!(refused, LOGINS - CAP as usize, "race {race}");
        assert_eq!(live(&store, &admitted, now).await.len(), CAP as usize, "race {race}");
        assert_eq!(listed(&store, &subject, now).await, CAP as usize, "race {race}");
    }
}

#[tokio::test]
async fn the_least_recently_active_session_is_the_one_evicted() {
    let (store, _) = store(cap(3, CapPolicy::EvictOldest)).await;
    let subject = Subject::parse("user-lru").unwrap();
    let t0 = Timestamp::now();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            store
                .create(owned(&subject), None, Timestamp(t0.0 + i))
                .await
                .unwrap()
                .id,
        );
    }
    // The oldest login is the most recently active: a written touch.
    let touched = store.touch(&ids[0], Timestamp(t0.0 + 100)).await.unwrap();
    assert_eq!(touched.updated_at, Timestamp(t0.0 + 100));
    let fourth = store
        .create(owned(&subject), None, Timestamp(t0.0 + 200))
        .await
        .unwrap();
    assert_eq!(fourth.evicted, 1);
    let now = Timestamp(t0.0 + 200);
    assert_eq!(
        live(&store, &ids, now).await,
        vec![ids[0].clone(), ids[2].clone()],
        "the second login, idle since it was made, went"
    );
    assert_eq!(listed(&store, &subject, now).await, 3);
}

#[tokio::test]
async fn without_a_cap_an_owned_create_is_one_request_and_with_one_an_anonymous_create_is_too() {
    let subject = Subject::parse("user-cost").unwrap();
    let now = Timestamp::now();
    let (uncapped, counter) = store(None).await;
    uncapped.create(owned(&subject), None, now).await.unwrap();
    assert_eq!(counter.take(), 1, "one TransactWriteItems");

    let (capped, counter) = store(cap(2, CapPolicy::EvictOldest)).await;
    capped.create(NewSession::default(), None, now).await.unwrap();
    assert_eq!(counter.take(), 1, "an anonymous session counts against no cap");
    capped.create(owned(&subject), None, now).await.unwrap();
    assert_eq!(counter.take(), 2, "the owner's partition (Query), then the transaction");
    capped.create(owned(&subject), None, now).await.unwrap();
    assert_eq!(
        counter.take(),
        3,
        "Query, BatchGetItem of the owner's sessions, transaction"
    );
    let third = capped.create(owned(&subject), None, now).await.unwrap();
    assert_eq!(
        (counter.take(), third.evicted),
        (3, 1),
        "the eviction is in the transaction"
    );
}

#[tokio::test]
async fn a_rotation_into_a_capped_subject_is_a_login_and_a_rotation_within_it_is_not() {
    let (store, _) = store(cap(2, CapPolicy::Reject)).await;
    let subject = Subject::parse("user-rotate").unwrap();
    let now = Timestamp::now();
    let first = store.create(owned(&subject), None, now).await.unwrap();
    store.create(owned(&subject), None, now).await.unwrap();
    // Within the subject: the count is unchanged, so the cap allows it.
    let rotated = store.rotate(&first.id, true, None, None, now).await.unwrap();
    assert_eq!(rotated.evicted, 0);
    // An anonymous session logging in as the subject would be a third.
    let anonymous = store.create(NewSession::default(), None, now).await.unwrap();
    let refused = store
        .rotate(&anonymous.id, true, Some(subject.clone()), None, now)
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::CapReached { max: 2 }), "{refused:?}");
    assert!(
        store.get(&anonymous.id, now).await.is_ok(),
        "a refused rotation keeps the old session"
    );

    let evicting = recapped(&store, cap(2, CapPolicy::EvictOldest));
    let login = evicting
        .rotate(&anonymous.id, true, Some(subject.clone()), None, now)
        .await
        .unwrap();
    assert_eq!(login.evicted, 1);
    assert_eq!(listed(&store, &subject, now).await, 2);
}

#[tokio::test]
async fn a_lowered_cap_brings_older_sessions_down_to_it_and_forgets_gone_memberships() {
    let (store, _) = store(None).await;
    let subject = Subject::parse("user-lowered").unwrap();
    let now = Timestamp::now();
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(store.create(owned(&subject), None, now).await.unwrap().id);
    }
    store.delete(&ids[5]).await.unwrap();
    assert_eq!(memberships(&store, &subject).await, 6, "a logout leaves its membership");

    let capped = recapped(&store, cap(2, CapPolicy::EvictOldest));
    let login = capped.create(owned(&subject), None, now).await.unwrap();
    assert_eq!(login.evicted, 4, "5 live before it, 2 allowed with it");
    assert_eq!(listed(&store, &subject, now).await, 2);
    assert_eq!(
        memberships(&store, &subject).await,
        2,
        "the evicted sessions' and the logged-out one's memberships are gone"
    );
}

#[tokio::test]
async fn a_retried_capped_create_answers_from_its_idempotency_record_not_with_the_cap() {
    let (store, _) = store(cap(1, CapPolicy::Reject)).await;
    let subject = Subject::parse("user-idempotent").unwrap();
    let now = Timestamp::now();
    let key = IdempotencyKey::new("login-attempt-0001", "caller", b"request").unwrap();
    let first = store.create(owned(&subject), Some(&key), now).await.unwrap();
    let retry = store.create(owned(&subject), Some(&key), now).await.unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.id, first.id);
    let other = IdempotencyKey::new("login-attempt-0002", "caller", b"request").unwrap();
    let refused = store.create(owned(&subject), Some(&other), now).await.unwrap_err();
    assert!(matches!(refused, StoreError::CapReached { max: 1 }), "{refused:?}");
}

/// Membership items in the subject's registry partition.
async fn memberships(store: &DynamoStore, subject: &Subject) -> usize {
    let out = store
        .client()
        .query()
        .table_name(&store.config().registry_table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("owner#{}", subject.as_str())),
        )
        .expression_attribute_values(":prefix", aws_sdk_dynamodb::types::AttributeValue::S("session#".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let handles: HashSet<&String> = out
        .items()
        .iter()
        .filter_map(|i| i.get("handle")?.as_s().ok())
        .collect();
    handles.len()
}

/// Sets the lease of `subject`'s cap item: held by a login that died, until
/// `until_ms` (milliseconds since the epoch).
async fn leave_lease(store: &DynamoStore, subject: &Subject, until_ms: u128) {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    store
        .client()
        .update_item()
        .table_name(&store.config().registry_table)
        .key("pk", S(format!("owner#{}", subject.as_str())))
        .key("sk", S("cap".into()))
        .update_expression("SET holder = :dead, #until = :until")
        .expression_attribute_names("#until", "until")
        .expression_attribute_values(":dead", S("died-holding-it".into()))
        .expression_attribute_values(":until", N(until_ms.to_string()))
        .send()
        .await
        .unwrap();
}

fn clock_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[tokio::test]
async fn a_lease_left_by_a_login_that_died_holds_logins_back_only_until_it_lapses() {
    let (store, _) = store(cap(2, CapPolicy::EvictOldest)).await;
    let subject = Subject::parse("user-lease").unwrap();
    let now = Timestamp::now();
    store.create(owned(&subject), None, now).await.unwrap();
    // A queued login took the lease and died before its transaction.
    leave_lease(&store, &subject, clock_ms() + 60_000).await;
    let held_back = store.create(owned(&subject), None, now).await.unwrap_err();
    assert!(matches!(held_back, StoreError::Contention { .. }), "{held_back:?}");
    // The same lease, lapsed by the clock (whatever second the request started in).
    leave_lease(&store, &subject, clock_ms() - 1).await;
    let after = store.create(owned(&subject), None, now).await.unwrap();
    assert_eq!(after.evicted, 0);
    assert_eq!(listed(&store, &subject, now).await, 2);
}

#[tokio::test]
async fn an_expired_session_still_stored_is_not_counted_and_is_deleted_with_its_membership() {
    let (store, _) = store(cap(2, CapPolicy::Reject)).await;
    let subject = Subject::parse("user-expired").unwrap();
    let t0 = Timestamp::now();
    let short = NewSession {
        idle_timeout_seconds: Some(60),
        ..owned(&subject)
    };
    let expired = store.create(short, None, t0).await.unwrap();
    store.create(owned(&subject), None, t0).await.unwrap();
    let later = Timestamp(t0.0 + 61);
    store.create(owned(&subject), None, later).await.unwrap();
    assert!(
        testkit::raw_item(&store, &expired.id).await.is_none(),
        "deleted in the login's transaction"
    );
    assert_eq!(memberships(&store, &subject).await, 2);
}

#[tokio::test]
async fn a_subject_far_over_a_new_cap_is_read_past_100_memberships_and_brought_down_40_a_login() {
    // At 64 KB of data a session, 40 deleted sessions fit in a transaction's 4 MB.
    let (store, _) = testkit::store(|config| config.limits.max_data_bytes = 64 * 1024).await;
    let subject = Subject::parse("user-many").unwrap();
    let now = Timestamp::now();
    for _ in 0..105 {
        store.create(owned(&subject), None, now).await.unwrap();
    }
    let capped = recapped(&store, cap(50, CapPolicy::EvictOldest));
    let first = capped.create(owned(&subject), None, now).await.unwrap();
    assert_eq!(first.evicted, 40, "106 with it, 56 over, 40 a login");
    let second = capped.create(owned(&subject), None, now).await.unwrap();
    assert_eq!(second.evicted, 17, "67 with it, 17 over");
    let mut live = 0;
    let mut cursor = None;
    loop {
        let page = store
            .list_by_subject(&subject, 100, cursor.as_deref(), now)
            .await
            .unwrap();
        live += page.sessions.len();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(live, 50);
}

#[tokio::test]
async fn the_cap_reads_strongly_consistently_even_when_the_api_reads_do_not() {
    let (store, counter) = testkit::store(|config| {
        config.consistent_reads = false;
        config.subject_cap = cap(1, CapPolicy::Reject);
    })
    .await;
    let subject = Subject::parse("user-eventual").unwrap();
    let now = Timestamp::now();
    store.create(owned(&subject), None, now).await.unwrap();
    counter.take();
    let refused = store.create(owned(&subject), None, now).await.unwrap_err();
    assert!(matches!(refused, StoreError::CapReached { max: 1 }), "{refused:?}");
    assert_eq!(
        counter.take(),
        2,
        "Query and BatchGetItem, both strongly consistent (asserted in the code)"
    );
}

#[tokio::test]
async fn logins_sixty_over_a_lowered_cap_with_expired_sessions_each_fit_in_one_transaction() {
    // Small sessions: the 4 MB bound leaves room for every eviction and forgotten
    // membership, so only the 100-part bound holds a login to what fits.
    let (store, _) = testkit::store(|config| config.limits.max_data_bytes = 4_096).await;
    let subject = Subject::parse("user-sixty-over").unwrap();
    let t0 = Timestamp::now();
    let short = NewSession {
        idle_timeout_seconds: Some(60),
        ..owned(&subject)
    };
    for _ in 0..12 {
        store.create(short.clone(), None, t0).await.unwrap();
    }
    for _ in 0..65 {
        store.create(owned(&subject), None, t0).await.unwrap();
    }
    // A minute later the 12 are expired but still stored; 65 live against a cap of 5.
    let later = Timestamp(t0.0 + 61);
    let capped = recapped(&store, cap(5, CapPolicy::EvictOldest));
    let mut evicted = Vec::new();
    // Logins by rotation with an Idempotency-Key: the most parts a write brings of its own.
    for n in 0..3 {
        let anonymous = capped.create(NewSession::default(), None, later).await.unwrap();
        let key = IdempotencyKey::new(&format!("login-sixty-over-{n:08}"), "rotate", b"{}").unwrap();
        let login = capped
            .rotate(&anonymous.id, true, Some(subject.clone()), Some(&key), later)
            .await
            .unwrap_or_else(|e| panic!("login {n}: {e:?}"));
        evicted.push(login.evicted);
    }
    assert_eq!(
        evicted,
        vec![40, 22, 1],
        "66 with the first: 61 over, 40 a login; then 27, then 6"
    );
    assert_eq!(listed(&store, &subject, later).await, 5);
    assert_eq!(
        memberships(&store, &subject).await,
        5,
        "the expired ones forgotten on the way"
    );
}
