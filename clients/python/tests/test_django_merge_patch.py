"""What the Django engine's save sends (pure: no service): the merge patch between the
data loaded and the data to store, ``None`` where a merge patch cannot express the
change, and the same changes applied to data that moved on (the conditional full
write's retry). ``apply`` is RFC 7396 as the service applies it (members kept stay in
their place, new ones come last), so every patch is checked by applying it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from django.conf import settings

if not settings.configured:
    settings.configure()

from session_service._core import merge_patch as apply  # noqa: E402  (RFC 7396, in the service's member order)
from session_service.django import _same, merge_patch, rebase  # noqa: E402


def patch_of(loaded: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """merge_patch, checked: it modifies neither side, and applied to ``loaded`` it gives
    ``new`` exactly (values, types and member order at every depth)."""
    before = copy.deepcopy((loaded, new))
    patch = merge_patch(loaded, new)
    assert _same([loaded, new], list(before)), "neither side is modified"
    if patch is not None:
        assert _same(apply(loaded, patch), new), (loaded, new, patch)
        json.dumps(patch)  # what the client sends
    return patch


def test_nothing_changed_is_the_empty_patch() -> None:
    data = {"a": 1, "m": {"x": [1, {"y": None}]}, "n": None}
    assert patch_of(data, copy.deepcopy(data)) == {}
    assert patch_of({}, {}) == {}


def test_added_and_changed_members_are_their_new_values_and_unchanged_ones_are_left_out() -> None:
    loaded = {"a": 1, "b": "x", "c": True}
    new = {"a": 2, "b": "x", "c": True, "d": {"e": 1}}
    assert patch_of(loaded, new) == {"a": 2, "d": {"e": 1}}


def test_removed_members_are_null() -> None:
    assert patch_of({"a": 1, "b": 2}, {"b": 2}) == {"a": None}
    assert patch_of({"a": 1, "b": 2}, {}) == {"a": None, "b": None}


def test_nested_objects_change_member_by_member() -> None:
    loaded = {"prefs": {"lang": "de", "theme": {"name": "dark", "contrast": 2}}, "cart": [1]}
    new = {"prefs": {"lang": "fr", "theme": {"name": "dark", "contrast": 2}}, "cart": [1]}
    assert patch_of(loaded, new) == {"prefs": {"lang": "fr"}}


def test_removals_at_depth_are_null_at_depth() -> None:
    loaded = {"a": {"b": {"c": 1, "d": 2}, "e": 3}, "f": 4}
    new = {"a": {"b": {"c": 1}, "e": 3}, "f": 4}
    assert patch_of(loaded, new) == {"a": {"b": {"d": None}}}
    assert patch_of(loaded, {"a": {"e": 3}, "f": 4}) == {"a": {"b": None}}


def test_a_changed_list_is_replaced_whole() -> None:
    loaded = {"cart": [1, 2, {"id": 3}], "x": 0}
    assert patch_of(loaded, {"cart": [1, 2, {"id": 4}], "x": 0}) == {"cart": [1, 2, {"id": 4}]}
    assert patch_of(loaded, {"cart": [1, 2], "x": 0}) == {"cart": [1, 2]}
    assert patch_of(loaded, {"cart": [], "x": 0}) == {"cart": []}


def test_none_inside_a_list_is_set_verbatim() -> None:
    # Arrays are values: their nulls are kept, not removals.
    assert patch_of({"l": [1]}, {"l": [1, None, {"k": None}]}) == {"l": [1, None, {"k": None}]}


@pytest.mark.parametrize(
    "loaded, new",
    [
        ({"a": 1}, {"a": None}),  # a value set to None
        ({}, {"a": None}),  # a member added as None
        ({"a": {"b": 1}}, {"a": {"b": None}}),  # at depth
        ({"a": {"b": 1}}, {"a": {"b": 1, "c": {"d": None}}}),  # in an object added at depth
        ({"a": 1}, {"a": {"b": None}}),  # in an object replacing a non-object
        ({}, {"a": {"b": {"c": None}}}),
    ],
    ids=["set", "added", "nested", "added-at-depth", "object-for-scalar", "deep-new-object"],
)
def test_none_as_a_member_value_needs_a_full_write(loaded: dict[str, Any], new: dict[str, Any]) -> None:
    assert patch_of(loaded, new) is None


def test_a_none_left_as_it_was_needs_no_write() -> None:
    assert patch_of({"a": None, "b": 1}, {"a": None, "b": 2}) == {"b": 2}
    assert patch_of({"a": None}, {}) == {"a": None}  # removing it is a removal


def test_json_types_are_told_apart() -> None:
    # Python's 1 == 1.0 == True; JSON's are three values.
    assert patch_of({"a": 1}, {"a": True}) == {"a": True}
    assert patch_of({"a": 1}, {"a": 1.0}) == {"a": 1.0}
    assert patch_of({"a": 0}, {"a": False}) == {"a": False}
    assert patch_of({"a": [1]}, {"a": [True]}) == {"a": [True]}


def test_objects_replacing_other_values_and_back() -> None:
    assert patch_of({"a": 1}, {"a": {"b": 1}}) == {"a": {"b": 1}}
    assert patch_of({"a": [1]}, {"a": {"b": 1}}) == {"a": {"b": 1}}
    assert patch_of({"a": {"b": 1}}, {"a": [1]}) == {"a": [1]}
    assert patch_of({"a": {"b": 1}}, {"a": "s"}) == {"a": "s"}
    assert patch_of({"a": {"b": 1}}, {"a": {}}) == {"a": {"b": None}}


def test_key_order_kept_members_in_place_and_added_ones_last() -> None:
    loaded = {"z": 1, "a": 2, "m": {"y": 1, "b": 2}}
    new = {"z": 1, "a": 3, "m": {"y": 1, "b": 2, "c": 3}, "k": 4, "d": 5}
    assert list(patch_of(loaded, new) or {}) == ["a", "m", "k", "d"]
    assert patch_of(loaded, {"a": 2, "m": {"b": 2}}) == {"z": None, "m": {"y": None}}


@pytest.mark.parametrize(
    "loaded, new",
    [
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),  # reordered
        ({"a": 1, "b": 2}, {"b": 2, "a": 3}),  # a member removed and added again comes last
        ({"m": {"x": 1, "y": 2}}, {"m": {"y": 2, "x": 1}}),  # reordered at depth
        ({"a": 1, "b": 2}, {"c": 3, "a": 1, "b": 2}),  # an added member first
    ],
    ids=["reordered", "re-added", "nested", "added-first"],
)
def test_an_order_the_merge_cannot_give_needs_a_full_write(loaded: dict[str, Any], new: dict[str, Any]) -> None:
    assert patch_of(loaded, new) is None


def test_rebase_keeps_what_changed_meanwhile() -> None:
    loaded = {"a": 1, "b": 1, "m": {"x": 1, "y": 1}, "gone": 1}
    new = {"a": None, "b": 1, "m": {"x": 1}, "c": [None]}
    current = {"a": 1, "b": 2, "m": {"x": 2, "y": 1, "z": 3}, "gone": 1, "other": True}
    snapshot = copy.deepcopy((current, loaded, new))
    rebased = rebase(current, loaded, new)
    assert (current, loaded, new) == snapshot, "nothing given is modified"
    assert _same(rebased, {"a": None, "b": 2, "m": {"x": 2, "z": 3}, "other": True, "c": [None]})


def test_rebase_on_the_data_loaded_gives_the_new_data() -> None:
    loaded = {"a": 1, "m": {"x": 1, "y": {"z": 1}}, "r": 0}
    new = {"a": None, "m": {"x": 2, "y": {}}, "n": {"k": None}}
    assert _same(rebase(loaded, loaded, new), new)


def test_rebase_where_the_object_changed_went_away_or_changed_type() -> None:
    loaded = {"m": {"x": 1, "y": 1}}
    new = {"m": {"x": 1, "y": 2}}
    assert rebase({}, loaded, new) == {"m": {"y": 2}}
    assert rebase({"m": "s"}, loaded, new) == {"m": {"y": 2}}
    # A member removed here and removed meanwhile too stays removed.
    assert rebase({"b": 1}, {"a": 1, "b": 1}, {"b": 1}) == {"b": 1}


def test_rebase_sets_the_same_key_last_writer_wins() -> None:
    assert rebase({"a": "theirs"}, {"a": "loaded"}, {"a": "mine"}) == {"a": "mine"}
    # Unchanged here: theirs stays.
    assert rebase({"a": "theirs"}, {"a": "loaded"}, {"a": "loaded"}) == {"a": "theirs"}


def test_same_is_strict_json_equality() -> None:
    assert _same({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]})
    assert not _same({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert not _same(1, True)
    assert not _same(1, 1.0)
    assert not _same([1], [1, 2])
    assert not _same({"a": 1}, {"a": 1, "b": 2})
