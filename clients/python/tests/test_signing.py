"""SigV4: which URLs are signed for what, AWS's own test-suite vectors, and what the client sends."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from unittest import mock

import httpx
import pytest
from botocore.credentials import Credentials

from session_service import (
    Client,
    ConfigurationError,
    NotFound,
    SigningConfig,
    signing_for_url,
)
from session_service.signing import sign

VECTORS = json.loads((Path(__file__).parent / "fixtures" / "sigv4_vectors.json").read_text(encoding="utf-8"))


def test_lambda_function_urls_sign_for_lambda() -> None:
    url = "https://abcdefghijklmnop.lambda-url.eu-central-1.on.aws/"
    assert signing_for_url(url, environ={}) == SigningConfig("lambda", "eu-central-1")


def test_api_gateway_urls_sign_for_execute_api() -> None:
    url = "https://a1b2c3d4e5.execute-api.us-west-2.amazonaws.com/prod"
    assert signing_for_url(url, environ={}) == SigningConfig("execute-api", "us-west-2")


def test_plain_http_is_unsigned() -> None:
    for url in (
        "http://127.0.0.1:9000/lambda-url/api",
        "http://localhost:9000/lambda-url/api",
        "http://[::1]:9000/lambda-url/api",
        "http://sessions.internal/api",
    ):
        assert signing_for_url(url, environ={}) is None


def test_custom_domains_sign_for_execute_api_in_the_given_region() -> None:
    url = "https://sessions.example.com"
    with pytest.raises(ConfigurationError):
        signing_for_url(url, environ={})
    assert signing_for_url(url, environ={"AWS_REGION": "ap-south-1"}) == SigningConfig("execute-api", "ap-south-1")
    assert signing_for_url(url, region="eu-west-1", environ={"AWS_REGION": "x"}) == SigningConfig(
        "execute-api", "eu-west-1"
    )


def test_overrides() -> None:
    url = "https://a1b2c3d4e5.execute-api.us-west-2.amazonaws.com"
    assert signing_for_url(url, signing_service=False) is None
    assert signing_for_url(url, signing_service="lambda", region="eu-west-1") == SigningConfig("lambda", "eu-west-1")
    assert signing_for_url("http://127.0.0.1:9000", signing_service="execute-api", region="us-east-1") == (
        SigningConfig("execute-api", "us-east-1")
    )


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[case["name"] for case in VECTORS["cases"]])
def test_aws_sigv4_test_suite(case: dict) -> None:
    credentials = Credentials(VECTORS["credentials"]["access_key"], VECTORS["credentials"]["secret_key"])
    now = datetime.datetime.strptime(VECTORS["timestamp"], "%Y%m%dT%H%M%SZ")
    with mock.patch("botocore.auth.get_current_datetime", return_value=now):
        headers = sign(
            case["method"],
            case["url"],
            case["headers"],
            case["body"].encode(),
            credentials=credentials,
            config=SigningConfig(VECTORS["service"], VECTORS["region"]),
        )
    assert headers["X-Amz-Date"] == VECTORS["timestamp"]
    assert headers["Authorization"] == case["authorization"]


@pytest.mark.parametrize(
    "url, service, region",
    [
        ("https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/prod", "execute-api", "eu-west-1"),
        ("https://q7xkd2m4vjz6hbn3c5wt8rypfg2lse4a.lambda-url.us-east-2.on.aws/prod", "lambda", "us-east-2"),
    ],
    ids=["http-api", "function-url"],
)
def test_the_client_signs_the_bytes_it_sends_with_the_session_token(url: str, service: str, region: str) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "PUT":
            return httpx.Response(404, json={"type": "urn:session-service:problem:not-found", "title": "Not found"})
        return httpx.Response(200, json={"sessions": [], "next_cursor": None})

    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token="TOKEN/+=")
    with Client(url, credentials=credentials, transport=httpx.MockTransport(answer)) as client:
        client.list_sessions("user/42 ü", limit=5, cursor="a b/c")
        with pytest.raises(NotFound):
            client.replace("A" * 43, {"ü": "ß", "z": 1}, if_match=3)
    listing, put = seen
    assert listing.url.raw_path == b"/prod/subjects/user%2F42%20%C3%BC/sessions?limit=5&cursor=a%20b%2Fc"
    for request in seen:
        assert request.headers["x-amz-security-token"] == "TOKEN/+="
        assert request.headers["authorization"].startswith(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" + request.headers["x-amz-date"][:8] + f"/{region}/{service}/"
        )
    assert "if-match" in put.headers["authorization"] and "x-amz-security-token" in put.headers["authorization"]
    # Re-sign what went on the wire, at the same instant: the same signature.
    now = datetime.datetime.strptime(put.headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
    signed_names = put.headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    wire = {name: put.headers[name] for name in signed_names if name not in ("x-amz-date", "x-amz-security-token")}
    with mock.patch("botocore.auth.get_current_datetime", return_value=now):
        again = sign(
            "PUT", str(put.url), wire, put.content, credentials=credentials,
            config=SigningConfig(service, region),
        )
    assert again["Authorization"] == put.headers["authorization"]
    assert put.content == '{"data":{"ü":"ß","z":1}}'.encode()
