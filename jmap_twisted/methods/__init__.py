"""
JMAP methods, one module per data type.

- :mod:`~jmap_twisted.methods.core`: the core capability and ``Core/echo``.
- :mod:`~jmap_twisted.methods.mailbox`: ``Mailbox/*``.
- :mod:`~jmap_twisted.methods.thread`: ``Thread/*``.
- :mod:`~jmap_twisted.methods.email`: ``Email/get``, ``Email/changes``.
- :mod:`~jmap_twisted.methods.email_query`: ``Email/query``,
  ``Email/queryChanges``, ``SearchSnippet/get``.
- :mod:`~jmap_twisted.methods.email_set`: ``Email/set``, ``/import``,
  ``/copy``, ``/parse``.
- :mod:`~jmap_twisted.methods.identity`: ``Identity/*``.
- :mod:`~jmap_twisted.methods.vacation`: ``VacationResponse/*``.
- :mod:`~jmap_twisted.methods.submission`: ``EmailSubmission/*``.
- :mod:`~jmap_twisted.methods.quota`: ``Quota/*`` (RFC 9425).
- :mod:`~jmap_twisted.methods.principals`: ``Principal/*`` (RFC 9670).
- :mod:`~jmap_twisted.methods.share_notifications`: ``ShareNotification/*``
  (RFC 9670).
- :mod:`~jmap_twisted.methods.push_subscription`: ``PushSubscription/get``
  and ``/set``, under the core capability.

Shared pieces: :mod:`~jmap_twisted.methods.standard` (argument checks and
patches), :mod:`~jmap_twisted.methods.querychanges` (query windows and
``/queryChanges``), :mod:`~jmap_twisted.methods.objectquery` (filters and
sorts of objects held in memory), :mod:`~jmap_twisted.methods.mailcontext`
(the mail capability and account set-up), :mod:`~jmap_twisted.methods.sharewith`
(``Mailbox.shareWith``), :mod:`~jmap_twisted.methods.keywords`,
:mod:`~jmap_twisted.methods.blobs` (finding blobs wherever they live, and
``Blob/copy`` under the core capability).

:func:`build_registry` assembles every capability and method of the server.
"""

from __future__ import annotations

from collections.abc import Collection

from attrs import frozen
from twisted.internet.interfaces import IReactorTime

from jmap_twisted.core.limits import CoreLimits
from jmap_twisted.core.registry import Capability, Registry
from jmap_twisted.core.session import TICKETS, WEBSOCKET
from jmap_twisted.interfaces import (
    IBlobStore,
    IDirectory,
    IMailDelivery,
    IMailStore,
    IPushSubscriptionEvents,
    IPushSubscriptions,
    IRelay,
)
from jmap_twisted.mail.sendlimits import SendLimits
from jmap_twisted.methods import core
from jmap_twisted.methods.blobs import BlobMethods, BlobResolver
from jmap_twisted.methods.email import EmailMethods
from jmap_twisted.methods.email_query import SORT_PROPERTIES, EmailQueryMethods
from jmap_twisted.methods.email_set import EmailSetMethods
from jmap_twisted.methods.identity import SUBMISSION, IdentityMethods
from jmap_twisted.methods.mailbox import MAX_DEPTH, MAX_NAME_OCTETS, MailboxMethods
from jmap_twisted.methods.mailcontext import MAIL
from jmap_twisted.methods.principals import PrincipalMethods
from jmap_twisted.methods.push_subscription import (
    PushSubscriptionLimits,
    PushSubscriptionMethods,
)
from jmap_twisted.methods.quota import QuotaMethods
from jmap_twisted.methods.share_notifications import ShareNotificationMethods
from jmap_twisted.methods.submission import SubmissionMethods
from jmap_twisted.methods.thread import ThreadMethods
from jmap_twisted.methods.vacation import VACATION, VacationMethods
from jmap_twisted.sharing import Sharing


@frozen
class Methods:
    """
    The registry and the helpers other parts of the server reuse.

    :ivar blob_resolver: finds any blob of an account, for downloads.
    """

    registry: Registry
    blob_resolver: BlobResolver


def build_registry(
    limits: CoreLimits,
    store: IMailStore,
    blobs: IBlobStore,
    clock: IReactorTime,
    hostname: str = "localhost",
    domains: Collection[str] = ("localhost",),
    delivery: IMailDelivery | None = None,
    relay: IRelay | None = None,
    send_limits: SendLimits | None = None,
    push_subscriptions: IPushSubscriptions | None = None,
    push_events: IPushSubscriptionEvents | None = None,
    push_limits: PushSubscriptionLimits | None = None,
    directory: IDirectory | None = None,
) -> Methods:
    """
    Every capability and method this server offers, over the given stores.

    ``PushSubscription/get`` and ``/set`` are offered only with a
    ``push_subscriptions`` store; ``push_events`` hears of their changes.
    Mailbox sharing (RFC 9670: the principals capability, ``Principal/*``,
    ``ShareNotification/*``, ``Mailbox.shareWith``) is offered only with a
    ``directory``, which must provide
    :class:`~jmap_twisted.interfaces.IMailboxShares` too.
    """
    registry = Registry()
    core.install(registry, limits)
    registry.add_capability(
        Capability(
            MAIL,
            {},
            {
                "maxMailboxesPerEmail": None,
                "maxMailboxDepth": MAX_DEPTH,
                "maxSizeMailboxName": MAX_NAME_OCTETS,
                "maxSizeAttachmentsPerEmail": limits.max_size_upload,
                "emailQuerySortOptions": list(SORT_PROPERTIES),
                "mayCreateTopLevelMailbox": True,
            },
        )
    )
    registry.add_capability(
        Capability(SUBMISSION, {}, {"maxDelayedSend": 0, "submissionExtensions": {}})
    )
    registry.add_capability(Capability(VACATION, {}, {}))
    registry.add_capability(Capability(WEBSOCKET, {"supportsPush": True}))
    registry.add_capability(Capability(TICKETS, {}))
    emails = EmailMethods(store, blobs, clock)
    resolver = BlobResolver(blobs, store, emails.parsed)
    BlobMethods(store, blobs, clock, resolver=resolver).install(registry)
    sharing = None if directory is None else Sharing(directory, store, clock)
    MailboxMethods(store, blobs, clock, sharing=sharing).install(registry)
    ThreadMethods(store, blobs, clock).install(registry)
    emails.install(registry)
    EmailQueryMethods(store, blobs, clock).install(registry)
    email_set = EmailSetMethods(
        store, blobs, clock, resolver=resolver, parsed=emails.parsed, hostname=hostname
    )
    email_set.install(registry)
    SubmissionMethods(
        store,
        blobs,
        clock,
        delivery=delivery,
        relay=relay,
        email_set=email_set,
        limits=send_limits,
    ).install(registry)
    IdentityMethods(store, blobs, clock, domains=domains).install(registry)
    VacationMethods(store, blobs, clock).install(registry)
    QuotaMethods(store, blobs, clock).install(registry)
    if directory is not None:
        PrincipalMethods(directory).install(registry)
        ShareNotificationMethods(store, blobs, clock).install(registry)
    if push_subscriptions is not None:
        PushSubscriptionMethods(
            push_subscriptions,
            clock,
            push_events,
            push_limits or PushSubscriptionLimits(),
        ).install(registry)
    return Methods(registry, resolver)
