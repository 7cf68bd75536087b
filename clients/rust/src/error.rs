//! Errors: the service's problems (RFC 9457), typed by their `type`, and the client's own.

use std::time::Duration;

use serde::Deserialize;

/// Anything a call can fail with.
///
/// ```no_run
/// # async fn run(client: session_service_client::Client, id: session_service_client::SessionId) {
/// use session_service_client::{Error, ProblemKind};
/// match client.get(&id).await {
///     Ok(_) => {}
///     Err(e) if e.is_not_found() => { /* logged out: start a new session */ }
///     Err(Error::Problem(p)) if p.kind() == ProblemKind::Unavailable => { /* retried already: 503 */ }
///     Err(e) => eprintln!("{e}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service answered with a problem (a 4xx, or a 5xx after the retries).
    #[error(transparent)]
    Problem(#[from] Problem),
    /// The service could not be reached, or the connection failed mid-call (after the retries).
    #[error("could not reach the session service")]
    Transport(#[source] reqwest::Error),
    /// No AWS credentials to sign with.
    #[error("could not get AWS credentials to sign the request")]
    Credentials(#[source] aws_credential_types::provider::error::CredentialsError),
    /// The request could not be signed.
    #[error("could not sign the request")]
    Signing(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An answer that is not the service's (a proxy's error page, say).
    #[error("unexpected answer from the session service (HTTP {status})")]
    UnexpectedResponse {
        /// Its status.
        status: u16,
        /// Why its body could not be read, if that was the trouble.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// The client was configured wrongly (a URL it cannot use, a region it needs).
    #[error("client configuration: {0}")]
    Config(String),
    /// A direct read's GetItem failed (after the SDK's own retries): the SDK's error, boxed.
    #[cfg(feature = "direct-reads")]
    #[error("could not read the sessions table")]
    DirectRead(#[source] Box<GetItemFailure>),
}

/// The SDK's error of a direct read's GetItem.
#[cfg(feature = "direct-reads")]
pub type GetItemFailure = aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::get_item::GetItemError>;

#[cfg(feature = "direct-reads")]
impl From<GetItemFailure> for Error {
    fn from(failure: GetItemFailure) -> Self {
        Self::DirectRead(Box::new(failure))
    }
}

impl Error {
    /// The problem's kind, when the service answered with one.
    ///
    /// ```
    /// use session_service_client::{Error, ProblemKind};
    /// let error = Error::Config("no region".into());
    /// assert_eq!(error.problem_kind(), None);
    /// ```
    pub fn problem_kind(&self) -> Option<ProblemKind> {
        match self {
            Self::Problem(problem) => Some(problem.kind()),
            _ => None,
        }
    }

    /// Whether the session does not exist (missing, deleted, expired or malformed id).
    ///
    /// ```
    /// let error = session_service_client::Error::Config("no region".into());
    /// assert!(!error.is_not_found());
    /// ```
    pub fn is_not_found(&self) -> bool {
        self.problem_kind() == Some(ProblemKind::NotFound)
    }
}

/// An RFC 9457 problem the service answered with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, thiserror::Error)]
#[error("{title} (HTTP {status}): {detail}")]
pub struct Problem {
    /// `urn:session-service:problem:` and the kind.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// `Retry-After`, when the service sent it (503).
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

impl Problem {
    /// The kind, from `type`.
    ///
    /// ```
    /// use session_service_client::{Problem, ProblemKind};
    /// let problem = Problem {
    ///     type_uri: "urn:session-service:problem:precondition-failed".into(),
    ///     title: "Precondition failed".into(),
    ///     status: 412,
    ///     detail: "the session has changed".into(),
    ///     retry_after: None,
    /// };
    /// assert_eq!(problem.kind(), ProblemKind::PreconditionFailed);
    /// ```
    pub fn kind(&self) -> ProblemKind {
        ProblemKind::from_type(&self.type_uri)
    }

    /// The problem a 404 answers (as the service words it): no live session has this id.
    #[cfg(feature = "direct-reads")]
    pub(crate) fn not_found() -> Self {
        Self {
            type_uri: format!("{}not-found", ProblemKind::PREFIX),
            title: "Not found".to_owned(),
            status: 404,
            detail: "no live session has this id".to_owned(),
            retry_after: None,
        }
    }

    /// The problem a 412 answers when the session is at version `current`, not the one
    /// `If-Match` named (as the service words it).
    pub(crate) fn precondition_failed(current: u64) -> Self {
        Self {
            type_uri: format!("{}precondition-failed", ProblemKind::PREFIX),
            title: "Precondition failed".to_owned(),
            status: 412,
            detail: format!("If-Match does not match the session's version \"{current}\""),
            retry_after: None,
        }
    }
}

/// The kinds of problem the service names (openapi.yaml), and any other.
///
/// ```
/// use session_service_client::ProblemKind;
/// assert_eq!(ProblemKind::from_type("urn:session-service:problem:session-cap-reached"), ProblemKind::SessionCapReached);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// No live session has this id (or handle).
    NotFound,
    /// No such route.
    NoRoute,
    /// The body is not JSON.
    MalformedRequest,
    /// JSON that breaks the contract (unknown fields, limits).
    InvalidRequest,
    /// A bad query parameter.
    InvalidQuery,
    /// The body or data is over the limit.
    TooLarge,
    /// `If-Match` does not match the session's version.
    PreconditionFailed,
    /// The body's content type is not the route's.
    UnsupportedMediaType,
    /// The route does not take this method.
    MethodNotAllowed,
    /// The session (or the owner's sessions under a cap) kept changing: retry.
    Conflict,
    /// The owner is at its session cap and the policy is `reject`.
    SessionCapReached,
    /// A malformed header.
    InvalidHeader,
    /// The `Idempotency-Key` was used before with another request.
    IdempotencyKeyReused,
    /// A request with the same `Idempotency-Key` is still in flight.
    IdempotencyKeyInFlight,
    /// DynamoDB is unavailable or throttling.
    Unavailable,
    /// A fault on the service's side that retrying will not fix.
    Internal,
    /// A kind this client does not know.
    Other,
}

impl ProblemKind {
    const PREFIX: &'static str = "urn:session-service:problem:";

    /// The kind a problem `type` names.
    ///
    /// ```
    /// use session_service_client::ProblemKind;
    /// assert_eq!(ProblemKind::from_type("urn:session-service:problem:not-found"), ProblemKind::NotFound);
    /// assert_eq!(ProblemKind::from_type("about:blank"), ProblemKind::Other);
    /// ```
    pub fn from_type(type_uri: &str) -> Self {
        match type_uri.strip_prefix(Self::PREFIX).unwrap_or_default() {
            "not-found" => Self::NotFound,
            "no-route" => Self::NoRoute,
            "malformed-request" => Self::MalformedRequest,
            "invalid-request" => Self::InvalidRequest,
            "invalid-query" => Self::InvalidQuery,
            "too-large" => Self::TooLarge,
            "precondition-failed" => Self::PreconditionFailed,
            "unsupported-media-type" => Self::UnsupportedMediaType,
            "method-not-allowed" => Self::MethodNotAllowed,
            "conflict" => Self::Conflict,
            "session-cap-reached" => Self::SessionCapReached,
            "invalid-header" => Self::InvalidHeader,
            "idempotency-key-reused" => Self::IdempotencyKeyReused,
            "idempotency-key-in-flight" => Self::IdempotencyKeyInFlight,
            "unavailable" => Self::Unavailable,
            "internal" => Self::Internal,
            _ => Self::Other,
        }
    }

    /// Whether the same request may succeed if sent again: a 503, concurrent changes, or
    /// the same key's first request still in flight.
    ///
    /// ```
    /// use session_service_client::ProblemKind;
    /// assert!(ProblemKind::Unavailable.is_retryable());
    /// assert!(!ProblemKind::PreconditionFailed.is_retryable());
    /// ```
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Unavailable | Self::Conflict | Self::IdempotencyKeyInFlight)
    }
}
