"""Python client for the session service, and a Django session engine
(:mod:`session_service.django`).

>>> from session_service import Client
>>> client = Client("https://abc123.execute-api.eu-west-1.amazonaws.com")
>>> issued = client.create({"theme": "dark"}, subject="user-42")
>>> client.get(issued.id, touch=True).data
{'theme': 'dark'}
"""

from ._core import RetryPolicy
from .client import AsyncClient, Client
from .direct import DirectReader
from .errors import (
    BadRequest,
    ConfigurationError,
    Conflict,
    DirectReadError,
    Forbidden,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    InternalError,
    InvalidHeader,
    InvalidQuery,
    InvalidRequest,
    MalformedRequest,
    MethodNotAllowed,
    NoRoute,
    NotFound,
    PreconditionFailed,
    ProblemError,
    SessionCapReached,
    SessionServiceError,
    TooLarge,
    TransportError,
    Unavailable,
    UnsupportedMediaType,
)
from .models import Device, IssuedSession, Session, SessionPage, SessionSummary
from .signing import SigningConfig, signing_for_url

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "ConfigurationError",
    "Conflict",
    "Device",
    "DirectReadError",
    "DirectReader",
    "Forbidden",
    "IdempotencyKeyInFlight",
    "IdempotencyKeyReused",
    "InternalError",
    "InvalidHeader",
    "InvalidQuery",
    "InvalidRequest",
    "IssuedSession",
    "MalformedRequest",
    "MethodNotAllowed",
    "NoRoute",
    "NotFound",
    "PreconditionFailed",
    "ProblemError",
    "RetryPolicy",
    "Session",
    "SessionCapReached",
    "SessionPage",
    "SessionServiceError",
    "SessionSummary",
    "SigningConfig",
    "TooLarge",
    "TransportError",
    "Unavailable",
    "UnsupportedMediaType",
    "signing_for_url",
]
