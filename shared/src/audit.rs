//! Audit records of session deletions: when, whose and why, written exactly
//! once per stream event however often the stream delivers it.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;

use crate::config::ConfigError;
use crate::device::Device;
use crate::error::StoreError;
use crate::model::{Session, Timestamp};

/// Why a session was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// DynamoDB's TTL removed it.
    Ttl,
    /// It was past its expiry when deleted: the sweeper (or a delete of an expired session).
    Expired,
    /// It was live when deleted: logout, revoke-all or rotation.
    Revoked,
}

impl Cause {
    /// The cause of a deletion at `deleted_at` of `session`; `by_ttl` when
    /// DynamoDB's TTL service did it.
    pub fn of(session: &Session, deleted_at: Timestamp, by_ttl: bool) -> Self {
        if by_ttl {
            Self::Ttl
        } else if session.is_expired(deleted_at) {
            Self::Expired
        } else {
            Self::Revoked
        }
    }

    /// The cause named `name` (as [`Self::as_str`] gives it).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Ttl, Self::Expired, Self::Revoked]
            .into_iter()
            .find(|c| c.as_str() == name)
    }

    /// The cause's name as stored and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ttl => "ttl",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// One deletion, as the audit table keeps it. Never the raw session id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// The stream event's id: the record's key, so a redelivered event is written once.
    pub event_id: String,
    /// The session's fingerprint: the first 12 hex digits of its handle (see [`crate::Handle`]).
    pub session: String,
    /// The session's owner, if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Why it was deleted.
    pub cause: Cause,
    /// When it was deleted (the stream record's creation time).
    pub deleted_at: Timestamp,
    /// When the session was created.
    pub created_at: Timestamp,
    /// Its last activity.
    pub last_active_at: Timestamp,
    /// When it expired or would have.
    pub expires_at: Timestamp,
    /// The device it was on, if the caller said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
}

impl AuditRecord {
    /// The record of `session`'s deletion reported by stream event `event_id`.
    pub fn of(event_id: impl Into<String>, session: &Session, deleted_at: Timestamp, by_ttl: bool) -> Self {
        Self {
            event_id: event_id.into(),
            session: session.handle.fingerprint(),
            subject: session.subject.as_ref().map(|s| s.as_str().to_owned()),
            cause: Cause::of(session, deleted_at, by_ttl),
            deleted_at,
            created_at: session.created_at,
            last_active_at: session.updated_at,
            expires_at: session.expires_at,
            device: session.device.clone(),
        }
    }
}

/// The audit table's index of an owner's records by deletion time.
pub const SUBJECT_INDEX: &str = "subject-index";

/// Audit table attribute names.
pub mod attr {
    /// Key: the stream event id.
    pub const EVENT_ID: &str = "event_id";
    /// The session's fingerprint.
    pub const SESSION: &str = "session";
    /// Owner; the audit subject index's partition key.
    pub const SUBJECT: &str = "subject";
    /// `ttl`, `expired` or `revoked`.
    pub const CAUSE: &str = "cause";
    /// Epoch seconds; the subject index's sort key.
    pub const DELETED_AT: &str = "deleted_at";
    /// Epoch seconds.
    pub const CREATED_AT: &str = "created_at";
    /// Epoch seconds.
    pub const LAST_ACTIVE_AT: &str = "last_active_at";
    /// Epoch seconds.
    pub const EXPIRES_AT: &str = "expires_at";
    /// The device (a map of `user_agent`, `ip`, `label`), when the session had one.
    pub const DEVICE: &str = "device";
    /// Epoch seconds: the audit table's TTL attribute (retention).
    pub const RETAIN_UNTIL: &str = "retain_until";
}

/// The audit table.
#[derive(Debug, Clone)]
pub struct AuditLog {
    client: Client,
    table: String,
    retention_days: u32,
}

/// The longest retention of audit records, in days: the most whose seconds fit the
/// 32 bits records' expiry is computed in (about 136 years).
pub const MAX_RETENTION_DAYS: u32 = u32::MAX / 86_400;

impl AuditLog {
    /// An audit log on `table`, keeping records `retention_days` days.
    pub fn new(client: Client, table: impl Into<String>, retention_days: u32) -> Self {
        Self {
            client,
            table: table.into(),
            retention_days,
        }
    }

