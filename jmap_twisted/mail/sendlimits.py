# -*- test-case-name: tests.mail.test_sendlimits -*-
"""
How much mail a user may send (RFC 8621 §7.5): recipients per submission,
and a per-user budget of recipients per hour.

A recipient costs the same whether it is delivered into one of this
server's own accounts or relayed to the smarthost: one submission listing
a local user many times would otherwise fill that user's mailbox.
"""

from __future__ import annotations

from collections import deque

from attrs import frozen
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger()

#: The budget's window, seconds.
WINDOW = 3600.0
#: Recipients are counted in slots of this many seconds, so a user's
#: window holds at most ``WINDOW / SLOT + 1`` counters however much they
#: send.
SLOT = 60.0


@frozen
class SendLimits:
    """
    Limits on what one user sends through ``EmailSubmission/set``.

    :ivar max_recipients_per_submission: distinct envelope recipients of
        one submission; more is ``tooManyRecipients``.
    :ivar max_recipients_per_hour: envelope recipients one user may send
        to in any hour, over all their submissions and accounts; more is
        ``rateLimit``.
    """

    max_recipients_per_submission: int = 100
    max_recipients_per_hour: int = 1000


class RecipientBudget:
    """
    The recipients each user sent to in the last hour, against a limit.

    The window slides in :data:`SLOT`-second steps: a recipient counts for
    at least an hour and at most an hour and a slot.  Memory is bounded by
    the users who sent within the last two hours, each holding at most
    ``WINDOW / SLOT + 1`` counters: users whose window has emptied are
    forgotten once per window.  The budget is this process's own: each node
    of a cluster keeps one.

    :param limit: recipients per user per window.
    :param clock: tells the time.
    """

    def __init__(self, limit: int, clock: IReactorTime) -> None:
        self.limit = limit
        self._clock = clock
        #: user id → [slot start, recipients] oldest first.
        self._sent: dict[str, deque[list[float]]] = {}
        #: Users refused since they last sent, so a refusal is logged once.
        self._refused: set[str] = set()
        self._next_sweep = clock.seconds() + WINDOW

    def _slots(self, user_id: str, now: float) -> deque[list[float]]:
        slots = self._sent.get(user_id)
        if slots is None:
            return deque()
        horizon = now - WINDOW
        while slots and slots[0][0] + SLOT <= horizon:
            slots.popleft()
        return slots

    def used(self, user_id: str) -> int:
        """
        Recipients ``user_id`` sent to within the window.
        """
        return int(sum(count for _, count in self._slots(user_id, self._clock.seconds())))

    def charge(self, user_id: str, recipients: int) -> bool:
        """
        Count ``recipients`` against ``user_id``'s budget if they fit in
        it; whether they did (nothing is counted when they do not).
        """
        now = self._clock.seconds()
        self._sweep(now)
        slots = self._slots(user_id, now)
        used = sum(count for _, count in slots)
        if used + recipients > self.limit:
            if user_id not in self._refused:
                self._refused.add(user_id)
                log.warn(
                    "User {user_id} reached the limit of {limit} recipients an hour;"
                    " submissions are refused until the window frees",
                    user_id=user_id,
                    limit=self.limit,
                )
            return False
        self._refused.discard(user_id)
        start = now - now % SLOT
        if slots and slots[-1][0] == start:
            slots[-1][1] += recipients
        else:
            slots.append([start, recipients])
        self._sent[user_id] = slots
        return True

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + WINDOW
        for user_id in list(self._sent):
            if not self._slots(user_id, now):
                del self._sent[user_id]
        self._refused &= set(self._sent)
