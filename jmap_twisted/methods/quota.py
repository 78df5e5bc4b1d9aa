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

from collections.abc import Callable, Collection, Mapping
from typing import Any

from jmap_twisted.core.registry import CallContext, Capability, Registry
from jmap_twisted.errors import InvalidArguments, OverQuota, UnsupportedFilter, UnsupportedSort
from jmap_twisted.interfaces import IMailReader
from jmap_twisted.methods import querychanges
from jmap_twisted.methods.mailcontext import MAIL, MailMethods
from jmap_twisted.methods.standard import (
    check_known,
    get_ids,
    get_properties,
    not_found,
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
#: The conditions of a Quota FilterCondition (RFC 9425 §4.4).
FILTER_CONDITIONS = ("name", "scope", "resourceType", "type")
#: The properties a Quota/query sorts by (RFC 9425 §4.4).
SORT_PROPERTIES = ("name", "used")
#: How deep FilterOperators may nest.
MAX_FILTER_DEPTH = 16
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
        wanted = list(objects) if ids is None else [i for i in ids if i in objects]
        return {
            "accountId": account.id,
            "state": state,
            "list": [{p: objects[i][p] for p in ("id", *properties)} for i in wanted],
            "notFound": [] if ids is None else not_found(ids, objects),
        }

    async def changes(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        response, batch = await self.changes_of(context, arguments, QUOTA_TYPE, QUOTA)
        # RFC 9425 §4.3: ["used"] when only usage changed.
        response["updatedProperties"] = ["used"] if batch.counts_only else None
        return response

    async def query(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments, capability=QUOTA)
        request = _QuotaQuery(arguments)
        objects, state = await self._objects(context, account)
        return querychanges.window(
            account.id, request.run(objects), state, arguments, can_calculate_changes=True
        )

    async def query_changes(
        self, context: CallContext, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        account = await self.account(context, arguments, capability=QUOTA)
        request = _QuotaQuery(arguments, query_changes=True)
        using = context.using

        def read(reader: IMailReader) -> dict[str, Any]:
            objects = quota_objects(account, reader.quota(), using)
            return querychanges.compute(reader, QUOTA_TYPE, arguments, request.run(objects))

        return dict(await self.read(account, read), accountId=account.id)


class _QuotaQuery:
    """
    The filter and sort of a ``Quota/query`` or ``/queryChanges``
    (RFC 9425 §4.4), checked.
    """

    def __init__(self, arguments: Mapping[str, Any], query_changes: bool = False) -> None:
        allowed = {"accountId", "filter", "sort", "calculateTotal"}
        if query_changes:
            allowed |= {"sinceQueryState", "maxChanges", "upToId"}
        else:
            allowed |= {"position", "anchor", "anchorOffset", "limit"}
        check_known(arguments, allowed)
        self.filter = arguments.get("filter")
        if self.filter is not None:
            _check_filter(self.filter, 0)
        sort = arguments.get("sort") or []
        if not isinstance(sort, list):
            raise InvalidArguments("'sort' must be an array of Comparators.")
        for comparator in sort:
            if not isinstance(comparator, dict) or not isinstance(comparator.get("property"), str):
                raise InvalidArguments("A Comparator is an object with a property.")
            if comparator["property"] not in SORT_PROPERTIES:
                raise UnsupportedSort("Quotas sort by name or used.")
            if not isinstance(comparator.get("isAscending", True), bool):
                raise InvalidArguments("'isAscending' must be a boolean.")
            if not isinstance(comparator.get("collation", ""), str):
                raise InvalidArguments("'collation' must be a string.")
        self.sort: list[dict[str, Any]] = sort

    def run(self, objects: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """
        The ids of the matching objects, sorted (ties by id).
        """
        matching = [o for o in objects.values() if self.filter is None or _matches(self.filter, o)]
        matching.sort(key=lambda o: str(o["id"]))
        # Stable sorts, last comparator first: the first one decides.
        for comparator in reversed(self.sort):
            matching.sort(
                key=_sort_key(comparator["property"]),
                reverse=not comparator.get("isAscending", True),
            )
        return [o["id"] for o in matching]


def _sort_key(prop: str) -> Callable[[Mapping[str, Any]], Any]:
    """
    What a Quota sorts by for a property: names without case, usage as is.
    """
    if prop == "name":
        return lambda quota: str(quota["name"]).casefold()
    return lambda quota: quota[prop]


def _check_filter(node: Any, depth: int) -> None:
    """
    :raises InvalidArguments: a malformed FilterOperator or condition.
    :raises UnsupportedFilter: an unknown condition, or nesting deeper
        than :data:`MAX_FILTER_DEPTH`.
    """
    if not isinstance(node, dict):
        raise InvalidArguments("'filter' must be a FilterOperator or FilterCondition.")
    if depth > MAX_FILTER_DEPTH:
        raise UnsupportedFilter(f"Filters nest at most {MAX_FILTER_DEPTH} deep.")
    if "operator" in node:
        if (
            node.get("operator") not in ("AND", "OR", "NOT")
            or not isinstance(node.get("conditions"), list)
            or set(node) != {"operator", "conditions"}
        ):
            raise InvalidArguments("A FilterOperator has an operator and conditions only.")
        for condition in node["conditions"]:
            _check_filter(condition, depth + 1)
        return
    unknown = sorted(set(node) - set(FILTER_CONDITIONS))
    if unknown:
        raise UnsupportedFilter("Unknown Quota filter: " + ", ".join(unknown) + ".")
    for name, value in node.items():
        if not isinstance(value, str):
            raise InvalidArguments(f"The Quota filter condition {name!r} takes a string.")


def _matches(node: Mapping[str, Any], quota: Mapping[str, Any]) -> bool:
    if "operator" in node:
        results = [_matches(c, quota) for c in node["conditions"]]
        if node["operator"] == "AND":
            return all(results)
        if node["operator"] == "OR":
            return any(results)
        return not any(results)
    for name, value in node.items():
        if name == "name" and value.casefold() not in quota["name"].casefold():
            return False
        if name in ("scope", "resourceType") and quota[name] != value:
            return False
        if name == "type" and value not in quota["types"]:
            return False
    return True
