"""What the sync and async clients share: request building, retries, parsing.

The retry loop itself lives here too (:class:`Attempts`), without its I/O: the
clients only send what it asks for and sleep as long as it says.

An answer that may follow an applied request (no answer at all, a 502, a 504, a 503)
is handled by what the call is. A call safe to repeat whatever its first attempt
did is sent again. A PUT or PATCH with an ``If-Match`` naming a version is not: had
its first attempt been applied (the service answers 503 ``unavailable`` also when
DynamoDB committed the write but its answer was lost), a second one would get a
false 412. The client reads the session instead (a plain GET) and :func:`judge`
decides: still at the version named, the write did not land and is sent again; one
version on and showing the write, it landed and the session read is the result;
moved on otherwise, the 412 the write would have got; gone, the 404.

A call whose 404 says "nothing of that kind is live" (a revoke by handle:
``gone_is_done``) is sent again after such an answer, and a 404 ``not-found`` to a
later attempt is success: the earlier attempt may have done it.
"""

from __future__ import annotations

import email.utils
import enum
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast
from urllib.parse import quote

import httpx

from .errors import PROBLEM_PREFIX, NotFound, ProblemError, SessionServiceError, TransportError, problem_class
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
#: error, a bad or lost answer), 504 (a timeout), or a 503: a gateway's own (no problem
#: body), or the service's ``unavailable``, which it also answers when DynamoDB committed
#: a write whose answer it never got. Only calls safe to repeat are sent again after
#: them; an ``If-Match`` write reads the session first (see :func:`judge`).
_UNKNOWN_OUTCOME_STATUSES = frozenset({502, 503, 504})
#: 409 problems that say the request was not applied: worth another attempt whatever the call.
_RETRY_CONFLICTS = frozenset({PROBLEM_PREFIX + "conflict", PROBLEM_PREFIX + "idempotency-key-in-flight"})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter.

    ``max_attempts`` counts the first try. The n-th retry waits a random time in
    ``[0, min(max_delay, base_delay * 2**n)]``, and at least the ``Retry-After``
    the service named; a ``Retry-After`` over ``max_retry_after`` is not waited
    for (the error is raised). When an ``If-Match`` write's outcome is unknown,
    the read of the session and the resend it may allow are one retry (a read
    that fails and is repeated is one more); when they run out, the write's
    own error is raised.
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
    the repr for the same reason). ``written`` is set for a PUT or PATCH with an
    ``If-Match`` naming a version (see :attr:`retry_safe`). ``gone_is_done`` is set
    for a call answering None whose 404 ``not-found`` means what it would have
    removed is not there (a revoke by handle): after an attempt whose outcome is
    unknown, a later attempt's 404 is success (see :class:`Attempts`).
    """

    method: str
    path: str = field(repr=False)
    route: str
    parse: Callable[[httpx.Response], T]
    query: list[tuple[str, str]] = field(default_factory=list, repr=False)
    body: bytes | None = field(default=None, repr=False)
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    written: Written | None = field(default=None, repr=False)
    gone_is_done: bool = False

    @property
    def retry_safe(self) -> bool:
        """Whether the call may be sent again when its first attempt's outcome is unknown
        (no answer, a 502, 503 or 504: the request may have been applied).

        Reads, deletes, touches, revocations, merge patches and unconditional
        replacements are idempotent, and creates and rotations carry an
        ``Idempotency-Key``. A PUT or PATCH with an ``If-Match`` naming a version
        (``written``) is not: had its first attempt been applied, a second would get
        a false 412. After an unknown outcome it reads the session, and :func:`judge`
        says whether to send it again; it is sent again without a read only after
        answers that say it was not applied (a 409 ``conflict`` problem, a 429).
        """
        return self.written is None

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


@dataclass(frozen=True)
class Written:
    """An ``If-Match`` write as :func:`judge` needs it: the versions ``If-Match`` named,
    what was sent (the data of a PUT, the merge patch of a PATCH, as JSON values),
    and ``read``, the plain GET of the session."""

    versions: frozenset[int]
    data: Any = field(repr=False)
    merge: bool
    read: Call[Session] = field(repr=False)

    def shown_by(self, data: dict[str, Any]) -> bool:
        """Whether session data ``data`` shows this write: it is the data a PUT sent,
        or a PATCH's merge patch changes nothing in it."""
        if not self.merge:
            return same_json(data, self.data)
        merged = {} if self.data is None else merge_patch(data, self.data)  # None: remove all data
        return same_json(merged, data)


