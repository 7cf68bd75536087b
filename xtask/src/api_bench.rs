//! `xtask bench-api`: what the `api` handler adds to the DynamoDB calls it makes.
//!
//! Each API operation runs in process as the Lambda runtime runs it (API Gateway
//! event JSON in, response JSON out) against DynamoDB Local. An interceptor on
//! the same client times every DynamoDB call inside the request (the SDK's whole
//! execution: serialize, sign, send, receive, parse) and counts the heap
//! allocations made inside it, so each request splits into the bare DynamoDB
//! calls and the handler's own work, measured in the same request.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::App;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use serde_json::Value;
use session_store::item::key;
use session_store::{DynamoStore, SessionId};
use session_testkit::{self as testkit, ManualClock};

type Error = Box<dyn std::error::Error>;

/// Sessions walked through the whole life cycle.
const ROUNDS: usize = 1000;
/// Rounds run first and not counted (connection set-up, JIT of DynamoDB Local).
const WARM_UP: usize = 50;

/// Counts heap allocations (the benchmark's global allocator).
pub struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Time and allocations spent inside DynamoDB calls since the last `take`.
#[derive(Debug, Default, Clone)]
struct CallMeter(Arc<Mutex<Calls>>);

#[derive(Debug, Default, Clone, Copy)]
struct Calls {
    count: u32,
    time: Duration,
    allocations: u64,
    started: Option<(Instant, u64)>,
}

impl CallMeter {
    fn take(&self) -> Calls {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Intercept for CallMeter {
    fn name(&self) -> &'static str {
        "CallMeter"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let mut calls = self.0.lock().unwrap_or_else(|e| e.into_inner());
        calls.started = Some((Instant::now(), allocations()));
        Ok(())
    }

    fn read_after_execution(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let mut calls = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, allocated)) = calls.started.take() {
            calls.count += 1;
            calls.time += at.elapsed();
            calls.allocations += allocations() - allocated;
        }
        Ok(())
    }
}

/// One request: the whole handler, and the DynamoDB calls inside it.
#[derive(Clone, Copy)]
struct Sample {
    total: Duration,
    calls: Calls,
    allocations: u64,
}

/// The API operations measured, in the order each round runs them.
const OPERATIONS: [&str; 9] = [
    "POST /sessions",
    "GET /sessions/{id}",
    "PUT /sessions/{id}",
    "PATCH /sessions/{id}",
    "POST /sessions/{id}/touch",
    "POST /sessions/{id}/rotate",
    "GET /subjects/{subject}/sessions",
    "DELETE /sessions/{id}",
    "GET /health",
];

/// Runs the benchmark and prints Markdown.
pub async fn run() -> Result<(), Error> {
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB").map_err(|_| "AWS_ENDPOINT_URL_DYNAMODB must name DynamoDB Local")?;
    let meter = CallMeter::default();
    let client = Client::from_conf(testkit::local_config_at(&endpoint).interceptor(meter.clone()).build());
    let config = testkit::fresh_config(&client).await;
    let table = config.table_name.clone();
    let clock = Arc::new(ManualClock::new());
    let app = App {
        clock: clock.clone(),
        ..App::new(DynamoStore::new(client.clone(), config))
    };
    let events = Events::load()?;

    let mut samples: Vec<Vec<Sample>> = vec![Vec::with_capacity(ROUNDS); OPERATIONS.len()];
    let mut bare_get = Vec::with_capacity(ROUNDS);
    for round in 0..WARM_UP + ROUNDS {
        let mut measured = Vec::with_capacity(OPERATIONS.len());
        let (created, sample) = call(&app, &meter, &events.create).await?;
        measured.push(sample);
        let id = created_id(&created)?;
        for name in ["get", "replace", "merge"] {
            measured.push(call(&app, &meter, &events.for_id(name, &id)).await?.1);
        }
        // Past the touch step, so the touch writes.
        clock.advance(120);
        measured.push(call(&app, &meter, &events.for_id("touch", &id)).await?.1);
        let (rotated, sample) = call(&app, &meter, &events.for_id("rotate", &id)).await?;
        measured.push(sample);
        let new_id = created_id(&rotated)?;
        measured.push(call(&app, &meter, &events.list).await?.1);
        measured.push(call(&app, &meter, &events.for_id("delete", &new_id)).await?.1);
        measured.push(call(&app, &meter, &events.health).await?.1);

        // The bare GetItem the GET makes, on a session that exists.
        let (live, _) = call(&app, &meter, &events.create).await?;
        let live = SessionId::parse(&created_id(&live)?).ok_or("created an unparsable id")?;
        meter.take();
        let started = Instant::now();
        client
            .get_item()
            .table_name(&table)
            .set_key(Some(key(&live.handle())))
            .consistent_read(true)
            .send()
            .await?;
        let bare = started.elapsed();
        meter.take();

        if round >= WARM_UP {
            for (all, sample) in samples.iter_mut().zip(measured) {
                all.push(sample);
            }
            bare_get.push(bare);
        }
    }
    report(&samples, &mut bare_get);
    Ok(())
}

