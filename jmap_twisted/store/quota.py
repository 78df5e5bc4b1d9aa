# -*- test-case-name: tests.store.test_mail_contract,tests.store.test_quota -*-
"""
Quota rules every mail backend shares (RFC 9425): which ``Quota`` objects
an account has, when an email fits, and what a change of usage or of
limits records in the change log.

An account has one ``Quota`` object per limit it has: :data:`STORAGE`
(resource type ``octets``) when it has a storage limit, :data:`MESSAGES`
(``count``) when it has a message limit.  Usage is kept by the backends
in the transaction that adds or destroys an email; these functions only
decide.
"""

from __future__ import annotations

from attrs import evolve

from jmap_twisted.errors import OverQuota
from jmap_twisted.records import AccountQuota
from jmap_twisted.store.changelog import ChangeRecorder

#: The change-log type of quotas, and of their state.
QUOTA_TYPE = "Quota"
#: The id of the storage quota (resource type ``octets``).
STORAGE = "storage"
#: The id of the message-count quota (resource type ``count``).
MESSAGES = "messages"


def quota_ids(quota: AccountQuota) -> list[str]:
    """
    The ids of the ``Quota`` objects an account has: one per limit set.
    """
    ids = []
    if quota.storage_limit is not None:
        ids.append(STORAGE)
    if quota.message_limit is not None:
        ids.append(MESSAGES)
    return ids


def check_room(quota: AccountQuota, size: int) -> None:
    """
    Make sure one more email of ``size`` octets fits.

    :raises OverQuota: it would take the account past a limit.
    """
    if quota.message_limit is not None and quota.used_messages + 1 > quota.message_limit:
        raise OverQuota("count", quota.message_limit, quota.used_messages)
    if quota.storage_limit is not None and quota.used_octets + size > quota.storage_limit:
        raise OverQuota("octets", quota.storage_limit, quota.used_octets)


def has_room(quota: AccountQuota, size: int) -> bool:
    """
    Whether one more email of ``size`` octets fits (at least one octet
    is assumed: a full storage quota has no room for anything).
    """
    try:
        check_room(quota, max(size, 1))
    except OverQuota:
        return False
    return True


def with_email(quota: AccountQuota, size: int, count: int = 1) -> AccountQuota:
    """
    The quota after adding (``count`` 1) or removing (``count`` -1) an
    email of ``size`` octets.
    """
    return evolve(
        quota,
        used_octets=quota.used_octets + count * size,
        used_messages=quota.used_messages + count,
    )


def record_usage_changed(recorder: ChangeRecorder, quota: AccountQuota) -> None:
    """
    Record that the usage of the account's ``Quota`` objects changed:
    updates of ``used`` only (``counts_only``, so ``Quota/changes`` can
    say ``updatedProperties: ["used"]``, and destroying mail still counts
    as only freeing space).
    """
    for quota_id in quota_ids(quota):
        recorder.updated(QUOTA_TYPE, quota_id, counts_only=True)


def checked_limit(limit: int | None) -> int | None:
    """
    A limit as given to ``set_quota``.

    :raises ValueError: a negative or non-integer limit.
    """
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"a quota limit must be a non-negative integer, not {limit!r}")
    return limit


def record_limits_changed(
    recorder: ChangeRecorder, before: AccountQuota, after: AccountQuota
) -> None:
    """
    Record what a change of limits did to the ``Quota`` objects: a limit
    set where there was none creates its object, a changed one updates it
    (not only ``used``), a removed one destroys it.
    """
    for quota_id, old, new in (
        (STORAGE, before.storage_limit, after.storage_limit),
        (MESSAGES, before.message_limit, after.message_limit),
    ):
        if old == new:
            continue
        if old is None:
            recorder.created(QUOTA_TYPE, quota_id)
        elif new is None:
            recorder.destroyed(QUOTA_TYPE, quota_id)
        else:
            recorder.updated(QUOTA_TYPE, quota_id)
