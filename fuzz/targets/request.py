"""
The Request object (RFC 8620 §3.3): :func:`jmap_twisted.core.request.parse_request`.

Properties: only the request-level errors ``notRequest``,
``unknownCapability`` and ``limit`` are raised, their problem details are
strict JSON; a parsed Request written back as JSON parses to the same
Request; at most ``maxCallsInRequest`` calls pass.
"""

from __future__ import annotations

from typing import Any

from fuzz.targets import json_input, strict_json
from jmap_twisted.core.request import Request, is_id, parse_request
from jmap_twisted.errors import LimitExceeded, NotRequest, UnknownCapability

CAPABILITIES = frozenset(
    {"urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", "urn:ietf:params:jmap:submission"}
)
MAX_CALLS = 16


def as_json(request: Request) -> dict[str, Any]:
    """
    A Request written back as its JSON form.
    """
    value: dict[str, Any] = {
        "using": sorted(request.using),
        "methodCalls": [[c.name, c.arguments, c.call_id] for c in request.method_calls],
    }
    if request.created_ids is not None:
        value["createdIds"] = request.created_ids
    return value


def check_request(value: Any) -> Request | None:
    """
    Parse ``value`` as a Request and check the properties; return the
    Request, or ``None`` if it was refused.
    """
    try:
        request = parse_request(value, CAPABILITIES, MAX_CALLS)
    except (NotRequest, UnknownCapability, LimitExceeded) as error:
        problem = strict_json(error.to_problem())
        assert problem["status"] == 400 and problem["type"].startswith(
            "urn:ietf:params:jmap:error:"
        )
        return None
    assert isinstance(value, dict)
    assert request.using <= CAPABILITIES
    assert len(request.method_calls) == len(value["methodCalls"]) <= MAX_CALLS
    for call in request.method_calls:
        assert isinstance(call.name, str) and isinstance(call.arguments, dict)
        assert isinstance(call.call_id, str)
    if request.created_ids is not None:
        assert all(is_id(k) and is_id(v) for k, v in request.created_ids.items())
    assert parse_request(as_json(request), CAPABILITIES, MAX_CALLS) == request
    return request


def test_one_input(data: bytes) -> None:
    parsed, value = json_input(data)
    if parsed:
        check_request(value)
