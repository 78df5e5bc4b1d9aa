"""
Thread methods (RFC 8621 §3): ``Thread/get`` and ``Thread/changes``.
"""

from __future__ import annotations

from typing import Any

from jmap_twisted.core.registry import CallContext, Registry
from jmap_twisted.errors import RequestTooLarge
from jmap_twisted.interfaces import IMailReader
from jmap_twisted.methods.mailcontext import MAIL, MailMethods
from jmap_twisted.methods.standard import (
    check_known,
    get_ids,
    get_properties,
    not_found,
)


class ThreadMethods(MailMethods):
    """
    Threads group emails by their Message-ID references and subject.
    """

    def install(self, registry: Registry) -> None:
        registry.add_method("Thread/get", MAIL, self.get)
        registry.add_method("Thread/changes", MAIL, self.changes)

    async def get(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments)
        check_known(arguments, {"accountId", "ids", "properties"})
        ids = get_ids(context, arguments)
        if ids is None:
            raise RequestTooLarge("Thread/get needs 'ids': threads are fetched by id.")
        properties = get_properties(arguments, "properties", ("id", "emailIds"), ("id", "emailIds"))

        def read(reader: IMailReader) -> dict[str, Any]:
            threads = reader.thread_emails(ids)
            listed = []
            for thread_id in ids:
                if thread_id in threads:
                    full = {"id": thread_id, "emailIds": threads[thread_id]}
                    listed.append({p: full[p] for p in ("id", *properties)})
            return {
                "accountId": account.id,
                "state": reader.state("Thread"),
                "list": listed,
                "notFound": not_found(ids, threads),
            }

        return await self.read(account, read)

    async def changes(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        response, _ = await self.changes_of(context, arguments, "Thread")
        return response
