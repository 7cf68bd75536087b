"""Smoke test of a deployed stack through the Python client (clients/python): SigV4-signed
requests through create, get, rotate, list and delete, and unsigned ones refused.
Run it through scripts/smoke, which installs the client into .venv/clients."""

import os
import sys
import uuid

import httpx

from session_service import Client, ConfigurationError, NotFound, SessionServiceError
from session_service.signing import SigningConfig, default_credentials, sign

API_URL = os.environ.get("API_URL", "").rstrip("/")
if not API_URL:
    sys.exit(
        "usage: API_URL=https://<api-id>.execute-api.<region>.amazonaws.com scripts/smoke\n"
        "   or: API_URL=https://<url-id>.lambda-url.<region>.on.aws scripts/smoke  (FrontDoor=FunctionUrl)"
    )
try:
    client = Client(API_URL, timeout=30)
except ConfigurationError as error:
    sys.exit(f"{error}; the API requires IAM authorization")

failures = 0


def check(step, condition, detail=""):
    global failures
    print(("ok   " if condition else "FAIL ") + step + ("" if condition else f"  {detail}"))
    failures += 0 if condition else 1
    return condition


def attempt(call):
    """(call(), None), or (None, the problem it raised)."""
    try:
        return call(), None
    except SessionServiceError as error:
        return None, error


def raw_get(path):
    """A GET signed as the client signs it, for checks on the raw answer."""
    url = API_URL + path
    headers = {}
    if client.signing is not None:
        headers = sign("GET", url, {}, b"", credentials=default_credentials(), config=client.signing)
    return httpx.get(url, headers=headers, timeout=30)


subject = f"smoke-{uuid.uuid4().hex[:12]}"
if client.signing is None:
    print(f"{API_URL}: unsigned (a local service)")
else:
    print(f"{API_URL}: SigV4 for {client.signing.service} in {client.signing.region}")
healthy, error = attempt(client.health)
check("GET /health -> 200", healthy is True, error)
if API_URL.startswith("https://"):
    status = httpx.get(f"{API_URL}/health", timeout=30).status_code
    check("unsigned GET /health -> 403 (IAM authorization on)", status == 403, status)
if client.signing is not None and client.signing.service in ("lambda", "execute-api"):
    # A signature for the other front door's service is refused: the host decides.
    other = "execute-api" if client.signing.service == "lambda" else "lambda"
    url = f"{API_URL}/health"
    headers = sign("GET", url, {}, b"", credentials=default_credentials(), config=SigningConfig(other, client.signing.region))
    status = httpx.get(url, headers=headers, timeout=30).status_code
    check(f"GET /health signed for {other} -> 403", status == 403, status)

created, error = attempt(lambda: client.create({"smoke": True}, subject=subject))
if not check("POST /sessions -> 201", created is not None and len(created.id) == 43, error):
    sys.exit(1)
check('  ETag "1"', created.etag == '"1"', created.etag)

got, error = attempt(lambda: client.get(created.id))
same = got is not None and (got.handle, got.data, got.subject, got.version) == (
    created.handle, created.data, created.subject, created.version
)
check("GET /sessions/{id} -> 200, same session, no id in it", same and not hasattr(got, "id"), error or got)

rotated, error = attempt(lambda: client.rotate(created.id))
ok = check("POST /sessions/{id}/rotate -> 201, new id", rotated is not None and rotated.id != created.id, error)
new_id = rotated.id if ok else created.id

try:
    client.get(created.id)
    check("GET old id -> 404 not-found problem", False, "the old id still reads")
except NotFound as error:
    check("GET old id -> 404 not-found problem", error.type == "urn:session-service:problem:not-found", repr(error))

listed, error = attempt(lambda: list(client.iter_sessions(subject)))
by_handle = listed is not None and [s.handle for s in listed] == [rotated.handle if ok else created.handle]
check("GET /subjects/{subject}/sessions -> 1 session, by handle", by_handle, error or listed)
answer = raw_get(f"/subjects/{subject}/sessions")
rows = answer.json().get("sessions", []) if answer.status_code == 200 else []
handles_only = bool(rows) and all("handle" in row and "id" not in row for row in rows)
check("  listing rows carry a handle and no id", handles_only, answer.text)

_, error = attempt(lambda: client.delete(new_id))
check("DELETE /sessions/{new id} -> 204", error is None, error)
try:
    client.get(new_id)
    check("GET deleted id -> 404", False, "the deleted id still reads")
except NotFound:
    check("GET deleted id -> 404", True)

client.close()
print(f"{failures} failure(s)")
sys.exit(1 if failures else 0)
