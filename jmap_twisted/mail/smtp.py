"""
The ESMTP machinery shared by the LMTP and SMTP listeners, and the inbound
SMTP server for local delivery (it never relays).

:class:`DeliveryESMTP` adds to Twisted's :class:`~twisted.mail.smtp.ESMTP`
what a delivery server needs and Twisted leaves out: ``SIZE`` (RFC 1870),
``8BITMIME`` (RFC 6152), ``PIPELINING`` (RFC 2920) with replies kept in
command order even when validation or delivery is asynchronous,
``ENHANCEDSTATUSCODES`` (RFC 2034), a bound on line length and on
recipients, and a hook for the replies after ``DATA``.  Everything about
who is local and how mail is stored is in
:mod:`jmap_twisted.mail.delivery`.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.mail.interfaces import IMessageDelivery
from twisted.mail.smtp import COMMAND, DATA, ESMTP, SMTP, SMTPFactory, SMTPServerError
from twisted.python.failure import Failure

from jmap_twisted.interfaces import IMailDelivery
from jmap_twisted.mail.incoming import LocalMessageDelivery
from jmap_twisted.mail.spool import MessageSpool

log = Logger()

#: A reply text that already starts with an enhanced status code.
_ENHANCED = re.compile(rb"[245]\.\d{1,3}\.\d{1,3}(?: |$)")
#: The enhanced status code (RFC 3463) given to replies that carry none.
_DEFAULT_ENHANCED = {
    421: b"4.3.2",
    451: b"4.3.0",
    500: b"5.5.2",
    501: b"5.5.4",
    503: b"5.5.1",
    504: b"5.5.4",
    552: b"5.3.4",
    553: b"5.1.3",
    555: b"5.5.4",
}

#: What a reply after ``DATA`` is, when delivery raised something other
#: than an ``SMTPServerError``.
_LOCAL_ERROR = (451, b"4.3.0 Local error in processing")


def with_enhanced_code(code: int, text: bytes) -> bytes:
    """
    ``text`` with an enhanced status code (RFC 2034) at the start of every
    line that has none: the one for ``code`` in a small table, else
    ``X.0.0`` ("other or undefined status").  3xx replies are left alone.
    """
    if code // 100 not in (2, 4, 5):
        return text
    default = _DEFAULT_ENHANCED.get(code, b"%d.0.0" % (code // 100))
    return b"\n".join(
        line if _ENHANCED.match(line) else (default + b" " + line).rstrip()
        for line in (text.splitlines() or [b""])
    )


class DeliveryESMTP(ESMTP):
    """
    The ESMTP dialect common to the LMTP and SMTP delivery servers.

    Commands are answered strictly in the order received: while a reply
    (to ``MAIL``, ``RCPT`` or the end of ``DATA``) waits for a Deferred,
    later lines are queued and the transport is paused, so pipelined
    commands neither overtake nor see a half-updated transaction.  A line
    longer than :attr:`MAX_LENGTH` gets 500 and closes the connection (the
    rest of it could otherwise be read as commands).  A greeting is
    required before ``MAIL``.

    :param delivery: validates addresses and makes the messages.
    :param max_size: the largest message accepted, in octets (``SIZE``).
    :param clock: for the idle timeout.
    """

    noisy = False
    MAX_LENGTH = 65536
    #: Recipients accepted per transaction (RFC 5321 §4.5.3.1.8 asks for
    #: at least 100); more get 452.
    max_recipients = 100
    #: The greeting command, named in the 503 sent when it is missing.
    greeting_command: ClassVar[bytes] = b"EHLO"
    #: The ``with`` keyword (RFC 3848) of the ``Received`` header.
    received_with = "ESMTP"

    def __init__(self, delivery: IMessageDelivery, max_size: int, clock: IReactorTime) -> None:
        ESMTP.__init__(self)
        self.delivery = delivery
        self.max_size = max_size
        self._clock = clock
        self._queue: deque[bytes] = deque()
        self._waiting: str | None = None  # "reply" or "data": what holds the queue
        self._replied = False
        self._data_replied = False
        self._paused = False
        self._plain_reply = False
        self._closing = False  # no more input is processed
        self._lost = False  # no more replies can be sent
        #: The spool of the transaction whose ``DATA`` is beginning, shared
        #: by its recipients' messages (see :meth:`do_DATA`).
        self.data_spool: MessageSpool | None = None
        #: The ``SIZE`` announced by the transaction's ``MAIL`` (RFC 1870),
        #: 0 when none: recipients whose quota has no room for it are
        #: refused at ``RCPT``.
        self.declared_size = 0

    # -- hooks for subclasses ------------------------------------------------

    def send_data_replies(self, outcomes: Sequence[tuple[int, bytes]]) -> None:
        """
        Reply to the end of ``DATA``.

        :param outcomes: a reply (code, text) per accepted recipient, in
            ``RCPT`` order.
        """
        raise NotImplementedError

    # -- timing --------------------------------------------------------------

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        """
        Schedule the idle timeout on the injected clock.
        """
        return self._clock.callLater(period, func)

    # -- replies in order ----------------------------------------------------

    @property
    def _connection(self) -> Any:
        # The TCP/UNIX transport: a push producer with ``disconnecting``,
        # which no single interface describes.
        return self.transport

    def lineReceived(self, line: bytes) -> None:
        if self._waiting is not None or self._queue:
            self._queue.append(line)
            if not (self._paused or self._connection.disconnecting):
                self._paused = True
                self._connection.pauseProducing()
            return
        self._dispatch(line)

    def _dispatch(self, line: bytes) -> None:
        ends_data = self.mode == DATA and line == b"."
        is_command = self.mode == COMMAND
        self._replied = self._data_replied = False
        SMTP.lineReceived(self, line)
        if ends_data and not self._data_replied:
            self._waiting = "data"
        elif is_command and not self._replied:
            self._waiting = "reply"

    def _drain(self) -> None:
        while self._queue and self._waiting is None:
            if self._closing or self._connection.disconnecting:
                self._queue.clear()
                return
            self._dispatch(self._queue.popleft())
        if not self._queue and self._paused:
            self._paused = False
            if not (self._closing or self._connection.disconnecting):
                self._connection.resumeProducing()

    def sendCode(self, code: int, message: bytes = b"") -> None:
        if self._lost:
            return
        if code != 220 and not self._plain_reply:
            message = with_enhanced_code(code, message)
        SMTP.sendCode(self, code, message)
        self._replied = True
        # Every caller in Twisted sends the reply last, so the transaction
        # is up to date before queued lines run.
        if self._waiting == "reply":
            self._waiting = None
            self._drain()

    def _messageHandled(self, resultList: object) -> None:
        results = resultList if isinstance(resultList, list) else []
        outcomes = [self._outcome(ok, result) for ok, result in results]
        if not self._lost:
            self.send_data_replies(outcomes)
        self._data_replied = True
        if self._waiting == "data":
            self._waiting = None
            self._drain()

    def _outcome(self, succeeded: bool, result: object) -> tuple[int, bytes]:
        if succeeded:
            if isinstance(result, str):
                return 250, result.encode("ascii", "replace")
            return 250, b"2.0.0 Delivered"
        if isinstance(result, Failure):
            error = result.value
            if isinstance(error, SMTPServerError):
                text = error.resp if isinstance(error.resp, bytes) else str(error.resp).encode()
                return int(error.code), text
            log.failure("Unexpected failure delivering a message", result)
        return _LOCAL_ERROR

    def lineLengthExceeded(self, line: bytes) -> None:
        self._closing = True
        self._queue.clear()
        SMTP.lineLengthExceeded(self, line)
        self._connection.loseConnection()

    def timeoutConnection(self) -> None:
        self._closing = True
        self._queue.clear()
        ESMTP.timeoutConnection(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closing = self._lost = True
        self._queue.clear()
        ESMTP.connectionLost(self, reason)

    # -- greeting and extensions ---------------------------------------------

    def extensions(self) -> dict[bytes, list[bytes] | None]:
        return {
            b"SIZE": [b"%d" % self.max_size],
            b"8BITMIME": None,
            b"PIPELINING": None,
            b"ENHANCEDSTATUSCODES": None,
        }

    def greet(self, rest: bytes, received_with: str, extensions: bool) -> None:
        """
        Answer a greeting command (``LHLO``, ``EHLO``, ``HELO``): remember
        the client's name, forget any transaction, and list the extensions
        if asked.  Its reply carries no enhanced status code (RFC 2034).
        """
        words = rest.split()
        if not words:
            self.sendCode(501, b"5.5.4 Syntax: " + self.greeting_command + b" hostname")
            return
        peer = getattr(self._connection.getPeer(), "host", None)
        self._helo = (words[0], peer.encode("ascii") if isinstance(peer, str) else b"")
        self._from = None
        self._to = []
        self.received_with = received_with
        text = self.host + b" Hello " + words[0]
        if extensions:
            text += b"\n" + self.listExtensions()
        self._plain_reply = True
        try:
            self.sendCode(250, text)
        finally:
            self._plain_reply = False

    # -- commands ------------------------------------------------------------

    def ext_AUTH(self, rest: bytes) -> None:
        # Not offered; Twisted's own crashes on a bare "AUTH".
        self.sendCode(502, b"5.5.1 AUTH is not offered here")

    def ext_STARTTLS(self, rest: bytes) -> None:
        self.sendCode(502, b"5.5.1 STARTTLS is not offered here")

    def do_NOOP(self, rest: bytes) -> None:
        self.sendCode(250, b"2.0.0 OK")

    def do_VRFY(self, rest: bytes) -> None:
        self.sendCode(252, b"2.5.0 Cannot VRFY; send the message and RCPT will tell")

    def do_MAIL(self, rest: bytes) -> None:
        if not self._helo or self._helo[0] is None:
            self.sendCode(503, b"5.5.1 Send " + self.greeting_command + b" first")
            return
        if self._from is None:
            match = self.mail_re.match(rest)
            if match is not None:
                error = self._mail_parameter_error(match.group("opts"))
                if error is not None:
                    self.sendCode(*error)
                    return
                self.declared_size = _declared_size(match.group("opts"))
        ESMTP.do_MAIL(self, rest)

    def _mail_parameter_error(self, opts: bytes | None) -> tuple[int, bytes] | None:
        for parameter in (opts or b"").split():
            keyword, _, value = parameter.partition(b"=")
            keyword = keyword.upper()
            if keyword == b"SIZE":
                if not value.isdigit():
                    return 501, b"5.5.4 SIZE takes a number of octets"
                digits = value.lstrip(b"0")
                if len(digits) > 20 or int(digits or b"0") > self.max_size:
                    return 552, b"5.3.4 Message size exceeds the fixed maximum of %d octets" % (
                        self.max_size
                    )
            elif keyword == b"BODY":
                if value.upper() not in (b"7BIT", b"8BITMIME"):
                    return 501, b"5.5.4 BODY must be 7BIT or 8BITMIME"
            else:
                return 555, b"5.5.4 MAIL FROM parameter not recognised: " + keyword[:32]
        return None

    def do_DATA(self, rest: bytes) -> None:
        # One spool for all the recipients' messages, which Twisted makes
        # here: the message is held once, not once per recipient.
        self.data_spool = MessageSpool(self.max_size)
        try:
            ESMTP.do_DATA(self, rest)
        finally:
            self.data_spool = None

    def do_RCPT(self, rest: bytes) -> None:
        if self._from is not None:
            match = self.rcpt_re.match(rest)
            if match is not None and match.group("opts"):
                self.sendCode(555, b"5.5.4 RCPT TO parameters are not supported")
                return
            if len(self._to) >= self.max_recipients:
                self.sendCode(452, b"4.5.3 Too many recipients")
                return
        ESMTP.do_RCPT(self, rest)


def _declared_size(opts: bytes | None) -> int:
    """
    The ``SIZE`` parameter of valid ``MAIL`` parameters, or 0.
    """
    for parameter in (opts or b"").split():
        keyword, _, value = parameter.partition(b"=")
        if keyword.upper() == b"SIZE":
            return int(value)
    return 0


def smtp_data_reply(outcomes: Sequence[tuple[int, bytes]]) -> tuple[int, bytes]:
    """
    The one SMTP reply after ``DATA``, given each recipient's outcome.

    SMTP cannot report per recipient after ``DATA``: a failure reply makes
    the client retry *every* recipient (duplicates for those stored), a
    success reply makes it forget the message (a loss for those not
    stored).  This server reports failure only when **no** recipient's copy
    was stored: the permanent failure when all failed permanently (e.g. 552
    too big, which would fail again), the one failure when all failed alike
    (e.g. 452 mailbox full), else 451 so the client retries.  A partial
    failure gets 250, and the lost copies are logged; use LMTP, which
    reports per recipient, where that matters.
    """
    failures = [outcome for outcome in outcomes if outcome[0] >= 400]
    if not failures or len(failures) < len(outcomes):
        return 250, b"2.0.0 Message delivered"
    if all(code >= 500 for code, _ in failures) or len(set(failures)) == 1:
        return failures[0]
    return 451, b"4.3.0 Local delivery failed; try again later"


class InboundSMTP(DeliveryESMTP):
    """
    An ESMTP server that accepts mail for local recipients only.
    """

    def greeting(self) -> bytes:
        return self.host + b" ESMTP ready; local delivery only"

    def do_EHLO(self, rest: bytes) -> None:
        self.greet(rest, "ESMTP", extensions=True)

    def do_HELO(self, rest: bytes) -> None:
        self.greet(rest, "SMTP", extensions=False)

    def send_data_replies(self, outcomes: Sequence[tuple[int, bytes]]) -> None:
        failed = sum(1 for code, _ in outcomes if code >= 400)
        code, text = smtp_data_reply(outcomes)
        if code < 400 and failed:
            log.error(
                "Accepted a message over SMTP that {failed} of {recipients} recipients "
                "did not get (see the failed deliveries above)",
                failed=failed,
                recipients=len(outcomes),
            )
        self.sendCode(code, text)


class DeliveryServerFactory(SMTPFactory):
    """
    Builds delivery servers (:attr:`protocol`) sharing one
    :class:`~jmap_twisted.mail.delivery.LocalMessageDelivery`.

    :param delivery: who is local, and where their mail goes.
    :param max_size: the largest message accepted, in octets.
    :param hostname: this server's name, in the greeting and the
        ``Received`` header.
    :param clock: for idle timeouts and trace header times.
    """

    protocol: type[DeliveryESMTP] = InboundSMTP
    #: Idle seconds before a connection is closed with 421.
    timeout = 600

    def __init__(
        self, delivery: IMailDelivery, max_size: int, hostname: str, clock: IReactorTime
    ) -> None:
        SMTPFactory.__init__(self)
        self.max_size = max_size
        self.domain = hostname.encode("idna")
        self.clock = clock
        self.message_delivery = LocalMessageDelivery(
            delivery, self.domain.decode("ascii"), max_size, clock
        )

    def buildProtocol(self, addr: IAddress | None) -> DeliveryESMTP:
        protocol = self.protocol(self.message_delivery, self.max_size, self.clock)
        protocol.factory = self
        protocol.host = self.domain
        protocol.timeout = self.timeout
        return protocol


class InboundSMTPFactory(DeliveryServerFactory):
    """
    Builds :class:`InboundSMTP` servers; same arguments as
    :class:`DeliveryServerFactory`.
    """

    protocol = InboundSMTP
