//! The client: one method a route, each attempt signed afresh, retries by [`RetryPolicy`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_types::SdkConfig;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{ACCEPT, CONTENT_TYPE, HOST, IF_MATCH, RETRY_AFTER};
use http::{HeaderValue, Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use url::Url;

use crate::settle::{Check, Outcome, Written, settle};
use crate::signing::{Signing, sign};
use crate::{
    Data, Error, IssuedSession, NewSession, Precondition, Problem, ProblemKind, Replacement, RetryPolicy, Rotation,
    Session, SessionId, SessionPage, SessionSummary,
};

/// Credentials are fetched again this long before they expire.
const CREDENTIALS_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// A client of one deployment of the session service. Cheap to clone (one connection pool).
///
/// ```no_run
/// use session_service_client::{Client, NewSession, Rotation};
/// # async fn run() -> Result<(), session_service_client::Error> {
/// // Locally (`scripts/run`): unsigned.
/// let client = Client::new("http://127.0.0.1:9000/lambda-url/api")?;
/// let anonymous = client.create(&NewSession::default()).await?;
/// // At login: a new id owned by the user; the old one stops working.
/// let login = client.rotate(&anonymous.id, &Rotation::default().subject("user-42")).await?;
/// let session = client.get_and_touch(&login.id).await?;
/// assert_eq!(session.subject.as_deref(), Some("user-42"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base: Url,
    auth: Auth,
    retry: RetryPolicy,
    #[cfg(feature = "direct-reads")]
    direct: Option<crate::direct::DirectReads>,
}

#[derive(Debug)]
enum Auth {
    Unsigned,
    SigV4 {
        service: String,
        region: String,
        credentials: SharedCredentialsProvider,
        cached: Mutex<Option<Credentials>>,
    },
}

/// Builds a [`Client`]: the base URL, and for a deployed stack credentials and a region.
///
/// ```
/// use std::time::Duration;
/// use session_service_client::{Client, RetryPolicy};
/// let client = Client::builder("http://127.0.0.1:9000/lambda-url/api")
///     .timeout(Duration::from_secs(2))
///     .retry(RetryPolicy { max_attempts: 2, ..Default::default() })
///     .build()?;
/// # Ok::<(), session_service_client::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    url: String,
    region: Option<String>,
    credentials: Option<SharedCredentialsProvider>,
    signing: Option<Signing>,
    retry: RetryPolicy,
    timeout: Duration,
    connect_timeout: Duration,
    #[cfg(feature = "direct-reads")]
    direct: Option<crate::direct::DirectReads>,
}

