# -*- test-case-name: tests.push.test_access -*-
"""
Following access changes for the open push connections: the directory's
access version moves whenever users, credentials, delegations, tokens or
mailbox shares change; then every concerned connection re-checks its
credentials and the accounts its user may see (and how: a sharee's view of
an account changes with their rights), and remembered recipient resolutions are
forgotten.  Also the catch-up after the broker was unreachable.
"""

from __future__ import annotations

from twisted.logger import Logger

from jmap_twisted.interfaces import IDirectory, IMailStore, IRecipientCache
from jmap_twisted.push.connections import PushConnections
from jmap_twisted.push.listener import current_states
from jmap_twisted.records import Account

log = Logger()


class AccessWatch:
    """
    Compares the directory's access version with the one last seen and
    tells the push connections when it moved.  :meth:`check` is driven by
    the server's lifecycle (a supervised loop); it never raises.

    :param directory: holds the access version and what changed.
    :param connections: the open push connections.
    :param caches: forget their remembered resolutions on every change.
    """

    def __init__(
        self,
        directory: IDirectory,
        connections: PushConnections,
        caches: tuple[IRecipientCache, ...] = (),
    ) -> None:
        self._directory = directory
        self._connections = connections
        self._caches = caches
        self._version: int | None = None

    @property
    def version_seen(self) -> int | None:
        """
        The directory's access version as of the last check; a connection
        compares it before and after it authenticates to catch a change it
        could otherwise miss.
        """
        return self._version

    async def check(self) -> None:
        """
        Look at the access version once; when it moved, tell every concerned
        connection.  A connection whose credentials cannot be re-checked is
        closed (fail closed: its client reconnects and logs in again).
        """
        try:
            version = await self._directory.access_version()
        except Exception:
            log.failure("Could not read the access version")
            return
        if self._version is None or version == self._version:
            self._version = version
            return
        for cache in self._caches:
            cache.forget()  # users or accounts may be gone
        try:
            changed = await self._directory.access_changes_since(self._version)
        except Exception:
            log.failure("Could not read the access changes")
            changed = None
        self._version = version
        concerned = None if changed is None else set(changed)
        for connection in list(self._connections):
            if concerned is not None and connection.user_id not in concerned:
                continue
            try:
                await connection.access_changed()
            except Exception:
                log.failure("Could not apply an access change to a connection")
                try:
                    connection.close(1011, "Could not re-check this connection's access.")
                except Exception:
                    log.failure("Could not close a connection after a failed re-check")
                    self._connections.discard(connection)


async def catch_up(connections: PushConnections, mail: IMailStore) -> int:
    """
    Tell every push connection about what changed while it may have missed
    events (the broker was unreachable): one StateChange per connection
    with the states that moved since it last heard, read once per account
    (once per view of it, for sharees).

    :return: how many connections were sent one.
    """
    subscriptions = [
        connection.subscription
        for connection in connections
        if connection.subscription is not None and connection.subscription.active
    ]
    # Read once per account as seen: whole, or each sharee's view of it.
    accounts = list(dict.fromkeys(a for subscription in subscriptions for a in subscription.views))
    read: dict[Account, dict[str, str]] = {}
    for account in accounts:
        read[account] = (await current_states(mail, [account]))[account.id]
    caught_up = sum(
        1
        for subscription in subscriptions
        if subscription.catch_up({a.id: read[a] for a in subscription.views if a in read})
    )
    log.info("Caught {count} push connections up", count=caught_up)
    return caught_up
