//! The `sweeper` Lambda: builds configuration and clients once, then sweeps on each invocation.

use lambda_runtime::{Error, run, service_fn};
use lambda_support as runtime;
use session_store::{Config, DynamoStore};
use sweeper::{Sweeper, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let config = Config::from_env()?;
    let client = aws_sdk_dynamodb::Client::new(&runtime::sdk_config().await);
    let sweeper = Sweeper::new(DynamoStore::new(client, config));
    run(service_fn(|event| handle(&sweeper, event))).await
}