    /// Reads `AUDIT_TABLE` and `AUDIT_RETENTION_DAYS` (default 90, at most
    /// [`MAX_RETENTION_DAYS`]) through `lookup`.
    pub fn from_lookup(client: Client, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let table = lookup("AUDIT_TABLE").filter(|t| !t.is_empty()).ok_or(ConfigError {
            name: "AUDIT_TABLE",
            reason: "must be set".into(),
        })?;
        let retention_days = match lookup("AUDIT_RETENTION_DAYS") {
            None => 90,
            Some(raw) => raw
                .trim()
                .parse()
                .ok()
                .filter(|d| (1..=MAX_RETENTION_DAYS).contains(d))
                .ok_or(ConfigError {
                    name: "AUDIT_RETENTION_DAYS",
                    reason: format!("{raw:?} is not an integer from 1 to {MAX_RETENTION_DAYS}"),
                })?,
        };
        Ok(Self::new(client, table, retention_days))
    }

    /// Writes `record` unless a record of the same event exists. Returns whether it wrote.
    pub async fn write(&self, record: &AuditRecord) -> Result<bool, StoreError> {
        let n = |t: Timestamp| AttributeValue::N(t.0.to_string());
        let retain_until = record.deleted_at.plus(self.retention_days.saturating_mul(86_400));
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(attr::EVENT_ID, AttributeValue::S(record.event_id.clone()))
            .item(attr::SESSION, AttributeValue::S(record.session.clone()))
            .item(attr::CAUSE, AttributeValue::S(record.cause.as_str().to_owned()))
            .item(attr::DELETED_AT, n(record.deleted_at))
            .item(attr::CREATED_AT, n(record.created_at))
            .item(attr::LAST_ACTIVE_AT, n(record.last_active_at))
            .item(attr::EXPIRES_AT, n(record.expires_at))
            .item(attr::RETAIN_UNTIL, n(retain_until))
            .condition_expression("attribute_not_exists(#event_id)")
            .expression_attribute_names("#event_id", attr::EVENT_ID);
        if let Some(subject) = &record.subject {
            put = put.item(attr::SUBJECT, AttributeValue::S(subject.clone()));
        }
        if let Some(device) = &record.device {
            put = put.item(attr::DEVICE, serde_dynamo::to_attribute_value(device)?);
        }
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every audit record of `subject`'s sessions, oldest deletion first.
    pub async fn by_subject(&self, subject: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(SUBJECT_INDEX)
            .key_condition_expression("#subject = :subject")
            .expression_attribute_names("#subject", attr::SUBJECT)
            .expression_attribute_values(":subject", AttributeValue::S(subject.to_owned()))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await?;
        pages
            .iter()
            .map(|item| decode(item).ok_or(StoreError::Corrupt(None)))
            .collect()
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }
}

/// An audit record read back from the table; `None` if it is not one.
fn decode(item: &HashMap<String, AttributeValue>) -> Option<AuditRecord> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let time = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .map(Timestamp)
    };
    Some(AuditRecord {
        event_id: text(attr::EVENT_ID)?,
        session: text(attr::SESSION)?,
        subject: text(attr::SUBJECT),
        cause: Cause::parse(&text(attr::CAUSE)?)?,
        deleted_at: time(attr::DELETED_AT)?,
        created_at: time(attr::CREATED_AT)?,
        last_active_at: time(attr::LAST_ACTIVE_AT)?,
        expires_at: time(attr::EXPIRES_AT)?,
        // A device that does not read back is left out, not the record.
        device: item
            .get(attr::DEVICE)
            .and_then(|d| serde_dynamo::from_attribute_value(d.clone()).ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::id::SessionId;
    use crate::model::NewSession;

    const T0: Timestamp = Timestamp(1_800_000_000);

    fn session() -> Session {
        let request = NewSession {
            idle_timeout_seconds: Some(60),
            ..Default::default()
        };
        Session::create(
            &SessionId::generate().unwrap(),
            crate::Handle::random().unwrap(),
            request,
            &Limits::default(),
            T0,
        )
        .unwrap()
    }

    #[test]
    fn the_ttl_service_live_and_expired_deletions_get_their_causes() {
        let s = session();
        assert_eq!(Cause::of(&s, T0.plus(10), true), Cause::Ttl);
        assert_eq!(Cause::of(&s, T0.plus(61), false), Cause::Expired);
        assert_eq!(Cause::of(&s, T0.plus(60), false), Cause::Revoked);
    }

    #[test]
    fn records_carry_a_fingerprint_of_the_handle() {
        let s = session();
        let record = AuditRecord::of("e1", &s, T0.plus(5), false);
        assert_eq!(record.session, s.handle.fingerprint());
        assert!(s.handle.as_str().starts_with(&record.session));
    }
}
