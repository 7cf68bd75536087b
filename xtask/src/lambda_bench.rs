//! `xtask bench-lambda BIN_DIR [size] [cold-start] [memory]`: the built functions as Lambda runs them, under
//! the [`RuntimeApi`] stub, against DynamoDB Local (`AWS_ENDPOINT_URL_DYNAMODB`):
//! cold start of `api` next to a hello-world `lambda_runtime` function, peak
//! memory of `api` over 10k requests, and the size of each binary.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use session_testkit as testkit;

use crate::runtime_api::{Answer, Function};

type Error = Box<dyn std::error::Error>;

/// Cold starts measured per function (alternating, so both see the same machine).
const COLD_STARTS: usize = 30;
/// Sessions created in the memory run; each then gets four more requests.
const MEMORY_SESSIONS: usize = 2000;

/// The sample id in `events/*.json`.
pub(crate) const SAMPLE_ID: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA";

/// Runs the measurements `parts` names (`size`, `cold-start`, `memory`; all when
/// empty) and prints Markdown.
pub async fn run(bin_dir: &Path, parts: &[&str]) -> Result<(), Error> {
    let wanted = |part: &str| parts.is_empty() || parts.contains(&part);
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB").map_err(|_| "AWS_ENDPOINT_URL_DYNAMODB must name DynamoDB Local")?;
    let client = aws_sdk_dynamodb::Client::from_conf(testkit::local_config_at(&endpoint).build());
    let config = testkit::fresh_config(&client).await;
    let env = HashMap::from([
        ("AWS_ENDPOINT_URL_DYNAMODB".to_owned(), endpoint.clone()),
        ("SESSIONS_TABLE".to_owned(), config.table_name),
        ("REGISTRY_TABLE".to_owned(), config.registry_table),
    ]);
    let api = bin_dir.join("api");
    let hello = bin_dir.join("hello-lambda");

    if wanted("size") {
        sizes(bin_dir)?;
    }

    // One session for the GET events of the cold starts.
    let (_, answers) = invoke(&api, &env, [event("create-session")?])?;
    let id = created_id(&answers[0])?;
    let get = event_for("get-session", &id)?;

    if wanted("cold-start") {
        let health = event("health")?;
        let mut runs: [Vec<ColdStart>; 4] = Default::default();
        for _ in 0..COLD_STARTS {
            runs[0].push(cold_start(&hello, &env, &get)?);
            runs[1].push(cold_start(&api, &env, &health)?);
            runs[2].push(cold_start(&api, &env, &get)?);
            runs[3].push(first_call(&endpoint, &env["SESSIONS_TABLE"]).await?);
        }
        print_cold_starts(&runs);
    }
    if wanted("memory") {
        memory(&api, &hello, &env, &get)?;
    }
    Ok(())
}

fn sizes(bin_dir: &Path) -> Result<(), Error> {
    println!("### Size of the stripped release binaries\n");
    println!("| binary | bytes | MB |");
    println!("|---|---:|---:|");
    for name in ["api", "sweeper", "audit", "hello-lambda"] {
        let bytes = std::fs::metadata(bin_dir.join(name))?.len();
        println!("| {name} | {bytes} | {:.2} |", bytes as f64 / 1e6);
    }
    println!();
    Ok(())
}

/// One cold start: process start to the first answer, split at the first event request.
struct ColdStart {
    init: Duration,
    total: Duration,
}

fn cold_start(bootstrap: &Path, env: &HashMap<String, String>, event: &str) -> Result<ColdStart, Error> {
    let started = std::time::Instant::now();
    let (_, answers) = invoke(bootstrap, env, [event.to_owned()])?;
    let answer = &answers[0];
    status_of(answer, 200)?;
    Ok(ColdStart {
        init: answer.asked - started,
        total: answer.at - started,
    })
}

/// DynamoDB Local's own part of a cold start: a new client's first GetItem (new
/// connection), timed in this process. `init` is building the client.
async fn first_call(endpoint: &str, table: &str) -> Result<ColdStart, Error> {
    let started = std::time::Instant::now();
    let client = aws_sdk_dynamodb::Client::from_conf(testkit::local_config_at(endpoint).build());
    let init = started.elapsed();
    client
        .get_item()
        .table_name(table)
        .key(
            session_store::item::attr::HANDLE,
            aws_sdk_dynamodb::types::AttributeValue::S("warm-up".into()),
        )
        .send()
        .await?;
    Ok(ColdStart {
        init,
        total: started.elapsed(),
    })
}

