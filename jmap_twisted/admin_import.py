"""
Bulk work for ``jmap-admin``: users from a CSV file, mail from mbox files
and Maildir directories into an account, and an account's mail out to them.

Users (``user import FILE``)
    A CSV file (RFC 4180, UTF-8), one user a row: ``username,password``.
    An empty password creates a user who logs in with bearer tokens only.
    Blank rows, rows whose first field starts with ``#`` and a first row
    ``username,password`` are ignored; any other number of fields is an
    error.  Every row is checked before any user is created; users who
    exist already are skipped (their password is left as it is) and
    listed.  The file holds passwords in clear: keep it readable by the
    administrator only, and delete it afterwards.

Mail (``mail import USER PATH``)
    ``PATH`` is an mbox file or a Maildir directory.  An mbox goes into one
    mailbox (``--mailbox``, the inbox by default).  A Maildir's own
    messages go there too, and each Maildir++ subfolder ``.Sub.Folder``
    into the mailbox ``Sub/Folder``, made when missing (folder names are
    taken as they are: modified UTF-7 is not decoded).

    Keywords: Maildir flags ``S`` ``R`` ``F`` ``D`` become ``$seen``
    ``$answered`` ``$flagged`` ``$draft``; mbox ``Status: R`` is
    ``$seen`` and ``X-Status`` letters ``A`` ``F`` ``T`` are ``$answered``
    ``$flagged`` ``$draft``.  Messages marked deleted (Maildir ``T``,
    ``X-Status: D``) are awaiting expunge: RFC 8621 §4.1.1 keeps them out
    of JMAP, so they are not imported (the summary counts them).  The
    ``Status`` and ``X-Status`` headers are removed from the stored
    message, ``>From`` lines are unquoted (mboxrd) and lines end in CRLF.
    The time of receipt is the mbox ``From`` line's date or the Maildir
    file's modification time.

    Writes go through the mail store, a batch of messages per transaction,
    so the account's states and change log stay right and connected
    clients are told.  A message whose octets are already in its target
    mailbox is skipped: running the import again after an interruption
    imports only what is missing.  The account's quota stops the import,
    with what was imported so far kept.

Export (``mail export USER DEST``)
    ``--format maildir`` (the default) writes a Maildir at ``DEST``: the
    inbox as its own messages, every other mailbox as the subfolder of its
    path (``A/B`` → ``.A.B``), keywords as flags.  ``--format mbox``
    writes one mbox file per mailbox under the directory ``DEST``
    (``A/B`` → ``DEST/A/B.mbox``), keywords as ``Status``/``X-Status``
    headers, ``From`` lines quoted (mboxrd).  An email in several
    mailboxes is written to each.  Importing an export gives the same
    messages and keywords back.
"""

from __future__ import annotations

import argparse
import calendar
import csv
import mailbox
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from email.utils import parsedate_to_datetime
from functools import partial
from pathlib import Path
from typing import IO, Any

from attrs import define, field, frozen
from tqdm import tqdm  # type: ignore[import-untyped]

from jmap_twisted.auth.passwords import PasswordHasher
from jmap_twisted.errors import OverQuota
from jmap_twisted.interfaces import IMailReader, IMailWriter
from jmap_twisted.records import MailboxRecord
from jmap_twisted.store import ids
from jmap_twisted.store.backends import Stores

#: Messages stored per write transaction.
BATCH = 200

#: Maildir info flags and mbox ``X-Status`` letters, as keywords.
MAILDIR_FLAGS = {"S": "$seen", "R": "$answered", "F": "$flagged", "D": "$draft"}
X_STATUS_LETTERS = {"A": "$answered", "F": "$flagged", "T": "$draft"}

_STATUS_HEADER = re.compile(rb"^(?:X-)?Status:[^\n]*\n(?:[ \t][^\n]*\n)*", re.I | re.M)
_FROM_QUOTED = re.compile(rb"^>(>*From )", re.M)
_FROM_LINE = re.compile(rb"^(>*From )", re.M)
_BARE_LF = re.compile(rb"(?<!\r)\n")


