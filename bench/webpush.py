"""
Web push latency (RFC 8620 §7.2, RFC 8030, RFC 8291): end of LMTP DATA →
the StateChange POST at the push service, beside the WebSocket frame of
the same delivery.

    python bench/webpush.py --deliveries 50

The push service is a twisted.web site over TLS on loopback, with a
throwaway certificate the server is told to trust (``--push-ca-file``,
``--push-allow-private``), so the server is always a local ``twistd jmap``
started for the run.  The benchmark subscribes with keys of its own
(``PushSubscription/set``), decrypts the PushVerification POSTed to it,
sets the code, and opens a WebSocket of the same account with push on
(Email, like the subscription's ``types``).  Every delivery is then timed
at both: each StateChange POST and each frame as it reaches this process,
so both see the same deliveries under the same conditions.  A first
delivery, not counted, warms the dispatcher's view of the subscriptions;
its POST is decrypted and checked to be the StateChange of the account.
Each delivery waits for the previous one's POST and frame.

As in the other benchmarks, ``end_of_data`` is when the client starts the
DATA exchange, ``reply_250`` when the server's 250 arrived; "frame" names
the arrival of a push, a POST or a WebSocket frame.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_ece
from common import Target, react_and_report, running_server, summary
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from push import Factory, lmtp_deliver, open_sockets
from twisted.internet import defer, threads
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.ssl import PrivateCertificate
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from jmap_twisted.testing import throwaway_certificate

CORE = "urn:ietf:params:jmap:core"
WEBPUSH_VAPID = "urn:ietf:params:jmap:webpush-vapid"
#: Seconds to wait for one push before giving up on the run.
PATIENCE = 30.0


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def certificate() -> tuple[bytes, bytes]:
    """
    A self-signed certificate for 127.0.0.1 (its own CA), good for a day:
    the key and the certificate, in PEM.
    """
    return throwaway_certificate(names=(), addresses=("127.0.0.1",))


class PushService(Resource):
    """
    A push service that accepts every POST (201, RFC 8030 §5) and keeps
    its arrival time, body and content coding.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[tuple[float, bytes, str | None]] = []
        self._waiting: list[tuple[int, defer.Deferred[None]]] = []

    def render_POST(self, request: Request) -> bytes:
        now = time.perf_counter()
        assert request.content is not None
        coding = request.getHeader("content-encoding")
        self.posts.append((now, request.content.read(), coding))
        for entry in list(self._waiting):
            count, waiting = entry
            if len(self.posts) >= count:
                self._waiting.remove(entry)
                waiting.callback(None)
        request.setResponseCode(201)
        request.setHeader("Location", f"/message/{len(self.posts)}")
        return b""

    def until(self, count: int, reactor: Any) -> defer.Deferred[None]:
        """
        Fires once ``count`` POSTs have arrived in all.
        """
        waiting: defer.Deferred[None] = defer.Deferred()
        if len(self.posts) >= count:
            waiting.callback(None)
        else:
            self._waiting.append((count, waiting))
        return waiting.addTimeout(PATIENCE, reactor)


class Device:
    """
    The user agent's keys (RFC 8291 §3): a P-256 pair and an auth secret.
    """

    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.keys = {"p256dh": b64url(public), "auth": b64url(self.auth)}

    def read(self, body: bytes, coding: str | None) -> Any:
        """
        The JSON object of a POST's ``aes128gcm`` body.
        """
        if coding != "aes128gcm":
            raise SystemExit(f"push body not aes128gcm-encoded (Content-Encoding: {coding})")
        plain = http_ece.decrypt(
            body, private_key=self.private_key, auth_secret=self.auth, version="aes128gcm"
        )
        return json.loads(plain)


async def subscribe(
    reactor: Any, server: Target, service: PushService, device: Device, url: str
) -> str:
    """
    Create and verify a push subscription; return its id.
    """
    if WEBPUSH_VAPID not in server.session["capabilities"]:
        raise SystemExit(f"the server does not advertise {WEBPUSH_VAPID}")
    create = {
        "deviceClientId": "bench-device",
        "url": url,
        "keys": device.keys,
        "types": ["Email"],
    }
    responses, _ = await threads.deferToThread(
        server.api, [["PushSubscription/set", {"create": {"s": create}}, "0"]]
    )
    created = (responses[0][1].get("created") or {}).get("s")
    if created is None:
        raise SystemExit(f"PushSubscription/set did not create: {responses}")
    subscription_id = created["id"]
    await service.until(1, reactor)
    _, body, coding = service.posts[0]
    verification = device.read(body, coding)
    if verification.get("@type") != "PushVerification" or (
        verification.get("pushSubscriptionId") != subscription_id
    ):
        raise SystemExit(f"expected the PushVerification, got {verification}")
    update = {subscription_id: {"verificationCode": verification["verificationCode"]}}
    responses, _ = await threads.deferToThread(
        server.api, [["PushSubscription/set", {"update": update}, "0"]]
    )
    if subscription_id not in (responses[0][1].get("updated") or {}):
        raise SystemExit(f"PushSubscription/set did not verify: {responses}")
    return subscription_id


