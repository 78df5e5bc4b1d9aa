"""
I-JSON input and JSON output (RFC 7493): :mod:`jmap_twisted.core.jsonio`.

Properties: :func:`~jmap_twisted.core.jsonio.loads` raises only
``notJSON``; what it accepts, :func:`~jmap_twisted.core.jsonio.dumps`
writes as strict JSON (no ``NaN``/``Infinity``) that reads back equal.
"""

from __future__ import annotations

import json
from typing import Any

from fuzz.targets import strict_json
from jmap_twisted.core.jsonio import dumps, loads
from jmap_twisted.errors import NotJSON


def _refuse_constant(name: str) -> Any:
    raise AssertionError(f"dumps wrote {name}, which is not JSON")


def check_json(data: bytes | str) -> Any:
    """
    Read ``data`` and write it back; return the value, or ``NotJSON`` if it
    was refused.
    """
    try:
        value = loads(data)
    except NotJSON as error:
        strict_json(error.to_problem())
        return NotJSON
    strict_json(value)
    out = dumps(value)
    assert isinstance(out, bytes)
    assert json.loads(out.decode("utf-8"), parse_constant=_refuse_constant) == value
    assert loads(out) == value
    return value


def test_one_input(data: bytes) -> None:
    check_json(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    check_json(text)
