"""
Running requests within each user's slots (RFC 8620 §2
``maxConcurrentRequests``), the same for every transport: the request
runner and the per-user octet budget of requests waiting for a slot.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, Deferred

from jmap_twisted.auth.realm import Principal
from jmap_twisted.core import eager
from jmap_twisted.core.engine import Engine
from jmap_twisted.core.limits import CoreLimits
from jmap_twisted.core.registry import CORE, CallContext, Capability, Registry
from jmap_twisted.core.runner import QUEUED_BYTES_FACTOR, OctetBudget, RequestRunner
from jmap_twisted.errors import LimitExceeded, NotRequest, RequestLevelError, UnknownCapability
from jmap_twisted.records import Account, User

TEST = "urn:example:runner"
ALICE = Principal(User("u-alice", "alice"), (Account("A1", "alice", "u-alice"),))
BOB = Principal(User("u-bob", "bob"), (Account("B1", "bob", "u-bob"),))


def submit(m: Any, *args: Any) -> Deferred[Any]:
    """
    ``RequestRunner.submit``, awaited at once as the WebSocket session does
    (a request that finds a slot free runs on the spot).
    """
    return eager.start(_awaited(m.runner.submit(*args)))


async def _awaited(running: Awaitable[Any]) -> Any:
    return await running


class Methods:
    """
    A runner over a registry whose methods the test drives: ``Test/wait``
    waits until the test fires its gate, ``Test/gone`` fails as a request
    whose client went away does, ``Test/echo`` answers at once.
    """

    def __init__(self, **limits: Any) -> None:
        self.limits = CoreLimits(**limits)
        registry = Registry()
        registry.add_capability(Capability(CORE, {}, None))
        registry.add_capability(Capability(TEST, {}, None))
        #: One gate per ``Test/wait`` call, in call order.
        self.gates: list[Deferred[None]] = []

        async def wait(context: CallContext, args: dict[str, Any]) -> dict[str, Any]:
            gate: Deferred[None] = Deferred()
            self.gates.append(gate)
            await gate
            return {"waited": True}

        async def gone(context: CallContext, args: dict[str, Any]) -> dict[str, Any]:
            raise CancelledError()

        async def echo(context: CallContext, args: dict[str, Any]) -> dict[str, Any]:
            return args

        registry.add_method("Test/wait", TEST, wait)
        registry.add_method("Test/gone", TEST, gone)
        registry.add_method("Test/echo", TEST, echo)
        self.runner = RequestRunner(
            Engine(registry, self.limits), registry.capabilities, self.limits
        )

    def in_use(self, principal: Principal) -> int:
        return self.runner.limiter.in_use(principal.user.id)

    def queued(self, principal: Principal) -> int:
        return self.runner.queued.held(principal.user.id)


def request(method: str, **arguments: Any) -> dict[str, Any]:
    return {"using": [CORE, TEST], "methodCalls": [[method, arguments, "c0"]]}


def payload(value: Any) -> bytes:
    return json.dumps(value).encode()


def first_response(response: dict[str, Any]) -> list[Any]:
    return list(response["methodResponses"][0])


@pytest_twisted.ensureDeferred
async def test_run_holds_one_slot_while_executing_and_gives_it_back() -> None:
    """
    A request holds one of its user's slots from the moment it is parsed
    until its response is built, and gives it back afterwards; one whose
    execution raises (its client went away) gives it back too.
    """
    m = Methods()
    running = Deferred.fromCoroutine(m.runner.run(ALICE, request("Test/wait")))
    assert m.in_use(ALICE) == 1
    m.gates[0].callback(None)
    response = await running
    assert first_response(response) == ["Test/wait", {"waited": True}, "c0"]
    assert m.in_use(ALICE) == 0
    with pytest.raises(CancelledError):
        await m.runner.run(ALICE, request("Test/gone"))
    assert m.in_use(ALICE) == 0


@pytest_twisted.ensureDeferred
async def test_a_user_with_every_slot_taken_is_refused_while_another_is_served() -> None:
    """
    When a user already runs ``maxConcurrentRequests`` requests, another
    of theirs gets the ``limit`` error naming maxConcurrentRequests; a
    second user's request still runs, and the first user is served again
    once a slot frees.
    """
    m = Methods(max_concurrent_requests=2)
    first = Deferred.fromCoroutine(m.runner.run(ALICE, request("Test/wait")))
    second = Deferred.fromCoroutine(m.runner.run(ALICE, request("Test/wait")))
    with pytest.raises(LimitExceeded) as refused:
        await m.runner.run(ALICE, request("Test/echo", n=1))
    assert refused.value.extra == {"limit": "maxConcurrentRequests"}
    assert m.in_use(ALICE) == 2
    served = await m.runner.run(BOB, request("Test/echo", n=2))
    assert first_response(served) == ["Test/echo", {"n": 2}, "c0"]
    m.gates[0].callback(None)
    await first
    again = await m.runner.run(ALICE, request("Test/echo", n=3))
    assert first_response(again) == ["Test/echo", {"n": 3}, "c0"]
    m.gates[1].callback(None)
    await second
    assert m.in_use(ALICE) == 0


@pytest_twisted.ensureDeferred
async def test_an_invalid_request_raises_its_error_and_takes_no_slot() -> None:
    """
    A value that is not a valid Request raises its request-level error
    (notRequest, unknownCapability) and leaves no slot taken; when a slot
    was taken for it beforehand, that slot is given back.
    """
    m = Methods(max_concurrent_requests=1)
    with pytest.raises(NotRequest):
        await m.runner.run(ALICE, {"using": [CORE], "methodCalls": "no"})
    with pytest.raises(UnknownCapability):
        await m.runner.run(ALICE, {"using": ["urn:example:nothing"], "methodCalls": []})
    assert m.in_use(ALICE) == 0
    release = m.runner.limiter.try_acquire(ALICE.user.id)
    with pytest.raises(RequestLevelError):
        await m.runner.run(ALICE, [], release)
    assert m.in_use(ALICE) == 0
    # The user's only slot is free again: a valid request runs.
    response = await m.runner.run(ALICE, request("Test/echo"))
    assert first_response(response) == ["Test/echo", {}, "c0"]


def test_submit_runs_at_once_when_a_slot_is_free() -> None:
    """
    A submitted request that finds a slot free runs on the spot: its
    response is ready when ``submit`` returns, nothing is held as queued,
    and the slot is free again; ``unwrap`` gives the Request inside the
    message (a WebSocket message carries ``@type`` and ``id`` beside it).
    """
    m = Methods()
    message = {"@type": "Request", "id": "r1", **request("Test/echo", a=1)}
    submitted = submit(
        m,
        ALICE,
        message,
        payload(message),
        lambda v: {k: x for k, x in v.items() if k not in ("@type", "id")},
    )
    assert submitted.called
    assert first_response(submitted.result) == ["Test/echo", {"a": 1}, "c0"]
    assert (m.in_use(ALICE), m.queued(ALICE)) == (0, 0)


def test_submit_queues_holding_the_payload_octets_until_it_runs() -> None:
    """
    A request submitted while every slot of its user is taken waits,
    holding its message's octets in ``queued``; once a slot frees it is
    parsed again from those octets (``unwrap`` applied), runs, and the
    octets are given back.
    """
    m = Methods(max_concurrent_requests=1)
    busy = submit(m, ALICE, request("Test/wait"), payload(request("Test/wait")))
    assert not busy.called and m.in_use(ALICE) == 1
    message = {"@type": "Request", "id": "r2", **request("Test/echo", b=2)}
    octets = payload(message)
    waiting = submit(
        m,
        ALICE,
        {"the parsed value": "is not kept"},
        octets,
        lambda v: {k: x for k, x in v.items() if k not in ("@type", "id")},
    )
    assert not waiting.called
    assert m.queued(ALICE) == len(octets)
    assert m.in_use(ALICE) == 1
    m.gates[0].callback(None)
    assert busy.called
    assert waiting.called
    assert first_response(waiting.result) == ["Test/echo", {"b": 2}, "c0"]
    assert (m.in_use(ALICE), m.queued(ALICE)) == (0, 0)


def test_submit_refuses_past_the_octet_budget_while_others_still_run() -> None:
    """
    The requests of one user waiting for a slot hold at most
    ``QUEUED_BYTES_FACTOR`` × maxSizeRequest octets: one more is refused
    at once with the maxConcurrentRequests limit error (holding nothing);
    another user's request still runs at once, and the waiting ones all
    run in turn.
    """
    m = Methods(max_concurrent_requests=1, max_size_request=100)
    budget = QUEUED_BYTES_FACTOR * 100
    submit(m, ALICE, request("Test/wait"), payload(request("Test/wait")))
    queued = []
    held = 0
    index = 0
    while True:
        value = request("Test/echo", i=index, pad="x" * 60)
        octets = payload(value)
        if held + len(octets) > budget:
            break
        queued.append(submit(m, ALICE, value, octets))
        held += len(octets)
        index += 1
    assert len(queued) >= 2 and m.queued(ALICE) == held
    refused_value = request("Test/echo", i="refused", pad="x" * 60)
    with pytest.raises(LimitExceeded) as refused:
        submit(m, ALICE, refused_value, payload(refused_value))
    assert refused.value.extra == {"limit": "maxConcurrentRequests"}
    assert m.queued(ALICE) == held
    other = submit(m, BOB, request("Test/echo", who="bob"), b"{}")
    assert first_response(other.result) == ["Test/echo", {"who": "bob"}, "c0"]
    assert m.runner.queued.held(BOB.user.id) == 0
    m.gates[0].callback(None)
    assert [first_response(d.result)[1]["i"] for d in queued] == list(range(len(queued)))
    assert (m.in_use(ALICE), m.queued(ALICE)) == (0, 0)


def test_a_queued_request_cancelled_while_waiting_gives_its_octets_back() -> None:
    """
    Cancelling a request that waits for a slot (its connection closed)
    gives back the octets it held, and it never takes a slot: when the
    running request finishes, the user holds nothing.
    """
    m = Methods(max_concurrent_requests=1)
    submit(m, ALICE, request("Test/wait"), payload(request("Test/wait")))
    waiting = submit(m, ALICE, request("Test/echo"), payload(request("Test/echo")))
    assert m.queued(ALICE) > 0
    failures: list[Any] = []
    waiting.addErrback(failures.append)
    waiting.cancel()
    assert failures and failures[0].check(CancelledError)
    assert m.queued(ALICE) == 0
    m.gates[0].callback(None)
    assert (m.in_use(ALICE), m.queued(ALICE)) == (0, 0)
    after = submit(m, ALICE, request("Test/echo", c=1), payload(request("Test/echo", c=1)))
    assert first_response(after.result) == ["Test/echo", {"c": 1}, "c0"]


def test_octet_budget_is_bounded_per_user() -> None:
    """
    A user may hold octets up to the limit exactly; a take past it fails
    and takes nothing; users are counted apart; giving back frees room,
    and giving back more than is held leaves nothing held.
    """
    budget = OctetBudget(100)
    assert budget.take("a", 60)
    assert budget.take("a", 40)
    assert budget.held("a") == 100
    assert not budget.take("a", 1)
    assert budget.held("a") == 100
    assert budget.take("b", 100) and budget.held("b") == 100
    budget.give("a", 30)
    assert budget.held("a") == 70
    assert not budget.take("a", 31)
    assert budget.take("a", 30)
    budget.give("a", 500)
    assert budget.held("a") == 0
    assert budget.take("a", 100)
    assert not OctetBudget(10).take("c", 11)
