# -*- test-case-name: tests.push.test_webpush_crypto, tests.http.test_origins -*-
"""
Web origins (RFC 6454): the one serialisation used wherever the server
compares or names an origin (browser ``Origin`` headers, a push service's
VAPID audience).
"""

from __future__ import annotations

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """
    The ASCII serialization of an ``http``/``https`` URL's origin (RFC 6454
    §6.2): scheme and host in lower case, the port unless it is the
    scheme's default, IPv6 hosts in brackets, user info and path dropped.

    :raises ValueError: for another scheme or a URL without a host.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("not a valid URL") from None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        raise ValueError("not an http or https URL with a host")
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"
