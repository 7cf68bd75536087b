"""Reading the service's sealed session format, version 1 (docs/sealed-format.md).

With a session's id, an app can find the session's item in the sessions table and
open its data without the service: :func:`item_key` is the item's key,
:func:`open_document` opens its ``doc`` attribute, and :func:`is_live` says whether
the item's expiry still holds. The test vectors in docs/sealed-format-vectors.json
(written by the Rust store) are checked against this module by the client's tests.
"""

from __future__ import annotations

import base64
import hashlib
import zlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["FORMAT", "Unopenable", "document_key", "is_live", "item_key", "open_document", "valid_id"]

#: The format this module reads.
FORMAT = 1
_CODEC_STORED = 0
_CODEC_DEFLATE = 1
_HANDLE_DOMAIN = b"session-service/v1/session-handle\0"
_KEY_INFO = b"session-service/v1/document-key"
_AAD_DOMAIN = b"session-service/v1/document\0"
_HEADER_LEN = 2 + 12
_OVERHEAD = _HEADER_LEN + 16
#: The most a session's data's text may be, and so what a document may inflate to.
_DATA_BYTES_CEILING = 380_000


class Unopenable(ValueError):
    """A document that does not open with this id: altered, another item's, cut short,
    an unknown format or codec. Read it as no session."""


def valid_id(session_id: str) -> bool:
    """Whether ``session_id`` is an id at all: 43 characters, the canonical base64url of 32 bytes."""
    if len(session_id) != 43 or not session_id.isascii():
        return False
    try:
        raw = base64.urlsafe_b64decode(session_id + "=")
    except ValueError:
        return False
    return len(raw) == 32 and base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == session_id


def item_key(session_id: str) -> str:
    """The sessions table's key (``handle``) of the item of ``session_id``."""
    return hashlib.sha256(_HANDLE_DOMAIN + session_id.encode("ascii")).hexdigest()


def document_key(session_id: str) -> bytes:
    """The AES-256-GCM key of ``session_id``'s documents (HKDF-SHA256, no salt)."""
    return HKDF(hashes.SHA256(), 32, salt=None, info=_KEY_INFO).derive(session_id.encode("ascii"))


def open_document(session_id: str, document: bytes) -> bytes:
    """The data's JSON text sealed in ``document`` (an item's ``doc``) for ``session_id``.

    Raises :class:`Unopenable` when it does not open; the tag is verified before
    anything is inflated, and inflating stops past the data's ceiling.
    """
    if len(document) < _OVERHEAD or document[0] != FORMAT or document[1] not in (_CODEC_STORED, _CODEC_DEFLATE):
        raise Unopenable("not a format-1 document")
    aad = _AAD_DOMAIN + item_key(session_id).encode("ascii") + document[:2]
    try:
        plain = AESGCM(document_key(session_id)).decrypt(document[2:_HEADER_LEN], document[_HEADER_LEN:], aad)
    except InvalidTag:
        raise Unopenable("the document does not open with this id") from None
    if document[1] == _CODEC_STORED:
        return plain
    inflater = zlib.decompressobj(wbits=-15)
    try:
        text = inflater.decompress(plain, _DATA_BYTES_CEILING)
    except zlib.error:
        raise Unopenable("the document does not inflate") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise Unopenable("the document inflates past the data's ceiling or is cut short")
    return text


def is_live(expires_at: int, now: int) -> bool:
    """Whether an item whose ``expires_at`` is this (Unix seconds) is live at ``now``:
    live through that second. DynamoDB's TTL deletes expired items only eventually."""
    return now <= expires_at
