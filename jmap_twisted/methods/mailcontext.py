"""
What every mail method shares: the mail capability, the store as the user
may reach it (:meth:`MailMethods.read`, :meth:`MailMethods.write`, the one
way methods reach it: see :mod:`~jmap_twisted.methods.access`), and
account checks that also make sure the account's standard mailboxes exist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from twisted.internet.interfaces import IReactorTime

from jmap_twisted.core.registry import CallContext
from jmap_twisted.core.request import is_id
from jmap_twisted.errors import AccountNotFound, FromAccountNotFound, InvalidArguments
from jmap_twisted.interfaces import IBlobStore, IMailReader, IMailStore, IMailWriter
from jmap_twisted.methods.access import MailAccess
from jmap_twisted.methods.standard import (
    changes_arguments,
    changes_response,
    check_known,
    get_ids,
    get_properties,
    not_found,
)
from jmap_twisted.records import Account, ChangeBatch

MAIL = "urn:ietf:params:jmap:mail"

T = TypeVar("T")


class MailMethods:
    """
    Base of the classes implementing mail methods.

    :param store: the mail store.
    :param blobs: uploaded blobs (attachments, imports).
    :param clock: for ``receivedAt`` of new emails.
    """

    def __init__(self, store: IMailStore, blobs: IBlobStore, clock: IReactorTime) -> None:
        self.store = store
        self.access = MailAccess(store)
        self.blobs = blobs
        self.clock = clock
        self._ready: set[str] = set()

    async def read(
        self,
        account: Account,
        fn: Callable[[IMailReader], T],
        subscriptions: Mapping[str, bool] | None = None,
    ) -> T:
        """
        Run ``fn`` against the account's mail as the user may see it (see
        :meth:`~jmap_twisted.methods.access.MailAccess.read`).
        """
        return await self.access.read(account, fn, subscriptions)

    async def write(self, account: Account, fn: Callable[[IMailWriter], T]) -> T:
        """
        Run ``fn`` in one transaction of the account, each change checked
        against the user's rights (see
        :meth:`~jmap_twisted.methods.access.MailAccess.write`).
        """
        return await self.access.write(account, fn)

    async def account(
        self,
        context: CallContext,
        arguments: Mapping[str, Any],
        key: str = "accountId",
        capability: str = MAIL,
    ) -> Account:
        """
        The account named by an argument, with its standard mailboxes in
        place (set up once per account per process; a sharee's view of an
        account is never set up: its owner's logins do that).
        """
        account = context.account({"accountId": arguments.get(key)}, capability)
        if account.shared is None and account.id not in self._ready:
            await self.store.setup_account(account.id)
            self._ready.add(account.id)
        return account

    async def from_account(self, context: CallContext, arguments: Mapping[str, Any]) -> Account:
        """
        The account named by ``fromAccountId`` (of ``/copy`` methods, RFC
        8620 §5.4 and §6.3), set up like :meth:`account`.

        :raises InvalidArguments: ``fromAccountId`` is missing or not an Id.
        :raises FromAccountNotFound: the user cannot access such an account.
        """
        if not is_id(arguments.get("fromAccountId")):
            raise InvalidArguments("'fromAccountId' must be an Id.")
        try:
            return await self.account(context, arguments, "fromAccountId")
        except AccountNotFound:
            raise FromAccountNotFound("The user has no account with this fromAccountId.") from None

    async def changes_of(
        self,
        context: CallContext,
        arguments: Mapping[str, Any],
        type_name: str,
        capability: str = MAIL,
    ) -> tuple[dict[str, Any], ChangeBatch]:
        """
        A standard ``/changes`` of one type (RFC 8620 §5.2): the response,
        and the batch it came from (for type-specific additions).
        """
        account = await self.account(context, arguments, capability=capability)
        since, max_changes = changes_arguments(arguments)
        batch = await self.read(account, lambda r: r.changes(type_name, since, max_changes))
        return changes_response(account.id, batch), batch

    async def documents_get(
        self,
        context: CallContext,
        account: Account,
        arguments: Mapping[str, Any],
        type_name: str,
        properties: Sequence[str],
        server_set: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """
        A standard ``/get`` (RFC 8620 §5.1) of a type stored as documents,
        each shown with ``server_set`` properties added.
        """
        check_known(arguments, {"accountId", "ids", "properties"})
        ids = get_ids(context, arguments)
        wanted_properties = get_properties(arguments, "properties", properties, properties)
        extra = dict(server_set or {})

        def read(reader: IMailReader) -> dict[str, Any]:
            documents = reader.documents(type_name)
            wanted = list(documents) if ids is None else [i for i in ids if i in documents]
            listed = []
            for document_id in wanted:
                full = {"id": document_id, **documents[document_id], **extra}
                listed.append({p: full.get(p) for p in ("id", *wanted_properties)})
            return {
                "accountId": account.id,
                "state": reader.state(type_name),
                "list": listed,
                "notFound": [] if ids is None else not_found(ids, documents),
            }

        return await self.read(account, read)