class TransferError(Exception):
    """
    An import or export cannot go on; its message says why.
    """


# Users.


@frozen
class UserRow:
    """
    One user of a CSV file: where it is, its name and password.
    """

    line: int
    username: str
    password: str | None


def read_users(path: Path, check_username: Callable[[str], object]) -> list[UserRow]:
    """
    The users of a CSV file (see the module's description).

    :param check_username: raises ``ValueError`` or
        :class:`argparse.ArgumentTypeError` for an invalid username.
    :raises TransferError: unreadable file or invalid row (with its line).
    """
    rows: list[UserRow] = []
    try:
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.reader(file)
            for fields in reader:
                line = reader.line_num
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if fields[0].startswith("#"):
                    continue
                if line == 1 and [f.strip().lower() for f in fields] == ["username", "password"]:
                    continue
                if len(fields) != 2:
                    raise TransferError(
                        f"{path}:{line}: expected 2 fields (username,password), got {len(fields)}"
                    )
                name, password = fields
                try:
                    check_username(name)
                except (ValueError, argparse.ArgumentTypeError) as error:
                    raise TransferError(f"{path}:{line}: {error}") from None
                rows.append(UserRow(line, name, password or None))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise TransferError(f"cannot read {path}: {error}") from None
    seen: dict[str, int] = {}
    for row in rows:
        if row.username in seen:
            raise TransferError(
                f"{path}:{row.line}: {row.username} already on line {seen[row.username]}"
            )
        seen[row.username] = row.line
    return rows


async def import_users(stores: Stores, rows: Sequence[UserRow], out: IO[str]) -> tuple[int, int]:
    """
    Create the users of ``rows`` who do not exist yet, printing each one
    created or skipped and a summary.

    :return: how many were created and how many skipped.
    """
    hasher = PasswordHasher()
    created = skipped = 0
    for row in rows:
        if await stores.directory.get_user(row.username) is not None:
            skipped += 1
            print(f"exists, skipped: {row.username}", file=out)
            continue
        password_hash = None if row.password is None else hasher.hash(row.password)
        user = await stores.directory.create_user(row.username, password_hash)
        created += 1
        print(f"created user {user.username} ({user.id})", file=out)
    print(f"{created} user(s) created, {skipped} already existed", file=out)
    return created, skipped


# Reading mail sources.


@frozen
class SourceMessage:
    """
    One message of an mbox or Maildir, ready to store.

    :ivar folder: the mailbox path segments below the import's root
        (empty: the target mailbox itself).
    """

    folder: tuple[str, ...]
    raw: bytes
    keywords: frozenset[str]
    received_at: float
    deleted: bool


def _crlf(raw: bytes) -> bytes:
    return _BARE_LF.sub(b"\r\n", raw)


def _header_end(raw: bytes) -> int:
    """
    Where the header section of an LF-terminated message ends (after its
    blank line), or its length when it has no body.
    """
    if raw.startswith(b"\n"):
        return 1
    end = raw.find(b"\n\n")
    return len(raw) if end < 0 else end + 2


