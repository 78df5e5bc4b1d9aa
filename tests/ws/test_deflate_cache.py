"""
One compression for a message many sockets send (no context takeover).
"""

from __future__ import annotations

import zlib

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


def test_state_changes_are_serialised_once_per_content() -> None:
    """
    Sockets sending the same StateChange share its serialised form; a
    different pushState or change is serialised on its own; the cache is
    bounded and skips very large pushStates.
    """
    import json

    from jmap_twisted.ws import session

    session._STATE_CHANGES.clear()

    def serialise(push_state: str, changed: dict[str, dict[str, str]]) -> bytes:
        value = {"@type": "StateChange", "changed": changed, "pushState": push_state}
        key = (push_state, tuple((a, tuple(sorted(t.items()))) for a, t in sorted(changed.items())))
        return session._serialised_state_change(key, value)

    one = serialise("1.a", {"A": {"Email": "2"}})
    assert serialise("1.a", {"A": {"Email": "2"}}) is one
    other = serialise("1.b", {"A": {"Email": "2"}})
    assert json.loads(other)["pushState"] == "1.b"
    assert json.loads(serialise("1.a", {"A": {"Email": "3"}}))["changed"] == {"A": {"Email": "3"}}
    serialise("x" * (session.STATE_CHANGE_CACHED_OCTETS + 1), {"A": {"Email": "2"}})
    assert len(session._STATE_CHANGES) == 3
    for n in range(session.STATE_CHANGE_CACHE + 5):
        serialise(f"1.{n}", {"A": {"Email": "1"}})
    assert len(session._STATE_CHANGES) == session.STATE_CHANGE_CACHE
