//! The DynamoDB session store: one request per single-session operation in
//! the common case, every write conditional so nothing deleted or expired is
//! ever brought back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, KeysAndAttributes, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::{StreamExt, TryStreamExt};
use tracing::{debug, warn};

use crate::config::Config;
use crate::data::DataPatch;
use crate::error::{StoreError, ValidationError};
use crate::id::{Handle, SessionId, random_token};
use crate::item::{self, Record, attr};
use crate::model::{
    Change, Issued, NewSession, Session, SessionSummary, Subject, Timestamp, check_data_size, expiry_bucket,
};
use crate::registry::{IdempotencyKey, LOCK_SECONDS, MEMBERSHIP_PREFIX, Replay};

/// Attempts at a write whose item keeps changing underneath it.
const MAX_ATTEMPTS: u32 = 3;
/// Merge patches naming more keys than this skip the single-request path
/// (DynamoDB limits an expression to 4 KB).
const MAX_FAST_MERGE_KEYS: usize = 50;
/// Deletes in flight at once when revoking an owner's sessions.
const REVOKE_CONCURRENCY: usize = 16;

/// One page of an owner's live sessions.
#[derive(Debug, Clone)]
pub struct SubjectPage {
    /// Live sessions, oldest first, without their data.
    pub sessions: Vec<SessionSummary>,
    /// Where the next page starts, if there may be one.
    pub next_cursor: Option<String>,
}

/// The session store on one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    config: Config,
}

/// Placeholders for one expression's attribute names and values.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    /// The placeholder for a top-level attribute.
    fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    /// The document path of one key inside the `data` map.
    fn data_key(&mut self, key: &str) -> String {
        let placeholder = format!("#k{}", self.names.len());
        self.names.insert(placeholder.clone(), crate::data::storage_key(key));
        format!("{}.{placeholder}", self.name(attr::DATA))
    }

    /// The placeholder for a value.
    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// The placeholder for a number.
    fn num(&mut self, n: impl ToString) -> String {
        self.value(AttributeValue::N(n.to_string()))
    }

    /// `#version IN (...)` for an `If-Match` list.
    fn version_in(&mut self, versions: &[u64]) -> String {
        let list: Vec<String> = versions.iter().map(|v| self.num(v)).collect();
        format!("{} IN ({})", self.name(attr::VERSION), list.join(", "))
    }
}

/// A conditional write's failure: the item as it was (or `None` if absent),
/// when DynamoDB returned it; any other error otherwise.
enum WriteFailure {
    Condition(Option<HashMap<String, AttributeValue>>),
    Other(StoreError),
}

impl DynamoStore {
    /// A store on `config.table_name` using `client`.
    pub fn new(client: Client, config: Config) -> Self {
        Self { client, config }
    }

    /// The store's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The DynamoDB client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Readies the client before the first request: resolves credentials and
    /// the endpoint and opens the connection (DNS, TCP, TLS) with one eventually
    /// consistent GetItem of a key no session can have (handles are 64 hex digits).
    /// Called during a Lambda's init, which runs at full CPU whatever the memory
    /// size. Returns whether DynamoDB answered; a failure only costs the first
    /// request the set-up it would have paid anyway.
    pub async fn warm_up(&self) -> bool {
        let result = self
            .client
            .get_item()
            .table_name(&self.config.table_name)
            .key(attr::HANDLE, AttributeValue::S("warm-up".into()))
            .projection_expression("#handle")
            .expression_attribute_names("#handle", attr::HANDLE)
            .send()
            .await;
        if let Err(e) = &result {
            warn!(error = ?e, "warm-up request failed; the first request will set up the connection");
        }
        result.is_ok()
    }

