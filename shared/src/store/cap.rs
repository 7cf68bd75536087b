//! A cap on the live sessions of one subject (`SESSION_MAX_PER_SUBJECT`).
//!
//! A create of a capped subject's session, and a rotation that gives a session
//! to a subject, is admitted against the subject's live sessions as a strongly
//! consistent Query of the owner's registry partition and one BatchGetItem of
//! the member sessions show them. It commits only if nothing changed since:
//! the owner's cap item holds a random token that every admitted transaction
//! replaces on the condition that it still holds the one read, and that every
//! rotation within the subject replaces too. So concurrent logins of one
//! subject commit one at a time and each sees the others' sessions; a loser
//! reads again after a jittered wait, within [`CAP_BUDGET`].
//!
//! Eviction deletes the least recently active sessions (and their memberships)
//! in the same transaction, each on the condition that it still exists, so a
//! session logged out meanwhile fails the attempt instead of being counted as
//! evicted. Memberships of sessions that are gone are forgotten on the way.
//! Sessions the owner had before the cap was set count too: a subject above a
//! lowered cap is brought down to it, at most [`MAX_VICTIMS`] sessions per login.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::BuildError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Update};

use super::expr::Expr;
use super::transact::Parts;
use crate::config::{CapPolicy, SubjectCap};
use crate::error::StoreError;
use crate::id::{Handle, random_token};
use crate::item::{self, attr};
use crate::model::{Session, Subject, Timestamp};
use crate::registry::{self, Membership, owner_pk};
use crate::store::DynamoStore;

/// Sort key of an owner's cap item, in the owner's registry partition.
const CAP_SK: &str = "cap";
/// How long a capped create or rotation keeps trying while other logins of the
/// same subject commit first: well within the API function's 10 s timeout.
pub const CAP_BUDGET: Duration = Duration::from_secs(3);
/// The most sessions one admission evicts (two transaction items each).
pub const MAX_VICTIMS: usize = 40;
/// The most memberships of gone sessions one admission forgets.
const MAX_FORGOTTEN: usize = 10;
/// Longest wait between attempts.
const MAX_DELAY: Duration = Duration::from_millis(1000);

/// What a capped write must do for its subject, as read just before it.
#[derive(Debug)]
pub(super) struct Admission {
    subject: Subject,
    /// The cap item's token as read (`None`: no cap item).
    token: Option<String>,
    /// Live sessions to evict, least recently active first, with their memberships' sort keys.
    victims: Vec<(Session, String)>,
    /// Sort keys of memberships whose sessions are gone.
    gone: Vec<String>,
}

impl Admission {
    /// How many sessions the write evicts.
    pub(super) fn evictions(&self) -> u32 {
        self.victims.len() as u32
    }
}

impl DynamoStore {
    /// Reads `subject`'s live sessions and decides what one more needs: nothing,
    /// evicting the least recently active (`evict_oldest`), or
    /// [`StoreError::CapReached`] (`reject`).
    pub(super) async fn admit(
        &self,
        subject: &Subject,
        cap: SubjectCap,
        now: Timestamp,
    ) -> Result<Admission, StoreError> {
        let (token, members) = self.owner_partition(subject).await?;
        let handles: Vec<Handle> = members.iter().map(|m| m.handle.clone()).collect();
        let mut found = HashMap::new();
        for chunk in handles.chunks(100) {
            found.extend(self.batch_get_summaries(chunk).await?);
        }
        let (mut live, mut gone) = (Vec::new(), Vec::new());
        for member in members {
            match found.remove(&member.handle) {
                Some(s) if !s.is_expired(now) && s.subject.as_ref() == Some(subject) => live.push((s, member.sk)),
                _ => gone.push(member.sk),
            }
        }
        let excess = (live.len() + 1).saturating_sub(cap.max as usize);
        let victims = match cap.policy {
            _ if excess == 0 => Vec::new(),
            CapPolicy::Reject => return Err(StoreError::CapReached { max: cap.max }),
            CapPolicy::EvictOldest => {
                live.sort_by(|(a, _), (b, _)| {
                    (a.updated_at, a.created_at, &a.handle).cmp(&(b.updated_at, b.created_at, &b.handle))
                });
                live.truncate(excess.min(MAX_VICTIMS));
                live
            }
        };
        gone.truncate(MAX_FORGOTTEN);
        Ok(Admission {
            subject: subject.clone(),
            token,
            victims,
            gone,
        })
    }

