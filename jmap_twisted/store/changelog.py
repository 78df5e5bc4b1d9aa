"""
The change log shared by every mail backend: what one operation changed,
how its entries are numbered, and how ``Foo/changes`` merges them.

Every change-log entry has its own sequence number (``seq``), increasing per
account; an operation gets a contiguous run of them and one modification
sequence (``modseq``).  A type's state is the ``seq`` of its latest entry,
so ``*/changes`` can stop between any two entries, even inside one bulk
operation, and still hand out an exact intermediate state.

Sharees see an account through a :class:`~jmap_twisted.records.MailView`
and have states of their own, computed from the same log:

- Each ``Email``, ``Thread`` and ``Mailbox`` entry is annotated with the
  mailboxes it concerns, each with whether the object was in it before the
  operation and is in it after (``was``/``is``): an email's mailboxes
  before and after; for a thread, those of the emails whose change
  changed it; a mailbox concerns itself.  Documents concern none: sharees
  never see them.
- An entry has an *audience*: :data:`EVERYONE`; :data:`ADMINS` (a change
  of a mailbox's sharing: among sharees, only those administering it see
  it); or :data:`VIEWS` (a move logs its email's thread for sharees only:
  it can hide or reveal the thread for them, but changes nothing for the
  whole account, whose state and ``*/changes`` skip it).
- Per type, mailbox and audience, the store keeps the ``seq`` of the
  latest entry concerning the mailbox: its *high-water mark*, never
  pruned.  A sharee's position is the largest mark of the mailboxes they
  see (:func:`view_pools`), so their state moves only when a change they
  can see commits.  Their state string, ``s<generation>.<seq>`` (the
  ``Mailbox`` state adds ``.<subscriptions>``; :func:`sharee_state`),
  is another generation's once their rights change: older states then
  answer ``cannotCalculateChanges``.
- :func:`changes_for_view` answers a sharee's ``*/changes`` from the
  entries concerning them, re-kinded as they see them
  (:func:`view_entries`): an email moved into a mailbox they read is
  created for them, one moved out is destroyed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import NamedTuple

from attrs import evolve
from twisted.logger import Logger

from jmap_twisted.errors import CannotCalculateChanges
from jmap_twisted.records import ChangeBatch, MailboxEvent, MailView, StoreCommit

log = Logger()

CREATED = "created"
UPDATED = "updated"
DESTROYED = "destroyed"

#: Every type whose state the mail store tracks.
MAIL_TYPES = ("Mailbox", "Email", "Thread")

#: Audience of an entry seen by everyone seeing a mailbox it concerns.
EVERYONE = 0
#: Audience of a change of a mailbox's sharing: the full account and, of
#: its sharees, those administering the mailbox.
ADMINS = 1
#: Audience of an entry for sharees only: the full account skips it.
VIEWS = 2

#: A mailbox an entry concerns: (mailbox id, the object was in it before
#: the operation, the object is in it after).
Concern = tuple[str, bool, bool]

# A Thread entry may gather the changes of several emails of the thread:
# it concerns the mailboxes of each (merged by union), where an Email's
# or Mailbox's concerns chain (first "was", last "is").
_UNION_TYPES = frozenset({"Thread"})

_NEVER_ISSUED = "This server never issued that state."
_TOO_OLD = "That state is older than the change log kept."


class LogEntry(NamedTuple):
    """
    One change-log entry.

    :ivar audience: :data:`EVERYONE`, :data:`ADMINS` or :data:`VIEWS`.
    :ivar mailboxes: the mailboxes the entry concerns, ordered by id.
    """

    seq: int
    type_name: str
    object_id: str
    kind: str
    counts_only: bool
    audience: int = EVERYONE
    mailboxes: tuple[Concern, ...] = ()


def _is_number(text: str) -> bool:
    # ASCII digits only (str.isdigit also takes "²"), at most 18 of them.
    return text.isascii() and text.isdigit() and len(text) <= 18


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
        have been pruned); a state older than that still answers when
        it is the current one: nothing it would miss was logged since.
    :raises CannotCalculateChanges: the state was never issued or is too old.
    """
    if not _is_number(state):
        raise CannotCalculateChanges(_NEVER_ISSUED)
    seq = int(state)
    if seq > current:
        raise CannotCalculateChanges(_NEVER_ISSUED)
    if seq < oldest and seq < current:
        raise CannotCalculateChanges(_TOO_OLD)
    return seq


class ViewState(NamedTuple):
    """
    What a sharee's state string holds.

    :ivar subscriptions: ``None`` but in ``Mailbox`` states.
    """

    generation: int
    seq: int
    subscriptions: int | None = None


