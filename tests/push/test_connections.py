"""
The registry of open push connections.
"""

from __future__ import annotations

from jmap_twisted.push.connections import PushConnections


class _Connection:
    def __init__(self, user_id: str) -> None:
        self.user_id = user_id


def test_connections_are_counted_per_user_and_bounded() -> None:
    """
    A user is full at the bound; other users are counted apart; adding a
    connection twice counts it once, discarding one that was not added
    does nothing, and discarding frees a place.
    """
    connections = PushConnections(per_user=2)
    a1, a2, b1 = _Connection("a"), _Connection("a"), _Connection("b")
    connections.add(a1)
    connections.add(a1)
    assert not connections.full("a")
    connections.add(a2)
    connections.add(b1)
    assert connections.full("a") and not connections.full("b")
    assert (connections.count("a"), connections.count("b"), len(connections)) == (2, 1, 3)
    assert set(connections) == {a1, a2, b1} and a1 in connections
    connections.discard(_Connection("a"))
    connections.discard(a1)
    connections.discard(a1)
    assert connections.count("a") == 1 and not connections.full("a")
    connections.discard(a2)
    assert connections.count("a") == 0 and a2 not in connections


def test_iterating_is_safe_while_connections_close() -> None:
    """
    Iterating gives a snapshot: connections may close (be discarded)
    meanwhile, as they do when told of an access change.
    """
    connections = PushConnections(per_user=5)
    items = [_Connection("a") for _ in range(3)]
    for item in items:
        connections.add(item)
    for item in connections:
        connections.discard(item)
    assert len(connections) == 0
