//! Faults DynamoDB Local cannot produce (throttling), injected with aws-smithy-mocks.

mod common;

use std::sync::Arc;

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::error::CredentialsError;
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

/// A credentials provider that never has credentials (a misconfigured role, say).
#[derive(Debug)]
struct NoCredentials;

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
            "no credentials in this environment",
        )))
    }
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every route's reply to `client`'s failure, through the real HTTP client the functions use.
async fn replies_on(client: Client) -> Vec<(&'static str, Reply)> {
    let app = app_on(client);
    let mut replies = Vec::new();
    for name in ["get-session", "touch-session", "create-session"] {
        replies.push((name, call(&app, &event(name)).await));
    }
    replies
}

#[tokio::test]
async fn credentials_the_sdk_cannot_load_are_a_permanent_500_not_a_503_to_retry() {
    let config = session_testkit::local_config()
        .credentials_provider(NoCredentials)
        .retry_config(fast_retries())
        .build();
    for (name, reply) in replies_on(Client::from_conf(config)).await {
        assert_eq!(reply.status, 500, "{name}: {}", reply.json);
        assert_eq!(reply.json["type"], "urn:session-service:problem:internal", "{name}");
        assert_eq!(reply.header("retry-after"), None, "{name}");
    }
}

#[tokio::test]
async fn an_endpoint_the_sdk_cannot_resolve_is_a_permanent_500() {
    // No region and no endpoint URL: DynamoDB's endpoint cannot be resolved.
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .http_client(lambda_support::http_client())
        .credentials_provider(aws_credential_types::Credentials::new(
            "local", "local", None, None, "test",
        ))
        .retry_config(fast_retries())
        .build();
    for (name, reply) in replies_on(Client::from_conf(config)).await {
        assert_eq!(reply.status, 500, "{name}: {}", reply.json);
        assert_eq!(reply.json["type"], "urn:session-service:problem:internal", "{name}");
    }
}

#[tokio::test]
async fn an_unreachable_dynamodb_is_a_503_with_retry_after() {
    let config = session_testkit::local_config_at(&format!("http://127.0.0.1:{}", closed_port()))
        .retry_config(fast_retries())
        .build();
    for (name, reply) in replies_on(Client::from_conf(config)).await {
        assert_eq!(reply.status, 503, "{name}: {}", reply.json);
        assert_eq!(reply.header("retry-after"), Some("1"), "{name}");
        assert_eq!(reply.json["type"], "urn:session-service:problem:unavailable", "{name}");
    }
}
