# -*- test-case-name: tests.mime.test_compose -*-
"""
Writing a composed message (RFC 5322, MIME: RFC 2045, RFC 2046): the
stdlib MIME tree of the validated body, then the octets, CRLF line ends and
no line over 998 octets (RFC 5322 §2.1.1).

Choices made where the RFCs leave room: bodies are 7-bit.  Text from
``bodyValues`` is 7bit when ASCII with lines of at most 78 octets, else the
shorter of quoted-printable and base64; a text blob is 7bit when it could
be, else base64; other blobs are base64, except ``message/*`` blobs
(RFC 2046 §5.2 forbids base64 there): 7bit, or 8bit when not ASCII, or
``application/octet-stream`` in base64 when neither fits.  So the octets are
ASCII unless the header fields need SMTPUTF8 or a body 8BITMIME.
"""

from __future__ import annotations

from collections.abc import Mapping
from email import policy as email_policy
from email.generator import BytesGenerator
from email.message import MIMEPart
from io import BytesIO

from jmap_twisted.mime.compose_body import MEDIA_TYPE, Part
from jmap_twisted.mime.compose_values import FOLD_AT, MAX_LINE, fold

# Policy of the MIME parts (7-bit bodies, 78-octet lines) and of the
# generator, which writes our pre-folded header values verbatim and UTF-8
# held as surrogate escapes unchanged.
_PART_POLICY = email_policy.SMTP.clone(cte_type="7bit")
_WRITE_POLICY = email_policy.SMTP.clone(refold_source="none")


def build_mime(part: Part, blobs: Mapping[str, tuple[bytes, str]]) -> MIMEPart:
    """
    The stdlib MIME tree of a validated part.
    """
    mime = MIMEPart(policy=_PART_POLICY)
    if part.sub_parts is not None:
        mime["Content-Type"] = part.type or "multipart/mixed"
        for child in part.sub_parts:
            mime.attach(build_mime(child, blobs))
        if part.type == "multipart/related":
            first = part.sub_parts[0].type or "application/octet-stream"
            mime.set_param("type", first, replace=True)
    elif part.text is not None:
        subtype = (part.type or "text/plain").partition("/")[2]
        cte = "quoted-printable" if "\x00" in part.text else None
        mime.set_content(part.text, subtype=subtype, charset="utf-8", cte=cte)
    else:
        _set_blob_content(mime, part, *blobs[str(part.blob_id)])
    if part.disposition:
        mime["Content-Disposition"] = part.disposition
        if part.name:
            mime.set_param("filename", part.name, header="Content-Disposition")
    if part.name:
        mime.set_param("name", part.name, replace=True)
    if part.cid:
        mime.set_raw("Content-ID", f"<{part.cid}>")
    if part.language:
        mime.set_raw("Content-Language", fold("Content-Language", ", ".join(part.language)))
    if part.location:
        mime.set_raw("Content-Location", part.location)
    for name, value in part.headers:
        # Non-ASCII octets travel as surrogate escapes, as the parser keeps them.
        mime.set_raw(name, value.encode().decode("ascii", "surrogateescape"))
    return mime


def _set_blob_content(mime: MIMEPart, part: Part, data: bytes, stored_type: str) -> None:
    """
    Put a blob in ``mime`` with the part's type (else the blob's) and a
    transfer encoding keeping the message 7-bit where RFC 2046 allows.
    """
    stored = _PART_POLICY.header_factory("Content-Type", stored_type or "")
    stored_ok = bool(stored_type) and not stored.defects
    media_type = part.type or (stored.content_type if stored_ok else "application/octet-stream")
    charset = part.charset or (stored.params.get("charset") if stored_ok else None)
    if media_type.startswith("multipart/") or not MEDIA_TYPE.fullmatch(media_type):
        media_type = "application/octet-stream"
    lines = data.splitlines()
    short = all(len(line) <= FOLD_AT for line in lines)
    if media_type.startswith("message/"):
        if b"\x00" in data or not all(len(line) <= MAX_LINE for line in lines):
            media_type, cte = "application/octet-stream", "base64"
        else:
            # The generator writes message/* payloads as they are: end lines in CRLF here.
            data = b"".join(line + b"\r\n" for line in lines)
            cte = "7bit" if data.isascii() else "8bit"
    elif media_type.startswith("text/"):
        cte = "7bit" if data.isascii() and short and b"\x00" not in data else "base64"
        if charset is None and not data.isascii():
            try:
                data.decode("utf-8")
                charset = "utf-8"
            except UnicodeDecodeError:
                pass
    else:
        cte = "base64"
    maintype, _, subtype = media_type.partition("/")
    mime.set_content(data, maintype, subtype, cte=cte)
    if charset and maintype == "text":
        mime.set_param("charset", charset, replace=True)


class _Generator(BytesGenerator):
    """
    A :class:`~email.generator.BytesGenerator` that writes the text payload
    of a ``message/*`` part like every other payload, surrogate escapes back
    to octets, where the stdlib encodes it as strict ASCII (so 8bit fails).
    """

    def _encode(self, s: str) -> bytes:
        return s.encode("ascii", "surrogateescape")


def serialise(headers: list[tuple[str, str]], root: MIMEPart) -> bytes:
    """
    The message: our header fields, then the MIME tree's, then its body.

    :raises RuntimeError: if a line ends up over 998 octets or with a bare
        CR or LF, which validation should have made impossible.
    """
    out = BytesIO()
    for name, value in headers:
        out.write(f"{name}: {value}\r\n".encode())
    _Generator(out, policy=_WRITE_POLICY).flatten(root, linesep="\r\n")
    raw = out.getvalue()
    for line in raw.split(b"\r\n"):
        if len(line) > MAX_LINE or b"\r" in line or b"\n" in line:
            raise RuntimeError("composed a line over 998 octets or with a bare CR or LF")
    return raw
