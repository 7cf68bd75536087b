//! Rotation: the old id's item deleted and the new one's written in one
//! transaction, with the owner's membership moved and the revocation lock checked.

use aws_sdk_dynamodb::types::{Delete, Put, ReturnValuesOnConditionCheckFailure};

use super::MAX_ATTEMPTS;
use super::cap::Backoff;
use super::expr::Expr;
use super::transact::{Parts, Transacted};
use crate::error::StoreError;
use crate::id::{SessionId, random_token};
use crate::item::{self, Record, attr};
use crate::model::{Issued, Subject, Successor, Timestamp};
use crate::registry::IdempotencyKey;
use crate::store::DynamoStore;

impl DynamoStore {
    /// Replaces a session by one with a new id, the same family, data (if
    /// `keep_data`), creation time and absolute expiry, owned by `subject` if given
    /// (a login) or by the same owner. One TransactWriteItems deletes the old item
    /// and writes the new one, so exactly one of them exists at any time; it also
    /// moves the owner's membership, checks that no revoke of the old owner's
    /// sessions is under way, and writes the idempotency record, if any. While a
    /// revoke is under way it waits (up to 3 s, jittered), reading the session again
    /// each time: gone (the revoke covered it) is `NotFound`; still barred at the end
    /// is [`StoreError::Contention`], a 409 that clients retry, never a 404 for a
    /// session the revoke may not cover.
    pub async fn rotate(
        &self,
        id: &SessionId,
        keep_data: bool,
        subject: Option<Subject>,
        idempotency: Option<&IdempotencyKey>,
        now: Timestamp,
    ) -> Result<Issued, StoreError> {
        let successor = Successor {
            keep_data,
            subject,
            device: None,
        };
        self.rotate_to(id, successor, idempotency, now).await
    }

    /// [`rotate`](Self::rotate) to a `successor` that may also name a new device
    /// (a login from another browser); the old session's device otherwise.
    pub async fn rotate_to(
        &self,
        id: &SessionId,
        successor: Successor,
        idempotency: Option<&IdempotencyKey>,
        now: Timestamp,
    ) -> Result<Issued, StoreError> {
        let handle = id.handle();
        let mut known: Option<Record> = None;
        let (mut refusals, mut backoff) = (0, Backoff::new());
        while refusals < MAX_ATTEMPTS {
            let record = match known.take() {
                Some(record) => Ok(record),
                // Strongly consistently: the transaction conditions on the version read.
                None => self.read_record(&handle, true).await,
            };
            let record = match record {
                Ok(record) if !record.session.is_expired(now) => record,
                Ok(_) => return Err(StoreError::NotFound),
                // A retry of a rotation that happened finds the old id gone, and the record.
                Err(StoreError::NotFound) => return self.replay_or(idempotency, StoreError::NotFound, now).await,
                Err(e) => return Err(e),
            };
            // The data is opened only to be kept; a successor without it needs no key.
            let old = &if successor.keep_data {
                record.open(id)?
            } else {
                record.session
            };
            let new_id = SessionId::generate()?;
            let write = random_token()?;
            let next = old.rotated(&new_id, successor.clone(), now);
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
                    .set_item(Some(item::encode(&next, &new_id, None, &write, &self.config)?))
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
            let mut evicted = 0;
            let capped = match (&next.subject, self.config.subject_cap) {
                // The owner's count is unchanged, but admissions read before this must fail.
                (Some(owner), Some(_)) if old.subject.as_ref() == Some(owner) => {
                    parts.push(self.bump_cap_token(owner, now)?);
                    true
                }
                // A login into a capped subject, as a create is.
                (Some(owner), Some(cap)) => {
                    let admission = self.admit(owner, cap, None, now).await?;
                    self.push_admission(&mut parts, &admission, None, now)?;
                    evicted = admission.evictions();
                    true
                }
                _ => false,
            };
            if let Some(key) = idempotency {
                parts.idempotency = parts.push(self.put_idempotency_record(key, &new_id, now)?);
            }
            match self.transact(parts, &write, idempotency, now).await? {
                Transacted::Done => {
                    return Ok(Issued {
                        id: new_id,
                        session: next,
                        replayed: false,
                        evicted,
                    });
                }
                Transacted::Replayed(issued) => return Ok(*issued),
                // Another write to the capped subject's sessions committed first, or a revoke
                // of the owner's sessions is under way: wait, then read the session again
                // (a revoke that covers it deletes it: NotFound; one that does not lets it go).
                Transacted::Refused(None) if capped => {
                    if !backoff.wait().await {
                        break;
                    }
                }
                Transacted::Barred => {
                    if !backoff.wait().await {
                        break;
                    }
                }
                // The old session changed, expired or went away: look again.
                Transacted::Refused(old) => {
                    refusals += 1;
                    known = old.map(item::decode).transpose()?;
                }
            }
        }
        Err(StoreError::Contention {
            attempts: refusals + backoff.attempts() - 1,
        })
    }
}
