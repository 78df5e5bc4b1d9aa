# -*- test-case-name: tests.methods.test_share_with -*-
"""
The ``shareWith`` property of mailboxes (RFC 9670 §4): who else may see a
mailbox, with which rights, as ``Id[MailboxRights]|null`` (principal ids
are user ids, see :mod:`~jmap_twisted.methods.principals`).

A client that uses ``urn:ietf:params:jmap:principals`` sees it on the
mailboxes it may administer: all of them for the account's owner and
delegates, those granting ``a`` for a sharee; on the others, and where the
mailbox is shared with nobody, it is ``null``.  ``Mailbox/set`` takes it
whole or patched (``shareWith/<principal>``,
``shareWith/<principal>/<right>``): the parts of a call touching it are
taken out and checked before the call's transaction, and applied after it
through :class:`~jmap_twisted.sharing.Sharing`, which keeps the directory,
the change log and the share notifications together.

A value shows the rights as granted (:func:`~jmap_twisted.sharing.granted`);
writing back an unchanged value keeps the letters behind it, even those no
JMAP right stands for alone (``l`` without ``r``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.logger import Logger

from jmap_twisted import rights
from jmap_twisted.core.registry import CallContext
from jmap_twisted.core.session import PRINCIPALS
from jmap_twisted.errors import NoSuchUser, ServerPartialFail
from jmap_twisted.methods.standard import SetError
from jmap_twisted.records import Account
from jmap_twisted.sharing import Sharing, SharingIncomplete, SharingRefused, granted

log = Logger()

SHARE_WITH = "shareWith"

#: A mailbox's shares: sharee (principal) id → RFC 4314 letters.
Letters = dict[str, str]


def offered(context: CallContext, sharing: Sharing | None) -> bool:
    """
    Whether this call's mailboxes have ``shareWith``: the server shares
    mailboxes and the request uses the principals capability.
    """
    return sharing is not None and PRINCIPALS in context.using


def properties(
    base: Sequence[str], context: CallContext, sharing: Sharing | None
) -> tuple[str, ...]:
    """
    The Mailbox properties of this call: ``base``, with ``shareWith`` when
    :func:`offered`.
    """
    return (*base, SHARE_WITH) if offered(context, sharing) else tuple(base)


def _administered(account: Account) -> set[str] | None:
    """
    The mailboxes whose sharing the user sees and changes: ``None`` for
    all (the owner and delegates), else those granting them ``a``.
    """
    if account.shared is None:
        return None
    return {m for m, letters in account.shared.rights if rights.holds(letters, "a")}


async def shown(sharing: Sharing, account: Account) -> dict[str, dict[str, dict[str, bool]]]:
    """
    The ``shareWith`` of every shared mailbox of the account the user may
    administer; a mailbox not in it shows ``null``.
    """
    administered = _administered(account)
    values: dict[str, dict[str, dict[str, bool]]] = {}
    for share in await sharing.shares_of(account):
        if administered is None or share.mailbox_id in administered:
            values.setdefault(share.mailbox_id, {})[share.user_id] = granted(share.rights)
    return values


def _invalid(description: str) -> SetError:
    return SetError("invalidProperties", description, properties=[SHARE_WITH])


def _right_letters(right: str) -> str:
    try:
        return rights.letters_of({right: True})
    except ValueError:
        raise _invalid(f"{right!r} is not a mailbox right.") from None


class ShareWithChanges:
    """
    The ``shareWith`` parts of one ``Mailbox/set``: taken out of its
    creates and updates by :meth:`take`, checked, and applied by
    :meth:`apply` once the rest committed.

    :param sharing: how shares change.
    :param account: the account of the mailboxes.
    :param context: the call (its user is who changes the shares).
    """

    def __init__(self, sharing: Sharing, account: Account, context: CallContext) -> None:
        self._sharing = sharing
        self._account = account
        self._context = context
        self._current: dict[str, Letters] = {}
        self._known: dict[str, bool] = {}
        self._created: dict[str, Letters] = {}
        self._updated: dict[str, Letters] = {}
        self._not_created: dict[str, Any] = {}
        self._not_updated: dict[str, Any] = {}

    async def take(
        self, create: Mapping[str, Any], update: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """
        The creates and updates without their ``shareWith`` parts, and
        without those whose ``shareWith`` is refused (their SetErrors are
        added to the response by :meth:`apply`).
        """
        touching = any(isinstance(o, dict) and SHARE_WITH in o for o in create.values()) or any(
            isinstance(p, dict) and any(_is_share_path(k) for k in p) for p in update.values()
        )
        if not touching:
            return dict(create), dict(update)
        for share in await self._sharing.shares_of(self._account):
            self._current.setdefault(share.mailbox_id, {})[share.user_id] = share.rights
        creates: dict[str, Any] = {}
        for creation_id, obj in create.items():
            if not isinstance(obj, dict) or SHARE_WITH not in obj:
                creates[creation_id] = obj
                continue
            try:
                if self._account.shared is not None:
                    raise SetError("forbidden", "Only the account's owner shares new mailboxes.")
                self._created[creation_id] = await self._whole(obj[SHARE_WITH], {})
            except SetError as error:
                self._not_created[creation_id] = error.error
                continue
            creates[creation_id] = {k: v for k, v in obj.items() if k != SHARE_WITH}
        updates: dict[str, Any] = {}
        for mailbox_id, patch in update.items():
            paths = [k for k in patch if _is_share_path(k)] if isinstance(patch, dict) else []
            if not paths:
                updates[mailbox_id] = patch
                continue
            try:
                self._check_administers(mailbox_id)
                self._updated[mailbox_id] = await self._patched(
                    mailbox_id, {k: patch[k] for k in paths}
                )
            except SetError as error:
                self._not_updated[mailbox_id] = error.error
                continue
            updates[mailbox_id] = {k: v for k, v in patch.items() if k not in paths}
        return creates, updates

    def _check_administers(self, mailbox_id: str) -> None:
        shared = self._account.shared
        if shared is None:
            return
        letters = dict(shared.rights).get(mailbox_id, "")
        # A mailbox the sharee may not list is not found by the update.
        if rights.holds(letters, "l") and not rights.holds(letters, "a"):
            raise SetError("forbidden", "Changing shareWith needs the administer right (a).")

    async def _principal(self, principal_id: str) -> None:
        if principal_id == self._account.owner_id:
            raise _invalid("A mailbox cannot be shared with its account's owner.")
        if principal_id not in self._known:
            user = await self._sharing.directory.get_user_by_id(principal_id)
            self._known[principal_id] = user is not None
        if not self._known[principal_id]:
            raise _invalid(f"No such principal: {principal_id}.")

    def _letters(self, value: Any, current: str) -> str:
        """
        The letters of one principal's ``MailboxRights``; the current ones
        when it shows them unchanged.
        """
        if not isinstance(value, dict):
            raise _invalid("Each shareWith value must be a MailboxRights object.")
        try:
            letters = rights.letters_of(value)
        except ValueError as error:
            raise _invalid(f"shareWith: {error}.") from None
        return current if letters == rights.letters_of(granted(current)) else letters

    async def _whole(self, value: Any, current: Letters) -> Letters:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _invalid("shareWith must map principal ids to MailboxRights, or be null.")
        target: Letters = {}
        for principal_id, rights_value in value.items():
            await self._principal(principal_id)
            target[principal_id] = self._letters(rights_value, current.get(principal_id, ""))
        return {p: letters for p, letters in target.items() if letters}

    async def _patched(self, mailbox_id: str, patch: Mapping[str, Any]) -> Letters:
        current = self._current.get(mailbox_id, {})
        if SHARE_WITH in patch:
            if len(patch) > 1:
                raise SetError("invalidPatch", "shareWith is both set and patched.")
            return await self._whole(patch[SHARE_WITH], current)
        target = dict(current)
        whole: set[str] = set()
        parted: set[str] = set()
        for path, value in sorted(patch.items()):
            parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
            if len(parts) > 2 or not all(parts):
                raise SetError("invalidPatch", f"'{path}' is not a path into shareWith.")
            principal_id = parts[0]
            await self._principal(principal_id)
            (parted if len(parts) == 2 else whole).add(principal_id)
            if principal_id in whole and principal_id in parted:
                raise SetError("invalidPatch", f"shareWith/{principal_id} is set and patched.")
            held = target.get(principal_id, "")
            if len(parts) == 1:
                letters = "" if value is None else self._letters(value, held)
            elif value is None or value is False:
                letters = "".join(c for c in held if c not in _right_letters(parts[1]))
            elif value is True:
                letters = rights.normalise(held + _right_letters(parts[1]))
            else:
                raise _invalid(f"{path} must be true or false.")
            target[principal_id] = letters
        return {p: letters for p, letters in target.items() if letters}

    async def apply(self, result: dict[str, Any]) -> bool:
        """
        Share the mailboxes the call created or updated as asked, and add
        the refused ``shareWith`` SetErrors to its response.

        :return: whether any share changed.
        :raises ServerPartialFail: a share could not be changed, or was
            changed without what follows it (the mailboxes' other
            properties committed already).
        """
        for key, errors in (("notCreated", self._not_created), ("notUpdated", self._not_updated)):
            if errors:
                result[key] = {**(result.get(key) or {}), **errors}
        changed = False
        created = result.get("created") or {}
        for creation_id, target in self._created.items():
            if creation_id in created:
                changed |= await self._share(created[creation_id]["id"], {}, target)
        updated = result.get("updated") or {}
        for mailbox_id, target in self._updated.items():
            if mailbox_id in updated:
                current = self._current.get(mailbox_id, {})
                changed |= await self._share(mailbox_id, current, target)
        return changed

    async def _share(self, mailbox_id: str, old: Letters, new: Letters) -> bool:
        changed = False
        for principal_id in sorted(old.keys() | new.keys()):
            letters = new.get(principal_id, "")
            if old.get(principal_id, "") == letters:
                continue
            try:
                change = await self._sharing.set_rights(
                    self._account, mailbox_id, principal_id, letters, self._context.principal.user
                )
            except SharingIncomplete:
                raise ServerPartialFail(
                    f"The sharing of {mailbox_id} changed, but was not fully recorded."
                ) from None
            except (SharingRefused, NoSuchUser, ValueError):
                # The mailbox or the principal went away since the checks.
                log.failure("Sharing {mailbox_id} after Mailbox/set", mailbox_id=mailbox_id)
                raise ServerPartialFail(
                    f"The sharing of {mailbox_id} could not be changed as asked."
                ) from None
            changed |= change.changed
        return changed


def _is_share_path(path: str) -> bool:
    return path == SHARE_WITH or path.startswith(SHARE_WITH + "/")


async def forget_destroyed(sharing: Sharing, account: Account, result: Mapping[str, Any]) -> None:
    """
    Drop the shares of the mailboxes a ``Mailbox/set`` destroyed.

    :raises ServerPartialFail: the directory could not drop them (logged).
    """
    for mailbox_id in result.get("destroyed") or ():
        try:
            await sharing.forget_mailbox(account, mailbox_id)
        except Exception:
            log.failure(
                "Dropping the shares of destroyed mailbox {mailbox_id}", mailbox_id=mailbox_id
            )
            raise ServerPartialFail(
                f"Mailbox {mailbox_id} was destroyed, but its shares remain."
            ) from None
