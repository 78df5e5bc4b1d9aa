"""
No exception in logging or in one connection's handling may
stop the server-wide loop that closes connections whose credentials were
revoked.
"""

from __future__ import annotations

import time

import requests

from tests.adversarial.harness import Server
from tests.integration.test_twistd import admin


def _token(server: Server, user: str) -> str:
    issued = admin(server.twistd.data, "token", "issue", user, "--name", "attack")
    assert issued.returncode == 0, issued.stderr
    return issued.stdout.strip()


def _revoke_all(server: Server, user: str) -> None:
    listed = admin(server.twistd.data, "token", "list", user)
    for line in listed.stdout.splitlines():
        if line.strip():
            assert admin(server.twistd.data, "token", "revoke", line.split()[0]).returncode == 0


def _closed_within(stream: requests.Response, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    try:
        for _ in stream.iter_content(chunk_size=None):
            if time.monotonic() > deadline:
                return False
    except requests.exceptions.ChunkedEncodingError:
        pass
    return True


def test_revocation_still_closes_streams_after_an_unloggable_request(server: Server) -> None:
    """
    An EventSource stream opened with a query the access log could not
    describe is closed when its token is revoked, and so, afterwards, is
    a WebSocket whose user's password changes: the access watch lives on.
    """
    token = _token(server, "mallory")
    stream = requests.get(
        server.base + f"/jmap/eventsource/?types=*&closeafter=no&ping=%ff&access_token={token}",
        stream=True,
        timeout=30,
    )
    if stream.status_code == 400:
        # The unreadable ping is refused before the stream starts; open it
        # with a readable one and the unloggable octets elsewhere.
        stream = requests.get(
            server.base + f"/jmap/eventsource/?types=*&x=%ff&access_token={token}",
            stream=True,
            timeout=30,
        )
    assert stream.status_code == 200
    time.sleep(1)
    _revoke_all(server, "mallory")
    assert _closed_within(stream, 20)

    with server.websocket("alice") as ws:
        time.sleep(1)
        done = admin(
            server.twistd.data, "user", "passwd", "alice", "--password-stdin", stdin="new-pw-9\n"
        )
        assert done.returncode == 0
        deadline = time.monotonic() + 20
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                ws.recv(timeout=1)
            except TimeoutError:
                continue
            except Exception:
                closed = True
        assert closed, "the WebSocket stayed open after the password changed"
    assert "Traceback" not in server.log()
