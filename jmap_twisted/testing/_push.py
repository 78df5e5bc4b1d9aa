# -*- test-case-name: tests.store.test_push_contract -*-
"""
The contract every :class:`~jmap_twisted.interfaces.IPushSubscriptions`
meets: a base class of pytest tests, :class:`PushSubscriptionsContract`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from jmap_twisted.interfaces import IPushSubscriptions
from jmap_twisted.records import PushSubscriptionRecord
from jmap_twisted.store import ids
from jmap_twisted.testing._doubles import CONTRACT_EPOCH

#: Makes a user subscriptions can be stored for, given a name; fires with
#: their id.
NewUser = Callable[[str], Awaitable[str]]

#: What the records differ in; the keys are as a user agent gives them.
_P256DH = b"\x04" + bytes(range(1, 65))
_AUTH = bytes(range(200, 216))


def subscription(id: str, user_id: str, **changes: Any) -> PushSubscriptionRecord:
    """
    A verified subscription with keys, for every type, never expiring,
    created at the contract's epoch, changed by ``changes``.
    """
    fields: dict[str, Any] = {
        "id": id,
        "user_id": user_id,
        "device_client_id": f"device-{id}",
        "url": f"https://push.example/{id}",
        "p256dh": _P256DH,
        "auth": _AUTH,
        "verification_code": f"code-{id}",
        "verified": True,
        "expires": None,
        "types": None,
        "created": CONTRACT_EPOCH,
    }
    fields.update(changes)
    return PushSubscriptionRecord(**fields)


class PushSubscriptionsContract:
    """
    The tests every store of push subscriptions passes, collected by pytest
    in each subclass.

    Subclass it in a test module under a name pytest collects (``Test…``)
    and provide a fixture ``push_subscriptions`` that gives an empty store
    with no VAPID key.  A store that accepts subscriptions only for users
    it knows overrides the fixture ``new_user`` too (by default any fresh
    user id will do)::

        from jmap_twisted.testing import PushSubscriptionsContract

        class TestMyPushSubscriptions(PushSubscriptionsContract):
            @pytest.fixture
            def push_subscriptions(self):
                return MyPushSubscriptions()

    Use ``@pytest_twisted.async_yield_fixture`` when opening or closing the
    store needs awaiting.
    """

    @pytest.fixture
    def push_subscriptions(self) -> IPushSubscriptions:
        """
        The store under test: subclasses override this fixture.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must provide a pytest fixture named 'push_subscriptions'"
        )

    @pytest.fixture
    def new_user(self) -> NewUser:
        """
        How the tests make a user to store subscriptions for: by default, a
        fresh user id.
        """

        async def any_user(name: str) -> str:
            return ids.new_user_id()

        return any_user

    def test_provides_interface(self, push_subscriptions: IPushSubscriptions) -> None:
        """
        The store provides IPushSubscriptions fully.
        """
        assert verifyObject(IPushSubscriptions, push_subscriptions)

    @pytest_twisted.ensureDeferred
    async def test_empty(self, push_subscriptions: IPushSubscriptions, new_user: NewUser) -> None:
        """
        A new store has no subscriptions, for anyone, and nothing to sweep.
        """
        alice = await new_user("alice")
        assert await push_subscriptions.for_user(alice) == []
        assert await push_subscriptions.active(CONTRACT_EPOCH) == []
        assert await push_subscriptions.remove_expired(CONTRACT_EPOCH + 10**9) == 0

    @pytest_twisted.ensureDeferred
    async def test_users_see_only_their_own(
        self, push_subscriptions: IPushSubscriptions, new_user: NewUser
    ) -> None:
        """
        for_user gives a user's subscriptions only: a second user sees none
        of the first's, and the first none of the second's.
        """
        alice, bob, carol = await new_user("alice"), await new_user("bob"), await new_user("carol")
        alices = [subscription("p1", alice), subscription("p2", alice)]
        bobs = subscription("p3", bob)
        for record in [alices[0], bobs, alices[1]]:
            await push_subscriptions.add(record)

        assert await push_subscriptions.for_user(alice) == alices
        assert await push_subscriptions.for_user(bob) == [bobs]
        assert await push_subscriptions.for_user(carol) == []

    @pytest_twisted.ensureDeferred
    async def test_oldest_first(
        self, push_subscriptions: IPushSubscriptions, new_user: NewUser
    ) -> None:
        """
        A user's subscriptions come oldest first by creation time, those
        created at the same time in the order they were added.
        """
        alice = await new_user("alice")
        newest = subscription("p1", alice, created=CONTRACT_EPOCH + 20)
        oldest = subscription("p2", alice, created=CONTRACT_EPOCH)
        middle_first = subscription("p4", alice, created=CONTRACT_EPOCH + 10)
        middle_second = subscription("p3", alice, created=CONTRACT_EPOCH + 10)
        for record in [newest, oldest, middle_first, middle_second]:
            await push_subscriptions.add(record)

        assert await push_subscriptions.for_user(alice) == [
            oldest,
            middle_first,
            middle_second,
            newest,
        ]

    @pytest_twisted.ensureDeferred
    async def test_records_round_trip(
        self, push_subscriptions: IPushSubscriptions, new_user: NewUser
    ) -> None:
        """
        Every field comes back exactly as stored: key octets or no keys,
        a tuple of types (also empty) or none, fractional times or no expiry.
        """
        alice = await new_user("alice")
        with_everything = subscription(
            "p1",
            alice,
            p256dh=bytes([4, 0, 255]) + bytes(62),
            auth=b"\x00" * 15 + b"\xff",
            verified=False,
            expires=CONTRACT_EPOCH + 3600.123456789,
            types=("Email", "Mailbox", "EmailDelivery"),
            created=CONTRACT_EPOCH + 0.1,
        )
        bare = subscription(
            "p2",
            alice,
            device_client_id="tablette ünicode",
            url="https://push.example:8443/a?b=c&d=%20",
            p256dh=None,
            auth=None,
            expires=None,
            types=None,
            created=CONTRACT_EPOCH + 0.2,
        )
        no_types = subscription("p3", alice, types=(), created=CONTRACT_EPOCH + 0.3)
        for record in [with_everything, bare, no_types]:
            await push_subscriptions.add(record)

        stored = await push_subscriptions.for_user(alice)
        assert stored == [with_everything, bare, no_types]
        assert [type(r.p256dh) for r in stored] == [bytes, type(None), bytes]
        assert [r.types for r in stored] == [("Email", "Mailbox", "EmailDelivery"), None, ()]
        assert all(type(r.verified) is bool for r in stored)

    @pytest_twisted.ensureDeferred
    async def test_replace(self, push_subscriptions: IPushSubscriptions, new_user: NewUser) -> None:
        """
        replace stores the changed subscription over the one with its id and
        user, keeping its place; it returns False, changing nothing, for an
        unknown id or another user's subscription.
        """
        alice, bob = await new_user("alice"), await new_user("bob")
        first = subscription("p1", alice, verified=False)
        second = subscription("p2", alice)
        await push_subscriptions.add(first)
        await push_subscriptions.add(second)

        verified = subscription("p1", alice, verified=True, expires=CONTRACT_EPOCH + 60.5)
        assert await push_subscriptions.replace(verified) is True
        assert await push_subscriptions.for_user(alice) == [verified, second]

        assert await push_subscriptions.replace(subscription("p2", bob, url="https://x/")) is False
        assert await push_subscriptions.replace(subscription("p9", alice)) is False
        assert await push_subscriptions.for_user(alice) == [verified, second]
        assert await push_subscriptions.for_user(bob) == []

    @pytest_twisted.ensureDeferred
    async def test_remove(self, push_subscriptions: IPushSubscriptions, new_user: NewUser) -> None:
        """
        remove deletes a subscription by id alone, or only the given user's:
        another user's id is refused and stays; removing what is gone
        returns False.
        """
        alice, bob = await new_user("alice"), await new_user("bob")
        alices = subscription("p1", alice)
        bobs = subscription("p2", bob)
        await push_subscriptions.add(alices)
        await push_subscriptions.add(bobs)

        assert await push_subscriptions.remove("p2", alice) is False
        assert await push_subscriptions.for_user(bob) == [bobs]

        assert await push_subscriptions.remove("p1", alice) is True
        assert await push_subscriptions.for_user(alice) == []
        assert await push_subscriptions.remove("p1", alice) is False

        assert await push_subscriptions.remove("p2") is True
        assert await push_subscriptions.for_user(bob) == []
        assert await push_subscriptions.remove("p2") is False
        assert await push_subscriptions.remove("unknown") is False

    @pytest_twisted.ensureDeferred
    async def test_active(self, push_subscriptions: IPushSubscriptions, new_user: NewUser) -> None:
        """
        active gives the verified subscriptions of every user that have not
        expired at ``now`` (one expiring exactly then has; one without
        ``expires`` never does), oldest first.
        """
        alice, bob = await new_user("alice"), await new_user("bob")
        now = CONTRACT_EPOCH + 1000
        forever = subscription("p1", alice, expires=None, created=CONTRACT_EPOCH + 3)
        later = subscription("p2", bob, expires=now + 0.5, created=CONTRACT_EPOCH + 1)
        unverified = subscription("p3", alice, verified=False, created=CONTRACT_EPOCH + 2)
        just_expired = subscription("p4", bob, expires=now, created=CONTRACT_EPOCH + 4)
        long_expired = subscription("p5", alice, expires=now - 500, created=CONTRACT_EPOCH)
        for record in [forever, later, unverified, just_expired, long_expired]:
            await push_subscriptions.add(record)

        assert await push_subscriptions.active(now) == [later, forever]
        assert await push_subscriptions.active(now + 1) == [forever]
        assert await push_subscriptions.active(now - 600) == [
            long_expired,
            later,
            forever,
            just_expired,
        ]

    @pytest_twisted.ensureDeferred
    async def test_remove_expired(
        self, push_subscriptions: IPushSubscriptions, new_user: NewUser
    ) -> None:
        """
        remove_expired deletes the subscriptions expired at ``now``, verified
        or not, of every user, and says how many; the others stay.
        """
        alice, bob = await new_user("alice"), await new_user("bob")
        now = CONTRACT_EPOCH + 1000
        forever = subscription("p1", alice, expires=None)
        later = subscription("p2", bob, expires=now + 0.5)
        await push_subscriptions.add(forever)
        await push_subscriptions.add(later)
        await push_subscriptions.add(subscription("p3", alice, expires=now, verified=False))
        await push_subscriptions.add(subscription("p4", bob, expires=now - 1))

        assert await push_subscriptions.remove_expired(now) == 2
        assert await push_subscriptions.for_user(alice) == [forever]
        assert await push_subscriptions.for_user(bob) == [later]
        assert await push_subscriptions.remove_expired(now) == 0
        assert await push_subscriptions.remove_expired(now + 1) == 1
        assert await push_subscriptions.for_user(bob) == []
        assert await push_subscriptions.for_user(alice) == [forever]

    @pytest_twisted.ensureDeferred
    async def test_version_grows_with_changes(
        self, push_subscriptions: IPushSubscriptions, new_user: NewUser
    ) -> None:
        """
        The version grows with every add, replace, remove and sweep that
        changes something, and stays put while the subscriptions are only
        read.
        """
        alice = await new_user("alice")
        versions = [await push_subscriptions.version()]

        async def changed() -> None:
            versions.append(await push_subscriptions.version())
            assert versions[-1] > versions[-2]

        await push_subscriptions.add(subscription("p1", alice))
        await changed()
        await push_subscriptions.add(subscription("p2", alice, expires=CONTRACT_EPOCH + 1))
        await changed()
        assert await push_subscriptions.replace(subscription("p1", alice, verified=False))
        await changed()
        assert await push_subscriptions.remove_expired(CONTRACT_EPOCH + 1) == 1
        await changed()

        await push_subscriptions.for_user(alice)
        await push_subscriptions.active(CONTRACT_EPOCH)
        await push_subscriptions.vapid_key()
        assert await push_subscriptions.version() == versions[-1]

        assert await push_subscriptions.remove("p1", alice)
        await changed()

    @pytest_twisted.ensureDeferred
    async def test_vapid_key(self, push_subscriptions: IPushSubscriptions) -> None:
        """
        There is no VAPID key at first; with ``only_if_unset`` the first key
        stored is kept and returned to later callers, without it the key is
        replaced.
        """
        first = b"-----BEGIN PRIVATE KEY-----\nfirst\n-----END PRIVATE KEY-----\n"
        second = b"-----BEGIN PRIVATE KEY-----\nsecond\n-----END PRIVATE KEY-----\n"
        rotated = b"-----BEGIN PRIVATE KEY-----\nrotated\x00\xff\n-----END PRIVATE KEY-----\n"
        assert await push_subscriptions.vapid_key() is None

        assert await push_subscriptions.set_vapid_key(first, only_if_unset=True) == first
        assert await push_subscriptions.vapid_key() == first

        assert await push_subscriptions.set_vapid_key(second, only_if_unset=True) == first
        assert await push_subscriptions.vapid_key() == first

        assert await push_subscriptions.set_vapid_key(rotated, only_if_unset=False) == rotated
        stored = await push_subscriptions.vapid_key()
        assert stored == rotated
        assert type(stored) is bytes