    /// Creates a session: one conditional PutItem (`attribute_not_exists`), or for
    /// an owned session or an `Idempotency-Key` one TransactWriteItems that also
    /// writes its membership and idempotency record. An SDK retry of a committed
    /// write that its own condition refuses is recognised by its write token.
    pub async fn create(
        &self,
        request: NewSession,
        idempotency: Option<&IdempotencyKey>,
        now: Timestamp,
    ) -> Result<Issued, StoreError> {
        let id = SessionId::generate()?;
        let write = random_token()?;
        let session = Session::create(&id, random_token()?, request, &self.config.limits, now)?;
        let mut e = Expr::default();
        let condition = format!("attribute_not_exists({})", e.name(attr::HANDLE));
        let item = item::encode(&session, None, &write, &self.config);
        let issued = Issued { id, session };
        if session_is_alone(&issued.session, idempotency) {
            let result = self
                .client
                .put_item()
                .table_name(&self.config.table_name)
                .set_item(Some(item))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(e.names))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            return match result {
                Ok(_) => Ok(issued),
                Err(err) => match err.as_service_error() {
                    // 256 random bits never collide: the item is this write, committed by an
                    // attempt whose response was lost.
                    Some(PutItemError::ConditionalCheckFailedException(c)) if written_by(c.item.as_ref(), &write) => {
                        Ok(issued)
                    }
                    _ => Err(err.into()),
                },
            };
        }
        let mut parts = Parts::default();
        parts.put_session = parts.push(
            Put::builder()
                .table_name(&self.config.table_name)
                .set_item(Some(item))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(e.names))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build()?,
        );
        if let Some(subject) = &issued.session.subject {
            parts.push(self.put_membership(&issued.session, subject)?);
        }
        if let Some(key) = idempotency {
            parts.idempotency = parts.push(self.put_idempotency_record(key, &issued.id, now)?);
        }
        match self.transact(parts, &write, idempotency, now).await? {
            Transacted::Done => Ok(issued),
            Transacted::Replayed(issued) => Ok(issued),
            // Only a rotation's transaction is refused rather than failed; kept for completeness.
            Transacted::Refused(_) => Err(StoreError::Contention { attempts: 1 }),
        }
    }

    /// Runs a transaction; recognises this write (`write`) committed by a lost
    /// attempt, and answers from the idempotency record when the key has one.
    async fn transact(
        &self,
        parts: Parts,
        write: &str,
        idempotency: Option<&IdempotencyKey>,
        now: Timestamp,
    ) -> Result<Transacted, StoreError> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(parts.items))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Transacted::Done),
            Err(err) => err,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) = err.as_service_error() else {
            return Err(err.into());
        };
        let reason = |i: Option<usize>| i.and_then(|i| cancel.cancellation_reasons().get(i));
        let failed = |i: Option<usize>| reason(i).filter(|r| r.code() == Some("ConditionalCheckFailed"));
        if failed(parts.put_session).is_some_and(|r| written_by(r.item.as_ref(), write)) {
            return Ok(Transacted::Done);
        }
        if let (Some(key), Some(record)) = (idempotency, failed(parts.idempotency).and_then(|r| r.item.as_ref())) {
            return self.replay(key, record, now).await.map(Transacted::Replayed);
        }
        let conflicting = |i: Option<usize>| reason(i).is_some_and(|r| r.code() == Some("TransactionConflict"));
        if conflicting(parts.idempotency) {
            // Another request with the same key is writing its record right now.
            return Err(StoreError::IdempotencyInFlight);
        }
        let conflict = cancel
            .cancellation_reasons()
            .iter()
            .any(|r| r.code() == Some("TransactionConflict"));
        if let Some(old) = failed(parts.delete_session) {
            return Ok(Transacted::Refused(old.item.clone()));
        }
        if failed(parts.lock_check).is_some() {
            // The owner's sessions are being revoked: this one is as good as gone.
            return Err(StoreError::NotFound);
        }
        if conflict && parts.delete_session.is_some() {
            // A rotation reads its session again and retries.
            return Ok(Transacted::Refused(None));
        }
        // Else a transient error when a conflict or throttling cancelled it.
        Err(err.into())
    }

    /// The answer to a request whose session is gone: the idempotency record's, if
    /// the request has a key with a record (its first attempt did the work), else 404.
    async fn replay_or_not_found(
        &self,
        idempotency: Option<&IdempotencyKey>,
        now: Timestamp,
    ) -> Result<Issued, StoreError> {
        let Some(key) = idempotency else {
            return Err(StoreError::NotFound);
        };
        match self.idempotency_record(key, now).await? {
            Some(record) => self.replay(key, &record, now).await,
            None => Err(StoreError::NotFound),
        }
    }

    /// The answer to a request whose `Idempotency-Key` has `record`: the session it
    /// issued, as it is now.
    async fn replay(
        &self,
        key: &IdempotencyKey,
        record: &HashMap<String, AttributeValue>,
        now: Timestamp,
    ) -> Result<Issued, StoreError> {
        match key.replay(record)? {
            Replay::Mismatch => Err(StoreError::IdempotencyMismatch),
            Replay::Same(id) => {
                let session = self.get(&id, now).await?;
                debug!(session = %session.handle.fingerprint(), "idempotent replay");
                Ok(Issued { id, session })
            }
        }
    }

    /// Reads a live session: one GetItem. Expired sessions are not found, even
    /// before DynamoDB's TTL has deleted them.
    pub async fn get(&self, id: &SessionId, now: Timestamp) -> Result<Session, StoreError> {
        let record = self.read(&id.handle()).await?;
        if record.session.is_expired(now) {
            return Err(StoreError::NotFound);
        }
        Ok(record.session)
    }

    async fn read(&self, handle: &Handle) -> Result<Record, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.config.table_name)
            .set_key(Some(item::key(handle)))
            .consistent_read(self.config.consistent_reads)
            .send()
            .await?;
        item::decode(out.item.ok_or(StoreError::NotFound)?)
    }

    /// Replaces a session's data (and optionally its idle timeout); counts as activity.
    pub async fn replace(
        &self,
        id: &SessionId,
        data: crate::data::SessionData,
        idle_timeout_seconds: Option<u32>,
        if_match: Option<&[u64]>,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        self.change(
            id,
            Change::Replace {
                data,
                idle_timeout_seconds,
            },
            if_match,
            now,
        )
        .await
    }

    /// Applies an RFC 7396 merge patch to a session's data; counts as activity.
    /// One UpdateItem, unless an object in the patch meets an object the key
    /// holds: then the item that the failed condition returns is merged and
    /// written on the condition that it is still that version. An empty patch
    /// changes no data: it checks `if_match` and slides the expiry as a touch does.
    pub async fn merge(
        &self,
        id: &SessionId,
        patch: DataPatch,
        if_match: Option<&[u64]>,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        let change = if patch.is_empty() {
            Change::Touch
        } else {
            Change::Merge(patch)
        };
        self.change(id, change, if_match, now).await
    }

    /// Slides the idle expiry, never past the absolute one. A touch that would
    /// move the expiry by less than the touch step is not written.
    pub async fn touch(&self, id: &SessionId, now: Timestamp) -> Result<Session, StoreError> {
        self.change(id, Change::Touch, None, now).await
    }

    /// Applies an activity write. The common case is one conditional UpdateItem
    /// that computes the new expiry in DynamoDB; when its condition fails the item
    /// comes back with the failure, and the rare cases (absolute expiry reached,
    /// data limit close, many keys) are finished from it with a guarded PutItem.
    async fn change(
        &self,
        id: &SessionId,
        change: Change,
        if_match: Option<&[u64]>,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        let limits = &self.config.limits;
        if let Change::Replace {
            data,
            idle_timeout_seconds,
        } = &change
        {
            check_data_size(data, limits)?;
            if let Some(idle) = idle_timeout_seconds
                && !(1..=limits.max_idle_timeout).contains(idle)
            {
                return Err(ValidationError::Timeout {
                    field: "idle_timeout_seconds",
                    max: limits.max_idle_timeout,
                }
                .into());
            }
        }
        let handle = id.handle();
        // Names this write, so that a retry of it that its own condition refuses
        // (the first attempt committed, its response lost) is known for a success.
        let write = random_token()?;
        let mut current = match self
            .update_in_place(&handle, &change, if_match, &write, Slide::Sliding, now)
            .await
        {
            Some(Ok(item)) => return Ok(item::decode(item)?.session),
            Some(Err(WriteFailure::Condition(old))) => Some(old),
            Some(Err(WriteFailure::Other(e))) => return Err(e),
            None => None,
        };
        let mut tried_capped = false;
        for _ in 0..MAX_ATTEMPTS {
            let record = match current.take() {
                Some(Some(old)) => item::decode(old)?,
                Some(None) => return Err(StoreError::NotFound),
                None => self.read(&handle).await?,
            };
            if record.write_token.as_deref() == Some(write.as_str()) {
                return Ok(record.session);
            }
            let session = &record.session;
            if session.is_expired(now) {
                return Err(StoreError::NotFound);
            }
            if let Some(versions) = if_match
                && !versions.contains(&session.version)
            {
                return Err(StoreError::VersionMismatch {
                    current: session.version,
                });
            }
            let Some(next) = session.changed(&change, limits, now)? else {
                debug!(session = %handle.fingerprint(), "touch within the step; not written");
                return Ok(record.session);
            };
            // Past the last idle period the expiry is the absolute one: the same
            // single UpdateItem in its capped form, which no concurrent write can
            // make fail (it names no version unless If-Match does).
            if session.slide_until() < now && !tried_capped && update_may_apply(&change, session, limits) {
                tried_capped = true;
                match self
                    .update_in_place(&handle, &change, if_match, &write, Slide::Capped, now)
                    .await
                {
                    Some(Ok(item)) => return Ok(item::decode(item)?.session),
                    Some(Err(WriteFailure::Condition(old))) => {
                        current = Some(old);
                        continue;
                    }
                    Some(Err(WriteFailure::Other(e))) => return Err(e),
                    None => {}
                }
            }
            let bucket = record
                .expiry_bucket
                .min(expiry_bucket(next.expires_at, self.config.expiry_bucket_seconds));
            match self.put_if_unchanged(&next, bucket, session, &write).await {
                Ok(()) => return Ok(next),
                Err(WriteFailure::Condition(old)) => current = Some(old),
                Err(WriteFailure::Other(e)) => return Err(e),
            }
        }
        Err(StoreError::Contention { attempts: MAX_ATTEMPTS })
    }

    /// The single-request path: an UpdateItem whose condition holds in the common
    /// case, sliding the expiry as `slide` says. `None` when the change cannot be
    /// expressed that way.
    async fn update_in_place(
        &self,
        handle: &Handle,
        change: &Change,
        if_match: Option<&[u64]>,
        write: &str,
        slide: Slide,
        now: Timestamp,
    ) -> Option<Result<HashMap<String, AttributeValue>, WriteFailure>> {
        let limits = &self.config.limits;
        let mut e = Expr::default();
        let now_v = e.num(now.0);
        let mut conditions = vec![
            format!("attribute_exists({})", e.name(attr::HANDLE)),
            format!("{} >= {now_v}", e.name(attr::EXPIRES_AT)),
        ];
        if let Some(versions) = if_match {
            conditions.push(e.version_in(versions));
        }
        let mut sets = vec![format!("{} = {now_v}", e.name(attr::UPDATED_AT))];
        let mut removes = Vec::new();
        let slide_from_stored = |e: &mut Expr, conditions: &mut Vec<String>, sets: &mut Vec<String>| match slide {
            Slide::Sliding => {
                conditions.push(format!("{} >= {now_v}", e.name(attr::SLIDE_UNTIL)));
                sets.push(format!(
                    "{} = {now_v} + {}",
                    e.name(attr::EXPIRES_AT),
                    e.name(attr::IDLE_TIMEOUT)
                ));
            }
            Slide::Capped => {
                conditions.push(format!("{} < {now_v}", e.name(attr::SLIDE_UNTIL)));
                sets.push(format!(
                    "{} = {}",
                    e.name(attr::EXPIRES_AT),
                    e.name(attr::ABSOLUTE_EXPIRES_AT)
                ));
            }
        };
        // A data write bumps the version and names itself; a retry of it after it
        // committed fails the token condition, and the token tells it apart.
        let bump_version = |e: &mut Expr, conditions: &mut Vec<String>, sets: &mut Vec<String>| {
            let version = e.name(attr::VERSION);
            sets.push(format!("{version} = {version} + {}", e.num(1)));
            let token = e.name(attr::WRITE_TOKEN);
            let write_v = e.value(AttributeValue::S(write.to_owned()));
            conditions.push(format!("(attribute_not_exists({token}) OR {token} <> {write_v})"));
            sets.push(format!("{token} = {write_v}"));
        };
        match change {
            Change::Touch => {
                slide_from_stored(&mut e, &mut conditions, &mut sets);
                let step = i64::from(limits.touch_step);
                conditions.push(format!(
                    "({} <= {} OR {} <= {})",
                    e.name(attr::UPDATED_AT),
                    e.num(now.0 - step),
                    e.name(attr::EXPIRES_AT),
                    e.num(now.0 + step)
                ));
            }
            // A new idle timeout sets the expiry outright: only in the sliding form.
            Change::Replace {
                idle_timeout_seconds: Some(_),
                ..
            } if slide == Slide::Capped => return None,
            Change::Replace {
                data,
                idle_timeout_seconds,
            } => {
                sets.push(format!("{} = {}", e.name(attr::DATA), e.value(data.to_attribute())));
                sets.push(format!("{} = {}", e.name(attr::DATA_BYTES), e.num(data.encoded_size())));
                bump_version(&mut e, &mut conditions, &mut sets);
                match idle_timeout_seconds {
                    None => slide_from_stored(&mut e, &mut conditions, &mut sets),
                    Some(idle) => {
                        let expires_at = now.plus(*idle);
                        let expires_v = e.num(expires_at.0);
                        let idle_v = e.num(idle);
                        let absolute = e.name(attr::ABSOLUTE_EXPIRES_AT);
                        conditions.push(format!("{absolute} >= {expires_v}"));
                        sets.push(format!("{} = {expires_v}", e.name(attr::EXPIRES_AT)));
                        sets.push(format!("{} = {idle_v}", e.name(attr::IDLE_TIMEOUT)));
                        sets.push(format!("{} = {absolute} - {idle_v}", e.name(attr::SLIDE_UNTIL)));
                        let bucket = expiry_bucket(expires_at, self.config.expiry_bucket_seconds);
                        sets.push(format!("{} = {}", e.name(attr::EXPIRY_BUCKET), e.num(bucket)));
                    }
                }
            }
            Change::Merge(patch) => {
                let added = patch.added_size();
                if patch.len() > MAX_FAST_MERGE_KEYS || added > limits.max_data_bytes {
                    return None;
                }
                for (key, value, object) in patch.sets_onto_non_objects() {
                    let path = e.data_key(key);
                    if object {
                        // Merging into an object the key holds needs that object: the
                        // condition fails, and the slow path merges from the item returned.
                        let brace = e.value(AttributeValue::S("{".to_owned()));
                        conditions.push(format!("NOT begins_with({path}, {brace})"));
                    }
                    let value = e.value(AttributeValue::S(value.get().to_owned()));
                    sets.push(format!("{path} = {value}"));
                }
                for key in patch.removes() {
                    removes.push(e.data_key(key));
                }
                // Replaced and removed keys are not subtracted: `data_bytes` is an
                // upper bound, made exact again whenever the slow path rewrites it.
                let bytes = e.name(attr::DATA_BYTES);
                conditions.push(format!("{bytes} <= {}", e.num(limits.max_data_bytes - added)));
                sets.push(format!("{bytes} = {bytes} + {}", e.num(added)));
                bump_version(&mut e, &mut conditions, &mut sets);
                slide_from_stored(&mut e, &mut conditions, &mut sets);
            }
        }
        let mut update = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            update.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.config.table_name)
            .set_key(Some(item::key(handle)))
            .update_expression(update)
            .condition_expression(conditions.join(" AND "))
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        Some(match result {
            Ok(out) => out.attributes.ok_or(WriteFailure::Other(StoreError::Corrupt(None))),
            Err(err) => Err(match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => WriteFailure::Condition(c.item.clone()),
                _ => WriteFailure::Other(err.into()),
            }),
        })
    }

    /// Writes `next` in full, provided the item is still exactly `previous`
    /// (same data version and activity time), so no concurrent write is lost and
    /// nothing deleted is recreated.
    async fn put_if_unchanged(
        &self,
        next: &Session,
        bucket: i64,
        previous: &Session,
        write: &str,
    ) -> Result<(), WriteFailure> {
        let mut e = Expr::default();
        let condition = format!(
            "{} = {} AND {} = {}",
            e.name(attr::VERSION),
            e.num(previous.version),
            e.name(attr::UPDATED_AT),
            e.num(previous.updated_at.0)
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.config.table_name)
            .set_item(Some(item::encode(next, Some(bucket), write, &self.config)))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => Err(match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => WriteFailure::Condition(c.item.clone()),
                _ => WriteFailure::Other(err.into()),
            }),
        }
    }

    /// Replaces a session by one with a new id, the same family, data (if
    /// `keep_data`), creation time and absolute expiry, owned by `subject` if given
    /// (a login) or by the same owner. One TransactWriteItems deletes the old item
    /// and writes the new one, so exactly one of them exists at any time; it also
    /// moves the owner's membership, checks that no revoke of the old owner's
    /// sessions is under way, and writes the idempotency record, if any.
    pub async fn rotate(
        &self,
        id: &SessionId,
        keep_data: bool,
        subject: Option<Subject>,
        idempotency: Option<&IdempotencyKey>,
        now: Timestamp,
    ) -> Result<Issued, StoreError> {
        let handle = id.handle();
        let mut known: Option<Record> = None;
        for _ in 0..MAX_ATTEMPTS {
            let record = match known.take() {
                Some(record) => Ok(record),
                None => self.read(&handle).await,
            };
            let record = match record {
                Ok(record) if !record.session.is_expired(now) => record,
                Ok(_) => return Err(StoreError::NotFound),
                // A retry of a rotation that happened finds the old id gone, and the record.
                Err(StoreError::NotFound) => return self.replay_or_not_found(idempotency, now).await,
                Err(e) => return Err(e),
            };
            let old = &record.session;
            let new_id = SessionId::generate()?;
            let write = random_token()?;
            let next = old.rotated(&new_id, keep_data, subject.clone(), now);
            let mut parts = Parts::default();
            let mut e = Expr::default();
            let condition = format!(
                "{} = {} AND {} >= {}",
                e.name(attr::VERSION),
                e.num(old.version),
                e.name(attr::EXPIRES_AT),
                e.num(now.0)
            );
            parts.delete_session = parts.push(
                Delete::builder()
                    .table_name(&self.config.table_name)
                    .set_key(Some(item::key(&old.handle)))
                    .condition_expression(condition)
                    .set_expression_attribute_names(Some(e.names))
                    .set_expression_attribute_values(Some(e.values))
                    .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                    .build()?,
            );
            let mut e = Expr::default();
            parts.put_session = parts.push(
                Put::builder()
                    .table_name(&self.config.table_name)
                    .set_item(Some(item::encode(&next, None, &write, &self.config)))
                    .condition_expression(format!("attribute_not_exists({})", e.name(attr::HANDLE)))
                    .set_expression_attribute_names(Some(e.names))
                    .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                    .build()?,
            );
            if let Some(owner) = &old.subject {
                parts.lock_check = parts.push(self.check_not_revoking(owner, &old.family, now)?);
                parts.push(self.delete_membership(old, owner)?);
            }
            if let Some(owner) = &next.subject {
                parts.push(self.put_membership(&next, owner)?);
            }
            if let Some(key) = idempotency {
                parts.idempotency = parts.push(self.put_idempotency_record(key, &new_id, now)?);
            }
            match self.transact(parts, &write, idempotency, now).await? {
                Transacted::Done => {
                    return Ok(Issued {
                        id: new_id,
                        session: next,
                    });
                }
                Transacted::Replayed(issued) => return Ok(issued),
                // The old session changed, expired or went away: look again.
                Transacted::Refused(old) => known = old.map(item::decode).transpose()?,
            }
        }
        Err(StoreError::Contention { attempts: MAX_ATTEMPTS })
    }

    /// Deletes a session; deleting one that does not exist succeeds too. Its owner's
    /// membership stays until TTL removes it (listings skip it).
    pub async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.config.table_name)
            .set_key(Some(item::key(&id.handle())))
            .send()
            .await?;
        Ok(())
    }

    /// Revokes the session `handle` if it is a live session of `subject`: one
    /// conditional DeleteItem, so a handle never reaches another owner's session.
    /// A handle whose session is gone already is revoked already (so an SDK retry
    /// of a delete that committed succeeds too); another owner's or an expired
    /// session is not found.
    pub async fn revoke_one(&self, subject: &Subject, handle: &Handle, now: Timestamp) -> Result<(), StoreError> {
        let mut e = Expr::default();
        let condition = format!(
            "{} = {} AND {} >= {}",
            e.name(attr::SUBJECT),
            e.value(AttributeValue::S(subject.as_str().to_owned())),
            e.name(attr::EXPIRES_AT),
            e.num(now.0)
        );
        let result = self
            .client
            .delete_item()
            .table_name(&self.config.table_name)
            .set_key(Some(item::key(handle)))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(c)) if c.item.is_none() => Ok(()),
                Some(DeleteItemError::ConditionalCheckFailedException(_)) => Err(StoreError::NotFound),
                _ => Err(err.into()),
            },
        }
    }

    /// One page of the live sessions of `subject`, oldest first: a strongly
    /// consistent Query of the owner's memberships, then one BatchGetItem without data.
    pub async fn list_by_subject(
        &self,
        subject: &Subject,
        limit: u32,
        cursor: Option<&str>,
        now: Timestamp,
    ) -> Result<SubjectPage, StoreError> {
        let start = cursor.map(decode_cursor).transpose()?;
        let (members, next) = self
            .memberships(subject, start, Some(limit.clamp(1, 100) as i32))
            .await?;
        let handles: Vec<Handle> = members.into_iter().map(|m| m.handle).collect();
        let mut found = self.batch_get_summaries(&handles).await?;
        let sessions = handles
            .iter()
            .filter_map(|handle| found.remove(handle))
            .filter(|s| !s.is_expired(now) && s.subject.as_ref() == Some(subject))
            .map(SessionSummary::from)
            .collect();
        Ok(SubjectPage {
            sessions,
            next_cursor: next.map(|sk| encode_cursor(&sk)),
        })
    }

    async fn batch_get_summaries(&self, handles: &[Handle]) -> Result<HashMap<Handle, Session>, StoreError> {
        let mut keys: Vec<HashMap<String, AttributeValue>> = handles.iter().map(item::key).collect();
        let mut found = HashMap::new();
        let mut backoff = Duration::from_millis(20);
        for _ in 0..6 {
            if keys.is_empty() {
                return Ok(found);
            }
            let mut e = Expr::default();
            let projection = [
                attr::HANDLE,
                attr::FAMILY,
                attr::SUBJECT,
                attr::CREATED_AT,
                attr::UPDATED_AT,
                attr::EXPIRES_AT,
                attr::ABSOLUTE_EXPIRES_AT,
                attr::IDLE_TIMEOUT,
                attr::VERSION,
                attr::SLIDE_UNTIL,
                attr::EXPIRY_SHARD,
                attr::EXPIRY_BUCKET,
            ]
            .map(|a| e.name(a))
            .join(", ");
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut keys)))
                .projection_expression(projection)
                .set_expression_attribute_names(Some(e.names))
                .consistent_read(self.config.consistent_reads)
                .build()?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.config.table_name, request)
                .send()
                .await?;
            for item in out
                .responses
                .unwrap_or_default()
                .remove(&self.config.table_name)
                .unwrap_or_default()
            {
                let session = item::decode(item)?.session;
                found.insert(session.handle.clone(), session);
            }
            if let Some(mut left) = out.unprocessed_keys
                && let Some(left) = left.remove(&self.config.table_name)
            {
                keys = left.keys;
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        if keys.is_empty() {
            Ok(found)
        } else {
            Err(StoreError::Busy {
                unprocessed: keys.len(),
            })
        }
    }

    /// Revokes every session of `subject` but `except` and its later rotations;
    /// returns how many of the revoked sessions were live.
    ///
    /// It takes the owner's revocation lock first (from then on no rotation of
    /// the owner's sessions commits, but of a family every revoke under way
    /// spares), then reads the owner's memberships strongly consistently (every
    /// session created or rotated before the lock is there) and deletes each
    /// session. So once it returns, no session of `subject` that existed when it
    /// began, nor any rotated from one, is left, whatever any index shows.
    /// Concurrent revokes share the lock, so none lifts it for another. If it runs
    /// out of time it says so ([`StoreError::Incomplete`], after
    /// `config.revoke_budget`); what it deleted stays deleted, its share of the
    /// lock holds until the lock expires, and calling it again finishes the work
    /// (and lifts the share).
    pub async fn revoke_subject(
        &self,
        subject: &Subject,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let started = std::time::Instant::now();
        let spared = match except {
            None => None,
            Some(id) => match self.read(&id.handle()).await {
                Ok(r) if !r.session.is_expired(now) && r.session.subject.as_ref() == Some(subject) => {
                    Some(r.session.family)
                }
                Ok(_) | Err(StoreError::NotFound) => None,
                Err(e) => return Err(e),
            },
        };
        let lock = self
            .lock_owner(subject, spared.as_deref(), &random_token()?, now)
            .await?;
        let revoked = AtomicU64::new(0);
        let out_of_time = || StoreError::Incomplete {
            revoked: revoked.load(Ordering::Relaxed),
        };
        let mut start = None;
        loop {
            if started.elapsed() >= self.config.revoke_budget {
                return Err(out_of_time());
            }
            let (members, next) = self.memberships(subject, start.take(), None).await?;
            let doomed = members
                .into_iter()
                .filter(|m| spared.as_deref() != Some(m.family.as_str()));
            let (revoked, out_of_time) = (&revoked, &out_of_time);
            let deleted = futures::stream::iter(doomed)
                .map(|member| async move {
                    // The lock stays until it expires: rotations stay barred until a repeat finishes.
                    if started.elapsed() >= self.config.revoke_budget {
                        return Err(out_of_time());
                    }
                    let out = self
                        .client
                        .delete_item()
                        .table_name(&self.config.table_name)
                        .set_key(Some(item::key(&member.handle)))
                        .return_values(ReturnValue::AllOld)
                        .send()
                        .await?;
                    if let Some(old) = out.attributes
                        && !item::decode(old)?.session.is_expired(now)
                    {
                        revoked.fetch_add(1, Ordering::Relaxed);
                    }
                    self.forget_membership(subject, &member.sk).await
                })
                .buffer_unordered(REVOKE_CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await;
            if let Err(StoreError::Incomplete { .. }) = deleted {
                return Err(out_of_time());
            }
            deleted?;
            match next {
                Some(sk) => start = Some(sk),
                None => break,
            }
        }
        if started.elapsed() >= Duration::from_secs(LOCK_SECONDS.into()) {
            // The lock may have lapsed while this ran (a paused or starved instance).
            return Err(out_of_time());
        }
        let revoked = revoked.into_inner();
        self.unlock_owner(subject, &lock).await?;
        Ok(revoked)
    }
}

