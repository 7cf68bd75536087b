//! The smallest useful Lambda: answers every event with a fixed API Gateway
//! response. Built with the workspace's release profile, it is the baseline
//! for the `api` function's cold start.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|_event: LambdaEvent<Value>| async {
        Ok::<_, Error>(json!({"statusCode": 200, "body": "hello"}))
    }))
    .await
}
