"""
The access log: secrets never reach it, and no request can make it raise.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.web.test.requesthelper import DummyRequest

from jmap_twisted.http.site import MAX_LOGGED, redact_uri, redacting_log_formatter


def _request(uri: bytes, **headers: bytes) -> DummyRequest:
    request = DummyRequest([b""])
    request.uri = uri
    request.method = b"GET"
    request.clientproto = b"HTTP/1.1"
    request.code = 200
    request.sentLength = 10
    request.client = IPv4Address("TCP", "192.0.2.1", 1234)
    for name, value in headers.items():
        request.requestHeaders.addRawHeader(name.replace("_", "-").encode(), value)
    return request


@pytest.mark.parametrize(
    "uri, secret",
    [
        (b"/jmap/eventsource/?ping=%ff&ticket=T0PSECRET", b"T0PSECRET"),
        (b"/jmap/ws?access_token=T0PSECRET&x=%c3%a9", b"T0PSECRET"),
        (b"/jmap/ws?access%5Ftoken=T0PSECRET", b"T0PSECRET"),
        (b"/jmap/ws?%ff=1&ACCESS_TOKEN=T0PSECRET", b"T0PSECRET"),
        (b"/jmap/ticket/T0PSECRET", b"T0PSECRET"),
        (b"/jmap/ticket/T0PSECRET?x=1", b"T0PSECRET"),
        (b"/cb#access_token=T0PSECRET", b"T0PSECRET"),
    ],
)
def test_secrets_are_redacted_whatever_the_octets(uri: bytes, secret: bytes) -> None:
    """
    Secret query values, the ticket in a revocation path and fragments are
    replaced, whatever else the query holds (undecodable percent escapes
    made the old redaction raise).
    """
    assert secret not in redact_uri(uri)
    line = redacting_log_formatter("[ts]", _request(uri))
    assert secret.decode() not in line


def test_the_referer_is_redacted_and_fields_are_cut() -> None:
    """
    A ``Referer`` carrying a token is redacted too; long fields are cut so
    one request cannot write kilobytes of log; control characters are
    escaped.
    """
    request = _request(
        b"/jmap/api/?" + b"a" * 5000,
        referer=b"https://app.example/?access_token=T0PSECRET",
        user_agent=b"agent\r\nforged line" + b"b" * 5000,
    )
    line = redacting_log_formatter("[ts]", request)
    assert "T0PSECRET" not in line
    assert "\n" not in line and "\r" not in line
    assert len(line) < 4 * MAX_LOGGED + 200


def test_the_formatter_never_raises() -> None:
    """
    A request that cannot even tell its address is logged as such.
    """

    class Broken(DummyRequest):
        def getClientAddress(self) -> Any:
            raise RuntimeError("gone")

    request = Broken([b""])
    line = redacting_log_formatter("[ts]", request)
    assert line.startswith('"-"')
