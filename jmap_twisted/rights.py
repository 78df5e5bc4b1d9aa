# -*- test-case-name: tests.test_rights -*-
"""
Mailbox rights: the letters of IMAP ACLs (RFC 4314 §2.1) and the JMAP
``MailboxRights`` object (RFC 8621 §2) they stand for.

A share is stored as RFC 4314 letters in the canonical order
:data:`LETTERS` (``lrswipkxtea``); :func:`normalise` refuses any other
letter, including the obsolete ``c`` and ``d`` of RFC 2086 and the digits
RFC 4314 reserves for site-defined rights.  :func:`parse` also takes the
named sets of :data:`NAMED_SETS`.

RFC 8621 §2 maps each JMAP right to letters:

======================  =========  ======================================
JMAP right              letters    here also
======================  =========  ======================================
``mayReadItems``        ``l r``    both needed
``mayAddItems``         ``i``
``mayRemoveItems``      ``t e``    both needed
``maySetSeen``          ``s``
``maySetKeywords``      ``w``
``mayCreateChild``      ``k``
``mayRename``           ``x``      never the inbox; ``k`` on the parent
``mayDelete``           ``x``      never the inbox
``maySubmit``           ``p``      never in a sharee's view
``mayAdmin``            ``a``      non-standard (as Cyrus IMAP's)
======================  =========  ======================================

:func:`mailbox_rights` turns letters into the object, :func:`letters_of`
turns an object (a ``shareWith`` value of RFC 9670) back into letters;
:func:`mail_view` turns a sharee's rights into what the mail store needs
to compute their states; :func:`share_letters` checks what every
directory is given to store.
"""

from __future__ import annotations

from collections.abc import Mapping

from jmap_twisted.records import MailView, SharedView
from jmap_twisted.store import ids

#: Every right of RFC 4314 §2.1, in canonical order: lookup, read, keep
#: seen, write, insert, post, create mailboxes, delete mailbox, delete
#: messages, expunge, administer.
LETTERS = "lrswipkxtea"

#: Named sets of letters, for administrators: read (and keep one's seen
#: state), read and write (without creating, deleting or administering
#: mailboxes, nor posting), everything.
NAMED_SETS: Mapping[str, str] = {"read": "lrs", "write": "lrswitek", "all": LETTERS}

#: The properties of RFC 8621's ``MailboxRights``, in its order, then the
#: non-standard ``mayAdmin``.
RIGHTS_PROPERTIES = (
    "mayReadItems",
    "mayAddItems",
    "mayRemoveItems",
    "maySetSeen",
    "maySetKeywords",
    "mayCreateChild",
    "mayRename",
    "mayDelete",
    "maySubmit",
    "mayAdmin",
)

# The letters each JMAP right needs (all of them), mayRename's and
# mayDelete's further conditions aside.
_NEEDS: Mapping[str, str] = {
    "mayReadItems": "lr",
    "mayAddItems": "i",
    "mayRemoveItems": "te",
    "maySetSeen": "s",
    "maySetKeywords": "w",
    "mayCreateChild": "k",
    "mayRename": "x",
    "mayDelete": "x",
    "maySubmit": "p",
    "mayAdmin": "a",
}


def normalise(letters: str) -> str:
    """
    RFC 4314 rights as stored: each letter once, in canonical order.

    :param letters: rights letters in any order, repeats allowed; ``""``
        for none.
    :raises ValueError: a character is not one of :data:`LETTERS`.
    """
    unknown = sorted(set(letters) - set(LETTERS))
    if unknown:
        raise ValueError(
            f"unknown rights {''.join(unknown)!r}: the rights are letters of {LETTERS!r} (RFC 4314)"
        )
    return "".join(letter for letter in LETTERS if letter in letters)


