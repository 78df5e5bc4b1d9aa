"""
The per-connection listener on the JMAP bus.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from jmap_twisted import rights
from jmap_twisted.bus.events import SYNCHRONOUS, StateChange
from jmap_twisted.interfaces import IEvent, IEventListener, IMailReader, IMailStore
from jmap_twisted.push import pushstate
from jmap_twisted.records import Account, MailView
from jmap_twisted.store.changelog import MAIL_TYPES

if TYPE_CHECKING:
    from jmap_twisted.metrics import PushMetrics

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
        "ShareNotification",
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

    Of an account seen whole (as its owner or a delegate), only the whole
    account's states are taken; of one seen through shared mailboxes,
    only the states of the user's own view, of its current generation or
    a later one: those of an older generation, still on their way after
    the user's rights changed, are dropped.

    :param send: writes one StateChange object to the connection.
    :param types: the types to push, or ``None`` for all.
    :param user_id: the connection's user.
    :param metrics: where StateChanges sent and merged, and their latency
        from the commit, are counted (nowhere by default).
    """

    execution_mode = SYNCHRONOUS

    def __init__(
        self,
        send: Callable[[dict[str, Any]], None],
        types: Collection[str] | None,
        user_id: str,
        metrics: PushMetrics | None = None,
    ) -> None:
        self._send = send
        self._metrics = metrics
        #: When the oldest commit behind the pending changes was published
        #: (one number, however many merge while the reader is slow).
        self._committed: float | None = None
        self.types = None if types is None else frozenset(types)
        self.user_id = user_id
        #: The accounts the connection may see, by id.
        self.views: dict[str, Account] = {}
        self.accounts: frozenset[str] = frozenset()
        self.known: pushstate.States = {}
        self._pending: pushstate.States = {}
        self._paused = False
        self._ready = False
        #: :attr:`known` is shared with other connections: copied before
        #: it changes (:meth:`_own_known`).
        self._shared_known = False
        #: The pushState of :attr:`known`, once worked out.
        self._push_state: str | None = None

    def is_handling(self, event: IEvent) -> bool:
        return isinstance(event, StateChange) and self._takes(event)

    def _takes(self, event: StateChange) -> bool:
        account = self.views.get(event.account_id)
        if account is None:
            return False
        if account.shared is None:
            return event.viewer is None
        return event.viewer == self.user_id and event.generation >= account.shared.generation

    def handle(self, event: IEvent) -> Deferred[None]:
        assert isinstance(event, StateChange)
        if self._takes(event):  # access may have changed since it was routed
            if event.committed_at is not None and self._metrics is not None:
                if self._committed is None or event.committed_at < self._committed:
                    self._committed = event.committed_at
            if self._ready and not self._paused and not self._pending:
                self._take_shared(event)
            else:
                self.merge({event.account_id: event.states})
        return succeed(None)

    def merge(self, changes: Mapping[str, Mapping[str, str]]) -> None:
        """
        Take new states; send those of wanted types (now or once resumed).
        """
        known = self._own_known()
        for account, states in changes.items():
            if account not in self.accounts:
                continue
            wanted = _advance(known, account, states, self.types)
            if wanted:
                pending = self._pending.setdefault(account, {})
                if self._metrics is not None:
                    for type_name in wanted:
                        if type_name in pending:
                            self._metrics.merged()
                pending.update(wanted)
        self.flush()

    def _own_known(self) -> pushstate.States:
        """
        The known states, for changing: a copy of its own if they were
        shared with other connections by :meth:`_take_shared`.
        """
        self._push_state = None
        if self._shared_known:
            self.known = {account: dict(types) for account, types in self.known.items()}
            self._shared_known = False
        return self.known

    def _take_shared(self, event: StateChange) -> None:
        """
        Take one event's states when nothing is pending and the connection
        can take a StateChange at once: the connections of an account all
        move from the same known states to the same next ones and send the
        same StateChange, so it is worked out once (by the first
        connection) and the others take the result, sharing the dicts.
        """
        memo = _shared_steps(event.event_id)
        push_state = self._push_state
        if push_state is None:
            push_state = self._push_state = pushstate.encode(self.known)
        key = (push_state, self.types, self.accounts)
        step = memo.get(key)
        if step is None:
            known = {account: dict(types) for account, types in self.known.items()}
            value: dict[str, Any] | None = None
            if event.account_id in self.accounts:
                wanted = _advance(known, event.account_id, event.states, self.types)
                encoded = pushstate.encode(known)
                if wanted:
                    value = {
                        "@type": "StateChange",
                        "changed": {event.account_id: wanted},
                        "pushState": encoded,
                    }
            else:
                encoded = push_state
            step = memo[key] = (known, encoded, value)
        self.known, self._push_state, value = step
        self._shared_known = True
        committed, self._committed = self._committed, None
        if value is not None:
            self._send(value)
            if self._metrics is not None:
                self._metrics.sent(committed)

    def start(
        self, current: Mapping[str, Mapping[str, str]], replay: pushstate.States | None
    ) -> None:
        """
        Begin sending: ``current`` are the states read when push was
        enabled; ``replay`` what to send at once (changes since the
        client's pushState), if anything.
        """
        own = self._own_known()
        for account, states in current.items():
            known = own.setdefault(account, {})
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

    def set_accounts(self, accounts: Collection[Account]) -> frozenset[str]:
        """
        Follow a change of the accounts the connection may see; what is
        known or pending about accounts no longer visible, or now seen
        otherwise (whole or through shares, another generation or
        subscriptions of a view), is forgotten.

        :return: the ids of the accounts new or seen otherwise: those whose
            current states the connection must be told.
        """
        views = {account.id: account for account in accounts}
        fresh = frozenset(a for a, account in views.items() if self.views.get(a) != account)
        self.views = views
        self.accounts = frozenset(views)
        known = self._own_known()
        for forgotten in (set(known) - self.accounts) | fresh:
            known.pop(forgotten, None)
        for forgotten in (set(self._pending) - self.accounts) | fresh:
            self._pending.pop(forgotten, None)
        return fresh

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
            if not self._pending:
                self._committed = None  # nothing wanted came of those commits
            return
        changed, self._pending = self._pending, {}
        committed, self._committed = self._committed, None
        self._send(
            {"@type": "StateChange", "changed": changed, "pushState": pushstate.encode(self.known)}
        )
        if self._metrics is not None:
            self._metrics.sent(committed)


