"""
Test doubles and contract test suites, for code that embeds jmap-twisted
or provides its own store or event bus.

The doubles: the in-memory implementations of every storage and bus
interface (:class:`MemoryDirectory`, :class:`MemoryBlobStore`,
:class:`MemoryMailStore`, :class:`MemoryPushSubscriptions`, :class:`MemoryTickets`,
:class:`InMemoryEventBus`, :class:`MemoryDeadLetters`), listeners that
record what a bus delivers (:class:`RecordingListener`,
:class:`StalledListener`) and a message builder (:func:`message`), and a throwaway TLS certificate for HTTPS on
loopback (:func:`throwaway_certificate`).

The contracts: one base class of pytest tests per interface,
:class:`MailStoreContract` (with change-log pruning and quotas),
:class:`DirectoryContract` (with :class:`MailboxSharesContract`),
:class:`BlobStoreContract`,
:class:`PushSubscriptionsContract`, :class:`TicketStoreContract`,
:class:`EventBusContract` and
:class:`DeadLettersContract`.  Subclass one in a test module, under a
name pytest collects, and override the fixture its docstring names to
give your implementation; pytest then runs every test of the contract
against it, starting with :func:`zope.interface.verify.verifyObject`.
jmap-twisted's own backends are proved the same way.  For example::

    import pytest

    from jmap_twisted.testing import MailStoreContract


    class TestMyMailStore(MailStoreContract):
        @pytest.fixture
        def mail_store(self, clock):
            return MyMailStore(clock)

What the contracts hold fixed:

``CONTRACT_EPOCH``
    the POSIX time the contracts' ``clock`` fixtures start at;
``CONTRACT_ACCOUNTS``
    the two account ids the mail contract's ``store`` fixture sets up;
``NewAccount``
    the type of the blob contract's ``new_account`` fixture;
``NewUser``
    the type of the push subscriptions contract's ``new_user`` fixture.

The contracts need pytest and pytest-twisted (the tests run on
pytest-twisted's reactor): ``pip install 'jmap-twisted[testing]'``.  The
server never imports this package.
"""

import pytest

# Assertions in the contracts explain their failures as a test module's do.
pytest.register_assert_rewrite(
    "jmap_twisted.testing._blobs",
    "jmap_twisted.testing._bus",
    "jmap_twisted.testing._counts",
    "jmap_twisted.testing._directory",
    "jmap_twisted.testing._mail",
    "jmap_twisted.testing._mail_views",
    "jmap_twisted.testing._push",
    "jmap_twisted.testing._quota",
    "jmap_twisted.testing._shares",
    "jmap_twisted.testing._tickets",
)

from jmap_twisted.bus.deadletters import MemoryDeadLetters  # noqa: E402
from jmap_twisted.bus.memory import InMemoryEventBus  # noqa: E402
from jmap_twisted.store.memory.directory import MemoryBlobStore, MemoryDirectory  # noqa: E402
from jmap_twisted.store.memory.mail import MemoryMailStore  # noqa: E402
from jmap_twisted.store.memory.push import MemoryPushSubscriptions  # noqa: E402
from jmap_twisted.store.memory.tickets import MemoryTickets  # noqa: E402
from jmap_twisted.testing._blobs import BlobStoreContract, NewAccount  # noqa: E402
from jmap_twisted.testing._bus import (  # noqa: E402
    DeadLettersContract,
    EventBusContract,
    eventually,
    settle,
)
from jmap_twisted.testing._directory import DirectoryContract  # noqa: E402
from jmap_twisted.testing._doubles import (  # noqa: E402
    CONTRACT_ACCOUNTS,
    CONTRACT_EPOCH,
    RecordingListener,
    StalledListener,
    message,
)
from jmap_twisted.testing._mail import MailStoreContract  # noqa: E402
from jmap_twisted.testing._push import NewUser, PushSubscriptionsContract  # noqa: E402
from jmap_twisted.testing._shares import MailboxSharesContract  # noqa: E402
from jmap_twisted.testing._tickets import TicketStoreContract  # noqa: E402
from jmap_twisted.testing._tls import throwaway_certificate  # noqa: E402

__all__ = [
    "CONTRACT_ACCOUNTS",
    "CONTRACT_EPOCH",
    "BlobStoreContract",
    "DeadLettersContract",
    "DirectoryContract",
    "EventBusContract",
    "InMemoryEventBus",
    "MailStoreContract",
    "MailboxSharesContract",
    "MemoryBlobStore",
    "MemoryDeadLetters",
    "MemoryDirectory",
    "MemoryMailStore",
    "MemoryPushSubscriptions",
    "MemoryTickets",
    "NewAccount",
    "NewUser",
    "PushSubscriptionsContract",
    "RecordingListener",
    "StalledListener",
    "TicketStoreContract",
    "eventually",
    "message",
    "settle",
    "throwaway_certificate",
]
