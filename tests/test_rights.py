"""
Mailbox rights (:mod:`jmap_twisted.rights`): RFC 4314 letters, named sets,
and the JMAP ``MailboxRights`` objects of RFC 8621 §2 both ways.
"""

from __future__ import annotations

from itertools import combinations

import pytest

from jmap_twisted.records import MailView, SharedView
from jmap_twisted.rights import (
    LETTERS,
    NAMED_SETS,
    RIGHTS_PROPERTIES,
    holds,
    letters_of,
    mail_view,
    mailbox_rights,
    normalise,
    parse,
)

NONE = dict.fromkeys(RIGHTS_PROPERTIES, False)

#: What each letter alone gives, on a mailbox that is neither the inbox
#: nor at the top level, under a parent where the holder may create
#: children, for the account's owner.
ALONE = {
    "l": {},
    "r": {},
    "s": {"maySetSeen": True},
    "w": {"maySetKeywords": True},
    "i": {"mayAddItems": True},
    "p": {"maySubmit": True},
    "k": {"mayCreateChild": True},
    "x": {"mayRename": True, "mayDelete": True},
    "t": {},
    "e": {},
    "a": {"mayAdmin": True},
}

#: The letters of RFC 8621's rights, grouped as a JMAP right needs them.
GROUPS = ("lr", "i", "te", "s", "w", "k", "x", "p", "a")


def every_group_set() -> list[str]:
    """
    Every combination of :data:`GROUPS`, as letters.
    """
    return [
        "".join(chosen) for size in range(len(GROUPS) + 1) for chosen in combinations(GROUPS, size)
    ]


def test_canonical_order_and_repeats() -> None:
    """
    Letters are stored once each, in the order of RFC 4314 §2.1.
    """
    assert normalise("aetxkpiwsrl") == LETTERS
    assert normalise("rlrl") == "lr"
    assert normalise("") == ""


@pytest.mark.parametrize("letters", ["c", "d", "lrc", "L", "0", "l r", "lr\n"])
def test_unknown_letters_refused(letters: str) -> None:
    """
    The obsolete ``c`` and ``d``, capitals, digits and spaces are refused,
    naming what was wrong and what is allowed.
    """
    with pytest.raises(ValueError, match="unknown rights") as caught:
        normalise(letters)
    assert LETTERS in str(caught.value)


def test_named_sets() -> None:
    """
    ``read``, ``write`` and ``all`` name the documented letters; letters
    are parsed as letters; anything else is refused with the names.
    """
    assert parse("read") == "lrs"
    assert parse("write") == "lrswitek"
    assert parse("all") == LETTERS
    assert parse("srl") == "lrs"
    assert set(NAMED_SETS) == {"read", "write", "all"}
    with pytest.raises(ValueError, match="read, write, all"):
        parse("everything")


def test_holds() -> None:
    """
    Rights hold when every required letter is granted.
    """
    assert holds("lrs", "lr")
    assert holds("lrs", "")
    assert not holds("lrs", "li")


@pytest.mark.parametrize("letter", LETTERS)
def test_every_letter_alone(letter: str) -> None:
    """
    Each letter alone gives exactly the JMAP rights RFC 8621 maps to it;
    ``l``, ``r``, ``t`` and ``e`` alone give none (they pair up).
    """
    assert mailbox_rights(letter, parent=LETTERS) == {**NONE, **ALONE[letter]}


def test_pairs_needed() -> None:
    """
    ``mayReadItems`` needs both l and r, ``mayRemoveItems`` both t and e.
    """
    assert mailbox_rights("lr", parent=LETTERS) == {**NONE, "mayReadItems": True}
    assert mailbox_rights("te", parent=LETTERS) == {**NONE, "mayRemoveItems": True}


def test_everything_for_the_owner() -> None:
    """
    All letters give every right to the owner, except renaming and
    deleting the inbox.
    """
    everything = dict.fromkeys(RIGHTS_PROPERTIES, True)
    assert mailbox_rights(LETTERS, parent=None) == everything
    assert mailbox_rights(LETTERS, parent=None, is_inbox=True) == {
        **everything,
        "mayRename": False,
        "mayDelete": False,
    }


def test_rename_needs_create_on_the_parent() -> None:
    """
    Renaming needs x on the mailbox and k on its parent; a sharee never
    renames a top-level mailbox, the owner may.
    """
    assert mailbox_rights("x", parent="k")["mayRename"] is True
    assert mailbox_rights("x", parent="lrx")["mayRename"] is False
    assert mailbox_rights("x", parent="lrx")["mayDelete"] is True
    assert mailbox_rights("x", parent=None)["mayRename"] is True
    assert mailbox_rights("x", parent=None, sharee=True)["mayRename"] is False
    assert mailbox_rights("x", parent=None, sharee=True)["mayDelete"] is True
    assert mailbox_rights("x", parent="k", sharee=True)["mayRename"] is True


def test_sharee_never_submits() -> None:
    """
    A sharee holding p still may not submit from the owner's account.
    """
    assert mailbox_rights("lrp", parent=LETTERS)["maySubmit"] is True
    assert mailbox_rights("lrp", parent=LETTERS, sharee=True)["maySubmit"] is False


@pytest.mark.parametrize("letters", every_group_set())
def test_letters_round_trip(letters: str) -> None:
    """
    Any letters JMAP can express come back from their rights object.
    """
    assert letters_of(mailbox_rights(letters, parent=LETTERS)) == normalise(letters)


def test_rights_round_trip() -> None:
    """
    Any rights object whose rename and delete agree comes back from its
    letters.
    """
    independent = [name for name in RIGHTS_PROPERTIES if name != "mayDelete"]
    for size in range(len(independent) + 1):
        for chosen in combinations(independent, size):
            rights = {name: name in chosen for name in RIGHTS_PROPERTIES}
            rights["mayDelete"] = rights["mayRename"]
            assert mailbox_rights(letters_of(rights), parent=LETTERS) == rights


def test_letters_of_a_share() -> None:
    """
    A ``shareWith`` value gives letters: absent and false properties
    grant nothing, rename or delete alone grants x, read grants l and r.
    """
    assert letters_of({}) == ""
    assert letters_of({"mayReadItems": True, "maySetSeen": True, "mayAddItems": False}) == "lrs"
    assert letters_of({"mayDelete": True}) == "x"
    assert letters_of({"mayRename": True, "mayRemoveItems": True}) == "xte"


@pytest.mark.parametrize(
    ("rights", "message"),
    [
        ({"mayRead": True}, "'mayRead' is not a mailbox right"),
        ({"mayReadItems": 1}, "'mayReadItems' must be true or false"),
        ({"mayReadItems": None}, "'mayReadItems' must be true or false"),
    ],
)
def test_letters_of_refuses_what_is_not_a_right(rights: dict[str, object], message: str) -> None:
    """
    Unknown properties and non-boolean values are refused by name.
    """
    with pytest.raises(ValueError, match=message):
        letters_of(rights)


def test_mail_view_of_a_share() -> None:
    """
    A sharee's mail view lists the mailboxes they hold ``l`` on, reads
    those with ``l`` and ``r`` and administers those with ``a``, with
    their generation and subscriptions counter.
    """
    shared = SharedView(
        7, 2, (("m1", "lr"), ("m2", "l"), ("m3", "r"), ("m4", "la"), ("m5", "lrswitekxa"))
    )
    assert mail_view(shared) == MailView(
        generation=7,
        subscriptions=2,
        listed=frozenset({"m1", "m2", "m4", "m5"}),
        readable=frozenset({"m1", "m5"}),
        admin=frozenset({"m4", "m5"}),
    )