def _advance(
    known: pushstate.States,
    account: str,
    states: Mapping[str, str],
    types: frozenset[str] | None,
) -> dict[str, str]:
    """
    Move ``known`` to the later of its states and ``states`` for one
    account; return the states that moved, of the ``types`` wanted
    (all when ``None``).
    """
    mine = known.setdefault(account, {})
    wanted: dict[str, str] = {}
    for type_name, state in states.items():
        if type_name in mine and pushstate.later(mine[type_name], state) != state:
            continue  # an older state arriving late
        mine[type_name] = state
        if types is None or type_name in types:
            wanted[type_name] = state
    return wanted


#: The steps worked out for the event being dispatched (its id, and by
#: known pushState, wanted types and visible accounts: the known states
#: after it and the StateChange to send).
_STEPS: tuple[str, dict[tuple[Any, ...], tuple[pushstate.States, str, dict[str, Any] | None]]] = (
    "",
    {},
)
#: Distinct steps kept for one event, at most.
MAX_SHARED_STEPS = 1024


def _shared_steps(
    event_id: str,
) -> dict[tuple[Any, ...], tuple[pushstate.States, str, dict[str, Any] | None]]:
    global _STEPS
    current_id, steps = _STEPS
    if current_id != event_id or len(steps) >= MAX_SHARED_STEPS:
        steps = {}
        _STEPS = (event_id, steps)
    return steps


#: The pushed types of the whole account (``EmailDelivery`` aside).
_ACCOUNT_TYPES = tuple(sorted(PUSH_TYPES - {"EmailDelivery"}))


def _account_states(reader: IMailReader) -> dict[str, str]:
    return {t: reader.state(t) for t in _ACCOUNT_TYPES}


def _view_states(view: MailView) -> Callable[[IMailReader], dict[str, str]]:
    def read(reader: IMailReader) -> dict[str, str]:
        return {t: reader.view_state(t, view) for t in MAIL_TYPES}

    return read


async def current_states(store: IMailStore, accounts: Collection[Account]) -> pushstate.States:
    """
    The current state of every pushed type in each account, by account id
    (``EmailDelivery`` shares the Email state): of the whole account, or,
    for an account seen through shared mailboxes, of the user's view
    (only its mail types: sharees see nothing else of it).
    """
    result: pushstate.States = {}
    for account in accounts:
        if account.shared is None:
            states = await store.read(account.id, _account_states)
        else:
            view = rights.mail_view(account.shared)
            states = await store.read(account.id, _view_states(view))
        states["EmailDelivery"] = states["Email"]
        result[account.id] = states
    return result
