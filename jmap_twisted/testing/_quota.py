# -*- test-case-name: tests.store.test_mail_contract -*-
"""
The quota part of the mail store contract (RFC 9425 usage and limits):
:class:`QuotaContract`, a base of
:class:`~jmap_twisted.testing.MailStoreContract`.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from jmap_twisted.errors import OverQuota
from jmap_twisted.interfaces import IMailStore, IMailWriter
from jmap_twisted.records import AccountQuota, EmailRecord, StoreCommit
from jmap_twisted.testing._doubles import ACCOUNT as _ACCOUNT
from jmap_twisted.testing._doubles import OTHER as _OTHER
from jmap_twisted.testing._doubles import message


def _inbox(writer: IMailWriter) -> str:
    return next(m.id for m in writer.mailboxes() if m.role == "inbox")


async def _add(store: IMailStore, raw: bytes, account: str = _ACCOUNT) -> EmailRecord:
    return await store.write(account, lambda w: w.add_email(raw, [_inbox(w)], (), 1000.0))


async def _quota(store: IMailStore, account: str = _ACCOUNT) -> AccountQuota:
    return await store.read(account, lambda r: r.quota())


async def _set(
    store: IMailStore, storage: int | None, messages: int | None, account: str = _ACCOUNT
) -> AccountQuota:
    return await store.write(account, lambda w: w.set_quota(storage, messages))


async def _state(store: IMailStore) -> str:
    return await store.read(_ACCOUNT, lambda r: r.state("Quota"))


class QuotaContract:
    """
    The quota tests every mail store passes; they use the ``store``
    fixture of :class:`~jmap_twisted.testing.MailStoreContract`.
    """

    @pytest_twisted.ensureDeferred
    async def test_usage_follows_every_email_added_and_destroyed(self, store: IMailStore) -> None:
        """
        A new account uses nothing and has no limits; every email added
        counts its full size and one message, even when it shares its
        octets with another; destroying gives them back; accounts are
        separate.
        """
        assert await _quota(store) == AccountQuota(0, 0, None, None)
        first = await _add(store, message(subject="one"))
        second = await _add(store, message(subject="two, longer"))
        twin = await _add(store, message(subject="one"))
        sizes = first.size + second.size + twin.size
        assert first.size == twin.size == len(message(subject="one"))
        assert await _quota(store) == AccountQuota(sizes, 3, None, None)
        await store.write(_ACCOUNT, lambda w: w.destroy_email(second.id))
        assert await _quota(store) == AccountQuota(sizes - second.size, 2, None, None)
        assert await _quota(store, _OTHER) == AccountQuota(0, 0, None, None)

    @pytest_twisted.ensureDeferred
    async def test_limits_create_update_and_destroy_quota_objects(self, store: IMailStore) -> None:
        """
        Setting a limit where there was none creates its Quota object,
        changing it updates it (not only ``used``), removing it destroys
        it; the quota read back has the limits, and each change is a
        commit carrying the Quota state.
        """
        commits: list[StoreCommit] = []
        store.subscribe(commits.append)
        start = await _state(store)
        assert await _set(store, 10_000, None) == AccountQuota(0, 0, 10_000, None)
        created = await store.read(_ACCOUNT, lambda r: r.changes("Quota", start, None))
        assert (created.created, created.updated, created.destroyed) == (("storage",), (), ())
        middle = await _state(store)
        await _set(store, 20_000, 5)
        changed = await store.read(_ACCOUNT, lambda r: r.changes("Quota", middle, None))
        assert (changed.created, changed.updated) == (("messages",), ("storage",))
        assert not changed.counts_only
        last = await _state(store)
        assert await _set(store, None, 5) == AccountQuota(0, 0, None, 5)
        removed = await store.read(_ACCOUNT, lambda r: r.changes("Quota", last, None))
        assert removed.destroyed == ("storage",)
        assert await _quota(store) == AccountQuota(0, 0, None, 5)
        assert [c.states["Quota"] for c in commits] == [middle, last, await _state(store)]
        before = await _state(store)
        await _set(store, None, 5)
        assert await _state(store) == before
        with pytest.raises(ValueError):
            await _set(store, -1, None)

    @pytest_twisted.ensureDeferred
    async def test_usage_changes_move_the_quota_state_as_used_only(self, store: IMailStore) -> None:
        """
        With limits set, adding or destroying an email updates every Quota
        object as a change of ``used`` only, in the same commit as the
        email; without limits, the Quota state does not move.
        """
        unlimited = await _state(store)
        email = await _add(store, message(subject="free"))
        assert await _state(store) == unlimited
        await _set(store, 1_000_000, 100)
        since = await _state(store)
        commits: list[StoreCommit] = []
        store.subscribe(commits.append)
        await _add(store, message(subject="counted"))
        batch = await store.read(_ACCOUNT, lambda r: r.changes("Quota", since, None))
        assert sorted(batch.updated) == ["messages", "storage"]
        assert batch.counts_only
        assert set(commits[0].states) >= {"Email", "Quota"}
        since = await _state(store)
        await store.write(_ACCOUNT, lambda w: w.destroy_email(email.id))
        batch = await store.read(_ACCOUNT, lambda r: r.changes("Quota", since, None))
        assert sorted(batch.updated) == ["messages", "storage"]
        assert batch.counts_only

    @pytest_twisted.ensureDeferred
    async def test_an_email_past_a_limit_is_refused_and_nothing_stored(
        self, store: IMailStore
    ) -> None:
        """
        An email that fits exactly is stored; one more octet, or one more
        message, raises OverQuota naming the resource, stores nothing and
        lets the rest of the write commit; destroying mail frees room.
        """
        raw = message(subject="sized")
        await _set(store, 2 * len(raw), 3)
        kept = await _add(store, raw)
        email_state = await store.read(_ACCOUNT, lambda r: r.state("Email"))

        def two(w: IMailWriter) -> list[str]:
            stored = [w.add_email(raw, [_inbox(w)], (), 1.0).id]
            try:
                w.add_email(message(subject="sized+"), [_inbox(w)], (), 2.0)
            except OverQuota as error:
                stored.append(error.resource)
            return stored

        second, refused = await store.write(_ACCOUNT, two)
        assert refused == "octets"
        assert await _quota(store) == AccountQuota(2 * len(raw), 2, 2 * len(raw), 3)
        batch = await store.read(_ACCOUNT, lambda r: r.changes("Email", email_state, None))
        assert batch.created == (second,)
        with pytest.raises(OverQuota) as over:
            await _add(store, b"X: y\r\n\r\n")
        assert (over.value.resource, over.value.limit, over.value.used) == (
            "octets",
            2 * len(raw),
            2 * len(raw),
        )
        total, _ = await store.read(_ACCOUNT, lambda r: r.query_emails(None, [], False))
        assert sorted(total) == sorted([kept.id, second])
        await store.write(_ACCOUNT, lambda w: w.destroy_email(kept.id))
        await _set(store, None, 2)
        await _add(store, raw)
        with pytest.raises(OverQuota) as over:
            await _add(store, raw)
        assert (over.value.resource, over.value.limit, over.value.used) == ("count", 2, 2)

    @pytest_twisted.ensureDeferred
    async def test_failed_write_leaves_usage_as_it_was(self, store: IMailStore) -> None:
        """
        When a write adding mail fails, its usage goes with it.
        """
        await _set(store, 1_000_000, None)

        def half(w: IMailWriter) -> None:
            w.add_email(message(), [_inbox(w)], (), 1.0)
            raise RuntimeError("half-way")

        with pytest.raises(RuntimeError):
            await store.write(_ACCOUNT, half)
        assert await _quota(store) == AccountQuota(0, 0, 1_000_000, None)

    @pytest_twisted.ensureDeferred
    async def test_lowered_limit_keeps_mail_and_refuses_more(self, store: IMailStore) -> None:
        """
        A limit lowered below what the account uses keeps its mail; new
        mail is refused until enough is destroyed.
        """
        emails = [await _add(store, message(subject=f"m{i}")) for i in range(3)]
        await _set(store, None, 1)
        assert (await _quota(store)).used_messages == 3
        with pytest.raises(OverQuota):
            await _add(store, message(subject="more"))

        def destroy_all(writer: IMailWriter) -> None:
            for email in emails:
                writer.destroy_email(email.id)

        await store.write(_ACCOUNT, destroy_all)
        await _add(store, message(subject="now fits"))
        assert await _quota(store) == AccountQuota(len(message(subject="now fits")), 1, None, 1)
