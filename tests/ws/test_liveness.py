"""
Keeping WebSockets alive and dropping dead peers: the liveness wheel on
its own (fake sockets, a fake clock), then the server's sockets over a
loopback (Autobahn clients, which answer pings).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from twisted.internet.task import Clock

from jmap_twisted.config import WebSocketOptions
from jmap_twisted.ws.liveness import PING_FRAME, PINGS_AT_ONCE, LivenessWheel, Watched
from tests.ws.memory import Client, Connection

USING = ["urn:ietf:params:jmap:core"]


class Socket(Watched):
    """
    A socket whose peer answers each ping at once while ``answers``.
    """

    def __init__(self, clock: Clock, answers: bool = True, fails: bool = False) -> None:
        self.clock = clock
        self.answers = answers
        self.fails = fails
        self.pings: list[float] = []
        self.closed_at: float | None = None

    def send_ping(self) -> None:
        if self.fails:
            raise RuntimeError("this socket cannot write")
        self.pings.append(self.clock.seconds())
        if self.answers:
            self.liveness_heard = True

    def ping_unanswered(self) -> None:
        self.closed_at = self.clock.seconds()


def watched(
    count: int, interval: float = 30, timeout: float = 10, **kw: bool
) -> tuple[Clock, LivenessWheel, list[Socket]]:
    clock = Clock()
    wheel = LivenessWheel(clock, interval, timeout)
    sockets = [Socket(clock, **kw) for _ in range(count)]
    for socket in sockets:
        wheel.watch(socket)
    return clock, wheel, sockets


def test_pings_are_spread_over_the_interval() -> None:
    """
    Each socket is pinged once per interval, and no tick pings more than
    its share of the sockets (N sockets over the ticks of an interval).
    """
    clock, wheel, sockets = watched(600)
    ticks = round(30 / wheel.tick)
    for _ in range(3 * ticks):
        before = sum(len(s.pings) for s in sockets)
        clock.advance(wheel.tick)
        assert sum(len(s.pings) for s in sockets) - before <= -(-600 // ticks)
    assert all(len(s.pings) == 3 for s in sockets)
    assert all(
        abs(b - a - 30) < 1e-6 for s in sockets for a, b in zip(s.pings, s.pings[1:], strict=False)
    )
    assert all(s.closed_at is None for s in sockets)


def test_the_reactor_serves_other_work_between_batches_of_pings() -> None:
    """
    A tick's pings go out in batches; work that arrives meanwhile (a
    push) is done after the current batch, not after all of them.
    """
    clock, _, sockets = watched(3 * PINGS_AT_ONCE, interval=1)

    def pinged() -> int:
        return sum(len(s.pings) for s in sockets)

    served: list[int] = []

    def a_push_arrives() -> None:
        if not served:
            served.append(-1)
            clock.callLater(0, lambda: served.append(pinged()))

    for socket in sockets:
        send = socket.send_ping

        def ping(send: Callable[[], None] = send) -> None:
            send()
            a_push_arrives()

        socket.send_ping = ping  # type: ignore[method-assign]
    clock.advance(1)
    assert served == [-1, PINGS_AT_ONCE]  # after the first batch
    assert pinged() == 3 * PINGS_AT_ONCE
    assert not clock.getDelayedCalls()[1:]  # only the next tick is left


def test_a_silent_peer_is_dropped_within_interval_plus_timeout() -> None:
    """
    A socket whose peer stops answering is told so within one interval
    plus the timeout; those that answer are left alone.
    """
    clock, _, sockets = watched(60)
    clock.advance(45)
    silent = sockets[7]
    silent.answers = False
    stopped = clock.seconds()
    while silent.closed_at is None:
        clock.advance(1)
    assert silent.closed_at - stopped <= 30 + 10
    assert silent.closed_at - silent.pings[-1] == 10
    assert silent.liveness_slot == -1  # no longer watched
    clock.advance(300)
    assert [s for s in sockets if s.closed_at is not None] == [silent]


def test_anything_from_the_peer_counts_as_an_answer() -> None:
    """
    A peer that never answers pings but sends something else within the
    timeout after each stays open.
    """
    clock, _, (socket,) = watched(1, answers=False)
    for _ in range(200):
        clock.advance(1)
        if socket.pings and clock.seconds() - socket.pings[-1] == 5:
            socket.liveness_heard = True  # a request arrived
    assert len(socket.pings) >= 6
    assert socket.closed_at is None


def test_a_socket_that_raises_does_not_stop_the_others() -> None:
    """
    A socket whose ping raises is logged; the others on its slot and on
    the following ticks are still pinged, and it is dropped as silent.
    """
    clock, _, sockets = watched(90, fails=False)
    broken = sockets[0]
    broken.fails = True
    clock.advance(30)
    assert all(len(s.pings) == 1 for s in sockets[1:])
    clock.advance(30)
    assert all(len(s.pings) == 2 for s in sockets[1:])
    assert broken.closed_at is not None
    assert all(s.closed_at is None for s in sockets[1:])


def test_a_busy_reactor_catches_up_without_dropping_anyone() -> None:
    """
    After the reactor was blocked for longer than an interval, every
    socket is pinged once and given the full timeout to answer.
    """
    clock, _, sockets = watched(40, answers=False)
    clock.advance(100)
    assert all(len(s.pings) == 1 for s in sockets)
    assert all(s.closed_at is None for s in sockets)
    for socket in sockets:
        socket.liveness_heard = True
    clock.advance(10)
    assert all(s.closed_at is None for s in sockets)


def test_a_timeout_longer_than_the_interval_waits_for_the_first_ping() -> None:
    """
    With a timeout beyond the interval, a ping's answer is awaited for
    the whole timeout even though the next ping goes out meanwhile.
    """
    clock, _, (socket,) = watched(1, interval=5, timeout=12, answers=False)
    clock.advance(5)  # pinged
    clock.advance(11)
    socket.liveness_heard = True
    clock.advance(1)
    assert socket.closed_at is None
    for _ in range(40):
        clock.advance(1)
    assert socket.closed_at is not None


def test_the_wheel_runs_only_while_it_watches() -> None:
    """
    No timer is left once the last socket is forgotten, and an interval
    of 0 watches nothing.
    """
    clock, wheel, sockets = watched(3)
    assert wheel.running and len(clock.getDelayedCalls()) == 1
    for socket in sockets:
        wheel.forget(socket)
    assert not wheel.running and not clock.getDelayedCalls()
    clock, wheel, (socket,) = watched(1, interval=0)
    clock.advance(1000)
    assert not wheel.running and socket.pings == []


# -- over a loopback ------------------------------------------------------


def server_writes(c: Connection) -> list[bytes]:
    written: list[bytes] = []
    transport = c.server_transport
    write = transport.write

    def record(data: bytes) -> None:
        written.append(data)
        write(data)

    transport.write = record  # type: ignore[method-assign]
    return written


def test_a_client_that_answers_pings_stays_open() -> None:
    """
    The server pings an idle socket every interval with an empty ping; an
    Autobahn client's pongs keep it open for as long as it likes.
    """
    c = Connection(WebSocketOptions(ping_interval=30, ping_timeout=10))
    written = server_writes(c)
    for _ in range(200):
        c.clock.advance(1)
        c.flush()
    assert written.count(PING_FRAME) in (6, 7)
    assert c.client.closed_with is None
    assert not c.server_transport.disconnecting


def test_a_silent_client_is_dropped_and_the_others_served() -> None:
    """
    A client that stops answering is disconnected within the ping interval
    plus the timeout; another socket of the same server keeps working.
    """
    c = Connection(WebSocketOptions(ping_interval=30, ping_timeout=10))
    silent, silent_side = c.client, c.server_transport
    other = c.connect()
    c.clock.advance(45)
    c.flush()
    silent.transport.write = lambda data: None  # type: ignore[method-assign]
    stopped = c.clock.seconds()
    while not (silent_side.disconnecting or silent_side.disconnected):
        assert c.clock.seconds() - stopped <= 40
        c.clock.advance(1)
        c.flush()
    other.send_json({"@type": "Request", "id": "x", "using": USING, "methodCalls": []})
    c.flush()
    assert other.messages[-1]["requestId"] == "x"
    assert not c.server_transport.disconnecting


def test_requests_count_as_answers() -> None:
    """
    A client that never answers pings but sends a request every few
    seconds stays open.
    """
    c = Connection(WebSocketOptions(ping_interval=30, ping_timeout=10))
    c.client.onPing = lambda payload: None  # type: ignore[method-assign]
    for second in range(150):
        if second % 5 == 0:
            c.client.send_json(
                {"@type": "Request", "id": str(second), "using": USING, "methodCalls": []}
            )
        c.clock.advance(1)
        c.flush()
    assert not c.server_transport.disconnecting
    assert len(c.client.messages) == 30


def test_a_pong_among_other_frames_is_an_answer_too() -> None:
    """
    A pong that arrives together with a request (not on its own) is read
    by Autobahn, and the request is answered.
    """
    c = Connection(WebSocketOptions(ping_interval=30, ping_timeout=10), deflate=False)
    client: Client = c.client
    client.onPing = lambda payload: None  # type: ignore[method-assign]
    for _ in range(4):
        c.clock.advance(30)
        c.flush()
        buffered: list[bytes] = []
        send = client.transport.write
        client.transport.write = buffered.append  # type: ignore[method-assign]
        client.sendPong(b"")
        client.send_json({"@type": "Request", "id": "r", "using": USING, "methodCalls": []})
        client.transport.write = send  # type: ignore[method-assign]
        send(b"".join(buffered))
        c.flush()
    assert not c.server_transport.disconnecting
    assert [m["requestId"] for m in client.messages] == ["r"] * 4


def test_no_pings_with_interval_zero() -> None:
    """
    ``--ws-ping-interval 0`` sends no pings and never drops a quiet peer.
    """
    c = Connection(WebSocketOptions(ping_interval=0, ping_timeout=10))
    written = server_writes(c)
    c.client.transport.write = lambda data: None  # type: ignore[method-assign]
    for _ in range(10):
        c.clock.advance(60)
        c.flush()
    assert PING_FRAME not in written
    assert not c.server_transport.disconnecting


def test_an_idle_socket_keeps_no_handshake() -> None:
    """
    Once open, a socket holds neither the request's text and headers nor
    the options Autobahn copies per socket (they are on its class), and
    still answers after a push.
    """
    c = Connection()
    protocol = c.server_transport.protocol
    assert not hasattr(protocol, "http_headers")
    assert not hasattr(protocol, "http_request_data")
    assert "maxMessagePayloadSize" not in vars(protocol)
    c.client.send_json({"@type": "WebSocketPushEnable", "dataTypes": ["Email"]})
    c.flush()
    c.deliver()
    assert c.client.messages[-1]["@type"] == "StateChange"
    c.client.sendMessage(
        json.dumps({"@type": "Request", "id": "1", "using": USING, "methodCalls": []}).encode()
    )
    c.flush()
    assert c.client.messages[-1]["requestId"] == "1"