def share_letters(mailbox_id: str, letters: str) -> str:
    """
    The rights of a share as a directory stores them, once the arguments of
    :meth:`~jmap_twisted.interfaces.IMailboxShares.set_rights` that need no
    store are checked.

    :param mailbox_id: the shared mailbox.
    :param letters: its rights letters (see :func:`normalise`).
    :raises ValueError: unknown letters, or a mailbox id that is not a
        JMAP Id.
    """
    letters = normalise(letters)
    if not ids.is_valid_id(mailbox_id):
        raise ValueError(f"{mailbox_id!r} is not a mailbox id")
    return letters


def parse(text: str) -> str:
    """
    Rights as an administrator writes them: a name of :data:`NAMED_SETS`
    or letters (see :func:`normalise`).

    :raises ValueError: neither a named set nor rights letters.
    """
    named = NAMED_SETS.get(text)
    if named is not None:
        return named
    try:
        return normalise(text)
    except ValueError as error:
        names = ", ".join(NAMED_SETS)
        raise ValueError(f"{error}, or one of: {names}") from None


def holds(letters: str, required: str) -> bool:
    """
    Whether ``letters`` include every letter of ``required``.
    """
    return set(required) <= set(letters)


def mailbox_rights(
    letters: str, *, parent: str | None, is_inbox: bool = False, sharee: bool = False
) -> dict[str, bool]:
    """
    The ``MailboxRights`` (RFC 8621 §2) of someone holding ``letters`` on
    a mailbox, with the non-standard ``mayAdmin``.

    :param letters: their rights on the mailbox.
    :param parent: their rights on the mailbox's parent, or ``None`` for a
        top-level mailbox; renaming needs ``k`` there (RFC 4314 §4, RENAME),
        and a sharee may not rename a top-level mailbox (they may not
        create one either).
    :param is_inbox: the mailbox has role ``inbox``, which may be neither
        renamed nor deleted.
    :param sharee: the rights are those of a sharee rather than of the
        account's owner or a delegate: they may not submit from the
        account.
    """
    rights = {name: holds(letters, needs) for name, needs in _NEEDS.items()}
    if is_inbox:
        rights["mayDelete"] = rights["mayRename"] = False
    elif parent is None:
        rights["mayRename"] = rights["mayRename"] and not sharee
    else:
        rights["mayRename"] = rights["mayRename"] and holds(parent, "k")
    if sharee:
        rights["maySubmit"] = False
    return rights


def letters_of(rights: Mapping[str, object]) -> str:
    """
    The letters granting a ``MailboxRights`` object, as ``shareWith``
    (RFC 9670) gives it: each property that is ``true`` adds the letters
    of the table above (``mayRename`` and ``mayDelete`` both give ``x``,
    so either grants both); a property that is ``false`` or absent adds
    none.

    :raises ValueError: a property that is not a right, or a value that is
        not a boolean.
    """
    letters = []
    for name, value in rights.items():
        if name not in _NEEDS:
            raise ValueError(f"{name!r} is not a mailbox right")
        if not isinstance(value, bool):
            raise ValueError(f"{name!r} must be true or false")
        if value:
            letters.append(_NEEDS[name])
    return normalise("".join(letters))


#: The letters that let a sharee change something in an account (the
#: others, ``l r p a``, let them look, post, or share).
CHANGING = "swikxte"


def read_only(shared: SharedView) -> bool:
    """
    Whether a sharee may change nothing in the account (its ``isReadOnly``,
    RFC 8620 §2): none of their mailboxes grants a letter of
    :data:`CHANGING`.
    """
    return not any(set(letters) & set(CHANGING) for _, letters in shared.rights)


def mail_view(shared: SharedView) -> MailView:
    """
    What a sharee sees of an account's mail: the mailboxes they may list
    (``l``), read (``l`` and ``r``) and administer (``a``), with their
    generation and subscriptions counter.
    """
    listed = frozenset(m for m, letters in shared.rights if holds(letters, "l"))
    return MailView(
        generation=shared.generation,
        subscriptions=shared.subscriptions,
        listed=listed,
        readable=frozenset(m for m, letters in shared.rights if holds(letters, "lr")),
        admin=frozenset(m for m, letters in shared.rights if holds(letters, "a")),
    )
