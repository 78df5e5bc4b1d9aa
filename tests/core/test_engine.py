"""
Running method calls: dispatch, errors, result references, createdIds.
"""

from typing import Any

import pytest_twisted

from jmap_twisted.auth.realm import Principal
from jmap_twisted.core.engine import Engine
from jmap_twisted.core.limits import CoreLimits
from jmap_twisted.core.registry import CORE, CallContext, Capability
from jmap_twisted.core.request import parse_request
from jmap_twisted.core.session import session_state
from jmap_twisted.errors import Forbidden
from jmap_twisted.methods import build_registry
from jmap_twisted.records import Account, User
from jmap_twisted.store.memory.directory import MemoryBlobStore
from jmap_twisted.store.memory.mail import MemoryMailStore
from tests.support import ImmediateReactor

TEST = "urn:example:test"
ALICE = Principal(User("u1", "alice"), (Account("A1", "alice", "u1"), Account("B1", "bob", "u2")))


def make_engine() -> Engine:
    limits = CoreLimits()
    clock = ImmediateReactor()
    registry = build_registry(
        limits, MemoryMailStore(clock), MemoryBlobStore(clock), clock
    ).registry
    registry.add_capability(Capability(TEST, {}, {}))
    registry.add_capability(Capability("urn:example:noaccount", {}, None))

    async def ids(context: CallContext, args: dict[str, Any]) -> dict[str, Any]:
        account = context.account(args, TEST)
        context.created_ids["new"] = "X1"
        return {"accountId": account.id, "ids": ["i1", "i2"], "list": [{"id": "i1"}]}

    async def forbidden(context: CallContext, args: dict[str, Any]) -> dict[str, Any]:
        raise Forbidden("no")

    async def broken(context: CallContext, args: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("bug")

    async def needs_account(context: CallContext, args: dict[str, Any]) -> dict[str, Any]:
        context.account(args, "urn:example:noaccount")
        return {}

    async def implicit(context: CallContext, args: dict[str, Any]) -> dict[str, Any]:
        context.add_response("Test/ids", {"implicit": True})
        return {}

    registry.add_method("Test/ids", TEST, ids)
    registry.add_method("Test/forbidden", TEST, forbidden)
    registry.add_method("Test/broken", TEST, broken)
    registry.add_method("Test/implicit", TEST, implicit)
    registry.add_method("Other/needsAccount", "urn:example:noaccount", needs_account)
    return Engine(registry, limits)


async def run(engine: Engine, calls: list[Any], **extra: Any) -> dict[str, Any]:
    request = parse_request(
        {"using": [CORE, TEST, "urn:example:noaccount"], "methodCalls": calls, **extra},
        engine.registry.capabilities,
        16,
    )
    return await engine.execute(ALICE, request)


@pytest_twisted.ensureDeferred
async def test_echo_returns_arguments_and_session_state() -> None:
    """
    Core/echo answers with its arguments; the response carries the session
    state and no createdIds when none were sent.
    """
    engine = make_engine()
    response = await run(engine, [["Core/echo", {"hello": [1, "x"]}, "c1"]])
    assert response["methodResponses"] == [["Core/echo", {"hello": [1, "x"]}, "c1"]]
    assert response["sessionState"] == session_state(ALICE, engine.registry)
    assert "createdIds" not in response


@pytest_twisted.ensureDeferred
async def test_unknown_method_and_not_in_using() -> None:
    """
    A method that does not exist, or whose capability is not in ``using``,
    is unknownMethod, and later calls still run.
    """
    engine = make_engine()
    request = parse_request(
        {
            "using": [CORE],
            "methodCalls": [["Nope/x", {}, "a"], ["Test/ids", {}, "b"], ["Core/echo", {}, "c"]],
        },
        engine.registry.capabilities,
        16,
    )
    response = await engine.execute(ALICE, request)
    assert [r[0] for r in response["methodResponses"]] == ["error", "error", "Core/echo"]
    assert response["methodResponses"][0][1]["type"] == "unknownMethod"
    assert response["methodResponses"][0][1]["description"] == "There is no method 'Nope/x'."
    assert response["methodResponses"][1][1]["type"] == "unknownMethod"
    assert TEST in response["methodResponses"][1][1]["description"]


@pytest_twisted.ensureDeferred
async def test_method_errors() -> None:
    """
    Method errors are reported with their type; an unexpected exception is
    serverFail; account checks give accountNotFound, invalidArguments and
    accountNotSupportedByMethod.
    """
    response = await run(
        make_engine(),
        [
            ["Test/forbidden", {}, "a"],
            ["Test/broken", {}, "b"],
            ["Test/ids", {"accountId": "nope"}, "c"],
            ["Test/ids", {}, "d"],
            ["Other/needsAccount", {"accountId": "A1"}, "e"],
            ["Test/ids", {"accountId": "B1"}, "f"],
        ],
    )
    types = [r[1].get("type") for r in response["methodResponses"]]
    assert types == [
        "forbidden",
        "serverFail",
        "accountNotFound",
        "invalidArguments",
        "accountNotSupportedByMethod",
        None,
    ]
    assert response["methodResponses"][5] == [
        "Test/ids",
        {"accountId": "B1", "ids": ["i1", "i2"], "list": [{"id": "i1"}]},
        "f",
    ]


@pytest_twisted.ensureDeferred
async def test_result_references() -> None:
    """
    ``#arg`` references resolve against earlier responses; a bad reference
    is invalidResultReference for that call only.
    """
    response = await run(
        make_engine(),
        [
            ["Test/ids", {"accountId": "A1"}, "a"],
            [
                "Core/echo",
                {"#got": {"resultOf": "a", "name": "Test/ids", "path": "/list/*/id"}},
                "b",
            ],
            ["Core/echo", {"#got": {"resultOf": "zz", "name": "Test/ids", "path": "/ids"}}, "c"],
        ],
    )
    assert response["methodResponses"][1] == ["Core/echo", {"got": ["i1"]}, "b"]
    assert response["methodResponses"][2][1]["type"] == "invalidResultReference"


@pytest_twisted.ensureDeferred
async def test_created_ids_round_trip() -> None:
    """
    createdIds sent by the client come back, with ids created by methods.
    """
    response = await run(
        make_engine(), [["Test/ids", {"accountId": "A1"}, "a"]], createdIds={"old": "O1"}
    )
    assert response["createdIds"] == {"old": "O1", "new": "X1"}


@pytest_twisted.ensureDeferred
async def test_implicit_responses_follow_the_call() -> None:
    """
    A method's implicit responses come right after its own, with its call id.
    """
    response = await run(make_engine(), [["Test/implicit", {}, "a"], ["Core/echo", {}, "b"]])
    assert response["methodResponses"] == [
        ["Test/implicit", {}, "a"],
        ["Test/ids", {"implicit": True}, "a"],
        ["Core/echo", {}, "b"],
    ]


@pytest_twisted.ensureDeferred
async def test_session_state_follows_the_principal_from_request_to_request() -> None:
    """
    A connection keeps one principal for many requests; when its accounts
    change (a new principal), the next response carries the new state.
    """
    engine = make_engine()
    request = parse_request(
        {"using": [CORE], "methodCalls": [["Core/echo", {}, "0"]]},
        engine.registry.capabilities,
        10,
    )
    first = await engine.execute(ALICE, request)
    again = await engine.execute(ALICE, request)
    fewer = Principal(ALICE.user, ALICE.accounts[:1])
    changed = await engine.execute(fewer, request)
    back = await engine.execute(ALICE, request)
    assert first["sessionState"] == again["sessionState"] == back["sessionState"]
    assert changed["sessionState"] == session_state(fewer, engine.registry)
    assert changed["sessionState"] != first["sessionState"]
