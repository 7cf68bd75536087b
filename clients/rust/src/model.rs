//! What the service takes and answers: sessions, their data, devices and listings.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;

/// A session id: a bearer secret. `Debug` never shows it; only [`SessionId::expose`] does,
/// for the cookie or header that carries it.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    /// Takes an id as the client sent it (a cookie's value, say). Malformed ids are not
    /// refused here: the service answers them as it answers missing ones (not found).
    ///
    /// ```
    /// let id = session_service_client::SessionId::new("from-the-cookie");
    /// assert_eq!(format!("{id:?}"), "SessionId(<redacted>)");
    /// ```
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id itself, to hand to the browser (a cookie) or the caller that owns it.
    ///
    /// ```
    /// let id = session_service_client::SessionId::new("from-the-cookie");
    /// assert_eq!(id.expose(), "from-the-cookie");
    /// ```
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// A session's data: a JSON object kept as the service returns it, byte for byte (member
/// order, number text and unicode included).
///
/// ```
/// use session_service_client::Data;
/// let data = Data::from_json(r#"{"theme":"dark","cart":[1,2]}"#)?;
/// let theme: serde_json::Value = data.parse()?;
/// assert_eq!(theme["theme"], "dark");
/// assert_eq!(data.as_json(), r#"{"theme":"dark","cart":[1,2]}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Data(Box<RawValue>);

impl Data {
    /// No members: `{}`.
    pub fn empty() -> Self {
        Self::from_json("{}").expect("{} is JSON")
    }

    /// `value` serialized (a struct's fields stay in their declared order).
    ///
    /// ```
    /// #[derive(serde::Serialize)]
    /// struct Cart { items: Vec<u32> }
    /// let data = session_service_client::Data::new(&Cart { items: vec![7] })?;
    /// assert_eq!(data.as_json(), r#"{"items":[7]}"#);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn new<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Self)
    }

    /// JSON text taken as it is (checked to be JSON; the service checks it is an object).
    ///
    /// ```
    /// assert!(session_service_client::Data::from_json("{").is_err());
    /// ```
    pub fn from_json(json: impl Into<String>) -> Result<Self, serde_json::Error> {
        RawValue::from_string(json.into()).map(Self)
    }

    /// The data read into `T` (a struct of yours, or `serde_json::Value`).
    ///
    /// ```
    /// let data = session_service_client::Data::from_json(r#"{"n":1}"#)?;
    /// let map: std::collections::BTreeMap<String, u32> = data.parse()?;
    /// assert_eq!(map["n"], 1);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// The JSON text.
    ///
    /// ```
    /// assert_eq!(session_service_client::Data::empty().as_json(), "{}");
    /// ```
    pub fn as_json(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json()
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_json())
    }
}

/// The device a session is on, for "where you're logged in" pages. Every part optional.
///
/// ```
/// let device = session_service_client::Device {
///     user_agent: Some("Mozilla/5.0".into()),
///     ip: Some("203.0.113.7".into()),
///     label: None,
/// };
/// assert_eq!(serde_json::to_string(&device)?, r#"{"user_agent":"Mozilla/5.0","ip":"203.0.113.7"}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The browser's User-Agent (1 to 512 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The client's IP address (the service stores it in canonical form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// A name for the device, "Work laptop" (1 to 100 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// A live session, as reads and writes answer it. It carries no id: only
/// [`IssuedSession`] does.
///
/// ```no_run
/// # async fn run(client: session_service_client::Client, id: session_service_client::SessionId) -> Result<(), Box<dyn std::error::Error>> {
/// let session = client.get(&id).await?;
/// let data: serde_json::Value = session.data.parse()?;
/// println!("{} v{} until {}: {data}", session.handle, session.version, session.expires_at);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Session {
    /// Names the session in listings and in [`crate::Client::revoke`]; no use as a bearer token.
    pub handle: String,
    /// The owner, if any.
    #[serde(default)]
    pub subject: Option<String>,
    /// The data.
    pub data: Data,
    /// The device, if one was given.
    #[serde(default)]
    pub device: Option<Device>,
    /// When the session was created (kept across rotations).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The last write or written slide of its expiry.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The session is live through this second.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// No activity keeps it past this.
    #[serde(with = "time::serde::rfc3339")]
    pub absolute_expires_at: OffsetDateTime,
    /// How long it lives without activity.
    pub idle_timeout_seconds: u32,
    /// Its data version: the ETag, and what [`Precondition::Version`] names.
    pub version: u64,
}

/// A session just created or rotated, with its id: the only answers that carry one.
///
/// ```no_run
/// # async fn run(client: session_service_client::Client) -> Result<(), session_service_client::Error> {
/// let issued = client.create(&session_service_client::NewSession::default()).await?;
/// let cookie_value = issued.id.expose();
/// let version = issued.session.version;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedSession {
    /// The new id, to hand to its owner (a cookie); the service keeps no copy.
    pub id: SessionId,
    /// The session.
    pub session: Session,
}

impl<'de> Deserialize<'de> for IssuedSession {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `flatten` cannot carry the raw data through: the object is read as the session
        // (which passes over `id`) and again for its id.
        #[derive(Deserialize)]
        struct Id {
            id: SessionId,
        }
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let read = |e: serde_json::Error| serde::de::Error::custom(e);
        Ok(Self {
            id: serde_json::from_str::<Id>(raw.get()).map_err(read)?.id,
            session: serde_json::from_str(raw.get()).map_err(read)?,
        })
    }
}

