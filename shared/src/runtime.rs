//! Start-up shared by the Lambda functions: JSON logs and the AWS SDK configuration.

use std::time::Duration;

/// JSON log lines (with the Lambda request id from the runtime's span), filtered by `RUST_LOG`.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_current_span(true)
        .with_span_list(false)
        .without_time()
        .init();
}

/// The SDK configuration from the environment, with bounded waits so that a
/// DynamoDB outage surfaces as an error well within a function's timeout.
/// `AWS_ENDPOINT_URL_DYNAMODB` (the SDK's own override) points it at DynamoDB Local.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(6))
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await
}
