"""
The Autobahn protocol and factory for RFC 8887: frames in, calls into
:class:`~jmap_twisted.ws.session.WebSocketSession` out.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import (
    PerMessageDeflate,
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from jmap_twisted.config import WebSocketOptions
from jmap_twisted.core.runner import OctetBudget
from jmap_twisted.http.auth import CredentialProbe, credential_expiry
from jmap_twisted.interfaces import IPrincipal
from jmap_twisted.ws.session import WebSocketSession

if TYPE_CHECKING:
    from jmap_twisted.server import JMAPServer

log = Logger()

SUBPROTOCOL = "jmap"
UNSUPPORTED_DATA = 1003
POLICY_VIOLATION = 1008
#: The reason of the close when the socket's OpenID Connect token expires.
EXPIRED_REASON = "The access token of this connection expired: reconnect with a fresh one."
#: Unfinished messages (fragments received, the last one not yet) on all
#: the sockets of one user may hold at most this many times maxSizeRequest
#: octets; one socket at most maxSizeRequest.
UNFINISHED_BYTES_FACTOR = 8


class _SafeCall:
    def __init__(self, call: IDelayedCall) -> None:
        self._call = call

    def cancel(self) -> None:
        if self._call.active():
            self._call.cancel()


class _ClockTimer:
    """
    What Autobahn expects of ``factory._batched_timer``, on a given clock.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock

    def call_later(self, delay: float, function: Any, *args: Any, **kwargs: Any) -> _SafeCall:
        return _SafeCall(self._clock.callLater(delay, function, *args, **kwargs))


#: Messages compressed without context takeover, by window bits, memory
#: level and content: one StateChange pushed to many sockets of one account
#: is compressed once.  Bounded in entries and in the size of what is kept.
_DEFLATED: OrderedDict[tuple[int, int, bytes], bytes] = OrderedDict()
DEFLATE_CACHE_ENTRIES = 128
DEFLATE_CACHE_MAX_OCTETS = 8192


class LeanPerMessageDeflate(PerMessageDeflate):
    """
    permessage-deflate that frees its zlib state between messages in each
    direction where no context is taken over, instead of keeping it (as
    Autobahn does) until the next message.  An idle socket then holds no
    zlib state at all; each message is still compressed on its own.

    Without context takeover a message's compressed form depends only on
    its content and the negotiated parameters, so small messages sent in
    one piece (as ``sendMessage`` does) are compressed once for every
    socket that sends the same octets (:data:`_DEFLATED`).
    """

    _cached: bytes | None = None
    _first: bytes | None = None
    _key: tuple[int, int, bytes] | None = None
    _chunks = 0

    def _fresh_each_message(self) -> bool:
        return bool(
            self.server_no_context_takeover if self._is_server else self.client_no_context_takeover
        )

    def start_compress_message(self) -> None:
        self._cached = self._first = self._key = None
        self._chunks = 0
        if not self._fresh_each_message():
            super().start_compress_message()

    def compress_message_data(self, data: bytes) -> bytes:
        self._chunks += 1
        if not self._fresh_each_message():
            compressed: bytes = super().compress_message_data(data)
            return compressed
        if self._cached is not None:
            raise RuntimeError("a message answered from the cache cannot take more data")
        if self._chunks == 1 and len(data) <= DEFLATE_CACHE_MAX_OCTETS:
            bits = self.server_max_window_bits if self._is_server else self.client_max_window_bits
            key = (bits, self.mem_level, bytes(data))
            cached = _DEFLATED.get(key)
            if cached is not None:
                _DEFLATED.move_to_end(key)
                self._cached = cached
                return cached
            self._key = key
        else:
            self._key = None
        if self._compressor is None:
            super().start_compress_message()  # deferred until a message needs one
        first: bytes = super().compress_message_data(data)
        self._first = first if self._chunks == 1 else None
        return first

    def end_compress_message(self) -> bytes:
        if self._cached is not None:
            self._cached = None
            return b""  # the whole message went out with its data
        data: bytes = super().end_compress_message()
        if self._fresh_each_message():
            self._compressor = None
            if self._chunks == 1 and self._key is not None and self._first is not None:
                _DEFLATED[self._key] = self._first + data
                if len(_DEFLATED) > DEFLATE_CACHE_ENTRIES:
                    _DEFLATED.popitem(last=False)
        self._first = self._key = None
        return data

    def end_decompress_message(self) -> None:
        super().end_decompress_message()
        if self.client_no_context_takeover if self._is_server else self.server_no_context_takeover:
            self._decompressor = None


@implementer(IPushProducer)
class _Backpressure:
    """
    Told by the transport when its write buffer is full and when it has
    drained.  While it is full, pushes merge instead of being written, and
    the socket stops *reading*, so a client that sends requests without
    reading the responses cannot make the server buffer without bound.
    """

    def __init__(self, session: WebSocketSession, transport: Any) -> None:
        self.session = session
        self.transport = transport

    def pauseProducing(self) -> None:
        self.session.pause()
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()
        self.session.resume()

    def stopProducing(self) -> None:
        self.session.pause()


