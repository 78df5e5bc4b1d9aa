# -*- test-case-name: tests.methods.test_push_subscription -*-
"""
Push subscriptions (RFC 8620 §7.2): ``PushSubscription/get`` and
``PushSubscription/set``.

A subscription belongs to the user whose credentials created it, not to an
account: neither method takes an ``accountId``, and there is no state, so
``/set`` takes no ``ifInState`` and returns no ``oldState``/``newState``.
Another user's ids are ``notFound``.

What the server decides where the RFC leaves room:

- ``url`` and ``keys`` are never returned; naming either in ``properties``
  is ``forbidden`` (§7.2.1), any other unknown property
  ``invalidArguments``.
- ``verificationCode`` reads ``null`` until the client has set the code the
  server POSTed to the URL: returning the code itself would let anyone with
  the credentials verify a URL they do not control.
- ``expires`` is at most :attr:`PushSubscriptionLimits.max_lifetime` ahead
  (§7.2 asks for at least 48 hours; the default is 7 days); a later value is
  lowered, ``null`` means that longest, and the value stored is returned in
  ``created``/``updated``.  A time already past is ``invalidProperties``.
- ``types`` must name types the server pushes.
- §8.6 limits: at most :attr:`PushSubscriptionLimits.max_per_user`
  subscriptions per user (``overQuota``), and at most
  :attr:`PushSubscriptionLimits.creations_per_hour` creations per user in
  any hour (``rateLimit``), since each creation makes the server POST to a
  URL of the client's choice.  The rate is counted by each server process.
"""

from __future__ import annotations

import base64
import hmac
import math
import secrets
from collections import deque
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from attrs import evolve, frozen
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from jmap_twisted.core.registry import CORE, CallContext, Registry
from jmap_twisted.core.request import parse_utc_date
from jmap_twisted.errors import Forbidden, InvalidArguments
from jmap_twisted.interfaces import IPushSubscriptionEvents, IPushSubscriptions
from jmap_twisted.methods.standard import (
    SetError,
    apply_patch,
    check_known,
    get_ids,
    get_properties,
    not_found,
    resolve_id,
    set_operations,
    utc_date,
)
from jmap_twisted.push.listener import PUSH_TYPES
from jmap_twisted.push.webpush.crypto import InvalidKey, read_auth, read_p256dh
from jmap_twisted.records import PushSubscriptionRecord

log = Logger()

#: What ``PushSubscription/get`` returns.
PROPERTIES = ("id", "deviceClientId", "verificationCode", "expires", "types")
#: Set by the client, never returned (RFC 8620 §7.2.1).
PRIVATE = ("url", "keys")
#: Fixed at creation.
IMMUTABLE = ("deviceClientId", "url", "keys")

MAX_URL_LENGTH = 2048
MAX_DEVICE_CLIENT_ID_LENGTH = 255
RATE_PERIOD = 3600.0


@frozen
class PushSubscriptionLimits:
    """
    Bounds on each user's push subscriptions (RFC 8620 §8.6).

    :ivar max_per_user: subscriptions one user may hold at once.
    :ivar creations_per_hour: subscriptions one user may create in any hour.
    :ivar max_lifetime: the longest ``expires`` ahead of now, in seconds.
    """

    max_per_user: int = 50
    creations_per_hour: int = 20
    max_lifetime: float = 7 * 86400


