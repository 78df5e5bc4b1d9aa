"""
The listening services of mail delivery: LMTP and, optionally, SMTP.
"""

from __future__ import annotations

from twisted.application.service import IService
from twisted.internet.endpoints import serverFromString

from jmap_twisted.interfaces import IJMAPReactor, IMailDelivery
from jmap_twisted.listening import ListeningService
from jmap_twisted.mail.lmtp import LMTPFactory
from jmap_twisted.mail.smtp import DeliveryServerFactory, InboundSMTPFactory


def delivery_services(
    delivery: IMailDelivery,
    lmtp_listen: str | None,
    smtp_listen: str | None,
    max_size: int,
    hostname: str,
    reactor: IJMAPReactor,
) -> list[IService]:
    """
    A listening service for each configured delivery endpoint.

    :param delivery: who is local, and where their mail goes.
    :param lmtp_listen: endpoint description for LMTP (``tcp:24``,
        ``unix:/run/jmap/lmtp``), or ``None`` for none.
    :param smtp_listen: endpoint description for inbound SMTP, or ``None``.
    :param max_size: the largest message accepted, in octets.
    :param hostname: this server's name, in greetings and ``Received``.
    :param reactor: listens, and gives the time.
    :return: services to add to the application (LMTP first); each
        listens while running.
    """
    listeners: list[tuple[str | None, type[DeliveryServerFactory]]] = [
        (lmtp_listen, LMTPFactory),
        (smtp_listen, InboundSMTPFactory),
    ]
    services: list[IService] = []
    for description, factory in listeners:
        if description:
            endpoint = serverFromString(reactor, description)
            services.append(
                ListeningService(endpoint, factory(delivery, max_size, hostname, reactor))
            )
    return services
