//! CloudWatch metrics through the Embedded Metric Format (EMF): one JSON document
//! per invocation, written as its own line to the function's log, from which
//! CloudWatch Logs extracts the metrics. No API calls, no metrics client.
//!
//! Specification: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// A function's metrics: its namespace, its name (the `Function` dimension), where
/// documents are written, and the counts of its DynamoDB requests.
#[derive(Clone)]
pub struct Metrics {
    namespace: Arc<str>,
    function: &'static str,
    sink: Sink,
    calls: DynamoDbCalls,
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
        }
    }

    /// Metrics of `function` in the namespace `METRICS_NAMESPACE` names (start-up only).
    pub fn from_env(function: &'static str) -> Self {
        let namespace = std::env::var("METRICS_NAMESPACE")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        Self::new(&namespace, function)
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
        }
    }

    /// Adds the DynamoDB retries and throttled requests since the last document
    /// (`DynamoDbRetries`, `DynamoDbThrottles`, by `Function`), then writes `document`.
    /// A Lambda environment runs one invocation at a time, so these are the invocation's.
    pub fn emit(&self, mut document: Document) {
        let (retries, throttles) = self.calls.take();
        document.count(&[&[FUNCTION]], "DynamoDbRetries", retries);
        document.count(&[&[FUNCTION]], "DynamoDbThrottles", throttles);
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        (self.sink)(&document.render(&self.namespace, timestamp).to_string());
    }
}

/// One EMF document: dimension values and metric values at its root, and the
/// directives that tell CloudWatch which are which.
#[derive(Debug, Clone)]
pub struct Document {
    values: Map<String, Value>,
    directives: Vec<Directive>,
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
