# -*- test-case-name: tests.mime.test_compose -*-
"""
The body of an Email create (RFC 8621 §4.6): its ``bodyStructure``, or the
tree built from ``textBody``, ``htmlBody`` and ``attachments``, each
EmailBodyPart (RFC 8621 §4.1.4) checked and its ``bodyValues`` text or blob
found.

Choices made where the RFC leaves room: with ``textBody``/``htmlBody``/
``attachments``, text and HTML make a ``multipart/alternative``;
attachments with a ``cid`` (and no ``attachment`` disposition) join the
HTML in a ``multipart/related``; the other attachments make a
``multipart/mixed``.  Attachments without a disposition get ``inline``
(related) or ``attachment`` (mixed).  An empty list means "no such body";
nothing at all gives an empty ``text/plain`` body.  A part of any type may
take its content from ``bodyValues`` (a ``text/*`` one in UTF-8, another
the text's UTF-8 octets); NUL, which is not text, is refused in a
``text/*`` one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from attrs import Factory, define

from jmap_twisted.mime.compose_email import (
    BlobNotFound,
    HeaderSpec,
    Problems,
    check_duplicates,
    property_path,
    read_header_property,
    render_headers,
)
from jmap_twisted.mime.compose_values import ANGLE_CONTENT, CONTROL_OR_TAB

_MAX_DEPTH = 16
_SURROGATE = re.compile("[\ud800-\udfff]")
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
MEDIA_TYPE = re.compile(rf"{_TOKEN.pattern}/{_TOKEN.pattern}")
_LANGUAGE_TAG = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
# Body part properties and the header field each one stands for.
_PART_FIELDS = {
    "partId": None,
    "blobId": None,
    "size": None,
    "subParts": None,
    "type": "content-type",
    "charset": "content-type",
    "name": "content-disposition",
    "disposition": "content-disposition",
    "cid": "content-id",
    "language": "content-language",
    "location": "content-location",
}


@define
class Part:
    """
    One validated body part: its content (``text`` from ``bodyValues``, a
    ``blob_id``, or ``sub_parts``), the properties written as its MIME
    header fields, and ``headers`` given as ``header:`` properties.
    ``fields`` maps each of those field names to the property setting it.
    """

    path: str
    type: str | None = None
    text: str | None = None
    blob_id: str | None = None
    charset: str | None = None
    name: str | None = None
    disposition: str | None = None
    cid: str | None = None
    language: list[str] | None = None
    location: str | None = None
    headers: list[tuple[str, str]] = Factory(list)
    fields: dict[str, str] = Factory(dict)
    sub_parts: list[Part] | None = None


def read_body(email: Mapping[str, Any], problems: Problems) -> Part:
    """
    The validated body of ``email``: its ``bodyStructure``, or the tree
    built from ``textBody``, ``htmlBody`` and ``attachments``.
    """
    values = _read_body_values(email.get("bodyValues"), problems)
    if email.get("bodyStructure") is not None:
        for prop in ("textBody", "htmlBody", "attachments"):
            if email.get(prop) is not None:
                problems.add(prop, "cannot be given with bodyStructure (RFC 8621 §4.6)")
        part = _read_part(email["bodyStructure"], "bodyStructure", values, problems, None, 0)
        return part or Part("")
    text = _read_part_list(email, "textBody", values, problems, "text/plain")
    html = _read_part_list(email, "htmlBody", values, problems, "text/html")
    attachments = _read_part_list(email, "attachments", values, problems, None)
    html_root = html[0] if html else None
    related: list[Part] = []
    mixed: list[Part] = []
    for part in attachments:
        inline = bool(html_root and part.cid and part.disposition != "attachment")
        (related if inline else mixed).append(part)
        part.disposition = part.disposition or ("inline" if inline else "attachment")
    if html_root and related:
        html_root = Part("", "multipart/related", sub_parts=[html_root, *related])
    body = text[0] if text else None
    if body and html_root:
        body = Part("", "multipart/alternative", sub_parts=[body, html_root])
    body = body or html_root
    if mixed:
        body = Part("", "multipart/mixed", sub_parts=[body, *mixed] if body else mixed)
    return body or Part("", "text/plain", text="")


def _read_body_values(value: Any, problems: Problems) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.add("bodyValues", "must be an object of EmailBodyValue objects")
        return {}
    texts = {}
    for part_id, body_value in value.items():
        path = property_path("bodyValues", part_id)
        text = body_value.get("value") if isinstance(body_value, Mapping) else None
        if not isinstance(text, str) or _SURROGATE.search(text):
            problems.add(path, "an EmailBodyValue needs a value String of Unicode text")
            continue
        for flag in ("isEncodingProblem", "isTruncated"):
            if body_value.get(flag) not in (None, False):
                problems.add(f"{path}/{flag}", "must be false or omitted (RFC 8621 §4.6)")
        texts[part_id] = text
    return texts


def _read_part_list(
    email: Mapping[str, Any],
    prop: str,
    values: Mapping[str, str],
    problems: Problems,
    only_type: str | None,
) -> list[Part]:
    value = email.get(prop)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add(prop, "must be an array of EmailBodyPart objects")
        return []
    if only_type and len(value) > 1:
        problems.add(prop, f"must hold at most one {only_type} part (RFC 8621 §4.6)")
    parts = []
    for i, obj in enumerate(value):
        part = _read_part(obj, property_path(prop, i), values, problems, only_type, _MAX_DEPTH)
        if part is None:
            continue
        if only_type and part.type != only_type:
            problems.add(property_path(prop, i, "type"), f"must be {only_type}")
        parts.append(part)
    return parts


def _read_part(
    obj: Any,
    path: str,
    values: Mapping[str, str],
    problems: Problems,
    default_type: str | None,
    depth: int,
) -> Part | None:
    """
    Validate one EmailBodyPart (and its subParts, up to a depth limit);
    ``None`` if it is not an object at all.
    """
    if not isinstance(obj, Mapping):
        problems.add(path, "must be an EmailBodyPart object")
        return None
    specs: list[HeaderSpec] = []
    implied: dict[str, list[str]] = {}
    for prop, value in obj.items():
        here = property_path(path, prop)
        if prop.startswith("header:"):
            spec = read_header_property(prop, here, value, problems, on_part=True)
            if spec is not None:
                specs.append(spec)
        elif prop not in _PART_FIELDS:
            problems.add(here, "is not a property of an EmailBodyPart on create")
        elif _PART_FIELDS[prop] and value is not None:
            implied.setdefault(str(_PART_FIELDS[prop]), []).append(here)
    check_duplicates(specs, implied, problems)

    def string(prop: str, syntax: re.Pattern[str] | None = None) -> str | None:
        value = obj.get(prop)
        ok = value is None or (
            isinstance(value, str)
            and not CONTROL_OR_TAB.search(value)
            and (syntax is None or syntax.fullmatch(value))
        )
        if not ok:
            problems.add(property_path(path, prop), "is not a valid value")
            return None
        return value

    part = Part(
        path,
        type=(string("type", MEDIA_TYPE) or "").lower() or None,
        charset=string("charset", _TOKEN),
        name=string("name"),
        disposition=(string("disposition", _TOKEN) or "").lower() or None,
        cid=string("cid", ANGLE_CONTENT),
        location=string("location", ANGLE_CONTENT),
        headers=render_headers(specs, problems),
        fields={spec.name.lower(): spec.path for spec in specs},
    )
    language = obj.get("language")
    if language is not None:
        if not isinstance(language, list) or not all(
            isinstance(tag, str) and _LANGUAGE_TAG.fullmatch(tag) for tag in language
        ):
            problems.add(property_path(path, "language"), "must be an array of language tags")
        else:
            part.language = language
    part_id, blob_id = obj.get("partId"), obj.get("blobId")
    for prop, value in (("partId", part_id), ("blobId", blob_id)):
        if value is not None and not isinstance(value, str):
            problems.add(property_path(path, prop), "must be a String")

    sub_parts = obj.get("subParts")
    if sub_parts is not None or (part.type or "").startswith("multipart/"):
        part.type = part.type or "multipart/mixed"
        if not part.type.startswith("multipart/"):
            problems.add(property_path(path, "type"), "a part with subParts must be multipart/*")
        for prop in ("partId", "blobId", "charset"):
            if obj.get(prop) is not None:
                problems.add(property_path(path, prop), "cannot be given on a multipart part")
        if depth >= _MAX_DEPTH:
            problems.add(property_path(path, "subParts"), "not allowed here, or nested too deeply")
        elif not isinstance(sub_parts, list) or not sub_parts:
            problems.add(property_path(path, "subParts"), "a multipart part needs subParts")
        else:
            part.sub_parts = []
            for i, sub in enumerate(sub_parts):
                here = property_path(path, "subParts", i)
                child = _read_part(sub, here, values, problems, None, depth + 1)
                if child is not None:
                    part.sub_parts.append(child)
    elif part_id is not None and blob_id is not None:
        problems.add(property_path(path, "partId"), "give a partId or a blobId, not both")
        problems.add(property_path(path, "blobId"), "give a partId or a blobId, not both")
    elif isinstance(part_id, str):
        if part_id not in values:
            problems.add(property_path(path, "partId"), "has no entry in bodyValues")
        part.text = values.get(part_id, "")
        part.type = part.type or default_type or "text/plain"
        if part.type.startswith("text/") and "\x00" in part.text:
            problems.add(
                property_path("bodyValues", part_id),
                "a text/* part cannot hold NUL (RFC 2046 §4.1.1): it would not read back",
            )
        for prop in ("charset", "size"):
            if obj.get(prop) is not None:
                problems.add(property_path(path, prop), "must be omitted when partId is given")
    elif isinstance(blob_id, str):
        part.blob_id = blob_id
        part.type = part.type or default_type
    elif part_id is None and blob_id is None:
        problems.add(path, "a part needs a partId, a blobId or subParts")
    return part


def walk(part: Part) -> Iterator[Part]:
    """
    ``part`` and every part under it, depth first.
    """
    yield part
    for child in part.sub_parts or ():
        yield from walk(child)


def fetch_blobs(
    root: Part, fetch_blob: Callable[[str], tuple[bytes, str] | None]
) -> dict[str, tuple[bytes, str]]:
    """
    The content of every blob the body names, each fetched once.

    :raises BlobNotFound: naming every blob ``fetch_blob`` does not know.
    """
    found: dict[str, tuple[bytes, str]] = {}
    missing: list[str] = []
    for part in walk(root):
        blob_id = part.blob_id
        if blob_id is not None and blob_id not in found and blob_id not in missing:
            blob = fetch_blob(blob_id)
            if blob is None:
                missing.append(blob_id)
            else:
                found[blob_id] = blob
    if missing:
        raise BlobNotFound(missing)
    return found
