"""
``twistd jmap``: command-line options and the service they make.

This is the only module that touches the global reactor.  The PostgreSQL
store and the AMQP bus need extras (``postgresql``, ``amqp``); asking for
one that is not installed is a usage error naming it.
"""

from __future__ import annotations

import getopt
import resource
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from twisted.application.service import IService
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.logger import Logger
from twisted.python import usage

from jmap_twisted import configfile
from jmap_twisted.auth.throttle import LoginLimits
from jmap_twisted.config import (
    DEFAULT_DATA,
    DEFAULT_LISTEN,
    DEFAULT_LMTP,
    ConnectionLimits,
    OIDCOptions,
    ServerConfig,
    WebPushOptions,
    WebSocketOptions,
)
from jmap_twisted.core.limits import CoreLimits
from jmap_twisted.extras import MissingExtra, require
from jmap_twisted.interfaces import IJMAPReactor
from jmap_twisted.logformat import FORMATS, twistd_json_logger
from jmap_twisted.mail.sendlimits import SendLimits
from jmap_twisted.store.backends import StoreConfigurationError, StoreSettings, read_secret

_log = Logger()

if TYPE_CHECKING:
    from jmap_twisted.bus.amqp_node import AMQPSettings


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


def _log_format(value: str) -> str:
    if value not in FORMATS:
        raise usage.UsageError(f"--log-format is text or json, not {value!r}")
    return value


#: The connection limits' defaults, shown in the options' help.
_CONNECTIONS = ConnectionLimits()
#: The password checks' defaults, likewise.
_LOGIN = LoginLimits()


