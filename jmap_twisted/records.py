"""
Immutable values exchanged through the interfaces in
:mod:`jmap_twisted.interfaces`.
"""

from __future__ import annotations

from attrs import frozen


@frozen(cache_hash=True)
class User:
    """
    A person who can log in.

    :ivar id: opaque, stable identifier (never reused).
    :ivar username: the login name, unique, compared case-sensitively.
    """

    id: str
    username: str


@frozen(cache_hash=True)
class SharedView:
    """
    What one user (the sharee) may see of an account they neither own nor
    were delegated: the rights the owner gave them on some of its
    mailboxes (RFC 4314, RFC 9670).

    :ivar generation: bumped by every change of the sharee's rights in the
        account, never reused (a re-grant after a revocation gets a new
        one); the sharee's states of the account carry it.
    :ivar subscriptions: bumped whenever the sharee subscribes to or
        unsubscribes from one of the shared mailboxes.
    :ivar rights: ``(mailbox id, letters)`` for every mailbox shared with
        the sharee, ordered by mailbox id; the letters are RFC 4314 rights
        in canonical order (see :mod:`jmap_twisted.rights`).
    """

    generation: int
    subscriptions: int
    rights: tuple[tuple[str, str], ...]


@frozen(cache_hash=True)
class Account:
    """
    A JMAP account (RFC 8620 §1.6.2): a collection of data a user may access.

    :ivar id: the JMAP ``accountId``.
    :ivar name: user-friendly name, by default the owner's username.
    :ivar owner_id: the :class:`User` id owning the account.
    :ivar shared: ``None`` when the user it was listed for has the whole
        account (as its owner or a delegate); otherwise what was shared
        with them.
    """

    id: str
    name: str
    owner_id: str
    shared: SharedView | None = None


@frozen(cache_hash=True)
class MailView:
    """
    What a sharee sees of an account's mail, as the mail store needs it
    to compute their states (see :func:`jmap_twisted.rights.mail_view`).

    :ivar generation: the :attr:`SharedView.generation` the view belongs
        to; a state of another generation cannot be calculated from.
    :ivar subscriptions: the :attr:`SharedView.subscriptions` counter, part
        of the ``Mailbox`` state.
    :ivar listed: the mailboxes they may see (right ``l``).
    :ivar readable: the mailboxes whose emails they may read (``l`` and
        ``r``).
    :ivar admin: the mailboxes they administer (``a``), whose sharing
        changes they see.
    """

    generation: int
    subscriptions: int
    listed: frozenset[str]
    readable: frozenset[str]
    admin: frozenset[str]


@frozen
class MailboxShare:
    """
    One mailbox shared with one user (RFC 4314 rights, RFC 9670).

    :ivar account_id: the account holding the mailbox.
    :ivar mailbox_id: the shared mailbox.
    :ivar user_id: the :class:`User` id of the sharee.
    :ivar rights: the sharee's RFC 4314 letters, never empty, in canonical
        order (see :mod:`jmap_twisted.rights`).
    :ivar subscribed: the sharee's own ``isSubscribed`` for the mailbox.
    """

    account_id: str
    mailbox_id: str
    user_id: str
    rights: str
    subscribed: bool


@frozen
class TokenInfo:
    """
    What is known about an issued bearer token (never the token itself).

    :ivar id: identifier used to list and revoke the token.
    :ivar user_id: the user the token authenticates.
    :ivar name: free-form label given when issuing it.
    :ivar created: POSIX timestamp of issue.
    """

    id: str
    user_id: str
    name: str
    created: float


@frozen
class BlobInfo:
    """
    Metadata of a blob stored for an account (RFC 8620 §6).

    :ivar account_id: the account the blob is visible to.
    :ivar blob_id: the JMAP ``blobId``.
    :ivar size: size in octets.
    :ivar type: media type given at upload.
    """

    account_id: str
    blob_id: str
    size: int
    type: str


@frozen
class MailboxRecord:
    """
    A stored mailbox (RFC 8621 §2), without its counts.
    """

    id: str
    name: str
    parent_id: str | None
    role: str | None
    sort_order: int
    is_subscribed: bool


