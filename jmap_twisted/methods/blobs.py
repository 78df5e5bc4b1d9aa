"""
Finding a blob by id in an account, wherever it lives: an upload, a stored
message, or a part of a stored message.
"""

from __future__ import annotations

from jmap_twisted.interfaces import IBlobStore, IMailStore
from jmap_twisted.methods.email import ParseCache, split_part_blob_id


class BlobResolver:
    """
    Resolves blob ids for downloads, ``Email/import``, ``Email/parse`` and
    attachments of new drafts.
    """

    def __init__(self, blobs: IBlobStore, store: IMailStore, parsed: ParseCache) -> None:
        self._blobs = blobs
        self._store = store
        self._parsed = parsed

    async def fetch(self, account_id: str, blob_id: str) -> tuple[bytes, str] | None:
        """
        The octets and media type of a blob the account may read, or
        ``None``.
        """
        uploaded = await self._blobs.get(account_id, blob_id)
        if uploaded is not None:
            info, data = uploaded
            return data, info.type
        raw = await self._store.read(account_id, lambda r: r.message(blob_id))
        if raw is not None:
            return raw, "message/rfc822"
        split = split_part_blob_id(blob_id)
        if split is None:
            return None
        message_blob, part_id = split
        parsed_cache = self._parsed

        def part(reader: object) -> tuple[bytes, str] | None:
            message = reader.message(message_blob)  # type: ignore[attr-defined]
            if message is None:
                return None
            try:
                return parsed_cache.get(message_blob, message).part_content(part_id)
            except KeyError:
                return None

        return await self._store.read(account_id, part)
