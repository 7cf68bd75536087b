//! The session and its expiry rules, free of any storage or transport.
//!
//! Times are whole epoch seconds, the unit DynamoDB's TTL uses. A session is live
//! through the second named by `expires_at` and expired after it, which is also
//! when DynamoDB's TTL may delete it:
//! `expires_at = min(last activity + idle timeout, created + absolute timeout)`.

use serde::{Serialize, Serializer};

use crate::config::Limits;
use crate::data::{DataPatch, SessionData};
use crate::device::Device;
use crate::error::ValidationError;
use crate::id::{Handle, SessionId};

/// An instant in whole seconds since the Unix epoch; serialized as RFC 3339 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time, rounded down to the second.
    pub fn now() -> Self {
        Self(time::OffsetDateTime::now_utc().unix_timestamp())
    }

    /// This instant plus `seconds`.
    pub fn plus(self, seconds: u32) -> Self {
        Self(self.0 + i64::from(seconds))
    }

    /// RFC 3339 in UTC, e.g. `2026-11-22T10:00:00Z`.
    pub fn to_rfc3339(self) -> String {
        time::OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_else(|| self.0.to_string())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

/// Where the store gets the time from: the system clock, or a test's own.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A session's owner: 1 to 256 characters of text without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Subject(String);

impl Subject {
    /// Longest subject accepted, in characters (so at most 1 KiB of UTF-8 in a key).
    pub const MAX_LEN: usize = 256;

    /// Validates a subject.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() || raw.chars().count() > Self::MAX_LEN || raw.chars().any(char::is_control) {
            return Err(ValidationError::Subject);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The subject's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A live session as clients see it. It carries the session's handle, never its
/// id: the store does not know ids, only their handles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Session {
    /// The key of the session's item: the handle of its current id, which every
    /// rotation changes. Not part of the answer.
    #[serde(skip)]
    pub handle: Handle,
    /// The session's handle as clients see it (`handle` in the answer): random,
    /// given at create and kept across rotations (the session's family), so that
    /// revoking one session by it reaches whichever id the session has now, and
    /// revoking an owner's sessions can spare one session and its rotations.
    #[serde(rename = "handle")]
    pub family: Handle,
    /// The owner, if the session has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// The application's data.
    pub data: SessionData,
    /// The device it was created (or last rotated) on, if the caller said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    /// When the session was created (kept across rotation).
    pub created_at: Timestamp,
    /// The last activity: create, replace, merge, a written touch or rotation.
    pub updated_at: Timestamp,
    /// The session is live through this second.
    pub expires_at: Timestamp,
    /// The session never lives past this second, however active.
    pub absolute_expires_at: Timestamp,
    /// Inactivity after which the session expires.
    pub idle_timeout_seconds: u32,
    /// Data version, the session's `ETag`; bumped by every data write.
    pub version: u64,
}

fn serialize_id<S: Serializer>(id: &SessionId, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(id.as_str())
}

/// A session just created or rotated, with its new id: the one answer that carries an id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Issued {
    /// The new session's id (a bearer secret, returned to this caller only).
    #[serde(serialize_with = "serialize_id")]
    pub id: SessionId,
    /// The session.
    #[serde(flatten)]
    pub session: Session,
    /// Whether this answers a retry from its `Idempotency-Key`'s record (nothing
    /// was created or rotated this time). Not part of the answer.
    #[serde(skip)]
    pub replayed: bool,
    /// How many of the subject's sessions this create or rotation evicted to stay
    /// within the subject's cap (`evict_oldest`). Not part of the answer.
    #[serde(skip)]
    pub evicted: u32,
}

/// A session without its data, as owner listings show it: a handle, never the id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionSummary {
    /// The session's handle, kept across rotations: names it in
    /// `DELETE /subjects/{subject}/sessions/{handle}`.
    pub handle: Handle,
    /// The owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// The device it was created (or last rotated) on, if the caller said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    /// When the session was created.
    pub created_at: Timestamp,
    /// The last activity (a written slide, a data write, a rotation), at the touch
    /// step's resolution: what "last active" shows.
    pub last_active_at: Timestamp,
    /// The last activity (the same as `last_active_at`, under the name sessions use).
    pub updated_at: Timestamp,
    /// The session is live through this second.
    pub expires_at: Timestamp,
    /// The session never lives past this second.
    pub absolute_expires_at: Timestamp,
    /// Inactivity after which the session expires.
    pub idle_timeout_seconds: u32,
    /// Data version.
    pub version: u64,
}

