"""The client tests run against a live service named by ``SESSION_SERVICE_URL``
(``scripts/run``'s URL, say). Without it, or when it does not answer, the run
fails: these tests never skip silently.

The direct-read tests also need the service's sessions table: its name in
``SESSION_SERVICE_SESSIONS_TABLE`` and its DynamoDB (``scripts/run``'s DynamoDB
Local) in ``AWS_ENDPOINT_URL_DYNAMODB``, with credentials and a region botocore
accepts (any, for DynamoDB Local). Without them those tests fail, saying so."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from session_service import Client, direct


def _service_url() -> str:
    return os.environ.get("SESSION_SERVICE_URL", "").rstrip("/")


def pytest_sessionstart(session: pytest.Session) -> None:
    url = _service_url()
    if not url:
        pytest.exit("SESSION_SERVICE_URL is not set: these tests need a running session service", returncode=3)
    try:
        answer = httpx.get(f"{url}/health", timeout=10)
    except httpx.HTTPError as error:
        pytest.exit(f"the session service at {url} does not answer: {error}", returncode=3)
    if answer.status_code != 200:
        pytest.exit(f"the session service at {url} answered /health with {answer.status_code}", returncode=3)


@pytest.fixture(scope="session")
def base_url() -> str:
    return _service_url()


@pytest.fixture
def client(base_url: str):
    with Client(base_url) as c:
        yield c


@pytest.fixture
def subject() -> str:
    """A subject of its own for each test (with characters that need percent-encoding)."""
    return f"pytest/{uuid.uuid4().hex[:10]} ü?#%"


@pytest.fixture(scope="session")
def sessions_table() -> str:
    """The service's sessions table (its DynamoDB must be a local one: tests write to it)."""
    table = os.environ.get("SESSION_SERVICE_SESSIONS_TABLE", "")
    if not table:
        pytest.fail(
            "SESSION_SERVICE_SESSIONS_TABLE is not set: the direct-read tests need the service's sessions "
            "table (scripts/run's is `sessions`)"
        )
    if not os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"):
        pytest.fail(
            "AWS_ENDPOINT_URL_DYNAMODB is not set: the direct-read tests read and alter the sessions table "
            "of the service's DynamoDB Local (scripts/run's), never a real one"
        )
    return table


@pytest.fixture(scope="session")
def dynamodb(sessions_table: str):
    """A botocore DynamoDB client for the service's DynamoDB Local."""
    return direct.new_dynamodb_client()