/// Whether a single UpdateItem can apply `change` to `session` as read: not a merge
/// whose object meets an object the key holds, or that the data bound refuses
/// (both would fail its condition for certain, billed, the item shipped back).
fn update_may_apply(change: &Change, session: &Session, limits: &crate::config::Limits) -> bool {
    match change {
        Change::Merge(patch) => {
            session.data.encoded_size() + patch.added_size() <= limits.max_data_bytes
                && !patch
                    .sets_onto_non_objects()
                    .any(|(key, _, object)| object && session.data.holds_object(key))
        }
        _ => true,
    }
}

/// Whether a new session needs no other item written with it.
fn session_is_alone(session: &Session, idempotency: Option<&IdempotencyKey>) -> bool {
    session.subject.is_none() && idempotency.is_none()
}

/// Whether `item` was written by the write named `write`.
fn written_by(item: Option<&HashMap<String, AttributeValue>>, write: &str) -> bool {
    item.and_then(|i| i.get(attr::WRITE_TOKEN))
        .and_then(|v| v.as_s().ok())
        .is_some_and(|t| t == write)
}

/// The parts of a transaction, and where the ones whose failures mean something are.
#[derive(Default)]
struct Parts {
    items: Vec<TransactWriteItem>,
    delete_session: Option<usize>,
    put_session: Option<usize>,
    lock_check: Option<usize>,
    idempotency: Option<usize>,
}

