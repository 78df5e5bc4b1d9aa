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
from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from zope.interface import implementer

from jmap_twisted.config import WebSocketOptions
from jmap_twisted.core.runner import OctetBudget
from jmap_twisted.http.auth import CredentialProbe, credential_expiry
from jmap_twisted.interfaces import IPrincipal
from jmap_twisted.ws.liveness import (
    PING_FRAME,
    PONG_FRAME_LENGTH,
    PONG_FRAME_START,
    LivenessWheel,
)
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


#: The last message sent with ``_send_shared``, by compression parameters
#: (window bits and memory level; ``(0, 0)`` uncompressed): the message,
#: its payload's size and its whole frame.
_FRAMED: dict[tuple[int, int], tuple[bytes, int, bytes]] = {}


def write_now(transport: Any, data: bytes) -> None:
    """
    Write ``data`` to a connection, sending it at once when it is a plain
    TCP connection with nothing waiting to be sent: the reactor then does
    not register the socket for writing and send it a moment later (two
    ``epoll_ctl`` calls and a pass of its loop saved per socket, what a
    push to thousands of sockets costs most).  Anything not sent at once,
    and every other kind of connection, goes through ``transport.write``.
    """
    raw = transport.transport if isinstance(transport, ProtocolWrapper) else transport
    if (
        type(raw) is tcp.Server
        and not raw.TLS
        and raw.connected
        and not raw.disconnecting
        and not raw._writeDisconnected
        and not raw._tempDataBuffer
        and raw.offset == len(raw.dataBuffer)
    ):
        sent = raw.writeSomeData(data)
        if isinstance(sent, int):
            if sent == len(data):
                return
            data = data[sent:]
    transport.write(data)


def _frame_header(size: int, compressed: bool) -> bytes:
    """
    The header of an unmasked, unfragmented text frame (RFC 6455 §5.2),
    with RSV1 set for a compressed message (RFC 7692 §6).
    """
    first = 0xC1 if compressed else 0x81
    if size < 126:
        return bytes((first, size))
    if size < 65536:
        return bytes((first, 126)) + size.to_bytes(2, "big")
    return bytes((first, 127)) + size.to_bytes(8, "big")


@implementer(IPushProducer)
class _Backpressure:
    """
    Told by the transport when its write buffer is full and when it has
    drained.  While it is full, pushes merge instead of being written, and
    the socket stops *reading*, so a client that sends requests without
    reading the responses cannot make the server buffer without bound.
    """

    __slots__ = ("session", "transport")

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


class _SendQueue(list[Any]):
    """
    What Autobahn queues for chopped or synchronous writes (which this
    server never asks for): empty, and smaller than the ``deque`` Autobahn
    gives every socket.
    """

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


#: What Autobahn keeps of the opening handshake and no longer needs once
#: the socket is open: the request's text and parsed headers, the offered
#: extensions and subprotocols, the response, the transport's details
#: (for WAMP), and the observable events (fired only by the ``onMessage``
#: this class replaces).
_HANDSHAKE_LEFTOVERS = frozenset(
    {
        "_results",
        "_transport_details",
        "_valid_events",
        "http_headers",
        "http_request_data",
        "http_request_host",
        "http_request_params",
        "http_request_path",
        "http_request_uri",
        "http_response_data",
        "http_status_line",
        "websocket_extensions",
        "websocket_extensions_in_use",
        "websocket_origin",
        "websocket_protocols",
        "_wskey",
    }
)


