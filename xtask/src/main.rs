//! Developer tasks.
//!
//! `cargo run -p xtask -- create-tables [--sessions-table NAME]` creates the
//! tables `template.yaml` defines in the DynamoDB that `AWS_ENDPOINT_URL_DYNAMODB`
//! names (DynamoDB Local). It refuses to run without that variable, so it never
//! touches a real account.
//!
//! `cargo run --release -p xtask -- bench-sweep` (or `scripts/bench`) measures
//! what sweeps and touches cost on DynamoDB Local.

mod bench;

use std::process::ExitCode;

use session_store::schema::{SESSIONS_TABLE, TEMPLATE, TableSpec};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["create-tables"] => create_tables("sessions").await,
        ["create-tables", "--sessions-table", name] => create_tables(name).await,
        ["bench-sweep", which @ ..] => bench::run(which).await,
        ["bench-audit"] => bench::audit_throughput().await,
        _ => Err(
            "usage: xtask create-tables [--sessions-table NAME] | bench-sweep [sweep] [touches] | bench-audit".into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn create_tables(sessions_table: &str) -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
        .map_err(|_| "AWS_ENDPOINT_URL_DYNAMODB must name DynamoDB Local; this tool never creates tables in AWS")?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let spec = TableSpec::from_template(TEMPLATE, SESSIONS_TABLE)?;
    let created = spec.create(&client, sessions_table).await?;
    let state = if created { "created" } else { "already there" };
    println!("table {sessions_table} ({SESSIONS_TABLE} in template.yaml) {state} at {endpoint}");
    Ok(())
}
