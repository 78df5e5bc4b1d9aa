# -*- test-case-name: tests.bus.test_shares_audience -*-
"""
Push for sharees: from store commits to StateChange events for the users
whose view of the account changed (RFC 8620 §7.1, RFC 9670).

:class:`ShareAudience`, a group listener on the mailbox bus beside
:class:`~jmap_twisted.bus.changes.MailboxChangeListener`, reads who the
mailboxes a commit touched are shared with, and dispatches to each of
them whose view the commit moved one
:class:`~jmap_twisted.bus.events.StateChange` under their
:class:`~jmap_twisted.bus.events.ViewerKey`, with their own states
(``s<generation>.<seq>``, see :mod:`jmap_twisted.store.changelog`).  A
commit touching no mailbox a sharee sees is pushed to no sharee.

The shares are read afresh for every commit, never remembered: a share
revoked a moment ago is never pushed to.  A commit touching no shared
mailbox costs one read of the directory; one touching mailboxes some
sharees see, one more per such sharee (their generation, subscriptions
and delegation, read together).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from zope.interface import implementer

from jmap_twisted import rights
from jmap_twisted.bus.events import SYNCHRONOUS, MailboxChanged, StateChange, ViewerKey
from jmap_twisted.interfaces import IEvent, IEventBus, IEventListener, IMailboxShares
from jmap_twisted.store.changelog import ADMINS, MAIL_TYPES, sharee_state, view_pools

if TYPE_CHECKING:
    from jmap_twisted.records import MailView


def view_states(event: MailboxChanged, view: MailView) -> dict[str, str]:
    """
    The states a sharee is pushed for a commit: per type, the latest
    entry of the commit concerning a mailbox they see (a change of a
    mailbox's sharing only when they administer it), as their state
    string, plus ``EmailDelivery`` (their Email state) for a delivery of
    mail they may read.  Empty when the commit touched nothing they see.

    The commit's entries are the account's latest, so each is the
    sharee's state right after it.
    """
    latest: dict[str, int] = {}
    pools = {type_name: view_pools(type_name, view) for type_name in MAIL_TYPES}
    for type_name, mailbox_id, seq, audience in event.touched:
        if type_name not in pools:
            continue
        seen, administered = pools[type_name]
        if mailbox_id in (administered if audience == ADMINS else seen):
            latest[type_name] = max(seq, latest.get(type_name, seq))
    states = {
        type_name: sharee_state(type_name, view, seq) for type_name, seq in sorted(latest.items())
    }
    if event.delivery and "Email" in states:
        states["EmailDelivery"] = states["Email"]
    return states


@implementer(IEventListener)
class ShareAudience:
    """
    The mailbox bus's group listener pushing commits to the sharees who
    see them (register it with :func:`register_share_audience`).

    :param jmap_bus: where StateChange events go.
    :param shares: who each mailbox is shared with (the directory).
    """

    GROUP = "ShareAudience"
    execution_mode = SYNCHRONOUS

    def __init__(self, jmap_bus: IEventBus, shares: IMailboxShares) -> None:
        self._jmap_bus = jmap_bus
        self._shares = shares

    def is_handling(self, event: IEvent) -> bool:
        return isinstance(event, MailboxChanged) and bool(event.touched)

    def handle(self, event: IEvent) -> Deferred[None]:
        assert isinstance(event, MailboxChanged)
        return Deferred.fromCoroutine(self._handle(event))

    async def _handle(self, event: MailboxChanged) -> None:
        touched = {mailbox_id for _, mailbox_id, _, _ in event.touched}
        if not touched:
            return
        found = await self._shares.shares_of_mailboxes(event.account_id, touched)
        # A mailbox shared without l is not seen at all.
        sharees = sorted({share.user_id for share, _ in found if rights.holds(share.rights, "l")})
        for user_id in sharees:
            views = await self._shares.shared_views_for_user(user_id)
            # Not among them: a delegate (who sees the whole account under
            # its AccountKey), or no longer a sharee.
            view = next((v for a, v in views if a.id == event.account_id), None)
            if view is None:
                continue
            states = view_states(event, rights.mail_view(view))
            if states:
                await self._jmap_bus.dispatch(
                    StateChange(
                        event.account_id,
                        states,
                        viewer=user_id,
                        generation=view.generation,
                        committed_at=event.committed_at,
                    ),
                    [ViewerKey(event.account_id, user_id)],
                )


def register_share_audience(
    mailbox_bus: IEventBus, jmap_bus: IEventBus, shares: IMailboxShares
) -> Deferred[object]:
    """
    Register the :class:`ShareAudience` group on the mailbox bus.
    """
    listener = ShareAudience(jmap_bus, shares)
    return mailbox_bus.register_group(listener, ShareAudience.GROUP)  # type: ignore[return-value]


__all__ = ["ShareAudience", "register_share_audience", "view_states"]
