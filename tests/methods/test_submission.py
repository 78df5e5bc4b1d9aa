"""
EmailSubmission (RFC 8621 §7): local delivery, relaying through a
smarthost (a real SMTP server on loopback), and the implicit Email/set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted
from twisted.internet.defer import succeed
from twisted.mail import smtp
from zope.interface import implementer

from jmap_twisted.mail.sendlimits import SendLimits
from jmap_twisted.mail.smarthost import Smarthost
from tests.methods.harness import SHARED, HarnessFactory, MailHarness


@implementer(smtp.IMessage)
class _Message:
    def __init__(self, sink: SMTPSink, recipient: str) -> None:
        self.sink = sink
        self.recipient = recipient
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def eomReceived(self) -> Any:
        self.sink.received.append((self.recipient, b"\n".join(self.lines)))
        return succeed(None)

    def connectionLost(self) -> None:
        pass


@implementer(smtp.IMessageDelivery)
class SMTPSink:
    """
    Accepts any recipient except those at refused.test.
    """

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.senders: list[str] = []

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        return b"Received: from test"

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        self.senders.append(str(origin))
        return origin

    def validateTo(self, user: smtp.User) -> Any:
        if user.dest.domain == b"refused.test":
            raise smtp.SMTPBadRcpt(user)
        return lambda: _Message(self, str(user.dest))


@pytest_twisted.async_yield_fixture
async def sink() -> AsyncIterator[tuple[SMTPSink, int]]:
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    delivery = SMTPSink()
    factory = smtp.SMTPFactory()
    factory.delivery = delivery  # type: ignore[attr-defined]

    class Protocol(smtp.ESMTP):
        def connectionMade(self) -> None:
            super().connectionMade()
            self.delivery = delivery

    factory.protocol = Protocol
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    yield delivery, port.getHost().port
    await port.stopListening()


async def draft(h: MailHarness, **fields: Any) -> tuple[str, dict[str, str]]:
    roles = await h.roles()
    created = await h.ok(
        "Email/set",
        {
            "create": {
                "d": {
                    "mailboxIds": {roles["drafts"]: True},
                    "keywords": {"$draft": True},
                    "from": [{"name": "Alice", "email": "alice@example.com"}],
                    "to": [{"email": "bob@example.com"}],
                    "subject": "Hello",
                    "bodyValues": {"1": {"value": "Hi Bob"}},
                    "textBody": [{"partId": "1", "type": "text/plain"}],
                    **fields,
                }
            }
        },
    )
    return created["created"]["d"]["id"], roles


@pytest_twisted.ensureDeferred
async def test_send_local_and_remote_then_move_to_sent(
    make_harness: HarnessFactory, sink: tuple[SMTPSink, int]
) -> None:
    """
    A submission delivers to local recipients, relays the others through
    the smarthost without the Bcc header, records the status of each, and
    the implicit Email/set moves the draft to Sent.
    """
    from twisted.internet import reactor

    received, port = sink
    h = await make_harness(Smarthost(reactor, f"tcp:host=127.0.0.1:port={port}", "test.example"))
    email_id, roles = await draft(
        h, cc=[{"email": "carol@elsewhere.test"}], bcc=[{"email": "dave@elsewhere.test"}]
    )
    identity = (await h.ok("Identity/get", {}))["list"][0]["id"]
    responses = await h.request(
        [
            [
                "EmailSubmission/set",
                {
                    "accountId": "a1",
                    "create": {"s1": {"identityId": identity, "emailId": email_id}},
                    "onSuccessUpdateEmail": {
                        "#s1": {
                            f"mailboxIds/{roles['drafts']}": None,
                            f"mailboxIds/{roles['sent']}": True,
                            "keywords/$draft": None,
                        }
                    },
                },
                "0",
            ]
        ]
    )
    assert [r[0] for r in responses] == ["EmailSubmission/set", "Email/set"]
    created = responses[0][1]["created"]["s1"]
    assert created["undoStatus"] == "final"
    assert responses[1][1]["updated"] == {email_id: None}
    submission = (await h.ok("EmailSubmission/get", {"ids": [created["id"]]}))["list"][0]
    status = submission["deliveryStatus"]
    assert status["bob@example.com"]["delivered"] == "yes"
    assert status["carol@elsewhere.test"]["delivered"] == "queued"
    assert status["dave@elsewhere.test"]["delivered"] == "queued"
    assert submission["envelope"]["mailFrom"]["email"] == "alice@example.com"
    assert sorted(r for r, _ in received.received) == [
        "carol@elsewhere.test",
        "dave@elsewhere.test",
    ]
    for _, body in received.received:
        assert b"Subject: Hello" in body
        assert b"dave@elsewhere.test" not in body.split(b"\n\n")[0].lower().replace(
            b"received", b""
        )
        assert not any(line.lower().startswith(b"bcc:") for line in body.split(b"\n"))
    shared = await h.ok("Email/query", {}, SHARED)
    assert len(shared["ids"]) == 1
    moved = (
        await h.ok("Email/get", {"ids": [email_id], "properties": ["mailboxIds", "keywords"]})
    )["list"][0]
    assert moved["mailboxIds"] == {roles["sent"]: True}
    assert moved["keywords"] == {}
    query = await h.ok("EmailSubmission/query", {"filter": {"emailIds": [email_id]}})
    assert query["ids"] == [created["id"]]
    cancel = await h.ok(
        "EmailSubmission/set", {"update": {created["id"]: {"undoStatus": "canceled"}}}
    )
    assert cancel["notUpdated"][created["id"]]["type"] == "cannotUnsend"


@pytest_twisted.ensureDeferred
async def test_submission_errors(make_harness: HarnessFactory) -> None:
    """
    Wrong identity (forbiddenFrom), no recipients, malformed recipients,
    unknown identity or email are SetErrors; without a smarthost remote
    recipients are reported undelivered.
    """
    h = await make_harness()
    identity = (await h.ok("Identity/get", {}))["list"][0]["id"]
    own, _ = await draft(h)
    forged, _ = await draft(h, **{"from": [{"email": "ceo@example.com"}]})
    result = await h.ok(
        "EmailSubmission/set",
        {
            "create": {
                "forged": {"identityId": identity, "emailId": forged},
                "none": {
                    "identityId": identity,
                    "emailId": own,
                    "envelope": {"mailFrom": {"email": "alice@example.com"}, "rcptTo": []},
                },
                "bad": {
                    "identityId": identity,
                    "emailId": own,
                    "envelope": {
                        "mailFrom": {"email": "alice@example.com"},
                        "rcptTo": [{"email": "not an address"}],
                    },
                },
                "noid": {"identityId": "nope", "emailId": own},
                "nomail": {"identityId": identity, "emailId": "nope"},
                "remote": {
                    "identityId": identity,
                    "emailId": own,
                    "envelope": {
                        "mailFrom": {"email": "alice@example.com"},
                        "rcptTo": [{"email": "x@far.test"}],
                    },
                },
            }
        },
    )
    errors = {k: v["type"] for k, v in result["notCreated"].items()}
    assert errors == {
        "forged": "forbiddenFrom",
        "none": "noRecipients",
        "bad": "invalidRecipients",
        "noid": "invalidProperties",
        "nomail": "invalidProperties",
    }
    remote = (await h.ok("EmailSubmission/get", {"ids": [result["created"]["remote"]["id"]]}))[
        "list"
    ][0]
    assert remote["deliveryStatus"]["x@far.test"]["delivered"] == "no"


def _envelope(*recipients: str) -> dict[str, Any]:
    return {
        "mailFrom": {"email": "alice@example.com"},
        "rcptTo": [{"email": r} for r in recipients],
    }


async def _submit(h: MailHarness, *envelopes: dict[str, Any]) -> dict[str, Any]:
    """
    One ``EmailSubmission/set`` creating ``s0``, ``s1``… of a fresh draft,
    one per envelope.
    """
    identity = (await h.ok("Identity/get", {}))["list"][0]["id"]
    email_id, _ = await draft(h)
    return dict(
        await h.ok(
            "EmailSubmission/set",
            {
                "create": {
                    f"s{n}": {"identityId": identity, "emailId": email_id, "envelope": e}
                    for n, e in enumerate(envelopes)
                }
            },
        )
    )


@pytest_twisted.ensureDeferred
async def test_repeated_recipients_get_one_copy() -> None:
    """
    Envelope recipients are de-duplicated on the address with its domain
    in lower case (the local part exactly), the envelope sent is returned
    in ``created``, and a local account listed under several addresses
    gets one copy.
    """
    h = MailHarness()
    roles = await h.roles()
    result = await _submit(
        h,
        _envelope(
            *["alice@example.com"] * 500,
            "alice@EXAMPLE.com",
            "ALICE@example.com",
            *["bob@example.com"] * 500,
        ),
    )
    created = result["created"]["s0"]
    assert [r["email"] for r in created["envelope"]["rcptTo"]] == [
        "alice@example.com",
        "ALICE@example.com",
        "bob@example.com",
    ]
    submission = (await h.ok("EmailSubmission/get", {"ids": [created["id"]]}))["list"][0]
    assert submission["envelope"] == created["envelope"]
    assert {r: s["delivered"] for r, s in submission["deliveryStatus"].items()} == {
        "alice@example.com": "yes",
        "ALICE@example.com": "yes",
        "bob@example.com": "yes",
    }
    inbox = await h.ok("Email/query", {"filter": {"inMailbox": roles["inbox"]}})
    assert len(inbox["ids"]) == 1
    assert len((await h.ok("Email/query", {}, SHARED))["ids"]) == 1


@pytest_twisted.ensureDeferred
async def test_too_many_recipients() -> None:
    """
    More distinct recipients than the per-submission limit is
    ``tooManyRecipients`` with ``maxRecipients``, and nothing is sent;
    repeats of the allowed number are not counted.
    """
    h = MailHarness(send_limits=SendLimits(max_recipients_per_submission=3))
    result = await _submit(
        h,
        _envelope("a@far.test", "b@far.test", "c@far.test", "d@far.test"),
        _envelope(*["a@far.test", "b@far.test", "bob@example.com"] * 100),
    )
    assert result["notCreated"] == {
        "s0": {
            "type": "tooManyRecipients",
            "description": "A submission may have at most 3 distinct recipients.",
            "maxRecipients": 3,
        }
    }
    assert list(result["created"]) == ["s1"]
    assert len((await h.ok("Email/query", {}, SHARED))["ids"]) == 1


@pytest_twisted.ensureDeferred
async def test_hourly_recipient_budget() -> None:
    """
    A user's recipients, local ones included, are counted over a sliding
    hour: past the budget a submission is ``rateLimit`` (nothing
    delivered, nothing counted) until older recipients leave the window.
    """
    h = MailHarness(
        send_limits=SendLimits(max_recipients_per_submission=4, max_recipients_per_hour=6)
    )
    first = await _submit(h, _envelope("bob@example.com", "a@far.test", "b@far.test", "c@far.test"))
    assert list(first["created"]) == ["s0"]
    h.clock.advance(1800)
    second = await _submit(
        h,
        _envelope("bob@example.com", "d@far.test"),
        _envelope("bob@example.com"),
        _envelope("e@far.test"),
    )
    assert list(second["created"]) == ["s0"]
    assert second["notCreated"]["s1"]["type"] == "rateLimit"
    assert second["notCreated"]["s2"]["type"] == "rateLimit"
    assert len((await h.ok("Email/query", {}, SHARED))["ids"]) == 2
    # An hour (and at most one slot) after the first submission its four
    # recipients are free again; the second's two are not.
    h.clock.advance(1800 + 60)
    third = await _submit(h, _envelope("a@far.test", "b@far.test", "c@far.test", "d@far.test"))
    assert list(third["created"]) == ["s0"]
    fourth = await _submit(h, _envelope("e@far.test"))
    assert fourth["notCreated"]["s0"]["type"] == "rateLimit"
