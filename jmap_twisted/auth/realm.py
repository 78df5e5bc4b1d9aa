"""
The realm: turns an authenticated user id into an :class:`IPrincipal`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred
from zope.interface import implementer

from jmap_twisted.interfaces import IDirectory, IPrincipal
from jmap_twisted.records import Account, User


@implementer(IPrincipal)
@frozen
class Principal:
    """
    An authenticated user and the accounts they could access at login.
    """

    user: User
    accounts: tuple[Account, ...]


@implementer(IRealm)
class JMAPRealm:
    """
    Looks the user and their accounts up afresh at every login, so changes
    made with the admin command apply to the next request.
    """

    def __init__(self, directory: IDirectory) -> None:
        self._directory = directory

    def requestAvatar(self, avatarId: Any, mind: object, *interfaces: Any) -> Any:
        if IPrincipal not in interfaces:
            raise NotImplementedError("the JMAP realm only provides IPrincipal")
        return Deferred.fromCoroutine(self._principal(avatarId))

    async def _principal(self, user_id: str) -> tuple[Any, Principal, Callable[[], None]]:
        user = await self._directory.get_user_by_id(user_id)
        if user is None:
            # Deleted between the credential check and now.
            raise UnauthorizedLogin()
        accounts = await self._directory.accounts_for_user(user.id)
        return IPrincipal, Principal(user, tuple(accounts)), lambda: None
