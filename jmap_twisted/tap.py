"""
``twistd jmap``: command-line options and the service they make.

This is the only module that touches the global reactor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted.application.service import IService
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from jmap_twisted.config import DEFAULT_DATA, DEFAULT_LISTEN, ServerConfig
from jmap_twisted.core.limits import CoreLimits


def _positive(name: str) -> Any:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise usage.UsageError(f"--{name} must be a whole number, not {value!r}") from None
        if number < 1:
            raise usage.UsageError(f"--{name} must be at least 1")
        return number

    return parse


class Options(usage.Options):
    """
    Options of ``twistd jmap``.  Logging is configured with twistd's own
    options (``--logfile``, ``--logger``).
    """

    synopsis = "[options]"
    longdesc = (
        "Run a JMAP (RFC 8620/8621) server.  With no options: SQLite in ./jmap-data, "
        "HTTP on 127.0.0.1:8080.  Create users with jmap-admin."
    )

    optParameters = [
        ["data", "d", DEFAULT_DATA, "Data directory of the embedded store."],
        [
            "public-url",
            None,
            None,
            "Scheme and authority clients use (e.g. https://mail.example.com); "
            "default: each request's own scheme and Host.",
        ],
        ["max-size-upload", None, None, "Largest upload, octets.", _positive("max-size-upload")],
        [
            "max-size-request",
            None,
            None,
            "Largest API request, octets.",
            _positive("max-size-request"),
        ],
        [
            "max-concurrent-requests",
            None,
            None,
            "API requests in progress per user.",
            _positive("max-concurrent-requests"),
        ],
        [
            "max-calls-in-request",
            None,
            None,
            "Method calls per request.",
            _positive("max-calls-in-request"),
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """
        Endpoint for HTTP (strports, e.g. tcp:8080:interface=127.0.0.1 or
        ssl:8443:privateKey=key.pem:certKey=cert.pem).  Repeat to listen on
        several.  Default: tcp:8080:interface=127.0.0.1.
        """
        self["listen"].append(description)

    def postOptions(self) -> None:
        from twisted.internet import reactor

        listen = self["listen"] or [DEFAULT_LISTEN]
        for description in listen:
            try:
                serverFromString(reactor, description)
            except Exception as e:  # strports raises many kinds of errors
                raise usage.UsageError(f"--listen {description!r}: {e}") from None
        public_url = self["public-url"]
        if public_url is not None:
            parts = urlsplit(public_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise usage.UsageError("--public-url must look like https://host[:port]")
            if parts.path not in ("", "/") or parts.query or parts.fragment:
                raise usage.UsageError("--public-url takes only a scheme and authority")
            public_url = f"{parts.scheme}://{parts.netloc}"
        limits: dict[str, int] = {}
        for option, field_name in (
            ("max-size-upload", "max_size_upload"),
            ("max-size-request", "max_size_request"),
            ("max-concurrent-requests", "max_concurrent_requests"),
            ("max-calls-in-request", "max_calls_in_request"),
        ):
            if self[option] is not None:
                limits[field_name] = self[option]
        self.config = ServerConfig(
            listen=tuple(listen),
            data_dir=Path(self["data"]),
            public_url=public_url,
            limits=CoreLimits(**limits),
        )


def makeService(options: Options) -> IService:
    """
    The service ``twistd jmap`` runs.
    """
    from twisted.internet import reactor

    from jmap_twisted.service import make_service

    return make_service(options.config, reactor)
