# -*- test-case-name: tests.mail.test_front -*-
"""
Delivery into a server from any ``twisted.mail`` SMTP or LMTP server: the
``IMessageDelivery`` (RFC 5321 §4.1.1.3, RFC 2033) that a plain
``twisted.mail.smtp.ESMTP`` protocol or ``SMTPFactory`` takes as its
``delivery``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jmap_twisted.mail.incoming import LocalMessageDelivery

if TYPE_CHECKING:
    from jmap_twisted.server import JMAPServer


def message_delivery(server: JMAPServer) -> LocalMessageDelivery:
    """
    Twisted's ``IMessageDelivery`` for the server's local users: any sender,
    only local recipients (the server never relays), each message stored
    durably before its ``250``, at most ``config.max_message_size`` octets.

    Set it as the ``delivery`` of each protocol a
    ``twisted.mail.smtp.SMTPFactory`` builds.  Twisted's own ``SMTP`` and
    ``ESMTP`` answer every failure of a message with 550, temporary ones
    too (451 storage unavailable, 452 disk full): a sender then bounces
    mail it could have retried.  The project's own servers
    (:class:`~jmap_twisted.mail.smtp.InboundSMTPFactory`,
    :class:`~jmap_twisted.mail.lmtp.LMTPFactory`, over ``server.delivery``)
    send each failure's own code.
    """
    config = server.config
    return LocalMessageDelivery(
        server.delivery,
        config.hostname.encode("idna").decode("ascii"),
        config.max_message_size,
        server.reactor,
    )
