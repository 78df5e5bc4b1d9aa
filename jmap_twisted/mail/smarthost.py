"""
Handing outgoing mail to a smarthost over ESMTP (twisted.mail's
:class:`~twisted.mail.smtp.ESMTPSenderFactory`).
"""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.error import ConnectError
from twisted.logger import Logger
from twisted.mail.smtp import ESMTPSenderFactory, SMTPClientError, SMTPDeliveryError
from zope.interface import implementer

from jmap_twisted.interfaces import IJMAPReactor, IRelay

log = Logger()

#: Per recipient: the SMTP reply code and text.
Replies = dict[str, tuple[int, str]]


@implementer(IRelay)
class Smarthost:
    """
    Sends messages through one relay.

    :param endpoint: a client endpoint description, e.g.
        ``tcp:host=smtp.example.com:port=587``.
    :param hostname: the name to greet with.
    :param credentials: username and password for ``AUTH``, or ``None``.
    :param require_tls: refuse to send unless the relay offers STARTTLS.
    """

    def __init__(
        self,
        reactor: IJMAPReactor,
        endpoint: str,
        hostname: str,
        credentials: tuple[str, str] | None = None,
        require_tls: bool = False,
        timeout: float = 60.0,
    ) -> None:
        self._reactor = reactor
        self._endpoint = endpoint
        self._hostname = hostname
        self._credentials = credentials
        self._require_tls = require_tls
        self._timeout = timeout

    def send(self, mail_from: str, rcpt_to: Sequence[str], message: bytes) -> Deferred[Replies]:
        """
        Relay one message; fires with the relay's reply for every recipient.
        A connection failure gives every recipient a 451 reply.
        """
        return Deferred.fromCoroutine(self._send(mail_from, rcpt_to, message))

    async def _send(self, mail_from: str, rcpt_to: Sequence[str], message: bytes) -> Replies:
        result: Deferred[Any] = Deferred()
        username, password = self._credentials or (None, None)
        factory = ESMTPSenderFactory(
            username.encode() if username else None,
            password.encode() if password else None,
            mail_from,
            list(rcpt_to),
            BytesIO(message),
            result,
            retries=0,
            timeout=self._timeout,
            requireAuthentication=self._credentials is not None,
            requireTransportSecurity=self._require_tls,
            hostname=self._hostname,
        )
        try:
            endpoint = clientFromString(self._reactor, self._endpoint)
            await endpoint.connect(factory)
            _, addresses = await result
        except SMTPDeliveryError as e:
            addresses = getattr(e, "addresses", None) or [
                (r.encode(), e.code, str(e.resp).encode()) for r in rcpt_to
            ]
        except (SMTPClientError, ConnectError, OSError, ConnectionError) as e:
            log.warn(
                "Smarthost {endpoint} unavailable: {error}", endpoint=self._endpoint, error=str(e)
            )
            return {r: (451, "4.4.1 relay unavailable") for r in rcpt_to}
        replies: Replies = {}
        for address, code, response in addresses:
            text = address.decode() if isinstance(address, bytes) else str(address)
            body = (
                response.decode("utf-8", "replace")
                if isinstance(response, bytes)
                else str(response)
            )
            replies[text] = (int(code), body)
        return replies
