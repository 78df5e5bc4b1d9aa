"""
Web push delivery (RFC 8620 §7.2, RFC 8030, RFC 8291, RFC 8292): the
request one push message makes, what a push service's answer means, and
the dispatcher that turns StateChanges into POSTs per subscription.
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import pytest
from attrs import define, evolve
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface.verify import verifyObject

from jmap_twisted.bus.deadletters import MemoryDeadLetters
from jmap_twisted.bus.events import AccountKey, StateChange
from jmap_twisted.bus.memory import InMemoryEventBus
from jmap_twisted.interfaces import IEventListener
from jmap_twisted.push.webpush.crypto import VapidKey, decode_b64url
from jmap_twisted.push.webpush.dispatcher import WebPushDispatcher
from jmap_twisted.push.webpush.sender import (
    FAILED,
    GONE,
    MAX_MESSAGE,
    OK,
    RETRY_AFTER,
    TOO_LARGE,
    Outcome,
    WebPushSender,
    topic_for,
)
from jmap_twisted.records import PushSubscriptionRecord
from jmap_twisted.store.memory.directory import MemoryDirectory
from jmap_twisted.store.memory.push import MemoryPushSubscriptions

try:
    import http_ece
except ImportError:  # pragma: no cover - the test extra brings it
    http_ece = None

KEY = VapidKey.generate()
SUBJECT = "mailto:postmaster@example.org"
#: The capability part of the push URL, which must never be logged.
SECRET = "gAAAAABk-secret-capability"
URL = f"https://push.example/wpush/v2/{SECRET}"
NOW = 1_700_000_000.0


def result_of(d: Deferred[Any]) -> Any:
    """
    The result of a Deferred that has fired.
    """
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def subscription(
    id: str = "sub1",
    user_id: str = "u1",
    url: str = URL,
    keys: tuple[bytes, bytes] | None = None,
    verified: bool = True,
    expires: float | None = None,
    types: tuple[str, ...] | None = None,
) -> PushSubscriptionRecord:
    return PushSubscriptionRecord(
        id=id,
        user_id=user_id,
        device_client_id="device-" + id,
        url=url,
        p256dh=None if keys is None else keys[0],
        auth=None if keys is None else keys[1],
        verification_code="code-" + id,
        verified=verified,
        expires=expires,
        types=types,
        created=NOW - 60,
    )


def user_agent_keys() -> tuple[ec.EllipticCurvePrivateKey, tuple[bytes, bytes]]:
    """
    A browser's key pair and auth secret for one subscription.
    """
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return private, (public, b"0123456789abcdef")


# -- a push service


@define
class Seen:
    path: str
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name.encode("ascii"))
        return None if values is None else values[-1].decode("latin-1")


class PushService(Resource):
    """
    A push service recording every request and answering each with the
    next of :attr:`answers` (201 when none is left); with :attr:`hold`,
    it does not answer at all.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Seen] = []
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.hold = False

    def render_POST(self, request: Request) -> bytes | int:
        self.seen.append(Seen(request.uri.decode(), request.requestHeaders, request.content.read()))
        if self.hold:
            return NOT_DONE_YET
        status, headers = self.answers.pop(0) if self.answers else (201, {})
        request.setResponseCode(status)
        for name, value in headers.items():
            request.setHeader(name, value)
        return b'{"message": "answered"}'


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(NOW)
    return clock


@pytest.fixture
def service() -> PushService:
    return PushService()


@pytest.fixture
def sender(service: PushService, clock: Clock) -> WebPushSender:
    return WebPushSender(RequestTraversalAgent(service), KEY, SUBJECT, clock)


def jwt_claims(authorization: str) -> dict[str, Any]:
    """
    The claims of a ``vapid`` Authorization header, after checking its
    ES256 signature against the server's key.
    """
    scheme, _, params = authorization.partition(" ")
    assert scheme == "vapid"
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    assert fields["k"] == KEY.application_server_key()
    header, claims, signature = fields["t"].split(".")
    raw = decode_b64url(signature)
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), KEY.public_raw())
    public.verify(
        encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
        f"{header}.{claims}".encode(),
        ec.ECDSA(hashes.SHA256()),
    )
    assert json.loads(decode_b64url(header)) == {"typ": "JWT", "alg": "ES256"}
    decoded: dict[str, Any] = json.loads(decode_b64url(claims))
    return decoded


# -- the sender


