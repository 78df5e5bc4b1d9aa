# -*- test-case-name: tests.bus.test_memory_bus,tests.test_testing_module -*-
"""
Small doubles for tests: messages to store or deliver, and event listeners
that record what a bus gives them.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from jmap_twisted.bus.events import SYNCHRONOUS
from jmap_twisted.interfaces import IEvent, IEventListener

#: The POSIX time the contracts' clocks start at.
CONTRACT_EPOCH = 1_700_000_000.0

#: The account most mail contract tests work in, set up by the ``store`` fixture.
ACCOUNT = "a0000000000000001"
#: A second account, set up too, to show accounts are separate.
OTHER = "a0000000000000002"
#: The accounts the mail contract's ``store`` fixture sets up.
CONTRACT_ACCOUNTS = (ACCOUNT, OTHER)


def message(
    subject: str = "Hello",
    sender: str = "Ann <ann@example.com>",
    to: str = "bob@example.com",
    body: str = "Hi there.",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    date: str = "Tue, 24 Nov 2026 10:00:00 +0000",
    extra: str = "",
) -> bytes:
    """
    Build a small RFC 5322 message, with CRLF line endings.

    :param message_id: the ``Message-ID`` without angle brackets, or
        ``None`` for none.
    :param in_reply_to: the parent's message id: sets ``In-Reply-To`` and
        ``References``, so the message threads with its parent.
    :param extra: further header lines, CRLF-separated.
    """
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {date}",
    ]
    if message_id:
        lines.append(f"Message-ID: <{message_id}>")
    if in_reply_to:
        lines.append(f"In-Reply-To: <{in_reply_to}>")
        lines.append(f"References: <{in_reply_to}>")
    if extra:
        lines.append(extra)
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode("utf-8")


@implementer(IEventListener)
class RecordingListener:
    """
    Record the events a bus delivers, failing the first calls on request.

    :param failures: how many calls of :meth:`handle` fail before it
        succeeds (a failed call records nothing).
    :param mode: the listener's ``execution_mode``.
    :param accept: decides :meth:`is_handling`; ``None`` accepts all.
    :ivar received: the events handled successfully, in order.
    :ivar calls: how many times :meth:`handle` was called.
    """

    def __init__(
        self,
        failures: int = 0,
        mode: str = SYNCHRONOUS,
        accept: Callable[[IEvent], bool] | None = None,
    ) -> None:
        self.received: list[IEvent] = []
        self.calls = 0
        self.failures = failures
        self.execution_mode = mode
        self._accept = accept

    def is_handling(self, event: IEvent) -> bool:
        return self._accept is None or self._accept(event)

    def handle(self, event: IEvent) -> Deferred[None]:
        self.calls += 1
        if self.calls <= self.failures:
            return fail(RuntimeError("listener failure for the test"))
        self.received.append(event)
        return succeed(None)


@implementer(IEventListener)
class StalledListener:
    """
    A listener whose handling never finishes until the test fires it.

    :ivar pending: the Deferred of each call of :meth:`handle`, unfired.
    """

    execution_mode = SYNCHRONOUS

    def __init__(self) -> None:
        self.pending: list[Deferred[None]] = []

    def is_handling(self, event: IEvent) -> bool:
        return True

    def handle(self, event: IEvent) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.pending.append(d)
        return d