fn print_cold_starts([hello, health, get, bare]: &[Vec<ColdStart>; 4]) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = |runs: &[ColdStart], f: fn(&ColdStart) -> Duration| {
        let mut v: Vec<Duration> = runs.iter().map(f).collect();
        v.sort();
        v[v.len() / 2]
    };
    let min = |runs: &[ColdStart]| runs.iter().map(|r| r.total).min().unwrap_or_default();
    println!("### Cold start: process start to the first response ({COLD_STARTS} runs each, interleaved)\n");
    println!("| function and first event | median ms | of which init ms | fastest ms | ÷ hello-lambda (medians) |");
    println!("|---|---:|---:|---:|---:|");
    for (name, runs) in [
        ("hello-lambda, any event", hello),
        ("api, `GET /health` (no DynamoDB call)", health),
        ("api, `GET /sessions/{id}` (one GetItem)", get),
        (
            "bare: a new DynamoDB client and its first GetItem, in the bench process",
            bare,
        ),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
            ms(median(runs, |r| r.total)),
            ms(median(runs, |r| r.init)),
            ms(min(runs)),
            ms(median(runs, |r| r.total)) / ms(median(hello, |r| r.total)),
        );
    }
    let own = ms(median(get, |r| r.total)) - ms(median(bare, |r| r.total));
    println!(
        "\napi's `GET` cold start less the bare first GetItem: {own:.2} ms, {:.2} × hello-lambda.\n",
        own / ms(median(hello, |r| r.total))
    );
}

fn memory(api: &Path, hello: &Path, env: &HashMap<String, String>, get: &str) -> Result<(), Error> {
    let hello_rss = invoke(hello, env, [get.to_owned()])?.0.peak_rss()?;

    let (function, answers) = invoke(api, env, [get.to_owned()])?;
    status_of(&answers[0], 200)?;
    let after_one = function.peak_rss()?;
    let create = event("create-session")?;
    let created = function.serve(std::iter::repeat_n(create, MEMORY_SESSIONS))?;
    let mut ids = Vec::with_capacity(MEMORY_SESSIONS);
    for answer in &created {
        ids.push(created_id(answer)?);
    }
    let mut events = Vec::with_capacity(4 * ids.len());
    for id in &ids {
        for name in ["get-session", "replace-session", "merge-session", "touch-session"] {
            events.push(event_for(name, id)?);
        }
    }
    let answers = function.serve(events)?;
    let ok = answers.iter().filter(|a| status_of(a, 200).is_ok()).count();
    let requests = 1 + created.len() + answers.len();
    let peak = function.peak_rss()?;
    drop(function);
    if ok != answers.len() {
        return Err(format!(
            "{} of {} requests did not answer 200",
            answers.len() - ok,
            answers.len()
        )
        .into());
    }
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("### Peak memory (VmHWM) of `api` over {requests} sequential requests\n");
    println!(
        "One GET, {} creates, then GET, PUT (If-Match), PATCH and touch of each session; every answer 201 or 200.\n",
        created.len()
    );
    println!("| process | peak RSS MiB |");
    println!("|---|---:|");
    println!("| hello-lambda after 1 request | {:.1} |", mb(hello_rss));
    println!("| api after 1 request | {:.1} |", mb(after_one));
    println!("| api after {requests} requests | {:.1} |", mb(peak));
    println!();
    Ok(())
}

/// Launches `bootstrap` and hands it `events`; the process lives as long as the `Function`.
fn invoke<const N: usize>(
    bootstrap: &Path,
    env: &HashMap<String, String>,
    events: [String; N],
) -> Result<(Function, Vec<Answer>), Error> {
    let function = Function::launch(bootstrap, env)?;
    let answers = function
        .serve(events)
        .map_err(|e| format!("{}: {e}", bootstrap.display()))?;
    Ok((function, answers))
}

/// The text of the sample event `events/{name}.json`.
pub(crate) fn event(name: &str) -> Result<String, Error> {
    let path = testkit::repo_root().join(format!("events/{name}.json"));
    Ok(std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?)
}

fn event_for(name: &str, id: &str) -> Result<String, Error> {
    Ok(event(name)?.replace(SAMPLE_ID, id))
}

/// The API Gateway response in an answer, checked for `status`.
fn status_of(answer: &Answer, status: u16) -> Result<Value, Error> {
    let response: Value = serde_json::from_str(&answer.body)?;
    let got = response["statusCode"].as_u64().unwrap_or_default();
    if got != u64::from(status) && !(status == 200 && got == 201) {
        return Err(format!("expected {status}, got {}", answer.body).into());
    }
    Ok(response)
}

fn created_id(answer: &Answer) -> Result<String, Error> {
    let response = status_of(answer, 201)?;
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap_or_default())?;
    Ok(body["id"].as_str().ok_or("a create answered without an id")?.to_owned())
}