def encode_view_state(generation: int, seq: int, subscriptions: int | None = None) -> str:
    """
    A sharee's state string: ``s<generation>.<seq>``, and
    ``.<subscriptions>`` for ``Mailbox``.
    """
    state = f"s{generation}.{seq}"
    return state if subscriptions is None else f"{state}.{subscriptions}"


def sharee_state(type_name: str, view: MailView, seq: int) -> str:
    """
    A sharee's state of a type at a position of their log: with their
    subscriptions counter in ``Mailbox`` states only.
    """
    subscriptions = view.subscriptions if type_name == "Mailbox" else None
    return encode_view_state(view.generation, seq, subscriptions)


def decode_view_state(state: str) -> ViewState | None:
    """
    What a sharee's state string holds, or ``None`` when ``state`` is not
    one (an owner's state, or anything else).
    """
    if not state.startswith("s"):
        return None
    parts = state[1:].split(".")
    if not 2 <= len(parts) <= 3 or not all(_is_number(p) for p in parts):
        return None
    numbers = [int(p) for p in parts]
    return ViewState(*numbers)


def _position(state: str) -> tuple[int, ...] | None:
    if _is_number(state):
        return (int(state),)
    view = decode_view_state(state)
    if view is None:
        return None
    return (view.generation, view.seq, -1 if view.subscriptions is None else view.subscriptions)


def later_state(a: str, b: str) -> str:
    """
    The later of two states of one type in one account, as the store
    issues them: positions for the full account, generation then position
    (then subscriptions) for a sharee.  States of different kinds, or not
    the store's, compare as text.
    """
    pa, pb = _position(a), _position(b)
    if pa is None or pb is None or len(pa) != len(pb):
        return max(a, b)
    return a if pa >= pb else b


def view_pools(type_name: str, view: MailView) -> tuple[frozenset[str], frozenset[str]]:
    """
    The mailboxes whose entries of a type a sharee sees: those of
    audience :data:`EVERYONE` or :data:`VIEWS` (the mailboxes they list,
    for ``Mailbox``; those they read, for ``Email`` and ``Thread``), and
    those of audience :data:`ADMINS` (the mailboxes they list and
    administer).  Other types are never seen.
    """
    if type_name == "Mailbox":
        return view.listed, view.listed & view.admin
    if type_name in ("Email", "Thread"):
        return view.readable, frozenset()
    return frozenset(), frozenset()


def view_position(marks: Mapping[tuple[str, str, int], int], type_name: str, view: MailView) -> int:
    """
    A sharee's position in a type's log: the largest high-water mark
    (``marks``: type, mailbox, audience → ``seq``) they see, 0 for none.
    """
    common, admin = view_pools(type_name, view)
    return max(
        [marks.get((type_name, m, a), 0) for m in common for a in (EVERYONE, VIEWS)]
        + [marks.get((type_name, m, ADMINS), 0) for m in admin],
        default=0,
    )


def _seen_concerns(entry: LogEntry, view: MailView) -> list[Concern]:
    common, admin = view_pools(entry.type_name, view)
    pool = admin if entry.audience == ADMINS else common
    return [concern for concern in entry.mailboxes if concern[0] in pool]


def concerns(entry: LogEntry, view: MailView) -> bool:
    """
    Whether a sharee sees an entry: it concerns a mailbox they see for
    its audience.
    """
    return bool(_seen_concerns(entry, view))


def view_entries(
    entries: Iterable[LogEntry],
    view: MailView,
    readable_threads: Callable[[Collection[str]], Collection[str]],
    batch: int = 256,
) -> Iterator[LogEntry]:
    """
    The entries (in ``seq`` order) a sharee sees, re-kinded as they see
    them.

    ``Email`` and ``Mailbox``: in none of the sharee's mailboxes before but
    in one after is created for them, in one before but none after is
    destroyed, otherwise the entry's kind.  ``Thread``: a thread with an
    email the sharee may read now is created if logged so, else updated;
    one without is destroyed, or left out if it was created since the
    state asked about (they never saw it).

    :param readable_threads: which of some thread ids have an email in a
        mailbox of :attr:`~jmap_twisted.records.MailView.readable`, asked
        once per ``batch`` entries.
    """
    born: set[str] = set()
    pending: list[tuple[LogEntry, list[Concern]]] = []

    def flush() -> Iterator[LogEntry]:
        threads = {e.object_id for e, _ in pending if e.type_name == "Thread"}
        readable = set(readable_threads(threads)) if threads else set()
        for entry, seen in pending:
            kind = entry.kind
            if entry.type_name == "Thread":
                if kind == CREATED:
                    born.add(entry.object_id)
                if entry.object_id in readable:
                    kind = CREATED if kind == CREATED else UPDATED
                elif entry.object_id in born:
                    continue
                else:
                    kind = DESTROYED
            else:
                was = any(w for _, w, _ in seen)
                is_in = any(i for _, _, i in seen)
                if not was:
                    kind = CREATED
                elif not is_in:
                    kind = DESTROYED
            counts_only = entry.counts_only and kind == UPDATED
            yield entry._replace(kind=kind, counts_only=counts_only, mailboxes=tuple(seen))
        pending.clear()

    for entry in entries:
        seen = _seen_concerns(entry, view)
        if seen:
            pending.append((entry, seen))
            if len(pending) >= batch:
                yield from flush()
    yield from flush()


