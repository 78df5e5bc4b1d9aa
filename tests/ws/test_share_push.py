"""
A sharee's WebSocket (RFC 8887) is pushed what they see of a shared
account, and follows revocations while it is open.
"""

from __future__ import annotations

from base64 import b64encode
from typing import Any

from jmap_twisted import rights
from jmap_twisted.service import ACCESS_POLL_INTERVAL
from tests.bus.test_shares_audience import done
from tests.support import CHEAP_HASHER
from tests.ws.memory import Client, Connection


class Shared(Connection):
    """
    Alice's server, with bob's socket open and pushing.
    """

    def __init__(self, **shares: str) -> None:
        super().__init__()
        self.bob = done(self.directory.create_user("bob", CHEAP_HASHER.hash("bpw")))
        done(self.mail.setup_account(self.account))
        self.roles: dict[str, str] = done(
            self.mail.read(self.account, lambda r: {str(m.role): m.id for m in r.mailboxes()})
        )
        for role, letters in shares.items():
            self.share(role, letters)
        self.bob_socket = self.bob_connects()

    def share(self, role: str, letters: str) -> None:
        self.directory.set_rights(self.account, self.roles[role], self.bob.id, letters, None)

    def bob_connects(self) -> Client:
        socket = self.connect(headers={"Authorization": "Basic " + b64encode(b"bob:bpw").decode()})
        socket.send_json({"@type": "WebSocketPushEnable", "dataTypes": None})
        self.flush()
        return socket

    def access_poll(self) -> None:
        self.clock.advance(ACCESS_POLL_INTERVAL)
        self.flush()

    def file(self, role: str) -> None:
        from tests.mailfactory import message

        def write(w: Any) -> None:
            w.add_email(message(subject="filed"), [self.roles[role]], [], 0.0)

        self.mail.write(self.account, write)
        self.flush()

    def bob_view_states(self) -> dict[str, str]:
        ((_, view),) = done(self.directory.shared_views_for_user(self.bob.id))
        mail_view = rights.mail_view(view)
        return done(
            self.mail.read(
                self.account,
                lambda r: {t: r.view_state(t, mail_view) for t in ("Mailbox", "Email", "Thread")},
            )
        )

    def bob_changes(self) -> list[dict[str, Any]]:
        return [m["changed"] for m in self.bob_socket.messages if m["@type"] == "StateChange"]


def test_a_sharee_socket_is_pushed_deliveries_into_the_shared_mailbox_only() -> None:
    """
    Bob's socket, alice's inbox shared with him, is pushed a delivery into
    it with his own view's states of alice's account; mail filed into her
    archive, which he does not see, pushes nothing.
    """
    c = Shared(inbox="lr")
    c.deliver("shared")
    (changed,) = c.bob_changes()
    states = c.bob_view_states()
    assert changed == {c.account: {**states, "EmailDelivery": states["Email"]}}
    c.file("archive")
    assert len(c.bob_changes()) == 1


def test_unsharing_while_the_socket_is_open_stops_its_pushes() -> None:
    """
    Once alice stops sharing her inbox with bob, his open socket is pushed
    nothing more about her account, before and after the access poll.
    """
    c = Shared(inbox="lr")
    c.deliver("before")
    assert len(c.bob_changes()) == 1
    c.share("inbox", "")
    c.deliver("unshared, before the poll")
    c.access_poll()
    c.deliver("unshared, after the poll")
    assert len(c.bob_changes()) == 1


def test_a_partial_revocation_pushes_the_new_states_at_once() -> None:
    """
    When alice stops sharing her archive with bob but keeps the inbox
    shared, his socket is pushed his view's new states at the access
    poll, before any mail arrives; mail into the archive then pushes
    nothing.
    """
    c = Shared(inbox="lr", archive="lr")
    c.share("archive", "")
    c.access_poll()
    (changed,) = c.bob_changes()
    states = c.bob_view_states()
    assert {t: changed[c.account][t] for t in states} == states
    c.file("archive")
    assert len(c.bob_changes()) == 1
