"""
A message arriving over LMTP is held once, whatever its shape and however
many recipients it has: a message of empty lines, or one sent to five
recipients, must not grow the server by many times its size, and another
user keeps being served while it is stored.
"""

from __future__ import annotations

import smtplib
import threading
from typing import Any

import pytest

from tests.adversarial.harness import MIB, Server, well_behaved

#: The delivery limit for these tests (the default is smaller).
MAX_SIZE = 32 * MIB
OPTIONS = ("--max-message-size", str(MAX_SIZE))


def _message(size: int, line: bytes) -> bytes:
    head = b"From: m@example.net\r\nSubject: large\r\n\r\n"
    return head + line * ((size - len(head)) // len(line))


def _lmtp(server: Server, recipients: list[str], message: bytes) -> list[int]:
    """
    Send ``message`` over LMTP; the reply code after the final dot for
    each recipient.
    """
    with smtplib.LMTP("127.0.0.1", server.lmtp_port, timeout=300) as client:
        code, _ = client.ehlo("mta.example.net")  # LHLO, for smtplib.LMTP
        assert code == 250
        code, _ = client.mail("m@example.net")
        assert code == 250
        for recipient in recipients:
            code, _ = client.rcpt(recipient)
            assert code == 250
        code, _ = client.data(message)
        return [code] + [client.getreply()[0] for _ in recipients[1:]]


def _attack_while_served(server: Server, recipients: list[str], message: bytes) -> dict[str, Any]:
    """
    Deliver ``message`` while alice logs in again and again; what it cost.
    """
    before = server.rss()
    latencies: list[float] = []
    done = threading.Event()

    def alice() -> None:
        while not done.is_set():
            latencies.append(well_behaved(server, "alice", timeout=60))
            done.wait(0.2)

    watcher = threading.Thread(target=alice, daemon=True)
    watcher.start()
    try:
        codes = _lmtp(server, recipients, message)
    finally:
        done.set()
        watcher.join(timeout=90)
    latencies.append(well_behaved(server, "alice", timeout=60))
    return {"codes": codes, "growth": server.peak_rss() - before, "latencies": latencies}


def _inbox_sizes(server: Server, name: str) -> list[int]:
    account = server.account(name)
    responses = server.api(
        name,
        ["Email/query", {"accountId": account}, "q"],
        [
            "Email/get",
            {
                "accountId": account,
                "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                "properties": ["size"],
            },
            "g",
        ],
    )
    return [email["size"] for email in responses[1][1]["list"]]


@pytest.mark.parametrize("server", [OPTIONS], indirect=True)
def test_a_message_of_empty_lines_is_held_once(server: Server) -> None:
    """
    A 6 MiB message of nothing but empty lines (three million of them) is
    delivered with 250, grows the server by less than three times its size
    plus 100 MiB, alice is served meanwhile, and the message is stored
    whole.
    """
    message = _message(6 * MIB, b"\r\n")
    outcome = _attack_while_served(server, ["mallory@example.com"], message)
    assert outcome["codes"] == [250]
    assert outcome["growth"] < 3 * len(message) + 100 * MIB, outcome["growth"] / MIB
    assert max(outcome["latencies"]) < 10, outcome["latencies"]
    [size] = _inbox_sizes(server, "mallory")
    assert size > len(message)  # with the trace headers


@pytest.mark.parametrize("server", [OPTIONS], indirect=True)
def test_a_message_to_five_recipients_is_held_once(server: Server) -> None:
    """
    A 16 MiB message of short lines to five recipients is stored for each
    (250 five times) while the server grows by less than three times the
    message's size plus 100 MiB, and alice is served meanwhile.
    """
    message = _message(16 * MIB, b"a" * 28 + b"\r\n")
    recipients = ["mallory@example.com"] * 4 + ["alice@example.com"]
    outcome = _attack_while_served(server, recipients, message)
    assert outcome["codes"] == [250] * 5
    assert outcome["growth"] < 3 * len(message) + 100 * MIB, outcome["growth"] / MIB
    assert max(outcome["latencies"]) < 10, outcome["latencies"]
    assert all(size > len(message) for size in _inbox_sizes(server, "mallory"))
    assert len(_inbox_sizes(server, "mallory")) == 4
    assert [size > len(message) for size in _inbox_sizes(server, "alice")] == [True]


@pytest.mark.parametrize("server", [("--max-message-size", str(MIB))], indirect=True)
def test_a_message_over_the_limit_still_gets_552(server: Server) -> None:
    """
    Past ``--max-message-size`` every recipient gets 552 and nothing is
    stored.
    """
    message = _message(2 * MIB, b"\r\n")
    with smtplib.LMTP("127.0.0.1", server.lmtp_port, timeout=300) as client:
        client.ehlo("mta.example.net")
        client.mail("m@example.net")
        client.rcpt("mallory@example.com")
        client.rcpt("alice@example.com")
        code, _ = client.data(message)
        assert [code, client.getreply()[0]] == [552, 552]
    assert _inbox_sizes(server, "mallory") == []
    assert well_behaved(server, "alice") < 10
