//! An owner's sessions: listing them from the registry's memberships, revoking
//! one by its handle, and revoking all of them under the owner's lock.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, KeysAndAttributes, ReturnValue, TransactWriteItem};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::{StreamExt, TryStreamExt};

use super::cap::Backoff;
use super::expr::Expr;
use crate::error::{StoreError, ValidationError};
use crate::id::{Handle, SessionId, random_token};
use crate::item::{self, attr};
use crate::model::{Session, SessionSummary, Subject, Timestamp};
use crate::registry::{LOCK_SECONDS, MEMBERSHIP_PREFIX, Membership};
use crate::store::DynamoStore;

/// Deletes in flight at once when revoking an owner's sessions.
const REVOKE_CONCURRENCY: usize = 16;

/// What deleting one id of a session revoked by handle came to.
enum Revoked {
    /// Deleted: the session is revoked.
    Deleted,
    /// Not a live session of the owner (deleted, expired, another owner's).
    Gone,
    /// Another write of it was committing: look again.
    Conflict,
}

/// One page of an owner's live sessions.
#[derive(Debug, Clone)]
pub struct SubjectPage {
    /// Live sessions, oldest first, without their data.
    pub sessions: Vec<SessionSummary>,
    /// Where the next page starts, if there may be one.
    pub next_cursor: Option<String>,
}

impl DynamoStore {
    /// Revokes the live session of `subject` whose handle is `handle`, whatever id
    /// it has now. The owner's memberships (read strongly consistently) name the
    /// item of each id the session had; each is deleted, with its membership, in
    /// one transaction on the condition that it is a live session of `subject`, so
    /// a handle never reaches another owner's session. A rotation in between writes
    /// the new id's membership in its own transaction, so the next look finds it;
    /// looks are spaced by jittered waits, and after the store's retry budget a
    /// session still rotating away is [`StoreError::Contention`] (a 409 to retry).
    /// [`StoreError::NotFound`] when no live session of `subject` has the handle
    /// (never did, revoked already, expired, another owner's): nothing was done.
    /// An SDK retry of a transaction that committed succeeds (its client token).
    pub async fn revoke_one(&self, subject: &Subject, handle: &Handle, now: Timestamp) -> Result<(), StoreError> {
        let mut gone = HashSet::new();
        let mut backoff = Backoff::new();
        loop {
            let mut found = false;
            let mut start = None;
            loop {
                let (members, next) = self.memberships(subject, start.take(), None).await?;
                for member in members {
                    if &member.family != handle || gone.contains(&member.handle) {
                        continue;
                    }
                    found = true;
                    match self.delete_member(subject, &member, now).await? {
                        Revoked::Deleted => return Ok(()),
                        Revoked::Gone => {
                            gone.insert(member.handle);
                        }
                        Revoked::Conflict => {}
                    }
                }
                match next {
                    Some(sk) => start = Some(sk),
                    None => break,
                }
            }
            if !found {
                return Err(StoreError::NotFound);
            }
            // Rotated (or written) meanwhile: look again.
            if !backoff.wait().await {
                return Err(StoreError::Contention {
                    attempts: backoff.attempts(),
                });
            }
        }
    }

    /// Deletes `member`'s session and membership if the session is a live one of
    /// `subject`.
    async fn delete_member(
        &self,
        subject: &Subject,
        member: &Membership,
        now: Timestamp,
    ) -> Result<Revoked, StoreError> {
        let mut e = Expr::default();
        let condition = format!(
            "{} = {} AND {} >= {}",
            e.name(attr::SUBJECT),
            e.value(AttributeValue::S(subject.as_str().to_owned())),
            e.name(attr::EXPIRES_AT),
            e.num(now.0)
        );
        let session = Delete::builder()
            .table_name(&self.config.table_name)
            .set_key(Some(item::key(&member.handle)))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .build()?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(session).build())
            .transact_items(
                TransactWriteItem::builder()
                    .delete(self.membership_delete(subject, &member.sk)?)
                    .build(),
            )
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Revoked::Deleted),
            Err(err) => err,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) = err.as_service_error() else {
            return Err(err.into());
        };
        match cancel.cancellation_reasons().first().and_then(|r| r.code()) {
            // Deleted, expired or another owner's: this id is done with.
            Some("ConditionalCheckFailed") => Ok(Revoked::Gone),
            // A rotation or a write of it committing right now.
            Some("TransactionConflict") => Ok(Revoked::Conflict),
            _ => Err(err.into()),
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
        let mut found = self.batch_get_summaries(&handles, self.config.consistent_reads).await?;
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

    /// The sessions (without data) of up to 100 `handles`, strongly consistent
    /// if `consistent`; missing ones are left out.
    pub(super) async fn batch_get_summaries(
        &self,
        handles: &[Handle],
        consistent: bool,
    ) -> Result<HashMap<Handle, Session>, StoreError> {
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
                attr::DEVICE,
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
                .consistent_read(consistent)
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
    /// the owner's sessions commits, but of the spared family), then reads the
    /// owner's memberships strongly consistently (every session created or
    /// rotated before the lock is there) and deletes each session. So once it
    /// returns, no session of `subject` that existed when it began, nor any
    /// rotated from one, is left, whatever any index shows.
    ///
    /// One revoke holds the lock at a time. A revoke sparing no more than the
    /// holder takes the lock over at once (it does the holder's work too: see
    /// [`crate::registry`]); any other waits for the lock, and after the store's
    /// retry budget answers [`StoreError::Contention`] (a 409 to retry). If it
    /// runs out of time it says so ([`StoreError::Incomplete`], after
    /// `config.revoke_budget`); what it deleted stays deleted, the lock holds until
    /// it lapses, and calling it again takes the lock over and finishes the work.
    pub async fn revoke_subject(
        &self,
        subject: &Subject,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let started = std::time::Instant::now();
        let spared = match except {
            None => None,
            Some(id) => match self.read_record(&id.handle(), self.config.consistent_reads).await {
                Ok(r) if !r.session.is_expired(now) && r.session.subject.as_ref() == Some(subject) => {
                    Some(r.session.family)
                }
                Ok(_) | Err(StoreError::NotFound) => None,
                Err(e) => return Err(e),
            },
        };
        let token = random_token()?;
        let mut backoff = Backoff::new();
        while !self
            .take_lock(subject, spared.as_ref().map(Handle::as_str), &token, now)
            .await?
        {
            if !backoff.wait().await {
                return Err(StoreError::Contention {
                    attempts: backoff.attempts(),
                });
            }
        }
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
            let doomed = members.into_iter().filter(|m| spared.as_ref() != Some(&m.family));
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
        self.unlock_owner(subject, &token).await?;
        Ok(revoked)
    }
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
