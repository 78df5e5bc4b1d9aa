"""
JSON Pointer with ``*`` and result references (RFC 8620 §3.7).
"""

from typing import Any

import pytest

from jmap_twisted.core.pointer import PointerError, evaluate, resolve_references
from jmap_twisted.errors import InvalidArguments, InvalidResultReference

DOC = {
    "list": [{"id": "a", "threadId": "t1"}, {"id": "b", "threadId": "t2"}],
    "nested": [{"emailIds": ["e1", "e2"]}, {"emailIds": ["e3"]}],
    "a/b": 1,
    "m~n": 2,
    "ids": ["x", "y"],
}


@pytest.mark.parametrize(
    "pointer, expected",
    [
        ("", DOC),
        ("/ids", ["x", "y"]),
        ("/ids/1", "y"),
        ("/list/*/id", ["a", "b"]),
        ("/nested/*/emailIds", ["e1", "e2", "e3"]),
        ("/a~1b", 1),
        ("/m~0n", 2),
    ],
)
def test_evaluate(pointer: str, expected: Any) -> None:
    """
    Pointers select values; ``*`` maps over arrays and flattens one level.
    """
    assert evaluate(DOC, pointer) == expected


@pytest.mark.parametrize("pointer", ["ids", "/missing", "/ids/2", "/ids/01", "/ids/x", "/a~1b/c"])
def test_evaluate_errors(pointer: str) -> None:
    """
    A pointer that selects nothing raises PointerError.
    """
    with pytest.raises(PointerError):
        evaluate(DOC, pointer)


RESPONSES = [("Email/query", {"ids": ["m1", "m2"]}, "c0"), ("Email/get", {"list": []}, "c1")]


def test_resolve_replaces_references() -> None:
    """
    ``#ids`` becomes ``ids`` with the referenced value; other arguments stay.
    """
    args = {
        "accountId": "A",
        "#ids": {"resultOf": "c0", "name": "Email/query", "path": "/ids"},
    }
    assert resolve_references(args, RESPONSES) == {"accountId": "A", "ids": ["m1", "m2"]}


@pytest.mark.parametrize(
    "reference",
    [
        {"resultOf": "nope", "name": "Email/query", "path": "/ids"},
        {"resultOf": "c0", "name": "Email/get", "path": "/ids"},
        {"resultOf": "c0", "name": "Email/query", "path": "/nothing"},
        {"resultOf": "c0", "name": "Email/query"},
        "c0",
        {"resultOf": "c0", "name": "Email/query", "path": 3},
    ],
)
def test_resolve_invalid(reference: Any) -> None:
    """
    References to missing calls, the wrong method, bad paths or malformed
    references are invalidResultReference.
    """
    with pytest.raises(InvalidResultReference):
        resolve_references({"#ids": reference}, RESPONSES)


def test_resolve_both_forms_is_invalid_arguments() -> None:
    """
    Giving both ``ids`` and ``#ids`` is invalidArguments.
    """
    with pytest.raises(InvalidArguments):
        resolve_references(
            {"ids": [], "#ids": {"resultOf": "c0", "name": "Email/query", "path": "/ids"}},
            RESPONSES,
        )


def test_first_response_with_the_call_id_is_used() -> None:
    """
    With several responses for one call id, the first is the one referenced.
    """
    responses = [("A/x", {"v": 1}, "c"), ("B/y", {"v": 2}, "c")]
    with pytest.raises(InvalidResultReference):
        resolve_references({"#v": {"resultOf": "c", "name": "B/y", "path": "/v"}}, responses)
    assert resolve_references(
        {"#v": {"resultOf": "c", "name": "A/x", "path": "/v"}}, responses
    ) == {"v": 1}
