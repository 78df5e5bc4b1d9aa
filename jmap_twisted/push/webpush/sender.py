# -*- test-case-name: tests.push.test_webpush_delivery -*-
"""
One push message POSTed to a push service (RFC 8030 §5), encrypted for the
subscription (RFC 8291) and identified with the server's VAPID key
(RFC 8292), and what the push service's answer means for the next one.

URLs, keys and tokens are capabilities: the log names a subscription by
its id and a push service by its host, never more.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from attrs import frozen
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

from jmap_twisted.origins import origin_of
from jmap_twisted.outbound import BytesBody
from jmap_twisted.push.webpush import crypto
from jmap_twisted.records import PushSubscriptionRecord

log = Logger()

OK = "ok"
GONE = "gone"
RETRY_AFTER = "retry_after"
TOO_LARGE = "too_large"
FAILED = "failed"

#: The longest push message (before encryption) one request carries: a
#: push service need not take more than 4096 octets of body, which leaves
#: this much once encrypted (RFC 8291 §4).
MAX_MESSAGE = 4096 - crypto.HEADER_LENGTH - crypto.TAG_LENGTH - 1


@frozen
class Outcome:
    """
    What a push service made of one message.

    :ivar kind: :data:`OK` (2xx), :data:`GONE` (404 or 410: the
        subscription is no more), :data:`RETRY_AFTER` (429 or 503 saying
        when to come back), :data:`TOO_LARGE` (413, or too large to
        encrypt) or :data:`FAILED` (any other answer, no answer, a
        timeout).
    :ivar status: the HTTP status, or ``None`` without an answer.
    :ivar retry_after: seconds to wait, with :data:`RETRY_AFTER`.
    """

    kind: str
    status: int | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.kind == OK

    @property
    def gone(self) -> bool:
        return self.kind == GONE

    @property
    def too_large(self) -> bool:
        return self.kind == TOO_LARGE

    @property
    def failed(self) -> bool:
        return self.kind == FAILED


def topic_for(subscription_id: str, account_id: str) -> str:
    """
    The ``Topic`` of a StateChange (RFC 8030 §5.4): one per account of a
    subscription, so that a push service keeps only the latest undelivered
    StateChange of each account.  Nothing is lost by that replacement:
    each message reports every type the subscription has heard of for the
    account (see :class:`~jmap_twisted.push.webpush.dispatcher.WebPushDispatcher`).
    Hashed with the subscription id, it is 32 base64url characters and
    tells a push service nothing it could match across subscriptions (a
    delegate's and the owner's, say).

    :param subscription_id: the subscription the message goes to.
    :param account_id: the account the message reports on.
    """
    shape = json.dumps([subscription_id, account_id])
    digest = hashlib.sha256(shape.encode("utf-8")).digest()[:24]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def retry_delay(value: str | None, now: float) -> float | None:
    """
    The seconds a ``Retry-After`` header value asks to wait (RFC 9110
    §10.2.3): delay seconds or an HTTP date; ``None`` when absent or
    unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def push_host(url: str) -> str:
    """
    The host of a push service, for the log.
    """
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


