"""
Rules every mail backend shares: the standard role mailboxes, threading,
and which changes an email operation implies for mailbox counts and
threads, with the mailboxes each change concerns (for sharees' views, see
:mod:`jmap_twisted.store.changelog`).
"""

from __future__ import annotations

from collections.abc import Iterable

from jmap_twisted.records import EmailRecord, MailboxEvent
from jmap_twisted.store.changelog import VIEWS, ChangeRecorder

#: The mailboxes a new account gets: (name, role, sortOrder).
STANDARD_MAILBOXES = (
    ("Inbox", "inbox", 1),
    ("Drafts", "drafts", 2),
    ("Sent", "sent", 3),
    ("Archive", "archive", 4),
    ("Junk", "junk", 5),
    ("Trash", "trash", 6),
)


def record_email_added(
    recorder: ChangeRecorder,
    email: EmailRecord,
    new_thread: bool,
    thread_mailboxes: Iterable[str],
) -> None:
    """
    Record an added email: the email, its thread, and the counts of every
    mailbox holding the thread.  The email and its thread concern the
    email's mailboxes.
    """
    recorder.created("Email", email.id, now=email.mailbox_ids)
    if new_thread:
        recorder.created("Thread", email.thread_id, now=email.mailbox_ids)
    else:
        recorder.updated("Thread", email.thread_id, now=email.mailbox_ids)
    for mailbox_id in {*email.mailbox_ids, *thread_mailboxes}:
        recorder.updated("Mailbox", mailbox_id, counts_only=True)
    recorder.event(MailboxEvent("added", email.mailbox_ids, (email.id,)))


def record_email_updated(
    recorder: ChangeRecorder,
    before: EmailRecord,
    after: EmailRecord,
    thread_mailboxes: Iterable[str],
) -> None:
    """
    Record a change of keywords and/or mailboxes.  A move also records the
    thread for sharees only: it changes which of its emails they may read.
    """
    if before.keywords == after.keywords and before.mailbox_ids == after.mailbox_ids:
        return
    recorder.updated("Email", after.id, was=before.mailbox_ids, now=after.mailbox_ids)
    if before.mailbox_ids != after.mailbox_ids:
        recorder.updated(
            "Thread",
            after.thread_id,
            was=before.mailbox_ids,
            now=after.mailbox_ids,
            audience=VIEWS,
        )
    affected = set(before.mailbox_ids ^ after.mailbox_ids)
    if ("$seen" in before.keywords) != ("$seen" in after.keywords):
        affected |= before.mailbox_ids | after.mailbox_ids | set(thread_mailboxes)
    if before.mailbox_ids != after.mailbox_ids:
        affected |= set(thread_mailboxes)
    for mailbox_id in affected:
        recorder.updated("Mailbox", mailbox_id, counts_only=True)
    if before.keywords != after.keywords:
        recorder.event(MailboxEvent("flags_updated", frozenset(after.mailbox_ids), (after.id,)))
    if before.mailbox_ids != after.mailbox_ids:
        recorder.event(
            MailboxEvent("moved", frozenset(before.mailbox_ids | after.mailbox_ids), (after.id,))
        )


def record_email_destroyed(
    recorder: ChangeRecorder,
    email: EmailRecord,
    thread_left: bool,
    thread_mailboxes: Iterable[str],
) -> None:
    """
    Record a destroyed email; ``thread_left`` says whether other emails
    remain in its thread.
    """
    recorder.destroyed("Email", email.id, was=email.mailbox_ids)
    if thread_left:
        recorder.updated("Thread", email.thread_id, was=email.mailbox_ids)
    else:
        recorder.destroyed("Thread", email.thread_id, was=email.mailbox_ids)
    for mailbox_id in {*email.mailbox_ids, *thread_mailboxes}:
        recorder.updated("Mailbox", mailbox_id, counts_only=True)
    recorder.event(MailboxEvent("expunged", email.mailbox_ids, (email.id,)))