def test_plain_message(sender: WebPushSender, service: PushService) -> None:
    """
    Without keys the message is JSON as such, with its TTL, normal
    urgency, and a VAPID token for the push service's origin signed by the
    server's key, carrying the subject.
    """
    outcome = result_of(sender.send(subscription(), {"@type": "StateChange", "changed": {}}))
    assert outcome == Outcome(OK, 201)
    [seen] = service.seen
    assert seen.path == f"/wpush/v2/{SECRET}"
    assert json.loads(seen.body) == {"@type": "StateChange", "changed": {}}
    assert seen.header("Content-Type") == "application/json; charset=utf-8"
    assert seen.header("Content-Encoding") is None
    assert seen.header("TTL") == "3600"
    assert seen.header("Urgency") == "normal"
    assert seen.header("Topic") is None
    claims = jwt_claims(seen.header("Authorization") or "")
    assert claims == {"aud": "https://push.example", "exp": int(NOW) + 12 * 3600, "sub": SUBJECT}


def test_encrypted_message(sender: WebPushSender, service: PushService) -> None:
    """
    With the subscription's keys the body is an ``aes128gcm`` record the
    browser decrypts (RFC 8291), sent as octets.
    """
    private, keys = user_agent_keys()
    payload = {"@type": "StateChange", "changed": {"A1": {"Email": "7"}}}
    assert result_of(sender.send(subscription(keys=keys), payload)).ok
    [seen] = service.seen
    assert seen.header("Content-Encoding") == "aes128gcm"
    assert seen.header("Content-Type") == "application/octet-stream"
    assert b"StateChange" not in seen.body
    assert seen.body[16:20] == (4096).to_bytes(4, "big")  # one record of rs 4096
    if http_ece is None:
        pytest.skip("http_ece is not installed: the body was not decrypted")
    plaintext = http_ece.decrypt(
        seen.body, private_key=private, auth_secret=keys[1], version="aes128gcm"
    )
    assert json.loads(plaintext) == payload


def test_urgency_topic_and_ttl_as_asked(sender: WebPushSender, service: PushService) -> None:
    """
    ``Urgency: high`` when asked (anything else is ``normal``), the topic
    and the TTL as given.
    """
    result_of(sender.send(subscription(), {}, urgency="high", topic="abc_-", ttl=60))
    result_of(sender.send(subscription(), {}, urgency="very high"))
    first, second = service.seen
    assert (first.header("Urgency"), first.header("Topic"), first.header("TTL")) == (
        "high",
        "abc_-",
        "60",
    )
    assert second.header("Urgency") == "normal"


def test_vapid_token_is_reused_per_origin_then_renewed(
    sender: WebPushSender, service: PushService, clock: Clock
) -> None:
    """
    A token serves every message to one origin for most of its lifetime,
    then a fresh one is made; another push service gets its own.
    """
    other = "https://updates.push.example:8443/p/xyz"
    result_of(sender.send(subscription(), {}))
    clock.advance(10 * 3600)
    result_of(sender.send(subscription(url=URL + "-other-subscription"), {}))
    result_of(sender.send(subscription(url=other), {}))
    clock.advance(2 * 3600)
    result_of(sender.send(subscription(), {}))
    tokens = [seen.header("Authorization") for seen in service.seen]
    assert tokens[0] == tokens[1]
    assert jwt_claims(tokens[2] or "")["aud"] == "https://updates.push.example:8443"
    assert tokens[3] != tokens[0]
    assert jwt_claims(tokens[3] or "")["exp"] == int(NOW) + 24 * 3600


def test_a_rotated_key_is_used_at_once(sender: WebPushSender, service: PushService) -> None:
    """
    After :meth:`use_key`, tokens are signed with the new key.
    """
    result_of(sender.send(subscription(), {}))
    rotated = VapidKey.generate()
    sender.use_key(rotated)
    result_of(sender.send(subscription(), {}))
    assert (service.seen[1].header("Authorization") or "").endswith(
        "k=" + rotated.application_server_key()
    )


