"""
``pushState``: every state a connection has been told, per account and
type, in one opaque string, so that a reconnecting client can be sent what
changed since.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from functools import lru_cache

from jmap_twisted.core import jsonio
from jmap_twisted.errors import NotJSON
from jmap_twisted.store.changelog import later_state

#: Positions a connection knows: account id → type → state.
States = dict[str, dict[str, str]]

_PREFIX = "1."
#: The longest pushState accepted back from a client; longer ones are not
#: decoded (the client is sent the full current state).
MAX_LENGTH = 65536


def encode(states: Mapping[str, Mapping[str, str]]) -> str:
    """
    The pushState string for some states.  Remembered for recent states:
    every socket of an account encodes the same states after a change.
    """
    key = tuple((a, tuple(sorted(t.items()))) for a, t in sorted(states.items()))
    if len(states) > CACHED_ACCOUNTS:
        return _encode.__wrapped__(key)  # large: not worth keeping
    return _encode(key)


#: Connections seeing more accounts than this are not remembered.
CACHED_ACCOUNTS = 16


@lru_cache(maxsize=1024)
def _encode(states: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]) -> str:
    compact = json.dumps({a: dict(t) for a, t in states}, separators=(",", ":"))
    return _PREFIX + base64.urlsafe_b64encode(compact.encode()).decode().rstrip("=")


def decode(text: object) -> States | None:
    """
    The states a pushState string holds, or ``None`` when it is not one
    this server issued.  Whatever a client sends back (a WebSocket
    ``pushState``, an EventSource ``Last-Event-ID``), decoding is bounded
    in length and nesting and never raises.
    """
    if not isinstance(text, str) or not text.startswith(_PREFIX) or len(text) > MAX_LENGTH:
        return None
    body = text[len(_PREFIX) :]
    try:
        # jsonio bounds the nesting (no RecursionError) and reports any
        # other problem as NotJSON.
        value = jsonio.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (NotJSON, ValueError, binascii.Error):
        return None
    if not isinstance(value, dict) or not all(
        isinstance(a, str)
        and isinstance(t, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in t.items())
        for a, t in value.items()
    ):
        return None
    return value


def later(a: str, b: str) -> str:
    """
    The later of two states of one type, full-account or sharee's
    (:func:`jmap_twisted.store.changelog.later_state`; anything else
    compares as text).
    """
    return later_state(a, b)


def changed_since(current: Mapping[str, Mapping[str, str]], old: States | None) -> States:
    """
    The types whose state differs from ``old`` (everything when ``old`` is
    ``None``).
    """
    if old is None:
        return {a: dict(t) for a, t in current.items()}
    result: States = {}
    for account, types in current.items():
        known = old.get(account, {})
        differing = {t: s for t, s in types.items() if known.get(t) != s}
        if differing:
            result[account] = differing
    return result


def replay(current: Mapping[str, Mapping[str, str]], old_push_state: object) -> States:
    """
    What to push at once to a client reconnecting with a pushState: every
    type whose state changed since it (everything when it cannot be
    decoded); see :func:`catch_up`.
    """
    return catch_up(current, decode(old_push_state))


def catch_up(current: Mapping[str, Mapping[str, str]], known: States | None) -> States:
    """
    What to push to a connection that may have missed changes since the
    states it ``known``: every type whose state differs, but never
    ``EmailDelivery``: states alone cannot tell a delivery from a flag
    change, and clients announce new mail on it.
    """
    result: States = {}
    for account, states in changed_since(current, known).items():
        kept = {t: s for t, s in states.items() if t != "EmailDelivery"}
        if kept:
            result[account] = kept
    return result
