"""What the sync and async clients share: request building, retry decisions, parsing."""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from .errors import PROBLEM_PREFIX, ProblemError, problem_class
from .models import Device, IssuedSession, Session, SessionPage, SessionSummary

T = TypeVar("T")

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
#: A session id where it does not belong. The service no longer echoes the request path in
#: its no-route 404 (which once put the id of ``/sessions/{id}/typo`` in the answer), nor
#: any id in a problem; this stays as defense in depth (older deployments, proxies).
_STRAY_ID = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048](?![A-Za-z0-9_-])")
_IDEMPOTENCY_KEY = re.compile(r"^[!-~]{16,255}$")
_ETAG = re.compile(r'^(\*|"[0-9]+"( *, *"[0-9]+")*)$')

#: Answers whose request may have been applied all the same: a gateway's 502 (a Lambda
#: error, a bad or lost answer), 504 (a timeout) or a 503 of its own (no problem body).
#: They are retried only when the call is safe to repeat whatever its first attempt did.
_UNKNOWN_OUTCOME_STATUSES = frozenset({502, 503, 504})
#: Problems that say the request was not applied: worth another attempt whatever the call.
_RETRY_PROBLEMS = frozenset(
    {
        PROBLEM_PREFIX + "unavailable",
        PROBLEM_PREFIX + "conflict",
        PROBLEM_PREFIX + "idempotency-key-in-flight",
    }
)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter.

    ``max_attempts`` counts the first try. The n-th retry waits a random time in
    ``[0, min(max_delay, base_delay * 2**n)]``, and at least the ``Retry-After``
    the service named; a ``Retry-After`` over ``max_retry_after`` is not waited
    for (the error is raised).
    """

    max_attempts: int = 4
    base_delay: float = 0.1
    max_delay: float = 5.0
    max_retry_after: float = 30.0

    def backoff(self, retry: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number ``retry`` (0-based), or None to give up."""
        if retry + 1 >= self.max_attempts:
            return None
        jitter = random.uniform(0, min(self.max_delay, self.base_delay * (2**retry)))
        if retry_after is None:
            return jitter
        if retry_after > self.max_retry_after:
            return None
        return max(retry_after, jitter)


NO_RETRIES = RetryPolicy(max_attempts=1)


@dataclass
class Call(Generic[T]):
    """One logical API call: everything needed to send (and re-send) it, and to read its answer.

    ``route`` is the template used in messages and logs (never the path, which
    may hold a session id; the path, query, headers and body are left out of
    the repr for the same reason). ``retry_safe`` allows retries when the first
    attempt's outcome is unknown (a transport error, or a gateway's 502, 503 or
    504: the request may have been applied). Reads, deletes, touches,
    revocations, merge patches and unconditional replacements are idempotent,
    and creates and rotations carry an ``Idempotency-Key``; a PUT or PATCH with
    an ``If-Match`` naming a version is not: had its first attempt been applied,
    a retry would get a false 412, so it is sent once unless the service said it
    was not applied (a 503 ``unavailable`` or 409 ``conflict`` problem, a 429).
    """

    method: str
    path: str = field(repr=False)
    route: str
    parse: Callable[[httpx.Response], T]
    query: list[tuple[str, str]] = field(default_factory=list, repr=False)
    body: bytes | None = field(default=None, repr=False)
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    retry_safe: bool = True

    def url(self, base_url: str) -> str:
        """The full URL, with the query encoded as SigV4 canonicalizes it."""
        url = base_url + self.path
        if self.query:
            url += "?" + "&".join(f"{_q(k)}={_q(v)}" for k, v in self.query)
        return url

    def request_headers(self) -> dict[str, str]:
        """The headers this call sends (before signing)."""
        headers = {"accept": "application/json, application/problem+json"}
        if self.content_type is not None:
            headers["content-type"] = self.content_type
        headers.update(self.headers)
        return headers


def _q(text: str) -> str:
    return quote(text, safe="-_.~")


def segment(value: str, what: str) -> str:
    """``value`` as one percent-encoded path segment (``/`` included; ``.`` and ``..`` too)."""
    if not isinstance(value, str) or value == "":
        raise ValueError(f"{what} must be a non-empty string")
    encoded = quote(value, safe="")
    if encoded in (".", ".."):
        encoded = encoded.replace(".", "%2E")
    return encoded


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, keys in the order given, no NaN or infinities."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _conditional(headers: Mapping[str, str]) -> bool:
    """Whether an ``If-Match`` names a version (``*`` holds again once the first attempt held)."""
    return headers.get("if-match", "*") != "*"