class Verdict(enum.Enum):
    """What the session read after an ``If-Match`` write's unknown outcome says."""

    RESEND = "the write did not land: send it again"
    LANDED = "the write landed: the session read is the result"
    PRECONDITION_FAILED = "the session moved past the version If-Match named"
    NOT_FOUND = "the session is gone"


def judge(written: Written, session: Session | None) -> Verdict:
    """Whether an ``If-Match`` write whose outcome is unknown landed, from the session
    read after it (None: the read found no session)."""
    if session is None:
        return Verdict.NOT_FOUND
    if session.version - 1 in written.versions and written.shown_by(session.data):
        return Verdict.LANDED
    if session.version in written.versions:
        return Verdict.RESEND
    return Verdict.PRECONDITION_FAILED


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: ``patch`` applied to ``target`` (neither is changed)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def same_json(a: Any, b: Any) -> bool:
    """Whether two parsed JSON values are equal (members in any order; ``true`` is not ``1``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same_json, a, b))
    return isinstance(a, bool) == isinstance(b, bool) and a == b


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


def _versions(headers: Mapping[str, str]) -> frozenset[int]:
    """The versions an ``If-Match`` names (none for ``*``: it holds again once the first attempt held)."""
    return frozenset(int(tag) for tag in re.findall(r'"([0-9]+)"', headers.get("if-match", "")))


def _written(session_id: str, headers: Mapping[str, str], body: bytes, merge: bool) -> Written | None:
    """What :func:`judge` needs of a data write, when it carries an ``If-Match`` naming a version."""
    versions = _versions(headers)
    if not versions:
        return None
    return Written(versions, json.loads(body)["data"], merge, op_get(session_id, touch=False))


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


class Step(enum.Enum):
    """What an error answer calls for."""

    RAISE = "raise the error"
    RETRY = "send the call again"
    CHECK = "read the session first (see judge)"


def next_step(call: Call[Any], response: httpx.Response | None) -> Step:
    """What an error answer (None: a transport error, no answer at all) calls for.

    A 429 (API Gateway's or Lambda's throttling: the request never ran) and the
    service's 409 ``conflict`` and ``idempotency-key-in-flight`` say the request
    was not applied: retry. No answer, a 502, 504 or any 503 may follow an
    applied request: retry a ``retry_safe`` call, check an ``If-Match`` write.
    """
    status = None if response is None else response.status_code
    if status == 429:
        return Step.RETRY
    if status == 409:
        return Step.RETRY if _problem_type(response) in _RETRY_CONFLICTS else Step.RAISE
    if status is not None and status not in _UNKNOWN_OUTCOME_STATUSES:
        return Step.RAISE
    return Step.RETRY if call.retry_safe else Step.CHECK


def _problem_type(response: httpx.Response | None) -> Any:
    try:
        body = response.json() if response is not None else None
    except ValueError:
        return None
    return body.get("type") if isinstance(body, dict) else None


@dataclass
class Done(Generic[T]):
    """The call's result."""

    result: T


@dataclass
class Send:
    """Wait ``delay`` seconds, then send ``call`` (the call again, or the read of its session)."""

    call: Call[Any]
    delay: float


