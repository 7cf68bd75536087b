"""Every route of the service through Client and AsyncClient, against the live service."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

import pytest

import session_service as ss
from session_service import AsyncClient, Client, Device, RetryPolicy, _core


def test_health(client: Client) -> None:
    assert client.health() is True


def test_create_and_get(client: Client, subject: str) -> None:
    issued = client.create(
        {"theme": "dark", "n": [1, 2.5, None]},
        subject=subject,
        idle_timeout_seconds=600,
        absolute_timeout_seconds=3600,
        device=Device(user_agent="pytest", ip="::ffff:192.0.2.7", label="CI"),
    )
    assert len(issued.id) == 43 and len(issued.handle) == 64
    assert issued.etag == '"1"' and issued.version == 1
    assert issued.subject == subject
    assert issued.device == Device(user_agent="pytest", ip="192.0.2.7", label="CI")
    assert issued.idle_timeout_seconds == 600
    assert (issued.absolute_expires_at - issued.created_at).total_seconds() == 3600
    assert issued.id not in repr(issued) and issued.id not in str(issued)

    got = client.get(issued.id)
    assert got.data == {"theme": "dark", "n": [1, 2.5, None]}
    assert got.handle == issued.handle and got.etag == '"1"'
    assert not hasattr(got, "id")
    touched = client.get(issued.id, touch=True)
    assert touched.expires_at >= got.expires_at


def test_create_defaults(client: Client) -> None:
    issued = client.create()
    assert issued.data == {} and issued.subject is None and issued.device is None
    assert issued.idle_timeout_seconds == 1800
    assert (issued.absolute_expires_at - issued.created_at).total_seconds() == 43200
    client.delete(issued.id)


def test_replace_with_if_match(client: Client) -> None:
    issued = client.create({"a": 1})
    v2 = client.replace(issued.id, {"b": 2}, if_match=issued)  # a Session
    assert v2.data == {"b": 2} and v2.version == 2 and v2.etag == '"2"'
    v3 = client.replace(issued.id, {"c": 3}, if_match=2)  # a version
    v4 = client.replace(issued.id, {"d": 4}, if_match=v3.etag, idle_timeout_seconds=120)  # an ETag
    assert v4.idle_timeout_seconds == 120
    with pytest.raises(ss.PreconditionFailed) as caught:
        client.replace(issued.id, {"e": 5}, if_match=issued)
    assert caught.value.status == 412 and caught.value.type.endswith(":precondition-failed")
    assert client.get(issued.id).data == {"d": 4}
    assert client.replace(issued.id, {"f": 6}, if_match="*").version == 5
    assert client.replace(issued.id, {"g": 7}).version == 6


def test_merge_is_rfc_7396(client: Client) -> None:
    issued = client.create({"prefs": {"lang": "de", "tz": "CET"}, "cart": [1], "x": 1})
    merged = client.merge(issued.id, {"prefs": {"lang": None, "theme": "dark"}, "cart": None, "y": 2})
    assert merged.data == {"prefs": {"tz": "CET", "theme": "dark"}, "x": 1, "y": 2}
    assert client.merge(issued.id, {}).data == merged.data
    with pytest.raises(ss.PreconditionFailed):
        client.merge(issued.id, {"z": 1}, if_match=1)
    assert client.merge(issued.id, {"z": 1}, if_match=merged).data["z"] == 1
    assert client.merge(issued.id, None).data == {}


def test_touch(client: Client) -> None:
    issued = client.create(idle_timeout_seconds=30)
    touched = client.touch(issued.id)
    assert touched.expires_at >= issued.expires_at and touched.handle == issued.handle


def test_rotate(client: Client, subject: str) -> None:
    issued = client.create({"k": "v"})
    rotated = client.rotate(issued.id)
    assert rotated.id != issued.id and rotated.data == {"k": "v"} and rotated.created_at == issued.created_at
    with pytest.raises(ss.NotFound):
        client.get(issued.id)
    login = client.rotate(rotated.id, subject=subject, keep_data=False, device={"label": "phone"})
    assert login.subject == subject and login.data == {} and login.device == Device(label="phone")
    assert [s.handle for s in client.iter_sessions(subject)] == [login.handle]
    with pytest.raises(ss.NotFound):
        client.rotate(issued.id)


def test_delete_is_idempotent(client: Client) -> None:
    issued = client.create({"a": 1})
    client.delete(issued.id)
    client.delete(issued.id)
    client.delete("A" * 42 + "E")  # never there
    client.delete("not-an-id")  # malformed: the service's 404, success all the same
    with pytest.raises(ss.NotFound):
        client.get(issued.id)
    with pytest.raises(ss.NotFound):
        client.replace(issued.id, {"a": 2})  # never resurrected
    with pytest.raises(ss.NotFound):
        client.touch(issued.id)


ORDERED = {"z": 1, "a": 2, "m": {"y": 1, "b": 2, "x": {"2": 0, "1": 0}}}


def test_nested_key_order_survives_every_write(client: Client) -> None:
    def inner(data: dict) -> list:
        return [list(data["m"]), list(data["m"]["x"])]

    want = [["y", "b", "x"], ["2", "1"]]
    issued = client.create(ORDERED)
    assert inner(issued.data) == want
    assert inner(client.get(issued.id).data) == want
    assert inner(client.replace(issued.id, ORDERED).data) == want
    merged = client.merge(issued.id, {"m": {"c": 3}})
    assert list(merged.data["m"]) == ["y", "b", "x", "c"]
    assert [list(merged.data["m"])[:3], list(merged.data["m"]["x"])] == want
    rotated = client.rotate(issued.id)
    assert list(rotated.data["m"]) == ["y", "b", "x", "c"] and list(rotated.data["m"]["x"]) == ["2", "1"]


def test_top_level_key_order_survives_every_write(client: Client) -> None:
    want = ["z", "a", "m"]
    issued = client.create(ORDERED)
    assert list(issued.data) == want
    assert list(client.get(issued.id).data) == want
    assert list(client.replace(issued.id, ORDERED).data) == want
    assert list(client.merge(issued.id, {"m": {}}).data) == want
    assert list(client.rotate(issued.id).data) == want


def test_idempotent_create_and_rotate(client: Client) -> None:
    key = str(uuid.uuid4())
    first = client.create({"a": 1}, idempotency_key=key)
    again = client.create({"a": 1}, idempotency_key=key)  # a retry whose first answer was lost
    assert again.id == first.id and again.handle == first.handle
    with pytest.raises(ss.IdempotencyKeyReused) as caught:
        client.create({"a": 2}, idempotency_key=key)
    assert caught.value.status == 422
    rotation_key = str(uuid.uuid4())
    rotated = client.rotate(first.id, idempotency_key=rotation_key)
    assert client.rotate(first.id, idempotency_key=rotation_key).id == rotated.id
    with pytest.raises(ValueError):
        client.create(idempotency_key="too short")


def test_list_pages_revoke_and_revoke_all(client: Client, subject: str) -> None:
    sessions = [client.create({"n": n}, subject=subject) for n in range(3)]
    page = client.list_sessions(subject, limit=2)
    assert len(page.sessions) == 2 and page.next_cursor
    rest = client.list_sessions(subject, limit=2, cursor=page.next_cursor)
    assert len(rest.sessions) == 1 and rest.next_cursor is None
    handles = [s.handle for s in client.iter_sessions(subject, page_size=1)]
    # Oldest first, by creation second (then handle): these three share a second or two.
    assert sorted(handles) == sorted(s.handle for s in sessions)
    assert all(s.subject == subject for s in page.sessions)

    rotated = client.rotate(sessions[0].id)
    assert rotated.handle == sessions[0].handle  # a rotation keeps the handle
    client.revoke(subject, sessions[0].handle)  # the listed handle reaches the rotated id
    with pytest.raises(ss.NotFound):
        client.get(rotated.id)
    with pytest.raises(ss.NotFound):  # revoked already: the handle names nothing, nothing is done
        client.revoke(subject, sessions[0].handle)
    with pytest.raises(ss.NotFound):
        client.get(sessions[0].id)
    assert client.revoke_all(subject, except_id=sessions[2].id) == 1
    with pytest.raises(ss.NotFound):
        client.get(sessions[1].id)
    assert client.get(sessions[2].id).data == {"n": 2}
    assert client.revoke_all(subject) == 1
    assert list(client.iter_sessions(subject)) == []


def test_dot_segments_are_subjects_too(client: Client) -> None:
    for odd in ("..", ".", "a/../b"):
        issued = client.create(subject=odd)
        assert [s.handle for s in client.iter_sessions(odd)][-1] == issued.handle
        assert client.revoke_all(odd) >= 1


def test_a_300_kb_session_round_trips(client: Client) -> None:
    # What DynamoDB session stores commonly hold: the default limit is the item's, once sealed.
    blob = secrets.token_urlsafe(225_000)
    assert len(blob) == 300_000
    created = client.create({"blob": blob, "n": 1})
    assert client.get(created.id).data == {"blob": blob, "n": 1}
    merged = client.merge(created.id, {"n": 2})
    assert merged.data == {"blob": blob, "n": 2}
    assert client.get(created.id).data == {"blob": blob, "n": 2}
    client.delete(created.id)


def test_problems_map_to_exceptions(client: Client, base_url: str) -> None:
    with pytest.raises(ss.InvalidRequest) as invalid:
        client.create(idle_timeout_seconds=0)
    assert invalid.value.status == 422 and invalid.value.detail
    with pytest.raises(ss.TooLarge):
        client.create({"x": "a" * 380_000})
    with pytest.raises(ss.InvalidQuery):
        client.list_sessions("someone", cursor="not-a-cursor")
    with pytest.raises(ss.InvalidQuery):
        client.list_sessions("someone", limit=0)
    with pytest.raises(ss.NotFound):
        client.get("not-an-id")
    assert issubclass(ss.SessionCapReached, ss.Conflict) and issubclass(ss.IdempotencyKeyInFlight, ss.Conflict)
    issued = client.create()
    wrong_base = Client(base_url + "/sessions/" + issued.id)  # a wrong base URL
    with wrong_base, pytest.raises(ss.NoRoute) as no_route:
        wrong_base.health()
    assert issued.id not in str(no_route.value) and issued.id not in repr(no_route.value.body)


def test_errors_and_logs_never_show_ids(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    issued = client.create()
    client.delete(issued.id)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ss.NotFound) as caught:
            client.get(issued.id)
        client.revoke_all("someone", except_id=issued.id)
    assert issued.id not in str(caught.value) and issued.id not in repr(caught.value)
    assert caplog.records and all(issued.id not in record.getMessage() for record in caplog.records)


# --- retries (httpx.MockTransport injects the fault; everything else reaches the service) ---


class Applied:
    """A fault for Faulty: the request reaches the service and is applied, then
    ``meanwhile`` runs (another writer, say), and the client gets ``answer`` instead of
    the service's, or (``answer`` None) loses it: httpx.ReadError."""

    def __init__(self, answer: httpx.Response | None = None, meanwhile: Callable[[], Any] | None = None) -> None:
        self.answer = answer
        self.meanwhile = meanwhile

    def instead_of(self, real: httpx.Response) -> httpx.Response:
        assert real.status_code < 300, real.status_code
        if self.meanwhile is not None:
            self.meanwhile()
        if self.answer is None:
            raise httpx.ReadError("the answer was lost")
        return self.answer


