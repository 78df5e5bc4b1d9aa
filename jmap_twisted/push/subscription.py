# -*- test-case-name: tests.push.test_subscription -*-
"""
One connection's subscription to StateChanges (RFC 8620 §7.1), the same for
every push transport: a listener registered on the JMAP bus under the keys
of the accounts the user may see, started from the states read when it
began (replaying what changed since the client's ``pushState``, §7.1 and
RFC 8887 §4.3.5.2), following the accounts as access changes, cancelled
when the connection ends.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from jmap_twisted.bus.events import AccountKey
from jmap_twisted.interfaces import IEventBus, IMailStore, IRegistration
from jmap_twisted.push import pushstate
from jmap_twisted.push.listener import PUSH_TYPES, PushListener, current_states

log = Logger()


class PushSubscription:
    """
    The StateChanges of some accounts, sent to one connection.

    Starting registers on the bus *before* reading the current states, so no
    change can fall between the two: a change that arrives meanwhile is
    merged once the listener starts (an older state arriving late is
    ignored).  :meth:`cancel` may come at any time, during :meth:`start`
    too: nothing stays registered afterwards.

    :param bus: the JMAP bus (StateChange events keyed by account).
    :param mail: where the current states are read.
    :param send: writes one StateChange object to the connection.
    :param types: the types the client wants, or ``None`` for all.
    """

    def __init__(
        self,
        bus: IEventBus,
        mail: IMailStore,
        send: Callable[[dict[str, Any]], None],
        types: Collection[str] | None,
    ) -> None:
        self._bus = bus
        self._mail = mail
        wanted = None if types is None else [t for t in types if t in PUSH_TYPES]
        self.listener = PushListener(send, wanted, ())
        self._registration: IRegistration | None = None
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
        The accounts whose changes are sent.
        """
        return self.listener.accounts

    async def start(self, accounts: Collection[str], push_state: str | None) -> bool:
        """
        Register for the accounts and begin sending.  ``push_state`` is the
        client's last ``pushState`` (or ``Last-Event-ID``): what changed
        since then is sent at once; one that does not decode (another
        server's, damaged, hostile) replays every current state.

        :return: whether the subscription is running (``False`` when it was
            cancelled meanwhile).
        """
        self.listener.set_accounts(accounts)
        registration = await self._bus.register(self.listener, [AccountKey(a) for a in accounts])
        if self._cancelled:
            await registration.cancel()
            return False
        self._registration = registration
        if self._paused:
            self.listener.pause()
        current = await current_states(self._mail, sorted(accounts))
        if self._cancelled:
            return False
        # Accounts may have been lost while the states were read.
        current = {a: s for a, s in current.items() if a in self.listener.accounts}
        replay = None if push_state is None else pushstate.replay(current, push_state)
        self.listener.start(current, replay)
        return True

    async def follow(self, accounts: Collection[str]) -> None:
        """
        Follow a change of the accounts the user may see: a revoked one stops
        at once, a new one starts (its current states are sent).
        """
        wanted = frozenset(accounts)
        if self._cancelled or self._registration is None or wanted == self.listener.accounts:
            return
        added = wanted - self.listener.accounts
        self.listener.set_accounts(wanted)
        registration = await self._bus.register(self.listener, [AccountKey(a) for a in wanted])
        old, self._registration = self._registration, registration
        if self._cancelled:
            self._registration = None
            await registration.cancel()
        if old is not None:
            await old.cancel()
        if added and not self._cancelled:
            self.listener.merge(await current_states(self._mail, sorted(added)))

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
