"""
Internet messages (RFC 5322, MIME) and their JMAP Email representation
(RFC 8621 §4.1).  Pure transformations: no I/O, no Twisted.

- :mod:`~jmap_twisted.mime.headers`: header fields and their parsed forms
  (Raw, Text, Addresses, GroupedAddresses, MessageIds, Date, URLs), ``header:``
  property names, RFC 2047 encoded-words, MIME parameters and charsets.
- :mod:`~jmap_twisted.mime.parse`: parsing raw message octets into the Email
  properties: the body structure, ``textBody``/``htmlBody``/``attachments``, body
  values, preview, downloadable part content, and text for search indexing.
- :mod:`~jmap_twisted.mime.compose`: building RFC 5322 messages from JMAP Email
  objects (``Email/set`` creates, RFC 8621 §4.6), in stages:
  :mod:`~jmap_twisted.mime.compose_email` reads the Email object and its
  header properties, :mod:`~jmap_twisted.mime.compose_values` writes each
  header value in its form, :mod:`~jmap_twisted.mime.compose_body` reads the
  body parts and values, and :mod:`~jmap_twisted.mime.compose_serialise`
  builds the MIME tree and its octets.
"""
