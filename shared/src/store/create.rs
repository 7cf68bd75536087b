//! New sessions: one conditional PutItem, or one transaction that also writes
//! the owner's membership and the `Idempotency-Key`'s record; for a subject
//! under a cap, after reading the subject's live sessions (see `cap`).

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{Put, ReturnValuesOnConditionCheckFailure};

use super::cap::Login;
use super::expr::Expr;
use super::transact::{Parts, Transacted};
use super::written_by;
use crate::error::StoreError;
use crate::id::{Handle, SessionId, random_token};
use crate::item::{self, attr};
use crate::model::{Issued, NewSession, Session, Timestamp};
use crate::registry::IdempotencyKey;
use crate::store::DynamoStore;

impl DynamoStore {
    /// Creates a session: one conditional PutItem (`attribute_not_exists`), or for
    /// an owned session or an `Idempotency-Key` one TransactWriteItems that also
    /// writes its membership and idempotency record. An SDK retry of a committed
    /// write that its own condition refuses is recognised by its write token.
    ///
    /// With a cap on the subject's sessions, the transaction also evicts the least
    /// recently active ones, or the create fails with [`StoreError::CapReached`]
    /// (a Query and a BatchGetItem before the transaction; see `cap`).
    pub async fn create(
        &self,
        request: NewSession,
        idempotency: Option<&IdempotencyKey>,
        now: Timestamp,
    ) -> Result<Issued, StoreError> {
        let id = SessionId::generate()?;
        let write = random_token()?;
        let session = Session::create(&id, Handle::random()?, request, &self.config.limits, now)?;
        let mut e = Expr::default();
        let condition = format!("attribute_not_exists({})", e.name(attr::HANDLE));
        let item = item::encode(&session, &id, None, &write, &self.config)?;
        let issued = Issued {
            id,
            session,
            replayed: false,
            evicted: 0,
        };
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
        // The session, its membership and the key's record, for each attempt.
        let parts_for = || -> Result<Parts, StoreError> {
            let mut parts = Parts::default();
            parts.put_session = parts.push(
                Put::builder()
                    .table_name(&self.config.table_name)
                    .set_item(Some(item.clone()))
                    .condition_expression(condition.clone())
                    .set_expression_attribute_names(Some(e.names.clone()))
                    .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                    .build()?,
            );
            if let Some(subject) = &issued.session.subject {
                parts.push(self.put_membership(&issued.session, subject)?);
            }
            if let Some(key) = idempotency {
                parts.idempotency = parts.push(self.put_idempotency_record(key, &issued.id, now)?);
            }
            Ok(parts)
        };
        if let (Some(subject), Some(cap)) = (&issued.session.subject, self.config.subject_cap) {
            let login = Login {
                subject,
                cap,
                write: &write,
                idempotency,
                now,
            };
            return self.create_capped(issued.clone(), login, parts_for).await;
        }
        match self.transact(parts_for()?, &write, idempotency, now).await? {
            Transacted::Done => Ok(issued),
            Transacted::Replayed(issued) => Ok(*issued),
            // Only a rotation's or a capped login's transaction is refused; kept for completeness.
            Transacted::Refused(_) | Transacted::Barred => Err(StoreError::Contention { attempts: 1 }),
        }
    }
}

/// Whether a new session needs no other item written with it.
fn session_is_alone(session: &Session, idempotency: Option<&IdempotencyKey>) -> bool {
    session.subject.is_none() && idempotency.is_none()
}
