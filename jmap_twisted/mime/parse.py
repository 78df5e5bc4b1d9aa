"""
From the raw octets of an RFC 5322 message to the JMAP Email representation
(RFC 8621 §4.1): header fields, convenience properties, the EmailBodyPart tree,
``textBody``/``htmlBody``/``attachments``, body values, preview and search text.

Parsing is best effort and total: any octets give a :class:`ParsedMessage`, and
no method raises on malformed content (only on bad arguments).  The MIME
structure is read by a linear scanner over one shared buffer — parts are offsets
into it, so nothing is copied until a part is decoded, one part at a time.  The
stdlib ``email.feedparser`` is not used because it recurses once per nesting level
and re-checks every line against every enclosing boundary.

Limits: multipart nesting deeper than :data:`MAX_DEPTH` makes the innermost
multipart an opaque ``application/octet-stream`` leaf; parts beyond
:data:`MAX_PARTS` are left out of the structure.  A multipart entity without a
usable boundary (no ``boundary`` parameter, or no delimiter line in its body) is
invalid (RFC 2045 §5.2) and is served as a ``text/plain`` leaf, so its content
stays reachable.

Part ids follow IMAP section numbers with ``-`` in place of ``.``: the children
of the top-level multipart are ``1``, ``2``…, the children of part ``2`` are
``2-1``, ``2-2``…; a message that is not multipart has the single part ``1``.
Attached messages (``message/rfc822``) are leaves, never descended into.
"""

from __future__ import annotations

import binascii
import html
import re
from collections.abc import Callable, Sequence
from typing import Any, Final
from urllib.parse import unquote

from jmap_twisted.mime.headers import (
    HeaderProperty,
    as_message_ids,
    decode_base64,
    decode_encoded_words,
    decode_text,
    header_value,
    parse_header_property,
    parse_header_section,
    split_parameters,
    strip_comments,
    unfold,
)

__all__ = [
    "BODY_STRUCTURE_PROPERTIES",
    "DEFAULT_BODY_PROPERTIES",
    "MAX_DEPTH",
    "MAX_PARTS",
    "ParsedMessage",
    "html_to_text",
    "parse_message",
]

#: Deepest multipart nesting that is parsed; deeper multiparts are opaque leaves.
MAX_DEPTH: Final = 64
#: Most body parts (multipart or not) in the structure of one message.
MAX_PARTS: Final = 10_000
#: Most characters of body text indexed for searching per message.
SEARCH_TEXT_LIMIT: Final = 1024 * 1024
#: The default ``bodyProperties`` of RFC 8621 §4.2.
DEFAULT_BODY_PROPERTIES: Final = (
    *("partId", "blobId", "size", "name", "type"),
    *("charset", "disposition", "cid", "language", "location"),
)
#: The default properties of :meth:`ParsedMessage.body_structure`: with ``subParts``.
BODY_STRUCTURE_PROPERTIES: Final = (*DEFAULT_BODY_PROPERTIES, "subParts")
_PART_ATTRIBUTES: Final = frozenset(
    {"name", "type", "charset", "disposition", "cid", "language", "location"}
)
_BODY_PROPERTIES: Final = frozenset({*BODY_STRUCTURE_PROPERTIES, "headers"})

_PREVIEW_LENGTH: Final = 256
_PREVIEW_SCAN: Final = 256 * 1024
_MEDIA_TYPE: Final = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")
_DELIMITER_TAIL: Final = re.compile(rb"[ \t\r]*(?:\n|\Z)")
_QP_DAMAGE: Final = re.compile(rb"=(?![0-9A-Fa-f]{2}|[ \t]*(?:\r?\n|\Z))")
_CID_URL: Final = re.compile(r"cid:([^\"'\s>)]+)", re.IGNORECASE)
_WHITESPACE: Final = re.compile(r"\s+")


