"""Errors raised by the session service client.

Every answer of the service that is not a success is an RFC 9457 problem whose
``type`` is ``urn:session-service:problem:<name>``; each name has a class here,
found with :func:`problem_class`. Messages never contain a session id: they name
the route by its template (``/sessions/{id}``), never by the path that was sent.
"""

from __future__ import annotations

from typing import Any

PROBLEM_PREFIX = "urn:session-service:problem:"


class SessionServiceError(Exception):
    """Base class of everything this package raises about the service."""


class ConfigurationError(SessionServiceError, ValueError):
    """The client cannot be set up as asked (no region for a custom domain, no credentials)."""


class TransportError(SessionServiceError):
    """The request got no HTTP answer (connection refused, reset, timed out), after retries
    (a PUT or PATCH with ``If-Match`` naming a version reads the session before each one)."""


class DirectReadError(SessionServiceError):
    """A direct read's ``GetItem`` on the sessions table failed, after botocore's retries
    (access denied, throttled, no answer); botocore's error is its ``__cause__``."""


class ProblemError(SessionServiceError):
    """The service answered with a problem (an HTTP status of 400 or more).

    Attributes: ``status`` (HTTP status), ``type`` (the problem type URN, or
    ``about:blank`` for answers that are not problem documents, such as API
    Gateway's 403), ``title``, ``detail``, ``retry_after`` (seconds, when the
    answer named one) and ``route`` (the route template, e.g. ``PUT /sessions/{id}``).
    """

    problem_name: str | None = None

    def __init__(
        self,
        *,
        status: int,
        type: str,
        title: str,
        detail: str = "",
        route: str = "",
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.route = route
        self.retry_after = retry_after
        self.body = body or {}
        text = f"{status} {title}"
        if detail:
            text += f": {detail}"
        if route:
            text = f"{route}: {text}"
        super().__init__(text)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, type={self.type!r}, title={self.title!r})"


class BadRequest(ProblemError):
    """400: the body, query or a path parameter is malformed."""


class MalformedRequest(BadRequest):
    """400 ``malformed-request``: the body is not JSON of the expected shape."""

    problem_name = "malformed-request"


class InvalidQuery(BadRequest):
    """400 ``invalid-query``: a query parameter (``limit``, ``cursor``, ``except``) is invalid."""

    problem_name = "invalid-query"


class InvalidHeader(BadRequest):
    """400 ``invalid-header``: e.g. a malformed ``Idempotency-Key``."""

    problem_name = "invalid-header"


class NotFound(ProblemError):
    """404 ``not-found``: no live session has this id (missing, deleted, expired or malformed)."""

    problem_name = "not-found"


class NoRoute(ProblemError):
    """404 ``no-route``: the path names no route (a wrong base URL?)."""

    problem_name = "no-route"


class MethodNotAllowed(ProblemError):
    """405 ``method-not-allowed``."""

    problem_name = "method-not-allowed"


class Conflict(ProblemError):
    """409 ``conflict``: the session kept changing concurrently; retrying is safe."""

    problem_name = "conflict"


class SessionCapReached(Conflict):
    """409 ``session-cap-reached``: the subject is at its session cap (policy ``reject``)."""

    problem_name = "session-cap-reached"


class IdempotencyKeyInFlight(Conflict):
    """409 ``idempotency-key-in-flight``: a request with the same key is still running."""

    problem_name = "idempotency-key-in-flight"


class PreconditionFailed(ProblemError):
    """412 ``precondition-failed``: ``If-Match`` names another version than the session's."""

    problem_name = "precondition-failed"


class TooLarge(ProblemError):
    """413 ``too-large``: the body or the data is over the service's limit."""

    problem_name = "too-large"


class UnsupportedMediaType(ProblemError):
    """415 ``unsupported-media-type``."""

    problem_name = "unsupported-media-type"


class InvalidRequest(ProblemError):
    """422 ``invalid-request``: well-formed JSON that breaks the contract (fields, types, limits)."""

    problem_name = "invalid-request"


class IdempotencyKeyReused(InvalidRequest):
    """422 ``idempotency-key-reused``: the key was used before with another request."""

    problem_name = "idempotency-key-reused"


class Unavailable(ProblemError):
    """503 ``unavailable``: DynamoDB is unavailable or throttling; retry after ``retry_after``."""

    problem_name = "unavailable"


class InternalError(ProblemError):
    """500 ``internal``: a permanent failure (misconfiguration); not retried."""

    problem_name = "internal"


class Forbidden(ProblemError):
    """403 from API Gateway or Lambda: the request's signature or IAM permission was refused."""


_BY_NAME: dict[str, type[ProblemError]] = {
    cls.problem_name: cls
    for cls in (
        MalformedRequest,
        InvalidQuery,
        InvalidHeader,
        NotFound,
        NoRoute,
        MethodNotAllowed,
        Conflict,
        SessionCapReached,
        IdempotencyKeyInFlight,
        PreconditionFailed,
        TooLarge,
        UnsupportedMediaType,
        InvalidRequest,
        IdempotencyKeyReused,
        Unavailable,
        InternalError,
    )
    if cls.problem_name
}


def problem_class(problem_type: str, status: int) -> type[ProblemError]:
    """The exception class for a problem ``type`` URN (or, for other answers, the status)."""
    if problem_type.startswith(PROBLEM_PREFIX):
        found = _BY_NAME.get(problem_type[len(PROBLEM_PREFIX) :])
        if found is not None:
            return found
    if status == 403:
        return Forbidden
    if status == 400:
        return BadRequest
    return ProblemError
