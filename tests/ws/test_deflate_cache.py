"""
One compression for a message many sockets send (no context takeover).
"""

from __future__ import annotations

import zlib
from typing import Any

from jmap_twisted.ws import protocol
from jmap_twisted.ws.protocol import LeanPerMessageDeflate


def deflater(no_context_takeover: bool, bits: int = 15) -> LeanPerMessageDeflate:
    return LeanPerMessageDeflate(True, no_context_takeover, no_context_takeover, bits, bits, 8)


def send(extension: LeanPerMessageDeflate, payload: bytes) -> bytes:
    extension.start_compress_message()
    data = extension.compress_message_data(payload)
    return data + extension.end_compress_message()


def inflate(data: bytes, bits: int = 15) -> bytes:
    return zlib.decompressobj(-bits).decompress(data + b"\x00\x00\xff\xff")


def test_same_message_is_compressed_once_and_stays_correct() -> None:
    protocol._DEFLATED.clear()
    payload = b'{"@type":"StateChange","changed":{"a":{"Email":"7"}},"pushState":"1.x"}'
    first, second = deflater(True), deflater(True)
    one = send(first, payload)
    assert len(protocol._DEFLATED) == 1
    two = send(second, payload)
    assert two == one and inflate(two) == payload
    assert second._compressor is None  # never needed one
    other = send(second, payload + b" ")
    assert inflate(other) == payload + b" " and len(protocol._DEFLATED) == 2
    narrow = send(deflater(True, bits=9), payload)
    assert inflate(narrow, 9) == payload and len(protocol._DEFLATED) == 3


def test_context_takeover_and_large_messages_are_not_cached() -> None:
    protocol._DEFLATED.clear()
    keeping = deflater(False)
    payload = b"x" * 100
    assert inflate(send(keeping, payload)) == payload
    big = b"y" * (protocol.DEFLATE_CACHE_MAX_OCTETS + 1)
    assert inflate(send(deflater(True), big)) == big
    assert len(protocol._DEFLATED) == 0


def test_the_cache_is_bounded() -> None:
    protocol._DEFLATED.clear()
    extension = deflater(True)
    for n in range(protocol.DEFLATE_CACHE_ENTRIES + 10):
        send(extension, b"message %d" % n)
    assert len(protocol._DEFLATED) == protocol.DEFLATE_CACHE_ENTRIES


def test_one_state_change_is_serialised_and_framed_once_for_an_accounts_sockets(
    monkeypatch: Any,
) -> None:
    """
    A delivery to an account with several push sockets: every socket
    gets the same frame octets, serialised once and compressed once for
    all of them; each client inflates the right StateChange, and a
    socket whose pushes are merging (its transport full) still gets the
    merged StateChange with the latest states once it drains.
    """
    from jmap_twisted.core import jsonio
    from jmap_twisted.ws import session
    from tests.ws.memory import Connection

    c = Connection()
    clients = [c.client] + [c.connect() for _ in range(4)]
    for client in clients:
        client.send_json({"@type": "WebSocketPushEnable", "dataTypes": ["Email"]})
    c.flush()
    written: list[bytes] = []
    dumped: list[object] = []
    real_dumps = jsonio.dumps
    monkeypatch.setattr(
        session.jsonio, "dumps", lambda value: dumped.append(value) or real_dumps(value)
    )
    transports = [pump.serverIO for pump in c.pumps]
    for transport in transports:
        real_write = transport.write
        monkeypatch.setattr(
            transport, "write", lambda data, w=real_write: written.append(data) or w(data)
        )
    c.deliver("one")
    state = c.mail.read(c.account, lambda r: r.state("Email")).result
    assert len(written) == len(clients) and len(set(written)) == 1
    assert written[0][0] == 0xC1  # FIN, RSV1 (compressed), text
    assert sum(1 for value in dumped if value.get("@type") == "StateChange") == 1
    for client in clients:
        (message,) = client.messages
        assert message["changed"] == {c.account: {"Email": state}}
    assert len({client.messages[0]["pushState"] for client in clients}) == 1
    slow = transports[2].producer
    slow.pauseProducing()
    c.deliver("two")
    c.deliver("three")
    slow.resumeProducing()
    c.flush()
    latest = c.mail.read(c.account, lambda r: r.state("Email")).result
    assert [len(client.messages) for client in clients] == [3, 3, 2, 3, 3]
    assert clients[2].messages[-1] == clients[0].messages[-1]
    assert clients[0].messages[-1]["changed"] == {c.account: {"Email": latest}}
