//! The sweep: removes expired sessions through the expiry index, never by
//! scanning the table, so its cost grows with expired sessions, not live ones.
//!
//! Every session is filed under `(expiry_shard, expiry_bucket)` with the bucket
//! at or before its expiry (touches leave it alone, so they never write the
//! index). A sweep at `now` queries each shard for buckets `<= now`, which
//! holds every session expired by `now`, and deletes each candidate on the
//! condition that it is still expired at delete time. A candidate that was
//! touched since it was filed survives the condition and is re-filed under its
//! current expiry's bucket, so it is not read again until then.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConsumedCapacity, ReturnConsumedCapacity, ReturnValuesOnConditionCheckFailure,
};
use futures::StreamExt;
use serde::Serialize;
use tracing::{info, warn};

use crate::error::StoreError;
use crate::item::{self, EXPIRY_INDEX, attr};
use crate::model::{Timestamp, expiry_bucket};
use crate::store::{DynamoStore, Expr};

/// How a sweep runs.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Sessions expired at this instant are removed.
    pub now: Timestamp,
    /// Count what would be removed, change nothing.
    pub dry_run: bool,
    /// Examine at most this many index entries; the next run goes on.
    pub limit: Option<u64>,
    /// Start no new request after this instant (checked before every page, every
    /// candidate and every retry); the next run goes on.
    pub deadline: Option<Instant>,
    /// Index entries per Query page (DynamoDB's 1 MB page when `None`).
    pub page_size: Option<i32>,
    /// Deletes in flight at once.
    pub concurrency: usize,
    /// The shard swept first; the others follow in order, wrapping around. A
    /// different one each run, so a backlog larger than one run starves no shard.
    pub first_shard: u32,
}

/// Index entries per Query page by default: a page's deletes take a moment, not
/// the whole budget (a 1 MB page holds some 10,000 keys).
pub const PAGE_SIZE: i32 = 200;

