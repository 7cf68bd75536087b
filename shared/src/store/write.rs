//! Activity writes.
//!
//! - A touch (and a page view's slide, and an empty PATCH) is one conditional
//!   UpdateItem of the expiry attributes: it slides the expiry by the idle timeout,
//!   or past the last idle period caps it at the absolute expiry. It never rewrites
//!   the document (it opens the one the UpdateItem returns, for the answer).
//! - A data write (PUT, PATCH) reads the session (strongly consistently), changes it
//!   in memory, seals it and writes it back with one PutItem on the condition that it
//!   is still the version read. When another data write came first, the failed
//!   condition returns the item as it is, and the write starts again from there after
//!   a short jittered wait, a bounded number of times. Every data write names itself,
//!   so an SDK retry of one that committed is known for a success.

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::MAX_ATTEMPTS;
use super::cap::Backoff;
use super::expr::Expr;
use crate::data::{DataPatch, SessionData};
use crate::error::{StoreError, ValidationError};
use crate::id::{Handle, SessionId, random_token};
use crate::item::{self, Record, attr};
use crate::model::{Change, Session, Timestamp, check_data_size, expiry_bucket};
use crate::store::DynamoStore;

/// Attempts of a data write whose session other data writes keep changing; then
/// [`StoreError::Contention`] (a 409 that clients retry).
const DATA_WRITE_ATTEMPTS: u32 = 5;

impl DynamoStore {
    /// Replaces a session's data (and optionally its idle timeout); counts as activity.
    pub async fn replace(
        &self,
        id: &SessionId,
        data: SessionData,
        idle_timeout_seconds: Option<u32>,
        if_match: Option<&[u64]>,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        let limits = &self.config.limits;
        check_data_size(&data, limits)?;
        if let Some(idle) = idle_timeout_seconds
            && !(1..=limits.max_idle_timeout).contains(&idle)
        {
            return Err(ValidationError::Timeout {
                field: "idle_timeout_seconds",
                max: limits.max_idle_timeout,
            }
            .into());
        }
        let change = Change::Replace {
            data,
            idle_timeout_seconds,
        };
        self.write_data(id, &change, if_match, now).await
    }

    /// Applies an RFC 7396 merge patch to a session's data; counts as activity. An
    /// empty patch changes no data: it checks `if_match` and slides the expiry as a
    /// touch does.
    pub async fn merge(
        &self,
        id: &SessionId,
        patch: DataPatch,
        if_match: Option<&[u64]>,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        if patch.is_empty() {
            return self.slide(id, if_match, None, now).await;
        }
        self.write_data(id, &Change::Merge(patch), if_match, now).await
    }

    /// Slides the idle expiry, never past the absolute one. A touch that would
    /// move the expiry by less than the touch step is not written.
    pub async fn touch(&self, id: &SessionId, now: Timestamp) -> Result<Session, StoreError> {
        self.slide(id, None, None, now).await
    }

    /// A touch of a session just read as `read`: its UpdateItem takes the form `read`
    /// calls for (capped past the last idle period), so a page view writes once.
    pub(super) async fn touch_as_read(
        &self,
        id: &SessionId,
        read: &Session,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        self.slide(id, None, Some(read), now).await
    }

    /// A touch: one UpdateItem of the expiry attributes in the form the session calls
    /// for (`read`'s, or sliding when nothing was read). When its condition fails, the
    /// item it returns says why: gone or expired (`NotFound`), another version than
    /// `if_match` names, a touch within the step (answered as it is), or past the last
    /// idle period (the capped form, once more).
    async fn slide(
        &self,
        id: &SessionId,
        if_match: Option<&[u64]>,
        read: Option<&Session>,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        let handle = id.handle();
        let mut form = match read {
            Some(session) if session.slide_until() < now => Slide::Capped,
            _ => Slide::Sliding,
        };
        for _ in 0..MAX_ATTEMPTS {
            let record = match self.update_expiry(&handle, form, if_match, now).await? {
                Updated::Written(record) => return record.open(id),
                Updated::Refused(None) => return Err(StoreError::NotFound),
                Updated::Refused(Some(record)) => record,
            };
            let session = &record.session;
            if session.is_expired(now) || record.document.is_none() {
                return Err(StoreError::NotFound);
            }
            check_version(session, if_match)?;
            if !session.touch_is_due(now, self.config.limits.touch_step) {
                return record.open(id);
            }
            form = if session.slide_until() < now {
                Slide::Capped
            } else {
                Slide::Sliding
            };
        }
        Err(StoreError::Contention { attempts: MAX_ATTEMPTS })
    }

