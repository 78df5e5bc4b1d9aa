"""
What every mail method shares: the mail capability, the store, and
account checks that also make sure the account's standard mailboxes exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.interfaces import IReactorTime

from jmap_twisted.core.engine import CallContext
from jmap_twisted.interfaces import IBlobStore, IMailStore
from jmap_twisted.records import Account

MAIL = "urn:ietf:params:jmap:mail"


class MailMethods:
    """
    Base of the classes implementing mail methods.

    :param store: the mail store.
    :param blobs: uploaded blobs (attachments, imports).
    :param clock: for ``receivedAt`` of new emails.
    """

    def __init__(self, store: IMailStore, blobs: IBlobStore, clock: IReactorTime) -> None:
        self.store = store
        self.blobs = blobs
        self.clock = clock
        self._ready: set[str] = set()

    async def account(
        self,
        context: CallContext,
        arguments: Mapping[str, Any],
        key: str = "accountId",
        capability: str = MAIL,
    ) -> Account:
        """
        The account named by an argument, with its standard mailboxes in
        place (set up once per account per process).
        """
        account = context.account({"accountId": arguments.get(key)}, capability)
        if account.id not in self._ready:
            await self.store.setup_account(account.id)
            self._ready.add(account.id)
        return account
