"""
PushSubscription/get and /set (RFC 8620 §7.2), and how the engine names an
unknown method.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest_twisted
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from twisted.logger import capturedLogs
from zope.interface import implementer
from zope.interface.verify import verifyObject

from jmap_twisted.auth.realm import Principal
from jmap_twisted.core.engine import Engine
from jmap_twisted.core.limits import CoreLimits
from jmap_twisted.core.request import parse_request
from jmap_twisted.interfaces import IPushSubscriptionEvents
from jmap_twisted.methods import build_registry
from jmap_twisted.methods.push_subscription import PushSubscriptionLimits
from jmap_twisted.methods.standard import utc_date
from jmap_twisted.records import Account, PushSubscriptionRecord, User
from jmap_twisted.store.memory.directory import MemoryBlobStore
from jmap_twisted.store.memory.mail import MemoryMailStore
from jmap_twisted.store.memory.push import MemoryPushSubscriptions
from tests.methods.harness import CORE, MAIL
from tests.support import ImmediateReactor

NOW = 1_800_000_000
WEEK = 7 * 86400
ALICE = Principal(User("u1", "alice"), (Account("a1", "alice", "u1"),))
BOB = Principal(User("u2", "bob"), (Account("b1", "bob", "u2"),))
URL = "https://push.example.net/p/abc"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def client_keys() -> tuple[dict[str, str], bytes, bytes]:
    """
    A user agent's ``keys`` (RFC 8291) and their raw octets.
    """
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )
    auth = os.urandom(16)
    return {"p256dh": b64url(point), "auth": b64url(auth)}, point, auth


@implementer(IPushSubscriptionEvents)
class Events:
    """
    :class:`IPushSubscriptionEvents` that records its calls.
    """

    def __init__(self) -> None:
        self.records: list[PushSubscriptionRecord] = []
        self.changes = 0

    def created(self, record: PushSubscriptionRecord) -> None:
        self.records.append(record)

    def changed(self) -> None:
        self.changes += 1


class PushHarness:
    """
    The engine with push subscriptions in memory, for two users.
    """

    def __init__(self, limits: PushSubscriptionLimits | None = None, store: bool = True) -> None:
        self.clock = ImmediateReactor()
        self.clock.advance(NOW)
        self.subscriptions = MemoryPushSubscriptions()
        self.events = Events()
        methods = build_registry(
            CoreLimits(),
            MemoryMailStore(self.clock),
            MemoryBlobStore(self.clock),
            self.clock,
            push_subscriptions=self.subscriptions if store else None,
            push_events=self.events,
            push_limits=limits,
        )
        self.engine = Engine(methods.registry, CoreLimits())

    async def request(
        self, calls: list[Any], principal: Principal = ALICE, using: tuple[str, ...] = (CORE,)
    ) -> list[Any]:
        body = {"using": list(using), "methodCalls": calls}
        request = parse_request(body, self.engine.registry.capabilities, 16)
        response = await self.engine.execute(principal, request)
        return list(response["methodResponses"])

    async def call(
        self, name: str, arguments: dict[str, Any], principal: Principal = ALICE
    ) -> tuple[str, dict[str, Any]]:
        ((response_name, args, _),) = await self.request([[name, arguments, "c"]], principal)
        return response_name, args

    async def ok(
        self, name: str, arguments: dict[str, Any], principal: Principal = ALICE
    ) -> dict[str, Any]:
        response_name, args = await self.call(name, arguments, principal)
        assert response_name == name, args
        return args

    async def error(
        self, name: str, arguments: dict[str, Any], principal: Principal = ALICE
    ) -> dict[str, Any]:
        response_name, args = await self.call(name, arguments, principal)
        assert response_name == "error", args
        return args

    async def create(self, principal: Principal = ALICE, **properties: Any) -> str:
        """
        Create one subscription; its id.
        """
        obj = {"deviceClientId": "dev-1", "url": URL, **properties}
        result = await self.ok("PushSubscription/set", {"create": {"k": obj}}, principal)
        assert result["notCreated"] is None, result
        return str(result["created"]["k"]["id"])

    async def stored(self, user_id: str = "u1") -> dict[str, PushSubscriptionRecord]:
        return {r.id: r for r in await self.subscriptions.for_user(user_id)}


@pytest_twisted.ensureDeferred
async def test_create_verify_and_get() -> None:
    """
    A created subscription is stored unverified with the client's URL and
    keys, delivery is told to POST its verification, and /get shows it
    without url or keys and with a null verificationCode; the wrong code is
    invalidProperties, the right one verifies it and is then shown.
    """
    h = PushHarness()
    verifyObject(IPushSubscriptionEvents, h.events)
    keys, point, auth = client_keys()
    result = await h.ok(
        "PushSubscription/set",
        {
            "create": {
                "k": {
                    "deviceClientId": "dev-1",
                    "url": URL,
                    "keys": keys,
                    "types": ["Email", "Mailbox"],
                }
            }
        },
    )
    assert set(result) == {
        "created",
        "updated",
        "destroyed",
        "notCreated",
        "notUpdated",
        "notDestroyed",
    }
    created = result["created"]["k"]
    sub_id = created["id"]
    assert created == {"id": sub_id, "expires": utc_date(NOW + WEEK), "verificationCode": None}
    (record,) = h.events.records
    assert record == (await h.stored())[sub_id]
    assert (record.url, record.p256dh, record.auth) == (URL, point, auth)
    assert record.user_id == "u1" and record.device_client_id == "dev-1"
    assert record.verified is False
    assert len(record.verification_code) >= 32
    assert record.types == ("Email", "Mailbox")
    assert record.created == NOW
    assert h.events.changes == 1

    got = await h.ok("PushSubscription/get", {"ids": None})
    assert got == {
        "list": [
            {
                "id": sub_id,
                "deviceClientId": "dev-1",
                "verificationCode": None,
                "expires": utc_date(NOW + WEEK),
                "types": ["Email", "Mailbox"],
            }
        ],
        "notFound": [],
    }

    wrong = await h.ok("PushSubscription/set", {"update": {sub_id: {"verificationCode": "guess"}}})
    assert wrong["updated"] is None
    assert wrong["notUpdated"][sub_id]["type"] == "invalidProperties"
    assert wrong["notUpdated"][sub_id]["properties"] == ["verificationCode"]
    assert (await h.stored())[sub_id].verified is False
    assert h.events.changes == 1

    right = await h.ok(
        "PushSubscription/set",
        {"update": {sub_id: {"verificationCode": record.verification_code}}},
    )
    assert right["updated"] == {sub_id: None}
    assert (await h.stored())[sub_id].verified is True
    assert h.events.changes == 2
    (shown,) = (await h.ok("PushSubscription/get", {"ids": [sub_id]}))["list"]
    assert shown["verificationCode"] == record.verification_code
    assert "url" not in shown and "keys" not in shown

    unset = await h.ok("PushSubscription/set", {"update": {sub_id: {"verificationCode": None}}})
    assert unset["notUpdated"][sub_id]["properties"] == ["verificationCode"]
    assert (await h.stored())[sub_id].verified is True


@pytest_twisted.ensureDeferred
async def test_get_properties_and_ids() -> None:
    """
    Asking for url or keys is forbidden, an unknown property is
    invalidArguments; the id is always returned; unknown ids are notFound,
    in request order; there is no accountId or state.
    """
    h = PushHarness()
    sub_id = await h.create(types=None)
    for properties in (["url"], ["id", "keys"]):
        error = await h.error("PushSubscription/get", {"properties": properties})
        assert error["type"] == "forbidden"
    error = await h.error("PushSubscription/get", {"properties": ["secret"]})
    assert error["type"] == "invalidArguments"
    got = await h.ok(
        "PushSubscription/get", {"ids": ["nope", sub_id, "P0"], "properties": ["types"]}
    )
    assert got == {"list": [{"id": sub_id, "types": None}], "notFound": ["nope", "P0"]}
    everything = await h.ok("PushSubscription/get", {})
    assert [s["id"] for s in everything["list"]] == [sub_id]


@pytest_twisted.ensureDeferred
async def test_arguments_without_account_or_state() -> None:
    """
    Neither method takes accountId; /set takes no ifInState; any other
    unknown argument is invalidArguments too.
    """
    h = PushHarness()
    for name, arguments in (
        ("PushSubscription/get", {"accountId": "a1"}),
        ("PushSubscription/get", {"foo": 1}),
        ("PushSubscription/set", {"accountId": "a1", "create": {}}),
        ("PushSubscription/set", {"ifInState": "s1"}),
        ("PushSubscription/set", {"bar": True}),
    ):
        error = await h.error(name, arguments)
        assert error["type"] == "invalidArguments", (name, arguments)
    assert (
        "accountId" in (await h.error("PushSubscription/get", {"accountId": "a1"}))["description"]
    )
    assert await h.stored() == {}


@pytest_twisted.ensureDeferred
async def test_invalid_creations() -> None:
    """
    Each bad property is invalidProperties naming exactly the properties at
    fault; nothing is stored and delivery hears nothing.
    """
    h = PushHarness()
    keys, _, _ = client_keys()
    ok = {"deviceClientId": "dev-1", "url": URL}
    cases: dict[str, tuple[dict[str, Any], list[str]]] = {
        "http": ({**ok, "url": "http://push.example.net/x"}, ["url"]),
        "nohost": ({**ok, "url": "https:///x"}, ["url"]),
        "badport": ({**ok, "url": "https://push.example.net:99999/x"}, ["url"]),
        "spaces": ({**ok, "url": "https://push.example.net/a b"}, ["url"]),
        "nourl": ({"deviceClientId": "dev-1"}, ["url"]),
        "nodevice": ({"url": URL}, ["deviceClientId"]),
        "devicetype": ({**ok, "deviceClientId": 7}, ["deviceClientId"]),
        "shortkey": ({**ok, "keys": {**keys, "p256dh": b64url(b"\x04" * 10)}}, ["keys"]),
        "shortauth": ({**ok, "keys": {**keys, "auth": b64url(b"x" * 8)}}, ["keys"]),
        "noauth": ({**ok, "keys": {"p256dh": keys["p256dh"]}}, ["keys"]),
        "keystype": ({**ok, "keys": "k"}, ["keys"]),
        "code": ({**ok, "verificationCode": "mine"}, ["verificationCode"]),
        "id": ({**ok, "id": "P1"}, ["id"]),
        "unknown": ({**ok, "colour": "red"}, ["colour"]),
        "types": ({**ok, "types": ["Email", "Nonsense"]}, ["types"]),
        "typestype": ({**ok, "types": "Email"}, ["types"]),
        "past": ({**ok, "expires": utc_date(NOW - 60)}, ["expires"]),
        "now": ({**ok, "expires": utc_date(NOW)}, ["expires"]),
        "date": ({**ok, "expires": "tomorrow"}, ["expires"]),
        "several": ({"url": "ftp://x", "types": ["X"]}, ["deviceClientId", "types", "url"]),
    }
    result = await h.ok(
        "PushSubscription/set", {"create": {k: obj for k, (obj, _) in cases.items()}}
    )
    assert result["created"] is None
    for key, (_, properties) in cases.items():
        error = result["notCreated"][key]
        assert error["type"] == "invalidProperties", key
        assert error["properties"] == properties, key
    not_object = await h.ok("PushSubscription/set", {"create": {"x": "string"}})
    assert not_object["notCreated"]["x"]["type"] == "invalidProperties"
    assert await h.stored() == {}
    assert h.events.records == [] and h.events.changes == 0


@pytest_twisted.ensureDeferred
async def test_expires_is_clamped_on_the_clock() -> None:
    """
    ``expires`` defaults to, and is lowered to, now plus the longest
    lifetime, and the value chosen is returned; an update may extend it
    within the same bound, and an expired subscription is gone from /get
    and cannot be updated.
    """
    h = PushHarness(PushSubscriptionLimits(max_lifetime=86400))
    soon = await h.ok(
        "PushSubscription/set",
        {
            "create": {
                "soon": {"deviceClientId": "d", "url": URL, "expires": utc_date(NOW + 3600)},
                "late": {"deviceClientId": "d", "url": URL, "expires": utc_date(NOW + WEEK)},
                "none": {"deviceClientId": "d", "url": URL, "expires": None},
            }
        },
    )
    created = soon["created"]
    assert created["soon"]["expires"] == utc_date(NOW + 3600)
    assert created["late"]["expires"] == utc_date(NOW + 86400)
    assert created["none"]["expires"] == utc_date(NOW + 86400)
    stored = await h.stored()
    assert stored[created["late"]["id"]].expires == NOW + 86400

    h.clock.advance(1800)
    sub_id = created["soon"]["id"]
    within = await h.ok(
        "PushSubscription/set", {"update": {sub_id: {"expires": utc_date(NOW + 7200)}}}
    )
    assert within["updated"] == {sub_id: None}
    beyond = await h.ok(
        "PushSubscription/set", {"update": {sub_id: {"expires": utc_date(NOW + 10 * 86400)}}}
    )
    assert beyond["updated"] == {sub_id: {"expires": utc_date(NOW + 1800 + 86400)}}
    assert (await h.stored())[sub_id].expires == NOW + 1800 + 86400
    past = await h.ok("PushSubscription/set", {"update": {sub_id: {"expires": utc_date(NOW)}}})
    assert past["notUpdated"][sub_id]["properties"] == ["expires"]

    h.clock.advance(86400)  # every subscription has now expired
    assert (await h.ok("PushSubscription/get", {}))["list"] == []
    gone = await h.ok("PushSubscription/set", {"update": {sub_id: {"types": None}}})
    assert gone["notUpdated"][sub_id]["type"] == "notFound"


@pytest_twisted.ensureDeferred
async def test_immutable_properties_and_types() -> None:
    """
    deviceClientId, url and keys cannot change (the same value is
    accepted); types can, to known type names; only a real change tells
    delivery.
    """
    h = PushHarness()
    keys, _, _ = client_keys()
    other, _, _ = client_keys()
    sub_id = await h.create(keys=keys)
    changes = h.events.changes
    for patch, properties in (
        ({"url": "https://elsewhere.example/x"}, ["url"]),
        ({"deviceClientId": "dev-2"}, ["deviceClientId"]),
        ({"keys": other}, ["keys"]),
        ({"keys": None}, ["keys"]),
        ({"keys/auth": other["auth"]}, ["keys"]),
        ({"id": "P1"}, ["id"]),
        ({"colour": "red"}, ["colour"]),
        ({"types": ["Email", "Bogus"]}, ["types"]),
    ):
        result = await h.ok("PushSubscription/set", {"update": {sub_id: patch}})
        error = result["notUpdated"][sub_id]
        assert (error["type"], error["properties"]) == ("invalidProperties", properties), patch
    padded = {k: v + "=" * (-len(v) % 4) for k, v in keys.items()}
    same = await h.ok(
        "PushSubscription/set",
        {"update": {sub_id: {"url": URL, "deviceClientId": "dev-1", "keys": padded}}},
    )
    assert same["updated"] == {sub_id: None}
    assert h.events.changes == changes
    typed = await h.ok("PushSubscription/set", {"update": {sub_id: {"types": ["Email"]}}})
    assert typed["updated"] == {sub_id: None}
    assert (await h.stored())[sub_id].types == ("Email",)
    assert h.events.changes == changes + 1
    bad_patch = await h.ok("PushSubscription/set", {"update": {sub_id: ["types"]}})
    assert bad_patch["notUpdated"][sub_id]["type"] == "invalidPatch"


@pytest_twisted.ensureDeferred
async def test_users_see_only_their_own() -> None:
    """
    Another user's subscription is notFound to get, update and destroy,
    and stays as it was; its owner can destroy it.
    """
    h = PushHarness()
    sub_id = await h.create(ALICE)
    before = await h.stored()
    got = await h.ok("PushSubscription/get", {"ids": [sub_id]}, BOB)
    assert got == {"list": [], "notFound": [sub_id]}
    assert (await h.ok("PushSubscription/get", {"ids": None}, BOB))["list"] == []
    result = await h.ok(
        "PushSubscription/set",
        {"update": {sub_id: {"types": ["Email"]}}, "destroy": [sub_id]},
        BOB,
    )
    assert result["notUpdated"] == {sub_id: {"type": "notFound"}}
    assert result["notDestroyed"] == {sub_id: {"type": "notFound"}}
    assert await h.stored() == before
    changes = h.events.changes
    destroyed = await h.ok("PushSubscription/set", {"destroy": [sub_id, "P0"]})
    assert destroyed["destroyed"] == [sub_id]
    assert destroyed["notDestroyed"] == {"P0": {"type": "notFound"}}
    assert await h.stored() == {}
    assert h.events.changes == changes + 1
    assert (await h.ok("PushSubscription/get", {"ids": [sub_id]}))["notFound"] == [sub_id]


@pytest_twisted.ensureDeferred
async def test_creation_references() -> None:
    """
    An update or destroy in the same call may name a subscription created
    earlier in it by ``#creationId``; a later call finds it the same way.
    """
    h = PushHarness()
    responses = await h.request(
        [
            [
                "PushSubscription/set",
                {
                    "create": {"k": {"deviceClientId": "d", "url": URL}},
                    "update": {"#k": {"types": ["Mailbox"]}},
                },
                "0",
            ],
            ["PushSubscription/set", {"destroy": ["#k"]}, "1"],
        ]
    )
    sub_id = responses[0][1]["created"]["k"]["id"]
    assert responses[0][1]["updated"] == {sub_id: None}
    assert responses[1][1]["destroyed"] == [sub_id]


@pytest_twisted.ensureDeferred
async def test_count_and_rate_limits() -> None:
    """
    A user holds at most ``max_per_user`` subscriptions (overQuota) and
    creates at most ``creations_per_hour`` in any hour (rateLimit); refused
    or invalid creations do not count, other users are not affected, and
    the rate recovers an hour later.
    """
    h = PushHarness(PushSubscriptionLimits(max_per_user=2, creations_per_hour=3))
    obj = {"deviceClientId": "d", "url": URL}
    first = await h.ok(
        "PushSubscription/set",
        {"create": {"a": obj, "bad": {"url": URL}, "b": obj, "c": obj}},
    )
    assert set(first["created"]) == {"a", "b"}
    assert first["notCreated"]["bad"]["type"] == "invalidProperties"
    assert first["notCreated"]["c"]["type"] == "overQuota"
    assert "2" in first["notCreated"]["c"]["description"]
    await h.ok("PushSubscription/set", {"destroy": [first["created"]["a"]["id"]]})
    await h.create()  # the third creation this hour
    await h.ok("PushSubscription/set", {"destroy": [s for s in await h.stored()]})
    limited = await h.ok("PushSubscription/set", {"create": {"d": obj}})
    assert limited["notCreated"]["d"]["type"] == "rateLimit"
    assert await h.stored() == {}
    await h.create(BOB)
    h.clock.advance(3600)
    await h.create()
    assert len(await h.stored()) == 1


@pytest_twisted.ensureDeferred
async def test_failing_listener_is_logged_not_returned() -> None:
    """
    A push delivery that fails when told of a creation is logged; the
    subscription stays created and the client is told so.
    """
    h = PushHarness()

    def broken(record: PushSubscriptionRecord) -> None:
        raise RuntimeError("delivery is down")

    h.events.created = broken  # type: ignore[method-assign]
    with capturedLogs() as logged:
        sub_id = await h.create()
    assert sub_id in await h.stored()
    assert any(e.get("log_failure") is not None for e in logged)


@pytest_twisted.ensureDeferred
async def test_unknown_method_wording() -> None:
    """
    A method that does not exist is described as such, without blaming
    ``using``; a known method whose capability is missing from ``using``
    names that capability; without a subscription store the push methods
    do not exist.
    """
    h = PushHarness()
    ((_, nope, _), (_, mailbox, _), (name, _, _)) = await h.request(
        [
            ["Nope/x", {}, "a"],
            ["Mailbox/get", {"accountId": "a1"}, "b"],
            ["PushSubscription/get", {}, "c"],
        ]
    )
    assert nope["type"] == "unknownMethod"
    assert "no method" in nope["description"] and "using" not in nope["description"]
    assert mailbox["type"] == "unknownMethod"
    assert MAIL in mailbox["description"] and "'using'" in mailbox["description"]
    assert name == "PushSubscription/get"
    without = PushHarness(store=False)
    error = await without.error("PushSubscription/set", {})
    assert error["type"] == "unknownMethod" and "no method" in error["description"]
