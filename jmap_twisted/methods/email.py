"""
``Email/get`` and ``Email/changes`` (RFC 8621 §4.2, §4.3), and the JSON
form of an email.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from operator import attrgetter
from threading import Lock, local
from typing import Any

from jmap_twisted.core.registry import CallContext, Registry
from jmap_twisted.errors import InvalidArguments
from jmap_twisted.interfaces import IMailReader
from jmap_twisted.methods.mailcontext import MAIL, MailMethods
from jmap_twisted.methods.standard import (
    boolean,
    check_known,
    get_ids,
    not_found,
    unsigned,
    utc_date,
)
from jmap_twisted.mime.headers import header_value, parse_header_property
from jmap_twisted.mime.parse import ParsedMessage, parse_message
from jmap_twisted.records import EmailRecord

METADATA = ("id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt")
CONVENIENCE = (
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
)
BODY = (
    "bodyStructure",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
    "hasAttachment",
    "preview",
)
PROPERTIES = (*METADATA, "headers", *CONVENIENCE, *BODY)
DEFAULT_PROPERTIES = tuple(p for p in PROPERTIES if p not in ("headers", "bodyStructure"))
BODY_PROPERTIES = (
    "partId",
    "blobId",
    "size",
    "headers",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
    "subParts",
)
DEFAULT_BODY_PROPERTIES = (
    "partId",
    "blobId",
    "size",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
)


def part_blob_id(message_blob_id: str, part_id: str) -> str:
    """
    The blobId of one part of a stored message.
    """
    return f"{message_blob_id}_{part_id}"


def split_part_blob_id(blob_id: str) -> tuple[str, str] | None:
    """
    The message blobId and part id of a part's blobId, or ``None``.
    """
    message_blob, sep, part_id = blob_id.partition("_")
    return (message_blob, part_id) if sep and part_id else None


class ParseCache:
    """
    Recently parsed messages by blob id (parsing is the expensive part of
    ``Email/get``; messages are immutable), with the header-derived
    property values already computed from each.

    A parsed message computes its parts lazily and is not safe to share
    between threads, so each thread (the store's readers and writer) keeps
    its own cache, bounded by count and by the octets of the messages it
    holds; a message larger than a quarter of that bound is parsed but
    not kept.

    :param size: messages kept per thread.
    :param octets: octets of message kept per thread.
    """

    def __init__(self, size: int = 128, octets: int = 32 * 1024 * 1024) -> None:
        self._size = size
        self._octets = octets
        self._local = local()

    def _entries(self) -> OrderedDict[str, _Parsed]:
        entries: OrderedDict[str, _Parsed] | None = getattr(self._local, "entries", None)
        if entries is None:
            entries = self._local.entries = OrderedDict()
            self._local.held = 0
        return entries

    def cached(self, blob_id: str) -> _Parsed | None:
        """
        The message parsed before in this thread, if it is still kept (then
        its octets need not be read again).
        """
        entries = self._entries()
        found = entries.get(blob_id)
        if found is not None:
            entries.move_to_end(blob_id)
        return found

    def parsed(self, blob_id: str, raw: bytes) -> _Parsed:
        """
        The message of ``raw`` parsed, kept if it is small enough.
        """
        found = self.cached(blob_id)
        if found is not None:
            return found
        entry = _Parsed(parse_message(raw))
        if len(raw) > self._octets // 4:
            return entry
        entries = self._entries()
        entries[blob_id] = entry
        entry.octets = len(raw)
        self._local.held += len(raw)
        while len(entries) > self._size or self._local.held > self._octets:
            _, dropped = entries.popitem(last=False)
            self._local.held -= dropped.octets
        return entry

    def get(self, blob_id: str, raw: bytes) -> ParsedMessage:
        """
        The message of ``raw`` parsed (see :meth:`parsed`).
        """
        return self.parsed(blob_id, raw).message


class _Parsed:
    """
    One message of a :class:`ParseCache`: parsed, and the values of the
    properties computed from its header section alone (they depend on
    nothing else, so a later ``Email/get`` of the same message reuses
    them).
    """

    __slots__ = ("message", "octets", "values")

    def __init__(self, message: ParsedMessage) -> None:
        self.message = message
        self.octets = 0
        self.values: dict[str, Any] = {}


class RenderedEmails:
    """
    ``Email/get`` items already rendered, by account, as of one Email state
    of the account: a client showing a mailbox asks for the same list
    properties of the same emails again and again (after each push, from
    each of its devices), and as long as the account's Email state has not
    moved (RFC 8620 §5.1: it moves with every change to any of its
    emails) those items are still right, without reading the emails'
    records nor parsing their messages again.

    Only the items of whole accounts are kept (a sharee's view depends on
    their rights too), and only for properties read from the stored record
    and from the header section (body properties depend on more
    arguments).  Items are shared between responses: nothing may change
    them.  The reader threads share this cache, under a lock.

    :param accounts: accounts kept (the least recently used is dropped).
    :param items: items kept per account (none are added beyond).
    """

    def __init__(self, accounts: int = 64, items: int = 512) -> None:
        self._accounts = accounts
        self._items = items
        self._lock = Lock()
        self._by_account: OrderedDict[str, tuple[str, dict[Any, dict[str, Any]]]] = OrderedDict()

    def at(self, account_id: str, state: str) -> dict[Any, dict[str, Any]]:
        """
        The items of the account as of ``state``, by email id and
        properties (emptied when the state moved on).
        """
        with self._lock:
            found = self._by_account.get(account_id)
            if found is not None and found[0] == state:
                self._by_account.move_to_end(account_id)
                return found[1]
            items: dict[Any, dict[str, Any]] = {}
            self._by_account[account_id] = (state, items)
            self._by_account.move_to_end(account_id)
            while len(self._by_account) > self._accounts:
                self._by_account.popitem(last=False)
            return items

    def keep(self, items: dict[Any, dict[str, Any]], key: Any, item: dict[str, Any]) -> None:
        """
        Keep a rendered item among ``items`` (from :meth:`at`) if there is
        room.
        """
        if len(items) < self._items:
            items[key] = item


def check_properties(
    requested: Any, known: Sequence[str], default: Sequence[str], name: str
) -> list[str]:
    """
    A property list that may also name ``header:…`` forms.
    """
    if requested is None:
        return list(default)
    if not isinstance(requested, list) or not all(isinstance(p, str) for p in requested):
        raise InvalidArguments(f"'{name}' must be an array of property names or null.")
    bad = []
    for prop in requested:
        if prop in known:
            continue
        try:
            if parse_header_property(prop) is None:
                bad.append(prop)
        except ValueError:
            bad.append(prop)
    if bad:
        raise InvalidArguments(f"Unknown or invalid {name}: " + ", ".join(bad) + ".")
    return list(dict.fromkeys(requested))


#: How each property answered from the stored record is computed.
_FROM_RECORD: dict[str, Callable[[EmailRecord], Any]] = {
    "id": attrgetter("id"),
    "blobId": attrgetter("blob_id"),
    "threadId": attrgetter("thread_id"),
    "mailboxIds": lambda record: dict.fromkeys(sorted(record.mailbox_ids), True),
    "keywords": lambda record: dict.fromkeys(sorted(record.keywords), True),
    "size": attrgetter("size"),
    "receivedAt": lambda record: utc_date(record.received_at),
    "hasAttachment": lambda record: record.summary.has_attachment,
    "preview": lambda record: record.summary.preview,
}


def metadata_json(record: EmailRecord) -> dict[str, Any]:
    """
    The properties of an email answered from its stored record.
    """
    return {prop: value(record) for prop, value in _FROM_RECORD.items()}


class BodyOptions:
    """
    The body-related arguments of ``Email/get`` (and ``Email/parse``).
    """

    def __init__(self, arguments: dict[str, Any]) -> None:
        self.body_properties = check_properties(
            arguments.get("bodyProperties"),
            BODY_PROPERTIES,
            DEFAULT_BODY_PROPERTIES,
            "bodyProperties",
        )
        self.fetch_text = boolean(arguments, "fetchTextBodyValues", False)
        self.fetch_html = boolean(arguments, "fetchHTMLBodyValues", False)
        self.fetch_all = boolean(arguments, "fetchAllBodyValues", False)
        self.max_bytes = unsigned(arguments, "maxBodyValueBytes", 0) or 0


#: How each property computed from the header section alone is read from
#: a parsed message (``header:…`` forms aside).
_FROM_HEADERS: dict[str, Callable[[ParsedMessage], Any]] = {
    "headers": ParsedMessage.header_objects,
    "messageId": attrgetter("message_id"),
    "inReplyTo": attrgetter("in_reply_to"),
    "references": attrgetter("references"),
    "sender": attrgetter("sender"),
    "from": attrgetter("from_"),
    "to": attrgetter("to"),
    "cc": attrgetter("cc"),
    "bcc": attrgetter("bcc"),
    "replyTo": attrgetter("reply_to"),
    "subject": attrgetter("subject"),
    "sentAt": attrgetter("sent_at"),
}


def message_json(
    parsed: ParsedMessage,
    message_blob_id: str,
    properties: Sequence[str],
    options: BodyOptions,
    values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """
    The header and body properties of an email, from its parsed message.

    :param values: the values of header properties computed from this
        message before, by property; the ones computed now are added.
        They are shared between responses: nothing may change them.
    """

    def blob_for(part_id: str) -> str:
        return part_blob_id(message_blob_id, part_id)

    result: dict[str, Any] = {}
    body_props = options.body_properties
    for prop in properties:
        from_headers = _FROM_HEADERS.get(prop)
        if from_headers is not None or prop.startswith("header:"):
            if values is not None and prop in values:
                result[prop] = values[prop]
                continue
            if from_headers is not None:
                value = from_headers(parsed)
            else:
                header = parse_header_property(prop)
                assert header is not None
                value = header_value(parsed.headers, header)
            if values is not None:
                values[prop] = value
            result[prop] = value
        elif prop == "bodyStructure":
            result[prop] = parsed.body_structure(body_props, blob_id_for_part=blob_for)
        elif prop == "textBody":
            result[prop] = parsed.text_body(body_props, blob_id_for_part=blob_for)
        elif prop == "htmlBody":
            result[prop] = parsed.html_body(body_props, blob_id_for_part=blob_for)
        elif prop == "attachments":
            result[prop] = parsed.attachments(body_props, blob_id_for_part=blob_for)
        elif prop == "hasAttachment":
            result[prop] = parsed.has_attachment
        elif prop == "preview":
            result[prop] = parsed.preview
        elif prop == "bodyValues":
            result[prop] = body_values(parsed, options)
    return result


def body_values(parsed: ParsedMessage, options: BodyOptions) -> dict[str, Any]:
    """
    The ``bodyValues`` asked for by the fetch arguments.
    """
    wanted: list[str] = []
    if options.fetch_all:
        wanted = [
            p["partId"]
            for p in _leaves(
                parsed.body_structure(["partId", "type"], blob_id_for_part=lambda p: p)
            )
            if str(p.get("type", "")).startswith("text/")
        ]
    else:
        if options.fetch_text:
            wanted += [
                p["partId"] for p in parsed.text_body(["partId"], blob_id_for_part=lambda p: p)
            ]
        if options.fetch_html:
            wanted += [
                p["partId"] for p in parsed.html_body(["partId"], blob_id_for_part=lambda p: p)
            ]
    values = {}
    for part_id in dict.fromkeys(wanted):
        if part_id is not None:
            try:
                values[part_id] = parsed.body_value(part_id, options.max_bytes)
            except KeyError:
                continue
    return values


def _leaves(part: dict[str, Any]) -> list[dict[str, Any]]:
    if part.get("subParts"):
        return [leaf for sub in part["subParts"] for leaf in _leaves(sub)]
    return [part]


class EmailMethods(MailMethods):
    """
    ``Email/get`` and ``Email/changes``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parsed = ParseCache()
        self.rendered = RenderedEmails()

    def install(self, registry: Registry) -> None:
        registry.add_method("Email/get", MAIL, self.get)
        registry.add_method("Email/changes", MAIL, self.changes)

    async def get(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments)
        check_known(
            arguments,
            {
                "accountId",
                "ids",
                "properties",
                "bodyProperties",
                "fetchTextBodyValues",
                "fetchHTMLBodyValues",
                "fetchAllBodyValues",
                "maxBodyValueBytes",
            },
        )
        ids = get_ids(context, arguments)
        properties = check_properties(
            arguments.get("properties"), PROPERTIES, DEFAULT_PROPERTIES, "properties"
        )
        options = BodyOptions(arguments)
        from_record = [(p, _FROM_RECORD[p]) for p in properties if p in _FROM_RECORD]
        needs_message = [p for p in properties if p not in _FROM_RECORD]
        rendered = self.rendered
        # Items of a whole account with list properties only may be kept.
        keep = account.shared is None and all(
            p in _FROM_HEADERS or p.startswith("header:") for p in needs_message
        )
        shape = tuple(properties)

        def read(reader: IMailReader) -> dict[str, Any]:
            if ids is None:
                found_ids, _ = reader.query_emails(
                    None, [], False, 0, context.limits.max_objects_in_get
                )
            else:
                found_ids = ids
            state = reader.state("Email")
            kept = rendered.at(account.id, state) if keep else {}
            wanted = [i for i in found_ids if (i, shape) not in kept]
            records = reader.emails(wanted) if wanted else {}
            listed = []
            found: set[str] = set()
            for email_id in found_ids:
                item = kept.get((email_id, shape))
                if item is None:
                    record = records.get(email_id)
                    if record is None:
                        continue
                    item = self._item(reader, record, from_record, needs_message, options)
                    if keep:
                        rendered.keep(kept, (email_id, shape), item)
                found.add(email_id)
                listed.append(item)
            return {
                "accountId": account.id,
                "state": state,
                "list": listed,
                "notFound": [] if ids is None else not_found(ids, found),
            }

        return await self.read(account, read)

    def _item(
        self,
        reader: IMailReader,
        record: EmailRecord,
        from_record: Sequence[tuple[str, Callable[[EmailRecord], Any]]],
        needs_message: Sequence[str],
        options: BodyOptions,
    ) -> dict[str, Any]:
        """
        One email's item of an ``Email/get`` response (in a store thread).
        """
        item = {"id": record.id}
        for prop, value in from_record:
            item[prop] = value(record)
        if needs_message:
            cache = self.parsed
            entry = cache.cached(record.blob_id)
            if entry is None:
                # Read the octets only for a message not parsed before
                # (it is immutable).
                raw = reader.message(record.blob_id) or b""
                entry = cache.parsed(record.blob_id, raw)
            item.update(
                message_json(entry.message, record.blob_id, needs_message, options, entry.values)
            )
        return item

    async def changes(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        response, _ = await self.changes_of(context, arguments, "Email")
        return response
