//! "Log out everywhere" against DynamoDB Local, raced by rotations, with every
//! Query that is not strongly consistent answered as an index that has not caught
//! up at all (the fault layer): nothing the owner had survives it.

use std::sync::{Arc, Mutex};

use session_store::{DynamoStore, NewSession, SessionId, StoreError, Subject, Timestamp};
use session_testkit::{self as testkit, Faults};

/// A store on fresh tables whose every request goes through `faults`.
async fn store(faults: &Faults) -> DynamoStore {
    let (plain, _) = testkit::store(|_| {}).await;
    DynamoStore::new(testkit::faulty_client(faults), plain.config().clone())
}

fn owned(subject: &Subject) -> NewSession {
    NewSession {
        subject: Some(subject.clone()),
        idle_timeout_seconds: Some(600),
        ..Default::default()
    }
}

/// `store` with no time to revoke: every revoke-all stops unfinished, holding its lock.
fn hurried(store: &DynamoStore) -> DynamoStore {
    let mut config = store.config().clone();
    config.revoke_budget = std::time::Duration::ZERO;
    DynamoStore::new(store.client().clone(), config)
}

/// `count` new sessions of `subject`, one after another.
async fn create_owned(store: &DynamoStore, subject: &Subject, count: usize, now: Timestamp) -> Vec<SessionId> {
    let mut ids = Vec::new();
    for _ in 0..count {
        ids.push(store.create(owned(subject), None, now).await.unwrap().id);
    }
    ids
}

/// Rotates `id` again and again until a rotation fails; records every id issued.
async fn rotation_chain(store: &DynamoStore, mut id: SessionId, issued: Arc<Mutex<Vec<SessionId>>>) -> StoreError {
    loop {
        match store.rotate(&id, true, None, None, Timestamp::now()).await {
            Ok(next) => {
                issued.lock().unwrap().push(next.id.clone());
                id = next.id;
            }
            Err(e) => return e,
        }
    }
}

/// The sessions of `subject` still in the table, read by a full Scan (test only).
async fn left_in_table(store: &DynamoStore, subject: &Subject) -> usize {
    let items = store
        .client()
        .scan()
        .table_name(&store.config().table_name)
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    items
        .items()
        .iter()
        .filter(|i| i.get("subject").and_then(|v| v.as_s().ok()) == Some(&subject.as_str().to_owned()))
        .count()
}

#[tokio::test]
async fn the_fault_layer_hides_everything_from_queries_that_are_not_strongly_consistent() {
    let faults = Faults::default();
    faults.lag_queries();
    let store = store(&faults).await;
    let alice = Subject::parse("alice").unwrap();
    store.create(owned(&alice), None, Timestamp::now()).await.unwrap();
    let query = |consistent: bool| {
        store
            .client()
            .query()
            .table_name(&store.config().registry_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S("owner#alice".into()))
            .consistent_read(consistent)
            .send()
    };
    assert_eq!(query(false).await.unwrap().items().len(), 0, "lagging");
    assert_eq!(query(true).await.unwrap().items().len(), 1, "strongly consistent");
}

#[tokio::test]
async fn revoke_all_raced_by_rotation_chains_leaves_nothing_alive() {
    let faults = Faults::default();
    faults.lag_queries();
    let store = store(&faults).await;
    let mut surviving_rotations = 0;
    for round in 0..12 {
        let alice = Subject::parse(&format!("alice-{round}")).unwrap();
        let now = Timestamp::now();
        let ids = create_owned(&store, &alice, 6, now).await;
        let issued = Arc::new(Mutex::new(ids.clone()));
        let chains = futures::future::join_all(ids.iter().map(|id| rotation_chain(&store, id.clone(), issued.clone())));
        // Created a moment before the revoke, so no lagging index could show it.
        let last_moment = store.create(owned(&alice), None, now).await.unwrap().id;
        let revoke = async {
            // Let the chains get going first.
            tokio::time::sleep(std::time::Duration::from_millis(20 * (round % 4))).await;
            store.revoke_subject(&alice, None, Timestamp::now()).await.unwrap()
        };
        let (ends, revoked) = futures::future::join(chains, revoke).await;
        assert!(revoked >= 1, "round {round}: revoked {revoked}");
        for end in ends {
            assert!(
                matches!(end, StoreError::NotFound | StoreError::Contention { .. }),
                "round {round}: a chain ended with {end:?}"
            );
        }
        let issued = issued.lock().unwrap().clone();
        surviving_rotations += issued.len() - ids.len();
        for id in issued.iter().chain([&last_moment]) {
            assert!(
                matches!(store.get(id, Timestamp::now()).await, Err(StoreError::NotFound)),
                "round {round}: a session survived"
            );
            assert!(matches!(
                store.rotate(id, true, None, None, Timestamp::now()).await,
                Err(StoreError::NotFound)
            ));
        }
        assert_eq!(left_in_table(&store, &alice).await, 0, "round {round}");
        let page = store
            .list_by_subject(&alice, 100, None, Timestamp::now())
            .await
            .unwrap();
        assert!(page.sessions.is_empty());
    }
    assert!(
        surviving_rotations > 0,
        "the chains rotated while revokes were under way (they raced)"
    );
}

