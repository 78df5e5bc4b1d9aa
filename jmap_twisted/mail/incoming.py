# -*- test-case-name: tests.mail.test_delivery -*-
"""
The bridge from Twisted's SMTP machinery (``IMessageDelivery``,
``IMessage``) to :class:`~jmap_twisted.interfaces.IMailDelivery`: envelope
checks, the trace headers of RFC 5321 §4.4 added to each message, and one
:class:`IncomingMessage` per accepted recipient.

Nothing here speaks a wire protocol: :mod:`jmap_twisted.mail.lmtp` and
:mod:`jmap_twisted.mail.smtp` do, and both use
:class:`LocalMessageDelivery`, as can any ``twisted.mail`` server
(:func:`jmap_twisted.message_delivery`).  ``twisted.mail.smtp`` installs
the global reactor when imported: import this module once the reactor is
chosen.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.mail.interfaces import IMessageDelivery, IMessageSMTP
from twisted.mail.smtp import Address, SMTPBadRcpt, SMTPServerError, User
from zope.interface import implementer

from jmap_twisted.errors import DiskFull, OverQuota
from jmap_twisted.interfaces import IDeliveryQuota, IMailDelivery
from jmap_twisted.mail.spool import MessageSpool

log = Logger()

#: Addresses we accept in envelopes: printable ASCII (no ``SMTPUTF8``).
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
#: Characters kept from a client's ``LHLO``/``EHLO`` argument in headers.
_HELO_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")

#: Messages past the spool's memory limit read back and stored at once,
#: server-wide (SQLite stores one at a time anyway).
LARGE_MESSAGES_AT_ONCE = 2

#: The reply, at ``RCPT`` or after ``DATA``, for a recipient whose quota has
#: no room (RFC 3463 X.2.2 "mailbox full", transient: mail may be destroyed).
_MAILBOX_FULL = "4.2.2 Mailbox full (over quota); try again later"


def _date(when: float) -> str:
    return format_datetime(datetime.fromtimestamp(when, UTC))


def _helo_text(helo: str | None) -> str:
    return _HELO_UNSAFE.sub("?", helo)[:255] if helo else "unknown"


def _address_literal(ip: str) -> str:
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


def _path_text(address: str) -> str:
    # Envelope addresses are checked to be printable ASCII before they get
    # here; this keeps a header a single line whatever it is given.
    return re.sub(r"[^\x20-\x7e]", "?", address)


def trace_headers(
    reverse_path: str,
    recipient: str,
    helo: str | None,
    client_address: str | None,
    hostname: str,
    protocol: str,
    delivery_id: str,
    when: float,
) -> bytes:
    """
    The ``Return-Path`` and ``Received`` header fields (RFC 5321 §4.4)
    added at final delivery, CRLF-terminated, to put before the message.

    :param reverse_path: the ``MAIL FROM`` address, ``""`` for the null
        reverse-path.
    :param recipient: the ``RCPT TO`` address this copy is delivered for.
    :param helo: the client's ``LHLO``/``EHLO``/``HELO`` argument.
    :param client_address: the client's IP address, ``None`` over a UNIX
        socket.
    :param hostname: this server's name.
    :param protocol: the ``with`` keyword (RFC 3848): ``LMTP``, ``ESMTP``
        or ``SMTP``.
    :param delivery_id: identifies this delivery in logs.
    :param when: POSIX time of receipt.
    """
    source = _helo_text(helo)
    if client_address:
        source += f" ({_address_literal(client_address)})"
    return (
        f"Return-Path: <{_path_text(reverse_path)}>\r\n"
        f"Received: from {source}\r\n"
        f"\tby {hostname} with {protocol} id {delivery_id}\r\n"
        f"\tfor <{_path_text(recipient)}>; {_date(when)}\r\n"
    ).encode("ascii", "replace")


def _text(value: bytes | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.decode("ascii", "replace")


def envelope_address(address: Address) -> str | None:
    """
    An envelope address as text, or ``None`` when it is not printable
    ASCII (this server does not offer ``SMTPUTF8``).
    """
    try:
        text = bytes(address).decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if _PRINTABLE_ASCII.fullmatch(text) else None


@implementer(IMessageSMTP)
class IncomingMessage:
    """
    One recipient's copy of a message arriving over SMTP or LMTP: the
    message's octets gathered up to a size limit in a
    :class:`~jmap_twisted.mail.spool.MessageSpool` and, at the end of
    data, delivered.

    Lines arrive without their CRLF and with dot-stuffing undone
    (:meth:`lineReceived`), or several at a time with their CRLFs
    (:meth:`lines_received`, from :class:`~jmap_twisted.mail.smtp.DeliveryESMTP`);
    the message is stored as ``trace`` followed by every line ended by CRLF.
    Only the client's lines count towards ``max_size``.

    The messages of one transaction's recipients share one ``spool``: the
    first message made for it writes the lines (Twisted gives every
    recipient's message each line), the others only read it, and they
    deliver one after another so that one copy at most is in memory.

    :param delivery: where the message goes.
    :param account_id: the recipient's account.
    :param recipient: the recipient address (for the reply text).
    :param trace: the trace header fields to put first.
    :param max_size: the largest message accepted, in octets.
    :param delivery_id: identifies this delivery in logs and replies.
    :param spool: the transaction's spool, shared with its other
        recipients' messages; a spool of its own when not given.
    :param large_turns: shared by all the messages of a server, bounds how
        many large messages (see
        :attr:`~jmap_twisted.mail.spool.MessageSpool.large`) are read back
        into memory and stored at once.
    """

    def __init__(
        self,
        delivery: IMailDelivery,
        account_id: str,
        recipient: str,
        trace: bytes,
        max_size: int,
        delivery_id: str,
        spool: MessageSpool | None = None,
        large_turns: DeferredSemaphore | None = None,
    ) -> None:
        self._delivery = delivery
        self._account_id = account_id
        self._recipient = recipient
        self._trace = trace
        self._max_size = max_size
        self._delivery_id = delivery_id
        if spool is None:
            spool = MessageSpool(max_size)
        #: Whether this message writes the lines (the spool's first user).
        self._writes = spool.hold()
        self._spool: MessageSpool | None = spool
        self._large_turns = large_turns

    def lineReceived(self, line: bytes) -> None:
        if self._writes and self._spool is not None:
            self._spool.add_line(line)

    def lines_received(self, octets: bytes) -> None:
        """
        Take several lines at once: ``octets`` holds whole lines, each
        ended by CRLF, dot-stuffing undone (what :meth:`lineReceived` would
        be given, one line at a time, with the CRLFs put back).
        """
        if self._writes and self._spool is not None:
            self._spool.add_lines(octets)

    def eomReceived(self) -> Deferred[str]:
        """
        Deliver the message.

        :return: fires with the reply text once the message is durable;
            fails with :class:`~twisted.mail.smtp.SMTPServerError` 552 when
            it was too big, or 451 when delivery failed.
        """
        return Deferred.fromCoroutine(self._finish())

    async def _finish(self) -> str:
        spool, self._spool = self._spool, None
        if spool is None:
            raise SMTPServerError(451, "4.3.0 Local delivery failed; try again later")
        try:
            return await self._deliver(spool)
        finally:
            spool.release()

    async def _deliver(self, spool: MessageSpool) -> str:
        if spool.too_big:
            log.info(
                "Refused delivery {delivery_id} to account {account_id}: "
                "more than {max_size} octets",
                delivery_id=self._delivery_id,
                account_id=self._account_id,
                max_size=self._max_size,
            )
            raise SMTPServerError(
                552, f"5.3.4 Message exceeds the maximum size of {self._max_size} octets"
            )
        size = len(self._trace) + spool.size
        async with spool.turn():
            try:
                if self._large_turns is not None and spool.large:
                    async with self._large_turns:
                        stored = await self._delivery.deliver(
                            self._account_id, spool.octets(self._trace)
                        )
                else:
                    stored = await self._delivery.deliver(
                        self._account_id, spool.octets(self._trace)
                    )
            except DiskFull:
                # Expected while the disk is full: the sender tries again.
                log.warn(
                    "Delivery {delivery_id} to account {account_id} deferred: the disk is full",
                    delivery_id=self._delivery_id,
                    account_id=self._account_id,
                )
                raise SMTPServerError(452, "4.3.1 Insufficient system storage") from None
            except OverQuota as error:
                # The recipient's mailbox is full: the sender tries again
                # later, when mail may have been destroyed.
                log.info(
                    "Delivery {delivery_id} to account {account_id} deferred: {error}",
                    delivery_id=self._delivery_id,
                    account_id=self._account_id,
                    error=str(error),
                )
                raise SMTPServerError(452, _MAILBOX_FULL) from None
            except Exception:
                log.failure(
                    "Delivery {delivery_id} to account {account_id} failed",
                    delivery_id=self._delivery_id,
                    account_id=self._account_id,
                )
                raise SMTPServerError(451, "4.3.0 Local delivery failed; try again later") from None
        # The one log line of a delivery.
        message_ids = stored.summary.message_ids if stored is not None else ()
        log.info(
            "Delivered {delivery_id}: {size} octets to account {account_id}"
            " as email {email_id} (Message-ID {message_id})",
            delivery_id=self._delivery_id,
            size=size,
            account_id=self._account_id,
            email_id=stored.id if stored is not None else None,
            message_id=message_ids[0] if message_ids else None,
        )
        return f"2.0.0 <{_path_text(self._recipient)}> Delivered as {self._delivery_id}"

    def connectionLost(self) -> None:
        spool, self._spool = self._spool, None
        if spool is not None:
            spool.release()


@implementer(IMessageDelivery)
class LocalMessageDelivery:
    """
    Twisted's ``IMessageDelivery`` for local mail: accepts any sender and
    only recipients :meth:`~jmap_twisted.interfaces.IMailDelivery.resolve`
    finds (this server never relays), and gives each accepted recipient an
    :class:`IncomingMessage` of its own.

    The protocol must offer ``received_with`` (the ``with`` keyword of the
    trace header, see :class:`jmap_twisted.mail.smtp.DeliveryESMTP`);
    ``ESMTP`` is assumed otherwise.  It may offer ``data_spool``, the
    :class:`~jmap_twisted.mail.spool.MessageSpool` of the transaction whose
    ``DATA`` begins, for its recipients' messages to share; each message
    has a spool of its own otherwise.

    :param delivery: who is local, and where their mail goes.
    :param hostname: this server's name, for the trace header.
    :param max_size: the largest message accepted, in octets.
    :param clock: gives the time of the trace header.

    At most :data:`LARGE_MESSAGES_AT_ONCE` large messages, over all
    connections, are read back into memory and stored at once; the others
    wait on disk.
    """

    def __init__(
        self, delivery: IMailDelivery, hostname: str, max_size: int, clock: IReactorTime
    ) -> None:
        self._delivery = delivery
        self._hostname = hostname
        self._max_size = max_size
        self._clock = clock
        self._large_turns = DeferredSemaphore(LARGE_MESSAGES_AT_ONCE)

    def receivedHeader(
        self, helo: tuple[bytes | None, bytes | str], origin: Address, recipients: Sequence[User]
    ) -> bytes | None:
        """
        Give Twisted's protocol no header to add: each
        :class:`IncomingMessage` carries its own ``Return-Path`` and
        ``Received`` (see :func:`trace_headers`), so that they are
        CRLF-terminated, name their one recipient, and do not count
        towards the size limit.
        """
        return None

    def validateFrom(
        self, helo: tuple[bytes | None, bytes | str], origin: Address
    ) -> Deferred[Address] | Address:
        """
        Accept any syntactically valid reverse-path, the null one (``<>``)
        included, as long as it is printable ASCII.

        :raises twisted.mail.smtp.SMTPServerError: 553 for other addresses.
        """
        if envelope_address(origin) is None:
            raise SMTPServerError(553, "5.6.7 Address must be printable ASCII (no SMTPUTF8)")
        return origin

    def validateTo(self, user: User) -> Deferred[Callable[[], IncomingMessage]]:
        """
        Accept a local recipient.

        :return: fires with a factory of the recipient's
            :class:`IncomingMessage`; fails with
            :class:`~twisted.mail.smtp.SMTPBadRcpt` (550) when the
            recipient is not local, or ``SMTPServerError`` 451 when it
            could not be looked up.
        """
        return Deferred.fromCoroutine(self._validate_to(user))

    async def _validate_to(self, user: User) -> Callable[[], IncomingMessage]:
        recipient = envelope_address(user.dest)
        if recipient is None:
            raise SMTPBadRcpt(user.dest, 553, "5.6.7 Address must be printable ASCII (no SMTPUTF8)")
        try:
            account_id = await self._delivery.resolve(recipient)
        except Exception:
            log.failure("Could not look up a recipient")
            raise SMTPServerError(451, "4.3.0 Cannot look up the recipient now") from None
        if account_id is None:
            log.debug("Refused recipient {recipient}: not local", recipient=recipient)
            raise SMTPBadRcpt(
                user.dest, 550, "5.1.1 No such mailbox here (this server does not relay)"
            )
        if not await self._has_room(account_id, getattr(user.protocol, "declared_size", 0)):
            log.info(
                "Refused recipient {recipient} for now: account {account_id} is over quota",
                recipient=recipient,
                account_id=account_id,
            )
            raise SMTPBadRcpt(user.dest, 452, _MAILBOX_FULL)
        return lambda: self._message(user, recipient, account_id)

    async def _has_room(self, account_id: str, size: int) -> bool:
        """
        Whether the account has room for the message, as far as can be
        told before it arrives (the delivery decides in the end); yes when
        the delivery cannot tell, or the check fails.
        """
        quota = IDeliveryQuota(self._delivery, None)
        if quota is None:
            return True
        try:
            return await quota.has_room(account_id, size if isinstance(size, int) else 0)
        except Exception:
            log.failure(
                "Could not look at the quota of account {account_id}", account_id=account_id
            )
            return True

    def _message(self, user: User, recipient: str, account_id: str) -> IncomingMessage:
        delivery_id = secrets.token_hex(8).upper()
        helo: tuple[Any, Any] = user.helo
        trace = trace_headers(
            reverse_path=envelope_address(user.orig) or "",
            recipient=recipient,
            helo=_text(helo[0]),
            client_address=_text(helo[1]) or None,
            hostname=self._hostname,
            protocol=getattr(user.protocol, "received_with", "ESMTP"),
            delivery_id=delivery_id,
            when=self._clock.seconds(),
        )
        spool = getattr(user.protocol, "data_spool", None)
        return IncomingMessage(
            self._delivery,
            account_id,
            recipient,
            trace,
            self._max_size,
            delivery_id,
            spool if isinstance(spool, MessageSpool) else None,
            self._large_turns,
        )
