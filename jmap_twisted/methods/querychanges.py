"""
The result window of ``/query`` and the computation of ``/queryChanges``
(RFC 8620 §5.5, §5.6), shared by every queryable type.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from jmap_twisted.errors import AnchorNotFound, InvalidArguments, TooManyChanges
from jmap_twisted.interfaces import IMailReader
from jmap_twisted.methods.standard import boolean, signed, string, unsigned
from jmap_twisted.records import ChangeBatch

#: The most ids one ``/query`` returns; a larger ``limit`` is capped and
#: the response says so.
MAX_QUERY_LIMIT = 5000


def window_bounds(arguments: Mapping[str, Any]) -> tuple[int, int]:
    """
    ``position`` and the effective ``limit`` when no anchor is given.
    """
    position = signed(arguments, "position", 0)
    limit = unsigned(arguments, "limit", None)
    return position, MAX_QUERY_LIMIT if limit is None else min(limit, MAX_QUERY_LIMIT)


def window(
    account_id: str,
    ids: Sequence[str],
    state: str,
    arguments: Mapping[str, Any],
    can_calculate_changes: bool,
    total: int | None = None,
    offset: int = 0,
) -> dict[str, Any]:
    """
    The ``/query`` response for a result list.

    :param ids: the results, or a slice of them starting at ``offset``
        when the backend already applied ``position`` and ``limit``.
    :param total: the number of results when ``ids`` is a slice.
    """
    total = len(ids) if total is None else total
    position = signed(arguments, "position", 0)
    requested_limit = unsigned(arguments, "limit", None)
    limit = MAX_QUERY_LIMIT if requested_limit is None else min(requested_limit, MAX_QUERY_LIMIT)
    anchor = arguments.get("anchor")
    if anchor is not None:
        if not isinstance(anchor, str):
            raise InvalidArguments("'anchor' must be an Id.")
        if anchor not in ids:
            raise AnchorNotFound()
        position = max(0, ids.index(anchor) + signed(arguments, "anchorOffset", 0))
    elif position < 0:
        position = max(0, total + position)
    calculate_total = boolean(arguments, "calculateTotal", False)
    start = position - offset
    selected = list(ids[max(start, 0) : max(start, 0) + limit])
    response: dict[str, Any] = {
        "accountId": account_id,
        "queryState": state,
        "canCalculateChanges": can_calculate_changes,
        "position": position,
        "ids": selected,
    }
    if calculate_total:
        response["total"] = total
    if requested_limit is None or requested_limit > limit:
        response["limit"] = limit
    return response


def compute(
    reader: IMailReader,
    type_name: str,
    arguments: Mapping[str, Any],
    current: Sequence[str],
    also_changed: Collection[str] = (),
) -> dict[str, Any]:
    """
    ``/queryChanges``: every object changed since the old query state is
    reported removed, and those of them now in the results are added at
    their current index — exact, at the cost of sometimes reporting an
    object removed and re-added at the same place (RFC 8620 §5.6 allows it).

    :param current: the current results.
    :param also_changed: more ids whose position may have moved (e.g. the
        members of changed threads when collapsing threads).
    """
    since = string(arguments, "sinceQueryState")
    unsigned(arguments, "maxChanges", None)
    return from_changes(reader.changes(type_name, since, None), arguments, current, also_changed)


def from_changes(
    batch: ChangeBatch,
    arguments: Mapping[str, Any],
    current: Sequence[str],
    also_changed: Collection[str] = (),
) -> dict[str, Any]:
    """
    ``/queryChanges`` as :func:`compute` answers it, from the changes of
    the type since ``sinceQueryState`` (all of them), for types whose
    changes are not in the mail store.
    """
    since = string(arguments, "sinceQueryState")
    max_changes = unsigned(arguments, "maxChanges", None)
    changed = dict.fromkeys((*batch.destroyed, *batch.updated, *batch.created, *also_changed))
    index = {object_id: i for i, object_id in enumerate(current)}
    removed = [i for i in changed if i not in batch.created]
    added: list[dict[str, Any]] = [
        {"id": i, "index": index[i]}
        for i in sorted((i for i in changed if i in index), key=index.__getitem__)
    ]
    if max_changes is not None and len(removed) + len(added) > max_changes:
        raise TooManyChanges()
    response: dict[str, Any] = {
        "oldQueryState": since,
        "newQueryState": batch.new_state,
        "removed": removed,
        "added": added,
    }
    if boolean(arguments, "calculateTotal", False):
        response["total"] = len(current)
    return response
