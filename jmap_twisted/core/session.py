"""
The JMAP Session object (RFC 8620 §2).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

from jmap_twisted import rights
from jmap_twisted.core.registry import CORE, Registry
from jmap_twisted.interfaces import IPrincipal
from jmap_twisted.records import Account, User

#: Paths below the URL of the JMAP resource tree (``/jmap`` on this
#: project's own site; wherever an embedder mounts it otherwise).
API_PATH = "/api/"
UPLOAD_PATH = "/upload/{accountId}/"
DOWNLOAD_PATH = "/download/{accountId}/{blobId}/{name}?type={type}"
EVENT_SOURCE_PATH = "/eventsource/?types={types}&closeafter={closeafter}&ping={ping}"
WEBSOCKET_PATH = "/ws"
TICKET_PATH = "/ticket"
WEBSOCKET = "urn:ietf:params:jmap:websocket"
TICKETS = "com:linagora:params:jmap:ws:ticket"
#: RFC 9670 §2: principals (in the session, and in the user's personal
#: account, which holds them) and an account's owner (in accounts only).
PRINCIPALS = "urn:ietf:params:jmap:principals"
PRINCIPALS_OWNER = "urn:ietf:params:jmap:principals:owner"
#: What a sharee's view of an account offers (RFC 9670 §4): mail, inside
#: the shared mailboxes only, and nothing of the owner's own (submission,
#: vacation response, quota).
SHARED_VIEW_CAPABILITIES = {"urn:ietf:params:jmap:mail": {"mayCreateTopLevelMailbox": False}}


def personal_account(principal: IPrincipal) -> Account | None:
    """
    The user's own account among those they may access, if any.
    """
    return next((a for a in principal.accounts if a.owner_id == principal.user.id), None)


def account_capabilities(
    account: Account, principal: IPrincipal, registry: Registry
) -> dict[str, Any]:
    """
    The ``accountCapabilities`` of one account as a user sees it: also
    what the methods check (:meth:`~jmap_twisted.core.registry.CallContext.account`),
    so that a method of a capability an account lacks answers
    ``accountNotSupportedByMethod``.

    With the principals capability (RFC 9670 §2), the user's personal
    account holds the principals and says which is theirs
    (``currentUserPrincipalId``), and every account names its owner's
    principal (``urn:ietf:params:jmap:principals:owner``).  A sharee's
    view of an account has :data:`SHARED_VIEW_CAPABILITIES` only (and its
    owner's principal).
    """
    personal = personal_account(principal)
    capabilities: dict[str, Any] = {}
    for urn, capability in registry.capabilities.items():
        if capability.account is None:
            continue
        if account.shared is not None:
            if urn in SHARED_VIEW_CAPABILITIES:
                capabilities[urn] = {**capability.account, **SHARED_VIEW_CAPABILITIES[urn]}
            continue
        if urn == PRINCIPALS:
            if personal is not None and account.id == personal.id:
                capabilities[urn] = {
                    **capability.account,
                    "currentUserPrincipalId": principal.user.id,
                }
            continue
        capabilities[urn] = dict(capability.account)
    if PRINCIPALS in registry.capabilities and personal is not None:
        capabilities[PRINCIPALS_OWNER] = {
            "accountIdForPrincipal": personal.id,
            "principalId": account.owner_id,
        }
    return capabilities


def account_object(account: Account, principal: IPrincipal, registry: Registry) -> dict[str, Any]:
    """
    The Account object (RFC 8620 §2) of one account as a user sees it, as
    the session lists it (and ``Principal`` objects, RFC 9670 §2).  A
    sharee's view is read-only when none of its mailboxes lets them change
    anything (:func:`jmap_twisted.rights.read_only`).
    """
    return {
        "name": account.name,
        "isPersonal": account.owner_id == principal.user.id,
        "isReadOnly": account.shared is not None and rights.read_only(account.shared),
        "accountCapabilities": account_capabilities(account, principal, registry),
    }


def _accounts(principal: IPrincipal, registry: Registry) -> dict[str, Any]:
    return {
        account.id: account_object(account, principal, registry) for account in principal.accounts
    }


def _primary_accounts(principal: IPrincipal, registry: Registry) -> dict[str, str]:
    personal = personal_account(principal)
    if personal is None:
        return {}
    return {
        urn: personal.id
        for urn, cap in registry.capabilities.items()
        if cap.account is not None or urn == CORE
    }


def _content(principal: IPrincipal, registry: Registry) -> dict[str, Any]:
    return {
        "capabilities": {urn: dict(cap.session) for urn, cap in registry.capabilities.items()},
        "accounts": _accounts(principal, registry),
        "primaryAccounts": _primary_accounts(principal, registry),
        "username": principal.user.username,
    }


def session_state(principal: IPrincipal, registry: Registry) -> str:
    """
    A string that changes whenever the session's content (capabilities,
    accounts, username) changes, and only then.
    """
    return _state(principal.user, tuple(principal.accounts), registry)


@lru_cache(maxsize=4096)
def _state(user: User, accounts: tuple[Account, ...], registry: Registry) -> str:
    # Every Response carries the session state; the content it hashes
    # changes rarely, so the hash is remembered per (user, accounts).
    content = _content(_Viewer(user, accounts), registry)  # type: ignore[arg-type]
    canonical = json.dumps(content, sort_keys=True).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


class _Viewer:
    def __init__(self, user: User, accounts: tuple[Account, ...]) -> None:
        self.user = user
        self.accounts = accounts


def session_object(
    principal: IPrincipal, registry: Registry, base_url: str, push: bool = True
) -> dict[str, Any]:
    """
    The Session object for a user, with absolute URLs below ``base_url``
    (the URL of the JMAP resource tree, no trailing slash).

    :param push: whether push is delivered now; when not, the WebSocket
        capability says ``supportsPush: false``.
    """
    session = _content(principal, registry)
    session.update(
        {
            "apiUrl": base_url + API_PATH,
            "downloadUrl": base_url + DOWNLOAD_PATH,
            "uploadUrl": base_url + UPLOAD_PATH,
            "eventSourceUrl": base_url + EVENT_SOURCE_PATH,
            "state": session_state(principal, registry),
        }
    )
    # URLs follow the request, so they are filled in after the state is
    # computed: they are not part of what a client caches by state.
    capabilities = session["capabilities"]
    if WEBSOCKET in capabilities:
        ws_base = "wss" + base_url[5:] if base_url.startswith("https") else "ws" + base_url[4:]
        capabilities[WEBSOCKET] = {**capabilities[WEBSOCKET], "url": ws_base + WEBSOCKET_PATH}
        if not push:
            capabilities[WEBSOCKET]["supportsPush"] = False
    if TICKETS in capabilities:
        capabilities[TICKETS] = {
            **capabilities[TICKETS],
            "generationEndpoint": base_url + TICKET_PATH,
            "revocationEndpoint": base_url + TICKET_PATH,
        }
    return session


def capabilities_changed() -> None:
    """
    Forget the remembered session states: a capability's content changed
    (a key was rotated), so every session's state must change too.
    """
    _state.cache_clear()
