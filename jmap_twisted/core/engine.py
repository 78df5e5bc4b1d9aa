"""
Runs the method calls of a Request (RFC 8620 §3.3–§3.7) and builds the
Response.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError
from twisted.logger import Logger

from jmap_twisted.core.limits import CoreLimits
from jmap_twisted.core.pointer import resolve_references
from jmap_twisted.core.registry import CallContext, Registry
from jmap_twisted.core.request import Request
from jmap_twisted.core.session import account_capabilities, session_state
from jmap_twisted.errors import (
    DiskFull,
    MethodError,
    QueryTimeout,
    ServerFail,
    ServerUnavailable,
    UnknownMethod,
)
from jmap_twisted.interfaces import IPrincipal

if TYPE_CHECKING:
    from jmap_twisted.metrics import ServerMetrics

log = Logger()

Response = tuple[str, dict[str, Any], str]


class Engine:
    """
    Executes validated requests for authenticated principals.

    :param metrics: where each call's method, time and error are counted.
    """

    def __init__(
        self, registry: Registry, limits: CoreLimits, metrics: ServerMetrics | None = None
    ) -> None:
        self.registry = registry
        self.limits = limits
        self.metrics = metrics
        #: The last principal seen and its session state: a WebSocket
        #: keeps one principal for request after request.
        self._last_state: tuple[IPrincipal | None, str] = (None, "")

    def _session_state(self, principal: IPrincipal) -> str:
        last, state = self._last_state
        if last is not principal:
            state = session_state(principal, self.registry)
            self._last_state = (principal, state)
        return state

    def _observe(self, name: str, seconds: float, answers: list[Response]) -> None:
        """
        Count one call: its method, how long it took, and the error type
        it was answered with, if any (its first answer is the error).
        """
        assert self.metrics is not None
        error = None
        if answers and answers[0][0] == "error":
            error = str(answers[0][1].get("type", "serverFail"))
        self.metrics.api_call(name, seconds, error)

    def _unknown(self, name: str) -> MethodError:
        """
        Why ``name`` cannot be called: there is no such method, or its
        capability is missing from ``using``.
        """
        capability = self.registry.capability_of(name)
        if capability is None:
            return UnknownMethod(f"There is no method {name!r}.")
        return UnknownMethod(f"{name!r} needs {capability!r} in 'using'.")

    async def execute(self, principal: IPrincipal, request: Request) -> dict[str, Any]:
        """
        Run every method call in order and return the Response object.

        Method-level errors become ``error`` responses; an unexpected
        exception in a method is logged and becomes ``serverFail``, and later
        calls still run.  A read stopped for running past its time budget
        is ``serverFail`` too (RFC 8620 §3.6.2: the same call is expected
        to fail again, and nothing was changed), with a description and no
        traceback in the log; a write refused because the disk is full is
        ``serverUnavailable`` (it works again once there is room).
        Cancellation (the client went away) stops the request: no later
        call runs.
        """
        created_ids = dict(request.created_ids or {})
        responses: list[Response] = []
        for call in request.method_calls:
            started, answered = perf_counter(), len(responses)
            try:
                context = CallContext(
                    principal,
                    self.registry,
                    request.using,
                    created_ids,
                    call.call_id,
                    self.limits,
                    account_capabilities,
                )
                try:
                    method = self.registry.method(call.name, request.using)
                    if method is None:
                        raise self._unknown(call.name)
                    arguments = resolve_references(call.arguments, responses)
                    result = await method.handler(context, arguments)
                except MethodError as error:
                    responses.append(("error", error.to_arguments(), call.call_id))
                    continue
                except CancelledError:
                    raise  # nobody waits for the response: run no further call
                except QueryTimeout as error:
                    log.warn(
                        "Method {method} of user {user_id} stopped: {error}",
                        method=call.name,
                        user_id=principal.user.id,
                        error=str(error),
                    )
                    failed = ServerFail(
                        f"The call ran longer than the server allows ({error.budget:g} s) and"
                        " was stopped; nothing was changed.  Narrow its filter."
                    )
                    responses.append(("error", failed.to_arguments(), call.call_id))
                    continue
                except DiskFull:
                    log.warn("Method {method} failed: the disk is full", method=call.name)
                    unavailable = ServerUnavailable(
                        "The server's disk is full; nothing was changed.  Destroying mail still works."
                    )
                    responses.append(("error", unavailable.to_arguments(), call.call_id))
                    continue
                except Exception:
                    log.failure(
                        "Method {method} failed for user {user_id}",
                        method=call.name,
                        user_id=principal.user.id,
                    )
                    responses.append(("error", ServerFail().to_arguments(), call.call_id))
                    continue
                responses.append((call.name, result, call.call_id))
                for name, extra in context.extra_responses:
                    responses.append((name, extra, call.call_id))
            finally:
                if self.metrics is not None:
                    self._observe(call.name, perf_counter() - started, responses[answered:])
        response: dict[str, Any] = {
            "methodResponses": [list(r) for r in responses],
            "sessionState": self._session_state(principal),
        }
        if request.created_ids is not None:
            response["createdIds"] = created_ids
        return response
