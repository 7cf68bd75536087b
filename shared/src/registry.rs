//! The registry table: what the store must read strongly consistently besides
//! the sessions themselves. Keyed `(pk, sk)`, no stream, TTL on `expires_at`.
//!
//! - **Memberships** (`owner#{subject}`, `session#{created_at}#{handle}`): one per
//!   owned session, written in the same transaction as the session (create,
//!   rotation), so a consistent Query of an owner's partition finds every session
//!   the owner has, whatever an index would show. Logout and the sweeper leave
//!   theirs behind; listings skip those, and TTL removes them at the session's
//!   absolute expiry, past which no session lives.
//! - **Revocation locks** (`owner#{subject}`, `revoking`): one revoke of an
//!   owner's sessions holds it at a time (its token, the family it spares if any,
//!   and when it lapses). While it holds, rotations of the owner's sessions fail
//!   (each rotation checks the lock in its transaction), except those of the
//!   spared family. A revoke takes the lock if it is free or lapsed, or over from
//!   a holder that spares at least as much (nothing, or the same family): begun
//!   later, it reads the memberships later and so does the holder's work too.
//!   Else it waits for the lock, and answers a retryable conflict if it stays held.
//! - **Cap items** (`owner#{subject}`, `cap`): with `SESSION_MAX_PER_SUBJECT` set,
//!   a random token that every admitted create and every rotation of the owner's
//!   sessions replaces in its transaction, so that concurrent logins of the owner
//!   commit one at a time, and the lease of the queued login admitting now (see
//!   `store::cap`).
//! - **Idempotency records** (`idempotency#{digest}`, `record`): the outcome of a
//!   create or rotation made with an `Idempotency-Key`, written in the same
//!   transaction. The key is a digest of the `Idempotency-Key`, and the new
//!   session's id is stored sealed (ChaCha20-Poly1305) under another digest of it,
//!   so the table never holds a usable session id.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::BuildError;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

use crate::error::{StoreError, ValidationError};
use crate::id::{Handle, SessionId};
use crate::model::{Session, Subject, Timestamp};
use crate::store::DynamoStore;

/// Attribute names of registry items.
pub mod attr {
    /// Partition key: `owner#{subject}` or `idempotency#{digest}`.
    pub const PK: &str = "pk";
    /// Sort key: `session#{created_at}#{handle}`, `revoking` or `record`.
    pub const SK: &str = "sk";
    /// TTL: when the item may go.
    pub const EXPIRES_AT: &str = "expires_at";
    /// A membership's or an idempotent result's session handle.
    pub const HANDLE: &str = "handle";
    /// A membership's session family; the family a lock's holder spares.
    pub const FAMILY: &str = "family";
    /// A cap item's token, replaced by every write that changes the owner's sessions.
    pub const TOKEN: &str = "token";
    /// A lock's holder (the revoke's token); a cap item's lease holder (the queued
    /// login admitting now).
    pub const HOLDER: &str = "holder";
    /// The last second a cap item's lease holds.
    pub const UNTIL: &str = "until";
    /// An idempotency record's request digest (same key, other request: refused).
    pub const REQUEST_DIGEST: &str = "request_digest";
    /// An idempotency record's nonce, base64url.
    pub const NONCE: &str = "nonce";
    /// An idempotency record's sealed session id, base64url.
    pub const SEALED_ID: &str = "sealed_id";
}

/// Sort-key prefix of memberships.
pub const MEMBERSHIP_PREFIX: &str = "session#";
/// Sort key of an owner's revocation lock.
const LOCK_SK: &str = "revoking";
/// Sort key of an idempotency record.
const RECORD_SK: &str = "record";
/// How long an idempotency record is kept (the IETF draft's usual 24 hours).
pub const IDEMPOTENCY_SECONDS: u32 = 24 * 60 * 60;
/// How long a revocation lock holds if its revoke dies before lifting it.
pub const LOCK_SECONDS: u32 = 60;

const IDEMPOTENCY_RECORD_DOMAIN: &[u8] = b"session-service/v1/idempotency-record\0";
const IDEMPOTENCY_SEAL_DOMAIN: &[u8] = b"session-service/v1/idempotency-seal\0";
const IDEMPOTENCY_REQUEST_DOMAIN: &[u8] = b"session-service/v1/idempotency-request\0";

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The partition of an owner's memberships and lock.
pub fn owner_pk(subject: &Subject) -> String {
    format!("owner#{}", subject.as_str())
}

