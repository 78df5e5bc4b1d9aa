"""
The ``jmap-admin`` command: manage users, bearer tokens, account
delegations, mailbox shares, quotas and dead letters; recount mailbox
counts; import users and
mail, export mail (:mod:`jmap_twisted.admin_import`); back up and restore
the SQLite store (:mod:`jmap_twisted.backup`).

A data directory without the server's database is refused unless
``--init`` is given, so that a mistyped ``--data`` does not silently get a
new, empty store.

It works on the database of a data directory directly, also while a server
runs on it: the server reads the directory on every request, so a new user,
password, revoked token, delegation or mailbox share takes effect at once
(a share also notifies the sharee, see :mod:`jmap_twisted.sharing`).  Dead letters
marked with ``dead-letters redeliver`` are redelivered by the running
server, which looks for them every few seconds.  Quota limits set with
``quota set`` hold for the next email stored, on every node.
``recount`` repairs, in one write transaction per account, mailbox counts
that disagree with the emails (they are counters, kept by every write).

Passwords are never taken from the command line (other users can read it):
they are asked twice on the terminal, or read from the first line of
standard input with ``--password-stdin``.  ``token issue`` prints the new
token, and only it, on standard output; it cannot be shown again.

Exit status: 0 on success, 1 when the operation failed (the reason is one
line on standard error), 2 for a usage error (also a ``--store`` whose
backend's extra is not installed).
"""

from __future__ import annotations

import argparse
import getpass
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from twisted.internet.task import react

from jmap_twisted import admin_import, backup, configfile, rights
from jmap_twisted.auth.passwords import PasswordHasher, new_token, token_hash
from jmap_twisted.errors import DatabaseError, NoSuchUser, UserExists
from jmap_twisted.extras import MissingExtra, require
from jmap_twisted.interfaces import IJMAPReactor, IMailboxCounters, IMailWriter
from jmap_twisted.records import Account, AccountQuota, MailboxCounts, MailboxRecord
from jmap_twisted.sharing import Sharing, SharingIncomplete, SharingRefused
from jmap_twisted.store.backends import (
    StoreConfigurationError,
    Stores,
    StoreSettings,
    open_stores,
    read_secret,
)
from jmap_twisted.store.sqlite.database import database_path

DEFAULT_DATA = "jmap-data"
"""
The data directory used without ``--data``: the server's default too.
"""


_Command = Callable[[Stores, argparse.Namespace, "str | None"], Awaitable[None]]


class AdminError(Exception):
    """
    An operation failed for a reason the user can act on; its message is
    shown as is.
    """


def _fail(message: str, status: int = 1) -> NoReturn:
    print(f"jmap-admin: {message}", file=sys.stderr)
    raise SystemExit(status)


def _username(value: str) -> str:
    """
    Validate a new username: HTTP Basic authentication cannot carry a ``:``
    in it, and blanks or control characters would only cause confusion.
    """
    if not value or ":" in value or any(c.isspace() or not c.isprintable() for c in value):
        raise argparse.ArgumentTypeError(
            f"invalid username {value!r}: it must be non-empty, without ':', blanks"
            " or control characters"
        )
    return value


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Commands: each runs with the database open.


async def _user_add(stores: Stores, args: argparse.Namespace, password_hash: str | None) -> None:
    user = await stores.directory.create_user(args.name, password_hash)
    print(f"created user {user.username} ({user.id})")


