"""
Settings of the WebSocket endpoint.
"""

from __future__ import annotations

from attrs import frozen


@frozen
class WebSocketOptions:
    """
    Settings of the WebSocket endpoint.

    :ivar ping_interval: seconds between server pings (0: none).
    :ivar ping_timeout: seconds to wait for the pong before closing.
    :ivar require_subprotocol: refuse clients that offer no subprotocol.
    :ivar deflate: accept permessage-deflate when offered.
    :ivar window_bits: the server's LZ77 window (9–15); smaller uses less
        memory per socket.
    :ivar no_context_takeover: compress each message on its own and free
        zlib state between messages (an idle socket then holds none); off,
        the compressor keeps its dictionary across messages for a better
        ratio at about 100 KiB more per socket.
    :ivar mem_level: zlib memory level (1–9).
    :ivar bind_tickets: a ticket may only be redeemed from the address that
        asked for it (off by default: mobile clients change networks).
    """

    ping_interval: float = 30.0
    ping_timeout: float = 10.0
    require_subprotocol: bool = False
    deflate: bool = True
    window_bits: int = 11
    no_context_takeover: bool = True
    mem_level: int = 4
    bind_tickets: bool = False
