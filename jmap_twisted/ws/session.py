"""
One WebSocket connection's JMAP session (RFC 8887 §4): requests in,
responses out (possibly out of order), and push.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from zope.interface import implementer

from jmap_twisted.auth.realm import Principal, accounts_of
from jmap_twisted.core import eager, jsonio
from jmap_twisted.errors import LimitExceeded, NotRequest, PushUnavailable, RequestLevelError
from jmap_twisted.interfaces import IPrincipal, IPushConnection
from jmap_twisted.push.subscription import PushSubscription

if TYPE_CHECKING:
    from jmap_twisted.server import JMAPServer

log = Logger()

POLICY_VIOLATION = 1008


@implementer(IPushConnection)
class WebSocketSession:
    """
    The JMAP side of one WebSocket.

    :param send: writes one JSON object as a text message.
    :param close: closes the socket with a code and reason.
    :param send_shared: writes a text message that other sockets send
        too (a StateChange), the same object for each; ``send`` if not
        given.
    """

    def __init__(
        self,
        server: JMAPServer,
        principal: IPrincipal,
        send: Callable[[bytes], None],
        close: Callable[[int, str], None],
        probe: Callable[[], Awaitable[bool]] | None = None,
        send_shared: Callable[[bytes], None] | None = None,
    ) -> None:
        self.server = server
        self.principal = principal
        self._send_bytes = send
        self._send_shared = send if send_shared is None else send_shared
        self._close = close
        self._probe = probe
        #: The push subscription while push is enabled.
        self.subscription: PushSubscription | None = None
        self._closed = False
        self._paused = False
        self._max_size = server.config.limits.max_size_request
        self._in_flight: set[Deferred[None]] = set()

    # -- output ----------------------------------------------------------

    def send(self, value: dict[str, Any]) -> None:
        if not self._closed:
            self._send_bytes(jsonio.dumps(value))

    def send_state_change(self, value: dict[str, Any]) -> None:
        """
        Send a StateChange.  The sockets of an account are given the same
        object one after another (see
        :class:`~jmap_twisted.push.listener.PushListener`): it is
        serialised (and framed) once for all of them.
        """
        global _LAST_STATE_CHANGE
        if not self._closed:
            last, data = _LAST_STATE_CHANGE
            if last is not value:
                data = jsonio.dumps(value)
                _LAST_STATE_CHANGE = (value, data)
            self._send_shared(data)

    def _request_error(self, error: RequestLevelError, request_id: object) -> None:
        problem = error.to_problem()
        self.send(
            {
                "@type": "RequestError",
                "requestId": request_id if isinstance(request_id, str) else None,
                **problem,
            }
        )

    # -- input -----------------------------------------------------------

    def message_too_large(self) -> None:
        """
        Answer a message longer than maxSizeRequest (not kept, so its id
        is unknown) with the limit RequestError.
        """
        self._request_error(
            LimitExceeded(
                "maxSizeRequest",
                f"The message exceeds maxSizeRequest ({self._max_size} octets).",
            ),
            None,
        )

    def message_received(self, payload: bytes) -> None:
        """
        Handle one text message; requests run concurrently.
        """
        if len(payload) > self._max_size:
            self.message_too_large()
            return
        try:
            value = jsonio.loads(payload)
        except RequestLevelError as error:
            self._request_error(error, None)
            return
        request_id = value.get("id") if isinstance(value, dict) else None
        if not isinstance(value, dict):
            self._request_error(NotRequest("A message must be a JSON object."), None)
            return
        kind = value.get("@type")
        if kind == "Request":
            started = self._start_request(value, request_id, payload)
            if started is None:
                return  # answered already
            handling = started
        elif kind == "WebSocketPushEnable":
            handling = Deferred.fromCoroutine(self._push_enable(value, request_id))
        elif kind == "WebSocketPushDisable":
            self._push_disable()
            return
        else:
            detail = (
                "The message has no '@type'."
                if kind is None
                else f"'@type' must be Request, WebSocketPushEnable or WebSocketPushDisable, not {kind!r}."
            )
            self._request_error(NotRequest(detail), request_id)
            return
        handling.addErrback(self._unexpected, request_id)
        if not handling.called:  # still running (most requests finish at once)
            self._in_flight.add(handling)
            handling.addBoth(lambda _: self._in_flight.discard(handling))

    def _unexpected(self, failure: Any, request_id: object) -> None:
        if failure.check(CancelledError):
            return  # the connection closed while the request ran
        log.failure(
            "WebSocket message failed for user {user_id}", failure, user_id=self.principal.user.id
        )
        self.send(
            {
                "@type": "RequestError",
                "requestId": request_id if isinstance(request_id, str) else None,
                "type": "urn:ietf:params:jmap:error:serverFail",
                "status": 500,
                "detail": "The server failed; it has logged why.",
            }
        )

    async def _fresh_principal(self) -> IPrincipal:
        """
        The user with the accounts they may access now (a delegation or a
        share may have been revoked since the socket opened).
        """
        user = self.principal.user
        accounts = await accounts_of(self.server.directory, user.id)
        self.principal = Principal(user, tuple(accounts))
        return self.principal

    def _start_request(
        self, value: dict[str, Any], request_id: object, payload: bytes
    ) -> Deferred[None] | None:
        """
        Run a Request now if the user has a slot free, otherwise once one
        frees (``None`` when it was refused or answered at once).
        """
        if request_id is not None and not isinstance(request_id, str):
            self._request_error(NotRequest("'id' must be a string."), None)
            return None
        try:
            # The accounts are kept current by access_changed (the server
            # watches the directory's access version), not re-read per
            # request.
            running = self.server.runner.submit(self.principal, value, payload, _request_body)
        except LimitExceeded as error:
            self._request_error(error, request_id)
            return None
        # Most requests find a slot free and finish without waiting: run
        # them on the spot.
        return eager.detach(self._answer(running, request_id))

    async def _answer(self, running: Awaitable[dict[str, Any]], request_id: object) -> None:
        try:
            response = await running
        except RequestLevelError as error:
            self._request_error(error, request_id)
            return
        message: dict[str, Any] = {"@type": "Response"}
        if request_id is not None:
            message["requestId"] = request_id
        message.update(response)
        self.send(message)

    async def _push_enable(self, value: dict[str, Any], request_id: object) -> None:
        types = value.get("dataTypes")
        if types is not None and (
            not isinstance(types, list) or not all(isinstance(t, str) for t in types)
        ):
            self._request_error(
                NotRequest("'dataTypes' must be an array of type names or null."), request_id
            )
            return
        if not self.server.pushes():
            self._request_error(
                PushUnavailable("Push is off: this server's life cycle has not been started."),
                request_id,
            )
            return
        push_state = value.get("pushState")
        del value  # not kept while waiting
        await self._unsubscribe()
        subscription = PushSubscription(
            self.server.jmap_bus,
            self.server.mail,
            self.send_state_change,
            types or None,
            self.principal.user.id,
            self.server.metrics.push["websocket"],
        )
        self.subscription = subscription
        if self._paused:
            subscription.pause()
        principal = await self._fresh_principal()
        if self.subscription is not subscription:
            return  # disabled or replaced meanwhile
        try:
            await subscription.start(
                principal.accounts, push_state if isinstance(push_state, str) else None
            )
        except BaseException:
            if self.subscription is subscription:
                await self._unsubscribe()  # nothing left registered unstarted
            raise

    async def _unsubscribe(self) -> None:
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            await subscription.cancel()

    def _push_disable(self) -> None:
        Deferred.fromCoroutine(self._unsubscribe())

    # -- flow control and lifecycle ----------------------------------------

    def pause(self) -> None:
        self._paused = True
        if self.subscription is not None:
            self.subscription.pause()

    def resume(self) -> None:
        self._paused = False
        if self.subscription is not None:
            self.subscription.resume()

    def connection_lost(self) -> None:
        self._closed = True
        self._push_disable()
        for handling in list(self._in_flight):
            handling.cancel()

    def close(self, code: int, reason: str) -> None:
        self._close(code, reason)

    @property
    def user_id(self) -> str:
        """
        The connection's user (for access changes).
        """
        return self.principal.user.id

    async def access_changed(self) -> None:
        """
        Who-sees-what or credentials changed somewhere: close with 1008 if
        this connection's credentials no longer hold; otherwise follow the
        accounts the user may access now (a revoked delegation or share
        stops its pushes at once; a new one starts them; a view of an
        account whose shares changed has its new states pushed at once).
        """
        if self._closed:
            return
        if self._probe is not None and not await self._probe():
            self.close(POLICY_VIOLATION, "The credentials of this connection were revoked.")
            return
        principal = await self._fresh_principal()
        if self.subscription is not None:
            await self.subscription.follow(principal.accounts)


def _request_body(value: dict[str, Any]) -> dict[str, Any]:
    """
    The Request inside a WebSocket message (RFC 8887 §4.3.3): all but
    ``@type`` and ``id``.
    """
    return {k: v for k, v in value.items() if k not in ("@type", "id")}


#: The StateChange serialised last, and its serialised form: compared by
#: identity (holding it keeps its identity from being reused).
_LAST_STATE_CHANGE: tuple[object, bytes] = (None, b"")
