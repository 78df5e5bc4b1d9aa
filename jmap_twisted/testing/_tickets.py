# -*- test-case-name: tests.store.test_tickets_contract -*-
"""
The contract every :class:`~jmap_twisted.interfaces.ITicketStore` meets: a
base class of pytest tests, :class:`TicketStoreContract`.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import gatherResults
from zope.interface.verify import verifyObject

from jmap_twisted.interfaces import ITicketStore
from jmap_twisted.records import TicketClaim, TicketRecord
from jmap_twisted.testing._doubles import CONTRACT_EPOCH

T0 = CONTRACT_EPOCH


def ticket(name: str, user_id: str = "u1", **changes: Any) -> TicketRecord:
    """
    A fresh ticket issued at the contract's epoch for a minute, from
    ``192.0.2.1``, changed by ``changes``.
    """
    fields: dict[str, Any] = {
        "digest": f"digest-{name}",
        "user_id": user_id,
        "expires": T0 + 60,
        "client": "192.0.2.1",
        "origin": ("token", f"hash-{name}"),
        "issued": T0,
    }
    fields.update(changes)
    return TicketRecord(**fields)


def socket(
    name: str, now: float = T0 + 1, client: str | None = "192.0.2.1", bound: bool = False
) -> TicketClaim:
    """
    A claim of ticket ``name`` for a socket.
    """
    return TicketClaim(f"digest-{name}", now, False, client, bound)


def stream(
    name: str,
    holder: str,
    now: float = T0 + 1,
    client: str | None = "192.0.2.1",
    bound: bool = False,
) -> TicketClaim:
    """
    A claim of ticket ``name`` for a stream named ``holder``, with a
    90-second hold and a 300-second reconnect window after it.
    """
    return TicketClaim(f"digest-{name}", now, True, client, bound, holder, now + 90, now + 390)


class TicketStoreContract:
    """
    The tests every ticket store passes, collected by pytest in each
    subclass.

    Subclass it in a test module under a name pytest collects (``Test…``)
    and provide a fixture ``ticket_store`` that gives an empty store::

        from jmap_twisted.testing import TicketStoreContract

        class TestMyTickets(TicketStoreContract):
            @pytest.fixture
            def ticket_store(self):
                return MyTickets()
    """

    @pytest.fixture
    def ticket_store(self) -> ITicketStore:
        """
        The store under test: subclasses override this fixture.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must provide a pytest fixture named 'ticket_store'"
        )

    def test_provides_interface(self, ticket_store: ITicketStore) -> None:
        """
        The store provides ITicketStore fully.
        """
        assert verifyObject(ITicketStore, ticket_store)

    @pytest_twisted.ensureDeferred
    async def test_socket_ticket_redeems_once(self, ticket_store: ITicketStore) -> None:
        """
        A fresh ticket opens one socket, giving back what it was issued
        with; then it is gone, and unknown tickets open nothing.
        """
        issued = ticket("a")
        await ticket_store.add_ticket(issued, 16)
        assert await ticket_store.claim_ticket(socket("a")) == issued
        assert await ticket_store.claim_ticket(socket("a")) is None
        assert await ticket_store.claim_ticket(socket("unknown")) is None

    @pytest_twisted.ensureDeferred
    async def test_expired_ticket_refused(self, ticket_store: ITicketStore) -> None:
        """
        A ticket is not redeemable from its expiry on.
        """
        await ticket_store.add_ticket(ticket("a"), 16)
        await ticket_store.add_ticket(ticket("b"), 16)
        assert await ticket_store.claim_ticket(socket("a", now=T0 + 60)) is None
        assert await ticket_store.claim_ticket(stream("b", "s1", now=T0 + 61)) is None
        assert await ticket_store.claim_ticket(socket("a", now=T0 + 1)) is None  # and gone

    @pytest_twisted.ensureDeferred
    async def test_bound_ticket_only_from_its_address(self, ticket_store: ITicketStore) -> None:
        """
        A bound claim from another address than the asking one fails and
        leaves the ticket; from the asking address it succeeds.  Unbound
        claims come from anywhere.
        """
        await ticket_store.add_ticket(ticket("a"), 16)
        await ticket_store.add_ticket(ticket("b"), 16)
        assert await ticket_store.claim_ticket(socket("a", client="192.0.2.9", bound=True)) is None
        assert await ticket_store.claim_ticket(socket("a", client=None, bound=True)) is None
        assert await ticket_store.claim_ticket(socket("a", bound=True)) is not None
        assert await ticket_store.claim_ticket(socket("b", client="192.0.2.9")) is not None

    @pytest_twisted.ensureDeferred
    async def test_stream_ticket_opens_no_socket_and_one_stream(
        self, ticket_store: ITicketStore
    ) -> None:
        """
        Once a stream holds a ticket, it opens no socket, and no second
        stream from another address while the hold lasts.
        """
        await ticket_store.add_ticket(ticket("a"), 16)
        first = await ticket_store.claim_ticket(stream("a", "s1"))
        assert first is not None and not first.stream and first.holder is None
        assert await ticket_store.claim_ticket(socket("a", now=T0 + 2)) is None
        assert await ticket_store.claim_ticket(stream("a", "s2", T0 + 2, "198.51.100.7")) is None
        assert await ticket_store.claim_ticket(stream("a", "s3", T0 + 2, None)) is None

    @pytest_twisted.ensureDeferred
    async def test_stream_reconnects_after_release(self, ticket_store: ITicketStore) -> None:
        """
        After its stream ended, a stream ticket reconnects (past the fresh
        ticket's lifetime) until the reconnect window closes.
        """
        await ticket_store.add_ticket(ticket("a"), 16)
        await ticket_store.claim_ticket(stream("a", "s1"))
        assert await ticket_store.release_ticket("digest-a", "s1", T0 + 400)
        assert not await ticket_store.release_ticket("digest-a", "s1", T0 + 400)
        again = await ticket_store.claim_ticket(stream("a", "s2", now=T0 + 200))
        assert again is not None and again.stream and again.holder is None
        assert await ticket_store.release_ticket("digest-a", "s2", T0 + 500)
        assert await ticket_store.claim_ticket(stream("a", "s3", now=T0 + 500)) is None

    @pytest_twisted.ensureDeferred
    async def test_same_address_takes_over(self, ticket_store: ITicketStore) -> None:
        """
        A stream from the holder's own address takes the ticket over (its
        browser reconnected before the old stream was seen to end); the
        claim names the previous holder, whose renewals then fail.
        """
        await ticket_store.add_ticket(ticket("a"), 16)
        await ticket_store.claim_ticket(stream("a", "s1"))
        previous = await ticket_store.claim_ticket(stream("a", "s2", now=T0 + 5))
        assert previous is not None and previous.holder == "s1"
        assert await ticket_store.refresh_holds(["s1", "s2"], T0 + 100, T0 + 400) == {"s2"}
        assert not await ticket_store.release_ticket("digest-a", "s1", T0 + 400)

    @pytest_twisted.ensureDeferred
    async def test_lapsed_hold_taken_from_anywhere(self, ticket_store: ITicketStore) -> None:
        """
        A hold not renewed lapses (its node is gone): a stream from any
        address may take the ticket then, not before.
        """
        await ticket_store.add_ticket(ticket("a"), 16)
        await ticket_store.claim_ticket(stream("a", "s1"))  # held until T0 + 91
        assert await ticket_store.claim_ticket(stream("a", "s2", T0 + 90, "198.51.100.7")) is None
        taken = await ticket_store.claim_ticket(stream("a", "s2", T0 + 91, "198.51.100.7"))
        assert taken is not None and taken.holder == "s1"

    @pytest_twisted.ensureDeferred
    async def test_renewed_hold_lasts(self, ticket_store: ITicketStore) -> None:
        """
        Renewing a hold keeps the ticket from lapsing and from expiring;
        holders holding nothing are not reported.
        """
        await ticket_store.add_ticket(ticket("a"), 16)
        await ticket_store.claim_ticket(stream("a", "s1"))
        kept = await ticket_store.refresh_holds(["s1", "nobody"], T0 + 1000, T0 + 1300)
        assert kept == {"s1"}
        later = stream("a", "s2", T0 + 999, "198.51.100.7")
        assert await ticket_store.claim_ticket(later) is None
        assert await ticket_store.remove_expired_tickets(T0 + 999) == 0

    @pytest_twisted.ensureDeferred
    async def test_revoke_only_by_owner(self, ticket_store: ITicketStore) -> None:
        """
        Only the user a ticket was issued to revokes it; revoked, it
        opens nothing.
        """
        await ticket_store.add_ticket(ticket("a"), 16)
        assert not await ticket_store.revoke_ticket("digest-a", "u2")
        assert await ticket_store.revoke_ticket("digest-a", "u1")
        assert not await ticket_store.revoke_ticket("digest-a", "u1")
        assert await ticket_store.claim_ticket(socket("a")) is None

    @pytest_twisted.ensureDeferred
    async def test_per_user_bound_keeps_newest_and_held(self, ticket_store: ITicketStore) -> None:
        """
        Past the per-user bound, the user's oldest tickets go; the new one,
        other users' tickets and tickets held by a stream stay.
        """
        await ticket_store.add_ticket(ticket("held", issued=T0 - 5), 3)
        await ticket_store.claim_ticket(stream("held", "s1", now=T0 - 4))
        await ticket_store.add_ticket(ticket("other", "u2", issued=T0 - 3), 3)
        for n in range(5):
            await ticket_store.add_ticket(ticket(f"t{n}", issued=T0 + n), 3)
        now = T0 + 10
        opened = [n for n in range(5) if await ticket_store.claim_ticket(socket(f"t{n}", now=now))]
        assert opened == [2, 3, 4]
        assert await ticket_store.claim_ticket(socket("other", now=now)) is not None
        assert await ticket_store.refresh_holds(["s1"], now + 90, now + 390) == {"s1"}

    @pytest_twisted.ensureDeferred
    async def test_sweep(self, ticket_store: ITicketStore) -> None:
        """
        The sweep deletes expired tickets held by no live lease, and
        nothing else.
        """
        await ticket_store.add_ticket(ticket("a"), 16)
        await ticket_store.add_ticket(ticket("b", expires=T0 + 500), 16)
        await ticket_store.add_ticket(ticket("c"), 16)
        await ticket_store.claim_ticket(stream("c", "s1"))
        await ticket_store.refresh_holds(["s1"], T0 + 1000, T0 + 100)
        assert await ticket_store.remove_expired_tickets(T0 + 200) == 1
        assert await ticket_store.remove_expired_tickets(T0 + 200) == 0
        assert await ticket_store.claim_ticket(socket("b", now=T0 + 200)) is not None

    @pytest_twisted.ensureDeferred
    async def test_one_winner(self, ticket_store: ITicketStore) -> None:
        """
        Of many claims of one fresh ticket at once, exactly one wins.
        """
        await ticket_store.add_ticket(ticket("a"), 16)
        claims = [ticket_store.claim_ticket(socket("a")) for _ in range(4)]
        claims += [ticket_store.claim_ticket(stream("a", f"s{n}", client=None)) for n in range(4)]
        results = await gatherResults(claims)
        assert sum(r is not None for r in results) == 1
