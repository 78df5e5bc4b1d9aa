"""
Tests of :mod:`jmap_twisted.store.sql.fair_reads`: a share of the readers per
account, turns between accounts, cancellation, and the time budget, with a
thread pool that runs work only when the test says so.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure

from jmap_twisted.core.engine import Engine
from jmap_twisted.core.limits import CoreLimits
from jmap_twisted.core.registry import Registry
from jmap_twisted.core.request import parse_request
from jmap_twisted.errors import QueryTimeout
from jmap_twisted.store.sql.fair_reads import FairReads, Work, WorkCancelled
from jmap_twisted.store.sqlite.database import SQLiteDatabase


class _Pool:
    """
    A thread pool that keeps the work given to it until :meth:`run_next`.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[..., None], Callable[..., Any], tuple[Any, ...]]] = []
        self.interrupts: list[Callable[..., Any]] = []

    def callInThreadWithCallback(
        self, on_result: Callable[..., None], fn: Callable[..., Any], *args: Any
    ) -> None:
        self.pending.append((on_result, fn, args))

    def callInThread(self, fn: Callable[..., Any], *args: Any) -> None:
        self.interrupts.append(lambda: fn(*args))

    def run_next(self) -> None:
        on_result, fn, args = self.pending.pop(0)
        try:
            result = fn(*args)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, result)


class _Reactor:
    def callFromThread(self, fn: Callable[..., Any], *args: Any) -> None:
        fn(*args)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _queue(
    pool: _Pool, capacity: int = 2, share: int = 1, budget: float | None = 10.0
) -> tuple[FairReads, _Clock]:
    clock = _Clock()
    reads = FairReads(
        _Reactor(),
        pool,  # type: ignore[arg-type]
        capacity,
        share,
        budget,
        clock,
        interrupter=pool,  # type: ignore[arg-type]
    )
    return reads, clock


def _tag(tag: str) -> Callable[[Work], str]:
    return lambda work: tag


def test_one_owner_holds_at_most_its_share() -> None:
    """
    However many reads one account queues, it runs at most ``share`` at
    once; another account's read starts on the capacity left, before the
    first account's queue.
    """
    pool = _Pool()
    reads, _ = _queue(pool, capacity=2, share=1)
    mallory = [reads.submit("mallory", _tag(f"m{i}")) for i in range(100)]
    assert reads.busy == 1 and reads.waiting == 99
    alice = reads.submit("alice", _tag("a"))
    assert reads.busy == 2 and reads.running_for("alice") == 1
    results: list[str] = []
    alice.addCallback(results.append)
    pool.run_next()  # mallory's first
    pool.run_next()  # alice's
    assert results == ["a"]
    assert mallory[0].called and not mallory[1].called
    assert reads.running_for("mallory") == 1 and reads.busy == 1


def test_owners_take_turns() -> None:
    """
    Waiting accounts are served round-robin, not in submission order.
    """
    pool = _Pool()
    reads, _ = _queue(pool, capacity=1, share=1)
    order: list[str] = []
    for owner, count in (("m", 3), ("a", 2), ("b", 1)):
        for i in range(count):
            reads.submit(owner, _tag(f"{owner}{i}")).addCallback(order.append)
    while pool.pending:
        pool.run_next()
    assert order == ["m0", "a0", "b0", "m1", "a1", "m2"]


def test_cancelled_waiting_read_never_runs() -> None:
    """
    Cancelling a read that waits for a thread fails it with
    CancelledError at once and it never runs.
    """
    pool = _Pool()
    reads, _ = _queue(pool, capacity=1, share=1)
    ran: list[int] = []
    first = reads.submit("m", lambda work: ran.append(1))
    queued = [reads.submit("m", lambda work: ran.append(2)) for _ in range(50)]
    for d in queued:
        d.cancel()
    failures: list[Failure] = []
    queued[0].addErrback(failures.append)
    assert failures[0].check(CancelledError)
    assert reads.waiting == 0
    pool.run_next()
    assert first.called and ran == [1] and not pool.pending
    for d in queued[1:]:
        d.addErrback(lambda f: f.trap(CancelledError))