    /// The touch's UpdateItem: `updated_at` and `expires_at` only, on the condition
    /// that the session is live and sealed, in `form`'s part of its life, due (by the
    /// touch step) and of a version `if_match` names.
    async fn update_expiry(
        &self,
        handle: &Handle,
        form: Slide,
        if_match: Option<&[u64]>,
        now: Timestamp,
    ) -> Result<Updated, StoreError> {
        let mut e = Expr::default();
        let now_v = e.num(now.0);
        let step = i64::from(self.config.limits.touch_step);
        let (expires, slide_until, updated) = (
            e.name(attr::EXPIRES_AT),
            e.name(attr::SLIDE_UNTIL),
            e.name(attr::UPDATED_AT),
        );
        let mut conditions = vec![
            // A session stored before data was sealed reads as gone: never slid.
            format!("attribute_exists({})", e.name(attr::DOCUMENT)),
            format!("{expires} >= {now_v}"),
            format!(
                "({updated} <= {} OR {expires} <= {})",
                e.num(now.0 - step),
                e.num(now.0 + step)
            ),
        ];
        if let Some(versions) = if_match {
            conditions.push(e.version_in(versions));
        }
        let new_expiry = match form {
            Slide::Sliding => {
                conditions.push(format!("{slide_until} >= {now_v}"));
                format!("{now_v} + {}", e.name(attr::IDLE_TIMEOUT))
            }
            Slide::Capped => {
                conditions.push(format!("{slide_until} < {now_v}"));
                e.name(attr::ABSOLUTE_EXPIRES_AT)
            }
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.config.table_name)
            .set_key(Some(item::key(handle)))
            .update_expression(format!("SET {updated} = {now_v}, {expires} = {new_expiry}"))
            .condition_expression(conditions.join(" AND "))
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Updated::Written(item::decode(
                out.attributes.ok_or(StoreError::Corrupt(None))?,
            )?)),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                    Ok(Updated::Refused(c.item.clone().map(item::decode).transpose()?))
                }
                _ => Err(err.into()),
            },
        }
    }

    /// A data write: read (strongly consistently, whatever `SESSION_CONSISTENT_READS`
    /// says, so that a write right after another never meets an older version),
    /// change in memory, seal, and write on the condition that the session is still
    /// the version read; from the item a failed condition returns, again.
    async fn write_data(
        &self,
        id: &SessionId,
        change: &Change,
        if_match: Option<&[u64]>,
        now: Timestamp,
    ) -> Result<Session, StoreError> {
        // Names this write, so that a retry of it that its own condition refuses
        // (the first attempt committed, its response lost) is known for a success.
        let write = random_token()?;
        let mut record = self.read_record(&id.handle(), true).await?;
        let (mut backoff, mut out_of_attempts) = (Backoff::new(), false);
        loop {
            if record.write_token.as_deref() == Some(write.as_str()) {
                return record.open(id);
            }
            if record.session.is_expired(now) {
                return Err(StoreError::NotFound);
            }
            check_version(&record.session, if_match)?;
            if out_of_attempts {
                return Err(StoreError::Contention {
                    attempts: DATA_WRITE_ATTEMPTS,
                });
            }
            let bucket = record.expiry_bucket;
            let session = record.open(id)?;
            let Some(next) = session.changed(change, &self.config.limits, now)? else {
                return Ok(session);
            };
            // The bucket stays at or below the expiry, which a new idle timeout may bring forward.
            let bucket = bucket.min(expiry_bucket(next.expires_at, self.config.expiry_bucket_seconds));
            match self
                .put_if_version(&next, id, bucket, session.version, &write, now)
                .await?
            {
                Guarded::Written => return Ok(next),
                Guarded::Refused(None) => return Err(StoreError::NotFound),
                Guarded::Refused(Some(current)) => record = *current,
            }
            // Another data write came first: the writers spread out before the next try.
            out_of_attempts = backoff.attempts() >= DATA_WRITE_ATTEMPTS || !backoff.wait().await;
        }
    }

    /// Writes `next` (sealed under `id`) in full, provided the stored session is still
    /// live and of version `version`, so no concurrent data write is lost and nothing
    /// deleted or expired comes back. A touch that landed since the read is not
    /// refused (it names no version): its expiry gives way to this write's own, at
    /// most the time between the two requests earlier.
    async fn put_if_version(
        &self,
        next: &Session,
        id: &SessionId,
        bucket: i64,
        version: u64,
        write: &str,
        now: Timestamp,
    ) -> Result<Guarded, StoreError> {
        let mut e = Expr::default();
        let condition = format!(
            "{} = {} AND {} >= {}",
            e.name(attr::VERSION),
            e.num(version),
            e.name(attr::EXPIRES_AT),
            e.num(now.0)
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.config.table_name)
            .set_item(Some(item::encode(next, id, Some(bucket), write, &self.config)?))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Guarded::Written),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => Ok(Guarded::Refused(
                    c.item.clone().map(item::decode).transpose()?.map(Box::new),
                )),
                _ => Err(err.into()),
            },
        }
    }
}

/// `VersionMismatch` unless `if_match` is absent or names the session's version.
fn check_version(session: &Session, if_match: Option<&[u64]>) -> Result<(), StoreError> {
    match if_match {
        Some(versions) if !versions.contains(&session.version) => Err(StoreError::VersionMismatch {
            current: session.version,
        }),
        _ => Ok(()),
    }
}

/// What a touch's UpdateItem came to.
enum Updated {
    /// Written: the item as it is now.
    Written(Record),
    /// Its condition failed: the item as it was (`None`: there is no item).
    Refused(Option<Record>),
}

/// What a data write's PutItem came to.
enum Guarded {
    /// Written.
    Written,
    /// Its condition failed: the item as it is (`None`: there is no item).
    Refused(Option<Box<Record>>),
}

/// How a touch slides the expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slide {
    /// Within the session's life but its last idle period (`slide_until >= now`):
    /// `now + idle timeout`.
    Sliding,
    /// Past that (`slide_until < now`): the absolute expiry.
    Capped,
}
