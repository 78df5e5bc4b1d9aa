"""
Mailbox methods (RFC 8621 §2): ``Mailbox/get``, ``/changes``, ``/query``,
``/queryChanges`` and ``/set``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jmap_twisted.core.registry import CallContext, Registry
from jmap_twisted.core.request import is_id
from jmap_twisted.errors import InvalidArguments, UnsupportedFilter, UnsupportedSort
from jmap_twisted.interfaces import IMailReader, IMailWriter
from jmap_twisted.methods import querychanges
from jmap_twisted.methods.mailcontext import MAIL, MailMethods
from jmap_twisted.methods.standard import (
    SetError,
    apply_patch,
    boolean,
    check_if_in_state,
    check_known,
    get_ids,
    get_properties,
    not_found,
    set_operations,
    signed,
    split_unchanged,
    unchangeable,
    unsigned,
)
from jmap_twisted.records import MailboxCounts, MailboxRecord

PROPERTIES = (
    "id",
    "name",
    "parentId",
    "role",
    "sortOrder",
    "totalEmails",
    "unreadEmails",
    "totalThreads",
    "unreadThreads",
    "myRights",
    "isSubscribed",
)
COUNT_PROPERTIES = ["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"]
SERVER_SET = {"id", *COUNT_PROPERTIES, "myRights"}
#: IANA "Mailbox Role" registry (RFC 8457 and RFC 8621).
ROLES = frozenset(
    {
        "all",
        "archive",
        "drafts",
        "flagged",
        "important",
        "inbox",
        "junk",
        "sent",
        "subscribed",
        "trash",
    }
)
MAX_NAME_OCTETS = 255
MAX_DEPTH = 10

RIGHTS = {
    "mayReadItems": True,
    "mayAddItems": True,
    "mayRemoveItems": True,
    "maySetSeen": True,
    "maySetKeywords": True,
    "mayCreateChild": True,
    "mayRename": True,
    "mayDelete": True,
    "maySubmit": True,
}


def to_json(record: MailboxRecord, counts: MailboxCounts) -> dict[str, Any]:
    """
    The Mailbox object of a record.
    """
    return {
        "id": record.id,
        "name": record.name,
        "parentId": record.parent_id,
        "role": record.role,
        "sortOrder": record.sort_order,
        "totalEmails": counts.total_emails,
        "unreadEmails": counts.unread_emails,
        "totalThreads": counts.total_threads,
        "unreadThreads": counts.unread_threads,
        "myRights": dict(
            RIGHTS, mayDelete=record.role != "inbox", mayRename=record.role != "inbox"
        ),
        "isSubscribed": record.is_subscribed,
    }


class MailboxMethods(MailMethods):
    """
    The Mailbox methods over a mail store.
    """

    def install(self, registry: Registry) -> None:
        registry.add_method("Mailbox/get", MAIL, self.get)
        registry.add_method("Mailbox/changes", MAIL, self.changes)
        registry.add_method("Mailbox/query", MAIL, self.query)
        registry.add_method("Mailbox/queryChanges", MAIL, self.query_changes)
        registry.add_method("Mailbox/set", MAIL, self.set)

    async def get(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments)
        check_known(arguments, {"accountId", "ids", "properties"})
        ids = get_ids(context, arguments)
        properties = get_properties(arguments, "properties", PROPERTIES, PROPERTIES)

        def read(reader: IMailReader) -> dict[str, Any]:
            mailboxes = {m.id: m for m in reader.mailboxes()}
            wanted = list(mailboxes) if ids is None else [i for i in ids if i in mailboxes]
            counts = reader.mailbox_counts(wanted)
            listed = []
            for mailbox_id in wanted:
                full = to_json(mailboxes[mailbox_id], counts[mailbox_id])
                listed.append({p: full[p] for p in ("id", *properties)})
            return {
                "accountId": account.id,
                "state": reader.state("Mailbox"),
                "list": listed,
                "notFound": [] if ids is None else not_found(ids, mailboxes),
            }

        return await self.store.read(account.id, read)

    async def changes(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        response, batch = await self.changes_of(context, arguments, "Mailbox")
        response["updatedProperties"] = COUNT_PROPERTIES if batch.counts_only else None
        return response

    async def query(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments)
        request = _QueryRequest(arguments)

        def read(reader: IMailReader) -> tuple[list[str], str]:
            return request.run(reader.mailboxes()), reader.state("Mailbox")

        ids, state = await self.store.read(account.id, read)
        return querychanges.window(account.id, ids, state, arguments, can_calculate_changes=True)

    async def query_changes(
        self, context: CallContext, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        account = await self.account(context, arguments)
        request = _QueryRequest(arguments, query_changes=True)

        def read(reader: IMailReader) -> Any:
            return querychanges.compute(
                reader, "Mailbox", arguments, request.run(reader.mailboxes())
            )

        return dict(await self.store.read(account.id, read), accountId=account.id)

    async def set(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments)
        create, update, destroy = set_operations(context, arguments, {"onDestroyRemoveEmails"})
        remove_emails = boolean(arguments, "onDestroyRemoveEmails", False)

        def write(writer: IMailWriter) -> dict[str, Any]:
            old_state = writer.state("Mailbox")
            check_if_in_state(arguments, old_state)
            return _MailboxSet(writer, context, remove_emails).run(
                create, update, destroy, old_state
            )

        result = await self.store.write(account.id, write)
        result["accountId"] = account.id
        return result


class _QueryRequest:
    FILTERS = {"parentId", "name", "role", "hasAnyRole", "isSubscribed"}
    SORTS = {"sortOrder", "name"}

    def __init__(self, arguments: Mapping[str, Any], query_changes: bool = False) -> None:
        allowed = {"accountId", "filter", "sort", "sortAsTree", "filterAsTree"}
        if query_changes:
            allowed |= {"sinceQueryState", "maxChanges", "upToId", "calculateTotal"}
        else:
            allowed |= {"position", "anchor", "anchorOffset", "limit", "calculateTotal"}
        check_known(arguments, allowed)
        self.filter = arguments.get("filter")
        if self.filter is not None:
            self._check_filter(self.filter)
        sort = arguments.get("sort") or []
        if not isinstance(sort, list):
            raise InvalidArguments("'sort' must be an array of Comparators.")
        for comparator in sort:
            if not isinstance(comparator, dict) or comparator.get("property") not in self.SORTS:
                raise UnsupportedSort("Mailboxes sort by sortOrder or name.")
            if not isinstance(comparator.get("isAscending", True), bool):
                raise InvalidArguments("'isAscending' must be a boolean.")
        self.sort = sort
        self.sort_as_tree = boolean(arguments, "sortAsTree", False)
        self.filter_as_tree = boolean(arguments, "filterAsTree", False)

    def _check_filter(self, node: Any) -> None:
        if not isinstance(node, dict):
            raise InvalidArguments("'filter' must be a FilterOperator or FilterCondition.")
        if "operator" in node:
            if node.get("operator") not in ("AND", "OR", "NOT") or not isinstance(
                node.get("conditions"), list
            ):
                raise InvalidArguments("A FilterOperator needs an operator and conditions.")
            for condition in node["conditions"]:
                self._check_filter(condition)
            return
        unknown = set(node) - self.FILTERS
        if unknown:
            raise UnsupportedFilter("Unknown Mailbox filter: " + ", ".join(sorted(unknown)) + ".")

    def _matches(self, node: Mapping[str, Any], mailbox: MailboxRecord) -> bool:
        if "operator" in node:
            results = [self._matches(c, mailbox) for c in node["conditions"]]
            return {"AND": all, "OR": any}.get(node["operator"], lambda r: not any(r))(results)
        for name, value in node.items():
            if name == "parentId" and mailbox.parent_id != value:
                return False
            if name == "name" and (
                not isinstance(value, str) or value.casefold() not in mailbox.name.casefold()
            ):
                return False
            if name == "role" and mailbox.role != value:
                return False
            if name == "hasAnyRole" and (mailbox.role is not None) != value:
                return False
            if name == "isSubscribed" and mailbox.is_subscribed != value:
                return False
        return True

    def _key(self, mailbox: MailboxRecord) -> list[Any]:
        key: list[Any] = []
        for comparator in self.sort:
            value: Any = (
                mailbox.sort_order
                if comparator["property"] == "sortOrder"
                else mailbox.name.casefold()
            )
            if not comparator.get("isAscending", True):
                value = _Reversed(value)
            key.append(value)
        key.append(mailbox.id)
        return key

    def run(self, mailboxes: list[MailboxRecord]) -> list[str]:
        by_id = {m.id: m for m in mailboxes}
        matching = [m for m in mailboxes if self.filter is None or self._matches(self.filter, m)]
        if self.filter_as_tree:
            kept = {m.id for m in matching}

            def ancestors_kept(m: MailboxRecord) -> bool:
                while m.parent_id is not None:
                    if m.parent_id not in kept:
                        return False
                    m = by_id[m.parent_id]
                return True

            matching = [m for m in matching if ancestors_kept(m)]
        matching.sort(key=self._key)
        if not self.sort_as_tree:
            return [m.id for m in matching]
        children: dict[str | None, list[MailboxRecord]] = {}
        included = {m.id for m in matching}
        for m in matching:
            parent = m.parent_id if m.parent_id in included else None
            children.setdefault(parent, []).append(m)
        ordered: list[str] = []

        def walk(parent: str | None) -> None:
            for m in children.get(parent, []):
                ordered.append(m.id)
                walk(m.id)

        walk(None)
        return ordered


class _Reversed:
    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


class _MailboxSet:
    """
    One ``Mailbox/set`` inside its write transaction.
    """

    def __init__(self, writer: IMailWriter, context: CallContext, remove_emails: bool) -> None:
        self.writer = writer
        self.context = context
        self.remove_emails = remove_emails
        self.mailboxes = {m.id: m for m in writer.mailboxes()}

    def run(
        self, create: dict[str, Any], update: dict[str, Any], destroy: list[str], old_state: str
    ) -> dict[str, Any]:
        created: dict[str, Any] = {}
        not_created: dict[str, Any] = {}
        pending = dict(create)
        while pending:
            progressed = False
            for creation_id, obj in list(pending.items()):
                parent = obj.get("parentId") if isinstance(obj, dict) else None
                if (
                    isinstance(parent, str)
                    and parent.startswith("#")
                    and parent[1:] in pending
                    and parent[1:] != creation_id
                ):
                    continue  # create the parent first
                del pending[creation_id]
                progressed = True
                try:
                    record = self._create(obj)
                except SetError as e:
                    not_created[creation_id] = e.error
                    continue
                self.context.created_ids[creation_id] = record.id
                created[creation_id] = self._created_json(record, obj)
            if not progressed:
                for creation_id in pending:
                    not_created[creation_id] = SetError(
                        "invalidProperties",
                        "parentId refers to a creation that failed.",
                        properties=["parentId"],
                    ).error
                break
        updated: dict[str, Any] = {}
        not_updated: dict[str, Any] = {}
        for mailbox_id, patch in update.items():
            try:
                self._update(mailbox_id, patch)
            except SetError as e:
                not_updated[mailbox_id] = e.error
            else:
                updated[mailbox_id] = None
        destroyed: list[str] = []
        not_destroyed: dict[str, Any] = {}
        for mailbox_id in destroy:
            try:
                self._destroy(mailbox_id)
            except SetError as e:
                not_destroyed[mailbox_id] = e.error
            else:
                destroyed.append(mailbox_id)
        return {
            "oldState": old_state,
            "newState": self.writer.state("Mailbox"),
            "created": created or None,
            "updated": updated or None,
            "destroyed": destroyed or None,
            "notCreated": not_created or None,
            "notUpdated": not_updated or None,
            "notDestroyed": not_destroyed or None,
        }

    def _created_json(self, record: MailboxRecord, given: Mapping[str, Any]) -> dict[str, Any]:
        full = to_json(record, MailboxCounts())
        return {k: v for k, v in full.items() if k not in given or k == "id"}

    def _validate(self, obj: Any, current: MailboxRecord | None) -> dict[str, Any]:
        """
        The record fields of a Mailbox to create (``current`` is ``None``)
        or of the properties a patch changes; server-set properties must
        have been taken out of a patch already.
        """
        if not isinstance(obj, dict):
            raise SetError("invalidProperties", "A Mailbox must be an object.")
        bad: dict[str, str] = {}
        for k in obj:
            if k not in PROPERTIES:
                bad[k] = "is not a Mailbox property"
            elif k in SERVER_SET:
                bad[k] = "is set by the server"
        fields: dict[str, Any] = {}
        name = obj.get("name", current.name if current else None)
        if (
            not isinstance(name, str)
            or not name.strip()
            or len(name.encode()) > MAX_NAME_OCTETS
            or any(ord(c) < 32 or ord(c) == 127 for c in name)
        ):
            bad["name"] = (
                f"must be a non-blank String of at most {MAX_NAME_OCTETS} octets"
                " without control characters"
            )
        fields["name"] = name
        parent = obj.get("parentId", current.parent_id if current else None)
        parent = self._resolve(parent)
        if parent is not None and (not is_id(parent) or parent not in self.mailboxes):
            bad["parentId"] = "no such Mailbox"
        fields["parent_id"] = parent
        role = obj.get("role", current.role if current else None)
        if role is not None:
            if not isinstance(role, str) or role not in ROLES:
                bad["role"] = "not a role of the IANA Mailbox Role registry"
            elif any(
                m.role == role and (current is None or m.id != current.id)
                for m in self.mailboxes.values()
            ):
                bad["role"] = "another Mailbox has this role"
        fields["role"] = role
        try:
            fields["sort_order"] = unsigned(obj, "sortOrder", current.sort_order if current else 0)
        except InvalidArguments:
            bad["sortOrder"] = "must be an UnsignedInt"
        subscribed = obj.get("isSubscribed", current.is_subscribed if current else True)
        if not isinstance(subscribed, bool):
            bad["isSubscribed"] = "must be a Boolean"
        fields["is_subscribed"] = subscribed
        if bad:
            properties = sorted(bad)
            raise SetError(
                "invalidProperties",
                "; ".join(f"{k}: {bad[k]}" for k in properties),
                properties=properties,
            )
        if isinstance(name, str) and any(
            m.name == name and m.parent_id == parent and (current is None or m.id != current.id)
            for m in self.mailboxes.values()
        ):
            raise SetError(
                "invalidProperties", "A sibling already has that name.", properties=["name"]
            )
        depth = 1
        ancestor = parent
        while ancestor is not None:
            if current is not None and ancestor == current.id:
                raise SetError(
                    "invalidProperties",
                    "A mailbox cannot be its own ancestor.",
                    properties=["parentId"],
                )
            depth += 1
            ancestor = self.mailboxes[ancestor].parent_id
        if depth > MAX_DEPTH:
            raise SetError(
                "invalidProperties",
                f"Mailboxes nest at most {MAX_DEPTH} deep.",
                properties=["parentId"],
            )
        return fields

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("#"):
            return self.context.created_ids.get(value[1:], value)
        return value

    def _create(self, obj: Any) -> MailboxRecord:
        fields = self._validate(obj, None)
        record = self.writer.create_mailbox(
            fields["name"],
            fields["parent_id"],
            fields["role"],
            fields["sort_order"],
            fields["is_subscribed"],
        )
        self.mailboxes[record.id] = record
        return record

    def _update(self, mailbox_id: str, patch: Any) -> None:
        current = self.mailboxes.get(mailbox_id)
        if current is None:
            raise SetError("notFound")
        if not isinstance(patch, dict):
            raise SetError("invalidPatch", "A patch must be an object.")
        counts = self.writer.mailbox_counts([mailbox_id])[mailbox_id]
        patch, server_set = split_unchanged(patch, to_json(current, counts), SERVER_SET)
        if server_set:
            raise unchangeable(server_set)
        obj = apply_patch(to_json(current, counts), patch)
        changed = {
            k: v for k, v in obj.items() if k in patch or any(p.startswith(k + "/") for p in patch)
        }
        fields = self._validate(changed, current)
        if current.role == "inbox" and (
            fields["role"] != "inbox" or fields["parent_id"] is not None
        ):
            raise SetError("forbidden", "The inbox keeps its role and stays at the top level.")
        differences = {k: v for k, v in fields.items() if getattr(current, k) != v}
        if differences:
            self.mailboxes[mailbox_id] = self.writer.update_mailbox(mailbox_id, **differences)

    def _destroy(self, mailbox_id: str) -> None:
        current = self.mailboxes.get(mailbox_id)
        if current is None:
            raise SetError("notFound")
        if current.role == "inbox":
            raise SetError("forbidden", "The inbox cannot be destroyed.")
        if any(m.parent_id == mailbox_id for m in self.mailboxes.values()):
            raise SetError("mailboxHasChild")
        inside, _ = self.writer.query_emails({"inMailbox": mailbox_id}, [], False)
        if inside and not self.remove_emails:
            raise SetError("mailboxHasEmail")
        for email_id, email in self.writer.emails(inside).items():
            if email.mailbox_ids == {mailbox_id}:
                self.writer.destroy_email(email_id)
            else:
                self.writer.update_email(email_id, mailbox_ids=email.mailbox_ids - {mailbox_id})
        self.writer.destroy_mailbox(mailbox_id)
        del self.mailboxes[mailbox_id]


__all__ = ["MailboxMethods", "signed"]
