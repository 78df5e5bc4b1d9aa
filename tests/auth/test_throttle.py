"""
The failed-login limiter and the bounded hashing queue, with an injected
clock and a thread pool the tests run by hand.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.python import usage

from jmap_twisted.auth.throttle import (
    FailureLimiter,
    HashingBusy,
    HashingQueue,
    InFlight,
    LoginLimits,
    LoginRefused,
    LoginThrottled,
    client_key,
)
from jmap_twisted.tap import Options
from tests.auth.pools import ManualReactor


def test_limiter_allows_a_burst_then_one_failure_per_interval() -> None:
    """
    A key may fail ``burst`` times, then must wait ``interval`` seconds for
    each further failure; the wait is what ``retry_after`` says.
    """
    clock = Clock()
    limiter = FailureLimiter(clock, burst=3, interval=10, size=100)
    assert limiter.retry_after("a") == 0
    assert [limiter.failed("a") for _ in range(3)] == [False, False, True]
    assert limiter.retry_after("a") == pytest.approx(10)
    assert limiter.retry_after("b") == 0  # other keys are unaffected
    clock.advance(4)
    assert limiter.retry_after("a") == pytest.approx(6)
    clock.advance(6)
    assert limiter.retry_after("a") == 0
    assert limiter.failed("a") is True  # that one allowed failure is used again
    assert limiter.retry_after("a") == pytest.approx(10)


def test_limiter_forgets_recovered_keys_and_is_bounded() -> None:
    """
    A key whose bucket refilled is dropped; beyond ``size`` keys the least
    recently failing are forgotten, so memory stays bounded.
    """
    clock = Clock()
    limiter = FailureLimiter(clock, burst=2, interval=1, size=5)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 5
    clock.advance(2)
    assert limiter.retry_after("10.0.3.231") == 0
    assert len(limiter) == 4


def test_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        FailureLimiter(Clock(), burst=0, interval=1, size=1)


def test_refusals_round_retry_after_up_to_a_whole_second() -> None:
    assert LoginThrottled(0.01).retry_after == 1
    assert LoginThrottled(6.2).retry_after == 7
    assert (LoginThrottled(1).status, HashingBusy(1).status) == (429, 503)
    assert isinstance(HashingBusy(1), LoginRefused)


def test_queue_runs_at_most_threads_and_refuses_beyond_its_bound() -> None:
    """
    With 2 threads and 2 waiting places, 2 jobs run, 2 wait, and a fifth
    is refused with 503 at once; finished jobs make room in order.
    """
    reactor = ManualReactor()
    queue = HashingQueue(reactor, threads=2, per_client=10)
    results = [queue.run(f"c{i}", lambda i=i: i) for i in range(4)]
    assert (queue.running, queue.waiting, len(reactor.pool.pending)) == (2, 2, 2)
    with pytest.raises(HashingBusy):
        queue.run("c9", lambda: 9)
    reactor.pool.run_one()
    assert results[0].result == 0
    assert (queue.running, queue.waiting) == (2, 1)
    for _ in range(3):
        reactor.pool.run_one()
    assert [r.result for r in results[1:]] == [1, 2, 3]
    assert (queue.running, queue.waiting) == (0, 0)


def test_queue_gives_each_client_a_bounded_share() -> None:
    """
    One client cannot hold more than its share of the queue (429); another
    client still gets a place.
    """
    reactor = ManualReactor()
    queue = HashingQueue(reactor, threads=2, waiting=4, per_client=2)
    queue.run("attacker", lambda: None)
    queue.run("attacker", lambda: None)
    with pytest.raises(LoginThrottled):
        queue.run("attacker", lambda: None)
    done = queue.run("alice", lambda: "ok")
    reactor.pool.run_one()
    reactor.pool.run_one()
    reactor.pool.run_one()
    assert done.result == "ok"
    queue.run("attacker", lambda: None)  # its share is free again


def test_cancelled_waiting_job_never_runs() -> None:
    """
    A job whose caller went away before it started is dropped: it never
    runs, and its place is free again.
    """
    reactor = ManualReactor()
    queue = HashingQueue(reactor, threads=1, waiting=1, per_client=2)
    ran: list[str] = []
    first = queue.run("a", lambda: ran.append("first"))
    second = queue.run("a", lambda: ran.append("second"))
    second.cancel()
    assert second.called
    second.addErrback(lambda f: f.trap(CancelledError))
    assert (queue.running, queue.waiting) == (1, 0)
    queue.run("b", lambda: ran.append("third"))
    reactor.pool.run_one()
    reactor.pool.run_one()
    assert first.called
    assert ran == ["first", "third"]
    assert reactor.pool.pending == []


def test_cancelled_running_job_keeps_its_thread_until_done() -> None:
    """
    A running job cannot be stopped: its caller gets CancelledError at
    once, and its place is freed only when the thread finishes.
    """
    reactor = ManualReactor()
    queue = HashingQueue(reactor, threads=1, waiting=0, per_client=1)
    running = queue.run("a", lambda: "late")
    running.cancel()
    failures: list[Any] = []
    running.addErrback(failures.append)
    assert failures[0].check(CancelledError)
    with pytest.raises(HashingBusy):
        queue.run("b", lambda: None)
    reactor.pool.run_one()
    assert (queue.running, queue.waiting) == (0, 0)
    assert queue.run("b", lambda: "next") is not None


def test_queue_passes_exceptions_on() -> None:
    reactor = ManualReactor()
    queue = HashingQueue(reactor, threads=1)
    result = queue.run("a", lambda: 1 // 0)
    reactor.pool.run_one()
    failures: list[Any] = []
    result.addErrback(failures.append)
    assert failures[0].check(ZeroDivisionError)
    assert queue.running == 0


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:a:b:c:d", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("not an address", "not an address"),
    ],
)
def test_client_key(address: str, key: str) -> None:
    """
    IPv6 clients are counted by /64 network, as one host usually gets a
    whole /64; IPv4-mapped addresses as their IPv4 address.
    """
    assert client_key(address) == key


def test_twistd_options() -> None:
    """
    ``--password-threads`` and ``--login-failures-per-address`` reach the
    configuration; the defaults are :class:`LoginLimits`'s.
    """

    def parse(*args: str) -> LoginLimits:
        options = Options()
        options.parseOptions(list(args))
        return options.config.login

    assert parse() == LoginLimits()
    limits = parse("--password-threads", "4", "--login-failures-per-address", "0")
    assert (limits.threads, limits.per_client, limits.address_burst) == (4, 4, 0)
    with pytest.raises(usage.UsageError):
        parse("--login-failures-per-address", "-1")
    with pytest.raises(usage.UsageError):
        parse("--password-threads", "0")


def test_in_flight_shares_one_run_among_callers() -> None:
    """
    Callers asking the same question at once share one run; a later one
    after it finished starts a new run.
    """
    reactor = ManualReactor()
    queue = HashingQueue(reactor, threads=1)
    shared = InFlight()
    runs: list[int] = []

    def start() -> Any:
        return queue.run("a", lambda: runs.append(1) or "yes")

    callers = [shared.join(b"k", start) for _ in range(5)]
    assert (len(reactor.pool.pending), len(shared)) == (1, 1)
    reactor.pool.run_all()
    assert [c.result for c in callers] == ["yes"] * 5
    assert len(shared) == 0
    again = shared.join(b"k", start)
    reactor.pool.run_all()
    assert (again.result, runs) == ("yes", [1, 1])


def test_in_flight_run_is_cancelled_when_every_caller_left() -> None:
    """
    One caller leaving does not cancel the others' run; when the last one
    leaves, the run is cancelled (so a waiting hash never happens).
    """
    reactor = ManualReactor()
    queue = HashingQueue(reactor, threads=1)
    queue.run("other", lambda: None)  # holds the thread
    shared = InFlight()
    ran: list[str] = []
    first = shared.join(b"k", lambda: queue.run("a", lambda: ran.append("k")))
    second = shared.join(b"k", lambda: queue.run("a", lambda: ran.append("twice")))
    for caller in (first, second):
        caller.addErrback(lambda f: f.trap(CancelledError))
    first.cancel()
    assert queue.waiting == 1
    second.cancel()
    assert (queue.waiting, len(shared)) == (0, 0)
    reactor.pool.run_all()
    assert ran == []


def test_in_flight_passes_refusals_and_failures_on() -> None:
    shared = InFlight()

    def busy() -> Any:
        raise HashingBusy(1)

    with pytest.raises(HashingBusy):
        shared.join(b"k", busy)
    assert len(shared) == 0
    reactor = ManualReactor()
    queue = HashingQueue(reactor, threads=1)
    callers = [shared.join(b"k", lambda: queue.run("a", lambda: 1 // 0)) for _ in range(2)]
    reactor.pool.run_all()
    for caller in callers:
        failures: list[Any] = []
        caller.addErrback(failures.append)
        assert failures[0].check(ZeroDivisionError)
