"""
Events, registration keys and groups, with the JSON form a broker carries.
"""

from __future__ import annotations

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


def new_event_id() -> str:
    """
    A fresh, unique event id.
    """
    return secrets.token_hex(12)


@implementer(IRegistrationKey)
@frozen
class AccountKey:
    """
    Listeners interested in everything visible in one account.
    """

    account_id: str

    def as_string(self) -> str:
        return "account:" + self.account_id


_KEY_KINDS = {"account": AccountKey}


def parse_key(text: str) -> IRegistrationKey:
    """
    The key a string form (from :meth:`IRegistrationKey.as_string`)
    stands for.

    :raises ValueError: not a key string.
    """
    kind, sep, value = text.partition(":")
    if not sep or not value or kind not in _KEY_KINDS:
        raise ValueError(f"not a registration key: {text!r}")
    key: IRegistrationKey = _KEY_KINDS[kind](value)
    return key


@implementer(IEvent)
@frozen
class MailboxChanged:
    """
    A committed store operation (mailbox bus).
    """

    account_id: str
    modseq: int
    events: tuple[MailboxEvent, ...]
    states: Mapping[str, str]
    delivery: bool = False
    event_id: str = field(factory=new_event_id)

    @classmethod
    def from_commit(cls, commit: StoreCommit) -> MailboxChanged:
        return cls(
            commit.account_id, commit.modseq, commit.events, dict(commit.states), commit.delivery
        )


@implementer(IEvent)
@frozen
class StateChange:
    """
    New states of data types in one account (JMAP bus), as RFC 8620 §7.1
    pushes them.  ``EmailDelivery`` is among the states when new mail was
    delivered.
    """

    account_id: str
    states: Mapping[str, str]
    event_id: str = field(factory=new_event_id)


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
        }
    elif isinstance(event, StateChange):
        body = {
            "type": "StateChange",
            "id": event.event_id,
            "accountId": event.account_id,
            "states": dict(event.states),
        }
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
            )
        if kind == "StateChange":
            return StateChange(body["accountId"], dict(body["states"]), body["id"])
    except (ValueError, KeyError, TypeError) as e:
        raise UnknownEvent(f"malformed event: {e}") from None
    raise UnknownEvent(f"unknown event type {kind!r}")
