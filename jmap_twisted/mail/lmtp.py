"""
The LMTP server (RFC 2033): ESMTP with ``LHLO`` for ``EHLO``, and one
reply per accepted recipient after ``DATA``, so that the MTA in front
learns exactly which copies were stored.
"""

from __future__ import annotations

from collections.abc import Sequence

from jmap_twisted.mail.smtp import DeliveryESMTP, DeliveryServerFactory


class LMTP(DeliveryESMTP):
    """
    An LMTP server for local recipients.

    After the final ``.`` of ``DATA`` it sends one reply per recipient
    accepted at ``RCPT``, in ``RCPT`` order: 250 once that recipient's copy
    is durable, or the failure for that copy (451 when storing failed, 552
    when the message was too big).  ``HELO`` and ``EHLO`` get 500 (RFC 2033
    §4.1).
    """

    greeting_command = b"LHLO"
    received_with = "LMTP"

    def greeting(self) -> bytes:
        return self.host + b" LMTP ready"

    def do_LHLO(self, rest: bytes) -> None:
        self.greet(rest, "LMTP", extensions=True)

    def do_HELO(self, rest: bytes) -> None:
        self.sendCode(500, b"5.5.1 This is an LMTP server: use LHLO")

    def do_EHLO(self, rest: bytes) -> None:
        self.do_HELO(rest)

    def send_data_replies(self, outcomes: Sequence[tuple[int, bytes]]) -> None:
        for code, text in outcomes:
            self.sendCode(code, text)


class LMTPFactory(DeliveryServerFactory):
    """
    Builds :class:`LMTP` servers.

    :param delivery: who is local, and where their mail goes.
    :param max_size: the largest message accepted, in octets.
    :param hostname: this server's name, in the greeting and the
        ``Received`` header.
    :param clock: for idle timeouts and trace header times.
    """

    protocol = LMTP
