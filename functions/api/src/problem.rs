//! RFC 9457 problem details, and the one place errors become HTTP statuses.

use lambda_http::http::StatusCode;
use serde::Serialize;
use session_store::{StoreError, ValidationError};

/// Prefix of every problem `type`; the suffixes are listed in `openapi.yaml`.
pub const TYPE_PREFIX: &str = "urn:session-service:problem:";

/// A problem response body (`application/problem+json`).
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A stable URI per kind of error.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Seconds to wait before retrying (sent as `Retry-After` too).
    #[serde(skip)]
    pub retry_after: Option<u64>,
    /// Methods the resource allows (sent as `Allow` on a 405).
    #[serde(skip)]
    pub allow: Option<String>,
}

impl Problem {
    /// A problem of kind `kind` (the `type` suffix) with `status`.
    pub fn new(status: StatusCode, kind: &str, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("{TYPE_PREFIX}{kind}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            retry_after: None,
            allow: None,
        }
    }

    /// 404: no live session (missing, expired or malformed id all look the same).
    pub fn session_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            "no live session has this id",
        )
    }

    /// 404 for a path that no route serves. The path is not echoed: it may hold a
    /// session id (`/sessions/{id}/typo`), which only create and rotate answer with.
    pub fn no_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "no-route",
            "No such route",
            "no route serves this path (the routes: openapi.yaml)",
        )
    }

    /// 400: the body is not JSON.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-request",
            "Malformed request",
            detail,
        )
    }

    /// 422: well-formed JSON that breaks the contract.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
            "Invalid request",
            detail,
        )
    }

    /// 400: a query parameter is invalid.
    pub fn invalid_query(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query parameter",
            detail,
        )
    }

    /// 400: a request header is invalid.
    pub fn invalid_header(name: &str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-header",
            "Invalid header",
            format!("{name}: {detail}"),
        )
    }

    /// 413: the body or the data is over its limit.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "Payload too large", detail)
    }

    /// 412: `If-Match` does not match the session's version.
    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition-failed",
            "Precondition failed",
            detail,
        )
    }

    /// 415: the body's media type is not one the route accepts.
    pub fn unsupported_media_type(accepted: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("send the body as {accepted}"),
        )
    }

    /// 405, with the methods the path allows.
    pub fn method_not_allowed(allow: String) -> Self {
        let mut p = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            format!("this resource allows {allow}"),
        );
        p.allow = Some(allow);
        p
    }

    /// 500: a permanent failure; the details are in the log, never in the answer.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request failed; it has been logged",
        )
    }

    /// 503: the store is unavailable; retry after `seconds`.
    pub fn unavailable(seconds: u64) -> Self {
        let mut p = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            "the session store is unavailable or throttled; retry later",
        );
        p.retry_after = Some(seconds);
        p
    }
}

impl From<&StoreError> for Problem {
    fn from(err: &StoreError) -> Self {
        match err {
            StoreError::NotFound => Self::session_not_found(),
            StoreError::VersionMismatch { current } => {
                Self::precondition_failed(format!("If-Match does not match the session's version \"{current}\""))
            }
            StoreError::Contention { .. } => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "Conflict",
                "the session kept changing concurrently; retry the request",
            ),
            StoreError::CapReached { max } => Self::new(
                StatusCode::CONFLICT,
                "session-cap-reached",
                "Too many sessions",
                format!(
                    "the subject has {max} live sessions, the most it may have; \
                     end one (DELETE /subjects/{{subject}}/sessions/{{handle}}) before creating another"
                ),
            ),
            StoreError::IdempotencyMismatch => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "this Idempotency-Key was used with a different request; use a new key for a new request",
            ),
            StoreError::IdempotencyInFlight => Self::new(
                StatusCode::CONFLICT,
                "idempotency-key-in-flight",
                "Request in progress",
                "a request with this Idempotency-Key is being processed; retry it later",
            ),
            StoreError::Invalid(v @ ValidationError::DataTooLarge { .. }) => Self::too_large(v.to_string()),
            StoreError::Invalid(v @ ValidationError::IdempotencyKey) => {
                Self::invalid_header("Idempotency-Key", v.to_string())
            }
            StoreError::Invalid(v @ ValidationError::Cursor) => Self::invalid_query(v.to_string()),
            // Both sides of a merge were validated on the way in: a bug, not the request's fault.
            StoreError::Invalid(ValidationError::Unmergeable(_)) => Self::internal(),
            StoreError::Invalid(v) => Self::invalid(v.to_string()),
            StoreError::Incomplete { revoked } => {
                let mut p = Self::unavailable(1);
                p.detail = format!(
                    "revoking the subject's sessions did not finish in time ({revoked} revoked so far); \
                     repeat the request to finish it"
                );
                p
            }
            e if e.is_item_too_large() => Self::too_large("the session is larger than DynamoDB's 400 KB item limit"),
            e if e.is_transient() => Self::unavailable(1),
            _ => Self::internal(),
        }
    }
}

impl From<ValidationError> for Problem {
    fn from(err: ValidationError) -> Self {
        Self::from(&StoreError::Invalid(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfinished_revoke_is_a_503_to_repeat_and_idempotency_conflicts_are_4xx() {
        let p = Problem::from(&StoreError::Incomplete { revoked: 2 });
        assert_eq!((p.status, p.retry_after), (503, Some(1)));
        assert!(p.detail.contains("repeat the request"), "{}", p.detail);
        assert_eq!(Problem::from(&StoreError::IdempotencyMismatch).status, 422);
        assert_eq!(Problem::from(&StoreError::IdempotencyInFlight).status, 409);
        let invalid = Problem::from(ValidationError::IdempotencyKey);
        assert_eq!(
            (invalid.status, invalid.kind.as_str()),
            (400, "urn:session-service:problem:invalid-header")
        );
    }
}
