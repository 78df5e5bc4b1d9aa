"""
The vacation auto-responder (RFC 8621 §8, following RFC 3834): after a
delivery into an account whose VacationResponse is active, reply once per
sender per period.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP, compat32
from email.utils import format_datetime, getaddresses, make_msgid
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from jmap_twisted.identity import identity_addresses
from jmap_twisted.interfaces import IMailDelivery, IMailReader, IMailStore, IMailWriter, IRelay
from jmap_twisted.mail.delivery import LocalDelivery
from jmap_twisted.records import EmailRecord, StoreCommit
from jmap_twisted.vacation import current, is_active

log = Logger()

#: Where the responder remembers whom it answered: one document per sender.
REPLIED = "VacationReplied"
#: Answer a sender at most once in this many seconds (RFC 3834 suggests 7 days).
PERIOD = 7 * 24 * 3600.0
#: Emails remembered as delivered without a vacation response, at most.
_UNANSWERED_MAX = 10_000

_NEVER_ANSWER = (
    "mailer-daemon",
    "postmaster",
    "listserv",
    "majordomo",
    "owner-",
    "-request",
    "noreply",
    "no-reply",
)


def should_answer(headers: Any, sender: str | None) -> bool:
    """
    Whether a message may get an automatic reply (RFC 3834 §2): not from a
    null or robot sender, not itself automatic, not from a list or bulk.
    """
    if not sender or "@" not in sender:
        return False
    local = sender.split("@")[0].lower()
    if any(word in local for word in _NEVER_ANSWER):
        return False
    auto = (headers.get("Auto-Submitted") or "no").strip().lower()
    if auto != "no":
        return False
    if any(headers.get(h) for h in ("List-Id", "List-Unsubscribe", "List-Post")):
        return False
    precedence = (headers.get("Precedence") or "").strip().lower()
    return precedence not in ("bulk", "list", "junk")


class VacationResponder:
    """
    Subscribes to the store's delivery commits and sends the replies: to
    local senders through ``delivery``, to the others through ``relay``
    (none are sent to them when it is ``None``).
    """

    def __init__(
        self,
        store: IMailStore,
        clock: IReactorTime,
        hostname: str,
        delivery: IMailDelivery | None,
        relay: IRelay | None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.hostname = hostname
        self.delivery = delivery
        self.relay = relay
        #: The replies in flight, for tests and orderly shutdown.
        self.pending: set[Deferred[None]] = set()
        #: Emails delivered while their account's vacation response was
        #: off, as seen inside the delivery's own transaction (see
        #: :meth:`_note_delivery`): no reply, and no read to find that out.
        self._unanswered: set[str] = set()

    def start(self) -> None:
        self._unsubscribe = self.store.subscribe(self._committed)
        if isinstance(self.delivery, LocalDelivery):
            self.delivery.in_delivery.append(self._note_delivery)

    def stop(self) -> None:
        self._unsubscribe()
        if isinstance(self.delivery, LocalDelivery):
            self.delivery.in_delivery.remove(self._note_delivery)

    def _note_delivery(self, writer: IMailWriter, record: EmailRecord, now: float) -> None:
        """
        Inside a delivery's write transaction: remember the email when its
        account's vacation response is off (as nearly always), so that
        :meth:`_committed` need not read the response again.
        """
        if not is_active(current(writer), now):
            if len(self._unanswered) >= _UNANSWERED_MAX:
                # Ids of transactions rolled back are never taken out:
                # forget them all now and then (those emails are read for).
                self._unanswered.clear()
            self._unanswered.add(record.id)

    def _committed(self, commit: StoreCommit) -> None:
        if not commit.delivery:
            return
        email_ids = [e for event in commit.events if event.kind == "added" for e in event.email_ids]
        for email_id in email_ids:
            if email_id in self._unanswered:
                self._unanswered.discard(email_id)
                continue
            self._track(Deferred.fromCoroutine(self.respond(commit.account_id, email_id)))

    def _track(self, reply: Deferred[None]) -> None:
        self.pending.add(reply)

        def done(result: object) -> None:
            self.pending.discard(reply)
            if isinstance(result, Failure):
                log.failure("Vacation reply failed", result)

        reply.addBoth(done)

    async def respond(self, account_id: str, email_id: str) -> None:
        """
        Reply to one delivered email if the account's vacation response is
        active and its sender has not been answered within the period.
        """
        now = float(self.clock.seconds())
        # Most accounts have no active vacation response: find that out in
        # a read, and take the write transaction (which records replies)
        # only when a reply may be due.
        if not await self.store.read(account_id, lambda r: is_active(current(r), now)):
            return

        def decide(writer: IMailWriter) -> tuple[bytes, str, str] | None:
            vacation = current(writer)
            if not is_active(vacation, now):
                return None
            record = writer.emails([email_id]).get(email_id)
            if record is None:
                return None
            raw = writer.message(record.blob_id) or b""
            headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
            return_path = getaddresses(headers.get_all("Return-Path", []))
            sender = (return_path[0][1] if return_path else "").lower()
            if not should_answer(headers, sender):
                return None
            answered = writer.documents(REPLIED).get(sender)
            if answered is not None and now - answered["at"] < PERIOD:
                return None
            addresses = identity_addresses(writer)
            if not addresses:
                return None
            own = addresses[0]
            if sender in {address.lower() for address in addresses}:
                return None
            writer.put_document(REPLIED, sender, {"at": now})
            return self._reply(vacation, headers, own, sender, now), own, sender

        decided = await self.store.write(account_id, decide)
        if decided is None:
            return
        message, _, sender = decided
        recipient_account = await self.delivery.resolve(sender) if self.delivery else None
        if recipient_account is not None and self.delivery is not None:
            await self.delivery.deliver(recipient_account, message)
        elif self.relay is not None:
            await self.relay.send("", [sender], message)
        log.info("Sent a vacation reply for account {account_id}", account_id=account_id)

    def _reply(
        self, vacation: dict[str, Any], original: Any, own: str, sender: str, now: float
    ) -> bytes:
        reply = EmailMessage(policy=SMTP)
        subject = vacation.get("subject") or "Auto: " + str(original.get("Subject") or "").strip()
        reply["From"] = own
        reply["To"] = sender
        reply["Subject"] = subject
        reply["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
        reply["Message-ID"] = make_msgid(domain=self.hostname)
        reply["Auto-Submitted"] = "auto-replied"
        original_id = original.get("Message-ID")
        if original_id:
            reply["In-Reply-To"] = str(original_id).strip()
            references = str(original.get("References") or "").split()
            reply["References"] = " ".join([*references, str(original_id).strip()])
        text = vacation.get("textBody") or "I am away and will read your message when I return."
        reply.set_content(text)
        if vacation.get("htmlBody"):
            reply.add_alternative(vacation["htmlBody"], subtype="html")
        return reply.as_bytes()


__all__ = ["IMailReader", "VacationResponder", "should_answer"]
