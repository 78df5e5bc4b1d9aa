"""
JSON Pointer with ``*`` and result references (RFC 8620 §3.7) on
generated documents and pointers.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.targets.pointer import check_arguments, check_pointer, escape
from jmap_twisted.core.pointer import PointerError, evaluate
from tests.property.strategies import JSON, PROPERTY, SMALL_OBJECTS, TEXT

POINTERS = st.one_of(
    TEXT,
    st.lists(TEXT | st.sampled_from(["*", "0", "1", "01", "-1", "ids", "list"]), max_size=6).map(
        lambda tokens: "".join("/" + t for t in tokens)
    ),
)


@PROPERTY
@given(JSON, POINTERS)
def test_pointer_errors(document: Any, pointer: str) -> None:
    """
    Evaluating any pointer on any document selects JSON or raises
    ``PointerError``, and the result reference with that path agrees
    (``invalidResultReference`` exactly when nothing is selected).
    """
    check_pointer(document, pointer)


@st.composite
def document_and_path(draw: st.DrawFn) -> tuple[Any, list[str], Any]:
    """
    A document, a path of tokens to a value inside it, and that value.
    """
    document = draw(JSON)
    tokens: list[str] = []
    value = document
    while draw(st.booleans()):
        if isinstance(value, dict) and value:
            key = draw(st.sampled_from(sorted(value)))
        elif isinstance(value, list) and value:
            key = str(draw(st.integers(0, len(value) - 1)))
        else:
            break
        tokens.append(key)
        value = value[key] if isinstance(value, dict) else value[int(key)]
    return document, tokens, value


@PROPERTY
@given(document_and_path())
def test_escaped_paths_round_trip(case: tuple[Any, list[str], Any]) -> None:
    """
    Writing a path into a document as a pointer (escaping ``~`` and ``/``)
    and evaluating it gives back the value at that path.
    """
    document, tokens, value = case
    assert evaluate(document, "".join("/" + escape(t) for t in tokens)) == value


@PROPERTY
@given(
    st.lists(st.dictionaries(TEXT | st.just("k"), JSON, max_size=3), min_size=1, max_size=4),
    TEXT | st.just("k"),
)
def test_star_collects_each_item(items: list[dict[str, Any]], key: str) -> None:
    """
    ``/list/*/key`` gives the key's value of every item that has it,
    array values flattened one level, and selects nothing if an item lacks
    the key.
    """
    document = {"list": items}
    pointer = "/list/*/" + escape(key)
    selected = check_pointer(document, pointer)
    if all(key in item for item in items):
        expected: list[Any] = []
        for item in items:
            if isinstance(item[key], list):
                expected.extend(item[key])
            else:
                expected.append(item[key])
        assert selected == expected


@PROPERTY
@given(
    st.dictionaries(
        TEXT | st.sampled_from(["#ids", "#", "ids"]),
        JSON
        | st.fixed_dictionaries(
            {
                "resultOf": TEXT | st.just("0"),
                "name": TEXT | st.just("Email/query"),
                "path": TEXT | st.just("/ids"),
            }
        ),
        max_size=4,
    ),
    st.lists(
        st.tuples(TEXT | st.just("Email/query"), SMALL_OBJECTS, TEXT | st.just("0")), max_size=3
    ),
)
def test_references_errors(arguments: dict[str, Any], responses: list[Any]) -> None:
    """
    Resolving any arguments against any responses raises only
    ``invalidArguments``/``invalidResultReference`` and turns each
    ``#name`` argument into ``name``.
    """
    check_arguments(arguments, responses)


@pytest.mark.parametrize("token", ["²", "١", "9" * 5000, "01", "-1", "1e1", " 1", "+1", "0x1"])
def test_array_indexes_are_ascii_decimals(token: str) -> None:
    """
    Only ASCII decimal digits without a leading zero index an array (RFC
    6901 §4): other digits (superscripts, Arabic-Indic) and indexes too long
    for ``int`` select nothing rather than raising ``ValueError``.
    """
    assert check_pointer({"ids": list(range(20))}, "/ids/" + token) is PointerError


@PROPERTY
@given(
    st.text(st.characters(categories=["Nd", "No"]) | st.sampled_from("0123456789"), min_size=1),
    st.lists(st.integers(), max_size=12),
)
def test_digit_tokens(token: str, items: list[int]) -> None:
    """
    A token of any digits selects the item at its ASCII-decimal index or
    nothing.
    """
    selected = check_pointer({"ids": items}, "/ids/" + token)
    if token.isascii() and (token == "0" or not token.startswith("0")) and int(token) < len(items):
        assert selected == items[int(token)]
    else:
        assert selected is PointerError