def test_a_bad_subject_is_refused_at_once(clock: Clock) -> None:
    """
    The VAPID subject must be a ``mailto:`` or ``https:`` URI; a bad one
    stops the server from starting rather than every push.
    """
    with pytest.raises(ValueError):
        WebPushSender(RequestTraversalAgent(PushService()), KEY, "postmaster", clock)


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (200, {}, Outcome(OK, 200)),
        (201, {}, Outcome(OK, 201)),
        (404, {}, Outcome(GONE, 404)),
        (410, {}, Outcome(GONE, 410)),
        (413, {}, Outcome(TOO_LARGE, 413)),
        (429, {"Retry-After": "30"}, Outcome(RETRY_AFTER, 429, 30.0)),
        (503, {"Retry-After": formatdate(NOW + 120, usegmt=True)}, Outcome(RETRY_AFTER, 503, 120)),
        (503, {"Retry-After": formatdate(NOW - 120, usegmt=True)}, Outcome(RETRY_AFTER, 503, 0)),
        (429, {}, Outcome(FAILED, 429)),
        (429, {"Retry-After": "soon"}, Outcome(FAILED, 429)),
        (400, {}, Outcome(FAILED, 400)),
        (500, {}, Outcome(FAILED, 500)),
        (301, {"Location": "https://push.example/elsewhere"}, Outcome(FAILED, 301)),
    ],
)
def test_outcome_of_each_answer(
    sender: WebPushSender,
    service: PushService,
    status: int,
    headers: dict[str, str],
    expected: Outcome,
) -> None:
    """
    2xx is delivered; 404 and 410 mean the subscription is gone; 413 too
    large; 429 and 503 with a Retry-After (seconds or an HTTP date) say
    when to come back; anything else failed.  Redirects are not followed.
    """
    service.answers.append((status, headers))
    assert result_of(sender.send(subscription(), {})) == expected
    assert len(service.seen) == 1


def test_no_answer_times_out(sender: WebPushSender, service: PushService, clock: Clock) -> None:
    """
    A push service that does not answer within the timeout (10 s) makes
    the message fail; it is not waited for longer.
    """
    service.hold = True
    sending = sender.send(subscription(), {})
    clock.advance(9.9)
    assert not sending.called
    clock.advance(0.1)
    assert result_of(sending) == Outcome(FAILED)


