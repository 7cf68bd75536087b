//! CloudWatch metrics through the Embedded Metric Format (EMF): JSON documents
//! written as lines of their own to the function's log, from which CloudWatch Logs
//! extracts the metrics. No API calls, no metrics client.
//!
//! By default each invocation writes its document at once. [`Metrics::by_minute`]
//! merges an environment's documents of the same minute and the same dimension values
//! instead (counts summed, durations kept as up to 100 values each) and writes them
//! when the minute is over, at the next invocation or at shutdown ([`Metrics::flush`]):
//! one document per route and minute rather than one per request.
//!
//! Specification: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::{Map, Value, json};

/// The namespace when `METRICS_NAMESPACE` is unset (local runs).
pub const DEFAULT_NAMESPACE: &str = "SessionService";

/// The dimension every document carries: the function that wrote it.
pub const FUNCTION: &str = "Function";

/// A metric's unit, as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A number of things.
    Count,
    /// A duration in milliseconds.
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// Where finished documents go: standard output (the function's log) in Lambda.
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// The most values one metric of a document may hold (EMF's limit for an array).
const MAX_VALUES: usize = 100;

/// A minute in epoch milliseconds.
const MINUTE_MS: u64 = 60_000;

/// A function's metrics: its namespace, its name (the `Function` dimension), where
/// documents are written, the counts of its DynamoDB requests, and the documents held
/// for the current minute when it writes [by minute](Metrics::by_minute).
#[derive(Clone)]
pub struct Metrics {
    namespace: Arc<str>,
    function: &'static str,
    sink: Sink,
    calls: DynamoDbCalls,
    held: Option<Arc<Mutex<Held>>>,
}

/// Documents of one minute (its start in epoch milliseconds), merged by series.
#[derive(Debug, Default)]
struct Held {
    minute: u64,
    documents: Vec<Document>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("namespace", &self.namespace)
            .field("function", &self.function)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics of `function` in `namespace`, written to standard output.
    pub fn new(namespace: &str, function: &'static str) -> Self {
        // A line of its own (println! holds the lock for the whole line).
        let stdout: Sink = Arc::new(|line: &str| println!("{line}"));
        Self {
            namespace: namespace.into(),
            function,
            sink: stdout,
            calls: DynamoDbCalls::default(),
            held: None,
        }
    }

    /// The same metrics, written at most once a minute: documents of one minute with
    /// the same dimension values are merged and written when a later minute's document
    /// arrives, when one is [urgent](Document::urgent), when a duration has 100 values,
    /// or at [`Metrics::flush`]. Each is stamped with its minute's start.
    pub fn by_minute(mut self) -> Self {
        self.held = Some(Arc::default());
        self
    }

    /// Metrics of `function` in the namespace `METRICS_NAMESPACE` names, written
    /// [by minute](Metrics::by_minute) when `METRICS_BY_MINUTE` is `true` (start-up only).
    pub fn from_env(function: &'static str) -> Self {
        let namespace = std::env::var("METRICS_NAMESPACE")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        let metrics = Self::new(&namespace, function);
        match std::env::var("METRICS_BY_MINUTE").as_deref() {
            Ok("true") => metrics.by_minute(),
            _ => metrics,
        }
    }

    /// The same metrics, written to `sink` instead (tests read them there).
    pub fn with_sink(mut self, sink: Sink) -> Self {
        self.sink = sink;
        self
    }

    /// The interceptor to add to the DynamoDB client, so that documents count its
    /// retries and throttled requests.
    pub fn dynamodb_calls(&self) -> DynamoDbCalls {
        self.calls.clone()
    }

    /// A new document for one invocation, with the `Function` dimension set.
    pub fn document(&self) -> Document {
        let mut values = Map::new();
        values.insert(FUNCTION.to_owned(), Value::from(self.function));
        Document {
            values,
            directives: Vec::new(),
            urgent: false,
        }
    }

