# -*- test-case-name: tests.store.test_blobs_contract -*-
"""
The contract every :class:`~jmap_twisted.interfaces.IBlobStore` meets: a
base class of pytest tests, :class:`BlobStoreContract`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import pytest
import pytest_twisted
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from jmap_twisted.interfaces import IBlobStore
from jmap_twisted.records import BlobInfo
from jmap_twisted.store import ids
from jmap_twisted.store.ids import is_valid_id
from jmap_twisted.testing._doubles import CONTRACT_EPOCH

#: Makes an account blobs can be stored for, given a name; fires with its id.
NewAccount = Callable[[str], Awaitable[str]]


class BlobStoreContract:
    """
    The tests every blob store passes, collected by pytest in each subclass.

    Subclass it in a test module under a name pytest collects (``Test…``)
    and provide a fixture ``blob_store`` that gives an empty store; it may
    read the time from the contract's ``clock`` fixture.  A store that
    accepts blobs only for accounts it knows overrides the fixture
    ``new_account`` too (by default any fresh account id will do)::

        from jmap_twisted.testing import BlobStoreContract

        class TestMyBlobStore(BlobStoreContract):
            @pytest.fixture
            def blob_store(self, clock):
                return MyBlobStore(clock)
    """

    @pytest.fixture
    def clock(self) -> Clock:
        """
        A clock for the store under test.
        """
        clock = Clock()
        clock.advance(CONTRACT_EPOCH)
        return clock

    @pytest.fixture
    def blob_store(self) -> IBlobStore:
        """
        The store under test: subclasses override this fixture.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must provide a pytest fixture named 'blob_store'"
        )

    @pytest.fixture
    def new_account(self) -> NewAccount:
        """
        How the tests make an account to store blobs for: by default, a
        fresh account id.
        """

        async def any_account(name: str) -> str:
            return ids.new_account_id()

        return any_account

    def test_provides_interface(self, blob_store: IBlobStore) -> None:
        """
        The store provides IBlobStore fully.
        """
        assert verifyObject(IBlobStore, blob_store)

    @pytest_twisted.ensureDeferred
    async def test_put_get_roundtrip(self, blob_store: IBlobStore, new_account: NewAccount) -> None:
        """
        Stored octets come back with their size, media type and account.
        """
        account = await new_account("alice")
        info = await blob_store.put(account, b"Hello, world!", "text/plain")
        assert info == BlobInfo(
            account_id=account, blob_id=info.blob_id, size=13, type="text/plain"
        )
        assert is_valid_id(info.blob_id)
        assert await blob_store.get(account, info.blob_id) == (info, b"Hello, world!")

    @pytest_twisted.ensureDeferred
    async def test_blob_id_is_content_address(
        self, blob_store: IBlobStore, new_account: NewAccount
    ) -> None:
        """
        The blob id is G followed by the SHA-256 of the content, so the
        same octets get the same id (in one account or several) and
        different octets different ids.
        """
        alice = await new_account("alice")
        bob = await new_account("bob")
        first = await blob_store.put(alice, b"same", "text/plain")
        again = await blob_store.put(alice, b"same", "text/plain")
        bobs = await blob_store.put(bob, b"same", "application/octet-stream")
        other = await blob_store.put(alice, b"other", "text/plain")
        assert first.blob_id == "G" + hashlib.sha256(b"same").hexdigest()
        assert first.blob_id == again.blob_id == bobs.blob_id
        assert other.blob_id != first.blob_id

    @pytest_twisted.ensureDeferred
    async def test_blob_scoped_to_account(
        self, blob_store: IBlobStore, new_account: NewAccount
    ) -> None:
        """
        A blob is visible only to accounts that stored it: another account
        gets None, until it stores the same octets itself.
        """
        alice = await new_account("alice")
        bob = await new_account("bob")
        info = await blob_store.put(alice, b"secret", "text/plain")
        assert await blob_store.get(bob, info.blob_id) is None
        bobs = await blob_store.put(bob, b"secret", "application/x-bob")
        assert await blob_store.get(bob, info.blob_id) == (bobs, b"secret")
        assert await blob_store.get(alice, info.blob_id) == (info, b"secret")

    @pytest_twisted.ensureDeferred
    async def test_storing_again_replaces_type(
        self, blob_store: IBlobStore, new_account: NewAccount
    ) -> None:
        """
        Storing octets the account already has keeps the id and takes the
        new media type.
        """
        alice = await new_account("alice")
        await blob_store.put(alice, b"data", "text/plain")
        info = await blob_store.put(alice, b"data", "application/json")
        assert info.type == "application/json"
        assert await blob_store.get(alice, info.blob_id) == (info, b"data")

    @pytest_twisted.ensureDeferred
    async def test_unknown_blob(self, blob_store: IBlobStore, new_account: NewAccount) -> None:
        """
        A blob id nobody stored gives None, whether well-formed or not.
        """
        alice = await new_account("alice")
        await blob_store.put(alice, b"data", "text/plain")
        assert await blob_store.get(alice, ids.blob_id(b"never stored")) is None
        assert await blob_store.get(alice, "not-a-blob") is None

    @pytest_twisted.ensureDeferred
    async def test_empty_blob(self, blob_store: IBlobStore, new_account: NewAccount) -> None:
        """
        An empty blob is stored and returned, with size 0.
        """
        alice = await new_account("alice")
        info = await blob_store.put(alice, b"", "application/octet-stream")
        assert info.size == 0
        assert await blob_store.get(alice, info.blob_id) == (info, b"")

    @pytest_twisted.ensureDeferred
    async def test_binary_blob(self, blob_store: IBlobStore, new_account: NewAccount) -> None:
        """
        Arbitrary octets, NULs included, come back unchanged.
        """
        alice = await new_account("alice")
        data = b"\0" + bytes(range(256)) * 64 + b"\0\0"
        info = await blob_store.put(alice, data, "application/octet-stream")
        assert info.size == len(data)
        result = await blob_store.get(alice, info.blob_id)
        assert result is not None
        assert result[1] == data
