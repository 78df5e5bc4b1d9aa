"""
Capabilities and the methods they enable.

A capability contributes an object to the session's ``capabilities`` and,
when it applies to accounts, an object to each account's
``accountCapabilities``.  A method is callable only when the request's
``using`` lists its capability.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

if TYPE_CHECKING:
    from jmap_twisted.core.engine import CallContext

#: A method implementation: given the call's context and its (resolved)
#: arguments, the response arguments.
MethodHandler = Callable[["CallContext", dict[str, Any]], Awaitable[dict[str, Any]]]

CORE = "urn:ietf:params:jmap:core"


@frozen
class Capability:
    """
    A capability this server implements.

    :ivar urn: its URI.
    :ivar session: the object in the session's ``capabilities``.
    :ivar account: the object in ``accountCapabilities`` of each account
        supporting it, or ``None`` when it does not apply to accounts.
    """

    urn: str
    session: Mapping[str, Any] = field(factory=dict)
    account: Mapping[str, Any] | None = None


@frozen
class Method:
    """
    A method (``Foo/bar``) provided by a capability.
    """

    name: str
    capability: str
    handler: MethodHandler


class Registry:
    """
    The capabilities and methods of one server.
    """

    def __init__(self) -> None:
        self._capabilities: dict[str, Capability] = {}
        self._methods: dict[str, Method] = {}

    def add_capability(self, capability: Capability) -> None:
        """
        Make a capability known.

        :raises ValueError: it is already known.
        """
        if capability.urn in self._capabilities:
            raise ValueError(f"capability {capability.urn} registered twice")
        self._capabilities[capability.urn] = capability

    def add_method(self, name: str, capability: str, handler: MethodHandler) -> None:
        """
        Provide a method under a known capability.

        :raises ValueError: the name is taken or the capability is unknown.
        """
        if capability not in self._capabilities:
            raise ValueError(f"unknown capability {capability}")
        if name in self._methods:
            raise ValueError(f"method {name} registered twice")
        self._methods[name] = Method(name, capability, handler)

    @property
    def capabilities(self) -> Mapping[str, Capability]:
        """
        Every capability by URI, in registration order.
        """
        return self._capabilities

    def method(self, name: str, using: frozenset[str]) -> Method | None:
        """
        The method called ``name`` if ``using`` enables it, else ``None``.
        """
        method = self._methods.get(name)
        if method is None or method.capability not in using:
            return None
        return method
