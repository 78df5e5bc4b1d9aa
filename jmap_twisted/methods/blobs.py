"""
Blobs wherever they live (an upload, a stored message, or a part of a
stored message): finding one by id in an account, and ``Blob/copy``
(RFC 8620 §6.3).

In a sharee's view of an account (see :mod:`~jmap_twisted.methods.access`)
the blobs found are those of the emails they may read, their parts, and
the sharee's own uploads, which are kept in their personal account.
"""

from __future__ import annotations

from typing import Any

from jmap_twisted.core.registry import CORE, CallContext, Registry
from jmap_twisted.errors import InvalidArguments, RequestTooLarge
from jmap_twisted.interfaces import IBlobStore, IMailReader, IMailStore, IPrincipal
from jmap_twisted.methods.access import MailAccess, find_account, may_upload, uploads_account
from jmap_twisted.methods.email import ParseCache, split_part_blob_id
from jmap_twisted.methods.mailcontext import MailMethods
from jmap_twisted.methods.standard import check_known, set_error
from jmap_twisted.records import Account


class BlobResolver:
    """
    Resolves blob ids for downloads, ``Email/import``, ``Email/parse``,
    attachments of new drafts and ``Blob/copy``.
    """

    def __init__(self, blobs: IBlobStore, store: IMailStore, parsed: ParseCache) -> None:
        self._blobs = blobs
        self._access = MailAccess(store)
        self._parsed = parsed

    async def fetch(
        self, account: Account, blob_id: str, uploads: str | None
    ) -> tuple[bytes, str] | None:
        """
        The octets and media type of a blob the user may read in an
        account, or ``None``.

        :param uploads: the account holding the user's uploads for this
            one (see :func:`~jmap_twisted.methods.access.uploads_account`),
            or ``None``.
        """
        if uploads is not None:
            uploaded = await self._blobs.get(uploads, blob_id)
            if uploaded is not None:
                info, data = uploaded
                return data, info.type
        split = split_part_blob_id(blob_id)
        parsed_cache = self._parsed

        def find(reader: IMailReader) -> tuple[bytes, str] | None:
            raw = reader.message(blob_id)
            if raw is not None:
                return raw, "message/rfc822"
            if split is None:
                return None
            message_blob, part_id = split
            message = reader.message(message_blob)
            if message is None:
                return None
            try:
                return parsed_cache.get(message_blob, message).part_content(part_id)
            except KeyError:
                return None

        return await self._access.read(account, find)

    async def download(
        self, principal: IPrincipal, account_id: str, blob_id: str
    ) -> tuple[bytes, str] | None:
        """
        A blob as ``/download`` serves it (RFC 8620 §6.2): ``None`` when
        the user has no such account or may not read such a blob there,
        which look the same.
        """
        account = find_account(principal, account_id)
        if account is None:
            return None
        return await self.fetch(account, blob_id, uploads_account(account, principal))


class BlobMethods(MailMethods):
    """
    ``Blob/copy``: blobs of one account stored in another, so that the
    other can use them (in ``Email/import``, as attachments, ...).

    Any blob the source account can read may be copied: an upload, a
    stored message or one of its parts.  The copy is an upload of the
    target account with the same octets and media type; as blob ids are
    derived from the content, its id is the one an upload of those octets
    would get.  A sharee copies from what they may read in a shared
    account, and into one where they may add emails (the copy is then
    their upload, kept in their personal account).

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
        principal = context.principal
        sources = uploads_account(from_account, principal)
        target = uploads_account(account, principal) if may_upload(account) else None
        for blob_id in dict.fromkeys(blob_ids):
            blob = await self.resolver.fetch(from_account, blob_id, sources)
            if blob is None:
                not_copied[blob_id] = set_error(
                    "blobNotFound", "The source account has no blob with this id."
                )
                continue
            if target is None:
                not_copied[blob_id] = set_error(
                    "forbidden",
                    "Storing blobs in this account needs the right mayAddItems (i)"
                    " on one of its mailboxes.",
                )
                continue
            data, media_type = blob
            info = await self.blobs.put(target, data, media_type)
            copied[blob_id] = info.blob_id
        return {
            "fromAccountId": from_account.id,
            "accountId": account.id,
            "copied": copied or None,
            "notCopied": not_copied or None,
        }
