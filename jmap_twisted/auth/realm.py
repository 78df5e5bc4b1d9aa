"""
The realm: turns an authenticated user id into an :class:`IPrincipal`,
with every account the user may access (:func:`accounts_of`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import evolve, frozen
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred
from zope.interface import implementer

from jmap_twisted.interfaces import IDirectory, IMailboxShares, IPrincipal
from jmap_twisted.records import Account, User


async def accounts_of(directory: IDirectory, user_id: str) -> list[Account]:
    """
    Every account a user may access, as their principal lists them: those
    of :meth:`~jmap_twisted.interfaces.IDirectory.accounts_for_user` (their
    own first, then those delegated to them), then, when the directory
    shares mailboxes (:class:`~jmap_twisted.interfaces.IMailboxShares`),
    a view of each account where mailboxes were shared with them
    (:attr:`~jmap_twisted.records.Account.shared` set).
    """
    accounts = list(await directory.accounts_for_user(user_id))
    shares = IMailboxShares(directory, None)
    if shares is not None:
        for account, view in await shares.shared_views_for_user(user_id):
            accounts.append(evolve(account, shared=view))
    return accounts


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
        accounts = await accounts_of(self._directory, user.id)
        return IPrincipal, Principal(user, tuple(accounts)), lambda: None
