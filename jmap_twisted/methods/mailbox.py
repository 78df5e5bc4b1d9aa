"""
Mailbox methods (RFC 8621 §2): ``Mailbox/get``, ``/changes``, ``/query``,
``/queryChanges`` and ``/set``.

In a sharee's view of an account (see :mod:`~jmap_twisted.methods.access`),
``myRights`` comes from their letters, ``isSubscribed`` is their own
(changing it changes their share, not the mailbox), and a mailbox they
create inside a shared one is shared as its parent is, as IMAP servers
give a new mailbox its parent's ACL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import evolve

from jmap_twisted.core.registry import CallContext, Registry
from jmap_twisted.core.request import is_id
from jmap_twisted.errors import (
    InvalidArguments,
    ServerPartialFail,
    UnsupportedFilter,
    UnsupportedSort,
)
from jmap_twisted.interfaces import IMailReader, IMailWriter
from jmap_twisted.methods import querychanges, sharewith
from jmap_twisted.methods.access import mailbox_rights, writer_for_destroy
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
    resolve_id,
    set_operations,
    signed,
    split_unchanged,
    unchangeable,
    unsigned,
)
from jmap_twisted.records import Account, MailboxCounts, MailboxRecord
from jmap_twisted.sharing import Sharing, SharingIncomplete

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


def to_json(
    record: MailboxRecord, counts: MailboxCounts, my_rights: Mapping[str, bool]
) -> dict[str, Any]:
    """
    The Mailbox object of a record, with the user's rights on it.
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
        "myRights": dict(my_rights),
        "isSubscribed": record.is_subscribed,
    }


