//! The transactions of create and rotate: their parts, how a cancelled one is
//! read (a lost response's own write, an idempotent replay, a conflict), and
//! the replays of an `Idempotency-Key`'s record.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update};
use tracing::debug;

use super::written_by;
use crate::error::StoreError;
use crate::model::{Issued, Timestamp};
use crate::registry::{IdempotencyKey, Replay};
use crate::store::DynamoStore;

impl DynamoStore {
    /// Runs a transaction; recognises this write (`write`) committed by a lost
    /// attempt, and answers from the idempotency record when the key has one.
    pub(super) async fn transact(
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
            return self
                .replay(key, record, now)
                .await
                .map(|issued| Transacted::Replayed(Box::new(issued)));
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
            // A revoke of the owner's sessions is under way: wait for it (it deletes this
            // session, or the session was created after it looked and outlives it).
            return Ok(Transacted::Barred);
        }
        if parts.cap.is_some()
            && (conflict || failed(parts.cap).is_some() || parts.victims.iter().any(|&v| failed(Some(v)).is_some()))
        {
            // Another login of the subject committed first, or a session to evict went: admit again.
            return Ok(Transacted::Refused(None));
        }
        if conflict && parts.delete_session.is_some() {
            // A rotation reads its session again and retries.
            return Ok(Transacted::Refused(None));
        }
        // Else a transient error when a conflict or throttling cancelled it.
        Err(err.into())
    }

    /// The idempotency record's answer, if the request has a key with a record (its
    /// first attempt did the work: a retry of a rotation finds the old session gone,
    /// a retry of a capped create its own session counted); else `err`.
    pub(super) async fn replay_or(
        &self,
        idempotency: Option<&IdempotencyKey>,
        err: StoreError,
        now: Timestamp,
    ) -> Result<Issued, StoreError> {
        let Some(key) = idempotency else {
            return Err(err);
        };
        match self.idempotency_record(key, now).await? {
            Some(record) => self.replay(key, &record, now).await,
            None => Err(err),
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
                Ok(Issued {
                    id,
                    session,
                    replayed: true,
                    evicted: 0,
                })
            }
        }
    }
}

/// The parts of a transaction, and where the ones whose failures mean something are.
#[derive(Default)]
pub(super) struct Parts {
    pub(super) items: Vec<TransactWriteItem>,
    pub(super) delete_session: Option<usize>,
    pub(super) put_session: Option<usize>,
    pub(super) lock_check: Option<usize>,
    pub(super) idempotency: Option<usize>,
    /// The admission's replacement of the owner's cap token (a capped write).
    pub(super) cap: Option<usize>,
    /// The admission's evictions.
    pub(super) victims: Vec<usize>,
}

impl Parts {
    /// Adds a part; returns its position.
    pub(super) fn push(&mut self, part: impl Into<Part>) -> Option<usize> {
        let item = match part.into() {
            Part::Put(p) => TransactWriteItem::builder().put(p).build(),
            Part::Delete(d) => TransactWriteItem::builder().delete(d).build(),
            Part::Check(c) => TransactWriteItem::builder().condition_check(c).build(),
            Part::Update(u) => TransactWriteItem::builder().update(u).build(),
        };
        self.items.push(item);
        Some(self.items.len() - 1)
    }
}

/// One transaction part.
pub(super) enum Part {
    Put(Put),
    Delete(Delete),
    Check(ConditionCheck),
    Update(Update),
}

impl From<Update> for Part {
    fn from(u: Update) -> Self {
        Self::Update(u)
    }
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

/// How a transaction ended, short of an error.
pub(super) enum Transacted {
    /// Committed (now, or by an attempt whose response was lost).
    Done,
    /// The idempotency key's record answered instead.
    Replayed(Box<Issued>),
    /// Refused by the old session's condition (with the item as it is now, when
    /// DynamoDB returned one) or by a conflicting write: read it again.
    Refused(Option<HashMap<String, AttributeValue>>),
    /// A rotation refused by the owner's revocation lock: a revoke is under way.
    Barred,
}