async def _user_list(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    for user in await stores.directory.list_users():
        print(f"{user.username}\t{user.id}")


async def _user_delete(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    if not await stores.directory.delete_user(args.name):
        raise NoSuchUser(args.name)
    print(f"deleted user {args.name}")


async def _user_passwd(stores: Stores, args: argparse.Namespace, password_hash: str | None) -> None:
    await stores.directory.set_password_hash(args.name, password_hash)
    if password_hash is None:
        print(f"password login disabled for {args.name}")
    else:
        print(f"password changed for {args.name}")


async def _token_issue(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    user = await stores.directory.get_user(args.name)
    if user is None:
        raise NoSuchUser(args.name)
    token = new_token()
    await stores.directory.add_token(user.id, token_hash(token), args.label)
    print(token)


async def _token_list(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    user = await stores.directory.get_user(args.name)
    if user is None:
        raise NoSuchUser(args.name)
    for token in await stores.directory.list_tokens(user.id):
        print(f"{token.id}\t{_timestamp(token.created)}\t{token.name}")


async def _token_revoke(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    if not await stores.directory.revoke_token(args.token_id):
        raise AdminError(f"no such token: {args.token_id}")
    print(f"revoked token {args.token_id}")


async def _delegate(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    try:
        await stores.directory.delegate(args.owner, args.delegate)
    except ValueError:
        raise AdminError(f"{args.owner} cannot delegate their account to themselves") from None
    print(f"delegated the account of {args.owner} to {args.delegate}")


async def _undelegate(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    if not await stores.directory.revoke_delegation(args.owner, args.delegate):
        raise AdminError(f"no such delegation: {args.owner} to {args.delegate}")
    print(f"revoked the delegation of the account of {args.owner} to {args.delegate}")


async def _delegations(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    for user in await stores.directory.delegations(args.owner):
        print(user.username)


async def _personal_account(stores: Stores, username: str) -> Account:
    user = await stores.directory.get_user(username)
    if user is None:
        raise NoSuchUser(username)
    for account in await stores.directory.accounts_for_user(user.id):
        if account.owner_id == user.id:
            return account
    raise AdminError(f"{username} has no account")


def _mailbox_paths(mailboxes: list[MailboxRecord]) -> dict[str, str]:
    """
    The ``/``-separated name path of each mailbox, by id.
    """
    by_id = {m.id: m for m in mailboxes}
    paths: dict[str, str] = {}

    def path(mailbox: MailboxRecord) -> str:
        if mailbox.id not in paths:
            parent = by_id.get(mailbox.parent_id or "")
            paths[mailbox.id] = mailbox.name if parent is None else f"{path(parent)}/{mailbox.name}"
        return paths[mailbox.id]

    for mailbox in mailboxes:
        path(mailbox)
    return paths


async def _mailbox(stores: Stores, owner: str, account: Account, name: str) -> tuple[str, str]:
    """
    The id and path of a mailbox named by its id or its name path.
    """
    paths = _mailbox_paths(await stores.mail.read(account.id, lambda r: r.mailboxes()))
    if name in paths:
        return name, paths[name]
    for mailbox_id, path in paths.items():
        if path == name:
            return mailbox_id, path
    raise AdminError(f"no such mailbox in the account of {owner}: {name}")


async def _set_share(stores: Stores, args: argparse.Namespace, letters: str) -> tuple[str, str]:
    """
    Give ``args.sharee`` ``letters`` on ``args.mailbox`` of ``args.owner``.

    :return: the mailbox's path and the sharee's letters before.
    """
    account = await _personal_account(stores, args.owner)
    await stores.mail.setup_account(account.id)
    mailbox_id, path = await _mailbox(stores, args.owner, account, args.mailbox)
    sharee = await stores.directory.get_user(args.sharee)
    if sharee is None:
        raise NoSuchUser(args.sharee)
    sharing = Sharing(stores.directory, stores.mail, args.clock)
    try:
        change = await sharing.set_rights(account, mailbox_id, sharee.id, letters, None)
    except SharingRefused as error:
        raise AdminError(str(error)) from None
    except SharingIncomplete as error:
        raise AdminError(
            f"the share of {path} changed, but recording or notifying it failed: {error}"
        ) from None
    return path, change.old


async def _share(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    try:
        letters = rights.parse(args.rights)
    except ValueError as error:
        raise AdminError(str(error)) from None
    if not letters:
        raise AdminError("no rights given (unshare stops sharing)")
    path, old = await _set_share(stores, args, letters)
    print(f"shared {path} of {args.owner} with {args.sharee}: {letters} (before: {old or 'none'})")


async def _unshare(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    path, old = await _set_share(stores, args, "")
    if not old:
        raise AdminError(f"{path} of {args.owner} is not shared with {args.sharee}")
    print(f"stopped sharing {path} of {args.owner} with {args.sharee} (had: {old})")


async def _shares(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    account = await _personal_account(stores, args.owner)
    paths = _mailbox_paths(await stores.mail.read(account.id, lambda r: r.mailboxes()))
    lines = []
    for share in await stores.directory.shares_of_account(account.id):
        sharee = await stores.directory.get_user_by_id(share.user_id)
        name = share.user_id if sharee is None else sharee.username
        path = paths.get(share.mailbox_id, "-")
        lines.append(f"{path}\t{share.mailbox_id}\t{name}\t{share.rights}")
    for line in sorted(lines):
        print(line)


async def _dead_letters_list(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    if args.dead_group is None:
        for group, count in await stores.dead_letters.group_counts():
            print(f"{group}\t{count}")
        return
    for letter in await stores.dead_letters.summaries(args.dead_group):
        account = "-" if letter.account_id is None else letter.account_id
        print(
            f"{letter.insertion_id}\t{_timestamp(letter.created)}\t{letter.event_type}\t{account}"
        )


async def _dead_letters_redeliver(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    marked = await stores.dead_letters.request_redelivery(args.dead_group, args.insertion_id)
    if not marked:
        if args.insertion_id is None:
            raise AdminError(f"no dead letters in group {args.dead_group}")
        raise AdminError(f"no such dead letter: {args.insertion_id} in group {args.dead_group}")
    print(f"marked {marked} dead letter(s) of {args.dead_group} for redelivery")


async def _vapid_show(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    from jmap_twisted.push.webpush.crypto import VapidKey

    pem = await stores.push_subscriptions.vapid_key()
    if pem is None:
        raise AdminError("no VAPID key yet: the server makes one when it first starts")
    print(VapidKey.from_pem(pem).application_server_key())


async def _vapid_rotate(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    from jmap_twisted.push.webpush.crypto import VapidKey

    key = VapidKey.generate()
    await stores.push_subscriptions.set_vapid_key(key.pem(), only_if_unset=False)
    # RFC 9749 §5: subscriptions made for the old key are destroyed; clients
    # see the new key in the session and subscribe again.
    destroyed = 0
    for user in await stores.directory.list_users():
        for record in await stores.push_subscriptions.for_user(user.id):
            destroyed += bool(await stores.push_subscriptions.remove(record.id))
    print(key.application_server_key())
    print(f"destroyed {destroyed} push subscription(s) made for the old key")


#: The multiples of ``--storage`` (binary, as mail servers' quotas count).
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _storage_size(value: str) -> int:
    """
    A storage limit: octets, or a number followed by K, M, G or T (powers
    of 1024).
    """
    text = value.strip().upper().removesuffix("B")
    unit = text[-1:] if text[-1:] in ("K", "M", "G", "T") else ""
    number = text.removesuffix(unit) if unit else text
    if not number.isdigit() or len(number) > 15:
        raise argparse.ArgumentTypeError(
            f"invalid size {value!r}: a number of octets, optionally followed by K, M, G or T"
        )
    return int(number) * _SIZE_UNITS[unit]


def _message_count(value: str) -> int:
    if not value.isdigit() or len(value) > 15:
        raise argparse.ArgumentTypeError(f"invalid number of messages {value!r}")
    return int(value)


async def _quota_account(stores: Stores, name: str) -> tuple[str, str]:
    """
    The username and personal account id named by a username or an
    account id.
    """
    user = await stores.directory.get_user(name)
    candidates = [user] if user is not None else await stores.directory.list_users()
    for candidate in candidates:
        for account in await stores.directory.accounts_for_user(candidate.id):
            if account.owner_id == candidate.id and (user is not None or account.id == name):
                return candidate.username, account.id
    raise AdminError(f"no such user or account: {name}")


def _limit_text(limit: int | None) -> str:
    return "-" if limit is None else str(limit)


def _print_quota(username: str, account_id: str, quota: AccountQuota) -> None:
    print(
        f"{username}\t{account_id}\t{quota.used_octets}\t{_limit_text(quota.storage_limit)}"
        f"\t{quota.used_messages}\t{_limit_text(quota.message_limit)}"
    )


async def _quota_set(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    if args.storage is None and args.messages is None:
        raise AdminError("give --storage, --messages or both")
    username, account_id = await _quota_account(stores, args.account)

    def change(writer: IMailWriter) -> AccountQuota:
        current = writer.quota()
        return writer.set_quota(
            current.storage_limit if args.storage is None else args.storage,
            current.message_limit if args.messages is None else args.messages,
        )

    _print_quota(username, account_id, await stores.mail.write(account_id, change))


async def _quota_clear(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    username, account_id = await _quota_account(stores, args.account)
    both = not (args.storage or args.messages)

    def change(writer: IMailWriter) -> AccountQuota:
        current = writer.quota()
        return writer.set_quota(
            None if both or args.storage else current.storage_limit,
            None if both or args.messages else current.message_limit,
        )

    _print_quota(username, account_id, await stores.mail.write(account_id, change))


async def _own_accounts(stores: Stores) -> list[tuple[str, str]]:
    """
    Every user's own account, as (username, account id).
    """
    accounts = []
    for user in await stores.directory.list_users():
        for account in await stores.directory.accounts_for_user(user.id):
            if account.owner_id == user.id:
                accounts.append((user.username, account.id))
    return accounts


async def _quota_show(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    if args.account is not None:
        accounts = [await _quota_account(stores, args.account)]
    else:
        accounts = await _own_accounts(stores)
    for username, account_id in accounts:
        quota = await stores.mail.read(account_id, lambda reader: reader.quota())
        _print_quota(username, account_id, quota)


def _counts_text(counts: MailboxCounts) -> str:
    return (
        f"{counts.total_emails}/{counts.unread_emails}"
        f"/{counts.total_threads}/{counts.unread_threads}"
    )


async def _recount(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    """
    Recount the mailbox counts of the named users' accounts (all when none
    is named); print each mailbox that was wrong, then one line per account.
    """
    if not IMailboxCounters.providedBy(stores.mail):
        raise AdminError("this store computes mailbox counts on every request")
    counters = IMailboxCounters(stores.mail)
    if args.accounts:
        accounts = [await _quota_account(stores, name) for name in args.accounts]
    else:
        accounts = await _own_accounts(stores)
    for username, account_id in accounts:
        result = await counters.recount(account_id)
        paths = _mailbox_paths(await stores.mail.read(account_id, lambda r: r.mailboxes()))
        for fixed in result.mailboxes:
            print(
                f"{username}\t{paths.get(fixed.mailbox_id, '?')}\t{fixed.mailbox_id}"
                f"\twas {_counts_text(fixed.kept)}\tnow {_counts_text(fixed.counted)}"
            )
        print(
            f"{username}\t{account_id}\t{len(result.mailboxes)} mailbox(es) fixed,"
            f" {result.threads} thread tally(ies) fixed"
        )


def build_parser() -> argparse.ArgumentParser:
    """
    The command line parser of ``jmap-admin``.  Each subcommand sets
    ``command`` (the coroutine function to run) and ``password_source`` (whether,
    and how, to ask for a password: ``None``, ``"ask"``, ``"stdin"`` or
    ``"none"``).
    """
    parser = argparse.ArgumentParser(
        prog="jmap-admin",
        description="Manage the users, bearer tokens, delegations, mailbox shares, quotas,"
        " dead letters and VAPID key of a JMAP server.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the server's configuration file (twistd jmap --config): its data, store and"
        " store-password-file say where the data is, unless given here",
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help=f"the server's data directory (default: {DEFAULT_DATA})",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        help="the server's shared postgresql://user@host:port/database, instead of --data"
        " (password from --store-password-file, $PGPASSWORD or ~/.pgpass)",
    )
    parser.add_argument(
        "--store-password-file",
        metavar="FILE",
        help="file whose first line is the database password",
    )
    parser.add_argument(
        "--init",
        action="store_true",
        help="create the store when the data directory holds none (without it, a data"
        " directory without server data is refused)",
    )
    parser.set_defaults(password_source=None, offline=None)
    groups = parser.add_subparsers(
        dest="group",
        required=True,
        metavar="{user,token,delegate,undelegate,delegations,share,unshare,shares,quota,"
        "recount,dead-letters,vapid,mail,backup,restore}",
    )

    user = groups.add_parser("user", help="manage users").add_subparsers(
        dest="action", required=True
    )
    add = user.add_parser("add", help="create a user and their personal account")
    add.add_argument("name", metavar="NAME", type=_username)
    _password_options(add)
    add.set_defaults(command=_user_add)
    user.add_parser("list", help="list users and their ids").set_defaults(command=_user_list)
    delete = user.add_parser("delete", help="delete a user, their accounts and tokens")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(command=_user_delete)
    passwd = user.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name", metavar="NAME")
    _password_options(passwd)
    passwd.set_defaults(command=_user_passwd)
    bulk = user.add_parser(
        "import",
        help="create the users of a CSV file of username,password rows (empty password:"
        " tokens only); existing users are skipped",
    )
    bulk.add_argument("file", metavar="FILE")
    bulk.set_defaults(command=admin_import.user_import_command, check_username=_username)

    token = groups.add_parser("token", help="manage bearer tokens").add_subparsers(
        dest="action", required=True
    )
    issue = token.add_parser("issue", help="issue a bearer token and print it, once")
    issue.add_argument("name", metavar="NAME")
    issue.add_argument("--name", dest="label", default="", help="a label for the token")
    issue.set_defaults(command=_token_issue)
    listing = token.add_parser("list", help="list a user's tokens (id, issued, label)")
    listing.add_argument("name", metavar="NAME")
    listing.set_defaults(command=_token_list)
    revoke = token.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("token_id", metavar="TOKEN_ID")
    revoke.set_defaults(command=_token_revoke)

    delegate = groups.add_parser(
        "delegate", help="let DELEGATE access the personal account of OWNER"
    )
    delegate.add_argument("owner", metavar="OWNER")
    delegate.add_argument("delegate", metavar="DELEGATE")
    delegate.set_defaults(command=_delegate)
    undelegate = groups.add_parser("undelegate", help="revoke a delegation at once")
    undelegate.add_argument("owner", metavar="OWNER")
    undelegate.add_argument("delegate", metavar="DELEGATE")
    undelegate.set_defaults(command=_undelegate)
    delegations = groups.add_parser(
        "delegations", help="list the users OWNER's account is delegated to"
    )
    delegations.add_argument("owner", metavar="OWNER")
    delegations.set_defaults(command=_delegations)

    share = groups.add_parser(
        "share",
        help="share a mailbox of OWNER with SHAREE (or change their rights on it); the sharee"
        " is notified",
    )
    share.add_argument("owner", metavar="OWNER")
    share.add_argument("mailbox", metavar="MAILBOX", help="a mailbox id or name path (A/B)")
    share.add_argument("sharee", metavar="SHAREE")
    share.add_argument(
        "rights",
        metavar="RIGHTS",
        help="RFC 4314 letters of lrswipkxtea, or "
        + ", ".join(f"{name} ({letters})" for name, letters in rights.NAMED_SETS.items()),
    )
    share.set_defaults(command=_share)
    unshare = groups.add_parser("unshare", help="stop sharing a mailbox of OWNER with SHAREE")
    unshare.add_argument("owner", metavar="OWNER")
    unshare.add_argument("mailbox", metavar="MAILBOX", help="a mailbox id or name path (A/B)")
    unshare.add_argument("sharee", metavar="SHAREE")
    unshare.set_defaults(command=_unshare)
    shares = groups.add_parser(
        "shares",
        help="list the shares of OWNER's mailboxes (mailbox path, mailbox id, sharee, rights)",
    )
    shares.add_argument("owner", metavar="OWNER")
    shares.set_defaults(command=_shares)

    quota = groups.add_parser(
        "quota",
        help="limit the storage and number of messages of accounts (RFC 9425 quotas)",
    ).add_subparsers(dest="action", required=True)
    quota_set = quota.add_parser(
        "set",
        help="set the limits of a user's account (mail past them is refused); print its quota",
    )
    quota_set.add_argument("account", metavar="ACCOUNT|USER")
    quota_set.add_argument(
        "--storage",
        type=_storage_size,
        metavar="N[K|M|G|T]",
        help="the most octets its emails may take (K, M, G, T: powers of 1024)",
    )
    quota_set.add_argument(
        "--messages", type=_message_count, metavar="N", help="the most emails it may hold"
    )
    quota_set.set_defaults(command=_quota_set)
    quota_clear = quota.add_parser(
        "clear", help="remove limits of a user's account (both unless one is named)"
    )
    quota_clear.add_argument("account", metavar="ACCOUNT|USER")
    quota_clear.add_argument("--storage", action="store_true", help="remove the storage limit")
    quota_clear.add_argument("--messages", action="store_true", help="remove the message limit")
    quota_clear.set_defaults(command=_quota_clear)
    quota_show = quota.add_parser(
        "show",
        help="print the usage and limits of one user's account, or of every user's"
        " (username, account id, octets used, storage limit, messages, message limit;"
        " - for no limit)",
    )
    quota_show.add_argument("account", metavar="ACCOUNT|USER", nargs="?")
    quota_show.set_defaults(command=_quota_show)

    recount = groups.add_parser(
        "recount",
        help="recompute the mailbox counts of users' accounts (every user's when none is"
        " named) and repair those that are wrong; print each repaired mailbox (username,"
        " mailbox path, mailbox id, and its emails/unread emails/threads/unread threads before"
        " and after), then a line per account",
    )
    recount.add_argument("accounts", metavar="ACCOUNT|USER", nargs="*")
    recount.set_defaults(command=_recount)

    dead = groups.add_parser(
        "dead-letters", help="inspect and redeliver events that failed every retry"
    ).add_subparsers(dest="action", required=True)
    dead_list = dead.add_parser(
        "list",
        help="list the groups with dead letters and their counts, or a group's letters"
        " (insertion id, stored, event type, account id)",
    )
    dead_list.add_argument("dead_group", metavar="GROUP", nargs="?")
    dead_list.set_defaults(command=_dead_letters_list)
    redeliver = dead.add_parser(
        "redeliver",
        help="mark a group's dead letters (or one) for redelivery by the running server",
    )
    redeliver.add_argument("dead_group", metavar="GROUP")
    redeliver.add_argument("insertion_id", metavar="INSERTION_ID", nargs="?")
    redeliver.set_defaults(command=_dead_letters_redeliver)

    vapid = groups.add_parser(
        "vapid", help="the server's VAPID key, which signs web push requests"
    ).add_subparsers(dest="action", required=True)
    vapid.add_parser(
        "show", help="print the public key (the session's applicationServerKey)"
    ).set_defaults(command=_vapid_show)
    vapid.add_parser(
        "rotate",
        help="replace the key pair and destroy every push subscription (clients resubscribe)",
    ).set_defaults(command=_vapid_rotate)
    _transfer_commands(groups)
    return parser


def _transfer_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """
    The ``mail``, ``backup`` and ``restore`` commands.
    """
    mail = groups.add_parser(
        "mail", help="import a user's mail from mbox or Maildir, or export it"
    ).add_subparsers(dest="action", required=True)
    mail_import = mail.add_parser(
        "import",
        help="import an mbox file or a Maildir directory (subfolders become mailboxes);"
        " messages already there are skipped, so an interrupted import can be run again",
    )
    mail_import.add_argument("name", metavar="USER")
    mail_import.add_argument("path", metavar="PATH")
    mail_import.add_argument(
        "--mailbox",
        metavar="PATH",
        help="the mailbox (name path A/B) for the mbox or the Maildir's own messages"
        " (default: the inbox)",
    )
    mail_import.set_defaults(command=admin_import.mail_import_command)
    mail_export = mail.add_parser(
        "export", help="write every mailbox of a user to a new Maildir or mbox files"
    )
    mail_export.add_argument("name", metavar="USER")
    mail_export.add_argument("dest", metavar="DEST")
    mail_export.add_argument(
        "--format",
        choices=("maildir", "mbox"),
        default="maildir",
        help="a Maildir at DEST (default), or one mbox file per mailbox under DEST",
    )
    mail_export.set_defaults(command=admin_import.mail_export_command)
    for command in (mail_import, mail_export):
        command.add_argument(
            "--progress",
            choices=("auto", "always", "never"),
            default="auto",
            help="the progress bar on standard error (auto: when it is a terminal)",
        )
    backup_command = groups.add_parser(
        "backup",
        help="copy the data directory's store into the empty directory DEST, also while"
        " the server runs (PostgreSQL: use pg_dump)",
    )
    backup_command.add_argument("dest", metavar="DEST")
    backup_command.set_defaults(offline=_backup)
    restore_command = groups.add_parser(
        "restore",
        help="copy a backup into the empty data directory given by --data (the server"
        " must not run on it)",
    )
    restore_command.add_argument("source", metavar="SRC")
    restore_command.set_defaults(offline=_restore)


def _backup(args: argparse.Namespace, settings: StoreSettings) -> str:
    if settings.url is not None:
        raise backup.BackupError("a PostgreSQL store is backed up with pg_dump (see the docs)")
    copied = backup.backup(settings.data_dir, Path(args.dest))
    return f"backed up {settings.data_dir} to {copied.path} ({copied.size} octets)"


def _restore(args: argparse.Namespace, settings: StoreSettings) -> str:
    if settings.url is not None:
        raise backup.BackupError("a PostgreSQL store is restored with pg_restore (see the docs)")
    copied = backup.restore(Path(args.source), settings.data_dir)
    return f"restored {args.source} into {settings.data_dir} ({copied.size} octets)"


def _require_server_data(settings: StoreSettings) -> None:
    """
    Exit unless the data directory of ``settings`` holds the server's
    database (a missing or mistyped ``--data`` would otherwise get a new,
    empty one); PostgreSQL databases are named explicitly and not checked.
    """
    if settings.url is not None:
        return
    path = Path(database_path(str(settings.data_dir)))
    try:
        version = backup.schema_version(path)
    except backup.BackupError as error:
        _fail(str(error))
    if not version:
        _fail(
            f"no server data in {settings.data_dir} ({path} "
            + ("does not exist" if version is None else "holds no server tables")
            + "): check --data, or give --init to create a new store there"
        )


def _password_options(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(password_source="ask")  # noqa: S106 (where to read it from)
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--password-stdin",
        dest="password_source",
        action="store_const",
        const="stdin",
        help="read the password from the first line of standard input",
    )
    source.add_argument(
        "--no-password",
        dest="password_source",
        action="store_const",
        const="none",
        help="no password: the user can log in with bearer tokens only",
    )


def read_password(source: str) -> str:
    """
    Read a new password: from the first line of standard input (without its
    line ending) when ``source`` is ``"stdin"``, else asked twice on the
    terminal.

    :raises AdminError: the two entries differ, or the password is empty.
    """
    if source == "stdin":
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        try:
            password = getpass.getpass("Password: ")
            if getpass.getpass("Repeat password: ") != password:
                raise AdminError("the passwords do not match")
        except EOFError:
            raise AdminError("no password given") from None
    if not password:
        raise AdminError("empty passwords are refused")
    return password


def _password_hash(source: str | None) -> str | None:
    if source is None or source == "none":
        return None
    password = read_password(source)
    try:
        return PasswordHasher().hash(password)
    except ValueError:
        raise AdminError("the password is not valid Unicode text") from None


def _store_location(args: argparse.Namespace) -> None:
    """
    Complete ``--data``, ``--store`` and ``--store-password-file`` from
    the ``--config`` file (the command line wins), so ``jmap-admin`` opens
    the store the server configured by the same file uses; exits (status
    2) on a file that cannot be used.
    """
    location: dict[str, str] = {}
    if args.config is not None:
        try:
            location = configfile.store_location(args.config)
        except configfile.ConfigFileError as error:
            _fail(f"--config: {error}", status=2)
    if args.data is None:
        args.data = location.get("data", DEFAULT_DATA)
    if args.store is None:
        args.store = location.get("store")
    if args.store_password_file is None:
        args.store_password_file = location.get("store-password-file")


def _store_settings(args: argparse.Namespace) -> StoreSettings:
    """
    Where the data is, from ``--data``, ``--store`` and
    ``--store-password-file``; exits on a setting that cannot be used.
    """
    try:
        password = read_secret(args.store_password_file) if args.store_password_file else None
        return StoreSettings.checked(Path(args.data), args.store, password, pool_size=2)
    except StoreConfigurationError as error:
        _fail(f"--store: {error}")
    except MissingExtra as error:
        _fail(f"--store: {error}", status=2)


def _database_errors(settings: StoreSettings) -> tuple[type[Exception], ...]:
    """
    The driver exceptions a database of ``settings`` raises.
    """
    if settings.url is None:
        return (sqlite3.Error,)
    return (sqlite3.Error, require("postgresql", "psycopg").Error)


async def _run(
    reactor: IJMAPReactor,
    args: argparse.Namespace,
    settings: StoreSettings,
    password_hash: str | None,
) -> None:
    database_errors = _database_errors(settings)
    opening_errors: tuple[type[Exception], ...] = (DatabaseError, OSError, *database_errors)
    opened = open_stores(settings, reactor)
    database = opened.database
    try:
        await database.start()
    except opening_errors as error:
        _fail(f"cannot open {settings.description}: {error}")
    # The time of what commands record (share notifications).
    args.clock = reactor
    try:
        command: _Command = args.command
        await command(opened, args, password_hash)
    except UserExists as error:
        _fail(f"user already exists: {error}")
    except NoSuchUser as error:
        _fail(f"no such user: {error}")
    except (AdminError, admin_import.TransferError) as error:
        _fail(str(error))
    except database_errors as error:
        _fail(f"database error: {error}")
    finally:
        await database.stop()


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """
    Run ``jmap-admin``; exits the process.

    The store settings are checked first, then passwords are read and
    hashed before the database is opened, so no transaction waits for a
    person typing and nobody types a password for a store that cannot be
    used.

    :param argv: the arguments, by default ``sys.argv[1:]``.
    """
    args = build_parser().parse_args(argv)
    _store_location(args)
    settings = _store_settings(args)
    if args.offline is not None:
        try:
            print(args.offline(args, settings))
        except backup.BackupError as error:
            _fail(str(error))
        raise SystemExit(0)
    if not args.init:
        _require_server_data(settings)
    try:
        password_hash = _password_hash(args.password_source)
    except AdminError as error:
        _fail(str(error))
    react(_run, (args, settings, password_hash))


if __name__ == "__main__":
    main()
