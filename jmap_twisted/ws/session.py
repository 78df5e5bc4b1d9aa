"""
One WebSocket connection's JMAP session (RFC 8887 §4): requests in,
responses out (possibly out of order), and push.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger

from jmap_twisted.auth.realm import Principal
from jmap_twisted.bus.events import AccountKey
from jmap_twisted.core import eager, jsonio
from jmap_twisted.core.request import parse_request
from jmap_twisted.errors import LimitExceeded, NotRequest, RequestLevelError
from jmap_twisted.interfaces import IPrincipal, IRegistration
from jmap_twisted.push import pushstate
from jmap_twisted.push.listener import PUSH_TYPES, PushListener, current_states

if TYPE_CHECKING:
    from jmap_twisted.service import JMAPService

log = Logger()

POLICY_VIOLATION = 1008
#: Requests waiting for a slot, on all the sockets of one user, may hold at
#: most this many times maxSizeRequest octets (the queue's length is
#: bounded separately, by the request limiter).
QUEUED_BYTES_FACTOR = 4


class OctetBudget:
    """
    Octets held for each user, bounded: what the sockets of one user may
    hold between them (requests waiting for a slot, unfinished messages),
    however many sockets the user opens.

    :param limit: the octets one user may hold.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    def held(self, user_id: str) -> int:
        """
        The octets the user holds now.
        """
        return self._held.get(user_id, 0)

    def take(self, user_id: str, octets: int) -> bool:
        """
        Hold ``octets`` more for the user, unless that would exceed the
        limit (then nothing is taken).
        """
        held = self._held.get(user_id, 0)
        if held + octets > self.limit:
            return False
        self._held[user_id] = held + octets
        return True

    def give(self, user_id: str, octets: int) -> None:
        """
        Give back octets taken before.
        """
        left = self._held.get(user_id, 0) - octets
        if left > 0:
            self._held[user_id] = left
        else:
            self._held.pop(user_id, None)