impl ClientBuilder {
    /// Reads sessions straight from the sessions table (`SessionsTableName`, a stack
    /// output) through `dynamodb`: [`Client::get`] is one strongly consistent GetItem,
    /// opened here with the id, and [`Client::get_and_touch`] adds the service's touch only
    /// when one is due (at most once a touch step per session), so most page views make
    /// no HTTP request. Needs `dynamodb:GetItem` on the table (the template's
    /// `DirectReads=Enabled`). Every other call still goes to the service.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), session_service_client::Error> {
    /// let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    /// let client = session_service_client::Client::builder("https://sessions.example.com")
    ///     .sdk_config(&config)
    ///     .direct_reads(&aws_sdk_dynamodb::Client::new(&config), "prod-SessionsTable-1A2B3C")
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "direct-reads")]
    pub fn direct_reads(mut self, dynamodb: &aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        self.direct = Some(crate::direct::DirectReads {
            dynamodb: dynamodb.clone(),
            table: table.into(),
            touch_step: crate::direct::DEFAULT_TOUCH_STEP_SECONDS,
        });
        self
    }

    /// The service's `SESSION_TOUCH_STEP_SECONDS` when not its default (60), so that a
    /// direct read asks for a touch exactly when the service would write one.
    #[cfg(feature = "direct-reads")]
    pub fn touch_step(mut self, seconds: u32) -> Self {
        if let Some(direct) = &mut self.direct {
            direct.touch_step = seconds;
        }
        self
    }

    /// Region and credentials from `config` (`aws_config::load_defaults(...)`).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), session_service_client::Error> {
    /// let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    /// let client = session_service_client::Client::builder("https://sessions.example.com")
    ///     .sdk_config(&config)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn sdk_config(mut self, config: &SdkConfig) -> Self {
        if let Some(region) = config.region() {
            self.region = Some(region.to_string());
        }
        if let Some(credentials) = config.credentials_provider() {
            self.credentials = Some(credentials);
        }
        self
    }

    /// The credentials to sign with.
    ///
    /// ```
    /// use aws_credential_types::Credentials;
    /// let client = session_service_client::Client::builder("https://a1b2c3.lambda-url.eu-west-1.on.aws")
    ///     .credentials(Credentials::new("AKID", "secret", None, None, "example"))
    ///     .build()?;
    /// # Ok::<(), session_service_client::Error>(())
    /// ```
    pub fn credentials(mut self, credentials: impl ProvideCredentials + 'static) -> Self {
        self.credentials = Some(SharedCredentialsProvider::new(credentials));
        self
    }

    /// The region, for a host that does not name one (a custom domain).
    ///
    /// ```
    /// use aws_credential_types::Credentials;
    /// let client = session_service_client::Client::builder("https://sessions.example.com")
    ///     .region("eu-west-1")
    ///     .credentials(Credentials::new("AKID", "secret", None, None, "example"))
    ///     .build()?;
    /// # Ok::<(), session_service_client::Error>(())
    /// ```
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Authorizes requests this way, whatever the URL (by default [`Signing::for_url`]
    /// decides): a proxy's URL in front of a function URL, say.
    ///
    /// ```
    /// use aws_credential_types::Credentials;
    /// use session_service_client::Signing;
    /// let client = session_service_client::Client::builder("https://proxy.internal")
    ///     .signing(Signing::SigV4 { service: "lambda".into(), region: "eu-west-1".into() })
    ///     .credentials(Credentials::new("AKID", "secret", None, None, "example"))
    ///     .build()?;
    /// # Ok::<(), session_service_client::Error>(())
    /// ```
    pub fn signing(mut self, signing: Signing) -> Self {
        self.signing = Some(signing);
        self
    }

    /// How calls are retried.
    ///
    /// ```
    /// let client = session_service_client::Client::builder("http://127.0.0.1:9000/lambda-url/api")
    ///     .retry(session_service_client::RetryPolicy { max_attempts: 1, ..Default::default() })
    ///     .build()?;
    /// # Ok::<(), session_service_client::Error>(())
    /// ```
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Longest wait for one attempt's answer (default 10 s).
    ///
    /// ```
    /// let client = session_service_client::Client::builder("http://127.0.0.1:9000/lambda-url/api")
    ///     .timeout(std::time::Duration::from_secs(2))
    ///     .build()?;
    /// # Ok::<(), session_service_client::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Longest wait for a connection (default 3 s).
    ///
    /// ```
    /// let client = session_service_client::Client::builder("http://127.0.0.1:9000/lambda-url/api")
    ///     .connect_timeout(std::time::Duration::from_millis(500))
    ///     .build()?;
    /// # Ok::<(), session_service_client::Error>(())
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The client. Fails on a URL it cannot use, or a signed one without credentials.
    ///
    /// ```
    /// let builder = session_service_client::Client::builder("ftp://example.com");
    /// assert!(builder.build().is_err());
    /// ```
    pub fn build(self) -> Result<Client, Error> {
        let mut base = Url::parse(&self.url).map_err(|e| Error::Config(format!("the URL: {e}")))?;
        if base.cannot_be_a_base() || base.query().is_some() || base.fragment().is_some() {
            return Err(Error::Config(
                "the URL must be a base URL, without query or fragment".to_owned(),
            ));
        }
        base.path_segments_mut()
            .map_err(|()| Error::Config("the URL cannot be a base".to_owned()))?
            .pop_if_empty();
        let signing = match self.signing {
            Some(signing) => signing,
            None => Signing::for_url(&base, self.region.as_deref())?,
        };
        let auth = match signing {
            Signing::Unsigned => Auth::Unsigned,
            Signing::SigV4 { service, region } => Auth::SigV4 {
                service,
                region,
                credentials: self.credentials.ok_or_else(|| {
                    Error::Config("signed requests need credentials (sdk_config or credentials)".to_owned())
                })?,
                cached: Mutex::new(None),
            },
        };
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(concat!("session-service-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(transport)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                auth,
                retry: self.retry,
                #[cfg(feature = "direct-reads")]
                direct: self.direct,
            }),
        })
    }
}

