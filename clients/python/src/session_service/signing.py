"""SigV4 signing: which service and region a URL needs, and the signing itself.

The URL decides (:func:`signing_for_url`):

* ``https://<id>.lambda-url.<region>.on.aws``: service ``lambda``;
* ``https://<id>.execute-api.<region>.amazonaws.com``: service ``execute-api``;
* any ``http://`` URL (``scripts/run``'s local service): unsigned;
* any other ``https://`` host (a custom domain in front of API Gateway):
  ``execute-api``, with the region from the argument or ``AWS_REGION``
  (``AWS_DEFAULT_REGION``).

:func:`sign` signs the exact bytes that are sent, with botocore's
``SigV4Auth`` (so ``x-amz-security-token`` is added for temporary credentials).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from .errors import ConfigurationError

_LAMBDA_URL = re.compile(r"^[^.]+\.lambda-url\.([a-z0-9-]+)\.on\.aws$")
_EXECUTE_API = re.compile(r"^[^.]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


@dataclass(frozen=True)
class SigningConfig:
    """Sign for ``service`` in ``region``."""

    service: str
    region: str


def signing_for_url(
    url: str,
    *,
    signing_service: str | Literal[False] | None = None,
    region: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> SigningConfig | None:
    """How to sign requests to ``url``: a :class:`SigningConfig`, or None for unsigned.

    ``signing_service`` overrides the choice (``False``: never sign); ``region``
    overrides the region read from the host or the environment.
    """
    env = os.environ if environ is None else environ
    if signing_service is False:
        return None
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    host_region: str | None = None
    service: str | None = signing_service
    if match := _LAMBDA_URL.match(host):
        host_region = match.group(1)
        service = service or "lambda"
    elif match := _EXECUTE_API.match(host):
        host_region = match.group(1)
        service = service or "execute-api"
    elif service is None:
        if parts.scheme == "http":
            return None
        if parts.scheme != "https":
            raise ConfigurationError(f"unsupported URL scheme {parts.scheme!r}")
        service = "execute-api"
    chosen = region or host_region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not chosen:
        raise ConfigurationError(
            f"cannot tell the AWS region for {host!r}: pass region= or set AWS_REGION"
        )
    return SigningConfig(service=service, region=chosen)


def default_credentials() -> Any:
    """The default AWS credentials chain's credentials (environment, profile, SSO, role)."""
    from botocore.session import Session as BotocoreSession

    credentials = BotocoreSession().get_credentials()
    if credentials is None:
        raise ConfigurationError(
            "no AWS credentials found (environment, profile, SSO or role); the deployed API requires SigV4"
        )
    return credentials


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    credentials: Any,
    config: SigningConfig,
) -> dict[str, str]:
    """The headers to send: ``headers`` plus ``X-Amz-Date``, ``Authorization`` and,
    for temporary credentials, ``X-Amz-Security-Token``.

    ``url`` must be exactly the URL that is sent (path percent-encoded, query
    encoded as AWS canonicalizes it) and ``body`` exactly the bytes sent: the
    signature covers their SHA-256. ``credentials`` is botocore credentials
    (refreshable ones are frozen here, once per request).
    """
    frozen = credentials.get_frozen_credentials() if hasattr(credentials, "get_frozen_credentials") else credentials
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    SigV4Auth(frozen, config.service, config.region).add_auth(request)
    return {name: str(value) for name, value in request.headers.items()}
