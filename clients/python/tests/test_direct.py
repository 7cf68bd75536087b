"""Direct reads (``sessions_table``, :mod:`session_service.direct`) against the live
service and its DynamoDB Local: the same cases through ``GET /sessions/{id}`` and
through one ``GetItem``, compared field by field; the touch rule; what each costs."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any

import httpx
import pytest

import session_service as ss
from session_service import AsyncClient, Client, Device, DirectReader, Session, direct, sealed

# --- counting what a call costs -----------------------------------------------------------


def what(request: httpx.Request) -> str:
    """A request as the tests count it: ``POST touch``, ``GET session`` (no id)."""
    return f"{request.method} {'touch' if request.url.path.endswith('/touch') else 'session'}"


class Counting(httpx.BaseTransport):
    """Forwards every request to the service and records it (:func:`what`)."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.seen: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(what(request))
        return self.real.handle_request(request)


class AsyncCounting(httpx.AsyncBaseTransport):
    """Counting for the AsyncClient."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(what(request))
        async with httpx.AsyncHTTPTransport() as real:
            answer = await real.handle_async_request(request)
            await answer.aread()
        return answer


class GetItems:
    """Counts the GetItem calls a botocore client makes (and runs ``after`` after each)."""

    def __init__(self, dynamodb: Any) -> None:
        self.events = dynamodb.meta.events
        self.count = 0
        self.after: Callable[[], Any] | None = None
        self.events.register("before-call.dynamodb.GetItem", self._before)
        self.events.register("after-call.dynamodb.GetItem", self._after)

    def _before(self, **_: Any) -> None:
        self.count += 1

    def _after(self, **_: Any) -> None:
        if self.after is not None:
            self.after()

    def close(self) -> None:
        self.events.unregister("before-call.dynamodb.GetItem", self._before)
        self.events.unregister("after-call.dynamodb.GetItem", self._after)


@pytest.fixture
def get_items(dynamodb: Any) -> Iterator[GetItems]:
    counter = GetItems(dynamodb)
    yield counter
    counter.close()


@pytest.fixture
def http() -> Counting:
    return Counting()


@pytest.fixture
def direct_client(base_url: str, sessions_table: str, dynamodb: Any, http: Counting) -> Iterator[Client]:
    """A Client with direct reads, its HTTP requests counted (``http.seen``)."""
    with Client(base_url, sessions_table=sessions_table, dynamodb_client=dynamodb, transport=http) as c:
        yield c


# --- the shared comparison: GET /sessions/{id} and the direct read answer alike -----------

SHOWN = [f.name for f in fields(Session)]


def answer(client: Client, session_id: str) -> Session | None:
    """``client.get`` (no touch), None for NotFound."""
    try:
        return client.get(session_id)
    except ss.NotFound:
        return None


def assert_same(through_http: Session | None, through_table: Session | None) -> None:
    """Both NotFound, or the same session field by field (data's member order included)."""
    assert (through_http is None) == (through_table is None), (through_http, through_table)
    if through_http is None or through_table is None:
        return
    for name in SHOWN:
        assert getattr(through_table, name) == getattr(through_http, name), name
    assert json.dumps(through_table.data) == json.dumps(through_http.data), "member order, at every depth"
    assert through_table == through_http


def wait_out(session: Session) -> None:
    """Sleeps until ``session`` has expired (it is live through its expires_at second)."""
    time.sleep(max(0.0, session.expires_at.timestamp() + 1.1 - time.time()))


def next_second() -> None:
    """Sleeps into the next whole second."""
    time.sleep(1.05 - time.time() % 1)


Case = Callable[[Client, str, Any, str], list[tuple[str, bool]]]


def live_anonymous(client: Client, subject: str, dynamodb: Any, table: str) -> list[tuple[str, bool]]:
    return [(client.create({"theme": "dark"}).id, True)]


def owned_with_a_device(client: Client, subject: str, dynamodb: Any, table: str) -> list[tuple[str, bool]]:
    issued = client.create(
        {"cart": [1, 2]},
        subject=subject,
        idle_timeout_seconds=600,
        absolute_timeout_seconds=3600,
        device=Device(user_agent="pytest ü", ip="2001:DB8::1", label="CI"),
    )
    partial = client.create(subject=subject, device={"label": "only a label"})
    return [(issued.id, True), (partial.id, True)]


def nested_and_unicode(client: Client, subject: str, dynamodb: Any, table: str) -> list[tuple[str, bool]]:
    data = {
        "z": {"ü": "ñ 日本語 🎉", "a": [1, 2.5, None, True, {"y": {}, "b": []}]},
        "a": 'ctl \u0000\u001f "q" \\ /',
        "n": -1.5e-7,
        "big": 2**60,
        "m": {"z": 1, "a": {"y": 2, "b": 3}},
    }
    return [(client.create(data).id, True)]


def after_writes(client: Client, subject: str, dynamodb: Any, table: str) -> list[tuple[str, bool]]:
    issued = client.create({"a": 1})
    client.replace(issued.id, {"b": {"y": 1, "x": 2}, "a": 2}, if_match=issued, idle_timeout_seconds=900)
    client.merge(issued.id, {"c": 3, "a": None})
    return [(issued.id, True)]


def after_a_rotation(client: Client, subject: str, dynamodb: Any, table: str) -> list[tuple[str, bool]]:
    issued = client.create({"a": 1})
    rotated = client.rotate(issued.id, subject=subject)
    return [(issued.id, False), (rotated.id, True)]


def deleted(client: Client, subject: str, dynamodb: Any, table: str) -> list[tuple[str, bool]]:
    issued = client.create({"a": 1})
    client.delete(issued.id)
    return [(issued.id, False)]


def revoked(client: Client, subject: str, dynamodb: Any, table: str) -> list[tuple[str, bool]]:
    issued = client.create({"a": 1}, subject=subject)
    assert client.revoke_all(subject) == 1
    return [(issued.id, False)]


def not_ids(client: Client, subject: str, dynamodb: Any, table: str) -> list[tuple[str, bool]]:
    canonical = secrets.token_urlsafe(32)
    not_canonical = canonical[:42] + "B"  # the last character's unused bits set
    return [("not-an-id", False), (not_canonical, False), (canonical + "A", False), ("é" * 43, False)]


def never_issued(client: Client, subject: str, dynamodb: Any, table: str) -> list[tuple[str, bool]]:
    return [(secrets.token_urlsafe(32), False)]


def expired(client: Client, subject: str, dynamodb: Any, table: str) -> list[tuple[str, bool]]:
    issued = client.create({"a": 1}, idle_timeout_seconds=1)  # the API's minimum
    wait_out(issued)
    return [(issued.id, False)]


def large(client: Client, subject: str, dynamodb: Any, table: str) -> list[tuple[str, bool]]:
    blob = secrets.token_urlsafe(225_000)
    assert len(blob) == 300_000
    return [(client.create({"blob": blob, "n": 1}).id, True)]


def stored_before_families_were_handles(
    client: Client, subject: str, dynamodb: Any, table: str
) -> list[tuple[str, bool]]:
    # A family of 16 bytes (32 hex digits), as once stored: shown zero-padded to 64.
    issued = client.create({"a": 1})
    dynamodb.update_item(
        TableName=table,
        Key={"handle": {"S": sealed.item_key(issued.id)}},
        UpdateExpression="SET #family = :family",
        ExpressionAttributeNames={"#family": "family"},
        ExpressionAttributeValues={":family": {"S": secrets.token_hex(16)}},
    )
    return [(issued.id, True)]


CASES: list[Case] = [
    live_anonymous,
    owned_with_a_device,
    nested_and_unicode,
    after_writes,
    after_a_rotation,
    deleted,
    revoked,
    not_ids,
    never_issued,
    expired,
    large,
    stored_before_families_were_handles,
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_a_direct_read_answers_as_the_service(
    case: Case, client: Client, direct_client: Client, subject: str, dynamodb: Any, sessions_table: str
) -> None:
    for session_id, live in case(client, subject, dynamodb, sessions_table):
        through_http = answer(client, session_id)
        through_table = answer(direct_client, session_id)
        assert (through_http is not None) == live, "the case's session is live or gone as it should be"
        assert_same(through_http, through_table)
        if through_table is not None and case is stored_before_families_were_handles:
            assert len(through_table.handle) == 64 and through_table.handle.startswith("0" * 32)


def test_a_document_that_does_not_open_is_no_session_here_and_a_500_from_the_service(
    client: Client,
    direct_client: Client,
    dynamodb: Any,
    sessions_table: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    issued = client.create({"secret": "value-not-to-log"})
    key = {"handle": {"S": sealed.item_key(issued.id)}}
    doc = dynamodb.get_item(TableName=sessions_table, Key=key, ConsistentRead=True)["Item"]["doc"]["B"]
    tampered = doc[:-1] + bytes([doc[-1] ^ 1])
    dynamodb.update_item(
        TableName=sessions_table,
        Key=key,
        UpdateExpression="SET #doc = :doc",
        ExpressionAttributeNames={"#doc": "doc"},
        ExpressionAttributeValues={":doc": {"B": tampered}},
    )
    with caplog.at_level(logging.WARNING, logger="session_service.direct"):
        assert direct_client.direct is not None
        assert direct_client.direct.read(issued.id) is None
        with pytest.raises(ss.NotFound) as not_found:
            direct_client.get(issued.id, touch=True)
    with pytest.raises(ss.InternalError) as internal:
        client.get(issued.id)  # the documented difference: the service answers 500
    assert internal.value.status == 500
    warnings = [r for r in caplog.records if r.name == "session_service.direct"]
    assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)
    for text in [r.getMessage() for r in warnings] + [str(not_found.value), repr(not_found.value)]:
        assert issued.id not in text and "value-not-to-log" not in text


def test_the_reader_makes_no_request_for_what_is_not_an_id(
    sessions_table: str, dynamodb: Any, get_items: GetItems
) -> None:
    reader = DirectReader(sessions_table, dynamodb_client=dynamodb)
    for not_an_id in ("", "x", "not-an-id", secrets.token_urlsafe(32)[:42] + "B", "/" * 43):
        assert reader.read(not_an_id) is None
    assert get_items.count == 0
    assert reader.read(secrets.token_urlsafe(32)) is None
    assert get_items.count == 1
    assert repr(reader) == f"DirectReader({sessions_table!r})"


def test_the_reader_answers_at_the_time_it_is_given(client: Client, sessions_table: str, dynamodb: Any) -> None:
    issued = client.create({"a": 1}, idle_timeout_seconds=600)
    reader = DirectReader(sessions_table, dynamodb_client=dynamodb)
    expires_at = int(issued.expires_at.timestamp())
    assert reader.read(issued.id, now=expires_at) == client.get(issued.id)  # live through that second
    assert reader.read(issued.id, now=expires_at + 1) is None


def test_a_failed_get_item_raises_without_the_id(base_url: str, dynamodb: Any) -> None:
    issued_id = secrets.token_urlsafe(32)
    with Client(base_url, sessions_table="no-such-table", dynamodb_client=dynamodb) as c:
        with pytest.raises(ss.DirectReadError) as caught:
            c.get(issued_id)
    assert isinstance(caught.value, ss.SessionServiceError)
    assert issued_id not in str(caught.value) and sealed.item_key(issued_id) not in str(caught.value)
    assert "sessions_table='no-such-table'" in repr(c)


# --- the touch rule -----------------------------------------------------------------------


def session_at(*, updated: int, expires: int, absolute: int, idle: int) -> Session:
    def moment(seconds: int) -> Any:
        return direct._datetime({"N": str(seconds)})

    return Session(
        handle="0" * 64,
        data={},
        created_at=moment(0),
        updated_at=moment(updated),
        expires_at=moment(expires),
        absolute_expires_at=moment(absolute),
        idle_timeout_seconds=idle,
        version=1,
    )


@pytest.mark.parametrize(
    "updated, expires, absolute, idle, now, due",
    [
        (1000, 2800, 99999, 1800, 1000, False),  # just active: the expiry would not move
        (1000, 2800, 99999, 1800, 1059, False),  # moves, but less than a step since the last activity
        (1000, 2800, 99999, 1800, 1060, True),  # a step old
        (1000, 1030, 99999, 30, 1001, True),  # would expire within a step
        (1000, 1030, 99999, 30, 1000, False),  # ... but not at the same second: nothing moves
        (1000, 5000, 5000, 1800, 4000, False),  # capped at the absolute expiry: never again
        (1000, 4900, 5000, 1800, 4000, True),  # the cap moves it the last bit
    ],
)
def test_a_touch_is_due_as_the_store_decides(
    updated: int, expires: int, absolute: int, idle: int, now: int, due: bool
) -> None:
    session = session_at(updated=updated, expires=expires, absolute=absolute, idle=idle)
    assert direct.touch_is_due(session, now) is due
    assert direct.expiry(now, idle, absolute) == min(now + idle, absolute)
    assert direct.touch_is_due(session, now, step=10**6) is (direct.expiry(now, idle, absolute) != expires)


def test_a_page_view_of_a_fresh_session_is_one_get_item_and_no_request(
    client: Client, direct_client: Client, http: Counting, get_items: GetItems
) -> None:
    issued = client.create({"a": 1})
    viewed = direct_client.get(issued.id, touch=True)
    assert (http.seen, get_items.count) == ([], 1)
    assert viewed == client.get(issued.id)


def test_a_page_view_whose_touch_is_due_touches_once(
    client: Client, direct_client: Client, http: Counting, get_items: GetItems
) -> None:
    issued = client.create({"a": 1}, idle_timeout_seconds=30)  # expires within a step: due once a second passed
    next_second()
    viewed = direct_client.get(issued.id, touch=True)
    assert (http.seen, get_items.count) == (["POST touch"], 1)
    assert viewed.expires_at > issued.expires_at and viewed.updated_at > issued.updated_at
    assert viewed == client.get(issued.id)
    assert direct_client.get(issued.id) == viewed  # a read without touch never touches
    assert (http.seen, get_items.count) == (["POST touch"], 2)


def test_a_page_view_touches_by_the_services_touch_step_when_told_it(
    base_url: str, client: Client, sessions_table: str, dynamodb: Any, http: Counting
) -> None:
    # Due by the default step (it would expire within 60 s), not by a 5 s step.
    issued = client.create({"a": 1}, idle_timeout_seconds=30)
    next_second()
    with Client(base_url, sessions_table=sessions_table, dynamodb_client=dynamodb, transport=http, touch_step=5) as c:
        assert c.get(issued.id, touch=True) == client.get(issued.id)
    assert http.seen == []


def test_an_empty_id_is_refused_as_the_http_path_refuses_it(direct_client: Client) -> None:
    with pytest.raises(ValueError):
        direct_client.get("")


def test_a_revoked_session_whose_touch_would_be_due_is_not_found(
    client: Client, direct_client: Client, http: Counting, get_items: GetItems, subject: str
) -> None:
    issued = client.create({"a": 1}, subject=subject, idle_timeout_seconds=30)
    next_second()
    assert client.revoke_all(subject) == 1
    with pytest.raises(ss.NotFound):
        direct_client.get(issued.id, touch=True)
    assert (http.seen, get_items.count) == ([], 1)


def test_a_session_revoked_between_the_read_and_its_due_touch_is_not_found(
    client: Client, direct_client: Client, http: Counting, get_items: GetItems, subject: str
) -> None:
    # The service refuses to extend a session it would refuse to read: its 404 is the answer.
    issued = client.create({"a": 1}, subject=subject, idle_timeout_seconds=30)
    next_second()
    get_items.after = lambda: client.revoke_all(subject)
    with pytest.raises(ss.NotFound):
        direct_client.get(issued.id, touch=True)
    assert (http.seen, get_items.count) == (["POST touch"], 1)


def test_the_async_client_reads_directly_and_touches_when_due(
    base_url: str, client: Client, sessions_table: str, dynamodb: Any, get_items: GetItems
) -> None:
    fresh = client.create({"a": {"y": 1, "x": 2}})
    due = client.create({"b": 1}, idle_timeout_seconds=30)
    gone = client.create()
    client.delete(gone.id)
    next_second()

    async def run() -> tuple[Session, Session, list[str]]:
        transport = AsyncCounting()
        async with AsyncClient(
            base_url, sessions_table=sessions_table, dynamodb_client=dynamodb, transport=transport
        ) as c:
            viewed = await c.get(fresh.id, touch=True)
            assert transport.seen == []
            touched = await c.get(due.id, touch=True)
            with pytest.raises(ss.NotFound):
                await c.get(gone.id, touch=True)
        return viewed, touched, transport.seen

    viewed, touched, seen = asyncio.run(run())
    assert seen == ["POST touch"] and get_items.count == 3
    assert viewed == client.get(fresh.id) and list(viewed.data["a"]) == ["y", "x"]
    assert touched.expires_at > due.expires_at and touched == client.get(due.id)


# --- the Django engine with SESSION_SERVICE_SESSIONS_TABLE -----------------------------------

from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure()

from django.contrib.sessions.middleware import SessionMiddleware  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.test import RequestFactory, override_settings  # noqa: E402

from session_service import django as engine  # noqa: E402


@pytest.fixture
def direct_engine(base_url: str, sessions_table: str) -> Iterator[GetItems]:
    """The engine with direct reads on; the GetItems of its (one, per process) botocore client."""
    with override_settings(
        SESSION_ENGINE="session_service.django",
        SESSION_SERVICE_URL=base_url,
        SESSION_SERVICE_SESSIONS_TABLE=sessions_table,
        SESSION_SERVICE_SUBJECT_PREFIX=f"pytest-direct-{secrets.token_hex(6)}:",
    ):
        reader = engine.get_client().direct
        assert reader is not None, "SESSION_SERVICE_SESSIONS_TABLE turns direct reads on"
        counter = GetItems(reader.dynamodb)
        yield counter
        counter.close()


def http_requests(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The HTTP requests httpx logged (ids redacted)."""
    return [r.getMessage() for r in caplog.records if r.name == "httpx"]


def test_django_a_read_only_request_is_one_get_item_and_no_http_request(
    client: Client, direct_engine: GetItems, caplog: pytest.LogCaptureFixture
) -> None:
    issued = client.create({"theme": "dark"})

    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(request.session["theme"])

    request = RequestFactory().get("/")
    request.COOKIES[settings.SESSION_COOKIE_NAME] = issued.id
    with caplog.at_level(logging.INFO, logger="httpx"):
        response = SessionMiddleware(view)(request)
        assert direct_engine.count == 1
        assert engine.SessionStore().exists(issued.id)
        assert not engine.SessionStore().exists(secrets.token_urlsafe(32))
    assert response.content == b"dark" and settings.SESSION_COOKIE_NAME not in response.cookies
    assert (http_requests(caplog), direct_engine.count) == ([], 3)
    stored = client.get(issued.id)
    assert (stored.version, stored.updated_at, stored.expires_at) == (1, issued.updated_at, issued.expires_at)


def test_django_sees_a_revoke_at_once(client: Client, direct_engine: GetItems) -> None:
    user_id = secrets.token_hex(8)
    owned = client.create({"_auth_user_id": user_id}, subject=engine.user_subject(user_id))
    assert engine.SessionStore(owned.id).load() == {"_auth_user_id": user_id}
    assert engine.revoke_user_sessions(user_id) == 1
    store = engine.SessionStore(owned.id)
    assert store.load() == {} and store.session_key is None
    assert not store.exists(owned.id)
    assert direct_engine.count == 3


def test_django_load_touches_only_when_due(
    client: Client, direct_engine: GetItems, caplog: pytest.LogCaptureFixture
) -> None:
    fresh = client.create({"a": 1}, idle_timeout_seconds=600)
    due = client.create({"b": 2}, idle_timeout_seconds=30)
    next_second()
    with caplog.at_level(logging.INFO, logger="httpx"):
        assert engine.SessionStore(fresh.id).load() == {"a": 1}
        assert http_requests(caplog) == []
        with override_settings(SESSION_SERVICE_TOUCH=False):
            assert engine.SessionStore(due.id).load() == {"b": 2}
        assert http_requests(caplog) == []
        assert engine.SessionStore(due.id).load() == {"b": 2}
        assert len(http_requests(caplog)) == 1 and "/touch" in http_requests(caplog)[0]
    assert direct_engine.count == 3
    assert client.get(due.id).expires_at > due.expires_at
    assert client.get(fresh.id).expires_at == fresh.expires_at


def test_django_async_loads_read_directly(
    client: Client, direct_engine: GetItems, caplog: pytest.LogCaptureFixture
) -> None:
    issued = client.create({"m": {"z": 1, "a": 2}})
    gone = secrets.token_urlsafe(32)

    async def run() -> tuple[dict[str, Any], bool, bool, dict[str, Any]]:
        store = engine.SessionStore(issued.id)
        missing = engine.SessionStore(gone)
        return await store.aload(), await store.aexists(issued.id), await store.aexists(gone), await missing.aload()

    with caplog.at_level(logging.INFO, logger="httpx"):
        loaded, exists, exists_gone, missing = asyncio.run(run())
    assert loaded == {"m": {"z": 1, "a": 2}} and list(loaded["m"]) == ["z", "a"]
    assert (exists, exists_gone, missing) == (True, False, {})
    assert (http_requests(caplog), direct_engine.count) == ([], 4)
