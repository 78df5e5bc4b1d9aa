# -*- test-case-name: tests.methods.test_quota -*-
"""
Quotas (RFC 9425): ``Quota/get``, ``Quota/changes``, ``Quota/query`` and
``Quota/queryChanges`` under ``urn:ietf:params:jmap:quota``, and the
``overQuota`` SetError (RFC 8620 §5.3) of the methods that store emails.

An account has a ``Quota`` object per limit an administrator set
(``jmap-admin quota set``): ``storage`` (resource type ``octets``: the
sizes of its emails) and ``messages`` (``count``: how many emails).  Both
apply to the ``Mail`` data type and to the account alone (scope
``account``).  An account without limits has no ``Quota`` objects: RFC
9425 gives every object a ``hardLimit``.  Usage and limits come from the
mail store (:meth:`~jmap_twisted.interfaces.IMailReader.quota`), which
keeps them in the transactions that change them (``docs/quota.rst``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from jmap_twisted.core.registry import CallContext, Capability, Registry
from jmap_twisted.errors import OverQuota
from jmap_twisted.interfaces import IMailReader
from jmap_twisted.methods import querychanges
from jmap_twisted.methods.mailcontext import MAIL, MailMethods
from jmap_twisted.methods.objectquery import (
    Condition,
    ObjectQuery,
    contains,
    equals,
    includes,
    is_string,
)
from jmap_twisted.methods.standard import (
    check_known,
    get_ids,
    get_properties,
    get_response,
    set_error,
)
from jmap_twisted.records import Account, AccountQuota
from jmap_twisted.store.quota import MESSAGES, QUOTA_TYPE, STORAGE

QUOTA = "urn:ietf:params:jmap:quota"

#: The properties of a Quota (RFC 9425 §4.1), ``id`` first.
PROPERTIES = (
    "id",
    "resourceType",
    "used",
    "hardLimit",
    "scope",
    "name",
    "types",
    "warnLimit",
    "softLimit",
    "description",
)
#: The conditions of a Quota FilterCondition (RFC 9425 §4.4), each a string.
CONDITIONS = {
    "name": Condition(is_string, "a string", contains("name")),
    "scope": Condition(is_string, "a string", equals("scope")),
    "resourceType": Condition(is_string, "a string", equals("resourceType")),
    "type": Condition(is_string, "a string", includes("types")),
}
#: What a Quota/query sorts by (RFC 9425 §4.4): names without case, usage
#: as is.
SORTS = {
    "name": lambda quota: str(quota["name"]).casefold(),
    "used": lambda quota: quota["used"],
}
#: The data type every quota of this server applies to, and the
#: capability a client needs to recognise it.
_TYPES = {"Mail": MAIL}


def quota_objects(
    account: Account, quota: AccountQuota, using: Collection[str]
) -> dict[str, dict[str, Any]]:
    """
    The Quota objects of an account, by id, as a client with the
    capabilities ``using`` sees them: RFC 9425 §4.1 leaves out the types
    whose capability it did not ask for, and the objects left with none.
    """
    types = [name for name, capability in _TYPES.items() if capability in using]
    if not types:
        return {}
    objects: dict[str, dict[str, Any]] = {}
    if quota.storage_limit is not None:
        objects[STORAGE] = {
            "id": STORAGE,
            "resourceType": "octets",
            "used": quota.used_octets,
            "hardLimit": quota.storage_limit,
            "scope": "account",
            "name": f"Mail storage of {account.name}",
            "types": types,
            "warnLimit": None,
            "softLimit": None,
            "description": "The total size of the account's emails, each counted in full.",
        }
    if quota.message_limit is not None:
        objects[MESSAGES] = {
            "id": MESSAGES,
            "resourceType": "count",
            "used": quota.used_messages,
            "hardLimit": quota.message_limit,
            "scope": "account",
            "name": f"Messages of {account.name}",
            "types": types,
            "warnLimit": None,
            "softLimit": None,
            "description": "The number of emails the account holds.",
        }
    return objects


def over_quota_error(error: OverQuota) -> dict[str, Any]:
    """
    The ``overQuota`` SetError (RFC 8620 §5.3) of an email that would
    take its account past a limit.
    """
    if error.resource == "count":
        what = f"the account holds the most emails its quota allows ({error.limit})"
    else:
        what = (
            f"the account's storage quota ({error.limit} octets, {error.used} used)"
            " has no room for this email"
        )
    return set_error("overQuota", f"Not stored: {what}.")


class QuotaMethods(MailMethods):
    """
    The Quota methods over a mail store.
    """

    def install(self, registry: Registry) -> None:
        """
        Add the quota capability (an empty object in the session and in
        each account, RFC 9425 §2) and its methods.
        """
        registry.add_capability(Capability(QUOTA, {}, {}))
        registry.add_method("Quota/get", QUOTA, self.get)
        registry.add_method("Quota/changes", QUOTA, self.changes)
        registry.add_method("Quota/query", QUOTA, self.query)
        registry.add_method("Quota/queryChanges", QUOTA, self.query_changes)

    async def _objects(
        self, context: CallContext, account: Account
    ) -> tuple[dict[str, dict[str, Any]], str]:
        """
        The account's Quota objects as the client sees them, and the Quota
        state, read together.
        """

        def read(reader: IMailReader) -> tuple[AccountQuota, str]:
            return reader.quota(), reader.state(QUOTA_TYPE)

        quota, state = await self.read(account, read)
        return quota_objects(account, quota, context.using), state

    async def get(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments, capability=QUOTA)
        check_known(arguments, {"accountId", "ids", "properties"})
        ids = get_ids(context, arguments)
        properties = get_properties(arguments, "properties", PROPERTIES, PROPERTIES)
        objects, state = await self._objects(context, account)
        return get_response(account.id, state, objects, ids, properties)

    async def changes(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        response, batch = await self.changes_of(context, arguments, QUOTA_TYPE, QUOTA)
        # RFC 9425 §4.3: ["used"] when only usage changed.
        response["updatedProperties"] = ["used"] if batch.counts_only else None
        return response

    async def query(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments, capability=QUOTA)
        request = ObjectQuery(arguments, QUOTA_TYPE, CONDITIONS, SORTS)
        objects, state = await self._objects(context, account)
        return querychanges.window(
            account.id, request.run(objects), state, arguments, can_calculate_changes=True
        )

    async def query_changes(
        self, context: CallContext, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        account = await self.account(context, arguments, capability=QUOTA)
        request = ObjectQuery(arguments, QUOTA_TYPE, CONDITIONS, SORTS, query_changes=True)
        using = context.using

        def read(reader: IMailReader) -> dict[str, Any]:
            objects = quota_objects(account, reader.quota(), using)
            return querychanges.compute(reader, QUOTA_TYPE, arguments, request.run(objects))

        return dict(await self.read(account, read), accountId=account.id)
