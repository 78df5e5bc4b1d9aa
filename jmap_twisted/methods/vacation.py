"""
``VacationResponse/get`` and ``/set`` (RFC 8621 §8): one singleton per
account, stored as a document in the mail store (the model is
:mod:`jmap_twisted.vacation`).
"""

from __future__ import annotations

from typing import Any

from jmap_twisted.core.registry import CallContext, Registry
from jmap_twisted.core.request import parse_utc_date
from jmap_twisted.interfaces import IMailReader, IMailWriter
from jmap_twisted.methods.mailcontext import MailMethods
from jmap_twisted.methods.standard import (
    SetError,
    apply_patch,
    check_if_in_state,
    check_known,
    get_ids,
    get_properties,
    set_operations,
)
from jmap_twisted.vacation import PROPERTIES, SINGLETON, TYPE, current

VACATION = "urn:ietf:params:jmap:vacationresponse"


def _validate(obj: dict[str, Any]) -> None:
    bad = [k for k in obj if k not in PROPERTIES]
    if obj.get("id", SINGLETON) != SINGLETON:
        bad.append("id")
    if not isinstance(obj.get("isEnabled"), bool):
        bad.append("isEnabled")
    for key in ("fromDate", "toDate"):
        if obj.get(key) is not None and parse_utc_date(obj[key]) is None:
            bad.append(key)
    for key in ("subject", "textBody", "htmlBody"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            bad.append(key)
    if bad:
        raise SetError(
            "invalidProperties", "Invalid VacationResponse.", properties=sorted(set(bad))
        )


class VacationMethods(MailMethods):
    """
    The vacation auto-responder's settings.
    """

    def install(self, registry: Registry) -> None:
        registry.add_method("VacationResponse/get", VACATION, self.get)
        registry.add_method("VacationResponse/set", VACATION, self.set)

    async def get(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments, capability=VACATION)
        check_known(arguments, {"accountId", "ids", "properties"})
        ids = get_ids(context, arguments)
        properties = get_properties(arguments, "properties", PROPERTIES, PROPERTIES)

        def read(reader: IMailReader) -> dict[str, Any]:
            vacation = {"id": SINGLETON, **current(reader)}
            found = ids is None or SINGLETON in ids
            return {
                "accountId": account.id,
                "state": reader.state(TYPE),
                "list": [{p: vacation[p] for p in ("id", *properties)}] if found else [],
                "notFound": [] if ids is None else [i for i in ids if i != SINGLETON],
            }

        return await self.read(account, read)

    async def set(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments, capability=VACATION)
        create, update, destroy = set_operations(context, arguments)

        def write(writer: IMailWriter) -> dict[str, Any]:
            old_state = writer.state(TYPE)
            check_if_in_state(arguments, old_state)
            not_created = {
                c: {"type": "singleton", "description": "There is only the singleton."}
                for c in create
            }
            not_destroyed = {
                i: {"type": "singleton", "description": "The singleton cannot be destroyed."}
                for i in destroy
            }
            updated: dict[str, Any] = {}
            not_updated: dict[str, Any] = {}
            for object_id, patch in update.items():
                try:
                    if object_id != SINGLETON:
                        raise SetError("notFound")
                    if not isinstance(patch, dict):
                        raise SetError("invalidPatch", "A patch must be an object.")
                    changed = apply_patch({"id": SINGLETON, **current(writer)}, patch)
                    _validate(changed)
                except SetError as e:
                    not_updated[object_id] = e.error
                    continue
                changed.pop("id", None)
                writer.put_document(TYPE, SINGLETON, changed)
                updated[object_id] = None
            return {
                "accountId": account.id,
                "oldState": old_state,
                "newState": writer.state(TYPE),
                "created": None,
                "updated": updated or None,
                "destroyed": None,
                "notCreated": not_created or None,
                "notUpdated": not_updated or None,
                "notDestroyed": not_destroyed or None,
            }

        return await self.write(account, write)
