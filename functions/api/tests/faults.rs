//! Faults DynamoDB Local cannot produce (throttling), injected with aws-smithy-mocks.

mod common;

use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::error::ErrorMetadata;
use aws_sdk_dynamodb::operation::get_item::{GetItemError, GetItemOutput};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::error::{ProvisionedThroughputExceededException, ThrottlingException};
use aws_smithy_mocks::{RuleMode, mock};
use common::*;
use session_store::{Config, DynamoStore};
use session_testkit::{ManualClock, mocked_client};

fn app_on(client: Client) -> api::App {
    api::App {
        clock: Arc::new(ManualClock::new()),
        ..api::App::new(DynamoStore::new(client, Config::for_table("sessions")))
    }
}

/// The SDK's standard retries (3 attempts), with a 1 ms backoff.
fn fast_retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(std::time::Duration::from_millis(1))
}

/// Error metadata as DynamoDB's response carries it; the SDK's retry classifier reads the code.
fn code(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).build()
}

fn throughput_exceeded() -> GetItemError {
    GetItemError::ProvisionedThroughputExceededException(
        ProvisionedThroughputExceededException::builder()
            .message("Rate of requests exceeds the allowed throughput")
            .meta(code("ProvisionedThroughputExceededException"))
            .build(),
    )
}

#[tokio::test]
async fn throttling_that_outlasts_the_retries_is_a_503_with_retry_after() {
    let get = mock!(Client::get_item)
        .sequence()
        .error(throughput_exceeded)
        .times(3)
        .build();
    let update = mock!(Client::update_item)
        .sequence()
        .error(|| {
            UpdateItemError::ThrottlingException(
                ThrottlingException::builder()
                    .message("throttled")
                    .meta(code("ThrottlingException"))
                    .build(),
            )
        })
        .times(3)
        .build();
    let client = mocked_client(RuleMode::MatchAny, &[&get, &update], fast_retries());
    let app = app_on(client);
    for (name, rule) in [("get-session", &get), ("touch-session", &update)] {
        let reply = call(&app, &event(name)).await;
        assert_eq!(reply.status, 503, "{name}: {}", reply.json);
        assert_eq!(reply.header("retry-after"), Some("1"));
        assert_eq!(reply.json["type"], "urn:session-service:problem:unavailable");
        assert_eq!(rule.num_calls(), 3, "{name}: the SDK retried before giving up");
    }
}

#[tokio::test]
async fn brief_throttling_is_absorbed_by_retries() {
    let get = mock!(Client::get_item)
        .sequence()
        .error(throughput_exceeded)
        .times(2)
        .output(|| GetItemOutput::builder().build())
        .build();
    let client = mocked_client(RuleMode::MatchAny, &[&get], fast_retries());
    let reply = call(&app_on(client), &event("get-session")).await;
    assert_eq!(reply.status, 404, "the third attempt answered: no such session");
    assert_eq!(get.num_calls(), 3);
}
