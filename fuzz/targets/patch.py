"""
PatchObject application (RFC 8620 §5.3):
:func:`jmap_twisted.methods.standard.apply_patch`, which every ``/set``
update goes through.

Input: the JSON array ``[current, patch]``.
Properties: only the ``invalidPatch`` SetError is raised; the current
object is never modified; the result is strict JSON; a whole-property
path sets exactly that property; properties the patch does not name keep
their values.
"""

from __future__ import annotations

import copy
from typing import Any

from fuzz.targets import json_input, strict_json
from jmap_twisted.methods.standard import SetError, apply_patch


def _top(path: str) -> str:
    return path.split("/", 1)[0].replace("~1", "/").replace("~0", "~")


def check_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any] | None:
    """
    Apply ``patch`` to ``current`` and check the properties; return the
    result, or ``None`` for an ``invalidPatch``.
    """
    before = copy.deepcopy(current)
    try:
        result = apply_patch(current, patch)
    except SetError as error:
        assert error.error["type"] == "invalidPatch", error.error
        strict_json(error.error)
        return None
    finally:
        assert current == before, "apply_patch modified the current object"
    strict_json(result)
    named = {_top(path) for path in patch}
    for key, value in current.items():
        if key not in named:
            assert result[key] == value
    assert set(result) <= set(current) | named
    for path, value in patch.items():
        if "/" not in path:
            assert result[_top(path)] == value
    return result


def test_one_input(data: bytes) -> None:
    parsed, value = json_input(data)
    if (
        parsed
        and isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, dict) for v in value)
    ):
        check_patch(value[0], value[1])
