//! Developer tasks.
//!
//! `cargo run -p xtask -- create-tables [LogicalId=name]...` creates the tables
//! `template.yaml` defines (`SessionsTable=sessions RegistryTable=registry AuditTable=audit` unless told
//! otherwise) in the DynamoDB that `AWS_ENDPOINT_URL_DYNAMODB` names (DynamoDB
//! Local). It refuses to run without that variable, so it never touches a real account.
//!
//! `cargo run -p xtask -- audit-log SUBJECT` prints the audit records of a
//! subject's sessions from the audit table (`AUDIT_TABLE`, default `audit`) of the
//! DynamoDB Local that `scripts/run` started.
//!
//! `cargo run --release -p xtask -- bench-sweep` (or `scripts/bench`) measures
//! what sweeps and touches cost on DynamoDB Local; `bench-lambda BIN_DIR`
//! (`scripts/bench lambda`) the cold start, memory and size of the release binaries;
//! `bench-api` (`scripts/bench api`) what the api handler adds to its DynamoDB calls.

mod api_bench;
mod bench;
mod cap_bench;
mod lambda_bench;
mod runtime_api;
mod seal_bench;

use std::process::ExitCode;

use session_store::schema::{REGISTRY_TABLE, SESSIONS_TABLE, TEMPLATE, TableSpec};

/// Counts allocations for `bench-api`; the system allocator otherwise.
#[global_allocator]
static ALLOCATOR: api_bench::CountingAllocator = api_bench::CountingAllocator;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["create-tables", tables @ ..] => create_tables(tables).await,
        ["bench-sweep", which @ ..] => bench::run(which).await,
        ["bench-audit"] => bench::audit_throughput().await,
        ["bench-api"] => api_bench::run().await,
        ["bench-seal"] => seal_bench::run().await,
        ["bench-lambda", bin_dir, parts @ ..] => lambda_bench::run(std::path::Path::new(bin_dir), parts).await,
        ["audit-log", subject] => audit_log(subject).await,
        _ => Err(
            "usage: xtask create-tables [LogicalId=name]... | audit-log SUBJECT | bench-sweep [sweep] [touches] [page-views] [cap] | bench-audit | bench-api | bench-seal | bench-lambda BIN_DIR [size] [cold-start] [memory]".into(),
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

async fn create_tables(tables: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
        .map_err(|_| "AWS_ENDPOINT_URL_DYNAMODB must name DynamoDB Local; this tool never creates tables in AWS")?;
    let tables: Vec<(&str, &str)> = if tables.is_empty() {
        vec![
            (SESSIONS_TABLE, "sessions"),
            (REGISTRY_TABLE, "registry"),
            ("AuditTable", "audit"),
        ]
    } else {
        tables
            .iter()
            .map(|t| t.split_once('=').ok_or(format!("{t}: expected LogicalId=name")))
            .collect::<Result<_, _>>()?
    };
    let sdk = lambda_support::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    for (logical_id, name) in tables {
        let spec = TableSpec::from_template(TEMPLATE, logical_id)?;
        let created = spec.create(&client, name).await?;
        let state = if created { "created" } else { "already there" };
        println!("table {name} ({logical_id} in template.yaml) {state} at {endpoint}");
    }
    Ok(())
}

async fn audit_log(subject: &str) -> Result<(), Box<dyn std::error::Error>> {
    let table = std::env::var("AUDIT_TABLE").unwrap_or_else(|_| "audit".into());
    // The DynamoDB Local `scripts/run` started, from another terminal too.
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap_or_else(|_| {
        format!(
            "http://127.0.0.1:{}",
            std::env::var("DDB_PORT").as_deref().unwrap_or("8000")
        )
    });
    let client = aws_sdk_dynamodb::Client::from_conf(session_testkit::local_config_at(&endpoint).build());
    let log = session_store::audit::AuditLog::new(client, table, 1);
    let records = log.by_subject(subject).await?;
    for record in &records {
        println!("{}", serde_json::to_string(record)?);
    }
    eprintln!("{} record(s) for {subject}", records.len());
    Ok(())
}
