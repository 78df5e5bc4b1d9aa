"""
I-JSON reading and JSON writing (RFC 7493) on generated documents and
octets: refused only as ``notJSON``, written as strict JSON that reads back
equal.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fuzz.targets.jsonio import check_json
from jmap_twisted.core.jsonio import dumps, loads
from jmap_twisted.errors import NotJSON
from tests.property.strategies import JSON, PROPERTY


@PROPERTY
@given(JSON)
def test_values_round_trip(value: Any) -> None:
    """
    Every JSON value written by ``dumps`` reads back equal with ``loads``.
    """
    assert loads(dumps(value)) == value
    assert check_json(dumps(value)) == value


@PROPERTY
@given(JSON)
def test_standard_json_text_round_trips(value: Any) -> None:
    """
    JSON text as other encoders write it (ASCII escapes, spaces) reads the
    same.
    """
    assert check_json(json.dumps(value, indent=1)) == value


@PROPERTY
@given(
    st.binary(max_size=200)
    | JSON.map(lambda v: json.dumps(v).encode()).flatmap(
        lambda text: st.binary(max_size=4).map(
            lambda noise: text[: len(text) // 2] + noise + text[len(text) // 2 :]
        )
    )
)
def test_octets_parse_or_not_json(data: bytes) -> None:
    """
    Any octets parse or are refused with ``notJSON``, and what parses is
    written as strict JSON that reads back equal.
    """
    check_json(data)


@PROPERTY
@given(
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "1e400",
            "-1e999",
            "[1e309]",
            '{"a":1,"a":2}',
            "[" * 100 + "]" * 100,
            '"\\ud800"',
            "\ufeff{}",
        ]
    )
)
def test_not_ijson_is_refused(text: str) -> None:
    """
    What I-JSON forbids (non-finite numbers, duplicate names, deep nesting)
    is refused as ``notJSON``; a lone escaped surrogate is read and
    written back as valid JSON.
    """
    result = check_json(text)
    if text == '"\\ud800"':
        assert result == "\ud800"
    else:
        assert result is NotJSON
