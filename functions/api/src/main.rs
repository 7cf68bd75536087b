//! The `api` Lambda: builds configuration and clients once, then serves requests.

use api::{App, handle};
use lambda_http::{Error, run, service_fn};
use lambda_support as runtime;
use lambda_support::metrics::Metrics;
use session_store::{Config, DynamoStore};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let config = Config::from_env()?;
    let metrics = Metrics::from_env("api");
    // Metrics held for the minute (METRICS_BY_MINUTE) are written when Lambda shuts the
    // environment down, not lost with it.
    let held = metrics.clone();
    lambda_runtime::spawn_graceful_shutdown_handler(|| async move { held.flush() }).await;
    let store = DynamoStore::new(runtime::dynamodb_client(&metrics).await, config);
    let app = App {
        metrics,
        ..App::new(store)
    };
    run(service_fn(|request| handle(&app, request))).await
}