/// One logical call; its attempts are built from it.
struct Call {
    method: Method,
    url: Url,
    body: Option<(Vec<u8>, &'static str)>,
    if_match: Option<String>,
    /// For a write naming a version: what it writes, to settle an answer in doubt.
    check: Option<Check>,
    idempotency_key: Option<String>,
    /// A 404 after an answer that may follow a commit is the call's success: a revoke's
    /// retry finds no live session when an earlier attempt revoked it.
    gone_is_done: bool,
}

impl Call {
    fn new(method: Method, url: Url) -> Self {
        Self {
            method,
            url,
            body: None,
            if_match: None,
            check: None,
            idempotency_key: None,
            gone_is_done: false,
        }
    }

    fn json(mut self, body: &impl Serialize, content_type: &'static str) -> Result<Self, Error> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::Config(format!("the request body: {e}")))?;
        self.body = Some((bytes, content_type));
        Ok(self)
    }

    /// `If-Match`; naming a version, the write (`written`) is checked for in the session
    /// read back when its answer is in doubt.
    fn precondition(mut self, precondition: Precondition, written: impl FnOnce() -> Written) -> Self {
        self.if_match = precondition.if_match();
        if let Precondition::Version(version) = precondition {
            self.check = Some(Check {
                version,
                written: written(),
            });
        }
        self
    }

    /// One key for the call, sent with each of its attempts: 128 random bits.
    fn idempotent(mut self) -> Result<Self, Error> {
        let mut key = [0u8; 16];
        getrandom::fill(&mut key).map_err(|e| Error::Config(format!("no randomness for an Idempotency-Key: {e}")))?;
        self.idempotency_key = Some(URL_SAFE_NO_PAD.encode(key));
        Ok(self)
    }

    /// A 404 once an attempt's answer may have followed a commit is a success.
    fn gone_is_done(mut self) -> Self {
        self.gone_is_done = true;
        self
    }
}

impl Client {
    /// A client of a local service (`http://`, unsigned), with the default retries.
    ///
    /// ```
    /// let client = session_service_client::Client::new("http://127.0.0.1:9000/lambda-url/api")?;
    /// assert!(session_service_client::Client::new("https://abc.execute-api.us-east-1.amazonaws.com").is_err());
    /// # Ok::<(), session_service_client::Error>(())
    /// ```
    pub fn new(url: &str) -> Result<Self, Error> {
        Self::builder(url).build()
    }

    /// A client of a deployed stack, signing with `config`'s credentials.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    /// let client = session_service_client::Client::from_sdk_config(
    ///     "https://a1b2c3.execute-api.eu-west-1.amazonaws.com",
    ///     &config,
    /// )?;
    /// # Ok(()) }
    /// ```
    pub fn from_sdk_config(url: &str, config: &SdkConfig) -> Result<Self, Error> {
        Self::builder(url).sdk_config(config).build()
    }

    /// A builder for `url`.
    ///
    /// ```
    /// let client = session_service_client::Client::builder("http://127.0.0.1:9000/lambda-url/api").build()?;
    /// # Ok::<(), session_service_client::Error>(())
    /// ```
    pub fn builder(url: &str) -> ClientBuilder {
        ClientBuilder {
            url: url.to_owned(),
            region: None,
            credentials: None,
            signing: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            #[cfg(feature = "direct-reads")]
            direct: None,
        }
    }

    /// `GET /health`: the function answers (no DynamoDB call).
    ///
    /// ```no_run
    /// # async fn run(client: session_service_client::Client) -> Result<(), session_service_client::Error> {
    /// client.health().await?;
    /// # Ok(()) }
    /// ```
    pub async fn health(&self) -> Result<(), Error> {
        let call = Call::new(Method::GET, self.url(&["health"])?);
        self.send(call).await.map(drop)
    }

