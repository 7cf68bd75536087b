//! The audit handler: one audit record per session deletion in a DynamoDB
//! stream batch, reporting the first record it could not write so that Lambda
//! retries from there (`ReportBatchItemFailures`).

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use futures::StreamExt;
use lambda_runtime::{Error, LambdaEvent};
use lambda_support::metrics::{FUNCTION, Metrics, Unit};
use session_store::audit::{AuditLog, AuditRecord};
use session_store::{StoreError, Timestamp, item};
use tracing::{error, info, warn};

/// Audit writes in flight at once.
const CONCURRENCY: usize = 32;

/// What the audit function needs, built once per Lambda environment.
pub struct Auditor {
    /// The audit table.
    pub log: AuditLog,
    /// Where each batch's metrics go.
    pub metrics: Metrics,
}

impl Auditor {
    /// An auditor writing to `log`, and its metrics to standard output in the default namespace.
    pub fn new(log: AuditLog) -> Self {
        Self {
            log,
            metrics: Metrics::new(lambda_support::metrics::DEFAULT_NAMESPACE, "audit"),
        }
    }
}

/// What became of one stream record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An audit record was written.
    Written,
    /// The record had been written before (a redelivered event).
    Duplicate,
    /// Not a session deletion this function understands; logged and passed over.
    Skipped,
}

/// Audits a batch; the response names the first record that failed, if any.
pub async fn handle(auditor: &Auditor, event: LambdaEvent<Event>) -> Result<DynamoDbEventResponse, Error> {
    let records = &event.payload.records;
    let mut outcomes: Vec<Result<Outcome, StoreError>> = futures::stream::iter(records)
        .map(|r| audit(auditor, r))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    emit_metrics(auditor, records, &outcomes);
    // Retrying cannot help (a missing table, a denied write): fail the invocation,
    // so the errors alarm fires; Lambda retries the batch as for any failure.
    if let Some(first) = outcomes.iter().position(|o| matches!(o, Err(e) if !e.is_transient()))
        && let Err(err) = outcomes.swap_remove(first)
    {
        let event_id = &records[first].event_id;
        error!(%event_id, code = err.code().unwrap_or("-"), error = ?err, "audit write failed permanently");
        return Err(err.into());
    }
    let mut response = DynamoDbEventResponse::default();
    let count = |o: Outcome| outcomes.iter().filter(|r| matches!(r, Ok(x) if *x == o)).count();
    if let Some((record, Err(err))) = records.iter().zip(&outcomes).find(|(_, o)| o.is_err()) {
        warn!(event_id = %record.event_id, code = err.code().unwrap_or("-"), error = ?err, "audit write failed; the batch is retried from this record");
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = record
            .change
            .sequence_number
            .clone()
            .or_else(|| Some(record.event_id.clone()));
        response.batch_item_failures.push(failure);
    }
    info!(
        records = records.len(),
        written = count(Outcome::Written),
        duplicates = count(Outcome::Duplicate),
        skipped = count(Outcome::Skipped),
        failed = outcomes.iter().filter(|o| o.is_err()).count(),
        "batch audited"
    );
    Ok(response)
}

/// The batch's metrics: `AuditRecordsWritten`, `AuditDuplicates`, `AuditSkipped`,
/// and `StreamLag`, the age of its oldest record (how far behind the stream the
/// audit is).
fn emit_metrics(auditor: &Auditor, records: &[EventRecord], outcomes: &[Result<Outcome, StoreError>]) {
    const BY_FUNCTION: &[&[&str]] = &[&[FUNCTION]];
    let count = |o: Outcome| outcomes.iter().filter(|r| matches!(r, Ok(x) if *x == o)).count() as u64;
    let mut document = auditor.metrics.document();
    document
        .count(BY_FUNCTION, "AuditRecordsWritten", count(Outcome::Written))
        .count(BY_FUNCTION, "AuditDuplicates", count(Outcome::Duplicate))
        .count(BY_FUNCTION, "AuditSkipped", count(Outcome::Skipped));
    let oldest = records
        .iter()
        .map(|r| r.change.approximate_creation_date_time.timestamp_millis())
        .min();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    if let (Some(oldest), Ok(now)) = (oldest, now) {
        let lag = (now.as_millis() as i64).saturating_sub(oldest).max(0);
        document.metric(BY_FUNCTION, "StreamLag", lag as f64, Unit::Milliseconds);
    }
    auditor.metrics.emit(document);
}

/// Audits one stream record.
pub async fn audit(auditor: &Auditor, record: &EventRecord) -> Result<Outcome, StoreError> {
    if record.event_name != "REMOVE" {
        warn!(event_id = %record.event_id, event_name = %record.event_name, "not a deletion; skipped");
        return Ok(Outcome::Skipped);
    }
    let old = match item::decode_image(record.change.old_image.clone()) {
        Ok(old) => old.session,
        Err(err) => {
            warn!(event_id = %record.event_id, error = ?err, "no readable session in the old image; skipped");
            return Ok(Outcome::Skipped);
        }
    };
    // TTL's deletions name the DynamoDB service as their user identity.
    let by_ttl = record
        .user_identity
        .as_ref()
        .is_some_and(|u| u.type_ == "Service" && u.principal_id == "dynamodb.amazonaws.com");
    let deleted_at = Timestamp(record.change.approximate_creation_date_time.timestamp());
    let audit = AuditRecord::of(&record.event_id, &old, deleted_at, by_ttl);
    let written = auditor.log.write(&audit).await?;
    info!(
        event_id = %audit.event_id,
        session = %audit.session,
        subject = audit.subject.as_deref().unwrap_or("-"),
        cause = audit.cause.as_str(),
        deleted_at = %audit.deleted_at.to_rfc3339(),
        created_at = %audit.created_at.to_rfc3339(),
        last_active_at = %audit.last_active_at.to_rfc3339(),
        expires_at = %audit.expires_at.to_rfc3339(),
        duplicate = !written,
        "session deleted"
    );
    Ok(if written { Outcome::Written } else { Outcome::Duplicate })
}
