"""
The life cycle of a JMAP server (:class:`~jmap_twisted.service.JMAPService`):
what starting turns on, what stopping closes, its background children and
its listening ports.
"""

from __future__ import annotations

import json
from base64 import b64encode
from typing import Any

import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer_only

from jmap_twisted.config import ServerConfig
from jmap_twisted.interfaces import IMailStore
from jmap_twisted.server import JMAPServer
from jmap_twisted.service import ACCESS_POLL_INTERVAL, GOING_AWAY, ChangeLogPruner, JMAPService
from jmap_twisted.testing import MemoryBlobStore, MemoryDirectory, MemoryMailStore, message
from tests.http.test_eventsource import RawStream
from tests.support import CHEAP_HASHER, ImmediateReactor
from tests.ws.memory import Connection

BASE = "http://jmap.example"
WEBSOCKET = "urn:ietf:params:jmap:websocket"


class Served:
    """
    A server over in-memory stores with alice and bob (password ``pw``),
    its life cycle not started.
    """

    def __init__(self, mail: MemoryMailStore | None = None, reactor: Any = None) -> None:
        self.clock = reactor or ImmediateReactor()
        self.directory = MemoryDirectory(self.clock)
        self.mail = mail or MemoryMailStore(self.clock)
        self.config = ServerConfig(password_cost=2**4)
        self.server = JMAPServer(
            self.config, self.directory, MemoryBlobStore(self.clock), self.mail, self.clock
        )
        self.service = JMAPService(self.server)
        self.alice = self.directory.create_user("alice", CHEAP_HASHER.hash("pw")).result
        self.bob = self.directory.create_user("bob", CHEAP_HASHER.hash("pw")).result

    def account(self, user: Any) -> str:
        account_id: str = self.directory.accounts_for_user(user.id).result[0].id
        return account_id

    async def supports_push(self) -> bool:
        treq = StubTreq(self.service.site.resource)
        basic = "Basic " + b64encode(b"alice:pw").decode()
        response = await treq.get(BASE + "/.well-known/jmap", headers={"Authorization": basic})
        session = json.loads(await response.content())
        return bool(session["capabilities"][WEBSOCKET]["supportsPush"])

    def emails(self, user: Any) -> int:
        count: int = self.mail.read(
            self.account(user), lambda r: len(r.query_emails(None, [], False)[0])
        ).result
        return count


@pytest_twisted.ensureDeferred
async def test_starting_turns_push_and_the_access_watch_on_and_stopping_off() -> None:
    """
    Before the life cycle starts the session says push is off; starting
    sets ``server.running`` (the session then advertises push) and starts
    the access watch, which looks at once and again every poll interval;
    stopping turns both off.
    """
    s = Served()
    assert not s.server.running
    assert await s.supports_push() is False
    s.service.startService()
    assert s.server.running
    assert await s.supports_push() is True
    assert s.server.access.version_seen == s.directory.access_version().result
    s.directory.delegate("alice", "bob")
    s.clock.advance(ACCESS_POLL_INTERVAL)
    assert s.server.access.version_seen == s.directory.access_version().result
    await s.service.stopService()
    assert not s.server.running
    assert await s.supports_push() is False
    seen = s.server.access.version_seen
    s.directory.revoke_delegation("alice", "bob")
    s.clock.advance(ACCESS_POLL_INTERVAL * 10)
    assert s.server.access.version_seen == seen


@pytest_twisted.ensureDeferred
async def test_stopping_closes_every_push_connection() -> None:
    """
    Stopping closes every open push connection: a WebSocket with 1001
    (going away) and an EventSource stream by finishing its response; none
    is left counted, and push is off.
    """
    c = Connection()
    basic = "Basic " + b64encode(b"alice:pw").decode()
    stream = RawStream(
        c.service, b"?types=*&closeafter=no&ping=0", {b"Authorization": basic.encode()}
    )
    assert stream.status() == 200
    server = c.service.server
    assert len(server.push_connections) == 2
    assert c.client.closed_with is None
    stopping = c.service.stopService()
    c.flush()
    assert c.client.closed_with == GOING_AWAY == 1001
    assert stream.data().endswith(b"0\r\n\r\n")  # the chunked response ended
    assert len(server.push_connections) == 0
    assert not server.running
    await stopping


