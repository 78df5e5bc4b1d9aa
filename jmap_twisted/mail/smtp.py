"""
The ESMTP machinery shared by the LMTP and SMTP listeners, and the inbound
SMTP server for local delivery (it never relays).

:class:`DeliveryESMTP` adds to Twisted's :class:`~twisted.mail.smtp.ESMTP`
what a delivery server needs and Twisted leaves out: ``SIZE`` (RFC 1870),
``8BITMIME`` (RFC 6152), ``PIPELINING`` (RFC 2920) with replies kept in
command order even when validation or delivery is asynchronous,
``ENHANCEDSTATUSCODES`` (RFC 2034), a bound on line length and on
recipients, a hook for the replies after ``DATA``, and the message
content of ``DATA`` (RFC 5321 §4.1.1.4) read in bulk rather than line by
line.  Everything about who is local and how mail is stored is in
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

#: The end of the message content of ``DATA``: a line of one dot.
_END_OF_DATA = b"\r\n.\r\n"


def _has_long_line(octets: bytes, limit: int) -> bool:
    """
    Whether ``octets``, whole lines each ended by CRLF, holds a line of
    more than ``limit`` octets (its CRLF not counted).

    Looks at a few windows of ``limit`` octets rather than at every line:
    a window that holds no CRLF is inside a line too long.
    """
    start, size = 0, len(octets)
    while size - start > limit + 2:
        end = octets.rfind(b"\r\n", start, start + limit + 2)
        if end < 0:
            return True
        start = end + 2
    return False


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

    Commands are read line by line, as Twisted's ``LineOnlyReceiver``
    does.  Once ``DATA`` is answered 354, its message content is read in
    bulk instead: each segment of whole lines that arrives is searched for
    the final ``CRLF . CRLF``, dot-stuffing is undone over the segment at
    once, and it is handed to every recipient's message in one call
    (``lines_received`` where the message offers it, else
    ``lineReceived`` per line).  What follows the final dot is read as
    commands again.  Only CRLF ends a line, as in the line-by-line path: a
    bare LF is content, and ``LF . LF`` does not end the message.  The
    octets stored are those the line-by-line path would store, and the
    size limit, line length bound and idle timeout apply alike.

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
        self._input = b""  # received octets not yet split into lines
        self._in_body = False  # reading the message content of DATA in bulk
        self._body_tail = b""  # the content's unfinished last line
        self._body_start = True  # no line of the content handed over yet

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

    def dataReceived(self, data: bytes) -> None:
        while data:
            rest = self._body_received(data) if self._in_body else self._lines_received(data)
            if rest is None:
                return
            data = rest

    def _lines_received(self, data: bytes) -> bytes | None:
        """
        Split ``data`` into lines for :meth:`lineReceived`, as
        ``LineOnlyReceiver`` does, until the message content of ``DATA``
        begins.

        :return: the octets after the ``DATA`` line once its content
            begins, else ``None``.
        """
        buffer = self._input + data if self._input else data
        self._input = b""
        position = 0
        while not self._in_body:
            if self._connection.disconnecting:
                return None
            end = buffer.find(b"\r\n", position)
            if end < 0:
                self._input = buffer[position:]
                if len(self._input) > self.MAX_LENGTH:
                    self.lineLengthExceeded(self._input)
                return None
            line = buffer[position:end]
            position = end + 2
            if len(line) > self.MAX_LENGTH:
                self.lineLengthExceeded(line)
                return None
            self.lineReceived(line)
        return buffer[position:]

    def _body_received(self, data: bytes) -> bytes | None:
        """
        Take octets of the message content of ``DATA``: hand its whole
        lines to the messages, keep its unfinished last line for the next
        octets, and end the content at its final dot.

        :return: the octets after the final dot once it arrived, else
            ``None``.
        """
        if self._connection.disconnecting:
            return None
        self.resetTimeout()
        # It starts at the start of a line, the unfinished one kept.
        buffer = self._body_tail + data if self._body_tail else data
        if buffer.startswith(b".\r\n"):
            end, after = 0, 3
        else:
            found = buffer.find(_END_OF_DATA)
            if found >= 0:
                end, after = found + 2, found + len(_END_OF_DATA)
            else:
                last = buffer.rfind(b"\r\n")
                end, after = (last + 2 if last >= 0 else 0), -1
        lines = buffer[:end]
        if _has_long_line(lines, self.MAX_LENGTH):
            self.lineLengthExceeded(lines)
            return None
        if after < 0:
            tail = buffer[end:]
            if len(tail) > self.MAX_LENGTH:
                self.lineLengthExceeded(tail)
                return None
            self._body_tail = tail
            if lines:
                self._content_lines(lines)
            return None
        self._body_tail = b""
        self._in_body = False
        if lines:
            self._content_lines(lines)
        self._replied = self._data_replied = False
        SMTP.dataLineReceived(self, b".")
        if not self._data_replied:
            self._waiting = "data"
        return buffer[after:]

    def _content_lines(self, lines: bytes) -> None:
        """
        Hand whole lines of the message content to every recipient's
        message, as Twisted's ``dataLineReceived`` would one by one.
        """
        if lines[:1] == b".":
            lines = lines[1:]
        if b"\r\n." in lines:
            lines = lines.replace(b"\r\n.", b"\r\n")
        if self._body_start:
            self._body_start = False
            first = lines[: lines.find(b"\r\n")]
            if first and b":" not in first:
                # Twisted separates a content without header fields from
                # a Received field it adds by an empty line.
                lines = b"\r\n" + lines
        if self.datafailed:
            return
        # Twisted's list of the transaction's messages, made in do_DATA.
        messages = getattr(self, "_SMTP__messages", [])
        try:
            for message in messages:
                in_bulk = getattr(message, "lines_received", None)
                if in_bulk is not None:
                    in_bulk(lines)
                else:
                    for line in lines[:-2].split(b"\r\n"):
                        message.lineReceived(line)
        except SMTPServerError as error:
            self.datafailed = error
            for message in messages:
                message.connectionLost()

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
        if self.mode != DATA:
            self._in_body = False
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
            if self._in_body:
                # The lines after DATA are its content: read it in bulk.
                queued = b"".join(line + b"\r\n" for line in self._queue) + self._input
                self._queue.clear()
                self._input = b""
                self.dataReceived(queued)
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
        self._in_body = False
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
        if self.mode == DATA:
            self._in_body = True
            self._body_tail = b""
            self._body_start = True

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
