//! Every request writes one Embedded Metric Format document to the log: requests,
//! client and server errors and latency by route and for the function; what it did
//! to sessions (created, rotated, revoked by cause, expired reads); permanent
//! faults and unavailability; and the DynamoDB retries and throttled requests it
//! took. Each document is checked against the format's schema (`testkit::emf`).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use lambda_support::metrics::Metrics;
use serde_json::Value;
use session_store::DynamoStore;
use session_testkit::emf::{self, Captured};
use session_testkit::{self as testkit, Faults, ManualClock};

const NAMESPACE: &str = "SessionService/metrics-test";

/// `app` with its metrics written to a capture.
fn capturing(mut app: api::App) -> (api::App, Captured) {
    let captured = Captured::default();
    app.metrics = Metrics::new(NAMESPACE, "api").with_sink(captured.sink());
    (app, captured)
}

/// The one document the last request wrote.
fn one(captured: &Captured) -> Value {
    let mut documents = captured.take();
    assert_eq!(documents.len(), 1, "one document per request: {documents:?}");
    documents.remove(0)
}

/// `document`'s value of `name` for the function (no other dimension).
fn of_function(document: &Value, name: &str) -> Option<f64> {
    emf::value(document, name, &[("Function", "api")])
}

/// Asserts `document` counts one request of `route` with `status`'s error class.
fn assert_request(document: &Value, route: &str, status: u16) {
    let (client, server) = (f64::from((400..500).contains(&status)), f64::from(status >= 500));
    for dimensions in [[("Route", route)], [("Function", "api")]] {
        assert_eq!(
            emf::value(document, "Requests", &dimensions),
            Some(1.0),
            "{dimensions:?} {document}"
        );
        assert_eq!(
            emf::value(document, "ClientErrors", &dimensions),
            Some(client),
            "{document}"
        );
        assert_eq!(
            emf::value(document, "ServerErrors", &dimensions),
            Some(server),
            "{document}"
        );
        let wanted: BTreeMap<String, String> = dimensions.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        let latency = emf::data(document)
            .into_iter()
            .find(|d| d.name == "Latency" && d.dimensions == wanted)
            .unwrap_or_else(|| panic!("no Latency for {dimensions:?}: {document}"));
        assert_eq!(latency.unit, "Milliseconds");
        assert!(latency.value >= 0.0, "{document}");
    }
    assert!(
        emf::data(document).iter().all(|d| d.namespace == NAMESPACE),
        "{document}"
    );
}

