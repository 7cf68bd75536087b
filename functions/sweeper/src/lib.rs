//! The sweeper's handler: a plain async function over [`Sweeper`], so tests
//! call it with the same events the schedule sends.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Error, LambdaEvent};
use lambda_support::metrics::{FUNCTION, Metrics, Unit};
use serde::Deserialize;
use serde_json::Value;
use session_store::sweep::{SweepOptions, SweepSummary};
use session_store::{Clock, DynamoStore, SystemClock};

/// Time kept back from the Lambda deadline: longer than one DynamoDB operation
/// may take (`lambda_support::timeouts()`: 6 s), so the requests in flight when the
/// sweep's own deadline passes end, and the summary is returned, before Lambda's.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(8);

/// What the sweeper needs, built once per Lambda environment.
pub struct Sweeper {
    /// The session store.
    pub store: DynamoStore,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// Where each run's metrics go.
    pub metrics: Metrics,
}

impl Sweeper {
    /// A sweeper on `store` with the system clock, writing metrics to standard
    /// output in the default namespace.
    pub fn new(store: DynamoStore) -> Self {
        Self {
            store,
            clock: Arc::new(SystemClock),
            metrics: Metrics::new(lambda_support::metrics::DEFAULT_NAMESPACE, "sweeper"),
        }
    }
}

/// The invocation payload: the schedule sends `{}`; by hand, `{"dry_run": true}`
/// or `{"limit": N}`. Other fields (EventBridge metadata) are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct SweepRequest {
    /// Count what would be removed, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Examine at most this many index entries.
    pub limit: Option<u64>,
}

/// Sweeps within the invocation's time budget and returns the summary.
pub async fn handle(sweeper: &Sweeper, event: LambdaEvent<Value>) -> Result<SweepSummary, Error> {
    let request: SweepRequest = serde_json::from_value(event.payload)?;
    let options = SweepOptions {
        dry_run: request.dry_run,
        limit: request.limit,
        deadline: deadline(event.context.deadline),
        ..SweepOptions::at(sweeper.clock.now())
    };
    let swept = sweeper.store.sweep(&options).await;
    emit_metrics(sweeper, &swept);
    Ok(swept?)
}

/// The run's metrics: `SweepExamined`, `SweepDeleted`, `SweepDuration` and
/// `SweepComplete` (1 when it got through every due candidate; 0 when it stopped
/// early or failed). A dry run changes nothing and reports only its DynamoDB requests.
fn emit_metrics(sweeper: &Sweeper, swept: &Result<SweepSummary, session_store::StoreError>) {
    const BY_FUNCTION: &[&[&str]] = &[&[FUNCTION]];
    let mut document = sweeper.metrics.document();
    match swept {
        Ok(summary) if summary.dry_run => {}
        Ok(summary) => {
            document
                .count(BY_FUNCTION, "SweepExamined", summary.examined)
                .count(BY_FUNCTION, "SweepDeleted", summary.deleted)
                .metric(
                    BY_FUNCTION,
                    "SweepDuration",
                    summary.duration_ms as f64,
                    Unit::Milliseconds,
                )
                .count(BY_FUNCTION, "SweepComplete", u64::from(summary.complete));
        }
        Err(_) => {
            document.count(BY_FUNCTION, "SweepComplete", 0);
        }
    }
    sweeper.metrics.emit(document);
}

/// The instant to stop starting work: the Lambda deadline (epoch milliseconds) less the margin;
/// `None` when the context carries no usable deadline.
fn deadline(deadline_ms: u64) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
    if deadline_ms <= now_ms {
        // Lambda never runs a function past its deadline; a past one is not an instant
        // (cargo lambda's emulator sends the timeout there). Sweep without a time budget.
        tracing::debug!(
            deadline_ms,
            now_ms,
            "the invocation deadline is not in the future; ignoring it"
        );
        return None;
    }
    Some(Instant::now() + budget(Duration::from_millis(deadline_ms.saturating_sub(now_ms))))
}

/// How much of the time `left` before the deadline a sweep may use.
fn budget(left: Duration) -> Duration {
    left.saturating_sub(SAFETY_MARGIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_room_for_a_whole_dynamodb_operation() {
        let operation = lambda_support::timeouts()
            .operation_timeout()
            .expect("the functions bound every operation");
        assert!(SAFETY_MARGIN > operation, "{SAFETY_MARGIN:?} vs {operation:?}");
        assert_eq!(budget(Duration::from_secs(60)), Duration::from_secs(52));
        assert_eq!(
            budget(Duration::from_secs(5)),
            Duration::ZERO,
            "too little time: start nothing"
        );
        assert_eq!(budget(Duration::ZERO), Duration::ZERO);
    }
}
