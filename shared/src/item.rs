//! How a session is laid out as a DynamoDB item.
//!
//! Besides the session's own fields the item carries what the store and the
//! sweeper need to act in one request: `slide_until` (the last second at which
//! activity still slides the expiry by the whole idle timeout, so a single
//! conditional `UpdateItem` can slide it), `data_bytes` (for the size limit on
//! merges), and the expiry-index key `expiry_shard` / `expiry_bucket`. The
//! bucket is a lower bound of the expiry that touches leave alone, so touches
//! never rewrite the index; the sweeper re-buckets what it finds still live.
//!
//! The key is the session's [`Handle`], never its id: no item, index entry or
//! stream record holds a bearer token. `write_token` names the last data write,
//! so a write whose response was lost, retried by the SDK and refused by its own
//! condition, can recognise that it was committed after all.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::data::SessionData;
use crate::device::Device;
use crate::error::StoreError;
use crate::id::Handle;
use crate::model::{Session, Subject, Timestamp, expiry_bucket};

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
    /// Map from `_`-prefixed data keys to their JSON text.
    pub const DATA: &str = "data";
    /// The data keys' order: a list of entries replayed on read (`crate::data`).
    pub const DATA_KEYS: &str = "data_keys";
    /// Entries `data_keys` may hold before a PATCH must compact it with a full write.
    pub const DATA_KEYS_MAX: &str = "data_keys_max";
    /// Upper bound of the data's encoded size.
    pub const DATA_BYTES: &str = "data_bytes";
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

/// A session as stored, with the expiry-index bucket it is filed under.
#[derive(Debug, Clone)]
pub struct Record {
    /// The session.
    pub session: Session,
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
    #[serde(default)]
    data: HashMap<String, String>,
    #[serde(default, skip_serializing)]
    data_keys: Vec<String>,
    #[serde(default)]
    data_bytes: u64,
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

/// The item for `session`, filed under `bucket` (its own expiry's bucket when `None`),
/// written by the write named `write_token`.
pub fn encode(
    session: &Session,
    bucket: Option<i64>,
    write_token: &str,
    config: &Config,
) -> HashMap<String, AttributeValue> {
    let stored = StoredSession {
        handle: session.handle.as_str().to_owned(),
        family: session.family.clone(),
        write_token: Some(write_token.to_owned()),
        subject: session.subject.as_ref().map(|s| s.as_str().to_owned()),
        data: HashMap::new(),
        data_keys: Vec::new(),
        data_bytes: session.data.encoded_size() as u64,
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
    item.insert(attr::DATA.into(), session.data.to_attribute());
    item.insert(attr::DATA_KEYS.into(), session.data.order_attribute());
    item.insert(
        attr::DATA_KEYS_MAX.into(),
        AttributeValue::N(session.data.order_limit().to_string()),
    );
    item
}

/// Reads a session item (or a projection of one without `data`).
pub fn decode(item: HashMap<String, AttributeValue>) -> Result<Record, StoreError> {
    let stored: StoredSession = serde_dynamo::from_item(item)?;
    let corrupt = || StoreError::Corrupt(None);
    let session = Session {
        handle: Handle::parse(&stored.handle).ok_or_else(corrupt)?,
        family: stored.family,
        subject: stored
            .subject
            .map(|s| Subject::parse(&s))
            .transpose()
            .map_err(|_| corrupt())?,
        data: SessionData::from_stored(stored.data, &stored.data_keys).ok_or_else(corrupt)?,
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
        expiry_bucket: stored.expiry_bucket,
        write_token: stored.write_token,
    })
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
    use crate::id::SessionId;
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
            "family".into(),
            request,
            &Limits::default(),
            Timestamp(1_800_000_000),
        )
        .unwrap();
        let item = encode(&session, None, "w1", &config);
        assert!(!format!("{item:?}").contains(id.as_str()), "the id is never stored");
        assert!(
            matches!(&item[attr::EXPIRES_AT], AttributeValue::N(n) if n == "1800001800"),
            "TTL is a Number"
        );
        assert!(matches!(&item[attr::EXPIRY_BUCKET], AttributeValue::N(n) if n == "1800001800"));
        let record = decode(item).unwrap();
        assert_eq!(record.session, session);
        assert_eq!(record.write_token.as_deref(), Some("w1"));
    }
}
