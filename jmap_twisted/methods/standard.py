"""
Argument checking and shapes shared by the standard methods of RFC 8620 §5
(``/get``, ``/changes``, ``/set``, ``/query``, ``/queryChanges``).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from jmap_twisted.core.registry import CallContext
from jmap_twisted.core.request import is_id
from jmap_twisted.errors import InvalidArguments, RequestTooLarge, StateMismatch
from jmap_twisted.records import ChangeBatch

UNSIGNED_MAX = 2**53 - 1


def check_known(arguments: Mapping[str, Any], allowed: Collection[str]) -> None:
    """
    :raises InvalidArguments: an argument is not one of ``allowed``.
    """
    unknown = sorted(set(arguments) - set(allowed))
    if unknown:
        raise InvalidArguments("Unknown arguments: " + ", ".join(unknown) + ".")


def resolve_id(context: CallContext, value: Any) -> Any:
    """
    An id, or the id created for ``#creationId`` earlier in the request.
    """
    if isinstance(value, str) and value.startswith("#"):
        return context.created_ids.get(value[1:], value)
    return value


def get_ids(context: CallContext, arguments: Mapping[str, Any]) -> list[str] | None:
    """
    The ``ids`` of a ``/get``, creation references resolved, within
    ``maxObjectsInGet``.

    :raises RequestTooLarge: too many ids.
    """
    raw = arguments.get("ids")
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise InvalidArguments("'ids' must be an array of Ids or null.")
    if len(raw) > context.limits.max_objects_in_get:
        raise RequestTooLarge(
            f"At most {context.limits.max_objects_in_get} ids per call (maxObjectsInGet)."
        )
    ids = [resolve_id(context, v) for v in raw]
    # Unknown or malformed ids are reported in notFound, not as errors.
    return list(dict.fromkeys(ids))


def get_properties(
    arguments: Mapping[str, Any], name: str, known: Collection[str], default: Sequence[str]
) -> list[str]:
    """
    A ``properties``-style argument: ``null`` means the default list.

    :raises InvalidArguments: an unknown property is named.
    """
    value = arguments.get(name)
    if value is None:
        return list(default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArguments(f"'{name}' must be an array of property names or null.")
    unknown = [v for v in value if v not in known]
    if unknown:
        raise InvalidArguments(f"Unknown {name}: " + ", ".join(unknown) + ".")
    return list(dict.fromkeys(value))


def unsigned(arguments: Mapping[str, Any], name: str, default: int | None) -> int | None:
    """
    An ``UnsignedInt`` argument.
    """
    value = arguments.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UNSIGNED_MAX:
        raise InvalidArguments(f"'{name}' must be an unsigned integer.")
    return value


def signed(arguments: Mapping[str, Any], name: str, default: int) -> int:
    """
    An ``Int`` argument.
    """
    value = arguments.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > UNSIGNED_MAX:
        raise InvalidArguments(f"'{name}' must be an integer.")
    return value


def boolean(arguments: Mapping[str, Any], name: str, default: bool) -> bool:
    value = arguments.get(name, default)
    if not isinstance(value, bool):
        raise InvalidArguments(f"'{name}' must be a boolean.")
    return value


def string(arguments: Mapping[str, Any], name: str) -> str:
    value = arguments.get(name)
    if not isinstance(value, str):
        raise InvalidArguments(f"'{name}' must be a string.")
    return value


def changes_arguments(arguments: Mapping[str, Any]) -> tuple[str, int | None]:
    """
    ``sinceState`` and ``maxChanges`` of a ``/changes`` call.
    """
    check_known(arguments, {"accountId", "sinceState", "maxChanges"})
    since = string(arguments, "sinceState")
    max_changes = unsigned(arguments, "maxChanges", None)
    if max_changes == 0:
        raise InvalidArguments("'maxChanges' must be greater than 0.")
    return since, max_changes


def check_if_in_state(arguments: Mapping[str, Any], current: str) -> None:
    """
    :raises StateMismatch: ``ifInState`` is given and is not ``current``.
    """
    expected = arguments.get("ifInState")
    if expected is not None and not isinstance(expected, str):
        raise InvalidArguments("'ifInState' must be a string or null.")
    if expected is not None and expected != current:
        raise StateMismatch()


def set_operations(
    context: CallContext, arguments: Mapping[str, Any], extra: Collection[str] = ()
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """
    The ``create``, ``update`` and ``destroy`` of a ``/set``, within
    ``maxObjectsInSet``.
    """
    check_known(arguments, {"accountId", "ifInState", "create", "update", "destroy", *extra})
    create = arguments.get("create") or {}
    update = arguments.get("update") or {}
    destroy = arguments.get("destroy") or []
    if not isinstance(create, dict) or not all(is_id(k) for k in create):
        raise InvalidArguments("'create' must map creation ids to objects.")
    if not isinstance(update, dict) or not all(isinstance(k, str) for k in update):
        raise InvalidArguments("'update' must map ids to patch objects.")
    if not isinstance(destroy, list) or not all(isinstance(i, str) for i in destroy):
        raise InvalidArguments("'destroy' must be an array of ids.")
    if len(create) + len(update) + len(destroy) > context.limits.max_objects_in_set:
        raise RequestTooLarge(
            f"At most {context.limits.max_objects_in_set} objects per call (maxObjectsInSet)."
        )
    update = {resolve_id(context, k): v for k, v in update.items()}
    destroy = [resolve_id(context, i) for i in destroy]
    return create, update, destroy


def set_error(type_name: str, description: str | None = None, **extra: Any) -> dict[str, Any]:
    """
    A SetError object (RFC 8620 §5.3).
    """
    error: dict[str, Any] = {"type": type_name}
    if description:
        error["description"] = description
    error.update(extra)
    return error


class SetError(Exception):
    """
    Raised while processing one object of a ``/set``; becomes its SetError.
    """

    def __init__(self, type_name: str, description: str | None = None, **extra: Any) -> None:
        super().__init__(description or type_name)
        self.error = set_error(type_name, description, **extra)


def utc_date(timestamp: float) -> str:
    """
    A ``UTCDate`` (RFC 8620 §1.4): ``YYYY-MM-DDTHH:MM:SSZ``.
    """
    fields = time.gmtime(int(timestamp))
    if not 1000 <= fields.tm_year <= 9999:
        # The C library writes such a year with other than four digits.
        return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", fields)


def not_found(requested: Iterable[str], found: Collection[str]) -> list[str]:
    """
    The requested ids that were not found, in request order.
    """
    return [i for i in requested if i not in found]


def json_equal(a: Any, b: Any) -> bool:
    """
    Whether two JSON values are equal as JSON: ``true`` is not ``1``.
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(json_equal, a, b))
    return bool(a == b)