class _Invalid(Exception):
    """
    One property's value is not acceptable.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(reason)
        self.name = name
        self.reason = reason


class _Problems:
    """
    Collects every invalid property of one object, for one
    ``invalidProperties`` SetError naming them all.
    """

    def __init__(self) -> None:
        self.found: dict[str, str] = {}

    def add(self, name: str, reason: str) -> None:
        self.found.setdefault(name, reason)

    def check(self, read: Callable[[], Any]) -> Any:
        """
        The value ``read`` returns, or ``None`` with the problem noted.
        """
        try:
            return read()
        except _Invalid as invalid:
            self.add(invalid.name, invalid.reason)
            return None

    def raise_any(self) -> None:
        if self.found:
            names = sorted(self.found)
            raise SetError(
                "invalidProperties",
                " ".join(f"{n}: {self.found[n]}." for n in names),
                properties=names,
            )


class CreationRate:
    """
    How many subscriptions each user created in the last hour, on the
    injected clock (a sliding window).
    """

    def __init__(self, clock: IReactorTime, per_period: int, period: float = RATE_PERIOD) -> None:
        self._clock = clock
        self._limit = per_period
        self._period = period
        self._times: dict[str, deque[float]] = {}
        self._sweep_at = 64

    def _recent(self, user_id: str, now: float) -> deque[float]:
        times = self._times.get(user_id, deque())
        while times and times[0] <= now - self._period:
            times.popleft()
        return times

    def allows(self, user_id: str) -> bool:
        """
        Whether the user may create one more now.
        """
        return len(self._recent(user_id, self._clock.seconds())) < self._limit

    def record(self, user_id: str) -> None:
        """
        Count a creation by the user now.
        """
        now = self._clock.seconds()
        times = self._recent(user_id, now)
        times.append(now)
        self._times[user_id] = times
        if len(self._times) >= self._sweep_at:
            # Forget users idle for a period, so the table follows the
            # active users, not every user ever seen.
            self._times = {u: t for u, t in self._times.items() if self._recent(u, now)}
            self._sweep_at = max(64, 2 * len(self._times))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _url(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid("url", "must be a string")
    if len(value) > MAX_URL_LENGTH:
        raise _Invalid("url", f"must be at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise _Invalid("url", "must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        # .port raises ValueError for a port out of range
        https = parts.scheme == "https" and bool(parts.hostname) and parts.port != 0
    except ValueError:
        raise _Invalid("url", "is not a valid URL") from None
    if not https:
        raise _Invalid("url", "must be an https URL with a host")
    return value


def _keys(value: Any) -> tuple[bytes, bytes] | None:
    """
    The ``p256dh`` and ``auth`` of a ``keys`` value (RFC 8291), or ``None``.
    """
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or set(value) != {"p256dh", "auth"}
        or not all(isinstance(v, str) for v in value.values())
    ):
        raise _Invalid("keys", "must be null or an object with the strings p256dh and auth")
    try:
        return read_p256dh(value["p256dh"]), read_auth(value["auth"])
    except InvalidKey as error:
        raise _Invalid("keys", f"are not RFC 8291 keys ({error})") from None


def _device_client_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Invalid("deviceClientId", "must be a non-empty string")
    if len(value) > MAX_DEVICE_CLIENT_ID_LENGTH:
        raise _Invalid(
            "deviceClientId", f"must be at most {MAX_DEVICE_CLIENT_ID_LENGTH} characters"
        )
    return value


def _types(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise _Invalid("types", "must be null or an array of type names")
    unknown = sorted({t for t in value if t not in PUSH_TYPES})
    if unknown:
        raise _Invalid("types", "unknown type names " + ", ".join(unknown))
    return tuple(dict.fromkeys(value))


class PushSubscriptionMethods:
    """
    ``PushSubscription/get`` and ``/set`` over the stored subscriptions.

    :param subscriptions: every user's subscriptions.
    :param clock: the time, for ``expires`` and the creation rate.
    :param events: told of creations (to POST the ``PushVerification``)
        and of every change (to reload delivery); ``None`` to tell nobody.
    :param limits: the bounds on each user's subscriptions.
    """

    def __init__(
        self,
        subscriptions: IPushSubscriptions,
        clock: IReactorTime,
        events: IPushSubscriptionEvents | None = None,
        limits: PushSubscriptionLimits = PushSubscriptionLimits(),
    ) -> None:
        self.subscriptions = subscriptions
        self.clock = clock
        self.events = events
        self.limits = limits
        self.rate = CreationRate(clock, limits.creations_per_hour)

    def install(self, registry: Registry) -> None:
        """
        Provide both methods under the core capability.
        """
        registry.add_method("PushSubscription/get", CORE, self.get)
        registry.add_method("PushSubscription/set", CORE, self.set)

    # -- helpers ---------------------------------------------------------

    def _latest(self, now: float) -> float:
        return float(math.floor(now + self.limits.max_lifetime))

    def _expires(self, value: Any, now: float) -> float:
        """
        The ``expires`` to store for a requested value.
        """
        if value is None:
            return self._latest(now)
        when = parse_utc_date(value)
        if when is None:
            raise _Invalid("expires", "must be a UTCDate or null")
        if when <= now:
            raise _Invalid("expires", "is not in the future")
        return min(when, self._latest(now))

    async def _own(self, context: CallContext) -> dict[str, PushSubscriptionRecord]:
        """
        The user's subscriptions that have not expired, by id, oldest first.
        """
        now = self.clock.seconds()
        records = await self.subscriptions.for_user(context.principal.user.id)
        return {r.id: r for r in records if r.expires is None or r.expires > now}

    def _notify(self, call: Callable[..., None], *args: Any) -> None:
        # The change is stored: a failing listener must not turn the
        # response into an error that makes the client try again.
        try:
            call(*args)
        except Exception:
            log.failure("Push subscription listener {call} failed", call=call)

    @staticmethod
    def _check_arguments(arguments: Mapping[str, Any], allowed: Collection[str]) -> None:
        if "accountId" in arguments:
            raise InvalidArguments(
                "PushSubscription methods take no 'accountId': subscriptions belong to"
                " the credentials, not to an account."
            )
        if "ifInState" in arguments:
            raise InvalidArguments(
                "PushSubscription/set takes no 'ifInState': push subscriptions have no state."
            )
        check_known(arguments, allowed)

    @staticmethod
    def _json(record: PushSubscriptionRecord) -> dict[str, Any]:
        """
        The whole object, ``url`` and ``keys`` included (never sent).
        """
        keys = None
        if record.p256dh is not None and record.auth is not None:
            keys = {"p256dh": _b64url(record.p256dh), "auth": _b64url(record.auth)}
        return {
            "id": record.id,
            "deviceClientId": record.device_client_id,
            "url": record.url,
            "keys": keys,
            "verificationCode": record.verification_code if record.verified else None,
            "expires": None if record.expires is None else utc_date(record.expires),
            "types": None if record.types is None else list(record.types),
        }

    # -- /get ------------------------------------------------------------

    async def get(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        """
        ``PushSubscription/get`` (RFC 8620 §7.2.1): the user's own
        subscriptions, without ``url`` and ``keys``.
        """
        self._check_arguments(arguments, {"ids", "properties"})
        ids = get_ids(context, arguments)
        requested = arguments.get("properties")
        if isinstance(requested, list) and any(p in PRIVATE for p in requested):
            raise Forbidden("The 'url' and 'keys' of a push subscription are never returned.")
        properties = get_properties(arguments, "properties", PROPERTIES, PROPERTIES)
        wanted = ["id", *(p for p in properties if p != "id")]
        own = await self._own(context)
        chosen = list(own.values()) if ids is None else [own[i] for i in ids if i in own]
        listed = []
        for record in chosen:
            whole = self._json(record)
            listed.append({p: whole[p] for p in wanted})
        return {"list": listed, "notFound": [] if ids is None else not_found(ids, own)}

    # -- /set ------------------------------------------------------------

    async def set(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        """
        ``PushSubscription/set`` (RFC 8620 §7.2.2).
        """
        self._check_arguments(arguments, {"create", "update", "destroy"})
        create, update, destroy = set_operations(context, arguments)
        user_id = context.principal.user.id
        own = await self._own(context)
        changed = False

        created: dict[str, Any] = {}
        not_created: dict[str, Any] = {}
        for creation_id, obj in create.items():
            try:
                record, echo = self._creation(obj, user_id)
                self._check_limits(user_id, len(own))
            except SetError as error:
                not_created[creation_id] = error.error
                continue
            await self.subscriptions.add(record)
            self.rate.record(user_id)
            own[record.id] = record
            changed = True
            context.created_ids[creation_id] = record.id
            created[creation_id] = echo
            if self.events is not None:
                self._notify(self.events.created, record)

        updated: dict[str, Any] = {}
        not_updated: dict[str, Any] = {}
        for subscription_id, patch in update.items():
            subscription_id = resolve_id(context, subscription_id)
            try:
                if subscription_id not in own:
                    raise SetError("notFound")
                after, told = self._updated(own[subscription_id], patch)
                if after != own[subscription_id]:
                    if not await self.subscriptions.replace(after):
                        raise SetError("notFound")
                    own[subscription_id] = after
                    changed = True
            except SetError as error:
                not_updated[subscription_id] = error.error
                continue
            updated[subscription_id] = told

        destroyed: list[str] = []
        not_destroyed: dict[str, Any] = {}
        for subscription_id in destroy:
            subscription_id = resolve_id(context, subscription_id)
            if not await self.subscriptions.remove(subscription_id, user_id):
                not_destroyed[subscription_id] = {"type": "notFound"}
                continue
            own.pop(subscription_id, None)
            destroyed.append(subscription_id)
            changed = True

        if changed and self.events is not None:
            self._notify(self.events.changed)
        return {
            "created": created or None,
            "updated": updated or None,
            "destroyed": destroyed or None,
            "notCreated": not_created or None,
            "notUpdated": not_updated or None,
            "notDestroyed": not_destroyed or None,
        }

    def _check_limits(self, user_id: str, held: int) -> None:
        if held >= self.limits.max_per_user:
            raise SetError(
                "overQuota",
                f"A user may hold at most {self.limits.max_per_user} push subscriptions;"
                " destroy one first.",
            )
        if not self.rate.allows(user_id):
            raise SetError(
                "rateLimit",
                f"A user may create at most {self.limits.creations_per_hour} push"
                " subscriptions an hour; try again later.",
            )

    def _creation(self, obj: Any, user_id: str) -> tuple[PushSubscriptionRecord, dict[str, Any]]:
        """
        The record for a create, and what ``created`` tells the client.
        """
        if not isinstance(obj, dict):
            raise SetError("invalidProperties", "A PushSubscription must be an object.")
        now = self.clock.seconds()
        problems = _Problems()
        for name in obj:
            if name == "id":
                problems.add("id", "is set by the server")
            elif name not in PROPERTIES and name not in PRIVATE:
                problems.add(name, "is not a PushSubscription property")
        if obj.get("verificationCode") is not None:
            problems.add("verificationCode", "must be null when creating")
        device = problems.check(lambda: _device_client_id(obj.get("deviceClientId")))
        url = problems.check(lambda: _url(obj.get("url")))
        keys = problems.check(lambda: _keys(obj.get("keys")))
        expires = problems.check(lambda: self._expires(obj.get("expires"), now))
        types = problems.check(lambda: _types(obj.get("types")))
        problems.raise_any()
        record = PushSubscriptionRecord(
            id="P" + secrets.token_hex(12),
            user_id=user_id,
            device_client_id=device,
            url=url,
            p256dh=None if keys is None else keys[0],
            auth=None if keys is None else keys[1],
            verification_code=secrets.token_urlsafe(32),
            verified=False,
            expires=expires,
            types=types,
            created=now,
        )
        echo: dict[str, Any] = {"id": record.id, "expires": utc_date(expires)}
        for name, default in (("verificationCode", None), ("types", None)):
            if name not in obj:
                echo[name] = default
        return record, echo

    def _updated(
        self, record: PushSubscriptionRecord, patch: Any
    ) -> tuple[PushSubscriptionRecord, dict[str, Any] | None]:
        """
        The record after a patch, and what ``updated`` tells the client
        (``expires`` when the server chose another value than asked).
        """
        if not isinstance(patch, dict):
            raise SetError("invalidPatch", "A patch must be an object.")
        current = self._json(record)
        after = apply_patch(current, patch)
        now = self.clock.seconds()
        problems = _Problems()
        for name in sorted(set(after) - set(current)):
            problems.add(name, "is not a PushSubscription property")
        if after["id"] != record.id:
            problems.add("id", "is set by the server")
        for name in IMMUTABLE:
            if after[name] == current[name]:
                continue
            if name == "keys" and problems.check(lambda: _keys(after["keys"])) == (
                record.p256dh,
                record.auth,
            ):
                continue  # the same keys, written differently
            problems.add(name, "cannot change; destroy the subscription and create another")
        verified = record.verified
        code = after["verificationCode"]
        if code != current["verificationCode"]:
            if isinstance(code, str) and hmac.compare_digest(
                code.encode(), record.verification_code.encode()
            ):
                verified = True
            else:
                problems.add("verificationCode", "is not the code sent to the URL")
        expires = record.expires
        echo: dict[str, Any] | None = None
        if after["expires"] != current["expires"] or "expires" in patch:
            expires = problems.check(lambda: self._expires(after["expires"], now))
            if expires is not None and expires != parse_utc_date(after["expires"]):
                echo = {"expires": utc_date(expires)}
        types = record.types
        if after["types"] != current["types"]:
            types = problems.check(lambda: _types(after["types"]))
        problems.raise_any()
        return evolve(record, verified=verified, expires=expires, types=types), echo
