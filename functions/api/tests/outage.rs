//! DynamoDB dies under load and comes back: the API answers 503 with Retry-After while it
//! is down, recovers without a restart of its own, and every write it acknowledged is there.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use common::*;
use session_store::{Config, DynamoStore};
use session_testkit::{self as testkit, RestartableDynamoDbLocal};

/// What one worker saw: statuses, and the last acknowledged value of each session it wrote.
#[derive(Default)]
struct Seen {
    statuses: HashMap<u16, usize>,
    recovered: usize,
    acknowledged: HashMap<String, u64>,
    problems: Vec<String>,
}

/// Creates sessions and merges a rising counter into them until `stop`.
async fn worker(app: &api::App, stop: &AtomicBool, restarted: &AtomicBool) -> Seen {
    let mut seen = Seen::default();
    let mut id: Option<String> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let body = format!(r#"{{"data": {{"n": {n}}}}}"#);
        let reply = match &id {
            None => call(app, &with_body(event("create-session"), &body, None)).await,
            Some(id) => call(app, &with_body(event_for("merge-session", id), &body, None)).await,
        };
        *seen.statuses.entry(reply.status).or_default() += 1;
        match reply.status {
            200 | 201 => {
                let acked = id.get_or_insert_with(|| reply.json["id"].as_str().unwrap().to_owned());
                seen.acknowledged.insert(acked.clone(), n);
                if restarted.load(Ordering::SeqCst) {
                    seen.recovered += 1;
                }
                if n.is_multiple_of(20) {
                    id = None; // a new session now and then
                }
            }
            503 => {
                if reply.header("retry-after") != Some("1")
                    || reply.header("content-type") != Some("application/problem+json")
                {
                    seen.problems
                        .push(format!("503 without Retry-After or problem: {:?}", reply.response));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => seen.problems.push(format!("{other}: {}", reply.json)),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_rides_out_a_dynamodb_crash_and_loses_no_acknowledged_write() {
    let local = RestartableDynamoDbLocal::start();
    // The functions' client settings: their bounded waits, standard retries.
    let client = aws_sdk_dynamodb::Client::from_conf(
        testkit::local_config_at(&local.endpoint())
            .timeout_config(lambda_support::timeouts())
            .retry_config(RetryConfig::standard())
            .build(),
    );
    // The table is made with a patient client: a fresh on-disk DynamoDB Local on a
    // busy machine can take longer than the functions' 2 s attempt timeout to
    // create one, and a retried CreateTable finds its own table already there.
    let setup = aws_sdk_dynamodb::Client::from_conf(testkit::local_config_at(&local.endpoint()).build());
    let table = testkit::fresh_sessions_table(&setup).await;
    let app = api::App::new(DynamoStore::new(client, Config::for_table(table)));

    let stop = Arc::new(AtomicBool::new(false));
    let restarted = Arc::new(AtomicBool::new(false));
    let (stop_at, restarted_at) = (stop.clone(), restarted.clone());
    let crash = std::thread::spawn(move || {
        let mut local = local;
        std::thread::sleep(Duration::from_secs(2));
        local.kill();
        std::thread::sleep(Duration::from_secs(4));
        local.restart();
        restarted_at.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(3));
        stop_at.store(true, Ordering::SeqCst);
        local
    });
    let seen = futures::future::join_all((0..8).map(|_| worker(&app, &stop, &restarted))).await;
    let _local = crash.join().unwrap();

    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for (status, count) in seen.iter().flat_map(|s| &s.statuses) {
        *statuses.entry(*status).or_default() += count;
    }
    let problems: Vec<_> = seen.iter().flat_map(|s| &s.problems).collect();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(
        statuses.get(&503).copied().unwrap_or(0) > 0,
        "DynamoDB was down: {statuses:?}"
    );
    let recovered: usize = seen.iter().map(|s| s.recovered).sum();
    assert!(recovered > 0, "no write succeeded after the restart: {statuses:?}");

    let acknowledged: HashMap<&String, u64> = seen
        .iter()
        .flat_map(|s| &s.acknowledged)
        .map(|(id, n)| (id, *n))
        .collect();
    for (id, n) in &acknowledged {
        let reply = call(&app, &event_for("get-session", id)).await;
        assert_eq!(reply.status, 200, "acknowledged session {id} is gone");
        let stored = reply.json["data"]["n"].as_u64().unwrap();
        // A write that got a 503 may still have landed; an acknowledged one never goes missing.
        assert!(stored >= *n, "session {id}: acknowledged n = {n}, stored {stored}");
    }
    eprintln!(
        "statuses {statuses:?}; {} sessions checked; {recovered} writes after the restart",
        acknowledged.len()
    );
}
