"""
Validation of a JMAP Request object (RFC 8620 §3.3) and of the data types
its arguments are written in (``Id``, ``UTCDate``: RFC 8620 §1.2, §1.4).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import datetime
from typing import Any

from attrs import frozen

from jmap_twisted.errors import LimitExceeded, NotRequest, UnknownCapability

_ID = re.compile(r"[A-Za-z0-9_-]{1,255}\Z")
_REQUEST_MEMBERS = frozenset({"using", "methodCalls", "createdIds"})


def is_id(value: object) -> bool:
    """
    Whether ``value`` is a valid JMAP ``Id`` (RFC 8620 §1.2).
    """
    return isinstance(value, str) and _ID.match(value) is not None


def parse_utc_date(value: Any) -> float | None:
    """
    The POSIX time of a ``UTCDate`` string (RFC 8620 §1.4), or ``None`` if
    it is not one.
    """
    if not isinstance(value, str) or not value.endswith("Z") or "T" not in value:
        return None
    try:
        return datetime.fromisoformat(value[:-1] + "+00:00").timestamp()
    except ValueError:
        return None


@frozen
class Invocation:
    """
    One method call: ``[name, arguments, methodCallId]``.
    """

    name: str
    arguments: dict[str, Any]
    call_id: str


@frozen
class Request:
    """
    A validated Request.

    :ivar using: the capabilities the client uses.
    :ivar method_calls: the calls, in order.
    :ivar created_ids: the client's creation id map, or ``None`` when the
        client sent none (then none is returned either).
    """

    using: frozenset[str]
    method_calls: tuple[Invocation, ...]
    created_ids: dict[str, str] | None


def parse_request(value: Any, known_capabilities: Collection[str], max_calls: int) -> Request:
    """
    Check a parsed JSON value against the Request type.

    :raises NotRequest: the value is not a Request; ``detail`` says why.
    :raises UnknownCapability: ``using`` names a capability this server
        does not have.
    :raises LimitExceeded: more than ``max_calls`` method calls.
    """
    if not isinstance(value, dict):
        raise NotRequest("The request must be a JSON object.")
    using = value.get("using")
    if not isinstance(using, list) or not all(isinstance(c, str) for c in using):
        raise NotRequest("'using' must be an array of capability strings.")
    calls = value.get("methodCalls")
    if not isinstance(calls, list):
        raise NotRequest("'methodCalls' must be an array of Invocations.")
    # Membership tests, not sets: most requests name two or three known
    # capabilities.
    unknown = sorted({c for c in using if c not in known_capabilities})
    if unknown:
        raise UnknownCapability(
            "The server does not support the capabilities: " + ", ".join(unknown) + "."
        )
    if len(calls) > max_calls:
        raise LimitExceeded(
            "maxCallsInRequest",
            f"The request has {len(calls)} method calls; at most {max_calls} are allowed.",
        )
    invocations = []
    for index, call in enumerate(calls):
        if (
            not isinstance(call, list)
            or len(call) != 3
            or not isinstance(call[0], str)
            or not isinstance(call[1], dict)
            or not isinstance(call[2], str)
        ):
            raise NotRequest(
                f"methodCalls[{index}] must be [name: String, arguments: Object, "
                "methodCallId: String]."
            )
        invocations.append(Invocation(call[0], call[1], call[2]))
    created_ids = value.get("createdIds")
    if created_ids is not None:
        if not isinstance(created_ids, dict) or not all(
            is_id(k) and is_id(v) for k, v in created_ids.items()
        ):
            raise NotRequest("'createdIds' must map creation ids to Ids.")
        created_ids = dict(created_ids)
    extra = sorted(k for k in value if k not in _REQUEST_MEMBERS)
    if extra:
        raise NotRequest("Unknown Request properties: " + ", ".join(extra) + ".")
    return Request(frozenset(using), tuple(invocations), created_ids)
