"""Direct reads: a session read straight from the sessions table, without the service.

The service stores every session sealed under a key derived from its id
(docs/sealed-format.md, :mod:`session_service.sealed`), so an app holding an id
can read that session itself: one strongly consistent ``GetItem`` by the item key
the id derives, opened locally. :class:`DirectReader` does that and answers what
``GET /sessions/{id}`` would, as a :class:`~session_service.models.Session`, or
None where the service answers 404 (or, for a document that does not open, 500).
Every change (create, write, touch, rotate, revoke) still goes through the API;
:func:`touch_is_due` says when a page view needs the service's touch.

It needs ``dynamodb:GetItem`` on the sessions table (the stack's ``DirectReads``
parameter grants it to ``ClientRoleNames``) and nothing else: no ``Query``, no
``Scan``, no key service. The :class:`~session_service.Client` and
:class:`~session_service.AsyncClient` use it when given ``sessions_table=``.

Session ids stay out of logs, reprs and exceptions: the only trace of a read is
the first 12 hex digits of its item key (a digest of the id), as the service logs it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime, timezone
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from . import sealed
from .errors import PROBLEM_PREFIX, ConfigurationError, DirectReadError, NotFound
from .models import Device, Session

__all__ = [
    "DEFAULT_TOUCH_STEP",
    "DirectReader",
    "expiry",
    "new_dynamodb_client",
    "not_found",
    "touch_is_due",
    "unix_now",
]

logger = logging.getLogger(__name__)

#: The service's default ``SESSION_TOUCH_STEP_SECONDS``: a touch is written once the
#: last activity is this old, or the session would expire within it.
DEFAULT_TOUCH_STEP = 60

#: A family stored before families were handles: 16 bytes in hex, read zero-padded to 64.
_OLD_FAMILY_LENGTH = 32
_ROUTE = "GET /sessions/{id}"


def unix_now() -> int:
    """The current time in Unix seconds, as the service counts it."""
    return int(time.time())


def expiry(now: int, idle_timeout: int, absolute_expires_at: int) -> int:
    """The expiry a session's activity at ``now`` gives it: ``idle_timeout`` seconds on,
    never past its absolute expiry (all in seconds)."""
    return min(now + idle_timeout, absolute_expires_at)


def touch_is_due(session: Session, now: int | None = None, step: int = DEFAULT_TOUCH_STEP) -> bool:
    """Whether a touch of ``session`` at ``now`` (Unix seconds) is one the service writes,
    as its store decides (``touch_is_due`` in shared/src/model.rs): the touch moves the
    expiry, and the last activity is at least ``step`` seconds old or the session would
    otherwise expire within ``step``. ``step`` is the service's
    ``SESSION_TOUCH_STEP_SECONDS``. A touch that is not due writes nothing: the session
    read is what the service's touch would answer."""
    now = unix_now() if now is None else now
    expires_at = _seconds(session.expires_at)
    slid = expiry(now, session.idle_timeout_seconds, _seconds(session.absolute_expires_at))
    return slid != expires_at and (_seconds(session.updated_at) + step <= now or expires_at <= now + step)


def not_found() -> NotFound:
    """The :class:`NotFound` a read that found no session raises, as the service's 404 would."""
    return NotFound(
        status=404,
        type=PROBLEM_PREFIX + "not-found",
        title="Not found",
        detail="no live session has this id",
        route=_ROUTE,
    )


def new_dynamodb_client(*, region: str | None = None, timeout: float | None = None) -> Any:
    """A botocore DynamoDB client with botocore's usual configuration: credentials from
    its chain, the endpoint from ``AWS_ENDPOINT_URL_DYNAMODB`` when set, the region
    ``region``, else ``AWS_REGION`` (which botocore itself does not read), else
    botocore's (``AWS_DEFAULT_REGION``, the profile); ``timeout`` bounds connecting and
    each read. Raises :class:`ConfigurationError` when no region is known."""
    config = Config(connect_timeout=timeout, read_timeout=timeout) if timeout is not None else None
    region = region or os.environ.get("AWS_REGION") or None
    try:
        return botocore.session.get_session().create_client("dynamodb", region_name=region, config=config)
    except NoRegionError:
        raise ConfigurationError("direct reads need a region: pass region= or set AWS_REGION") from None


