"""The sealed format's test vectors (written by the Rust store) against the Python reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from session_service import sealed

VECTORS = json.loads((Path(__file__).resolve().parents[3] / "docs" / "sealed-format-vectors.json").read_text())


def test_the_vectors_are_the_format_this_reader_reads() -> None:
    assert VECTORS["format"] == sealed.FORMAT
    assert len(VECTORS["vectors"]) >= 3
    assert {v["codec"] for v in VECTORS["vectors"]} == {0, 1}, "both codecs are covered"


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_a_vector_derives_its_key_and_handle_and_opens(vector: dict) -> None:
    session_id = vector["id"]
    assert sealed.valid_id(session_id)
    assert sealed.item_key(session_id) == vector["handle"]
    assert sealed.document_key(session_id).hex() == vector["key"]
    document = bytes.fromhex(vector["document"])
    assert document[2:14].hex() == vector["nonce"]
    assert document[1] == vector["codec"]
    assert sealed.open_document(session_id, document) == vector["data"].encode()
    with pytest.raises(sealed.Unopenable):
        sealed.open_document(session_id, bytes.fromhex(vector["altered_document"]))


def test_a_document_opens_with_its_own_id_and_header_only() -> None:
    first, second = VECTORS["vectors"][0], VECTORS["vectors"][1]
    with pytest.raises(sealed.Unopenable):
        sealed.open_document(second["id"], bytes.fromhex(first["document"]))
    document = bytearray.fromhex(first["document"])
    for header in ([2, document[1]], [1, 7], [1, 1 - document[1]]):
        altered = bytes(header) + bytes(document[2:])
        with pytest.raises(sealed.Unopenable):
            sealed.open_document(first["id"], altered)
    with pytest.raises(sealed.Unopenable):
        sealed.open_document(first["id"], bytes(document[:29]))


def test_ids_are_43_canonical_base64url_characters() -> None:
    good = VECTORS["vectors"][0]["id"]
    assert sealed.valid_id(good)
    for bad in ["", good[:-1], good + "A", good[:-1] + "=", good.replace("A", "+", 1), good[:-1] + "\u00e9"]:
        assert not sealed.valid_id(bad), bad
    assert not sealed.valid_id(good[:-1] + "h"), "non-zero trailing bits are not canonical"


def test_expiry_holds_through_its_second() -> None:
    assert sealed.is_live(100, 100)
    assert not sealed.is_live(100, 101)