def split_unchanged(
    patch: Mapping[str, Any], current: Mapping[str, Any], names: Collection[str]
) -> tuple[dict[str, Any], list[str]]:
    """
    Take the paths into properties that cannot change (server-set or
    immutable ones) out of a PatchObject.

    RFC 8620 §5.3 lets a patch include a server-set property when its
    value is the current one (a client may send back the object it read);
    an immutable property repeated with its current value changes nothing
    either.  Any other value for one makes the update
    ``invalidProperties``.

    :param current: the object's JSON form, with those properties.
    :param names: the properties that cannot change.
    :returns: the patch without the paths into ``names``, and those of its
        paths that would change one (a path into a property, such as
        ``myRights/mayDelete``, is compared at that path).
    """
    rest: dict[str, Any] = {}
    changed: list[str] = []
    for path, value in patch.items():
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")]
        if parts[0] not in names:
            rest[path] = value
            continue
        target: Any = current
        for part in parts:
            if not isinstance(target, Mapping) or part not in target:
                changed.append(path)
                break
            target = target[part]
        else:
            if not json_equal(target, value):
                changed.append(path)
    return rest, changed


def unchangeable(server_set: Sequence[str], other: Sequence[str] = (), why: str = "") -> SetError:
    """
    The ``invalidProperties`` SetError of a patch that would change
    server-set properties (``server_set``) or ``other`` ones, which
    ``why`` explains (e.g. "Immutable").
    """
    reasons = []
    if server_set:
        reasons.append(
            "Set by the server (a patch may only repeat their current values): "
            + ", ".join(server_set)
        )
    if other:
        reasons.append(f"{why}: " + ", ".join(other))
    return SetError("invalidProperties", "; ".join(reasons) + ".", properties=[*server_set, *other])


def apply_patch(current: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """
    Apply a PatchObject (RFC 8620 §5.3) to an object's JSON form.

    :raises SetError: ``invalidPatch`` for a path into something that is
        not an object, or a path that both sets and patches one property.

    Linear in the size of the patch (a patch is client input, as long as
    the request allows): in the paths sorted token by token, a path that
    extends another sorts right after it or after one that extends it too,
    so neighbours are all that need comparing; and every object on a path
    is copied once, however many paths go through it.
    """
    result = {k: (v.copy() if isinstance(v, dict) else v) for k, v in current.items()}
    paths = sorted(patch, key=lambda path: path.split("/"))
    for path, other in pairwise(paths):
        if other.startswith(path + "/"):
            raise SetError("invalidPatch", f"'{path}' and '{other}' overlap.")
    copies = {id(v) for v in result.values() if isinstance(v, dict)}
    for path, value in patch.items():
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")]
        if not parts[0]:
            raise SetError("invalidPatch", f"'{path}' is not a valid patch path.")
        target: Any = result
        for part in parts[:-1]:
            if not isinstance(target, dict) or part not in target:
                raise SetError("invalidPatch", f"'{path}' does not exist.")
            if isinstance(target[part], dict) and id(target[part]) not in copies:
                target[part] = target[part].copy()
                copies.add(id(target[part]))
            target = target[part]
        if not isinstance(target, dict):
            raise SetError("invalidPatch", f"'{path}' does not point into an object.")
        if value is None and len(parts) > 1:
            target.pop(parts[-1], None)
        else:
            target[parts[-1]] = value
    return result


def get_response(
    account_id: str,
    state: str,
    objects: Mapping[str, Mapping[str, Any]],
    ids: Sequence[str] | None,
    properties: Sequence[str],
) -> dict[str, Any]:
    """
    The response of a standard ``/get`` (RFC 8620 §5.1) over objects held
    whole, by id.

    :param ids: the checked ``ids`` argument (``None``: every object).
    :param properties: the checked ``properties`` argument; ``id`` is
        always shown.
    """
    wanted = list(objects) if ids is None else [i for i in ids if i in objects]
    return {
        "accountId": account_id,
        "state": state,
        "list": [{p: objects[i][p] for p in ("id", *properties)} for i in wanted],
        "notFound": [] if ids is None else not_found(ids, objects),
    }


def changes_response(account_id: str, batch: ChangeBatch) -> dict[str, Any]:
    """
    The response of a standard ``/changes`` (RFC 8620 §5.2).
    """
    return {
        "accountId": account_id,
        "oldState": batch.old_state,
        "newState": batch.new_state,
        "hasMoreChanges": batch.has_more_changes,
        "created": list(batch.created),
        "updated": list(batch.updated),
        "destroyed": list(batch.destroyed),
    }
