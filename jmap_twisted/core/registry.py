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

from jmap_twisted.core.request import is_id
from jmap_twisted.errors import AccountNotFound, AccountNotSupportedByMethod, InvalidArguments

if TYPE_CHECKING:
    from jmap_twisted.core.limits import CoreLimits
    from jmap_twisted.interfaces import IPrincipal
    from jmap_twisted.records import Account

#: A method implementation: given the call's context and its (resolved)
#: arguments, the response arguments.
MethodHandler = Callable[["CallContext", dict[str, Any]], Awaitable[dict[str, Any]]]
#: The ``accountCapabilities`` of an account as a user sees it (see
#: :func:`jmap_twisted.core.session.account_capabilities`).
AccountCapabilities = Callable[["Account", "IPrincipal", "Registry"], Mapping[str, Any]]

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

    def capability_of(self, name: str) -> str | None:
        """
        The capability providing the method called ``name``, or ``None``
        when there is no such method.
        """
        method = self._methods.get(name)
        return None if method is None else method.capability


class CallContext:
    """
    What a method implementation may know and do beyond its arguments.

    :ivar principal: the authenticated user.
    :ivar using: the request's capabilities.
    :ivar created_ids: the request's creation id → id map; ``/set`` methods
        add to it.
    :ivar call_id: this call's ``methodCallId``.
    :ivar limits: the core limits in force.
    :param account_capabilities: what each account offers the user; the
        methods of a capability it lacks refuse it.
    """

    def __init__(
        self,
        principal: IPrincipal,
        registry: Registry,
        using: frozenset[str],
        created_ids: dict[str, str],
        call_id: str,
        limits: CoreLimits,
        account_capabilities: AccountCapabilities,
    ) -> None:
        self.principal = principal
        self.using = using
        self.created_ids = created_ids
        self.call_id = call_id
        self.limits = limits
        self._registry = registry
        self._account_capabilities = account_capabilities
        self.extra_responses: list[tuple[str, dict[str, Any]]] = []

    def account(self, arguments: dict[str, Any], capability: str) -> Account:
        """
        The account named by the ``accountId`` argument.

        :raises InvalidArguments: ``accountId`` is missing or not an Id.
        :raises AccountNotFound: the user cannot access such an account.
        :raises AccountNotSupportedByMethod: the account lacks ``capability``
            (as the session lists its ``accountCapabilities``: a sharee's
            view of an account has mail only).
        """
        account_id = arguments.get("accountId")
        if not is_id(account_id):
            raise InvalidArguments("'accountId' must be an Id.")
        for account in self.principal.accounts:
            if account.id == account_id:
                break
        else:
            raise AccountNotFound("The user has no account with this id.")
        if capability not in self._account_capabilities(account, self.principal, self._registry):
            raise AccountNotSupportedByMethod()
        return account

    def add_response(self, name: str, arguments: dict[str, Any]) -> None:
        """
        Add an implicit response after this call's own (as
        ``EmailSubmission/set`` does with ``onSuccessUpdateEmail``).
        """
        self.extra_responses.append((name, arguments))