impl From<Session> for SessionSummary {
    fn from(s: Session) -> Self {
        Self {
            handle: s.family,
            subject: s.subject,
            device: s.device,
            created_at: s.created_at,
            last_active_at: s.updated_at,
            updated_at: s.updated_at,
            expires_at: s.expires_at,
            absolute_expires_at: s.absolute_expires_at,
            idle_timeout_seconds: s.idle_timeout_seconds,
            version: s.version,
        }
    }
}

/// What a create request asks for, before defaults apply.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    /// Optional owner.
    pub subject: Option<Subject>,
    /// Initial data (an empty object when absent).
    pub data: SessionData,
    /// Requested idle timeout, or the default.
    pub idle_timeout_seconds: Option<u32>,
    /// Requested absolute lifetime, or the default.
    pub absolute_timeout_seconds: Option<u32>,
    /// The device it is created on, if the caller says.
    pub device: Option<Device>,
}

/// What a rotation gives the new session besides its id.
#[derive(Debug, Clone, Default)]
pub struct Successor {
    /// Whether it keeps the data (else it starts empty).
    pub keep_data: bool,
    /// Its owner (a login); the old owner when `None`.
    pub subject: Option<Subject>,
    /// Its device; the old session's when `None`.
    pub device: Option<Device>,
}

/// A write that counts as activity on an existing session.
#[derive(Debug, Clone)]
pub enum Change {
    /// PUT: replace the data, optionally the idle timeout.
    Replace {
        /// The new data.
        data: SessionData,
        /// The new idle timeout, if any.
        idle_timeout_seconds: Option<u32>,
    },
    /// PATCH: an RFC 7396 merge patch of the data.
    Merge(DataPatch),
    /// Touch: slide the idle expiry only, never refused for size (the store writes it
    /// with one UpdateItem of the expiry; this is the rule that UpdateItem follows).
    Touch,
}

/// The earlier of the idle and the absolute expiry.
pub fn expiry(last_activity: Timestamp, idle_timeout: u32, absolute_expires_at: Timestamp) -> Timestamp {
    last_activity.plus(idle_timeout).min(absolute_expires_at)
}

/// Whether a session that is live through `expires_at` has expired at `now`.
pub fn is_expired(expires_at: Timestamp, now: Timestamp) -> bool {
    now > expires_at
}

/// The start of the expiry bucket holding `expires_at`.
pub fn expiry_bucket(expires_at: Timestamp, bucket_seconds: i64) -> i64 {
    expires_at.0.div_euclid(bucket_seconds) * bucket_seconds
}

/// Checks a requested timeout against its maximum; `None` takes the default.
fn timeout(requested: Option<u32>, default: u32, max: u32, field: &'static str) -> Result<u32, ValidationError> {
    match requested {
        None => Ok(default),
        Some(s) if (1..=max).contains(&s) => Ok(s),
        Some(_) => Err(ValidationError::Timeout { field, max }),
    }
}

/// Checks data against the size limit.
pub fn check_data_size(data: &SessionData, limits: &Limits) -> Result<(), ValidationError> {
    let size = data.size();
    if size > limits.max_data_bytes {
        return Err(ValidationError::DataTooLarge {
            size,
            limit: limits.max_data_bytes,
        });
    }
    Ok(())
}

impl Session {
    /// A new session for id `id` with handle `family`, created at `now`, with
    /// defaults and limits applied.
    pub fn create(
        id: &SessionId,
        family: Handle,
        request: NewSession,
        limits: &Limits,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        let idle = timeout(
            request.idle_timeout_seconds,
            limits.default_idle_timeout,
            limits.max_idle_timeout,
            "idle_timeout_seconds",
        )?;
        let absolute = timeout(
            request.absolute_timeout_seconds,
            limits.default_absolute_timeout,
            limits.max_absolute_timeout,
            "absolute_timeout_seconds",
        )?;
        check_data_size(&request.data, limits)?;
        let absolute_expires_at = now.plus(absolute);
        Ok(Self {
            handle: id.handle(),
            family,
            subject: request.subject,
            data: request.data,
            device: request.device.filter(|d| !d.is_empty()),
            created_at: now,
            updated_at: now,
            expires_at: expiry(now, idle, absolute_expires_at),
            absolute_expires_at,
            idle_timeout_seconds: idle,
            version: 1,
        })
    }

