//! `get_and_touch`, the page view (`GET /sessions/{id}?touch=true`): a read, and a
//! conditional write only when the idle expiry is due to slide. Requests counted
//! and capacity reported by DynamoDB Local (`ReturnConsumedCapacity`).

use std::time::Duration;

use session_store::error::StoreError;
use session_store::store::Lookup;
use session_store::{DynamoStore, NewSession, SessionData, Timestamp};
use session_testkit::{self as testkit, CapacityMeter, Faults, RequestCounter};

/// A store on fresh tables (touch step 60 s) whose requests are counted and metered.
async fn metered_store() -> (DynamoStore, RequestCounter, CapacityMeter) {
    let (counter, meter) = (RequestCounter::default(), CapacityMeter::default());
    let client = aws_sdk_dynamodb::Client::from_conf(
        testkit::local_config()
            .interceptor(counter.clone())
            .interceptor(meter.clone())
            .build(),
    );
    let mut config = testkit::fresh_config(&client).await;
    config.limits.touch_step = 60;
    (DynamoStore::new(client, config), counter, meter)
}

/// A [`metered_store`], a session of about 10 KB on it (idle timeout `idle`), and
/// its creation time.
async fn setup(
    idle: u32,
) -> (
    DynamoStore,
    RequestCounter,
    CapacityMeter,
    session_store::Issued,
    Timestamp,
) {
    let (store, counter, meter) = metered_store().await;
    let now = Timestamp::now();
    let data = SessionData::from_json(&format!(r#"{{"blob":"{}"}}"#, "x".repeat(10_000))).unwrap();
    let session = NewSession {
        data,
        idle_timeout_seconds: Some(idle),
        absolute_timeout_seconds: Some(86_400),
        ..Default::default()
    };
    let issued = store.create(session, None, now).await.unwrap();
    counter.take();
    meter.take();
    (store, counter, meter, issued, now)
}

fn live(found: Lookup) -> session_store::Session {
    match found {
        Lookup::Live(session) => *session,
        Lookup::Expired => panic!("expected a live session"),
    }
}

#[tokio::test]
async fn a_page_view_within_the_touch_step_is_one_read_and_writes_nothing() {
    let (store, counter, meter, issued, now) = setup(600).await;
    let viewed = live(store.get_and_touch(&issued.id, now.plus(30)).await.unwrap());
    assert_eq!(viewed, issued.session, "nothing slid within the step");
    assert_eq!(counter.take(), 1, "one GetItem");
    let used = meter.take();
    assert_eq!((used.table_write, used.index_write), (0.0, 0.0), "{used:?}");
    assert!(used.table_read > 0.0, "a read, strongly consistent: {used:?}");
}

#[tokio::test]
async fn a_page_view_past_the_step_slides_the_expiry_with_one_conditional_write() {
    let (store, counter, meter, issued, now) = setup(600).await;
    let viewed = live(store.get_and_touch(&issued.id, now.plus(90)).await.unwrap());
    assert_eq!((viewed.expires_at, viewed.updated_at), (now.plus(690), now.plus(90)));
    assert_eq!(counter.take(), 2, "GetItem, then UpdateItem");
    assert!(meter.take().table_write > 0.0);
    let stored = store.get(&issued.id, now.plus(90)).await.unwrap();
    assert_eq!(stored.expires_at, now.plus(690), "the answer shows what is stored");
}

#[tokio::test]
async fn a_page_view_slides_a_session_about_to_expire_even_within_the_step() {
    let (store, counter, _, issued, now) = setup(100).await;
    let viewed = live(store.get_and_touch(&issued.id, now.plus(50)).await.unwrap());
    assert_eq!(
        viewed.expires_at,
        now.plus(150),
        "it would have expired within the step"
    );
    assert_eq!(counter.take(), 2);
}

#[tokio::test]
async fn a_page_view_of_an_expired_session_finds_it_expired_and_writes_nothing() {
    let (store, counter, meter, issued, now) = setup(600).await;
    assert_eq!(
        store.get_and_touch(&issued.id, now.plus(601)).await.unwrap(),
        Lookup::Expired
    );
    assert_eq!(counter.take(), 1);
    assert_eq!(meter.take().table_write, 0.0);
    let raw = testkit::raw_item(&store, &issued.id)
        .await
        .expect("still stored until swept");
    assert_eq!(
        raw[session_store::item::attr::EXPIRES_AT].as_n().unwrap(),
        &now.plus(600).0.to_string()
    );
}

#[tokio::test]
async fn a_session_deleted_between_the_read_and_the_slide_is_not_brought_back() {
    let (plain, _, _, issued, now) = setup(600).await;
    let faults = Faults::default();
    let slow = DynamoStore::new(testkit::faulty_client(&faults), plain.config().clone());
    // The slide waits; the session is deleted meanwhile (a logout on another instance).
    faults.delay("UpdateItem", Duration::from_millis(500));
    let id = issued.id.clone();
    let view = tokio::spawn(async move { slow.get_and_touch(&id, now.plus(90)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    plain.delete(&issued.id).await.unwrap();
    assert!(matches!(view.await.unwrap(), Err(StoreError::NotFound)));
    assert!(
        testkit::raw_item(&plain, &issued.id).await.is_none(),
        "never resurrected"
    );
}

#[tokio::test]
async fn a_page_view_in_the_last_idle_period_writes_once_in_the_capped_form() {
    // Idle 600 s, absolute 1000 s: past 400 s the expiry is the absolute one.
    let (store, counter, meter) = metered_store().await;
    let now = Timestamp::now();
    let capped = NewSession {
        idle_timeout_seconds: Some(600),
        absolute_timeout_seconds: Some(1000),
        ..Default::default()
    };
    let issued = store.create(capped, None, now).await.unwrap();
    store.touch(&issued.id, now.plus(350)).await.unwrap();
    counter.take();
    meter.take();
    let viewed = live(store.get_and_touch(&issued.id, now.plus(459)).await.unwrap());
    assert_eq!(viewed.expires_at, now.plus(1000));
    assert_eq!(viewed.updated_at, now.plus(459));
    assert_eq!(
        counter.take(),
        2,
        "GetItem, then the capped UpdateItem: no failed sliding attempt"
    );
}