#[tokio::test]
async fn except_keeps_the_current_session_and_its_rotations_alive() {
    let faults = Faults::default();
    faults.lag_queries();
    let store = store(&faults).await;
    for round in 0..6 {
        let alice = Subject::parse(&format!("alice-{round}")).unwrap();
        let now = Timestamp::now();
        let current = store.create(owned(&alice), None, now).await.unwrap().id;
        let others: Vec<_> = futures::future::join_all((0..4).map(|_| store.create(owned(&alice), None, now)))
            .await
            .into_iter()
            .map(|r| r.unwrap().id)
            .collect();
        // The owner's own session rotates (say, on a privilege change) while the revoke runs.
        let kept = async {
            let mut id = current.clone();
            for _ in 0..5 {
                id = store.rotate(&id, true, None, None, Timestamp::now()).await.unwrap().id;
            }
            id
        };
        // The revoke is polled first, so it reads `except` before the chain's first rotation
        // is sent: an `except` rotated away before that read names no live session and
        // spares nothing (the revoke cannot tell its family from a deleted item).
        let revoke = store.revoke_subject(&alice, Some(&current), Timestamp::now());
        let (revoked, kept) = futures::future::join(revoke, kept).await;
        assert_eq!(revoked.unwrap(), 4, "round {round}");
        for id in &others {
            assert!(matches!(
                store.get(id, Timestamp::now()).await,
                Err(StoreError::NotFound)
            ));
        }
        let alive = store.get(&kept, Timestamp::now()).await.unwrap();
        assert_eq!(alive.subject, Some(alice.clone()));
        let listed = store
            .list_by_subject(&alice, 100, None, Timestamp::now())
            .await
            .unwrap();
        assert_eq!(
            listed.sessions.iter().map(|s| &s.handle).collect::<Vec<_>>(),
            [&alive.family],
            "round {round}: listed by the handle it was created with"
        );
        // The lock is lifted: the kept session rotates on.
        store.rotate(&kept, true, None, None, Timestamp::now()).await.unwrap();
    }
}

