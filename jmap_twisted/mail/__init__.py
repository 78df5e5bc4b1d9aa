"""
Mail transport: delivery of incoming mail over LMTP (RFC 2033) and SMTP
(RFC 5321), and the mail the server sends itself.

- :mod:`~jmap_twisted.mail.delivery`: who is local and how mail is stored
  (:class:`~jmap_twisted.mail.delivery.LocalDelivery`, the
  :class:`~jmap_twisted.interfaces.IMailDelivery` over a directory and a
  mail store), the trace headers added on delivery, and the bridge to
  Twisted's ``IMessageDelivery``/``IMessage`` used by both protocols.
- :mod:`~jmap_twisted.mail.spool`: an arriving message's octets, held
  once for all its recipients, in a temporary file once large.
- :mod:`~jmap_twisted.mail.smtp`: the ESMTP base shared by both protocols
  (``SIZE``, ``8BITMIME``, ``PIPELINING``, ``ENHANCEDSTATUSCODES``, replies
  kept in command order) and the inbound SMTP server for local delivery
  only (no relay).
- :mod:`~jmap_twisted.mail.lmtp`: the LMTP server, with one reply per
  recipient after ``DATA``.
- :mod:`~jmap_twisted.mail.service`: the listening services for the
  configured LMTP and SMTP endpoints.
- :mod:`~jmap_twisted.mail.smarthost`: handing outgoing mail to a relay.
- :mod:`~jmap_twisted.mail.sendlimits`: how many recipients a user may
  send to, per submission and per hour.
- :mod:`~jmap_twisted.mail.vacation`: the vacation auto-responder.

:mod:`twisted.mail.smtp`, which the delivery modules import, imports the
global reactor: import them only once the reactor is chosen (from
``makeService``, not at the top of a plugin).
"""
