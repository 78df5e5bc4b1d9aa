# -*- test-case-name: tests.push.test_subscription -*-
"""
One connection's subscription to StateChanges (RFC 8620 §7.1), the same for
every push transport: a listener registered on the JMAP bus under the keys
of the accounts the user may see (an account's key when they see it whole,
as its owner or a delegate; their view's key when they see mailboxes
shared with them), started from the states read when it began (replaying
what changed since the client's ``pushState``, §7.1 and RFC 8887
§4.3.5.2), following the accounts as access changes, cancelled when the
connection ends.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from jmap_twisted.bus.events import AccountKey, ViewerKey
from jmap_twisted.interfaces import IEventBus, IMailStore, IRegistration, IRegistrationKey
from jmap_twisted.push import pushstate
from jmap_twisted.push.listener import PUSH_TYPES, PushListener, current_states
from jmap_twisted.records import Account

if TYPE_CHECKING:
    from jmap_twisted.metrics import PushMetrics

log = Logger()


def listening_key(account: Account, user_id: str) -> IRegistrationKey:
    """
    The key under which a user hears of an account's changes: the
    account's when they see it whole, their view's otherwise.
    """
    if account.shared is None:
        return AccountKey(account.id)
    return ViewerKey(account.id, user_id)


def access_to(account: Account) -> tuple[str, int | None, int | None]:
    """
    How a user sees an account, as far as its states go: its id, and for
    a view its generation and subscriptions counter (``None`` when seen
    whole).
    """
    if account.shared is None:
        return (account.id, None, None)
    return (account.id, account.shared.generation, account.shared.subscriptions)


class PushSubscription:
    """
    The StateChanges of some accounts, sent to one connection.

    Starting registers on the bus *before* reading the current states, so no
    change can fall between the two: a change that arrives meanwhile is
    merged once the listener starts (an older state arriving late is
    ignored).  :meth:`cancel` may come at any time, during :meth:`start`
    too: nothing stays registered afterwards.

    :param bus: the JMAP bus (StateChange events keyed by account or view).
    :param mail: where the current states are read.
    :param send: writes one StateChange object to the connection.
    :param types: the types the client wants, or ``None`` for all.
    :param user_id: the connection's user.
    :param metrics: where the transport's StateChanges are counted.
    """

    def __init__(
        self,
        bus: IEventBus,
        mail: IMailStore,
        send: Callable[[dict[str, Any]], None],
        types: Collection[str] | None,
        user_id: str,
        metrics: PushMetrics | None = None,
    ) -> None:
        self._bus = bus
        self._mail = mail
        self._user_id = user_id
        wanted = None if types is None else [t for t in types if t in PUSH_TYPES]
        self.listener = PushListener(send, wanted, user_id, metrics)
        self._registration: IRegistration | None = None
        self._keys: frozenset[str] = frozenset()
        self._cancelled = False
        self._paused = False

    @property
    def active(self) -> bool:
        """
        Whether the subscription is registered and not cancelled.
        """
        return self._registration is not None and not self._cancelled

    @property
    def accounts(self) -> frozenset[str]:
        """
        The ids of the accounts whose changes are sent.
        """
        return self.listener.accounts

    @property
    def views(self) -> tuple[Account, ...]:
        """
        The accounts whose changes are sent, as the user sees them.
        """
        return tuple(self.listener.views.values())

    def _listening_keys(self, accounts: Collection[Account]) -> list[IRegistrationKey]:
        return [listening_key(a, self._user_id) for a in accounts]

    def _unchanged(self, current: pushstate.States, read: Collection[Account]) -> pushstate.States:
        """
        The states read for accounts still seen as they were when read
        (access may have changed meanwhile).
        """
        views = self.listener.views
        return {a.id: current[a.id] for a in read if views.get(a.id) == a}

    async def start(self, accounts: Collection[Account], push_state: str | None) -> bool:
        """
        Register for the accounts and begin sending.  ``push_state`` is the
        client's last ``pushState`` (or ``Last-Event-ID``): what changed
        since then is sent at once; one that does not decode (another
        server's, damaged, hostile) replays every current state.

        :return: whether the subscription is running (``False`` when it was
            cancelled meanwhile).
        """
        accounts = sorted(accounts, key=lambda a: a.id)
        self.listener.set_accounts(accounts)
        keys = self._listening_keys(accounts)
        registration = await self._bus.register(self.listener, keys)
        if self._cancelled:
            await registration.cancel()
            return False
        self._registration = registration
        self._keys = frozenset(k.as_string() for k in keys)
        if self._paused:
            self.listener.pause()
        current = await current_states(self._mail, accounts)
        if self._cancelled:
            return False
        current = self._unchanged(current, accounts)
        replay = None if push_state is None else pushstate.replay(current, push_state)
        self.listener.start(current, replay)
        return True

    async def follow(self, accounts: Collection[Account]) -> None:
        """
        Follow a change of the accounts the user may see: a revoked one stops
        at once, a new one starts (its current states are sent); one now
        seen otherwise (another generation of a view, after the user's
        rights on its mailboxes changed, or other subscriptions; or whole
        instead of through shares) has its new current states sent at once,
        and states of the view's older generation still on their way are
        dropped.
        """
        accounts = sorted(accounts, key=lambda a: a.id)
        if self._cancelled or self._registration is None:
            return
        fresh = self.listener.set_accounts(accounts)
        keys = self._listening_keys(accounts)
        names = frozenset(k.as_string() for k in keys)
        if names != self._keys:
            registration = await self._bus.register(self.listener, keys)
            old, self._registration = self._registration, registration
            self._keys = names
            if self._cancelled:
                self._registration = None
                await registration.cancel()
            if old is not None:
                await old.cancel()
        if fresh and not self._cancelled:
            read = [a for a in accounts if a.id in fresh]
            self.listener.merge(self._unchanged(await current_states(self._mail, read), read))

    def catch_up(self, current: pushstate.States) -> bool:
        """
        Send what moved between the states this subscription last heard and
        ``current`` (after events may have been missed: the broker was
        unreachable).  Returns whether anything was sent.
        """
        mine = {a: s for a, s in current.items() if a in self.listener.accounts}
        moved = pushstate.catch_up(mine, self.listener.known)
        if moved:
            self.listener.merge(moved)
        return bool(moved)

    def pause(self) -> None:
        """
        The connection cannot take more: merge changes until :meth:`resume`.
        """
        self._paused = True
        self.listener.pause()

    def resume(self) -> None:
        """
        The connection drained: send what merged meanwhile.
        """
        self._paused = False
        self.listener.resume()

    def cancel(self) -> Deferred[None]:
        """
        Stop: unregister from the bus (also when :meth:`start` is running).
        """
        self._cancelled = True
        registration, self._registration = self._registration, None
        if registration is None:
            return succeed(None)
        cancelling = registration.cancel()
        cancelling.addErrback(lambda f: log.failure("Could not cancel a push subscription", f))
        return cancelling