#[tokio::test]
async fn a_revoke_that_spares_a_session_waits_for_one_that_spares_none_and_cannot_spare_it_from_it() {
    let store = store(&Faults::default()).await;
    let hurried = hurried(&store);
    let alice = Subject::parse("alice").unwrap();
    let now = Timestamp::now();
    let current = store.create(owned(&alice), None, now).await.unwrap().id;
    let other = store.create(owned(&alice), None, now).await.unwrap().id;
    // "Log out everywhere" (sparing nothing) is under way: it holds the lock, unfinished.
    assert!(matches!(
        hurried.revoke_subject(&alice, None, now).await,
        Err(StoreError::Incomplete { revoked: 0 })
    ));
    // Meanwhile "log out my other sessions" from `current` waits for the lock, in vain:
    // sparing `current`, it cannot take the lock from a revoke that spares nothing.
    assert!(matches!(
        store.revoke_subject(&alice, Some(&current), now).await,
        Err(StoreError::Contention { .. })
    ));
    assert!(
        matches!(
            store.rotate(&current, true, None, None, now).await,
            Err(StoreError::Contention { .. })
        ),
        "the revoke sparing nothing still bars the session's rotations (a 409 to retry)"
    );
    // The revoke sparing nothing, repeated, takes its lock over and finishes: it
    // reaches both sessions and lifts the lock.
    assert_eq!(store.revoke_subject(&alice, None, now).await.unwrap(), 2);
    for id in [&current, &other] {
        assert!(matches!(store.get(id, now).await, Err(StoreError::NotFound)));
    }
    let fresh = store.create(owned(&alice), None, now).await.unwrap();
    store.rotate(&fresh.id, true, None, None, now).await.unwrap();
    // And a revoke sparing a session takes over from one that spares the same.
    let kept = store.create(owned(&alice), None, now).await.unwrap().id;
    let gone = store.create(owned(&alice), None, now).await.unwrap().id;
    assert!(matches!(
        hurried.revoke_subject(&alice, Some(&kept), now).await,
        Err(StoreError::Incomplete { .. })
    ));
    assert_eq!(store.revoke_subject(&alice, Some(&kept), now).await.unwrap(), 2);
    assert!(matches!(store.get(&gone, now).await, Err(StoreError::NotFound)));
    store.rotate(&kept, true, None, None, now).await.unwrap();
}

#[tokio::test]
async fn concurrent_revokes_sparing_one_session_and_none_raced_by_rotations_leave_nothing_alive() {
    let faults = Faults::default();
    faults.lag_queries();
    let store = store(&faults).await;
    for round in 0..8 {
        let alice = Subject::parse(&format!("alice-{round}")).unwrap();
        let now = Timestamp::now();
        let ids = create_owned(&store, &alice, 5, now).await;
        // The first session's chain: the current session of "log out my other sessions".
        let current = Arc::new(Mutex::new(vec![ids[0].clone()]));
        let issued = Arc::new(Mutex::new(ids[1..].to_vec()));
        let chains = futures::future::join_all(ids.iter().enumerate().map(|(i, id)| {
            let log = if i == 0 { current.clone() } else { issued.clone() };
            rotation_chain(&store, id.clone(), log)
        }));
        let everywhere = async {
            tokio::time::sleep(std::time::Duration::from_millis(10 * (round % 3))).await;
            store.revoke_subject(&alice, None, Timestamp::now()).await.unwrap()
        };
        let others = async {
            tokio::time::sleep(std::time::Duration::from_millis(10 * ((round + 1) % 3))).await;
            let spared = current.lock().unwrap().last().cloned().unwrap();
            store.revoke_subject(&alice, Some(&spared), Timestamp::now()).await
        };
        let race = futures::future::join3(chains, everywhere, others);
        // A chain the revokes missed would rotate on for ever.
        let (ends, _, others) = tokio::time::timeout(std::time::Duration::from_secs(60), race)
            .await
            .unwrap_or_else(|_| panic!("round {round}: a rotation chain outlived both revokes"));
        assert!(
            matches!(others, Ok(_) | Err(StoreError::Contention { .. })),
            "round {round}: {others:?}"
        );
        for end in ends {
            assert!(
                matches!(end, StoreError::NotFound | StoreError::Contention { .. }),
                "round {round}: a chain ended with {end:?}"
            );
        }
        let all: Vec<SessionId> = [current, issued]
            .iter()
            .flat_map(|log| log.lock().unwrap().clone())
            .collect();
        for id in &all {
            assert!(
                matches!(store.get(id, Timestamp::now()).await, Err(StoreError::NotFound)),
                "round {round}: a session survived"
            );
        }
        assert_eq!(left_in_table(&store, &alice).await, 0, "round {round}");
    }
}

