# -*- test-case-name: tests.http.test_eventsource -*-
"""
RFC 8620 §7.3 push over EventSource (``text/event-stream``).

Once a stream has begun, only events and comments are written to it: a
failure ends the stream (the client reconnects with ``Last-Event-ID``)
rather than putting a problem document in it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from zope.interface import implementer

from jmap_twisted.auth.realm import accounts_of
from jmap_twisted.core import jsonio
from jmap_twisted.http.auth import credential_expiry
from jmap_twisted.http.problem import write_status
from jmap_twisted.http.resources import JMAPResource
from jmap_twisted.interfaces import IPrincipal, IPushConnection
from jmap_twisted.push.listener import PUSH_TYPES
from jmap_twisted.push.subscription import PushSubscription, access_to

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from jmap_twisted.push.tickets import Hold
    from jmap_twisted.server import JMAPServer

log = Logger()

#: Bounds of the ping interval, in seconds (a non-zero request is clamped).
MIN_PING, MAX_PING = 30, 300
#: A ping interval is a few ASCII digits (``str.isdigit`` would take ``²``).
_PING = re.compile(r"[0-9]{1,9}")
#: Seconds between comments on a stream without pings: a stream on which
#: nothing is ever written cannot notice that its peer is gone.
KEEP_ALIVE = MAX_PING


def _argument(request: IRequest, *names: bytes) -> str | None:
    for name in names:
        values = request.args.get(name)
        if values:
            return str(values[0].decode("utf-8", "replace"))
    return None


class EventSourceResource(JMAPResource):
    """
    ``GET /jmap/eventsource/?types=…&closeafter=…&ping=…``.
    """

    async def handle(self, request: IRequest) -> None:
        admitted = await self.push_login(request, stream=True)
        if admitted is None:
            return
        principal, probe, seen, hold = admitted
        types_text = _argument(request, b"types") or "*"
        close_after = (_argument(request, b"closeafter", b"closeAfter") or "no").lower()
        ping_text = _argument(request, b"ping") or "0"
        if close_after not in ("state", "no") or not _PING.fullmatch(ping_text):
            if hold is not None:
                self.jmap.tickets.release_later(hold)
            write_status(request, 400, "closeafter is 'state' or 'no'; ping is whole seconds.")
            return
        ping = int(ping_text)
        if ping:
            ping = min(max(ping, MIN_PING), MAX_PING)
        types = None if types_text == "*" else [t for t in types_text.split(",") if t in PUSH_TYPES]
        stream = EventStream(
            self.jmap, request, principal, probe, types, close_after == "state", ping, hold
        )
        await stream.run(seen)


@implementer(IPushProducer, IPushConnection)
class EventStream:
    """
    One open ``text/event-stream`` response.

    It is the request's producer: while the client's connection cannot
    take more (the transport's buffer is full), StateChanges merge per
    account and type in the listener instead of being written; a stream
    that stays full for ``push_stall_timeout`` seconds is dropped.  It is
    also a push connection: it ends when access or credentials change,
    or when the OpenID Connect token it was opened with expires, and the
    client reconnects (with ``Last-Event-ID``) under what now holds.
    """

    def __init__(
        self,
        server: JMAPServer,
        request: IRequest,
        principal: IPrincipal,
        probe: Callable[[], Awaitable[bool]],
        types: list[str] | None,
        close_after_state: bool,
        ping: int,
        hold: Hold | None = None,
    ) -> None:
        self._server = server
        self._request: Any = request
        self._principal = principal
        self._probe = probe
        self._close_after_state = close_after_state
        self._ping = ping
        self._accounts = tuple(principal.accounts)
        self.subscription: PushSubscription | None = PushSubscription(
            server.jmap_bus,
            server.mail,
            self._send,
            types,
            principal.user.id,
            server.metrics.push["eventsource"],
        )
        self._finished = False
        self._paused = False
        self._stall: IDelayedCall | None = None
        self._expiry: IDelayedCall | None = None
        self._ticker = LoopingCall(self._tick)
        self._ticker.clock = server.reactor
        self.user_id = principal.user.id
        #: The stream's hold on the ticket that opened it, if one did.
        self._hold = hold
        #: When the stream began, on the server's clock (``None`` before).
        self._opened_at: float | None = None
        #: Why the stream ended, as logged: ``client`` (it went away),
        #: ``server`` (closeafter, access or credentials changed,
        #: shutdown) or ``stalled`` (the client did not read).
        self._end_reason = "client"
        self._events_out = 0
        self._octets_out = 0
        address = request.getClientAddress()
        self._client = str(getattr(address, "host", "-"))

    async def run(self, access_seen: int | None) -> None:
        """
        Begin the stream (counted at once among the user's push
        connections) and start pushing.
        """
        request = self._request
        self._server.push_connections.add(self)
        expires = credential_expiry(self._probe)
        if expires is not None:
            # Its OpenID Connect token expires: the client reconnects with
            # a fresh one.
            clock = self._server.reactor
            self._expiry = clock.callLater(max(0.0, expires - clock.seconds()), self._end)
        if self._hold is not None:
            # Another stream taking the ticket over ends this one.
            self._server.tickets.attach(self._hold, self._end)
        request.notifyFinish().addBoth(self._cleanup)
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache, no-store")
        request.setHeader(b"X-Accel-Buffering", b"no")
        request.registerProducer(self, True)
        request.write(b": jmap push\n\n")
        self._opened_at = self._server.reactor.seconds()
        log.info(
            "EventSource stream opened for {user_id} from {client}",
            user_id=self.user_id,
            transport="eventsource",
            client=self._client,
        )
        try:
            await self._start(access_seen)
        except CancelledError:
            self._cleanup(None)  # the client went away
        except Exception:
            log.failure("Could not start an EventSource stream for {user_id}", user_id=self.user_id)
            self._end()

    async def _start(self, access_seen: int | None) -> None:
        if self._server.access.version_seen != access_seen:
            # Changed while this stream logged in: the watch may have looked
            # before the stream was counted.
            await self.access_changed()
        subscription = self.subscription
        if self._finished or subscription is None:
            return
        self._ticker.start(self._ping or KEEP_ALIVE, now=False)
        last = self._request.getHeader(b"last-event-id")
        await subscription.start(self._accounts, last.decode("ascii", "replace") if last else None)

    # -- output ----------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if not self._finished:
            self._events_out += 1
            self._octets_out += len(data)
            self._request.write(data)

    def _send(self, change: dict[str, Any]) -> None:
        if self._finished:
            return
        self._write(
            b"event: state\nid: "
            + change["pushState"].encode()
            + b"\ndata: "
            + jsonio.dumps(change)
            + b"\n\n"
        )
        if self._close_after_state:
            self._end()

    def _tick(self) -> None:
        if self._paused:
            return  # nothing more into a full buffer; the stall timer decides
        if self._ping:
            self._write(b'event: ping\ndata: {"interval":%d}\n\n' % self._ping)
        else:
            self._write(b": keep-alive\n\n")

    # -- flow control (IPushProducer, driven by the transport) -----------

    def pauseProducing(self) -> None:
        if self._paused or self._finished:
            return
        self._paused = True
        if self.subscription is not None:
            self.subscription.pause()
        self._stall = self._server.reactor.callLater(
            self._server.config.push_stall_timeout, self._stalled
        )

    def resumeProducing(self) -> None:
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        self._stall = None
        if not self._paused or self._finished:
            return
        self._paused = False
        if self.subscription is not None:
            self.subscription.resume()

    def stopProducing(self) -> None:
        self._cleanup(None)

    def _stalled(self) -> None:
        self._stall = None
        if self._finished:
            return
        log.info(
            "Dropping an EventSource stream of {user_id} whose client has not read"
            " for {seconds} seconds",
            user_id=self.user_id,
            seconds=self._server.config.push_stall_timeout,
        )
        transport = self._request.transport
        self._end_reason = "stalled"
        self._cleanup(None)
        if transport is not None:
            # What is buffered for a client that does not read is dropped
            # with the connection rather than flushed first.
            abort = getattr(transport, "abortConnection", transport.loseConnection)
            abort()

    # -- lifecycle ---------------------------------------------------------

    def _end(self) -> None:
        """
        Finish the response (the client may reconnect).
        """
        request = self._request
        finished = self._finished
        if not finished:
            self._end_reason = "server"
        self._cleanup(None)
        if not finished and not request.finished and not request._disconnected:
            request.finish()

    def _cleanup(self, _: object) -> None:
        if self._finished:
            return
        self._finished = True
        self._server.push_connections.discard(self)
        hold, self._hold = self._hold, None
        if hold is not None:
            # The browser may now reconnect with the same ticket.
            self._server.tickets.release_later(hold)
        if self._ticker.running:
            self._ticker.stop()
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        self._stall = None
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None
        request = self._request
        if getattr(request, "producer", None) is self and getattr(request, "channel", None):
            request.unregisterProducer()
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            subscription.cancel()
        if self._opened_at is not None:
            log.info(
                "EventSource stream closed for {user_id} from {client} after"
                " {duration:.1f} s ({end}, events out {frames_out})",
                user_id=self.user_id,
                transport="eventsource",
                client=self._client,
                duration=self._server.reactor.seconds() - self._opened_at,
                end=self._end_reason,
                frames_in=0,
                frames_out=self._events_out,
                octets_out=self._octets_out,
            )

    def close(self, code: int, reason: str) -> None:
        """
        End the stream (access or credentials changed, or shutdown).
        """
        self._end()

    async def access_changed(self) -> None:
        """
        End the stream if its credentials no longer hold or the accounts
        its user may see changed, or how they see one (another generation
        or subscriptions of their view of a shared account).
        """
        if self._finished:
            return
        accounts_now = await accounts_of(self._server.directory, self.user_id)
        valid = await self._probe()
        if self._finished:
            return  # ended while we looked
        if not valid or {access_to(a) for a in accounts_now} != {
            access_to(a) for a in self._accounts
        }:
            self._end()
