"""
Identities (RFC 8621 §6): ``Identity/get``, ``/changes``, ``/set``.

Identities are stored as documents in the mail store (the model is
:mod:`jmap_twisted.identity`).  Every account gets a default identity for
its owner's address the first time identities are read; its address can be
changed only to another address the account may send as.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from typing import Any

from jmap_twisted.core.registry import CallContext, Registry
from jmap_twisted.identity import TYPE
from jmap_twisted.interfaces import IMailWriter
from jmap_twisted.methods.mailcontext import MailMethods
from jmap_twisted.methods.standard import (
    SetError,
    apply_patch,
    check_if_in_state,
    set_operations,
    split_unchanged,
    unchangeable,
)
from jmap_twisted.records import Account

SUBMISSION = "urn:ietf:params:jmap:submission"
PROPERTIES = (
    "id",
    "name",
    "email",
    "replyTo",
    "bcc",
    "textSignature",
    "htmlSignature",
    "mayDelete",
)


def _addresses_ok(value: Any) -> bool:
    return value is None or (
        isinstance(value, list)
        and all(
            isinstance(a, dict)
            and set(a) <= {"name", "email"}
            and isinstance(a.get("email"), str)
            and "@" in a["email"]
            and (a.get("name") is None or isinstance(a.get("name"), str))
            for a in value
        )
    )


class IdentityMethods(MailMethods):
    """
    The identities of an account.

    :param domains: mail domains of this server: an account may send as
        ``<owner>@<domain>`` for each.
    """

    def __init__(self, *args: Any, domains: Collection[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.domains = [d.lower() for d in domains]
        self._identities_ready: set[str] = set()

    def install(self, registry: Registry) -> None:
        registry.add_method("Identity/get", SUBMISSION, self.get)
        registry.add_method("Identity/changes", SUBMISSION, self.changes)
        registry.add_method("Identity/set", SUBMISSION, self.set)

    def addresses(self, account: Account) -> list[str]:
        """
        The addresses the account may send as, the primary one first.
        """
        owner = account.name
        if "@" in owner:
            return [owner.lower()]
        return [f"{owner}@{d}".lower() for d in self.domains]

    async def _ensure_default(self, account: Account) -> None:
        if account.id in self._identities_ready:
            return
        addresses = self.addresses(account)

        def create(writer: IMailWriter) -> None:
            if not writer.documents(TYPE) and addresses:
                writer.put_document(
                    TYPE,
                    "I" + secrets.token_hex(8),
                    {
                        "name": account.name,
                        "email": addresses[0],
                        "replyTo": None,
                        "bcc": None,
                        "textSignature": "",
                        "htmlSignature": "",
                    },
                )

        await self.write(account, create)
        self._identities_ready.add(account.id)

    async def get(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments, capability=SUBMISSION)
        await self._ensure_default(account)
        return await self.documents_get(
            context, account, arguments, TYPE, PROPERTIES, {"mayDelete": True}
        )

    async def changes(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        response, _ = await self.changes_of(context, arguments, TYPE, SUBMISSION)
        return response

    def _validate(self, obj: Any, account: Account, creating: bool) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise SetError("invalidProperties", "An Identity must be an object.")
        bad = [k for k in obj if k not in PROPERTIES or k in ("id", "mayDelete")]
        if not isinstance(obj.get("name", ""), str):
            bad.append("name")
        for key in ("textSignature", "htmlSignature"):
            if not isinstance(obj.get(key, ""), str):
                bad.append(key)
        for key in ("replyTo", "bcc"):
            if not _addresses_ok(obj.get(key)):
                bad.append(key)
        email = obj.get("email")
        if creating and not isinstance(email, str):
            bad.append("email")
        if bad:
            raise SetError(
                "invalidProperties", "Invalid Identity properties.", properties=sorted(set(bad))
            )
        if isinstance(email, str) and email.lower() not in self.addresses(account):
            raise SetError("forbiddenFrom", "This account may not send as that address.")
        return {
            "name": obj.get("name", ""),
            "email": email.lower() if isinstance(email, str) else email,
            "replyTo": obj.get("replyTo"),
            "bcc": obj.get("bcc"),
            "textSignature": obj.get("textSignature", ""),
            "htmlSignature": obj.get("htmlSignature", ""),
        }

    async def set(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments, capability=SUBMISSION)
        await self._ensure_default(account)
        create, update, destroy = set_operations(context, arguments)

        def write(writer: IMailWriter) -> dict[str, Any]:
            old_state = writer.state(TYPE)
            check_if_in_state(arguments, old_state)
            documents = writer.documents(TYPE)
            created: dict[str, Any] = {}
            not_created: dict[str, Any] = {}
            for creation_id, obj in create.items():
                try:
                    document = self._validate(obj, account, creating=True)
                except SetError as e:
                    not_created[creation_id] = e.error
                    continue
                identity_id = "I" + secrets.token_hex(8)
                writer.put_document(TYPE, identity_id, document)
                documents[identity_id] = document
                context.created_ids[creation_id] = identity_id
                created[creation_id] = {"id": identity_id, "mayDelete": True}
                created[creation_id].update({k: v for k, v in document.items() if k not in obj})
            updated: dict[str, Any] = {}
            not_updated: dict[str, Any] = {}
            for identity_id, patch in update.items():
                try:
                    if identity_id not in documents:
                        raise SetError("notFound")
                    if not isinstance(patch, dict):
                        raise SetError("invalidPatch", "A patch must be an object.")
                    current = documents[identity_id]
                    full = {"id": identity_id, "mayDelete": True, **current}
                    patch, server_set = split_unchanged(patch, full, ("id", "mayDelete"))
                    if server_set:
                        raise unchangeable(server_set)
                    changed = apply_patch(current, patch)
                    if "email" in patch and changed.get("email") != current.get("email"):
                        raise SetError(
                            "invalidProperties", "email cannot change.", properties=["email"]
                        )
                    document = self._validate(changed, account, creating=False)
                except SetError as e:
                    not_updated[identity_id] = e.error
                    continue
                writer.put_document(TYPE, identity_id, document)
                documents[identity_id] = document
                updated[identity_id] = None
            destroyed: list[str] = []
            not_destroyed: dict[str, Any] = {}
            for identity_id in destroy:
                if identity_id not in documents:
                    not_destroyed[identity_id] = {"type": "notFound"}
                    continue
                writer.delete_document(TYPE, identity_id)
                del documents[identity_id]
                destroyed.append(identity_id)
            return {
                "accountId": account.id,
                "oldState": old_state,
                "newState": writer.state(TYPE),
                "created": created or None,
                "updated": updated or None,
                "destroyed": destroyed or None,
                "notCreated": not_created or None,
                "notUpdated": not_updated or None,
                "notDestroyed": not_destroyed or None,
            }

        return await self.write(account, write)
