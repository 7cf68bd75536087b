//! The `audit` Lambda: builds configuration and clients once, then audits stream batches.

use audit::{Auditor, handle};
use lambda_runtime::{Error, run, service_fn};
use lambda_support as runtime;
use session_store::audit::AuditLog;

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let client = aws_sdk_dynamodb::Client::new(&runtime::sdk_config().await);
    let auditor = Auditor {
        log: AuditLog::from_lookup(client, |name| std::env::var(name).ok())?,
    };
    run(service_fn(|event| handle(&auditor, event))).await
}
