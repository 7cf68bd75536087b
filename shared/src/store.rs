//! The DynamoDB session store: one request per single-session operation in
//! the common case, every write conditional so nothing deleted or expired is
//! ever brought back.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, KeysAndAttributes, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::{StreamExt, TryStreamExt};
use tracing::{debug, warn};

use crate::config::Config;
use crate::data::DataPatch;
use crate::error::{StoreError, ValidationError};
use crate::id::SessionId;
use crate::item::{self, Record, SUBJECT_INDEX, attr};
use crate::model::{Change, NewSession, Session, SessionSummary, Subject, Timestamp, check_data_size, expiry_bucket};

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
    /// consistent GetItem of a key no session can have (ids are 43 characters).
    /// Called during a Lambda's init, which runs at full CPU whatever the memory
    /// size. Returns whether DynamoDB answered; a failure only costs the first
    /// request the set-up it would have paid anyway.
    pub async fn warm_up(&self) -> bool {
        let result = self
            .client
            .get_item()
            .table_name(&self.config.table_name)
            .key(attr::ID, AttributeValue::S("warm-up".into()))
            .projection_expression("#id")
            .expression_attribute_names("#id", attr::ID)
            .send()
            .await;
        if let Err(e) = &result {
            warn!(error = ?e, "warm-up request failed; the first request will set up the connection");
        }
        result.is_ok()
    }

    /// Creates a session: one conditional PutItem (`attribute_not_exists`), so an
    /// id can never overwrite another session.
    pub async fn create(&self, request: NewSession, now: Timestamp) -> Result<Session, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let session = Session::create(SessionId::generate()?, request.clone(), &self.config.limits, now)?;
            let mut expr = Expr::default();
            let condition = format!("attribute_not_exists({})", expr.name(attr::ID));
            let result = self
                .client
                .put_item()
                .table_name(&self.config.table_name)
                .set_item(Some(item::encode(&session, None, &self.config)))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(expr.names))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(session),
                Err(e)
                    if matches!(
                        e.as_service_error(),
                        Some(PutItemError::ConditionalCheckFailedException(_))
                    ) =>
                {
                    warn!(session = %session.id.fingerprint(), "session id collision; drawing another");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Contention { attempts: MAX_ATTEMPTS })
    }

    /// Reads a live session: one GetItem. Expired sessions are not found, even
    /// before DynamoDB's TTL has deleted them.
    pub async fn get(&self, id: &SessionId, now: Timestamp) -> Result<Session, StoreError> {
        let record = self.read(id).await?;
        if record.session.is_expired(now) {
            return Err(StoreError::NotFound);
        }
        Ok(record.session)
    }

    async fn read(&self, id: &SessionId) -> Result<Record, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.config.table_name)
            .set_key(Some(item::key(id)))
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

    /// Sets and removes top-level data keys; counts as activity.
    pub async fn merge(
        &self,
        id: &SessionId,
        patch: DataPatch,
        if_match: Option<&[u64]>,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        self.change(id, Change::Merge(patch), if_match, now).await
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
            if let Some(idle) = idle_timeout_seconds {
                if !(1..=limits.max_idle_timeout).contains(idle) {
                    return Err(ValidationError::Timeout {
                        field: "idle_timeout_seconds",
                        max: limits.max_idle_timeout,
                    }
                    .into());
                }
            }
        }
        let mut current = match self.update_in_place(id, &change, if_match, now).await {
            Some(Ok(item)) => return Ok(item::decode(item)?.session),
            Some(Err(WriteFailure::Condition(old))) => Some(old),
            Some(Err(WriteFailure::Other(e))) => return Err(e),
            None => None,
        };
        for _ in 0..MAX_ATTEMPTS {
            let record = match current.take() {
                Some(Some(old)) => item::decode(old)?,
                Some(None) => return Err(StoreError::NotFound),
                None => self.read(id).await?,
            };
            let session = &record.session;
            if session.is_expired(now) {
                return Err(StoreError::NotFound);
            }
            if let Some(versions) = if_match {
                if !versions.contains(&session.version) {
                    return Err(StoreError::VersionMismatch {
                        current: session.version,
                    });
                }
            }
            let Some(next) = session.changed(&change, limits, now)? else {
                debug!(session = %id.fingerprint(), "touch within the step; not written");
                return Ok(record.session);
            };
            let bucket = record
                .expiry_bucket
                .min(expiry_bucket(next.expires_at, self.config.expiry_bucket_seconds));
            match self.put_if_unchanged(&next, bucket, session).await {
                Ok(()) => return Ok(next),
                Err(WriteFailure::Condition(old)) => current = Some(old),
                Err(WriteFailure::Other(e)) => return Err(e),
            }
        }
        Err(StoreError::Contention { attempts: MAX_ATTEMPTS })
    }

    /// The single-request path: an UpdateItem whose condition holds in the common
    /// case. `None` when the change cannot be expressed that way.
    async fn update_in_place(
        &self,
        id: &SessionId,
        change: &Change,
        if_match: Option<&[u64]>,
        now: Timestamp,
    ) -> Option<Result<HashMap<String, AttributeValue>, WriteFailure>> {
        let limits = &self.config.limits;
        let mut e = Expr::default();
        let now_v = e.num(now.0);
        let mut conditions = vec![
            format!("attribute_exists({})", e.name(attr::ID)),
            format!("{} >= {now_v}", e.name(attr::EXPIRES_AT)),
        ];
        if let Some(versions) = if_match {
            conditions.push(e.version_in(versions));
        }
        let mut sets = vec![format!("{} = {now_v}", e.name(attr::UPDATED_AT))];
        let mut removes = Vec::new();
        let slide_from_stored = |e: &mut Expr, conditions: &mut Vec<String>, sets: &mut Vec<String>| {
            conditions.push(format!("{} >= {now_v}", e.name(attr::SLIDE_UNTIL)));
            sets.push(format!(
                "{} = {now_v} + {}",
                e.name(attr::EXPIRES_AT),
                e.name(attr::IDLE_TIMEOUT)
            ));
        };
        let bump_version = |e: &mut Expr, sets: &mut Vec<String>| {
            let version = e.name(attr::VERSION);
            sets.push(format!("{version} = {version} + {}", e.num(1)));
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
            Change::Replace {
                data,
                idle_timeout_seconds,
            } => {
                sets.push(format!("{} = {}", e.name(attr::DATA), e.value(data.to_attribute())));
                sets.push(format!("{} = {}", e.name(attr::DATA_BYTES), e.num(data.encoded_size())));
                bump_version(&mut e, &mut sets);
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
                for (key, value) in patch.sets() {
                    let path = e.data_key(key);
                    let value = e.value(AttributeValue::S(value.to_owned()));
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
                bump_version(&mut e, &mut sets);
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
            .set_key(Some(item::key(id)))
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
    async fn put_if_unchanged(&self, next: &Session, bucket: i64, previous: &Session) -> Result<(), WriteFailure> {
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
            .set_item(Some(item::encode(next, Some(bucket), &self.config)))
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

    /// Replaces a session by one with a new id, the same owner, data (if
    /// `keep_data`) and absolute expiry. The old id is deleted and the new one
    /// written in one TransactWriteItems, so exactly one of them exists at any time.
    pub async fn rotate(&self, id: &SessionId, keep_data: bool, now: Timestamp) -> Result<Session, StoreError> {
        let mut known: Option<Record> = None;
        for _ in 0..MAX_ATTEMPTS {
            let record = match known.take() {
                Some(record) => record,
                None => self.read(id).await?,
            };
            if record.session.is_expired(now) {
                return Err(StoreError::NotFound);
            }
            let next = record.session.rotated(SessionId::generate()?, keep_data, now);
            let mut e = Expr::default();
            let condition = format!(
                "{} = {} AND {} >= {}",
                e.name(attr::VERSION),
                e.num(record.session.version),
                e.name(attr::EXPIRES_AT),
                e.num(now.0)
            );
            let delete = Delete::builder()
                .table_name(&self.config.table_name)
                .set_key(Some(item::key(id)))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(e.names))
                .set_expression_attribute_values(Some(e.values))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build()?;
            let mut e = Expr::default();
            let put = Put::builder()
                .table_name(&self.config.table_name)
                .set_item(Some(item::encode(&next, None, &self.config)))
                .condition_expression(format!("attribute_not_exists({})", e.name(attr::ID)))
                .set_expression_attribute_names(Some(e.names))
                .build()?;
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().delete(delete).build())
                .transact_items(TransactWriteItem::builder().put(put).build())
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(next),
                Err(err) => err,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) = err.as_service_error() else {
                return Err(err.into());
            };
            let failed = |i: usize| {
                cancel
                    .cancellation_reasons()
                    .get(i)
                    .filter(|r| r.code() == Some("ConditionalCheckFailed"))
            };
            if let Some(reason) = failed(0) {
                // The old session changed, expired or went away: look again.
                known = Some(item::decode(reason.item.clone().ok_or(StoreError::NotFound)?)?);
            } else if failed(1).is_some() {
                warn!(session = %next.id.fingerprint(), "session id collision on rotation; drawing another");
                known = Some(record);
            } else {
                return Err(err.into());
            }
        }
        Err(StoreError::Contention { attempts: MAX_ATTEMPTS })
    }

    /// Deletes a session; deleting one that does not exist succeeds too.
    pub async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.config.table_name)
            .set_key(Some(item::key(id)))
            .send()
            .await?;
        Ok(())
    }

    /// One page of the live sessions of `subject`, oldest first: a Query on the
    /// keys-only subject index, then one consistent BatchGetItem without data.
    pub async fn list_by_subject(
        &self,
        subject: &Subject,
        limit: u32,
        cursor: Option<&str>,
        now: Timestamp,
    ) -> Result<SubjectPage, StoreError> {
        let start = cursor.map(|c| decode_cursor(c, subject)).transpose()?;
        let page = self
            .subject_query(subject)
            .set_exclusive_start_key(start)
            .limit(limit.clamp(1, 100) as i32)
            .send()
            .await?;
        let ids: Vec<HashMap<String, AttributeValue>> = page
            .items()
            .iter()
            .filter_map(|k| k.get(attr::ID).cloned())
            .map(|id| HashMap::from([(attr::ID.to_owned(), id)]))
            .collect();
        let mut found = self.batch_get_summaries(ids.clone()).await?;
        let sessions = ids
            .iter()
            .filter_map(|key| key.get(attr::ID)?.as_s().ok())
            .filter_map(|id| found.remove(id))
            .filter(|s| !s.is_expired(now))
            .map(SessionSummary::from)
            .collect();
        let next_cursor = page.last_evaluated_key().map(encode_cursor).transpose()?;
        Ok(SubjectPage { sessions, next_cursor })
    }

    /// A Query for the keys of `subject`'s sessions on the subject index.
    fn subject_query(&self, subject: &Subject) -> QueryFluentBuilder {
        let mut e = Expr::default();
        let key_condition = format!(
            "{} = {}",
            e.name(attr::SUBJECT),
            e.value(AttributeValue::S(subject.as_str().to_owned()))
        );
        self.client
            .query()
            .table_name(&self.config.table_name)
            .index_name(SUBJECT_INDEX)
            .key_condition_expression(key_condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
    }

    async fn batch_get_summaries(
        &self,
        mut keys: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<HashMap<String, Session>, StoreError> {
        let mut found = HashMap::new();
        let mut backoff = Duration::from_millis(20);
        for _ in 0..6 {
            if keys.is_empty() {
                return Ok(found);
            }
            let mut e = Expr::default();
            let projection = [
                attr::ID,
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
                found.insert(session.id.as_str().to_owned(), session);
            }
            if let Some(mut left) = out.unprocessed_keys {
                if let Some(left) = left.remove(&self.config.table_name) {
                    keys = left.keys;
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
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

    /// Deletes every session of `subject` but `except`; returns how many of the
    /// deleted sessions were live.
    pub async fn revoke_subject(
        &self,
        subject: &Subject,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut keys = self.subject_query(subject).into_paginator().items().send();
        let mut ids = Vec::new();
        while let Some(key) = keys.next().await {
            let id = key?.get(attr::ID).and_then(|v| v.as_s().ok()).cloned();
            ids.extend(id.filter(|id| except.is_none_or(|x| x.as_str() != id)));
        }
        let deleted: Vec<bool> = futures::stream::iter(ids)
            .map(|id| async move {
                let out = self
                    .client
                    .delete_item()
                    .table_name(&self.config.table_name)
                    .key(attr::ID, AttributeValue::S(id))
                    .return_values(ReturnValue::AllOld)
                    .send()
                    .await?;
                Ok::<_, StoreError>(match out.attributes {
                    Some(old) => !item::decode(old)?.session.is_expired(now),
                    None => false,
                })
            })
            .buffer_unordered(REVOKE_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(deleted.into_iter().filter(|live| *live).count() as u64)
    }
}

/// A list cursor: the subject index's last evaluated key, minus the subject
/// (which the request's path supplies), as base64url JSON.
fn encode_cursor(key: &HashMap<String, AttributeValue>) -> Result<String, StoreError> {
    let id = key
        .get(attr::ID)
        .and_then(|v| v.as_s().ok())
        .ok_or(StoreError::Corrupt(None))?;
    let created = key
        .get(attr::CREATED_AT)
        .and_then(|v| v.as_n().ok())
        .ok_or(StoreError::Corrupt(None))?;
    let json = serde_json::json!({ "id": id, "created_at": created });
    Ok(URL_SAFE_NO_PAD.encode(json.to_string()))
}

fn decode_cursor(cursor: &str, subject: &Subject) -> Result<HashMap<String, AttributeValue>, StoreError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cursor {
        id: String,
        created_at: String,
    }
    let invalid = || StoreError::Invalid(ValidationError::Cursor);
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let id = SessionId::parse(&c.id).ok_or_else(invalid)?;
    let created: i64 = c.created_at.parse().map_err(|_| invalid())?;
    Ok(HashMap::from([
        (attr::ID.to_owned(), AttributeValue::S(id.as_str().to_owned())),
        (attr::SUBJECT.to_owned(), AttributeValue::S(subject.as_str().to_owned())),
        (attr::CREATED_AT.to_owned(), AttributeValue::N(created.to_string())),
    ]))
}
