"""
Push connections opened with an OpenID Connect token end when it
expires: the WebSocket with 1008 and a reason saying so, the EventSource
stream finished, and a connection opened with a ticket asked for with
such a token likewise.  In memory, on a fake clock.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
import treq
from autobahn.twisted.websocket import WebSocketClientFactory
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.test import iosim

from jmap_twisted.auth.passwords import new_token, token_hash
from jmap_twisted.config import OIDCOptions, ServerConfig
from jmap_twisted.http.auth import credential_expiry, credential_probe
from jmap_twisted.store.memory.directory import MemoryBlobStore, MemoryDirectory
from jmap_twisted.store.memory.mail import MemoryMailStore
from jmap_twisted.ws.protocol import EXPIRED_REASON, POLICY_VIOLATION
from tests.auth.oidc_support import AUDIENCE, ISSUER, NOW, MemoryFetcher, result, token
from tests.support import ImmediateReactor, jmap_service
from tests.ws.memory import Client

BASE = "http://jmap.example"


class RecordingClient(Client):
    """
    Also records the reason the server closed with.
    """

    reason: str | None = None

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        super().onClose(wasClean, code, reason)
        self.reason = reason


class Harness:
    """
    A server accepting a provider's tokens, with alice, started.
    """

    def __init__(self) -> None:
        self.clock = ImmediateReactor()
        self.clock.advance(NOW)
        self.directory = MemoryDirectory(self.clock)
        self.mail = MemoryMailStore(self.clock)
        config = ServerConfig(
            password_cost=2**4, oidc=OIDCOptions(issuers=(ISSUER,), audience=AUDIENCE)
        )
        self.service = jmap_service(
            config,
            self.directory,
            MemoryBlobStore(self.clock),
            self.mail,
            self.clock,
            oidc_fetcher=MemoryFetcher(),
        )
        self.service.startService()
        self.alice = result(self.directory.create_user("alice@example.com", None))
        self.treq = StubTreq(self.service.site.resource)
        self.pumps: list[iosim.IOPump] = []

    def token(self, lifetime: int, **claims: Any) -> str:
        now = int(self.clock.seconds())
        return token(**{"iat": now, "exp": now + lifetime, **claims})

    def connect(self, headers: dict[str, str] | None = None, query: str = "") -> RecordingClient:
        factory = WebSocketClientFactory(
            BASE.replace("http", "ws") + "/jmap/ws" + query,
            protocols=["jmap"],
            headers=headers or {},
            reactor=self.clock,
        )
        factory.protocol = RecordingClient
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        client, _, pump = iosim.connectedServerAndClient(
            lambda: self.service.site.buildProtocol(address),
            lambda: factory.buildProtocol(address),
            greet=False,
            clock=self.clock,
        )
        self.pumps.append(pump)
        self.flush()
        return client  # type: ignore[no-any-return]

    def flush(self) -> None:
        for _ in range(1000):
            if not any([pump.pump() for pump in self.pumps]):
                return
        raise AssertionError("the connections never fell quiet")

    def advance(self, seconds: float) -> None:
        """
        Let time pass a second at a time, the sockets answering pings.
        """
        for _ in range(int(seconds)):
            self.clock.advance(1)
            self.flush()


@pytest.fixture
def harness() -> Harness:
    return Harness()


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + value}


def test_websocket_closed_with_1008_when_the_token_expires(harness: Harness) -> None:
    """
    A socket opened with a token valid two more minutes serves until then
    and is closed with 1008, saying the token expired, at its expiry.
    """
    client = harness.connect(bearer(harness.token(120)))
    assert client.opened
    harness.advance(119)
    assert client.closed_with is None
    client.send_json({"@type": "WebSocketPushEnable", "dataTypes": None})
    harness.advance(1)
    assert client.closed_with == POLICY_VIOLATION
    assert client.reason == EXPIRED_REASON
    assert "expired" in EXPIRED_REASON


def test_websocket_with_a_local_token_has_no_expiry(harness: Harness) -> None:
    value = new_token()
    result(harness.directory.add_token(harness.alice.id, token_hash(value), "laptop"))
    client = harness.connect(bearer(value))
    harness.advance(600)
    assert client.opened and client.closed_with is None


@pytest_twisted.ensureDeferred
async def test_token_past_expiry_opens_no_push_connection(harness: Harness) -> None:
    """
    A token expired ten seconds ago (still within the clock-skew leeway)
    serves a request, but opens no socket that would close at once.
    """
    value = harness.token(-10)
    response = await harness.treq.get(BASE + "/jmap/session", headers=bearer(value))
    assert response.code == 200
    client = harness.connect(bearer(value))
    assert not client.opened
    assert b"401" in client.handshake.split(b"\r\n")[0]


@pytest_twisted.ensureDeferred
async def test_ticket_of_a_token_ends_with_the_token(harness: Harness) -> None:
    """
    A ticket asked for with a provider's token opens a socket that closes
    with 1008 when that token expires.
    """
    response = await harness.treq.post(BASE + "/jmap/ticket", headers=bearer(harness.token(90)))
    assert response.code == 201
    ticket = json.loads(await response.content())["value"]
    client = harness.connect(query="?ticket=" + ticket)
    assert client.opened
    harness.advance(89)
    assert client.closed_with is None
    harness.advance(1)
    assert client.closed_with == POLICY_VIOLATION
    assert client.reason == EXPIRED_REASON


@pytest_twisted.ensureDeferred
async def test_eventsource_stream_ends_when_the_token_expires(harness: Harness) -> None:
    """
    A stream opened with ``access_token`` (as browsers do) ends at the
    token's expiry.
    """
    value = harness.token(60)
    response = await harness.treq.get(
        BASE + "/jmap/eventsource/?types=*&closeafter=no&ping=0&access_token=" + value
    )
    assert response.code == 200
    chunks: list[bytes] = []
    done = treq.collect(response, chunks.append)
    harness.treq.flush()
    harness.clock.advance(59)
    harness.treq.flush()
    assert not done.called
    harness.clock.advance(1)
    harness.treq.flush()
    assert done.called
    assert b"".join(chunks).startswith(b": jmap push")


def test_probe_of_a_token_is_false_once_it_expired(harness: Harness) -> None:
    """
    The probe a connection keeps says the token holds until its expiry,
    which it also tells.
    """
    origin = ("oidc", ISSUER, "alice-subject", repr(NOW + 30))
    probe = credential_probe(harness.directory, origin, harness.alice.id, harness.clock)
    assert credential_expiry(probe) == NOW + 30
    assert result(Deferred.fromCoroutine(probe())) is True
    harness.clock.advance(30)
    assert result(Deferred.fromCoroutine(probe())) is False
    unknown = credential_probe(harness.directory, ("oidc", ISSUER, "s", ""), harness.alice.id)
    assert credential_expiry(unknown) is None
    assert result(Deferred.fromCoroutine(unknown())) is True
