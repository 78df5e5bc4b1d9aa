"""
Local delivery (RFC 5321 §4.1.1.3 recipients, §4.4 final delivery): which
addresses are local and how a delivered message is stored
(:class:`LocalDelivery`, the server's
:class:`~jmap_twisted.interfaces.IMailDelivery`).  The bridge from
Twisted's SMTP machinery is :mod:`jmap_twisted.mail.incoming`; this module
does not import ``twisted.mail`` (whose ``smtp`` module installs the global
reactor).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from jmap_twisted.errors import OverQuota
from jmap_twisted.interfaces import (
    IDeliveryQuota,
    IDirectory,
    IMailDelivery,
    IMailStore,
    IMailWriter,
    IRecipientCache,
)
from jmap_twisted.records import EmailRecord
from jmap_twisted.store.quota import has_room

if TYPE_CHECKING:
    from jmap_twisted.metrics import ServerMetrics


class NoInbox(Exception):
    """
    The account has no mailbox with the ``inbox`` role, even after
    :meth:`~jmap_twisted.interfaces.IMailStore.setup_account`.
    """


def normalise_domain(domain: str) -> str:
    """
    A domain in the form used to compare domains: lower case, without a
    trailing dot, internationalised labels as IDNA A-labels
    (``xn--…``).  A domain IDNA cannot encode is only lower-cased.
    """
    domain = domain.strip().rstrip(".").lower()
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return domain


def split_address(address: str) -> tuple[str, str] | None:
    """
    The local part and domain of ``local@domain`` (optionally in angle
    brackets), with a quoted-string local part unquoted; ``None`` when it
    has no ``@``, no local part or no domain.
    """
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return None
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        local = re.sub(r"\\(.)", r"\1", local[1:-1])
    return local, domain


def _unicode_domain(ascii_domain: str) -> str:
    try:
        return ascii_domain.encode("ascii").decode("idna")
    except UnicodeError:
        return ascii_domain


@implementer(IMailDelivery, IRecipientCache, IDeliveryQuota)
class LocalDelivery:
    """
    :class:`~jmap_twisted.interfaces.IMailDelivery` for the users of a
    directory, storing into their personal accounts.

    An address is local when its domain is one of ``domains`` (compared
    case-insensitively, internationalised domains in either form) and
    either the whole address is a username (a username like
    ``alice@example.com``, its domain compared in the case given or in
    lower case) or the local part is a username (compared exactly, as
    usernames are).  A whole-address username wins over a local-part one.

    :param directory: the users and their accounts.
    :param store: where delivered mail goes.
    :param domains: the mail domains this server is the final destination
        for.
    :param clock: gives each delivered email's ``receivedAt``.
    """

    def __init__(
        self,
        directory: IDirectory,
        store: IMailStore,
        domains: Collection[str],
        clock: IReactorTime,
    ) -> None:
        self._directory = directory
        self._store = store
        self._domains = frozenset(normalise_domain(d) for d in domains)
        self._clock = clock
        #: address → account id of recent resolutions (never misses, so a
        #: new user receives mail at once); emptied by :meth:`forget`.
        self._resolved: OrderedDict[str, str] = OrderedDict()
        self._generation = 0
        #: Where addresses resolving to nobody and deliveries' outcomes
        #: are counted, if anywhere.
        self.metrics: ServerMetrics | None = None
        #: Called inside each delivery's write transaction (in the
        #: database's thread) with the writer, the new email and its
        #: ``receivedAt``: what a consumer of deliveries can learn there
        #: costs no read of its own after the commit.
        self.in_delivery: list[Callable[[IMailWriter, EmailRecord, float], object]] = []

    def resolve(self, address: str) -> Deferred[str | None]:
        known = self._resolved.get(address)
        if known is not None:
            self._resolved.move_to_end(address)
            return succeed(known)
        resolving = Deferred.fromCoroutine(self._resolve(address))
        generation = self._generation

        def remember(account_id: str | None) -> str | None:
            if account_id is None and self.metrics is not None:
                self.metrics.delivery("unknown_recipient")
            # Not if forgotten meanwhile: the answer may predate the change.
            if account_id is not None and generation == self._generation:
                self._resolved[address] = account_id
                if len(self._resolved) > RESOLVED_CACHE:
                    self._resolved.popitem(last=False)
            return account_id

        return resolving.addCallback(remember)

    def forget(self) -> None:
        """
        Drop remembered resolutions: users or accounts changed (the server
        calls this when the directory's access version moves, which user
        deletion does).
        """
        self._resolved.clear()
        self._generation += 1

    async def _resolve(self, address: str) -> str | None:
        parts = split_address(address)
        if parts is None:
            return None
        local, domain = parts
        normalised = normalise_domain(domain)
        if normalised not in self._domains:
            return None
        candidates = [
            f"{local}@{domain}",
            f"{local}@{domain.lower()}",
            f"{local}@{normalised}",
            f"{local}@{_unicode_domain(normalised)}",
        ]
        if "@" not in local:
            # A local part containing "@" (quoted) must not match a
            # username that is an address in some other domain.
            candidates.append(local)
        for username in dict.fromkeys(candidates):
            user = await self._directory.get_user(username)
            if user is None:
                continue
            for account in await self._directory.accounts_for_user(user.id):
                if account.owner_id == user.id:
                    return account.id
            return None
        return None

    def has_room(self, account_id: str, size: int) -> Deferred[bool]:
        """
        Whether the account's quota leaves room for a message of ``size``
        octets (``0`` when not announced) now.
        """
        return self._store.read(account_id, lambda reader: has_room(reader.quota(), size))

    def deliver(self, account_id: str, message: bytes) -> Deferred[EmailRecord | None]:
        """
        Store ``message`` (the octets exactly as they are to be kept, trace
        headers included) in the account's inbox as a delivery; fires with
        the stored email.  Fails with :class:`~jmap_twisted.errors.OverQuota`
        when the account's quota has no room for it.

        Nothing is logged here: the caller logs one line per delivery
        (:class:`~jmap_twisted.mail.incoming.IncomingMessage` names the
        delivery, the account and the stored email).
        """
        delivering: Deferred[EmailRecord | None] = Deferred.fromCoroutine(
            self._deliver(account_id, bytes(message))
        )
        metrics = self.metrics
        if metrics is not None:

            def counted(result: object) -> object:
                if not isinstance(result, Failure):
                    metrics.delivery("delivered")
                elif result.check(OverQuota):
                    metrics.delivery("over_quota")
                else:
                    metrics.delivery("failed")
                return result

            delivering.addBoth(counted)
        return delivering

    async def _deliver(self, account_id: str, message: bytes) -> EmailRecord | None:
        received_at = self._clock.seconds()

        hooks = tuple(self.in_delivery)

        def add(writer: IMailWriter) -> EmailRecord | None:
            for mailbox in writer.mailboxes():
                if mailbox.role == "inbox":
                    record = writer.add_email(message, [mailbox.id], [], received_at)
                    for hook in hooks:
                        hook(writer, record, received_at)
                    return record
            return None

        # The inbox is nearly always there: look for it in the delivery's
        # own transaction, and set the account up only when it is missing.
        record = await self._store.write(account_id, add, delivery=True)
        if record is None:
            await self._store.setup_account(account_id)
            record = await self._store.write(account_id, add, delivery=True)
        if record is None:
            raise NoInbox(account_id)
        return record


#: Resolutions remembered by :class:`LocalDelivery`.
RESOLVED_CACHE = 10_000
