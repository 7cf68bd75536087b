"""Smoke test of a deployed stack: SigV4-signed requests through create, get,
rotate and delete. Run it through scripts/smoke, which provides botocore."""

import json
import os
import re
import sys
import urllib.error
import urllib.request
import uuid

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.session import Session

API_URL = os.environ.get("API_URL", "").rstrip("/")
if not API_URL:
    sys.exit("usage: API_URL=https://<api-id>.execute-api.<region>.amazonaws.com scripts/smoke")
match = re.search(r"execute-api\.([a-z0-9-]+)\.", API_URL)
REGION = os.environ.get("AWS_REGION") or (match.group(1) if match else "us-east-1")
session = Session()
CREDENTIALS = session.get_credentials()
if CREDENTIALS is None:
    sys.exit("no AWS credentials found (environment, profile or SSO); the API requires IAM authorization")


def call(method, path, body=None, signed=True):
    """One request; returns (status, headers, parsed JSON or None)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"} if data is not None else {}
    request = AWSRequest(method=method, url=API_URL + path, data=data, headers=headers)
    if signed:
        SigV4Auth(CREDENTIALS.get_frozen_credentials(), "execute-api", REGION).add_auth(request)
    prepared = urllib.request.Request(API_URL + path, data=data, method=method, headers=dict(request.headers))
    try:
        with urllib.request.urlopen(prepared, timeout=30) as response:
            status, reply_headers, text = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, reply_headers, text = error.code, error.headers, error.read()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    return status, reply_headers, parsed


failures = 0


def check(step, condition, detail=""):
    global failures
    print(("ok   " if condition else "FAIL ") + step + ("" if condition else f"  {detail}"))
    failures += 0 if condition else 1
    return condition


subject = f"smoke-{uuid.uuid4().hex[:12]}"
status, _, _ = call("GET", "/health")
check("GET /health -> 200", status == 200, status)
if API_URL.startswith("https://"):
    status, _, _ = call("GET", "/health", signed=False)
    check("unsigned GET /health -> 403 (IAM authorization on)", status == 403, status)

status, headers, created = call("POST", "/sessions", {"subject": subject, "data": {"smoke": True}})
if not check("POST /sessions -> 201", status == 201 and created and "id" in created, (status, created)):
    sys.exit(1)
session_id = created["id"]
check('  ETag "1"', headers.get("etag") == '"1"', headers.get("etag"))

status, _, got = call("GET", f"/sessions/{session_id}")
same = got is not None and {k: v for k, v in created.items() if k != "id"} == got
check("GET /sessions/{id} -> 200, same session, no id in it", status == 200 and same, (status, got))

status, _, rotated = call("POST", f"/sessions/{session_id}/rotate", {})
ok = check("POST /sessions/{id}/rotate -> 201, new id", status == 201 and rotated and rotated.get("id") != session_id, (status, rotated))
new_id = rotated["id"] if ok else session_id

status, headers, problem = call("GET", f"/sessions/{session_id}")
check("GET old id -> 404 problem+json", status == 404 and headers.get("content-type") == "application/problem+json", status)

status, _, listed = call("GET", f"/subjects/{subject}/sessions")
sessions = listed.get("sessions", []) if isinstance(listed, dict) else []
handles_only = all("handle" in s and "id" not in s for s in sessions)
check("GET /subjects/{subject}/sessions -> 1 session, by handle", status == 200 and len(sessions) == 1 and handles_only, (status, listed))

status, _, _ = call("DELETE", f"/sessions/{new_id}")
check("DELETE /sessions/{new id} -> 204", status == 204, status)
status, _, _ = call("GET", f"/sessions/{new_id}")
check("GET deleted id -> 404", status == 404, status)

print(f"{failures} failure(s)")
sys.exit(1 if failures else 0)