    /// Adds the DynamoDB retries and throttled requests since the last document
    /// (`DynamoDbRetries`, `DynamoDbThrottles`, by `Function`), then writes `document`,
    /// or holds it for its minute when writing [by minute](Metrics::by_minute).
    /// A Lambda environment runs one invocation at a time, so these are the invocation's.
    pub fn emit(&self, document: Document) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.emit_at(document, now);
    }

    /// [`Metrics::emit`] at `now` (epoch milliseconds).
    pub fn emit_at(&self, mut document: Document, now: u64) {
        let (retries, throttles) = self.calls.take();
        document.count(&[&[FUNCTION]], "DynamoDbRetries", retries);
        document.count(&[&[FUNCTION]], "DynamoDbThrottles", throttles);
        let Some(held) = &self.held else {
            return self.write(&document, now);
        };
        let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
        let minute = now - now % MINUTE_MS;
        if held.minute != minute {
            self.write_all(&mut held);
            held.minute = minute;
        }
        let urgent = document.urgent;
        let position = match held.documents.iter().position(|d| d.same_series(&document)) {
            Some(position) => {
                held.documents[position].absorb(document);
                position
            }
            None => {
                held.documents.push(document);
                held.documents.len() - 1
            }
        };
        if urgent {
            self.write_all(&mut held);
        } else if held.documents[position].full() {
            let full = held.documents.swap_remove(position);
            self.write(&full, minute);
        }
    }

    /// Writes every document held for the current minute (at shutdown, say).
    pub fn flush(&self) {
        if let Some(held) = &self.held {
            self.write_all(&mut held.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }

    fn write_all(&self, held: &mut Held) {
        for document in std::mem::take(&mut held.documents) {
            self.write(&document, held.minute);
        }
    }

    fn write(&self, document: &Document, timestamp: u64) {
        (self.sink)(&document.render(&self.namespace, timestamp).to_string());
    }
}

/// One EMF document: dimension values and metric values at its root, and the
/// directives that tell CloudWatch which are which.
#[derive(Debug, Clone)]
pub struct Document {
    values: Map<String, Value>,
    directives: Vec<Directive>,
    urgent: bool,
}

/// Metrics published under the same dimension sets.
#[derive(Debug, Clone)]
struct Directive {
    dimension_sets: Vec<Vec<&'static str>>,
    metrics: Vec<(&'static str, Unit)>,
}

impl Document {
    /// Sets the dimension `name` to `value`.
    pub fn dimension(&mut self, name: &'static str, value: &str) -> &mut Self {
        self.values.insert(name.to_owned(), Value::from(value));
        self
    }

    /// Publishes `value` as the metric `name` under each of the dimension sets
    /// `dimensions` (whose dimensions must be set on the document).
    pub fn metric(&mut self, dimensions: &[&[&'static str]], name: &'static str, value: f64, unit: Unit) -> &mut Self {
        let sets: Vec<Vec<&'static str>> = dimensions.iter().map(|set| set.to_vec()).collect();
        let position = match self.directives.iter().position(|d| d.dimension_sets == sets) {
            Some(position) => position,
            None => {
                self.directives.push(Directive {
                    dimension_sets: sets,
                    metrics: Vec::new(),
                });
                self.directives.len() - 1
            }
        };
        let metrics = &mut self.directives[position].metrics;
        if !metrics.iter().any(|(n, _)| *n == name) {
            metrics.push((name, unit));
        }
        self.values.insert(name.to_owned(), json!(value));
        self
    }

    /// Publishes the count `value` as the metric `name` under `dimensions`.
    pub fn count(&mut self, dimensions: &[&[&'static str]], name: &'static str, value: u64) -> &mut Self {
        self.metric(dimensions, name, value as f64, Unit::Count)
    }

    /// Marks the document as one to write at once, with everything held before it
    /// (faults, which alarms watch).
    pub fn urgent(&mut self) -> &mut Self {
        self.urgent = true;
        self
    }

    /// Whether `other` publishes the same metrics under the same dimension values.
    fn same_series(&self, other: &Document) -> bool {
        let dimensions = |d: &Document| -> Vec<(String, Value)> {
            let metrics: Vec<&str> = d
                .directives
                .iter()
                .flat_map(|x| x.metrics.iter().map(|(n, _)| *n))
                .collect();
            d.values
                .iter()
                .filter(|(name, _)| !metrics.contains(&name.as_str()))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect()
        };
        let shape = |d: &Document| -> Vec<(Vec<Vec<&str>>, Vec<&str>)> {
            d.directives
                .iter()
                .map(|x| (x.dimension_sets.clone(), x.metrics.iter().map(|(n, _)| *n).collect()))
                .collect()
        };
        shape(self) == shape(other) && dimensions(self) == dimensions(other)
    }

    /// Merges `other`, a document of the same series, into this one: counts add up,
    /// durations are kept value by value.
    fn absorb(&mut self, other: Document) {
        self.urgent |= other.urgent;
        let mut metrics: Vec<&(&str, Unit)> = other.directives.iter().flat_map(|d| d.metrics.iter()).collect();
        metrics.dedup_by_key(|(name, _)| *name);
        for (name, unit) in metrics {
            let (Some(mine), Some(theirs)) = (self.values.get_mut(*name), other.values.get(*name)) else {
                continue;
            };
            *mine = match unit {
                Unit::Count => json!(mine.as_f64().unwrap_or(0.0) + theirs.as_f64().unwrap_or(0.0)),
                Unit::Milliseconds => Value::Array(values(mine).chain(values(theirs)).map(Value::from).collect()),
            };
        }
    }

    /// Whether a duration holds as many values as EMF allows.
    fn full(&self) -> bool {
        self.values
            .values()
            .any(|value| value.as_array().is_some_and(|values| values.len() >= MAX_VALUES))
    }

    /// The document as CloudWatch reads it, stamped `timestamp` (epoch milliseconds).
    pub fn render(&self, namespace: &str, timestamp: u64) -> Value {
        let directives: Vec<Value> = self
            .directives
            .iter()
            .map(|directive| {
                json!({
                    "Namespace": namespace,
                    "Dimensions": directive.dimension_sets,
                    "Metrics": directive.metrics
                        .iter()
                        .map(|(name, unit)| json!({ "Name": name, "Unit": unit.as_str() }))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut root = self.values.clone();
        root.insert(
            "_aws".to_owned(),
            json!({ "Timestamp": timestamp, "CloudWatchMetrics": directives }),
        );
        Value::Object(root)
    }
}

/// The numbers a metric's member holds: one, or an array of them.
fn values(member: &Value) -> impl Iterator<Item = f64> + '_ {
    let many = member.as_array().map(|values| values.iter().filter_map(Value::as_f64));
    member.as_f64().into_iter().chain(many.into_iter().flatten())
}

/// Counts a DynamoDB client's retries (attempts beyond each operation's first) and
/// throttled attempts: answered `ThrottlingException`,
/// `ProvisionedThroughputExceededException` or `RequestLimitExceeded`, or a
/// transaction cancelled because a part was throttled.
#[derive(Debug, Clone, Default)]
pub struct DynamoDbCalls(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    retries: AtomicU64,
    throttles: AtomicU64,
}

impl DynamoDbCalls {
    /// (retries, throttled attempts) since the last call, and starts counting anew.
    pub fn take(&self) -> (u64, u64) {
        let counters = &self.0;
        (
            counters.retries.swap(0, Ordering::SeqCst),
            counters.throttles.swap(0, Ordering::SeqCst),
        )
    }
}

/// The error codes DynamoDB throttles with (as an error, or as a transaction's
/// cancellation reason).
const THROTTLING_CODES: [&str; 5] = [
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
];

/// Whether an error body of DynamoDB's JSON protocol says the request was throttled:
/// its `__type` ("com.amazonaws.dynamodb.v20120810#ThrottlingException"), or, for a
/// cancelled transaction, one of its `CancellationReasons`.
fn throttled(body: &Value) -> bool {
    let code = body["__type"].as_str().unwrap_or_default();
    let code = code.rsplit('#').next().unwrap_or_default();
    THROTTLING_CODES.contains(&code)
        || (code == "TransactionCanceledException"
            && body["CancellationReasons"].as_array().is_some_and(|reasons| {
                reasons
                    .iter()
                    .any(|r| THROTTLING_CODES.contains(&r["Code"].as_str().unwrap_or_default()))
            }))
}

impl Intercept for DynamoDbCalls {
    fn name(&self) -> &'static str {
        "DynamoDbCalls"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // The orchestrator numbers each attempt of an operation from 1.
        if cfg.load::<RequestAttempts>().is_some_and(|a| a.attempts() > 1) {
            self.0.retries.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Errors are small and read into memory before this runs.
        let was_throttled = context.response().is_some_and(|response| {
            response.status().as_u16() == 400
                && response
                    .body()
                    .bytes()
                    .and_then(|body| serde_json::from_slice::<Value>(body).ok())
                    .is_some_and(|body| throttled(&body))
        });
        if was_throttled {
            self.0.throttles.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000; // a minute's start

    fn captured() -> (Metrics, Arc<Mutex<Vec<Value>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        let sink: Sink = Arc::new(move |line: &str| kept.lock().unwrap().push(serde_json::from_str(line).unwrap()));
        (Metrics::new("test", "api").with_sink(sink), lines)
    }

    fn request(metrics: &Metrics, route: &str, status: u16, latency: f64) -> Document {
        let mut document = metrics.document();
        document
            .dimension("Route", route)
            .count(&[&["Route"], &[FUNCTION]], "Requests", 1)
            .count(&[&["Route"], &[FUNCTION]], "ServerErrors", u64::from(status >= 500))
            .metric(&[&["Route"], &[FUNCTION]], "Latency", latency, Unit::Milliseconds);
        if status >= 500 {
            document.urgent();
        }
        document
    }

    fn take(lines: &Mutex<Vec<Value>>) -> Vec<Value> {
        std::mem::take(&mut *lines.lock().unwrap())
    }

    #[test]
    fn without_by_minute_every_document_is_written_at_once() {
        let (metrics, lines) = captured();
        metrics.emit_at(request(&metrics, "GET /x", 200, 3.0), T0 + 5);
        metrics.emit_at(request(&metrics, "GET /x", 200, 4.0), T0 + 6);
        let written = take(&lines);
        assert_eq!(written.len(), 2);
        assert_eq!(written[0]["Latency"], json!(3.0));
        assert_eq!(written[1]["_aws"]["Timestamp"], json!(T0 + 6));
    }

    #[test]
    fn by_minute_a_routes_requests_of_one_minute_are_one_document_written_when_the_minute_is_over() {
        let (metrics, lines) = captured();
        let metrics = metrics.by_minute();
        for (i, route) in ["GET /x", "GET /x", "PUT /x", "GET /x"].into_iter().enumerate() {
            metrics.emit_at(request(&metrics, route, 200, i as f64 + 1.0), T0 + 1_000 * i as u64);
        }
        assert!(take(&lines).is_empty(), "nothing is written within the minute");
        metrics.emit_at(request(&metrics, "GET /x", 200, 9.0), T0 + MINUTE_MS + 1);
        let written = take(&lines);
        assert_eq!(written.len(), 2, "one document per route: {written:?}");
        let get = &written[0];
        assert_eq!(get["Route"], json!("GET /x"));
        assert_eq!(get["Requests"], json!(3.0));
        assert_eq!(get["ServerErrors"], json!(0.0));
        assert_eq!(get["Latency"], json!([1.0, 2.0, 4.0]));
        assert_eq!(get["_aws"]["Timestamp"], json!(T0), "stamped with its minute");
        assert_eq!(written[1]["Route"], json!("PUT /x"));
        assert_eq!(written[1]["Requests"], json!(1.0));
        metrics.flush();
        let rest = take(&lines);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0]["Latency"], json!(9.0));
        assert_eq!(rest[0]["_aws"]["Timestamp"], json!(T0 + MINUTE_MS));
        metrics.flush();
        assert!(take(&lines).is_empty(), "a flush writes nothing twice");
    }

    #[test]
    fn by_minute_a_fault_writes_what_is_held_at_once() {
        let (metrics, lines) = captured();
        let metrics = metrics.by_minute();
        metrics.emit_at(request(&metrics, "GET /x", 200, 1.0), T0);
        metrics.emit_at(request(&metrics, "PUT /x", 200, 1.0), T0 + 1);
        metrics.emit_at(request(&metrics, "GET /x", 500, 2.0), T0 + 2);
        let written = take(&lines);
        assert_eq!(written.len(), 2, "the fault, with everything held: {written:?}");
        assert_eq!(
            (&written[0]["Route"], &written[0]["Requests"]),
            (&json!("GET /x"), &json!(2.0))
        );
        assert_eq!(written[0]["ServerErrors"], json!(1.0));
        assert_eq!(written[0]["_aws"]["Timestamp"], json!(T0));
        assert_eq!(written[1]["Route"], json!("PUT /x"));
    }

    #[test]
    fn by_minute_a_duration_never_holds_more_than_a_hundred_values() {
        let (metrics, lines) = captured();
        let metrics = metrics.by_minute();
        for i in 0..250 {
            metrics.emit_at(request(&metrics, "GET /x", 200, 1.0), T0 + i);
        }
        metrics.flush();
        let written = take(&lines);
        let sizes: Vec<usize> = written
            .iter()
            .map(|d| d["Latency"].as_array().map_or(1, Vec::len))
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        let requests: f64 = written.iter().map(|d| d["Requests"].as_f64().unwrap()).sum();
        assert_eq!(requests, 250.0);
    }
}
