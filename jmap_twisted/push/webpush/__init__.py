"""
Web push (RFC 8620 §7.2 with RFC 8030 delivery): push subscriptions'
StateChanges POSTed to push services, encrypted (RFC 8291) and signed
(RFC 8292 VAPID).

- :mod:`~jmap_twisted.push.webpush.crypto`: ``aes128gcm`` encryption of a
  push message and the server's VAPID key and signatures.
- :mod:`~jmap_twisted.push.webpush.policy`: which push service addresses may
  be reached, checked at connect time.
- :mod:`~jmap_twisted.push.webpush.sender`: one POST to a push service.
- :mod:`~jmap_twisted.push.webpush.dispatcher`: the group listener on the
  JMAP bus that turns StateChanges into POSTs, per subscription.
"""