@frozen
class MailboxCounts:
    """
    The four counts of a mailbox (RFC 8621 §2).
    """

    total_emails: int = 0
    unread_emails: int = 0
    total_threads: int = 0
    unread_threads: int = 0


@frozen
class MailboxRecount:
    """
    A mailbox whose kept counts were wrong, found by a recount.

    :ivar mailbox_id: the mailbox.
    :ivar kept: the counts the store held.
    :ivar counted: the counts recomputed from its emails, now kept.
    """

    mailbox_id: str
    kept: MailboxCounts
    counted: MailboxCounts


@frozen
class Recount:
    """
    What recounting an account's mailbox counts repaired.

    :ivar mailboxes: the mailboxes whose counts were wrong.
    :ivar threads: how many threads' tallies (the per-thread counters the
        counts are kept from) were wrong.
    """

    mailboxes: tuple[MailboxRecount, ...] = ()
    threads: int = 0


@frozen
class EmailSummary:
    """
    What is derived from a message once, when it is stored, for threading,
    querying and sorting without reparsing it.

    :ivar message_ids: its ``Message-ID`` values (without angle brackets).
    :ivar in_reply_to: its ``In-Reply-To`` ids.
    :ivar references: its ``References`` ids.
    :ivar subject: the decoded subject, or ``""``.
    :ivar base_subject: the subject without reply/forward prefixes, folded,
        for threading and subject sorting.
    :ivar from_text: decoded ``From`` (names and addresses), for filters.
    :ivar to_text: decoded ``To``.
    :ivar cc_text: decoded ``Cc``.
    :ivar bcc_text: decoded ``Bcc``.
    :ivar from_sort: name (else address) of the first ``From`` address.
    :ivar to_sort: name (else address) of the first ``To`` address.
    :ivar sent_at: POSIX time of the ``Date`` header, or ``None``.
    :ivar preview: the first characters of the plain text.
    :ivar has_attachment: RFC 8621's ``hasAttachment``.
    :ivar body_text: the plain text of the bodies and attachment names, for
        full-text search.
    """

    message_ids: tuple[str, ...] = ()
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    subject: str = ""
    base_subject: str = ""
    from_text: str = ""
    to_text: str = ""
    cc_text: str = ""
    bcc_text: str = ""
    from_sort: str = ""
    to_sort: str = ""
    sent_at: float | None = None
    preview: str = ""
    has_attachment: bool = False
    body_text: str = ""


@frozen
class EmailRecord:
    """
    A stored email's metadata (RFC 8621 §4.1.1) and summary.

    :ivar received_at: POSIX time.
    """

    id: str
    blob_id: str
    thread_id: str
    mailbox_ids: frozenset[str]
    keywords: frozenset[str]
    size: int
    received_at: float
    summary: EmailSummary


@frozen
class ChangeBatch:
    """
    What changed for one type since a state (RFC 8620 §5.2).

    :ivar counts_only: every update in the batch changed only mailbox
        counts (meaningful for ``Mailbox``).
    """

    old_state: str
    new_state: str
    has_more_changes: bool
    created: tuple[str, ...]
    updated: tuple[str, ...]
    destroyed: tuple[str, ...]
    counts_only: bool = False


@frozen
class AccountQuota:
    """
    An account's mail quota (RFC 9425): what its emails use and its
    limits.  Every email counts in full, with its size in octets, even
    when it shares its octets with another email.

    :ivar used_octets: the sum of the sizes of the account's emails.
    :ivar used_messages: how many emails the account holds.
    :ivar storage_limit: the most octets its emails may use, or ``None``
        for no limit.
    :ivar message_limit: the most emails it may hold, or ``None`` for no
        limit.
    """

    used_octets: int = 0
    used_messages: int = 0
    storage_limit: int | None = None
    message_limit: int | None = None


@frozen
class MailboxEvent:
    """
    One thing that happened in a committed store operation.

    :ivar kind: one of ``mailbox_added``, ``mailbox_updated``,
        ``mailbox_deleted``, ``added``, ``flags_updated``, ``moved``,
        ``expunged``.
    :ivar mailbox_ids: the mailboxes concerned.
    :ivar email_ids: the emails concerned (empty for mailbox events).
    """

    kind: str
    mailbox_ids: frozenset[str]
    email_ids: tuple[str, ...] = ()


