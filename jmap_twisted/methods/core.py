"""
The core capability (RFC 8620 §2) and ``Core/echo`` (§4).
"""

from __future__ import annotations

from typing import Any

from jmap_twisted.core.limits import CoreLimits
from jmap_twisted.core.registry import CORE, CallContext, Capability, Registry

#: Collation algorithms (RFC 4790) the server implements for sorting and
#: filtering.
COLLATIONS = ["i;ascii-casemap", "i;octet", "i;unicode-casemap"]


async def echo(context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """
    ``Core/echo``: return the arguments unchanged.
    """
    return arguments


def install(registry: Registry, limits: CoreLimits) -> None:
    """
    Register the core capability with its limits, and ``Core/echo``.
    """
    registry.add_capability(Capability(CORE, limits.as_capability(COLLATIONS)))
    registry.add_method("Core/echo", CORE, echo)
