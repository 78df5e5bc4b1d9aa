"""
Pieces shared by the server's outbound HTTPS clients (web push delivery,
OpenID Connect discovery and introspection), which use twisted.web's
``Agent`` directly: request bodies in memory, and how servers'
certificates are verified.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer
from twisted.internet.ssl import Certificate, platformTrust, trustRootFromCertificates
from twisted.web.client import BrowserLikePolicyForHTTPS
from twisted.web.iweb import IBodyProducer, IPolicyForHTTPS
from zope.interface import implementer

if TYPE_CHECKING:
    from OpenSSL.SSL import Context


@implementer(IBodyProducer)
class BytesBody:
    """
    A request body already in memory, written at once (``Agent``'s
    ``FileBodyProducer`` would hand it to a cooperator in pieces).
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IOpenSSLTrustRoot)
class _AnyOf:
    """
    Trusts the certificate authorities of several trust roots.
    """

    def __init__(self, roots: Sequence[object]) -> None:
        self._roots = [IOpenSSLTrustRoot(root) for root in roots]

    def _addCACertsToContext(self, context: Context) -> None:
        for root in self._roots:
            root._addCACertsToContext(context)


def read_ca_file(path: str) -> list[Certificate]:
    """
    The certificates of a PEM file.

    :raises OSError: the file cannot be read.
    :raises ValueError: it holds no PEM certificate, or a malformed one.
    """
    data = Path(path).read_bytes()
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError(f"{path} holds no readable PEM certificate") from None
    return [Certificate.loadPEM(c.public_bytes(Encoding.PEM)) for c in certificates]


def tls_policy(ca_file: str | None) -> IPolicyForHTTPS:
    """
    How servers' certificates are verified: against the system's
    certificate authorities, and those in ``ca_file`` (a PEM file) when
    given.  The file is read now, so a bad one stops the server at start.

    :raises OSError: the file cannot be read.
    :raises ValueError: it holds no PEM certificate.
    """
    if ca_file is None:
        return BrowserLikePolicyForHTTPS(platformTrust())
    extra = trustRootFromCertificates(read_ca_file(ca_file))
    return BrowserLikePolicyForHTTPS(_AnyOf([platformTrust(), extra]))
