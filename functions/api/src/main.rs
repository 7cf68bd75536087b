//! The `api` Lambda: builds configuration and clients once, then serves requests.

use std::time::Duration;

use api::{App, handle};
use lambda_http::{Error, run, service_fn};
use session_store::{Config, DynamoStore};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_current_span(true)
        .with_span_list(false)
        .without_time()
        .init();
    let config = Config::from_env()?;
    // The endpoint comes from the SDK's own AWS_ENDPOINT_URL_DYNAMODB when set (DynamoDB Local).
    // Bounded waits, so a DynamoDB outage becomes a 503 well within the function's timeout.
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(6))
        .build();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await;
    let app = App::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config));
    run(service_fn(|request| handle(&app, request))).await
}
