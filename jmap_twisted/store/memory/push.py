# -*- test-case-name: tests.store.test_push_contract -*-
"""
Push subscriptions (RFC 8620 §7.2) and the VAPID key (RFC 8292) in memory,
for tests and trials.

Same semantics as :mod:`jmap_twisted.store.sql.push`, checked by the same
contract tests; every method returns an already-fired Deferred.  Nothing is
shared between processes or survives a restart, and nothing ties the
subscriptions to a directory: any user id is accepted, and deleting a user
from a :class:`~jmap_twisted.store.memory.directory.MemoryDirectory` leaves
their subscriptions here.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from jmap_twisted.interfaces import IPushSubscriptions
from jmap_twisted.records import PushSubscriptionRecord


def _expired(record: PushSubscriptionRecord, now: float) -> bool:
    return record.expires is not None and record.expires <= now


@implementer(IPushSubscriptions)
class MemoryPushSubscriptions:
    """
    :class:`~jmap_twisted.interfaces.IPushSubscriptions` in a dictionary.

    Subscriptions created at the same time are ordered as they were added.
    The version moves only when a call changes something (a ``replace`` or
    ``remove`` that finds nothing, or a sweep with nothing expired, leaves
    it).
    """

    def __init__(self) -> None:
        self._subscriptions: dict[str, PushSubscriptionRecord] = {}  # by id, as added
        self._version = 0
        self._vapid_key: bytes | None = None

    def _oldest_first(self, records: list[PushSubscriptionRecord]) -> list[PushSubscriptionRecord]:
        return sorted(records, key=lambda record: record.created)  # stable: as added

    def add(self, record: PushSubscriptionRecord) -> Deferred[None]:
        """
        Store a new subscription.

        :raises ValueError: a subscription with its id is already stored.
        """
        if record.id in self._subscriptions:
            return fail(ValueError(f"push subscription {record.id} already exists"))
        self._subscriptions[record.id] = record
        self._version += 1
        return succeed(None)

    def for_user(self, user_id: str) -> Deferred[list[PushSubscriptionRecord]]:
        return succeed(
            self._oldest_first([r for r in self._subscriptions.values() if r.user_id == user_id])
        )

    def active(self, now: float) -> Deferred[list[PushSubscriptionRecord]]:
        return succeed(
            self._oldest_first(
                [r for r in self._subscriptions.values() if r.verified and not _expired(r, now)]
            )
        )

    def replace(self, record: PushSubscriptionRecord) -> Deferred[bool]:
        stored = self._subscriptions.get(record.id)
        if stored is None or stored.user_id != record.user_id:
            return succeed(False)
        self._subscriptions[record.id] = record  # keeps its place among those added
        self._version += 1
        return succeed(True)

    def remove(self, subscription_id: str, user_id: str | None = None) -> Deferred[bool]:
        stored = self._subscriptions.get(subscription_id)
        if stored is None or (user_id is not None and stored.user_id != user_id):
            return succeed(False)
        del self._subscriptions[subscription_id]
        self._version += 1
        return succeed(True)

    def remove_expired(self, now: float) -> Deferred[int]:
        expired = [r.id for r in self._subscriptions.values() if _expired(r, now)]
        for subscription_id in expired:
            del self._subscriptions[subscription_id]
        if expired:
            self._version += 1
        return succeed(len(expired))

    def version(self) -> Deferred[int]:
        return succeed(self._version)

    def vapid_key(self) -> Deferred[bytes | None]:
        return succeed(self._vapid_key)

    def set_vapid_key(self, pem: bytes, only_if_unset: bool) -> Deferred[bytes]:
        if self._vapid_key is None or not only_if_unset:
            self._vapid_key = bytes(pem)
        return succeed(self._vapid_key)