class _Part:
    """One MIME entity: offsets into the message buffer and its described headers."""

    def __init__(
        self, headers: list[tuple[str, str]], body_start: int, body_end: int, default_type: str
    ) -> None:
        self.headers = headers
        self.body_start = body_start
        self.body_end = body_end
        self.part_id: str | None = None
        self.sub_parts: list[_Part] | None = None
        self.size: int | None = None
        first: dict[str, str] = {}
        for field, value in headers:
            first.setdefault(field.lower(), value)
        content_type = first.get("content-type")
        params: dict[str, str] = {}
        self.type = default_type
        if content_type is not None:
            self.type, params = split_parameters(content_type)
            if not _MEDIA_TYPE.fullmatch(self.type):
                self.type, params = "text/plain", {}
        self.boundary = params.get("boundary", "")
        self.charset: str | None = params.get("charset", "").strip() or None
        if self.charset is None and (content_type is None or self.type.startswith("text/")):
            self.charset = "us-ascii"
        disposition_params: dict[str, str] = {}
        self.disposition: str | None = None
        if "content-disposition" in first:
            found, disposition_params = split_parameters(first["content-disposition"])
            self.disposition = found or None
        name = disposition_params.get("filename") or params.get("name") or ""
        self.name = _WHITESPACE.sub(" ", decode_encoded_words(unfold(name))).strip() or None
        self.cid: str | None = None
        if "content-id" in first:
            ids = as_message_ids(first["content-id"])
            self.cid = ids[0] if ids else first["content-id"].strip().strip("<>").strip() or None
        self.language: list[str] | None = None
        if "content-language" in first:
            tags = re.split(r"[\s,]+", strip_comments(unfold(first["content-language"])))
            self.language = [tag for tag in tags if tag] or None
        self.location: str | None = None
        if "content-location" in first:
            self.location = _WHITESPACE.sub("", first["content-location"]).strip('"') or None
        encoding = strip_comments(unfold(first.get("content-transfer-encoding", ""))).split()
        self.encoding = encoding[0].lower() if encoding else "7bit"


def _split_multipart(
    raw: bytes, start: int, end: int, boundary: bytes, limit: int
) -> list[tuple[int, int]]:
    """
    The ``(start, end)`` of each body part of a multipart body (RFC 2046 §5.1.1).

    A missing close delimiter ends the last part at the end of the body; the
    preamble and epilogue are dropped; at most *limit* parts are returned.
    """
    delimiter = b"--" + boundary
    found: list[tuple[int, int]] = []
    closed_at = -1
    pos = start
    while len(found) < limit:
        index = raw.find(delimiter, pos, end)
        if index < 0:
            break
        pos = index + len(delimiter)
        if index != start and raw[index - 1] != 0x0A:
            continue
        closing = pos + 2 <= end and raw.startswith(b"--", pos)
        tail = _DELIMITER_TAIL.match(raw, pos + 2 if closing else pos, end)
        if tail is None:
            continue
        if closing:
            closed_at = index
            break
        found.append((index, tail.end()))
        pos = tail.end()
    ranges = []
    for number, (_, content_start) in enumerate(found):
        if number + 1 < len(found):
            stop = found[number + 1][0]
        elif closed_at >= 0:
            stop = closed_at
        else:
            ranges.append((content_start, end))
            break
        # The line break before a delimiter belongs to the delimiter.
        if stop > content_start and raw[stop - 1] == 0x0A:
            stop -= 1
        if stop > content_start and raw[stop - 1] == 0x0D:
            stop -= 1
        ranges.append((content_start, stop))
    return ranges


def _transfer_decode(data: bytes, encoding: str) -> tuple[bytes, bool]:
    """Undo a Content-Transfer-Encoding: the octets and whether there was a problem."""
    if encoding == "base64":
        return decode_base64(data)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(data), _QP_DAMAGE.search(data) is not None
    return data, encoding not in ("7bit", "8bit", "binary")


