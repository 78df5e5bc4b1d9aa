"""
JSON Pointers with ``*`` and result references (RFC 8620 §3.7):
:mod:`jmap_twisted.core.pointer`.

Input: a pointer on the first line, a JSON document after it.
Properties: :func:`~jmap_twisted.core.pointer.evaluate` raises only
``PointerError`` and selects strict JSON; a ``#name`` reference with that
path resolves to the same value or fails with ``invalidResultReference``.
"""

from __future__ import annotations

from typing import Any

from fuzz.targets import json_input, strict_json
from jmap_twisted.core.pointer import PointerError, evaluate, resolve_references
from jmap_twisted.errors import InvalidArguments, InvalidResultReference

#: The document used when the fuzzer's one does not parse.
DOCUMENT: dict[str, Any] = {
    "accountId": "a",
    "ids": ["e1", "e2"],
    "list": [{"id": "m1", "emailIds": ["e1", "e2"]}, {"id": "m2", "emailIds": []}],
    "a/b": {"~": [0, [1, 2]]},
    "updated": {"e1": None},
}


def escape(token: str) -> str:
    """
    A reference token as written in a pointer (RFC 6901 §3).
    """
    return token.replace("~", "~0").replace("/", "~1")


def check_pointer(document: Any, pointer: str) -> Any:
    """
    Evaluate ``pointer`` against ``document``, directly and as a result
    reference, and check the properties; return the selected value, or
    ``PointerError`` if it selects nothing.
    """
    try:
        selected = evaluate(document, pointer)
    except PointerError:
        selected = PointerError
    else:
        strict_json(selected)
    arguments = {"#ids": {"resultOf": "c0", "name": "Email/query", "path": pointer}, "limit": 5}
    try:
        resolved = resolve_references(arguments, [("Email/query", document, "c0")])
    except InvalidResultReference as error:
        assert selected is PointerError
        strict_json(error.to_arguments())
    except InvalidArguments:  # both ``ids`` and ``#ids``: cannot happen here
        raise AssertionError("invalidArguments for a well-formed reference") from None
    else:
        assert selected is not PointerError
        assert resolved == {"ids": selected, "limit": 5}
    return selected


def check_arguments(arguments: Any, responses: Any) -> None:
    """
    Resolve arbitrary method arguments against arbitrary earlier responses:
    only ``invalidArguments`` and ``invalidResultReference`` may be raised,
    and each ``#name`` argument becomes ``name``.
    """
    if not isinstance(arguments, dict):
        return
    try:
        resolved = resolve_references(arguments, responses)
    except (InvalidArguments, InvalidResultReference) as error:
        strict_json(error.to_arguments())
        return
    assert set(resolved) == {key[1:] if key.startswith("#") else key for key in arguments}
    strict_json(resolved)


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    pointer, _, rest = text.partition("\n")
    parsed, document = json_input(rest.encode("utf-8", "surrogatepass"))
    check_pointer(document if parsed and rest else DOCUMENT, pointer)
    if parsed and isinstance(document, list) and len(document) == 2:
        arguments, responses = document
        if isinstance(responses, list) and all(
            isinstance(r, list) and len(r) == 3 and isinstance(r[1], dict) for r in responses
        ):
            check_arguments(arguments, [tuple(r) for r in responses])
