# -*- test-case-name: tests.methods.test_submission -*-
"""
``EmailSubmission/get``, ``/changes``, ``/query``, ``/queryChanges`` and
``/set`` (RFC 8621 §7).

Sending happens when the submission is created: recipients whose address
is local are delivered directly; the others are handed to the configured
smarthost.  Submissions are final at once (no delayed send, so no undo),
and are stored as documents in the mail store with their delivery status.

Envelope recipients are de-duplicated (the domain compared in lower case,
the local part exactly, as RFC 5321 §2.4 and local delivery compare them)
and each local account gets one copy of a submission however many of its
addresses it lists.  What remains is limited per submission
(``tooManyRecipients``, RFC 8621 §7.5) and per user per hour (``rateLimit``,
RFC 8620 §5.3), local recipients counting like remote ones: see
:mod:`jmap_twisted.mail.sendlimits`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from typing import Any

from twisted.logger import Logger

from jmap_twisted.core.registry import CallContext, Registry
from jmap_twisted.core.request import parse_utc_date
from jmap_twisted.errors import InvalidArguments, OverQuota, UnsupportedFilter, UnsupportedSort
from jmap_twisted.identity import TYPE as IDENTITY
from jmap_twisted.interfaces import IMailDelivery, IMailReader, IMailWriter, IRelay
from jmap_twisted.mail.sendlimits import RecipientBudget, SendLimits
from jmap_twisted.methods import querychanges
from jmap_twisted.methods.email_set import EmailSetMethods
from jmap_twisted.methods.identity import SUBMISSION
from jmap_twisted.methods.mailcontext import MailMethods
from jmap_twisted.methods.standard import (
    SetError,
    boolean,
    check_if_in_state,
    check_known,
    resolve_id,
    set_operations,
    split_unchanged,
    unchangeable,
    utc_date,
)

log = Logger()

TYPE = "EmailSubmission"
PROPERTIES = (
    "id",
    "identityId",
    "emailId",
    "threadId",
    "envelope",
    "sendAt",
    "undoStatus",
    "deliveryStatus",
    "dsnBlobIds",
    "mdnBlobIds",
)
#: The server-set properties of an EmailSubmission (RFC 8621 §7), and
#: the other immutable ones.
SERVER_SET = ("id", "threadId", "sendAt", "deliveryStatus", "dsnBlobIds", "mdnBlobIds")
IMMUTABLE = ("identityId", "emailId", "envelope")
_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+\Z")


def strip_bcc(message: bytes) -> bytes:
    """
    The message without its ``Bcc`` header field (and that field's
    continuation lines), which must not be sent.
    """
    lines = message.split(b"\n")
    kept = []
    skipping = False
    for index, line in enumerate(lines):
        if line in (b"", b"\r"):
            kept.extend(lines[index:])
            break
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line[:4].lower() == b"bcc:"
        if not skipping:
            kept.append(line)
    return b"\n".join(kept)


def recipient_key(address: str) -> str:
    """
    What makes two envelope recipients the same: the address with its
    domain in lower case.  The local part is kept as given: RFC 5321 §2.4
    lets the receiving host tell its cases apart, and local delivery does.
    """
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def unique_recipients(rcpt_to: list[Any]) -> list[Any]:
    """
    ``rcptTo`` without repeated addresses (by :func:`recipient_key`), the
    first of each kept with its parameters.
    """
    seen: set[str] = set()
    kept = []
    for recipient in rcpt_to:
        key = recipient_key(recipient["email"])
        if key not in seen:
            seen.add(key)
            kept.append(recipient)
    return kept


def _envelope_from_headers(raw: bytes) -> dict[str, Any]:
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    senders = getaddresses(headers.get_all("sender", []) or headers.get_all("from", []))
    recipients = getaddresses(
        [*headers.get_all("to", []), *headers.get_all("cc", []), *headers.get_all("bcc", [])]
    )
    rcpt = list(dict.fromkeys(a for _, a in recipients if a))
    return {
        "mailFrom": {"email": senders[0][1] if senders else "", "parameters": None},
        "rcptTo": [{"email": a, "parameters": None} for a in rcpt],
    }


def _from_addresses(raw: bytes) -> list[str]:
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    return [a.lower() for _, a in getaddresses(headers.get_all("from", [])) if a]


class SubmissionMethods(MailMethods):
    """
    Sending email.

    :param delivery: delivers to local recipients.
    :param relay: relays to remote recipients (the smarthost), or ``None``
        when this server sends only locally.
    :param email_set: performs the implicit ``Email/set`` of
        ``onSuccessUpdateEmail`` / ``onSuccessDestroyEmail``.
    :param limits: recipients per submission and per user per hour.
    """

    def __init__(
        self,
        *args: Any,
        delivery: IMailDelivery | None,
        relay: IRelay | None,
        email_set: EmailSetMethods,
        limits: SendLimits | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.delivery = delivery
        self.relay = relay
        self.email_set = email_set
        self.limits = limits or SendLimits()
        self.budget = RecipientBudget(self.limits.max_recipients_per_hour, self.clock)

    def install(self, registry: Registry) -> None:
        registry.add_method("EmailSubmission/get", SUBMISSION, self.get)
        registry.add_method("EmailSubmission/changes", SUBMISSION, self.changes)
        registry.add_method("EmailSubmission/query", SUBMISSION, self.query)
        registry.add_method("EmailSubmission/queryChanges", SUBMISSION, self.query_changes)
        registry.add_method("EmailSubmission/set", SUBMISSION, self.set)

    async def get(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments, capability=SUBMISSION)
        return await self.documents_get(context, account, arguments, TYPE, PROPERTIES)

    async def changes(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        response, _ = await self.changes_of(context, arguments, TYPE, SUBMISSION)
        return response

    def _matching(self, reader: IMailReader, arguments: Mapping[str, Any]) -> list[str]:
        flt = arguments.get("filter") or {}
        if not isinstance(flt, dict) or "operator" in flt:
            raise UnsupportedFilter("EmailSubmission filters are single FilterConditions.")
        unknown = set(flt) - {
            "identityIds",
            "emailIds",
            "threadIds",
            "undoStatus",
            "before",
            "after",
        }
        if unknown:
            raise UnsupportedFilter("Unknown filter: " + ", ".join(sorted(unknown)) + ".")
        sort = arguments.get("sort") or [{"property": "sentAt"}]
        if not isinstance(sort, list) or any(
            not isinstance(c, dict) or c.get("property") not in ("emailId", "threadId", "sentAt")
            for c in sort
        ):
            raise UnsupportedSort("EmailSubmissions sort by emailId, threadId or sentAt.")
        documents = reader.documents(TYPE)
        selected = []
        for submission_id, doc in documents.items():
            if "identityIds" in flt and doc["identityId"] not in flt["identityIds"]:
                continue
            if "emailIds" in flt and doc["emailId"] not in flt["emailIds"]:
                continue
            if "threadIds" in flt and doc["threadId"] not in flt["threadIds"]:
                continue
            if "undoStatus" in flt and doc["undoStatus"] != flt["undoStatus"]:
                continue
            sent = parse_utc_date(doc["sendAt"]) or 0.0
            before, after = parse_utc_date(flt.get("before")), parse_utc_date(flt.get("after"))
            if before is not None and sent >= before:
                continue
            if after is not None and sent < after:
                continue
            selected.append(submission_id)

        def key(submission_id: str) -> tuple[Any, ...]:
            doc = documents[submission_id]
            values = {
                "emailId": doc["emailId"],
                "threadId": doc["threadId"],
                "sentAt": doc["sendAt"],
            }
            return (*(values[c["property"]] for c in sort), submission_id)

        selected.sort(key=key)
        if sort and sort[0].get("isAscending") is False:
            selected.reverse()
        return selected

    async def query(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments, capability=SUBMISSION)
        check_known(
            arguments,
            {
                "accountId",
                "filter",
                "sort",
                "position",
                "anchor",
                "anchorOffset",
                "limit",
                "calculateTotal",
            },
        )

        def read(reader: IMailReader) -> dict[str, Any]:
            ids = self._matching(reader, arguments)
            return querychanges.window(account.id, ids, reader.state(TYPE), arguments, True)

        return await self.read(account, read)

    async def query_changes(
        self, context: CallContext, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        account = await self.account(context, arguments, capability=SUBMISSION)
        check_known(
            arguments,
            {
                "accountId",
                "filter",
                "sort",
                "sinceQueryState",
                "maxChanges",
                "upToId",
                "calculateTotal",
            },
        )

        def read(reader: IMailReader) -> dict[str, Any]:
            return querychanges.compute(reader, TYPE, arguments, self._matching(reader, arguments))

        return dict(await self.read(account, read), accountId=account.id)

    async def set(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments, capability=SUBMISSION)
        create, update, destroy = set_operations(
            context, arguments, {"onSuccessUpdateEmail", "onSuccessDestroyEmail"}
        )
        on_update = arguments.get("onSuccessUpdateEmail") or {}
        on_destroy = arguments.get("onSuccessDestroyEmail") or []
        if not isinstance(on_update, dict) or not isinstance(on_destroy, list):
            raise InvalidArguments(
                "onSuccessUpdateEmail must be an object, onSuccessDestroyEmail an array."
            )

        def prepare(reader: IMailReader) -> tuple[str, dict[str, Any]]:
            check_if_in_state(arguments, reader.state(TYPE))
            identities = reader.documents(IDENTITY)
            prepared: dict[str, Any] = {}
            for creation_id, obj in create.items():
                try:
                    prepared[creation_id] = self._prepare(reader, context, obj, identities)
                except SetError as e:
                    prepared[creation_id] = e
            return reader.state(TYPE), prepared

        old_state, prepared = await self.read(account, prepare)
        documents: dict[str, dict[str, Any]] = {}
        envelope_set: set[str] = set()
        not_created: dict[str, Any] = {}
        for creation_id, item in prepared.items():
            if isinstance(item, SetError):
                not_created[creation_id] = item.error
                continue
            if not self.budget.charge(context.principal.user.id, len(item["envelope"]["rcptTo"])):
                not_created[creation_id] = SetError(
                    "rateLimit",
                    f"At most {self.budget.limit} recipients an hour may be sent to;"
                    " try again later.",
                ).error
                continue
            if item.pop("_envelope_set"):
                envelope_set.add(creation_id)
            item["deliveryStatus"] = await self._send(item.pop("_raw"), item["envelope"])
            item["sendAt"] = utc_date(self.clock.seconds())
            documents[creation_id] = item
        ids = {c: "S" + secrets.token_hex(8) for c in documents}

        def record(writer: IMailWriter) -> dict[str, Any]:
            existing = writer.documents(TYPE)
            for creation_id, doc in documents.items():
                writer.put_document(TYPE, ids[creation_id], doc)
                context.created_ids[creation_id] = ids[creation_id]
            updated: dict[str, Any] = {}
            not_updated: dict[str, Any] = {}
            for submission_id, patch in update.items():
                try:
                    _check_update(submission_id, existing.get(submission_id), patch)
                except SetError as e:
                    not_updated[submission_id] = e.error
                else:
                    updated[submission_id] = None
            destroyed, not_destroyed = [], {}
            for submission_id in destroy:
                if submission_id in existing:
                    writer.delete_document(TYPE, submission_id)
                    destroyed.append(submission_id)
                else:
                    not_destroyed[submission_id] = {"type": "notFound"}
            return {
                "accountId": account.id,
                "oldState": old_state,
                "newState": writer.state(TYPE),
                "created": {c: _created(ids[c], documents[c], c in envelope_set) for c in documents}
                or None,
                "updated": updated or None,
                "destroyed": destroyed or None,
                "notCreated": not_created or None,
                "notUpdated": not_updated or None,
                "notDestroyed": not_destroyed or None,
            }

        result = await self.write(account, record)
        await self._on_success(context, account.id, ids, documents, on_update, on_destroy)
        return result

    def _prepare(
        self,
        reader: IMailReader,
        context: CallContext,
        obj: Any,
        identities: Mapping[str, Any],
    ) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise SetError("invalidProperties", "An EmailSubmission must be an object.")
        allowed = {"identityId", "emailId", "envelope"}
        bad = sorted(k for k in obj if k not in allowed)
        if bad:
            raise SetError(
                "invalidProperties",
                "Only identityId, emailId and envelope may be given.",
                properties=bad,
            )
        identity_id = resolve_id(context, obj.get("identityId"))
        if identity_id not in identities:
            raise SetError("invalidProperties", "No such identity.", properties=["identityId"])
        email_id = resolve_id(context, obj.get("emailId"))
        records = reader.emails([email_id]) if isinstance(email_id, str) else {}
        if email_id not in records:
            raise SetError("invalidProperties", "No such email.", properties=["emailId"])
        record = records[email_id]
        raw = reader.message(record.blob_id) or b""
        identity_email = identities[identity_id]["email"].lower()
        if identity_email not in _from_addresses(raw):
            raise SetError("forbiddenFrom", "The email's From does not match the identity.")
        envelope = obj.get("envelope")
        server_set = envelope is None
        if envelope is None:
            envelope = _envelope_from_headers(raw)
        elif (
            not isinstance(envelope, dict)
            or not isinstance(envelope.get("mailFrom"), dict)
            or not isinstance(envelope.get("rcptTo"), list)
        ):
            raise SetError("invalidProperties", "Malformed envelope.", properties=["envelope"])
        if envelope["mailFrom"].get("email", "").lower() not in ("", identity_email):
            raise SetError(
                "forbiddenMailFrom", "The envelope sender must be the identity's address."
            )
        recipients = [r.get("email") for r in envelope["rcptTo"] if isinstance(r, dict)]
        if not recipients:
            raise SetError("noRecipients")
        invalid = [r for r in recipients if not isinstance(r, str) or not _ADDRESS.match(r)]
        if invalid:
            raise SetError("invalidRecipients", invalidRecipients=invalid)
        unique = unique_recipients([r for r in envelope["rcptTo"] if isinstance(r, dict)])
        if len(unique) > self.limits.max_recipients_per_submission:
            raise SetError(
                "tooManyRecipients",
                f"A submission may have at most {self.limits.max_recipients_per_submission}"
                " distinct recipients.",
                maxRecipients=self.limits.max_recipients_per_submission,
            )
        if len(unique) != len(envelope["rcptTo"]):
            envelope = {**envelope, "rcptTo": unique}
            server_set = True
        if len(raw) > 50_000_000:
            raise SetError("tooLarge", maxSize=50_000_000)
        return {
            "identityId": identity_id,
            "emailId": email_id,
            "threadId": record.thread_id,
            "envelope": envelope,
            "undoStatus": "final",
            "dsnBlobIds": [],
            "mdnBlobIds": [],
            "_raw": strip_bcc(raw),
            "_envelope_set": server_set,
        }

    async def _send(self, raw: bytes, envelope: Mapping[str, Any]) -> dict[str, Any]:
        status: dict[str, Any] = {}
        remote = []
        # One copy per local account, however many of its addresses are listed.
        by_account: dict[str, dict[str, str]] = {}
        for recipient in (r["email"] for r in envelope["rcptTo"]):
            account_id = await self.delivery.resolve(recipient) if self.delivery else None
            if account_id is None:
                remote.append(recipient)
                continue
            if account_id not in by_account:
                by_account[account_id] = await self._deliver(account_id, raw)
            status[recipient] = dict(by_account[account_id])
        if remote:
            if self.relay is None:
                for recipient in remote:
                    status[recipient] = {
                        "smtpReply": "550 5.7.1 no route to remote recipients",
                        "delivered": "no",
                        "displayed": "unknown",
                    }
            else:
                mail_from = envelope["mailFrom"].get("email", "")
                replies = await self.relay.send(mail_from, remote, raw)
                for recipient in remote:
                    code, text = replies.get(recipient, (451, "4.4.0 no reply"))
                    status[recipient] = {
                        "smtpReply": f"{code} {text}",
                        "delivered": "queued" if 200 <= code < 300 else "no",
                        "displayed": "unknown",
                    }
        return status

    async def _deliver(self, account_id: str, raw: bytes) -> dict[str, str]:
        try:
            assert self.delivery is not None
            await self.delivery.deliver(account_id, raw)
        except OverQuota:
            # As LMTP answers for a full mailbox: the recipient may make room.
            return {
                "smtpReply": "452 4.2.2 mailbox full",
                "delivered": "no",
                "displayed": "unknown",
            }
        except Exception:
            log.failure("Local delivery of a submission failed")
            return {
                "smtpReply": "451 4.3.0 local delivery failed",
                "delivered": "no",
                "displayed": "unknown",
            }
        return {"smtpReply": "250 2.0.0 delivered", "delivered": "yes", "displayed": "unknown"}

    async def _on_success(
        self,
        context: CallContext,
        account_id: str,
        ids: Mapping[str, str],
        documents: Mapping[str, dict[str, Any]],
        on_update: Mapping[str, Any],
        on_destroy: list[Any],
    ) -> None:
        def email_for(reference: Any) -> str | None:
            if isinstance(reference, str) and reference.startswith("#"):
                creation_id = reference[1:]
                doc = documents.get(creation_id)
                return doc["emailId"] if doc else None
            for creation_id, submission_id in ids.items():
                if submission_id == reference:
                    return str(documents[creation_id]["emailId"])
            return None

        update = {e: patch for ref, patch in on_update.items() if (e := email_for(ref))}
        destroy = [e for ref in on_destroy if (e := email_for(ref))]
        if update or destroy:
            result = await self.email_set.set(
                context, {"accountId": account_id, "update": update, "destroy": destroy}
            )
            context.add_response("Email/set", result)


def _check_update(submission_id: str, document: dict[str, Any] | None, patch: Any) -> None:
    """
    Check an update of a submission.  Submissions are final at once, so
    nothing can change; a patch may repeat the current values of
    server-set properties (RFC 8620 §5.3), immutable ones and
    ``undoStatus``.

    :raises SetError: ``cannotUnsend`` for ``undoStatus: canceled``,
        ``invalidProperties`` for any other change.
    """
    if document is None:
        raise SetError("notFound")
    if not isinstance(patch, dict):
        raise SetError("invalidPatch", "A patch must be an object.")
    current = {"id": submission_id, **document}
    rest, server_set = split_unchanged(patch, current, SERVER_SET)
    rest, immutable = split_unchanged(rest, current, IMMUTABLE)
    undo_status = rest.pop("undoStatus", document["undoStatus"])
    if server_set or immutable or rest:
        raise unchangeable(server_set, immutable + list(rest), "Immutable or unknown")
    if undo_status == "canceled":
        raise SetError("cannotUnsend", "Submissions are sent at once and final.")
    if undo_status != document["undoStatus"]:
        raise SetError(
            "invalidProperties",
            "undoStatus can only be set to canceled.",
            properties=["undoStatus"],
        )


def _created(submission_id: str, document: dict[str, Any], envelope_set: bool) -> dict[str, Any]:
    """
    What a ``created`` entry tells the client (RFC 8620 §5.3): the id, the
    server-set properties, and the envelope when the server made it or
    removed repeated recipients from it.
    """
    created = {"id": submission_id, "sendAt": document["sendAt"], "undoStatus": "final"}
    if envelope_set:
        created["envelope"] = document["envelope"]
    return created


__all__ = ["SubmissionMethods", "boolean", "recipient_key", "unique_recipients"]