def _is_inline_media(media_type: str) -> bool:
    return media_type.startswith(("image/", "audio/", "video/"))


def _parse_structure(
    parts: Sequence[_Part],
    multipart_type: str,
    in_alternative: bool,
    html_body: list[_Part] | None,
    text_body: list[_Part] | None,
    attachments: list[_Part],
) -> None:
    """
    RFC 8621 §4.1.4 ``parseStructure``, transcribed.

    ``None`` stands for the pseudo-code's ``null`` lists; where the pseudo-code
    would push onto ``null`` (a nested alternative inside an alternative branch
    already decided) the part is not added to that list.
    """
    text_length = len(text_body) if text_body is not None else -1
    html_length = len(html_body) if html_body is not None else -1
    for index, part in enumerate(parts):
        is_inline = (
            part.disposition != "attachment"
            and (part.type in ("text/plain", "text/html") or _is_inline_media(part.type))
            and (
                index == 0
                or (multipart_type != "related" and (_is_inline_media(part.type) or not part.name))
            )
        )
        if part.sub_parts is not None:
            sub_type = part.type.partition("/")[2]
            _parse_structure(
                part.sub_parts,
                sub_type,
                in_alternative or sub_type == "alternative",
                html_body,
                text_body,
                attachments,
            )
        elif is_inline:
            if multipart_type == "alternative":
                if part.type == "text/plain":
                    if text_body is not None:
                        text_body.append(part)
                elif part.type == "text/html":
                    if html_body is not None:
                        html_body.append(part)
                else:
                    attachments.append(part)
                continue
            if in_alternative:
                if part.type == "text/plain":
                    html_body = None
                if part.type == "text/html":
                    text_body = None
            if text_body is not None:
                text_body.append(part)
            if html_body is not None:
                html_body.append(part)
            if (text_body is None or html_body is None) and _is_inline_media(part.type):
                attachments.append(part)
        else:
            attachments.append(part)
    if multipart_type == "alternative" and text_body is not None and html_body is not None:
        if text_length == len(text_body) and html_length != len(html_body):
            text_body.extend(html_body[html_length:])  # found an HTML part only
        if html_length == len(html_body) and text_length != len(text_body):
            html_body.extend(text_body[text_length:])  # found a plain-text part only


def _property_specs(
    properties: Sequence[str] | None, default: Sequence[str]
) -> list[tuple[str, HeaderProperty | None]]:
    """Validate requested EmailBodyPart properties; ``ValueError`` on an unknown one."""
    specs: list[tuple[str, HeaderProperty | None]] = []
    for name in default if properties is None else properties:
        if name in _BODY_PROPERTIES:
            specs.append((name, None))
            continue
        header = parse_header_property(name)
        if header is None:
            raise ValueError(f"unknown EmailBodyPart property {name!r}")
        specs.append((name, header))
    return specs


def _truncate(text: str, max_bytes: int, is_html: bool) -> tuple[str, bool]:
    """Cut *text* to at most *max_bytes* UTF-8 octets, on a character (and tag) boundary."""
    if len(text) * 4 <= max_bytes:
        return text, False
    head = text[: max_bytes + 1].encode("utf-8")
    if len(head) <= max_bytes:
        return text, False
    cut = head[:max_bytes].decode("utf-8", "ignore")
    if is_html:
        opening = cut.rfind("<")
        if opening > cut.rfind(">"):
            cut = cut[:opening]
    return cut, True


