"""
The per-connection listener on the JMAP bus.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from jmap_twisted.bus.events import SYNCHRONOUS, StateChange
from jmap_twisted.interfaces import IEvent, IEventListener, IMailStore
from jmap_twisted.push import pushstate

#: Every type a client may ask to be pushed.
PUSH_TYPES = frozenset(
    {
        "Mailbox",
        "Email",
        "EmailDelivery",
        "Thread",
        "Identity",
        "EmailSubmission",
        "VacationResponse",
        "Quota",
    }
)


@implementer(IEventListener)
class PushListener:
    """
    Turns StateChange events into StateChange objects for one connection.

    Changes for types the client did not ask for are not sent but still
    advance the ``pushState``.  While the connection cannot take more
    (:meth:`pause`), pending changes merge per account and type, so a slow
    reader costs at most one entry per account and type.

    :param send: writes one StateChange object to the connection.
    :param types: the types to push, or ``None`` for all.
    :param accounts: the accounts the connection may see.
    """

    execution_mode = SYNCHRONOUS

    def __init__(
        self,
        send: Callable[[dict[str, Any]], None],
        types: Collection[str] | None,
        accounts: Collection[str],
    ) -> None:
        self._send = send
        self.types = None if types is None else frozenset(types)
        self.accounts = frozenset(accounts)
        self.known: pushstate.States = {}
        self._pending: pushstate.States = {}
        self._paused = False
        self._ready = False

    def is_handling(self, event: IEvent) -> bool:
        return isinstance(event, StateChange) and event.account_id in self.accounts

    def handle(self, event: IEvent) -> Deferred[None]:
        assert isinstance(event, StateChange)
        self.merge({event.account_id: dict(event.states)})
        return succeed(None)

    def merge(self, changes: Mapping[str, Mapping[str, str]]) -> None:
        """
        Take new states; send those of wanted types (now or once resumed).
        """
        for account, states in changes.items():
            if account not in self.accounts:
                continue
            known = self.known.setdefault(account, {})
            for type_name, state in states.items():
                if type_name in known and pushstate.later(known[type_name], state) != state:
                    continue  # an older state arriving late
                known[type_name] = state
                if self.types is None or type_name in self.types:
                    self._pending.setdefault(account, {})[type_name] = state
        self.flush()

    def start(
        self, current: Mapping[str, Mapping[str, str]], replay: pushstate.States | None
    ) -> None:
        """
        Begin sending: ``current`` are the states read when push was
        enabled; ``replay`` what to send at once (changes since the
        client's pushState), if anything.
        """
        for account, states in current.items():
            known = self.known.setdefault(account, {})
            for type_name, state in states.items():
                known[type_name] = pushstate.later(known.get(type_name, state), state)
        self._ready = True
        if replay:
            for account, states in replay.items():
                for type_name in states:
                    if self.types is None or type_name in self.types:
                        known_state = self.known.get(account, {}).get(type_name)
                        if known_state is not None:
                            self._pending.setdefault(account, {})[type_name] = known_state
        self.flush()

    def set_accounts(self, accounts: Collection[str]) -> None:
        """
        Follow a change of the accounts the connection may see; what is
        known or pending about accounts no longer visible is forgotten.
        """
        self.accounts = frozenset(accounts)
        for gone in set(self.known) - self.accounts:
            del self.known[gone]
        for gone in set(self._pending) - self.accounts:
            del self._pending[gone]

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self.flush()

    def flush(self) -> None:
        """
        Send the pending changes as one StateChange, if the connection can
        take it.
        """
        if self._paused or not self._ready or not self._pending:
            return
        changed, self._pending = self._pending, {}
        self._send(
            {"@type": "StateChange", "changed": changed, "pushState": pushstate.encode(self.known)}
        )


async def current_states(store: IMailStore, account_ids: Collection[str]) -> pushstate.States:
    """
    The current state of every pushed type in each account
    (``EmailDelivery`` shares the Email state).
    """
    types = sorted(PUSH_TYPES - {"EmailDelivery"})
    result: pushstate.States = {}
    for account_id in account_ids:
        states = await store.read(account_id, lambda r: {t: r.state(t) for t in types})
        states["EmailDelivery"] = states["Email"]
        result[account_id] = states
    return result
