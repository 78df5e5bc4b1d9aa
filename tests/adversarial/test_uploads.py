"""
Uploads are read only from a client that logged in and holds
one of its maxConcurrentUpload slots; anonymous bodies are refused on their
headers, unread.
"""

from __future__ import annotations

import socket
import threading

from tests.adversarial.harness import MIB, Server, raw_connection, well_behaved

BODY = 45 * MIB


def _upload(
    server: Server, authorization: bytes | None, sent: list[int], answers: list[bytes]
) -> None:
    head = (
        b"POST /jmap/upload/whatever/ HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n" % BODY
    )
    if authorization:
        head += b"Authorization: " + authorization + b"\r\n"
    connection = raw_connection(server, head + b"\r\n")
    chunk = b"x" * 65536
    total = 0
    try:
        connection.settimeout(20)
        while total < BODY:
            total += connection.send(chunk)
    except OSError:
        pass
    finally:
        sent.append(total)
        try:
            connection.settimeout(5)
            answers.append(connection.recv(4096))
        except OSError:
            answers.append(b"")
        connection.close()


def test_anonymous_uploads_are_refused_unread(server: Server) -> None:
    """
    20 anonymous 45 MiB uploads at once: each is answered 401 and closed
    after at most a few MiB (what socket buffers hold), the server grows
    by little, and alice is served meanwhile.
    """
    sent: list[int] = []
    answers: list[bytes] = []
    rss = server.rss()
    threads = [
        threading.Thread(target=_upload, args=(server, None, sent, answers)) for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    latency = well_behaved(server, "alice")
    for thread in threads:
        thread.join(timeout=120)
    growth = server.rss() - rss
    print(
        f"\nanonymous uploads: alice {latency:.2f} s, most read {max(sent) / MIB:.1f} MiB,"
        f" RSS +{growth / MIB:.0f} MiB"
    )
    assert latency < 10
    assert len(sent) == 20
    assert max(sent) < 16 * MIB, sent
    assert all(answer.startswith(b"HTTP/1.1 401") for answer in answers if answer), answers
    assert server.rss() - rss < 100 * MIB


def test_concurrent_uploads_are_bounded_before_their_bodies(server: Server) -> None:
    """
    A user's uploads past maxConcurrentUpload (4) are answered 429 on their
    headers, before their bodies are read.
    """
    authorization = server.basic("mallory").encode()
    account = server.account("mallory")
    holders: list[socket.socket] = []
    head = (
        b"POST /jmap/upload/%s/ HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
        b"Content-Length: %d\r\n\r\n" % (account.encode(), authorization, BODY)
    )
    try:
        for _ in range(4):
            connection = raw_connection(server, head + b"x" * 1000)
            holders.append(connection)
        extra = raw_connection(server, head)
        extra.settimeout(20)
        answer = extra.recv(4096)
        extra.close()
        assert answer.startswith(b"HTTP/1.1 429"), answer
        assert well_behaved(server, "alice") < 10
    finally:
        for connection in holders:
            connection.close()
