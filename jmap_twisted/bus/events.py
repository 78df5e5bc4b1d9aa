"""
Events, registration keys and groups, with the JSON form a broker carries.
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen
from zope.interface import implementer

from jmap_twisted.interfaces import IEvent, IRegistrationKey
from jmap_twisted.records import MailboxEvent, StoreCommit

SYNCHRONOUS = "synchronous"
ASYNCHRONOUS = "asynchronous"


class GroupAlreadyRegistered(Exception):
    """
    A group can have one listener per bus.
    """


class UnknownEvent(ValueError):
    """
    Serialised data that is not an event this version knows.
    """


#: This process's random part of event ids: 64 bits, so that the ids of
#: the nodes sharing a broker do not collide.
_ID_PREFIX = secrets.token_hex(8)
_id_counter = itertools.count()


def new_event_id() -> str:
    """
    A fresh, unique event id: this process's random prefix and a counter
    (ids need to be unique, not unguessable, and are made for every
    commit, so not from the system's random source each time).
    """
    return f"{_ID_PREFIX}{next(_id_counter):08x}"


@implementer(IRegistrationKey)
@frozen
class AccountKey:
    """
    Listeners interested in everything visible in one account.
    """

    account_id: str

    def as_string(self) -> str:
        return "account:" + self.account_id


@implementer(IRegistrationKey)
@frozen
class ViewerKey:
    """
    Listeners of one user interested in what they see of an account whose
    mailboxes were shared with them (their view: see
    :class:`~jmap_twisted.records.SharedView`).  Owners and delegates see
    the whole account and listen under :class:`AccountKey`.
    """

    account_id: str
    user_id: str

    def as_string(self) -> str:
        return f"view:{self.account_id}:{self.user_id}"


def parse_key(text: str) -> IRegistrationKey:
    """
    The key a string form (from :meth:`IRegistrationKey.as_string`)
    stands for.  A view's key splits at its account id's end (ids
    never hold ``:``).

    :raises ValueError: not a key string.
    """
    kind, sep, value = text.partition(":")
    if sep and value and kind == "account":
        return AccountKey(value)
    account_id, sep, user_id = value.partition(":")
    if sep and account_id and user_id and kind == "view":
        return ViewerKey(account_id, user_id)
    raise ValueError(f"not a registration key: {text!r}")


@implementer(IEvent)
@frozen
class MailboxChanged:
    """
    A committed store operation (mailbox bus).

    :ivar touched: as :attr:`~jmap_twisted.records.StoreCommit.touched`:
        ``(type, mailbox id, seq, audience)`` for the mailboxes the
        operation's changes concern.
    :ivar committed_at: when the commit was published (seconds since the
        epoch), for the push latency metric; ``None`` when unknown.
    """

    account_id: str
    modseq: int
    events: tuple[MailboxEvent, ...]
    states: Mapping[str, str]
    delivery: bool = False
    event_id: str = field(factory=new_event_id)
    touched: tuple[tuple[str, str, int, int], ...] = ()
    committed_at: float | None = None

    @classmethod
    def from_commit(cls, commit: StoreCommit, committed_at: float | None = None) -> MailboxChanged:
        return cls(
            commit.account_id,
            commit.modseq,
            commit.events,
            dict(commit.states),
            commit.delivery,
            touched=commit.touched,
            committed_at=committed_at,
        )


@implementer(IEvent)
@frozen
class StateChange:
    """
    New states of data types in one account (JMAP bus), as RFC 8620 §7.1
    pushes them.  ``EmailDelivery`` is among the states when new mail was
    delivered.

    :ivar viewer: ``None`` for the states of the whole account (for its
        owner and delegates, under :class:`AccountKey`); otherwise the user
        whose view of the account these states are (under
        :class:`ViewerKey`).
    :ivar generation: the generation of that view
        (:attr:`~jmap_twisted.records.SharedView.generation`) the states
        belong to; ``0`` for the whole account.
    :ivar committed_at: when the commit these states come from was
        published (seconds since the epoch), for the push latency metric;
        ``None`` when unknown (then not observed).
    """

    account_id: str
    states: Mapping[str, str]
    event_id: str = field(factory=new_event_id)
    viewer: str | None = None
    generation: int = 0
    committed_at: float | None = None


def to_json(event: IEvent) -> bytes:
    """
    The serialised form of an event.
    """
    if isinstance(event, MailboxChanged):
        body: dict[str, Any] = {
            "type": "MailboxChanged",
            "id": event.event_id,
            "accountId": event.account_id,
            "modseq": event.modseq,
            "events": [
                {"kind": e.kind, "mailboxIds": sorted(e.mailbox_ids), "emailIds": list(e.email_ids)}
                for e in event.events
            ],
            "states": dict(event.states),
            "delivery": event.delivery,
            "touched": [list(t) for t in event.touched],
        }
        if event.committed_at is not None:
            body["committedAt"] = event.committed_at
    elif isinstance(event, StateChange):
        body = {
            "type": "StateChange",
            "id": event.event_id,
            "accountId": event.account_id,
            "states": dict(event.states),
        }
        if event.viewer is not None:
            body["viewer"] = event.viewer
            body["generation"] = event.generation
        if event.committed_at is not None:
            body["committedAt"] = event.committed_at
    else:
        raise UnknownEvent(f"cannot serialise {type(event).__name__}")
    return json.dumps(body, separators=(",", ":")).encode()


def from_json(data: bytes) -> IEvent:
    """
    The event serialised as ``data``.

    :raises UnknownEvent: malformed or of an unknown type.
    """
    try:
        body = json.loads(data)
        kind = body["type"]
        if kind == "MailboxChanged":
            return MailboxChanged(
                account_id=body["accountId"],
                modseq=int(body["modseq"]),
                events=tuple(
                    MailboxEvent(e["kind"], frozenset(e["mailboxIds"]), tuple(e["emailIds"]))
                    for e in body["events"]
                ),
                states=dict(body["states"]),
                delivery=bool(body["delivery"]),
                event_id=body["id"],
                touched=tuple(
                    (str(t), str(m), int(seq), int(audience))
                    for t, m, seq, audience in body.get("touched", ())
                ),
                committed_at=_moment(body.get("committedAt")),
            )
        if kind == "StateChange":
            viewer = body.get("viewer")
            if viewer is not None and not isinstance(viewer, str):
                raise TypeError("viewer must be a user id")
            return StateChange(
                body["accountId"],
                dict(body["states"]),
                body["id"],
                viewer=viewer,
                generation=int(body.get("generation", 0)),
                committed_at=_moment(body.get("committedAt")),
            )
    except (ValueError, KeyError, TypeError) as e:
        raise UnknownEvent(f"malformed event: {e}") from None
    raise UnknownEvent(f"unknown event type {kind!r}")


def _moment(value: object) -> float | None:
    """
    A serialised ``committedAt``: a number, or ``None`` when absent.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("committedAt must be a number")
    return float(value)