def test_cancelled_running_read_is_told_to_stop_and_keeps_its_thread() -> None:
    """
    Cancelling a running read marks its Work so that the thread stops
    (and calls the backend's interrupt); the thread stays counted as busy
    until it returns, and the next read starts only then.
    """
    pool = _Pool()
    reads, _ = _queue(pool, capacity=1, share=1)
    seen: list[Work] = []
    interrupted: list[bool] = []

    def long_read(work: Work) -> None:
        seen.append(work)
        work.check()

    running = reads.submit("m", long_read)
    following = reads.submit("a", _tag("a"))
    # The backend registers its interrupt while the statement runs.
    _, _, args = pool.pending[0]
    job = args[0]
    job.work.interrupt = lambda: interrupted.append(True)
    running.cancel()
    running.addErrback(lambda f: f.trap(CancelledError))
    assert job.work.cancelled and job.work.should_stop()
    pool.interrupts.pop()()
    assert interrupted == [True]
    assert reads.busy == 1 and not following.called
    pool.run_next()  # the thread sees the flag and stops
    assert reads.busy == 1 and reads.running_for("a") == 1
    pool.run_next()
    assert following.result == "a"


def test_a_cancelled_read_is_interrupted_until_it_stops() -> None:
    """
    A statement sent just before the interrupt escapes it, so a cancelled
    read still running is interrupted again every INTERRUPT_AGAIN seconds,
    and no more once it has stopped.
    """
    from twisted.internet.task import Clock

    from jmap_twisted.store.sql.fair_reads import INTERRUPT_AGAIN

    pool = _Pool()
    timer = Clock()
    reads = FairReads(
        _Reactor(),
        pool,  # type: ignore[arg-type]
        1,
        1,
        None,
        interrupter=pool,  # type: ignore[arg-type]
        clock=timer,
    )
    interrupted: list[int] = []
    running = reads.submit("m", lambda work: work.check())
    running.addErrback(lambda f: f.trap(CancelledError))
    _, _, args = pool.pending[0]
    args[0].work.interrupt = lambda: interrupted.append(1)
    running.cancel()
    timer.advance(INTERRUPT_AGAIN)
    timer.advance(INTERRUPT_AGAIN)
    for interrupt in pool.interrupts:
        interrupt()
    assert len(interrupted) == 3
    pool.run_next()  # it stops
    timer.advance(10 * INTERRUPT_AGAIN)
    assert len(pool.interrupts) == 3
    assert not timer.getDelayedCalls()


def test_budget_runs_from_the_start_of_the_read() -> None:
    """
    The budget counts from when the read starts in a thread (not while it
    waits); past it, ``check`` raises QueryTimeout.
    """
    pool = _Pool()
    reads, clock = _queue(pool, capacity=1, share=1, budget=5.0)
    checks: list[bool] = []

    def read(work: Work) -> None:
        checks.append(work.should_stop())
        clock.now += 6
        checks.append(work.should_stop())
        work.check()

    reads.submit("m", _tag("first"))
    late = reads.submit("m", read)
    clock.now = 100.0  # waited long: does not count
    pool.run_next()
    pool.run_next()
    assert checks == [False, True]
    failures: list[Failure] = []
    late.addErrback(failures.append)
    assert failures[0].check(QueryTimeout)
    assert failures[0].value.budget == 5.0


def test_work_check_reports_cancellation_first() -> None:
    """
    A cancelled read raises WorkCancelled even when its budget is spent.
    """
    clock = _Clock()
    work = Work(1.0, clock)
    work.begin()
    clock.now = 2.0
    work.cancelled = True
    with pytest.raises(WorkCancelled):
        work.check()
    assert Work(None, clock).remaining() is None


def test_shares_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FairReads(_Reactor(), _Pool(), 0, 1)  # type: ignore[arg-type]


# SQLite: the progress handler stops a statement.


class _StepClock:
    """
    A clock that advances by ``step`` each time it is read: a statement
    that keeps the progress handler busy runs out of budget after a known
    number of looks, not of seconds.
    """

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += self.step
        return self.now


_ENDLESS = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"


