"""
The Request parser (RFC 8620 §3.3) on generated requests: it refuses only
with ``notRequest``, ``unknownCapability`` or ``limit``, and what it
accepts round-trips.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fuzz.targets.request import CAPABILITIES, MAX_CALLS, as_json, check_request
from jmap_twisted.core.request import parse_request
from tests.property.strategies import ID, JSON, PROPERTY, SMALL_OBJECTS, TEXT

CAPABILITY = st.sampled_from([*sorted(CAPABILITIES), "urn:example:unknown"]) | TEXT
INVOCATION = st.one_of(
    st.tuples(TEXT | st.just("Email/get"), SMALL_OBJECTS, TEXT).map(list),
    st.lists(JSON, max_size=4),
    JSON,
)


@st.composite
def requests(draw: st.DrawFn) -> Any:
    """
    Request-shaped objects: each member valid, invalid, or missing.
    """
    value: dict[str, Any] = {}
    if draw(st.booleans()) or draw(st.booleans()):
        value["using"] = draw(st.lists(CAPABILITY, max_size=4) | JSON)
    if draw(st.booleans()) or draw(st.booleans()):
        value["methodCalls"] = draw(st.lists(INVOCATION, max_size=MAX_CALLS + 2) | JSON)
    if draw(st.booleans()):
        value["createdIds"] = draw(st.dictionaries(ID | TEXT, ID | TEXT, max_size=3) | JSON)
    if draw(st.integers(0, 9)) == 0:
        value[draw(TEXT)] = draw(JSON)
    return value


@PROPERTY
@given(requests() | JSON)
def test_only_request_errors(value: Any) -> None:
    """
    Any JSON value is either a Request or refused with a request-level
    error whose problem details are JSON; an accepted Request written back
    parses to the same Request.
    """
    check_request(value)


@PROPERTY
@given(
    st.lists(st.sampled_from(sorted(CAPABILITIES)), min_size=1, max_size=3),
    st.lists(st.tuples(TEXT, SMALL_OBJECTS, TEXT).map(list), max_size=MAX_CALLS),
    st.none() | st.dictionaries(ID, ID, max_size=3),
)
def test_valid_requests_round_trip(using: list[str], calls: list[Any], created: Any) -> None:
    """
    A valid Request is accepted, keeps its calls in order, and round-trips.
    """
    value: dict[str, Any] = {"using": using, "methodCalls": calls}
    if created is not None:
        value["createdIds"] = created
    request = check_request(value)
    assert request is not None
    assert [[c.name, c.arguments, c.call_id] for c in request.method_calls] == calls
    assert request.created_ids == created
    assert parse_request(as_json(request), CAPABILITIES, MAX_CALLS) == request
