"""
An own mail store, proved with the contract suite that ships with the
package.  This one keeps the data in memory (delegating to the reference
store) and counts the transactions of each account, say for billing; a
real one would speak to its own database the same way.

Run the contract against it::

    python -m pytest docs/examples/own_store.py
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from jmap_twisted.interfaces import IChangeLogPruning, IMailReader, IMailStore, IMailWriter
from jmap_twisted.records import StoreCommit
from jmap_twisted.testing import MailStoreContract, MemoryMailStore

T = TypeVar("T")


@implementer(IMailStore, IChangeLogPruning)
class CountingMailStore:
    """
    A mail store that counts each account's reads and writes.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._data = MemoryMailStore(clock)
        self.reads: Counter[str] = Counter()
        self.writes: Counter[str] = Counter()

    def setup_account(self, account_id: str) -> Deferred[None]:
        return self._data.setup_account(account_id)

    def read(self, account_id: str, fn: Callable[[IMailReader], T]) -> Deferred[T]:
        self.reads[account_id] += 1
        return self._data.read(account_id, fn)

    def write(
        self, account_id: str, fn: Callable[[IMailWriter], T], delivery: bool = False
    ) -> Deferred[T]:
        self.writes[account_id] += 1
        return self._data.write(account_id, fn, delivery)

    def subscribe(self, listener: Callable[[StoreCommit], object]) -> Callable[[], None]:
        return self._data.subscribe(listener)

    def prune_changes(self, before: float) -> Deferred[int]:
        return self._data.prune_changes(before)


class TestCountingMailStore(MailStoreContract):
    """
    Every test of the contract, run against :class:`CountingMailStore`.
    """

    @pytest.fixture
    def mail_store(self, clock: Any) -> CountingMailStore:
        return CountingMailStore(clock)
