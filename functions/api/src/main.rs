//! The `api` Lambda: builds configuration and clients once, then serves requests.

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
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let app = App::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config));
    run(service_fn(|request| handle(&app, request))).await
}
