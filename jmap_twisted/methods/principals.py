# -*- test-case-name: tests.methods.test_principals -*-
"""
Principals (RFC 9670 §2): ``Principal/get``, ``/changes``, ``/query``,
``/queryChanges`` and ``/set`` under ``urn:ietf:params:jmap:principals``.

Every user of the directory is one principal of type ``individual``: its
id is the user's id, its name the username, its email the username when
that is an address.  Each user finds all the principals in their personal
account (its ``currentUserPrincipalId`` names their own); ``accounts`` lists
the accounts of a principal the user may access, as the session shows
them.  Principals change only with the directory (a user created or
deleted, :meth:`~jmap_twisted.interfaces.IMailboxShares.principal_changes_since`);
``Principal/set`` refuses every change, as RFC 9670 §2.5 allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jmap_twisted.core.registry import CallContext, Capability, Registry
from jmap_twisted.core.session import PRINCIPALS, account_object
from jmap_twisted.errors import AccountNotSupportedByMethod
from jmap_twisted.interfaces import IDirectory, IMailboxShares
from jmap_twisted.methods.mailcontext import MAIL
from jmap_twisted.methods.objectquery import Condition, ObjectQuery, contains, equals, is_string
from jmap_twisted.methods.querychanges import from_changes, window
from jmap_twisted.methods.standard import (
    changes_arguments,
    changes_response,
    check_if_in_state,
    check_known,
    get_ids,
    get_properties,
    get_response,
    set_error,
    set_operations,
    string,
)
from jmap_twisted.records import Account, ChangeBatch, User
from jmap_twisted.sharing import email_of
from jmap_twisted.store.changelog import LogEntry, decode_state, encode_state, merge_changes

TYPE = "Principal"
#: The properties of a Principal (RFC 9670 §2.1), ``id`` first.
PROPERTIES = (
    "id",
    "type",
    "name",
    "description",
    "email",
    "timeZone",
    "capabilities",
    "accounts",
)


def _has_account(value: Any, principal: Mapping[str, Any]) -> bool:
    return any(account_id in (principal["accounts"] or {}) for account_id in value)


#: The conditions of a Principal FilterCondition (RFC 9670 §2.4).
CONDITIONS = {
    "accountIds": Condition(
        lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
        "an array of account ids",
        _has_account,
    ),
    "email": Condition(is_string, "a string", contains("email")),
    "name": Condition(is_string, "a string", contains("name")),
    "text": Condition(
        is_string,
        "a string",
        lambda v, p: any(contains(prop)(v, p) for prop in ("name", "email", "description")),
    ),
    "type": Condition(is_string, "a string", equals("type")),
    "timeZone": Condition(is_string, "a string", equals("timeZone")),
}
#: What Principal/query sorts by (RFC 9670 §2.4: name).
SORTS = {"name": lambda principal: str(principal["name"]).casefold()}


def own_account(context: CallContext, arguments: Mapping[str, Any]) -> Account:
    """
    The account named by ``accountId``, which must be the user's personal
    account: the only one holding principals and share notifications.

    :raises jmap_twisted.errors.AccountNotFound: the user has no such account.
    :raises AccountNotSupportedByMethod: it is another user's account.
    """
    account = context.account(dict(arguments), PRINCIPALS)
    if account.owner_id != context.principal.user.id:
        raise AccountNotSupportedByMethod(
            "Principals and share notifications are in the user's personal account."
        )
    return account


class PrincipalMethods:
    """
    The Principal methods over a directory.

    :param directory: the users, providing
        :class:`~jmap_twisted.interfaces.IMailboxShares` for the principals'
        change log.
    """

    def __init__(self, directory: IDirectory) -> None:
        self.directory = directory
        self.shares = IMailboxShares(directory)
        self._registry = Registry()

    def install(self, registry: Registry) -> None:
        """
        Add the principals capability (an empty object in the session, RFC
        9670 §2; the accounts' objects come from
        :func:`~jmap_twisted.core.session.account_capabilities`) and its
        methods.
        """
        self._registry = registry
        registry.add_capability(Capability(PRINCIPALS, {}, {}))
        registry.add_method("Principal/get", PRINCIPALS, self.get)
        registry.add_method("Principal/changes", PRINCIPALS, self.changes)
        registry.add_method("Principal/query", PRINCIPALS, self.query)
        registry.add_method("Principal/queryChanges", PRINCIPALS, self.query_changes)
        registry.add_method("Principal/set", PRINCIPALS, self.set)

    def _object(self, context: CallContext, user: User) -> dict[str, Any]:
        viewer = context.principal
        accounts = {
            account.id: account_object(account, viewer, self._registry)
            for account in viewer.accounts
            if account.owner_id == user.id
        }
        return {
            "id": user.id,
            "type": "individual",
            "name": user.username,
            "description": None,
            "email": email_of(user.username),
            "timeZone": None,
            "capabilities": {MAIL: {}},
            "accounts": accounts or None,
        }

    async def _principals(self, context: CallContext) -> tuple[dict[str, dict[str, Any]], str]:
        """
        Every principal as the user sees it, and the state: read first, so
        that a change racing with the read is reported again, not lost.
        """
        state = encode_state(await self.shares.principal_state())
        users = await self.directory.list_users()
        return {user.id: self._object(context, user) for user in users}, state

    async def _changes(self, since_state: str, max_changes: int | None) -> ChangeBatch:
        current = await self.shares.principal_state()
        since = decode_state(since_state, current, 0)
        entries = await self.shares.principal_changes_since(since)
        if entries:
            current = max(current, entries[-1][0])
        return merge_changes(
            (LogEntry(seq, TYPE, user_id, kind, False) for seq, user_id, kind in entries),
            since,
            current,
            max_changes,
        )

    async def get(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = own_account(context, arguments)
        check_known(arguments, {"accountId", "ids", "properties"})
        ids = get_ids(context, arguments)
        properties = get_properties(arguments, "properties", PROPERTIES, PROPERTIES)
        principals, state = await self._principals(context)
        return get_response(account.id, state, principals, ids, properties)

    async def changes(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = own_account(context, arguments)
        since, max_changes = changes_arguments(arguments)
        batch = await self._changes(since, max_changes)
        return changes_response(account.id, batch)

    async def query(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = own_account(context, arguments)
        request = ObjectQuery(arguments, TYPE, CONDITIONS, SORTS)
        principals, state = await self._principals(context)
        return window(account.id, request.run(principals), state, arguments, True)

    async def query_changes(
        self, context: CallContext, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        account = own_account(context, arguments)
        request = ObjectQuery(arguments, TYPE, CONDITIONS, SORTS, query_changes=True)
        batch = await self._changes(string(arguments, "sinceQueryState"), None)
        principals, _ = await self._principals(context)
        response = from_changes(batch, arguments, request.run(principals))
        return dict(response, accountId=account.id)

    async def set(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = own_account(context, arguments)
        create, update, destroy = set_operations(context, arguments)
        state = encode_state(await self.shares.principal_state())
        check_if_in_state(arguments, state)
        refused = set_error("forbidden", "Principals change only with the server's users.")
        return {
            "accountId": account.id,
            "oldState": state,
            "newState": state,
            "created": None,
            "updated": None,
            "destroyed": None,
            "notCreated": {creation_id: refused for creation_id in create} or None,
            "notUpdated": {principal_id: refused for principal_id in update} or None,
            "notDestroyed": {principal_id: refused for principal_id in destroy} or None,
        }
