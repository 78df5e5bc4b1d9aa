# -*- test-case-name: tests.methods.test_principals, tests.methods.test_share_notifications, tests.methods.test_quota -*-
"""
The filter and sort of a ``/query`` or ``/queryChanges`` (RFC 8620 §5.5)
over objects a method holds whole in memory (principals, share
notifications, quotas): FilterOperators, the type's conditions, its sort
properties, ties broken by id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from attrs import frozen

from jmap_twisted.errors import InvalidArguments, UnsupportedFilter, UnsupportedSort
from jmap_twisted.methods.standard import check_known

#: How deep FilterOperators may nest.
MAX_FILTER_DEPTH = 16


@frozen
class Condition:
    """
    One FilterCondition property of a type.

    :ivar valid: whether a value is of the condition's type.
    :ivar what: the type, for error messages ("a string").
    :ivar matches: whether an object matches a (valid) value.
    """

    valid: Callable[[Any], bool]
    what: str
    matches: Callable[[Any, Mapping[str, Any]], bool]


def is_string(value: Any) -> bool:
    """
    Whether a condition value is a string.
    """
    return isinstance(value, str)


def contains(prop: str) -> Callable[[Any, Mapping[str, Any]], bool]:
    """
    The test of a text condition: the property holds the value, in any
    case (a ``null`` property never matches).
    """

    def matches(value: Any, obj: Mapping[str, Any]) -> bool:
        text = obj.get(prop)
        return isinstance(text, str) and value.casefold() in text.casefold()

    return matches


def equals(prop: str) -> Callable[[Any, Mapping[str, Any]], bool]:
    """
    The test of a condition that the property is the value.
    """
    return lambda value, obj: obj.get(prop) == value


def includes(prop: str) -> Callable[[Any, Mapping[str, Any]], bool]:
    """
    The test of a condition that the property, a list, holds the value
    (a ``null`` property never matches).
    """
    return lambda value, obj: value in (obj.get(prop) or ())


class ObjectQuery:
    """
    The checked ``filter`` and ``sort`` of one call.

    :param type_name: the data type, for error messages.
    :param conditions: its FilterCondition properties.
    :param sorts: the properties it sorts by, each with the key of an object.
    :param query_changes: the call is a ``/queryChanges`` (else a ``/query``).
    :raises InvalidArguments: a malformed argument.
    :raises UnsupportedFilter: an unknown condition or too deep a filter.
    :raises UnsupportedSort: an unknown sort property.
    """

    def __init__(
        self,
        arguments: Mapping[str, Any],
        type_name: str,
        conditions: Mapping[str, Condition],
        sorts: Mapping[str, Callable[[Mapping[str, Any]], Any]],
        query_changes: bool = False,
    ) -> None:
        allowed = {"accountId", "filter", "sort", "calculateTotal"}
        if query_changes:
            allowed |= {"sinceQueryState", "maxChanges", "upToId"}
        else:
            allowed |= {"position", "anchor", "anchorOffset", "limit"}
        check_known(arguments, allowed)
        self._type_name = type_name
        self._conditions = conditions
        self._sorts = sorts
        self.filter = arguments.get("filter")
        if self.filter is not None:
            self._check_filter(self.filter, 0)
        sort = arguments.get("sort") or []
        if not isinstance(sort, list):
            raise InvalidArguments("'sort' must be an array of Comparators.")
        for comparator in sort:
            if not isinstance(comparator, dict) or not isinstance(comparator.get("property"), str):
                raise InvalidArguments("A Comparator is an object with a property.")
            if comparator["property"] not in sorts:
                raise UnsupportedSort(f"{type_name} objects sort by " + ", ".join(sorts) + ".")
            if not isinstance(comparator.get("isAscending", True), bool):
                raise InvalidArguments("'isAscending' must be a boolean.")
            if not isinstance(comparator.get("collation", ""), str):
                raise InvalidArguments("'collation' must be a string.")
        self.sort: list[dict[str, Any]] = sort

    def _check_filter(self, node: Any, depth: int) -> None:
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
                self._check_filter(condition, depth + 1)
            return
        unknown = sorted(set(node) - set(self._conditions))
        if unknown:
            raise UnsupportedFilter(
                f"Unknown {self._type_name} filter: " + ", ".join(unknown) + "."
            )
        for name, value in node.items():
            condition = self._conditions[name]
            if not condition.valid(value):
                raise InvalidArguments(
                    f"The {self._type_name} filter condition {name!r} takes {condition.what}."
                )

    def _matches(self, node: Mapping[str, Any], obj: Mapping[str, Any]) -> bool:
        if "operator" in node:
            results = (self._matches(c, obj) for c in node["conditions"])
            if node["operator"] == "AND":
                return all(results)
            if node["operator"] == "OR":
                return any(results)
            return not any(results)
        return all(self._conditions[name].matches(value, obj) for name, value in node.items())

    def run(self, objects: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """
        The ids of the matching objects, sorted (ties by id).
        """
        matching = [
            (object_id, obj)
            for object_id, obj in objects.items()
            if self.filter is None or self._matches(self.filter, obj)
        ]
        matching.sort(key=lambda item: item[0])
        # Stable sorts, last comparator first: the first one decides.
        for comparator in reversed(self.sort):
            matching.sort(
                key=_of_object(self._sorts[comparator["property"]]),
                reverse=not comparator.get("isAscending", True),
            )
        return [object_id for object_id, _ in matching]


def _of_object(
    key: Callable[[Mapping[str, Any]], Any],
) -> Callable[[tuple[str, Mapping[str, Any]]], Any]:
    return lambda item: key(item[1])
