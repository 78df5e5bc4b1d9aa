"""
The vacation auto-responder (RFC 8621 §8, RFC 3834).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest_twisted
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from jmap_twisted.interfaces import IRelay
from jmap_twisted.mail.delivery import LocalDelivery
from jmap_twisted.mail.vacation import VacationResponder
from jmap_twisted.store.memory.directory import MemoryDirectory
from tests.mailfactory import message
from tests.methods.harness import ACCOUNT, SHARED, HarnessFactory, MailHarness


def incoming(sender: str = "bob@example.com", extra: str = "", subject: str = "Question") -> bytes:
    return b"Return-Path: <%s>\r\n" % sender.encode() + message(
        subject=subject,
        sender=sender,
        to="alice@example.com",
        message_id=f"{subject}@x",
        extra=extra,
    )


async def settle(responder: VacationResponder) -> None:
    """
    Wait until the replies the responder started have been sent.
    """
    from twisted.internet.defer import gatherResults

    while responder.pending:
        await gatherResults(list(responder.pending))


async def replies_to_bob(h: MailHarness, responder: VacationResponder) -> list[dict[str, object]]:
    await settle(responder)
    found = await h.ok("Email/query", {}, SHARED)
    if not found["ids"]:
        return []
    got = await h.ok(
        "Email/get",
        {
            "ids": found["ids"],
            "properties": ["subject", "from", "header:Auto-Submitted:asText", "inReplyTo"],
        },
        SHARED,
    )
    return got["list"]


@pytest_twisted.ensureDeferred
async def test_replies_once_per_sender_and_never_to_lists(make_harness: HarnessFactory) -> None:
    """
    With the vacation response on, the first delivery from a sender gets
    one auto-reply (Auto-Submitted: auto-replied, In-Reply-To the
    original); a second delivery from them within the period gets none;
    list mail and automatic mail get none; with it off, nothing is sent.
    """
    h = await make_harness()
    responder = VacationResponder(h.store, h.clock, "test.example", h.delivery, None)
    responder.start()
    await h.ok("Identity/get", {})
    await h.deliver(incoming())
    assert await replies_to_bob(h, responder) == []
    await h.ok(
        "VacationResponse/set",
        {
            "update": {
                "singleton": {
                    "isEnabled": True,
                    "subject": "Away until Monday",
                    "textBody": "Back soon.",
                }
            }
        },
    )
    await h.deliver(incoming(subject="First"))
    (reply,) = await replies_to_bob(h, responder)
    assert reply["subject"] == "Away until Monday"
    assert reply["from"] == [{"name": None, "email": "alice@example.com"}]
    assert reply["header:Auto-Submitted:asText"] == "auto-replied"
    assert reply["inReplyTo"] == ["First@x"]
    await h.deliver(incoming(subject="Second"))
    await h.deliver(
        incoming(sender="list@example.com", extra="List-Id: <l.example.com>", subject="L")
    )
    await h.deliver(
        incoming(sender="bot@example.com", extra="Auto-Submitted: auto-generated", subject="B")
    )
    await h.deliver(incoming(sender="mailer-daemon@example.com", subject="M"))
    assert len(await replies_to_bob(h, responder)) == 1
    h.clock.advance(8 * 24 * 3600)
    await h.deliver(incoming(subject="Third"))
    assert len(await replies_to_bob(h, responder)) == 2
    responder.stop()


@implementer(IRelay)
class RecordingRelay:
    """
    A relay that accepts everything and remembers the recipients.
    """

    def __init__(self) -> None:
        self.recipients: list[list[str]] = []

    def send(
        self, mail_from: str, rcpt_to: Sequence[str], message: bytes
    ) -> Deferred[dict[str, tuple[int, str]]]:
        self.recipients.append(list(rcpt_to))
        return succeed({r: (250, "ok") for r in rcpt_to})


@pytest_twisted.ensureDeferred
async def test_server_delivery_is_answered_only_with_the_response_on(
    make_harness: HarnessFactory,
) -> None:
    """
    Mail stored by the server's own delivery gets no reply while the
    vacation response is off and one once it is on (whether it is on is
    seen inside the delivery's own transaction).
    """
    h = await make_harness()
    delivery = LocalDelivery(MemoryDirectory(h.clock), h.store, ["example.com"], h.clock)
    relay = RecordingRelay()
    responder = VacationResponder(h.store, h.clock, "test.example", delivery, relay)
    responder.start()
    await h.ok("Identity/get", {})
    await h.roles()
    await delivery.deliver(ACCOUNT, incoming(subject="Off"))
    await settle(responder)
    assert relay.recipients == []
    await h.ok("VacationResponse/set", {"update": {"singleton": {"isEnabled": True}}})
    await delivery.deliver(ACCOUNT, incoming(subject="On"))
    await settle(responder)
    assert relay.recipients == [["bob@example.com"]]
    responder.stop()
    assert delivery.in_delivery == []