/// One of an owner's sessions as a listing shows it: no id, no data.
///
/// ```no_run
/// # async fn run(client: session_service_client::Client) -> Result<(), session_service_client::Error> {
/// for s in client.list_all("user-42").await? {
///     let device = s.device.and_then(|d| d.label).unwrap_or_default();
///     println!("{device} since {}, last active {}", s.created_at, s.last_active_at);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SessionSummary {
    /// Names the session for [`crate::Client::revoke`].
    pub handle: String,
    /// The owner.
    #[serde(default)]
    pub subject: Option<String>,
    /// The device, if one was given.
    #[serde(default)]
    pub device: Option<Device>,
    /// When the session was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The last activity, at the service's touch step.
    #[serde(with = "time::serde::rfc3339")]
    pub last_active_at: OffsetDateTime,
    /// The last write or written slide of its expiry.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The session is live through this second.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// No activity keeps it past this.
    #[serde(with = "time::serde::rfc3339")]
    pub absolute_expires_at: OffsetDateTime,
    /// How long it lives without activity.
    pub idle_timeout_seconds: u32,
    /// Its data version.
    pub version: u64,
}

/// One page of an owner's sessions, oldest first.
///
/// ```no_run
/// # async fn run(client: session_service_client::Client) -> Result<(), session_service_client::Error> {
/// let page = client.list("user-42", Some(20), None).await?;
/// println!("{} sessions, more: {}", page.sessions.len(), page.next_cursor.is_some());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SessionPage {
    /// The sessions on this page.
    pub sessions: Vec<SessionSummary>,
    /// Pass to [`crate::Client::list`] for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// A session to create. Everything is optional: `NewSession::default()` is an anonymous,
/// empty session with the service's default timeouts.
///
/// ```
/// use session_service_client::{Data, NewSession};
/// let login = NewSession::default()
///     .subject("user-42")
///     .data(Data::from_json(r#"{"theme":"dark"}"#)?)
///     .idle_timeout_seconds(14 * 24 * 3600);
/// assert_eq!(login.subject.as_deref(), Some("user-42"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NewSession {
    /// The owner (a login); listed under it and revoked with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The data (default `{}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Data>,
    /// Idle timeout (default: the service's, 1800 s unless configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<u32>,
    /// Absolute lifetime (default: the service's, 43200 s unless configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub absolute_timeout_seconds: Option<u32>,
    /// The device it is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
}

impl NewSession {
    /// Owned by `subject`.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// With `data`.
    pub fn data(mut self, data: Data) -> Self {
        self.data = Some(data);
        self
    }

    /// Idle timeout in seconds.
    pub fn idle_timeout_seconds(mut self, seconds: u32) -> Self {
        self.idle_timeout_seconds = Some(seconds);
        self
    }

    /// Absolute lifetime in seconds.
    pub fn absolute_timeout_seconds(mut self, seconds: u32) -> Self {
        self.absolute_timeout_seconds = Some(seconds);
        self
    }

    /// On `device`.
    pub fn device(mut self, device: Device) -> Self {
        self.device = Some(device);
        self
    }
}

/// A session's new data, and optionally a new idle timeout.
///
/// ```
/// use session_service_client::{Data, Replacement};
/// let replacement = Replacement::new(Data::empty()).idle_timeout_seconds(600);
/// assert_eq!(replacement.idle_timeout_seconds, Some(600));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replacement {
    /// The data, replacing all of it.
    pub data: Data,
    /// The new idle timeout; unchanged when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<u32>,
}

impl Replacement {
    /// `data`, keeping the idle timeout.
    pub fn new(data: Data) -> Self {
        Self {
            data,
            idle_timeout_seconds: None,
        }
    }

    /// And a new idle timeout.
    pub fn idle_timeout_seconds(mut self, seconds: u32) -> Self {
        self.idle_timeout_seconds = Some(seconds);
        self
    }
}

/// How to rotate: `Rotation::default()` keeps the data and the owner.
///
/// ```
/// use session_service_client::Rotation;
/// let login = Rotation::default().subject("user-42");
/// assert!(login.keep_data);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rotation {
    /// Carry the data over (default) or start empty.
    pub keep_data: bool,
    /// The new owner (a login); the current owner when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The new session's device; the current one's when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            keep_data: true,
            subject: None,
            device: None,
        }
    }
}

impl Rotation {
    /// Into `subject`'s sessions (a login).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Start with empty data.
    pub fn without_data(mut self) -> Self {
        self.keep_data = false;
        self
    }

    /// On `device`.
    pub fn device(mut self, device: Device) -> Self {
        self.device = Some(device);
        self
    }
}

/// What a write requires of the session's current version (`If-Match`).
///
/// ```no_run
/// # async fn run(client: session_service_client::Client, id: session_service_client::SessionId) -> Result<(), session_service_client::Error> {
/// use session_service_client::{Data, Precondition, ProblemKind, Replacement};
/// let read = client.get(&id).await?;
/// let write = Replacement::new(Data::empty());
/// match client.replace(&id, &write, Precondition::Version(read.version)).await {
///     Err(e) if e.problem_kind() == Some(ProblemKind::PreconditionFailed) => { /* changed since: read again */ }
///     other => { other?; }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precondition {
    /// Nothing: the write applies to whatever version is current.
    #[default]
    None,
    /// Only this version ([`Session::version`]); another is
    /// [`crate::ProblemKind::PreconditionFailed`].
    Version(u64),
    /// Any version, as long as the session is live (`If-Match: *`).
    Exists,
}

impl Precondition {
    /// The `If-Match` header value, if any.
    pub(crate) fn if_match(self) -> Option<String> {
        match self {
            Self::None => None,
            Self::Version(version) => Some(format!("\"{version}\"")),
            Self::Exists => Some("*".to_owned()),
        }
    }
}
