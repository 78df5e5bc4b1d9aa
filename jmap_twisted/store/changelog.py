"""
The change log shared by every mail backend: what one operation changed,
how its entries are numbered, and how ``Foo/changes`` merges them.

Every change-log entry has its own sequence number (``seq``), increasing per
account; an operation gets a contiguous run of them and one modification
sequence (``modseq``).  A type's state is the ``seq`` of its latest entry,
so ``*/changes`` can stop between any two entries, even inside one bulk
operation, and still hand out an exact intermediate state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from twisted.logger import Logger

from jmap_twisted.errors import CannotCalculateChanges
from jmap_twisted.records import ChangeBatch, MailboxEvent, StoreCommit

log = Logger()

CREATED = "created"
UPDATED = "updated"
DESTROYED = "destroyed"

#: Every type whose state the mail store tracks.
MAIL_TYPES = ("Mailbox", "Email", "Thread")


class LogEntry(NamedTuple):
    """
    One change-log entry.
    """

    seq: int
    type_name: str
    object_id: str
    kind: str
    counts_only: bool


def encode_state(seq: int) -> str:
    """
    The state string for a position in the change log.
    """
    return str(seq)


def decode_state(state: str, current: int, oldest: int) -> int:
    """
    The change-log position a state string stands for.

    :param current: the latest ``seq`` of the type's log.
    :param oldest: the oldest position still computable (older entries
        have been pruned).
    :raises CannotCalculateChanges: the state was never issued or is too old.
    """
    if not state.isdigit() or len(state) > 18:
        raise CannotCalculateChanges("This server never issued that state.")
    seq = int(state)
    if seq > current:
        raise CannotCalculateChanges("This server never issued that state.")
    if seq < oldest:
        raise CannotCalculateChanges("That state is older than the change log kept.")
    return seq


class ChangeRecorder:
    """
    Collects what one write operation changes, merging repeated changes of
    one object, and the mailbox events it produces.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[str, bool]] = {}
        self.events: list[MailboxEvent] = []

    def created(self, type_name: str, object_id: str) -> None:
        self._entries[(type_name, object_id)] = (CREATED, False)

    def updated(self, type_name: str, object_id: str, counts_only: bool = False) -> None:
        key = (type_name, object_id)
        previous = self._entries.get(key)
        if previous is None:
            self._entries[key] = (UPDATED, counts_only)
        elif previous[0] == UPDATED:
            self._entries[key] = (UPDATED, previous[1] and counts_only)
        # created stays created; destroyed stays destroyed

    def destroyed(self, type_name: str, object_id: str) -> None:
        key = (type_name, object_id)
        previous = self._entries.get(key)
        if previous is not None and previous[0] == CREATED:
            del self._entries[key]  # never visible outside this operation
        else:
            self._entries[key] = (DESTROYED, False)

    def event(self, event: MailboxEvent) -> None:
        self.events.append(event)

    def only_removes(self) -> bool:
        """
        Whether the operation so far only removed objects (and updated
        what removing them changes: threads, mailbox counts): it frees
        space rather than taking more.
        """
        return bool(self._entries) and all(
            kind == DESTROYED or (kind == UPDATED and (counts_only or type_name == "Thread"))
            for (type_name, _), (kind, counts_only) in self._entries.items()
        )

    def __bool__(self) -> bool:
        return bool(self._entries) or bool(self.events)

    def pending_state(self, type_name: str, first_seq: int) -> int | None:
        """
        The position the type's state will have once the operation commits
        with entries numbered from ``first_seq``, or ``None`` if the
        operation has not changed the type (so far).
        """
        last = None
        for entry in self.entries(first_seq):
            if entry.type_name == type_name:
                last = entry.seq
        return last

    def entries(self, first_seq: int) -> list[LogEntry]:
        """
        The operation's entries, numbered from ``first_seq``.
        """
        return [
            LogEntry(first_seq + offset, type_name, object_id, kind, counts_only)
            for offset, ((type_name, object_id), (kind, counts_only)) in enumerate(
                self._entries.items()
            )
        ]


def merge_changes(
    entries: Iterable[LogEntry], since: int, current: int, max_changes: int | None
) -> ChangeBatch:
    """
    Merge a type's log entries after ``since`` (in ``seq`` order) into a
    ``*/changes`` answer of at most ``max_changes`` ids.

    Merging per object: created then updated is created; created then
    destroyed disappears; updated then destroyed is destroyed.

    :param current: the type's current state position, reported when the
        whole log was consumed.
    """
    kinds: dict[str, str] = {}
    first_kind: dict[str, str] = {}
    counts_only = True
    new_seq = since
    has_more = False
    for entry in entries:
        if entry.seq <= since:
            continue
        if max_changes is not None and entry.object_id not in kinds and len(kinds) >= max_changes:
            has_more = True
            break
        new_seq = entry.seq
        oid = entry.object_id
        first_kind.setdefault(oid, entry.kind)
        previous = kinds.get(oid)
        if previous is None:
            kinds[oid] = entry.kind
        elif entry.kind == DESTROYED:
            kinds[oid] = DESTROYED
        elif previous == DESTROYED:
            kinds[oid] = entry.kind
        # created/updated then updated: unchanged
        if entry.kind != UPDATED or not entry.counts_only:
            counts_only = False
    else:
        new_seq = current
    created, updated, destroyed = [], [], []
    for oid, kind in kinds.items():
        if kind == DESTROYED:
            if first_kind[oid] != CREATED:
                destroyed.append(oid)
        elif first_kind[oid] == CREATED:
            created.append(oid)
        else:
            updated.append(oid)
    return ChangeBatch(
        old_state=encode_state(since),
        new_state=encode_state(new_seq),
        has_more_changes=has_more,
        created=tuple(created),
        updated=tuple(updated),
        destroyed=tuple(destroyed),
        counts_only=counts_only and bool(updated) and not created and not destroyed,
    )


class CommitListeners:
    """
    The listeners of a mail store's commits (``IMailStore.subscribe``),
    shared by every implementation.
    """

    def __init__(self) -> None:
        self._listeners: list[Callable[[StoreCommit], object]] = []

    def subscribe(self, listener: Callable[[StoreCommit], object]) -> Callable[[], None]:
        """
        Call ``listener`` with each commit; returns the unsubscribing function.
        """
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def publish(self, commit: StoreCommit) -> None:
        """
        Tell every listener; one failing is logged and spoils nothing else.
        """
        for listener in list(self._listeners):
            try:
                listener(commit)
            except Exception:
                log.failure(
                    "Store listener failed for account {account_id}", account_id=commit.account_id
                )