def after(write: Callable[[], Any], answer: httpx.Response) -> Callable[[], httpx.Response]:
    """A fault for Faulty: the request never reaches the service; ``write`` runs (another
    writer), then the client gets ``answer``."""

    def fault() -> httpx.Response:
        write()
        return answer

    return fault


Fault = httpx.Response | Exception | Applied | Callable[[], httpx.Response]


class Faults:
    """The faults of Faulty and AsyncFaulty, and the requests they saw."""

    def __init__(self, *faults: Fault) -> None:
        self.faults = list(faults)
        self.seen: list[httpx.Request] = []

    def take(self, request: httpx.Request) -> httpx.Response | Applied | None:
        """The fault for ``request``: an answer, Applied, or None (forward it); raises an Exception fault."""
        self.seen.append(request)
        fault = self.faults.pop(0) if self.faults else None
        if callable(fault):
            fault = fault()
        if isinstance(fault, Exception):
            raise fault
        return fault


class Faulty(Faults, httpx.BaseTransport):
    """Answers the first ``len(faults)`` requests with the given faults, then forwards."""

    real = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.take(request)
        if isinstance(fault, httpx.Response):
            return fault
        answer = self.real.handle_request(request)
        if fault is None:
            return answer
        answer.read()
        answer.close()
        return fault.instead_of(answer)


