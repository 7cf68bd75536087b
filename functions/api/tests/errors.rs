//! Each class of DynamoDB failure gets the answer its class calls for: transient
//! ones (throttling, DynamoDB's own 5xx, no answer at all) a 503 with
//! `Retry-After`, for the client to retry; permanent ones (a table that does not
//! exist, a denied action, a request DynamoDB refuses) a 500 problem that says
//! nothing of the internals, so a misconfiguration is never retried for ever.
//! DynamoDB Local answers the missing table itself; the rest is injected below
//! the SDK (`testkit::Faults`), where DynamoDB's own answers would arrive.

mod common;

use std::sync::Arc;

use common::*;
use session_store::{Config, DynamoStore};
use session_testkit::{self as testkit, Faults, ManualClock};

/// An app on fresh tables whose every DynamoDB request goes through `faults`.
async fn app_with(faults: &Faults) -> api::App {
    let (plain, _) = testkit::store(|_| {}).await;
    api::App {
        clock: Arc::new(ManualClock::new()),
        ..api::App::new(DynamoStore::new(testkit::faulty_client(faults), plain.config().clone()))
    }
}

/// Asserts `reply` is the permanent-failure problem: 500, no `Retry-After`, no internals.
fn assert_permanent(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 500, "{what}: {}", reply.json);
    assert_eq!(reply.header("retry-after"), None, "{what}: retrying cannot help");
    assert_eq!(reply.json["type"], "urn:session-service:problem:internal", "{what}");
    let text = reply.body_text();
    for internal in ["Exception", "injected", "dynamodb", "sessions", "arn:"] {
        assert!(!text.contains(internal), "{what}: the body names {internal:?}: {text}");
    }
}

/// Asserts `reply` is the transient-failure problem: 503 with `Retry-After`.
fn assert_transient(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 503, "{what}: {}", reply.json);
    assert_eq!(reply.header("retry-after"), Some("1"), "{what}");
    assert_eq!(reply.json["type"], "urn:session-service:problem:unavailable", "{what}");
}

#[tokio::test]
async fn a_table_that_does_not_exist_is_a_500_not_a_retry() {
    let (plain, _) = testkit::store(|_| {}).await;
    let mut config: Config = plain.config().clone();
    config.table_name = format!("{}-missing", config.table_name);
    let app = api::App {
        clock: Arc::new(ManualClock::new()),
        ..api::App::new(DynamoStore::new(plain.client().clone(), config))
    };
    for name in ["get-session", "create-session", "touch-session", "delete-session"] {
        assert_permanent(&call(&app, &event(name)).await, name);
    }
}

#[tokio::test]
async fn denied_or_refused_requests_are_500s_and_dynamodbs_own_failures_503s() {
    let faults = Faults::default();
    let app = app_with(&faults).await;
    let id = create(&app, r#"{"data":{"n":1}}"#).await;
    for (status, code, permanent) in [
        (400, "AccessDeniedException", true),
        (400, "ResourceNotFoundException", true),
        (400, "ValidationException", true),
        (400, "UnrecognizedClientException", true),
        (400, "SomethingNewException", true),
        (400, "ThrottlingException", false),
        (400, "TransactionConflictException", false),
        (400, "ReplicatedWriteConflictException", false),
        (400, "ProvisionedThroughputExceededException", false),
        (400, "RequestLimitExceeded", false),
        (500, "InternalServerError", false),
        (503, "ServiceUnavailable", false),
    ] {
        faults.clear();
        faults.fail("GetItem", "", u32::MAX, status, code);
        let reply = call(&app, &event_for("get-session", &id)).await;
        if permanent {
            assert_permanent(&reply, code);
        } else {
            assert_transient(&reply, code);
        }
    }
    faults.clear();
    assert_eq!(call(&app, &event_for("get-session", &id)).await.status, 200);
}

#[tokio::test]
async fn a_cancelled_transaction_is_transient_or_permanent_by_its_reasons() {
    let faults = Faults::default();
    let app = app_with(&faults).await;
    // An owned create is one transaction: the session and its membership.
    for (reasons, permanent) in [
        (["ThrottlingError", "None"], false),
        (["None", "TransactionConflict"], false),
        (["ProvisionedThroughputExceeded", "None"], false),
        (["ValidationError", "None"], true),
        (["None", "ItemCollectionSizeLimitExceeded"], true),
    ] {
        faults.clear();
        faults.cancel_transactions("", u32::MAX, &reasons);
        let reply = call(&app, &event("create-session")).await;
        let what = reasons.join(",");
        if permanent {
            assert_permanent(&reply, &what);
        } else {
            assert_transient(&reply, &what);
        }
    }
}

#[tokio::test]
async fn no_answer_at_all_is_a_503() {
    // Nothing listens on port 9 here: every attempt fails to connect.
    let client = aws_sdk_dynamodb::Client::from_conf(
        testkit::local_config_at("http://127.0.0.1:9")
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::standard())
            .build(),
    );
    let app = api::App {
        clock: Arc::new(ManualClock::new()),
        ..api::App::new(DynamoStore::new(client, Config::for_table("sessions")))
    };
    assert_transient(&call(&app, &event("get-session")).await, "connection refused");
}

#[tokio::test]
async fn a_session_whose_stored_data_does_not_open_is_a_counted_500_never_data() {
    let captured = session_testkit::emf::Captured::default();
    let (app, _, _) = app().await;
    let app = api::App {
        metrics: lambda_support::metrics::Metrics::new("SessionService/test", "api").with_sink(captured.sink()),
        ..app
    };
    let id = create(&app, r#"{"data": {"secret": "s3cr3t"}}"#).await;
    testkit::alter_document(&app.store, &session_store::SessionId::parse(&id).unwrap()).await;
    captured.take();
    for name in [
        "get-session",
        "replace-session",
        "merge-session",
        "touch-session",
        "rotate-session",
    ] {
        let reply = call(&app, &event_for(name, &id)).await;
        assert_permanent(&reply, name);
        assert!(!reply.body_text().contains("s3cr3t"), "{name}");
    }
    let unreadable: f64 = captured
        .take()
        .iter()
        .flat_map(session_testkit::emf::data)
        .filter(|d| d.name == "UnreadableSessions")
        .map(|d| d.value)
        .sum();
    assert_eq!(unreadable, 5.0, "each answer counted");
}