def _from_line_time(line: bytes) -> float | None:
    """
    The date of an mbox ``From`` line (``From sender Tue Dec  7 14:30:00 2026``), as UTC.
    """
    text = line.decode("ascii", "replace").strip()
    parts = text.split()
    if len(parts) < 7:
        return None
    try:
        parsed = time.strptime(" ".join(parts[2:7]), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return None
    return float(calendar.timegm(parsed))


def _date_header_time(headers: bytes) -> float | None:
    match = re.search(rb"^Date:[ \t]*([^\n]*(?:\n[ \t][^\n]*)*)", headers, re.I | re.M)
    if match is None:
        return None
    try:
        return parsedate_to_datetime(match.group(1).decode("ascii", "replace")).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def mbox_entry(first_line: bytes, message: bytes) -> SourceMessage:
    """
    An mbox message (without its ``From`` line) as it is stored: status
    headers turned into keywords and removed, ``>From`` unquoted, CRLF.
    """
    message = message.replace(b"\r\n", b"\n")
    end = _header_end(message)
    headers, body = message[:end], message[end:]
    keywords: set[str] = set()
    deleted = False
    for match in _STATUS_HEADER.finditer(headers):
        name, _, value = match.group(0).partition(b":")
        letters = value.decode("ascii", "replace").strip()
        if name.lower() == b"status":
            if "R" in letters:
                keywords.add("$seen")
        else:
            keywords.update(X_STATUS_LETTERS[c] for c in letters if c in X_STATUS_LETTERS)
            deleted = deleted or "D" in letters
    headers = _STATUS_HEADER.sub(b"", headers)
    received = _from_line_time(first_line) or _date_header_time(headers) or time.time()
    raw = _crlf(headers + _FROM_QUOTED.sub(rb"\1", body))
    return SourceMessage((), raw, frozenset(keywords), received, deleted)


def read_mbox(path: Path) -> tuple[int, Iterator[SourceMessage]]:
    """
    The number of messages of an mbox file and an iterator reading them
    one at a time.
    """
    with path.open("rb") as file:
        start = file.read(5)
    if start and start != b"From ":
        raise TransferError(f"{path} is not an mbox file (it does not start with a From line)")
    box = mailbox.mbox(str(path), create=False)
    keys = box.keys()

    def messages() -> Iterator[SourceMessage]:
        try:
            for key in keys:
                with box.get_file(key, from_=True) as file:
                    first = file.readline()
                    rest = file.read()
                yield mbox_entry(first, rest)
        finally:
            box.close()

    return len(keys), messages()


def _maildir_info(name: str) -> str:
    """
    The flags of a Maildir file name (``unique:2,FS``; ``!`` for ``:`` too).
    """
    for separator in (":2,", "!2,"):
        if separator in name:
            return name.rsplit(separator, 1)[1]
    return ""


def _maildir_files(root: Path) -> Iterator[tuple[Path, str]]:
    for sub in ("new", "cur"):
        directory = root / sub
        if not directory.is_dir():
            continue
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if entry.is_file() and not entry.name.startswith("."):
                yield Path(entry.path), "" if sub == "new" else _maildir_info(entry.name)


def maildir_folders(root: Path) -> list[tuple[tuple[str, ...], Path]]:
    """
    The folders of a Maildir: its root (path ``()``) and its Maildir++
    subfolders ``.A.B`` (path ``("A", "B")``).
    """
    folders: list[tuple[tuple[str, ...], Path]] = [((), root)]
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        name = entry.name
        if name.startswith(".") and name not in (".", "..") and entry.is_dir():
            if (Path(entry.path) / "cur").is_dir():
                path = tuple(part for part in name[1:].split(".") if part)
                folders.append((path, Path(entry.path)))
    return folders


def read_maildir(root: Path) -> tuple[int, Iterator[SourceMessage]]:
    """
    The number of messages of a Maildir (subfolders included) and an
    iterator reading them one at a time.
    """
    if not (root / "cur").is_dir() or not (root / "new").is_dir():
        raise TransferError(f"{root} is not a Maildir (it has no cur and new directories)")
    folders = maildir_folders(root)
    total = sum(1 for _, where in folders for _ in _maildir_files(where))

    def messages() -> Iterator[SourceMessage]:
        for folder, where in folders:
            for file, info in _maildir_files(where):
                try:
                    raw = file.read_bytes()
                    received = file.stat().st_mtime
                except FileNotFoundError:
                    continue  # moved by a mail client meanwhile
                keywords = frozenset(MAILDIR_FLAGS[c] for c in info if c in MAILDIR_FLAGS)
                yield SourceMessage(folder, _crlf(raw), keywords, received, "T" in info)

    return total, messages()


def read_source(path: Path) -> tuple[int, Iterator[SourceMessage]]:
    """
    The messages of an mbox file or a Maildir directory.

    :raises TransferError: neither.
    """
    if path.is_dir():
        return read_maildir(path)
    if path.is_file():
        return read_mbox(path)
    raise TransferError(f"no such mbox file or Maildir directory: {path}")


# Importing.


@define
class ImportSummary:
    """
    What an import did.
    """

    imported: int = 0
    present: int = 0
    deleted: int = 0
    mailboxes: set[str] = field(factory=set)
    seconds: float = 0.0
    over_quota: OverQuota | None = None

    @property
    def rate(self) -> float:
        """
        Messages read per second (imported or skipped).
        """
        done = self.imported + self.present + self.deleted
        return done / self.seconds if self.seconds > 0 else 0.0


def _paths(mailboxes: Iterable[MailboxRecord]) -> dict[tuple[str, ...], MailboxRecord]:
    by_id = {m.id: m for m in mailboxes}
    paths: dict[tuple[str, ...], MailboxRecord] = {}
    for mailbox_record in by_id.values():
        parts: list[str] = []
        current: MailboxRecord | None = mailbox_record
        while current is not None:
            parts.insert(0, current.name)
            current = by_id.get(current.parent_id or "")
        paths[tuple(parts)] = mailbox_record
    return paths


def _blob_ids_in(reader: IMailReader, mailbox_id: str) -> set[str]:
    email_ids, _ = reader.query_emails({"inMailbox": mailbox_id}, [], False)
    return {e.blob_id for e in reader.emails(email_ids).values()}


def progress_bar(total: int, progress: bool | None, stream: IO[str] | None, unit: str) -> Any:
    """
    A tqdm bar on ``stream`` (standard error by default), shown when
    ``progress`` says so, or, when it is ``None``, when the stream is a
    terminal.
    """
    stream = stream if stream is not None else sys.stderr
    show = stream.isatty() if progress is None else progress
    return tqdm(total=total, file=stream, disable=not show, unit=unit, dynamic_ncols=True)


async def import_mail(
    stores: Stores,
    account_id: str,
    source: Path,
    target: Sequence[str],
    progress: bool | None = None,
    progress_stream: IO[str] | None = None,
) -> ImportSummary:
    """
    Import the messages of an mbox file or Maildir into an account.

    :param target: the name path of the mailbox for the source's own
        messages; empty for the account's inbox.
    :raises TransferError: the source cannot be read, or the target mailbox
        does not exist.
    """
    started = time.monotonic()
    total, messages = read_source(source)
    folders = [()] if source.is_file() else [path for path, _ in maildir_folders(source)]
    await stores.mail.setup_account(account_id)

    def resolve(writer: IMailWriter) -> dict[tuple[str, ...], str]:
        paths = _paths(writer.mailboxes())
        if target:
            base = paths.get(tuple(target))
            if base is None:
                raise TransferError(f"no such mailbox: {'/'.join(target)}")
        else:
            base = next(m for m in paths.values() if m.role == "inbox")
        found: dict[tuple[str, ...], str] = {(): base.id}
        for folder in folders:
            if not folder:
                continue
            parent: str | None = None
            for depth in range(1, len(folder) + 1):
                record = paths.get(folder[:depth])
                if record is None:
                    record = writer.create_mailbox(folder[depth - 1], parent, None, 10, True)
                    paths[folder[:depth]] = record
                parent = record.id
            found[folder] = paths[folder].id
        return found

    targets = await stores.mail.write(account_id, resolve)
    names = {r.id: "/".join(p) for p, r in _paths(await _mailboxes(stores, account_id)).items()}
    present: dict[str, set[str]] = {}
    summary = ImportSummary()
    batch: list[tuple[str, bytes, frozenset[str], float]] = []

    async def flush() -> None:
        def store(writer: IMailWriter) -> tuple[int, OverQuota | None]:
            for done, (mailbox_id, raw, keywords, received) in enumerate(batch):
                try:
                    writer.add_email(raw, [mailbox_id], keywords, received)
                except OverQuota as error:
                    return done, error
            return len(batch), None

        stored, error = await stores.mail.write(account_id, store)
        summary.imported += stored
        summary.over_quota = error
        batch.clear()

    with progress_bar(total, progress, progress_stream, "msg") as bar:
        for message in messages:
            bar.update(1)
            if message.deleted:
                summary.deleted += 1
                continue
            mailbox_id = targets[message.folder]
            if mailbox_id not in present:
                present[mailbox_id] = await stores.mail.read(
                    account_id, partial(_blob_ids_in, mailbox_id=mailbox_id)
                )
            blob_id = ids.blob_id(message.raw)
            if blob_id in present[mailbox_id]:
                summary.present += 1
                continue
            present[mailbox_id].add(blob_id)
            summary.mailboxes.add(names.get(mailbox_id, mailbox_id))
            batch.append((mailbox_id, message.raw, message.keywords, message.received_at))
            if len(batch) >= BATCH:
                await flush()
                if summary.over_quota is not None:
                    break
        if batch and summary.over_quota is None:
            await flush()
    summary.seconds = time.monotonic() - started
    return summary


async def _mailboxes(stores: Stores, account_id: str) -> list[MailboxRecord]:
    return await stores.mail.read(account_id, lambda reader: reader.mailboxes())


# Exporting.


def _keywords_of_flags(keywords: Iterable[str]) -> str:
    letters = {v: k for k, v in MAILDIR_FLAGS.items()}
    return "".join(sorted(letters[k] for k in keywords if k in letters))


def _mbox_record(raw: bytes, keywords: frozenset[str], received_at: float) -> bytes:
    message = raw.replace(b"\r\n", b"\n")
    end = _header_end(message)
    headers, body = message[:end], message[end:]
    status = b"Status: RO\n" if "$seen" in keywords else b"Status: O\n"
    x_letters = "".join(k for k, v in X_STATUS_LETTERS.items() if v in keywords)
    x_status = f"X-Status: {x_letters}\n".encode() if x_letters else b""
    if headers == b"\n":
        headers = status + x_status + b"\n"
    else:
        if not headers.endswith(b"\n"):
            headers += b"\n"
        if not headers.endswith(b"\n\n"):
            headers += b"\n"  # a message without a body: end its header section
        headers = headers[:-1] + status + x_status + b"\n"
    stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(received_at))
    body = _FROM_LINE.sub(rb">\1", body)
    if not body.endswith(b"\n"):
        body += b"\n"
    return b"From MAILER-DAEMON " + stamp.encode() + b"\n" + headers + body + b"\n"


