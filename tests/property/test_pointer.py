"""
JSON Pointer with ``*`` and result references (RFC 8620 §3.7) on
generated documents and pointers.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fuzz.targets.pointer import check_arguments, check_pointer, escape
from jmap_twisted.core.pointer import evaluate
from tests.property.strategies import JSON, JSON_OBJECTS, PROPERTY, TEXT

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
@given(st.lists(JSON_OBJECTS, min_size=1, max_size=4), TEXT)
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
    st.dictionaries(TEXT | st.sampled_from(["#ids", "#", "ids"]), JSON, max_size=4),
    st.lists(st.tuples(TEXT, JSON_OBJECTS, TEXT), max_size=3),
)
def test_references_errors(arguments: dict[str, Any], responses: list[Any]) -> None:
    """
    Resolving any arguments against any responses raises only
    ``invalidArguments``/``invalidResultReference`` and leaves no ``#``
    argument behind.
    """
    check_arguments(arguments, responses)