impl SweepOptions {
    /// A full sweep at `now` with default concurrency and page size, from a
    /// random first shard.
    pub fn at(now: Timestamp) -> Self {
        Self {
            now,
            dry_run: false,
            limit: None,
            deadline: None,
            page_size: Some(PAGE_SIZE),
            concurrency: 16,
            // Any shard will do if the OS cannot say: the next run picks again.
            first_shard: getrandom::u32().unwrap_or_default(),
        }
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// Why a sweep ended before it had looked at every candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoppedBy {
    /// The time budget ran out.
    TimeBudget,
    /// The examined-entries limit was reached.
    Limit,
    /// DynamoDB kept throttling after backing off.
    Throttled,
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SweepSummary {
    /// Index entries examined.
    pub examined: u64,
    /// Sessions deleted (in a dry run: found expired, left in place).
    pub deleted: u64,
    /// Candidates still live (touched since they were filed); re-filed under their new expiry.
    pub skipped_live: u64,
    /// Candidates already gone when their turn came.
    pub already_gone: u64,
    /// Distinct `(shard, bucket)` pairs the candidates came from.
    pub buckets: u64,
    /// Wall-clock duration of the run.
    pub duration_ms: u64,
    /// Read capacity units DynamoDB reported (Query, dry-run reads).
    pub consumed_read_units: f64,
    /// Write capacity units DynamoDB reported (deletes, re-filing; table and indexes).
    pub consumed_write_units: f64,
    /// Whether every candidate was examined; if not, `stopped_by` says why.
    pub complete: bool,
    /// Why the run ended early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<StoppedBy>,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// What happened to one candidate.
enum Outcome {
    Deleted,
    Live,
    Gone,
    Throttled,
    /// The deadline came first: not looked at; the next run will.
    NotReached,
}

fn units(capacity: Option<&ConsumedCapacity>) -> f64 {
    capacity.and_then(ConsumedCapacity::capacity_units).unwrap_or(0.0)
}

/// Backoff before retrying a throttled candidate, on top of the SDK's own retries.
const BACKOFF: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(400),
    Duration::from_millis(1600),
    Duration::from_millis(3200),
];

impl DynamoStore {
    /// Removes the sessions expired at `options.now`; see the [module docs](self).
    pub async fn sweep(&self, options: &SweepOptions) -> Result<SweepSummary, StoreError> {
        Sweep { store: self, options }.run().await
    }
}

/// One sweep: the store it works on and how it runs.
struct Sweep<'a> {
    store: &'a DynamoStore,
    options: &'a SweepOptions,
}

impl Sweep<'_> {
    async fn run(&self) -> Result<SweepSummary, StoreError> {
        let options = self.options;
        let started = Instant::now();
        let mut summary = SweepSummary {
            dry_run: options.dry_run,
            complete: true,
            ..Default::default()
        };
        let mut buckets = HashSet::new();
        let shards = self.store.config().expiry_shards;
        let order = (0..shards).map(|i| (options.first_shard % shards + i) % shards);
        'shards: for shard in order {
            let mut start = None;
            loop {
                if let Some(reason) = self.stop_reason(&summary) {
                    summary.complete = false;
                    summary.stopped_by = Some(reason);
                    break 'shards;
                }
                let page = match self.expiry_page(shard, start.take()).await {
                    Ok(page) => page,
                    // Throttled or unavailable past the SDK's retries: stop here and say so;
                    // the next run goes on. A permanent failure fails the invocation.
                    Err(e) if e.is_transient() => {
                        warn!(shard, error = ?e, "expiry index query failed; stopping");
                        summary.complete = false;
                        summary.stopped_by = Some(StoppedBy::Throttled);
                        break 'shards;
                    }
                    Err(e) => return Err(e),
                };
                summary.consumed_read_units += units(page.consumed_capacity());
                let mut candidates = Vec::new();
                for key in page.items() {
                    let handle = key.get(attr::HANDLE).and_then(|v| v.as_s().ok());
                    let bucket = key.get(attr::EXPIRY_BUCKET).and_then(|v| v.as_n().ok());
                    if let (Some(handle), Some(bucket)) = (handle, bucket) {
                        buckets.insert((shard, bucket.clone()));
                        candidates.push(handle.clone());
                    }
                }
                if let Some(limit) = options.limit {
                    let room = limit.saturating_sub(summary.examined) as usize;
                    if candidates.len() > room {
                        candidates.truncate(room);
                        summary.complete = false;
                        summary.stopped_by = Some(StoppedBy::Limit);
                    }
                }
                let outcomes: Vec<(Outcome, f64, f64)> = futures::stream::iter(candidates)
                    .map(|handle| self.remove_if_expired(handle))
                    .buffer_unordered(options.concurrency.max(1))
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .collect::<Result<_, _>>()?;
                for (outcome, read, write) in outcomes {
                    summary.consumed_read_units += read;
                    summary.consumed_write_units += write;
                    summary.examined += u64::from(!matches!(outcome, Outcome::NotReached));
                    match outcome {
                        Outcome::Deleted => summary.deleted += 1,
                        Outcome::Live => summary.skipped_live += 1,
                        Outcome::Gone => summary.already_gone += 1,
                        Outcome::Throttled => {
                            summary.complete = false;
                            summary.stopped_by = Some(StoppedBy::Throttled);
                        }
                        Outcome::NotReached => {
                            summary.complete = false;
                            summary.stopped_by.get_or_insert(StoppedBy::TimeBudget);
                        }
                    }
                }
                if summary.stopped_by.is_some() {
                    break 'shards;
                }
                match page.last_evaluated_key {
                    Some(key) => start = Some(key),
                    None => break,
                }
            }
        }
        summary.buckets = buckets.len() as u64;
        summary.duration_ms = started.elapsed().as_millis() as u64;
        info!(
            examined = summary.examined,
            deleted = summary.deleted,
            skipped_live = summary.skipped_live,
            already_gone = summary.already_gone,
            buckets = summary.buckets,
            duration_ms = summary.duration_ms,
            consumed_read_units = summary.consumed_read_units,
            consumed_write_units = summary.consumed_write_units,
            complete = summary.complete,
            stopped_by = ?summary.stopped_by,
            dry_run = summary.dry_run,
            "sweep finished"
        );
        Ok(summary)
    }

    fn stop_reason(&self, summary: &SweepSummary) -> Option<StoppedBy> {
        if self.options.past_deadline() {
            return Some(StoppedBy::TimeBudget);
        }
        if self.options.limit.is_some_and(|l| summary.examined >= l) {
            return Some(StoppedBy::Limit);
        }
        None
    }

    /// One page of `shard`'s index entries in buckets up to now, from `start`.
    async fn expiry_page(
        &self,
        shard: u32,
        start: Option<std::collections::HashMap<String, AttributeValue>>,
    ) -> Result<aws_sdk_dynamodb::operation::query::QueryOutput, StoreError> {
        let mut e = Expr::default();
        let condition = format!(
            "{} = {} AND {} <= {}",
            e.name(attr::EXPIRY_SHARD),
            e.num(shard),
            e.name(attr::EXPIRY_BUCKET),
            e.num(self.options.now.0)
        );
        Ok(self
            .store
            .client()
            .query()
            .table_name(&self.store.config().table_name)
            .index_name(EXPIRY_INDEX)
            .key_condition_expression(condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .set_exclusive_start_key(start)
            .set_limit(self.options.page_size)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await?)
    }

    /// Deletes one candidate if it is still expired; re-files it if it is live.
    /// Returns its outcome and the read and write units it cost.
    async fn remove_if_expired(&self, handle: String) -> Result<(Outcome, f64, f64), StoreError> {
        let options = self.options;
        if options.past_deadline() {
            return Ok((Outcome::NotReached, 0.0, 0.0));
        }
        if options.dry_run {
            return self.inspect(handle).await;
        }
        let mut attempt = 0;
        loop {
            let mut e = Expr::default();
            let condition = format!(
                "attribute_exists({}) AND {} < {}",
                e.name(attr::HANDLE),
                e.name(attr::EXPIRES_AT),
                e.num(options.now.0)
            );
            let result = self
                .store
                .client()
                .delete_item()
                .table_name(&self.store.config().table_name)
                .key(attr::HANDLE, AttributeValue::S(handle.clone()))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(e.names))
                .set_expression_attribute_values(Some(e.values))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await;
            let err = match result {
                Ok(out) => return Ok((Outcome::Deleted, 0.0, units(out.consumed_capacity()))),
                Err(err) => err,
            };
            // A failed conditional delete carries no ConsumedCapacity; DynamoDB bills it as
            // at least one write unit, which is what is counted for it here.
            if let Some(DeleteItemError::ConditionalCheckFailedException(c)) = err.as_service_error() {
                return match c.item.clone() {
                    None => Ok((Outcome::Gone, 0.0, 1.0)),
                    // Re-filing only saves later sweeps a read: never past the deadline.
                    Some(_) if options.past_deadline() => Ok((Outcome::Live, 0.0, 1.0)),
                    Some(old) => {
                        // Re-filing only saves later sweeps a read: if it fails for now,
                        // the bucket stays a lower bound and the next sweep looks again.
                        let written = match self.refile(item::decode(old)?).await {
                            Ok(units) => units,
                            Err(e) if e.is_transient() => {
                                warn!(error = ?e, "re-filing failed; left for the next sweep");
                                0.0
                            }
                            Err(e) => return Err(e),
                        };
                        Ok((Outcome::Live, 0.0, 1.0 + written))
                    }
                };
            }
            let err = StoreError::from(err);
            if !err.is_transient() {
                return Err(err);
            }
            match BACKOFF.get(attempt) {
                Some(pause) if options.deadline.is_none_or(|d| Instant::now() + *pause < d) => {
                    warn!(attempt, "delete throttled or unavailable; backing off");
                    tokio::time::sleep(*pause).await;
                    attempt += 1;
                }
                // The deadline, not the throttling, ends it.
                Some(_) => return Ok((Outcome::NotReached, 0.0, 0.0)),
                None => return Ok((Outcome::Throttled, 0.0, 0.0)),
            }
        }
    }

    /// Moves a live candidate's index entry to its current expiry's bucket, if
    /// that is later and nothing changed meanwhile. Returns the write units used.
    async fn refile(&self, record: item::Record) -> Result<f64, StoreError> {
        let config = self.store.config();
        let bucket = expiry_bucket(record.session.expires_at, config.expiry_bucket_seconds);
        if bucket <= record.expiry_bucket || bucket <= self.options.now.0 {
            return Ok(0.0);
        }
        let mut e = Expr::default();
        let update = format!("SET {} = {}", e.name(attr::EXPIRY_BUCKET), e.num(bucket));
        let condition = format!(
            "{} = {} AND {} = {}",
            e.name(attr::EXPIRES_AT),
            e.num(record.session.expires_at.0),
            e.name(attr::EXPIRY_BUCKET),
            e.num(record.expiry_bucket)
        );
        let result = self
            .store
            .client()
            .update_item()
            .table_name(&config.table_name)
            .set_key(Some(item::key(&record.session.handle)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => Ok(units(out.consumed_capacity())),
            // Changed meanwhile: the bucket stays a lower bound, the next sweep looks again.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(1.0)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Dry run: reads a candidate's expiry and reports what a sweep would do.
    async fn inspect(&self, handle: String) -> Result<(Outcome, f64, f64), StoreError> {
        let mut e = Expr::default();
        let projection = e.name(attr::EXPIRES_AT);
        let out = self
            .store
            .client()
            .get_item()
            .table_name(&self.store.config().table_name)
            .key(attr::HANDLE, AttributeValue::S(handle))
            .projection_expression(projection)
            .set_expression_attribute_names(Some(e.names))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await?;
        let read = units(out.consumed_capacity());
        let expires_at = out
            .item()
            .and_then(|i| i.get(attr::EXPIRES_AT))
            .and_then(|v| v.as_n().ok());
        let outcome = match expires_at.and_then(|n| n.parse::<i64>().ok()) {
            None => Outcome::Gone,
            Some(e) if self.options.now.0 > e => Outcome::Deleted,
            Some(_) => Outcome::Live,
        };
        Ok((outcome, read, 0.0))
    }
}