/// The sort key of `session`'s membership (creation order, then handle).
pub fn membership_sk(session: &Session) -> String {
    format!(
        "{MEMBERSHIP_PREFIX}{:012}#{}",
        session.created_at.0,
        session.handle.as_str()
    )
}

fn key(pk: String, sk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([(attr::PK.to_owned(), s(pk)), (attr::SK.to_owned(), s(sk))])
}

/// One of an owner's memberships, as a Query of the owner's partition returns it.
#[derive(Debug, Clone)]
pub struct Membership {
    /// The member session's handle.
    pub handle: Handle,
    /// Its family: the session's handle as clients see it.
    pub family: Handle,
    /// The membership's sort key.
    pub sk: String,
}

impl Membership {
    /// Reads a membership item; `None` if it is not one.
    pub fn decode(item: &HashMap<String, AttributeValue>) -> Option<Self> {
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        Some(Self {
            handle: Handle::parse(&text(attr::HANDLE)?)?,
            family: Handle::of_family(&text(attr::FAMILY)?)?,
            sk: text(attr::SK).filter(|sk| sk.starts_with(MEMBERSHIP_PREFIX))?,
        })
    }
}

/// Transaction parts on the registry, for the store's transactions.
impl DynamoStore {
    /// Puts `session`'s membership in its owner's partition (an owned session only).
    pub(crate) fn put_membership(&self, session: &Session, subject: &Subject) -> Result<Put, BuildError> {
        let mut item = key(owner_pk(subject), membership_sk(session));
        item.insert(attr::HANDLE.into(), s(session.handle.as_str()));
        item.insert(attr::FAMILY.into(), s(session.family.as_str()));
        item.insert(attr::EXPIRES_AT.into(), n(session.absolute_expires_at.0));
        Put::builder()
            .table_name(&self.config().registry_table)
            .set_item(Some(item))
            .build()
    }

    /// Deletes `session`'s membership.
    pub(crate) fn delete_membership(&self, session: &Session, subject: &Subject) -> Result<Delete, BuildError> {
        Delete::builder()
            .table_name(&self.config().registry_table)
            .set_key(Some(key(owner_pk(subject), membership_sk(session))))
            .build()
    }

    /// Holds only while no revoke of `subject`'s sessions is under way, or the one
    /// under way spares `family`.
    pub(crate) fn check_not_revoking(
        &self,
        subject: &Subject,
        family: &Handle,
        now: Timestamp,
    ) -> Result<ConditionCheck, BuildError> {
        ConditionCheck::builder()
            .table_name(&self.config().registry_table)
            .set_key(Some(key(owner_pk(subject), LOCK_SK.into())))
            .condition_expression("attribute_not_exists(#holder) OR #expires_at < :now OR #family = :family")
            .expression_attribute_names("#holder", attr::HOLDER)
            .expression_attribute_names("#expires_at", attr::EXPIRES_AT)
            .expression_attribute_names("#family", attr::FAMILY)
            .expression_attribute_values(":now", n(now.0))
            .expression_attribute_values(":family", s(family.as_str()))
            .build()
    }

