"""
RFC 8620 §7.3 push over EventSource (``text/event-stream``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.task import LoopingCall
from twisted.web.iweb import IRequest

from jmap_twisted.bus.events import AccountKey
from jmap_twisted.core import jsonio
from jmap_twisted.http.auth import login_with_probe
from jmap_twisted.http.problem import write_status
from jmap_twisted.http.resources import JMAPResource
from jmap_twisted.push import pushstate
from jmap_twisted.push.listener import PUSH_TYPES, PushListener, current_states

if TYPE_CHECKING:
    from jmap_twisted.service import JMAPService

#: Bounds of the ping interval, in seconds (a non-zero request is clamped).
MIN_PING, MAX_PING = 30, 300


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

    def __init__(self, service: JMAPService) -> None:
        super().__init__(service)

    async def handle(self, request: IRequest) -> None:
        seen = self.service.access_version_seen
        principal, probe = await login_with_probe(
            self.service.portal, self.service.directory, request
        )
        types_text = _argument(request, b"types") or "*"
        close_after = (_argument(request, b"closeafter", b"closeAfter") or "no").lower()
        ping_text = _argument(request, b"ping") or "0"
        if close_after not in ("state", "no") or not ping_text.isdigit():
            write_status(request, 400, "closeafter is 'state' or 'no'; ping is whole seconds.")
            return
        ping = int(ping_text)
        if ping:
            ping = min(max(ping, MIN_PING), MAX_PING)
        types = None if types_text == "*" else [t for t in types_text.split(",") if t in PUSH_TYPES]
        accounts = [a.id for a in principal.accounts]

        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache, no-store")
        request.setHeader(b"X-Accel-Buffering", b"no")
        request.write(b": jmap push\n\n")
        finished = False

        def send(change: dict[str, Any]) -> None:
            nonlocal finished
            if finished:
                return
            request.write(
                b"event: state\nid: "
                + change["pushState"].encode()
                + b"\ndata: "
                + jsonio.dumps(change)
                + b"\n\n"
            )
            if close_after == "state":
                finished = True
                request.finish()
                cleanup(None)

        listener = PushListener(send, types, accounts)
        registration = await self.service.jmap_bus.register(
            listener, [AccountKey(a) for a in accounts]
        )
        pinger = LoopingCall(
            lambda: (
                None
                if finished
                else request.write(b'event: ping\ndata: {"interval":%d}\n\n' % ping)
            )
        )
        pinger.clock = self.service.reactor

        service = self.service

        class Stream:
            """
            Ends the stream when access or credentials change: the client
            reconnects (with Last-Event-ID) under what now holds.
            """

            user_id = principal.user.id

            def close(self, code: int, reason: str) -> None:
                if not finished:
                    request.finish()

            async def access_changed(self) -> None:
                if finished:
                    return
                accounts_now = await service.directory.accounts_for_user(principal.user.id)
                valid = await probe()
                if finished:
                    return  # ended while we looked
                if not valid or {a.id for a in accounts_now} != set(accounts):
                    request.finish()

        stream = Stream()
        service.push_connections.add(stream)

        def cleanup(_: object) -> None:
            nonlocal finished
            finished = True
            service.push_connections.discard(stream)
            if pinger.running:
                pinger.stop()
            registration.cancel()

        request.notifyFinish().addBoth(cleanup)  # type: ignore[attr-defined]
        if service.access_version_seen != seen:
            await stream.access_changed()  # changed while this stream logged in
            if finished:
                return
        if ping:
            pinger.start(ping, now=False)
        current = await current_states(self.service.mail, accounts)
        if finished:
            return
        last = request.getHeader(b"last-event-id")
        replay = pushstate.replay(current, last.decode("ascii", "replace")) if last else None
        listener.start(current, replay)
