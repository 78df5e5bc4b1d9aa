"""
Idle half-open connections (slowloris) from many addresses must
not exhaust the server's descriptors, and one address cannot hold more than
its share; a user with credentials still gets in.  A request the access
log cannot describe still gets its answer, and its keep-alive connection
goes on.
"""

from __future__ import annotations

import resource
import socket
import time

import pytest

from tests.adversarial.harness import Server, raw_connection, well_behaved

#: Descriptors the attacked server may open: small enough that the attack
#: reaches it quickly, as 20,000 did for a default process.
SERVER_DESCRIPTORS = 1024


def _slow_client(server: Server, source: str) -> socket.socket | None:
    try:
        connection = socket.create_connection(
            ("127.0.0.1", server.port), timeout=5, source_address=(source, 0)
        )
        connection.sendall(b"GET /jmap/session HTTP/1.1\r\nHost: x\r\nX-a: ")
        return connection
    except OSError:
        return None


def test_slowloris_from_many_addresses_leaves_room_for_a_user(server: Server) -> None:
    """
    1,200 connections that send half a header and wait, from 24 loopback
    addresses, against a server allowed 1,024 descriptors: alice still
    connects and is served, and the server keeps below its descriptor
    limit.
    """
    resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (SERVER_DESCRIPTORS, SERVER_DESCRIPTORS))
    attackers: list[socket.socket] = []
    try:
        for index in range(1200):
            connection = _slow_client(server, f"127.0.1.{index % 24 + 1}")
            if connection is not None:
                attackers.append(connection)
        time.sleep(1)
        latencies = [well_behaved(server, "alice", timeout=30) for _ in range(3)]
        print(
            f"\nslowloris: {len(attackers)} connections, alice {latencies} s,"
            f" server descriptors {server.descriptors()}"
        )
        assert max(latencies) < 10, latencies
        assert server.descriptors() < SERVER_DESCRIPTORS - 64
    finally:
        for connection in attackers:
            connection.close()
    assert server.alive()


@pytest.mark.parametrize("server", [("--login-timeout", "3")], indirect=True)
def test_one_address_holds_a_bounded_share_and_only_for_a_while(server: Server) -> None:
    """
    One address gets at most its share of anonymous connections (64 by
    default), and they are closed at the login timeout.
    """
    before = server.descriptors()
    attackers = [c for c in (_slow_client(server, "127.0.2.1") for _ in range(300)) if c]
    try:
        time.sleep(0.5)
        assert server.descriptors() - before <= 64 + 8
        assert well_behaved(server, "alice", timeout=30) < 10
        deadline = time.monotonic() + 30  # the login timeout is 3 s
        while server.descriptors() - before > 8 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.descriptors() - before <= 8
    finally:
        for connection in attackers:
            connection.close()


def test_a_request_the_log_cannot_describe_is_answered(server: Server) -> None:
    """
    Non-ASCII octets in the query (and a secret in the ``Referer``) are
    logged escaped and redacted; the request is answered and the
    keep-alive connection goes on serving.
    """
    connection = raw_connection(
        server,
        b"GET /jmap/session?x=%ff&access_token=tok-SECRET-1 HTTP/1.1\r\nHost: x\r\n"
        b"Referer: https://evil.example/?ticket=tick-SECRET-2\r\n\r\n",
    )
    try:
        connection.settimeout(10)
        first = connection.recv(65536)
        assert first.startswith(b"HTTP/1.1 401")
        connection.sendall(b"GET /jmap/session HTTP/1.1\r\nHost: x\r\n\r\n")
        assert connection.recv(65536).startswith(b"HTTP/1.1 401")
    finally:
        connection.close()
    assert well_behaved(server, "alice") < 10
    server.stop()
    log = server.log()
    assert "SECRET" not in log
    assert "Traceback" not in log
