"""
One harness per parser.  Each module has ``test_one_input(data: bytes)``,
which turns fuzzer octets into the parser's input and checks its
properties: it raises only when a property fails (an exception other than
the parser's documented errors, output that is not strict JSON, a broken
round trip).  The same modules' ``check_*`` functions take structured
input, for the property tests in ``tests/property``.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

#: The harnesses, by name: ``fuzz/corpus/<name>/`` is each one's corpus.
TARGETS = ("request", "pointer", "patch", "email_filter", "jsonio", "mime", "headers")


def load(name: str) -> ModuleType:
    """
    The harness module of a target.
    """
    if name not in TARGETS:
        raise KeyError(f"no fuzz target {name!r}; known: {', '.join(TARGETS)}")
    return importlib.import_module(f"fuzz.targets.{name}")


def harness(name: str) -> Callable[[bytes], None]:
    """
    The ``test_one_input`` function of a target.
    """
    function: Callable[[bytes], None] = load(name).test_one_input
    return function


def _refuse_constant(name: str) -> Any:
    raise AssertionError(f"{name} in output: not JSON")


def strict_json(value: Any) -> Any:
    """
    Assert that ``value`` serialises as strict JSON (no ``NaN`` or
    ``Infinity``, string keys only, JSON types only) and return what a
    strict parser reads back.
    """
    text = json.dumps(value, allow_nan=False, ensure_ascii=True)
    back = json.loads(text, parse_constant=_refuse_constant)
    _assert_json_types(value)
    return back


def _assert_json_types(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            assert all(isinstance(k, str) for k in item), f"non-string key in {item!r:.200}"
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float):
            assert math.isfinite(item), f"{item!r} is not a JSON number"
        else:
            assert item is None or isinstance(item, (str, int, bool)), (
                f"{type(item).__name__} is not a JSON type"
            )


def json_input(data: bytes) -> tuple[bool, Any]:
    """
    Fuzzer octets as the JSON value the server would hand a parser (read
    with :func:`jmap_twisted.core.jsonio.loads`): ``(True, value)``, or
    ``(False, None)`` if the server would refuse them as ``notJSON``.
    """
    from jmap_twisted.core.jsonio import loads
    from jmap_twisted.errors import NotJSON

    try:
        return True, loads(data)
    except NotJSON:
        return False, None
