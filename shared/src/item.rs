//! How a session is laid out as a DynamoDB item.
//!
//! Besides the session's own fields the item carries what the store and the
//! sweeper need to act in one request: `slide_until` (the last second at which
//! activity still slides the expiry by the whole idle timeout, so a single
//! conditional `UpdateItem` can slide it) and the expiry-index key `expiry_shard` /
//! `expiry_bucket`. The bucket is a lower bound of the expiry that touches leave
//! alone, so touches never rewrite the index; the sweeper re-buckets what it finds
//! still live.
//!
//! The key is the session's [`Handle`], never its id: no item, index entry or
//! stream record holds a bearer token. The data is one binary attribute, `doc`,
//! sealed under a key derived from the id (`crate::seal`): only a caller holding
//! the id reads it. What listings, the cap, the sweeper and the audit need (owner,
//! device, times) stays readable. `write_token` names the last data write, so a
//! write whose response was lost, retried by the SDK and refused by its own
//! condition, can recognise that it was committed after all.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use tracing::{error, warn};

use crate::config::Config;
use crate::data::SessionData;
use crate::device::Device;
use crate::error::StoreError;
use crate::id::{Handle, RandomnessError, SessionId};
use crate::model::{Session, Subject, Timestamp, expiry_bucket};
use crate::seal;

/// Attribute names of a session item.
pub mod attr {
    /// Partition key: the session's handle (a digest of its id).
    pub const HANDLE: &str = "handle";
    /// The session's family (kept across rotations).
    pub const FAMILY: &str = "family";
    /// Token of the last create, rotation or data write.
    pub const WRITE_TOKEN: &str = "write_token";
    /// Owner (absent for anonymous sessions).
    pub const SUBJECT: &str = "subject";
    /// The data, sealed (`crate::seal`): a binary attribute.
    pub const DOCUMENT: &str = "doc";
    /// The device (a map of `user_agent`, `ip`, `label`), when the caller named one.
    pub const DEVICE: &str = "device";
    /// Creation time, epoch seconds (kept across rotations).
    pub const CREATED_AT: &str = "created_at";
    /// Last activity, epoch seconds.
    pub const UPDATED_AT: &str = "updated_at";
    /// Expiry, epoch seconds: the table's TTL attribute.
    pub const EXPIRES_AT: &str = "expires_at";
    /// Absolute expiry, epoch seconds.
    pub const ABSOLUTE_EXPIRES_AT: &str = "absolute_expires_at";
    /// Idle timeout in seconds.
    pub const IDLE_TIMEOUT: &str = "idle_timeout";
    /// Data version.
    pub const VERSION: &str = "version";
    /// `absolute_expires_at - idle_timeout`.
    pub const SLIDE_UNTIL: &str = "slide_until";
    /// Expiry index partition key: a shard number derived from the id.
    pub const EXPIRY_SHARD: &str = "expiry_shard";
    /// Expiry index sort key: start of a bucket at or before the expiry.
    pub const EXPIRY_BUCKET: &str = "expiry_bucket";
}

/// Index of sessions by coarse expiry bucket, sharded (keys only).
pub const EXPIRY_INDEX: &str = "expiry-index";