class _Discard(Protocol):
    """
    Reads a response body to its end (so the connection can serve the
    next request) without keeping it; a body longer than ``limit`` ends
    the connection instead.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen = 0
        self.done: Deferred[None] = Deferred(self._cancel)

    def _cancel(self, _: Deferred[None]) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        self._seen += len(data)
        if self._seen > self._limit and not self.done.called:
            self._cancel(self.done)
            self.done.callback(None)

    def connectionLost(self, reason: Failure | None = None) -> None:
        # The status has said what the push service made of the message;
        # how the body ended changes nothing.
        if not self.done.called:
            self.done.callback(None)


class WebPushSender:
    """
    POSTs push messages to subscriptions' push services.

    :param agent: the HTTP client, normally
        :func:`~jmap_twisted.push.webpush.policy.push_agent` (which checks
        where it may connect and never follows redirects).
    :param vapid: the server's key, identifying it to push services.
    :param subject: a ``mailto:`` or ``https:`` contact for push
        services' operators, or ``None``.
    :param clock: the time for tokens and timeouts.
    :param timeout: seconds a push service has to answer, including
        connecting and reading the body.
    :raises ValueError: ``subject`` is not a ``mailto:`` or ``https:`` URI.
    """

    #: Octets of a push service's answer read at most.
    MAX_RESPONSE = 64 * 1024
    #: Seconds a VAPID token is valid for.
    TOKEN_LIFETIME = 12 * 3600.0
    #: A token is made anew when it has less than this left.
    TOKEN_MARGIN = 3600.0
    #: Push service origins whose tokens are remembered.
    MAX_TOKENS = 1024

    def __init__(
        self,
        agent: IAgent,
        vapid: crypto.VapidKey,
        subject: str | None,
        clock: IReactorTime,
        timeout: float = 10.0,
    ) -> None:
        self._agent = agent
        self._subject = subject
        self._clock = clock
        self._timeout = timeout
        self._tokens: dict[str, tuple[str, float]] = {}
        self._vapid = vapid
        vapid.authorization("https://push.invalid", subject, clock.seconds())  # checks subject

    def use_key(self, vapid: crypto.VapidKey) -> None:
        """
        Identify with another VAPID key from now on (after a rotation).
        """
        self._vapid = vapid
        self._tokens.clear()

    def _authorization(self, url: str) -> str:
        origin = origin_of(url)  # the token's audience
        now = self._clock.seconds()
        cached = self._tokens.get(origin)
        if cached is not None and cached[1] > now:
            return cached[0]
        value = self._vapid.authorization(url, self._subject, now, self.TOKEN_LIFETIME)
        self._tokens.pop(origin, None)
        while len(self._tokens) >= self.MAX_TOKENS:
            del self._tokens[next(iter(self._tokens))]  # the oldest
        self._tokens[origin] = (value, now + self.TOKEN_LIFETIME - self.TOKEN_MARGIN)
        return value

    def send(
        self,
        record: PushSubscriptionRecord,
        payload: Mapping[str, Any],
        urgency: str = "normal",
        topic: str | None = None,
        ttl: int = 3600,
    ) -> Deferred[Outcome]:
        """
        POST one push message; the result never fails.

        :param record: the subscription.
        :param payload: the JSON object pushed.
        :param urgency: ``"high"`` for ``Urgency: high``, anything else
            for ``normal`` (RFC 8030 §5.3).
        :param topic: replaces an undelivered message of the same topic
            (at most 32 base64url characters, see :func:`topic_for`).
        :param ttl: seconds the push service keeps the message for an
            unreachable device (RFC 8030 §5.2).
        """
        host = push_host(record.url)
        try:
            url = record.url.encode("ascii")
            body, headers = self._request(record, payload, urgency, topic, ttl)
        except _TooLarge:
            log.warn(
                "Push message for subscription {subscription_id} at {host} is too large",
                subscription_id=record.id,
                host=host,
            )
            return succeed(Outcome(TOO_LARGE))
        except (ValueError, TypeError) as e:
            log.warn(
                "Cannot make a push message for subscription {subscription_id} at {host}: {why}",
                subscription_id=record.id,
                host=host,
                why=type(e).__name__,
            )
            return succeed(Outcome(FAILED))
        posted = Deferred.fromCoroutine(self._post(url, headers, body))
        posted.addTimeout(self._timeout, self._clock)

        def classified(response: IResponse) -> Outcome:
            outcome = self._outcome(response)
            log.debug(
                "Push to subscription {subscription_id} at {host}: {status}",
                subscription_id=record.id,
                host=host,
                status=response.code,
            )
            if outcome.failed:
                log.warn(
                    "Push service {host} refused a message for subscription "
                    "{subscription_id} with status {status}",
                    subscription_id=record.id,
                    host=host,
                    status=response.code,
                )
            return outcome

        def unanswered(failure: Failure) -> Outcome:
            # The failure's text may carry the URL: only its type is logged.
            log.warn(
                "Push to subscription {subscription_id} at {host} failed: {why}",
                subscription_id=record.id,
                host=host,
                why=failure.type.__name__ if failure.type is not None else "?",
            )
            return Outcome(FAILED)

        return posted.addCallbacks(classified, unanswered)

    def send_verification(self, record: PushSubscriptionRecord, code: str) -> Deferred[Outcome]:
        """
        POST the PushVerification object of a new subscription (RFC 8620
        §7.2.2); the result never fails.
        """
        payload = {
            "@type": "PushVerification",
            "pushSubscriptionId": record.id,
            "verificationCode": code,
        }
        return self.send(record, payload, urgency="normal", topic=None, ttl=86400)

    def _request(
        self,
        record: PushSubscriptionRecord,
        payload: Mapping[str, Any],
        urgency: str,
        topic: str | None,
        ttl: int,
    ) -> tuple[bytes, Headers]:
        message = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        headers = Headers()
        headers.addRawHeader(b"TTL", str(max(0, int(ttl))).encode("ascii"))
        headers.addRawHeader(b"Urgency", b"high" if urgency == "high" else b"normal")
        if topic is not None:
            headers.addRawHeader(b"Topic", topic.encode("ascii"))
        headers.addRawHeader(b"Authorization", self._authorization(record.url).encode("ascii"))
        if record.p256dh is None and record.auth is None:
            headers.addRawHeader(b"Content-Type", b"application/json; charset=utf-8")
            return message, headers
        if record.p256dh is None or record.auth is None:
            raise ValueError("a subscription with only half its keys")
        if len(message) > MAX_MESSAGE:
            raise _TooLarge()
        body = crypto.encrypt(message, record.p256dh, record.auth)
        headers.addRawHeader(b"Content-Encoding", b"aes128gcm")
        headers.addRawHeader(b"Content-Type", b"application/octet-stream")
        return body, headers

    async def _post(self, url: bytes, headers: Headers, body: bytes) -> IResponse:
        response = await self._agent.request(b"POST", url, headers, BytesBody(body))
        reader = _Discard(self.MAX_RESPONSE)
        response.deliverBody(reader)
        await reader.done
        return response

    def _outcome(self, response: IResponse) -> Outcome:
        status = response.code
        if 200 <= status < 300:
            return Outcome(OK, status)
        if status in (404, 410):
            return Outcome(GONE, status)
        if status == 413:
            return Outcome(TOO_LARGE, status)
        if status in (429, 503):
            values = response.headers.getRawHeaders(b"Retry-After")
            text = values[-1].decode("latin-1") if values else None
            delay = retry_delay(text, self._clock.seconds())
            if delay is not None:
                return Outcome(RETRY_AFTER, status, delay)
        return Outcome(FAILED, status)


class _TooLarge(Exception):
    """
    A push message that does not fit one encrypted request.
    """
