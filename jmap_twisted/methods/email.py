"""
``Email/get`` and ``Email/changes`` (RFC 8621 §4.2, §4.3), and the JSON
form of an email.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from threading import local
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
#: Properties answered from the stored record without parsing the message.
_FROM_RECORD = frozenset({*METADATA, "hasAttachment", "preview"})


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
    ``Email/get``; messages are immutable).

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

    def get(self, blob_id: str, raw: bytes) -> ParsedMessage:
        entries: OrderedDict[str, tuple[ParsedMessage, int]] | None = getattr(
            self._local, "entries", None
        )
        if entries is None:
            entries = self._local.entries = OrderedDict()
            self._local.held = 0
        found = entries.get(blob_id)
        if found is not None:
            entries.move_to_end(blob_id)
            return found[0]
        parsed = parse_message(raw)
        if len(raw) > self._octets // 4:
            return parsed
        entries[blob_id] = (parsed, len(raw))
        self._local.held += len(raw)
        while len(entries) > self._size or self._local.held > self._octets:
            _, (_, held) = entries.popitem(last=False)
            self._local.held -= held
        return parsed


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


def metadata_json(record: EmailRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "blobId": record.blob_id,
        "threadId": record.thread_id,
        "mailboxIds": dict.fromkeys(sorted(record.mailbox_ids), True),
        "keywords": dict.fromkeys(sorted(record.keywords), True),
        "size": record.size,
        "receivedAt": utc_date(record.received_at),
        "hasAttachment": record.summary.has_attachment,
        "preview": record.summary.preview,
    }


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


def message_json(
    parsed: ParsedMessage,
    message_blob_id: str,
    properties: Sequence[str],
    options: BodyOptions,
) -> dict[str, Any]:
    """
    The header and body properties of an email, from its parsed message.
    """

    def blob_for(part_id: str) -> str:
        return part_blob_id(message_blob_id, part_id)

    result: dict[str, Any] = {}
    body_props = options.body_properties
    for prop in properties:
        if prop == "headers":
            result[prop] = parsed.header_objects()
        elif prop == "messageId":
            result[prop] = parsed.message_id
        elif prop == "inReplyTo":
            result[prop] = parsed.in_reply_to
        elif prop == "references":
            result[prop] = parsed.references
        elif prop == "sender":
            result[prop] = parsed.sender
        elif prop == "from":
            result[prop] = parsed.from_
        elif prop == "to":
            result[prop] = parsed.to
        elif prop == "cc":
            result[prop] = parsed.cc
        elif prop == "bcc":
            result[prop] = parsed.bcc
        elif prop == "replyTo":
            result[prop] = parsed.reply_to
        elif prop == "subject":
            result[prop] = parsed.subject
        elif prop == "sentAt":
            result[prop] = parsed.sent_at
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
        elif prop.startswith("header:"):
            header = parse_header_property(prop)
            assert header is not None
            result[prop] = header_value(parsed.headers, header)
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
        cache = self.parsed

        def read(reader: IMailReader) -> dict[str, Any]:
            if ids is None:
                found_ids, _ = reader.query_emails(
                    None, [], False, 0, context.limits.max_objects_in_get
                )
            else:
                found_ids = ids
            records = reader.emails(found_ids)
            listed = []
            for email_id in found_ids:
                record = records.get(email_id)
                if record is None:
                    continue
                base = metadata_json(record)
                item = {"id": record.id}
                needs_message = [p for p in properties if p not in _FROM_RECORD]
                for prop in properties:
                    if prop in _FROM_RECORD:
                        item[prop] = base[prop]
                if needs_message:
                    raw = reader.message(record.blob_id) or b""
                    parsed = cache.get(record.blob_id, raw)
                    item.update(message_json(parsed, record.blob_id, needs_message, options))
                listed.append(item)
            return {
                "accountId": account.id,
                "state": reader.state("Email"),
                "list": listed,
                "notFound": [] if ids is None else not_found(ids, records),
            }

        return await self.read(account, read)

    async def changes(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        response, _ = await self.changes_of(context, arguments, "Email")
        return response