    /// `POST /sessions`: a new session and its id. Its `Idempotency-Key` makes the retries of
    /// a lost answer return the same session.
    ///
    /// ```no_run
    /// # async fn run(client: session_service_client::Client) -> Result<(), session_service_client::Error> {
    /// use session_service_client::{Data, NewSession};
    /// let data = Data::from_json(r#"{"cart":[]}"#).expect("JSON");
    /// let issued = client.create(&NewSession::default().data(data)).await?;
    /// let cookie = issued.id.expose(); // to the browser; the service keeps no copy
    /// # Ok(()) }
    /// ```
    pub async fn create(&self, session: &NewSession) -> Result<IssuedSession, Error> {
        let call = Call::new(Method::POST, self.url(&["sessions"])?)
            .json(session, "application/json")?
            .idempotent()?;
        self.send_for(call).await
    }

    /// `GET /sessions/{id}`: the session, without moving its expiry.
    ///
    /// ```no_run
    /// # async fn run(client: session_service_client::Client, id: session_service_client::SessionId) {
    /// match client.get(&id).await {
    ///     Ok(session) => println!("version {}", session.version),
    ///     Err(e) if e.is_not_found() => println!("logged out"),
    ///     Err(e) => eprintln!("{e}"),
    /// }
    /// # }
    /// ```
    pub async fn get(&self, id: &SessionId) -> Result<Session, Error> {
        #[cfg(feature = "direct-reads")]
        if let Some(direct) = &self.inner.direct {
            return Ok(direct.read(id).await?.session);
        }
        self.send_for(Call::new(Method::GET, self.url(&["sessions", id.expose()])?))
            .await
    }

    /// `GET /sessions/{id}?touch=true`: a page view. The session, with its idle expiry slid
    /// when due (one request).
    ///
    /// ```no_run
    /// # async fn run(client: session_service_client::Client, id: session_service_client::SessionId) -> Result<(), session_service_client::Error> {
    /// let session = client.get_and_touch(&id).await?;
    /// println!("live through {}", session.expires_at);
    /// # Ok(()) }
    /// ```
    pub async fn get_and_touch(&self, id: &SessionId) -> Result<Session, Error> {
        #[cfg(feature = "direct-reads")]
        if let Some(direct) = &self.inner.direct {
            let read = direct.read(id).await?;
            return match read.touch_due {
                true => self.touch(id).await,
                false => Ok(read.session),
            };
        }
        let mut url = self.url(&["sessions", id.expose()])?;
        url.query_pairs_mut().append_pair("touch", "true");
        self.send_for(Call::new(Method::GET, url)).await
    }

    /// `PUT /sessions/{id}`: replaces the data (and the idle timeout, if given). With
    /// [`Precondition::Version`], an answer in doubt is settled by reading the session
    /// (see [`RetryPolicy`]): never a 412 for the write's own landing.
    ///
    /// ```no_run
    /// # async fn run(client: session_service_client::Client, id: session_service_client::SessionId) -> Result<(), session_service_client::Error> {
    /// use session_service_client::{Data, Precondition, Replacement};
    /// let current = client.get(&id).await?;
    /// let data = Data::from_json(r#"{"theme":"light"}"#).expect("JSON");
    /// // Only if nobody wrote since the read:
    /// client.replace(&id, &Replacement::new(data), Precondition::Version(current.version)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn replace(
        &self,
        id: &SessionId,
        replacement: &Replacement,
        precondition: Precondition,
    ) -> Result<Session, Error> {
        let call = Call::new(Method::PUT, self.url(&["sessions", id.expose()])?)
            .json(replacement, "application/json")?
            .precondition(precondition, || Written::Replace {
                data: replacement.data.clone(),
                idle_timeout_seconds: replacement.idle_timeout_seconds,
            });
        self.send_for(call).await
    }

