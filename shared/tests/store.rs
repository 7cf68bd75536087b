//! The store against DynamoDB Local: behaviour and requests per operation.

use session_store::error::StoreError;
use session_store::item::attr;
use session_store::{DataPatch, DynamoStore, NewSession, SessionData, Subject, Timestamp};
use session_testkit::{self as testkit, RequestCounter};

fn data(json: &str) -> SessionData {
    SessionData::from_json(json).unwrap()
}

fn patch(json: &str) -> DataPatch {
    serde_json::from_str(json).unwrap()
}

async fn setup() -> (DynamoStore, RequestCounter, Timestamp) {
    let (store, counter) = testkit::store(|c| c.limits.touch_step = 60).await;
    (store, counter, Timestamp::now())
}

fn new(idle: u32, absolute: u32) -> NewSession {
    NewSession {
        idle_timeout_seconds: Some(idle),
        absolute_timeout_seconds: Some(absolute),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_created_session_reads_back_at_once_with_one_request_each() {
    let (store, counter, now) = setup().await;
    let request = NewSession {
        subject: Some(Subject::parse("alice").unwrap()),
        data: data(r#"{"":1,"x":1.0,"n":123456789012345678901}"#),
        ..new(600, 3600)
    };
    let created = store.create(request, None, now).await.unwrap();
    assert_eq!(
        counter.take(),
        1,
        "create of an owned session is one TransactWriteItems"
    );
    let read = store.get(&created.id, now).await.unwrap();
    assert_eq!(counter.take(), 1, "get is one GetItem");
    assert_eq!(read, created.session);
    assert_eq!(
        serde_json::to_string(&read.data).unwrap(),
        r#"{"":1,"x":1.0,"n":123456789012345678901}"#
    );
}

#[tokio::test]
async fn top_level_key_order_is_kept_by_every_write() {
    let (store, counter, now) = setup().await;
    let text = |data: &SessionData| serde_json::to_string(data).unwrap();
    let request = NewSession {
        data: data(r#"{"z":1,"a":2,"m":3}"#),
        ..new(600, 3600)
    };
    let created = store.create(request, None, now).await.unwrap();
    assert_eq!(
        text(&store.get(&created.id, now).await.unwrap().data),
        r#"{"z":1,"a":2,"m":3}"#
    );
    counter.take();
    // Set keys keep their places, new ones come last, a removed key re-added comes last.
    for (patch_json, expected) in [
        (r#"{"a":20,"b":4}"#, r#"{"z":1,"a":20,"m":3,"b":4}"#),
        (r#"{"z":null,"m":30}"#, r#"{"a":20,"m":30,"b":4}"#),
        (r#"{"z":5,"a":null}"#, r#"{"m":30,"b":4,"z":5}"#),
    ] {
        let merged = store.merge(&created.id, patch(patch_json), None, now).await.unwrap();
        assert_eq!(counter.take(), 2, "{patch_json}: a GetItem and a PutItem");
        assert_eq!(text(&merged.data), expected, "{patch_json}: as written");
        assert_eq!(
            text(&store.get(&created.id, now).await.unwrap().data),
            expected,
            "{patch_json}: read"
        );
        counter.take();
    }
    let replaced = store
        .replace(&created.id, data(r#"{"y":1,"c":{"q":1,"b":2},"x":3}"#), None, None, now)
        .await
        .unwrap();
    assert_eq!(text(&replaced.data), r#"{"y":1,"c":{"q":1,"b":2},"x":3}"#);
    // An object merged into an object keeps the inner members' order too.
    store
        .merge(&created.id, patch(r#"{"c":{"a":3},"w":0}"#), None, now)
        .await
        .unwrap();
    let rotated = store.rotate(&created.id, true, None, None, now).await.unwrap();
    let expected = r#"{"y":1,"c":{"q":1,"b":2,"a":3},"x":3,"w":0}"#;
    assert_eq!(text(&rotated.session.data), expected);
    assert_eq!(text(&store.get(&rotated.id, now).await.unwrap().data), expected);
}

#[tokio::test]
async fn expired_sessions_are_not_found_before_ttl_deletes_them() {
    let (store, _, now) = setup().await;
    let s = store.create(new(60, 3600), None, now).await.unwrap();
    assert!(store.get(&s.id, now.plus(60)).await.is_ok());
    assert!(matches!(
        store.get(&s.id, now.plus(61)).await,
        Err(StoreError::NotFound)
    ));
    let absolute = store.create(new(600, 100), None, now).await.unwrap();
    store.touch(&absolute.id, now.plus(90)).await.unwrap();
    assert!(
        matches!(store.get(&absolute.id, now.plus(101)).await, Err(StoreError::NotFound)),
        "absolute expiry holds despite activity"
    );
}

#[tokio::test]
async fn replace_and_merge_read_then_write_once_slide_the_expiry_and_bump_the_version() {
    let (store, counter, now) = setup().await;
    let s = store
        .create(
            NewSession {
                data: data(r#"{"a":1,"b":2}"#),
                ..new(600, 3600)
            },
            None,
            now,
        )
        .await
        .unwrap();
    counter.take();
    let replaced = store
        .replace(&s.id, data(r#"{"c":3}"#), None, Some(&[1]), now.plus(10))
        .await
        .unwrap();
    assert_eq!(counter.take(), 2, "a GetItem and a conditional PutItem");
    assert_eq!(
        (replaced.version, replaced.expires_at, replaced.updated_at),
        (2, now.plus(610), now.plus(10))
    );
    let merged = store
        .merge(&s.id, patch(r#"{"c":null,"d":{"e":[1]}}"#), Some(&[2]), now.plus(20))
        .await
        .unwrap();
    assert_eq!(counter.take(), 2);
    assert_eq!(serde_json::to_string(&merged.data).unwrap(), r#"{"d":{"e":[1]}}"#);
    assert_eq!((merged.version, merged.expires_at), (3, now.plus(620)));
    assert_eq!(store.get(&s.id, now.plus(20)).await.unwrap(), merged);
}

#[tokio::test]
async fn a_stale_if_match_is_refused_and_changes_nothing() {
    let (store, _, now) = setup().await;
    let s = store
        .create(
            NewSession {
                data: data(r#"{"a":1}"#),
                ..new(600, 3600)
            },
            None,
            now,
        )
        .await
        .unwrap();
    store
        .replace(&s.id, data(r#"{"a":2}"#), None, Some(&[1]), now)
        .await
        .unwrap();
    let stale = store.merge(&s.id, patch(r#"{"a":3}"#), Some(&[1]), now).await;
    assert!(
        matches!(stale, Err(StoreError::VersionMismatch { current: 2 })),
        "{stale:?}"
    );
    assert_eq!(store.get(&s.id, now).await.unwrap().data, data(r#"{"a":2}"#));
}

#[tokio::test]
async fn writes_never_bring_back_a_deleted_or_expired_session() {
    let (store, _, now) = setup().await;
    let s = store.create(new(60, 3600), None, now).await.unwrap();
    store.delete(&s.id).await.unwrap();
    assert!(matches!(
        store.replace(&s.id, data("{}"), None, None, now).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.merge(&s.id, patch(r#"{"a":1}"#), None, now).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(store.touch(&s.id, now).await, Err(StoreError::NotFound)));
    assert!(matches!(
        store.rotate(&s.id, true, None, None, now).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        testkit::raw_item(&store, &s.id).await.is_none(),
        "no write recreated the item"
    );

    let expired = store.create(new(60, 3600), None, now).await.unwrap();
    let later = now.plus(61);
    assert!(matches!(
        store.replace(&expired.id, data("{}"), Some(600), None, later).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.touch(&expired.id, later).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.merge(&expired.id, patch("{}"), None, later).await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn touches_within_the_step_are_one_request_and_change_nothing() {
    let (store, counter, now) = setup().await;
    let s = store.create(new(600, 3600), None, now).await.unwrap();
    counter.take();
    let skipped = store.touch(&s.id, now.plus(30)).await.unwrap();
    assert_eq!(counter.take(), 1);
    assert_eq!(skipped, s.session, "within the 60 s step nothing moves");
    let moved = store.touch(&s.id, now.plus(90)).await.unwrap();
    assert_eq!(counter.take(), 1);
    assert_eq!(
        (moved.expires_at, moved.updated_at, moved.version),
        (now.plus(690), now.plus(90), 1)
    );
}

#[tokio::test]
async fn activity_near_the_absolute_expiry_caps_the_expiry_there() {
    let (store, counter, now) = setup().await;
    let s = store.create(new(600, 1000), None, now).await.unwrap();
    counter.take();
    let capped = store.touch(&s.id, now.plus(500)).await.unwrap();
    assert_eq!(capped.expires_at, now.plus(1000));
    assert_eq!(counter.take(), 2, "the one-time cap costs a second write");
    let again = store.touch(&s.id, now.plus(800)).await.unwrap();
    assert_eq!(again.expires_at, now.plus(1000));
    assert_eq!(
        counter.take(),
        1,
        "once capped, a touch is one request that writes nothing"
    );
    let replaced = store
        .replace(&s.id, data(r#"{"k":1}"#), None, None, now.plus(900))
        .await
        .unwrap();
    assert_eq!((replaced.expires_at, replaced.version), (now.plus(1000), 2));
    let shorter = store
        .replace(&s.id, data("{}"), Some(30), None, now.plus(900))
        .await
        .unwrap();
    assert_eq!((shorter.expires_at, shorter.idle_timeout_seconds), (now.plus(930), 30));
}

#[tokio::test]
async fn data_over_the_limit_is_refused_even_when_merged_in_pieces() {
    let (store, _) = testkit::store(|c| c.limits.max_data_bytes = 100).await;
    let now = Timestamp::now();
    let s = store.create(new(600, 3600), None, now).await.unwrap();
    let forty = format!(r#"{{"a":"{}"}}"#, "x".repeat(37));
    // Rewriting one key keeps the real size at 42 bytes; the store must not refuse it.
    for _ in 0..5 {
        store.merge(&s.id, patch(&forty), None, now).await.unwrap();
    }
    let too_big = format!(r#"{{"b":"{}","c":"{}"}}"#, "y".repeat(37), "z".repeat(37));
    let err = store.merge(&s.id, patch(&too_big), None, now).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid(session_store::ValidationError::DataTooLarge { limit: 100, .. })
        ),
        "{err:?}"
    );
    let big = data(&format!(r#"{{"a":"{}"}}"#, "x".repeat(200)));
    assert!(matches!(
        store.replace(&s.id, big, None, None, now).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.get(&s.id, now).await.unwrap().data, data(&forty));
}

#[tokio::test]
async fn rotation_is_atomic_keeps_owner_data_and_absolute_expiry() {
    let (store, counter, now) = setup().await;
    let request = NewSession {
        subject: Some(Subject::parse("bob").unwrap()),
        data: data(r#"{"cart":[1]}"#),
        ..new(600, 3600)
    };
    let old = store.create(request, None, now).await.unwrap();
    counter.take();
    let new = store.rotate(&old.id, true, None, None, now.plus(5)).await.unwrap();
    assert_eq!(counter.take(), 2, "a consistent read, then one TransactWriteItems");
    assert_ne!(new.id, old.id);
    let (new_id, new, old_id, old) = (new.id, new.session, old.id, old.session);
    assert_eq!(
        (
            &new.subject,
            &new.data,
            new.absolute_expires_at,
            new.created_at,
            &new.family
        ),
        (
            &old.subject,
            &old.data,
            old.absolute_expires_at,
            old.created_at,
            &old.family
        )
    );
    assert!(matches!(
        store.get(&old_id, now.plus(5)).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.get(&new_id, now.plus(5)).await.unwrap(), new);
    let fresh = store.rotate(&new_id, false, None, None, now.plus(6)).await.unwrap();
    assert!(fresh.session.data.is_empty());
}

#[tokio::test]
async fn concurrent_rotations_of_one_session_leave_exactly_one_successor() {
    let (store, _, now) = setup().await;
    let old = store.create(new(600, 3600), None, now).await.unwrap();
    let results = futures::future::join_all((0..8).map(|_| store.rotate(&old.id, true, None, None, now))).await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(StoreError::NotFound)))
    );
}

#[tokio::test]
async fn delete_is_idempotent() {
    let (store, counter, now) = setup().await;
    let s = store.create(new(600, 3600), None, now).await.unwrap();
    counter.take();
    store.delete(&s.id).await.unwrap();
    store.delete(&s.id).await.unwrap();
    assert_eq!(counter.take(), 2);
    assert!(matches!(store.get(&s.id, now).await, Err(StoreError::NotFound)));
}

#[tokio::test]
async fn an_owners_live_sessions_list_in_pages_and_revoke_together() {
    let (store, _, now) = setup().await;
    let alice = Subject::parse("alice@example.com").unwrap();
    let (mut ids, mut handles) = (Vec::new(), Vec::new());
    for i in 0..5 {
        let request = NewSession {
            subject: Some(alice.clone()),
            ..new(600, 3600)
        };
        let issued = store.create(request, None, Timestamp(now.0 + i)).await.unwrap();
        handles.push(issued.session.family);
        ids.push(issued.id);
    }
    let expired = store
        .create(
            NewSession {
                subject: Some(alice.clone()),
                ..new(1, 3600)
            },
            None,
            now,
        )
        .await
        .unwrap();
    store
        .create(
            NewSession {
                subject: Some(Subject::parse("mallory").unwrap()),
                ..new(600, 3600)
            },
            None,
            now,
        )
        .await
        .unwrap();
    let later = now.plus(10);
    let (mut listed, mut cursor) = (Vec::new(), None);
    loop {
        let page = store
            .list_by_subject(&alice, 2, cursor.as_deref(), later)
            .await
            .unwrap();
        listed.extend(page.sessions.into_iter().map(|s| s.handle));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(listed, handles, "live sessions, oldest first, the expired one left out");
    let bad = store.list_by_subject(&alice, 2, Some("not-a-cursor"), later).await;
    assert!(matches!(
        bad,
        Err(StoreError::Invalid(session_store::ValidationError::Cursor))
    ));

    let revoked = store.revoke_subject(&alice, Some(&ids[0]), later).await.unwrap();
    assert_eq!(revoked, 4, "the live sessions but the one kept");
    assert!(store.get(&ids[0], later).await.is_ok());
    for id in &ids[1..] {
        assert!(matches!(store.get(id, later).await, Err(StoreError::NotFound)));
    }
    assert!(
        matches!(store.get(&expired.id, now).await, Err(StoreError::NotFound)),
        "expired ones are deleted too"
    );
    let page = store.list_by_subject(&alice, 10, None, later).await.unwrap();
    assert_eq!(page.sessions.len(), 1);
}

#[tokio::test]
async fn items_carry_a_numeric_ttl_and_an_expiry_bucket_at_or_before_it() {
    let (store, _, now) = setup().await;
    let s = store.create(new(600, 3600), None, now).await.unwrap();
    store.touch(&s.id, now.plus(120)).await.unwrap();
    let item = testkit::raw_item(&store, &s.id).await.unwrap();
    let n = |a: &str| item[a].as_n().unwrap().parse::<i64>().unwrap();
    assert_eq!(n(attr::EXPIRES_AT), now.plus(720).0);
    assert!(n(attr::EXPIRY_BUCKET) <= n(attr::EXPIRES_AT));
    assert_eq!(n(attr::EXPIRY_BUCKET) % store.config().expiry_bucket_seconds, 0);
    assert!((0..i64::from(store.config().expiry_shards)).contains(&n(attr::EXPIRY_SHARD)));
}

#[tokio::test]
async fn past_the_last_idle_period_data_writes_cap_the_expiry_and_concurrent_merges_all_land() {
    let (store, counter, now) = setup().await;
    // Idle 600 s of 700: capped from the 100th second. Idle 1000 s of 500: from the start.
    for (idle, absolute, at) in [(600, 700, 200), (1000, 500, 10)] {
        let s = store.create(new(idle, absolute), None, now).await.unwrap();
        assert_eq!(s.session.expires_at, now.plus(idle.min(absolute)), "created capped");
        let t = now.plus(at);
        counter.take();
        let merged = store.merge(&s.id, patch(r#"{"a":1}"#), None, t).await.unwrap();
        assert_eq!(counter.take(), 2, "a GetItem and a PutItem");
        assert_eq!((merged.expires_at, merged.version), (now.plus(absolute), 2));
        let replaced = store.replace(&s.id, data(r#"{"a":2}"#), None, None, t).await.unwrap();
        assert_eq!(counter.take(), 2);
        assert_eq!((replaced.expires_at, replaced.version), (now.plus(absolute), 3));
        // Concurrent merges of different keys without If-Match: each lands once. A merge
        // that lost its version race too often answers Contention (a 409), which the
        // clients retry, as this does.
        let merges = futures::future::join_all((0..20).map(|i| {
            let (store, id) = (&store, &s.id);
            async move {
                let mut conflicts = 0;
                loop {
                    match store.merge(id, patch(&format!(r#"{{"k{i}":{i}}}"#)), None, t).await {
                        Err(StoreError::Contention { .. }) if conflicts < 20 => conflicts += 1,
                        other => return (other, conflicts),
                    }
                }
            }
        }))
        .await;
        for (result, _) in &merges {
            assert!(result.is_ok(), "{result:?}");
        }
        let after = store.get(&s.id, t).await.unwrap();
        let keys = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(after.data.as_json())
            .unwrap()
            .len();
        assert_eq!((after.version, keys), (23, 21), "idle {idle}, absolute {absolute}");
        assert_eq!(after.expires_at, now.plus(absolute));
    }
}

#[tokio::test]
async fn a_touch_writes_only_the_expiry_and_is_never_refused_for_size() {
    let (store, counter, now) = setup().await;
    let s = store
        .create(
            NewSession {
                data: data(&format!(r#"{{"blob":"{}"}}"#, "x".repeat(1000))),
                ..new(600, 3600)
            },
            None,
            now,
        )
        .await
        .unwrap();
    let before = testkit::raw_item(&store, &s.id).await.unwrap();
    // The limit lowered below the session's size after it was stored.
    let lowered = DynamoStore::new(store.client().clone(), {
        let mut config = store.config().clone();
        config.limits.max_data_bytes = 100;
        config
    });
    counter.take();
    let touched = lowered.touch(&s.id, now.plus(120)).await.unwrap();
    assert_eq!(counter.take(), 1, "one UpdateItem");
    assert_eq!(
        (touched.expires_at, touched.data),
        (now.plus(720), s.session.data.clone())
    );
    let after = testkit::raw_item(&store, &s.id).await.unwrap();
    assert_eq!(
        after[attr::DOCUMENT],
        before[attr::DOCUMENT],
        "the document is not rewritten"
    );
    let page_view = lowered.get_and_touch(&s.id, now.plus(240)).await.unwrap();
    assert!(
        matches!(&page_view, session_store::store::Lookup::Live(v) if v.expires_at == now.plus(840)),
        "{page_view:?}"
    );
    assert!(matches!(
        lowered.merge(&s.id, patch(r#"{"more":1}"#), None, now.plus(240)).await,
        Err(StoreError::Invalid(session_store::ValidationError::DataTooLarge {
            limit: 100,
            ..
        }))
    ));
}

#[tokio::test]
async fn a_session_stored_before_data_was_sealed_reads_as_gone_and_is_never_slid() {
    let (store, _, now) = setup().await;
    let s = store.create(new(600, 3600), None, now).await.unwrap();
    // The item as a build before sealing wrote it: a plaintext map, no document.
    let mut item = testkit::raw_item(&store, &s.id).await.unwrap();
    item.remove(attr::DOCUMENT);
    item.insert(
        "data".into(),
        aws_sdk_dynamodb::types::AttributeValue::M(
            [(
                "_theme".to_owned(),
                aws_sdk_dynamodb::types::AttributeValue::S("\"dark\"".into()),
            )]
            .into(),
        ),
    );
    testkit::put_raw_item(&store, item.clone()).await;
    let later = now.plus(120);
    assert!(matches!(store.get(&s.id, later).await, Err(StoreError::NotFound)));
    assert!(matches!(store.touch(&s.id, later).await, Err(StoreError::NotFound)));
    assert!(matches!(
        store.merge(&s.id, patch(r#"{"a":1}"#), None, later).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.replace(&s.id, data("{}"), None, None, later).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.rotate(&s.id, true, None, None, later).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        testkit::raw_item(&store, &s.id).await.unwrap(),
        item,
        "nothing was written"
    );
    // A rotation that keeps no data needs none: it moves the session onto the sealed format.
    let fresh = store.rotate(&s.id, false, None, None, later).await.unwrap();
    assert!(store.get(&fresh.id, later).await.unwrap().data.is_empty());
}

#[tokio::test]
async fn a_document_moved_to_another_item_or_altered_in_place_is_never_served() {
    let (store, _, now) = setup().await;
    let create = |json: &str| {
        store.create(
            NewSession {
                data: data(json),
                ..new(600, 3600)
            },
            None,
            now,
        )
    };
    let (victim, attacker) = (
        create(r#"{"role":"admin"}"#).await.unwrap(),
        create(r#"{"role":"guest"}"#).await.unwrap(),
    );
    // The victim's document copied into the attacker's item: sealed under another
    // id's key (and bound to another handle), it does not open.
    let victims = testkit::raw_item(&store, &victim.id).await.unwrap();
    let mut moved = testkit::raw_item(&store, &attacker.id).await.unwrap();
    moved.insert(attr::DOCUMENT.into(), victims[attr::DOCUMENT].clone());
    testkit::put_raw_item(&store, moved).await;
    // The victim's document altered in place: one bit of its ciphertext.
    testkit::alter_document(&store, &victim.id).await;
    for id in [&attacker.id, &victim.id] {
        assert!(matches!(store.get(id, now).await, Err(StoreError::Unreadable(_))));
        assert!(matches!(
            store.merge(id, patch(r#"{"role":"admin"}"#), None, now).await,
            Err(StoreError::Unreadable(_))
        ));
        assert!(matches!(
            store.rotate(id, true, None, None, now).await,
            Err(StoreError::Unreadable(_))
        ));
    }
}
