"""A Django session engine backed by the session service.

::

    SESSION_ENGINE = "session_service.django"
    SESSION_SERVICE_URL = "https://abc123.execute-api.eu-west-1.amazonaws.com"

Settings (all but the URL optional):

``SESSION_SERVICE_URL``
    The API's base URL (required).
``SESSION_SERVICE_REGION`` / ``SESSION_SERVICE_SIGNING_SERVICE``
    Override the SigV4 region and service the URL implies (see
    :mod:`session_service.signing`); ``SESSION_SERVICE_SIGNING_SERVICE = False``
    sends unsigned requests.
``SESSION_SERVICE_TIMEOUT``
    Seconds per HTTP request (default 5).
``SESSION_SERVICE_ABSOLUTE_AGE``
    The absolute lifetime given to new sessions (default 2592000 s, 30 days:
    the template's maximum). Django has no absolute lifetime, so a session
    should not be cut at the service's 12-hour default; lower it for a hard cap.
    It must not exceed the stack's ``MaxAbsoluteTimeoutSeconds``: the service
    refuses (422) every create asking for more.
``SESSION_SERVICE_MAX_IDLE_AGE``
    The service's largest idle timeout (default 1209600 s, the template's);
    longer expiry ages are sent as this. It must not exceed the stack's
    ``MaxIdleTimeoutSeconds``, or long expiry ages get a 422.
``SESSION_SERVICE_TOUCH``
    Whether loading a session slides its idle expiry (``GET ?touch=true``,
    default True), so page views keep a session alive as activity does.
``SESSION_SERVICE_SUBJECT_PREFIX``
    Put before the user's primary key to make the session's owner (default
    ``""``), for services shared by several user databases.
``SESSION_SERVICE_SESSIONS_TABLE``
    The sessions table's name (the stack's ``SessionsTableName`` output) to read
    sessions from directly (default None: off). ``load``, ``exists`` and their async
    forms then read the session with one strongly consistent DynamoDB ``GetItem``,
    opened locally (:mod:`session_service.direct`), instead of ``GET /sessions/{id}``,
    and a load touches (``POST /sessions/{id}/touch``) only when a touch is due; every
    write still goes through the service. The backend's role needs
    ``dynamodb:GetItem`` on the table (the stack's ``DirectReads`` parameter). The
    region is the URL's or ``SESSION_SERVICE_REGION``; botocore's usual credential
    chain and ``AWS_ENDPOINT_URL_DYNAMODB`` apply. One botocore client serves the
    process.
``SESSION_SERVICE_TOUCH_STEP``
    The service's ``SESSION_TOUCH_STEP_SECONDS`` (default 60), for direct reads: a
    load touches when the service would write the touch.

The mapping of Django's contract: ``load`` is ``GET /sessions/{id}``
(``?touch=true``; or a direct read, above), a missing session loads as empty and drops the key;
``create`` is ``POST /sessions`` (the service makes the key);
``save`` stores only what the request changed (below), and a session deleted
meanwhile raises ``UpdateError`` (never resurrected); an expiry age of 0 or less
deletes it (without a key, nothing is created); ``cycle_key`` is ``POST
/sessions/{id}/rotate``;
``delete`` is ``DELETE /sessions/{id}``; ``clear_expired`` does nothing (the
service's sweeper removes expired sessions). Once ``django.contrib.auth.login()``
has put the user's id in the session, the next save (or ``cycle_key``) makes the
session the user's as a login, a fresh authentication: a new session is created
with ``subject``, the current data and full idle and absolute lifetimes, and the
old one is deleted (a rotation would keep the anonymous session's absolute
expiry). So :func:`revoke_user_sessions` and :func:`list_user_sessions` see
every session of the user.

A save sends the changes from the data the store loaded (the JSON object the
service answered; after a write, the data that write sent) to the data it holds
now, as the serializer makes it: ``PATCH /sessions/{id}`` with the RFC 7396 merge
patch between them (:func:`merge_patch`: members changed or added as their new
values, objects changed member by member, removed members as ``null`` at any
depth; ``{}`` when nothing changed, which writes no data and slides the idle
expiry as a touch does), without ``If-Match``. So two requests that change
different keys of one session both land, and of two that set the same key the
later save wins, as with Django's own backends. Where a merge patch cannot
express the change (a value set to ``None``, which a patch's ``null`` would
remove; members reordered) or the idle timeout changes (``get_expiry_age()`` is
not what the service holds: a PATCH keeps it), the save is a ``PUT`` of the whole
data with ``If-Match`` naming the version last read or written; when the session changed
meanwhile (412), it is read again and this request's changes are applied to what
it holds now (:func:`rebase`) and written on the same condition, up to
``WRITE_ATTEMPTS`` writes in all, then ``UpdateError``. After ``clear()``, which
replaces the data rather than changing it, a save writes the data whole (``PUT``,
no condition), as a store with no data loaded does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import weakref
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import (
    VALID_KEY_CHARS,
    SessionBase,
    UpdateError,
)
from django.core.exceptions import ImproperlyConfigured
from django.utils.crypto import get_random_string

from .client import AsyncClient, Client
from .direct import DEFAULT_TOUCH_STEP
from .errors import NotFound, PreconditionFailed, SessionServiceError
from .models import IssuedSession, Session, SessionSummary

logger = logging.getLogger(__name__)

#: django.contrib.auth.SESSION_KEY (not imported: this module must load without auth installed).
AUTH_USER_KEY = "_auth_user_id"
DEFAULT_ABSOLUTE_AGE = 2592000
DEFAULT_MAX_IDLE_AGE = 1209600
DEFAULT_TIMEOUT = 5.0
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")
_UNKNOWN = object()
_GONE = "the session was deleted or expired before it was saved"
_RACED = "the session kept changing while it was saved"
#: Conditional full writes (``PUT`` with ``If-Match``) a save makes before it gives up
#: with ``UpdateError``: the first, then one on fresh data after each 412.
WRITE_ATTEMPTS = 3

_lock = threading.Lock()
_clients: dict[Hashable, Client] = {}
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


# --- what a save sends: pure functions of JSON data ------------------------------------


def _same(a: Any, b: Any) -> bool:
    """JSON equality, stricter than ``==``: the same types (``1``, ``1.0`` and ``true``
    differ) and objects with their members in the same order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(value, b[name]) for name, value in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return bool(a == b)