impl Parts {
    /// Adds a part; returns its position.
    fn push(&mut self, part: impl Into<Part>) -> Option<usize> {
        let item = match part.into() {
            Part::Put(p) => TransactWriteItem::builder().put(p).build(),
            Part::Delete(d) => TransactWriteItem::builder().delete(d).build(),
            Part::Check(c) => TransactWriteItem::builder().condition_check(c).build(),
        };
        self.items.push(item);
        Some(self.items.len() - 1)
    }
}

/// One transaction part.
enum Part {
    Put(Put),
    Delete(Delete),
    Check(ConditionCheck),
}

impl From<Put> for Part {
    fn from(p: Put) -> Self {
        Self::Put(p)
    }
}

impl From<Delete> for Part {
    fn from(d: Delete) -> Self {
        Self::Delete(d)
    }
}

impl From<ConditionCheck> for Part {
    fn from(c: ConditionCheck) -> Self {
        Self::Check(c)
    }
}

/// How a single-request write slides the expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slide {
    /// Within the session's life but its last idle period (`slide_until >= now`):
    /// `now + idle timeout`.
    Sliding,
    /// Past that (`slide_until < now`): the absolute expiry.
    Capped,
}

/// How a transaction ended, short of an error.
enum Transacted {
    /// Committed (now, or by an attempt whose response was lost).
    Done,
    /// The idempotency key's record answered instead.
    Replayed(Issued),
    /// Refused by the old session's condition (with the item as it is now, when
    /// DynamoDB returned one) or by a conflicting write: read it again.
    Refused(Option<HashMap<String, AttributeValue>>),
}

/// A list cursor: the last membership's sort key, as base64url.
fn encode_cursor(sk: &str) -> String {
    URL_SAFE_NO_PAD.encode(sk)
}

fn decode_cursor(cursor: &str) -> Result<String, StoreError> {
    let invalid = || StoreError::Invalid(ValidationError::Cursor);
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let sk = String::from_utf8(bytes).map_err(|_| invalid())?;
    let rest = sk.strip_prefix(MEMBERSHIP_PREFIX).ok_or_else(invalid)?;
    let (created, handle) = rest.split_once('#').ok_or_else(invalid)?;
    if created.len() != 12 || !created.bytes().all(|b| b.is_ascii_digit()) || Handle::parse(handle).is_none() {
        return Err(invalid());
    }
    Ok(sk)
}
