"""
PatchObject application (RFC 8620 §5.3) on generated objects and patches.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fuzz.targets.patch import check_patch
from fuzz.targets.pointer import escape
from jmap_twisted.methods.standard import SetError, apply_patch
from tests.property.strategies import JSON, JSON_OBJECTS, NAME, PROPERTY, TEXT, json_values

NAMED_OBJECTS = st.dictionaries(NAME, json_values(6), max_size=4)


@st.composite
def patches(draw: st.DrawFn, current: dict[str, Any]) -> dict[str, Any]:
    """
    Patches whose paths mostly name what ``current`` has, one or two levels
    deep, sometimes something it lacks, overlapping paths included.
    """
    patch: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 5))):
        keys = sorted(current)
        first = draw(st.sampled_from(keys) | TEXT) if keys else draw(TEXT)
        path = escape(first)
        inner = current.get(first)
        if draw(st.booleans()):
            second = (
                draw(st.sampled_from(sorted(inner)) | TEXT)
                if isinstance(inner, dict) and inner
                else draw(TEXT)
            )
            path += "/" + escape(second)
        patch[path] = draw(JSON)
    return patch


@st.composite
def objects_and_patches(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    current = draw(st.dictionaries(TEXT, JSON_OBJECTS | JSON, max_size=5))
    return current, draw(patches(current) | st.dictionaries(TEXT, JSON, max_size=4))


@PROPERTY
@given(objects_and_patches())
def test_patch_properties(case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """
    A patch is applied or refused with ``invalidPatch``; the current object
    is never modified; properties the patch does not name keep their
    values; a whole-property path sets it.
    """
    check_patch(*case)


@PROPERTY
@given(NAMED_OBJECTS, NAMED_OBJECTS)
def test_patch_round_trip(current: dict[str, Any], target: dict[str, Any]) -> None:
    """
    The patch of every top-level property of ``target`` (``null`` for what
    only ``current`` has) turns ``current`` into ``target``, nulls aside.
    """
    patch = {escape(k): v for k, v in target.items()}
    patch.update({escape(k): None for k in current if k not in target})
    result = check_patch(current, patch)
    assert result is not None
    assert {k: v for k, v in result.items() if v is not None} == {
        k: v for k, v in target.items() if v is not None
    }


@PROPERTY
@given(
    st.dictionaries(NAME, st.dictionaries(TEXT, st.booleans(), max_size=4), max_size=3),
    st.data(),
)
def test_member_paths_round_trip(current: dict[str, dict[str, bool]], data: st.DataObject) -> None:
    """
    Setting and removing members of map properties (``keywords/$seen``,
    ``mailboxIds/M1``) by path changes exactly those members.
    """
    if not current:
        return
    prop = data.draw(st.sampled_from(sorted(current)))
    members = data.draw(st.dictionaries(TEXT, st.none() | st.just(True), max_size=4))
    result = check_patch(current, {f"{escape(prop)}/{escape(m)}": v for m, v in members.items()})
    assert result is not None
    expected = dict(current[prop])
    for member, value in members.items():
        if value is None:
            expected.pop(member, None)
        else:
            expected[member] = value
    assert result[prop] == expected


PATH_TOKENS = st.sampled_from(["a", "b", "", "a~1b", "c"])


@PROPERTY
@given(st.lists(st.lists(PATH_TOKENS, min_size=1, max_size=4).map("/".join), max_size=8))
def test_overlap_found_exactly(paths: list[str]) -> None:
    """
    A patch is refused as overlapping exactly when one of its paths
    extends another (RFC 8620 §5.3), whatever the order of its paths.
    """
    patch = dict.fromkeys(paths, 1)
    overlapping = any(o.startswith(p + "/") for p in patch for o in patch)
    try:
        apply_patch({"a": {"b": {}}, "b": 1, "c": {}}, patch)
    except SetError as error:
        assert ("overlap" in error.error["description"]) == overlapping
    else:
        assert not overlapping


def test_patch_cost_is_linear() -> None:
    """
    A patch of many paths into one property (a client's patch holds as many
    as the request size allows) costs a bounded number of builtin calls
    per path, and copies the property once.
    """
    paths = 3000
    calls: Counter[str] = Counter()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call":
            calls[arg.__name__] += 1

    patch = {f"keywords/k{n}": True for n in range(paths)}
    sys.setprofile(profile)
    try:
        result = apply_patch({"keywords": {"old": True}, "other": {}}, patch)
    finally:
        sys.setprofile(None)
    assert len(result["keywords"]) == paths + 1
    assert calls["copy"] <= 2
    assert sum(calls.values()) < 20 * paths
