"""The client tests run against a live service named by ``SESSION_SERVICE_URL``
(``scripts/run``'s URL, say). Without it, or when it does not answer, the run
fails: these tests never skip silently."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from session_service import Client


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
