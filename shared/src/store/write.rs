//! Activity writes (replace, merge, touch): one conditional UpdateItem in the
//! common case, sliding the expiry or, past the last idle period, capping it;
//! the rare rest from the item the failed condition returned, with a guarded
//! PutItem. Every write names itself, so an SDK retry of one that committed is
//! known for a success.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use tracing::debug;

use super::MAX_ATTEMPTS;
use super::expr::Expr;
use crate::config::Limits;
use crate::data::DataPatch;
use crate::error::{StoreError, ValidationError};
use crate::id::{Handle, SessionId, random_token};
use crate::item::{self, attr};
use crate::model::{Change, Session, Timestamp, check_data_size, expiry_bucket};
use crate::store::DynamoStore;

/// Merge patches naming more keys than this skip the single-request path
/// (DynamoDB limits an expression to 4 KB).
const MAX_FAST_MERGE_KEYS: usize = 50;

impl DynamoStore {
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

    /// A touch of a session just read as `read`: its single UpdateItem takes the
    /// form `read` calls for (capped past the last idle period), so a page view
    /// writes once, as a touch that knows nothing of the session would not.
    pub(super) async fn touch_as_read(
        &self,
        id: &SessionId,
        read: &Session,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        let slide = if read.slide_until() < now {
            Slide::Capped
        } else {
            Slide::Sliding
        };
        self.change_from(id, Change::Touch, None, slide, now).await
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
        self.change_from(id, change, if_match, Slide::Sliding, now).await
    }

    /// [`change`](Self::change), its first UpdateItem in the form `first`.
    async fn change_from(
        &self,
        id: &SessionId,
        change: Change,
        if_match: Option<&[u64]>,
        first: Slide,
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
        let mut known = match self
            .update_in_place(&handle, &change, if_match, &write, first, now)
            .await?
        {
            Attempt::Written(item) => return Ok(item::decode(item)?.session),
            Attempt::Refused(item) => Known::Returned(item),
            Attempt::NotExpressible => Known::Unread,
        };
        let mut tried_capped = first == Slide::Capped;
        for _ in 0..MAX_ATTEMPTS {
            let record = match std::mem::replace(&mut known, Known::Unread) {
                Known::Returned(Some(item)) => item::decode(item)?,
                Known::Returned(None) => return Err(StoreError::NotFound),
                Known::Unread => self.read(&handle).await?,
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
                    .await?
                {
                    Attempt::Written(item) => return Ok(item::decode(item)?.session),
                    Attempt::Refused(item) => {
                        known = Known::Returned(item);
                        continue;
                    }
                    Attempt::NotExpressible => {}
                }
            }
            let bucket = record
                .expiry_bucket
                .min(expiry_bucket(next.expires_at, self.config.expiry_bucket_seconds));
            match self.put_if_unchanged(&next, bucket, session, &write).await? {
                Guarded::Written => return Ok(next),
                Guarded::Refused(item) => known = Known::Returned(item),
            }
        }
        Err(StoreError::Contention { attempts: MAX_ATTEMPTS })
    }

    /// The single-request path: an UpdateItem whose condition holds in the common
    /// case, sliding the expiry as `slide` says.
    async fn update_in_place(
        &self,
        handle: &Handle,
        change: &Change,
        if_match: Option<&[u64]>,
        write: &str,
        slide: Slide,
        now: Timestamp,
    ) -> Result<Attempt, StoreError> {
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
            } if slide == Slide::Capped => return Ok(Attempt::NotExpressible),
            Change::Replace {
                data,
                idle_timeout_seconds,
            } => {
                sets.push(format!("{} = {}", e.name(attr::DATA), e.value(data.to_attribute())));
                sets.push(format!(
                    "{} = {}",
                    e.name(attr::DATA_KEYS),
                    e.value(data.order_attribute())
                ));
                sets.push(format!(
                    "{} = {}",
                    e.name(attr::DATA_KEYS_MAX),
                    e.num(data.order_limit())
                ));
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
                    return Ok(Attempt::NotExpressible);
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
                // The patch's key-order entries, after those stored, while the list is
                // within its slack; past it (or on an item without one) the condition
                // fails and the slow path's full write compacts it (`crate::data`).
                let order = e.name(attr::DATA_KEYS);
                let order_max = e.name(attr::DATA_KEYS_MAX);
                conditions.push(format!(
                    "attribute_exists({order_max}) AND size({order}) <= {order_max}"
                ));
                let entries = e.value(patch.order_entries());
                sets.push(format!("{order} = list_append({order}, {entries})"));
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
        match result {
            Ok(out) => out.attributes.map(Attempt::Written).ok_or(StoreError::Corrupt(None)),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => Ok(Attempt::Refused(c.item.clone())),
                _ => Err(err.into()),
            },
        }
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
    ) -> Result<Guarded, StoreError> {
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
            Ok(_) => Ok(Guarded::Written),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => Ok(Guarded::Refused(c.item.clone())),
                _ => Err(err.into()),
            },
        }
    }
}

/// An item as DynamoDB returns it.
type Item = HashMap<String, AttributeValue>;

/// What a single UpdateItem came to.
enum Attempt {
    /// Written: the item as it is now.
    Written(Item),
    /// Its condition failed: the item as it was (`None`: there is no item).
    Refused(Option<Item>),
    /// The change cannot be made in one UpdateItem.
    NotExpressible,
}

/// What a guarded PutItem came to.
enum Guarded {
    /// Written.
    Written,
    /// Its condition failed: the item as it is (`None`: there is no item).
    Refused(Option<Item>),
}

/// What the write loop knows of the item before its next attempt.
enum Known {
    /// Nothing: read it.
    Unread,
    /// The item a failed condition returned (`None`: there is no item).
    Returned(Option<Item>),
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

/// Whether a single UpdateItem can apply `change` to `session` as read: not a merge
/// whose object meets an object the key holds, or that the data bound refuses
/// (both would fail its condition for certain, billed, the item shipped back).
fn update_may_apply(change: &Change, session: &Session, limits: &Limits) -> bool {
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