    /// `PATCH /sessions/{id}`: merges `patch` into the data (RFC 7396: objects merge, `null`
    /// removes a member). With [`Precondition::Version`], an answer in doubt is settled by
    /// reading the session, as for [`Client::replace`].
    ///
    /// ```no_run
    /// # async fn run(client: session_service_client::Client, id: session_service_client::SessionId) -> Result<(), session_service_client::Error> {
    /// use session_service_client::{Data, Precondition};
    /// let patch = Data::from_json(r#"{"cart":[7],"coupon":null}"#).expect("JSON");
    /// client.merge(&id, &patch, Precondition::None).await?;
    /// # Ok(()) }
    /// ```
    pub async fn merge(&self, id: &SessionId, patch: &Data, precondition: Precondition) -> Result<Session, Error> {
        #[derive(Serialize)]
        struct Merge<'a> {
            data: &'a Data,
        }
        let call = Call::new(Method::PATCH, self.url(&["sessions", id.expose()])?)
            .json(&Merge { data: patch }, "application/merge-patch+json")?
            .precondition(precondition, || Written::Merge { patch: patch.clone() });
        self.send_for(call).await
    }

    /// `POST /sessions/{id}/touch`: slides the idle expiry.
    ///
    /// ```no_run
    /// # async fn run(client: session_service_client::Client, id: session_service_client::SessionId) -> Result<(), session_service_client::Error> {
    /// let session = client.touch(&id).await?;
    /// println!("live through {}", session.expires_at);
    /// # Ok(()) }
    /// ```
    pub async fn touch(&self, id: &SessionId) -> Result<Session, Error> {
        self.send_for(Call::new(Method::POST, self.url(&["sessions", id.expose(), "touch"])?))
            .await
    }

    /// `POST /sessions/{id}/rotate`: the session under a new id, the old one deleted in the
    /// same transaction; with a subject, a login.
    ///
    /// ```no_run
    /// # async fn run(client: session_service_client::Client, id: session_service_client::SessionId) -> Result<(), session_service_client::Error> {
    /// use session_service_client::Rotation;
    /// let login = client.rotate(&id, &Rotation::default().subject("user-42")).await?;
    /// // `id` is gone; hand `login.id` to the browser.
    /// # Ok(()) }
    /// ```
    pub async fn rotate(&self, id: &SessionId, rotation: &Rotation) -> Result<IssuedSession, Error> {
        let call = Call::new(Method::POST, self.url(&["sessions", id.expose(), "rotate"])?)
            .json(rotation, "application/json")?
            .idempotent()?;
        self.send_for(call).await
    }

    /// `DELETE /sessions/{id}`: a logout. Deleting a session that is gone already succeeds.
    ///
    /// ```no_run
    /// # async fn run(client: session_service_client::Client, id: session_service_client::SessionId) -> Result<(), session_service_client::Error> {
    /// client.delete(&id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, id: &SessionId) -> Result<(), Error> {
        match self
            .send(Call::new(Method::DELETE, self.url(&["sessions", id.expose()])?))
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// `GET /subjects/{subject}/sessions`: one page (at most `limit`, default 20) of the
    /// owner's live sessions, oldest first; `cursor` is the previous page's `next_cursor`.
    ///
    /// ```no_run
    /// # async fn run(client: session_service_client::Client) -> Result<(), session_service_client::Error> {
    /// let first = client.list("user-42", Some(10), None).await?;
    /// if let Some(cursor) = &first.next_cursor {
    ///     let second = client.list("user-42", Some(10), Some(cursor)).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list(&self, subject: &str, limit: Option<u32>, cursor: Option<&str>) -> Result<SessionPage, Error> {
        let mut url = self.url(&["subjects", subject, "sessions"])?;
        if let Some(limit) = limit {
            url.query_pairs_mut().append_pair("limit", &limit.to_string());
        }
        if let Some(cursor) = cursor {
            url.query_pairs_mut().append_pair("cursor", cursor);
        }
        self.send_for(Call::new(Method::GET, url)).await
    }

    /// Every page of the owner's live sessions: a "where you're logged in" page.
    ///
    /// ```no_run
    /// # async fn run(client: session_service_client::Client) -> Result<(), session_service_client::Error> {
    /// for session in client.list_all("user-42").await? {
    ///     println!("{} last active {}", session.handle, session.last_active_at);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_all(&self, subject: &str) -> Result<Vec<SessionSummary>, Error> {
        let mut sessions = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.list(subject, Some(100), cursor.as_deref()).await?;
            sessions.extend(page.sessions);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(sessions),
            }
        }
    }

    /// `DELETE /subjects/{subject}/sessions/{handle}`: revokes one of the owner's sessions
    /// (a "log out that device" button), whatever id it has now: a session keeps its handle
    /// through rotations. A handle that names no live session of the owner (revoked or
    /// logged out before, expired) is a not-found error: nothing was done. But a 404 to a
    /// retry after an answer that may follow a commit (lost, a 502, 503 or 504) is a
    /// success: the session is not live, whether this call or an earlier one revoked it
    /// (see [`RetryPolicy`]).
    ///
    /// ```no_run
    /// # async fn run(client: session_service_client::Client) -> Result<(), session_service_client::Error> {
    /// let sessions = client.list_all("user-42").await?;
    /// if let Some(oldest) = sessions.first() {
    ///     client.revoke("user-42", &oldest.handle).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn revoke(&self, subject: &str, handle: &str) -> Result<(), Error> {
        let call = Call::new(Method::DELETE, self.url(&["subjects", subject, "sessions", handle])?).gone_is_done();
        self.send(call).await.map(drop)
    }

    /// `DELETE /subjects/{subject}/sessions`: logs the owner out everywhere, but for
    /// `except` (the session making the request, say); how many were revoked.
    ///
    /// ```no_run
    /// # async fn run(client: session_service_client::Client, mine: session_service_client::SessionId) -> Result<(), session_service_client::Error> {
    /// let revoked = client.revoke_all("user-42", Some(&mine)).await?;
    /// println!("logged out of {revoked} other sessions");
    /// # Ok(()) }
    /// ```
    pub async fn revoke_all(&self, subject: &str, except: Option<&SessionId>) -> Result<u64, Error> {
        #[derive(serde::Deserialize)]
        struct Revoked {
            revoked: u64,
        }
        let mut url = self.url(&["subjects", subject, "sessions"])?;
        if let Some(except) = except {
            url.query_pairs_mut().append_pair("except", except.expose());
        }
        let revoked: Revoked = self.send_for(Call::new(Method::DELETE, url)).await?;
        Ok(revoked.revoked)
    }

    /// The base URL with `segments` appended, each percent-encoded. An empty, `.` or `..`
    /// segment is refused: URL parsers drop or resolve them (`%2E` included), so the request
    /// would reach another route (a handle of `..` would revoke every session of its owner).
    fn url(&self, segments: &[&str]) -> Result<Url, Error> {
        if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
            return Err(Error::Config(format!(
                "{bad:?} cannot be named in a URL path (a subject, handle or id)"
            )));
        }
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .map_err(|()| Error::Config("the URL cannot be a base".to_owned()))?
            .extend(segments);
        Ok(url)
    }

    async fn send_for<T: DeserializeOwned>(&self, call: Call) -> Result<T, Error> {
        let (status, body) = self.send(call).await?;
        serde_json::from_slice(&body).map_err(|e| Error::UnexpectedResponse {
            status: status.as_u16(),
            source: Some(e),
        })
    }

    /// Sends `call`, again while the answer says to retry and attempts remain. A write
    /// naming a version whose answer is in doubt is not sent again blindly: the session is
    /// read, and [`settle`] decides (each read one of the call's attempts). A call whose
    /// `gone_is_done` is set succeeds on a 404 after an answer in doubt (a revoke's retry).
    async fn send(&self, call: Call) -> Result<(StatusCode, Vec<u8>), Error> {
        let mut sent = 0;
        // An answer so far may have followed a commit.
        let mut doubted = false;
        // Sent again after a read showed it had not landed: a 412 may then be the doing of
        // an earlier attempt that committed late (or of a stale read).
        let mut resent = false;
        loop {
            sent += 1;
            let failure = match self.exchange(&call).await {
                Ok(answer) => return Ok(answer),
                Err(failure) => failure,
            };
            if call.gone_is_done && doubted && failure.is_not_found() {
                return Ok((StatusCode::NO_CONTENT, Vec::new()));
            }
            doubted |= may_follow_a_commit(&failure);
            let (step, retry_after) = next_step(&failure, &call, resent);
            let Some(wait) = self.pause(sent, step, retry_after) else {
                return Err(failure);
            };
            tokio::time::sleep(wait).await;
            let Some(check) = call.check.as_ref().filter(|_| step == Step::Settle) else {
                continue;
            };
            let (read, answer) = match self.read_back(&call.url, &mut sent).await {
                Some(Ok((status, body))) => match serde_json::from_slice::<Session>(&body) {
                    Ok(session) => (Some(session), Ok((status, body))),
                    Err(_) => return Err(failure),
                },
                Some(Err(gone)) => (None, Err(gone)),
                None => return Err(failure),
            };
            match settle(check, read) {
                // The read's own answer: the session, or its not-found error.
                Outcome::Landed(_) | Outcome::NotFound => return answer,
                Outcome::PreconditionFailed { current } => {
                    return Err(match failure.problem_kind() {
                        Some(ProblemKind::PreconditionFailed) => failure,
                        _ => Problem::precondition_failed(current).into(),
                    });
                }
                Outcome::Resend if sent < self.inner.retry.max_attempts => resent = true,
                Outcome::Resend => return Err(failure),
            }
        }
    }

    /// Reads the session at `url` (a plain GET: no touch) to settle a write in doubt; again
    /// after a failure a read is retried on, while attempts remain. The read's answer, or
    /// its not-found error; `None` when no read told.
    async fn read_back(&self, url: &Url, sent: &mut u32) -> Option<Result<(StatusCode, Vec<u8>), Error>> {
        let read = Call::new(Method::GET, url.clone());
        loop {
            *sent += 1;
            let failure = match self.exchange(&read).await {
                Err(failure) if !failure.is_not_found() => failure,
                answer => return Some(answer),
            };
            let (step, retry_after) = next_step(&failure, &read, false);
            tokio::time::sleep(self.pause(*sent, step, retry_after)?).await;
        }
    }

    /// The wait before another request of a call that has sent `sent`, when `step` allows
    /// one, attempts remain and the service asks for no longer than the policy waits.
    fn pause(&self, sent: u32, step: Step, retry_after: Option<Duration>) -> Option<Duration> {
        let retry = self.inner.retry;
        if step == Step::Surface || sent >= retry.max_attempts {
            return None;
        }
        retry.delay(sent, retry_after)
    }

    /// One request of `call`: a success's status and body, else the error the answer is.
    async fn exchange(&self, call: &Call) -> Result<(StatusCode, Vec<u8>), Error> {
        let request = self.attempt(call).await?;
        let response = self.inner.http.execute(request).await.map_err(transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        let body = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            Ok((status, body.to_vec()))
        } else {
            Err(answer_error(status, &body, retry_after))
        }
    }

    /// One attempt at `call`, signed now.
    async fn attempt(&self, call: &Call) -> Result<reqwest::Request, Error> {
        let url = &call.url;
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return Err(Error::Config("the URL has no host".to_owned())),
        };
        let header = |value: &str| HeaderValue::from_str(value).map_err(|e| Error::Config(format!("a header: {e}")));
        let mut request = http::Request::new(call.body.as_ref().map(|(bytes, _)| bytes.clone()).unwrap_or_default());
        *request.method_mut() = call.method.clone();
        *request.uri_mut() = url
            .as_str()
            .parse()
            .map_err(|e| Error::Config(format!("the URL: {e}")))?;
        let headers = request.headers_mut();
        headers.insert(HOST, header(&host)?);
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, application/problem+json"),
        );
        if let Some((_, content_type)) = &call.body {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        if let Some(if_match) = &call.if_match {
            headers.insert(IF_MATCH, header(if_match)?);
        }
        if let Some(key) = &call.idempotency_key {
            headers.insert("idempotency-key", header(key)?);
        }
        if let Auth::SigV4 {
            service,
            region,
            credentials,
            cached,
        } = &self.inner.auth
        {
            let credentials = current_credentials(credentials, cached).await?;
            sign(&mut request, &credentials, service, region, SystemTime::now())?;
        }
        reqwest::Request::try_from(request).map_err(transport)
    }
}

