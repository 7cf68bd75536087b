//! A cap on the live sessions of one subject (`SESSION_MAX_PER_SUBJECT`).
//!
//! A create of a capped subject's session, and a rotation that gives a session
//! to a subject, is admitted against the subject's live sessions as a strongly
//! consistent Query of the owner's registry partition and one BatchGetItem of
//! the member sessions show them. It commits only if nothing changed since:
//! the owner's cap item holds a random token that every admitted transaction
//! replaces on the condition that it still holds the one read, and that every
//! rotation within the subject replaces too. So concurrent logins of one
//! subject commit one at a time and each sees the others' sessions.
//!
//! A login that loses (or finds others queued) queues: it takes a short lease on
//! the cap item (one conditional UpdateItem, retried after jittered waits within
//! [`CAP_BUDGET`]) and admits and commits while it holds it; its transaction
//! lifts the lease. Logins that do not hold the lease commit only while nobody
//! does, so a burst of logins is served one by one instead of each retrying the
//! whole read. The lease only orders logins: correctness rests on the token
//! alone, and a lease whose holder died lapses after [`LEASE_MS`].
//!
//! Eviction deletes the least recently active sessions (and their memberships)
//! in the same transaction, each on the condition that it still exists, so a
//! session logged out meanwhile fails the attempt instead of being counted as
//! evicted. Memberships of sessions that are gone are forgotten on the way.
//! Sessions the owner had before the cap was set count too: a subject above a
//! lowered cap is brought down to it, at most [`MAX_VICTIMS`] sessions per login.
//! What an admission adds to a transaction stays within DynamoDB's limits of 100
//! parts ([`ADMISSION_PARTS`]) and 4 MB (`DELETED_BYTES` of deleted sessions).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Update};

use super::expr::Expr;
use super::transact::{Parts, Transacted};
use crate::config::{CapPolicy, SubjectCap};
use crate::error::StoreError;
use crate::id::{Handle, random_token};
use crate::item::{self, attr};
use crate::model::{Issued, Session, Subject, Timestamp};
use crate::registry::{self, IdempotencyKey, Membership, owner_pk};
use crate::store::DynamoStore;

/// Sort key of an owner's cap item, in the owner's registry partition.
const CAP_SK: &str = "cap";
/// How long a capped create or rotation keeps trying while other logins of the
/// same subject commit first: well within the API function's 10 s timeout.
pub const CAP_BUDGET: Duration = Duration::from_secs(3);
/// The most sessions one admission evicts (two transaction items each).
pub const MAX_VICTIMS: usize = 40;
/// The most memberships of gone or expired sessions one admission forgets.
const MAX_FORGOTTEN: usize = 10;
/// The parts an admission may add to a transaction: DynamoDB takes at most 100,
/// and a write's own take at most 8 (a rotation's old and new session, lock
/// check, two memberships, idempotency record and cap token, and one spare).
/// A victim takes two, a forgotten membership one and its expired session one.
const ADMISSION_PARTS: usize = 92;
/// The bytes of deleted sessions one transaction may carry: DynamoDB takes at
/// most 4 MB in a transaction, and the new session needs room too.
const DELETED_BYTES: usize = 3_000_000;
/// Longest wait between attempts.
const MAX_DELAY: Duration = Duration::from_millis(200);
/// How long a queued login's lease on the owner's cap item lasts, in milliseconds.
pub const LEASE_MS: i64 = 5_000;

/// The clock in milliseconds since the Unix epoch: leases are timed by it.
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What a capped write must do for its subject, as read just before it.
#[derive(Debug)]
pub(super) struct Admission {
    subject: Subject,
    /// The cap item's token as read (`None`: no cap item).
    token: Option<String>,
    /// The cap item's lease as read: its holder and the last millisecond it holds.
    lease: Option<(String, i64)>,
    /// Live sessions to evict, least recently active first, with their memberships' sort keys.
    victims: Vec<(Session, String)>,
    /// Memberships whose sessions are gone, expired or another owner's.
    gone: Vec<Gone>,
    /// Whether the login's own session is among the live ones: an earlier attempt
    /// of it committed (its response lost, its retry refused).
    own_committed: bool,
}

/// A membership the admission forgets, and its session if that is expired but
/// still stored (deleted with it, on the condition that it is still expired: a
/// touch judged at an earlier second could have slid it).
#[derive(Debug)]
struct Gone {
    membership: String,
    expired: Option<Handle>,
}

impl Admission {
    /// How many sessions the write evicts.
    pub(super) fn evictions(&self) -> u32 {
        self.victims.len() as u32
    }

