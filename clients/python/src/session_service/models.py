"""The service's resources as frozen dataclasses.

``data`` is the session's JSON object as a ``dict`` in the order the service
returned it (the service keeps members in the order they were written).
A session id is a bearer secret: :class:`IssuedSession` keeps it out of its
``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


def _timestamp(text: str) -> datetime:
    """``2026-11-22T02:26:07Z`` as an aware UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


@dataclass(frozen=True, kw_only=True)
class Device:
    """The device a session is on (every part optional)."""

    user_agent: str | None = None
    ip: str | None = None
    label: str | None = None

    def to_json(self) -> dict[str, str]:
        """The request form: only the parts that are set."""
        return {k: v for k, v in (("user_agent", self.user_agent), ("ip", self.ip), ("label", self.label)) if v}

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> Device | None:
        """The response form, or None when absent."""
        if not value:
            return None
        return cls(user_agent=value.get("user_agent"), ip=value.get("ip"), label=value.get("label"))


@dataclass(frozen=True, kw_only=True)
class Session:
    """A live session as ``GET /sessions/{id}`` (and PUT, PATCH, touch) answer it."""

    handle: str
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    absolute_expires_at: datetime
    idle_timeout_seconds: int
    version: int
    subject: str | None = None
    device: Device | None = None
    etag: str | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any], etag: str | None = None) -> Session:
        """Build from a response body (and its ``ETag`` header)."""
        return cls(**_session_fields(body, etag))


@dataclass(frozen=True, kw_only=True)
class IssuedSession(Session):
    """A session just created or rotated, with its ``id`` (a bearer secret, not in ``repr``)."""

    id: str = field(repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any], etag: str | None = None) -> IssuedSession:
        """Build from a create or rotate response body (and its ``ETag`` header)."""
        return cls(id=str(body["id"]), **_session_fields(body, etag))


@dataclass(frozen=True, kw_only=True)
class SessionSummary:
    """A session as an owner's listing shows it: no id, no data."""

    handle: str
    created_at: datetime
    last_active_at: datetime
    updated_at: datetime
    expires_at: datetime
    absolute_expires_at: datetime
    idle_timeout_seconds: int
    version: int
    subject: str | None = None
    device: Device | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> SessionSummary:
        """Build from one item of ``sessions`` in a listing."""
        return cls(
            handle=body["handle"],
            created_at=_timestamp(body["created_at"]),
            last_active_at=_timestamp(body["last_active_at"]),
            updated_at=_timestamp(body["updated_at"]),
            expires_at=_timestamp(body["expires_at"]),
            absolute_expires_at=_timestamp(body["absolute_expires_at"]),
            idle_timeout_seconds=int(body["idle_timeout_seconds"]),
            version=int(body["version"]),
            subject=body.get("subject"),
            device=Device.from_json(body.get("device")),
        )


@dataclass(frozen=True, kw_only=True)
class SessionPage:
    """One page of an owner's sessions; ``next_cursor`` is None on the last page."""

    sessions: list[SessionSummary]
    next_cursor: str | None


def _session_fields(body: Mapping[str, Any], etag: str | None) -> dict[str, Any]:
    return {
        "handle": body["handle"],
        "data": dict(body.get("data") or {}),
        "created_at": _timestamp(body["created_at"]),
        "updated_at": _timestamp(body["updated_at"]),
        "expires_at": _timestamp(body["expires_at"]),
        "absolute_expires_at": _timestamp(body["absolute_expires_at"]),
        "idle_timeout_seconds": int(body["idle_timeout_seconds"]),
        "version": int(body["version"]),
        "subject": body.get("subject"),
        "device": Device.from_json(body.get("device")),
        "etag": etag if etag is not None else f'"{int(body["version"])}"',
    }