/// What to do after a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Send it again: it surely did nothing, or doing it twice is harmless.
    Retry,
    /// It may have committed (a write naming a version): read the session to settle it.
    Settle,
    /// Return its error.
    Surface,
}

/// What to do after `failure` of `call` (`resent`: sent again after a read showed it had
/// not landed), and the wait the service asked for. An answer that may follow a commit (a
/// transport error, any 502, 503 or 504) is settled for a write naming a version; else 503s
/// are retried, and lost answers (transport errors, 502, 504) are retried unless the call
/// sends `If-Match: *`. A 412 to a write naming a version that was sent again is settled.
fn next_step(failure: &Error, call: &Call, resent: bool) -> (Step, Option<Duration>) {
    let in_doubt = if call.check.is_some() {
        Step::Settle
    } else if call.if_match.is_none() {
        Step::Retry
    } else {
        Step::Surface
    };
    match failure {
        Error::Problem(problem) => {
            let kind = problem.kind();
            let step = if call.check.is_some()
                && (may_follow_a_commit(failure) || (resent && kind == ProblemKind::PreconditionFailed))
            {
                Step::Settle
            } else if kind.is_retryable() {
                Step::Retry
            } else {
                Step::Surface
            };
            (step, problem.retry_after)
        }
        Error::Transport(_) => (in_doubt, None),
        // A gateway's own answers: throttled (429, 503: nothing done) or lost (502, 504).
        Error::UnexpectedResponse { status: 429, .. } => (Step::Retry, None),
        Error::UnexpectedResponse { status: 503, .. } if call.check.is_none() => (Step::Retry, None),
        Error::UnexpectedResponse { status: 502..=504, .. } => (in_doubt, None),
        _ => (Step::Surface, None),
    }
}