    /// Whether this session has expired at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        is_expired(self.expires_at, now)
    }

    /// The last second at which activity still slides the expiry by the full idle timeout.
    pub fn slide_until(&self) -> Timestamp {
        Timestamp(self.absolute_expires_at.0 - i64::from(self.idle_timeout_seconds))
    }

    /// Whether a touch at `now` is worth writing: the last activity is at least
    /// `step` seconds old (so a written slide moves the expiry by at least `step`
    /// while it slides), or the session would otherwise expire within `step`.
    /// Once the expiry is the absolute one, touches write nothing more, so the last
    /// activity stays where the capping write left it.
    pub fn touch_is_due(&self, now: Timestamp, step: u32) -> bool {
        expiry(now, self.idle_timeout_seconds, self.absolute_expires_at) != self.expires_at
            && (self.updated_at.plus(step) <= now || self.expires_at <= now.plus(step))
    }

    /// This session after `change` at `now`, or `None` when a touch need not be written.
    pub fn changed(&self, change: &Change, limits: &Limits, now: Timestamp) -> Result<Option<Self>, ValidationError> {
        let mut next = self.clone();
        match change {
            Change::Touch if !self.touch_is_due(now, limits.touch_step) => return Ok(None),
            Change::Touch => {}
            Change::Replace {
                data,
                idle_timeout_seconds,
            } => {
                next.idle_timeout_seconds = timeout(
                    *idle_timeout_seconds,
                    self.idle_timeout_seconds,
                    limits.max_idle_timeout,
                    "idle_timeout_seconds",
                )?;
                next.data = data.clone();
                next.version += 1;
                check_data_size(&next.data, limits)?;
            }
            Change::Merge(patch) => {
                next.data.apply(patch)?;
                next.version += 1;
                check_data_size(&next.data, limits)?;
            }
        }
        next.updated_at = now;
        next.expires_at = expiry(now, next.idle_timeout_seconds, next.absolute_expires_at);
        Ok(Some(next))
    }

    /// The session that replaces this one on rotation at `now`: a new id, the same
    /// family, creation time and absolute expiry, the data if `keep_data`, and the
    /// same owner unless `subject` names a new one (a login).
    pub fn rotated(&self, new_id: &SessionId, successor: Successor, now: Timestamp) -> Self {
        let Successor {
            keep_data,
            subject,
            device,
        } = successor;
        Self {
            handle: new_id.handle(),
            family: self.family.clone(),
            subject: subject.or_else(|| self.subject.clone()),
            data: if keep_data {
                self.data.clone()
            } else {
                SessionData::default()
            },
            device: device.filter(|d| !d.is_empty()).or_else(|| self.device.clone()),
            created_at: self.created_at,
            updated_at: now,
            expires_at: expiry(now, self.idle_timeout_seconds, self.absolute_expires_at),
            absolute_expires_at: self.absolute_expires_at,
            idle_timeout_seconds: self.idle_timeout_seconds,
            version: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_800_000_000);

    fn session(idle: u32, absolute: u32) -> Session {
        let request = NewSession {
            idle_timeout_seconds: Some(idle),
            absolute_timeout_seconds: Some(absolute),
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
    fn expiry_is_the_earlier_of_idle_and_absolute() {
        assert_eq!(expiry(T0, 60, T0.plus(3600)), T0.plus(60));
        assert_eq!(expiry(T0, 7200, T0.plus(3600)), T0.plus(3600));
    }

    #[test]
    fn a_session_is_live_through_its_expiry_second_and_expired_after() {
        let s = session(60, 3600);
        assert!(!s.is_expired(T0.plus(60)));
        assert!(s.is_expired(T0.plus(61)));
    }

    #[test]
    fn create_applies_defaults_and_rejects_out_of_range_timeouts() {
        let limits = Limits::default();
        let s = Session::create(
            &SessionId::generate().unwrap(),
            crate::Handle::random().unwrap(),
            NewSession::default(),
            &limits,
            T0,
        )
        .unwrap();
        assert_eq!(s.idle_timeout_seconds, 1800);
        assert_eq!(s.absolute_expires_at, T0.plus(43200));
        assert_eq!(s.expires_at, T0.plus(1800));
        assert_eq!(s.version, 1);
        for bad in [0, limits.max_idle_timeout + 1] {
            let request = NewSession {
                idle_timeout_seconds: Some(bad),
                ..Default::default()
            };
            let err = Session::create(
                &SessionId::generate().unwrap(),
                crate::Handle::random().unwrap(),
                request,
                &limits,
                T0,
            )
            .unwrap_err();
            assert!(matches!(
                err,
                ValidationError::Timeout {
                    field: "idle_timeout_seconds",
                    ..
                }
            ));
        }
    }

    #[test]
    fn activity_slides_the_expiry_but_never_past_the_absolute_expiry() {
        let s = session(600, 1000);
        let limits = Limits::default();
        let later = s.changed(&Change::Touch, &limits, T0.plus(300)).unwrap().unwrap();
        assert_eq!(later.expires_at, T0.plus(900));
        assert_eq!(later.version, 1, "a touch is not a data write");
        let capped = later.changed(&Change::Touch, &limits, T0.plus(800)).unwrap().unwrap();
        assert_eq!(capped.expires_at, T0.plus(1000));
        assert_eq!(
            capped.changed(&Change::Touch, &limits, T0.plus(900)).unwrap(),
            None,
            "nothing left to slide"
        );
    }

    #[test]
    fn touches_within_the_step_are_not_written_unless_expiry_is_near() {
        let s = session(600, 3600);
        let limits = Limits {
            touch_step: 60,
            ..Limits::default()
        };
        assert_eq!(s.changed(&Change::Touch, &limits, T0.plus(59)).unwrap(), None);
        assert!(s.changed(&Change::Touch, &limits, T0.plus(60)).unwrap().is_some());
        let short = session(30, 3600);
        assert!(
            short.changed(&Change::Touch, &limits, T0.plus(1)).unwrap().is_some(),
            "idle below the step"
        );
    }

    #[test]
    fn data_writes_bump_the_version_and_are_size_checked() {
        let s = session(600, 3600);
        let limits = Limits {
            max_data_bytes: 10,
            ..Limits::default()
        };
        let data = SessionData::from_json(r#"{"a":1}"#).unwrap();
        let next = s
            .changed(
                &Change::Replace {
                    data,
                    idle_timeout_seconds: Some(60),
                },
                &limits,
                T0.plus(5),
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            (next.version, next.idle_timeout_seconds, next.expires_at),
            (2, 60, T0.plus(65))
        );
        let patch = serde_json::from_str(r#"{"b":"0123456789"}"#).unwrap();
        let err = next.changed(&Change::Merge(patch), &limits, T0.plus(6)).unwrap_err();
        assert!(matches!(err, ValidationError::DataTooLarge { limit: 10, .. }));
    }

    #[test]
    fn rotation_keeps_owner_creation_and_absolute_expiry() {
        let mut s = session(600, 3600);
        s.subject = Some(Subject::parse("alice").unwrap());
        s.data = SessionData::from_json(r#"{"k":1}"#).unwrap();
        let new_id = SessionId::generate().unwrap();
        let r = s.rotated(&new_id, Successor::default(), T0.plus(100));
        assert_eq!(
            (
                r.handle,
                r.family.clone(),
                r.subject.clone(),
                r.created_at,
                r.absolute_expires_at
            ),
            (
                new_id.handle(),
                s.family.clone(),
                s.subject.clone(),
                T0,
                s.absolute_expires_at
            )
        );
        assert!(r.data.is_empty());
        assert_eq!(r.expires_at, T0.plus(700));
        let bob = Subject::parse("bob").unwrap();
        let login = s.rotated(
            &SessionId::generate().unwrap(),
            Successor {
                keep_data: true,
                subject: Some(bob.clone()),
                device: None,
            },
            T0.plus(100),
        );
        assert_eq!((login.subject, login.data), (Some(bob), s.data.clone()));
    }

    #[test]
    fn subjects_are_bounded_printable_text() {
        assert!(Subject::parse("user-42@example.com").is_ok());
        assert!(Subject::parse("").is_err());
        assert!(Subject::parse("a\nb").is_err());
        assert!(Subject::parse(&"x".repeat(257)).is_err());
    }

    #[test]
    fn buckets_are_aligned_to_their_width() {
        assert_eq!(expiry_bucket(Timestamp(1234), 300), 1200);
        assert_eq!(expiry_bucket(Timestamp(1200), 300), 1200);
    }

    #[test]
    fn timestamps_serialize_as_rfc3339_utc() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00Z");
    }
}
