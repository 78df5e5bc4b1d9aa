"""
Every public zope interface of jmap-twisted.

Implementations live in the packages named in their docstrings; each is
checked with :func:`zope.interface.verify.verifyObject` and by the contract
test suite of its interface.  Methods that do I/O return a
:class:`~twisted.internet.defer.Deferred`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.cred.credentials import ICredentials
from twisted.internet.interfaces import (
    IReactorCore,
    IReactorPluggableNameResolver,
    IReactorSSL,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
    IReactorUNIX,
)
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
    from typing import Any, TypeVar

    from twisted.internet.defer import Deferred

    from jmap_twisted.records import (
        Account,
        AccountQuota,
        BlobInfo,
        ChangeBatch,
        EmailRecord,
        MailboxCounts,
        MailboxRecord,
        MailboxShare,
        MailView,
        PushSubscriptionRecord,
        Recount,
        SharedView,
        StoreCommit,
        TicketClaim,
        TicketRecord,
        TokenInfo,
        User,
    )

    T = TypeVar("T")


class IJMAPReactor(
    IReactorCore,
    IReactorTime,
    IReactorTCP,
    IReactorSSL,
    IReactorUNIX,
    IReactorThreads,
    IReactorPluggableNameResolver,
):
    """
    What the server needs of a reactor: its life cycle, time, TCP, TLS and
    UNIX sockets, a thread pool and name resolution.  The global reactor
    provides all of it; :class:`twisted.internet.testing.MemoryReactorClock`
    the parts a unit test needs.  Every signature that takes a reactor says
    this type rather than ``Any``; one that only schedules says
    :class:`~twisted.internet.interfaces.IReactorTime`.
    """


class IDirectory(Interface):
    """
    Users, their credentials (stored hashed) and the accounts they can see.

    Implementations: :class:`jmap_twisted.store.memory.directory.MemoryDirectory`,
    :class:`jmap_twisted.store.sqlite.directory.SQLiteDirectory`,
    :class:`jmap_twisted.store.postgres.directory.PostgresDirectory`.  Changes made through
    one instance over a shared database are visible to every other instance
    at once (the admin command and a running server share the database).
    """

    def create_user(username: str, password_hash: str | None) -> Deferred[User]:
        """
        Create a user and their personal account (same name).

        :raises jmap_twisted.errors.UserExists: the username is taken.
        """

    def get_user(username: str) -> Deferred[User | None]:
        """
        Find a user by login name, or ``None``.
        """

    def get_user_by_id(user_id: str) -> Deferred[User | None]:
        """
        Find a user by id, or ``None``.
        """

    def list_users() -> Deferred[list[User]]:
        """
        All users, ordered by username.
        """

    def delete_user(username: str) -> Deferred[bool]:
        """
        Delete a user, their tokens and their personal account.

        :return: whether such a user existed.
        """

    def get_password_hash(username: str) -> Deferred[tuple[User, str | None] | None]:
        """
        The user and their stored password hash (``None`` when no password is
        set), or ``None`` when there is no such user.
        """

    def set_password_hash(username: str, password_hash: str | None) -> Deferred[None]:
        """
        Replace the stored password hash (``None`` disables password login).

        :raises jmap_twisted.errors.NoSuchUser: no such user.
        """

    def add_token(user_id: str, token_hash: str, name: str) -> Deferred[TokenInfo]:
        """
        Record a bearer token by its hash.

        :raises jmap_twisted.errors.NoSuchUser: no such user.
        """

    def find_token(token_hash: str) -> Deferred[tuple[User, TokenInfo] | None]:
        """
        The user and token record for a token hash, or ``None`` when the
        token is unknown or revoked.
        """

    def list_tokens(user_id: str) -> Deferred[list[TokenInfo]]:
        """
        The live tokens of a user, oldest first.
        """

    def revoke_token(token_id: str) -> Deferred[bool]:
        """
        Revoke a token at once.

        :return: whether such a token existed.
        """

    def accounts_for_user(user_id: str) -> Deferred[list[Account]]:
        """
        Every account the user may access: their personal account first,
        then the accounts delegated to them (see :meth:`delegate`), ordered
        by their owner's username.
        """

    def delegate(owner: str, delegate: str) -> Deferred[None]:
        """
        Let ``delegate`` access the personal account of ``owner``, as
        :meth:`accounts_for_user` lists it (not as their personal account).
        Granting a delegation that exists already changes nothing.

        :param owner: the username of the account's owner.
        :param delegate: the username of the user given access.
        :raises jmap_twisted.errors.NoSuchUser: either user does not exist.
        :raises ValueError: ``owner`` and ``delegate`` are the same user.
        """

    def revoke_delegation(owner: str, delegate: str) -> Deferred[bool]:
        """
        Stop ``delegate`` from accessing the personal account of ``owner``,
        at once.

        :param owner: the username of the account's owner.
        :param delegate: the username of the user who had access.
        :return: whether such a delegation existed (``False`` also when
            either user does not exist).
        """

    def delegations(owner: str) -> Deferred[list[User]]:
        """
        The users the personal account of ``owner`` is delegated to,
        ordered by username.

        :param owner: the username of the account's owner.
        :raises jmap_twisted.errors.NoSuchUser: no such user.
        """

    def access_version() -> Deferred[int]:
        """
        A number that increases whenever who may access which account, or
        with which credentials, changes: a delegation granted or revoked,
        a user deleted, a password set, a token revoked, a mailbox share
        changed (see :class:`IMailboxShares`).  Changes made by
        another process over a shared database count too, so a running
        server can poll it to learn that the accounts and credentials it
        holds for open connections may be stale.  Other changes (users
        created, tokens issued) leave it as it is.
        """

    def access_changes_since(version: int) -> Deferred[list[str] | None]:
        """
        The ids of the users whose access or credentials changed since an
        access version: the delegate of a granted or revoked delegation, a
        deleted user and the delegates of their account, a user whose
        password was set or whose token was revoked, the sharee of a
        changed mailbox share (see :class:`IMailboxShares`).  ``None`` when
        the changes since then are no longer all known (then assume
        everyone).
        """


class IMailboxShares(Interface):
    """
    Mailboxes shared with users who neither own their account nor were
    delegated it, with RFC 4314 rights (see :mod:`jmap_twisted.rights`),
    and the log of principals for ``Principal/changes`` (RFC 9670).
    Provided by the directories, beside :class:`IDirectory`.

    A sharee sees an account through a view (:class:`~jmap_twisted.records.SharedView`)
    whose *generation* every change of their rights there bumps and whose
    *subscriptions* counter every change of their subscriptions bumps;
    both also bump the :meth:`IDirectory.access_version`, naming the
    sharee, so that running servers re-read what the sharee may see.  A
    generation is never reused, even after the last share of the account
    was revoked.  Deleting a user deletes the shares given to them and
    those of their accounts; nothing here checks that a mailbox exists.
    """

    def set_rights(
        account_id: str, mailbox_id: str, user_id: str, letters: str, granted_by: str | None
    ) -> Deferred[tuple[str, str]]:
        """
        Share a mailbox with a user, change their rights on it, or (with
        ``""``) stop sharing it with them.  A change bumps the generation of
        the sharee's view of the account and the access version; giving the
        rights they hold already changes nothing.  A new share starts
        subscribed; a change of rights keeps the subscription.

        :param letters: RFC 4314 letters in any order, normalised by
            :func:`jmap_twisted.rights.normalise`.
        :param granted_by: the user id of who shared it, or ``None`` for the
            server's administrator.
        :return: the rights before and after, normalised (``""``: none).
        :raises ValueError: unknown letters, an invalid mailbox id, or the
            sharee owns the account.
        :raises jmap_twisted.errors.NoSuchAccount: no such account.
        :raises jmap_twisted.errors.NoSuchUser: no such sharee.
        """

    def shares_of_account(account_id: str) -> Deferred[list[MailboxShare]]:
        """
        Every share of the account's mailboxes, ordered by mailbox id then
        sharee id (empty for an unknown account).
        """

    def shares_of_mailboxes(
        account_id: str, mailbox_ids: Collection[str]
    ) -> Deferred[list[tuple[MailboxShare, int]]]:
        """
        The shares of some mailboxes of an account, each with the
        generation of its sharee's view, ordered by mailbox id then sharee
        id.  All shares are given, whatever their letters, including those
        of users who were also delegated the account.
        """

    def shared_views_for_user(user_id: str) -> Deferred[list[tuple[Account, SharedView]]]:
        """
        The accounts a user sees through shares, with their view: every
        account where the user holds a share with ``l`` (lookup) and that
        they neither own nor were delegated (delegation gives the whole
        account, so it wins), ordered as :meth:`IDirectory.accounts_for_user`
        orders delegated accounts (by their owner's username).  The view
        lists all the user's shares in the account, with or without ``l``;
        the accounts are as the directory stores them (``shared`` is
        ``None``).
        """

    def set_subscribed(
        account_id: str, mailbox_id: str, user_id: str, subscribed: bool
    ) -> Deferred[bool]:
        """
        Set a sharee's own ``isSubscribed`` for a mailbox shared with them.
        A change bumps the subscriptions counter of their view and the
        access version.

        :return: whether the mailbox is shared with the user.
        """

    def forget_mailbox(account_id: str, mailbox_id: str) -> Deferred[list[str]]:
        """
        Delete every share of a mailbox, when it is destroyed, bumping the
        generation of each sharee's view and the access version.

        :return: the ids of the users it was shared with, ordered.
        """

    def principal_state() -> Deferred[int]:
        """
        The position of the latest entry of the principals' log (``0`` when
        it is empty): the ``Principal`` state.  Creating a user logs
        ``created``, deleting one ``destroyed``.
        """

    def principal_changes_since(since: int) -> Deferred[list[tuple[int, str, str]]]:
        """
        The principals' log after a position, oldest first, as
        ``(position, user id, kind)`` with kind ``created``, ``updated`` or
        ``destroyed``; the log is never pruned.  The last position read is
        the state reached when all the entries were consumed.
        """


class IBlobStore(Interface):
    """
    Binary data scoped to accounts (RFC 8620 §6).

    Blob ids are derived from the content, so storing the same octets twice
    in one account yields the same id; a blob is visible only to the accounts
    it was stored for.  Implementations:
    :class:`jmap_twisted.store.memory.directory.MemoryBlobStore`,
    :class:`jmap_twisted.store.sqlite.directory.SQLiteBlobStore`,
    :class:`jmap_twisted.store.postgres.directory.PostgresBlobStore`.
    """

    def put(account_id: str, data: bytes, type: str) -> Deferred[BlobInfo]:
        """
        Store octets for an account.
        """

    def get(account_id: str, blob_id: str) -> Deferred[tuple[BlobInfo, bytes] | None]:
        """
        The blob's metadata and octets, or ``None`` when the account has no
        such blob (whether or not another account has it).
        """


class IBearerToken(ICredentials):
    """
    An opaque bearer token presented with ``Authorization: Bearer``.
    """

    token = Attribute(":class:`str`, the token as presented.")


class IPrincipal(Interface):
    """
    The avatar of an authenticated user, returned by the realm.
    """

    user = Attribute(":class:`jmap_twisted.records.User` who logged in.")
    accounts = Attribute(
        "Tuple of :class:`jmap_twisted.records.Account` the user may access, "
        "their personal account first."
    )


class IMailReader(Interface):
    """
    A consistent, read-only view of one account's mail, valid inside one
    :meth:`IMailStore.read` or :meth:`IMailStore.write` call.  Its methods
    are synchronous: they run on the store's worker thread.
    """

    account_id = Attribute(":class:`str`, the account viewed.")

    def mailboxes() -> list[MailboxRecord]:
        """
        Every mailbox of the account.
        """

    def mailbox_counts(mailbox_ids: Collection[str]) -> dict[str, MailboxCounts]:
        """
        The counts of the given mailboxes (RFC 8621 §2, including the
        special treatment of the trash mailbox for ``unreadThreads``).
        """

    def emails(email_ids: Collection[str]) -> dict[str, EmailRecord]:
        """
        The records of the emails that exist among ``email_ids``.
        """

    def thread_emails(thread_ids: Collection[str]) -> dict[str, list[str]]:
        """
        The email ids of each existing thread, oldest ``receivedAt`` first.
        """

    def query_emails(
        filter: Mapping[str, Any] | None,
        sort: Sequence[Mapping[str, Any]],
        collapse_threads: bool,
        position: int = 0,
        limit: int | None = None,
    ) -> tuple[list[str], int]:
        """
        Email ids matching a validated ``Email/query`` filter, in the order
        of a validated sort, with ties broken by id; and the total number
        of matches.

        :param position: the first result to return (non-negative).
        :param limit: how many to return at most, ``None`` for all.
        """

    def state(type_name: str) -> str:
        """
        The current state string of a data type (``Mailbox``, ``Email``,
        ``Thread``, …).
        """

    def changes(type_name: str, since_state: str, max_changes: int | None) -> ChangeBatch:
        """
        The changes to a type since a state, at most ``max_changes`` ids
        (``None``: no limit), merged per object (created then destroyed
        within the window disappears).

        :raises jmap_twisted.errors.CannotCalculateChanges: the state was
            never issued by this store or is older than its change-log
            retention.
        """

    def view_state(type_name: str, view: MailView) -> str:
        """
        A sharee's state of a data type: ``s<generation>.<seq>`` (for
        ``Mailbox``, ``s<generation>.<seq>.<subscriptions>``), where
        ``seq`` is the latest change-log entry concerning a mailbox of the
        view (listed ones for ``Mailbox``, readable ones for ``Email`` and
        ``Thread``; a change of a mailbox's sharing only when the view
        administers it).  It moves only when such a change commits, and
        never goes back within a generation.  Inside a write, the state
        the write will commit.
        """

    def view_changes(
        type_name: str, since_state: str, max_changes: int | None, view: MailView
    ) -> ChangeBatch:
        """
        As :meth:`changes`, for a sharee, from one of their states: an
        email moved into a mailbox they read is created for them, one
        moved out of the last they read destroyed; a thread is updated
        while they may read one of its emails, destroyed otherwise; a
        ``Mailbox`` state from before their subscriptions changed also
        reports every listed mailbox updated.

        :raises jmap_twisted.errors.CannotCalculateChanges: the state is
            not one the view's generation issued, or changes it would
            report were pruned.
        """

    def message(blob_id: str) -> bytes | None:
        """
        The octets of a message or other blob stored in this account.
        """

    def documents(type_name: str) -> dict[str, dict[str, Any]]:
        """
        Every stored JSON document of a type (``Identity``,
        ``VacationResponse``, ``EmailSubmission``, …) by id.
        """

    def quota() -> AccountQuota:
        """
        The account's quota: what its emails use (kept up to date by every
        write, never recomputed by scanning) and its limits.
        """


class IMailWriter(IMailReader):
    """
    A view of one account's mail inside an :meth:`IMailStore.write`
    transaction.  Everything done through it commits together, under one
    new modification sequence, with its change-log entries.
    """

    def create_mailbox(
        name: str, parent_id: str | None, role: str | None, sort_order: int, is_subscribed: bool
    ) -> MailboxRecord:
        """
        Create a mailbox (the caller has validated names, roles, parents).
        """

    def update_mailbox(mailbox_id: str, **fields: Any) -> MailboxRecord:
        """
        Change some of ``name``, ``parent_id``, ``role``, ``sort_order``,
        ``is_subscribed``.
        """

    def destroy_mailbox(mailbox_id: str) -> None:
        """
        Destroy an (empty, childless) mailbox.
        """

    def note_acl_change(mailbox_id: str) -> None:
        """
        Record that a mailbox's sharing (RFC 9670 ``shareWith``) changed:
        the mailbox is updated for the account's owner and delegates, and
        for those of its sharees who administer it.

        :raises KeyError: no such mailbox.
        """

    def add_email(
        raw: bytes, mailbox_ids: Collection[str], keywords: Collection[str], received_at: float
    ) -> EmailRecord:
        """
        Store a message in mailboxes, threading it with related ones.  Its
        size and one message are added to the account's quota usage in the
        same transaction; with the account's writers serialised, two
        concurrent writes cannot both slip under a limit.  When a limit is
        set, the ``Quota`` objects of RFC 9425 are recorded updated
        (``counts_only``: only ``used`` changed).

        :raises jmap_twisted.errors.OverQuota: the email would take the
            account past its storage or message limit; nothing was stored
            and the write may go on.
        """

    def update_email(
        email_id: str,
        mailbox_ids: Collection[str] | None = None,
        keywords: Collection[str] | None = None,
    ) -> EmailRecord:
        """
        Replace an email's mailboxes and/or keywords.
        """

    def destroy_email(email_id: str) -> None:
        """
        Remove an email from every mailbox, for good, giving its size and
        one message back to the account's quota.
        """

    def put_document(type_name: str, document_id: str, document: Mapping[str, Any]) -> None:
        """
        Create or replace a JSON document, recording it as created or
        updated in the type's change log.
        """

    def delete_document(type_name: str, document_id: str) -> None:
        """
        Delete a JSON document (it must exist), recording it as destroyed.
        """

    def set_quota(storage_limit: int | None, message_limit: int | None) -> AccountQuota:
        """
        Replace the account's quota limits (``None``: no limit); the
        emails already stored stay, even above a lowered limit.  A limit
        set where there was none records its ``Quota`` object created, a
        changed one updated, a removed one destroyed.

        :param storage_limit: the most octets the emails may use.
        :param message_limit: the most emails the account may hold.
        :return: the quota as it now is.
        :raises ValueError: a negative limit.
        """


class IMailStore(Interface):
    """
    Durable mail: mailboxes, emails, threads and the change log, per
    account.  Implementations: :class:`jmap_twisted.store.memory.mail.MemoryMailStore`,
    :class:`jmap_twisted.store.sqlite.mail.SQLiteMailStore`,
    :class:`jmap_twisted.store.postgres.mail.PostgresMailStore`.
    """

    def setup_account(account_id: str) -> Deferred[None]:
        """
        Make sure an account has its standard role mailboxes (inbox, drafts,
        sent, trash, junk, archive); idempotent.
        """

    def read(account_id: str, fn: Callable[[IMailReader], T]) -> Deferred[T]:
        """
        Run ``fn`` against a consistent snapshot of the account.
        """

    def write(
        account_id: str, fn: Callable[[IMailWriter], T], delivery: bool = False
    ) -> Deferred[T]:
        """
        Run ``fn`` in one transaction.  If ``fn`` raises, nothing it did is
        kept.  After the commit is durable, subscribers receive one
        :class:`~jmap_twisted.records.StoreCommit` (when anything changed),
        then the Deferred fires with ``fn``'s result.

        :param delivery: the operation delivers new mail.
        """

    def subscribe(listener: Callable[[StoreCommit], object]) -> Callable[[], None]:
        """
        Call ``listener`` with every commit from now on; return a function
        that unsubscribes.  A failing listener is logged and does not affect
        the commit or other listeners.
        """


class IChangeLogPruning(Interface):
    """
    Forgetting old change-log entries of a mail store, so the log does not
    grow for ever (the server prunes by its retention period, hourly).

    Implementations: every :class:`IMailStore` of jmap-twisted.
    """

    def prune_changes(before: float) -> Deferred[int]:
        """
        Delete, in every account, the change-log entries committed before
        ``before``, and any older entry of the same type.  An entry is one
        object's change within one write (the entries of a type are the
        ids ``Foo/changes`` reports).

        Afterwards ``Foo/changes`` from a state older than the newest entry
        deleted of type ``Foo`` answers ``cannotCalculateChanges`` (the
        client resynchronises); later states, including a type's current
        state, still answer, and so do the states of types none of whose
        entries were deleted.

        :param before: a POSIX time (seconds), as given by the store's clock.
        :return: fires with how many entries were deleted.
        """


class IMailboxCounters(Interface):
    """
    Repairing the mailbox counts a mail store keeps as counters, updated
    by every write (``jmap-admin recount``).

    Implementations: every :class:`IMailStore` of jmap-twisted.
    """

    def recount(account_id: str) -> Deferred[Recount]:
        """
        Recompute the account's mailbox counts from its emails, in one
        write transaction, and keep the right ones where they differ; a
        mailbox whose counts change is recorded as changed (its counts
        only), so clients fetch them again.

        :return: fires with what was wrong.
        """


class IMailDelivery(Interface):
    """
    Where SMTP and LMTP put accepted mail.
    """

    def resolve(address: str) -> Deferred[str | None]:
        """
        The account id that receives mail for a recipient address, or
        ``None`` when the address is not local.
        """

    def deliver(account_id: str, message: bytes) -> Deferred[EmailRecord | None]:
        """
        Store a message in the account's inbox as a delivery.  Fires once
        the message and its change-log entries are durable, with the
        stored email (for the delivery's log line), or ``None`` when the
        implementation does not say.

        :raises jmap_twisted.errors.OverQuota: (in the Deferred) the
            account's quota has no room for it; nothing was stored.
        """


class IDeliveryQuota(Interface):
    """
    A delivery that can tell, before a message arrives, whether an
    account has room for it (asked at ``RCPT``, so that a full mailbox is
    refused there for one recipient among several).
    """

    def has_room(account_id: str, size: int) -> Deferred[bool]:
        """
        Whether a message of ``size`` octets (``0`` when not announced)
        would fit in the account's quota now.  A later delivery can still
        find it full: :meth:`IMailDelivery.deliver` decides.
        """


class IRelay(Interface):
    """
    Where mail for recipients outside this server's domains goes: an
    outbound relay (:class:`jmap_twisted.mail.smarthost.Smarthost`).
    """

    def send(
        mail_from: str, rcpt_to: Sequence[str], message: bytes
    ) -> Deferred[dict[str, tuple[int, str]]]:
        """
        Relay one message with the envelope ``mail_from`` (``""`` for the
        null reverse-path) and ``rcpt_to``.  Fires with the relay's SMTP
        reply code and text for every recipient; an unreachable relay is a
        temporary (4xx) reply for each, not a failure.
        """


class ITicketStore(Interface):
    """
    The tickets of ``POST /jmap/ticket``, kept where every node of a
    cluster redeems them (see :class:`~jmap_twisted.records.TicketRecord`).

    Implementations: :class:`jmap_twisted.store.memory.tickets.MemoryTickets`,
    :class:`jmap_twisted.store.sql.tickets.SQLTickets` (SQLite and
    PostgreSQL).
    """

    def add_ticket(ticket: TicketRecord, per_user: int) -> Deferred[None]:
        """
        Store a new ticket, then drop the user's oldest tickets held by no
        stream beyond ``per_user``, and every ticket expired when it was
        issued.
        """

    def claim_ticket(claim: TicketClaim) -> Deferred[TicketRecord | None]:
        """
        Redeem a ticket atomically (two nodes never both win one): the
        ticket as it was before, or ``None`` when it is unknown, expired
        at ``claim.now``, or, when ``claim.bound``, asked for from another
        address than ``claim.client``.

        For a socket (``claim.stream`` false), a fresh ticket is consumed;
        a stream ticket opens no socket.  For a stream, a fresh ticket
        becomes a stream ticket held by ``claim.holder``; a stream ticket
        is taken over only when no stream holds it, its holder's lease has
        lapsed, or its holder's client has ``claim.client``'s address (a
        browser reconnecting before the server saw its old stream go).
        A claimed stream ticket takes ``claim.hold_until`` and
        ``claim.expires``.
        """

    def refresh_holds(
        holders: Sequence[str], hold_until: float, expires: float
    ) -> Deferred[frozenset[str]]:
        """
        Renew the leases of these holders (each holds at most one ticket)
        until ``hold_until``, and their tickets' expiry to ``expires``;
        the holders that still hold a ticket (the others were taken over).
        """

    def release_ticket(digest: str, holder: str, expires: float) -> Deferred[bool]:
        """
        The stream ``holder`` has ended: its ticket, if it still holds it,
        is held by no one and expires at ``expires``.  Whether it did.
        """

    def revoke_ticket(digest: str, user_id: str) -> Deferred[bool]:
        """
        Delete one of the user's tickets; whether it existed.
        """

    def remove_expired_tickets(now: float) -> Deferred[int]:
        """
        Delete the tickets expired at ``now`` that no live lease holds; how
        many.
        """


class IPushSubscriptions(Interface):
    """
    The push subscriptions of every user (RFC 8620 §7.2) and the server's
    VAPID key pair (RFC 8292), kept with the directory so that every node
    of a cluster sees the same.

    Implementations: :class:`jmap_twisted.store.memory.push.MemoryPushSubscriptions`,
    :class:`jmap_twisted.store.sql.push.SQLPushSubscriptions` (SQLite and
    PostgreSQL).
    """

    def add(record: PushSubscriptionRecord) -> Deferred[None]:
        """
        Store a new subscription (its id is unique, chosen by the caller).
        """

    def for_user(user_id: str) -> Deferred[list[PushSubscriptionRecord]]:
        """
        The user's subscriptions, oldest first.
        """

    def active(now: float) -> Deferred[list[PushSubscriptionRecord]]:
        """
        Every verified subscription that has not expired at ``now``, of all
        users (what push delivery follows).
        """

    def replace(record: PushSubscriptionRecord) -> Deferred[bool]:
        """
        Store a changed subscription over the one with its id and user;
        ``False`` when there is none.
        """

    def remove(subscription_id: str, user_id: str | None = None) -> Deferred[bool]:
        """
        Delete a subscription (only the user's when ``user_id`` is given);
        whether one was deleted.
        """

    def remove_expired(now: float) -> Deferred[int]:
        """
        Delete the subscriptions expired at ``now``; how many.
        """

    def version() -> Deferred[int]:
        """
        A number that grows with every change to any subscription (nodes
        compare it to know when to reload).
        """

    def vapid_key() -> Deferred[bytes | None]:
        """
        The server's VAPID private key (PKCS#8 PEM), or ``None`` before one
        is set.
        """

    def set_vapid_key(pem: bytes, only_if_unset: bool) -> Deferred[bytes]:
        """
        Store the VAPID private key; with ``only_if_unset``, keep the one
        another node stored first.  Returns the key now stored.
        """


class IPushSubscriptionEvents(Interface):
    """
    What ``PushSubscription/set`` tells push delivery (RFC 8620 §7.2.2).
    Both calls return at once: the work they start is the delivery's.
    """

    def created(record: PushSubscriptionRecord) -> None:
        """
        A subscription was created: POST its ``PushVerification`` to its URL.
        """

    def changed() -> None:
        """
        Subscriptions were created, updated or destroyed: reload those that
        deliveries follow.
        """


class IRecipientCache(Interface):
    """
    A delivery that remembers where addresses resolve.  The server tells
    it to forget whenever the directory's access version moves (a user or
    an account may be gone, or a new one may own an address).
    """

    def forget() -> None:
        """
        Drop every remembered resolution; later ones ask the directory.
        """


class IPushConnection(Interface):
    """
    One open push connection (a WebSocket, an EventSource stream), counted
    among its user's in the server's registry of push connections and told
    when access or credentials change.
    """

    user_id: str = Attribute("The id of the user whose credentials opened the connection.")
    subscription: Any = Attribute(
        "The connection's push subscription "
        "(:class:`~jmap_twisted.push.subscription.PushSubscription`) while it pushes, "
        "else ``None``."
    )

    def access_changed() -> Awaitable[None]:
        """
        Re-check the connection after who-sees-what or credentials changed:
        close it if its credentials no longer hold, otherwise follow (or
        end on) a change of the accounts its user may see.
        """

    def close(code: int, reason: str) -> None:
        """
        End the connection (``code`` is a WebSocket close code; a stream
        ignores it).
        """


class IRegistrationKey(Interface):
    """
    What a key listener registers under, e.g. an account id.  Its string
    form is stable and parseable, so it can be a routing key on a broker.
    """

    def as_string() -> str:
        """
        The key as a routing string, ``<kind>:<value>``.
        """


class IEvent(Interface):
    """
    Something that happened, carried by an :class:`IEventBus`.  Events are
    immutable and serialisable (see :mod:`jmap_twisted.bus.events`).
    """

    event_id = Attribute(":class:`str`, unique per event.")


class IEventListener(Interface):
    """
    Receives events from a bus.
    """

    execution_mode = Attribute(
        "``'synchronous'``: the bus's dispatch waits for :meth:`handle`; "
        "``'asynchronous'``: it does not (failures are still logged)."
    )

    def is_handling(event: IEvent) -> bool:
        """
        Whether the listener wants this event at all.
        """

    def handle(event: IEvent) -> Deferred[None]:
        """
        Act on an event.  A failure is logged; for a group listener it is
        retried, then dead-lettered.
        """


class IRegistration(Interface):
    """
    A listener's registration on a bus.
    """

    def cancel() -> Deferred[None]:
        """
        Stop delivering to the listener under this registration.
        Idempotent.
        """


class IEventBus(Interface):
    """
    Publish/subscribe of events, to groups (each registered group gets
    each event once, with retries and dead letters) and to keys (every
    listener registered under one of the event's keys gets it once, no
    retries).  Implementations: :class:`jmap_twisted.bus.memory.InMemoryEventBus`.
    """

    observer = Attribute(
        ":class:`IBusObserver` told what the bus does (for metrics), or ``None``; settable."
    )

    def register(
        listener: IEventListener, keys: Collection[IRegistrationKey]
    ) -> Deferred[IRegistration]:
        """
        Deliver events dispatched to any of ``keys`` to ``listener`` from
        now on (never earlier events).  Registering one listener twice
        under a key still delivers each event once.
        """

    def register_group(listener: IEventListener, group: str) -> Deferred[IRegistration]:
        """
        Make ``listener`` the handler of ``group``.

        :raises jmap_twisted.bus.events.GroupAlreadyRegistered: (in the
            Deferred) the group has a listener already.
        """

    def dispatch(event: IEvent, keys: Collection[IRegistrationKey]) -> Deferred[None]:
        """
        Deliver an event to every group and to the listeners of ``keys``.
        Fires once synchronous listeners have handled it (first attempt).
        """

    def redeliver(group: str, event: IEvent) -> Deferred[None]:
        """
        Deliver an event again to one group only (never to key
        listeners), with the usual retries.
        """

    def start() -> Deferred[None]:
        """
        Begin operating (connect, declare topology, …).
        """

    def stop() -> Deferred[None]:
        """
        Stop operating; pending retries are abandoned to dead letters.
        """


class IBusObserver(Interface):
    """
    What an event bus reports as it works, to whoever counts it (the
    server's metrics).  Each call is cheap and must not raise.
    """

    def dispatched() -> None:
        """
        One event was dispatched on this node.
        """

    def handled(kind: str, seconds: float) -> None:
        """
        One call of a listener's ``handle`` finished (or failed, or timed
        out) ``seconds`` after it began; ``kind`` is ``key`` or ``group``.
        The key listeners of one dispatch whose calls finish at once (push
        connections, thousands for one event) are reported together, as
        one call.
        """

    def retry_scheduled() -> None:
        """
        A failed group delivery was scheduled for another attempt.
        """

    def dead_lettered() -> None:
        """
        An event was given up on for one group and stored as a dead letter.
        """


class IEventDeadLetters(Interface):
    """
    Group events that failed every retry, kept for inspection and
    redelivery.  Implementations: :class:`jmap_twisted.bus.deadletters.MemoryDeadLetters`,
    :class:`jmap_twisted.store.sqlite.deadletters.SQLiteDeadLetters`,
    :class:`jmap_twisted.store.postgres.deadletters.PostgresDeadLetters`.
    """

    def store(group: str, event: IEvent) -> Deferred[str]:
        """
        Keep a failed event; return its insertion id.
        """

    def groups() -> Deferred[list[str]]:
        """
        The groups that have dead letters.
        """

    def ids(group: str) -> Deferred[list[str]]:
        """
        The insertion ids of a group's dead letters, oldest first.
        """

    def fetch(group: str, insertion_id: str) -> Deferred[IEvent | None]:
        """
        One dead letter, or ``None``.
        """

    def remove(group: str, insertion_id: str) -> Deferred[None]:
        """
        Forget one dead letter (idempotent).
        """

    def request_redelivery(group: str, insertion_id: str | None) -> Deferred[int]:
        """
        Mark one (or, with ``None``, every) dead letter of a group for
        redelivery by the running server; return how many were marked.
        """

    def requested() -> Deferred[list[tuple[str, str]]]:
        """
        The (group, insertion id) pairs marked for redelivery.
        """