@frozen
class StoreCommit:
    """
    A committed store operation, published after it is durable.

    :ivar account_id: the account changed.
    :ivar modseq: the account's modification sequence the operation got.
    :ivar events: what happened, in order.
    :ivar states: the new state of every type the operation changed.
    :ivar delivery: the operation is a delivery of new mail (not a draft,
        an import or a copy), for ``EmailDelivery`` push.
    :ivar touched: ``(type, mailbox id, seq, audience)`` for every
        mailbox the operation's change-log entries concern, with the
        latest ``seq`` per type, mailbox and audience: what moves the
        states of sharees' views (see :class:`MailView` and
        :mod:`jmap_twisted.store.changelog`), sorted.
    """

    account_id: str
    modseq: int
    events: tuple[MailboxEvent, ...]
    states: dict[str, str]
    delivery: bool = False
    touched: tuple[tuple[str, str, int, int], ...] = ()


@frozen
class PushSubscriptionRecord:
    """
    A push subscription (RFC 8620 §7.2): where StateChanges for a user are
    POSTed when the client cannot hold a connection.

    :ivar id: the server-assigned id.
    :ivar user_id: the user whose credentials created it; only they see it.
    :ivar device_client_id: the client's id for the device and client.
    :ivar url: the push endpoint, ``https`` only.
    :ivar p256dh: the user agent's P-256 public key (65 octets,
        uncompressed), or ``None`` when pushes go unencrypted.
    :ivar auth: the user agent's 16-octet authentication secret, with
        ``p256dh``.
    :ivar verification_code: the code POSTed to the URL on creation.
    :ivar verified: the client has set the matching ``verificationCode``;
        nothing but the verification is pushed before.
    :ivar expires: when it stops (epoch seconds), or ``None`` for the
        server's longest.
    :ivar types: the type names to push, or ``None`` for all.
    :ivar created: when it was created (epoch seconds).
    """

    id: str
    user_id: str
    device_client_id: str
    url: str
    p256dh: bytes | None
    auth: bytes | None
    verification_code: str
    verified: bool
    expires: float | None
    types: tuple[str, ...] | None
    created: float


@frozen
class TicketRecord:
    """
    A ticket from ``POST /jmap/ticket``, as the shared store keeps it: by
    the SHA-256 of its value, never the value itself.

    A fresh ticket is single-use.  Redeemed by an EventSource it becomes a
    *stream ticket*: the stream holds it while open (a lease its node
    renews), and once the stream ends the browser may redeem it again to
    reconnect, until ``expires``.

    :ivar digest: hex SHA-256 of the value.
    :ivar user_id: the user it was issued to.
    :ivar expires: when it stops being redeemable (epoch seconds).
    :ivar client: the address that asked for it, or ``None``.
    :ivar origin: what the asking credentials rest on (see
        :func:`jmap_twisted.http.auth.credential_origin`), or ``None``.
    :ivar issued: when it was issued (epoch seconds).
    :ivar stream: redeemed by an EventSource: it opens nothing else now.
    :ivar holder: the stream holding it now, or ``None``.
    :ivar held_until: when the holder's lease lapses unless renewed.
    :ivar holder_client: the address of the holding stream's client.
    """

    digest: str
    user_id: str
    expires: float
    client: str | None
    origin: tuple[str, ...] | None
    issued: float
    stream: bool = False
    holder: str | None = None
    held_until: float = 0.0
    holder_client: str | None = None


@frozen
class TicketClaim:
    """
    One attempt to redeem a ticket (see
    :meth:`jmap_twisted.interfaces.ITicketStore.claim_ticket`).

    :ivar digest: hex SHA-256 of the presented value.
    :ivar now: the time of the attempt (epoch seconds).
    :ivar stream: redeemed for an EventSource stream (else for a socket).
    :ivar client: the presenting client's address, or ``None``.
    :ivar bound: the ticket is redeemable only from the address that asked
        for it (when that address is known).
    :ivar holder: names the stream that will hold the ticket.
    :ivar hold_until: when the new hold's lease lapses.
    :ivar expires: the stream ticket's new expiry.
    """

    digest: str
    now: float
    stream: bool
    client: str | None
    bound: bool
    holder: str = ""
    hold_until: float = 0.0
    expires: float = 0.0
