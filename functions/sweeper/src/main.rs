//! The `sweeper` Lambda: builds configuration and clients once, then sweeps on each invocation.

use lambda_runtime::{Error, run, service_fn};
use lambda_support as runtime;
use lambda_support::metrics::Metrics;
use session_store::{Config, DynamoStore};
use sweeper::{Sweeper, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let config = Config::from_env()?;
    let metrics = Metrics::from_env("sweeper");
    let store = DynamoStore::new(runtime::dynamodb_client(&metrics).await, config);
    let sweeper = Sweeper {
        metrics,
        ..Sweeper::new(store)
    };
    run(service_fn(|event| handle(&sweeper, event))).await
}