@define
class _Destination:
    """
    Where the messages of one mailbox are written.
    """

    fmt: str
    root: Path
    path: tuple[str, ...]
    is_inbox: bool
    file: IO[bytes] | None = None

    def open(self) -> None:
        if self.fmt == "mbox":
            target = self.root.joinpath(*self.path[:-1], self.path[-1] + ".mbox")
            target.parent.mkdir(parents=True, exist_ok=True)
            self.file = target.open("xb")
        else:
            where = self.folder()
            for sub in ("tmp", "new", "cur"):
                (where / sub).mkdir(parents=True, exist_ok=True)

    def folder(self) -> Path:
        if self.is_inbox:
            return self.root
        return self.root / ("." + ".".join(self.path))

    def write(self, email_id: str, raw: bytes, keywords: frozenset[str], received: float) -> None:
        if self.file is not None:
            self.file.write(_mbox_record(raw, keywords, received))
            return
        where = self.folder()
        name = f"{int(received)}.{email_id}.jmap:2,{_keywords_of_flags(keywords)}"
        temporary = where / "tmp" / name
        temporary.write_bytes(raw)
        os.utime(temporary, (received, received))
        os.replace(temporary, where / "cur" / name)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


async def export_mail(
    stores: Stores,
    account_id: str,
    dest: Path,
    fmt: str,
    progress: bool | None = None,
    progress_stream: IO[str] | None = None,
) -> tuple[int, int]:
    """
    Write every mailbox of an account to a Maildir or mbox files at
    ``dest``, which must not exist yet or be an empty directory.

    :return: how many messages and mailboxes were written.
    """
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise TransferError(f"{dest} exists and is not an empty directory")
    dest.mkdir(parents=True, exist_ok=True)
    mailboxes = _paths(await _mailboxes(stores, account_id))
    sort = [{"property": "receivedAt", "isAscending": True}]
    listed: list[tuple[tuple[str, ...], MailboxRecord, list[str]]] = []
    for path, record in sorted(mailboxes.items()):

        def query(reader: IMailReader, m: str = record.id) -> list[str]:
            return reader.query_emails({"inMailbox": m}, sort, False)[0]

        listed.append((path, record, await stores.mail.read(account_id, query)))
    written = 0
    with progress_bar(sum(len(i) for _, _, i in listed), progress, progress_stream, "msg") as bar:
        for path, record, email_ids in listed:
            destination = _Destination(fmt, dest, path, record.role == "inbox")
            destination.open()
            try:
                for start in range(0, len(email_ids), BATCH):
                    chunk = email_ids[start : start + BATCH]

                    def fetch(
                        reader: IMailReader, chunk: list[str] = chunk
                    ) -> list[tuple[str, bytes, frozenset[str], float]]:
                        found = []
                        emails = reader.emails(chunk)
                        for email in (emails[i] for i in chunk if i in emails):
                            raw = reader.message(email.blob_id)
                            if raw is not None:
                                found.append((email.id, raw, email.keywords, email.received_at))
                        return found

                    for email_id, raw, keywords, received in await stores.mail.read(
                        account_id, fetch
                    ):
                        destination.write(email_id, raw, keywords, received)
                        written += 1
                    bar.update(len(chunk))
            finally:
                destination.close()
    return written, len(listed)


