//! `xtask bench-sweep`: what a sweep and what touches cost, measured on DynamoDB
//! Local with `ReturnConsumedCapacity`, printed as Markdown tables.

use std::time::Instant;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, GlobalSecondaryIndex, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, WriteRequest,
};
use futures::StreamExt;
use session_store::id::Handle;
use session_store::item::{EXPIRY_INDEX, attr, encode};
use session_store::schema::TableSpec;
use session_store::sweep::SweepOptions;
use session_store::{Config, DynamoStore, NewSession, Session, SessionId, Timestamp};
use session_testkit::{self as testkit, CapacityMeter};

type BoxError = Box<dyn std::error::Error>;

/// Expired sessions in every sweep table.
const EXPIRED: usize = 1_000;
/// Live-session counts of the sweep tables.
const LIVE: [usize; 3] = [1_000, 10_000, 100_000];
/// Sessions touched in the touch workload.
const TOUCHED: usize = 100;

/// Writes `n` sessions created at `now` with idle timeout `idle`, 25 per BatchWriteItem.
async fn load(store: &DynamoStore, n: usize, idle: u32, now: Timestamp) -> Result<(), BoxError> {
    let request = NewSession {
        idle_timeout_seconds: Some(idle),
        absolute_timeout_seconds: Some(2 * 86_400),
        ..Default::default()
    };
    let mut batches = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(25) {
        let mut batch = Vec::with_capacity(chunk.len());
        for _ in chunk {
            let id = SessionId::generate()?;
            let session = Session::create(&id, Handle::random()?, request.clone(), &store.config().limits, now)?;
            let put = PutRequest::builder()
                .set_item(Some(encode(&session, &id, None, "load", store.config())?))
                .build()?;
            batch.push(WriteRequest::builder().put_request(put).build());
        }
        batches.push(batch);
    }
    let table = store.config().table_name.clone();
    let results: Vec<Result<(), BoxError>> = futures::stream::iter(batches)
        .map(|mut batch| {
            let (client, table) = (store.client().clone(), table.clone());
            async move {
                while !batch.is_empty() {
                    let out = client.batch_write_item().request_items(&table, batch).send().await?;
                    batch = out
                        .unprocessed_items
                        .and_then(|mut u| u.remove(&table))
                        .unwrap_or_default();
                }
                Ok(())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The anchors' sweep: a full Scan filtered on the expiry. Returns (items read, matches, read units).
async fn scan_sweep(
    client: &Client,
    meter: &CapacityMeter,
    table: &str,
    now: Timestamp,
) -> Result<(i64, i64, f64), BoxError> {
    meter.take();
    let (mut scanned, mut matched, mut start) = (0, 0, None);
    loop {
        let page = client
            .scan()
            .table_name(table)
            .filter_expression("#e < :now")
            .expression_attribute_names("#e", attr::EXPIRES_AT)
            .expression_attribute_values(":now", AttributeValue::N(now.0.to_string()))
            .set_exclusive_start_key(start)
            .send()
            .await?;
        scanned += i64::from(page.scanned_count());
        matched += i64::from(page.count());
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    let used = meter.take();
    Ok((scanned, matched, used.table_read + used.index_read))
}

/// Runs the benchmarks `which` names (`sweep`, `touches`, or both when empty) and prints their tables.
pub async fn run(which: &[&str]) -> Result<(), BoxError> {
    let (client, meter) = testkit::metered_client();
    if which.is_empty() || which.contains(&"sweep") {
        sweep_cost(&client, &meter).await?;
    }
    if which.is_empty() || which.contains(&"touches") {
        touch_cost(&client, &meter).await?;
    }
    if which.is_empty() || which.contains(&"page-views") {
        page_view_cost(&meter).await?;
    }
    if which.is_empty() || which.contains(&"cap") {
        crate::cap_bench::run().await?;
    }
    Ok(())
}

/// Page views measured per case of the page-view benchmark.
const VIEWS: usize = 100;

/// List prices of README.md's "Costs" table, dollars per million: an HTTP API
/// request, an `api` invocation (~10 ms at 128 MB) with its metrics log line
/// (~$0.40), a read unit, a write unit.
pub const PRICES: (f64, f64, f64, f64) = (1.00, 0.22 + 0.40, 0.125, 0.625);

/// What a page view costs, `GET` then `POST .../touch` against `GET ?touch=true`,
/// by session size, when no slide is due and when one is: DynamoDB requests and
/// units measured (ReturnConsumedCapacity), in dollars per million page views at
/// [`PRICES`]. A skipped touch (a failed conditional UpdateItem) reports no
/// capacity but is billed as a write of the item (AWS's rule): its billed units are
/// those a written touch of the same item reports.
async fn page_view_cost(meter: &CapacityMeter) -> Result<(), BoxError> {
    let counter = testkit::RequestCounter::default();
    let client = Client::from_conf(
        testkit::local_config()
            .interceptor(meter.clone())
            .interceptor(counter.clone())
            .build(),
    );
    let t0 = Timestamp::now();
    let table = format!("bench-page-view-{}", SessionId::generate()?.fingerprint());
    TableSpec::sessions()?.create(&client, &table).await?;
    let mut config = Config::for_table(&table);
    config.limits.max_data_bytes = 80_000;
    let store = DynamoStore::new(client.clone(), config);
    let (api_call, lambda_call, read_unit, write_unit) = PRICES;
    println!("\n### Page views: `GET` + `POST .../touch` against `GET ?touch=true` ({VIEWS} views a case)\n");
    println!(
        "| session data | case | GET + touch: API calls, DynamoDB requests, read units, write units billed | $ per million | \
         GET ?touch=true: API calls, DynamoDB requests, read units, write units billed | $ per million | saved |"
    );
    println!("|---|---|---|---:|---|---:|---:|");
    for (label, bytes) in [("1 KB", 1_000), ("10 KB", 10_000), ("64 KB", 64_000)] {
        let data = random_text_data(bytes)?;
        let request = NewSession {
            data,
            ..Default::default()
        };
        let sessions = |n: usize| {
            let (store, request) = (&store, &request);
            async move {
                let mut ids = Vec::new();
                for _ in 0..n {
                    ids.push(store.create(request.clone(), None, t0).await?.id);
                }
                Ok::<_, BoxError>(ids)
            }
        };
        // The item's billed size: what a written touch of it reports.
        let sample = sessions(1).await?;
        meter.take();
        store.touch(&sample[0], t0.plus(120)).await?;
        let item_write_units = meter.take().table_write;
        for (case, at) in [("no slide due", 30), ("slide due", 90)] {
            let mut row = Vec::new();
            for one_call in [false, true] {
                let ids = sessions(VIEWS).await?;
                meter.take();
                counter.take();
                let mut skipped = 0;
                for id in &ids {
                    if one_call {
                        store.get_and_touch(id, t0.plus(at)).await?;
                    } else {
                        let read = store.get(id, t0.plus(at)).await?;
                        let touched = store.touch(id, t0.plus(at)).await?;
                        skipped += usize::from(touched == read);
                    }
                }
                let used = meter.take();
                let per_view = |total: f64| total / VIEWS as f64;
                let calls = if one_call { 1.0 } else { 2.0 };
                let requests = per_view(counter.take() as f64);
                let reads = per_view(used.table_read + used.index_read);
                let writes = per_view(used.table_write + used.index_write + skipped as f64 * item_write_units);
                let dollars = calls * (api_call + lambda_call) + reads * read_unit + writes * write_unit;
                row.push((format!("{calls:.0}, {requests:.0}, {reads:.1}, {writes:.1}"), dollars));
            }
            println!(
                "| {label} | {case} | {} | {:.2} | {} | {:.2} | {:.0}% |",
                row[0].0,
                row[0].1,
                row[1].0,
                row[1].1,
                100.0 * (1.0 - row[1].1 / row[0].1)
            );
        }
    }
    client.delete_table().table_name(&table).send().await?;
    Ok(())
}

/// Session data of one key holding `bytes` of pseudo-random text, which compression
/// hardly shrinks: what a sealed session of that size costs at the least.
fn random_text_data(bytes: usize) -> Result<session_store::SessionData, BoxError> {
    let text = crate::seal_bench::Rng(0x9E37_79B9_7F4A_7C15 ^ bytes as u64).text(bytes);
    Ok(session_store::SessionData::from_json(&format!(
        r#"{{"blob":"{text}"}}"#
    ))?)
}

/// Keeps only the attribute definitions some key uses (DynamoDB refuses others).
fn prune_attributes(spec: &mut TableSpec) {
    let used: Vec<String> = spec
        .key_schema
        .iter()
        .chain(spec.indexes.iter().flat_map(|i| i.key_schema()))
        .map(|k| k.attribute_name().to_owned())
        .collect();
    spec.attributes.retain(|a| used.iter().any(|u| u == a.attribute_name()));
}

async fn sweep_cost(client: &Client, meter: &CapacityMeter) -> Result<(), BoxError> {
    let t0 = Timestamp::now();
    let sweep_at = t0.plus(2 * 3600);

    println!("### Sweep: read cost against table size\n");
    println!(
        "{EXPIRED} expired sessions in every table; the sweep runs when they have expired and the live ones have not.\n"
    );
    println!(
        "| live sessions | our sweep: index entries read | our sweep: read units | full Scan: items read | full Scan: read units | Scan ÷ ours (read units) | deleted |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut read_units = Vec::new();
    for live in LIVE {
        let table = testkit::fresh_sessions_table(client).await;
        let store = DynamoStore::new(client.clone(), Config::for_table(&table));
        let loading = Instant::now();
        load(&store, live, 86_400, t0).await?;
        load(&store, EXPIRED, 3600, t0).await?;
        eprintln!(
            "loaded {} items into {table} in {:.1} s",
            live + EXPIRED,
            loading.elapsed().as_secs_f64()
        );
        let (scanned, matched, scan_units) = scan_sweep(client, meter, &table, sweep_at).await?;
        meter.take();
        let summary = store.sweep(&SweepOptions::at(sweep_at)).await?;
        let ours = summary.consumed_read_units;
        if matched as u64 != summary.deleted || summary.deleted != EXPIRED as u64 || !summary.complete {
            return Err(format!(
                "sweep removed {} of {EXPIRED} expired (Scan found {matched})",
                summary.deleted
            )
            .into());
        }
        println!(
            "| {live} | {} | {ours:.1} | {scanned} | {scan_units:.1} | {:.0}× | {} |",
            summary.examined,
            scan_units / ours,
            summary.deleted
        );
        read_units.push(ours);
        client.delete_table().table_name(&table).send().await?;
    }
    let spread = read_units
        .iter()
        .map(|u| (u / read_units[0] - 1.0).abs() * 100.0)
        .fold(0.0, f64::max);
    println!(
        "\nOur sweep's read units differ by at most {spread:.1}% between the {} and {} live-session tables.",
        LIVE[0], LIVE[2]
    );
    Ok(())
}

async fn touch_cost(client: &Client, meter: &CapacityMeter) -> Result<(), BoxError> {
    let t0 = Timestamp::now();

    println!("\n### Touches: write units per {TOUCHED} written touches\n");
    println!("| expiry index design | table write units | index write units | index share |");
    println!("|---|---:|---:|---:|");
    let template = TableSpec::sessions()?;
    let mut without = template.clone();
    without.indexes.retain(|i| i.index_name() != EXPIRY_INDEX);
    let mut naive = template.clone();
    for index in naive.indexes.iter_mut().filter(|i| i.index_name() == EXPIRY_INDEX) {
        *index = GlobalSecondaryIndex::builder()
            .index_name(EXPIRY_INDEX)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attr::EXPIRY_SHARD)
                    .key_type(KeyType::Hash)
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attr::EXPIRES_AT)
                    .key_type(KeyType::Range)
                    .build()?,
            )
            .set_projection(index.projection().cloned())
            .build()?;
    }
    naive.attributes.push(
        AttributeDefinition::builder()
            .attribute_name(attr::EXPIRES_AT)
            .attribute_type(ScalarAttributeType::N)
            .build()?,
    );
    prune_attributes(&mut without);
    prune_attributes(&mut naive);
    let mut skipped = None;
    for (name, spec) in [
        (
            "ours: shard + coarse bucket, keys only, left alone by touches",
            template,
        ),
        ("no expiry index", without),
        ("naive: sort key = exact expiry", naive),
    ] {
        let table = format!("bench-touch-{}", SessionId::generate()?.fingerprint());
        spec.create(client, &table).await?;
        let store = DynamoStore::new(client.clone(), Config::for_table(&table));
        let mut ids = Vec::new();
        for _ in 0..TOUCHED {
            ids.push(store.create(NewSession::default(), None, t0).await?.id);
        }
        meter.take();
        for id in &ids {
            store.touch(id, t0.plus(120)).await?;
        }
        let used = meter.take();
        let share = used.index_write / (used.table_write + used.index_write) * 100.0;
        println!(
            "| {name} | {:.0} | {:.0} | {share:.0}% |",
            used.table_write, used.index_write
        );
        if skipped.is_none() {
            // Again within the touch step: the condition fails, nothing is written.
            for id in &ids {
                store.touch(id, t0.plus(130)).await?;
            }
            skipped = Some(meter.take().reports);
        }
        client.delete_table().table_name(&table).send().await?;
    }
    if let Some(written) = skipped {
        println!(
            "\n{TOUCHED} more touches 10 s later (within the 60 s touch step) on our table: {TOUCHED} requests, {written} items written. \
             Each is a conditional UpdateItem whose condition fails; DynamoDB reports no capacity for it but bills a failed \
             conditional write like a write of the item (at least 1 unit)."
        );
    }
    touch_cost_by_size(client, meter).await
}

/// What one written and one skipped touch cost for sessions of a few sizes.
async fn touch_cost_by_size(client: &Client, meter: &CapacityMeter) -> Result<(), BoxError> {
    let t0 = Timestamp::now();
    let table = format!("bench-touch-size-{}", SessionId::generate()?.fingerprint());
    TableSpec::sessions()?.create(client, &table).await?;
    let mut config = Config::for_table(&table);
    config.limits.max_data_bytes = 80_000;
    let store = DynamoStore::new(client.clone(), config);
    println!("\n### Touches by session size: {TOUCHED} touches each\n");
    println!(
        "| session data | written touch: write units reported | skipped touch: write units reported | \
         skipped touch: response bytes (the item, ALL_OLD) | skipped touch: write units billed (AWS's rule: the item's size, as the written touch reports it) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (label, bytes) in [("1 KB", 1_000), ("10 KB", 10_000), ("64 KB", 64_000)] {
        let data = random_text_data(bytes)?;
        let request = NewSession {
            data,
            ..Default::default()
        };
        let mut ids = Vec::new();
        for _ in 0..TOUCHED {
            ids.push(store.create(request.clone(), None, t0).await?.id);
        }
        meter.take();
        for id in &ids {
            store.touch(id, t0.plus(120)).await?;
        }
        let written = meter.take();
        for id in &ids {
            store.touch(id, t0.plus(130)).await?;
        }
        let skipped = meter.take();
        let per = |units: f64| units / TOUCHED as f64;
        println!(
            "| {label} | {:.1} | {:.1} ({} reports) | {} | {:.1} |",
            per(written.table_write + written.index_write),
            per(skipped.table_write + skipped.index_write),
            skipped.reports,
            skipped.response_bytes / TOUCHED as u64,
            per(written.table_write),
        );
    }
    client.delete_table().table_name(&table).send().await?;
    Ok(())
}

/// Records per second the audit handler writes into DynamoDB Local, by batch size.
pub async fn audit_throughput() -> Result<(), BoxError> {
    use aws_lambda_events::event::dynamodb::Event;
    use lambda_runtime::{Context, LambdaEvent};
    use session_store::audit::AuditLog;

    let sample = std::fs::read_to_string(testkit::repo_root().join("events/audit-user-delete.json"))?;
    let sample: Event = serde_json::from_str(&sample)?;
    let (client, _) = testkit::client();
    println!("### Audit: records per second\n");
    println!("Each record a REMOVE of a session (the `events/audit-user-delete.json` sample with its own event id),");
    println!("written with a conditional PutItem, 32 in flight, to an audit table in DynamoDB Local.\n");
    println!("| batch size | batches | records | seconds | records/s |");
    println!("|---:|---:|---:|---:|---:|");
    for (size, batches) in [(100usize, 20usize), (1_000, 4)] {
        let auditor = audit::Auditor::new(AuditLog::new(
            client.clone(),
            testkit::fresh_table(&client, "AuditTable").await,
            90,
        ));
        let events: Vec<Event> = (0..batches)
            .map(|b| {
                let mut event = sample.clone();
                event.records = (0..size)
                    .map(|i| {
                        let mut record = sample.records[0].clone();
                        record.event_id = format!("bench-{size}-{b}-{i}");
                        record.change.sequence_number = Some(format!("{:021}", b * size + i));
                        record
                    })
                    .collect();
                event
            })
            .collect();
        let started = Instant::now();
        for event in events {
            let response = audit::handle(&auditor, LambdaEvent::new(event, Context::default()))
                .await
                .map_err(|e| e.to_string())?;
            if !response.batch_item_failures.is_empty() {
                return Err(format!("a batch reported failures: {:?}", response.batch_item_failures).into());
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let records = size * batches;
        println!(
            "| {size} | {batches} | {records} | {seconds:.2} | {:.0} |",
            records as f64 / seconds
        );
    }
    Ok(())
}