class MailboxMethods(MailMethods):
    """
    The Mailbox methods over a mail store.

    :param sharing: how mailboxes are shared (``shareWith``, RFC 9670), or
        ``None`` when the server does not share them.
    """

    def __init__(self, *args: Any, sharing: Sharing | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sharing = sharing

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
        known = sharewith.properties(PROPERTIES, context, self.sharing)
        properties = get_properties(arguments, "properties", known, known)
        shared = None
        if self.sharing is not None and sharewith.SHARE_WITH in properties:
            shared = await sharewith.shown(self.sharing, account)

        def read(reader: IMailReader) -> dict[str, Any]:
            mailboxes = {m.id: m for m in reader.mailboxes()}
            wanted = list(mailboxes) if ids is None else [i for i in ids if i in mailboxes]
            counts = reader.mailbox_counts(wanted)
            listed = []
            for mailbox_id in wanted:
                mailbox = mailboxes[mailbox_id]
                full = to_json(mailbox, counts[mailbox_id], mailbox_rights(reader, mailbox))
                if shared is not None:
                    full[sharewith.SHARE_WITH] = shared.get(mailbox_id)
                listed.append({p: full[p] for p in ("id", *properties)})
            return {
                "accountId": account.id,
                "state": reader.state("Mailbox"),
                "list": listed,
                "notFound": [] if ids is None else not_found(ids, mailboxes),
            }

        return await self.read(account, read, await self._subscriptions(context, account))

    async def changes(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        response, batch = await self.changes_of(context, arguments, "Mailbox")
        response["updatedProperties"] = COUNT_PROPERTIES if batch.counts_only else None
        return response

    async def query(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments)
        request = _QueryRequest(arguments)

        def read(reader: IMailReader) -> tuple[list[str], str]:
            return request.run(reader.mailboxes()), reader.state("Mailbox")

        ids, state = await self.read(account, read, await self._subscriptions(context, account))
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

        subscriptions = await self._subscriptions(context, account)
        return dict(await self.read(account, read, subscriptions), accountId=account.id)

    async def set(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments)
        create, update, destroy = set_operations(context, arguments, {"onDestroyRemoveEmails"})
        remove_emails = boolean(arguments, "onDestroyRemoveEmails", False)
        subscribing: dict[str, bool] = {}
        if account.shared is not None:
            update, subscribing = _own_subscriptions(update)
        shares = None
        if self.sharing is not None and sharewith.offered(context, self.sharing):
            shares = sharewith.ShareWithChanges(self.sharing, account, context)
            create, update = await shares.take(create, update)

        def write(writer: IMailWriter) -> dict[str, Any]:
            old_state = writer.state("Mailbox")
            check_if_in_state(arguments, old_state)
            return _MailboxSet(writer, context, remove_emails).run(
                create, update, destroy, old_state
            )

        result = await self.write(account, write)
        if self.sharing is not None:
            await sharewith.forget_destroyed(self.sharing, account, result)
        changed = shares is not None and await shares.apply(result)
        if account.shared is not None:
            changed = (
                await self._sharee_set(context, account, create, subscribing, result) or changed
            )
        if changed:
            account = await self._fresh(context, account)
            result["newState"] = await self.read(account, lambda r: r.state("Mailbox"))
        result["accountId"] = account.id
        return result

    async def _subscriptions(
        self, context: CallContext, account: Account
    ) -> dict[str, bool] | None:
        """
        A sharee's own ``isSubscribed`` per mailbox shared with them
        (``None`` for an account the user has whole).
        """
        if account.shared is None or self.sharing is None:
            return None
        user_id = context.principal.user.id
        found = await self.sharing.shares.shares_of_mailboxes(
            account.id, [mailbox_id for mailbox_id, _ in account.shared.rights]
        )
        return {s.mailbox_id: s.subscribed for s, _ in found if s.user_id == user_id}

    async def _fresh(self, context: CallContext, account: Account) -> Account:
        """
        The account as the user sees it now: a sharee's view changes with
        their subscriptions and shares.
        """
        if account.shared is None or self.sharing is None:
            return account
        views = await self.sharing.shares.shared_views_for_user(context.principal.user.id)
        view = next((v for a, v in views if a.id == account.id), account.shared)
        return evolve(account, shared=view)

    async def _sharee_set(
        self,
        context: CallContext,
        account: Account,
        create: Mapping[str, Any],
        subscribing: dict[str, bool],
        result: Mapping[str, Any],
    ) -> bool:
        """
        After a sharee's ``Mailbox/set``: share the mailboxes they created
        as their parents are, and set their own subscriptions.

        :return: whether their view changed.
        :raises ServerPartialFail: a created mailbox could not be shared.
        """
        if self.sharing is None:
            return False
        shares = self.sharing.shares
        user = context.principal.user
        changed = False
        created = result.get("created") or {}
        for creation_id, made in created.items():
            obj = create[creation_id]
            parent = resolve_id(context, obj.get("parentId"))
            for share, _ in await shares.shares_of_mailboxes(account.id, [parent]):
                try:
                    await self.sharing.set_rights(
                        account, made["id"], share.user_id, share.rights, user
                    )
                except SharingIncomplete:
                    raise ServerPartialFail(
                        f"Mailbox {made['id']} was created, but not fully shared."
                    ) from None
                changed = True
            if obj.get("isSubscribed") is False:
                subscribing[made["id"]] = False
        done = {made["id"] for made in created.values()} | set(result.get("updated") or {})
        subscribing = {m: v for m, v in subscribing.items() if m in done}
        if subscribing:
            current = await self._subscriptions(context, await self._fresh(context, account))
            for mailbox_id, subscribed in subscribing.items():
                if (current or {}).get(mailbox_id, True) != subscribed:
                    await shares.set_subscribed(account.id, mailbox_id, user.id, subscribed)
                    changed = True
        return changed


def _own_subscriptions(update: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, bool]]:
    """
    A sharee's updates without their ``isSubscribed`` changes, and those
    changes: a sharee subscribes to a shared mailbox for themselves.
    """
    updates: dict[str, Any] = {}
    subscribing: dict[str, bool] = {}
    for mailbox_id, patch in update.items():
        if isinstance(patch, dict) and isinstance(patch.get("isSubscribed"), bool):
            subscribing[mailbox_id] = patch["isSubscribed"]
            patch = {k: v for k, v in patch.items() if k != "isSubscribed"}
        updates[mailbox_id] = patch
    return updates, subscribing


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
        full = to_json(record, MailboxCounts(), mailbox_rights(self.writer, record))
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
        shown = to_json(current, counts, mailbox_rights(self.writer, current))
        patch, server_set = split_unchanged(patch, shown, SERVER_SET)
        if server_set:
            raise unchangeable(server_set)
        obj = apply_patch(shown, patch)
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
        # A sharee's children and emails include those they cannot see.
        writer = writer_for_destroy(self.writer, mailbox_id, self.remove_emails)
        if any(m.parent_id == mailbox_id for m in writer.mailboxes()):
            raise SetError("mailboxHasChild")
        inside, _ = writer.query_emails({"inMailbox": mailbox_id}, [], False)
        if inside and not self.remove_emails:
            raise SetError("mailboxHasEmail")
        for email_id, email in writer.emails(inside).items():
            if email.mailbox_ids == {mailbox_id}:
                writer.destroy_email(email_id)
            else:
                writer.update_email(email_id, mailbox_ids=email.mailbox_ids - {mailbox_id})
        writer.destroy_mailbox(mailbox_id)
        del self.mailboxes[mailbox_id]


__all__ = ["MailboxMethods", "signed"]
