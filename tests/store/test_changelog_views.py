"""
The sharees' side of :mod:`jmap_twisted.store.changelog`: their state
strings, which entries concern which mailboxes, and the commit's touched
mailboxes on the mailbox bus.
"""

from __future__ import annotations

import pytest

from jmap_twisted.bus.events import MailboxChanged, from_json, to_json
from jmap_twisted.records import MailboxEvent, MailView
from jmap_twisted.store.changelog import (
    ADMINS,
    CREATED,
    DESTROYED,
    EVERYONE,
    UPDATED,
    VIEWS,
    ChangeRecorder,
    ViewState,
    concerns,
    decode_view_state,
    encode_view_state,
    high_water_marks,
    later_state,
    touched,
)


def test_view_states_round_trip() -> None:
    """
    A sharee's state holds a generation, a position and, for Mailbox,
    a subscriptions counter; the account's own states and anything else
    are not sharee's states.
    """
    assert encode_view_state(3, 17) == "s3.17"
    assert encode_view_state(3, 17, 2) == "s3.17.2"
    assert decode_view_state("s3.17") == ViewState(3, 17, None)
    assert decode_view_state("s3.17.2") == ViewState(3, 17, 2)
    for other in ("17", "", "s", "s3", "s3.", "s.1", "s3.1.2.3", "s3.-1", "x3.1", "s3.1e2", "s3.²"):
        assert decode_view_state(other) is None
    assert decode_view_state("s1." + "9" * 19) is None
    assert later_state("²", "1") == "²"  # not a state: compared as text


@pytest.mark.parametrize(
    ("a", "b", "later"),
    [
        ("10", "9", "10"),
        ("9", "10", "10"),
        ("s1.10", "s1.9", "s1.10"),
        ("s1.9", "s1.10", "s1.10"),
        ("s1.90", "s2.3", "s2.3"),
        ("s2.3.1", "s2.3.4", "s2.3.4"),
        ("s2.4.0", "s2.3.4", "s2.4.0"),
    ],
)
def test_later_state(a: str, b: str, later: str) -> None:
    """
    The account's states compare as positions; a sharee's by generation
    (a new one is later), then position, then subscriptions.
    """
    assert later_state(a, b) == later
    assert later_state(b, a) == later


def test_entries_concern_the_mailboxes_of_their_objects() -> None:
    """
    An email concerns its mailboxes before (first change) and after (last
    change) an operation; a thread every mailbox any of its changed
    emails was or is in; a mailbox itself; a document none.
    """
    recorder = ChangeRecorder()
    recorder.updated("Email", "e1", was={"A"}, now={"B"})
    recorder.updated("Email", "e1", was={"B"}, now={"C"})
    recorder.updated("Thread", "t1", was={"A"}, now={"B"}, audience=VIEWS)
    recorder.updated("Thread", "t1", was={"B"}, now={"A"}, audience=VIEWS)
    recorder.created("Mailbox", "M")
    recorder.updated("Mailbox", "M", counts_only=True)
    recorder.updated("Mailbox", "N", audience=ADMINS)
    recorder.created("Identity", "i1")
    entries = {(e.type_name, e.object_id): e for e in recorder.entries(10)}
    # B was entered and left within the operation: not a concern.
    assert entries["Email", "e1"].mailboxes == (("A", True, False), ("C", False, True))
    assert entries["Thread", "t1"].mailboxes == (("A", True, True), ("B", True, True))
    assert entries["Thread", "t1"].audience == VIEWS
    assert entries["Mailbox", "M"].mailboxes == (("M", False, True),)
    assert entries["Mailbox", "M"].kind == CREATED
    assert entries["Mailbox", "N"].mailboxes == (("N", True, True),)
    assert entries["Mailbox", "N"].audience == ADMINS
    assert entries["Identity", "i1"].mailboxes == ()


def test_audiences_merge_to_the_widest() -> None:
    """
    A thread changed for everyone and moved in one operation is an entry
    for everyone; views-only entries are not in the account's pending
    state.
    """
    recorder = ChangeRecorder()
    recorder.updated("Thread", "t1", was={"A"}, now={"B"}, audience=VIEWS)
    assert recorder.pending_state("Thread", 1) is None
    recorder.updated("Thread", "t1", now={"A"})
    (entry,) = recorder.entries(1)
    assert (entry.kind, entry.audience) == (UPDATED, EVERYONE)
    assert recorder.pending_state("Thread", 1) == 1
    recorder.destroyed("Thread", "t1", was={"A"})
    assert recorder.entries(1)[0].kind == DESTROYED


def test_which_sharees_an_entry_concerns() -> None:
    """
    Email and Thread entries concern those reading one of their
    mailboxes, Mailbox entries those listing it, sharing changes only
    those also administering it, documents nobody; the high-water marks
    and a commit's touched mailboxes follow the entries.
    """
    recorder = ChangeRecorder()
    recorder.created("Email", "e1", now={"A"})
    recorder.updated("Mailbox", "A", audience=ADMINS)
    recorder.created("Identity", "i1")
    email, acl, document = recorder.entries(5)
    reader = MailView(1, 0, frozenset({"A"}), frozenset({"A"}), frozenset())
    lister = MailView(1, 0, frozenset({"A"}), frozenset(), frozenset())
    admin = MailView(1, 0, frozenset({"A"}), frozenset(), frozenset({"A"}))
    assert concerns(email, reader) and not concerns(email, lister)
    assert not concerns(acl, reader) and concerns(acl, admin)
    assert not any(concerns(document, v) for v in (reader, lister, admin))
    marks = high_water_marks([email, acl, document])
    assert marks == {("Email", "A", EVERYONE): 5, ("Mailbox", "A", ADMINS): 6}
    assert touched(marks) == (("Email", "A", 5, 0), ("Mailbox", "A", 6, 1))


def test_touched_mailboxes_travel_on_the_mailbox_bus() -> None:
    """
    A MailboxChanged keeps its touched mailboxes through JSON; one from
    a node that does not send them has none.
    """
    event = MailboxChanged(
        "a",
        3,
        (MailboxEvent("added", frozenset({"m1"}), ("e1",)),),
        {"Email": "5"},
        True,
        touched=(("Email", "m1", 5, 0), ("Thread", "m1", 6, 2)),
    )
    assert from_json(to_json(event)) == event
    plain = to_json(MailboxChanged("a", 3, (), {"Email": "5"}, event_id="x")).replace(
        b',"touched":[]', b""
    )
    assert b"touched" not in plain
    assert from_json(plain) == MailboxChanged("a", 3, (), {"Email": "5"}, event_id="x")
