"""
The password checker under load: remembered credentials skip hashing,
failing addresses and usernames are throttled, the hashing queue is
bounded, and abandoned checks never hash.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from jmap_twisted.auth.checkers import PasswordChecker, PasswordCredentials
from jmap_twisted.auth.throttle import HashingBusy, LoginLimits, LoginThrottled
from jmap_twisted.store.memory.directory import MemoryDirectory
from tests.auth.pools import CountingHasher, ManualReactor


class Setup:
    def __init__(self, **limits: Any) -> None:
        self.reactor = ManualReactor()
        self.hasher = CountingHasher()
        self.directory = MemoryDirectory(self.reactor)
        self.alice = self.directory.create_user("alice", self.hasher.hash("secret")).result
        self.bob = self.directory.create_user("bob", self.hasher.hash("hunter2")).result
        self.checker = PasswordChecker(
            self.directory,
            self.hasher,
            self.reactor,
            self.reactor,
            LoginLimits(**{"address_burst": 3, "user_burst": 5, "refill": 10, **limits}),
        )

    def login(self, user: str, password: str, client: str | None = "192.0.2.1") -> Deferred[Any]:
        credentials = PasswordCredentials(user.encode(), password.encode(), client)
        return self.checker.requestAvatarId(credentials)

    def outcome(self, user: str, password: str, client: str | None = "192.0.2.1") -> Any:
        """
        The avatar id, or the exception, once the hashing threads ran.
        """
        results: list[Any] = []
        self.login(user, password, client).addBoth(results.append)
        self.reactor.pool.run_all()
        (result,) = results
        return result.value if isinstance(result, Failure) else result


@pytest.fixture
def setup() -> Setup:
    return Setup()


def test_interface(setup: Setup) -> None:
    assert verifyObject(ICredentialsChecker, setup.checker)


def test_plain_username_password_still_checked(setup: Setup) -> None:
    """
    Credentials without an address (not from HTTP) are checked as before.
    """
    results: list[Any] = []
    setup.checker.requestAvatarId(UsernamePassword(b"alice", b"secret")).addBoth(results.append)
    setup.reactor.pool.run_all()
    assert results == [setup.alice.id]


def test_verified_credentials_skip_hashing_and_limits(setup: Setup) -> None:
    """
    Once verified, the same credentials pass without a hash, even while
    their address is throttled and the hashing queue is full.
    """
    assert setup.outcome("alice", "secret") == setup.alice.id
    assert setup.hasher.verified == 1
    for _ in range(3):
        assert isinstance(setup.outcome("mallory", "x"), UnauthorizedLogin)
    assert isinstance(setup.outcome("alice", "wrong"), LoginThrottled)
    hashed = setup.hasher.verified
    # 2 running, 2 waiting: the queue is full.
    guesses = [setup.login("bob", f"guess{i}", f"198.51.100.{i}") for i in range(4)]
    passed: list[Any] = []
    setup.login("alice", "secret", "198.51.100.9").addBoth(passed.append)
    assert passed == [setup.alice.id]
    assert setup.hasher.verified == hashed
    for guess in guesses:
        guess.addErrback(lambda f: f.trap(UnauthorizedLogin))
    setup.reactor.pool.run_all()


def test_wrong_password_never_remembered(setup: Setup) -> None:
    """
    After a success, a wrong password is still hashed and refused.
    """
    assert setup.outcome("alice", "secret") == setup.alice.id
    assert isinstance(setup.outcome("alice", "secreT"), UnauthorizedLogin)
    assert setup.hasher.verified == 2


def test_changed_password_forgets_the_old_one(setup: Setup) -> None:
    """
    A new stored hash invalidates what was remembered of the old password.
    """
    assert setup.outcome("alice", "secret") == setup.alice.id
    setup.directory.set_password_hash("alice", setup.hasher.hash("new"))
    assert isinstance(setup.outcome("alice", "secret"), UnauthorizedLogin)
    assert setup.outcome("alice", "new") == setup.alice.id


def test_remembered_for_a_while_only() -> None:
    """
    A remembered success expires after ``cache_ttl`` seconds.
    """
    setup = Setup(cache_ttl=60)
    assert setup.outcome("alice", "secret") == setup.alice.id
    setup.reactor.advance(59)
    setup.outcome("alice", "secret")
    assert setup.hasher.verified == 1
    setup.reactor.advance(2)
    setup.outcome("alice", "secret")
    assert setup.hasher.verified == 2


def test_failing_address_is_throttled_without_hashing(setup: Setup) -> None:
    """
    After ``address_burst`` failures an address gets 429 with the seconds to
    wait, without a hash; other addresses are unaffected; the address may
    try again once the interval passed.
    """
    for name in ("mallory", "nobody", "bob"):
        assert isinstance(setup.outcome(name, "guess"), UnauthorizedLogin)
    hashed = setup.hasher.verified
    refused = setup.outcome("alice", "secret")
    assert isinstance(refused, LoginThrottled)
    assert (refused.status, refused.retry_after) == (429, 10)
    assert setup.hasher.verified == hashed
    assert setup.outcome("alice", "secret", "192.0.2.2") == setup.alice.id
    assert isinstance(setup.outcome("bob", "hunter2"), LoginThrottled)
    setup.reactor.advance(10)
    assert setup.outcome("bob", "hunter2") == setup.bob.id


def test_failing_username_is_throttled_from_every_address(setup: Setup) -> None:
    """
    After ``user_burst`` failures for one username, from any addresses,
    that username gets 429 everywhere; others do not.
    """
    for i in range(5):
        assert isinstance(setup.outcome("bob", "guess", f"203.0.113.{i}"), UnauthorizedLogin)
    assert isinstance(setup.outcome("bob", "hunter2", "203.0.113.99"), LoginThrottled)
    assert setup.outcome("alice", "secret", "203.0.113.99") == setup.alice.id


def test_full_queue_refuses_at_once(setup: Setup) -> None:
    """
    Beyond ``threads`` checks running and as many waiting, a check is
    refused with 503 instead of queueing; one address holds at most its
    share.
    """
    pending = [setup.login("bob", f"guess{i}", f"198.51.100.{i}") for i in range(4)]
    assert len(setup.reactor.pool.pending) == 2
    busy: list[Failure] = []
    setup.login("alice", "secret", "198.51.100.9").addErrback(busy.append)
    assert busy[0].check(HashingBusy)
    for deferred in pending:
        deferred.addErrback(lambda f: f.trap(UnauthorizedLogin))
    setup.reactor.pool.run_all()
    share = [setup.login("bob", f"guess{i}", "198.51.100.5") for i in range(2)]
    over: list[Failure] = []
    setup.login("bob", "guess9", "198.51.100.5").addErrback(over.append)
    assert over[0].check(LoginThrottled)
    for deferred in share:
        deferred.addErrback(lambda f: f.trap(UnauthorizedLogin))
    setup.reactor.pool.run_all()


def test_abandoned_check_never_hashes(setup: Setup) -> None:
    """
    A check cancelled while it waits for a thread (its client went away)
    is never hashed.
    """
    running = [setup.login("bob", f"guess{i}", f"198.51.100.{i}") for i in range(2)]
    waiting = setup.login("alice", "secret", "198.51.100.9")
    waiting.cancel()
    failures: list[Failure] = []
    waiting.addErrback(failures.append)
    assert failures[0].check(CancelledError)
    for deferred in running:
        deferred.addErrback(lambda f: f.trap(UnauthorizedLogin))
    setup.reactor.pool.run_all()
    assert setup.hasher.verified == 2


def test_unknown_user_costs_a_hash_and_a_failure(setup: Setup) -> None:
    """
    An unknown username is hashed like a known one and counts as a failure.
    """
    for _ in range(3):
        assert isinstance(setup.outcome("nobody", "x"), UnauthorizedLogin)
    assert setup.hasher.verified == 3
    assert isinstance(setup.outcome("nobody", "x"), LoginThrottled)


def test_credentials_repr_hides_the_password() -> None:
    credentials = PasswordCredentials(b"alice", b"secret", "192.0.2.1")
    assert "secret" not in repr(credentials)


def test_address_limits_can_be_turned_off() -> None:
    """
    With ``address_burst=0`` (behind a reverse proxy, every client has the
    proxy's address) failures from one address throttle nobody else, and
    one address may fill the whole queue; usernames are still limited.
    """
    setup = Setup(address_burst=0)
    for name in ("mallory", "nobody", "carol", "dave"):
        assert isinstance(setup.outcome(name, "guess"), UnauthorizedLogin)
    assert setup.outcome("alice", "secret") == setup.alice.id
    guesses = [setup.login("bob", f"guess{i}") for i in range(4)]
    assert len(setup.reactor.pool.pending) == 2
    for guess in guesses:
        guess.addErrback(lambda f: f.trap(UnauthorizedLogin))
    setup.reactor.pool.run_all()
    assert isinstance(setup.outcome("bob", "guess"), UnauthorizedLogin)
    assert isinstance(setup.outcome("bob", "hunter2"), LoginThrottled)


def test_same_credentials_at_once_cost_one_hash(setup: Setup) -> None:
    """
    A client opening several connections at once with the same
    credentials gets them all checked by one hash, not refused for
    exceeding its address's share of the queue.
    """
    logins = [setup.login("alice", "secret") for _ in range(6)]
    assert len(setup.reactor.pool.pending) == 1
    setup.reactor.pool.run_all()
    assert [login.result for login in logins] == [setup.alice.id] * 6
    assert setup.hasher.verified == 1


def test_shared_wrong_password_counts_every_attempt(setup: Setup) -> None:
    """
    The same wrong password sent three times at once is hashed once but
    counts as three failures.
    """
    attempts = [setup.login("bob", "guess") for _ in range(3)]
    setup.reactor.pool.run_all()
    for attempt in attempts:
        attempt.addErrback(lambda f: f.trap(UnauthorizedLogin))
    assert setup.hasher.verified == 1
    assert isinstance(setup.outcome("alice", "secret"), LoginThrottled)
