"""
JSON Pointer (RFC 6901) with JMAP's ``*`` extension, and resolution of
result references (RFC 8620 §3.7).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from jmap_twisted.errors import InvalidArguments, InvalidResultReference

#: An array index (RFC 6901 §4): ASCII digits, no leading zero.
_INDEX = re.compile(r"(?:0|[1-9][0-9]*)\Z")


class PointerError(Exception):
    """
    The pointer does not select a value in the document.
    """


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def evaluate(document: Any, pointer: str) -> Any:
    """
    Evaluate a JSON Pointer.

    As RFC 8620 §3.7 extends it: a ``*`` token applied to an array applies
    the rest of the pointer to every item, and the results are collected
    into one array, flattening arrays one level.

    :raises PointerError: a token does not match.
    """
    if pointer == "":
        return document
    if not pointer.startswith("/"):
        raise PointerError(f"pointer {pointer!r} does not start with '/'")
    return _walk(document, [_unescape(t) for t in pointer[1:].split("/")])


def _walk(value: Any, tokens: Sequence[str]) -> Any:
    for position, part in enumerate(tokens):
        if isinstance(value, dict):
            if part not in value:
                raise PointerError(f"no member {part[:40]!r}")
            value = value[part]
        elif isinstance(value, list):
            if part == "*":
                rest = tokens[position + 1 :]
                collected: list[Any] = []
                for item in value:
                    result = _walk(item, rest)
                    if isinstance(result, list):
                        collected.extend(result)
                    else:
                        collected.append(result)
                return collected
            if not _INDEX.match(part):
                raise PointerError(f"{part[:40]!r} is not an array index")
            # Compare lengths first: int() refuses more than 4,300 digits.
            if len(part) > len(str(len(value))) or int(part) >= len(value):
                raise PointerError(f"index {part[:40]} is past the end of the array")
            index = int(part)
            value = value[index]
        else:
            raise PointerError(f"cannot apply {part[:40]!r} to a {type(value).__name__}")
    return value


def resolve_references(
    arguments: dict[str, Any], responses: Sequence[tuple[str, dict[str, Any], str]]
) -> dict[str, Any]:
    """
    Replace every ``#name`` argument with the value its ResultReference
    selects from earlier responses of the same request.

    :param responses: the responses so far, ``(name, arguments, callId)``.
    :raises InvalidArguments: both ``name`` and ``#name`` are given.
    :raises InvalidResultReference: a reference is malformed or selects
        nothing.
    """
    if not any(key.startswith("#") for key in arguments):
        return arguments
    resolved = dict(arguments)
    for key, reference in arguments.items():
        if not key.startswith("#"):
            continue
        name = key[1:]
        if name in arguments:
            raise InvalidArguments(f"Both {name!r} and {key!r} are given.")
        if (
            not isinstance(reference, dict)
            or set(reference) != {"resultOf", "name", "path"}
            or not all(isinstance(v, str) for v in reference.values())
        ):
            raise InvalidResultReference(
                f"{key!r} must be a ResultReference with resultOf, name and path strings."
            )
        found = next((r for r in responses if r[2] == reference["resultOf"]), None)
        if found is None:
            raise InvalidResultReference(
                f"No earlier method call has the id {reference['resultOf']!r}."
            )
        response_name, response_args, _ = found
        if response_name != reference["name"]:
            raise InvalidResultReference(
                f"The response to {reference['resultOf']!r} is {response_name!r}, "
                f"not {reference['name']!r}."
            )
        try:
            resolved[name] = evaluate(response_args, reference["path"])
        except PointerError as e:
            raise InvalidResultReference(
                f"The path {reference['path']!r} selects nothing: {e}."
            ) from None
        del resolved[key]
    return resolved
