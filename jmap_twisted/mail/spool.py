# -*- test-case-name: tests.mail.test_spool -*-
"""
The octets of a message arriving over SMTP or LMTP (RFC 5321 §4.1.1.4),
held once however many recipients it has and whatever its shape.

Twisted hands each recipient's ``IMessage`` every line of ``DATA``.
Keeping a list of lines per recipient costs tens of octets per line per
recipient (a message of empty lines grows fifty-fold, times its
recipients).  A :class:`MessageSpool` keeps the lines of one transaction
as octets instead: in memory while small, in an anonymous temporary file
(``TMPDIR``) past :data:`MEMORY_LIMIT`.  The recipients' messages share
it, and take turns (:meth:`MessageSpool.turn`) to read it back, so one
copy at most is in memory while the copies are stored.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from twisted.internet.defer import DeferredLock

#: Octets of a message kept in memory before it moves to a temporary file.
MEMORY_LIMIT = 1024 * 1024
#: Octets gathered before they are written to the spool.
_CHUNK = 64 * 1024


class MessageSpool:
    """
    One message's octets, each line ended by CRLF, up to ``max_size``.

    A message of more than ``max_size`` octets (lines with their CRLF) is
    marked :attr:`too_big` and its octets are dropped at once; lines after
    that are ignored.

    :param max_size: the largest message kept, in octets.
    :param memory_limit: the octets kept in memory before the spool moves
        to a temporary file.
    """

    def __init__(self, max_size: int, memory_limit: int = MEMORY_LIMIT) -> None:
        self._max_size = max_size
        self._memory_limit = memory_limit
        self._file: tempfile.SpooledTemporaryFile[bytes] | None = tempfile.SpooledTemporaryFile(
            max_size=memory_limit
        )
        self._pending = bytearray()
        self._lock = DeferredLock()
        self._holders = 0
        self._writer_chosen = False
        #: Octets received so far (lines and their CRLF), counted past the limit too.
        self.size = 0
        #: More than ``max_size`` octets arrived.
        self.too_big = False

    @property
    def large(self) -> bool:
        """
        Whether the message is past the memory limit (so on disk).
        """
        return self.size > self._memory_limit

    def add_line(self, line: bytes) -> None:
        """
        Append ``line`` (without its CRLF, dot-stuffing undone) and a CRLF.
        """
        if self.too_big or self._file is None:
            return
        self.size += len(line) + 2
        if self.size > self._max_size:
            self.too_big = True
            self.close()
            return
        self._pending += line
        self._pending += b"\r\n"
        if len(self._pending) >= _CHUNK:
            self._file.write(self._pending)
            self._pending.clear()

    def add_lines(self, octets: bytes) -> None:
        """
        Append ``octets``: whole lines, each ended by CRLF, dot-stuffing
        undone; the same as :meth:`add_line` for each, in one step.
        """
        if self.too_big or self._file is None:
            return
        self.size += len(octets)
        if self.size > self._max_size:
            self.too_big = True
            self.close()
            return
        if len(octets) >= _CHUNK:
            if self._pending:
                self._file.write(self._pending)
                self._pending.clear()
            self._file.write(octets)
            return
        self._pending += octets
        if len(self._pending) >= _CHUNK:
            self._file.write(self._pending)
            self._pending.clear()

    def hold(self) -> bool:
        """
        Count one more user of the spool (a recipient's message); the
        spool is closed when the last one releases it (:meth:`release`).

        :return: whether this is the first user, the one to
            :meth:`add_line` (or :meth:`add_lines`) the message's lines.
        """
        self._holders += 1
        first, self._writer_chosen = not self._writer_chosen, True
        return first

    def release(self) -> None:
        """
        A user is done with the spool: close it when it was the last.
        """
        self._holders -= 1
        if self._holders <= 0:
            self.close()

    def close(self) -> None:
        """
        Drop the octets and the temporary file.
        """
        if self._file is not None:
            self._file.close()
            self._file = None
        self._pending = bytearray()

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """
        Wait for the other users of the spool to be done reading and
        storing their copy, so that copies are made one at a time.
        """
        await self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    def octets(self, prefix: bytes = b"") -> bytes:
        """
        ``prefix`` followed by the message, as one ``bytes`` object (the
        one copy in memory, made without an intermediate one).

        :raises ValueError: the spool is closed.
        """
        if self._file is None:
            raise ValueError("the message spool is closed")
        out = io.BytesIO()
        out.write(prefix)
        self._file.seek(0)
        shutil.copyfileobj(self._file, out, _CHUNK * 16)
        self._file.seek(0, io.SEEK_END)
        out.write(self._pending)
        # getvalue() hands over the buffer itself when nothing else refers to it.
        return out.getvalue()