/// A session as stored, with the expiry-index bucket it is filed under. Its data
/// is sealed: `session.data` is empty until [`Record::open`] opens the document with
/// the session's id.
#[derive(Debug, Clone)]
pub struct Record {
    /// The session, its data not yet opened.
    pub session: Session,
    /// The sealed data (absent from a projection that leaves it out).
    pub document: Option<Vec<u8>>,
    /// The expiry-index bucket the item is filed under (at or before its expiry).
    pub expiry_bucket: i64,
    /// Token of the write that left the item as it is.
    pub write_token: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredSession {
    handle: String,
    family: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    write_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<Device>,
    created_at: i64,
    updated_at: i64,
    expires_at: i64,
    absolute_expires_at: i64,
    idle_timeout: u32,
    version: u64,
    slide_until: i64,
    expiry_shard: u32,
    expiry_bucket: i64,
}

/// The item for `session`, whose id is `id`, its data sealed under that id, filed
/// under `bucket` (its own expiry's bucket when `None`), written by the write named
/// `write_token`.
pub fn encode(
    session: &Session,
    id: &SessionId,
    bucket: Option<i64>,
    write_token: &str,
    config: &Config,
) -> Result<HashMap<String, AttributeValue>, RandomnessError> {
    debug_assert_eq!(session.handle, id.handle(), "a session is sealed under its own id");
    let document = seal::seal(id, session.data.as_json().as_bytes())?;
    let stored = StoredSession {
        handle: session.handle.as_str().to_owned(),
        family: session.family.as_str().to_owned(),
        write_token: Some(write_token.to_owned()),
        subject: session.subject.as_ref().map(|s| s.as_str().to_owned()),
        device: session.device.clone(),
        created_at: session.created_at.0,
        updated_at: session.updated_at.0,
        expires_at: session.expires_at.0,
        absolute_expires_at: session.absolute_expires_at.0,
        idle_timeout: session.idle_timeout_seconds,
        version: session.version,
        slide_until: session.slide_until().0,
        expiry_shard: session.handle.shard(config.expiry_shards),
        expiry_bucket: bucket.unwrap_or_else(|| expiry_bucket(session.expires_at, config.expiry_bucket_seconds)),
    };
    let mut item: HashMap<String, AttributeValue> =
        serde_dynamo::to_item(stored).expect("a StoredSession always serializes to an item");
    item.insert(attr::DOCUMENT.into(), AttributeValue::B(Blob::new(document)));
    Ok(item)
}

/// Reads a session item (or a projection of one without its document), its data
/// left sealed.
pub fn decode(mut item: HashMap<String, AttributeValue>) -> Result<Record, StoreError> {
    let document = match item.remove(attr::DOCUMENT) {
        None => None,
        Some(AttributeValue::B(blob)) => Some(blob.into_inner()),
        Some(_) => return Err(StoreError::Corrupt(None)),
    };
    let stored: StoredSession = serde_dynamo::from_item(item)?;
    let corrupt = || StoreError::Corrupt(None);
    let session = Session {
        handle: Handle::parse(&stored.handle).ok_or_else(corrupt)?,
        family: Handle::of_family(&stored.family).ok_or_else(corrupt)?,
        subject: stored
            .subject
            .map(|s| Subject::parse(&s))
            .transpose()
            .map_err(|_| corrupt())?,
        data: SessionData::default(),
        device: stored.device,
        created_at: Timestamp(stored.created_at),
        updated_at: Timestamp(stored.updated_at),
        expires_at: Timestamp(stored.expires_at),
        absolute_expires_at: Timestamp(stored.absolute_expires_at),
        idle_timeout_seconds: stored.idle_timeout,
        version: stored.version,
    };
    Ok(Record {
        session,
        document,
        expiry_bucket: stored.expiry_bucket,
        write_token: stored.write_token,
    })
}

impl Record {
    /// The session with its data, opened with its id `id`. A document that does not
    /// open (another id's, altered, an unknown format) is [`StoreError::Unreadable`],
    /// logged at ERROR with the handle's fingerprint (never the id). An item without
    /// one was stored before data was sealed: that session reads as gone (`NotFound`,
    /// logged at WARN), as if it had expired; its user logs in again.
    pub fn open(self, id: &SessionId) -> Result<Session, StoreError> {
        let mut session = self.session;
        let Some(sealed) = self.document else {
            warn!(session = %session.handle.fingerprint(), "a session stored before data was sealed; read as gone");
            return Err(StoreError::NotFound);
        };
        let data = seal::open(id, &sealed).and_then(|text| SessionData::from_document(text).ok_or(seal::Unopenable));
        match data {
            Ok(data) => {
                session.data = data;
                Ok(session)
            }
            Err(unopenable) => {
                error!(session = %session.handle.fingerprint(), "the stored session document does not open");
                Err(StoreError::Unreadable(unopenable))
            }
        }
    }
}

/// Reads a session item in the form Lambda's DynamoDB stream events carry it.
pub fn decode_image(image: serde_dynamo::Item) -> Result<Record, StoreError> {
    decode(image.into())
}

/// The key of the session item with handle `handle`.
pub fn key(handle: &Handle) -> HashMap<String, AttributeValue> {
    HashMap::from([(attr::HANDLE.to_owned(), AttributeValue::S(handle.as_str().to_owned()))])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::model::NewSession;

    #[test]
    fn items_decode_to_the_session_they_encode() {
        let config = Config::for_table("t");
        let request = NewSession {
            subject: Some(Subject::parse("alice").unwrap()),
            data: SessionData::from_json(r#"{"":1,"x":1.0}"#).unwrap(),
            ..Default::default()
        };
        let id = SessionId::generate().unwrap();
        let session = Session::create(
            &id,
            crate::Handle::random().unwrap(),
            request,
            &Limits::default(),
            Timestamp(1_800_000_000),
        )
        .unwrap();
        let item = encode(&session, &id, None, "w1", &config).unwrap();
        assert!(!format!("{item:?}").contains(id.as_str()), "the id is never stored");
        assert!(
            matches!(&item[attr::DOCUMENT], AttributeValue::B(_)),
            "the data is one sealed binary"
        );
        assert!(
            matches!(&item[attr::EXPIRES_AT], AttributeValue::N(n) if n == "1800001800"),
            "TTL is a Number"
        );
        assert!(matches!(&item[attr::EXPIRY_BUCKET], AttributeValue::N(n) if n == "1800001800"));
        let record = decode(item.clone()).unwrap();
        assert_eq!(record.write_token.as_deref(), Some("w1"));
        assert!(record.session.data.is_empty(), "sealed until opened");
        assert_eq!(record.open(&id).unwrap(), session);
        let other = SessionId::generate().unwrap();
        assert!(matches!(
            decode(item).unwrap().open(&other),
            Err(StoreError::Unreadable(_))
        ));
    }
}