class DirectReader:
    """Reads sessions from the sessions table ``table_name`` (the stack's
    ``SessionsTableName`` output) with one strongly consistent ``GetItem`` each.

    ``dynamodb_client`` is the botocore DynamoDB client to use; when not given, one is
    made with :func:`new_dynamodb_client` (``region``, ``timeout``). Thread-safe, as
    botocore clients are: reuse one per process.
    """

    def __init__(
        self,
        table_name: str,
        *,
        dynamodb_client: Any = None,
        region: str | None = None,
        timeout: float | None = None,
    ) -> None:
        if not table_name:
            raise ConfigurationError("direct reads need the sessions table's name")
        self.table_name = table_name
        if dynamodb_client is None:
            dynamodb_client = new_dynamodb_client(region=region, timeout=timeout)
        #: The botocore DynamoDB client the reads go through.
        self.dynamodb = dynamodb_client

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.table_name!r})"

    def read(self, session_id: str, now: int | None = None) -> Session | None:
        """The live session ``session_id`` names at ``now`` (Unix seconds, by default
        the current time), as ``GET /sessions/{id}`` answers it, or None: an id that is
        not one (no request is made), no item, an item without a document, an expired
        one, or one whose document does not open or holds no JSON object (logged at
        WARNING; the service answers that read with a 500).

        Raises :class:`DirectReadError` when the ``GetItem`` fails (after botocore's
        retries): access denied, throttled, no answer.
        """
        if not isinstance(session_id, str) or not sealed.valid_id(session_id):
            return None
        key = sealed.item_key(session_id)
        item = self._get_item(key)
        if item is None or "doc" not in item:
            return None
        if not sealed.is_live(_number(item["expires_at"]), unix_now() if now is None else now):
            return None
        data = _open_data(session_id, key, item["doc"])
        return None if data is None else _session(item, data)

    def _get_item(self, key: str) -> dict[str, Any] | None:
        """The item whose ``handle`` is ``key``, or None. The whole item: the attributes a
        read leaves (the expiry index's, the write token) are a few dozen bytes, and a
        projection cost DynamoDB Local a third of a millisecond (BENCHMARKS.md, "A Django
        page view")."""
        try:
            answer = self.dynamodb.get_item(
                TableName=self.table_name,
                Key={"handle": {"S": key}},
                ConsistentRead=True,
            )
        except (BotoCoreError, ClientError) as error:
            raise DirectReadError(f"GetItem on the sessions table failed: {type(error).__name__}: {error}") from error
        item: dict[str, Any] | None = answer.get("Item")
        return item


def _open_data(session_id: str, key: str, doc: dict[str, Any]) -> dict[str, Any] | None:
    """The data sealed in an item's ``doc`` attribute, or None (logged) when it does not open
    to a JSON object."""
    try:
        document = doc.get("B")
        if not isinstance(document, bytes):
            raise sealed.Unopenable("doc is not a binary attribute")
        data = json.loads(sealed.open_document(session_id, document))
        if not isinstance(data, dict):
            raise sealed.Unopenable("the document holds no JSON object")
    except ValueError as error:  # Unopenable, and text that is not UTF-8 JSON
        logger.warning(
            "session_service.direct: a stored session document does not open (%s); read as no session (session=%s)",
            type(error).__name__,
            key[:12],
        )
        return None
    return data


def _session(item: dict[str, Any], data: dict[str, Any]) -> Session:
    """The session as ``GET /sessions/{id}`` answers it, from its item and opened data."""
    family = item["family"]["S"]
    version = _number(item["version"])
    return Session(
        handle=family.rjust(64, "0") if len(family) == _OLD_FAMILY_LENGTH else family,
        data=data,
        created_at=_datetime(item["created_at"]),
        updated_at=_datetime(item["updated_at"]),
        expires_at=_datetime(item["expires_at"]),
        absolute_expires_at=_datetime(item["absolute_expires_at"]),
        idle_timeout_seconds=_number(item["idle_timeout"]),
        version=version,
        subject=item["subject"]["S"] if "subject" in item else None,
        device=Device.from_json({name: value.get("S") for name, value in item.get("device", {}).get("M", {}).items()}),
        etag=f'"{version}"',
    )


def _number(value: dict[str, Any]) -> int:
    """A number attribute (``{"N": "17"}``) as an int."""
    return int(value["N"])


def _datetime(value: dict[str, Any]) -> datetime:
    """A number attribute of Unix seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(_number(value), tz=timezone.utc)


def _seconds(moment: datetime) -> int:
    """An aware datetime as Unix seconds."""
    return int(moment.timestamp())