def changes_for_view(
    type_name: str,
    since_state: str,
    max_changes: int | None,
    view: MailView,
    *,
    current: int,
    oldest: int,
    entries: Callable[[int], Iterable[LogEntry]],
    readable_threads: Callable[[Collection[str]], Collection[str]],
    mailbox_ids: Callable[[], Collection[str]],
) -> ChangeBatch:
    """
    A sharee's ``*/changes`` (``IMailReader.view_changes``), for every
    backend.

    :param current: the sharee's position in the type's log
        (:func:`view_position`).
    :param oldest: the type's oldest computable position (see
        :func:`decode_state`).
    :param entries: the type's entries after a position, in ``seq``
        order; those concerning no mailbox of the sharee may be left out.
    :param readable_threads: see :func:`view_entries`.
    :param mailbox_ids: the account's mailboxes, when the sharee's
        subscriptions changed since ``since_state``: every mailbox they
        list is then updated.
    :raises CannotCalculateChanges: the state is not one of the sharee's
        in this generation, or what they saw since was pruned; or the
        update of every listed mailbox does not fit in ``max_changes``.
    """
    since = decode_view_state(since_state)
    if since is None or (since.subscriptions is not None) != (type_name == "Mailbox"):
        raise CannotCalculateChanges(_NEVER_ISSUED)
    if since.generation != view.generation:
        raise CannotCalculateChanges(
            "The mailboxes shared with you changed since that state; fetch them again."
        )
    subscriptions = since.subscriptions
    if since.seq > current or (subscriptions is not None and subscriptions > view.subscriptions):
        raise CannotCalculateChanges(_NEVER_ISSUED)
    if since.seq < oldest and since.seq < current:
        raise CannotCalculateChanges(_TOO_OLD)

    def encode(seq: int) -> str:
        return encode_view_state(view.generation, seq, subscriptions)

    seen = view_entries(entries(since.seq), view, readable_threads)
    batch = merge_changes(seen, since.seq, current, max_changes, encode)
    if subscriptions is not None and subscriptions < view.subscriptions:
        reported = {*batch.created, *batch.updated, *batch.destroyed}
        existing = set(mailbox_ids())
        listed = sorted(m for m in view.listed & existing if m not in reported)
        # With more changes to come, the next call reports them.
        if not batch.has_more_changes:
            if max_changes is None or len(reported) + len(listed) <= max_changes:
                batch = evolve(
                    batch,
                    new_state=encode_view_state(view.generation, current, view.subscriptions),
                    updated=(*batch.updated, *listed),
                    counts_only=batch.counts_only and not listed,
                )
            elif reported:
                batch = evolve(batch, has_more_changes=True)
            else:
                raise CannotCalculateChanges(
                    "More mailboxes than maxChanges changed at once; fetch them again."
                )
    return evolve(batch, old_state=since_state)


def high_water_marks(entries: Iterable[LogEntry]) -> dict[tuple[str, str, int], int]:
    """
    The latest ``seq`` per (type, mailbox, audience) among entries given
    in ``seq`` order: what the store's high-water marks become.
    """
    marks: dict[tuple[str, str, int], int] = {}
    for entry in entries:
        for mailbox_id, _, _ in entry.mailboxes:
            marks[(entry.type_name, mailbox_id, entry.audience)] = entry.seq
    return marks


def touched(marks: Mapping[tuple[str, str, int], int]) -> tuple[tuple[str, str, int, int], ...]:
    """
    :attr:`~jmap_twisted.records.StoreCommit.touched` for a commit's
    :func:`high_water_marks`.
    """
    return tuple(sorted((t, m, seq, a) for (t, m, a), seq in marks.items()))


class _Pending:
    """
    One object's entry while an operation runs.
    """

    __slots__ = ("audience", "concerns", "counts_only", "kind")

    def __init__(self, kind: str, counts_only: bool, audience: int) -> None:
        self.kind = kind
        self.counts_only = counts_only
        self.audience = audience
        #: mailbox id → [was in it, is in it]
        self.concerns: dict[str, list[bool]] = {}


