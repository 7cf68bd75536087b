"""Typed clients for every route of the session service: :class:`Client` and :class:`AsyncClient`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx

from . import _core, direct
from ._core import Call, RetryPolicy
from .direct import DirectReader
from .errors import NotFound
from .models import Device, IssuedSession, Session, SessionPage, SessionSummary
from .signing import SigningConfig, default_credentials, sign, signing_for_url

if TYPE_CHECKING:
    from typing_extensions import Self  # annotations only (typing.Self is 3.11+)

T = TypeVar("T")
DEFAULT_TIMEOUT = 10.0


class _Base:
    """Configuration shared by both clients."""

    def __init__(
        self,
        base_url: str,
        *,
        region: str | None,
        signing_service: str | Literal[False] | None,
        credentials: Any,
        retry: RetryPolicy | None,
        sessions_table: str | None,
        dynamodb_client: Any,
        timeout: float,
        touch_step: int,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL")
        self.base_url = base_url.rstrip("/")
        self.signing: SigningConfig | None = signing_for_url(
            self.base_url, signing_service=signing_service, region=region
        )
        self._credentials = credentials
        if self.signing is not None and self._credentials is None:
            self._credentials = default_credentials()
        self.retry = retry or RetryPolicy()
        #: The direct reader ``get`` uses, when direct reads are on (``sessions_table``).
        self.direct: DirectReader | None = None
        #: The service's ``SESSION_TOUCH_STEP_SECONDS``: a direct page view touches when due by it.
        self.touch_step = touch_step
        if sessions_table:
            self.direct = DirectReader(
                sessions_table,
                dynamodb_client=dynamodb_client,
                region=region or (self.signing.region if self.signing else None),
                timeout=timeout,
            )
        _core.install_log_redaction()

    def __repr__(self) -> str:
        signing = f"{self.signing.service}@{self.signing.region}" if self.signing else "unsigned"
        reads = f", sessions_table={self.direct.table_name!r}" if self.direct else ""
        return f"{type(self).__name__}({self.base_url!r}, {signing}{reads})"

    def _page_view(self, session: Session | None, touch: bool, now: int) -> Session | None:
        """What a direct read of ``get`` answers: the session read, or None when the
        touch asked for is due (the caller sends it: the service's answer is the result).
        Raises :class:`NotFound` for no session, as the service's 404."""
        if session is None:
            raise direct.not_found()
        if touch and direct.touch_is_due(session, now, step=self.touch_step):
            return None
        return session

    def _prepare(self, call: Call[Any]) -> tuple[str, dict[str, str], bytes]:
        url = call.url(self.base_url)
        body = call.body if call.body is not None else b""
        headers = call.request_headers()
        if self.signing is not None:
            headers = sign(call.method, url, headers, body, credentials=self._credentials, config=self.signing)
        return url, headers, body


class Client(_Base):
    """A synchronous client (thread-safe; reuse one per process).

    ``base_url`` is the API's URL (``ApiUrl`` of the stack, or ``scripts/run``'s
    ``http://127.0.0.1:9000/lambda-url/api``). Requests are SigV4-signed as the
    URL calls for (see :mod:`session_service.signing`); ``signing_service``,
    ``region`` and ``credentials`` (botocore credentials) override that.
    ``retry`` bounds the retries; ``transport`` is httpx's (for tests).

    ``sessions_table`` (the stack's ``SessionsTableName`` output; None, the default,
    turns this off) makes :meth:`get` a direct read: one strongly consistent DynamoDB
    ``GetItem`` of the session's item, opened locally (:mod:`session_service.direct`),
    instead of ``GET /sessions/{id}``; every other method still calls the service. It
    needs ``dynamodb:GetItem`` on that table (the stack's ``DirectReads`` parameter).
    The DynamoDB client is ``dynamodb_client`` (a botocore client) or one botocore
    makes: its credential chain, ``region`` or the URL's or the environment's, and the
    endpoint in ``AWS_ENDPOINT_URL_DYNAMODB`` when set. ``touch_step`` is the service's
    ``SESSION_TOUCH_STEP_SECONDS`` (60 unless its operator changed it), so that a page
    view touches exactly when the service would write the touch.
    """

    def __init__(
        self,
        base_url: str,
        *,
        region: str | None = None,
        signing_service: str | Literal[False] | None = None,
        credentials: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sessions_table: str | None = None,
        dynamodb_client: Any = None,
        touch_step: int = direct.DEFAULT_TOUCH_STEP,
    ) -> None:
        super().__init__(
            base_url,
            region=region,
            signing_service=signing_service,
            credentials=credentials,
            retry=retry,
            sessions_table=sessions_table,
            dynamodb_client=dynamodb_client,
            timeout=timeout,
            touch_step=touch_step,
        )
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _execute(self, call: Call[T]) -> T:
        attempts = _core.Attempts(call, self.retry)
        request: Call[Any] = call
        while True:
            url, headers, body = self._prepare(request)
            answer: httpx.Response | httpx.TransportError
            try:
                answer = self._http.request(request.method, url, headers=headers, content=body or None)
            except httpx.TransportError as error:
                answer = error
            step = attempts.next(answer)
            if isinstance(step, _core.Done):
                return step.result
            time.sleep(step.delay)
            request = step.call

    def health(self) -> bool:
        """``GET /health``: True when the function is up."""
        return self._execute(_core.op_health())

    def create(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        subject: str | None = None,
        idle_timeout_seconds: int | None = None,
        absolute_timeout_seconds: int | None = None,
        device: Device | Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> IssuedSession:
        """``POST /sessions``: a new session (with its id). One ``Idempotency-Key``
        (given, or a random UUID) is sent with every retry of this call."""
        return self._execute(
            _core.op_create(data, subject, idle_timeout_seconds, absolute_timeout_seconds, device, idempotency_key)
        )

    def get(self, session_id: str, *, touch: bool = False) -> Session:
        """``GET /sessions/{id}`` (``touch=True``: also slide the idle expiry when due).

        With direct reads (``sessions_table``): one ``GetItem`` instead, and
        :class:`NotFound` where the service would answer 404 (a document that does not
        open, which the service answers with a 500, is no session too). With
        ``touch=True`` the service's ``POST /sessions/{id}/touch`` follows only when a
        touch is due (:func:`session_service.direct.touch_is_due`), and its answer is the
        result (its :class:`NotFound` too): most page views make no HTTP request."""
        if self.direct is None:
            return self._execute(_core.op_get(session_id, touch))
        _core.segment(session_id, "id")  # the HTTP path's ValueError for what is no id at all
        now = direct.unix_now()
        session = self._page_view(self.direct.read(session_id, now), touch, now)
        return session if session is not None else self.touch(session_id)

    def replace(
        self,
        session_id: str,
        data: Mapping[str, Any],
        *,
        if_match: str | int | Session | None = None,
        idle_timeout_seconds: int | None = None,
    ) -> Session:
        """``PUT /sessions/{id}``: replace the data (and the idle timeout).
        ``if_match``: an ETag, a version, a Session or ``"*"``. With a version, an answer
        that may follow an applied write (none, a 502, 503 or 504) is not followed by the
        same write blindly (it would get a false 412): the session is read, and the call
        returns it if it shows the write one version on, sends the write again if still at
        that version, and raises :class:`PreconditionFailed` if it moved on otherwise
        (:class:`NotFound` if gone). The same holds for :meth:`merge`."""
        return self._execute(_core.op_replace(session_id, data, if_match, idle_timeout_seconds))

    def merge(
        self, session_id: str, patch: Mapping[str, Any] | None, *, if_match: str | int | Session | None = None
    ) -> Session:
        """``PATCH /sessions/{id}``: an RFC 7396 merge patch on the data (``None`` removes all data)."""
        return self._execute(_core.op_merge(session_id, patch, if_match))

    def touch(self, session_id: str) -> Session:
        """``POST /sessions/{id}/touch``: slide the idle expiry."""
        return self._execute(_core.op_touch(session_id))

    def rotate(
        self,
        session_id: str,
        *,
        subject: str | None = None,
        keep_data: bool = True,
        device: Device | Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> IssuedSession:
        """``POST /sessions/{id}/rotate``: the session under a new id (the old one is gone),
        owned by ``subject`` when given (a login)."""
        return self._execute(_core.op_rotate(session_id, subject, keep_data, device, idempotency_key))

    def delete(self, session_id: str) -> None:
        """``DELETE /sessions/{id}``: a logout. Idempotent: a session that is gone already
        (deleted, expired, never there, or deleted by this call's first attempt before a
        retry) is success, as the service's 204 and 404 both mean the id names nothing now."""
        try:
            self._execute(_core.op_delete(session_id))
        except NotFound:
            pass

    def list_sessions(self, subject: str, *, limit: int | None = None, cursor: str | None = None) -> SessionPage:
        """``GET /subjects/{subject}/sessions``: one page of an owner's live sessions."""
        return self._execute(_core.op_list(subject, limit, cursor))

    def iter_sessions(self, subject: str, *, page_size: int = 100) -> Iterator[SessionSummary]:
        """Every live session of an owner, page after page."""
        cursor: str | None = None
        while True:
            page = self.list_sessions(subject, limit=page_size, cursor=cursor)
            yield from page.sessions
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def revoke(self, subject: str, handle: str) -> None:
        """``DELETE /subjects/{subject}/sessions/{handle}``: revoke one of an owner's sessions.

        The handle (from :meth:`list_sessions`) follows the session through rotations: the
        session is revoked under whichever id it has now. A handle naming no live session
        of the owner (revoked or logged out already, expired, never there, another
        owner's) raises :class:`NotFound`: nothing was done. Except after a retry: when an
        earlier attempt's answer may follow a revoke that happened (none, a 502, 503 or
        504), a later attempt's 404 returns None, as that attempt may have revoked it."""
        self._execute(_core.op_revoke(subject, handle))

    def revoke_all(self, subject: str, *, except_id: str | None = None) -> int:
        """``DELETE /subjects/{subject}/sessions``: log an owner out everywhere (but
        ``except_id`` and its later rotations); the number of sessions revoked."""
        return self._execute(_core.op_revoke_all(subject, except_id))


class AsyncClient(_Base):
    """The asyncio client: the same methods as :class:`Client`, as coroutines.

    Use one per event loop (httpx's connection pool is bound to its loop). With
    ``sessions_table`` (see :class:`Client`), :meth:`get` reads DynamoDB in a thread;
    one botocore client (``dynamodb_client``) may serve every loop.
    """

    def __init__(
        self,
        base_url: str,
        *,
        region: str | None = None,
        signing_service: str | Literal[False] | None = None,
        credentials: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sessions_table: str | None = None,
        dynamodb_client: Any = None,
        touch_step: int = direct.DEFAULT_TOUCH_STEP,
    ) -> None:
        super().__init__(
            base_url,
            region=region,
            signing_service=signing_service,
            credentials=credentials,
            retry=retry,
            sessions_table=sessions_table,
            dynamodb_client=dynamodb_client,
            timeout=timeout,
            touch_step=touch_step,
        )
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _execute(self, call: Call[T]) -> T:
        attempts = _core.Attempts(call, self.retry)
        request: Call[Any] = call
        while True:
            url, headers, body = self._prepare(request)
            answer: httpx.Response | httpx.TransportError
            try:
                answer = await self._http.request(request.method, url, headers=headers, content=body or None)
            except httpx.TransportError as error:
                answer = error
            step = attempts.next(answer)
            if isinstance(step, _core.Done):
                return step.result
            await asyncio.sleep(step.delay)
            request = step.call

    async def health(self) -> bool:
        """``GET /health``: True when the function is up."""
        return await self._execute(_core.op_health())

    async def create(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        subject: str | None = None,
        idle_timeout_seconds: int | None = None,
        absolute_timeout_seconds: int | None = None,
        device: Device | Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> IssuedSession:
        """``POST /sessions`` (see :meth:`Client.create`)."""
        return await self._execute(
            _core.op_create(data, subject, idle_timeout_seconds, absolute_timeout_seconds, device, idempotency_key)
        )

    async def get(self, session_id: str, *, touch: bool = False) -> Session:
        """``GET /sessions/{id}`` (see :meth:`Client.get`; with direct reads, the ``GetItem``
        runs in a thread, ``asyncio.to_thread``)."""
        if self.direct is None:
            return await self._execute(_core.op_get(session_id, touch))
        _core.segment(session_id, "id")  # the HTTP path's ValueError for what is no id at all
        now = direct.unix_now()
        session = self._page_view(await asyncio.to_thread(self.direct.read, session_id, now), touch, now)
        return session if session is not None else await self.touch(session_id)

    async def replace(
        self,
        session_id: str,
        data: Mapping[str, Any],
        *,
        if_match: str | int | Session | None = None,
        idle_timeout_seconds: int | None = None,
    ) -> Session:
        """``PUT /sessions/{id}`` (see :meth:`Client.replace`)."""
        return await self._execute(_core.op_replace(session_id, data, if_match, idle_timeout_seconds))

    async def merge(
        self, session_id: str, patch: Mapping[str, Any] | None, *, if_match: str | int | Session | None = None
    ) -> Session:
        """``PATCH /sessions/{id}`` (see :meth:`Client.merge`)."""
        return await self._execute(_core.op_merge(session_id, patch, if_match))

    async def touch(self, session_id: str) -> Session:
        """``POST /sessions/{id}/touch``."""
        return await self._execute(_core.op_touch(session_id))

    async def rotate(
        self,
        session_id: str,
        *,
        subject: str | None = None,
        keep_data: bool = True,
        device: Device | Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> IssuedSession:
        """``POST /sessions/{id}/rotate`` (see :meth:`Client.rotate`)."""
        return await self._execute(_core.op_rotate(session_id, subject, keep_data, device, idempotency_key))

    async def delete(self, session_id: str) -> None:
        """``DELETE /sessions/{id}`` (see :meth:`Client.delete`: a session gone already is success)."""
        try:
            await self._execute(_core.op_delete(session_id))
        except NotFound:
            pass

    async def list_sessions(
        self, subject: str, *, limit: int | None = None, cursor: str | None = None
    ) -> SessionPage:
        """``GET /subjects/{subject}/sessions``: one page."""
        return await self._execute(_core.op_list(subject, limit, cursor))

    async def iter_sessions(self, subject: str, *, page_size: int = 100) -> AsyncIterator[SessionSummary]:
        """Every live session of an owner, page after page."""
        cursor: str | None = None
        while True:
            page = await self.list_sessions(subject, limit=page_size, cursor=cursor)
            for item in page.sessions:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def revoke(self, subject: str, handle: str) -> None:
        """``DELETE /subjects/{subject}/sessions/{handle}`` (see :meth:`Client.revoke`): the
        handle follows the session through rotations; :class:`NotFound` when it names no
        live session of the owner (nothing was done), except after a retry whose earlier
        attempt may have revoked it (None is returned)."""
        await self._execute(_core.op_revoke(subject, handle))

    async def revoke_all(self, subject: str, *, except_id: str | None = None) -> int:
        """``DELETE /subjects/{subject}/sessions`` (see :meth:`Client.revoke_all`)."""
        return await self._execute(_core.op_revoke_all(subject, except_id))