def test_connection_errors_fail(clock: Clock) -> None:
    """
    A refused connection (or any failure of the agent) is a failed
    message, never an error.
    """

    class Refusing:
        def request(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
            return Deferred.fromCoroutine(self._fail())

        async def _fail(self) -> Any:
            raise ConnectionRefusedError("refused")

    sender = WebPushSender(Refusing(), KEY, None, clock)  # type: ignore[arg-type]
    assert result_of(sender.send(subscription(), {})) == Outcome(FAILED)


def test_logs_name_the_host_never_the_url_or_token(
    sender: WebPushSender, service: PushService, clock: Clock
) -> None:
    """
    What is logged about a failing push service names the subscription
    and the host, never the capability URL or the token.
    """
    service.answers.append((500, {}))
    with capturedLogs() as events:
        result_of(sender.send(subscription(), {}))
        service.hold = True
        sending = sender.send(subscription(), {})
        clock.advance(10)
        result_of(sending)
    texts = [formatEvent(event) for event in events]
    assert any("push.example" in text and "sub1" in text for text in texts)
    token = service.seen[0].header("Authorization") or ""
    for text in texts:
        assert SECRET not in text
        assert token.split("t=")[1][:40] not in text


def test_a_message_too_large_to_encrypt_is_not_sent(
    sender: WebPushSender, service: PushService
) -> None:
    """
    A message that cannot fit one encrypted request is too large, without
    asking the push service.
    """
    _, keys = user_agent_keys()
    payload = {"x": "y" * MAX_MESSAGE}
    assert result_of(sender.send(subscription(keys=keys), payload)) == Outcome(TOO_LARGE)
    assert service.seen == []


def test_verification(sender: WebPushSender, service: PushService) -> None:
    """
    The PushVerification object of a new subscription, kept a day by the
    push service, at normal urgency.
    """
    result_of(sender.send_verification(subscription(id="S9"), "c0de"))
    [seen] = service.seen
    assert json.loads(seen.body) == {
        "@type": "PushVerification",
        "pushSubscriptionId": "S9",
        "verificationCode": "c0de",
    }
    assert (seen.header("TTL"), seen.header("Urgency")) == ("86400", "normal")


def test_topic_is_stable_short_and_specific() -> None:
    """
    The topic of a StateChange is at most 32 base64url characters, one per
    account of a subscription (a push service keeps only the newest
    undelivered message of each account), and different for another
    account or another subscription (nothing to match across them).
    """
    topic = topic_for("sub1", "A1")
    assert len(topic) <= 32
    assert set(topic) <= set(string.ascii_letters + string.digits + "-_")
    assert topic == topic_for("sub1", "A1")
    assert topic != topic_for("sub1", "A2")
    assert topic != topic_for("sub2", "A1")


# -- the dispatcher


@define
class Post:
    record: PushSubscriptionRecord
    payload: dict[str, Any]
    urgency: str
    topic: str | None
    ttl: int
    answer: Deferred[Outcome]

    @property
    def changed(self) -> dict[str, dict[str, str]]:
        assert self.payload["@type"] == "StateChange"
        changed: dict[str, dict[str, str]] = self.payload["changed"]
        return changed


class FakeSender:
    """
    Records each message; the test answers it.
    """

    def __init__(self) -> None:
        self.posts: list[Post] = []

    def send(
        self,
        record: PushSubscriptionRecord,
        payload: dict[str, Any],
        urgency: str = "normal",
        topic: str | None = None,
        ttl: int = 3600,
    ) -> Deferred[Outcome]:
        post = Post(record, payload, urgency, topic, ttl, Deferred())
        self.posts.append(post)
        return post.answer

    def to(self, subscription_id: str) -> list[Post]:
        return [p for p in self.posts if p.record.id == subscription_id]

    def open(self) -> list[Post]:
        return [p for p in self.posts if not p.answer.called]


class World:
    """
    Users alice, bob and carol (bob sees alice's account), their push
    subscriptions and the dispatcher.
    """

    def __init__(self, clock: Clock, sender: Any = None, concurrency: int = 32) -> None:
        self.clock = clock
        self.directory = MemoryDirectory(clock)
        self.subscriptions = MemoryPushSubscriptions()
        self.sender = FakeSender() if sender is None else sender
        self.dispatcher = WebPushDispatcher(
            self.subscriptions, self.directory, self.sender, clock, concurrency=concurrency
        )
        self.users: dict[str, str] = {}
        self.accounts: dict[str, str] = {}
        for name in ("alice", "bob", "carol"):
            self.add_user(name)
        result_of(self.directory.delegate("alice", "bob"))

    def add_user(self, name: str) -> None:
        user = result_of(self.directory.create_user(name, None))
        self.users[name] = user.id
        self.accounts[name] = result_of(self.directory.accounts_for_user(user.id))[0].id

    def subscribe(self, user: str, id: str, **fields: Any) -> PushSubscriptionRecord:
        record = subscription(id=id, user_id=self.users[user], **fields)
        result_of(self.subscriptions.add(record))
        self.dispatcher.changed()
        return record

    def change(self, owner: str, **states: str) -> None:
        handled = self.dispatcher.handle(StateChange(self.accounts[owner], states))
        assert result_of(handled) is None


@pytest.fixture
def world(clock: Clock) -> World:
    return World(clock)


def ok(post: Post) -> None:
    post.answer.callback(Outcome(OK, 201))


def test_dispatcher_is_a_listener(world: World) -> None:
    """
    The dispatcher is an event listener, for the ``webpush`` group,
    handling StateChanges only, without making the bus wait.
    """
    verifyObject(IEventListener, world.dispatcher)
    assert WebPushDispatcher.GROUP == "webpush"
    assert world.dispatcher.execution_mode == "asynchronous"
    assert world.dispatcher.is_handling(StateChange("A", {"Email": "1"}))


def test_a_change_is_pushed_to_the_owner(world: World) -> None:
    """
    A change in alice's account is POSTed to her subscription as a
    StateChange object, at normal urgency, with a topic and the TTL; the
    event is handled before the push service answers.
    """
    world.subscribe("alice", "S1")
    world.change("alice", Email="5", Thread="3")
    [post] = world.sender.posts
    account = world.accounts["alice"]
    assert post.payload == {
        "@type": "StateChange",
        "changed": {account: {"Email": "5", "Thread": "3"}},
    }
    assert post.urgency == "normal"
    assert post.ttl == 3600
    assert post.topic == topic_for("S1", account)


def test_email_delivery_is_urgent(world: World) -> None:
    """
    New mail (``EmailDelivery`` among the types) is pushed with
    ``Urgency: high``.
    """
    world.subscribe("alice", "S1")
    world.change("alice", Email="5", EmailDelivery="5")
    assert world.sender.posts[0].urgency == "high"


def test_types_filter_what_is_pushed(world: World) -> None:
    """
    A subscription with ``types`` gets only those; a change of other types
    only sends nothing.
    """
    world.subscribe("alice", "S1", types=("Mailbox", "EmailDelivery"))
    world.change("alice", Email="5", Thread="3")
    assert world.sender.posts == []
    world.change("alice", Email="6", Mailbox="2")
    assert world.sender.posts[0].changed == {world.accounts["alice"]: {"Mailbox": "2"}}


def test_changes_merge_while_a_post_is_in_flight(world: World) -> None:
    """
    One POST per subscription at a time: what changes meanwhile merges per
    account and type, the latest state winning, and goes in one POST per
    account once the push service has answered.
    """
    world.subscribe("alice", "S1")
    world.subscribe("bob", "S2")
    world.change("alice", Email="5")
    world.change("alice", Email="6", Mailbox="3")
    world.change("bob", Mailbox="9")
    world.change("alice", Email="7")
    alice, bob = world.accounts["alice"], world.accounts["bob"]
    first = world.sender.to("S1")
    assert [p.changed for p in first] == [{alice: {"Email": "5"}}]
    ok(first[0])
    assert [p.changed for p in world.sender.to("S1")[1:]] == [
        {alice: {"Email": "7", "Mailbox": "3"}}
    ]
    # bob sees alice's account: his POST merged the same way.
    assert [p.changed for p in world.sender.to("S2")] == [{alice: {"Email": "5"}}]
    ok(world.sender.to("S2")[0])
    assert world.sender.to("S2")[1].changed == {alice: {"Email": "7", "Mailbox": "3"}}
    ok(world.sender.to("S2")[1])
    assert world.sender.to("S2")[2].changed == {bob: {"Mailbox": "9"}}


def test_each_message_tells_every_state_heard_of_for_its_account(world: World) -> None:
    """
    A message reports every type the subscription has heard of for the
    account (the latest states), not only what just changed, so that a push
    service replacing an undelivered message of the account's topic with
    it loses nothing; another account's states are not mixed in.
    """
    world.subscribe("alice", "S1")
    alice = world.accounts["alice"]
    world.change("alice", Mailbox="3")
    ok(world.sender.posts[0])
    world.change("alice", Email="5")
    assert world.sender.posts[1].changed == {alice: {"Mailbox": "3", "Email": "5"}}
    assert world.sender.posts[1].topic == world.sender.posts[0].topic


def test_an_older_state_arriving_late_does_not_win(world: World) -> None:
    """
    Merging keeps the later of two states of a type, whatever the order
    the events arrive in.
    """
    world.subscribe("alice", "S1")
    world.change("alice", Email="5")
    world.change("alice", Email="9")
    world.change("alice", Email="8")
    ok(world.sender.posts[0])
    assert world.sender.posts[1].changed == {world.accounts["alice"]: {"Email": "9"}}


@pytest.mark.parametrize("status", [404, 410])
def test_gone_subscriptions_are_deleted(world: World, status: int) -> None:
    """
    A subscription its push service no longer knows (404, 410) is deleted
    at once, what was pending for it is dropped, and nothing more is sent.
    """
    world.subscribe("alice", "S1")
    world.subscribe("alice", "S2")
    world.change("alice", Email="5")
    world.change("alice", Email="6")
    world.sender.to("S1")[0].answer.callback(Outcome(GONE, status))
    assert [r.id for r in result_of(world.subscriptions.for_user(world.users["alice"]))] == ["S2"]
    world.clock.advance(3600)
    world.change("alice", Email="7")
    assert len(world.sender.to("S1")) == 1
    assert len(world.sender.to("S2")) == 1  # S2 still waits for its first answer


def test_retry_after_holds_back_that_subscription_only(world: World) -> None:
    """
    A 429 with Retry-After makes that subscription wait as long, keeping
    what it did not deliver merged with what comes meanwhile; another
    subscription of the same push service is POSTed at once.
    """
    world.subscribe("alice", "S1")
    world.change("alice", Email="5")
    world.sender.to("S1")[0].answer.callback(Outcome(RETRY_AFTER, 429, 30.0))
    world.subscribe("alice", "S2")
    world.change("alice", Mailbox="2")
    assert len(world.sender.to("S2")) == 1
    assert len(world.sender.to("S1")) == 1
    world.clock.advance(29.9)
    assert len(world.sender.to("S1")) == 1
    world.clock.advance(0.1)
    assert world.sender.to("S1")[1].changed == {
        world.accounts["alice"]: {"Email": "5", "Mailbox": "2"}
    }


def test_retry_after_is_capped(world: World) -> None:
    """
    However long a push service asks to wait, the subscription is tried
    again within an hour.
    """
    world.subscribe("alice", "S1")
    world.change("alice", Email="5")
    world.sender.posts[0].answer.callback(Outcome(RETRY_AFTER, 503, 7 * 86400.0))
    world.clock.advance(3600)
    assert len(world.sender.posts) == 2


def test_too_large_is_dropped(world: World) -> None:
    """
    A StateChange the push service finds too large (413) is dropped, not
    retried; later changes are sent as usual.
    """
    world.subscribe("alice", "S1")
    world.change("alice", Email="5")
    world.sender.posts[0].answer.callback(Outcome(TOO_LARGE, 413))
    world.clock.advance(3600)
    assert len(world.sender.posts) == 1
    world.change("alice", Mailbox="2")
    # Later messages still tell the latest Email state heard of.
    assert world.sender.posts[1].changed == {
        world.accounts["alice"]: {"Email": "5", "Mailbox": "2"}
    }


def test_failures_back_off_then_drop(world: World) -> None:
    """
    A failing push service is tried again after 1, 2, 4 and 8 seconds; the
    fifth failure drops the StateChange (it is only a hint), and the
    subscription serves later changes afresh.
    """
    world.subscribe("alice", "S1")
    world.change("alice", Email="5")
    times = []
    for _ in range(5):
        [post] = world.sender.open()
        times.append(world.clock.seconds() - NOW)
        post.answer.callback(Outcome(FAILED, 500))
        world.clock.advance(0.5)
        assert world.sender.open() == []
        for _ in range(16):
            if world.sender.open():
                break
            world.clock.advance(0.5)
    assert times == [0, 1.0, 3.0, 7.0, 15.0]
    assert world.sender.open() == []
    world.clock.advance(3600)
    assert len(world.sender.posts) == 5
    world.change("alice", Mailbox="2")
    assert world.sender.open()[0].changed == {
        world.accounts["alice"]: {"Email": "5", "Mailbox": "2"}
    }


def test_a_retry_carries_what_changed_meanwhile(world: World) -> None:
    """
    After a failure, the retry sends the undelivered states merged with
    those that arrived during the backoff.
    """
    world.subscribe("alice", "S1")
    world.change("alice", Email="5")
    world.sender.posts[0].answer.callback(Outcome(FAILED, 502))
    world.change("alice", Email="6", Thread="4")
    world.clock.advance(1)
    assert world.sender.posts[1].changed == {world.accounts["alice"]: {"Email": "6", "Thread": "4"}}


def test_unverified_and_expired_subscriptions_get_nothing(world: World) -> None:
    """
    A subscription is pushed to only once verified and until it expires;
    :meth:`expire` deletes the expired ones.
    """
    world.subscribe("alice", "unverified", verified=False)
    world.subscribe("alice", "expiring", expires=NOW + 60)
    world.change("alice", Email="5")
    assert [p.record.id for p in world.sender.posts] == ["expiring"]
    ok(world.sender.posts[0])
    world.clock.advance(60)
    world.change("alice", Email="6")
    assert len(world.sender.posts) == 1
    result_of(Deferred.fromCoroutine(world.dispatcher.expire()))
    ids = [r.id for r in result_of(world.subscriptions.for_user(world.users["alice"]))]
    assert ids == ["unverified"]


def test_only_users_who_see_the_account_get_it(world: World) -> None:
    """
    The owner and the users it is delegated to are pushed a change of an
    account; anyone else is not.
    """
    world.subscribe("alice", "A")
    world.subscribe("bob", "B")
    world.subscribe("carol", "C")
    world.change("alice", Email="5")
    assert sorted(p.record.id for p in world.sender.posts) == ["A", "B"]
    world.change("bob", Email="1")
    assert sorted(p.record.id for p in world.sender.posts) == ["A", "B"]  # B busy, merged
    ok(world.sender.to("B")[0])
    assert world.sender.to("B")[1].changed == {world.accounts["bob"]: {"Email": "1"}}


def test_revoked_delegation_is_followed_on_access_change(world: World) -> None:
    """
    Once the delegation is revoked and the dispatcher told that access
    changed, the former delegate is no longer pushed the account's changes.
    """
    world.subscribe("bob", "B")
    world.change("alice", Email="5")
    ok(world.sender.posts[0])
    result_of(world.directory.revoke_delegation("alice", "bob"))
    world.dispatcher.access_changed()
    world.change("alice", Email="6")
    assert len(world.sender.posts) == 1


def test_a_view_is_pushed_to_its_sharee_only(world: World) -> None:
    """
    With a mailbox of alice's shared with carol, the whole account's
    changes reach alice and her delegate bob, not carol; her view's
    changes reach carol only, and not once they are of an older generation
    than her view's, nor once she no longer holds the view (the account
    was delegated to her).  Then the whole account's states replace her
    former view's, even one still waiting to be sent.
    """
    for name, id in (("alice", "A"), ("bob", "B"), ("carol", "C")):
        world.subscribe(name, id)
    account, carol = world.accounts["alice"], world.users["carol"]
    result_of(world.directory.set_rights(account, "Minbox", carol, "lr", None))
    ((_, view),) = result_of(world.directory.shared_views_for_user(carol))
    generation = view.generation

    def to_carol(state: str, generation: int) -> None:
        event = StateChange(account, {"Email": state}, viewer=carol, generation=generation)
        assert result_of(world.dispatcher.handle(event)) is None

    world.change("alice", Email="5")
    assert sorted(p.record.id for p in world.sender.posts) == ["A", "B"]
    to_carol(f"s{generation}.4", generation)
    (post,) = world.sender.to("C")
    assert post.changed == {account: {"Email": f"s{generation}.4"}}
    to_carol(f"s{generation - 1}.8", generation - 1)
    ok(post)
    assert len(world.sender.to("C")) == 1
    assert len(world.sender.posts) == 3  # nobody else was told either

    to_carol(f"s{generation}.6", generation)  # in flight
    to_carol(f"s{generation}.7", generation)  # waits
    result_of(world.directory.delegate("alice", "carol"))
    world.dispatcher.access_changed()
    to_carol(f"s{generation}.9", generation)
    world.change("alice", Email="7")
    ok(world.sender.to("C")[-1])
    assert world.sender.to("C")[-1].changed == {account: {"Email": "7"}}


def test_reloading_subscriptions_reads_access_again(world: World) -> None:
    """
    Who sees which account is read again whenever the subscriptions are,
    even without being told that access changed.
    """
    world.subscribe("bob", "B")
    world.change("alice", Email="5")
    ok(world.sender.posts[0])
    result_of(world.directory.revoke_delegation("alice", "bob"))
    world.subscribe("carol", "C")
    world.change("alice", Email="6")
    assert len(world.sender.posts) == 1


def test_subscriptions_are_reloaded_when_their_version_moves(world: World) -> None:
    """
    A subscription added by another node (no local :meth:`changed`) is
    seen once the reload interval has passed and the version moved.
    """
    world.subscribe("alice", "S1")
    world.change("alice", Email="5")
    ok(world.sender.posts[0])
    result_of(world.subscriptions.add(subscription(id="S2", user_id=world.users["alice"])))
    world.change("alice", Email="6")
    assert [p.record.id for p in world.sender.posts] == ["S1", "S1"]
    world.clock.advance(2)
    ok(world.sender.posts[1])
    world.change("alice", Email="7")
    assert [p.record.id for p in world.sender.posts] == ["S1", "S1", "S1", "S2"]


def test_a_deleted_subscription_stops_at_once(world: World) -> None:
    """
    A subscription deleted while it waits to retry is not tried again.
    """
    world.subscribe("alice", "S1")
    world.change("alice", Email="5")
    world.sender.posts[0].answer.callback(Outcome(FAILED, 500))
    result_of(world.subscriptions.remove("S1"))
    world.dispatcher.changed()
    world.change("alice", Email="6")
    world.clock.advance(60)
    assert len(world.sender.posts) == 1


def test_changed_types_are_followed(world: World) -> None:
    """
    A subscription whose types are changed gets the new types from the
    next reload on.
    """
    record = world.subscribe("alice", "S1", types=("Mailbox",))
    world.change("alice", Email="5")
    assert world.sender.posts == []
    result_of(world.subscriptions.replace(evolve(record, types=("Email",))))
    world.dispatcher.changed()
    world.change("alice", Email="6")
    assert world.sender.posts[0].changed == {world.accounts["alice"]: {"Email": "6"}}


def test_concurrent_posts_are_bounded(clock: Clock) -> None:
    """
    At most ``concurrency`` POSTs are in flight over all subscriptions;
    the others start as slots free up, with what is pending by then.
    """
    world = World(clock, concurrency=2)
    for id in ("S1", "S2", "S3"):
        world.subscribe("alice", id)
    world.change("alice", Email="5")
    assert [p.record.id for p in world.sender.posts] == ["S1", "S2"]
    world.change("alice", Email="6")
    ok(world.sender.posts[0])
    assert [p.record.id for p in world.sender.posts] == ["S1", "S2", "S3"]
    assert world.sender.posts[2].changed == {world.accounts["alice"]: {"Email": "6"}}


def test_a_large_change_is_split_over_messages(world: World) -> None:
    """
    When the changes of many accounts do not fit one push message, they
    go in several, each small enough to encrypt.
    """
    for n in range(40):
        name = f"owner{n:02d}"
        world.add_user(name)
        result_of(world.directory.delegate(name, "bob"))
    world.subscribe("bob", "B")
    states = {t: "1234567890" for t in ("Mailbox", "Email", "Thread", "Identity")}
    world.change("alice", **states)
    for n in range(40):
        world.change(f"owner{n:02d}", **states)
    while world.sender.open():
        ok(world.sender.open()[0])
    posts = world.sender.posts
    assert len(posts) >= 3
    seen: dict[str, dict[str, str]] = {}
    for post in posts:
        assert len(json.dumps(post.payload, separators=(",", ":"))) <= MAX_MESSAGE
        seen.update(post.changed)
    assert len(seen) == 41


def test_stop_cancels_what_waits(world: World) -> None:
    """
    After :meth:`stop`, nothing more is sent: neither retries nor pending
    changes.
    """
    world.subscribe("alice", "S1")
    world.subscribe("alice", "S2")
    world.change("alice", Email="5")
    world.sender.to("S1")[0].answer.callback(Outcome(FAILED, 500))
    world.change("alice", Email="6")
    world.dispatcher.stop()
    assert world.sender.to("S2")[0].answer.called  # cancelled
    world.clock.advance(3600)
    assert len(world.sender.posts) == 2
    assert world.clock.getDelayedCalls() == []


def test_a_failing_store_fails_the_event_for_the_bus_to_retry(world: World) -> None:
    """
    When the subscriptions cannot be read, handling fails (the bus retries
    the event); once they can, the next event is pushed.
    """
    world.subscribe("alice", "S1")
    broken = Deferred[int]()
    broken.errback(RuntimeError("database down"))
    original = world.subscriptions.version
    world.subscriptions.version = lambda: broken  # type: ignore[method-assign]
    handled = world.dispatcher.handle(StateChange(world.accounts["alice"], {"Email": "5"}))
    with pytest.raises(RuntimeError):
        result_of(handled)
    world.subscriptions.version = original  # type: ignore[method-assign]
    world.change("alice", Email="5")
    assert len(world.sender.posts) == 1


# -- all together: bus, dispatcher, sender, push service


@pytest.fixture
def wired(clock: Clock, service: PushService, sender: WebPushSender) -> Iterator[World]:
    world = World(clock, sender=sender)
    yield world
    world.dispatcher.stop()


def test_end_to_end_over_the_bus(wired: World, service: PushService, clock: Clock) -> None:
    """
    Registered as its group on the JMAP bus, the dispatcher POSTs each
    StateChange, encrypted for the subscription, to its push service; a
    410 deletes the subscription.
    """
    bus = InMemoryEventBus(clock, MemoryDeadLetters())
    result_of(bus.register_group(wired.dispatcher, WebPushDispatcher.GROUP))
    private, keys = user_agent_keys()
    wired.subscribe("alice", "S1", keys=keys)
    account = wired.accounts["alice"]
    result_of(bus.dispatch(StateChange(account, {"Email": "5"}), [AccountKey(account)]))
    [seen] = service.seen
    assert seen.header("Content-Encoding") == "aes128gcm"
    assert seen.header("Topic") == topic_for("S1", account)
    claims = jwt_claims(seen.header("Authorization") or "")
    assert claims["aud"] == "https://push.example"
    if http_ece is not None:
        plaintext = http_ece.decrypt(
            seen.body, private_key=private, auth_secret=keys[1], version="aes128gcm"
        )
        assert json.loads(plaintext) == {
            "@type": "StateChange",
            "changed": {account: {"Email": "5"}},
        }
    service.answers.append((410, {}))
    result_of(bus.dispatch(StateChange(account, {"Email": "6"}), [AccountKey(account)]))
    assert result_of(wired.subscriptions.for_user(wired.users["alice"])) == []
    result_of(bus.dispatch(StateChange(account, {"Email": "7"}), [AccountKey(account)]))
    assert len(service.seen) == 2


def test_b64url_topic_decodes_to_24_octets() -> None:
    """
    The topic is the base64url form of 24 octets, without padding.
    """
    assert len(base64.urlsafe_b64decode(topic_for("s", "a"))) == 24
