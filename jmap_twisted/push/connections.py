# -*- test-case-name: tests.push.test_connections -*-
"""
The open push connections of a server (WebSocket sockets, EventSource
streams), counted per user so that one user cannot hold an unbounded
number of them (RFC 8620 §7 and RFC 8887 leave the bound to the server).
"""

from __future__ import annotations

from collections.abc import Iterator

from jmap_twisted.interfaces import IPushConnection


class PushConnections:
    """
    The open push connections (:class:`~jmap_twisted.interfaces.IPushConnection`),
    each told when access or credentials change (see
    :class:`~jmap_twisted.push.access.AccessWatch`), and how many each user
    holds.
    A transport asks :meth:`full` before it opens a connection and
    :meth:`add` it in the same turn of the reactor, so the bound holds
    however many connections a user opens at once.

    :param per_user: how many connections one user may hold open.
    """

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._users: dict[IPushConnection, str] = {}
        self._counts: dict[str, int] = {}

    def full(self, user_id: str) -> bool:
        """
        Whether the user holds as many connections as allowed.
        """
        return self._counts.get(user_id, 0) >= self.per_user

    def count(self, user_id: str) -> int:
        """
        How many connections the user holds open.
        """
        return self._counts.get(user_id, 0)

    def add(self, connection: IPushConnection) -> None:
        """
        Count an open connection (once, however often it is added).
        """
        if connection in self._users:
            return
        user_id = connection.user_id
        self._users[connection] = user_id
        self._counts[user_id] = self._counts.get(user_id, 0) + 1

    def discard(self, connection: IPushConnection | None) -> None:
        """
        Forget a connection that closed (nothing if it was not counted).
        """
        if connection is None:
            return
        user_id = self._users.pop(connection, None)
        if user_id is None:
            return
        left = self._counts[user_id] - 1
        if left:
            self._counts[user_id] = left
        else:
            del self._counts[user_id]

    def __contains__(self, connection: object) -> bool:
        return connection in self._users

    def __iter__(self) -> Iterator[IPushConnection]:
        return iter(list(self._users))

    def __len__(self) -> int:
        return len(self._users)
