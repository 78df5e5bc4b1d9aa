"""
Local delivery: which addresses are local, how a delivered message is
stored, the trace headers added to it, and the bridge from Twisted's SMTP
machinery (``IMessageDelivery``, ``IMessage``) to
:class:`~jmap_twisted.interfaces.IMailDelivery`.

Nothing here speaks a wire protocol: :mod:`jmap_twisted.mail.lmtp` and
:mod:`jmap_twisted.mail.smtp` do, and both use
:class:`LocalMessageDelivery`.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from twisted.internet.defer import Deferred, DeferredSemaphore, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.mail.interfaces import IMessageDelivery, IMessageSMTP
from twisted.mail.smtp import Address, SMTPBadRcpt, SMTPServerError, User
from zope.interface import implementer

from jmap_twisted.errors import DiskFull
from jmap_twisted.interfaces import IDirectory, IMailDelivery, IMailStore, IMailWriter
from jmap_twisted.mail.spool import MessageSpool
from jmap_twisted.records import EmailRecord

log = Logger()

#: Addresses we accept in envelopes: printable ASCII (no ``SMTPUTF8``).
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
#: Characters kept from a client's ``LHLO``/``EHLO`` argument in headers.
_HELO_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")


class NoInbox(Exception):
    """
    The account has no mailbox with the ``inbox`` role, even after
    :meth:`~jmap_twisted.interfaces.IMailStore.setup_account`.
    """


def normalise_domain(domain: str) -> str:
    """
    A domain in the form used to compare domains: lower case, without a
    trailing dot, internationalised labels as IDNA A-labels
    (``xn--…``).  A domain IDNA cannot encode is only lower-cased.
    """
    domain = domain.strip().rstrip(".").lower()
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return domain


def split_address(address: str) -> tuple[str, str] | None:
    """
    The local part and domain of ``local@domain`` (optionally in angle
    brackets), with a quoted-string local part unquoted; ``None`` when it
    has no ``@``, no local part or no domain.
    """
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return None
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        local = re.sub(r"\\(.)", r"\1", local[1:-1])
    return local, domain


def _unicode_domain(ascii_domain: str) -> str:
    try:
        return ascii_domain.encode("ascii").decode("idna")
    except UnicodeError:
        return ascii_domain


@implementer(IMailDelivery)
class LocalDelivery:
    """
    :class:`~jmap_twisted.interfaces.IMailDelivery` for the users of a
    directory, storing into their personal accounts.

    An address is local when its domain is one of ``domains`` (compared
    case-insensitively, internationalised domains in either form) and
    either the whole address is a username (a username like
    ``alice@example.com``, its domain compared in the case given or in
    lower case) or the local part is a username (compared exactly, as
    usernames are).  A whole-address username wins over a local-part one.

    :param directory: the users and their accounts.
    :param store: where delivered mail goes.
    :param domains: the mail domains this server is the final destination
        for.
    :param clock: gives each delivered email's ``receivedAt``.
    """

    def __init__(
        self,
        directory: IDirectory,
        store: IMailStore,
        domains: Collection[str],
        clock: IReactorTime,
    ) -> None:
        self._directory = directory
        self._store = store
        self._domains = frozenset(normalise_domain(d) for d in domains)
        self._clock = clock
        #: address → account id of recent resolutions (never misses, so a
        #: new user receives mail at once); emptied by :meth:`forget`.
        self._resolved: OrderedDict[str, str] = OrderedDict()
        self._generation = 0

    def resolve(self, address: str) -> Deferred[str | None]:
        known = self._resolved.get(address)
        if known is not None:
            self._resolved.move_to_end(address)
            return succeed(known)
        resolving = Deferred.fromCoroutine(self._resolve(address))
        generation = self._generation

        def remember(account_id: str | None) -> str | None:
            # Not if forgotten meanwhile: the answer may predate the change.
            if account_id is not None and generation == self._generation:
                self._resolved[address] = account_id
                if len(self._resolved) > RESOLVED_CACHE:
                    self._resolved.popitem(last=False)
            return account_id

        return resolving.addCallback(remember)

    def forget(self) -> None:
        """
        Drop remembered resolutions: users or accounts changed (the server
        calls this when the directory's access version moves, which user
        deletion does).
        """
        self._resolved.clear()
        self._generation += 1

    async def _resolve(self, address: str) -> str | None:
        parts = split_address(address)
        if parts is None:
            return None
        local, domain = parts
        normalised = normalise_domain(domain)
        if normalised not in self._domains:
            return None
        candidates = [
            f"{local}@{domain}",
            f"{local}@{domain.lower()}",
            f"{local}@{normalised}",
            f"{local}@{_unicode_domain(normalised)}",
        ]
        if "@" not in local:
            # A local part containing "@" (quoted) must not match a
            # username that is an address in some other domain.
            candidates.append(local)
        for username in dict.fromkeys(candidates):
            user = await self._directory.get_user(username)
            if user is None:
                continue
            for account in await self._directory.accounts_for_user(user.id):
                if account.owner_id == user.id:
                    return account.id
            return None
        return None

    def deliver(self, account_id: str, message: bytes) -> Deferred[None]:
        """
        Store ``message`` (the octets exactly as they are to be kept, trace
        headers included) in the account's inbox as a delivery.
        """
        return Deferred.fromCoroutine(self._deliver(account_id, bytes(message)))

    async def _deliver(self, account_id: str, message: bytes) -> None:
        received_at = self._clock.seconds()

        def add(writer: IMailWriter) -> EmailRecord | None:
            for mailbox in writer.mailboxes():
                if mailbox.role == "inbox":
                    return writer.add_email(message, [mailbox.id], [], received_at)
            return None

        # The inbox is nearly always there: look for it in the delivery's
        # own transaction, and set the account up only when it is missing.
        record = await self._store.write(account_id, add, delivery=True)
        if record is None:
            await self._store.setup_account(account_id)
            record = await self._store.write(account_id, add, delivery=True)
        if record is None:
            raise NoInbox(account_id)
        message_ids = record.summary.message_ids
        log.info(
            "Stored delivered email {email_id} ({size} octets, Message-ID {message_id}) "
            "in account {account_id}",
            email_id=record.id,
            size=len(message),
            message_id=message_ids[0] if message_ids else None,
            account_id=account_id,
        )


#: Resolutions remembered by :class:`LocalDelivery`.
RESOLVED_CACHE = 10_000
#: Messages past the spool's memory limit read back and stored at once,
#: server-wide (SQLite stores one at a time anyway).
LARGE_MESSAGES_AT_ONCE = 2


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

    Lines arrive without their CRLF and with dot-stuffing undone; the
    message is stored as ``trace`` followed by every line ended by CRLF.
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
                        await self._delivery.deliver(self._account_id, spool.octets(self._trace))
                else:
                    await self._delivery.deliver(self._account_id, spool.octets(self._trace))
            except DiskFull:
                # Expected while the disk is full: the sender tries again.
                log.warn(
                    "Delivery {delivery_id} to account {account_id} deferred: the disk is full",
                    delivery_id=self._delivery_id,
                    account_id=self._account_id,
                )
                raise SMTPServerError(452, "4.3.1 Insufficient system storage") from None
            except Exception:
                log.failure(
                    "Delivery {delivery_id} to account {account_id} failed",
                    delivery_id=self._delivery_id,
                    account_id=self._account_id,
                )
                raise SMTPServerError(451, "4.3.0 Local delivery failed; try again later") from None
        log.info(
            "Delivered {delivery_id}: {size} octets to account {account_id}",
            delivery_id=self._delivery_id,
            size=size,
            account_id=self._account_id,
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
        return lambda: self._message(user, recipient, account_id)

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