#[tokio::test]
async fn login_rotation_moves_the_session_to_its_new_owner() {
    let store = store(&Faults::default()).await;
    let (alice, bob) = (Subject::parse("alice").unwrap(), Subject::parse("bob").unwrap());
    let now = Timestamp::now();
    let anonymous = store.create(NewSession::default(), None, now).await.unwrap();
    let logged_in = store
        .rotate(&anonymous.id, true, Some(alice.clone()), None, now)
        .await
        .unwrap();
    assert_eq!(logged_in.session.subject, Some(alice.clone()));
    assert_eq!(logged_in.session.family, anonymous.session.family);
    assert!(matches!(store.get(&anonymous.id, now).await, Err(StoreError::NotFound)));
    let handles = |page: session_store::SubjectPage| page.sessions.into_iter().map(|s| s.handle).collect::<Vec<_>>();
    assert_eq!(
        handles(store.list_by_subject(&alice, 10, None, now).await.unwrap()),
        std::slice::from_ref(&logged_in.session.family)
    );
    // A login as someone else: the old owner's listing no longer shows it.
    let as_bob = store
        .rotate(&logged_in.id, false, Some(bob.clone()), None, now)
        .await
        .unwrap();
    assert!(handles(store.list_by_subject(&alice, 10, None, now).await.unwrap()).is_empty());
    assert_eq!(
        handles(store.list_by_subject(&bob, 10, None, now).await.unwrap()),
        std::slice::from_ref(&as_bob.session.family)
    );
    assert!(as_bob.session.data.is_empty());
    // And "log out everywhere" for bob reaches it.
    assert_eq!(store.revoke_subject(&bob, None, now).await.unwrap(), 1);
    assert!(matches!(store.get(&as_bob.id, now).await, Err(StoreError::NotFound)));
}

