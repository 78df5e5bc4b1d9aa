"""
:mod:`jmap_twisted.testing` as an embedder uses it: a mail store of their
own proved by subclassing :class:`~jmap_twisted.testing.MailStoreContract`,
and broken stores caught by the same contract.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_twisted
from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from zope.interface import classImplementsOnly, implementer
from zope.interface.exceptions import DoesNotImplement

from jmap_twisted.interfaces import IChangeLogPruning, IMailReader, IMailStore, IMailWriter
from jmap_twisted.records import ChangeBatch, StoreCommit
from jmap_twisted.testing import (
    CONTRACT_ACCOUNTS,
    CONTRACT_EPOCH,
    MailStoreContract,
    MemoryMailStore,
)

T = TypeVar("T")


@implementer(IMailStore, IChangeLogPruning)
class AuditedMailStore:
    """
    An embedder's own store: the in-memory one, noting which accounts
    every write went to.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._mail = MemoryMailStore(clock)
        self.written: list[str] = []

    def setup_account(self, account_id: str) -> Deferred[None]:
        return self._mail.setup_account(account_id)

    def read(self, account_id: str, fn: Callable[[IMailReader], T]) -> Deferred[T]:
        return self._mail.read(account_id, fn)

    def write(
        self, account_id: str, fn: Callable[[IMailWriter], T], delivery: bool = False
    ) -> Deferred[T]:
        self.written.append(account_id)
        return self._mail.write(account_id, fn, delivery)

    def subscribe(self, listener: Callable[[StoreCommit], object]) -> Callable[[], None]:
        return self._mail.subscribe(listener)

    def prune_changes(self, before: float) -> Deferred[int]:
        return self._mail.prune_changes(before)


class TestAuditedMailStore(MailStoreContract):
    """
    The embedder's store passes every test of the contract, collected
    here by inheritance.
    """

    @pytest.fixture
    def mail_store(self, clock: Clock) -> IMailStore:
        return AuditedMailStore(clock)


@implementer(IMailReader)
class _ForgetfulReader:
    """
    A reader whose ``Email`` changes lose the newest created id.
    """

    def __init__(self, reader: IMailReader) -> None:
        self._reader = reader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    def changes(self, type_name: str, since_state: str, max_changes: int | None) -> ChangeBatch:
        batch = self._reader.changes(type_name, since_state, max_changes)
        if type_name == "Email":
            return evolve(batch, created=batch.created[:-1])
        return batch


class LosesEmailChanges(AuditedMailStore):
    """
    Broken: ``Email/changes`` misses the newest email created.
    """

    def read(self, account_id: str, fn: Callable[[IMailReader], T]) -> Deferred[T]:
        return super().read(account_id, lambda reader: fn(_ForgetfulReader(reader)))


class PrunesEverything(AuditedMailStore):
    """
    Broken: pruning deletes the whole change log, whatever the cutoff.
    """

    def prune_changes(self, before: float) -> Deferred[int]:
        return super().prune_changes(float("inf"))


class PrunesAtTheCutoff(AuditedMailStore):
    """
    Broken: pruning also deletes the entries committed at the cutoff.
    """

    def prune_changes(self, before: float) -> Deferred[int]:
        return super().prune_changes(before + 0.001)


async def run_contract_test(name: str, store: IMailStore, clock: Clock) -> None:
    """
    Run one test of the mail contract against ``store``, as pytest would:
    with the contract's accounts set up, and the clock if the test takes it.
    """
    for account in CONTRACT_ACCOUNTS:
        await store.setup_account(account)
    test = getattr(MailStoreContract(), name)
    arguments: dict[str, Any] = {"store": store}
    if "clock" in inspect.signature(test).parameters:
        arguments["clock"] = clock
    await test(**arguments)


def contract_clock() -> Clock:
    clock = Clock()
    clock.advance(CONTRACT_EPOCH)
    return clock


BROKEN = [
    (LosesEmailChanges, "test_delivery_changes_email_thread_and_mailbox_counts"),
    (PrunesEverything, "test_pruning_forgets_old_states_only"),
    (PrunesAtTheCutoff, "test_pruning_keeps_entries_from_the_cutoff_on"),
]


@pytest.mark.parametrize(("broken", "test_name"), BROKEN)
@pytest_twisted.ensureDeferred
async def test_broken_store_fails_the_contract(
    broken: type[AuditedMailStore], test_name: str
) -> None:
    """
    A store that loses a change or prunes too much fails the contract
    test that guards that behaviour, while the sound store it derives
    from passes the very same test.
    """
    clock = contract_clock()
    await run_contract_test(test_name, AuditedMailStore(clock), clock)
    clock = contract_clock()
    with pytest.raises(AssertionError):
        await run_contract_test(test_name, broken(clock), clock)


@pytest_twisted.ensureDeferred
async def test_store_without_pruning_fails_the_interface_check() -> None:
    """
    A mail store that does not declare change-log pruning fails the
    contract's interface test.
    """

    class Unpruned(AuditedMailStore):
        pass

    classImplementsOnly(Unpruned, IMailStore)
    clock = contract_clock()
    with pytest.raises(DoesNotImplement, match="IChangeLogPruning"):
        await run_contract_test("test_provides_interfaces", Unpruned(clock), clock)


EMBEDDER_MODULE = """
import pytest

from jmap_twisted.testing import MailStoreContract, MemoryMailStore


class TestTheirStore(MailStoreContract):
    @pytest.fixture
    def mail_store(self, clock):
        return MemoryMailStore(clock)


class TestForgotTheFixture(MailStoreContract):
    pass
"""


def test_contract_runs_in_an_embedders_own_tree(tmp_path: Path) -> None:
    """
    In a project of its own, with no conftest, pytest collects every
    contract test in each subclass: they pass where the subclass provides
    its store, and error naming the fixture to write where it does not.
    """
    contract_tests = sum(1 for name in dir(MailStoreContract) if name.startswith("test_"))
    (tmp_path / "test_their_store.py").write_text(EMBEDDER_MODULE)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    summary = result.stdout.strip().splitlines()[-1]
    assert f"{contract_tests} passed" in summary, result.stdout
    assert f"{contract_tests} errors" in summary, result.stdout
    assert "TestForgotTheFixture must provide a pytest fixture named 'mail_store'" in result.stdout
