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
        (b"[1e999]", "too large"),
        (b'{"a": -1.5e400}', "too large"),
        # Unterminated strings full of escaped quotes (a quote-by-quote
        # string scan would reread the rest of the text from each one).
        (b"[" * 70 + b'"' + b'\\"' * 5000, "deeper"),
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


@pytest.mark.parametrize(
    "inside",
    [
        "\\\\",  # an escaped backslash: the quote after it ends the string
        '\\"',  # an escaped quote does not end it
        '\\\\\\"',  # an escaped backslash, then an escaped quote
        "[[{{",
    ],
)
def test_depth_counts_only_brackets_outside_strings(inside: str) -> None:
    """
    Escapes inside strings are read as a decoder reads them, so the depth
    limit neither misses structural brackets after a string ending in an
    escaped backslash nor counts brackets inside strings.
    """
    depth = jsonio.MAX_DEPTH
    within = "[" * depth + f'"{inside}"' + "]" * depth
    assert jsonio.loads(within) is not None
    beyond = "[" * (depth + 1) + f'"{inside}"' + "]" * (depth + 1)
    with pytest.raises(NotJSON) as info:
        jsonio.loads(beyond)
    assert "deeper" in info.value.detail


def test_dumps_never_writes_non_finite_numbers() -> None:
    """
    ``Infinity`` and ``NaN`` are never written (they are not JSON): the
    output still parses as I-JSON.
    """
    written = jsonio.dumps({"a": float("inf"), "b": float("nan")})
    assert jsonio.loads(written) == {"a": None, "b": None}


def test_dumps_writes_what_the_fast_encoder_refuses() -> None:
    """
    Integers beyond 64 bits and non-string keys are written as the standard
    library writes them; a value that is not JSON at all is refused with
    ``TypeError``.
    """
    assert (
        jsonio.dumps({"n": 2**70, 1: [True, None]})
        == b'{"n":1180591620717411303424,"1":[true,null]}'
    )
    with pytest.raises(TypeError):
        jsonio.dumps({"a": {1, 2}})


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
