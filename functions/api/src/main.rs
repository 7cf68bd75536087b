//! The `api` Lambda: builds configuration and clients once, then serves requests.

use api::{App, handle};
use lambda_http::{Error, run, service_fn};
use lambda_support as runtime;
use session_store::{Config, DynamoStore};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let config = Config::from_env()?;
    let client = aws_sdk_dynamodb::Client::new(&runtime::sdk_config().await);
    let store = DynamoStore::new(client, config);
    store.warm_up().await;
    let app = App::new(store);
    run(service_fn(|request| handle(&app, request))).await
}