#[tokio::test]
async fn each_request_counts_its_route_and_what_it_did_to_sessions() {
    let (app, _, clock) = app().await;
    let (app, captured) = capturing(app);

    let created = call(&app, &event("create-session")).await;
    assert_eq!(created.status, 201);
    let id = created.json["id"].as_str().unwrap().to_owned();
    let document = one(&captured);
    assert_request(&document, "POST /sessions", 201);
    assert_eq!(of_function(&document, "SessionsCreated"), Some(1.0));
    assert_eq!(of_function(&document, "DynamoDbRetries"), Some(0.0));
    assert_eq!(of_function(&document, "DynamoDbThrottles"), Some(0.0));
    assert_eq!(of_function(&document, "PermanentFaults"), Some(0.0));
    assert_eq!(of_function(&document, "Unavailable"), Some(0.0));
    // Ids are bearer secrets: no document holds one.
    assert!(!document.to_string().contains(&id), "{document}");
    // A create retried with its Idempotency-Key is answered from the record: one session, counted once.
    let keyed = with_header(event("create-session"), "idempotency-key", "\"metrics-test-key\"");
    for created in [Some(1.0), None] {
        assert_eq!(call(&app, &keyed).await.status, 201);
        assert_eq!(of_function(&one(&captured), "SessionsCreated"), created);
    }

    assert_eq!(call(&app, &event_for("get-session", &id)).await.status, 200);
    let document = one(&captured);
    assert_request(&document, "GET /sessions/{id}", 200);
    assert_eq!(
        of_function(&document, "SessionsCreated"),
        None,
        "a read creates nothing"
    );
    assert_eq!(of_function(&document, "ExpiredReads"), None);

    let rotated = call(&app, &event_for("rotate-session", &id)).await;
    assert_eq!(rotated.status, 201, "{}", rotated.json);
    let document = one(&captured);
    assert_request(&document, "POST /sessions/{id}/rotate", 201);
    assert_eq!(of_function(&document, "SessionsRotated"), Some(1.0));
    let id = rotated.json["id"].as_str().unwrap().to_owned();

    assert_eq!(call(&app, &event_for("delete-session", &id)).await.status, 204);
    let document = one(&captured);
    assert_request(&document, "DELETE /sessions/{id}", 204);
    assert_eq!(
        emf::value(&document, "SessionsRevoked", &[("Cause", "logout")]),
        Some(1.0)
    );

    // An owner's sessions revoked by handle, then all at once.
    let revoke_sample = event("revoke-subject-session");
    let sample_handle = revoke_sample["pathParameters"]["handle"].as_str().unwrap().to_owned();
    let one_of_them = call(&app, &event("create-session")).await;
    let handle = one_of_them.json["handle"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        assert_eq!(call(&app, &event("create-session")).await.status, 201);
    }
    captured.take();
    let by_handle: Value = serde_json::from_str(&revoke_sample.to_string().replace(&sample_handle, &handle)).unwrap();
    assert_eq!(call(&app, &by_handle).await.status, 204);
    let document = one(&captured);
    assert_request(&document, "DELETE /subjects/{subject}/sessions/{handle}", 204);
    assert_eq!(
        emf::value(&document, "SessionsRevoked", &[("Cause", "revoke_one")]),
        Some(1.0)
    );
    let everywhere = call(&app, &event("revoke-subject-sessions")).await;
    // Two created for this, and the one the idempotent create made.
    assert_eq!((everywhere.status, &everywhere.json["revoked"]), (200, &Value::from(3)));
    let document = one(&captured);
    assert_request(&document, "DELETE /subjects/{subject}/sessions", 200);
    assert_eq!(
        emf::value(&document, "SessionsRevoked", &[("Cause", "revoke_all")]),
        Some(3.0)
    );

    // A session read after it expired, before the sweep removed it: an expired read.
    let expiring = create(&app, r#"{"idle_timeout_seconds": 60}"#).await;
    captured.take();
    clock.advance(61);
    assert_eq!(call(&app, &event_for("get-session", &expiring)).await.status, 404);
    let document = one(&captured);
    assert_request(&document, "GET /sessions/{id}", 404);
    assert_eq!(of_function(&document, "ExpiredReads"), Some(1.0));
    // A session that never existed is not one.
    assert_eq!(call(&app, &event("get-session")).await.status, 404);
    assert_eq!(of_function(&one(&captured), "ExpiredReads"), None);

    // Bad input and unknown paths: client errors, under the route or "-".
    let bad = with_body(event("create-session"), "{", None);
    assert_eq!(call(&app, &bad).await.status, 400);
    assert_request(&one(&captured), "POST /sessions", 400);
    let mut nowhere = event("health");
    nowhere["rawPath"] = Value::from("/nowhere");
    assert_eq!(call(&app, &nowhere).await.status, 404);
    assert_request(&one(&captured), "-", 404);
}

#[tokio::test]
async fn dynamodb_throttles_and_retries_and_failures_are_counted_by_kind() {
    let (plain, _) = testkit::store(|_| {}).await;
    let faults = Faults::default();
    let metrics = Metrics::new(NAMESPACE, "api");
    let counted = testkit::faulty_client_counted(&faults, &metrics);
    let captured = Captured::default();
    let app = api::App {
        clock: Arc::new(ManualClock::new()),
        metrics: metrics.with_sink(captured.sink()),
        ..api::App::new(DynamoStore::new(counted, plain.config().clone()))
    };
    let id = create(&app, "{}").await;
    captured.take();

    // One throttled attempt, retried by the SDK: the read succeeds and says what it took.
    faults.throttle("GetItem", "", 1);
    assert_eq!(call(&app, &event_for("get-session", &id)).await.status, 200);
    let document = one(&captured);
    assert_eq!(of_function(&document, "DynamoDbThrottles"), Some(1.0), "{document}");
    assert_eq!(of_function(&document, "DynamoDbRetries"), Some(1.0), "{document}");
    assert_eq!(of_function(&document, "Unavailable"), Some(0.0));

    // Throttled on every attempt: a 503, counted as unavailable, every attempt a throttle.
    faults.throttle("GetItem", "", u32::MAX);
    assert_eq!(call(&app, &event_for("get-session", &id)).await.status, 503);
    let document = one(&captured);
    assert_request(&document, "GET /sessions/{id}", 503);
    assert_eq!(of_function(&document, "Unavailable"), Some(1.0));
    assert_eq!(of_function(&document, "PermanentFaults"), Some(0.0));
    let throttles = of_function(&document, "DynamoDbThrottles").unwrap();
    assert!(throttles >= 2.0, "the SDK retried: {document}");
    assert_eq!(
        of_function(&document, "DynamoDbRetries"),
        Some(throttles - 1.0),
        "{document}"
    );

    // A transaction (an owned create) cancelled because a part was throttled: a 503, counted as a throttle.
    faults.clear();
    faults.cancel_transactions("", u32::MAX, &["ThrottlingError", "None"]);
    assert_eq!(call(&app, &event("create-session")).await.status, 503);
    let document = one(&captured);
    assert_eq!(of_function(&document, "Unavailable"), Some(1.0), "{document}");
    assert!(
        of_function(&document, "DynamoDbThrottles").unwrap() >= 1.0,
        "{document}"
    );
    assert_eq!(of_function(&document, "SessionsCreated"), None);

    // A denied read: a permanent fault (500), not retried.
    faults.clear();
    faults.fail("GetItem", "", u32::MAX, 400, "AccessDeniedException");
    assert_eq!(call(&app, &event_for("get-session", &id)).await.status, 500);
    let document = one(&captured);
    assert_request(&document, "GET /sessions/{id}", 500);
    assert_eq!(of_function(&document, "PermanentFaults"), Some(1.0));
    assert_eq!(of_function(&document, "Unavailable"), Some(0.0));
    assert_eq!(of_function(&document, "DynamoDbThrottles"), Some(0.0));
    assert_eq!(of_function(&document, "DynamoDbRetries"), Some(0.0));
}

/// An app whose store caps each subject at `max` live sessions under `policy`.
async fn capped_app(max: u32, policy: session_store::config::CapPolicy) -> (api::App, Captured) {
    let (app, _, _) = app().await;
    let mut config = app.store.config().clone();
    config.subject_cap = Some(session_store::config::SubjectCap { max, policy });
    let store = DynamoStore::new(app.store.client().clone(), config);
    capturing(api::App { store, ..app })
}

#[tokio::test]
async fn a_login_past_the_subject_cap_is_a_409_problem_under_reject_and_an_eviction_under_evict_oldest() {
    use session_store::config::CapPolicy;
    let login = || with_body(event("create-session"), r#"{"subject": "user-42"}"#, None);

    let (app, captured) = capped_app(2, CapPolicy::Reject).await;
    for _ in 0..2 {
        assert_eq!(call(&app, &login()).await.status, 201);
    }
    captured.take();
    let refused = call(&app, &login()).await;
    assert_eq!(refused.status, 409, "{}", refused.json);
    assert_eq!(refused.header("content-type"), Some("application/problem+json"));
    assert_eq!(refused.json["type"], "urn:session-service:problem:session-cap-reached");
    assert_eq!(refused.json["status"], 409);
    let document = one(&captured);
    assert_request(&document, "POST /sessions", 409);
    assert_eq!(of_function(&document, "SessionsCreated"), None);

    let (app, captured) = capped_app(2, CapPolicy::EvictOldest).await;
    for _ in 0..2 {
        assert_eq!(call(&app, &login()).await.status, 201);
    }
    let documents = captured.take();
    assert!(
        documents
            .iter()
            .all(|d| emf::value(d, "SessionsRevoked", &[("Cause", "evicted")]).is_none()),
        "nothing evicted within the cap"
    );
    assert_eq!(call(&app, &login()).await.status, 201);
    let document = one(&captured);
    assert_eq!(of_function(&document, "SessionsCreated"), Some(1.0));
    assert_eq!(
        emf::value(&document, "SessionsRevoked", &[("Cause", "evicted")]),
        Some(1.0)
    );
    let listed = call(&app, &event("list-subject-sessions")).await;
    assert_eq!(
        listed.json["sessions"].as_array().map(Vec::len),
        Some(2),
        "{}",
        listed.json
    );
}
