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
  objects.
"""