class WebSocketSession:
    """
    The JMAP side of one WebSocket.

    :param send: writes one JSON object as a text message.
    :param close: closes the socket with a code and reason.
    """

    def __init__(
        self,
        service: JMAPService,
        principal: IPrincipal,
        send: Callable[[bytes], None],
        close: Callable[[int, str], None],
        probe: Callable[[], Awaitable[bool]] | None = None,
        queued: OctetBudget | None = None,
    ) -> None:
        self.service = service
        self.principal = principal
        self._send_bytes = send
        self._close = close
        self._probe = probe
        self._registration: IRegistration | None = None
        self._listener: PushListener | None = None
        self._push_generation = 0
        self._closed = False
        self._paused = False
        self._max_size = service.config.limits.max_size_request
        #: Octets of the user's requests waiting for a slot (shared by the
        #: user's sockets).
        self._queued = queued or OctetBudget(QUEUED_BYTES_FACTOR * self._max_size)
        self._in_flight: set[Deferred[None]] = set()

    # -- output ----------------------------------------------------------

    def send(self, value: dict[str, Any]) -> None:
        if not self._closed:
            self._send_bytes(jsonio.dumps(value))

    def send_state_change(self, value: dict[str, Any]) -> None:
        """
        Send a StateChange; its serialised form is shared by every socket
        sending the same one (all the sockets of an account, after a
        change).
        """
        if not self._closed:
            key = (
                value["pushState"],
                tuple((a, tuple(sorted(t.items()))) for a, t in sorted(value["changed"].items())),
            )
            self._send_bytes(_serialised_state_change(key, value))

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
                return
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
        The user with the accounts they may access now (a delegation may
        have been revoked since the socket opened).
        """
        user = self.principal.user
        accounts = await self.service.directory.accounts_for_user(user.id)
        self.principal = Principal(user, tuple(accounts))
        return self.principal

    def _start_request(
        self, value: dict[str, Any], request_id: object, payload: bytes
    ) -> Deferred[None] | None:
        """
        Run a Request now if the user has a slot free; otherwise queue it
        (``None`` when it was refused at once).
        """
        if request_id is not None and not isinstance(request_id, str):
            self._request_error(NotRequest("'id' must be a string."), None)
            return None
        limiter = self.service.request_limiter
        user_id = self.principal.user.id
        if limiter.in_use(user_id) < limiter.limit:
            # Most requests finish without waiting: run them on the spot.
            return eager.start(self._request(value, request_id))
        # Every slot is taken: wait for one holding the message's octets,
        # not its parsed form (several times larger); it is parsed again
        # when its turn comes.
        size = len(payload)
        if not self._queued.take(user_id, size):
            self._request_error(
                LimitExceeded(
                    "maxConcurrentRequests",
                    "Too many requests are waiting for this user; wait for responses.",
                ),
                request_id,
            )
            return None
        try:
            waiting = limiter.acquire(user_id)
        except LimitExceeded as error:
            self._queued.give(user_id, size)
            self._request_error(error, request_id)
            return None
        return Deferred.fromCoroutine(self._queued_request(waiting, payload, request_id))

    async def _queued_request(
        self, waiting: Deferred[Callable[[], None]], payload: bytes, request_id: object
    ) -> None:
        user_id = self.principal.user.id
        try:
            release = await waiting
        finally:
            self._queued.give(user_id, len(payload))
        try:
            value = jsonio.loads(payload)  # parsed once already: cannot fail
        except BaseException:
            release()
            raise
        del payload
        await self._request(value, request_id, release)

    async def _request(
        self,
        value: dict[str, Any],
        request_id: object,
        release: Callable[[], None] | None = None,
    ) -> None:
        """
        Run a Request in a slot: ``release`` gives back one already taken,
        ``None`` takes one now.
        """
        body = {k: v for k, v in value.items() if k not in ("@type", "id")}
        try:
            request = parse_request(
                body,
                self.service.registry.capabilities,
                self.service.config.limits.max_calls_in_request,
            )
            if release is None:
                release = self.service.request_limiter.try_acquire(self.principal.user.id)
        except RequestLevelError as error:
            if release is not None:
                release()
            self._request_error(error, request_id)
            return
        try:
            # The accounts are kept current by access_changed (the service
            # polls the directory's access version), not re-read per request.
            response = await self.service.engine.execute(self.principal, request)
        finally:
            release()
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
        wanted = None if not types else [t for t in types if t in PUSH_TYPES]
        push_state = value.get("pushState")
        del value  # not kept while waiting
        self._push_generation += 1
        generation = self._push_generation
        await self._unregister()
        principal = await self._fresh_principal()
        accounts = [a.id for a in principal.accounts]
        listener = PushListener(self.send_state_change, wanted, accounts)
        registration = await self.service.jmap_bus.register(
            listener, [AccountKey(a) for a in accounts]
        )
        if generation != self._push_generation or self._closed:
            await registration.cancel()
            return
        self._listener, self._registration = listener, registration
        if self._paused:
            listener.pause()
        try:
            current = await current_states(self.service.mail, accounts)
        except BaseException:
            if generation == self._push_generation:
                await self._unregister()  # no listener left registered unstarted
            raise
        if generation != self._push_generation or self._closed:
            return  # disabled or replaced meanwhile (its registration is gone)
        # Accounts may have been lost while the states were read.
        current = {a: s for a, s in current.items() if a in listener.accounts}
        # A pushState that does not decode (of another server, damaged,
        # hostile) replays the full current state; decoding never raises.
        replay = None if push_state is None else pushstate.replay(current, push_state)
        listener.start(current, replay)

    async def _unregister(self) -> None:
        registration, self._registration, self._listener = self._registration, None, None
        if registration is not None:
            await registration.cancel()

    def _push_disable(self) -> None:
        self._push_generation += 1
        Deferred.fromCoroutine(self._unregister())

    # -- flow control and lifecycle ----------------------------------------

    def pause(self) -> None:
        self._paused = True
        if self._listener is not None:
            self._listener.pause()

    def resume(self) -> None:
        self._paused = False
        if self._listener is not None:
            self._listener.resume()

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
        accounts the user may access now (a revoked delegation stops its
        pushes at once; a new one starts them).
        """
        if self._closed:
            return
        if self._probe is not None and not await self._probe():
            self.close(POLICY_VIOLATION, "The credentials of this connection were revoked.")
            return
        principal = await self._fresh_principal()
        listener = self._listener
        if listener is None:
            return
        accounts = [a.id for a in principal.accounts]
        if set(accounts) == listener.accounts:
            return
        added = set(accounts) - listener.accounts
        listener.set_accounts(accounts)
        old, self._registration = (
            self._registration,
            await self.service.jmap_bus.register(listener, [AccountKey(a) for a in accounts]),
        )
        if old is not None:
            await old.cancel()
        if added:
            listener.merge(await current_states(self.service.mail, sorted(added)))


#: Serialised StateChanges by content, shared by sockets.
_STATE_CHANGES: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
STATE_CHANGE_CACHE = 256
#: StateChanges whose pushState is longer are not kept.
STATE_CHANGE_CACHED_OCTETS = 2048


def _serialised_state_change(key: tuple[Any, ...], value: dict[str, Any]) -> bytes:
    if len(key[0]) > STATE_CHANGE_CACHED_OCTETS:
        return jsonio.dumps(value)  # many accounts: not worth keeping
    found = _STATE_CHANGES.get(key)
    if found is None:
        found = _STATE_CHANGES[key] = jsonio.dumps(value)
        if len(_STATE_CHANGES) > STATE_CHANGE_CACHE:
            _STATE_CHANGES.popitem(last=False)
    return found