class JMAPWebSocketProtocol(WebSocketServerProtocol):
    """
    One client's WebSocket.  Authenticated before the handshake by
    :class:`~jmap_twisted.ws.resource.WebSocketUpgradeResource`.
    """

    factory: JMAPWebSocketFactory
    principal: IPrincipal
    probe: CredentialProbe
    access_seen: int | None = None
    session: WebSocketSession | None = None
    #: Octets of the message being received that are held (at most
    #: maxSizeRequest), counted in the factory's ``unfinished`` budget.
    _held = 0
    #: The message being received is past maxSizeRequest: the rest of it
    #: is read and dropped, and it is answered with the limit error.
    _dropping = False
    #: Closes the socket when its credentials expire (an OpenID Connect
    #: token's ``exp``).
    _expiry: IDelayedCall | None = None
    #: When the socket opened, on the factory's clock (``None`` before).
    _opened_at: float | None = None
    #: The client's address, as logged.
    _client = "-"

    def onConnect(self, request: Any) -> str | None:
        offered = list(request.protocols or [])
        if SUBPROTOCOL in offered:
            return SUBPROTOCOL
        if offered or self.factory.options.require_subprotocol:
            raise ConnectionDeny(
                ConnectionDeny.BAD_REQUEST, "This endpoint speaks the 'jmap' subprotocol."
            )
        return None

    def onOpen(self) -> None:
        if type(self._perMessageCompress) is PerMessageDeflate:
            # Autobahn builds its own class from the negotiated extension;
            # this one differs only in freeing zlib state between messages.
            self._perMessageCompress.__class__ = LeanPerMessageDeflate
        self.session = WebSocketSession(
            self.factory.server,
            self.principal,
            self._send_text,
            self.close_with,
            self.probe,
        )
        self.factory.opened(self)
        self._opened_at = self.factory.reactor.seconds()
        peer = self.transport.getPeer() if self.transport is not None else None
        self._client = str(getattr(peer, "host", "-"))
        log.info(
            "WebSocket opened for {user_id} from {client}",
            user_id=self.principal.user.id,
            transport="websocket",
            client=self._client,
            deflate=self._perMessageCompress is not None,
        )
        expires = credential_expiry(self.probe)
        if expires is not None:
            clock = self.factory.reactor
            self._expiry = clock.callLater(max(0.0, expires - clock.seconds()), self._expired)
        transport: Any = self.transport
        if getattr(transport, "producer", None) is not None:
            # twisted.web's channel, from before the takeover.
            transport.unregisterProducer()
        transport.registerProducer(_Backpressure(self.session, transport), True)
        if self.factory.server.access.version_seen != self.access_seen:
            # Access changed while this connection logged in: the watcher
            # may have looked before the connection was registered.
            changed = Deferred.fromCoroutine(self.session.access_changed())
            changed.addErrback(lambda f: log.failure("Re-checking a new connection failed", f))

    def _expired(self) -> None:
        self._expiry = None
        if self.state == self.STATE_OPEN:
            self.close_with(POLICY_VIOLATION, EXPIRED_REASON)

    def _send_text(self, data: bytes) -> None:
        self.sendMessage(data, isBinary=False)

    def close_with(self, code: int, reason: str) -> None:
        """
        Start the closing handshake with any code of RFC 6455 §7.4.1
        (Autobahn's ``sendClose`` allows applications only 1000 and
        3000–4999; the protocol codes 1001, 1003 and 1008 are ours to
        send too).  Nothing more is processed for the connection once it
        is closing.
        """
        if self.session is not None:
            self.session.connection_lost()
        self.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8")[:123], isReply=False)

    # Autobahn gathers a message's frames until the last one; these hooks
    # bound what it gathers to maxSizeRequest (Autobahn's own limit, twice
    # that, closes with 1009), and what the user's sockets gather together.

    def onMessageBegin(self, isBinary: bool) -> None:
        super().onMessageBegin(isBinary)
        self._give_back_held()
        self._dropping = False

    def onMessageFrameData(self, payload: bytes) -> None:
        if self._dropping:
            return
        size = len(payload)
        if self._held + size > self.factory.max_message:
            self._drop_message()
            return
        if not self.factory.unfinished.take(self.principal.user.id, size):
            self._drop_message()
            self.close_with(
                POLICY_VIOLATION,
                "This user's connections hold too many unfinished messages.",
            )
            return
        self._held += size
        super().onMessageFrameData(payload)

    def onMessageEnd(self) -> None:
        if not self._dropping:
            super().onMessageEnd()
            self._give_back_held()
            return
        self._dropping = False
        self.message_data = None  # type: ignore[assignment]
        if self.session is not None and self.state == self.STATE_OPEN:
            self.session.message_too_large()

    def _drop_message(self) -> None:
        self._dropping = True
        self._give_back_held()
        self.message_data = []
        self.frame_data = []

    def _give_back_held(self) -> None:
        if self._held:
            self.factory.unfinished.give(self.principal.user.id, self._held)
            self._held = 0

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            self.close_with(UNSUPPORTED_DATA, "JMAP messages are text.")
            return
        if self.session is not None and self.state == self.STATE_OPEN:
            self.session.message_received(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._give_back_held()
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None
        self.factory.closed(self)
        if self.session is not None:
            self.session.connection_lost()
            self.session = None
        if self._opened_at is not None:
            self._log_close(code)
            self.factory.server.metrics.websocket_closed(self.trafficStats)
            self._opened_at = None

    def _log_close(self, code: int | None) -> None:
        """
        Log the socket's end: how long it was open, the data frames and
        octets each way (the octets before and after permessage-deflate),
        and the close codes.
        """
        assert self._opened_at is not None
        stats = self.trafficStats
        log.info(
            "WebSocket closed for {user_id} from {client} after {duration:.1f} s"
            " (code {close_code}, frames in {frames_in}, out {frames_out})",
            user_id=self.principal.user.id,
            transport="websocket",
            client=self._client,
            duration=self.factory.reactor.seconds() - self._opened_at,
            close_code=code,
            local_close_code=self.localCloseCode,
            clean=bool(self.wasClean),
            frames_in=stats.incomingWebSocketFrames,
            frames_out=stats.outgoingWebSocketFrames,
            messages_in=stats.incomingWebSocketMessages,
            messages_out=stats.outgoingWebSocketMessages,
            octets_in=stats.incomingOctetsAppLevel,
            octets_in_deflated=stats.incomingOctetsWebSocketLevel,
            octets_out=stats.outgoingOctetsAppLevel,
            octets_out_deflated=stats.outgoingOctetsWebSocketLevel,
        )


class JMAPWebSocketFactory(WebSocketServerFactory):
    """
    Builds the protocols, holding the server, the settings and the open
    sockets.
    """

    protocol = JMAPWebSocketProtocol  # type: ignore[assignment]

    def __init__(
        self, server: JMAPServer, options: WebSocketOptions, reactor: IReactorTime
    ) -> None:
        super().__init__(protocols=[SUBPROTOCOL], reactor=reactor)
        # Autobahn schedules pings and handshake timeouts with txaio's
        # global loop; schedule them on the injected reactor instead.
        self._batched_timer = _ClockTimer(reactor)
        self.server = server
        self.options = options
        self.connections: set[JMAPWebSocketProtocol] = set()
        self.next_principal: tuple[IPrincipal, CredentialProbe, int | None] | None = None
        limit = server.config.limits.max_size_request
        #: The most one socket holds of a message being received.
        self.max_message = limit
        #: What the sockets of each user hold of unfinished messages.
        self.unfinished = OctetBudget(UNFINISHED_BYTES_FACTOR * limit)
        self.setProtocolOptions(
            # Far beyond maxSizeRequest (or a decompression bomb): close
            # with 1009; between the two, the session answers with the
            # limit error.  Autobahn counts the inflated size.
            maxMessagePayloadSize=2 * limit,
            maxFramePayloadSize=2 * limit,
            autoPingInterval=options.ping_interval,
            autoPingTimeout=options.ping_timeout,
            openHandshakeTimeout=10,
            # Send a close frame with the reason (1009, 1002, …) rather than
            # dropping the TCP connection silently.
            failByDrop=False,
            closeHandshakeTimeout=5,
            perMessageCompressionAccept=self._accept_compression,
        )

    def _accept_compression(self, offers: list[Any]) -> PerMessageDeflateOfferAccept | None:
        if not self.options.deflate:
            return None
        for offer in offers:
            if isinstance(offer, PerMessageDeflateOffer):
                # The server may always compress with a smaller window than
                # the client can inflate; it must honour what the client
                # asks for.
                bits = self.options.window_bits
                if offer.request_max_window_bits:
                    bits = min(bits, offer.request_max_window_bits)
                return PerMessageDeflateOfferAccept(
                    offer,
                    # Ask the client not to keep context either, so the
                    # server's inflater can be freed between messages too.
                    request_no_context_takeover=bool(
                        self.options.no_context_takeover and offer.accept_no_context_takeover
                    ),
                    no_context_takeover=bool(
                        offer.request_no_context_takeover or self.options.no_context_takeover
                    ),
                    window_bits=bits,
                    mem_level=self.options.mem_level,
                    max_message_size=2 * self.server.config.limits.max_size_request,
                )
        return None

    def buildProtocol(self, addr: Any) -> Any:
        protocol: Any = super().buildProtocol(addr)
        assert self.next_principal is not None, "the upgrade resource authenticates first"
        protocol.principal, protocol.probe, protocol.access_seen = self.next_principal
        return protocol

    def opened(self, protocol: JMAPWebSocketProtocol) -> None:
        self.connections.add(protocol)
        if protocol.session is not None:
            self.server.push_connections.add(protocol.session)

    def closed(self, protocol: JMAPWebSocketProtocol) -> None:
        self.connections.discard(protocol)
        self.server.push_connections.discard(protocol.session)
