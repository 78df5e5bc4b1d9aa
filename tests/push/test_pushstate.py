"""
pushState strings.
"""

from __future__ import annotations

import base64

import pytest

from jmap_twisted.push import pushstate


def test_push_state_round_trip_and_changes() -> None:
    """
    A pushState decodes to the states it encodes; what changed since it
    is every type whose state differs; garbage decodes to None (so the
    full state is sent).
    """
    states = {"a1": {"Email": "5", "Mailbox": "3"}, "a2": {"Email": "1"}}
    encoded = pushstate.encode(states)
    assert pushstate.decode(encoded) == states
    current = {"a1": {"Email": "7", "Mailbox": "3"}, "a2": {"Email": "1"}, "a3": {"Email": "2"}}
    assert pushstate.changed_since(current, states) == {"a1": {"Email": "7"}, "a3": {"Email": "2"}}
    assert pushstate.changed_since(current, None) == current


_NESTED = "1." + base64.urlsafe_b64encode(b"[" * 40_000).decode()
_NOT_UTF8 = "1." + base64.urlsafe_b64encode(b"\xff\xfe").decode()


@pytest.mark.parametrize(
    "text",
    [None, 5, "", "1.", "1.!!!", "2.e30", "1." + "A" * 70000, "1.W10", _NESTED, _NOT_UTF8, "1.A"],
)
def test_bad_push_states(text: object) -> None:
    """
    Anything that is not a pushState this server issued decodes to None,
    without raising: nested arrays deeper than the recursion limit, text
    that is not UTF-8, base64 that does not decode.
    """
    assert pushstate.decode(text) is None


def test_later_state() -> None:
    """
    States compare as positions; a sharee's by generation, then position.
    """
    assert pushstate.later("10", "9") == "10"
    assert pushstate.later("9", "10") == "10"
    assert pushstate.later("s1.10", "s1.9") == "s1.10"
    assert pushstate.later("s2.1", "s1.10") == "s2.1"


def test_replay_leaves_out_email_delivery() -> None:
    """
    A replay names the changed types but never EmailDelivery, whether the
    old pushState decodes or not.
    """
    current = {"a1": {"Email": "7", "EmailDelivery": "7", "Mailbox": "3"}}
    old = pushstate.encode({"a1": {"Email": "5", "EmailDelivery": "5", "Mailbox": "3"}})
    assert pushstate.replay(current, old) == {"a1": {"Email": "7"}}
    assert pushstate.replay(current, "garbage") == {"a1": {"Email": "7", "Mailbox": "3"}}


def test_catch_up_names_what_moved_but_not_email_delivery() -> None:
    """
    After missed events (a broker outage), a connection is told the types
    that moved since what it knows, never EmailDelivery, and nothing for
    accounts that did not move.
    """
    current = {
        "a1": {"Email": "7", "EmailDelivery": "7", "Mailbox": "3"},
        "a2": {"Email": "2", "EmailDelivery": "2"},
    }
    known = {"a1": {"Email": "5", "EmailDelivery": "5", "Mailbox": "3"}, "a2": dict(current["a2"])}
    assert pushstate.catch_up(current, known) == {"a1": {"Email": "7"}}
    assert pushstate.catch_up(current, {}) == {
        "a1": {"Email": "7", "Mailbox": "3"},
        "a2": {"Email": "2"},
    }