class ParsedMessage:
    """
    A message parsed for JMAP.  Build it with :func:`parse_message`.

    The header section is read at construction; the body structure, the body
    lists and decoded text are computed on first use and cached (so do not
    share an instance between threads).  Values are JSON-ready.
    """

    def __init__(self, raw: bytes, blob_id_for_part: Callable[[str], str] | None = None) -> None:
        """
        :param raw: the message octets.
        :param blob_id_for_part: default blobId derivation for the methods
            returning EmailBodyPart objects (default: the part id itself).
        """
        self._raw = bytes(raw)
        self._blob_id_for_part = blob_id_for_part or str  # str: the identity on ids
        self._headers, self._body_start = parse_header_section(self._raw, skip_mbox_line=True)
        self._root: _Part | None = None
        self._leaves: dict[str, _Part] = {}
        self._part_count = 0
        self._lists: tuple[list[_Part], list[_Part], list[_Part]] | None = None
        self._texts: dict[str, tuple[str, bool]] = {}
        self._preview: str | None = None
        self._has_attachment: bool | None = None

    # --- header fields and convenience properties --------------------------------

    @property
    def size(self) -> int:
        """The size of the message in octets."""
        return len(self._raw)

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The message's header fields: ``(name, raw value)`` in message order."""
        return list(self._headers)

    def header_objects(self) -> list[dict[str, str]]:
        """The Email ``headers`` property: ``{"name", "value"}`` with raw values."""
        return [{"name": name, "value": value} for name, value in self._headers]

    def header(self, prop: str) -> Any:
        """
        The value of an Email ``header:…`` property.

        :param prop: e.g. ``header:List-Post:asURLs:all``.
        :raises ValueError: if *prop* is not a valid ``header:`` property.
        """
        parsed = parse_header_property(prop)
        if parsed is None:
            raise ValueError(f"{prop!r} is not a header: property")
        return header_value(self._headers, parsed)

    @property
    def message_id(self) -> list[str] | None:
        """``messageId``: ``header:Message-ID:asMessageIds``."""
        return header_value(self._headers, HeaderProperty("Message-ID", "MessageIds"))

    @property
    def in_reply_to(self) -> list[str] | None:
        """``inReplyTo``: ``header:In-Reply-To:asMessageIds``."""
        return header_value(self._headers, HeaderProperty("In-Reply-To", "MessageIds"))

    @property
    def references(self) -> list[str] | None:
        """``references``: ``header:References:asMessageIds``."""
        return header_value(self._headers, HeaderProperty("References", "MessageIds"))

    @property
    def sender(self) -> list[dict[str, str | None]] | None:
        """``sender``: ``header:Sender:asAddresses``."""
        return header_value(self._headers, HeaderProperty("Sender", "Addresses"))

    @property
    def from_(self) -> list[dict[str, str | None]] | None:
        """``from``: ``header:From:asAddresses``."""
        return header_value(self._headers, HeaderProperty("From", "Addresses"))

    @property
    def to(self) -> list[dict[str, str | None]] | None:
        """``to``: ``header:To:asAddresses``."""
        return header_value(self._headers, HeaderProperty("To", "Addresses"))

    @property
    def cc(self) -> list[dict[str, str | None]] | None:
        """``cc``: ``header:Cc:asAddresses``."""
        return header_value(self._headers, HeaderProperty("Cc", "Addresses"))

    @property
    def bcc(self) -> list[dict[str, str | None]] | None:
        """``bcc``: ``header:Bcc:asAddresses``."""
        return header_value(self._headers, HeaderProperty("Bcc", "Addresses"))

    @property
    def reply_to(self) -> list[dict[str, str | None]] | None:
        """``replyTo``: ``header:Reply-To:asAddresses``."""
        return header_value(self._headers, HeaderProperty("Reply-To", "Addresses"))

    @property
    def subject(self) -> str | None:
        """``subject``: ``header:Subject:asText``."""
        return header_value(self._headers, HeaderProperty("Subject", "Text"))

    @property
    def sent_at(self) -> str | None:
        """``sentAt``: ``header:Date:asDate``."""
        return header_value(self._headers, HeaderProperty("Date", "Date"))

    # --- structure -------------------------------------------------------------

    def _structure(self) -> _Part:
        """The root part, the structure being parsed on first use."""
        if self._root is None:
            self._root = self._build(
                self._headers, self._body_start, len(self._raw), "", 0, "text/plain"
            )
        return self._root

    def _build(
        self,
        headers: list[tuple[str, str]],
        body_start: int,
        end: int,
        path: str,
        depth: int,
        default_type: str,
    ) -> _Part:
        part = _Part(headers, body_start, end, default_type)
        self._part_count += 1
        if part.type.startswith("multipart/"):
            if depth >= MAX_DEPTH:
                part.type, part.charset = "application/octet-stream", None
            elif ranges := self._child_ranges(part):
                digest = part.type == "multipart/digest"
                part.sub_parts = []
                for number, (start, stop) in enumerate(ranges, 1):
                    if self._part_count >= MAX_PARTS:
                        break
                    child_headers, child_body = parse_header_section(self._raw, start, stop)
                    child_path = f"{path}-{number}" if path else str(number)
                    child_type = "message/rfc822" if digest else "text/plain"
                    child = self._build(
                        child_headers, child_body, stop, child_path, depth + 1, child_type
                    )
                    part.sub_parts.append(child)
                return part
            else:
                part.type, part.charset = "text/plain", part.charset or "us-ascii"
        part.part_id = path or "1"
        self._leaves[part.part_id] = part
        return part

    def _child_ranges(self, part: _Part) -> list[tuple[int, int]]:
        if not part.boundary:
            return []
        limit = max(MAX_PARTS - self._part_count, 0)
        boundary = part.boundary.encode("utf-8", "replace")
        if not boundary.isascii():
            latin = part.boundary.encode("latin-1", "replace")
            if self._raw.find(latin, part.body_start, part.body_end) >= 0:
                boundary = latin
        return _split_multipart(self._raw, part.body_start, part.body_end, boundary, limit)

    def _leaf(self, part_id: str) -> _Part:
        self._structure()
        return self._leaves[part_id]

    def _octets(self, part: _Part) -> tuple[bytes, bool]:
        return _transfer_decode(self._raw[part.body_start : part.body_end], part.encoding)

    def _size(self, part: _Part) -> int:
        if part.size is None:
            if part.sub_parts is not None or part.encoding not in ("base64", "quoted-printable"):
                part.size = part.body_end - part.body_start
            else:
                part.size = len(self._octets(part)[0])
        return part.size

    def _text(self, part: _Part) -> tuple[str, bool]:
        """The decoded text of a leaf (cached): value and isEncodingProblem."""
        assert part.part_id is not None
        cached = self._texts.get(part.part_id)
        if cached is None:
            octets, transfer_problem = self._octets(part)
            text, charset_problem = decode_text(octets, part.charset)
            text = text.replace("\r\n", "\n")
            nul = "\x00" in text
            if nul:
                text = text.replace("\x00", "\ufffd")
            cached = (text, transfer_problem or charset_problem or nul)
            self._texts[part.part_id] = cached
        return cached

    def _render(
        self,
        part: _Part,
        specs: Sequence[tuple[str, HeaderProperty | None]],
        blob_id_for_part: Callable[[str], str],
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, header in specs:
            if header is not None:
                out[name] = header_value(part.headers, header)
            elif name in _PART_ATTRIBUTES:
                value = getattr(part, name)
                out[name] = list(value) if isinstance(value, list) else value
            elif name == "partId":
                out[name] = part.part_id
            elif name == "blobId":
                out[name] = None if part.part_id is None else blob_id_for_part(part.part_id)
            elif name == "size":
                out[name] = self._size(part)
            elif name == "headers":
                out[name] = [{"name": field, "value": value} for field, value in part.headers]
            elif part.sub_parts is None:  # subParts
                out[name] = None
            else:
                out[name] = [self._render(sub, specs, blob_id_for_part) for sub in part.sub_parts]
        return out

    def _render_list(
        self,
        parts: list[_Part],
        properties: Sequence[str] | None,
        blob_id_for_part: Callable[[str], str] | None,
    ) -> list[dict[str, Any]]:
        specs = _property_specs(properties, DEFAULT_BODY_PROPERTIES)
        blob_ids = blob_id_for_part or self._blob_id_for_part
        return [self._render(part, specs, blob_ids) for part in parts]

    def body_structure(
        self,
        properties: Sequence[str] | None = None,
        *,
        blob_id_for_part: Callable[[str], str] | None = None,
    ) -> dict[str, Any]:
        """
        The ``bodyStructure`` property: the EmailBodyPart tree.

        The ``size`` of a leaf is that of its decoded content; a multipart's is
        the length of its raw body.  ``subParts`` is always included, asked for
        or not: the structure is a tree (RFC 8621's default bodyProperties omit
        ``subParts``, which would make ``bodyStructure`` useless otherwise).

        :param properties: the ``bodyProperties`` (default
            :data:`BODY_STRUCTURE_PROPERTIES`); ``headers`` and ``header:…`` forms
            are supported.
        :param blob_id_for_part: maps a part id to the part's blobId.
        :raises ValueError: for an unknown or malformed property.
        """
        specs = _property_specs(properties, BODY_STRUCTURE_PROPERTIES)
        if ("subParts", None) not in specs:
            specs.append(("subParts", None))
        return self._render(self._structure(), specs, blob_id_for_part or self._blob_id_for_part)

    @property
    def _body_lists(self) -> tuple[list[_Part], list[_Part], list[_Part]]:
        if self._lists is None:
            text: list[_Part] = []
            html_parts: list[_Part] = []
            attachments: list[_Part] = []
            _parse_structure([self._structure()], "mixed", False, html_parts, text, attachments)
            self._lists = (text, html_parts, attachments)
        return self._lists

    def text_body(
        self,
        properties: Sequence[str] | None = None,
        *,
        blob_id_for_part: Callable[[str], str] | None = None,
    ) -> list[dict[str, Any]]:
        """
        The ``textBody`` property (RFC 8621 §4.1.4, ``parseStructure``).

        :param properties: as for :meth:`body_structure`, default
            :data:`DEFAULT_BODY_PROPERTIES`.
        :param blob_id_for_part: maps a part id to the part's blobId.
        :raises ValueError: for an unknown or malformed property.
        """
        return self._render_list(self._body_lists[0], properties, blob_id_for_part)

    def html_body(
        self,
        properties: Sequence[str] | None = None,
        *,
        blob_id_for_part: Callable[[str], str] | None = None,
    ) -> list[dict[str, Any]]:
        """The ``htmlBody`` property; arguments as for :meth:`text_body`."""
        return self._render_list(self._body_lists[1], properties, blob_id_for_part)

    def attachments(
        self,
        properties: Sequence[str] | None = None,
        *,
        blob_id_for_part: Callable[[str], str] | None = None,
    ) -> list[dict[str, Any]]:
        """
        The ``attachments`` property; arguments as for :meth:`text_body`.

        Attached messages are single parts here: parse their content
        (:meth:`part_content`) to look inside.
        """
        return self._render_list(self._body_lists[2], properties, blob_id_for_part)

    @property
    def has_attachment(self) -> bool:
        """
        ``hasAttachment``: whether :meth:`attachments` holds a part to offer for download.

        Every attachment counts except (a) a part whose Content-ID is referenced
        by a ``cid:`` URL in an HTML body part (an embedded image: RFC 8621 lets
        the server ignore those), and (b) an image, audio or video part with
        ``Content-Disposition: inline`` (shown in the body).  Other parts marked
        inline, such as the PDFs some clients send inline with a filename, do
        count: they are downloads, not body content.
        """
        if self._has_attachment is None:
            candidates = [
                part
                for part in self._body_lists[2]
                if not (part.disposition == "inline" and _is_inline_media(part.type))
            ]
            if any(part.cid is None for part in candidates):
                self._has_attachment = True
            elif not candidates:
                self._has_attachment = False
            else:
                referenced = self._referenced_cids()
                self._has_attachment = any(
                    part.cid is not None and part.cid.lower() not in referenced
                    for part in candidates
                )
        return self._has_attachment

    def _referenced_cids(self) -> set[str]:
        referenced: set[str] = set()
        for part in self._body_lists[1]:
            if part.type == "text/html":
                for match in _CID_URL.finditer(self._text(part)[0]):
                    referenced.add(unquote(match[1]).lower())
        return referenced

    @property
    def preview(self) -> str:
        """
        ``preview``: up to 256 characters of text, white space collapsed.

        Taken from the text parts of ``textBody`` in order (HTML converted with
        :func:`html_to_text`), until 256 characters are gathered.
        """
        if self._preview is None:
            chunks: list[str] = []
            gathered = 0
            for part in self._body_lists[0]:
                if gathered >= _PREVIEW_LENGTH:
                    break
                if part.type not in ("text/plain", "text/html"):
                    continue
                text = self._text(part)[0][:_PREVIEW_SCAN]
                if part.type == "text/html":
                    text = html_to_text(text)
                text = _WHITESPACE.sub(" ", text).strip()
                if text:
                    chunks.append(text)
                    gathered += len(text) + 1
            self._preview = " ".join(chunks)[:_PREVIEW_LENGTH].rstrip()
        return self._preview

    def search_text(self, limit: int = SEARCH_TEXT_LIMIT) -> str:
        """
        Text for full-text indexing: the text parts of ``textBody`` (HTML
        converted to text) up to ``limit`` characters, then the names of the
        attachments, one per line.

        :param limit: the most characters of body text kept (HTML is
            converted from at most that many characters of markup), so that
            a huge body costs no more to convert and index than its start.
        """
        texts = []
        budget = limit
        for part in self._body_lists[0]:
            if budget <= 0:
                break
            if part.type == "text/plain":
                text = self._text(part)[0][:budget]
            elif part.type == "text/html":
                text = html_to_text(self._text(part)[0][:budget])
            else:
                continue
            texts.append(text)
            budget -= len(text) + 1
        texts.extend(part.name for part in self._body_lists[2] if part.name)
        return "\n".join(texts)

    # --- content -------------------------------------------------------------------

    def body_value(self, part_id: str, max_bytes: int = 0) -> dict[str, Any]:
        """
        An EmailBodyValue: the text of a leaf part (meant for ``text/*`` parts).

        The transfer encoding and charset are decoded; CRLF becomes LF.  An unknown
        charset is read as UTF-8; malformed octets, damaged base64 or
        quoted-printable, an unknown transfer encoding or NUL characters set
        ``isEncodingProblem`` (bad characters become U+FFFD).

        :param part_id: the part's id.
        :param max_bytes: truncate the value to this many UTF-8 octets (0: no
            limit), never inside a character nor, for HTML, inside a tag.
        :raises KeyError: if there is no leaf part with this id.
        """
        part = self._leaf(part_id)
        text, problem = self._text(part)
        truncated = False
        if max_bytes > 0:
            text, truncated = _truncate(text, max_bytes, part.type == "text/html")
        return {"value": text, "isEncodingProblem": problem, "isTruncated": truncated}

    def part_content(self, part_id: str) -> tuple[bytes, str]:
        """
        The downloadable content of a leaf part: transfer-decoded octets and media type.

        :param part_id: the part's id.
        :raises KeyError: if there is no leaf part with this id.
        """
        part = self._leaf(part_id)
        return self._octets(part)[0], part.type


def parse_message(
    raw: bytes, *, blob_id_for_part: Callable[[str], str] | None = None
) -> ParsedMessage:
    """
    Parse the octets of an RFC 5322 message.  Never raises.

    :param raw: the message as stored (CRLF or LF line endings).
    :param blob_id_for_part: default blobId derivation for the EmailBodyPart
        objects, e.g. ``lambda part_id: f"{message_blob_id}_{part_id}"``.
    """
    return ParsedMessage(raw, blob_id_for_part)


# --- HTML to text -------------------------------------------------------------------

_MAX_TAG: Final = 1024
_TAG: Final = re.compile(r"""<(/?)([A-Za-z][A-Za-z0-9:-]*)(?:[^>"']++|"[^"]*+"|'[^']*+')*+>""")
_TAG_START: Final = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)")
_MARKUP_START: Final = re.compile(r"<(?:/?[A-Za-z]|[!?])")
_HIDDEN: Final = frozenset({"script", "style", "title", "template"})
_HIDDEN_END: Final = {name: re.compile(rf"</{name}(?=[\s/>])", re.IGNORECASE) for name in _HIDDEN}
_BLOCKS: Final = frozenset(
    {
        *("address", "article", "aside", "blockquote", "center", "dd", "div", "dl"),
        *("dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3"),
        *("h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre"),
        *("section", "table", "tr", "ul"),
    }
)
_HTML_SPACE: Final = re.compile(r"[ \t\r\n\f]+")
_BLOCK_BREAK: Final = "\x01"  # edges of block elements: adjacent ones make one line break
_BLOCK_BREAKS: Final = re.compile(r"[ \t]*\x01[\x01 \t]*")
_BLANK_LINES: Final = re.compile(r"\n{3,}")
_SPACE_RUNS: Final = re.compile(r"[ \t]{2,}")