def if_match(value: str | int | Session | None) -> dict[str, str]:
    """The ``If-Match`` header for an ETag (``'"3"'``), a version (``3``), a Session or ``"*"``."""
    if value is None:
        return {}
    if isinstance(value, Session):
        tag = value.etag or f'"{value.version}"'
    elif isinstance(value, bool):
        raise TypeError("if_match must be an ETag, a version or a Session")
    elif isinstance(value, int):
        tag = f'"{value}"'
    else:
        tag = value.strip()
        if tag.isdigit():
            tag = f'"{tag}"'
    if not _ETAG.match(tag):
        raise ValueError("if_match must be a strong ETag such as '\"3\"', a version number or '*'")
    return {"if-match": tag}


def idempotency_key(key: str | None) -> str:
    """``key``, checked, or a fresh random UUID."""
    if key is None:
        return str(uuid.uuid4())
    if not _IDEMPOTENCY_KEY.match(key):
        raise ValueError("an Idempotency-Key must be 16 to 255 visible ASCII characters")
    return key


def device_json(device: Device | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The request form of a device."""
    if device is None:
        return None
    if isinstance(device, Device):
        return device.to_json()
    return dict(device)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def problem(response: httpx.Response, route: str) -> ProblemError:
    """The exception for an error answer."""
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    problem_type = str(body.get("type") or "about:blank")
    title = str(body.get("title") or body.get("message") or response.reason_phrase or "error")
    title = _STRAY_ID.sub("<redacted>", title)
    detail = _STRAY_ID.sub("<redacted>", str(body.get("detail") or ""))
    cls = problem_class(problem_type, response.status_code)
    return cls(
        status=response.status_code,
        type=problem_type,
        title=title,
        detail=detail,
        route=route,
        retry_after=retry_after_seconds(response),
        body={k: v for k, v in body.items() if k not in ("detail", "title")} | {"title": title, "detail": detail},
    )


def should_retry_response(response: httpx.Response, call: Call[Any]) -> bool:
    """Whether an error answer is worth another attempt.

    A 429 (API Gateway's or Lambda's throttling: the request never ran), the
    service's 503 ``unavailable`` and its 409 ``conflict`` and
    ``idempotency-key-in-flight`` say the request was not applied: always. A
    502, 504 or a 503 without the service's problem may follow an applied
    request: only when the call is ``retry_safe``.
    """
    status = response.status_code
    if status == 429:
        return True
    if status not in (409, 502, 503, 504):
        return False
    try:
        body = response.json()
        problem_type = body.get("type") if isinstance(body, dict) else None
    except ValueError:
        problem_type = None
    if status in (409, 503) and problem_type in _RETRY_PROBLEMS:
        return True
    return status in _UNKNOWN_OUTCOME_STATUSES and call.retry_safe


# --- the routes ----------------------------------------------------------------------


def _session(response: httpx.Response) -> Session:
    return Session.from_json(response.json(), response.headers.get("etag"))


def _issued(response: httpx.Response) -> IssuedSession:
    return IssuedSession.from_json(response.json(), response.headers.get("etag"))


def _nothing(response: httpx.Response) -> None:
    return None


def _page(response: httpx.Response) -> SessionPage:
    body = response.json()
    return SessionPage(
        sessions=[SessionSummary.from_json(item) for item in body.get("sessions", [])],
        next_cursor=body.get("next_cursor"),
    )


def _revoked(response: httpx.Response) -> int:
    return int(response.json()["revoked"])


def _health(response: httpx.Response) -> bool:
    return response.json().get("status") == "ok"


def op_health() -> Call[bool]:
    return Call("GET", "/health", "GET /health", _health)


def op_create(
    data: Mapping[str, Any] | None,
    subject: str | None,
    idle_timeout_seconds: int | None,
    absolute_timeout_seconds: int | None,
    device: Device | Mapping[str, Any] | None,
    key: str | None,
) -> Call[IssuedSession]:
    body: dict[str, Any] = {}
    if subject is not None:
        body["subject"] = subject
    if data is not None:
        body["data"] = data
    if idle_timeout_seconds is not None:
        body["idle_timeout_seconds"] = idle_timeout_seconds
    if absolute_timeout_seconds is not None:
        body["absolute_timeout_seconds"] = absolute_timeout_seconds
    dev = device_json(device)
    if dev:
        body["device"] = dev
    return Call(
        "POST",
        "/sessions",
        "POST /sessions",
        _issued,
        body=dumps(body),
        content_type=JSON,
        headers={"idempotency-key": idempotency_key(key)},
    )


def op_get(session_id: str, touch: bool) -> Call[Session]:
    query = [("touch", "true")] if touch else []
    return Call("GET", f"/sessions/{segment(session_id, 'id')}", "GET /sessions/{id}", _session, query=query)


def op_replace(
    session_id: str,
    data: Mapping[str, Any],
    match: str | int | Session | None,
    idle_timeout_seconds: int | None,
) -> Call[Session]:
    body: dict[str, Any] = {"data": data}
    if idle_timeout_seconds is not None:
        body["idle_timeout_seconds"] = idle_timeout_seconds
    headers = if_match(match)
    return Call(
        "PUT",
        f"/sessions/{segment(session_id, 'id')}",
        "PUT /sessions/{id}",
        _session,
        body=dumps(body),
        content_type=JSON,
        headers=headers,
        retry_safe=not _conditional(headers),
    )


def op_merge(session_id: str, patch: Mapping[str, Any] | None, match: str | int | Session | None) -> Call[Session]:
    headers = if_match(match)
    return Call(
        "PATCH",
        f"/sessions/{segment(session_id, 'id')}",
        "PATCH /sessions/{id}",
        _session,
        body=dumps({"data": patch}),
        content_type=MERGE_PATCH,
        headers=headers,
        retry_safe=not _conditional(headers),
    )


def op_touch(session_id: str) -> Call[Session]:
    return Call("POST", f"/sessions/{segment(session_id, 'id')}/touch", "POST /sessions/{id}/touch", _session)


def op_rotate(
    session_id: str,
    subject: str | None,
    keep_data: bool,
    device: Device | Mapping[str, Any] | None,
    key: str | None,
) -> Call[IssuedSession]:
    body: dict[str, Any] = {}
    if not keep_data:
        body["keep_data"] = False
    if subject is not None:
        body["subject"] = subject
    dev = device_json(device)
    if dev:
        body["device"] = dev
    return Call(
        "POST",
        f"/sessions/{segment(session_id, 'id')}/rotate",
        "POST /sessions/{id}/rotate",
        _issued,
        body=dumps(body),
        content_type=JSON,
        headers={"idempotency-key": idempotency_key(key)},
    )


def op_delete(session_id: str) -> Call[None]:
    return Call("DELETE", f"/sessions/{segment(session_id, 'id')}", "DELETE /sessions/{id}", _nothing)


def op_list(subject: str, limit: int | None, cursor: str | None) -> Call[SessionPage]:
    query: list[tuple[str, str]] = []
    if limit is not None:
        query.append(("limit", str(int(limit))))
    if cursor:
        query.append(("cursor", cursor))
    return Call(
        "GET",
        f"/subjects/{segment(subject, 'subject')}/sessions",
        "GET /subjects/{subject}/sessions",
        _page,
        query=query,
    )


def op_revoke(subject: str, handle: str) -> Call[None]:
    return Call(
        "DELETE",
        f"/subjects/{segment(subject, 'subject')}/sessions/{segment(handle, 'handle')}",
        "DELETE /subjects/{subject}/sessions/{handle}",
        _nothing,
    )


def op_revoke_all(subject: str, except_id: str | None) -> Call[int]:
    query = [("except", except_id)] if except_id else []
    return Call(
        "DELETE",
        f"/subjects/{segment(subject, 'subject')}/sessions",
        "DELETE /subjects/{subject}/sessions",
        _revoked,
        query=query,
    )


# --- logs ----------------------------------------------------------------------------

_ID_IN_URL = re.compile(r"(/sessions/|[?&]except=)[A-Za-z0-9_%-]+")


class RedactSessionIds(logging.Filter):
    """Hides session ids in httpx's request log lines (``HTTP Request: GET .../sessions/<id>``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                _ID_IN_URL.sub(r"\1<redacted>", str(arg)) if isinstance(arg, (str, httpx.URL)) else arg
                for arg in (record.args if isinstance(record.args, tuple) else (record.args,))
            )
        return True


_REDACTOR = RedactSessionIds()


def install_log_redaction() -> None:
    """Adds :class:`RedactSessionIds` to the ``httpx`` logger (once)."""
    logger = logging.getLogger("httpx")
    if _REDACTOR not in logger.filters:
        logger.addFilter(_REDACTOR)
