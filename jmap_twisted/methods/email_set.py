"""
Changing emails: ``Email/set``, ``Email/import``, ``Email/copy`` and
``Email/parse`` (RFC 8621 §4.6–§4.9).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from jmap_twisted.core.registry import CallContext, Registry
from jmap_twisted.core.request import is_id, parse_utc_date
from jmap_twisted.errors import (
    AccountNotFound,
    FromAccountNotFound,
    InvalidArguments,
    OverQuota,
    RequestTooLarge,
    StateMismatch,
)
from jmap_twisted.interfaces import IMailReader, IMailWriter
from jmap_twisted.methods.access import uploads_account
from jmap_twisted.methods.blobs import BlobResolver
from jmap_twisted.methods.email import (
    DEFAULT_PROPERTIES,
    METADATA,
    PROPERTIES,
    BodyOptions,
    ParseCache,
    check_properties,
    message_json,
    metadata_json,
)
from jmap_twisted.methods.keywords import MAX_KEYWORDS, is_keyword
from jmap_twisted.methods.mailcontext import MAIL, MailMethods
from jmap_twisted.methods.quota import over_quota_error
from jmap_twisted.methods.standard import (
    SetError,
    apply_patch,
    boolean,
    check_if_in_state,
    check_known,
    set_operations,
    split_unchanged,
    string,
    unchangeable,
)
from jmap_twisted.mime.compose import ComposeError, compose_message
from jmap_twisted.records import Account, EmailRecord

#: The server-set properties of an Email (RFC 8621 §4.1.1, §4.1.4): a
#: patch may repeat their current values, like that of ``receivedAt``
#: (immutable); the header and body properties are immutable too, but are
#: not compared: they cannot be in a patch.
SERVER_SET = ("id", "blobId", "threadId", "size", "hasAttachment", "preview")


def _blob_ids(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        blob_id = value.get("blobId")
        if isinstance(blob_id, str):
            yield blob_id
        for child in value.values():
            yield from _blob_ids(child)
    elif isinstance(value, list):
        for child in value:
            yield from _blob_ids(child)


def _mailbox_set(value: Any, context: CallContext) -> set[str] | None:
    if not isinstance(value, dict) or not value:
        return None
    result = set()
    for key, flag in value.items():
        if flag is not True:
            return None
        if key.startswith("#"):
            key = context.created_ids.get(key[1:], key)
        result.add(key)
    return result


def _keyword_set(value: Any) -> set[str] | None:
    if value is None:
        return set()
    if not isinstance(value, dict):
        return None
    if not all(is_keyword(k) and v is True for k, v in value.items()):
        return None
    return {k.lower() for k in value}


def _check_new_email(
    reader: IMailReader,
    mailbox_ids: set[str] | None,
    keywords: set[str] | None,
    problems: dict[str, str] | None = None,
) -> None:
    """
    :raises SetError: ``invalidProperties`` naming each of ``problems``
        (property: why) and bad ``mailboxIds`` or ``keywords``, or
        ``tooManyKeywords``.
    """
    problems = dict(problems or {})
    if mailbox_ids is None or not mailbox_ids:
        problems["mailboxIds"] = "must map at least one Mailbox id to true"
    else:
        unknown = sorted(mailbox_ids - {m.id for m in reader.mailboxes()})
        if unknown:
            problems["mailboxIds"] = "no such Mailbox: " + ", ".join(unknown)
    if keywords is None:
        problems["keywords"] = "must map keywords (RFC 8621 §4.1.1) to true"
    if problems:
        raise SetError(
            "invalidProperties",
            "; ".join(f"{name}: {why}" for name, why in problems.items()),
            properties=list(problems),
        )
    assert keywords is not None
    if len(keywords) > MAX_KEYWORDS:
        raise SetError("tooManyKeywords", f"At most {MAX_KEYWORDS} keywords.")


def _created(record: EmailRecord) -> dict[str, Any]:
    """
    The server-set properties returned for a created, imported or copied
    email.
    """
    return {
        "id": record.id,
        "blobId": record.blob_id,
        "threadId": record.thread_id,
        "size": record.size,
    }


def _create_each(
    context: CallContext, items: Mapping[str, Any], make: Callable[[Any], EmailRecord]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """
    Make an email of each creation; return ``created`` and ``notCreated``,
    recording the new ids for later ``#creationId`` references.
    """
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for creation_id, item in items.items():
        try:
            record = make(item)
        except SetError as e:
            not_created[creation_id] = e.error
            continue
        except OverQuota as e:
            not_created[creation_id] = over_quota_error(e)
            continue
        context.created_ids[creation_id] = record.id
        created[creation_id] = _created(record)
    return created, not_created


class EmailSetMethods(MailMethods):
    """
    Methods that create, change, copy and parse emails.

    :param resolver: finds blobs for imports, parses and attachments.
    :param parsed: the parsed-message cache shared with ``Email/get``.
    :param hostname: the domain of generated Message-IDs.
    """

    def __init__(
        self, *args: Any, resolver: BlobResolver, parsed: ParseCache, hostname: str, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.resolver = resolver
        self.parsed = parsed
        self.hostname = hostname

    def install(self, registry: Registry) -> None:
        registry.add_method("Email/set", MAIL, self.set)
        registry.add_method("Email/import", MAIL, self.import_)
        registry.add_method("Email/copy", MAIL, self.copy)
        registry.add_method("Email/parse", MAIL, self.parse)

    def _now(self) -> float:
        return float(self.clock.seconds())

    async def _fetch_all(
        self, context: CallContext, account: Account, blob_ids: Iterator[str]
    ) -> dict[str, tuple[bytes, str]]:
        found = {}
        uploads = uploads_account(account, context.principal)
        for blob_id in dict.fromkeys(blob_ids):
            blob = await self.resolver.fetch(account, blob_id, uploads)
            if blob is not None:
                found[blob_id] = blob
        return found

    async def set(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments)
        create, update, destroy = set_operations(context, arguments)
        blobs = await self._fetch_all(context, account, _blob_ids(create))
        now = self._now()
        hostname = self.hostname

        def write(writer: IMailWriter) -> dict[str, Any]:
            old_state = writer.state("Email")
            check_if_in_state(arguments, old_state)
            created, not_created = _create_each(
                context,
                create,
                lambda obj: self._create(writer, context, obj, blobs, now, hostname),
            )
            updated: dict[str, Any] = {}
            not_updated: dict[str, Any] = {}
            records = writer.emails(list(update))
            for email_id, patch in update.items():
                try:
                    self._update(writer, context, records.get(email_id), patch)
                except SetError as e:
                    not_updated[email_id] = e.error
                else:
                    updated[email_id] = None
            destroyed: list[str] = []
            not_destroyed: dict[str, Any] = {}
            existing = writer.emails(destroy)
            for email_id in destroy:
                if email_id not in existing:
                    not_destroyed[email_id] = {"type": "notFound"}
                    continue
                try:
                    writer.destroy_email(email_id)
                except SetError as e:  # a sharee's missing right
                    not_destroyed[email_id] = e.error
                    continue
                existing.pop(email_id)
                destroyed.append(email_id)
            return {
                "accountId": account.id,
                "oldState": old_state,
                "newState": writer.state("Email"),
                "created": created or None,
                "updated": updated or None,
                "destroyed": destroyed or None,
                "notCreated": not_created or None,
                "notUpdated": not_updated or None,
                "notDestroyed": not_destroyed or None,
            }

        return await self.write(account, write)

    def _create(
        self,
        writer: IMailWriter,
        context: CallContext,
        obj: Any,
        blobs: Mapping[str, tuple[bytes, str]],
        now: float,
        hostname: str,
    ) -> EmailRecord:
        if not isinstance(obj, dict):
            raise SetError("invalidProperties", "An Email must be an object.")
        try:
            composed = compose_message(
                obj,
                fetch_blob=blobs.get,
                now=datetime.fromtimestamp(now, UTC),
                host=hostname,
                # As advertised in maxSizeAttachmentsPerEmail.
                max_size=context.limits.max_size_upload,
            )
        except ComposeError as e:
            error = e.to_set_error()
            raise SetError(error.pop("type"), error.pop("description", None), **error) from None
        mailbox_ids = _mailbox_set(composed.mailbox_ids, context)
        keywords = set(composed.keywords)
        _check_new_email(writer, mailbox_ids, keywords)
        assert mailbox_ids is not None
        return writer.add_email(
            composed.raw, mailbox_ids, keywords, composed.received_at.timestamp()
        )

    def _update(
        self, writer: IMailWriter, context: CallContext, record: EmailRecord | None, patch: Any
    ) -> None:
        if record is None:
            raise SetError("notFound")
        if not isinstance(patch, dict):
            raise SetError("invalidPatch", "A patch must be an object.")
        current_json = metadata_json(record)
        patch, server_set = split_unchanged(patch, current_json, SERVER_SET)
        patch, immutable = split_unchanged(patch, current_json, ("receivedAt",))
        immutable += [p for p in patch if p.split("/")[0] not in ("keywords", "mailboxIds")]
        if server_set or immutable:
            raise unchangeable(
                server_set,
                immutable,
                "Immutable (only keywords and mailboxIds change; receivedAt may be repeated)",
            )
        for path, value in patch.items():
            if "/" in path and value not in (True, None):
                raise SetError("invalidPatch", f"'{path}' can only be set to true or null.")
            if path.startswith("keywords/") and not is_keyword(
                path[9:].replace("~1", "/").replace("~0", "~")
            ):
                raise SetError("invalidProperties", "Invalid keyword.", properties=["keywords"])
        current = {
            "keywords": dict.fromkeys(record.keywords, True),
            "mailboxIds": dict.fromkeys(record.mailbox_ids, True),
        }
        lowered = {
            (path if not path.startswith("keywords/") else "keywords/" + path[9:].lower()): value
            for path, value in patch.items()
        }
        changed = apply_patch(current, lowered)
        keywords = _keyword_set(changed.get("keywords"))
        mailbox_ids = _mailbox_set(changed.get("mailboxIds"), context)
        _check_new_email(writer, mailbox_ids, keywords)
        assert mailbox_ids is not None and keywords is not None
        writer.update_email(record.id, mailbox_ids=mailbox_ids, keywords=keywords)

    async def import_(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments)
        check_known(arguments, {"accountId", "ifInState", "emails"})
        emails = arguments.get("emails")
        if not isinstance(emails, dict) or not all(is_id(k) for k in emails):
            raise InvalidArguments("'emails' must map creation ids to EmailImport objects.")
        if len(emails) > context.limits.max_objects_in_set:
            raise RequestTooLarge()
        blob_ids = [e.get("blobId") for e in emails.values() if isinstance(e, dict)]
        blobs = await self._fetch_all(
            context, account, iter([b for b in blob_ids if isinstance(b, str) and is_id(b)])
        )
        now = self._now()

        def write(writer: IMailWriter) -> dict[str, Any]:
            old_state = writer.state("Email")
            check_if_in_state(arguments, old_state)
            created, not_created = _create_each(
                context, emails, lambda item: self._import_one(writer, context, item, blobs, now)
            )
            return {
                "accountId": account.id,
                "oldState": old_state,
                "newState": writer.state("Email"),
                "created": created or None,
                "notCreated": not_created or None,
            }

        return await self.write(account, write)

    def _import_one(
        self,
        writer: IMailWriter,
        context: CallContext,
        item: Any,
        blobs: Mapping[str, tuple[bytes, str]],
        now: float,
    ) -> EmailRecord:
        if not isinstance(item, dict):
            raise SetError("invalidProperties", "An EmailImport must be an object.")
        # RFC 8621 §4.8: a blobId, mailboxIds or keywords that is "missing,
        # wrong type, id not found" is invalidProperties (not blobNotFound).
        problems = {
            name: "is not a property of an EmailImport"
            for name in sorted(set(item) - {"blobId", "mailboxIds", "keywords", "receivedAt"})
        }
        blob_id = item.get("blobId")
        blob = None
        if not isinstance(blob_id, str) or not is_id(blob_id):
            problems["blobId"] = "must be the Id of a blob holding the message"
        else:
            blob = blobs.get(blob_id)
            if blob is None:
                problems["blobId"] = "no blob with this id is available to the account"
        received_at = now
        if item.get("receivedAt") is not None:
            parsed = parse_utc_date(item["receivedAt"])
            if parsed is None:
                problems["receivedAt"] = "must be a UTCDate"
            else:
                received_at = parsed
        mailbox_ids = _mailbox_set(item.get("mailboxIds"), context)
        keywords = _keyword_set(item.get("keywords"))
        _check_new_email(writer, mailbox_ids, keywords, problems)
        assert mailbox_ids is not None and keywords is not None and blob is not None
        return writer.add_email(blob[0], mailbox_ids, keywords, received_at)

    async def copy(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        check_known(
            arguments,
            {
                "fromAccountId",
                "ifFromInState",
                "accountId",
                "ifInState",
                "create",
                "onSuccessDestroyOriginal",
                "destroyFromIfInState",
            },
        )
        try:
            from_account = await self.account(context, arguments, "fromAccountId")
        except AccountNotFound:
            raise FromAccountNotFound("The user has no account with this fromAccountId.") from None
        account = await self.account(context, arguments)
        if from_account.id == account.id:
            raise InvalidArguments("fromAccountId and accountId must differ.")
        create = arguments.get("create")
        if not isinstance(create, dict) or not all(is_id(k) for k in create):
            raise InvalidArguments("'create' must map creation ids to Email objects.")
        if len(create) > context.limits.max_objects_in_set:
            raise RequestTooLarge()
        destroy_original = boolean(arguments, "onSuccessDestroyOriginal", False)
        source_ids = [o.get("id") for o in create.values() if isinstance(o, dict)]

        def read_sources(reader: IMailReader) -> tuple[str, dict[str, tuple[EmailRecord, bytes]]]:
            state = reader.state("Email")
            expected = arguments.get("ifFromInState")
            if expected is not None and expected != state:
                raise StateMismatch()
            records = reader.emails([i for i in source_ids if isinstance(i, str)])
            return state, {i: (r, reader.message(r.blob_id) or b"") for i, r in records.items()}

        _, sources = await self.read(from_account, read_sources)
        now = self._now()

        def write(writer: IMailWriter) -> dict[str, Any]:
            old_state = writer.state("Email")
            check_if_in_state(arguments, old_state)
            created, not_created = _create_each(
                context, create, lambda obj: self._copy_one(writer, context, obj, sources, now)
            )
            return {
                "fromAccountId": from_account.id,
                "accountId": account.id,
                "oldState": old_state,
                "newState": writer.state("Email"),
                "created": created or None,
                "notCreated": not_created or None,
            }

        result = await self.write(account, write)
        if destroy_original and result["created"]:
            copied = [create[c]["id"] for c in result["created"]]
            destroy_args: dict[str, Any] = {"accountId": from_account.id, "destroy": copied}
            if arguments.get("destroyFromIfInState") is not None:
                destroy_args["ifInState"] = arguments["destroyFromIfInState"]
            try:
                destroyed = await self.set(context, destroy_args)
            except StateMismatch as e:
                context.add_response("error", e.to_arguments())
            else:
                context.add_response("Email/set", destroyed)
        return result

    def _copy_one(
        self,
        writer: IMailWriter,
        context: CallContext,
        obj: Any,
        sources: Mapping[str, tuple[EmailRecord, bytes]],
        now: float,
    ) -> EmailRecord:
        if not isinstance(obj, dict):
            raise SetError("invalidProperties", "An Email must be an object.")
        unknown = sorted(set(obj) - {"id", "mailboxIds", "keywords", "receivedAt"})
        if unknown:
            raise SetError(
                "invalidProperties",
                "Only id, mailboxIds, keywords and receivedAt may be given.",
                properties=unknown,
            )
        source = sources.get(obj.get("id"))  # type: ignore[arg-type]
        if source is None:
            raise SetError("notFound", "No such email in the source account.")
        record, raw = source
        received_at = record.received_at
        if "receivedAt" in obj:
            parsed = parse_utc_date(obj["receivedAt"])
            if parsed is None:
                raise SetError(
                    "invalidProperties", "receivedAt must be a UTCDate.", properties=["receivedAt"]
                )
            received_at = parsed
        mailbox_ids = _mailbox_set(obj.get("mailboxIds"), context)
        keywords = _keyword_set(obj["keywords"]) if "keywords" in obj else set(record.keywords)
        _check_new_email(writer, mailbox_ids, keywords)
        assert mailbox_ids is not None and keywords is not None
        return writer.add_email(raw, mailbox_ids, keywords, received_at)

    async def parse(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments)
        check_known(
            arguments,
            {
                "accountId",
                "blobIds",
                "properties",
                "bodyProperties",
                "fetchTextBodyValues",
                "fetchHTMLBodyValues",
                "fetchAllBodyValues",
                "maxBodyValueBytes",
            },
        )
        blob_ids = arguments.get("blobIds")
        if not isinstance(blob_ids, list) or not all(isinstance(b, str) for b in blob_ids):
            raise InvalidArguments("'blobIds' must be an array of Ids.")
        if len(blob_ids) > context.limits.max_objects_in_get:
            raise RequestTooLarge()
        default = [p for p in DEFAULT_PROPERTIES if p not in METADATA or p in ("blobId", "size")]
        properties = check_properties(
            arguments.get("properties"), PROPERTIES, default, "properties"
        )
        options = BodyOptions(arguments)
        parsed: dict[str, Any] = {}
        not_parsable: list[str] = []
        not_found: list[str] = []
        for blob_id in dict.fromkeys(blob_ids):
            blob = await self.resolver.fetch(
                account, blob_id, uploads_account(account, context.principal)
            )
            if blob is None:
                not_found.append(blob_id)
                continue
            data, _ = blob
            wanted = [p for p in properties if p not in METADATA]

            def render(
                _: object, blob_id: str = blob_id, data: bytes = data, wanted: list[str] = wanted
            ) -> dict[str, Any]:
                # Runs on a store thread: parsing a large blob must not
                # hold up the reactor.
                return message_json(self.parsed.get(blob_id, data), blob_id, wanted, options)

            try:
                email = await self.read(account, render)
            except Exception:
                not_parsable.append(blob_id)
                continue
            for prop in properties:
                if prop in METADATA:
                    email[prop] = {"blobId": blob_id, "size": len(data)}.get(prop)
            parsed[blob_id] = email
        return {
            "accountId": account.id,
            "parsed": parsed or None,
            "notParsable": not_parsable or None,
            "notFound": not_found or None,
        }


__all__ = ["EmailSetMethods", "string"]
