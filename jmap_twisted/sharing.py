# -*- test-case-name: tests.methods.test_share_with, tests.test_admin_share -*-
"""
Sharing mailboxes (RFC 4314 rights, RFC 9670): the one way a share is
granted, changed or revoked, used by ``Mailbox/set`` (``shareWith``) and by
``jmap-admin share``/``unshare``.

A change goes, in order:

1. checks: the mailbox exists in the owner's account (read from the mail
   store), the sharee exists and does not own the account, the rights are
   RFC 4314 letters (:mod:`jmap_twisted.rights`);
2. the directory (:meth:`~jmap_twisted.interfaces.IMailboxShares.set_rights`),
   which is the truth about who sees what: it bumps the sharee's view and
   the access version, so running servers follow at once;
3. the owner's mail store records the mailbox's ``shareWith`` as changed,
   so ``Mailbox`` states move for those who see ``shareWith``;
4. a ``ShareNotification`` (RFC 9670 §3) in the sharee's personal
   account: a document of the mail store, so its state, ``/changes`` and
   push come with the store's change log.  At most
   :data:`MAX_NOTIFICATIONS` are kept per user, the oldest dropped first.

A failure after step 2 is logged and raised as :class:`SharingIncomplete`:
the share holds, what follows it may be missing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from attrs import frozen
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from jmap_twisted import rights
from jmap_twisted.errors import NoSuchUser
from jmap_twisted.interfaces import IDirectory, IMailboxShares, IMailReader, IMailStore, IMailWriter
from jmap_twisted.records import Account, MailboxRecord, MailboxShare, User

log = Logger()

#: The data type of share notifications (RFC 9670 §3), stored as documents.
NOTIFICATION = "ShareNotification"
#: The most share notifications kept per user; a new one beyond drops the
#: oldest.
MAX_NOTIFICATIONS = 100
#: Who ``changedBy`` names when the server's administrator changed a share.
ADMINISTRATOR = "Administrator"


class SharingRefused(ValueError):
    """
    A share cannot be changed as asked (no such mailbox, the sharee owns
    the account); the message says why.
    """


class SharingIncomplete(Exception):
    """
    The directory holds the new share, but recording it in the mail store
    or notifying the sharee failed (the failure was logged).
    """


@frozen
class ShareChange:
    """
    What one call to :meth:`Sharing.set_rights` did.

    :ivar old: the sharee's RFC 4314 letters before (``""``: none).
    :ivar new: their letters now.
    """

    account_id: str
    mailbox_id: str
    user_id: str
    old: str
    new: str

    @property
    def changed(self) -> bool:
        """
        Whether the rights changed.
        """
        return self.old != self.new


def email_of(username: str) -> str | None:
    """
    A user's email address as principals show it: the username when it is
    an address, else ``None``.
    """
    local, at, domain = username.rpartition("@")
    return username if at and local and domain else None


def granted(letters: str) -> dict[str, bool]:
    """
    The ``MailboxRights`` object standing for letters as granted, each
    right true when its letters are held (the form of ``shareWith`` values,
    RFC 9670 §4), whatever the mailbox.
    """
    # A parent holding every letter lifts mayRename's condition on it.
    return rights.mailbox_rights(letters, parent=rights.LETTERS)


def utc_now(clock: IReactorTime) -> str:
    """
    The clock's time as a ``UTCDate`` (RFC 8620 §1.4).
    """
    return datetime.fromtimestamp(int(clock.seconds()), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _note_acl_change(mailbox_id: str) -> Callable[[IMailWriter], None]:
    def note(writer: IMailWriter) -> None:
        # The mailbox's shareWith changed: the store logs the mailbox
        # updated for its owner, its delegates and the sharees holding
        # "a", which moves their Mailbox states (and pushes them) while the
        # other sharees' view states stay.  A store without the method
        # records nothing: the next change of the mailbox shows shareWith.
        note_acl_change = getattr(writer, "note_acl_change", None)
        if note_acl_change is not None:
            note_acl_change(mailbox_id)

    return note


class Sharing:
    """
    Grants, changes and revokes mailbox shares, keeping the directory, the
    owner's change log and the sharee's notifications together.

    :param directory: users and accounts, providing
        :class:`~jmap_twisted.interfaces.IMailboxShares` too.
    :param store: the mail store of the owners' mailboxes and of the
        sharees' notifications.
    :param clock: gives the ``created`` time of notifications.
    """

    def __init__(self, directory: IDirectory, store: IMailStore, clock: IReactorTime) -> None:
        self.directory = directory
        self.shares = IMailboxShares(directory)
        self.store = store
        self.clock = clock

    async def set_rights(
        self, account: Account, mailbox_id: str, user_id: str, letters: str, by: User | None
    ) -> ShareChange:
        """
        Share a mailbox of ``account`` with a user, change their rights on
        it, or (``""``) stop sharing it with them; changing nothing records
        and notifies nothing.

        :param by: who changes it, or ``None`` for the administrator.
        :raises ValueError: the letters are not RFC 4314 rights.
        :raises SharingRefused: no such mailbox in the account, or the user
            owns it.
        :raises jmap_twisted.errors.NoSuchUser: no such user.
        :raises SharingIncomplete: the share changed, what follows failed.
        """
        letters = rights.normalise(letters)
        if user_id == account.owner_id:
            raise SharingRefused("a mailbox cannot be shared with its account's owner")
        sharee = await self.directory.get_user_by_id(user_id)
        if sharee is None:
            raise NoSuchUser(user_id)
        mailboxes = await self.store.read(account.id, _mailboxes)
        mailbox = mailboxes.get(mailbox_id)
        if mailbox is None:
            raise SharingRefused(f"no such mailbox: {mailbox_id}")
        old, new = await self.shares.set_rights(
            account.id, mailbox_id, user_id, letters, None if by is None else by.id
        )
        change = ShareChange(account.id, mailbox_id, user_id, old, new)
        if change.changed:
            try:
                await self.store.write(account.id, _note_acl_change(mailbox_id))
                await self._notify(account, mailbox, change, by)
            except Exception as error:
                log.failure(
                    "Sharing {mailbox_id} of {account_id} with {user_id}: the share holds,"
                    " recording or notifying it failed",
                    mailbox_id=mailbox_id,
                    account_id=account.id,
                    user_id=user_id,
                )
                raise SharingIncomplete(str(error)) from error
        return change

    async def forget_mailbox(self, account: Account, mailbox_id: str) -> list[str]:
        """
        Drop every share of a destroyed mailbox.

        :return: the ids of the users it was shared with.
        """
        return await self.shares.forget_mailbox(account.id, mailbox_id)

    async def shares_of(self, account: Account) -> list[MailboxShare]:
        """
        Every share of the account's mailboxes, by mailbox then sharee.
        """
        return await self.shares.shares_of_account(account.id)

    async def _sharee_rights(
        self, account: Account, mailbox: MailboxRecord, user_id: str, letters: str
    ) -> dict[str, bool]:
        """
        The ``myRights`` a sharee holding ``letters`` on ``mailbox`` has.
        """
        parent: str | None = None
        if mailbox.parent_id is not None:
            found = await self.shares.shares_of_mailboxes(account.id, [mailbox.parent_id])
            parent = next((s.rights for s, _ in found if s.user_id == user_id), "")
        return rights.mailbox_rights(
            letters, parent=parent, is_inbox=mailbox.role == "inbox", sharee=True
        )

    async def _notify(
        self, account: Account, mailbox: MailboxRecord, change: ShareChange, by: User | None
    ) -> None:
        accounts = await self.directory.accounts_for_user(change.user_id)
        personal = next((a for a in accounts if a.owner_id == change.user_id), None)
        if personal is None:
            return  # the sharee was deleted meanwhile
        changed_by: dict[str, Any] = (
            {"name": ADMINISTRATOR, "email": None, "principalId": None}
            if by is None
            else {"name": by.username, "email": email_of(by.username), "principalId": by.id}
        )
        document = {
            "created": utc_now(self.clock),
            "changedBy": changed_by,
            "objectType": "Mailbox",
            "objectAccountId": account.id,
            "objectId": mailbox.id,
            "name": mailbox.name,
            "oldRights": await self._sharee_rights(account, mailbox, change.user_id, change.old),
            "newRights": await self._sharee_rights(account, mailbox, change.user_id, change.new),
        }
        # Ids sort by creation (milliseconds), so the oldest goes first even
        # among notifications of the same second.
        notification_id = f"N{int(self.clock.seconds() * 1000):012x}{secrets.token_hex(4)}"
        await self.store.write(personal.id, _put_notification(notification_id, document))


def _mailboxes(reader: IMailReader) -> dict[str, MailboxRecord]:
    return {m.id: m for m in reader.mailboxes()}


def oldest_first(documents: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """
    The ids of share notifications, oldest first (by ``created``, then id).
    """
    return sorted(documents, key=lambda i: (str(documents[i].get("created")), i))


def _put_notification(
    notification_id: str, document: Mapping[str, Any]
) -> Callable[[IMailWriter], None]:
    def put(writer: IMailWriter) -> None:
        kept = writer.documents(NOTIFICATION)
        excess = len(kept) + 1 - MAX_NOTIFICATIONS
        for old in oldest_first(kept)[: max(excess, 0)]:
            writer.delete_document(NOTIFICATION, old)
        writer.put_document(NOTIFICATION, notification_id, document)

    return put