class Options(usage.Options):
    """
    Options of ``twistd jmap``.  Where the log goes is configured with
    twistd's own options (``--logfile``, ``--logger``); ``--log-format``
    chooses text or JSON lines.

    Every option can also be given in the TOML file named by ``--config``
    (keys are the long option names); options on the command line
    override the file's, a repeatable option's values replacing the
    file's array.
    """

    #: Options that may be given several times: arrays in the file.
    repeatable = frozenset({"listen", "domain", "allowed-origin", "oidc-issuer"})

    synopsis = "[options]"
    longdesc = (
        "Run a JMAP (RFC 8620/8621) server.  With no options: SQLite in ./jmap-data, "
        "HTTP on 127.0.0.1:8080.  Create users with jmap-admin."
    )

    optParameters = [
        [
            "config",
            None,
            None,
            "TOML file of these options (keys: the long option names); options given"
            " here override it.",
        ],
        [
            "log-format",
            None,
            "text",
            "text, or json: one JSON object per line (in twistd's log file or on standard output).",
            _log_format,
        ],
        ["data", "d", DEFAULT_DATA, "Data directory of the embedded store."],
        [
            "store",
            None,
            None,
            "postgresql://user@host:port/database of a store shared by several nodes"
            " (default: SQLite in the data directory).  No password here: use"
            " --store-password-file, $PGPASSWORD or ~/.pgpass.",
        ],
        ["store-password-file", None, None, "File whose first line is the database password."],
        [
            "store-pool-size",
            None,
            8,
            "Database connections (and threads).",
            _positive("store-pool-size"),
        ],
        [
            "query-timeout",
            None,
            20,
            "Seconds one read of an account's data (a query) may run before it is"
            " stopped and answered serverFail.",
            _positive("query-timeout"),
        ],
        [
            "bus",
            None,
            None,
            "amqp://user@host:port/vhost (or amqps://) of the RabbitMQ broker joining"
            " several nodes (default: one node, in-memory).  No password here: use"
            " --bus-password-file or $JMAP_AMQP_PASSWORD.",
        ],
        ["bus-password-file", None, None, "File whose first line is the broker password."],
        ["bus-prefix", None, "jmap", "Start of the broker's exchange and queue names."],
        [
            "bus-heartbeat",
            None,
            5,
            "Seconds between broker heartbeats.",
            _positive("bus-heartbeat"),
        ],
        ["node-id", None, None, "This node's name in the broker (default: random)."],
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
        [
            "max-connections",
            None,
            _CONNECTIONS.max_connections,
            "HTTP connections kept at once; past it the oldest not logged in is closed.",
            _positive("max-connections"),
        ],
        [
            "max-anonymous-per-address",
            None,
            _CONNECTIONS.max_anonymous_per_address,
            "Connections not (yet) logged in, per client address.",
            _positive("max-anonymous-per-address"),
        ],
        [
            "login-timeout",
            None,
            int(_CONNECTIONS.login_timeout),
            "Seconds a connection may stay open without logging in.",
            _positive("login-timeout"),
        ],
        [
            "http-idle-timeout",
            None,
            int(_CONNECTIONS.idle_timeout),
            "Seconds an HTTP connection may wait between requests, or between reads of one.",
            _positive("http-idle-timeout"),
        ],
        [
            "password-threads",
            None,
            _LOGIN.threads,
            "Password hashes at once (32 MiB each); as many more may wait, then logins get 503.",
            _positive("password-threads"),
        ],
        [
            "login-failures-per-address",
            None,
            _LOGIN.address_burst,
            "Failed logins a client address may make in a row before its password logins"
            " get 429 for a while; 0 turns the per-address limits off (behind a reverse proxy).",
            int,
        ],
        [
            "lmtp",
            None,
            DEFAULT_LMTP,
            "Endpoint of the LMTP listener for incoming mail.",
        ],
        ["smtp", None, None, "Endpoint of an inbound SMTP listener (local recipients only)."],
        [
            "metrics",
            None,
            None,
            "Endpoint of a listener serving Prometheus metrics at /metrics"
            " (e.g. tcp:9464:interface=127.0.0.1; default: none).",
        ],
        [
            "hostname",
            None,
            None,
            "This server's name, in greetings, Received headers and Message-IDs "
            "(default: the machine's fully qualified name).",
        ],
        [
            "max-message-size",
            None,
            50_000_000,
            "Largest message accepted by LMTP/SMTP, octets.",
            _positive("max-message-size"),
        ],
        [
            "max-recipients-per-submission",
            None,
            100,
            "Distinct envelope recipients of one EmailSubmission (more: tooManyRecipients).",
            _positive("max-recipients-per-submission"),
        ],
        [
            "max-recipients-per-hour",
            None,
            1000,
            "Recipients, local or remote, one user may send to in any hour (more: rateLimit).",
            _positive("max-recipients-per-hour"),
        ],
        [
            "smarthost",
            None,
            None,
            "Client endpoint of the relay for outgoing mail, e.g. tcp:host=smtp.example.com:port=587.",
        ],
        [
            "change-retention-days",
            None,
            30.0,
            "Days the change log is kept (clients offline longer resync fully).",
            float,
        ],
        [
            "ws-ping-interval",
            None,
            30,
            "Seconds between WebSocket pings (0: none).",
            int,
        ],
        ["ws-ping-timeout", None, 10, "Seconds to wait for a pong before closing.", int],
        [
            "ws-window-bits",
            None,
            11,
            "permessage-deflate window of the server (9-15; smaller uses less memory).",
            int,
        ],
        [
            "max-push-connections-per-user",
            None,
            50,
            "WebSockets and EventSource streams one user may hold open (more get 429).",
            _positive("max-push-connections-per-user"),
        ],
        [
            "push-stall-timeout",
            None,
            60,
            "Seconds an EventSource stream whose client does not read is kept.",
            _positive("push-stall-timeout"),
        ],
        [
            "smarthost-credentials",
            None,
            None,
            "File holding 'username:password' for the relay (kept off the command line).",
        ],
        [
            "push-ca-file",
            None,
            None,
            "PEM file of CA certificates trusted for web push services, beside the system's.",
        ],
        [
            "vapid-subject",
            None,
            None,
            "Contact for push service operators in VAPID signatures (mailto:... or https://...).",
        ],
        [
            "oidc-audience",
            None,
            None,
            "What OpenID Connect tokens must name in 'aud' for this server"
            " (required with --oidc-issuer).",
        ],
        [
            "oidc-user-claim",
            None,
            "email",
            "The OpenID Connect token claim holding the username.",
        ],
        [
            "oidc-client-id",
            None,
            None,
            "This server's client id at the OpenID providers, to introspect opaque tokens"
            " (with --oidc-client-secret-file).",
        ],
        [
            "oidc-client-secret-file",
            None,
            None,
            "File whose first line is the secret going with --oidc-client-id.",
        ],
        [
            "oidc-ca-file",
            None,
            None,
            "PEM file of CA certificates trusted for the OpenID providers, beside the system's.",
        ],
    ]

    optFlags = [
        ["no-lmtp", None, "Do not listen for LMTP."],
        [
            "oidc-create-users",
            None,
            "Create (without a password) the users OpenID Connect tokens name on first sight.",
        ],
        ["smarthost-require-tls", None, "Relay only over STARTTLS."],
        ["ws-no-deflate", None, "Do not accept permessage-deflate."],
        [
            "ws-context-takeover",
            None,
            "Keep each socket's compressor across messages (better ratio, ~100 KiB more per socket).",
        ],
        ["ws-require-subprotocol", None, "Refuse WebSocket clients that offer no subprotocol."],
        [
            "bind-tickets",
            None,
            "Redeem a WebSocket/EventSource ticket only from the address that asked for it.",
        ],
        [
            "push-allow-private",
            None,
            "Allow web push services on loopback and private addresses (tests, closed networks).",
        ],
        ["demo", None, "Serve the live-inbox demo page, a browser client, at /demo/."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["domain"] = []
        self["allowed-origin"] = []
        self["oidc-issuer"] = []
        #: Repeatable options whose values came from the configuration
        #: file: the first one given on the command line replaces them.
        self._from_file: set[str] = set()
        self._loading_file = False
        self._config_path: str | None = None

    def parseOptions(self, options: list[str] | None = None) -> None:
        """
        Apply the configuration file named by ``--config``, if any, then
        the command line over it.
        """
        argv = sys.argv[1:] if options is None else list(options)
        path = self._config_option(argv)
        if path is not None:
            self._config_path = path
            self._apply_file(path)
        super().parseOptions(argv)

    def _config_option(self, argv: list[str]) -> str | None:
        """
        The ``--config`` given in ``argv`` (the last, if several); a
        command line that does not parse is left for the full parse to
        report.
        """
        try:
            opts, _ = getopt.getopt(argv, self.shortOpt, self.longOpt)
        except getopt.error:
            return None
        paths = [value for name, value in opts if name == "--config"]
        return paths[-1] if paths else None

    def _apply_file(self, path: str) -> None:
        """
        Apply every key of the configuration file as its option, checked
        as on the command line.
        """
        try:
            table = configfile.read_table(path)
        except configfile.ConfigFileError as e:
            raise usage.UsageError(f"--config: {e}") from None
        flags = {name for name in self.longOpt if not name.endswith("=")}
        parameters = {name[:-1] for name in self.longOpt if name.endswith("=")}
        self._loading_file = True
        try:
            for key, value in table.items():
                try:
                    if key in flags - {"help", "version"}:
                        self[key] = int(configfile.flag_value(path, key, value))
                    elif key in self.repeatable:
                        for text in configfile.option_texts(path, key, value):
                            self._dispatch[key](key, text)
                        self._from_file.add(key)
                    elif key in parameters - {"config"} - self.repeatable:
                        text = configfile.option_text(path, key, value)
                        self._dispatch[key].dispatch(key, text)
                    else:
                        raise configfile.ConfigFileError(f"{path}: unknown option {key!r}")
                except configfile.ConfigFileError as e:
                    raise usage.UsageError(str(e)) from None
                except usage.UsageError as e:
                    raise usage.UsageError(f"{path}: {key}: {e}") from None
        finally:
            self._loading_file = False

    def _repeated(self, key: str) -> None:
        """
        Note that the command line gives repeatable option ``key``: its
        first value there replaces the configuration file's values.
        """
        if not self._loading_file and key in self._from_file:
            self._from_file.discard(key)
            self[key] = []

    def opt_oidc_issuer(self, issuer: str) -> None:
        """
        An OpenID Connect provider (its issuer identifier, https://...; plain
        http only on a loopback host) whose bearer tokens are accepted
        (repeat for several; needs --oidc-audience).
        """
        self._repeated("oidc-issuer")
        from jmap_twisted.auth.oidc_http import check_provider_url

        try:
            check_provider_url(issuer)
        except ValueError as e:
            raise usage.UsageError(f"--oidc-issuer: {e}") from None
        if urlsplit(issuer).query:
            raise usage.UsageError(f"--oidc-issuer {issuer!r} may not have a query")
        self["oidc-issuer"].append(issuer)

    def opt_allowed_origin(self, origin: str) -> None:
        """
        A browser origin (scheme://host[:port]) besides the server's own
        whose pages may use the server with a user's credentials: CORS, the
        WebSocket and EventSource (repeat for several).
        """
        self._repeated("allowed-origin")
        parts = urlsplit(origin)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or parts.username is not None
        ):
            raise usage.UsageError(
                f"--allowed-origin {origin!r} must look like https://host[:port]"
            )
        from jmap_twisted.origins import origin_of

        self["allowed-origin"].append(origin_of(origin))

    def opt_domain(self, domain: str) -> None:
        """
        A mail domain whose users are local (repeat for several).  Default:
        the hostname.
        """
        self._repeated("domain")
        self["domain"].append(domain.strip().lower())

    def opt_listen(self, description: str) -> None:
        """
        Endpoint for HTTP (strports, e.g. tcp:8080:interface=127.0.0.1 or
        ssl:8443:privateKey=key.pem:certKey=cert.pem).  Repeat to listen on
        several.  Default: tcp:8080:interface=127.0.0.1.
        """
        self._repeated("listen")
        self["listen"].append(description)

    def postOptions(self) -> None:
        try:
            self._check()
        except usage.UsageError as e:
            if self._config_path is None:
                raise
            raise usage.UsageError(f"{e} (options from {self._config_path})") from None
        self._choose_log_format()

    def _choose_log_format(self) -> None:
        """
        With ``--log-format json``, have twistd log JSON lines where it
        would log text.
        """
        parent = getattr(self, "parent", None)
        if self["log-format"] != "json" or parent is None:
            return  # text, or not run by twistd
        if parent.get("logger"):
            raise usage.UsageError("--log-format json and twistd's --logger: give only one")
        if parent.get("syslog"):
            raise usage.UsageError("--log-format json writes a file, not syslog")
        parent["logger"] = twistd_json_logger(parent.get("logfile"), bool(parent.get("nodaemon")))

    def _check(self) -> None:
        """
        Check the options together and build :attr:`config`.
        """
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
        for option in ("lmtp", "smtp", "metrics"):
            description = self[option]
            if description and not (option == "lmtp" and self["no-lmtp"]):
                try:
                    serverFromString(reactor, description)
                except Exception as e:
                    raise usage.UsageError(f"--{option} {description!r}: {e}") from None
        if self["smarthost"]:
            try:
                clientFromString(reactor, self["smarthost"])
            except Exception as e:
                raise usage.UsageError(f"--smarthost {self['smarthost']!r}: {e}") from None
        credentials = None
        if self["smarthost-credentials"]:
            if not self["smarthost"]:
                raise usage.UsageError("--smarthost-credentials needs --smarthost")
            credentials = _read_credentials(self["smarthost-credentials"])
        if self["change-retention-days"] <= 0:
            raise usage.UsageError("--change-retention-days must be positive")
        if self["push-ca-file"]:
            _check_ca_file(self["push-ca-file"], "push-ca-file")
        oidc = self._oidc()
        subject = self["vapid-subject"]
        if subject is not None and not (
            (subject.startswith("mailto:") and len(subject) > 7) or subject.startswith("https://")
        ):
            raise usage.UsageError("--vapid-subject must be a mailto: or https:// URI")
        if self["max-recipients-per-submission"] > self["max-recipients-per-hour"]:
            raise usage.UsageError(
                "--max-recipients-per-submission cannot exceed --max-recipients-per-hour"
            )
        if not 9 <= self["ws-window-bits"] <= 15:
            raise usage.UsageError("--ws-window-bits must be from 9 to 15")
        if self["ws-ping-interval"] < 0 or self["ws-ping-timeout"] < 1:
            raise usage.UsageError("--ws-ping-interval must be >= 0 and --ws-ping-timeout >= 1")
        if self["login-failures-per-address"] < 0:
            raise usage.UsageError("--login-failures-per-address must be at least 0")
        store, bus = self._cluster()
        hostname = self["hostname"] or socket.getfqdn()
        self.config = ServerConfig(
            listen=tuple(listen),
            data_dir=Path(self["data"]),
            public_url=public_url,
            allowed_origins=tuple(self["allowed-origin"]),
            limits=CoreLimits(**limits),
            connections=ConnectionLimits(
                max_connections=self["max-connections"],
                max_anonymous_per_address=self["max-anonymous-per-address"],
                login_timeout=float(self["login-timeout"]),
                idle_timeout=float(self["http-idle-timeout"]),
            ),
            login=LoginLimits(
                threads=self["password-threads"],
                per_client=self["password-threads"],
                address_burst=self["login-failures-per-address"],
            ),
            hostname=hostname,
            domains=tuple(self["domain"]) or (hostname.lower(),),
            lmtp_listen=None if self["no-lmtp"] else self["lmtp"],
            smtp_listen=self["smtp"],
            max_message_size=self["max-message-size"],
            smarthost=self["smarthost"],
            smarthost_credentials=credentials,
            smarthost_require_tls=bool(self["smarthost-require-tls"]),
            send_limits=SendLimits(
                max_recipients_per_submission=self["max-recipients-per-submission"],
                max_recipients_per_hour=self["max-recipients-per-hour"],
            ),
            change_retention_days=self["change-retention-days"],
            max_push_connections=self["max-push-connections-per-user"],
            push_stall_timeout=float(self["push-stall-timeout"]),
            websocket=WebSocketOptions(
                ping_interval=float(self["ws-ping-interval"]),
                ping_timeout=float(self["ws-ping-timeout"]),
                require_subprotocol=bool(self["ws-require-subprotocol"]),
                deflate=not self["ws-no-deflate"],
                window_bits=self["ws-window-bits"],
                no_context_takeover=not self["ws-context-takeover"],
                bind_tickets=bool(self["bind-tickets"]),
            ),
            webpush=WebPushOptions(
                ca_file=self["push-ca-file"],
                allow_private=bool(self["push-allow-private"]),
                vapid_subject=self["vapid-subject"],
            ),
            oidc=oidc,
            store=store,
            query_timeout=float(self["query-timeout"]),
            bus=bus,
            node_id=self["node-id"],
            demo=bool(self["demo"]),
            metrics_listen=self["metrics"],
        )

    def _oidc(self) -> OIDCOptions:
        """
        The OpenID Connect options, checked together, the client secret
        read from its file.
        """
        issuers = tuple(self["oidc-issuer"])
        client_id, secret_file = self["oidc-client-id"], self["oidc-client-secret-file"]
        if not issuers:
            for option in (
                "oidc-audience",
                "oidc-client-id",
                "oidc-client-secret-file",
                "oidc-ca-file",
                "oidc-create-users",
            ):
                if self[option]:
                    raise usage.UsageError(f"--{option} needs --oidc-issuer")
            return OIDCOptions()
        try:
            require("oidc", "jwt")
        except MissingExtra as e:
            raise usage.UsageError(f"--oidc-issuer: {e}") from None
        if not self["oidc-audience"]:
            raise usage.UsageError("--oidc-issuer needs --oidc-audience")
        if bool(client_id) != bool(secret_file):
            raise usage.UsageError("--oidc-client-id and --oidc-client-secret-file go together")
        if not self["oidc-user-claim"]:
            raise usage.UsageError("--oidc-user-claim may not be empty")
        if self["oidc-ca-file"]:
            _check_ca_file(self["oidc-ca-file"], "oidc-ca-file")
        secret = None
        if secret_file:
            try:
                secret = read_secret(secret_file)
            except StoreConfigurationError as e:
                raise usage.UsageError(f"--oidc-client-secret-file: {e}") from None
        return OIDCOptions(
            issuers=issuers,
            audience=self["oidc-audience"],
            user_claim=self["oidc-user-claim"],
            create_users=bool(self["oidc-create-users"]),
            client_id=client_id or None,
            client_secret=secret,
            ca_file=self["oidc-ca-file"],
        )

    def _secret(self, option: str) -> str | None:
        """
        The password in the file an option names, if it names one.
        """
        return read_secret(self[option]) if self[option] else None

    def _cluster(self) -> tuple[StoreSettings | None, AMQPSettings | None]:
        """
        The shared store and broker, if any, with passwords read from
        their files.
        """
        store = None
        if self["store"] or self["store-password-file"]:
            if not self["store"]:
                raise usage.UsageError("--store-password-file needs --store")
            try:
                store = StoreSettings.checked(
                    Path(self["data"]),
                    self["store"],
                    self._secret("store-password-file"),
                    self["store-pool-size"],
                )
            except (StoreConfigurationError, MissingExtra) as e:
                raise usage.UsageError(f"--store: {e}") from None
        bus = None
        if self["bus"] or self["bus-password-file"]:
            if not self["bus"]:
                raise usage.UsageError("--bus-password-file needs --bus")
            try:
                require("amqp", "txamqp")
            except MissingExtra as e:
                raise usage.UsageError(f"--bus: {e}") from None
            from twisted.internet import reactor

            from jmap_twisted.bus.amqp_node import AMQPSettings, ConfigurationError

            try:
                bus = AMQPSettings.from_url(
                    self["bus"],
                    self._secret("bus-password-file"),
                    self["bus-prefix"],
                    self["bus-heartbeat"],
                )
                clientFromString(reactor, bus.endpoint)
            except (StoreConfigurationError, ConfigurationError, ValueError) as e:
                raise usage.UsageError(f"--bus: {e}") from None
        return store, bus


def _read_credentials(path: str) -> tuple[str, str]:
    try:
        line = Path(path).read_text(encoding="utf-8").strip().splitlines()[0]
    except (OSError, IndexError, UnicodeDecodeError) as e:
        raise usage.UsageError(f"--smarthost-credentials: cannot read {path}: {e}") from None
    username, sep, password = line.partition(":")
    if not sep or not username:
        raise usage.UsageError("--smarthost-credentials: the file must hold 'username:password'")
    return username, password


def _raise_descriptor_limit() -> None:
    """
    Let the process open as many descriptors as its hard limit allows:
    connections are bounded below it (see :mod:`jmap_twisted.http.admission`).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # keep the soft limit; capacity follows it


def makeService(options: Options) -> IService:
    """
    The service ``twistd jmap`` runs.
    """
    from twisted.internet import reactor

    _raise_descriptor_limit()

    from jmap_twisted.service import make_service

    reactor.callWhenRunning(stop_on_signals, reactor)
    # Twisted types the global reactor as its common core only; the
    # reactors twistd installs provide everything IJMAPReactor names.
    return make_service(options.config, cast(IJMAPReactor, reactor))


def stop_on_signals(reactor: Any) -> None:
    """
    Stop on SIGTERM and SIGINT without logging inside the signal handler.

    Twisted's own handlers log "Received SIGTERM" from the handler: when
    the signal lands while the main thread is inside the log observer
    (whose lock is a pure-Python ``RLock``, not safe to re-enter from a
    signal handler mid-acquire), the server deadlocks and never stops.
    These handlers only hand the stop to the reactor, which logs it from
    its loop.  Installed once the reactor runs, in place of Twisted's own
    only (a process that handles the signals otherwise keeps its
    handlers).
    """

    def handler(signum: int, frame: object) -> None:
        reactor.callFromThread(_stop, reactor, signal.Signals(signum).name)

    for signum, twisted_handler in (
        (signal.SIGTERM, getattr(reactor, "sigTerm", None)),
        (signal.SIGINT, getattr(reactor, "sigInt", None)),
    ):
        if twisted_handler is not None and signal.getsignal(signum) == twisted_handler:
            signal.signal(signum, handler)


def _stop(reactor: Any, name: str) -> None:
    _log.info("Received {signal}, shutting down.", signal=name)
    if reactor.running:
        reactor.stop()


def _check_ca_file(path: str, option: str) -> None:
    """
    Refuse a CA file option (``--push-ca-file``, ``--oidc-ca-file``) whose
    file cannot be read or holds no PEM certificate.
    """
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise usage.UsageError(f"--{option} {path!r}: {e.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in text:
        raise usage.UsageError(f"--{option} {path!r} holds no PEM certificate")
