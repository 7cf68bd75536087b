//! Typed errors. SDK errors are kept whole, so callers can match on them.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::{
    batch_get_item::BatchGetItemError, delete_item::DeleteItemError, get_item::GetItemError, put_item::PutItemError,
    query::QueryError, transact_write_items::TransactWriteItemsError, update_item::UpdateItemError,
};
use aws_smithy_types::retry::ErrorKind;

use crate::id::RandomnessError;

/// A request the session rules refuse, whatever the store's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The data's JSON text is over the configured limit.
    #[error("session data is {size} bytes; the limit is {limit} bytes")]
    DataTooLarge {
        /// Bytes of the data's compact JSON text.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A timeout is zero or above its maximum.
    #[error("{field} must be between 1 and {max} seconds")]
    Timeout {
        /// The request field.
        field: &'static str,
        /// Its configured maximum.
        max: u32,
    },
    /// The subject is empty, too long or holds control characters.
    #[error("subject must be 1 to 256 characters without control characters")]
    Subject,
    /// A list cursor that this service did not hand out for this subject.
    #[error("cursor is not one this service returned for this subject")]
    Cursor,
    /// A device's text part is empty, too long or holds control characters.
    #[error("device.{field} must be 1 to {max} characters without control characters")]
    Device {
        /// The part (`user_agent`, `label`).
        field: &'static str,
        /// Its longest length.
        max: usize,
    },
    /// A device's `ip` is not an IPv4 or IPv6 address.
    #[error("device.ip must be an IPv4 or IPv6 address")]
    DeviceIp,
    /// Session data holds an object that does not parse (its parts were each
    /// validated, so this is a bug, not a request to correct).
    #[error(transparent)]
    Unmergeable(#[from] crate::data::Unmergeable),
    /// An `Idempotency-Key` that is too short, too long or not visible ASCII.
    #[error("Idempotency-Key must be 16 to 255 visible ASCII characters (a UUID, say): it must be unguessable")]
    IdempotencyKey,
}

/// Everything that can go wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No live session has this id (missing, deleted or expired).
    #[error("session not found")]
    NotFound,
    /// `If-Match` named a version other than the session's.
    #[error("the session's version is {current}, not the one required")]
    VersionMismatch {
        /// The session's current version.
        current: u64,
    },
    /// Concurrent writers kept changing the session between our attempts.
    #[error("the session changed concurrently {attempts} times in a row")]
    Contention {
        /// Attempts made.
        attempts: u32,
    },
    /// The subject has as many live sessions as its cap allows, and the cap's
    /// policy is to refuse more.
    #[error("the subject has {max} live sessions, the most it may have")]
    CapReached {
        /// The cap.
        max: u32,
    },
    /// The `Idempotency-Key` was used before with a different request.
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyMismatch,
    /// A request with the same `Idempotency-Key` is being processed right now.
    #[error("a request with this Idempotency-Key is in progress")]
    IdempotencyInFlight,
    /// An owner's revocation did not finish within its time budget; what it did
    /// stands, and repeating the request finishes it.
    #[error("revoking the owner's sessions did not finish in time; {revoked} revoked so far")]
    Incomplete {
        /// Live sessions revoked so far.
        revoked: u64,
    },
    /// The request breaks a session rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// An item in the table is not a session this code can read.
    #[error("stored item is not a valid session")]
    Corrupt(#[source] Option<serde_dynamo::Error>),
    /// A session's stored document does not open with its id (altered, moved from
    /// another item, an unknown format): its data is never served.
    #[error("the session's stored data does not open")]
    Unreadable(#[source] crate::seal::Unopenable),
    /// DynamoDB left part of a batch unprocessed after every retry.
    #[error("DynamoDB left {unprocessed} keys of a batch unprocessed")]
    Busy {
        /// Keys left over.
        unprocessed: usize,
    },
    /// A DynamoDB request could not be built (a bug in this crate).
    #[error("could not build a DynamoDB request")]
    Build(#[from] aws_sdk_dynamodb::error::BuildError),
    /// The OS random number generator failed.
    #[error(transparent)]
    Randomness(#[from] RandomnessError),
    /// GetItem failed.
    #[error("DynamoDB GetItem failed")]
    GetItem(#[source] Box<SdkError<GetItemError, HttpResponse>>),
    /// PutItem failed.
    #[error("DynamoDB PutItem failed")]
    PutItem(#[source] Box<SdkError<PutItemError, HttpResponse>>),
    /// UpdateItem failed.
    #[error("DynamoDB UpdateItem failed")]
    UpdateItem(#[source] Box<SdkError<UpdateItemError, HttpResponse>>),
    /// DeleteItem failed.
    #[error("DynamoDB DeleteItem failed")]
    DeleteItem(#[source] Box<SdkError<DeleteItemError, HttpResponse>>),
    /// TransactWriteItems failed.
    #[error("DynamoDB TransactWriteItems failed")]
    TransactWriteItems(#[source] Box<SdkError<TransactWriteItemsError, HttpResponse>>),
    /// Query failed.
    #[error("DynamoDB Query failed")]
    Query(#[source] Box<SdkError<QueryError, HttpResponse>>),
    /// BatchGetItem failed.
    #[error("DynamoDB BatchGetItem failed")]
    BatchGetItem(#[source] Box<SdkError<BatchGetItemError, HttpResponse>>),
}

/// `From` for SDK errors, boxed so that `Result<_, StoreError>` stays small.
macro_rules! from_sdk_error {
    ($($variant:ident: $error:ty),* $(,)?) => {
        $(impl From<SdkError<$error, HttpResponse>> for StoreError {
            fn from(e: SdkError<$error, HttpResponse>) -> Self {
                Self::$variant(Box::new(e))
            }
        })*
    };
}

from_sdk_error!(
    GetItem: GetItemError,
    PutItem: PutItemError,
    UpdateItem: UpdateItemError,
    DeleteItem: DeleteItemError,
    TransactWriteItems: TransactWriteItemsError,
    Query: QueryError,
    BatchGetItem: BatchGetItemError,
);

impl From<serde_dynamo::Error> for StoreError {
    fn from(e: serde_dynamo::Error) -> Self {
        Self::Corrupt(Some(e))
    }
}

/// DynamoDB error codes that say "not now": throttling, capacity, a transaction
/// still in progress with the same token, a write that met a transaction (or a
/// global table's replication) on the same item, DynamoDB's own failures. Any other code
/// (AccessDenied, ResourceNotFound, validation, one this list does not know) is
/// permanent: sending the request again cannot help.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionInProgressException",
    "TransactionConflictException",
    "ReplicatedWriteConflictException",
    "InternalServerError",
    "ServiceUnavailable",
];

/// A cancelled transaction's reasons that say "not now".
const TRANSIENT_REASONS: &[&str] = &[
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
    "TransactionConflict",
];

/// Whether an SDK error may pass if the request is sent again later: a transient
/// code or a 5xx answer, or no answer at all (a timeout, a connection that failed
/// or broke, a response cut short). A request the SDK could not build is
/// permanent, and so is one it could not send for a reason of its own: the SDK
/// reports credentials it could not load, an endpoint it could not resolve and a
/// request it could not sign as a dispatch failure with no error kind, which the
/// connector never gives (see `lambda_support::http_client`).
fn sdk_transient<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    match error {
        SdkError::ServiceError(e) => {
            e.raw().status().is_server_error() || e.err().code().is_some_and(|c| TRANSIENT_CODES.contains(&c))
        }
        SdkError::DispatchFailure(e) => {
            e.is_io()
                || e.is_timeout()
                || matches!(
                    e.as_other(),
                    Some(ErrorKind::TransientError | ErrorKind::ThrottlingError | ErrorKind::ServerError)
                )
        }
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        _ => false,
    }
}

/// The name of an SDK error that carries no DynamoDB error code, for logs.
fn sdk_kind<E, R>(error: &SdkError<E, R>) -> &'static str {
    match error {
        SdkError::ConstructionFailure(_) => "ConstructionFailure",
        SdkError::TimeoutError(_) => "TimeoutError",
        SdkError::DispatchFailure(e) if e.is_io() => "DispatchFailure(io)",
        SdkError::DispatchFailure(e) if e.is_timeout() => "DispatchFailure(timeout)",
        SdkError::DispatchFailure(e) if e.is_user() => "DispatchFailure(user)",
        SdkError::DispatchFailure(e) if e.as_other().is_some() => "DispatchFailure(transport)",
        // Credentials, endpoint resolution, signing: the SDK's own, before sending.
        SdkError::DispatchFailure(_) => "DispatchFailure(sdk)",
        SdkError::ResponseError(_) => "ResponseError",
        _ => "ServiceError",
    }
}

impl StoreError {
    /// The DynamoDB error code and message, for SDK errors that carry one.
    fn service_error(&self) -> Option<(&str, &str)> {
        let meta = match self {
            Self::GetItem(e) => e.as_service_error().map(|e| e.meta()),
            Self::PutItem(e) => e.as_service_error().map(|e| e.meta()),
            Self::UpdateItem(e) => e.as_service_error().map(|e| e.meta()),
            Self::DeleteItem(e) => e.as_service_error().map(|e| e.meta()),
            Self::TransactWriteItems(e) => e.as_service_error().map(|e| e.meta()),
            Self::Query(e) => e.as_service_error().map(|e| e.meta()),
            Self::BatchGetItem(e) => e.as_service_error().map(|e| e.meta()),
            _ => None,
        }?;
        Some((meta.code().unwrap_or_default(), meta.message().unwrap_or_default()))
    }

    /// DynamoDB's error code if DynamoDB answered with one, else the kind of SDK
    /// failure (`DispatchFailure(sdk)`: credentials, endpoint or signing); `None`
    /// for errors of the store's own (for logs and alarms).
    pub fn code(&self) -> Option<&str> {
        let kind = match self {
            Self::GetItem(e) => sdk_kind(e),
            Self::PutItem(e) => sdk_kind(e),
            Self::UpdateItem(e) => sdk_kind(e),
            Self::DeleteItem(e) => sdk_kind(e),
            Self::TransactWriteItems(e) => sdk_kind(e),
            Self::Query(e) => sdk_kind(e),
            Self::BatchGetItem(e) => sdk_kind(e),
            _ => return None,
        };
        self.service_error().map(|(code, _)| code).or(Some(kind))
    }

    /// DynamoDB refused the item as over its 400 KB limit.
    pub fn is_item_too_large(&self) -> bool {
        matches!(self.service_error(), Some(("ValidationException", m)) if m.contains("size"))
    }

    /// Whether the same request may succeed later (throttling, DynamoDB's own
    /// failures, timeouts, unreachable, a batch or revoke left unfinished): the
    /// API answers 503 with `Retry-After`, the sweeper backs off. Everything else
    /// is permanent: a 500 in the API and a failed invocation in the sweeper and
    /// the audit function, so their alarms fire.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::GetItem(e) => sdk_transient(e),
            Self::PutItem(e) => sdk_transient(e),
            Self::UpdateItem(e) => sdk_transient(e),
            Self::DeleteItem(e) => sdk_transient(e),
            Self::Query(e) => sdk_transient(e),
            Self::BatchGetItem(e) => sdk_transient(e),
            Self::TransactWriteItems(e) => {
                sdk_transient(e)
                    || matches!(
                        e.as_service_error(),
                        Some(TransactWriteItemsError::TransactionCanceledException(c))
                            if c.cancellation_reasons()
                                .iter()
                                .any(|r| r.code().is_some_and(|code| TRANSIENT_REASONS.contains(&code)))
                    )
            }
            Self::Busy { .. } | Self::Incomplete { .. } => true,
            _ => false,
        }
    }
}
