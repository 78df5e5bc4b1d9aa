"""
Web push (RFC 8620 §7.2, RFC 8030, RFC 8291, RFC 8292) end to end: the
real server POSTs to a push receiver on loopback HTTPS, which records each
request and answers as the test scripts; the bodies are decrypted with the
independent ``http_ece`` package and the VAPID signatures checked with
``cryptography`` alone.
"""

from __future__ import annotations

import base64
import json
import math
import os
import smtplib
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import http_ece
import pytest
import pytest_twisted
import treq
from attrs import define, field
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from twisted.internet import endpoints, task
from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.threads import deferToThread
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import provider

from tests.integration.conftest import RunningServer, start_server
from tests.integration.test_cluster import Cluster, Node, cluster  # noqa: F401 (fixture)
from tests.integration.test_twistd import command
from tests.integration.tls import make_certificate
from tests.mailfactory import message

USING = [
    "urn:ietf:params:jmap:core",
    "urn:ietf:params:jmap:mail",
    "urn:ietf:params:jmap:vacationresponse",
]
WEBPUSH_VAPID = "urn:ietf:params:jmap:webpush-vapid"
SUBJECT = "mailto:ops@example.com"
#: How long anything awaited may take before the test gives up.
DEADLINE = 30.0
#: Once the server has visibly handled a change, how much longer a POST
#: that should not come is given to show up anyway.
SETTLE = 0.5


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def sleep(seconds: float) -> None:
    from twisted.internet import reactor

    await task.deferLater(reactor, seconds, lambda: None)


async def eventually(check: Callable[[], Any], what: str, seconds: float = DEADLINE) -> Any:
    """
    Poll ``check`` every 50 ms until it returns something true (awaiting it
    when it returns an awaitable); return that.
    """
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if hasattr(value, "__await__"):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await sleep(0.05)


# -- the push receiver -----------------------------------------------------


@define
class Post:
    """
    One request the receiver got, and the status it answered.
    """

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int