class AsyncFaulty(Faults, httpx.AsyncBaseTransport):
    """Faulty for the AsyncClient."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.take(request)
        if isinstance(fault, httpx.Response):
            return fault
        async with httpx.AsyncHTTPTransport() as real:  # one per request: asyncio.run gives each call its loop
            answer = await real.handle_async_request(request)
            await answer.aread()
        return answer if fault is None else fault.instead_of(answer)


def problem(status: int, name: str, **headers: str) -> httpx.Response:
    body = {"type": f"urn:session-service:problem:{name}", "title": name, "status": status, "detail": "injected"}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json", **headers})


def test_503_is_retried_after_retry_after_with_the_same_idempotency_key(base_url: str) -> None:
    faults = Faulty(problem(503, "unavailable", **{"retry-after": "1"}))
    with Client(base_url, transport=faults) as client:
        started = time.monotonic()
        issued = client.create({"a": 1})
        waited = time.monotonic() - started
    assert waited >= 1.0
    keys = [r.headers["idempotency-key"] for r in faults.seen]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert client_get_data(base_url, issued.id) == {"a": 1}


def client_get_data(base_url: str, session_id: str) -> dict:
    with Client(base_url) as client:
        return client.get(session_id).data


def test_in_flight_409_and_transport_errors_are_retried(base_url: str) -> None:
    faults = Faulty(problem(409, "idempotency-key-in-flight"), httpx.ConnectError("refused"))
    with Client(base_url) as plain:
        created = plain.create()
    with Client(base_url, transport=faults, retry=RetryPolicy(base_delay=0.01)) as client:
        issued = client.rotate(created.id)
    assert len(faults.seen) == 3 and len({r.headers["idempotency-key"] for r in faults.seen}) == 1
    assert client_get_data(base_url, issued.id) == {}


def test_retries_are_bounded_and_permanent_errors_not_retried(base_url: str) -> None:
    faults = Faulty(*[httpx.ReadTimeout("slow")] * 4)
    client = Client(base_url, transport=faults, retry=RetryPolicy(max_attempts=4, base_delay=0.01))
    with client, pytest.raises(ss.TransportError) as caught:
        client.get("x" * 43)
    assert len(faults.seen) == 4 and "GET /sessions/{id}" in str(caught.value)
    faults = Faulty(problem(503, "unavailable", **{"retry-after": "3600"}))
    with Client(base_url, transport=faults) as client, pytest.raises(ss.Unavailable) as unavailable:
        client.health()
    assert unavailable.value.retry_after == 3600 and len(faults.seen) == 1
    faults = Faulty(problem(500, "internal"))
    with Client(base_url, transport=faults) as client, pytest.raises(ss.InternalError):
        client.health()
    assert len(faults.seen) == 1


def test_a_retried_delete_whose_first_attempt_went_through_succeeds(base_url: str) -> None:
    with Client(base_url) as plain:
        issued = plain.create({"a": 1})
    faults = Faulty(Applied())
    with Client(base_url, transport=faults, retry=RetryPolicy(base_delay=0.01)) as client:
        client.delete(issued.id)  # the retry finds it gone: success, not NotFound
    assert len(faults.seen) == 2
    faults = Faulty(httpx.ConnectError("refused"))
    with Client(base_url, transport=faults, retry=RetryPolicy(base_delay=0.01)) as client:
        client.delete(issued.id)  # gone before the call: success too
        with pytest.raises(ss.NotFound):
            client.get(issued.id)


def gateway(status: int) -> httpx.Response:
    """API Gateway's or Lambda's own error: no problem body."""
    return httpx.Response(status, json={"message": "Internal server error"})


def test_if_match_writes_are_retried_when_the_service_says_not_applied(base_url: str) -> None:
    fast = RetryPolicy(base_delay=0.01)
    with Client(base_url) as plain:
        issued = plain.create({"a": 1})
    faults = Faulty(problem(409, "conflict"), gateway(429))
    with Client(base_url, transport=faults, retry=fast) as client:
        v2 = client.replace(issued.id, {"b": 2}, if_match=issued)
    assert [r.method for r in faults.seen] == ["PUT"] * 3 and v2.version == 2  # no read: not applied
    faults = Faulty(problem(409, "conflict"))
    with Client(base_url, transport=faults, retry=fast) as client:
        v3 = client.merge(issued.id, {"c": 3}, if_match=v2)
    assert len(faults.seen) == 2 and v3.data == {"b": 2, "c": 3}
    # If-Match: * holds again after an applied first attempt, and no If-Match at all is
    # idempotent: both are sent again after unknown outcomes, without a read.
    faults = Faulty(Applied(), gateway(502))
    with Client(base_url, transport=faults, retry=fast) as client:
        v4 = client.replace(issued.id, {"d": 4}, if_match="*")
    assert [r.method for r in faults.seen] == ["PUT"] * 3 and v4.data == {"d": 4} and v4.version == 5
    faults = Faulty(gateway(504), httpx.ConnectError("refused"))
    with Client(base_url, transport=faults, retry=fast) as client:
        assert client.merge(issued.id, {"e": 5}).data == {"d": 4, "e": 5}
    assert [r.method for r in faults.seen] == ["PATCH"] * 3


# An If-Match write whose answer may follow a commit (none, a 502, 504 or any 503) is never
# sent again blindly: the client reads the session and decides. Each test runs the Client
# and the AsyncClient.


class FaultyClient:
    """A Client, or an AsyncClient whose coroutines run to their end, behind (Async)Faulty."""

    def __init__(self, mode: str, base_url: str, faults: tuple[Fault, ...], retry: RetryPolicy) -> None:
        self.mode, self.base_url, self.retry = mode, base_url, retry
        self.transport = Faulty(*faults) if mode == "sync" else AsyncFaulty(*faults)

    def methods(self) -> list[str]:
        return [request.method for request in self.transport.seen]

    def replace(self, *args: Any, **kwargs: Any) -> ss.Session:
        return self._call("replace", *args, **kwargs)

    def merge(self, *args: Any, **kwargs: Any) -> ss.Session:
        return self._call("merge", *args, **kwargs)

    def revoke(self, *args: Any, **kwargs: Any) -> None:
        return self._call("revoke", *args, **kwargs)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if isinstance(self.transport, Faulty):
            with Client(self.base_url, transport=self.transport, retry=self.retry) as client:
                return getattr(client, name)(*args, **kwargs)
        transport = self.transport

        async def run() -> Any:
            async with AsyncClient(self.base_url, transport=transport, retry=self.retry) as client:
                return await getattr(client, name)(*args, **kwargs)

        return asyncio.run(run())


FAST = RetryPolicy(base_delay=0.01)


@pytest.fixture(params=["sync", "async"])
def faulty(request: pytest.FixtureRequest, base_url: str) -> Callable[..., FaultyClient]:
    """``faulty(*faults, retry=...)``: a FaultyClient of each kind."""

    def make(*faults: Fault, retry: RetryPolicy = FAST) -> FaultyClient:
        return FaultyClient(request.param, base_url, faults, retry)

    return make


def unavailable() -> httpx.Response:
    """The service's own 503, as it answers when DynamoDB's answer to a write was lost."""
    return problem(503, "unavailable", **{"retry-after": "0"})


def assert_plain_reads(through: FaultyClient) -> None:
    reads = [r for r in through.transport.seen if r.method == "GET"]
    assert reads and all(r.url.path.count("/sessions/") == 1 and not r.url.query for r in reads)  # never a touch


def test_if_match_put_answered_503_after_it_committed_returns_the_session(
    faulty: Callable[..., FaultyClient], client: Client
) -> None:
    issued = client.create({"a": 1})
    through = faulty(Applied(unavailable()))
    v2 = through.replace(issued.id, {"b": {"y": 1, "x": [True, None]}}, if_match=issued)
    assert v2.version == 2 and v2.etag == '"2"' and v2.data == {"b": {"y": 1, "x": [True, None]}}
    assert v2.handle == issued.handle and list(v2.data["b"]) == ["y", "x"]
    assert through.methods() == ["PUT", "GET"]  # sent once, not a false 412
    assert_plain_reads(through)
    assert client.get(issued.id).version == 2


def test_if_match_patch_answered_503_after_it_committed_returns_the_session(
    faulty: Callable[..., FaultyClient], client: Client
) -> None:
    issued = client.create({"a": 1, "p": {"x": 1, "z": 0}})
    through = faulty(Applied(unavailable()))
    v2 = through.merge(issued.id, {"p": {"x": None, "y": 2}, "c": 3}, if_match=1)
    assert v2.version == 2 and v2.data == {"a": 1, "p": {"z": 0, "y": 2}, "c": 3}
    assert through.methods() == ["PATCH", "GET"]
    assert_plain_reads(through)
    assert client.get(issued.id).version == 2


def test_if_match_write_whose_answer_was_lost_after_commit_returns_the_session(
    faulty: Callable[..., FaultyClient], client: Client
) -> None:
    issued = client.create({"a": 1})
    through = faulty(Applied())  # applied, then httpx.ReadError
    v2 = through.replace(issued.id, {"b": 2}, if_match='"1"')
    assert v2.version == 2 and v2.data == {"b": 2} and through.methods() == ["PUT", "GET"]
    through = faulty(Applied(gateway(504)))
    v3 = through.merge(issued.id, None, if_match=v2)  # removes all data
    assert v3.version == 3 and v3.data == {} and through.methods() == ["PATCH", "GET"]


@pytest.mark.parametrize(
    "first",
    [unavailable, lambda: gateway(503), lambda: gateway(502), lambda: gateway(504), lambda: httpx.ConnectError("x")],
    ids=["503-unavailable", "503-gateway", "502", "504", "no-answer"],
)
def test_if_match_write_that_did_not_reach_the_service_is_read_then_sent_again(
    faulty: Callable[..., FaultyClient], client: Client, first: Callable[[], Fault]
) -> None:
    issued = client.create({"a": 1})
    through = faulty(first())  # answered without reaching the service: still version 1
    v2 = through.replace(issued.id, {"b": 2}, if_match=issued)
    assert v2.version == 2 and v2.data == {"b": 2}
    assert through.methods() == ["PUT", "GET", "PUT"]
    through = faulty(first())
    v3 = through.merge(issued.id, {"c": 3}, if_match=v2)
    assert v3.version == 3 and v3.data == {"b": 2, "c": 3}
    assert through.methods() == ["PATCH", "GET", "PATCH"]


def test_if_match_write_after_which_another_writer_moved_the_session_is_a_412(
    faulty: Callable[..., FaultyClient], client: Client
) -> None:
    issued = client.create({"a": 1})
    through = faulty(Applied(unavailable(), meanwhile=lambda: client.replace(issued.id, {"other": 1})))
    with pytest.raises(ss.PreconditionFailed) as caught:
        through.replace(issued.id, {"b": 2}, if_match=issued)
    assert caught.value.status == 412 and caught.value.route == "PUT /sessions/{id}"
    assert through.methods() == ["PUT", "GET"]  # sent once
    now = client.get(issued.id)
    assert now.version == 3 and now.data == {"other": 1}
    # Not applied, but another write made the next version: it does not show this one.
    through = faulty(after(lambda: client.merge(issued.id, {"x": 1}), unavailable()))
    with pytest.raises(ss.PreconditionFailed):
        through.merge(issued.id, {"c": 3}, if_match=now)
    assert through.methods() == ["PATCH", "GET"]
    assert client.get(issued.id).data == {"other": 1, "x": 1}


def test_if_match_write_whose_session_is_gone_after_an_unknown_outcome_is_not_found(
    faulty: Callable[..., FaultyClient], client: Client
) -> None:
    issued = client.create({"a": 1})
    through = faulty(Applied(unavailable(), meanwhile=lambda: client.delete(issued.id)))
    with pytest.raises(ss.NotFound) as caught:
        through.merge(issued.id, {"b": 2}, if_match=1)
    assert caught.value.route == "PATCH /sessions/{id}" and issued.id not in str(caught.value)
    assert through.methods() == ["PATCH", "GET"]


def test_if_match_write_retries_a_failed_read_within_its_attempts(
    faulty: Callable[..., FaultyClient], client: Client
) -> None:
    issued = client.create({"a": 1})
    through = faulty(Applied(unavailable()), httpx.ReadTimeout("slow"), gateway(503))
    v2 = through.replace(issued.id, {"b": 2}, if_match=1)
    assert v2.version == 2 and through.methods() == ["PUT", "GET", "GET", "GET"]
    # The write's own error once attempts run out (the write, then two reads of three attempts).
    three = RetryPolicy(max_attempts=3, base_delay=0.01)
    through = faulty(Applied(unavailable()), gateway(502), httpx.ConnectError("refused"), retry=three)
    with pytest.raises(ss.Unavailable) as caught:
        through.merge(issued.id, {"c": 3}, if_match=2)
    assert caught.value.status == 503 and through.methods() == ["PATCH", "GET", "GET"]
    assert client.get(issued.id).data == {"b": 2, "c": 3}  # it had landed: the error says "unknown", not 412
    # A read that fails for good ends the checks: the write's error (the read's is its cause).
    through = faulty(Applied(unavailable()), problem(500, "internal"))
    with pytest.raises(ss.Unavailable) as unavailable_error:
        through.merge(issued.id, {"d": 4}, if_match=3)
    assert isinstance(unavailable_error.value.__cause__, ss.InternalError) and through.methods() == ["PATCH", "GET"]


# A revoke by handle answers 404 when no live session of the owner has the handle. After
# an attempt whose answer may follow a commit, a later attempt's 404 is the earlier
# attempt's work: success, not a false NotFound.


@pytest.mark.parametrize(
    "lost",
    [lambda: None, unavailable, lambda: gateway(503), lambda: gateway(502), lambda: gateway(504)],
    ids=["no-answer", "503-unavailable", "503-gateway", "502", "504"],
)
def test_a_retried_revoke_whose_first_attempt_went_through_succeeds(
    faulty: Callable[..., FaultyClient], client: Client, subject: str, lost: Callable[[], httpx.Response | None]
) -> None:
    issued = client.create({"a": 1}, subject=subject)
    rotated = client.rotate(issued.id)  # the handle follows the session through rotations
    [listed] = client.list_sessions(subject).sessions
    through = faulty(Applied(lost()))  # revoked, then its answer is lost or replaced
    assert through.revoke(subject, listed.handle) is None  # the retry's 404: this call's own work
    assert through.methods() == ["DELETE", "DELETE"]
    with pytest.raises(ss.NotFound):
        client.get(rotated.id)
    assert list(client.iter_sessions(subject)) == []
    # A later call finds nothing to revoke on its first attempt: NotFound, nothing was done.
    through = faulty()
    with pytest.raises(ss.NotFound) as caught:
        through.revoke(subject, listed.handle)
    assert caught.value.route == "DELETE /subjects/{subject}/sessions/{handle}" and through.methods() == ["DELETE"]


def test_a_revoke_whose_earlier_attempts_did_nothing_is_not_found(
    faulty: Callable[..., FaultyClient], client: Client, subject: str
) -> None:
    client.create(subject=subject)
    [listed] = client.list_sessions(subject).sessions
    client.revoke(subject, listed.handle)
    # A 409 conflict and a 429 say the request was not applied: the 404 after them stands.
    through = faulty(problem(409, "conflict"), gateway(429))
    with pytest.raises(ss.NotFound):
        through.revoke(subject, listed.handle)
    assert through.methods() == ["DELETE"] * 3
    with pytest.raises(ss.NotFound):
        client.revoke(subject, "f" * 64)  # never there


def test_only_revoke_takes_a_not_found_after_an_unknown_outcome_as_done() -> None:
    def run(call: _core.Call[Any], *answers: httpx.Response | httpx.TransportError) -> Any:
        attempts = _core.Attempts(call, RetryPolicy(base_delay=0))
        for answer in answers:
            step = attempts.next(answer)
            if isinstance(step, _core.Done):
                return step.result
        raise AssertionError("no result")

    revoke = _core.op_revoke("someone", "f" * 64)
    assert revoke.gone_is_done and not _core.op_revoke_all("someone", None).gone_is_done
    assert not _core.op_delete("A" * 42 + "E").gone_is_done
    gone = problem(404, "not-found")
    assert run(revoke, httpx.ReadError("lost"), gone) is None
    assert run(revoke, gateway(502), gateway(429), gone) is None  # a 429 later undoes nothing
    assert run(revoke, gateway(504), problem(503, "unavailable"), gone) is None
    with pytest.raises(ss.NotFound):
        run(revoke, gone)
    with pytest.raises(ss.NotFound):
        run(revoke, problem(409, "conflict"), gateway(429), gone)
    with pytest.raises(ss.NoRoute):  # a wrong base URL is no proof the session is gone
        run(revoke, gateway(503), problem(404, "no-route"))
    with pytest.raises(ss.NotFound):  # a read is no revoke
        run(_core.op_get("A" * 42 + "E", False), gateway(503), gone)


def test_judge_decides_from_the_session_read() -> None:
    def session(version: int, data: dict) -> ss.Session:
        when = "2026-01-01T00:00:00Z"
        times = {"created_at": when, "updated_at": when, "expires_at": when, "absolute_expires_at": when}
        body = {"handle": "h", "data": data, "idle_timeout_seconds": 60, "version": version}
        return ss.Session.from_json(body | times)

    sid = "A" * 42 + "E"
    put = _core.op_replace(sid, {"a": 1, "b": [True, {"c": None}]}, 3, None).written
    merge = _core.op_merge(sid, {"p": {"x": None, "y": [1]}}, '"3", "7"').written
    clear = _core.op_merge(sid, None, 2).written
    assert put is not None and merge is not None and clear is not None
    assert _core.op_merge(sid, {}, "*").written is None and _core.op_replace(sid, {}, None, None).written is None
    Verdict = _core.Verdict
    cases = [
        (put, session(3, {"old": 1}), Verdict.RESEND),
        (put, session(4, {"b": [True, {"c": None}], "a": 1}), Verdict.LANDED),  # members in any order
        (put, session(4, {"a": 1, "b": [1, {"c": None}]}), Verdict.PRECONDITION_FAILED),  # 1 is not true
        (put, session(4, {"a": 1.0, "b": [True, {"c": None}]}), Verdict.LANDED),  # 1.0 is 1
        (put, session(5, {"a": 1, "b": [True, {"c": None}]}), Verdict.PRECONDITION_FAILED),
        (put, None, Verdict.NOT_FOUND),
        (merge, session(4, {"p": {"y": [1]}, "q": 0}), Verdict.LANDED),
        (merge, session(8, {"p": {"y": [1], "x": 0}}), Verdict.PRECONDITION_FAILED),
        (merge, session(7, {"p": {"x": 0}}), Verdict.RESEND),
        (merge, session(5, {"p": {"y": [1]}}), Verdict.PRECONDITION_FAILED),
        (clear, session(3, {}), Verdict.LANDED),
        (clear, session(3, {"a": 1}), Verdict.PRECONDITION_FAILED),
        (clear, session(2, {"a": 1}), Verdict.RESEND),
    ]
    for written, read, want in cases:
        assert _core.judge(written, read) is want, (written, read, want)
    assert _core.merge_patch({"a": {"b": 1}, "c": 2}, {"a": {"b": None, "d": [None]}, "c": None, "e": 5}) == {
        "a": {"d": [None]},
        "e": 5,
    }


def client_get(base_url: str, session_id: str) -> ss.Session:
    with Client(base_url) as client:
        return client.get(session_id)


def test_calls_never_show_ids_in_their_repr() -> None:
    session_id = "A" * 42 + "E"
    calls: list[_core.Call[Any]] = [
        _core.op_get(session_id, True),
        _core.op_replace(session_id, {"secret": session_id}, 3, None),
        _core.op_delete(session_id),
        _core.op_revoke_all("someone", session_id),
    ]
    for call in calls:
        shown = repr(call)
        assert session_id not in shown and call.path not in shown and call.route in shown
    assert calls[1].retry_safe is False and _core.op_replace(session_id, {}, "*", None).retry_safe is True
    assert session_id not in repr(calls[1].written)


# --- the async client --------------------------------------------------------------


def test_async_client_walks_a_session(base_url: str, subject: str) -> None:
    async def walk() -> None:
        async with AsyncClient(base_url) as client:
            assert await client.health()
            issued = await client.create({"a": {"y": 1, "x": 2}}, subject=subject)
            got = await client.get(issued.id, touch=True)
            assert list(got.data["a"]) == ["y", "x"]
            replaced = await client.replace(issued.id, {"b": 1}, if_match=got)
            with pytest.raises(ss.PreconditionFailed):
                await client.merge(issued.id, {"c": 1}, if_match=got)
            merged = await client.merge(issued.id, {"c": 1}, if_match=replaced)
            assert merged.data == {"b": 1, "c": 1}
            await client.touch(issued.id)
            rotated = await client.rotate(issued.id)
            assert [s.handle async for s in client.iter_sessions(subject)] == [rotated.handle]
            page = await client.list_sessions(subject, limit=1)
            await client.revoke(subject, page.sessions[0].handle)
            assert await client.revoke_all(subject) == 0
            await client.delete(rotated.id)
            await client.delete(rotated.id)  # gone already: success
            with pytest.raises(ss.NotFound):
                await client.get(rotated.id)

    asyncio.run(walk())


def test_async_client_retries_503(base_url: str) -> None:
    async def run() -> AsyncFaulty:
        transport = AsyncFaulty(problem(503, "unavailable", **{"retry-after": "0"}))
        async with AsyncClient(base_url, transport=transport) as client:
            issued = await client.create({"a": 1})
            assert (await client.get(issued.id)).data == {"a": 1}
        return transport

    transport = asyncio.run(run())
    assert transport.seen[0].headers["idempotency-key"] == transport.seen[1].headers["idempotency-key"]
