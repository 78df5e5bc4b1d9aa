# -*- test-case-name: tests.methods.test_share_notifications -*-
"""
Share notifications (RFC 9670 §3): ``ShareNotification/get``,
``/changes``, ``/set``, ``/query`` and ``/queryChanges`` under
``urn:ietf:params:jmap:principals``.

:mod:`jmap_twisted.sharing` adds one to the sharee's personal account
whenever someone else changes their rights on a mailbox; they are
documents of the mail store, so their state and changes are the store's,
and they are pushed like any other type.  The user may only destroy them
(``/set`` refuses creating and updating with ``forbidden``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jmap_twisted.core.registry import CallContext, Registry
from jmap_twisted.core.request import parse_utc_date
from jmap_twisted.core.session import PRINCIPALS
from jmap_twisted.interfaces import IMailReader, IMailWriter
from jmap_twisted.methods.mailcontext import MailMethods
from jmap_twisted.methods.objectquery import Condition, ObjectQuery, equals, is_string
from jmap_twisted.methods.principals import own_account
from jmap_twisted.methods.querychanges import compute, window
from jmap_twisted.methods.standard import check_if_in_state, set_error, set_operations
from jmap_twisted.records import Account
from jmap_twisted.sharing import NOTIFICATION

#: The properties of a ShareNotification (RFC 9670 §3.1), ``id`` first.
PROPERTIES = (
    "id",
    "created",
    "changedBy",
    "objectType",
    "objectAccountId",
    "objectId",
    "oldRights",
    "newRights",
    "name",
)


def _created(notification: Mapping[str, Any]) -> float:
    return parse_utc_date(notification.get("created")) or 0.0


#: The conditions of a ShareNotification FilterCondition (RFC 9670 §3.4).
CONDITIONS = {
    "after": Condition(
        lambda v: parse_utc_date(v) is not None,
        "a UTCDate",
        lambda v, n: _created(n) >= (parse_utc_date(v) or 0.0),
    ),
    "before": Condition(
        lambda v: parse_utc_date(v) is not None,
        "a UTCDate",
        lambda v, n: _created(n) < (parse_utc_date(v) or 0.0),
    ),
    "objectType": Condition(is_string, "a string", equals("objectType")),
    "objectAccountId": Condition(is_string, "an account id", equals("objectAccountId")),
}
#: What ShareNotification/query sorts by (RFC 9670 §3.4: created).
SORTS = {"created": _created}


class ShareNotificationMethods(MailMethods):
    """
    The ShareNotification methods over the mail store holding them.
    """

    def install(self, registry: Registry) -> None:
        registry.add_method("ShareNotification/get", PRINCIPALS, self.get)
        registry.add_method("ShareNotification/changes", PRINCIPALS, self.changes)
        registry.add_method("ShareNotification/set", PRINCIPALS, self.set)
        registry.add_method("ShareNotification/query", PRINCIPALS, self.query)
        registry.add_method("ShareNotification/queryChanges", PRINCIPALS, self.query_changes)

    async def account(
        self,
        context: CallContext,
        arguments: Mapping[str, Any],
        key: str = "accountId",
        capability: str = PRINCIPALS,
    ) -> Account:
        """
        The user's personal account, named by ``accountId``: the only one
        holding their share notifications.
        """
        own_account(context, {"accountId": arguments.get(key)})
        return await super().account(context, arguments, key, capability)

    async def get(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments)
        return await self.documents_get(context, account, arguments, NOTIFICATION, PROPERTIES)

    async def changes(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        response, _ = await self.changes_of(context, arguments, NOTIFICATION, PRINCIPALS)
        return response

    async def set(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments)
        create, update, destroy = set_operations(context, arguments)
        refused = set_error("forbidden", "Share notifications can only be destroyed.")

        def write(writer: IMailWriter) -> dict[str, Any]:
            old_state = writer.state(NOTIFICATION)
            check_if_in_state(arguments, old_state)
            existing = set(writer.documents(NOTIFICATION))
            destroyed: list[str] = []
            not_destroyed: dict[str, Any] = {}
            for notification_id in destroy:
                if notification_id not in existing:
                    not_destroyed[notification_id] = set_error("notFound")
                    continue
                writer.delete_document(NOTIFICATION, notification_id)
                existing.discard(notification_id)
                destroyed.append(notification_id)
            return {
                "accountId": account.id,
                "oldState": old_state,
                "newState": writer.state(NOTIFICATION),
                "created": None,
                "updated": None,
                "destroyed": destroyed or None,
                "notCreated": {creation_id: refused for creation_id in create} or None,
                "notUpdated": {notification_id: refused for notification_id in update} or None,
                "notDestroyed": not_destroyed or None,
            }

        return await self.write(account, write)

    async def query(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments)
        request = ObjectQuery(arguments, NOTIFICATION, CONDITIONS, SORTS)

        def read(reader: IMailReader) -> tuple[list[str], str]:
            return request.run(reader.documents(NOTIFICATION)), reader.state(NOTIFICATION)

        ids, state = await self.read(account, read)
        return window(account.id, ids, state, arguments, can_calculate_changes=True)

    async def query_changes(
        self, context: CallContext, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        account = await self.account(context, arguments)
        request = ObjectQuery(arguments, NOTIFICATION, CONDITIONS, SORTS, query_changes=True)

        def read(reader: IMailReader) -> dict[str, Any]:
            current = request.run(reader.documents(NOTIFICATION))
            return compute(reader, NOTIFICATION, arguments, current)

        return dict(await self.read(account, read), accountId=account.id)
