//! `xtask bench-sweep cap`: what the cap per subject costs a login, measured on
//! DynamoDB Local (requests counted, units from ReturnConsumedCapacity), and how
//! 50 concurrent logins of one subject go through it.

use std::time::Instant;

use aws_sdk_dynamodb::Client;
use futures::future::join_all;
use session_store::config::{CapPolicy, SubjectCap};
use session_store::{DynamoStore, Issued, NewSession, SessionData, StoreError, Subject, Timestamp};
use session_testkit::{self as testkit, CapacityMeter, RequestCounter};

use crate::bench::PRICES;

type BoxError = Box<dyn std::error::Error>;

/// Logins measured per case.
const LOGINS: usize = 50;
/// The cap of the capped cases.
const CAP: u32 = 5;

/// Prints the cost per create (requests, units, dollars per million) of an
/// anonymous and an owned session without a cap, and of logins under a cap of
/// [`CAP`]: below it, at it evicting, at it refused; then the 50-login race.
pub async fn run() -> Result<(), BoxError> {
    let (counter, meter) = (RequestCounter::default(), CapacityMeter::default());
    let client = Client::from_conf(
        testkit::local_config()
            .interceptor(counter.clone())
            .interceptor(meter.clone())
            .build(),
    );
    let config = testkit::fresh_config(&client).await;
    let store = |policy: Option<CapPolicy>| {
        let mut config = config.clone();
        config.subject_cap = policy.map(|policy| SubjectCap { max: CAP, policy });
        DynamoStore::new(client.clone(), config)
    };
    let now = Timestamp::now();
    let data = SessionData::from_json(&format!(r#"{{"blob":"{}"}}"#, "x".repeat(1_000)))?;
    let session = |subject: Option<&Subject>| NewSession {
        subject: subject.cloned(),
        data: data.clone(),
        ..Default::default()
    };
    let (api_call, lambda_call, read_unit, write_unit) = PRICES;
    println!("\n### The cap per subject: cost of a create ({LOGINS} creates a case, 1 KB of data, cap {CAP})\n");
    println!(
        "| case | DynamoDB requests | read units | write units DynamoDB Local reports | write units billed | $ per million creates |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    // `extra`: transaction items beyond the first of each table, which DynamoDB Local
    // leaves out of a transaction's report; billed at 2 units per 1 KB each.
    let row = |case: &str, creates: usize, extra: f64| {
        let used = meter.take();
        let per = |total: f64| total / creates as f64;
        let (requests, reads, reported) = (
            per(counter.take() as f64),
            per(used.table_read + used.index_read),
            per(used.table_write + used.index_write),
        );
        let billed = reported + 2.0 * extra;
        let dollars = api_call + lambda_call + reads * read_unit + billed * write_unit;
        println!("| {case} | {requests:.1} | {reads:.1} | {reported:.1} | {billed:.1} | {dollars:.2} |");
        (reported, billed)
    };
    let subject = |case: &str, i: usize| Subject::parse(&format!("bench-{case}-{i}"));

    let uncapped = store(None);
    counter.take();
    meter.take();
    for _ in 0..LOGINS {
        uncapped.create(session(None), None, now).await?;
    }
    // A session item's units as a plain write: the table's and the expiry index's.
    let (item, _) = row("anonymous (any cap)", LOGINS, 0.0);
    for i in 0..LOGINS {
        uncapped.create(session(Some(&subject("owned", i)?)), None, now).await?;
    }
    row("owned, no cap", LOGINS, 0.0);

    // The cap item: one more registry item (1 unit) in the transaction.
    let evicting = store(Some(CapPolicy::EvictOldest));
    for i in 0..LOGINS {
        evicting.create(session(Some(&subject("first", i)?)), None, now).await?;
    }
    row("owned, cap 5: the subject's first session", LOGINS, 1.0);
    let full = subject("full", 0)?;
    evicting.create(session(Some(&full)), None, now).await?;
    counter.take();
    meter.take();
    for _ in 1..CAP {
        evicting.create(session(Some(&full)), None, now).await?;
    }
    row("owned, cap 5: the 2nd to 5th session", CAP as usize - 1, 1.0);
    let mut evicted = 0;
    for _ in 0..LOGINS {
        evicted += evicting.create(session(Some(&full)), None, now).await?.evicted;
    }
    // Also the evicted session (its item's units) and its membership (1).
    row(
        "owned, cap 5, `evict_oldest`: a login at the cap (evicts 1)",
        LOGINS,
        1.0 + item + 1.0,
    );
    assert_eq!(evicted as usize, LOGINS, "each login at the cap evicts one session");

    let rejecting = store(Some(CapPolicy::Reject));
    for _ in 0..LOGINS {
        match rejecting.create(session(Some(&full)), None, now).await {
            Err(StoreError::CapReached { .. }) => {}
            other => return Err(format!("expected the cap to refuse, got {other:?}").into()),
        }
    }
    row("owned, cap 5, `reject`: a login at the cap (refused, 409)", LOGINS, 0.0);

    println!("\n### 50 concurrent logins of one subject, cap {CAP} (each retried on 409 `conflict`)\n");
    println!(
        "| policy | logins admitted | refused (cap) | 409 `conflict` answers retried | live after | DynamoDB requests per login | wall ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, policy) in [("evict_oldest", CapPolicy::EvictOldest), ("reject", CapPolicy::Reject)] {
        let store = store(Some(policy));
        let subject = subject(name, 1)?;
        counter.take();
        let started = Instant::now();
        let outcomes = join_all((0..LOGINS).map(|_| login(&store, session(Some(&subject)), now))).await;
        let wall = started.elapsed().as_millis();
        let requests = counter.take();
        let (mut admitted, mut refused, mut retried) = (0, 0, 0);
        for (outcome, conflicts) in outcomes {
            retried += conflicts;
            match outcome {
                Ok(_) => admitted += 1,
                Err(StoreError::CapReached { .. }) => refused += 1,
                Err(e) => return Err(e.into()),
            }
        }
        let live = store.list_by_subject(&subject, 100, None, now).await?.sessions.len();
        println!(
            "| {name} | {admitted} | {refused} | {retried} | {live} | {:.1} | {wall} |",
            requests as f64 / LOGINS as f64
        );
    }
    Ok(())
}

/// A login retried on contention as a client retries a 409 `conflict`; with the
/// number of those answers.
async fn login(store: &DynamoStore, request: NewSession, now: Timestamp) -> (Result<Issued, StoreError>, usize) {
    let mut conflicts = 0;
    loop {
        match store.create(request.clone(), None, now).await {
            Err(StoreError::Contention { .. }) if conflicts < 20 => conflicts += 1,
            other => return (other, conflicts),
        }
    }
}
