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

Text from ``bodyValues`` reads back as written (RFC 8621 §4.1.4 turns
CRLF into LF when reading): its line breaks (CRLF, LF or a lone CR) are
written CRLF, and nothing is added at its end.  In a multipart the line
break before a delimiter belongs to the delimiter; a text that is the
whole message and does not end in a line break is quoted-printable, ended
by a soft line break, so that the message still ends in CRLF.  A
``bodyValues`` part of another type holds the text's UTF-8 octets, written
like a blob of that type.
"""

from __future__ import annotations

import base64
import binascii
import re
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
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def build_mime(
    part: Part, blobs: Mapping[str, tuple[bytes, str]], *, whole: bool = True
) -> MIMEPart:
    """
    The stdlib MIME tree of a validated part.

    :param whole: whether the part is the whole message (its root), not
        one of the parts of a multipart.
    """
    mime = MIMEPart(policy=_PART_POLICY)
    if part.sub_parts is not None:
        mime["Content-Type"] = part.type or "multipart/mixed"
        for child in part.sub_parts:
            mime.attach(build_mime(child, blobs, whole=False))
        if part.type == "multipart/related":
            first = part.sub_parts[0].type or "application/octet-stream"
            mime.set_param("type", first, replace=True)
    elif part.text is not None and (part.type or "text/plain").startswith("text/"):
        _set_text_content(mime, part.type or "text/plain", part.text, whole)
    elif part.text is not None:
        _set_blob_content(mime, part, part.text.encode(), "")
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


def _set_text_content(mime: MIMEPart, media_type: str, text: str, whole: bool) -> None:
    """
    Put text from ``bodyValues`` in ``mime`` as UTF-8, in a transfer
    encoding that gives back exactly the text (its line breaks as CRLF).
    """
    data = _LINE_BREAK.sub("\n", text).encode()
    payload: bytes
    ends_open = bool(data) and not data.endswith(b"\n")
    if (
        data.isascii()
        and b"\x00" not in data
        and all(len(line) <= FOLD_AT for line in data.split(b"\n"))
        and not (whole and ends_open)
    ):
        cte, payload = "7bit", data
    else:
        quoted = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
        if ends_open:
            quoted += b"=\n"  # a soft line break: the text ends, the line does not
        based = base64.encodebytes(data.replace(b"\n", b"\r\n"))
        cte, payload = (
            ("quoted-printable", quoted) if len(quoted) <= len(based) else ("base64", based)
        )
    mime["Content-Type"] = media_type
    mime.set_param("charset", "utf-8")
    mime["Content-Transfer-Encoding"] = cte
    # The generator writes each LF of the payload as CRLF.
    mime.set_payload(payload.decode("ascii"))


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