    /// Puts the idempotency record of `key`'s request, which issued `id`; fails
    /// (returning the record) if the key has one already that has not expired.
    pub(crate) fn put_idempotency_record(
        &self,
        idempotency: &IdempotencyKey,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Put, StoreError> {
        let (nonce, sealed) = idempotency.seal(id)?;
        let mut item = key(idempotency.record_pk.clone(), RECORD_SK.into());
        item.insert(attr::HANDLE.into(), s(id.handle().as_str()));
        item.insert(attr::REQUEST_DIGEST.into(), s(&idempotency.request_digest));
        item.insert(attr::NONCE.into(), s(nonce));
        item.insert(attr::SEALED_ID.into(), s(sealed));
        item.insert(attr::EXPIRES_AT.into(), n(now.plus(IDEMPOTENCY_SECONDS).0));
        Ok(Put::builder()
            .table_name(&self.config().registry_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #expires_at < :now")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#expires_at", attr::EXPIRES_AT)
            .expression_attribute_values(":now", n(now.0))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()?)
    }
}

/// Registry requests.
impl DynamoStore {
    /// The idempotency record of `idempotency`, if one is kept and not expired.
    pub(crate) async fn idempotency_record(
        &self,
        idempotency: &IdempotencyKey,
        now: Timestamp,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(&self.config().registry_table)
            .set_key(Some(key(idempotency.record_pk.clone(), RECORD_SK.into())))
            .consistent_read(true)
            .send()
            .await?;
        Ok(out.item.filter(|item| !expired(item, now)))
    }

    /// One page of `subject`'s memberships in creation order, read strongly
    /// consistently, from `start` (a previous page's last sort key).
    pub(crate) async fn memberships(
        &self,
        subject: &Subject,
        start: Option<String>,
        limit: Option<i32>,
    ) -> Result<(Vec<Membership>, Option<String>), StoreError> {
        let out = self
            .client()
            .query()
            .table_name(&self.config().registry_table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_values(":pk", s(owner_pk(subject)))
            .expression_attribute_values(":prefix", s(MEMBERSHIP_PREFIX))
            .set_exclusive_start_key(start.map(|sk| key(owner_pk(subject), sk)))
            .set_limit(limit)
            .consistent_read(true)
            .send()
            .await?;
        let members = out.items().iter().filter_map(Membership::decode).collect();
        let next = out
            .last_evaluated_key()
            .and_then(|k| k.get(attr::SK))
            .and_then(|v| v.as_s().ok())
            .cloned();
        Ok((members, next))
    }

    /// Takes `subject`'s revocation lock for [`LOCK_SECONDS`] as the revoke
    /// `token`, sparing `spared` (a family): if the lock is free or lapsed, or held
    /// by a revoke that spares at least as much (a revoke sparing nothing takes it
    /// from any). Whether it did; if not, another revoke sparing less holds it.
    pub(crate) async fn take_lock(
        &self,
        subject: &Subject,
        spared: Option<&str>,
        token: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let request = self
            .client()
            .update_item()
            .table_name(&self.config().registry_table)
            .set_key(Some(key(owner_pk(subject), LOCK_SK.into())))
            .expression_attribute_names("#holder", attr::HOLDER)
            .expression_attribute_names("#expires_at", attr::EXPIRES_AT)
            .expression_attribute_names("#family", attr::FAMILY)
            .expression_attribute_values(":me", s(token))
            .expression_attribute_values(":until", n(now.plus(LOCK_SECONDS).0));
        let request = match spared {
            None => request.update_expression("SET #holder = :me, #expires_at = :until REMOVE #family"),
            Some(family) => request
                .update_expression("SET #holder = :me, #expires_at = :until, #family = :family")
                .condition_expression("attribute_not_exists(#holder) OR #expires_at < :now OR #family = :family")
                .expression_attribute_values(":family", s(family))
                .expression_attribute_values(":now", n(now.0)),
        };
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Lifts `subject`'s revocation lock if the revoke `token` still holds it (a
    /// later revoke that took it over lifts it when it is done).
    pub(crate) async fn unlock_owner(&self, subject: &Subject, token: &str) -> Result<(), StoreError> {
        let result = self
            .client()
            .delete_item()
            .table_name(&self.config().registry_table)
            .set_key(Some(key(owner_pk(subject), LOCK_SK.into())))
            .condition_expression("#holder = :me")
            .expression_attribute_names("#holder", attr::HOLDER)
            .expression_attribute_values(":me", s(token))
            .send()
            .await;
        match result {
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    /// A transaction part deleting the membership `sk` of `subject`.
    pub(crate) fn membership_delete(&self, subject: &Subject, sk: &str) -> Result<Delete, BuildError> {
        Delete::builder()
            .table_name(&self.config().registry_table)
            .set_key(Some(key(owner_pk(subject), sk.to_owned())))
            .build()
    }

    /// Deletes a membership (its session is gone).
    pub(crate) async fn forget_membership(&self, subject: &Subject, sk: &str) -> Result<(), StoreError> {
        self.client()
            .delete_item()
            .table_name(&self.config().registry_table)
            .set_key(Some(key(owner_pk(subject), sk.to_owned())))
            .send()
            .await?;
        Ok(())
    }
}

fn expired(item: &HashMap<String, AttributeValue>, now: Timestamp) -> bool {
    item.get(attr::EXPIRES_AT)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .is_some_and(|t| t < now.0)
}

/// An `Idempotency-Key` as the store uses it: where its record is, the key that
/// seals the id it issued, and a digest of the request it came with.
#[derive(Clone)]
pub struct IdempotencyKey {
    record_pk: String,
    seal_key: [u8; 32],
    request_digest: String,
}

impl std::fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdempotencyKey({})", &self.record_pk[..24])
    }
}

/// What an idempotency record says about a new request with its key.
#[derive(Debug)]
pub enum Replay {
    /// The same request: it issued this id.
    Same(SessionId),
    /// Another request used the key.
    Mismatch,
}

impl IdempotencyKey {
    /// Shortest key accepted: the key seals the id it issued, so it must be unguessable.
    pub const MIN_LEN: usize = 16;
    /// Longest key accepted.
    pub const MAX_LEN: usize = 255;

    /// The key `raw` (16 to 255 visible ASCII characters) used for `scope` (the
    /// operation and the session it acts on) with request `request` (method, path
    /// and body as sent, as one text).
    pub fn new(raw: &str, scope: &str, request: &[u8]) -> Result<Self, ValidationError> {
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&raw.len()) || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::IdempotencyKey);
        }
        let digest = |domain: &[u8]| {
            Sha256::new()
                .chain_update(domain)
                .chain_update(scope.as_bytes())
                .chain_update([0])
                .chain_update(raw.as_bytes())
                .finalize()
        };
        let request_digest = Sha256::new()
            .chain_update(IDEMPOTENCY_REQUEST_DOMAIN)
            .chain_update(request)
            .finalize();
        Ok(Self {
            record_pk: format!("idempotency#{}", hex(&digest(IDEMPOTENCY_RECORD_DOMAIN))),
            seal_key: digest(IDEMPOTENCY_SEAL_DOMAIN).into(),
            request_digest: hex(&request_digest),
        })
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.seal_key))
    }

    /// Seals `id` under this key: (nonce, ciphertext), both base64url.
    fn seal(&self, id: &SessionId) -> Result<(String, String), StoreError> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(crate::id::RandomnessError)?;
        let sealed = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: id.as_str().as_bytes(),
                    aad: self.record_pk.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Corrupt(None))?;
        Ok((URL_SAFE_NO_PAD.encode(nonce), URL_SAFE_NO_PAD.encode(sealed)))
    }

    /// What the record `item` of this key says about this request.
    pub(crate) fn replay(&self, item: &HashMap<String, AttributeValue>) -> Result<Replay, StoreError> {
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str);
        if text(attr::REQUEST_DIGEST) != Some(self.request_digest.as_str()) {
            return Ok(Replay::Mismatch);
        }
        let decode = |name: &str| text(name).and_then(|t| URL_SAFE_NO_PAD.decode(t).ok());
        let (Some(nonce), Some(sealed)) = (decode(attr::NONCE), decode(attr::SEALED_ID)) else {
            return Err(StoreError::Corrupt(None));
        };
        if nonce.len() != 12 {
            return Err(StoreError::Corrupt(None));
        }
        let id = self
            .cipher()
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: self.record_pk.as_bytes(),
                },
            )
            .ok()
            .and_then(|plain| SessionId::parse(std::str::from_utf8(&plain).ok()?))
            .ok_or(StoreError::Corrupt(None))?;
        Ok(Replay::Same(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_opens_only_for_its_own_key_scope_and_request() {
        let key = IdempotencyKey::new("8e03978e-40d5-43e8-bc93-6894a57f9324", "create", b"{}").unwrap();
        let id = SessionId::generate().unwrap();
        let (nonce, sealed) = key.seal(&id).unwrap();
        let item = HashMap::from([
            (attr::REQUEST_DIGEST.to_owned(), s(&key.request_digest)),
            (attr::NONCE.to_owned(), s(&nonce)),
            (attr::SEALED_ID.to_owned(), s(&sealed)),
        ]);
        assert!(!format!("{item:?}").contains(id.as_str()), "the id is sealed");
        assert!(matches!(key.replay(&item).unwrap(), Replay::Same(same) if same == id));
        let other_body = IdempotencyKey::new("8e03978e-40d5-43e8-bc93-6894a57f9324", "create", b"{ }").unwrap();
        assert!(matches!(other_body.replay(&item).unwrap(), Replay::Mismatch));
        assert_eq!(other_body.record_pk, key.record_pk, "same key, same record");
        let other_scope = IdempotencyKey::new("8e03978e-40d5-43e8-bc93-6894a57f9324", "rotate", b"{}").unwrap();
        assert_ne!(other_scope.record_pk, key.record_pk);
        let mut forged = item.clone();
        forged.insert(attr::REQUEST_DIGEST.to_owned(), s(&other_scope.request_digest));
        assert!(other_scope.replay(&forged).is_err(), "another key cannot open the id");
    }

    #[test]
    fn keys_must_be_long_visible_ascii() {
        for bad in [
            "",
            "short",
            &"x".repeat(256),
            "sixteen chars \u{e9}!",
            "with a space in it",
        ] {
            assert!(IdempotencyKey::new(bad, "create", b"").is_err(), "{bad:?}");
        }
        assert!(IdempotencyKey::new("0123456789abcdef", "create", b"").is_ok());
    }
}
