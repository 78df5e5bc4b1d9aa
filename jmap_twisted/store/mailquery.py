"""
``Email/query`` filters and sorts evaluated in Python over email records,
and mailbox counts computed from memberships: the reference semantics that
the in-memory backend uses and SQL backends must match.

Filters arrive validated by :mod:`jmap_twisted.methods.email_query`, with
``before``/``after`` already POSIX times.  One condition is the server's
own, refused from clients: ``inAnyMailbox`` (a collection of mailbox ids),
which a sharee's queries are ANDed with so that they find only the emails
they may read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cmp_to_key
from typing import Any

from jmap_twisted.records import EmailRecord, MailboxCounts

SEEN = "$seen"

#: Looks up the records of every email in a thread.
ThreadLookup = Callable[[str], Sequence[EmailRecord]]
#: Looks up the raw headers of an email, for the ``header`` condition.
HeaderLookup = Callable[[EmailRecord], Sequence[tuple[str, str]]]


def _contains(haystack: str, needle: str) -> bool:
    return needle.casefold() in haystack.casefold()


def _text_matches(record: EmailRecord, needle: str, fields: Iterable[str]) -> bool:
    summary = record.summary
    return any(_contains(getattr(summary, field), needle) for field in fields)


def matches(
    condition: Mapping[str, Any],
    record: EmailRecord,
    thread: ThreadLookup,
    headers: HeaderLookup,
) -> bool:
    """
    Whether an email matches a filter (operator or condition).
    """
    if "operator" in condition:
        results = (matches(c, record, thread, headers) for c in condition["conditions"])
        operator = condition["operator"]
        if operator == "AND":
            return all(results)
        if operator == "OR":
            return any(results)
        return not any(results)  # NOT: none of them
    for name, value in condition.items():
        if not _condition(name, value, record, thread, headers):
            return False
    return True


def _condition(
    name: str, value: Any, record: EmailRecord, thread: ThreadLookup, headers: HeaderLookup
) -> bool:
    summary = record.summary
    if name == "inMailbox":
        return value in record.mailbox_ids
    if name == "inMailboxOtherThan":
        return bool(record.mailbox_ids - set(value))
    if name == "inAnyMailbox":
        return not record.mailbox_ids.isdisjoint(value)
    if name == "before":
        return record.received_at < value
    if name == "after":
        return record.received_at >= value
    if name == "minSize":
        return record.size >= value
    if name == "maxSize":
        return record.size < value
    if name == "hasKeyword":
        return value in record.keywords
    if name == "notKeyword":
        return value not in record.keywords
    if name == "allInThreadHaveKeyword":
        return all(value in e.keywords for e in thread(record.thread_id))
    if name == "someInThreadHaveKeyword":
        return any(value in e.keywords for e in thread(record.thread_id))
    if name == "noneInThreadHaveKeyword":
        return not any(value in e.keywords for e in thread(record.thread_id))
    if name == "hasAttachment":
        return summary.has_attachment is value
    if name == "from":
        return _contains(summary.from_text, value)
    if name == "to":
        return _contains(summary.to_text, value)
    if name == "cc":
        return _contains(summary.cc_text, value)
    if name == "bcc":
        return _contains(summary.bcc_text, value)
    if name == "subject":
        return _contains(summary.subject, value)
    if name == "body":
        return _contains(summary.body_text, value)
    if name == "text":
        return _text_matches(
            record,
            value,
            ("from_text", "to_text", "cc_text", "bcc_text", "subject", "body_text"),
        )
    if name == "header":
        wanted = value[0].casefold()
        found = [v for n, v in headers(record) if n.casefold() == wanted]
        if len(value) == 1:
            return bool(found)
        return any(_contains(v, value[1]) for v in found)
    raise ValueError(f"unknown filter condition {name!r}")


def sort_key_compare(
    sort: Sequence[Mapping[str, Any]], thread: ThreadLookup
) -> Callable[[EmailRecord, EmailRecord], int]:
    """
    A comparison function for validated ``Comparator`` objects; ties are
    broken by id so the order is total and stable across calls.
    """

    def value(comparator: Mapping[str, Any], record: EmailRecord) -> Any:
        prop = comparator["property"]
        summary = record.summary
        if prop == "receivedAt":
            return record.received_at
        if prop == "size":
            return record.size
        if prop == "from":
            return summary.from_sort
        if prop == "to":
            return summary.to_sort
        if prop == "subject":
            return summary.base_subject
        if prop == "sentAt":
            return summary.sent_at if summary.sent_at is not None else record.received_at
        keyword = comparator.get("keyword")
        if prop == "hasKeyword":
            return keyword in record.keywords
        if prop == "allInThreadHaveKeyword":
            return all(keyword in e.keywords for e in thread(record.thread_id))
        if prop == "someInThreadHaveKeyword":
            return any(keyword in e.keywords for e in thread(record.thread_id))
        raise ValueError(f"unknown sort property {prop!r}")

    def compare(a: EmailRecord, b: EmailRecord) -> int:
        for comparator in sort:
            va, vb = value(comparator, a), value(comparator, b)
            if va != vb:
                result = -1 if va < vb else 1
                return result if comparator.get("isAscending", True) else -result
        return -1 if a.id < b.id else (1 if a.id > b.id else 0)

    return compare


def run_query(
    records: Iterable[EmailRecord],
    filter: Mapping[str, Any] | None,
    sort: Sequence[Mapping[str, Any]],
    collapse_threads: bool,
    thread: ThreadLookup,
    headers: HeaderLookup,
) -> list[str]:
    """
    The ids of matching records, sorted, optionally one per thread.
    """
    selected = [r for r in records if filter is None or matches(filter, r, thread, headers)]
    selected.sort(key=cmp_to_key(sort_key_compare(sort, thread)))
    if collapse_threads:
        seen: set[str] = set()
        collapsed = []
        for record in selected:
            if record.thread_id not in seen:
                seen.add(record.thread_id)
                collapsed.append(record)
        selected = collapsed
    return [r.id for r in selected]


def mailbox_counts(
    mailbox_id: str, emails: Iterable[EmailRecord], trash_id: str | None
) -> MailboxCounts:
    """
    RFC 8621 §2 counts for one mailbox, given every email of the account.

    An email is unread when it lacks ``$seen``.  For ``unreadThreads``,
    emails only in the trash are ignored when counting other mailboxes, and
    emails not in the trash are ignored when counting the trash.
    """
    all_emails = list(emails)
    inside = [e for e in all_emails if mailbox_id in e.mailbox_ids]
    threads = {e.thread_id for e in inside}

    def counts_for_unread(email: EmailRecord) -> bool:
        if trash_id is None:
            return True
        if mailbox_id == trash_id:
            return trash_id in email.mailbox_ids
        return email.mailbox_ids != {trash_id}

    unread_threads = {
        e.thread_id
        for e in all_emails
        if e.thread_id in threads and SEEN not in e.keywords and counts_for_unread(e)
    }
    return MailboxCounts(
        total_emails=len(inside),
        unread_emails=sum(1 for e in inside if SEEN not in e.keywords),
        total_threads=len(threads),
        unread_threads=len(unread_threads),
    )