class PushResource(Resource):
    """
    Records every POST; answers 201 unless the test queued other answers
    for the path.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[Post] = []
        self.answers: dict[str, list[tuple[int, dict[str, str]]]] = {}

    def render_POST(self, request: Request) -> bytes:
        at = time.monotonic()
        path = request.path.decode("ascii")
        queued = self.answers.get(path)
        status, headers = queued.pop(0) if queued else (201, {})
        assert request.content is not None
        self.posts.append(
            Post(
                path,
                {
                    name.decode("latin-1").lower(): values[-1].decode("latin-1")
                    for name, values in request.requestHeaders.getAllRawHeaders()
                },
                request.content.read(),
                at,
                status,
            )
        )
        request.setResponseCode(status)
        for name, value in headers.items():
            request.setHeader(name, value)
        return b""


class Connections(WrappingFactory):
    """
    Wraps the receiver's site to count its connections and close those
    still open at the end.
    """

    def __init__(self, site: Site) -> None:
        super().__init__(site)
        self.made = 0

    def registerProtocol(self, p: ProtocolWrapper) -> None:
        self.made += 1
        super().registerProtocol(p)

    def close(self) -> None:
        for wrapper in list(self.protocols):
            wrapper.transport.loseConnection()


@define
class Receiver:
    """
    A push service on ``https://127.0.0.1:port`` (certificate also valid
    for ``localhost``).
    """

    port: int
    cert: Path
    resource: PushResource
    connections: Connections
    listening: IListeningPort

    def answer(self, path: str, status: int, **headers: str) -> None:
        """
        Answer the next not yet answered POST to ``path`` so.
        """
        self.resource.answers.setdefault(path, []).append(
            (status, {k.replace("_", "-"): v for k, v in headers.items()})
        )

    def on(self, path: str) -> list[Post]:
        return [p for p in self.resource.posts if p.path == path]

    async def wait(self, path: str, count: int) -> list[Post]:
        """
        The POSTs to ``path``, once there are at least ``count``.
        """
        return await eventually(
            lambda: len(self.on(path)) >= count and self.on(path),
            f"{count} POST(s) to {path}",
        )

    async def stop(self) -> None:
        await maybeDeferred(self.listening.stopListening)
        self.connections.close()


async def start_receiver(directory: Path) -> Receiver:
    from twisted.internet import reactor

    key, cert = make_certificate(directory)
    resource = PushResource()
    connections = Connections(Site(resource))
    endpoint = endpoints.serverFromString(
        reactor, f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    )
    listening = await endpoint.listen(connections)
    return Receiver(listening.getHost().port, cert, resource, connections, listening)


@define
class Device:
    """
    A user agent's push subscription at the receiver: its RFC 8291 key
    pair and auth secret, and its URL.
    """

    receiver: Receiver
    name: str
    host: str = "127.0.0.1"
    key: ec.EllipticCurvePrivateKey = field(factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(factory=lambda: os.urandom(16))

    @property
    def path(self) -> str:
        return f"/push/{self.name}"

    @property
    def origin(self) -> str:
        return f"https://{self.host}:{self.receiver.port}"

    @property
    def url(self) -> str:
        return self.origin + self.path

    def keys(self) -> dict[str, str]:
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"p256dh": b64url(point), "auth": b64url(self.auth)}

    def posts(self) -> list[Post]:
        return self.receiver.on(self.path)

    def read(self, post: Post) -> dict[str, Any]:
        """
        The push message of a POST, decrypted with ``http_ece``.
        """
        assert post.headers.get("content-encoding") == "aes128gcm"
        plain = http_ece.decrypt(
            post.body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        return json.loads(plain)

    def changes(self) -> list[tuple[Post, dict[str, Any]]]:
        """
        The StateChanges received so far, with their POSTs.
        """
        read = [(p, self.read(p)) for p in self.posts()]
        return [(p, m) for p, m in read if m["@type"] == "StateChange"]

    async def delivery(self, account: str, state: str) -> tuple[Post, dict[str, Any]]:
        """
        The StateChange telling of new mail in ``account`` up to Email
        state ``state``, once it has come.
        """

        def found() -> tuple[Post, dict[str, Any]] | None:
            for post, change in self.changes():
                if change["changed"].get(account, {}).get("EmailDelivery") == state:
                    return post, change
            return None

        return await eventually(found, f"the EmailDelivery push to {self.path}")


def check_vapid(value: str, origin: str) -> tuple[str, dict[str, Any]]:
    """
    Verify an ``Authorization: vapid t=…, k=…`` header (RFC 8292) with
    ``cryptography`` alone, for a push service at ``origin``, signed by the
    server's subject; return the key and the JWT's claims.
    """
    scheme, _, rest = value.partition(" ")
    assert scheme == "vapid"
    params = dict(part.strip().split("=", 1) for part in rest.split(","))
    token, key = params["t"], params["k"]
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
    head, claims, signature = token.split(".")
    assert json.loads(unb64url(head)) == {"typ": "JWT", "alg": "ES256"}
    raw = unb64url(signature)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, f"{head}.{claims}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    claimed = json.loads(unb64url(claims))
    assert claimed["aud"] == origin
    assert claimed["sub"] == SUBJECT
    assert time.time() < claimed["exp"] <= time.time() + 24 * 3600
    return key, claimed


# -- the JMAP client and the mail ------------------------------------------


@define
class Client:
    """
    A JMAP client over HTTP with Basic credentials.
    """

    base: str
    user: str
    password: str = "pw"

    async def session(self) -> dict[str, Any]:
        response = await treq.get(self.base + "/.well-known/jmap", auth=(self.user, self.password))
        assert response.code == 200
        return json.loads(await response.content())

    async def account(self) -> str:
        return str((await self.session())["primaryAccounts"]["urn:ietf:params:jmap:mail"])

    async def call(self, *calls: list[Any]) -> list[Any]:
        response = await treq.post(
            self.base + "/jmap/api/",
            data=json.dumps({"using": USING, "methodCalls": list(calls)}).encode(),
            headers={"Content-Type": "application/json"},
            auth=(self.user, self.password),
        )
        assert response.code == 200
        return [r[1] for r in json.loads(await response.content())["methodResponses"]]

    async def set(self, **arguments: Any) -> dict[str, Any]:
        (answer,) = await self.call(["PushSubscription/set", arguments, "s"])
        return answer

    async def listed(self) -> list[str]:
        (got,) = await self.call(["PushSubscription/get", {"ids": None}, "g"])
        return [s["id"] for s in got["list"]]

    async def create(self, device: Device, **properties: Any) -> str:
        """
        Create a push subscription for ``device``; its id.
        """
        answer = await self.set(
            create={
                "k": {
                    "deviceClientId": device.name,
                    "url": device.url,
                    "keys": device.keys(),
                    **properties,
                }
            }
        )
        assert answer["notCreated"] is None, answer
        return str(answer["created"]["k"]["id"])

    async def subscribe(self, device: Device, **properties: Any) -> str:
        """
        Create and verify a push subscription, as a client does with the
        PushVerification its service worker receives; its id.
        """
        subscription = await self.create(device, **properties)
        (post,) = await device.receiver.wait(device.path, 1)
        verification = device.read(post)
        assert verification["@type"] == "PushVerification"
        assert verification["pushSubscriptionId"] == subscription
        answer = await self.set(
            update={subscription: {"verificationCode": verification["verificationCode"]}}
        )
        assert answer["notUpdated"] is None, answer
        assert subscription in answer["updated"]
        return subscription

    async def email_state(self, account: str) -> str:
        (got,) = await self.call(["Email/get", {"accountId": account, "ids": []}, "e"])
        return str(got["state"])

    async def sees(self, account: str, subject: str) -> bool:
        (query,) = await self.call(
            ["Email/query", {"accountId": account, "filter": {"text": subject}}, "q"]
        )
        return bool(query["ids"])


def lmtp_send(port: int, recipient: str, subject: str) -> float:
    with smtplib.LMTP("127.0.0.1", port) as client:
        client.sendmail("s@elsewhere.test", [recipient], message(subject=subject, to=recipient))
        return time.monotonic()  # the server has answered the end of DATA


async def deliver(port: int | None, subject: str, user: str = "alice") -> float:
    """
    Deliver one message by LMTP; the time the server accepted it.
    """
    assert port is not None
    return await deferToThread(lmtp_send, port, f"{user}@example.com", subject)


async def handled(client: Client, account: str, subject: str) -> None:
    """
    Wait until the server has visibly handled a delivery, and a little more.
    """
    await eventually(lambda: client.sees(account, subject), f"{subject!r} in Email/query")
    await sleep(SETTLE)


async def set_up_accounts(base: str, lmtp_port: int | None) -> None:
    """
    Deliver a first message to Alice and Bob, so that their accounts are
    set up (inbox and all) before any test subscribes: their set-up
    StateChanges are then over.
    """
    for user in ("alice", "bob"):
        await deliver(lmtp_port, f"Welcome {user}", user=user)
        client = Client(base, user)
        await handled(client, await client.account(), "Welcome")


# -- fixtures --------------------------------------------------------------

#: End of LMTP DATA → POST arrival, in seconds, as measured by the tests.
LATENCIES: list[float] = []


@pytest_twisted.async_yield_fixture
async def receiver(tmp_path: Path) -> AsyncIterator[Receiver]:
    started = await start_receiver(tmp_path)
    yield started
    await started.stop()


async def push_server(data: Path, receiver: Receiver, *extra: str) -> RunningServer:
    server = await start_server(
        data,
        "tcp:0:interface=127.0.0.1",
        "http",
        "--push-ca-file",
        str(receiver.cert),
        "--vapid-subject",
        SUBJECT,
        *extra,
    )
    await server.add_user("alice", "pw")
    await server.add_user("bob", "pw")
    await set_up_accounts(server.base, server.lmtp_port)
    return server


@pytest_twisted.async_yield_fixture
async def server(tmp_path: Path, receiver: Receiver) -> AsyncIterator[RunningServer]:
    running = await push_server(tmp_path / "data", receiver, "--push-allow-private")
    yield running
    await running.stop()


@pytest.fixture(scope="module", autouse=True)
def _report_latencies() -> Iterator[None]:
    yield
    if LATENCIES:
        ordered = sorted(LATENCIES)
        print(
            f"\nweb push latency (end of LMTP DATA → POST): n={len(ordered)}"
            f" median={ordered[len(ordered) // 2] * 1000:.0f} ms"
            f" max={ordered[-1] * 1000:.0f} ms"
            f" (each: {', '.join(f'{x * 1000:.0f}' for x in LATENCIES)})"
        )


# -- the tests -------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_verification_then_signed_encrypted_delivery(
    server: RunningServer, receiver: Receiver
) -> None:
    """
    The session advertises the VAPID key; a new subscription gets an
    encrypted PushVerification and nothing else until its code is set;
    then each delivery POSTs an encrypted StateChange with EmailDelivery,
    ``Urgency: high``, a TTL, a Topic stable per account, and a VAPID
    signature by the advertised key for the receiver's origin.
    """
    alice = Client(server.base, "alice")
    session = await alice.session()
    application_server_key = session["capabilities"][WEBPUSH_VAPID]["applicationServerKey"]
    point = unb64url(application_server_key)
    assert len(point) == 65 and point[0] == 4
    account = await alice.account()
    device = Device(receiver, "phone", host="localhost")

    subscription = await alice.create(device, types=None)
    (post,) = await receiver.wait(device.path, 1)
    assert post.headers["content-encoding"] == "aes128gcm"
    verification = device.read(post)
    assert verification["@type"] == "PushVerification"
    assert verification["pushSubscriptionId"] == subscription
    (got,) = await alice.call(["PushSubscription/get", {"ids": [subscription]}, "g"])
    assert got["list"][0]["verificationCode"] is None
    assert "url" not in got["list"][0] and "keys" not in got["list"][0]

    await deliver(server.lmtp_port, "Unverified")
    await handled(alice, account, "Unverified")
    assert len(device.posts()) == 1, "a StateChange before verification"

    wrong = await alice.set(update={subscription: {"verificationCode": "not-the-code"}})
    assert wrong["notUpdated"][subscription]["type"] == "invalidProperties"
    right = await alice.set(
        update={subscription: {"verificationCode": verification["verificationCode"]}}
    )
    assert subscription in right["updated"]

    topics = []
    for n, subject in enumerate(["Verified one", "Verified two"], start=1):
        accepted = await deliver(server.lmtp_port, subject)
        state = await alice.email_state(account)
        pushed, change = await device.delivery(account, state)
        LATENCIES.append(pushed.at - accepted)
        assert len(device.changes()) == n
        assert set(change["changed"]) == {account}
        assert {"Email", "EmailDelivery", "Mailbox", "Thread"} <= set(change["changed"][account])
        assert pushed.headers["urgency"] == "high"
        assert int(pushed.headers["ttl"]) > 0
        assert 0 < len(pushed.headers["topic"]) <= 32
        topics.append(pushed.headers["topic"])
        key, claims = check_vapid(pushed.headers["authorization"], device.origin)
        assert key == application_server_key
        assert claims["aud"] == f"https://localhost:{receiver.port}"
        assert claims["sub"] == SUBJECT
        assert time.time() < claims["exp"] <= time.time() + 24 * 3600
    assert topics[0] == topics[1]


@pytest_twisted.ensureDeferred
async def test_types_choose_what_is_pushed(server: RunningServer, receiver: Receiver) -> None:
    """
    A subscription for VacationResponse only gets nothing for a delivery
    (which a subscription for Email gets, reduced to Email), and is pushed
    the VacationResponse change alone when the vacation response is set.
    """
    alice = Client(server.base, "alice")
    account = await alice.account()
    vacation = Device(receiver, "vacation")
    email = Device(receiver, "email")
    await alice.subscribe(vacation, types=["VacationResponse"])
    await alice.subscribe(email, types=["Email"])

    await deliver(server.lmtp_port, "Typed")
    state = await alice.email_state(account)
    change = await eventually(
        lambda: [m for _, m in email.changes() if m["changed"][account] == {"Email": state}],
        "the Email push",
    )
    assert change
    await sleep(SETTLE)
    assert vacation.changes() == []

    (done,) = await alice.call(
        [
            "VacationResponse/set",
            {"accountId": account, "update": {"singleton": {"isEnabled": True}}},
            "v",
        ]
    )
    assert "singleton" in done["updated"]
    pushed = await eventually(vacation.changes, "the VacationResponse push")
    assert [set(m["changed"][account]) for _, m in pushed] == [{"VacationResponse"}]
    assert pushed[0][0].headers["urgency"] == "normal"


@pytest_twisted.ensureDeferred
async def test_gone_subscriptions_are_destroyed(server: RunningServer, receiver: Receiver) -> None:
    """
    A push service answering 410 to a StateChange, or 404 to the
    verification, ends the subscription: /get no longer lists it and it is
    POSTed nothing more.
    """
    alice = Client(server.base, "alice")
    account = await alice.account()
    gone = Device(receiver, "gone")
    never = Device(receiver, "never")
    control = Device(receiver, "control")
    gone_id = await alice.subscribe(gone)
    await alice.subscribe(control)

    receiver.answer(never.path, 404)
    never_id = await alice.create(never)
    await receiver.wait(never.path, 1)
    await eventually(lambda: _absent(alice, never_id), "the 404 subscription to go")

    receiver.answer(gone.path, 410)
    await deliver(server.lmtp_port, "Gone")
    posts = await receiver.wait(gone.path, 2)
    assert posts[1].status == 410
    await eventually(lambda: _absent(alice, gone_id), "the 410 subscription to go")

    await deliver(server.lmtp_port, "After gone")
    await control.delivery(account, await alice.email_state(account))
    await sleep(SETTLE)
    assert len(gone.posts()) == 2
    assert len(never.posts()) == 1
    assert gone_id not in await alice.listed()


async def _absent(client: Client, subscription: str) -> bool:
    return subscription not in await client.listed()


@pytest_twisted.ensureDeferred
async def test_retry_after_delays_one_subscription_only(
    server: RunningServer, receiver: Receiver
) -> None:
    """
    A push service answering 429 with ``Retry-After: 2`` gets that
    subscription's next POST no sooner than 2 s later, carrying the changes
    made meanwhile merged into one StateChange, while another subscription
    of the user goes on receiving.
    """
    alice = Client(server.base, "alice")
    account = await alice.account()
    slow = Device(receiver, "slow")
    fast = Device(receiver, "fast")
    await alice.subscribe(slow)
    await alice.subscribe(fast)
    receiver.answer(slow.path, 429, Retry_After="2")

    await deliver(server.lmtp_port, "First")
    refused = (await receiver.wait(slow.path, 2))[1]
    assert refused.status == 429
    first = await alice.email_state(account)
    await fast.delivery(account, first)
    await deliver(server.lmtp_port, "Second")
    latest = await alice.email_state(account)
    fast_push, _ = await fast.delivery(account, latest)

    retry = (await receiver.wait(slow.path, 3))[2]
    assert retry.at - refused.at >= 2.0
    assert fast_push.at < retry.at, "the other subscription waited too"
    assert retry.headers["urgency"] == "high"
    assert slow.read(retry)["changed"][account]["EmailDelivery"] == latest
    await sleep(SETTLE)
    assert len(slow.posts()) == 3, "the changes made while waiting were not merged"


@pytest_twisted.ensureDeferred
async def test_expired_subscription_is_no_longer_pushed(
    server: RunningServer, receiver: Receiver
) -> None:
    """
    A subscription is pushed to until its ``expires``; after it, a delivery
    POSTs nothing to it and /get no longer lists it.
    """
    alice = Client(server.base, "alice")
    account = await alice.account()
    brief = Device(receiver, "brief")
    control = Device(receiver, "control")
    expires = math.ceil(time.time()) + 3
    brief_id = await alice.subscribe(
        brief, expires=datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    await alice.subscribe(control)

    await deliver(server.lmtp_port, "Before expiry")
    await brief.delivery(account, await alice.email_state(account))
    await eventually(lambda: time.time() > expires + 0.2, "the expiry", seconds=10)
    assert brief_id not in await alice.listed()

    await deliver(server.lmtp_port, "After expiry")
    await control.delivery(account, await alice.email_state(account))
    await sleep(SETTLE)
    assert len(brief.changes()) == 1


@pytest_twisted.ensureDeferred
async def test_subscriptions_belong_to_their_user(
    server: RunningServer, receiver: Receiver
) -> None:
    """
    Bob can neither see, change nor destroy Alice's subscription, and his
    mail is not pushed to it; Alice's destroy stops its POSTs.
    """
    alice, bob = Client(server.base, "alice"), Client(server.base, "bob")
    alice_account, bob_account = await alice.account(), await bob.account()
    mine = Device(receiver, "alice-phone")
    alice_control = Device(receiver, "alice-control")
    bob_control = Device(receiver, "bob-control")
    subscription = await alice.subscribe(mine)
    await alice.subscribe(alice_control)
    await bob.subscribe(bob_control)

    assert subscription not in await bob.listed()
    (got,) = await bob.call(["PushSubscription/get", {"ids": [subscription]}, "g"])
    assert got["list"] == [] and got["notFound"] == [subscription]
    answer = await bob.set(update={subscription: {"types": ["Email"]}}, destroy=[subscription])
    assert answer["notUpdated"][subscription]["type"] == "notFound"
    assert answer["notDestroyed"][subscription]["type"] == "notFound"

    await deliver(server.lmtp_port, "For Bob", user="bob")
    await bob_control.delivery(bob_account, await bob.email_state(bob_account))
    await sleep(SETTLE)
    assert mine.changes() == []

    await deliver(server.lmtp_port, "For Alice")
    await mine.delivery(alice_account, await alice.email_state(alice_account))
    await sleep(SETTLE)
    assert [set(m["changed"]) for _, m in mine.changes()] == [{alice_account}]

    destroyed = await alice.set(destroy=[subscription])
    assert destroyed["destroyed"] == [subscription]
    assert subscription not in await alice.listed()
    await deliver(server.lmtp_port, "After destroy")
    await alice_control.delivery(alice_account, await alice.email_state(alice_account))
    await sleep(SETTLE)
    assert len(mine.changes()) == 1


@pytest_twisted.ensureDeferred
async def test_private_push_services_are_refused_by_default(
    tmp_path: Path, receiver: Receiver
) -> None:
    """
    Without ``--push-allow-private`` the server does not even connect to a
    push service on loopback: the verification is refused when connecting,
    and the server goes on serving.
    """
    refusals: list[LogEvent] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        if event.get("why") == "RefusedPushService":
            refusals.append(event)

    globalLogPublisher.addObserver(observe)
    running = await push_server(tmp_path / "data", receiver)
    try:
        alice = Client(running.base, "alice")
        device = Device(receiver, "inside")
        subscription = await alice.create(device)
        await eventually(lambda: refusals, "the refusal to connect")
        assert receiver.resource.posts == []
        assert receiver.connections.made == 0
        assert subscription in await alice.listed()
        (echo,) = await alice.call(["Core/echo", {"still": "serving"}, "e"])
        assert echo == {"still": "serving"}
    finally:
        globalLogPublisher.removeObserver(observe)
        await running.stop()


@pytest_twisted.ensureDeferred
async def test_rotated_vapid_key_is_advertised_and_ends_subscriptions(
    server: RunningServer, receiver: Receiver
) -> None:
    """
    ``jmap-admin vapid rotate`` against a running server: the session soon
    advertises the new key, the old subscription is gone and gets no more
    POSTs, and a new one is signed with the new key.
    """
    alice = Client(server.base, "alice")
    account = await alice.account()
    old_key = (await alice.session())["capabilities"][WEBPUSH_VAPID]["applicationServerKey"]
    before = Device(receiver, "before")
    old = await alice.subscribe(before)

    done = await deferToThread(
        subprocess.run,
        [command("jmap-admin"), "--data", str(server.data_dir), "vapid", "rotate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    new_key = done.stdout.split()[0]
    assert new_key != old_key

    async def advertised() -> bool:
        session = await alice.session()
        return bool(session["capabilities"][WEBPUSH_VAPID]["applicationServerKey"] == new_key)

    await eventually(advertised, "the rotated key in the session")
    assert old not in await alice.listed()

    after = Device(receiver, "after")
    await alice.subscribe(after)
    await deliver(server.lmtp_port, "Rotated")
    pushed, _ = await after.delivery(account, await alice.email_state(account))
    key, _claims = check_vapid(pushed.headers["authorization"], after.origin)
    assert key == new_key
    await sleep(SETTLE)
    assert before.changes() == []


@pytest_twisted.ensureDeferred
async def test_a_cluster_pushes_each_change_once(
    cluster: Cluster,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    """
    Two nodes on one database and broker: a subscription made on node A
    is pushed exactly one StateChange for a delivery accepted by node B,
    signed with the key both nodes share.
    """
    receiver = await start_receiver(tmp_path)
    try:
        options = (
            "--push-ca-file",
            str(receiver.cert),
            "--push-allow-private",
            "--vapid-subject",
            SUBJECT,
        )
        a: Node = await deferToThread(cluster.node, "a", *options)
        b: Node = await deferToThread(cluster.node, "b", *options)
        on_a, on_b = Client(a.http, "alice"), Client(b.http, "alice")
        await set_up_accounts(b.http, b.lmtp_port)
        account = await on_a.account()
        keys = {
            (await c.session())["capabilities"][WEBPUSH_VAPID]["applicationServerKey"]
            for c in (on_a, on_b)
        }
        assert len(keys) == 1
        device = Device(receiver, "cluster")
        await on_a.subscribe(device)
        # A node looks at the subscriptions' version again at most every
        # 2 s: let the one that handles the delivery see the verification.
        await sleep(2.5)

        accepted = await deliver(b.lmtp_port, "Across the cluster")
        pushed, _change = await device.delivery(account, await on_b.email_state(account))
        LATENCIES.append(pushed.at - accepted)
        await sleep(3.0)
        assert len(device.changes()) == 1
        key, _claims = check_vapid(pushed.headers["authorization"], device.origin)
        assert key in keys
    finally:
        await receiver.stop()
