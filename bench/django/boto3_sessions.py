"""The baseline: the least a Django session backend on DynamoDB does, with boto3.

``load`` is one ``GetItem`` (strongly consistent), ``save`` one ``PutItem`` (made
conditional when it must create), ``delete`` one ``DeleteItem``. Items are keyed by
``session_key`` in the table named by ``DYNAMODB_SESSIONS_TABLE_NAME``, with the
session encoded as Django's database backend encodes it and an ``expires`` time.
"""

from __future__ import annotations

import time
from typing import Any

import boto3
from botocore.exceptions import ClientError
from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError

_table = None


def table() -> Any:
    """The process's boto3 Table (made once)."""
    global _table
    if _table is None:
        resource = boto3.resource("dynamodb", endpoint_url=settings.DYNAMODB_ENDPOINT)
        _table = resource.Table(settings.DYNAMODB_SESSIONS_TABLE_NAME)
    return _table


class SessionStore(SessionBase):
    """Sessions as DynamoDB items: one request per load, save or delete."""

    def load(self) -> dict[str, Any]:
        if self.session_key is None:
            return {}
        item = table().get_item(Key={"session_key": self.session_key}, ConsistentRead=True).get("Item")
        if item is None or int(item["expires"]) <= time.time():
            self._session_key = None
            return {}
        return self.decode(item["data"])

    def exists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        item = table().get_item(Key={"session_key": session_key}, ConsistentRead=True).get("Item")
        return item is not None and int(item["expires"]) > time.time()

    def create(self) -> None:
        while True:
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        item = {
            "session_key": self.session_key,
            "data": self.encode(self._get_session(no_load=must_create)),
            "expires": int(time.time()) + self.get_expiry_age(),
        }
        condition = "attribute_not_exists(session_key)" if must_create else "attribute_exists(session_key)"
        try:
            table().put_item(Item=item, ConditionExpression=condition)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise CreateError if must_create else UpdateError from error

    def delete(self, session_key: str | None = None) -> None:
        key = self.session_key if session_key is None else session_key
        if key:
            table().delete_item(Key={"session_key": key})

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing: a DynamoDB TTL on ``expires`` would remove them."""
