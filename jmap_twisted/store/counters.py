# -*- test-case-name: tests.store.test_counters,tests.store.test_mail_contract -*-
"""
Mailbox counts (RFC 8621 §2) kept as counters, for every mail backend:
what one email's change does to them (:func:`moved`) and the same counts
computed from scratch (:func:`recount`), which repairs them.

The counts mean exactly what :func:`jmap_twisted.store.mailquery.mailbox_counts`
computes: an email is unread when it lacks ``$seen``; a mailbox's
``unreadThreads`` counts its threads having an unread email somewhere,
except that emails only in the trash are ignored for other mailboxes,
and that the trash counts only its own unread emails.

The unit kept is the thread (:class:`ThreadTally`): how many of its emails,
and unread emails, each mailbox holds, and how many of its unread emails
are not only in the trash.  A mailbox's counts are the sum of its threads'
contributions (:func:`contribution`), so a change to one email changes the
counts of the mailboxes where its thread's contribution changes, and of
no other: the email's old and new mailboxes, and every mailbox of the
thread when the thread becomes read or unread.

Which mailbox is the trash (the first created with role ``trash``)
changes what the tallies hold; backends recount the account when it
changes, which is rare.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from attrs import field, frozen

from jmap_twisted.records import EmailRecord, MailboxCounts

SEEN = "$seen"

#: No email, no thread.
ZERO = MailboxCounts()


@frozen
class Membership:
    """
    What the counts know of one email: its mailboxes, and whether it is
    unread.
    """

    mailbox_ids: frozenset[str]
    unread: bool

    @classmethod
    def of(cls, email: EmailRecord) -> Membership:
        return cls(frozenset(email.mailbox_ids), SEEN not in email.keywords)


@frozen(hash=False)
class ThreadTally:
    """
    One thread's part in the counts.

    :ivar mailboxes: for each mailbox holding emails of the thread, how
        many it holds and how many of those are unread (mailboxes holding
        none are absent).
    :ivar unread: the thread's unread emails that are not only in the
        trash: those that make it unread in mailboxes other than the trash.
    """

    mailboxes: Mapping[str, tuple[int, int]] = field(factory=dict)
    unread: int = 0

    def __bool__(self) -> bool:
        return bool(self.mailboxes) or self.unread != 0


def unread_elsewhere(membership: Membership | None, trash_id: str | None) -> bool:
    """
    Whether an email makes its thread unread in mailboxes other than the
    trash: it is unread, and not only in the trash.
    """
    if membership is None or not membership.unread:
        return False
    return trash_id is None or membership.mailbox_ids != {trash_id}


def contribution(tally: ThreadTally, mailbox_id: str, trash_id: str | None) -> MailboxCounts:
    """
    What one thread adds to the counts of one mailbox.
    """
    emails, unread = tally.mailboxes.get(mailbox_id, (0, 0))
    if not emails:
        return ZERO
    unread_thread = unread > 0 if mailbox_id == trash_id else tally.unread > 0
    return MailboxCounts(emails, unread, 1, int(unread_thread))


def plus(a: MailboxCounts, b: MailboxCounts, sign: int = 1) -> MailboxCounts:
    """
    ``a + b`` (or ``a - b`` with ``sign`` -1), count by count.
    """
    return MailboxCounts(
        a.total_emails + sign * b.total_emails,
        a.unread_emails + sign * b.unread_emails,
        a.total_threads + sign * b.total_threads,
        a.unread_threads + sign * b.unread_threads,
    )


def moved(
    tally: ThreadTally,
    before: Membership | None,
    after: Membership | None,
    trash_id: str | None,
) -> tuple[ThreadTally, dict[str, MailboxCounts]]:
    """
    One email of a thread changes: added (``before`` is ``None``),
    destroyed (``after`` is ``None``), moved, or marked read or unread.

    :param tally: the thread's tally before the change.
    :return: the thread's tally after it, and what to add to the counts of
        each mailbox whose counts change.
    """
    rows = dict(tally.mailboxes)
    for membership, sign in ((before, -1), (after, 1)):
        if membership is None:
            continue
        for mailbox_id in membership.mailbox_ids:
            emails, unread = rows.get(mailbox_id, (0, 0))
            rows[mailbox_id] = (emails + sign, unread + sign * membership.unread)
    changed = ThreadTally(
        {m: counts for m, counts in rows.items() if counts[0]},
        tally.unread - unread_elsewhere(before, trash_id) + unread_elsewhere(after, trash_id),
    )
    affected: set[str] = set()
    for membership in (before, after):
        if membership is not None:
            affected |= membership.mailbox_ids
    if (tally.unread > 0) != (changed.unread > 0):
        affected |= {*tally.mailboxes, *changed.mailboxes}
    deltas = {}
    for mailbox_id in affected:
        delta = plus(
            contribution(changed, mailbox_id, trash_id),
            contribution(tally, mailbox_id, trash_id),
            -1,
        )
        if delta != ZERO:
            deltas[mailbox_id] = delta
    return changed, deltas


def others(tally: ThreadTally, membership: Membership | None) -> set[str]:
    """
    The mailboxes holding other emails of the thread than the one whose
    membership is given (``tally`` includes it).
    """
    mine = frozenset() if membership is None else membership.mailbox_ids
    return {m for m, (emails, _) in tally.mailboxes.items() if emails - (m in mine) > 0}


def recount(
    emails: Iterable[tuple[str, Membership]], trash_id: str | None
) -> dict[str, ThreadTally]:
    """
    Every thread's tally, computed from scratch.

    :param emails: ``(thread id, membership)`` of every email of the account.
    """
    rows: dict[str, dict[str, list[int]]] = {}
    unread: dict[str, int] = {}
    for thread_id, membership in emails:
        thread = rows.setdefault(thread_id, {})
        for mailbox_id in membership.mailbox_ids:
            counts = thread.setdefault(mailbox_id, [0, 0])
            counts[0] += 1
            counts[1] += membership.unread
        unread[thread_id] = unread.get(thread_id, 0) + unread_elsewhere(membership, trash_id)
    tallies = {
        thread_id: ThreadTally(
            {m: (e, u) for m, (e, u) in thread.items()}, unread.get(thread_id, 0)
        )
        for thread_id, thread in rows.items()
    }
    return {thread_id: tally for thread_id, tally in tallies.items() if tally}


def totals(
    tallies: Iterable[ThreadTally], mailbox_ids: Collection[str], trash_id: str | None
) -> dict[str, MailboxCounts]:
    """
    The counts of the given mailboxes: the sum of every thread's
    contribution.
    """
    counts = dict.fromkeys(mailbox_ids, ZERO)
    for tally in tallies:
        for mailbox_id in tally.mailboxes:
            if mailbox_id in counts:
                counts[mailbox_id] = plus(
                    counts[mailbox_id], contribution(tally, mailbox_id, trash_id)
                )
    return counts