    /// Whether a login held the owner's lease, unlapsed, when it was read.
    pub(super) fn leased(&self) -> bool {
        self.lease.as_ref().is_some_and(|(_, until)| *until >= wall_ms())
    }

    /// Whether the login's own session (an earlier attempt's) is live already.
    pub(super) fn own_committed(&self) -> bool {
        self.own_committed
    }
}

impl DynamoStore {
    /// Reads `subject`'s live sessions (strongly consistent, whatever
    /// `SESSION_CONSISTENT_READS` says) and decides what one more needs: nothing,
    /// evicting the least recently active (`evict_oldest`), or
    /// [`StoreError::CapReached`] (`reject`); nothing when `own`, the login's own
    /// session, is live already.
    pub(super) async fn admit(
        &self,
        subject: &Subject,
        cap: SubjectCap,
        own: Option<&Handle>,
        now: Timestamp,
    ) -> Result<Admission, StoreError> {
        let (cap_item, members) = self.owner_partition(subject).await?;
        let text = |name: &str| cap_item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let until = cap_item
            .get(registry::attr::UNTIL)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok());
        let (token, lease) = (text(registry::attr::TOKEN), text(registry::attr::HOLDER).zip(until));
        let handles: Vec<Handle> = members.iter().map(|m| m.handle.clone()).collect();
        let mut found = HashMap::new();
        for chunk in handles.chunks(100) {
            found.extend(self.batch_get_summaries(chunk, true).await?);
        }
        let (mut live, mut gone) = (Vec::new(), Vec::new());
        for member in members {
            let membership = member.sk;
            match found.remove(&member.handle) {
                Some(s) if s.subject.as_ref() != Some(subject) => gone.push(Gone {
                    membership,
                    expired: None,
                }),
                Some(s) if s.is_expired(now) => gone.push(Gone {
                    membership,
                    expired: Some(s.handle),
                }),
                Some(s) => live.push((s, membership)),
                // Absent from a strongly consistent read: deleted, never to come back.
                None => gone.push(Gone {
                    membership,
                    expired: None,
                }),
            }
        }
        let own_committed = own.is_some_and(|own| live.iter().any(|(s, _)| &s.handle == own));
        // Deleted sessions within the transaction's size limit, at their largest.
        let deletable = (DELETED_BYTES / (self.config.limits.max_data_bytes + 2048)).max(1);
        let excess = (live.len() + 1).saturating_sub(cap.max as usize);
        let victims = match cap.policy {
            _ if excess == 0 || own_committed => Vec::new(),
            CapPolicy::Reject => return Err(StoreError::CapReached { max: cap.max }),
            CapPolicy::EvictOldest => {
                live.sort_by(|(a, _), (b, _)| {
                    (a.updated_at, a.created_at, &a.handle).cmp(&(b.updated_at, b.created_at, &b.handle))
                });
                live.truncate(excess.min(MAX_VICTIMS).min(deletable).min(ADMISSION_PARTS / 2));
                live
            }
        };
        // Expired sessions first: they are the ones a late touch could revive.
        gone.sort_by_key(|g| g.expired.is_none());
        let (mut parts, mut deletes) = (ADMISSION_PARTS - 2 * victims.len(), deletable - victims.len());
        let mut kept = 0;
        gone.retain(|g| {
            let (cost, deleted) = (1 + usize::from(g.expired.is_some()), usize::from(g.expired.is_some()));
            let fits = kept < MAX_FORGOTTEN && cost <= parts && deleted <= deletes;
            if fits {
                (kept, parts, deletes) = (kept + 1, parts - cost, deletes - deleted);
            }
            fits
        });
        Ok(Admission {
            subject: subject.clone(),
            token,
            lease,
            victims,
            gone,
            own_committed,
        })
    }

    /// Adds what `admission` decided to a transaction: the cap item's new token,
    /// on the condition that it still holds the one read and that the lease is
    /// `held` by this login or by nobody (the write lifts it); the evictions (each
    /// on the condition that the session still exists); the forgotten memberships,
    /// with their sessions if expired (on the condition that they still are).
    pub(super) fn push_admission(
        &self,
        parts: &mut Parts,
        admission: &Admission,
        held: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let subject = &admission.subject;
        let mut e = Expr::default();
        let token = e.name(registry::attr::TOKEN);
        let (holder, until) = (e.name(registry::attr::HOLDER), e.name(registry::attr::UNTIL));
        let mut condition = match &admission.token {
            Some(read) => format!("{token} = {}", e.value(AttributeValue::S(read.clone()))),
            None => format!("attribute_not_exists({token})"),
        };
        condition.push_str(&match held {
            Some(me) => format!(" AND {holder} = {}", e.value(AttributeValue::S(me.into()))),
            None => format!(
                " AND (attribute_not_exists({holder}) OR {until} < {})",
                e.num(wall_ms())
            ),
        });
        let update = self
            .new_cap_token(subject, &mut e, &format!(" REMOVE {holder}, {until}"), now)?
            .condition_expression(condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .build()?;
        parts.cap = parts.push(update);
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
            parts.push(self.membership_delete(subject, membership)?);
        }
        for gone in &admission.gone {
            if let Some(expired) = &gone.expired {
                let mut e = Expr::default();
                let condition = format!("{} < {}", e.name(attr::EXPIRES_AT), e.num(now.0));
                let delete = Delete::builder()
                    .table_name(&self.config.table_name)
                    .set_key(Some(item::key(expired)))
                    .condition_expression(condition)
                    .set_expression_attribute_names(Some(e.names))
                    .set_expression_attribute_values(Some(e.values))
                    .build()?;
                let at = parts.push(delete);
                parts.victims.extend(at);
            }
            parts.push(self.membership_delete(subject, &gone.membership)?);
        }
        Ok(())
    }

    /// Replaces the token of `subject`'s cap item unconditionally: a rotation
    /// within the subject, which only has to fail the admissions read before it.
    pub(super) fn bump_cap_token(&self, subject: &Subject, now: Timestamp) -> Result<Update, StoreError> {
        let mut e = Expr::default();
        Ok(self
            .new_cap_token(subject, &mut e, "", now)?
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .build()?)
    }

    /// An update of `subject`'s cap item to a new random token, its expression
    /// followed by `rest`; names and values go to `e`.
    fn new_cap_token(
        &self,
        subject: &Subject,
        e: &mut Expr,
        rest: &str,
        now: Timestamp,
    ) -> Result<aws_sdk_dynamodb::types::builders::UpdateBuilder, StoreError> {
        let expression = format!(
            "SET {} = {}, {} = {}{rest}",
            e.name(registry::attr::TOKEN),
            e.value(AttributeValue::S(random_token()?)),
            e.name(registry::attr::EXPIRES_AT),
            // No session of the owner lives longer than the longest absolute timeout.
            e.num(now.plus(self.config.limits.max_absolute_timeout).0),
        );
        Ok(Update::builder()
            .table_name(&self.config.registry_table)
            .key(registry::attr::PK, AttributeValue::S(owner_pk(subject)))
            .key(registry::attr::SK, AttributeValue::S(CAP_SK.into()))
            .update_expression(expression))
    }

    /// Takes (or extends) the lease on `subject`'s cap item for login `me`, if
    /// nobody else holds it; whether it did. The lease is timed by the clock, in
    /// milliseconds, not by the request's second.
    pub(super) async fn take_lease(&self, subject: &Subject, me: &str, now: Timestamp) -> Result<bool, StoreError> {
        let wall = wall_ms();
        let result = self
            .lease_update(subject, me)
            .update_expression("SET #holder = :me, #until = :until, #expires_at = if_not_exists(#expires_at, :expires)")
            .condition_expression("attribute_not_exists(#holder) OR #until < :now OR #holder = :me")
            .expression_attribute_names("#expires_at", registry::attr::EXPIRES_AT)
            .expression_attribute_values(":until", AttributeValue::N((wall + LEASE_MS).to_string()))
            .expression_attribute_values(
                ":expires",
                AttributeValue::N(now.plus(self.config.limits.max_absolute_timeout).0.to_string()),
            )
            .expression_attribute_values(":now", AttributeValue::N(wall.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            // Held by another login, or in the transaction of one committing now.
            Err(e)
                if e.as_service_error().is_some_and(|e| {
                    e.is_conditional_check_failed_exception() || e.is_transaction_conflict_exception()
                }) =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// An UpdateItem of `subject`'s cap item naming its lease (`#holder`, `#until`)
    /// and login `me` (`:me`).
    fn lease_update(
        &self,
        subject: &Subject,
        me: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.config.registry_table)
            .key(registry::attr::PK, AttributeValue::S(owner_pk(subject)))
            .key(registry::attr::SK, AttributeValue::S(CAP_SK.into()))
            .expression_attribute_names("#holder", registry::attr::HOLDER)
            .expression_attribute_names("#until", registry::attr::UNTIL)
            .expression_attribute_values(":me", AttributeValue::S(me.into()))
    }

    /// Lifts login `me`'s lease on `subject`'s cap item, if it still holds it.
    /// Best effort: a lease left behind lapses after [`LEASE_MS`].
    pub(super) async fn release_lease(&self, subject: &Subject, me: &str) {
        let result = self
            .lease_update(subject, me)
            .update_expression("REMOVE #holder, #until")
            .condition_expression("#holder = :me")
            .send()
            .await;
        if let Err(e) = result
            && !e
                .as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception())
        {
            tracing::warn!(error = ?e, "lifting a login's lease failed; it lapses on its own");
        }
    }

    /// The owner's cap item (empty if none) and memberships: every page of a
    /// strongly consistent Query of the owner's registry partition.
    async fn owner_partition(
        &self,
        subject: &Subject,
    ) -> Result<(HashMap<String, AttributeValue>, Vec<Membership>), StoreError> {
        let (mut cap_item, mut members, mut start) = (HashMap::new(), Vec::new(), None);
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
                    Some(sk) if sk == CAP_SK => cap_item = entry.clone(),
                    _ => members.extend(Membership::decode(entry)),
                }
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok((cap_item, members)),
            }
        }
    }
}