    /// Adds what `admission` decided to a transaction: the cap item's new token
    /// (on the condition that it still holds the one read), the evictions (each on
    /// the condition that the session still exists) and the forgotten memberships.
    pub(super) fn push_admission(
        &self,
        parts: &mut Parts,
        admission: &Admission,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let subject = &admission.subject;
        parts.cap = parts.push(self.replace_cap_token(subject, Some(admission.token.as_deref()), now)?);
        for (victim, membership) in &admission.victims {
            let mut e = Expr::default();
            let condition = format!("attribute_exists({})", e.name(attr::HANDLE));
            let delete = Delete::builder()
                .table_name(&self.config.table_name)
                .set_key(Some(item::key(&victim.handle)))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(e.names))
                .build()?;
            let at = parts.push(delete);
            parts.victims.extend(at);
            parts.push(self.forget_in_transaction(subject, membership)?);
        }
        for membership in &admission.gone {
            parts.push(self.forget_in_transaction(subject, membership)?);
        }
        Ok(())
    }

    /// Replaces the token of `subject`'s cap item: on the condition that it holds
    /// `read` (`Some(None)`: that there is none), or unconditionally (`None`: a
    /// rotation within the subject, which only has to fail the admissions read
    /// before it).
    pub(super) fn replace_cap_token(
        &self,
        subject: &Subject,
        read: Option<Option<&str>>,
        now: Timestamp,
    ) -> Result<Update, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.config.registry_table)
            .key(registry::attr::PK, AttributeValue::S(owner_pk(subject)))
            .key(registry::attr::SK, AttributeValue::S(CAP_SK.into()))
            .update_expression("SET #token = :token, #expires_at = :until")
            .expression_attribute_names("#token", registry::attr::TOKEN)
            .expression_attribute_names("#expires_at", registry::attr::EXPIRES_AT)
            .expression_attribute_values(":token", AttributeValue::S(random_token()?))
            // No session of the owner lives longer than the longest absolute timeout.
            .expression_attribute_values(
                ":until",
                AttributeValue::N(now.plus(self.config.limits.max_absolute_timeout).0.to_string()),
            );
        update = match read {
            None => update,
            Some(None) => update.condition_expression("attribute_not_exists(#token)"),
            Some(Some(token)) => update
                .condition_expression("#token = :read")
                .expression_attribute_values(":read", AttributeValue::S(token.into())),
        };
        Ok(update.build()?)
    }

    fn forget_in_transaction(&self, subject: &Subject, membership: &str) -> Result<Delete, BuildError> {
        Delete::builder()
            .table_name(&self.config.registry_table)
            .key(registry::attr::PK, AttributeValue::S(owner_pk(subject)))
            .key(registry::attr::SK, AttributeValue::S(membership.into()))
            .build()
    }

    /// The owner's cap token and memberships: every page of a strongly
    /// consistent Query of the owner's registry partition (the cap item sorts first).
    async fn owner_partition(&self, subject: &Subject) -> Result<(Option<String>, Vec<Membership>), StoreError> {
        let (mut token, mut members, mut start) = (None, Vec::new(), None);
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.config.registry_table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", registry::attr::PK)
                .expression_attribute_values(":pk", AttributeValue::S(owner_pk(subject)))
                .set_exclusive_start_key(start.take())
                .consistent_read(true)
                .send()
                .await?;
            for entry in out.items() {
                match entry.get(registry::attr::SK).and_then(|v| v.as_s().ok()) {
                    Some(sk) if sk == CAP_SK => {
                        token = entry.get(registry::attr::TOKEN).and_then(|v| v.as_s().ok()).cloned();
                    }
                    _ => members.extend(Membership::decode(entry)),
                }
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok((token, members)),
            }
        }
    }
}

/// Jittered waits between the attempts of a capped write, within [`CAP_BUDGET`].
#[derive(Debug)]
pub(super) struct Backoff {
    started: Instant,
    attempts: u32,
    delay: Duration,
}

impl Backoff {
    /// Starts the budget now.
    pub(super) fn new() -> Self {
        Self {
            started: Instant::now(),
            attempts: 1,
            delay: Duration::from_millis(5),
        }
    }

    /// Attempts made so far.
    pub(super) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Waits a random time up to the current delay (doubling it, to
    /// [`MAX_DELAY`]) before another attempt; `false` when the budget is spent.
    pub(super) async fn wait(&mut self) -> bool {
        if self.started.elapsed() >= CAP_BUDGET {
            return false;
        }
        let mut bytes = [0u8; 4];
        // Without randomness, wait the whole delay.
        let fraction =
            getrandom::fill(&mut bytes).map_or(1.0, |()| f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX));
        tokio::time::sleep(self.delay.mul_f64(fraction)).await;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        self.attempts += 1;
        true
    }
}