/// Whether `failure` is an answer that may follow a commit: a transport error (the answer
/// lost), any 502, 503 or 504 (a problem's or a gateway's).
fn may_follow_a_commit(failure: &Error) -> bool {
    match failure {
        Error::Transport(_) => true,
        Error::Problem(Problem { status, .. }) | Error::UnexpectedResponse { status, .. } => {
            matches!(status, 502..=504)
        }
        _ => false,
    }
}

/// A transport error without its URL, which may hold a session id (reqwest shows the URL
/// in its message and `Debug`).
fn transport(error: reqwest::Error) -> Error {
    Error::Transport(error.without_url())
}

/// A `Retry-After` value: seconds, or an HTTP date (as long as is left until then).
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    match value.parse::<u64>() {
        Ok(seconds) => Some(Duration::from_secs(seconds)),
        Err(_) => httpdate::parse_http_date(value)
            .ok()
            .map(|at| at.duration_since(SystemTime::now()).unwrap_or_default()),
    }
}

/// The provider's credentials, fetched again when near their expiry.
async fn current_credentials(
    provider: &SharedCredentialsProvider,
    cached: &Mutex<Option<Credentials>>,
) -> Result<Credentials, Error> {
    let mut cached = cached.lock().await;
    let fresh_enough = |c: &Credentials| {
        c.expiry()
            .is_none_or(|expiry| expiry > SystemTime::now() + CREDENTIALS_REFRESH_MARGIN)
    };
    if let Some(credentials) = cached.as_ref().filter(|c| fresh_enough(c)) {
        return Ok(credentials.clone());
    }
    let credentials = provider.provide_credentials().await.map_err(Error::Credentials)?;
    *cached = Some(credentials.clone());
    Ok(credentials)
}

/// The error an unsuccessful answer is: its problem, or an unexpected answer.
fn answer_error(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> Error {
    match serde_json::from_slice::<Problem>(body) {
        Ok(problem) => Error::Problem(Problem { retry_after, ..problem }),
        Err(e) => Error::UnexpectedResponse {
            status: status.as_u16(),
            source: Some(e),
        },
    }
}