class Attempts(Generic[T]):
    """The retry loop of one call, without its I/O (the clients share it).

    The client sends ``call``, then gives :meth:`next` each answer (an
    ``httpx.Response``, or the ``httpx.TransportError`` raised instead) and does
    what it returns: :class:`Done` holds the result, :class:`Send` says what to
    send next and how long to wait before; the call's error is raised.

    A ``gone_is_done`` call whose attempt got an answer that may follow an applied
    request (none, a 502, 503 or 504) takes a 404 ``not-found`` to a later attempt
    as success: that attempt may have done it. A 404 before any such answer (first,
    or after only a 409 ``conflict`` or a 429, which say nothing was done) is raised.
    """

    def __init__(self, call: Call[T], policy: RetryPolicy) -> None:
        self.call = call
        self.policy = policy
        self.retry = 0
        #: While the session is read after an If-Match write: the write's error.
        self.unknown: SessionServiceError | None = None
        #: Whether an attempt of the call got an answer that may follow an applied request.
        self.maybe_applied = False

    def next(self, answer: httpx.Response | httpx.TransportError) -> Done[T] | Send:
        """What to do after ``answer`` (to the call, or to the read of its session)."""
        if self.unknown is not None:
            return self._after_read(answer, self.unknown)
        call = self.call
        response = answer if isinstance(answer, httpx.Response) else None
        if response is not None and response.status_code < 400:
            return Done(call.parse(response))
        failure = self._failure(call, answer)
        if call.gone_is_done and self.maybe_applied and isinstance(failure, NotFound):
            return Done(cast(T, None))  # gone: this call's earlier attempt, or another, did it
        step = next_step(call, response)
        if response is None or response.status_code in _UNKNOWN_OUTCOME_STATUSES:
            self.maybe_applied = True
        if step is Step.RAISE:
            raise failure
        if step is Step.CHECK:
            assert call.written is not None
            self.unknown = failure
            return self._again(call.written.read, failure)
        return self._again(call, failure)

    def _after_read(
        self, answer: httpx.Response | httpx.TransportError, unknown: SessionServiceError
    ) -> Done[T] | Send:
        """After the read of the session an If-Match write with an ``unknown`` outcome made."""
        call, written = self.call, self.call.written
        assert written is not None
        response = answer if isinstance(answer, httpx.Response) else None
        if response is not None and response.status_code < 400:
            verdict = judge(written, _session(response))
        else:
            failure = self._failure(written.read, answer)
            if not isinstance(failure, NotFound):
                if next_step(written.read, response) is Step.RETRY:
                    return self._again(written.read, failure, raising=unknown)
                raise unknown from failure
            verdict = judge(written, None)
        if verdict is Verdict.RESEND:
            self.unknown = None
            return Send(call, 0.0)  # the backoff came before the read
        assert response is not None
        if verdict is Verdict.LANDED:
            return Done(call.parse(response))  # the session read: what the write's 200 would have said
        if verdict is Verdict.NOT_FOUND:
            raise problem(response, call.route)
        raise problem_class(PROBLEM_PREFIX + "precondition-failed", 412)(
            status=412,
            type=PROBLEM_PREFIX + "precondition-failed",
            title="Precondition failed",
            detail="the session moved past the version If-Match named (read after the write's outcome was unknown)",
            route=call.route,
        )

    def _again(
        self, call: Call[Any], failure: SessionServiceError, raising: SessionServiceError | None = None
    ) -> Send:
        """Send ``call`` after the backoff (and ``failure``'s Retry-After), or raise ``raising``
        (by default ``failure``) once retries are spent."""
        retry_after = failure.retry_after if isinstance(failure, ProblemError) else None
        delay = self.policy.backoff(self.retry, retry_after)
        if delay is None:
            raise raising or failure
        self.retry += 1
        return Send(call, delay)

    @staticmethod
    def _failure(call: Call[Any], answer: httpx.Response | httpx.TransportError) -> SessionServiceError:
        if isinstance(answer, httpx.Response):
            return problem(answer, call.route)
        error = TransportError(f"{call.route}: {type(answer).__name__}: {answer}")
        error.__cause__ = answer
        return error


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
    sent = dumps(body)
    written = _written(session_id, headers, sent, merge=False)
    return Call(
        "PUT",
        f"/sessions/{segment(session_id, 'id')}",
        "PUT /sessions/{id}",
        _session,
        body=sent,
        content_type=JSON,
        headers=headers,
        written=written,
    )


def op_merge(session_id: str, patch: Mapping[str, Any] | None, match: str | int | Session | None) -> Call[Session]:
    headers = if_match(match)
    sent = dumps({"data": patch})
    written = _written(session_id, headers, sent, merge=True)
    return Call(
        "PATCH",
        f"/sessions/{segment(session_id, 'id')}",
        "PATCH /sessions/{id}",
        _session,
        body=sent,
        content_type=MERGE_PATCH,
        headers=headers,
        written=written,
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
        gone_is_done=True,
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