/// Sends one event through the handler as the runtime does: event JSON parsed
/// into a request, handled, the response turned into API Gateway's JSON.
async fn call(app: &App, meter: &CallMeter, event: &str) -> Result<(Value, Sample), Error> {
    meter.take();
    let allocated = allocations();
    let started = Instant::now();
    let request = lambda_http::request::from_str(event)?;
    let response = api::handle(app, request).await?;
    let (parts, body) = response.into_parts();
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(parts.status.as_u16());
    out.headers = parts.headers;
    out.body = Some(body);
    let json = serde_json::to_string(&out)?;
    let total = started.elapsed();
    let allocations = allocations() - allocated;
    let calls = meter.take();
    let answer: Value = serde_json::from_str(&json)?;
    let status = answer["statusCode"].as_u64().unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(format!("{status}: {json}").into());
    }
    Ok((
        answer,
        Sample {
            total,
            calls,
            allocations,
        },
    ))
}

fn created_id(answer: &Value) -> Result<String, Error> {
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap_or_default())?;
    Ok(body["id"].as_str().ok_or("no id in the answer")?.to_owned())
}

/// The `events/*.json` samples the rounds send.
struct Events {
    create: String,
    list: String,
    health: String,
    by_id: Vec<(&'static str, String)>,
}

impl Events {
    fn load() -> Result<Self, Error> {
        let read = crate::lambda_bench::event;
        let mut by_id = Vec::new();
        for name in ["get", "replace", "merge", "touch", "rotate", "delete"] {
            by_id.push((name, read(&format!("{name}-session"))?));
        }
        Ok(Self {
            create: read("create-session")?,
            list: read("list-subject-sessions")?,
            health: read("health")?,
            by_id,
        })
    }

    fn for_id(&self, name: &str, id: &str) -> String {
        let event = self.by_id.iter().find(|(n, _)| *n == name).map_or("", |(_, e)| e);
        event.replace(crate::lambda_bench::SAMPLE_ID, id)
    }
}

fn report(samples: &[Vec<Sample>], bare_get: &mut [Duration]) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("### Warm requests: the handler next to the DynamoDB calls it makes ({ROUNDS} of each, in process)\n");
    println!(
        "| operation | DynamoDB requests | handler p50 µs | DynamoDB calls p50 µs | added p50 µs | added ÷ calls (p50) | handler p99 µs | DynamoDB calls p99 µs | added p99 µs | handler allocations outside calls |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, all) in OPERATIONS.iter().zip(samples) {
        let mut total: Vec<Duration> = all.iter().map(|s| s.total).collect();
        let mut calls: Vec<Duration> = all.iter().map(|s| s.calls.time).collect();
        let mut added: Vec<Duration> = all.iter().map(|s| s.total.saturating_sub(s.calls.time)).collect();
        let mut own_allocations: Vec<u64> = all.iter().map(|s| s.allocations - s.calls.allocations).collect();
        let requests = all.first().map_or(0, |s| s.calls.count);
        let ratio = if us(percentile(&mut calls, 50)) > 0.0 {
            format!(
                "{:.1}%",
                100.0 * us(percentile(&mut added, 50)) / us(percentile(&mut calls, 50))
            )
        } else {
            "—".into()
        };
        own_allocations.sort_unstable();
        println!(
            "| `{name}` | {requests} | {:.0} | {:.0} | {:.0} | {ratio} | {:.0} | {:.0} | {:.0} | {} |",
            us(percentile(&mut total, 50)),
            us(percentile(&mut calls, 50)),
            us(percentile(&mut added, 50)),
            us(percentile(&mut total, 99)),
            us(percentile(&mut calls, 99)),
            us(percentile(&mut added, 99)),
            own_allocations[own_allocations.len() / 2],
        );
    }
    println!(
        "\nBare `GetItem` (consistent, same client, made directly): p50 {:.0} µs, p99 {:.0} µs.\n",
        us(percentile(bare_get, 50)),
        us(percentile(bare_get, 99))
    );
}

fn percentile(values: &mut [Duration], p: usize) -> Duration {
    values.sort_unstable();
    values[(values.len() * p / 100).min(values.len() - 1)]
}
