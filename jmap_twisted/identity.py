# -*- test-case-name: tests.methods.test_identity_vacation,tests.methods.test_vacation_reply -*-
"""
The Identity model (RFC 8621 §6), shared by its methods
(:mod:`jmap_twisted.methods.identity`), submission and the vacation
responder (:mod:`jmap_twisted.mail.vacation`): identities are kept as
documents in the mail store, one per Identity.
"""

from __future__ import annotations

from jmap_twisted.interfaces import IMailReader

#: The document type (and JMAP data type) of identities.
TYPE = "Identity"


def identity_addresses(reader: IMailReader) -> list[str]:
    """
    The email addresses of the account's identities, in the order the
    store keeps them.
    """
    return [identity["email"] for identity in reader.documents(TYPE).values()]
