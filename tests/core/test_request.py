"""
Validation of the Request object (RFC 8620 §3.3).
"""

from typing import Any

import pytest

from jmap_twisted.core.request import Invocation, is_id, parse_request
from jmap_twisted.errors import LimitExceeded, NotRequest, UnknownCapability

CORE = "urn:ietf:params:jmap:core"


def parse(value: Any, max_calls: int = 16) -> Any:
    return parse_request(value, {CORE}, max_calls)


def test_valid_request() -> None:
    """
    A valid request yields its capabilities, calls and creation ids.
    """
    request = parse(
        {
            "using": [CORE],
            "methodCalls": [["Core/echo", {"x": 1}, "c1"]],
            "createdIds": {"k1": "id1"},
        }
    )
    assert request.using == {CORE}
    assert request.method_calls == (Invocation("Core/echo", {"x": 1}, "c1"),)
    assert request.created_ids == {"k1": "id1"}


def test_created_ids_absent_stays_absent() -> None:
    """
    Without createdIds in the request, none is recorded.
    """
    assert parse({"using": [], "methodCalls": []}).created_ids is None


@pytest.mark.parametrize(
    "value",
    [
        [],
        "x",
        {"methodCalls": []},
        {"using": "core", "methodCalls": []},
        {"using": [1], "methodCalls": []},
        {"using": [CORE]},
        {"using": [CORE], "methodCalls": {}},
        {"using": [CORE], "methodCalls": [["Core/echo", {}]]},
        {"using": [CORE], "methodCalls": [["Core/echo", [], "c"]]},
        {"using": [CORE], "methodCalls": [[1, {}, "c"]]},
        {"using": [CORE], "methodCalls": [["Core/echo", {}, 3]]},
        {"using": [CORE], "methodCalls": ["Core/echo"]},
        {"using": [CORE], "methodCalls": [], "createdIds": []},
        {"using": [CORE], "methodCalls": [], "createdIds": {"k": "bad id!"}},
        {"using": [CORE], "methodCalls": [], "extra": 1},
    ],
)
def test_not_a_request(value: Any) -> None:
    """
    Anything not matching the Request type is notRequest with a detail.
    """
    with pytest.raises(NotRequest) as info:
        parse(value)
    assert info.value.detail


def test_unknown_capability() -> None:
    """
    A capability the server lacks is unknownCapability, naming it.
    """
    with pytest.raises(UnknownCapability) as info:
        parse({"using": [CORE, "urn:example:nope"], "methodCalls": []})
    assert "urn:example:nope" in info.value.detail


def test_too_many_calls() -> None:
    """
    More calls than maxCallsInRequest is the limit error naming that limit.
    """
    calls = [["Core/echo", {}, str(i)] for i in range(3)]
    with pytest.raises(LimitExceeded) as info:
        parse({"using": [CORE], "methodCalls": calls}, max_calls=2)
    assert info.value.to_problem()["limit"] == "maxCallsInRequest"


@pytest.mark.parametrize(
    "value, valid",
    [
        ("abc-_09", True),
        ("", False),
        ("a" * 255, True),
        ("a" * 256, False),
        ("a b", False),
        (1, False),
    ],
)
def test_is_id(value: Any, valid: bool) -> None:
    """
    Ids are 1–255 characters of the URL-safe base64 alphabet.
    """
    assert is_id(value) is valid