def _loses_nulls(value: Any) -> bool:
    """Whether a merge patch setting ``value`` would not store it as it is: ``null``
    (a removal), or an object with a ``null`` member at any depth of objects (the
    service merges it into an empty object, dropping them). Arrays are set verbatim."""
    if value is None:
        return True
    return isinstance(value, dict) and any(_loses_nulls(member) for member in value.values())


def merge_patch(loaded: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """The RFC 7396 merge patch that turns ``loaded`` into ``new`` (JSON objects), or
    None when a merge patch cannot express the change.

    Members of ``loaded`` missing from ``new`` are ``null``; members added or changed
    are their new value, except that an object changed into an object is the merge
    patch between the two (so removals at depth are ``null`` at depth); arrays and
    other values are replaced whole. ``{}``: nothing changed. None when applying the
    patch would not give ``new`` exactly: ``new`` sets a ``null`` (a patch's ``null``
    removes), or its members are in another order than the merge leaves them (members
    kept stay in their place, added ones come last, as the service orders them).
    """
    kept = [name for name in loaded if name in new]
    if list(new) != kept + [name for name in new if name not in loaded]:
        return None
    patch: dict[str, Any] = {name: None for name in loaded if name not in new}
    for name, value in new.items():
        if name in loaded:
            old = loaded[name]
            if _same(old, value):
                continue
            if isinstance(old, dict) and isinstance(value, dict):
                inner = merge_patch(old, value)
                if inner is None:
                    return None
                patch[name] = inner
                continue
        if _loses_nulls(value):
            return None
        patch[name] = value
    return patch


def rebase(current: dict[str, Any], loaded: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The changes from ``loaded`` to ``new`` applied to ``current`` (the session's data
    as it is now), as :func:`merge_patch` would apply them but with ``null`` values
    kept: members removed go, members changed are set (an object changed into an
    object member by member), and whatever else ``current`` holds stays. Members keep
    their place in ``current``; added ones come last. Nothing given is modified."""
    rebased = {name: value for name, value in current.items() if name in new or name not in loaded}
    for name, value in new.items():
        if name in loaded:
            old = loaded[name]
            if _same(old, value):
                continue
            if isinstance(old, dict) and isinstance(value, dict):
                base = rebased.get(name)
                rebased[name] = rebase(base if isinstance(base, dict) else {}, old, value)
                continue
        rebased[name] = value
    return rebased


def _full_write(current: dict[str, Any], loaded: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The data of a full write: ``new`` itself while the session holds what was loaded
    (keeping ``new``'s order), else ``new``'s changes on what it holds now."""
    return new if _same(current, loaded) else rebase(current, loaded, new)


@dataclass(frozen=True)
class _Snapshot:
    """What the service held when this store last read or wrote the session."""

    #: The session's key then.
    key: str
    #: The session as the service answered (its data, version and idle timeout).
    stored: Session
    #: The data, as JSON, that the changes a save sends are from: what was loaded, or
    #: what the last save sent.
    baseline: dict[str, Any]
    #: The ``_session_cache`` that ``baseline`` is the earlier state of (compared by
    #: identity: a cache replaced since, as ``clear()`` does, describes no snapshot).
    cache: dict[str, Any]


def _config() -> tuple[str, str | None, Any, float, str | None, int]:
    url = getattr(settings, "SESSION_SERVICE_URL", None)
    if not url:
        raise ImproperlyConfigured("SESSION_SERVICE_URL must be set to use session_service.django")
    return (
        str(url),
        getattr(settings, "SESSION_SERVICE_REGION", None),
        getattr(settings, "SESSION_SERVICE_SIGNING_SERVICE", None),
        float(getattr(settings, "SESSION_SERVICE_TIMEOUT", DEFAULT_TIMEOUT)),
        getattr(settings, "SESSION_SERVICE_SESSIONS_TABLE", None) or None,
        int(getattr(settings, "SESSION_SERVICE_TOUCH_STEP", DEFAULT_TOUCH_STEP)),
    )


def get_client() -> Client:
    """The process's :class:`Client` for the configured service (made once per configuration);
    with ``SESSION_SERVICE_SESSIONS_TABLE``, its ``get`` reads directly."""
    config = _config()
    with _lock:
        client = _clients.get(config)
        if client is None:
            url, region, service, timeout, table, step = config
            client = _clients[config] = Client(
                url, region=region, signing_service=service, timeout=timeout, sessions_table=table, touch_step=step
            )
        return client


def get_async_client() -> AsyncClient:
    """The running event loop's :class:`AsyncClient` for the configured service; with
    ``SESSION_SERVICE_SESSIONS_TABLE``, its ``get`` reads directly through the process's
    botocore client (:func:`get_client`'s)."""
    config = _config()
    loop = asyncio.get_running_loop()
    per_loop = _async_clients.setdefault(loop, {})
    client = per_loop.get(config)
    if client is None:
        url, region, service, timeout, table, step = config
        reader = get_client().direct
        client = per_loop[config] = AsyncClient(
            url,
            region=region,
            signing_service=service,
            timeout=timeout,
            sessions_table=table,
            dynamodb_client=reader.dynamodb if reader else None,
            touch_step=step,
        )
    return client


def user_subject(user_id: Any) -> str:
    """The session owner (``subject``) for a user's primary key."""
    return f"{getattr(settings, 'SESSION_SERVICE_SUBJECT_PREFIX', '')}{user_id}"


def _except_id(except_session: str | SessionBase | None) -> str | None:
    if isinstance(except_session, SessionBase):
        return except_session.session_key
    return except_session


def revoke_user_sessions(user_id: Any, *, except_session: str | SessionBase | None = None) -> int:
    """Log a user out everywhere (but ``except_session``, a session or its key, e.g.
    ``request.session`` for "log out my other sessions"); the number revoked."""
    return get_client().revoke_all(user_subject(user_id), except_id=_except_id(except_session))


async def arevoke_user_sessions(user_id: Any, *, except_session: str | SessionBase | None = None) -> int:
    """The async :func:`revoke_user_sessions`."""
    return await get_async_client().revoke_all(user_subject(user_id), except_id=_except_id(except_session))


def _discard(client: Client, session_id: str) -> None:
    """Deletes a session this engine made and no longer wants; a failure is logged, not
    raised (the call has an outcome already; the session expires on its own)."""
    try:
        client.delete(session_id)
    except SessionServiceError as error:
        logger.warning("session_service.django: could not delete a superseded session: %s", type(error).__name__)


async def _adiscard(client: AsyncClient, session_id: str) -> None:
    """The async :func:`_discard`."""
    try:
        await client.delete(session_id)
    except SessionServiceError as error:
        logger.warning("session_service.django: could not delete a superseded session: %s", type(error).__name__)


def list_user_sessions(user_id: Any) -> list[SessionSummary]:
    """A user's live sessions ("where you're logged in"): handles, devices, times; no keys."""
    return list(get_client().iter_sessions(user_subject(user_id)))


async def alist_user_sessions(user_id: Any) -> list[SessionSummary]:
    """The async :func:`list_user_sessions`."""
    return [item async for item in get_async_client().iter_sessions(user_subject(user_id))]


class SessionStore(SessionBase):
    """Django sessions stored in the session service (see the module's docstring)."""

    _session_key: str | None  # SessionBase's validating property, typed

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        # The owner the service holds for this key: a str, None (anonymous) or unknown.
        self._owner: Any = _UNKNOWN
        # The key is a placeholder naming no session (see _placeholder).
        self._unstored = False
        # What the service held at the last load or write (see _snapshot_for).
        self._snapshot: _Snapshot | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {'with' if self.session_key else 'without'} a key>"

    # --- conversions ---------------------------------------------------------------

    def _to_service(self, session_dict: dict[str, Any]) -> dict[str, Any]:
        """The session's data as the serializer makes it, as a JSON object (order kept)."""
        value = json.loads(self.serializer().dumps(session_dict))
        if not isinstance(value, dict):
            raise TypeError("SESSION_SERIALIZER must produce a JSON object for session_service.django")
        return value

    def _from_service(self, data: dict[str, Any]) -> dict[str, Any]:
        """The service's data back through the serializer."""
        return self.serializer().loads(json.dumps(data, separators=(",", ":")).encode("ascii"))

    @staticmethod
    def _wanted_owner(session_dict: dict[str, Any]) -> str | None:
        user_id = session_dict.get(AUTH_USER_KEY)
        return None if user_id is None else user_subject(user_id)

    def _new_owner(self, session_dict: dict[str, Any]) -> str | None:
        """The logged-in user's subject, when the session is not yet theirs (a login)."""
        wanted = self._wanted_owner(session_dict)
        return wanted if wanted is not None and wanted != self._owner else None

    @staticmethod
    def _idle(age: int) -> int:
        return max(1, min(int(age), int(getattr(settings, "SESSION_SERVICE_MAX_IDLE_AGE", DEFAULT_MAX_IDLE_AGE))))

    @staticmethod
    def _absolute() -> int:
        return int(getattr(settings, "SESSION_SERVICE_ABSOLUTE_AGE", DEFAULT_ABSOLUTE_AGE))

    @staticmethod
    def _touch() -> bool:
        return bool(getattr(settings, "SESSION_SERVICE_TOUCH", True))

    def _issued(self, issued: IssuedSession, cache: dict[str, Any], baseline: dict[str, Any] | None) -> None:
        """The session is now ``issued`` (created or rotated), holding ``cache``, whose
        changes are from ``baseline`` (None: unknown, the next save writes it whole)."""
        self._session_key = issued.id
        self._owner = issued.subject
        self._unstored = False
        self._remember(issued.id, issued, baseline, cache)

    def _remember(self, key: str, stored: Session, baseline: dict[str, Any] | None, cache: dict[str, Any]) -> None:
        self._snapshot = None if baseline is None else _Snapshot(key, stored, baseline, cache)

    def _snapshot_for(self, key: str, cache: dict[str, Any]) -> _Snapshot | None:
        """The snapshot of this key, when ``cache`` is the data it was taken with."""
        snapshot = self._snapshot
        if snapshot is None or snapshot.key != key or snapshot.cache is not cache:
            return None
        return snapshot

    def _loaded(self, key: str, session: Session) -> dict[str, Any]:
        """The data of a session just read, remembered as what the next save's changes are from."""
        self._owner = session.subject
        data = self._from_service(session.data)
        self._remember(key, session, session.data, data)
        return data

    def _missing(self) -> dict[str, Any]:
        self._session_key = None
        self._owner = _UNKNOWN
        self._unstored = False
        self._snapshot = None
        return {}

    def _placeholder(self) -> None:
        """A save without a key and with an expiry age of 0 or less stores nothing (the
        session would be expired at birth), but SessionMiddleware sets the cookie to
        ``session_key`` after any save of a non-empty session (with Max-Age 0 or less,
        which browsers drop at once): rather than ``None``, the key is a random one that
        names no session, as Django's cache backend's would. It is never a service id
        (32 characters, not 43), so loading it gives ``{}`` without a request, deleting
        it does nothing, and a later save with a positive expiry age creates a session."""
        self._session_key = get_random_string(32, VALID_KEY_CHARS)
        self._owner = _UNKNOWN
        self._unstored = True
        self._snapshot = None

    def _stored_key(self) -> str | None:
        """The key when it may name a session on the service (not a placeholder)."""
        return None if self._unstored else self.session_key

    def _login(self, client: Client, key: str, data: dict[str, Any], owner: str, age: int) -> None:
        """Makes the session ``owner``'s as a fresh authentication: a new session with the
        data and full lifetimes, then the old one consumed. Never resurrects a session
        deleted elsewhere: the old one is consumed by an atomic rotate, whose 404 (it was
        gone) deletes the new one and raises NotFound; the rotate's product, holding no
        data, is deleted. Any other failure deletes the new one too and leaves the old."""
        sent = self._to_service(data)
        issued = client.create(
            sent,
            subject=owner,
            idle_timeout_seconds=self._idle(age),
            absolute_timeout_seconds=self._absolute(),
        )
        try:
            leftover = client.rotate(key, keep_data=False)
        except BaseException:
            _discard(client, issued.id)
            raise
        _discard(client, leftover.id)
        self._issued(issued, data, sent)

    async def _alogin(self, client: AsyncClient, key: str, data: dict[str, Any], owner: str, age: int) -> None:
        """The async :meth:`_login`."""
        sent = self._to_service(data)
        issued = await client.create(
            sent,
            subject=owner,
            idle_timeout_seconds=self._idle(age),
            absolute_timeout_seconds=self._absolute(),
        )
        try:
            leftover = await client.rotate(key, keep_data=False)
        except BaseException:
            await _adiscard(client, issued.id)
            raise
        await _adiscard(client, leftover.id)
        self._issued(issued, data, sent)

    def _write(self, client: Client, key: str, data: dict[str, Any], idle: int) -> None:
        """Stores what this store changed in the session (see :meth:`save`)."""
        new = self._to_service(data)
        snapshot = self._snapshot_for(key, data)
        if snapshot is None:  # not changed from data it knows (cleared, say): the data whole
            written = client.replace(key, new, idle_timeout_seconds=idle)
        elif (patch := self._patch(snapshot, new, idle)) is not None:
            written = client.merge(key, patch)
        else:
            stored = snapshot.stored
            for attempt in range(1, WRITE_ATTEMPTS + 1):
                try:
                    written = client.replace(
                        key,
                        _full_write(stored.data, snapshot.baseline, new),
                        if_match=stored.version,
                        idle_timeout_seconds=idle,
                    )
                    break
                except PreconditionFailed as error:
                    if attempt == WRITE_ATTEMPTS:
                        raise UpdateError(_RACED) from error
                stored = client.get(key)
        self._remember(key, written, new, data)

    async def _awrite(self, client: AsyncClient, key: str, data: dict[str, Any], idle: int) -> None:
        """The async :meth:`_write`."""
        new = self._to_service(data)
        snapshot = self._snapshot_for(key, data)
        if snapshot is None:
            written = await client.replace(key, new, idle_timeout_seconds=idle)
        elif (patch := self._patch(snapshot, new, idle)) is not None:
            written = await client.merge(key, patch)
        else:
            stored = snapshot.stored
            for attempt in range(1, WRITE_ATTEMPTS + 1):
                try:
                    written = await client.replace(
                        key,
                        _full_write(stored.data, snapshot.baseline, new),
                        if_match=stored.version,
                        idle_timeout_seconds=idle,
                    )
                    break
                except PreconditionFailed as error:
                    if attempt == WRITE_ATTEMPTS:
                        raise UpdateError(_RACED) from error
                stored = await client.get(key)
        self._remember(key, written, new, data)

    @staticmethod
    def _patch(snapshot: _Snapshot, new: dict[str, Any], idle: int) -> dict[str, Any] | None:
        """The merge patch a save sends, or None for a full write: when the data's change
        needs one (see :func:`merge_patch`) or the idle timeout changes (a PATCH keeps it)."""
        if snapshot.stored.idle_timeout_seconds != idle:
            return None
        return merge_patch(snapshot.baseline, new)

    # --- the contract ----------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        """``GET /sessions/{id}?touch=true`` (with ``SESSION_SERVICE_SESSIONS_TABLE``: a direct
        read, and the service's touch only when due); a missing session loads as {} and
        drops the key."""
        key = self.session_key
        if key is None or not _SESSION_ID.match(key):
            return self._missing()
        try:
            session = get_client().get(key, touch=self._touch())
        except NotFound:
            return self._missing()
        return self._loaded(key, session)

    async def aload(self) -> dict[str, Any]:
        """The async :meth:`load`."""
        key = self.session_key
        if key is None or not _SESSION_ID.match(key):
            return self._missing()
        try:
            session = await get_async_client().get(key, touch=self._touch())
        except NotFound:
            return self._missing()
        return self._loaded(key, session)

    def exists(self, session_key: str | None) -> bool:
        """Whether a live session has this key (``GET``, or a direct read; not touching it)."""
        if not session_key or not _SESSION_ID.match(session_key):
            return False
        try:
            get_client().get(session_key)
        except NotFound:
            return False
        return True

    async def aexists(self, session_key: str | None) -> bool:
        """The async :meth:`exists`."""
        if not session_key or not _SESSION_ID.match(session_key):
            return False
        try:
            await get_async_client().get(session_key)
        except NotFound:
            return False
        return True

    def create(self) -> None:
        """``POST /sessions`` with the current data; the service makes the key."""
        data = self._get_session(no_load=True)
        sent = self._to_service(data)
        issued = get_client().create(
            sent,
            subject=self._wanted_owner(data),
            idle_timeout_seconds=self._idle(self.get_expiry_age()),
            absolute_timeout_seconds=self._absolute(),
        )
        self._issued(issued, data, sent)
        self.modified = True

    async def acreate(self) -> None:
        """The async :meth:`create`."""
        data = await self._aget_session(no_load=True)
        sent = self._to_service(data)
        issued = await get_async_client().create(
            sent,
            subject=self._wanted_owner(data),
            idle_timeout_seconds=self._idle(await self.aget_expiry_age()),
            absolute_timeout_seconds=self._absolute(),
        )
        self._issued(issued, data, sent)
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        """Store what changed since the data was loaded: a merge patch (``PATCH``), or a
        conditional ``PUT`` with idle timeout = ``get_expiry_age()`` where a merge
        patch cannot express the change or the idle timeout changes (see the module's
        docstring); ``UpdateError`` when the session kept changing meanwhile.

        Without a key (or with ``must_create``) this creates the session; when
        the expiry age is 0 or less nothing is created and the key becomes a
        placeholder naming no session (see :meth:`_placeholder`). A session
        deleted meanwhile raises ``UpdateError``: it is never recreated. An
        expiry age of 0 or less deletes the session. When the logged-in user
        (``_auth_user_id``) does not own the session yet, this is a login: a new
        session owned by the user replaces it (see :meth:`_login`).
        """
        if self._stored_key() is None or must_create:
            if self.get_expiry_age() > 0:
                self.create()
            elif self.session_key is None:
                self._placeholder()
            return
        data = self._get_session()
        key = self.session_key
        if key is None:  # loading found it gone
            raise UpdateError(_GONE)
        age = self.get_expiry_age()
        if age <= 0:
            self.delete()
            return
        client = get_client()
        try:
            if self._owner is _UNKNOWN and self._wanted_owner(data) is not None:
                self._owner = client.get(key).subject  # not loaded (say, cleared): whose is it?
            if (owner := self._new_owner(data)) is not None:
                self._login(client, key, data, owner, age)
            else:
                self._write(client, key, data, self._idle(age))
        except NotFound as error:
            raise UpdateError(_GONE) from error

    async def asave(self, must_create: bool = False) -> None:
        """The async :meth:`save`."""
        if self._stored_key() is None or must_create:
            if await self.aget_expiry_age() > 0:
                await self.acreate()
            elif self.session_key is None:
                self._placeholder()
            return
        data = await self._aget_session()
        key = self.session_key
        if key is None:  # loading found it gone
            raise UpdateError(_GONE)
        age = await self.aget_expiry_age()
        if age <= 0:
            await self.adelete()
            return
        client = get_async_client()
        try:
            if self._owner is _UNKNOWN and self._wanted_owner(data) is not None:
                self._owner = (await client.get(key)).subject
            if (owner := self._new_owner(data)) is not None:
                await self._alogin(client, key, data, owner, age)
            else:
                await self._awrite(client, key, data, self._idle(age))
        except NotFound as error:
            raise UpdateError(_GONE) from error

    def delete(self, session_key: str | None = None) -> None:
        """``DELETE /sessions/{id}`` (this session's key when none is given); a missing one is fine."""
        key = self.session_key if session_key is None else session_key
        if not key or not _SESSION_ID.match(key):  # no such session, for sure
            return
        try:
            get_client().delete(key)
        except NotFound:
            pass

    async def adelete(self, session_key: str | None = None) -> None:
        """The async :meth:`delete`."""
        key = self.session_key if session_key is None else session_key
        if not key or not _SESSION_ID.match(key):
            return
        try:
            await get_async_client().delete(key)
        except NotFound:
            pass

    def cycle_key(self) -> None:
        """A new key for the same session: ``POST /sessions/{id}/rotate`` (atomic: the old
        key is gone at once). When the logged-in user does not own the session yet, a
        login: a new session owned by the user (full lifetimes), the old one consumed by an
        atomic rotate, as Django's own ``cycle_key`` replaces it. A session gone meanwhile
        (revoked by "log out everywhere", by its owner, by the cap; logged out elsewhere)
        is never carried over: the request goes on with a new, empty, anonymous session,
        so the login it held stays revoked (Django's ``update_session_auth_hash`` cycles
        the key exactly when apps revoke the other sessions)."""
        data = self._session
        key = self._stored_key()
        if key is not None:
            owner = self._new_owner(data)
            previous = self._snapshot_for(key, data)
            try:
                if owner is None:
                    # The service holds what it held (not this store's unsaved changes).
                    self._issued(get_client().rotate(key), data, previous.baseline if previous else None)
                else:
                    self._login(get_client(), key, data, owner, self.get_expiry_age())
            except NotFound:
                self._session_cache = data = {}
                self.create()
        else:
            self.create()
        self._session_cache = data
        self.modified = True

    async def acycle_key(self) -> None:
        """The async :meth:`cycle_key`."""
        data = await self._aget_session()
        key = self._stored_key()
        if key is not None:
            owner = self._new_owner(data)
            previous = self._snapshot_for(key, data)
            try:
                if owner is None:
                    self._issued(await get_async_client().rotate(key), data, previous.baseline if previous else None)
                else:
                    await self._alogin(get_async_client(), key, data, owner, await self.aget_expiry_age())
            except NotFound:
                self._session_cache = data = {}
                await self.acreate()
        else:
            await self.acreate()
        self._session_cache = data
        self.modified = True

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: the service never answers with an expired session, and its
        sweeper deletes them (``clearsessions`` is a no-op with this engine)."""
        logger.info("session_service.django: expired sessions are removed by the service's sweeper")

    @classmethod
    async def aclear_expired(cls) -> None:
        """The async :meth:`clear_expired` (a no-op too)."""
        cls.clear_expired()