async def deliver(
    reactor: Any, server: Target, service: PushService, socket: Factory, index: int
) -> tuple[float, float, float, float]:
    """
    One delivery: when DATA started, when the 250 came, when the POST and
    the frame arrived.
    """
    socket.arrivals.clear()
    socket.expected = 1
    framed: defer.Deferred[None] = defer.Deferred()
    socket.done = framed
    posted = service.until(len(service.posts) + 1, reactor)
    started, replied = await threads.deferToThread(lmtp_deliver, server, server.recipient, index)
    await posted
    await framed.addTimeout(PATIENCE, reactor)
    return started, replied, service.posts[-1][0], socket.arrivals[0]


async def run(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="jmap-bench-push-service-"))
    key_pem, cert_pem = certificate()
    ca_file = directory / "push-ca.pem"
    ca_file.write_bytes(cert_pem)
    service = PushService()
    tls = PrivateCertificate.loadPEM(key_pem + cert_pem).options()
    port = await SSL4ServerEndpoint(reactor, 0, tls, interface="127.0.0.1").listen(Site(service))
    device = Device()
    url = f"https://127.0.0.1:{port.getHost().port}/push/{b64url(os.urandom(16))}"
    try:
        extra = ["--push-ca-file", str(ca_file), "--push-allow-private"]
        with running_server(extra) as server:
            server.api([["Mailbox/get", {"accountId": server.account, "ids": []}, "0"]])
            await subscribe(reactor, server, service, device, url)
            socket = Factory(server.ws_url, server.auth, True)
            await open_sockets(reactor, server.ws_address, socket, 1)
            # The warm-up delivery: its POST is the first StateChange.
            await deliver(reactor, server, service, socket, 0)
            _, body, coding = service.posts[-1]
            change = device.read(body, coding)
            if change.get("@type") != "StateChange" or "Email" not in change.get("changed", {}).get(
                server.account, {}
            ):
                raise SystemExit(f"expected a StateChange of Email, got {change}")
            counted_from = len(service.posts)
            post_data, post_250, frame_data, frame_250 = [], [], [], []
            for index in range(1, args.deliveries + 1):
                started, replied, post, frame = await deliver(
                    reactor, server, service, socket, index
                )
                post_data.append((post - started) * 1000)
                post_250.append((post - replied) * 1000)
                frame_data.append((frame - started) * 1000)
                frame_250.append((frame - replied) * 1000)
            for protocol in socket.opened:
                protocol.sendClose(1000)
            posts = len(service.posts) - counted_from
    finally:
        await port.stopListening()
        shutil.rmtree(directory, ignore_errors=True)
    webpush = {
        "end_of_data_to_frame_ms": summary(post_data),
        "reply_250_to_frame_ms": summary(post_250),
    }
    websocket = {
        "end_of_data_to_frame_ms": summary(frame_data),
        "reply_250_to_frame_ms": summary(frame_250),
    }
    return {
        "deliveries": args.deliveries,
        "posts": posts,
        "webpush_post": webpush,
        "websocket_frame": websocket,
        "ratio": {
            q: webpush["end_of_data_to_frame_ms"][q]
            / max(websocket["end_of_data_to_frame_ms"][q], 1e-9)
            for q in ("median", "p99")
        },
    }


def report(results: dict[str, Any]) -> None:
    print(f"{'end of DATA ->':<28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}   (from the 250)")
    for key, label in (("webpush_post", "web push POST"), ("websocket_frame", "WebSocket frame")):
        lat = results[key]["end_of_data_to_frame_ms"]
        after = results[key]["reply_250_to_frame_ms"]
        print(
            f"{label:<28} {lat['median']:8.2f} {lat['p99']:8.2f} {lat['max']:8.2f}"
            f"   (p50 {after['median']:.2f}, p99 {after['p99']:.2f})"
        )
    ratio = results["ratio"]
    print(
        f"{'web push / WebSocket':<28} {ratio['median']:7.2f}× {ratio['p99']:7.2f}×"
        f"   ({results['deliveries']} deliveries, {results['posts']} POSTs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=50)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    react_and_report(run, args, report)


if __name__ == "__main__":
    main()