#[tokio::test]
async fn revoking_by_handle_reaches_only_that_owners_session() {
    let store = store(&Faults::default()).await;
    let (alice, mallory) = (Subject::parse("alice").unwrap(), Subject::parse("mallory").unwrap());
    let now = Timestamp::now();
    let first = store.create(owned(&alice), None, now).await.unwrap();
    let second = store.create(owned(&alice), None, now).await.unwrap();
    let theirs = store.create(owned(&mallory), None, now).await.unwrap();
    assert!(matches!(
        store.revoke_one(&mallory, &first.session.family, now).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store.get(&first.id, now).await.is_ok(),
        "another owner's handle reaches nothing"
    );
    store.revoke_one(&alice, &first.session.family, now).await.unwrap();
    assert!(matches!(store.get(&first.id, now).await, Err(StoreError::NotFound)));
    assert!(store.get(&second.id, now).await.is_ok());
    assert!(store.get(&theirs.id, now).await.is_ok());
    // Again: the handle names no live session now, so nothing is done (a 404).
    assert!(matches!(
        store.revoke_one(&alice, &first.session.family, now).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        matches!(
            store
                .revoke_one(&alice, &second.session.family, Timestamp(now.0 + 10 * 86_400))
                .await,
            Err(StoreError::NotFound)
        ),
        "an expired session is not revoked"
    );
    let listed = store.list_by_subject(&alice, 10, None, now).await.unwrap();
    assert_eq!(listed.sessions.len(), 1, "the revoked one is not listed");
}

#[tokio::test]
async fn a_revoke_out_of_time_says_so_bars_rotations_and_a_repeat_finishes_it() {
    let store = store(&Faults::default()).await;
    let hurried = hurried(&store);
    let alice = Subject::parse("alice").unwrap();
    let now = Timestamp::now();
    let ids = create_owned(&store, &alice, 3, now).await;
    assert!(matches!(
        hurried.revoke_subject(&alice, None, now).await,
        Err(StoreError::Incomplete { revoked: 0 })
    ));
    assert!(
        matches!(
            store.rotate(&ids[0], true, None, None, now).await,
            Err(StoreError::Contention { .. })
        ),
        "while the unfinished revoke's lock holds, no rotation escapes it (a 409 to retry)"
    );
    assert_eq!(store.revoke_subject(&alice, None, now).await.unwrap(), 3);
    for id in &ids {
        assert!(matches!(store.get(id, now).await, Err(StoreError::NotFound)));
    }
    // Finished, the lock is lifted: the owner's new sessions rotate again.
    let fresh = store.create(owned(&alice), None, now).await.unwrap();
    store.rotate(&fresh.id, true, None, None, now).await.unwrap();
}

#[tokio::test]
async fn a_rotation_that_meets_a_revoke_under_way_waits_and_is_never_a_404_for_a_live_session() {
    let store = store(&Faults::default()).await;
    let hurried = hurried(&store);
    let alice = Subject::parse("alice").unwrap();
    let now = Timestamp::now();
    let covered = create_owned(&store, &alice, 1, now).await;
    // A revoke holds the lock, unfinished; a session created after it began is live.
    assert!(matches!(
        hurried.revoke_subject(&alice, None, now).await,
        Err(StoreError::Incomplete { revoked: 0 })
    ));
    let later = store.create(owned(&alice), None, now).await.unwrap();
    assert!(
        matches!(
            store.rotate(&later.id, true, None, None, now).await,
            Err(StoreError::Contention { .. })
        ),
        "a 409 to retry, not a 404 for a session that reads 200"
    );
    assert!(store.get(&later.id, now).await.is_ok());
    // Its rotation waits for the revoke; the revoke, repeated meanwhile, finishes (it
    // reaches `later` too: it was created before this revoke's read) and lifts the lock.
    let (rotated, revoked) = futures::future::join(store.rotate(&later.id, true, None, None, now), async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        store.revoke_subject(&alice, None, now).await.unwrap()
    })
    .await;
    assert_eq!(revoked, 2, "the covered session and the later one");
    assert!(
        matches!(rotated, Err(StoreError::NotFound)),
        "the rotation waited and found its session revoked: {rotated:?}"
    );
    assert!(matches!(store.get(&covered[0], now).await, Err(StoreError::NotFound)));
    // Once the lock is lifted, a session created since rotates at once.
    let fresh = store.create(owned(&alice), None, now).await.unwrap();
    store.rotate(&fresh.id, true, None, None, now).await.unwrap();
}

#[tokio::test]
async fn revoking_one_session_by_its_listed_handle_reaches_it_after_rotations() {
    let store = store(&Faults::default()).await;
    let alice = Subject::parse("alice").unwrap();
    let now = Timestamp::now();
    let thief = store.create(owned(&alice), None, now).await.unwrap();
    let bystander = store.create(owned(&alice), None, now).await.unwrap();
    let listed = store.list_by_subject(&alice, 10, None, now).await.unwrap().sessions;
    let handle = thief.session.family.clone();
    assert!(
        listed.iter().any(|s| s.handle == handle),
        "the listing names the session by its handle"
    );
    // The thief rotates after the owner read the listing.
    let mut id = thief.id.clone();
    for _ in 0..3 {
        let rotated = store.rotate(&id, true, None, None, now).await.unwrap();
        assert_eq!(rotated.session.family, handle, "a rotation keeps the handle");
        id = rotated.id;
    }
    store.revoke_one(&alice, &handle, now).await.unwrap();
    assert!(
        matches!(store.get(&id, now).await, Err(StoreError::NotFound)),
        "the rotated session is revoked"
    );
    assert!(store.get(&bystander.id, now).await.is_ok());
    assert!(matches!(
        store.revoke_one(&alice, &handle, now).await,
        Err(StoreError::NotFound)
    ));

    // Racing a chain of rotations: the revoke finds the id the session has now.
    for round in 0..5 {
        let session = store.create(owned(&alice), None, now).await.unwrap();
        let handle = session.session.family.clone();
        let issued = Arc::new(Mutex::new(vec![session.id.clone()]));
        let chain = rotation_chain(&store, session.id.clone(), issued.clone());
        let revoke = async {
            tokio::time::sleep(std::time::Duration::from_millis(5 * round)).await;
            store.revoke_one(&alice, &handle, Timestamp::now()).await
        };
        let (end, revoked) =
            tokio::time::timeout(std::time::Duration::from_secs(60), futures::future::join(chain, revoke))
                .await
                .unwrap_or_else(|_| panic!("round {round}: the rotation chain outlived the revoke"));
        assert!(revoked.is_ok(), "round {round}: {revoked:?}");
        assert!(matches!(end, StoreError::NotFound), "round {round}: {end:?}");
        let issued = issued.lock().unwrap().clone();
        for id in &issued {
            assert!(matches!(
                store.get(id, Timestamp::now()).await,
                Err(StoreError::NotFound)
            ));
        }
    }
}
