"""
What every mail method shares: the mail capability, the store, and
account checks that also make sure the account's standard mailboxes exist.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime

from jmap_twisted.core.registry import CallContext
from jmap_twisted.core.request import is_id
from jmap_twisted.errors import AccountNotFound, FromAccountNotFound, InvalidArguments
from jmap_twisted.interfaces import IBlobStore, IMailReader, IMailStore
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
        batch = await self.store.read(
            account.id, lambda r: r.changes(type_name, since, max_changes)
        )
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

        return await self.store.read(account.id, read)
