"""
The smarthost client: what submission and the vacation responder rely on
when they hand a message to the outbound relay.  Relaying through a real
SMTP server is exercised in ``tests/methods/test_submission.py``.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from jmap_twisted.interfaces import IRelay
from jmap_twisted.mail.smarthost import Smarthost


def test_smarthost_is_a_relay() -> None:
    """
    :class:`Smarthost` provides :class:`IRelay`, the contract submission
    and the vacation responder are typed with.
    """
    relay = Smarthost(MemoryReactorClock(), "tcp:host=127.0.0.1:port=2525", "test.example")
    assert verifyObject(IRelay, relay)


def test_refused_connection_defers_every_recipient() -> None:
    """
    When the relay cannot be reached, ``send`` does not fail: every
    recipient gets a temporary 451 reply, which submission records as not
    delivered.
    """
    reactor = MemoryReactorClock()
    relay = Smarthost(reactor, "tcp:host=127.0.0.1:port=2525", "test.example")
    replies: list[object] = []
    relay.send("alice@example.com", ["bob@elsewhere.test", "carol@elsewhere.test"], b"x").addBoth(
        replies.append
    )
    [(host, port, factory, _, _)] = reactor.tcpClients
    assert (host, port) == ("127.0.0.1", 2525)
    [connector] = reactor.connectors
    factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))
    assert replies == [
        {
            "bob@elsewhere.test": (451, "4.4.1 relay unavailable"),
            "carol@elsewhere.test": (451, "4.4.1 relay unavailable"),
        }
    ]