class JMAPWebSocketProtocol(WebSocketServerProtocol):
    """
    One client's WebSocket.  Authenticated before the handshake by
    :class:`~jmap_twisted.ws.resource.WebSocketUpgradeResource`; kept
    alive, and closed when its peer is gone, by the factory's
    :class:`~jmap_twisted.ws.liveness.LivenessWheel`.
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
    # What the liveness wheel keeps on the socket (see Watched).
    liveness_heard = True
    liveness_awaiting = False
    liveness_slot = -1

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
            send_shared=self._send_shared,
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
        self.factory.liveness.watch(self)
        self._shed_handshake()
        if self.factory.server.access.version_seen != self.access_seen:
            # Access changed while this connection logged in: the watcher
            # may have looked before the connection was registered.
            changed = Deferred.fromCoroutine(self.session.access_changed())
            changed.addErrback(lambda f: log.failure("Re-checking a new connection failed", f))

    def _shed_handshake(self) -> None:
        """
        Drop what the opening handshake left behind, and rebuild the
        attributes' dictionary, which never shrinks by itself: an idle
        socket keeps only what it uses.
        """
        kept = {k: v for k, v in vars(self).items() if k not in _HANDSHAKE_LEFTOVERS}
        kept["send_queue"] = _SendQueue()
        self.__dict__ = kept

    # Liveness (see jmap_twisted.ws.liveness): any frame from the peer
    # shows it is there; the answer to a ping, when it comes on its own,
    # needs nothing more.

    def dataReceived(self, data: bytes) -> None:
        self.liveness_heard = True
        if (
            len(data) == PONG_FRAME_LENGTH
            and data.startswith(PONG_FRAME_START)
            and self.state == self.STATE_OPEN
            and not self.data
            and self.current_frame is None
        ):
            return
        super().dataReceived(data)

    def send_ping(self) -> None:
        if self.state != self.STATE_OPEN:
            return
        if self.send_queue:
            self.sendData(PING_FRAME)  # behind what Autobahn queued
        else:
            write_now(self.transport, PING_FRAME)

    def ping_unanswered(self) -> None:
        # As Autobahn's own ping timeout: the peer is gone, abort.
        self.onAutoPingTimeout()

    def _expired(self) -> None:
        self._expiry = None
        if self.state == self.STATE_OPEN:
            self.close_with(POLICY_VIOLATION, EXPIRED_REASON)

    def _send_text(self, data: bytes) -> None:
        self.sendMessage(data, isBinary=False)

    def _send_shared(self, data: bytes) -> None:
        """
        Send a text message that many sockets send one after another (a
        StateChange to the sockets of an account): the same ``data``
        object is framed (and compressed, without context takeover) once
        per set of compression parameters, and each socket only writes
        the frame.  Sockets in any other situation send it as usual.
        """
        compress = self._perMessageCompress
        if compress is None:
            params: tuple[int, int] = (0, 0)
        elif type(compress) is LeanPerMessageDeflate and compress._fresh_each_message():
            params = (compress.server_max_window_bits, compress.mem_level)
        else:
            self.sendMessage(data, isBinary=False)
            return
        if self.state != self.STATE_OPEN or self.send_queue:
            self.sendMessage(data, isBinary=False)
            return
        framed = _FRAMED.get(params)
        if framed is not None and framed[0] is data:
            payload_size, frame = framed[1], framed[2]
        else:
            payload = data
            if compress is not None:
                compress.start_compress_message()
                payload = compress.compress_message_data(data) + compress.end_compress_message()
            payload_size = len(payload)
            frame = _frame_header(payload_size, compress is not None) + payload
            _FRAMED[params] = (data, payload_size, frame)
        stats = self.trafficStats
        stats.outgoingWebSocketMessages += 1
        stats.outgoingWebSocketFrames += 1
        stats.outgoingOctetsAppLevel += len(data)
        stats.outgoingOctetsWebSocketLevel += payload_size
        stats.outgoingOctetsWireLevel += len(frame)
        write_now(self.transport, frame)

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
            self.current_frame_masker = None  # the unmasker of the last frame
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
        self.factory.liveness.forget(self)
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
        # Autobahn schedules handshake timeouts with txaio's global loop;
        # schedule them on the injected reactor instead.
        self._batched_timer = _ClockTimer(reactor)
        self.server = server
        self.options = options
        #: Pings the open sockets and closes those whose peer is gone
        #: (instead of Autobahn's two timers per socket).
        self.liveness = LivenessWheel(reactor, options.ping_interval, options.ping_timeout)
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
            openHandshakeTimeout=10,
            # Send a close frame with the reason (1009, 1002, …) rather than
            # dropping the TCP connection silently.
            failByDrop=False,
            closeHandshakeTimeout=5,
            perMessageCompressionAccept=self._accept_compression,
        )
        # Autobahn copies every option into each socket's attributes
        # unless its class has them: give this factory's sockets a class
        # that has.
        options_of_sockets = {name: getattr(self, name) for name in self.protocol.CONFIG_ATTRS}
        self.protocol = type(  # type: ignore[assignment]
            JMAPWebSocketProtocol.__name__,
            (JMAPWebSocketProtocol,),
            {"__module__": __name__, "__qualname__": JMAPWebSocketProtocol.__qualname__}
            | options_of_sockets,
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
