"""
Strict I-JSON input and compact output.
"""

import pytest

from jmap_twisted.core import jsonio
from jmap_twisted.errors import NotJSON


def test_parses_objects() -> None:
    """
    A well-formed UTF-8 document parses to Python values.
    """
    assert jsonio.loads(b'{"a": [1, "\xc3\xa9", null, true]}') == {"a": [1, "é", None, True]}


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"not json", "parse"),
        (b'{"a": 1', "parse"),
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"a": "\xc3"}', "UTF-8"),
        (b'{"a": 1, "a": 2}', "duplicate"),
        (b'{"a": NaN}', "NaN"),
        (b"[Infinity]", "Infinity"),
        (b"[" * 100 + b"]" * 100, "deeper"),
        (b"[" * 100000, "deeper"),
    ],
)
def test_refuses_what_is_not_i_json(data: bytes, reason: str) -> None:
    """
    Anything that is not I-JSON is refused with notJSON and a detail naming
    the problem, never with another exception.
    """
    with pytest.raises(NotJSON) as info:
        jsonio.loads(data)
    assert reason in info.value.detail
    assert info.value.to_problem()["type"] == "urn:ietf:params:jmap:error:notJSON"
    assert info.value.to_problem()["status"] == 400


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    """
    Only structural brackets count towards the nesting limit.
    """
    assert jsonio.loads('{"a": "' + "[" * 1000 + '\\"]"}') == {"a": "[" * 1000 + '"]'}


def test_dumps_is_compact_utf8() -> None:
    """
    Output is compact UTF-8, non-ASCII characters kept as they are.
    """
    assert jsonio.dumps({"a": ["é", 1]}) == '{"a":["é",1]}'.encode()


def test_dumps_survives_lone_surrogates() -> None:
    """
    A lone surrogate echoed back from input is escaped, not a crash.
    """
    value = jsonio.loads(b'["\\ud800"]')
    assert jsonio.loads(jsonio.dumps(value)) == value