def html_to_text(markup: str) -> str:
    """
    Plain text of an HTML document, for previews and indexing.

    Tags are dropped, ``script``/``style``/``title``/``template`` content with
    them; block elements and ``<br>`` give line breaks, table cells a space;
    entities are decoded and white space collapsed outside ``<pre>``.  A linear
    scanner, not :class:`html.parser.HTMLParser`, which is quadratic on some
    malformed input (CVE-2025-6069) on the Pythons we support.

    :param markup: the HTML.
    """
    out: list[str] = []
    length = len(markup)
    pos = 0
    pre = 0

    def add_text(text: str) -> None:
        text = html.unescape(text).replace(_BLOCK_BREAK, "")
        out.append(text if pre else _HTML_SPACE.sub(" ", text))

    while pos < length:
        opening = _MARKUP_START.search(markup, pos)
        next_gt = -1 if opening is None else markup.find(">", opening.start())
        if opening is None or next_gt < 0:  # no tag can follow: the rest is text
            add_text(markup[pos:])
            break
        lt = opening.start()
        if lt > pos:
            add_text(markup[pos:lt])
        if markup.startswith("<!--", lt):
            close = markup.find("-->", lt + 4)
            pos = length if close < 0 else close + 3
            continue
        if markup[lt + 1] in "!?":
            pos = next_gt + 1
            continue
        match = _TAG.match(markup, lt, min(length, lt + _MAX_TAG)) or _TAG_START.match(markup, lt)
        assert match is not None  # _MARKUP_START guarantees a tag start
        pos = match.end() if match.re is _TAG else next_gt + 1
        closing, name = match[1], match[2].lower()
        if name in _HIDDEN and not closing and not markup.endswith("/>", lt, pos):
            end = _HIDDEN_END[name].search(markup, pos)
            if end is None:
                break
            close = markup.find(">", end.end())
            pos = length if close < 0 else close + 1
        elif name == "br":
            out.append("\n")
        elif name == "pre":
            pre = max(0, pre - 1) if closing else pre + 1
            out.append(_BLOCK_BREAK)
        elif name in _BLOCKS:
            out.append(_BLOCK_BREAK)
        elif name in ("td", "th"):
            out.append(" ")
    text = _BLOCK_BREAKS.sub("\n", "".join(out)).replace("\xa0", " ")
    text = "\n".join(line.strip() for line in _SPACE_RUNS.sub(" ", text).split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()
