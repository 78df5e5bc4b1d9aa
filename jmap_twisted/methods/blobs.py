"""
Blobs wherever they live (an upload, a stored message, or a part of a
stored message): finding one by id in an account, and ``Blob/copy``
(RFC 8620 §6.3).
"""

from __future__ import annotations

from typing import Any

from jmap_twisted.core.registry import CORE, CallContext, Registry
from jmap_twisted.errors import InvalidArguments, RequestTooLarge
from jmap_twisted.interfaces import IBlobStore, IMailStore
from jmap_twisted.methods.email import ParseCache, split_part_blob_id
from jmap_twisted.methods.mailcontext import MailMethods
from jmap_twisted.methods.standard import check_known, set_error


class BlobResolver:
    """
    Resolves blob ids for downloads, ``Email/import``, ``Email/parse``,
    attachments of new drafts and ``Blob/copy``.
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


class BlobMethods(MailMethods):
    """
    ``Blob/copy``: blobs of one account stored in another, so that the
    other can use them (in ``Email/import``, as attachments, ...).

    Any blob the source account can read may be copied: an upload, a
    stored message or one of its parts.  The copy is an upload of the
    target account with the same octets and media type; as blob ids are
    derived from the content, its id is the one an upload of those octets
    would get.

    :param resolver: finds the blobs to copy.
    """

    def __init__(self, *args: Any, resolver: BlobResolver, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resolver = resolver

    def install(self, registry: Registry) -> None:
        registry.add_method("Blob/copy", CORE, self.copy)

    async def copy(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        """
        ``Blob/copy`` (RFC 8620 §6.3): ``copied`` maps each blob id copied
        to its id in the target account; a blob the source account cannot
        read is ``blobNotFound`` in ``notCopied``.
        """
        check_known(arguments, {"fromAccountId", "accountId", "blobIds"})
        from_account = await self.from_account(context, arguments)
        account = await self.account(context, arguments)
        blob_ids = arguments.get("blobIds")
        if not isinstance(blob_ids, list) or not all(isinstance(b, str) for b in blob_ids):
            raise InvalidArguments("'blobIds' must be an array of blob ids.")
        limit = context.limits.max_objects_in_set
        if len(blob_ids) > limit:
            raise RequestTooLarge(f"At most {limit} blobs per call (maxObjectsInSet).")
        copied: dict[str, str] = {}
        not_copied: dict[str, Any] = {}
        for blob_id in dict.fromkeys(blob_ids):
            blob = await self.resolver.fetch(from_account.id, blob_id)
            if blob is None:
                not_copied[blob_id] = set_error(
                    "blobNotFound", "The source account has no blob with this id."
                )
                continue
            data, media_type = blob
            info = await self.blobs.put(account.id, data, media_type)
            copied[blob_id] = info.blob_id
        return {
            "fromAccountId": from_account.id,
            "accountId": account.id,
            "copied": copied or None,
            "notCopied": not_copied or None,
        }
