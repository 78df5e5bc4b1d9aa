"""
Runs JMAP requests through the engine against in-memory stores.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from jmap_twisted.auth.realm import Principal
from jmap_twisted.core.engine import Engine
from jmap_twisted.core.limits import CoreLimits
from jmap_twisted.core.request import parse_request
from jmap_twisted.interfaces import IMailDelivery, IMailStore, IMailWriter
from jmap_twisted.mail.sendlimits import SendLimits
from jmap_twisted.mail.smarthost import Smarthost
from jmap_twisted.methods import build_registry
from jmap_twisted.records import Account, User
from jmap_twisted.store.memory.directory import MemoryBlobStore
from jmap_twisted.store.memory.mail import MemoryMailStore
from tests.support import ImmediateReactor

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"
VACATION = "urn:ietf:params:jmap:vacationresponse"
ACCOUNT = "a1"
SHARED = "a2"


@implementer(IMailDelivery)
class FakeDelivery:
    """
    Local delivery for the harness: ``bob@example.com`` is the shared
    account's address.
    """

    def __init__(self, store: IMailStore) -> None:
        self.store = store
        self.addresses = {"bob@example.com": SHARED, "alice@example.com": ACCOUNT}

    def resolve(self, address: str) -> Deferred[str | None]:
        return succeed(self.addresses.get(address.lower()))

    def deliver(self, account_id: str, message: bytes) -> Deferred[None]:
        async def deliver() -> None:
            await self.store.setup_account(account_id)

            def write(w: IMailWriter) -> None:
                inbox = next(m.id for m in w.mailboxes() if m.role == "inbox")
                w.add_email(message, [inbox], [], 0.0)

            await self.store.write(account_id, write, delivery=True)

        return Deferred.fromCoroutine(deliver())


class MailHarness:
    """
    One user with two accounts over in-memory stores.
    """

    def __init__(
        self,
        store: IMailStore | None = None,
        clock: ImmediateReactor | None = None,
        smarthost: Smarthost | None = None,
        send_limits: SendLimits | None = None,
    ) -> None:
        self.clock = clock or ImmediateReactor()
        if clock is None:
            self.clock.advance(1_800_000_000)
        self.store: Any = store or MemoryMailStore(self.clock)
        self.blobs = MemoryBlobStore(self.clock)
        self.delivery = FakeDelivery(self.store)
        methods = build_registry(
            CoreLimits(),
            self.store,
            self.blobs,
            self.clock,
            "test.example",
            ["example.com"],
            self.delivery,
            smarthost,
            send_limits,
        )
        self.engine = Engine(methods.registry, CoreLimits())
        self.resolver = methods.blob_resolver
        self.principal = Principal(
            User("u1", "alice"), (Account(ACCOUNT, "alice", "u1"), Account(SHARED, "team", "u2"))
        )

    async def call(self, name: str, arguments: dict[str, Any], account: str = ACCOUNT) -> Any:
        """
        One method call; returns (response name, arguments).
        """
        responses = await self.request([[name, {"accountId": account, **arguments}, "c"]])
        name, args, _ = responses[0]
        return name, args

    async def ok(self, name: str, arguments: dict[str, Any], account: str = ACCOUNT) -> Any:
        """
        One method call that must succeed; returns its arguments.
        """
        response_name, args = await self.call(name, arguments, account)
        assert response_name == name, args
        return args

    async def request(self, calls: list[Any], created_ids: dict[str, str] | None = None) -> Any:
        body: dict[str, Any] = {"using": [CORE, MAIL, SUBMISSION, VACATION], "methodCalls": calls}
        if created_ids is not None:
            body["createdIds"] = created_ids
        request = parse_request(body, self.engine.registry.capabilities, 16)
        response = await self.engine.execute(self.principal, request)
        return response["methodResponses"]

    async def roles(self, account: str = ACCOUNT) -> dict[str, str]:
        await self.store.setup_account(account)
        mailboxes = await self.store.read(account, lambda r: r.mailboxes())
        return {m.role: m.id for m in mailboxes if m.role}

    async def deliver(self, raw: bytes, account: str = ACCOUNT, at: float | None = None) -> Any:
        inbox = (await self.roles(account))["inbox"]
        self.clock.advance(1)  # deliveries arrive one after the other
        when = self.clock.seconds() if at is None else at

        def write(w: IMailWriter) -> Any:
            return w.add_email(raw, [inbox], [], when)

        return await self.store.write(account, write, delivery=True)


#: Builds a harness on the backend under test, optionally with a smarthost.
HarnessFactory = Callable[..., Awaitable[MailHarness]]
