# -*- test-case-name: tests.push.test_webpush_wiring -*-
"""
Web push as one piece of the server (RFC 8620 §7.2, RFC 8292, RFC 9749):
the VAPID key pair (made on first start and kept with the data, shared by
every node), its advertisement in the session, the verification POST of a
new subscription, and the dispatcher that POSTs StateChanges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.client import HTTPConnectionPool
from zope.interface import implementer

from jmap_twisted.config import WebPushOptions
from jmap_twisted.core.registry import Capability, Registry
from jmap_twisted.core.session import capabilities_changed
from jmap_twisted.interfaces import (
    IDirectory,
    IJMAPReactor,
    IPushSubscriptionEvents,
    IPushSubscriptions,
    IRecipientCache,
)
from jmap_twisted.push.webpush.crypto import VapidKey
from jmap_twisted.push.webpush.dispatcher import WebPushDispatcher
from jmap_twisted.push.webpush.policy import push_agent
from jmap_twisted.push.webpush.sender import WebPushSender
from jmap_twisted.records import PushSubscriptionRecord

if TYPE_CHECKING:
    from jmap_twisted.metrics import PushMetrics

log = Logger()

#: The RFC 9749 capability advertising the VAPID public key.
WEBPUSH_VAPID = "urn:ietf:params:jmap:webpush-vapid"


@implementer(IPushSubscriptionEvents, IRecipientCache)
class WebPush:
    """
    Web push for one server.  Nothing is sent before :meth:`start` (run by
    the server's life cycle) has loaded the key.

    :param subscriptions: every user's push subscriptions and the key.
    :param directory: who may see which account.
    :param options: trusted CAs, private targets, the VAPID subject, TTL.
    :param reactor: connections and time.
    """

    def __init__(
        self,
        subscriptions: IPushSubscriptions,
        directory: IDirectory,
        options: WebPushOptions,
        reactor: IJMAPReactor,
    ) -> None:
        self._subscriptions = subscriptions
        self._directory = directory
        #: Where the RFC 9749 capability is advertised once the key is known.
        self.registry: Registry | None = None
        self._options = options
        self._reactor = reactor
        self._key: VapidKey | None = None
        self._advertised: dict[str, Any] = {}
        self._pool: HTTPConnectionPool | None = None
        self.sender: WebPushSender | None = None
        self.dispatcher: WebPushDispatcher | None = None
        #: Where pushes accepted by push services are counted (set by the
        #: server before :meth:`start`).
        self.metrics: PushMetrics | None = None

    async def start(self) -> None:
        """
        Load the key (or make and store it, keeping another node's if it
        stored one first), advertise it, and build the sender and the
        dispatcher.
        """
        key = await self._current_key()
        self._pool = HTTPConnectionPool(self._reactor, persistent=True)
        agent = push_agent(
            self._reactor,
            allow_private=self._options.allow_private,
            ca_file=self._options.ca_file,
            pool=self._pool,
        )
        self.sender = WebPushSender(agent, key, self._options.vapid_subject, self._reactor)
        self.dispatcher = WebPushDispatcher(
            self._subscriptions,
            self._directory,
            self.sender,
            self._reactor,
            ttl=self._options.ttl,
            metrics=self.metrics,
        )
        self._use(key)

    async def _current_key(self) -> VapidKey:
        pem = await self._subscriptions.vapid_key()
        if pem is None:
            made = VapidKey.generate()
            pem = await self._subscriptions.set_vapid_key(made.pem(), only_if_unset=True)
        return VapidKey.from_pem(pem)

    def _use(self, key: VapidKey) -> None:
        self._key = key
        if self.sender is not None:
            self.sender.use_key(key)
        self._advertised["applicationServerKey"] = key.application_server_key()
        if self.registry is not None and WEBPUSH_VAPID not in self.registry.capabilities:
            self.registry.add_capability(Capability(WEBPUSH_VAPID, self._advertised))
        capabilities_changed()

    def stop(self) -> None:
        """
        Stop sending (what is pending is dropped) and close the connections
        kept open to push services, without waiting for the push services
        to acknowledge the close (an unresponsive one must not hold the
        shutdown up).
        """
        if self.dispatcher is not None:
            self.dispatcher.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.closeCachedConnections().addErrback(
                lambda f: log.failure("Could not close the connections to push services", f)
            )

    async def refresh(self) -> None:
        """
        Follow a key rotated elsewhere (``jmap-admin vapid rotate``, another
        node), and delete expired subscriptions.
        """
        if self._key is None:
            return
        pem = await self._subscriptions.vapid_key()
        if pem is not None and pem != self._key.pem():
            log.info("Using the rotated VAPID key")
            self._use(VapidKey.from_pem(pem))
        if self.dispatcher is not None:
            await self.dispatcher.expire()

    # -- IPushSubscriptionEvents -------------------------------------------

    def created(self, record: PushSubscriptionRecord) -> None:
        """
        POST the PushVerification of a new subscription.
        """
        if self.sender is None:
            log.warn(
                "Push subscription {id} created before web push started: no verification sent",
                id=record.id,
            )
            return
        sending = self.sender.send_verification(record, record.verification_code)
        sending.addCallback(self._verification_sent, record)
        sending.addErrback(
            lambda f: log.failure("Could not send the verification of {id}", f, id=record.id)
        )

    def _verification_sent(
        self, outcome: Any, record: PushSubscriptionRecord
    ) -> Deferred[Any] | None:
        if outcome.gone:
            return self._subscriptions.remove(record.id)
        if not outcome.ok:
            log.info(
                "The verification of push subscription {id} was not accepted ({outcome})",
                id=record.id,
                outcome=outcome,
            )
        return None

    def changed(self) -> None:
        """
        Subscriptions changed on this node: the dispatcher reloads them.
        """
        if self.dispatcher is not None:
            self.dispatcher.changed()

    def forget(self) -> None:
        """
        Who may see which account changed: the dispatcher forgets what it
        knew of it.
        """
        if self.dispatcher is not None:
            self.dispatcher.access_changed()