class ChangeRecorder:
    """
    Collects what one write operation changes, merging repeated changes of
    one object, and the mailbox events it produces.

    ``was``/``now`` name the mailboxes an ``Email`` or ``Thread`` entry
    concerns, before and after the change (see the module's docstring); a
    ``Mailbox`` entry concerns the mailbox itself without being told.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _Pending] = {}
        self.events: list[MailboxEvent] = []

    def created(self, type_name: str, object_id: str, *, now: Collection[str] = ()) -> None:
        key = (type_name, object_id)
        previous = self._entries.get(key)
        pending = _Pending(CREATED, False, EVERYONE)
        if previous is not None:
            pending.concerns = previous.concerns
        self._entries[key] = pending
        if type_name == "Mailbox":
            now = (object_id,)
        self._concern(type_name, pending, (), now)

    def updated(
        self,
        type_name: str,
        object_id: str,
        counts_only: bool = False,
        *,
        was: Collection[str] = (),
        now: Collection[str] = (),
        audience: int = EVERYONE,
    ) -> None:
        key = (type_name, object_id)
        pending = self._entries.get(key)
        if pending is None:
            pending = self._entries[key] = _Pending(UPDATED, counts_only, audience)
        else:
            if pending.kind == UPDATED:
                pending.counts_only = pending.counts_only and counts_only
            # created stays created; destroyed stays destroyed
            pending.audience = min(pending.audience, audience)
        if type_name == "Mailbox":
            was = now = (object_id,)
        self._concern(type_name, pending, was, now)

    def destroyed(self, type_name: str, object_id: str, *, was: Collection[str] = ()) -> None:
        key = (type_name, object_id)
        pending = self._entries.get(key)
        if pending is not None and pending.kind == CREATED:
            del self._entries[key]  # never visible outside this operation
            return
        if pending is None:
            pending = self._entries[key] = _Pending(DESTROYED, False, EVERYONE)
        pending.kind, pending.counts_only, pending.audience = DESTROYED, False, EVERYONE
        if type_name == "Mailbox":
            was = (object_id,)
        self._concern(type_name, pending, was, ())

    @staticmethod
    def _concern(
        type_name: str, pending: _Pending, was: Collection[str], now: Collection[str]
    ) -> None:
        before, after = set(was), set(now)
        union = type_name in _UNION_TYPES
        for mailbox_id in before | after:
            flags = pending.concerns.get(mailbox_id)
            if flags is None:
                pending.concerns[mailbox_id] = [mailbox_id in before, mailbox_id in after]
            elif union:
                flags[0] = flags[0] or mailbox_id in before
                flags[1] = flags[1] or mailbox_id in after
            else:
                flags[1] = mailbox_id in after

    def event(self, event: MailboxEvent) -> None:
        self.events.append(event)

    def only_removes(self) -> bool:
        """
        Whether the operation so far only removed objects (and updated
        what removing them changes: threads, mailbox counts): it frees
        space rather than taking more.
        """
        return bool(self._entries) and all(
            p.kind == DESTROYED or (p.kind == UPDATED and (p.counts_only or type_name == "Thread"))
            for (type_name, _), p in self._entries.items()
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
            if entry.type_name == type_name and entry.audience != VIEWS:
                last = entry.seq
        return last

    def pending_view_position(self, type_name: str, first_seq: int, view: MailView) -> int | None:
        """
        As :meth:`pending_state`, for a sharee's view: the position of the
        operation's last entry of the type they see, if any.
        """
        last = None
        for entry in self.entries(first_seq):
            if entry.type_name == type_name and concerns(entry, view):
                last = entry.seq
        return last

    def entries(self, first_seq: int) -> list[LogEntry]:
        """
        The operation's entries, numbered from ``first_seq``.
        """
        return [
            LogEntry(
                first_seq + offset,
                type_name,
                object_id,
                p.kind,
                p.counts_only,
                p.audience,
                tuple(
                    (mailbox_id, was, is_in)
                    for mailbox_id, (was, is_in) in sorted(p.concerns.items())
                    if was or is_in
                ),
            )
            for offset, ((type_name, object_id), p) in enumerate(self._entries.items())
        ]


def merge_changes(
    entries: Iterable[LogEntry],
    since: int,
    current: int,
    max_changes: int | None,
    encode: Callable[[int], str] = encode_state,
) -> ChangeBatch:
    """
    Merge a type's log entries after ``since`` (in ``seq`` order) into a
    ``*/changes`` answer of at most ``max_changes`` ids.

    Merging per object: created then updated is created; created then
    destroyed disappears; updated then destroyed is destroyed.

    :param current: the type's current state position, reported when the
        whole log was consumed.
    :param encode: the state string of a position.
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
        old_state=encode(since),
        new_state=encode(new_seq),
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
