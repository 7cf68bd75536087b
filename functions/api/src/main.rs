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
    let store = DynamoStore::new(runtime::dynamodb_client(&metrics).await, config);
    let app = App {
        metrics,
        ..App::new(store)
    };
    run(service_fn(|request| handle(&app, request))).await
}
