"""The Django engine's client signs for the service its ``SESSION_SERVICE_URL`` names:
``lambda`` for a function URL (``FrontDoor=FunctionUrl``), ``execute-api`` for the HTTP
API, nothing for a local ``http://`` URL."""

from __future__ import annotations

import pytest
from django.conf import settings

if not settings.configured:
    settings.configure()

from django.test import override_settings  # noqa: E402

from session_service import django as engine  # noqa: E402
from session_service.signing import SigningConfig  # noqa: E402


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://q7xkd2m4vjz6hbn3c5wt8rypfg2lse4a.lambda-url.eu-west-1.on.aws", SigningConfig("lambda", "eu-west-1")),
        ("https://a1b2c3d4e5.execute-api.us-east-2.amazonaws.com", SigningConfig("execute-api", "us-east-2")),
        ("http://127.0.0.1:9000/lambda-url/api", None),
    ],
    ids=["function-url", "http-api", "local"],
)
def test_the_engine_signs_for_the_service_its_url_names(
    url: str, expected: SigningConfig | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Credentials of the environment, as a deployed backend's role would provide.
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    with override_settings(SESSION_SERVICE_URL=url):
        assert engine.get_client().signing == expected