/// A create of a capped subject's session: what [`DynamoStore::create_capped`] needs
/// besides the session.
pub(super) struct Login<'a> {
    /// The session's owner.
    pub(super) subject: &'a Subject,
    /// The owner's cap.
    pub(super) cap: SubjectCap,
    /// The session item's write token (a lost response's retry is recognised by it).
    pub(super) write: &'a str,
    /// The request's `Idempotency-Key`, if any.
    pub(super) idempotency: Option<&'a IdempotencyKey>,
    /// The request's time.
    pub(super) now: Timestamp,
}

impl DynamoStore {
    /// Creates `issued`'s session as a login of a capped subject: admits it and
    /// commits it with its evictions in one transaction (`parts_for` gives the
    /// session's own items), first optimistically, then, after losing to another
    /// login or finding one queued, under the owner's lease.
    pub(super) async fn create_capped(
        &self,
        mut issued: Issued,
        login: Login<'_>,
        parts_for: impl Fn() -> Result<Parts, StoreError>,
    ) -> Result<Issued, StoreError> {
        let Login {
            subject,
            cap,
            write,
            idempotency,
            now,
        } = login;
        let mut backoff = Backoff::new();
        let me = random_token()?;
        let (mut queued, mut held) = (false, false);
        let contention = |backoff: &Backoff| StoreError::Contention {
            attempts: backoff.attempts(),
        };
        let outcome = loop {
            if queued && !held {
                let taken = self.take_lease(subject, &me, now).await;
                match taken {
                    Ok(true) => held = true,
                    Ok(false) if backoff.wait().await => continue,
                    Ok(false) => break Err(contention(&backoff)),
                    Err(e) => break Err(e),
                }
            }
            let admission = match self.admit(subject, cap, Some(&issued.session.handle), now).await {
                Ok(admission) => admission,
                // A retry of a create that committed finds its own session counted.
                Err(StoreError::CapReached { max }) => {
                    break self.replay_or(idempotency, StoreError::CapReached { max }, now).await;
                }
                Err(e) => break Err(e),
            };
            if admission.own_committed() {
                break Ok(issued);
            }
            if !held && admission.leased() {
                queued = true;
                continue;
            }
            let parts = parts_for().and_then(|mut parts| {
                self.push_admission(&mut parts, &admission, held.then_some(me.as_str()), now)?;
                Ok(parts)
            });
            let parts = match parts {
                Ok(parts) => parts,
                Err(e) => break Err(e),
            };
            match self.transact(parts, write, idempotency, now).await {
                Ok(Transacted::Done) => {
                    // The transaction lifted the lease.
                    held = false;
                    issued.evicted = admission.evictions();
                    break Ok(issued);
                }
                Ok(Transacted::Replayed(replayed)) => break Ok(*replayed),
                // Another login committed first, a rotation replaced the token, a
                // session to evict went, or the lease lapsed: queue (again).
                Ok(Transacted::Refused(_) | Transacted::Barred) => {
                    if held && !backoff.wait().await {
                        break Err(contention(&backoff));
                    }
                    (queued, held) = (true, false);
                }
                Err(e) => break Err(e),
            }
        };
        if held {
            self.release_lease(subject, &me).await;
        }
        outcome
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
