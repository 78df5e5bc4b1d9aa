# -*- test-case-name: tests.methods.test_share_rights -*-
"""
What a user may see and do in an account's mail: everything, as its
owner or a delegate, or what the owner shared with them, mailbox by
mailbox, as RFC 4314 rights (RFC 8621 §2, RFC 9670).

Every mail method reaches the store through :class:`MailAccess`, the one
place rights are enforced.  For an account the user has whole
(:attr:`~jmap_twisted.records.Account.shared` is ``None``) it hands the
store's reader and writer over unchanged.  For a sharee's view it wraps
them in :class:`ViewReader` and :class:`ViewWriter`, which show only
what the view's rights let them see:

- the mailboxes they may list (``l``); a parent they may not list reads
  as ``parentId: null`` (RFC 4314 §4 lists a child without its parent);
  the counts of a mailbox they may not read (``r``) are zero;
- the emails in at least one mailbox they may read (``l`` and ``r``),
  with ``mailboxIds`` cut to the mailboxes they may list; a thread's
  emails that they may read; queries ANDed with the store's
  ``inAnyMailbox`` of the readable mailboxes;
- their own states (:meth:`~jmap_twisted.interfaces.IMailReader.view_state`),
  which move only when something they see changes;
- the octets of the emails they may read, and no documents (identities,
  vacation responses, submissions are not part of a view).

A change is checked before the store makes it; a missing right raises
the ``/set`` error ``forbidden`` naming it, while what the sharee cannot
see stays unknown (``notFound``, or ``invalidProperties`` for a
``mailboxIds`` or ``parentId`` naming it, as for a mailbox that does not
exist):

=======================================  =====================================
Change                                   Needs
=======================================  =====================================
create a mailbox                         ``k`` on the parent; never top level,
                                         never with a role
rename, move or reorder a mailbox        ``x`` on it, ``k`` on the (new)
                                         parent; never the inbox
destroy a mailbox                        ``x``; with its emails also ``t e``
add an email (create, import, copy)      ``i`` on each of its mailboxes;
                                         ``s`` for ``$seen`` and ``w`` for
                                         other keywords on each of them
change an email's ``mailboxIds``         ``i`` on each added, ``t e`` on each
                                         removed; memberships the sharee
                                         cannot see are kept
change ``$seen`` / other keywords        ``s`` / ``w`` on every mailbox of the
                                         email, seen or not (RFC 8621 §2)
destroy an email                         ``t e`` on every mailbox of the email
=======================================  =====================================

Uploads a sharee makes for an account are kept in their personal account
(:func:`uploads_account`), where the methods find them again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from attrs import evolve
from zope.interface import implementer

from jmap_twisted import rights
from jmap_twisted.interfaces import IMailReader, IMailStore, IMailWriter, IPrincipal
from jmap_twisted.methods.standard import SetError
from jmap_twisted.records import (
    Account,
    AccountQuota,
    ChangeBatch,
    EmailRecord,
    MailboxCounts,
    MailboxRecord,
    MailView,
    SharedView,
)

T = TypeVar("T")

SEEN = "$seen"
#: How many email records a scan for a blob loads at a time.
_SCAN_BATCH = 256

#: The JMAP right each letter (or pair) stands for, to say which is missing.
_RIGHT_NAMES = {
    "lr": "mayReadItems (l r)",
    "i": "mayAddItems (i)",
    "te": "mayRemoveItems (t e)",
    "s": "maySetSeen (s)",
    "w": "maySetKeywords (w)",
    "k": "mayCreateChild (k)",
    "x": "mayRename/mayDelete (x)",
    "a": "mayAdmin (a)",
}


def _forbidden(needs: str, what: str) -> SetError:
    return SetError("forbidden", f"{what} needs the right {_RIGHT_NAMES[needs]}.")


class MailAccess:
    """
    The mail store as one user reaches one account of it: the store
    itself for an account they have whole, a view for a shared one.

    :param store: the mail store.
    """

    def __init__(self, store: IMailStore) -> None:
        self.store = store

    async def read(
        self,
        account: Account,
        fn: Callable[[IMailReader], T],
        subscriptions: Mapping[str, bool] | None = None,
    ) -> T:
        """
        Run ``fn`` against a consistent snapshot of the account as the
        user may see it.

        :param subscriptions: a sharee's own ``isSubscribed`` per shared
            mailbox (a mailbox missing from it reads as subscribed, as a
            new share starts); ignored for an account the user has whole.
        """
        shared = account.shared
        if shared is None:
            return await self.store.read(account.id, fn)
        return await self.store.read(
            account.id, lambda reader: fn(ViewReader(reader, shared, subscriptions))
        )

    async def write(
        self, account: Account, fn: Callable[[IMailWriter], T], delivery: bool = False
    ) -> T:
        """
        Run ``fn`` in one transaction of the account, with the user's
        rights checked on every change.
        """
        shared = account.shared
        if shared is None:
            return await self.store.write(account.id, fn, delivery)
        return await self.store.write(
            account.id, lambda writer: fn(ViewWriter(writer, shared)), delivery
        )


@implementer(IMailReader)
class ViewReader:
    """
    A sharee's view of an account's mail, over the store's reader (see
    the module's documentation).

    :param inner: the store's reader of the whole account.
    :param shared: what was shared with the sharee.
    :param subscriptions: the sharee's own ``isSubscribed`` per mailbox.
    """

    def __init__(
        self,
        inner: IMailReader,
        shared: SharedView,
        subscriptions: Mapping[str, bool] | None = None,
    ) -> None:
        self.inner = inner
        self.account_id = inner.account_id
        self.view = rights.mail_view(shared)
        self.letters = dict(shared.rights)
        self._subscriptions = dict(subscriptions or {})
        # Blob ids of emails this view has shown: their octets may be read
        # without looking for an email holding them.
        self._vouched: set[str] = set()
        # The real parent of each mailbox, for myRights (read once).
        self._parents: dict[str, str | None] | None = None

    def rights_on(self, mailbox_id: str | None) -> str:
        """
        The sharee's letters on a mailbox (``""``: none).
        """
        return "" if mailbox_id is None else self.letters.get(mailbox_id, "")

    def my_rights(self, mailbox: MailboxRecord) -> dict[str, bool]:
        """
        The ``myRights`` of a mailbox the sharee sees (RFC 8621 §2).
        """
        if self._parents is None:
            self._parents = {m.id: m.parent_id for m in self.inner.mailboxes()}
        parent = self._parents.get(mailbox.id)
        return rights.mailbox_rights(
            self.rights_on(mailbox.id),
            parent=None if parent is None else self.rights_on(parent),
            is_inbox=mailbox.role == "inbox",
            sharee=True,
        )

    def _real_mailbox(self, mailbox_id: str) -> MailboxRecord | None:
        return next((m for m in self.inner.mailboxes() if m.id == mailbox_id), None)

    def _seen_mailbox(self, record: MailboxRecord) -> MailboxRecord:
        listed = self.view.listed
        return evolve(
            record,
            parent_id=record.parent_id if record.parent_id in listed else None,
            is_subscribed=self._subscriptions.get(record.id, True),
        )

    def _readable(self, record: EmailRecord) -> bool:
        return not record.mailbox_ids.isdisjoint(self.view.readable)

    def _seen_email(self, record: EmailRecord) -> EmailRecord:
        self._vouched.add(record.blob_id)
        return evolve(record, mailbox_ids=record.mailbox_ids & self.view.listed)

    def _restricted(self, filter: Mapping[str, Any] | None) -> dict[str, Any]:
        readable = {"inAnyMailbox": self.view.readable}
        if filter is None:
            return readable
        return {"operator": "AND", "conditions": [dict(filter), readable]}

    def mailboxes(self) -> list[MailboxRecord]:
        listed = self.view.listed
        return [self._seen_mailbox(m) for m in self.inner.mailboxes() if m.id in listed]

    def mailbox_counts(self, mailbox_ids: Collection[str]) -> dict[str, MailboxCounts]:
        wanted = [m for m in mailbox_ids if m in self.view.listed]
        counts = self.inner.mailbox_counts([m for m in wanted if m in self.view.readable])
        return {m: counts.get(m, MailboxCounts()) for m in wanted}

    def emails(self, email_ids: Collection[str]) -> dict[str, EmailRecord]:
        found = self.inner.emails(email_ids)
        return {i: self._seen_email(r) for i, r in found.items() if self._readable(r)}

    def thread_emails(self, thread_ids: Collection[str]) -> dict[str, list[str]]:
        threads = self.inner.thread_emails(thread_ids)
        members = self.inner.emails([e for ids in threads.values() for e in ids])
        readable = {i for i, r in members.items() if self._readable(r)}
        shown = {t: [e for e in ids if e in readable] for t, ids in threads.items()}
        return {t: ids for t, ids in shown.items() if ids}

    def query_emails(
        self,
        filter: Mapping[str, Any] | None,
        sort: Sequence[Mapping[str, Any]],
        collapse_threads: bool,
        position: int = 0,
        limit: int | None = None,
    ) -> tuple[list[str], int]:
        return self.inner.query_emails(
            self._restricted(filter), sort, collapse_threads, position, limit
        )

    def state(self, type_name: str) -> str:
        return self.inner.view_state(type_name, self.view)

    def changes(self, type_name: str, since_state: str, max_changes: int | None) -> ChangeBatch:
        return self.inner.view_changes(type_name, since_state, max_changes, self.view)

    def view_state(self, type_name: str, view: MailView) -> str:
        return self.inner.view_state(type_name, view)

    def view_changes(
        self, type_name: str, since_state: str, max_changes: int | None, view: MailView
    ) -> ChangeBatch:
        return self.inner.view_changes(type_name, since_state, max_changes, view)

    def _readable_emails(self) -> Iterator[EmailRecord]:
        ids, _ = self.inner.query_emails(self._restricted(None), [], False)
        for start in range(0, len(ids), _SCAN_BATCH):
            yield from self.inner.emails(ids[start : start + _SCAN_BATCH]).values()

    def message(self, blob_id: str) -> bytes | None:
        if blob_id not in self._vouched:
            # Blob ids are content hashes: any readable email with these
            # octets makes them readable.
            if not any(r.blob_id == blob_id for r in self._readable_emails()):
                return None
            self._vouched.add(blob_id)
        return self.inner.message(blob_id)

    def documents(self, type_name: str) -> dict[str, dict[str, Any]]:
        # Identities, vacation responses, submissions and the like belong
        # to the account's owner, not to what was shared.
        return {}

    def quota(self) -> AccountQuota:
        # A sharee's additions count against the owner's quota.
        return self.inner.quota()


@implementer(IMailWriter)
class ViewWriter(ViewReader):
    """
    A sharee's view of an account inside a write: :class:`ViewReader`,
    with every change checked against their rights before the store's
    writer makes it (see the module's documentation).
    """

    inner: IMailWriter

    def __init__(self, inner: IMailWriter, shared: SharedView) -> None:
        super().__init__(inner, shared)
        self.inner = inner

    def _holds(self, mailbox_id: str | None, needs: str) -> bool:
        return rights.holds(self.rights_on(mailbox_id), needs)

    def _require(self, mailbox_ids: Collection[str], needs: str, what: str) -> None:
        if not all(self._holds(m, needs) for m in mailbox_ids):
            raise _forbidden(needs, what)

    def _check_keywords(
        self, changed: Collection[str], mailbox_ids: Collection[str], what: str
    ) -> None:
        if SEEN in changed:
            self._require(mailbox_ids, "s", f"{what} with $seen")
        if any(k != SEEN for k in changed):
            self._require(mailbox_ids, "w", f"{what} with keywords other than $seen")

    def _check_sibling(self, name: str, parent_id: str, mailbox_id: str | None) -> None:
        # A sibling the sharee cannot list still takes the name.
        if any(
            m.name == name and m.parent_id == parent_id and m.id != mailbox_id
            for m in self.inner.mailboxes()
        ):
            raise SetError(
                "invalidProperties", "A sibling already has that name.", properties=["name"]
            )

    def create_mailbox(
        self,
        name: str,
        parent_id: str | None,
        role: str | None,
        sort_order: int,
        is_subscribed: bool,
    ) -> MailboxRecord:
        if role is not None:
            raise SetError("forbidden", "Only the account's owner gives mailboxes a role.")
        if parent_id is None:
            raise SetError(
                "forbidden",
                "Mailboxes of a shared account are created inside a shared mailbox"
                " (mayCreateTopLevelMailbox is false).",
            )
        if not self._holds(parent_id, "k"):
            raise _forbidden("k", "Creating a mailbox inside this one")
        self._check_sibling(name, parent_id, None)
        # The owner did not subscribe to it; the sharee's subscription is
        # their own share's (see MailboxMethods.set, which gives the new
        # mailbox the parent's shares, as IMAP servers do).
        record = self.inner.create_mailbox(name, parent_id, None, sort_order, False)
        self._parents = None
        self.letters[record.id] = self.letters[parent_id]
        return evolve(record, is_subscribed=is_subscribed)

    def update_mailbox(self, mailbox_id: str, **fields: Any) -> MailboxRecord:
        real = self._real_mailbox(mailbox_id)
        if real is None or mailbox_id not in self.view.listed:
            raise KeyError(mailbox_id)
        if "role" in fields:
            raise SetError("forbidden", "Only the account's owner changes a mailbox's role.")
        if "is_subscribed" in fields:
            raise SetError("forbidden", "A sharee's subscription is their own.")
        if fields:
            what = "Renaming, moving or reordering a mailbox"
            if real.role == "inbox":
                raise SetError("forbidden", "The inbox is neither renamed nor moved.")
            if not self._holds(mailbox_id, "x"):
                raise _forbidden("x", what)
            parent = fields.get("parent_id", real.parent_id)
            if parent is None:
                raise SetError(
                    "forbidden", "A sharee cannot rename or move a mailbox at the top level."
                )
            if not self._holds(parent, "k"):
                raise _forbidden("k", what + " inside its parent")
            self._check_sibling(fields.get("name", real.name), parent, mailbox_id)
        self._parents = None
        return self._seen_mailbox(self.inner.update_mailbox(mailbox_id, **fields))

    def check_destroy(self, mailbox_id: str, remove_emails: bool) -> None:
        """
        :raises SetError: ``forbidden``: the sharee may not destroy the
            mailbox (``x``), or not remove its emails (``t e``) when asked
            to.
        """
        if not self._holds(mailbox_id, "x"):
            raise _forbidden("x", "Destroying a mailbox")
        if remove_emails and not self._holds(mailbox_id, "te"):
            raise _forbidden("te", "Destroying a mailbox with its emails")

    def destroy_mailbox(self, mailbox_id: str) -> None:
        if mailbox_id not in self.view.listed:
            raise KeyError(mailbox_id)
        self.check_destroy(mailbox_id, remove_emails=False)
        # Children and emails the sharee cannot see keep it too.
        if any(m.parent_id == mailbox_id for m in self.inner.mailboxes()):
            raise SetError("mailboxHasChild")
        if self.inner.query_emails({"inMailbox": mailbox_id}, [], False, 0, 1)[1]:
            raise SetError("mailboxHasEmail")
        self._parents = None
        self.inner.destroy_mailbox(mailbox_id)

    def note_acl_change(self, mailbox_id: str) -> None:
        if not self._holds(mailbox_id, "a"):
            raise _forbidden("a", "Changing a mailbox's sharing")
        self.inner.note_acl_change(mailbox_id)

    def add_email(
        self,
        raw: bytes,
        mailbox_ids: Collection[str],
        keywords: Collection[str],
        received_at: float,
    ) -> EmailRecord:
        self._require(mailbox_ids, "i", "Adding an email to a mailbox")
        self._check_keywords(keywords, mailbox_ids, "Adding an email")
        return self._seen_email(self.inner.add_email(raw, mailbox_ids, keywords, received_at))

    def _real_email(self, email_id: str) -> EmailRecord:
        real = self.inner.emails([email_id]).get(email_id)
        if real is None or not self._readable(real):
            raise KeyError(email_id)
        return real

    def update_email(
        self,
        email_id: str,
        mailbox_ids: Collection[str] | None = None,
        keywords: Collection[str] | None = None,
    ) -> EmailRecord:
        real = self._real_email(email_id)
        new_mailboxes = None
        if mailbox_ids is not None:
            wanted = frozenset(mailbox_ids)
            seen = real.mailbox_ids & self.view.listed
            self._require(wanted - seen, "i", "Adding an email to a mailbox")
            self._require(seen - wanted, "te", "Removing an email from a mailbox")
            # Memberships the sharee cannot see stay.
            new_mailboxes = wanted | (real.mailbox_ids - self.view.listed)
        if keywords is not None:
            changed = frozenset(keywords) ^ real.keywords
            every = real.mailbox_ids | (new_mailboxes or frozenset())
            self._check_keywords(changed, every, "Changing an email's keywords")
        record = self.inner.update_email(email_id, mailbox_ids=new_mailboxes, keywords=keywords)
        return self._seen_email(record)

    def destroy_email(self, email_id: str) -> None:
        real = self._real_email(email_id)
        self._require(real.mailbox_ids, "te", "Destroying an email (in each of its mailboxes)")
        self.inner.destroy_email(email_id)

    def put_document(self, type_name: str, document_id: str, document: Mapping[str, Any]) -> None:
        raise SetError("forbidden", f"{type_name} objects are not part of a shared account.")

    def delete_document(self, type_name: str, document_id: str) -> None:
        raise SetError("forbidden", f"{type_name} objects are not part of a shared account.")

    def set_quota(self, storage_limit: int | None, message_limit: int | None) -> AccountQuota:
        raise SetError("forbidden", "Only the server's administrator sets quotas.")


def mailbox_rights(reader: IMailReader, mailbox: MailboxRecord) -> dict[str, bool]:
    """
    The ``myRights`` of a mailbox as the user reading it has them: all,
    but deleting or renaming the inbox, for the account's owner and
    delegates; from their letters for a sharee.
    """
    if isinstance(reader, ViewReader):
        return reader.my_rights(mailbox)
    return rights.mailbox_rights(
        rights.LETTERS,
        parent=None if mailbox.parent_id is None else rights.LETTERS,
        is_inbox=mailbox.role == "inbox",
    )


def writer_for_destroy(writer: IMailWriter, mailbox_id: str, remove_emails: bool) -> IMailWriter:
    """
    The writer that destroys a mailbox once the user may: the one given
    for an account they have whole; for a sharee, the store's own, after
    checking their rights, since destroying must see every child and
    email of the mailbox, those hidden from them too.

    :raises SetError: ``forbidden`` (see :meth:`ViewWriter.check_destroy`).
    """
    if isinstance(writer, ViewWriter):
        writer.check_destroy(mailbox_id, remove_emails)
        return writer.inner
    return writer


def find_account(principal: IPrincipal, account_id: object) -> Account | None:
    """
    The account of that id the user may access, if any.
    """
    return next((a for a in principal.accounts if a.id == account_id), None)


def uploads_account(account: Account, principal: IPrincipal) -> str | None:
    """
    Where the blobs the user uploads for an account are kept, and found
    again: the account itself when they have it whole, their personal
    account for a sharee (``None`` if they have none).
    """
    if account.shared is None:
        return account.id
    personal = next(
        (a for a in principal.accounts if a.owner_id == principal.user.id and a.shared is None),
        None,
    )
    return None if personal is None else personal.id


def may_upload(account: Account) -> bool:
    """
    Whether the user may upload blobs for an account (or copy blobs into
    it): always when they have it whole; a sharee when they may add emails
    to one of the mailboxes they see (``l`` and ``i``), since a blob is of
    use in an account only to make an email there.
    """
    shared = account.shared
    return shared is None or any(rights.holds(letters, "li") for _, letters in shared.rights)


__all__ = [
    "MailAccess",
    "ViewReader",
    "ViewWriter",
    "find_account",
    "mailbox_rights",
    "may_upload",
    "uploads_account",
    "writer_for_destroy",
]