class RecordingMail(MemoryMailStore):
    """
    The in-memory store, recording when the change log is pruned.
    """

    def __init__(self, clock: Any) -> None:
        super().__init__(clock)
        self.pruned_before: list[float] = []

    def prune_changes(self, before: float) -> Deferred[int]:
        self.pruned_before.append(before)
        return super().prune_changes(before)


@implementer_only(IMailStore)
class UnprunableMail(MemoryMailStore):
    """
    A mail store that cannot prune its change log.
    """


@pytest_twisted.ensureDeferred
async def test_the_change_log_is_pruned_hourly_while_running() -> None:
    """
    With a mail store that can prune its change log, the service prunes
    entries older than the retention period when it starts and every hour
    while it runs, and no more once stopped; a store that cannot prune runs
    without a pruner.
    """
    clock = ImmediateReactor()
    clock.advance(1_000_000)
    mail = RecordingMail(clock)
    s = Served(mail, clock)
    assert any(isinstance(child, ChangeLogPruner) for child in s.service)
    retention = s.config.change_retention_days * 86400
    s.service.startService()
    assert mail.pruned_before == [1_000_000 - retention]
    clock.advance(3600)
    assert mail.pruned_before == [1_000_000 - retention, 1_003_600 - retention]
    await s.service.stopService()
    clock.advance(3 * 3600)
    assert len(mail.pruned_before) == 2
    plain = Served(UnprunableMail(ImmediateReactor()))
    assert not any(isinstance(child, ChangeLogPruner) for child in plain.service)
    plain.service.startService()
    assert plain.server.running
    await plain.service.stopService()


def _from(sender: str, subject: str) -> bytes:
    return b"Return-Path: <%s>\r\n" % sender.encode() + message(
        subject=subject, sender=sender, to="alice@localhost", message_id=subject + "@x"
    )


@pytest_twisted.ensureDeferred
async def test_the_vacation_responder_answers_while_running() -> None:
    """
    The vacation responder is one of the service's children: while the
    service runs, a delivery to a user whose vacation response is on is
    answered (the reply delivered to the local sender); once stopped,
    nothing is answered.
    """
    s = Served()
    alice, bob = s.account(s.alice), s.account(s.bob)
    carol = s.directory.create_user("carol", None).result
    await s.mail.setup_account(alice)

    def away(w: Any) -> None:
        w.put_document("Identity", "i1", {"name": "Alice", "email": "alice@localhost"})
        w.put_document(
            "VacationResponse",
            "singleton",
            {"isEnabled": True, "subject": "Away", "textBody": "Back soon."},
        )

    await s.mail.write(alice, away)
    s.service.startService()
    await s.server.delivery.deliver(alice, _from("bob@localhost", "First"))
    await _settle(s.service)
    assert s.emails(s.bob) == 1
    subject = await s.mail.read(
        bob,
        lambda r: [
            e.summary.subject for e in r.emails(r.query_emails(None, [], False)[0]).values()
        ],
    )
    assert subject == ["Away"]
    await s.service.stopService()
    await s.server.delivery.deliver(alice, _from("carol@localhost", "Second"))
    await _settle(s.service)
    assert s.emails(carol) == 0


async def _settle(service: JMAPService) -> None:
    from jmap_twisted.mail.vacation import VacationResponder

    for child in service:
        responder = getattr(child, "responder", None)
        if isinstance(responder, VacationResponder):
            while responder.pending:
                await next(iter(responder.pending))


def test_ports_bind_in_the_privileged_start_and_close_on_stop() -> None:
    """
    ``listen`` adds a port per endpoint description that binds in
    ``privilegedStartService`` (before twistd drops privileges), serving
    the site behind connection admission; starting does not bind again;
    ``listening_ports`` gives the bound ports, none once stopped.
    """
    reactor = MemoryReactorClock()
    s = Served(reactor=reactor)
    s.service.listen(["tcp:0"])
    assert reactor.tcpServers == [] and s.service.listening_ports() == []
    s.service.privilegedStartService()
    ((port_number, factory, _, _),) = reactor.tcpServers
    assert port_number == 0 and factory is s.service.front
    (port,) = s.service.listening_ports()
    assert port.getHost().port == 0
    s.service.startService()
    assert len(reactor.tcpServers) == 1
    assert s.service.listening_ports() == [port]
    s.service.stopService()
    assert s.service.listening_ports() == []
