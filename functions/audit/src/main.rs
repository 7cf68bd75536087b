//! The `audit` Lambda: builds configuration and clients once, then audits stream batches.

use audit::{Auditor, handle};
use lambda_runtime::{Error, run, service_fn};
use lambda_support as runtime;
use lambda_support::metrics::Metrics;
use session_store::audit::AuditLog;

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let metrics = Metrics::from_env("audit");
    let client = runtime::dynamodb_client(&metrics).await;
    let auditor = Auditor {
        metrics,
        ..Auditor::new(AuditLog::from_lookup(client, |name| std::env::var(name).ok())?)
    };
    run(service_fn(|event| handle(&auditor, event))).await
}
