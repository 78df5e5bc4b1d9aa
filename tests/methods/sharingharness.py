"""
Runs JMAP requests as several users of a directory, over the mail store
of a :class:`~tests.methods.harness.MailHarness` (so on every backend):
what mailbox sharing (RFC 9670) needs, since principals are the
directory's users.
"""

from __future__ import annotations

from typing import Any

from jmap_twisted.auth.realm import Principal, accounts_of
from jmap_twisted.core.engine import Engine
from jmap_twisted.core.limits import CoreLimits
from jmap_twisted.core.request import parse_request
from jmap_twisted.methods import build_registry
from jmap_twisted.records import Account, User
from jmap_twisted.store.memory.directory import MemoryDirectory
from tests.methods.harness import CORE, MAIL, HarnessFactory, MailHarness

PRINCIPALS = "urn:ietf:params:jmap:principals"
OWNER = "urn:ietf:params:jmap:principals:owner"
#: What a sharing-aware client uses.
USING = (CORE, MAIL, PRINCIPALS)


class SharingHarness:
    """
    Users alice, bob and carol (with their personal accounts) of an
    in-memory directory, and a server offering mailbox sharing over the
    mail store under test.
    """

    def __init__(self, base: MailHarness) -> None:
        self.base = base
        self.store: Any = base.store
        self.clock = base.clock
        self.directory = MemoryDirectory(self.clock)
        self.registry = build_registry(
            CoreLimits(), self.store, base.blobs, self.clock, directory=self.directory
        ).registry
        self.engine = Engine(self.registry, CoreLimits())
        self.users: dict[str, User] = {}
        self.accounts: dict[str, Account] = {}

    async def add_user(self, name: str) -> User:
        """
        Create a user; their personal account is ``accounts[name]``.
        """
        user = await self.directory.create_user(name, None)
        self.users[name] = user
        self.accounts[name] = (await self.directory.accounts_for_user(user.id))[0]
        return user

    async def principal(self, name: str) -> Principal:
        """
        The user as they log in now, with the accounts the directory lists
        and their views of accounts where mailboxes were shared with them.
        """
        user = self.users[name]
        return Principal(user, tuple(await accounts_of(self.directory, user.id)))

    async def call(
        self,
        who: str,
        name: str,
        arguments: dict[str, Any],
        account: str | None = None,
        using: tuple[str, ...] = USING,
    ) -> tuple[str, dict[str, Any]]:
        """
        One method call by a user, in their personal account unless another
        is named; returns (response name, arguments).
        """
        account_id = self.accounts[who].id if account is None else account
        call = [name, {"accountId": account_id, **arguments}, "c"]
        request = parse_request(
            {"using": list(using), "methodCalls": [call]}, self.registry.capabilities, 16
        )
        response = await self.engine.execute(await self.principal(who), request)
        response_name, args, _ = response["methodResponses"][0]
        return response_name, args

    async def ok(
        self,
        who: str,
        name: str,
        arguments: dict[str, Any],
        account: str | None = None,
        using: tuple[str, ...] = USING,
    ) -> dict[str, Any]:
        """
        One method call that must succeed; returns its arguments.
        """
        response_name, args = await self.call(who, name, arguments, account, using)
        assert response_name == name, args
        return args

    async def mailbox(self, owner: str, role: str) -> str:
        """
        The id of a role mailbox of a user's account.
        """
        account = self.accounts[owner].id
        await self.store.setup_account(account)
        mailboxes = await self.store.read(account, lambda r: r.mailboxes())
        return next(m.id for m in mailboxes if m.role == role)


async def sharing_harness(make_harness: HarnessFactory) -> SharingHarness:
    """
    A :class:`SharingHarness` with alice, bob and carol, on the backend
    under test.
    """
    harness = SharingHarness(await make_harness())
    for name in ("alice", "bob", "carol"):
        await harness.add_user(name)
    return harness
