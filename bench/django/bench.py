"""Django session engines side by side: a page view through SessionMiddleware.

Run by ``scripts/bench django``, which starts the service (``scripts/run --in-memory``)
and sets SERVICE_URL, SERVICE_SESSIONS_TABLE and AWS_ENDPOINT_URL_DYNAMODB (the
service's DynamoDB Local, which every backend here uses). Backends:

* ours, ``session_service.django``, twice: with direct reads
  (``SESSION_SERVICE_SESSIONS_TABLE``: a page view's load is one ``GetItem``) and
  without (HTTP only: ``GET /sessions/{id}?touch=true``);
* the peers from PyPI: django-dynamodb-sessions-mwas 0.7 (boto3) and
  django-dynamodb2-sessions 0.3 (boto 2); a peer that cannot create, load and delete
  a session on DynamoDB Local (:func:`probe`) is left out, and the boto3 baseline
  stands in for it;
* the baseline, boto3_sessions.py: one ``GetItem`` per load, one ``PutItem`` per save.

Each backend runs the workload (:func:`workload`) with Django's test client, in this
one process: a login (``cycle_key``), PAGE_VIEWS page views reading the session,
every WRITE_EVERY-th one changing a key instead, a ``cycle_key``, a logout
(``flush``). First one untimed round per backend that counts the requests each
read-only page view sends (DynamoDB requests by their ``X-Amz-Target``, HTTP requests
to the service), then ROUNDS (BENCH_ROUNDS, default 5) timed rounds, round-robin
over the backends (the first backend moving on by one each round) so that the
machine's noise hits all alike.
The time of a read-only page view is that of the whole test-client request.

Prints Markdown for BENCHMARKS.md; exits 1 when the workload fails for ours.
"""

from __future__ import annotations

import collections
import collections.abc
import http.client
import importlib
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

import boto3  # noqa: E402
import django  # noqa: E402
import httpx  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

PAGE_VIEWS = 200
WRITE_EVERY = 10
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
#: The goal (issue 29): ours with direct reads within this factor of the faster peer.
GOAL = 1.1
COOKIE = settings.SESSION_COOKIE_NAME


@dataclass
class Backend:
    """One row of the table: an engine and the settings it runs with."""

    name: str
    engine: str
    kind: str  # "ours", "peer" or "baseline"
    settings: dict[str, Any] = field(default_factory=dict)
    #: Why it was left out (set up or failed), or None while it runs.
    error: str | None = None
    client: Client = field(default_factory=Client)
    times: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: Per read-only page view of the counting round: (DynamoDB operations, service requests).
    seen: list[tuple[list[str], list[str]]] = field(default_factory=list)

    def store(self) -> Any:
        """A SessionStore of this engine (use while its settings are on)."""
        return importlib.import_module(self.engine).SessionStore()


# --- counting what a page view sends -------------------------------------------------