# The jmap-admin commands.


async def _account_of(stores: Stores, username: str) -> str:
    user = await stores.directory.get_user(username)
    if user is None:
        raise TransferError(f"no such user: {username}")
    for account in await stores.directory.accounts_for_user(user.id):
        if account.owner_id == user.id:
            return account.id
    raise TransferError(f"{username} has no account")


def _progress_choice(args: argparse.Namespace) -> bool | None:
    return {"auto": None, "always": True, "never": False}[args.progress]


async def user_import_command(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    """
    ``jmap-admin user import FILE``.
    """
    rows = read_users(Path(args.file), args.check_username)
    await import_users(stores, rows, sys.stdout)


async def mail_import_command(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    """
    ``jmap-admin mail import USER PATH``: prints a summary; stops with an
    error after storing what fitted when the account's quota is reached.
    """
    account_id = await _account_of(stores, args.name)
    target = [part for part in (args.mailbox or "").split("/") if part]
    summary = await import_mail(stores, account_id, Path(args.path), target, _progress_choice(args))
    where = ", ".join(sorted(summary.mailboxes)) or "no mailbox"
    print(
        f"imported {summary.imported} message(s) into {where} of {args.name};"
        f" {summary.present} already there, {summary.deleted} marked deleted not imported"
        f" ({summary.rate:.0f} messages/s)"
    )
    if summary.over_quota is not None:
        raise TransferError(
            f"import stopped: the account of {args.name} is {summary.over_quota}"
            " (raise it with jmap-admin quota set, then run the import again)"
        )


async def mail_export_command(stores: Stores, args: argparse.Namespace, _: str | None) -> None:
    """
    ``jmap-admin mail export USER DEST``.
    """
    account_id = await _account_of(stores, args.name)
    written, mailboxes = await export_mail(
        stores, account_id, Path(args.dest), args.format, _progress_choice(args)
    )
    print(f"exported {written} message(s) of {mailboxes} mailbox(es) of {args.name} to {args.dest}")