@pytest_twisted.ensureDeferred
async def test_sqlite_statement_past_its_budget_is_stopped(tmp_path: Path) -> None:
    """
    An endless statement of one account's read fails with QueryTimeout
    once the budget is spent (the progress handler reads the clock);
    the connection then serves the next read normally, and the
    directory's reads have no budget.
    """
    from twisted.internet import reactor

    clock = _StepClock(1.0)
    db = SQLiteDatabase(
        str(tmp_path / "db.sqlite3"),
        reactor,
        migrations=["CREATE TABLE t (x INTEGER);"],
        readers=1,
        read_budget=50.0,
        monotonic=clock,
    )
    await db.start()
    try:
        with pytest.raises(QueryTimeout):
            await db.read_for("mallory", lambda c: c.execute(_ENDLESS).fetchone())
        assert 50 <= clock.reads <= 60
        assert await db.read_for("mallory", lambda c: c.execute("SELECT 7").fetchone()) == (7,)
        assert await db.read(lambda c: c.execute("SELECT 8").fetchone()) == (8,)
    finally:
        await db.stop()


@pytest_twisted.ensureDeferred
async def test_sqlite_cancelled_read_stops_and_directory_reads_go_on(tmp_path: Path) -> None:
    """
    While an account's read holds the only reader, the directory's reads
    still run; cancelling the read interrupts its statement, and the reader
    is free again.
    """
    from twisted.internet import reactor

    db = SQLiteDatabase(
        str(tmp_path / "db.sqlite3"),
        reactor,
        migrations=["CREATE TABLE t (x INTEGER);"],
        readers=1,
        read_budget=None,
    )
    await db.start()
    started = threading.Event()

    def endless(connection: sqlite3.Connection) -> object:
        started.set()
        return connection.execute(_ENDLESS).fetchone()

    try:
        running = db.read_for("mallory", endless)
        waiting = db.read_for("mallory", lambda c: c.execute("SELECT 1").fetchone())
        assert started.wait(10)
        # The directory's reader is not the account's.
        assert await db.read(lambda c: c.execute("SELECT 2").fetchone()) == (2,)
        waiting.cancel()
        running.cancel()
        with pytest.raises(CancelledError):
            await running
        with pytest.raises(CancelledError):
            await waiting
        assert await db.read_for("alice", lambda c: c.execute("SELECT 3").fetchone()) == (3,)
        assert db.reads is not None and db.reads.busy == 0
    finally:
        await db.stop()


# The engine: a timeout is a method error, cancellation stops the request.


@pytest_twisted.ensureDeferred
async def test_engine_answers_a_timeout_with_server_fail_and_stops_when_cancelled() -> None:
    """
    A method whose read ran past its budget answers ``serverFail`` with a
    description and the next call still runs; a cancelled request runs no
    further call and is not turned into an error response.
    """
    from twisted.internet.defer import Deferred

    from jmap_twisted.auth.realm import Principal
    from jmap_twisted.core.registry import Capability
    from jmap_twisted.records import Account, User

    calls: list[str] = []
    blocked: Deferred[dict[str, Any]] = Deferred()

    async def slow(context: Any, arguments: dict[str, Any]) -> dict[str, Any]:
        calls.append("slow")
        raise QueryTimeout(20.0)

    async def echo(context: Any, arguments: dict[str, Any]) -> dict[str, Any]:
        calls.append("echo")
        return arguments

    async def waits(context: Any, arguments: dict[str, Any]) -> dict[str, Any]:
        calls.append("waits")
        return await blocked

    registry = Registry()
    core = "urn:ietf:params:jmap:core"
    registry.add_capability(Capability(core))
    registry.add_method("Test/slow", core, slow)
    registry.add_method("Test/echo", core, echo)
    registry.add_method("Test/waits", core, waits)
    engine = Engine(registry, CoreLimits())
    principal = Principal(User("u1", "u"), (Account("a1", "u", "u1"),))

    def request(*names: str) -> Any:
        return parse_request(
            {"using": [core], "methodCalls": [[n, {}, str(i)] for i, n in enumerate(names)]},
            registry.capabilities,
            16,
        )

    response = await engine.execute(principal, request("Test/slow", "Test/echo"))
    error, echoed = response["methodResponses"]
    assert error[0] == "error" and error[1]["type"] == "serverFail"
    assert "20 s" in error[1]["description"]
    assert echoed[0] == "Test/echo"

    calls.clear()
    running = Deferred.fromCoroutine(engine.execute(principal, request("Test/waits", "Test/echo")))
    running.cancel()
    with pytest.raises(CancelledError):
        await running
    assert calls == ["waits"]