@contextmanager
def wiretap(service_port: int | None) -> Iterator[tuple[list[str], list[str]]]:
    """Records the requests this process sends while it lasts: the operation of each
    DynamoDB request (its ``X-Amz-Target``) and the method of each HTTP request to the
    service. Taps http.client, which botocore (through urllib3) and boto 2 send with,
    and httpx, which the session service's client sends with."""
    dynamodb: list[str] = []
    service: list[str] = []
    put_request = http.client.HTTPConnection.putrequest
    put_header = http.client.HTTPConnection.putheader
    send = httpx.Client.send

    def putrequest(self: http.client.HTTPConnection, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if self.port == service_port:
            service.append(method)
        return put_request(self, method, url, *args, **kwargs)

    def putheader(self: http.client.HTTPConnection, header: Any, *values: Any) -> Any:
        name = header.decode() if isinstance(header, bytes) else str(header)
        if name.lower() == "x-amz-target":
            value = values[0].decode() if isinstance(values[0], bytes) else str(values[0])
            dynamodb.append(value.rsplit(".", 1)[-1])
        return put_header(self, header, *values)

    def httpx_send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> Any:
        if "x-amz-target" in request.headers:
            dynamodb.append(request.headers["x-amz-target"].rsplit(".", 1)[-1])
        elif request.url.port == service_port:
            service.append(request.method + (" ?" + request.url.query.decode() if request.url.query else ""))
        return send(self, request, **kwargs)

    http.client.HTTPConnection.putrequest = putrequest  # type: ignore[method-assign]
    http.client.HTTPConnection.putheader = putheader  # type: ignore[method-assign]
    httpx.Client.send = httpx_send  # type: ignore[method-assign]
    try:
        yield dynamodb, service
    finally:
        http.client.HTTPConnection.putrequest = put_request  # type: ignore[method-assign]
        http.client.HTTPConnection.putheader = put_header  # type: ignore[method-assign]
        httpx.Client.send = send  # type: ignore[method-assign]


# --- the workload --------------------------------------------------------------------


def session_key(client: Client) -> str:
    """The session key in the test client's cookie ("" when none or deleted)."""
    morsel = client.cookies.get(COOKIE)
    return morsel.value if morsel is not None else ""


def loads(client: Client, key: str) -> bool:
    """Whether a page view with ``key`` in its cookie gets the session's data (the
    client's cookie is left as it was)."""
    kept = session_key(client)
    client.cookies[COOKIE] = key
    try:
        return bool(client.get("/read/").json()["user"] == "alice")
    finally:
        client.cookies[COOKIE] = kept


def workload(backend: Backend, *, count: bool, service_port: int | None) -> None:
    """One run of the workload: times each read-only page view into ``backend.times``
    (or, with ``count``, records what it sends into ``backend.seen``) and its failed
    checks into ``backend.failures``."""
    client = backend.client
    client.cookies.clear()

    def check(holds: Callable[[], bool], what: str) -> None:
        try:
            failure = None if holds() else what
        except Exception as error:  # noqa: BLE001 (a check that raises fails)
            failure = f"{what} ({type(error).__name__} raised)"
        if failure is not None and failure not in backend.failures:
            backend.failures.append(failure)

    answer = client.post("/login/").json()
    check(lambda: answer == {"user": "alice", "counter": 0} and session_key(client) != "", "login sets a session")
    counter = 0
    for view in range(1, PAGE_VIEWS + 1):
        if view % WRITE_EVERY == 0:
            counter += 1
            answer = client.post("/write/").json()
            check(lambda: answer["counter"] == counter, "a changed key is read back")
            continue
        if count:
            with wiretap(service_port) as (dynamodb, service):
                response = client.get("/read/")
            backend.seen.append((dynamodb, service))
        else:
            started = time.perf_counter_ns()
            response = client.get("/read/")
            backend.times.append(time.perf_counter_ns() - started)
        answer = response.json()
        check(lambda: answer == {"user": "alice", "counter": counter}, "a page view reads what was last written")
    old = session_key(client)
    answer = client.post("/cycle/").json()
    new = session_key(client)
    check(lambda: new not in ("", old), "cycle_key gives a new key")
    check(lambda: answer == {"user": "alice", "counter": counter}, "cycle_key keeps the data")
    check(lambda: loads(client, new), "the new key loads the data")
    check(lambda: not loads(client, old), "after cycle_key the old key no longer loads")
    client.post("/logout/")
    check(lambda: session_key(client) == "", "flush deletes the cookie")
    check(lambda: not loads(client, new), "after flush the old key no longer loads")


def run(backends: list[Backend], service_port: int | None) -> None:
    """The counting round, then ROUNDS timed rounds, round-robin."""
    for round_ in range(ROUNDS + 1):
        live = [backend for backend in backends if backend.error is None]
        shift = round_ % len(live) if live else 0
        for backend in live[shift:] + live[:shift]:
            try:
                with override_settings(SESSION_ENGINE=backend.engine, **backend.settings):
                    workload(backend, count=round_ == 0, service_port=service_port)
            except Exception as error:  # noqa: BLE001 (a backend failing is a result)
                backend.error = f"failed: {type(error).__name__}: {error}"[:200]
                backend.failures.append(backend.error)


# --- the backends ----------------------------------------------------------------------


def create_table(name: str) -> None:
    """The table the peers and the baseline share, keyed by ``session_key``."""
    dynamodb = boto3.client("dynamodb", endpoint_url=settings.DYNAMODB_ENDPOINT)
    try:
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "session_key", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "session_key", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except dynamodb.exceptions.ResourceInUseException:
        pass
    dynamodb.get_waiter("table_exists").wait(TableName=name)


def dynamodb2_connection() -> Any:
    """A boto 2 connection to DynamoDB Local for django-dynamodb2-sessions. boto 2.49
    imports ABCs from ``collections``, which Python 3.10 removed: they are put back
    first (aliases of ``collections.abc``'s)."""
    for name in ("Mapping", "MutableMapping", "Sequence", "MutableSequence", "Set", "MutableSet", "Iterable", "Callable"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    from boto.dynamodb2.layer1 import DynamoDBConnection

    endpoint = urlsplit(settings.DYNAMODB_ENDPOINT)
    return DynamoDBConnection(host=endpoint.hostname, port=endpoint.port, is_secure=endpoint.scheme == "https")


def probe(row: Backend) -> None:
    """Imports the engine and creates, loads and deletes a session with it: raises when
    it cannot. A plain ``save()`` of a new session is tried too; its failure is one of
    the row's failed checks, not a reason to leave it out."""
    store = row.store()
    store["probe"] = 1
    store.create()
    loaded = type(store)(store.session_key).load()
    store.delete()
    if loaded != {"probe": 1}:
        raise RuntimeError(f"a session created loads as {loaded!r}")
    try:
        store = row.store()
        store["probe"] = 1
        store.save()
        store.delete()
    except Exception as error:  # noqa: BLE001
        row.failures.append(f"save() of a new session raises {type(error).__name__}")


def backends() -> list[Backend]:
    """Every row, each checked to reach its store (a peer that does not is left out)."""
    create_table(settings.DYNAMODB_SESSIONS_TABLE_NAME)
    rows = [
        Backend(
            "session_service.django, direct reads",
            "session_service.django",
            "ours",
            {"SESSION_SERVICE_SESSIONS_TABLE": os.environ["SERVICE_SESSIONS_TABLE"]},
        ),
        Backend("session_service.django, HTTP only", "session_service.django", "ours"),
        Backend("django-dynamodb-sessions-mwas", "dynamodb_sessions.backends.dynamodb", "peer"),
        Backend("django-dynamodb2-sessions", "dynamodb2_sessions.backends.dynamodb", "peer"),
        Backend("boto3 GetItem/PutItem (baseline)", "boto3_sessions", "baseline"),
    ]
    for row in rows:
        try:
            if row.engine.startswith("dynamodb2_sessions"):
                row.settings["DYNAMODB_CONNECTION"] = dynamodb2_connection()
            with override_settings(SESSION_ENGINE=row.engine, **row.settings):
                probe(row)
        except Exception as error:  # noqa: BLE001
            row.error = f"not run: {type(error).__name__}: {error}"[:200]
    return rows


# --- the report ----------------------------------------------------------------------


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def per_view(counts: list[list[str]]) -> str:
    """Requests per read-only page view: their number (the mean, when views differ)
    and the operations of the commonest view."""
    if not counts:
        return "–"
    numbers = [len(ops) for ops in counts]
    mean = statistics.mean(numbers)
    common = collections.Counter(" + ".join(ops) for ops in counts).most_common(1)[0][0]
    number = str(numbers[0]) if len(set(numbers)) == 1 else f"{mean:.2f}"
    return f"{number} ({common})" if common else number


def report(rows: list[Backend]) -> bool:
    """Prints the Markdown; True when ours passed every check."""
    def median(row: Backend) -> float:
        return statistics.median(row.times) / 1000

    timed = [row for row in rows if row.error is None and row.times]
    peers = [row for row in timed if row.kind == "peer"]
    baseline = next((row for row in timed if row.kind == "baseline"), None)
    # The boto3 baseline stands in for a peer left out.
    stand_in = baseline is not None and len(peers) < sum(row.kind == "peer" for row in rows)
    contenders = peers + [baseline] if stand_in and baseline is not None else peers
    reference = min(contenders, key=median) if contenders else None
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    print("### Django session engines through SessionMiddleware")
    print()
    print(
        f"Command: `scripts/bench django` ({today}, DynamoDB Local {os.environ.get('BENCH_DYNAMODB_LOCAL', '?')}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, Django {version('Django')}, "
        f"session-service {version('session-service')}, django-dynamodb-sessions-mwas "
        f"{version('django-dynamodb-sessions-mwas')}, django-dynamodb2-sessions {version('django-dynamodb2-sessions')} "
        f"(boto {version('boto')}), boto3 {version('boto3')})"
    )
    print()
    print(
        f"Per backend and round, with Django's test client: a login (`cycle_key`), {PAGE_VIEWS} page views "
        f"reading the session (every {WRITE_EVERY}th changing a key instead), `cycle_key`, `flush`. "
        f"{ROUNDS} rounds, round-robin over the backends in one process; times are of the whole "
        "test-client request of each read-only page view. Requests are counted over one more round, "
        "untimed, run first: DynamoDB requests sent by this process (by operation) and HTTP requests to "
        "the service (which makes DynamoDB requests of its own), per read-only page view."
    )
    print()
    print(
        "| Backend | median µs | p90 µs | × the faster peer | × baseline | "
        "DynamoDB requests | HTTP requests | checks |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- | --- | --- |")
    for row in rows:
        cells = ["–"] * 4
        if row.times and row.error is None:
            cells[:2] = [f"{median(row):.0f}", f"{statistics.quantiles(row.times, n=10)[-1] / 1000:.0f}"]
            for column, against in ((2, reference), (3, baseline)):
                if against is not None:
                    cells[column] = f"{median(row) / median(against):.2f}"
        dynamodb = per_view([ops for ops, _ in row.seen])
        service = per_view([ops for _, ops in row.seen])
        checks = "held" if not row.failures and row.error is None else "; ".join(row.failures) or row.error
        print(f"| {row.name} | {' | '.join(cells)} | {dynamodb} | {service} | {checks} |")
    print()
    if reference is not None:
        among = ", ".join(row.name for row in contenders)
        print(
            f"The faster peer: {reference.name} ({median(reference):.0f} µs), of {among}"
            + (" (the baseline standing in for the peer left out)." if stand_in else ".")
        )
    direct = rows[0]
    if direct.error is None and direct.times and reference is not None:
        ratio = median(direct) / median(reference)
        seen = direct.seen
        one_get = bool(seen) and all(ops == ["GetItem"] and not http for ops, http in seen)
        print(
            f"Direct reads: median {median(direct):.0f} µs, {ratio:.2f}× {reference.name} "
            f"({'within' if ratio <= GOAL else 'not within'} {GOAL}×); each read-only page view "
            f"{'one GetItem and no HTTP request' if one_get else 'NOT one GetItem without HTTP (see the table)'}."
        )
    if rows[1].error is None and rows[1].times and direct.error is None and direct.times:
        print(f"Direct reads against HTTP only: {median(direct) / median(rows[1]):.2f}× the median.")
    notes = [f"{row.name}: {row.error}" for row in rows if row.error]
    if any(row.engine.startswith("dynamodb2_sessions") and "ItemNotFound" in (row.error or "") for row in rows):
        notes.append(
            "django-dynamodb2-sessions 0.3 (2013) expects boto 2's `Table.get_item` to answer a missing item "
            "with an empty one; boto 2.49 (boto 2 runs on Python 3 from 2.32 on) raises `ItemNotFound`, so "
            "Django's check for an unused new key (`exists`) raises and no session can be created."
        )
    if any(row.engine.startswith("dynamodb2_sessions") and row.error is None for row in rows):
        notes.append(
            "django-dynamodb2-sessions runs on boto 2.49, which needs `collections.Mapping` and the like: "
            "the harness aliases them to `collections.abc`'s (removed in Python 3.10)."
        )
    notes.append(
        "The service runs as `scripts/run --in-memory` starts it (`cargo lambda watch`, a debug build), "
        "on the same DynamoDB Local as the peers."
    )
    print()
    for note in notes:
        print(f"- {note}")
    return all(not row.failures and row.error is None for row in rows if row.kind == "ours")


def main() -> int:
    rows = backends()
    run(rows, urlsplit(settings.SESSION_SERVICE_URL).port)
    for row in rows:
        for failure in row.failures:
            print(f"{row.name}: {failure}", file=sys.stderr)
    return 0 if report(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
